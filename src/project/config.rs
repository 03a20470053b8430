//! The project's file formats, as Rust types. These types are the contract: the JSON Schemas in
//! `schemas/` are generated from them (schemars), every YAML file is validated against those
//! schemas before it is deserialized, and the doc comments become the schema descriptions that an
//! editor's YAML language server shows.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `streamctl_project.yml`: the root of a streamctl project.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    /// Project name: used in consumer group ids and default topic prefixes. Letters, digits, `_` and `-`.
    #[schemars(regex(pattern = r"^[A-Za-z][A-Za-z0-9_-]*$"))]
    pub name: String,
    /// Version of the project itself (free text, shown in docs and deployment records).
    #[serde(default = "default_version")]
    pub version: String,
    /// Where the project's files live, relative to the project directory.
    #[serde(default)]
    pub paths: Paths,
    /// Variables available to models as `{{ var('name') }}`.
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    /// Defaults applied to every model; a model's own properties and `config()` override them.
    #[serde(default)]
    pub models: ModelConfig,
    /// The target used when neither `--target` nor `STREAMCTL_TARGET` names one.
    #[serde(default = "default_target_name")]
    pub default_target: String,
    /// Clusters this project can be deployed to. `embedded` (an in-process broker) always exists.
    #[serde(default)]
    pub targets: BTreeMap<String, Target>,
}

fn default_version() -> String {
    "0.1.0".into()
}

pub fn default_target_name() -> String {
    "embedded".into()
}

/// Folder names inside the project directory.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Paths {
    /// Folders holding model `.sql` files and their property `.yml` files.
    pub models: Vec<String>,
    /// Folders holding source definitions (`.yml`).
    pub sources: Vec<String>,
    /// Folders holding sink definitions (`.yml`).
    pub sinks: Vec<String>,
    /// Folders holding Kafka Connect connectors (`.yml`).
    pub connectors: Vec<String>,
    /// Folders holding Jinja macro files (`.sql`).
    pub macros: Vec<String>,
    /// Folders holding unit tests (`.yml`).
    pub tests: Vec<String>,
    /// Folders holding data schemas referenced by sources (`.avsc`, `.json`).
    pub schemas: Vec<String>,
    /// Folder holding sample data files, one per source.
    pub data: Vec<String>,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            models: vec!["models".into()],
            sources: vec!["sources".into()],
            sinks: vec!["sinks".into()],
            connectors: vec!["connectors".into()],
            macros: vec!["macros".into()],
            tests: vec!["tests".into()],
            schemas: vec!["schemas".into()],
            data: vec!["data".into()],
        }
    }
}

/// One deployment target: a Kafka cluster, or the embedded in-process broker.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `embedded` hosts a broker inside the streamctl process; `kafka` connects to a cluster.
    #[serde(rename = "type")]
    pub kind: TargetKind,
    /// Kafka bootstrap servers (`host:port,...`). Overridden by `--bootstrap-servers` / `STREAMCTL_BOOTSTRAP_SERVERS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_servers: Option<String>,
    /// Confluent-compatible Schema Registry URL. Overridden by `--schema-registry-url` / `STREAMCTL_SCHEMA_REGISTRY_URL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry_url: Option<String>,
    /// PEM file of the certificate authorities trusted for an `https://` registry (relative to the project),
    /// like `ssl.ca.location` on the Kafka side. Default: the Mozilla root certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry_ca_location: Option<String>,
    /// PEM file of the client certificate presented to an `https://` registry that asks for one (mutual TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry_certificate_location: Option<String>,
    /// PEM file of the private key of `schema_registry_certificate_location`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry_key_location: Option<String>,
    /// Basic-auth credentials for the registry, `USER:PASSWORD` (a Confluent Cloud API key and secret), as in
    /// Confluent's `basic.auth.user.info`. Put them here only through `{{ env_var('NAME') }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_registry_basic_auth_user_info: Option<String>,
    /// Extra librdkafka properties (`security.protocol`, `sasl.username`, ...). Put secrets here only
    /// through `{{ env_var('NAME') }}`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Replication factor for topics streamctl creates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
    /// Compacted topic that records what is deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_topic: Option<String>,
    /// Prefix added to every topic name streamctl derives (not to explicit `topic:` settings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_prefix: Option<String>,
    /// Delivery guarantee of the target's jobs (default `exactly_once`; a model's own
    /// `guarantee` wins). `at_least_once` for brokers without transactions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guarantee: Option<Guarantee>,
    /// Kafka Connect REST URL (`http://host:8083`) of the cluster named `default`, which runs the
    /// project's connectors unless they name another. Basic auth as `http://user:password@host`
    /// only through `{{ env_var('NAME') }}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_url: Option<String>,
    /// More Kafka Connect clusters, name → REST URL; a connector picks one with `cluster:`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connect_clusters: BTreeMap<String, String>,
}

