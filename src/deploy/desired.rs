//! The desired state of a target: what the compiled project says should exist there.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use crate::compile::names::TopicRole;
use crate::compile::{CompiledProject, OperatorKind};
use crate::graph::NodeId;
use crate::project::config::{Guarantee, KeyFormat, RelationKind, TargetKind};
use crate::project::connectors::ConnectorKind;
use crate::project::target::{ResolvedTarget, DEFAULT_CONNECT_CLUSTER};
use crate::registry::{json_schema_of, json_schema_of_scalar, Compatibility, SchemaType};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TopicSpec {
    pub name: String,
    pub role: TopicRole,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Topic configs streamctl sets (`cleanup.policy`).
    pub configs: BTreeMap<String, String>,
    /// The model or source it belongs to.
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SchemaSpec {
    pub subject: String,
    pub schema_type: SchemaType,
    pub schema: String,
    /// Level checked at plan time; None: the registry's own level for the subject, or the default.
    pub compatibility: Option<Compatibility>,
    pub model: String,
    pub topic: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobSpec {
    pub model: String,
    pub semantic_hash: String,
    pub config_hash: String,
    /// Kind of operator: stateless, stream_table_join, windowed_aggregate, aggregate.
    pub operator: OperatorKind,
    pub stateful: bool,
    /// Input topics, and the sources and models among the inputs.
    pub input_topics: Vec<String>,
    #[serde(default)]
    pub input_sources: Vec<String>,
    pub input_models: Vec<String>,
    pub output_topic: String,
    pub consumer_group: String,
    pub checkpoint_topic: String,
    /// `earliest`, `latest` or an RFC 3339 time: where a new or rebuilt job starts.
    pub replay: String,
    /// The rendered SQL, for the plan's diff.
    pub sql: String,
    /// `exactly_once` or `at_least_once`: the model's own setting, else the target's. Jobs
    /// deployed before this was recorded ran at least once.
    #[serde(default = "recorded_before_guarantees")]
    pub guarantee: Guarantee,
}

fn recorded_before_guarantees() -> Guarantee {
    Guarantee::AtLeastOnce
}

impl JobSpec {
    /// What the job keeps in its state, in words.
    pub fn state_layout(&self) -> &'static str {
        match self.operator {
            OperatorKind::Stateless => "no state",
            OperatorKind::StreamTableJoin => "latest row per key of the joined table",
            OperatorKind::WindowedAggregate => "partial aggregates per group and open window",
            OperatorKind::Aggregate => "partial aggregates per group",
        }
    }
}

/// A Kafka Connect connector as the project wants it on the target's Connect cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectorSpec {
    pub name: String,
    /// `source` or `sink`.
    pub kind: ConnectorKind,
    /// The target's Connect cluster (`default`: its `connect_url`).
    pub cluster: String,
    /// Connect's properties as the project writes them: `{{ env_var(..) }}` is rendered only
    /// when the plan is made and applied, so no secret is in a plan, a record or a log.
    pub config: BTreeMap<String, String>,
    /// Topics it writes (source) or reads (sink).
    pub topics: Vec<String>,
    /// Sink connectors: the models it reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
}

impl ConnectorSpec {
    pub fn class(&self) -> &str {
        self.config.get("connector.class").map_or("", String::as_str)
    }
}

/// The project files a deployment runs from: workers compile the deployed generation from
/// these, not from whatever checkout they were started in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Bundle {
    pub hash: String,
    pub files: BTreeMap<String, String>,
}

