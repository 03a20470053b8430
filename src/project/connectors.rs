//! `connectors/*.yml`: Kafka Connect connectors the project manages (CDC sources that bring
//! tables in, sinks that take model outputs out), as Rust types. Like the other file types the
//! JSON Schema in `schemas/connectors.schema.json` is generated from them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

fn one() -> u32 {
    1
}

/// A file under `connectors/`: Kafka Connect connectors that `plan` diffs with the target's
/// Connect cluster and `apply` creates or updates there.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectorsFile {
    /// File format version; this streamctl reads version 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1))]
    pub version: u32,
    pub connectors: Vec<ConnectorDef>,
}

/// One connector, named as in Kafka Connect.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectorDef {
    /// The connector's name in Kafka Connect (its offsets are kept under it).
    #[schemars(regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `source`: writes Kafka topics (CDC from a database); `sink`: reads models' output topics.
    #[serde(rename = "type")]
    pub kind: ConnectorKind,
    /// The Connect cluster of the target that runs it: `default` (the target's `connect_url`) or a
    /// name from its `connect_clusters`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The connector's Java class (`connector.class`).
    #[schemars(length(min = 1))]
    pub class: String,
    /// `tasks.max` (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tasks_max: Option<u32>,
    /// Source connectors: the topics it writes. Sources reading them come after it in the
    /// lineage, and `apply` creates it before the jobs that read them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// Sink connectors: the models whose output topics it reads (streamctl sets `topics`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
    /// The connector's own settings, as Connect's properties. Secrets (a key naming a password,
    /// secret, token, credential or private key) only through `{{ env_var('NAME') }}`.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigScalar>,
    /// Single message transforms, in order: each becomes `transforms.<name>.type` and
    /// `transforms.<name>.<setting>`, and the names make `transforms`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transforms: Vec<ConnectTransform>,
    /// Connect's error handling (`errors.*`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<ConnectErrors>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    Source,
    Sink,
}

impl ConnectorKind {
    pub fn word(self) -> &'static str {
        match self {
            ConnectorKind::Source => "source",
            ConnectorKind::Sink => "sink",
        }
    }
}

/// A property value: text, a number or a boolean (sent to Connect as text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ConfigScalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl ConfigScalar {
    pub fn text(&self) -> String {
        match self {
            ConfigScalar::Bool(b) => b.to_string(),
            ConfigScalar::Int(i) => i.to_string(),
            ConfigScalar::Float(f) => f.to_string(),
            ConfigScalar::Text(s) => s.clone(),
        }
    }
}

/// One single message transform of a connector: `name`, the transform's class as `type`, and
/// its settings beside them (`fields: email` becomes `transforms.<name>.fields=email`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectTransform {
    /// The transform's alias in `transforms`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub name: String,
    /// Its class, e.g. `org.apache.kafka.connect.transforms.MaskField$Value`.
    #[serde(rename = "type")]
    #[schemars(length(min = 1))]
    pub class: String,
    /// Its settings.
    #[serde(flatten)]
    pub settings: BTreeMap<String, ConfigScalar>,
}

/// Connect's error handling for a connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectErrors {
    /// `none` (default: the task fails on the first bad record) or `all` (bad records are skipped,
    /// or sent to the dead-letter topic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance: Option<ErrorTolerance>,
    /// Log each failed operation and its record (`errors.log.enable`, `errors.log.include.messages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<bool>,
    /// Sink connectors: the dead-letter topic for records that fail (`errors.deadletterqueue.topic.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_topic: Option<String>,
    /// Add headers with the failure's context (topic, partition, offset, exception) to each
    /// dead-letter record (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_headers: Option<bool>,
    /// How long a failed operation is retried, in ms (`errors.retry.timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_timeout_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorTolerance {
    None,
    All,
}