/// What a job's outputs, state and input offsets promise after a crash.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Guarantee {
    /// Outputs, state checkpoint and input offsets of each checkpoint interval are committed in
    /// one Kafka transaction: `read_committed` readers see every output exactly once.
    #[default]
    ExactlyOnce,
    /// No transactions: after a crash, outputs since the last checkpoint are produced again.
    AtLeastOnce,
}

impl Guarantee {
    pub fn word(self) -> &'static str {
        match self {
            Guarantee::ExactlyOnce => "exactly_once",
            Guarantee::AtLeastOnce => "at_least_once",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    Embedded,
    Kafka,
}

/// A file under `sources/`: groups of Kafka topics the project reads.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourcesFile {
    /// File format version; this streamctl reads version 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    pub sources: Vec<SourceGroup>,
}

fn one() -> u32 {
    1
}

/// A named group of source topics, referenced in SQL as `{{ source('group', 'table') }}`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceGroup {
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tags for selection (`tag:x`), inherited by every table of the group.
    #[serde(default)]
    pub tags: Vec<String>,
    pub tables: Vec<SourceTable>,
}

/// One Kafka topic read as a stream (every record is an event) or a table (latest value per key).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceTable {
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Kafka topic name.
    pub topic: String,
    /// `stream`: every record is an event. `table`: the latest value per key of a compacted or
    /// upsert topic; a record with a null value (tombstone) deletes its key.
    #[serde(default)]
    pub kind: RelationKind,
    /// Key columns. Required for a table.
    #[serde(default)]
    pub key: Vec<String>,
    /// Encoding of the record value.
    #[serde(default)]
    pub format: ValueFormat,
    /// Encoding of the record key (read for the tombstones of a table).
    #[serde(default, skip_serializing_if = "KeyFormat::is_json")]
    pub key_format: KeyFormat,
    /// Columns with SQL types. Give either `columns` or `schema`.
    #[serde(default)]
    pub columns: Vec<ColumnDef>,
    /// The schema from a file in the project (`.avsc` Avro or `.json` JSON Schema) or a registry subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<SchemaRefConfig>,
    /// The column carrying event time; without it the Kafka record timestamp is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time: Option<EventTime>,
    /// What to do with a record that cannot be decoded.
    #[serde(default)]
    pub on_error: OnError,
    /// Topic for `on_error: dead_letter` (default `<topic>.dlq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
    /// Partition count, used when streamctl creates the topic (embedded target, sample data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Sample data for the embedded target and `apply`: a JSON Lines file, relative to the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_data: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RelationKind {
    #[default]
    Stream,
    Table,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ValueFormat {
    #[default]
    Json,
    Avro,
    /// Debezium change events in JSON (read-only).
    DebeziumJson,
    /// Debezium change events in Avro, Confluent wire format (read-only).
    DebeziumAvro,
    /// Oracle GoldenGate's JSON change records: `op_type` I/U/D, `op_ts`, `before`/`after` (read-only).
    GoldengateJson,
}

impl ValueFormat {
    /// Change events (an envelope with the row before and after), read as a table or a stream.
    pub fn is_change_events(&self) -> bool {
        matches!(self, ValueFormat::DebeziumJson | ValueFormat::DebeziumAvro | ValueFormat::GoldengateJson)
    }

    pub fn name(&self) -> &'static str {
        match self {
            ValueFormat::Json => "json",
            ValueFormat::Avro => "avro",
            ValueFormat::DebeziumJson => "debezium-json",
            ValueFormat::DebeziumAvro => "debezium-avro",
            ValueFormat::GoldengateJson => "goldengate-json",
        }
    }
}