impl Bundle {
    pub fn new(files: BTreeMap<String, String>) -> Bundle {
        let mut h = Sha256::new();
        for (p, t) in &files {
            h.update(p.as_bytes());
            h.update([0]);
            h.update(t.as_bytes());
            h.update([0]);
        }
        Bundle { hash: hex(&h.finalize()[..8]), files }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DesiredState {
    pub project: String,
    pub topics: BTreeMap<String, TopicSpec>,
    pub schemas: BTreeMap<String, SchemaSpec>,
    pub jobs: BTreeMap<String, JobSpec>,
    /// Kafka Connect connectors (none on the embedded target, which has no Connect).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connectors: BTreeMap<String, ConnectorSpec>,
    /// Models in dependency order.
    pub order: Vec<String>,
    /// Which models read which (for "downstream affected").
    pub downstream: BTreeMap<String, Vec<String>>,
    pub bundle: Bundle,
}

impl DesiredState {
    pub fn of(cp: &CompiledProject, target: &ResolvedTarget) -> DesiredState {
        let project = cp.project.config.name.clone();
        let rf = target.replication_factor;
        let mut topics = BTreeMap::new();
        let mut schemas = BTreeMap::new();
        let mut jobs = BTreeMap::new();
        let mut order = Vec::new();
        let mut downstream: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut add_topic = |name: &str, role: TopicRole, partitions: i32, compacted: bool, owner: &str| {
            let mut configs = BTreeMap::new();
            if compacted {
                configs.insert("cleanup.policy".to_string(), "compact".to_string());
            }
            topics.entry(name.to_string()).or_insert_with(|| TopicSpec {
                name: name.to_string(),
                role,
                partitions,
                replication_factor: rf,
                configs,
                owner: owner.to_string(),
            });
        };
        let connector_topics: std::collections::BTreeSet<&String> = cp
            .project
            .connectors
            .iter()
            .filter(|c| c.connector.kind == ConnectorKind::Source)
            .flat_map(|c| &c.connector.topics)
            .collect();
        for id in cp.order() {
            let NodeId::Model(name) = &id else { continue };
            let Some(m) = cp.models.get(name) else { continue };
            if !m.resolved.enabled {
                continue;
            }
            order.push(name.clone());
            for t in &m.resolved.topics {
                // The embedded target runs a job with a repartition topic as one task (`ops::host`).
                if t.role == TopicRole::Repartition && target.kind == TargetKind::Embedded {
                    continue;
                }
                add_topic(&t.name, t.role, t.partitions, t.compacted, &t.owner);
            }
            let mut input_topics = Vec::new();
            let mut input_sources = Vec::new();
            let mut input_models = Vec::new();
            for input in &m.inputs {
                match input {
                    NodeId::Source(s) => {
                        let src = &cp.sources[s];
                        input_topics.push(src.decl.table.topic.clone());
                        input_sources.push(s.clone());
                        // Topics a source connector writes are created with the source's shape
                        // before the connector starts (a CDC table compacted), as on the embedded
                        // target every source topic.
                        if target.kind == TargetKind::Embedded || connector_topics.contains(&src.decl.table.topic) {
                            let t = &src.decl.table;
                            add_topic(&t.topic, TopicRole::Source, src.partitions, t.kind == RelationKind::Table, s);
                        }
                    }
                    NodeId::Model(u) => {
                        if let Some(um) = cp.models.get(u) {
                            input_topics.push(um.topic.clone());
                        }
                        input_models.push(u.clone());
                        downstream.entry(u.clone()).or_default().push(name.clone());
                    }
                    NodeId::Sink(_) | NodeId::Connector(_) => {}
                }
            }
            let value_subject = format!("{}-value", m.topic);
            // An Avro output's schema comes from its columns, as the runtime writes them.
            let (schema_type, schema) = match crate::formats::avro::output_schema(&m.name, &m.schema) {
                Ok(avro) if m.config.format == Some(crate::project::config::ValueFormat::Avro) => {
                    (SchemaType::Avro, avro)
                }
                _ => (SchemaType::Json, json_schema_of(name, &m.schema, None)),
            };
            schemas.insert(
                value_subject.clone(),
                SchemaSpec {
                    subject: value_subject,
                    schema_type,
                    schema,
                    compatibility: m.config.schema_compatibility,
                    model: name.clone(),
                    topic: m.topic.clone(),
                },
            );
            let key_format = m.config.key_format.unwrap_or_default();
            // Keys in Kafka's primitive serializers have no registered schema.
            if !m.key.is_empty() && matches!(key_format, KeyFormat::Json | KeyFormat::Avro) {
                let key_subject = format!("{}-key", m.topic);
                let avro_key = match key_format {
                    KeyFormat::Avro => crate::formats::keys::avro_key_schema(&m.name, &m.key, &m.schema).ok(),
                    _ => None,
                };
                let schema = match m.key.as_slice() {
                    _ if avro_key.is_some() => avro_key.as_ref().map(|k| k.to_string()).unwrap_or_default(),
                    [one] => m
                        .schema
                        .fields()
                        .iter()
                        .find(|f| f.name().eq_ignore_ascii_case(one))
                        .map(|f| json_schema_of_scalar(&format!("{name} key"), f.data_type()))
                        .unwrap_or_default(),
                    many => json_schema_of(&format!("{name} key"), &m.schema, Some(many)),
                };
                schemas.insert(
                    key_subject.clone(),
                    SchemaSpec {
                        subject: key_subject,
                        schema_type: if avro_key.is_some() { SchemaType::Avro } else { SchemaType::Json },
                        schema,
                        compatibility: m.config.schema_compatibility,
                        model: name.clone(),
                        topic: m.topic.clone(),
                    },
                );
            }
            jobs.insert(
                name.clone(),
                JobSpec {
                    model: name.clone(),
                    semantic_hash: m.semantic_hash.clone(),
                    config_hash: m.config_hash.clone(),
                    operator: m.operator,
                    stateful: m.stateful(),
                    input_topics,
                    input_sources,
                    input_models,
                    output_topic: m.topic.clone(),
                    consumer_group: m.resolved.consumer_group.clone(),
                    checkpoint_topic: m.resolved.checkpoint_topic.clone(),
                    replay: m.resolved.replay.text().to_string(),
                    sql: m.rendered_sql.trim().to_string(),
                    guarantee: m.resolved.guarantee_on(target.guarantee),
                },
            );
        }
        let mut connectors = BTreeMap::new();
        if target.kind != TargetKind::Embedded {
            for c in &cp.project.connectors {
                let def = &c.connector;
                let models: Vec<String> = def.from.iter().filter(|m| cp.models.contains_key(*m)).cloned().collect();
                let read: Vec<String> = models.iter().map(|m| cp.models[m].topic.clone()).collect();
                let spec = ConnectorSpec {
                    name: def.name.clone(),
                    kind: def.kind,
                    cluster: def.cluster.clone().unwrap_or_else(|| DEFAULT_CONNECT_CLUSTER.into()),
                    config: crate::connect::properties(def, &read, rf),
                    topics: if def.kind == ConnectorKind::Source { def.topics.clone() } else { read },
                    models,
                };
                connectors.insert(def.name.clone(), spec);
            }
        }
        DesiredState {
            project,
            topics,
            schemas,
            jobs,
            connectors,
            order,
            downstream,
            bundle: Bundle::new(cp.project.definition_files()),
        }
    }

    /// Every model downstream of `model`, transitively, in dependency order.
    pub fn downstream_of(&self, model: &str) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        let mut stack = vec![model.to_string()];
        while let Some(m) = stack.pop() {
            for d in self.downstream.get(&m).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        self.order.iter().filter(|m| seen.contains(*m)).cloned().collect()
    }
}