/// Encoding of record keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyFormat {
    /// JSON: one key column as its bare value, several as an object (default).
    #[default]
    Json,
    /// The one key column as UTF-8 text (Kafka's StringSerializer).
    String,
    /// The one key column as 8 bytes, big-endian (Kafka's LongSerializer).
    Long,
    /// The one key column as 4 bytes, big-endian (Kafka's IntegerSerializer).
    Int,
    /// The one key column as an IEEE 754 double, 8 bytes big-endian (Kafka's DoubleSerializer).
    Double,
    /// Avro in the Confluent wire format, the schema registered as `<topic>-key`.
    Avro,
}

impl KeyFormat {
    pub fn is_json(&self) -> bool {
        *self == KeyFormat::Json
    }

    pub fn name(&self) -> &'static str {
        match self {
            KeyFormat::Json => "json",
            KeyFormat::String => "string",
            KeyFormat::Long => "long",
            KeyFormat::Int => "int",
            KeyFormat::Double => "double",
            KeyFormat::Avro => "avro",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Stop the job, naming topic, partition, offset and reason.
    #[default]
    Fail,
    /// Count the record and go on.
    Skip,
    /// Copy the original record to the dead-letter topic, with the error in headers.
    DeadLetter,
}

/// A column and its SQL type (`INT`, `BIGINT`, `DOUBLE`, `DECIMAL(10,2)`, `STRING`, `BOOLEAN`,
/// `TIMESTAMP`, `DATE`, `BYTES`, `ARRAY<T>`, `STRUCT<a INT, b STRING>`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnDef {
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `false` declares the column NOT NULL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nullable: Option<bool>,
    /// `true`: the column holds every header of the record, not a field of its value, as
    /// `ARRAY<STRUCT<key STRING, value BYTES>>` (ksqlDB's `HEADERS`; the default type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<bool>,
    /// The column holds the last header with this key, not a field of the value (ksqlDB's
    /// `HEADER('key')`): `BYTES` (the default type) or `STRING` (UTF-8 text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// Where a source's schema comes from, when not given inline.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaRefConfig {
    /// Path of an `.avsc` (Avro) or `.json` (JSON Schema) file, relative to the project directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Schema Registry subject (latest version), for real targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// Event time: which column, how to read it, and how late events may arrive.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventTime {
    /// A `TIMESTAMP` column, a `BIGINT` of epoch milliseconds, or a `STRING` read with `format`.
    pub column: String,
    /// Java-style pattern for string columns, as ksqlDB's STRINGTOTIMESTAMP (`yyyy-MM-dd HH:mm:ss`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// How far behind the newest event an event may arrive and still count (`5 seconds`, `1 minute`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_lateness: Option<String>,
}

/// A file of model properties under `models/`, dbt style.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelPropertiesFile {
    /// File format version; this streamctl reads version 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    pub models: Vec<ModelProperties>,
}

/// Properties of one model (`models/<name>.sql`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelProperties {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Configuration; `{{ config(...) }}` in the SQL file overrides it.
    #[serde(default)]
    pub config: ModelConfig,
    /// With `enforced: true` the model's output columns must match `columns` exactly (names and types).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<Contract>,
    #[serde(default)]
    pub columns: Vec<ColumnDef>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    pub enforced: bool,
}

/// How a model is materialized and where its output goes. Every field is optional so that project
/// defaults, YAML properties and the SQL file's `config()` can be layered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `stream`: an append-only topic of events. `table`: a changelog of the latest row per key
    /// (compacted topic). Aggregations are tables; the default is inferred from the query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub materialized: Option<RelationKind>,
    /// Output topic (default: the model name, after the target's `topic_prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Output topic partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Output key columns (default: the GROUP BY columns of an aggregation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Vec<String>>,
    /// Where a job starts reading when it is created or its state must be rebuilt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayPolicy>,
    /// Set to `false` to keep a model in the project but not deploy it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Compatibility level checked for the output's registered schemas (default: the
    /// registry's level for the subject, else FORWARD_TRANSITIVE: every consumer's schema can
    /// read what a new version writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_compatibility: Option<super::compatibility::Compatibility>,
    /// Encoding of the output values: `json` (default) or `avro` (Confluent wire format, with
    /// the schema `apply` registers from the output columns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ValueFormat>,
    /// Encoding of the output keys: `json` (default), `string`, `long`, `int`, `double` (Kafka's
    /// serializers, one key column) or `avro` (Confluent wire format, registered as `<topic>-key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_format: Option<KeyFormat>,
    /// Record headers written from output columns: header name → column (STRING or BYTES; a
    /// null writes no header). The name `*` writes every entry of an
    /// `ARRAY<STRUCT<key STRING, value BYTES>>` column (e.g. a source's `headers: true` column).
    /// The columns stay in the value too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Delivery guarantee of this model's job: `exactly_once` or `at_least_once` (default: the
    /// target's `guarantee`, else `exactly_once`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guarantee: Option<Guarantee>,
}

impl ModelConfig {
    /// `self` with every unset field taken from `base`.
    pub fn or(self, base: &ModelConfig) -> ModelConfig {
        ModelConfig {
            materialized: self.materialized.or(base.materialized),
            topic: self.topic.or_else(|| base.topic.clone()),
            partitions: self.partitions.or(base.partitions),
            key: self.key.or_else(|| base.key.clone()),
            replay: self.replay.or_else(|| base.replay.clone()),
            enabled: self.enabled.or(base.enabled),
            schema_compatibility: self.schema_compatibility.or(base.schema_compatibility),
            format: self.format.or(base.format),
            key_format: self.key_format.or(base.key_format),
            headers: self.headers.or_else(|| base.headers.clone()),
            tags: self.tags.or_else(|| base.tags.clone()),
            guarantee: self.guarantee.or(base.guarantee),
        }
    }
}

/// `earliest`, `latest`, or an RFC 3339 timestamp to start from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ReplayPolicy {
    Named(ReplayFrom),
    Timestamp { timestamp: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplayFrom {
    Earliest,
    Latest,
}

/// A file under `sinks/`: where model outputs are delivered beyond their own topic.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SinksFile {
    /// File format version; this streamctl reads version 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    pub sinks: Vec<SinkDef>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SinkDef {
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The model whose output this sink delivers.
    pub from: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The connector and its settings.
    pub connector: SinkConnector,
    /// What a native sink does with a row that is refused for the row's own sake (a constraint it
    /// breaks, a value out of range, a value a transform cannot convert or the model's format cannot
    /// read): `retry` stalls the sink and tries again with backoff until it goes through;
    /// `dead_letter` copies the record to `dead_letter_topic`, with the reason in headers, and goes
    /// on. A destination that is down stalls the sink either way.
    #[serde(default)]
    pub on_error: SinkOnError,
    /// Where `on_error: dead_letter` puts refused records (default `<model topic>.<sink name>.dlq`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
}

/// What a native sink does with a row it cannot deliver because of the row itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SinkOnError {
    /// Stall the sink, log the error and try again with a growing pause (nothing is dropped).
    #[default]
    Retry,
    /// Copy the record to the sink's dead-letter topic with the error in headers, and go on.
    DeadLetter,
}

/// Sink connectors, tagged by `type`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkConnector {
    /// Copy the model's rows to another Kafka topic (JSON values), delivered by `streamctl run`
    /// (and the embedded `apply`): produced, then the sink's consumer offsets committed (at least
    /// once). `apply` creates the topic.
    Kafka {
        topic: String,
        #[serde(default)]
        format: ValueFormat,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partitions: Option<i32>,
        /// The record key: these fields of the row (one field's value, or an object of several)
        /// instead of the model's key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<Vec<String>>,
        /// Single message transforms applied to each row, in order, before it is produced.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        transforms: Vec<SinkTransform>,
    },
    /// Write the model's rows to files in a directory, delivered by `streamctl run` (and the
    /// embedded `apply`). A file is closed when it reaches `roll_bytes` or `roll_seconds`, or when
    /// the run stops; a closed file's name carries the partition and the first and last offset
    /// it holds, so a restart never rewrites or repeats it.
    File {
        /// The directory, relative to the project directory unless absolute.
        path: String,
        #[serde(default)]
        format: FileFormat,
        /// Parquet files only: how their pages are compressed (default `snappy`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        compression: Option<ParquetCompression>,
        /// Close a file once it holds this many bytes (default 64 MiB; Parquet: the encoded size,
        /// plus rows not encoded yet at their JSON size).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        roll_bytes: Option<u64>,
        /// Close a file this many seconds after its first record (default 60).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        roll_seconds: Option<u64>,
        /// Single message transforms applied to each row, in order, before it is written.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        transforms: Vec<SinkTransform>,
    },
    /// Write the model's rows to a PostgreSQL table, delivered by `streamctl run` (and the embedded
    /// `apply`): a table model's rows are upserted by its key (a tombstone deletes the row), a
    /// stream model's rows are appended. Each batch of rows is written in one transaction together
    /// with the Kafka offsets it covers (table `streamctl_sink_offsets`), so after a crash the table
    /// holds every row of the topic exactly once. Connect with `url`, or with `host`, `port`,
    /// `dbname`, `user` and `password`; a password only through `{{ env_var('NAME') }}`.
    Postgres {
        /// `postgresql://user@host:port/dbname` (or `key=value` settings); instead of `host`..`password`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// Default 5432.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        port: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        dbname: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// Only through `{{ env_var('NAME') }}`: a password written in the file is an error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<String>,
        /// The table: `name` (in the user's search path) or `schema.name`.
        #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$"))]
        table: String,
        /// Create the table from the model's columns when it does not exist (a table model's key
        /// is its primary key). Without it the table must exist when the sink starts.
        #[serde(default)]
        create_table: bool,
        /// Rows written per transaction at most (default 1000).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        batch_records: Option<u32>,
        /// Single message transforms applied to each row, in order, before it is written (the
        /// table's columns are the model's after them).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        transforms: Vec<SinkTransform>,
    },
    /// Index the model's rows in OpenSearch through its `_bulk` API, delivered by `streamctl run`
    /// (and the embedded `apply`). The document id is the model's key for a table model (an update
    /// overwrites the document, a tombstone deletes it) and `<topic>-<partition>-<offset>` for a
    /// stream model, so a retry overwrites rather than doubles; the sink's consumer offsets are
    /// committed only after the bulk request succeeded. A document the index refuses (HTTP 400: a
    /// mapping or parse error) is the row's fault (see `on_error`); any other refusal (429, 5xx, a
    /// write block) or no answer stalls the sink, which retries with backoff.
    Opensearch {
        /// `http(s)://host:port` (a path prefix allowed); basic auth as `user` and `password`, or
        /// in the URL's userinfo when the whole URL is `{{ env_var('NAME') }}`.
        url: String,
        /// The index (a `route` transform picks one per row of a stream model instead).
        #[schemars(length(min = 1))]
        index: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        /// Only through `{{ env_var('NAME') }}`: a password written in the file is an error.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password: Option<String>,
        /// Documents per `_bulk` request at most (default 500).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        batch_records: Option<u32>,
        /// Bytes per `_bulk` request at most (default 5 MiB; a larger document goes alone).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        batch_bytes: Option<u64>,
        /// Single message transforms applied to each row, in order, before it is indexed.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        transforms: Vec<SinkTransform>,
    },
}

impl SinkConnector {
    /// The transforms the sink applies to each row.
    pub fn transforms(&self) -> &[SinkTransform] {
        match self {
            SinkConnector::File { transforms, .. }
            | SinkConnector::Postgres { transforms, .. }
            | SinkConnector::Opensearch { transforms, .. }
            | SinkConnector::Kafka { transforms, .. } => transforms,
        }
    }
}

/// A single message transform of a native sink, tagged by `type` (like Kafka Connect's SMTs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkTransform {
    /// Replaces the values of `fields`: a string by `replacement` (default `****`), a number by 0,
    /// a boolean by false, a list or object by an empty one; null stays null (Connect's MaskField).
    MaskField {
        #[schemars(length(min = 1))]
        fields: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replacement: Option<String>,
    },
    /// Removes `fields` from the row (Connect's ReplaceField `exclude`).
    DropField {
        #[schemars(length(min = 1))]
        fields: Vec<String>,
    },
    /// Renames fields, `from: to` (Connect's ReplaceField `renames`).
    RenameField { renames: BTreeMap<String, String> },
    /// Casts fields to SQL types, `field: TYPE` (Connect's Cast): `BOOLEAN`, `TINYINT`,
    /// `SMALLINT`, `INT`, `BIGINT`, `FLOAT`, `DOUBLE`, `DECIMAL(p,s)` or `STRING`. A value that
    /// does not convert (`abc` to `INT`, 300 to `TINYINT`) refuses the row (see the sink's `on_error`).
    Cast { fields: BTreeMap<String, String> },
    /// Converts a field between a string, a timestamp and epoch milliseconds (Connect's
    /// TimestampConverter). `format` (chrono's strftime syntax, e.g. `%Y-%m-%d %H:%M:%S`, read as
    /// UTC) is how a string field is read, or how `to: string` writes it.
    TimestampConvert {
        field: String,
        to: TimestampKind,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<String>,
    },
    /// Sets the Kafka record's key from fields (Connect's ValueToKey): one field's value, or an
    /// object of several. Kafka sinks only.
    SetKey {
        #[schemars(length(min = 1))]
        fields: Vec<String>,
    },
    /// Adds a header to each record (Connect's InsertHeader), for lineage: a fixed `value`, or
    /// `value_from: project | model | sink` (that name). Kafka sinks only.
    InsertHeader {
        #[schemars(length(min = 1))]
        header: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value_from: Option<HeaderValueFrom>,
    },
    /// Sends each row where `to` says, each `{{field}}` replaced by that field's value (like
    /// Connect's routers): the topic of a kafka sink, a subdirectory of a file sink's `path`, a
    /// table of a postgres sink (in the schema of its `table`), the index of an opensearch sink of
    /// a stream model. Characters a topic, a file name, an unquoted table name or an index name
    /// cannot hold become `_` (an index name is also lower-cased).
    Route {
        #[schemars(length(min = 1))]
        to: String,
    },
}

/// What `timestamp_convert` turns a field into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimestampKind {
    /// Text in `format`.
    String,
    /// A timestamp (`TIMESTAMP`, written `2017-09-27T17:04:17.000`).
    Timestamp,
    /// Milliseconds since 1970-01-01 UTC (`BIGINT`).
    UnixMs,
}

/// Which name `insert_header` puts in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HeaderValueFrom {
    Project,
    Model,
    Sink,
}

/// How a file sink writes rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    /// JSON Lines: one JSON object per record; a deleted table row is
    /// `{"_key": <key>, "_delete": true}`.
    #[default]
    Jsonl,
    /// Parquet: the model's columns (after the sink's transforms) with their types; a table
    /// model's files have a `_delete` column, true for a deleted key (its other columns null).
    /// Needs a streamctl built with the `parquet` feature.
    Parquet,
}

/// How a file sink compresses the pages of its Parquet files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParquetCompression {
    #[default]
    Snappy,
    None,
}

/// A file under `tests/`: unit tests of models, run offline by `streamctl test`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TestsFile {
    /// File format version; this streamctl reads version 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    pub unit_tests: Vec<UnitTest>,
}

/// Given inputs, in arrival order, the model's output must be `expect`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnitTest {
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub name: String,
    /// The model under test.
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Inputs and watermark moves, in the order they happen.
    pub given: Vec<GivenStep>,
    /// Close every window at the end, as if the watermark reached the end of time (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_of_input: Option<bool>,
    pub expect: Expectation,
}

/// One step: rows arriving on an input, or the watermark moving.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum GivenStep {
    Rows {
        /// `source('group', 'table')`, `ref('model')`, `group.table` or `model`.
        input: String,
        /// Rows as the topic holds them (column names as in the data). Extra keys: `_key`,
        /// `_partition`, `_timestamp` (ms), `_delete: true` (a tombstone of a table row's key),
        /// `_raw` (the record value as text, for bad records).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rows: Option<Vec<serde_json::Map<String, serde_json::Value>>>,
        /// Rows from a `.jsonl` or `.csv` file, relative to the project directory.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
    },
    Watermark {
        /// Event time to move the watermark to: epoch ms, or `yyyy-MM-dd HH:mm:ss[.SSS]` (UTC).
        watermark: serde_json::Value,
    },
}

/// What the model must produce.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// Output rows; only the columns named are compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<Vec<serde_json::Map<String, serde_json::Value>>>,
    /// Output rows from a `.jsonl` or `.csv` file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Compare in order (the sequence of updates) instead of as a set.
    #[serde(default)]
    pub ordered: bool,
    /// Number of records that must reach the dead-letter output (bad or late).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letters: Option<usize>,
    /// Number of late events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late: Option<usize>,
}
