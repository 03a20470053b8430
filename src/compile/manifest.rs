//! `target/manifest.json`: the compiled project for tools and for `plan`. Its JSON Schema is
//! generated from these types and checked in as `schemas/manifest.schema.json`.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{CompiledProject, OperatorKind};
use crate::graph::NodeId;
use crate::project::config::{ModelConfig, OnError, RelationKind, ValueFormat};
use crate::project::connectors::ConnectorKind;
use crate::project::target::DEFAULT_CONNECT_CLUSTER;
use crate::sql::dialect::{EmitMode, WindowKind};
use crate::sql::types::sql_type_name;

pub const MANIFEST_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Manifest {
    pub manifest_version: u32,
    pub streamctl_version: String,
    pub project: String,
    pub project_version: String,
    /// Every node by unique id (`source.soe.orders`, `model.x`, `sink.y`, `connector.z`).
    pub nodes: BTreeMap<String, ManifestNode>,
    /// `[from, to]`: `to` reads `from`.
    pub edges: Vec<[String; 2]>,
    /// Unique ids in dependency order (deploy order).
    pub order: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ManifestColumn {
    pub name: String,
    /// SQL type (`INT`, `STRING`, `DECIMAL(10,2)`, ...).
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ManifestWindow {
    #[serde(rename = "type")]
    pub kind: String,
    pub size_ms: Option<i64>,
    pub advance_ms: Option<i64>,
    pub gap_ms: Option<i64>,
    pub grace_ms: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
pub struct ManifestNode {
    pub unique_id: String,
    pub resource_type: String,
    pub name: String,
    /// File that defines the node, relative to the project.
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub depends_on: Vec<String>,
    /// Output (or source) columns, in order.
    pub columns: Vec<ManifestColumn>,
    /// Topic read (source) or written (model, kafka sink).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<RelationKind>,
    pub key: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ValueFormat>,
    // Sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_time_column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_lateness_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
    // Models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ModelConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<OperatorKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<ManifestWindow>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emit: Option<EmitMode>,
    /// Path of the rendered SQL under `target/compiled/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compiled_path: Option<String>,
    /// Hash of the normalized logical plan (plus window, emit mode and key): whitespace and
    /// comments do not change it, a changed expression does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub semantic_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    // Kafka Connect connectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<ManifestConnector>,
}

/// A Kafka Connect connector of `connectors/*.yml`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ManifestConnector {
    /// `source` or `sink`.
    #[serde(rename = "type")]
    pub kind: String,
    pub class: String,
    /// The target's Connect cluster that runs it.
    pub cluster: String,
    /// Topics it writes (source) or reads (sink).
    pub topics: Vec<String>,
    /// Its single message transforms, `name: class`, in order.
    pub transforms: Vec<String>,
}

fn columns_of(schema: &datafusion::arrow::datatypes::Schema, docs: &[(String, Option<String>)]) -> Vec<ManifestColumn> {
    schema
        .fields()
        .iter()
        .map(|f| ManifestColumn {
            name: f.name().clone(),
            data_type: sql_type_name(f.data_type()),
            nullable: f.is_nullable(),
            description: docs.iter().find(|(n, _)| n.eq_ignore_ascii_case(f.name())).and_then(|(_, d)| d.clone()),
        })
        .collect()
}

/// Path of a model's compiled SQL relative to `target/compiled/`.
pub fn compiled_path(model_path: &std::path::Path) -> String {
    model_path.display().to_string().replace('\\', "/")
}

impl Manifest {
    pub fn build(c: &CompiledProject) -> Manifest {
        let mut nodes = BTreeMap::new();
        let deps = |id: &NodeId| c.graph.parents(id).iter().map(NodeId::unique_id).collect::<Vec<_>>();
        for (name, s) in &c.sources {
            let id = NodeId::Source(name.clone());
            let docs: Vec<(String, Option<String>)> =
                s.columns.iter().map(|c| (c.name.clone(), c.description.clone())).collect();
            let mut tags = s.decl.group_tags.clone();
            tags.extend(s.decl.table.tags.iter().cloned());
            nodes.insert(
                id.unique_id(),
                ManifestNode {
                    unique_id: id.unique_id(),
                    resource_type: "source".into(),
                    name: name.clone(),
                    path: s.decl.origin.doc.source.path.display().to_string(),
                    description: s.decl.table.description.clone(),
                    tags,
                    columns: columns_of(&s.schema, &docs),
                    topic: Some(s.decl.table.topic.clone()),
                    kind: Some(s.decl.table.kind),
                    key: s.key.clone(),
                    format: Some(s.decl.table.format),
                    event_time_column: s.event_time.as_ref().map(|e| e.column.clone()),
                    allowed_lateness_ms: s.event_time.as_ref().map(|e| e.allowed_lateness_ms),
                    on_error: Some(s.decl.table.on_error),
                    ..Default::default()
                },
            );
        }
        for (name, m) in &c.models {
            let id = NodeId::Model(name.clone());
            let docs: Vec<(String, Option<String>)> = c
                .project
                .model_props
                .get(name)
                .map(|p| p.props.columns.iter().map(|c| (c.name.clone(), c.description.clone())).collect())
                .unwrap_or_default();
            let window = m.window().map(|w| {
                let (kind, size, advance, gap) = match w.kind {
                    WindowKind::Tumbling { size_ms } => ("tumbling", Some(size_ms), None, None),
                    WindowKind::Hopping { size_ms, advance_ms } => ("hopping", Some(size_ms), Some(advance_ms), None),
                    WindowKind::Session { gap_ms } => ("session", None, None, Some(gap_ms)),
                };
                ManifestWindow {
                    kind: kind.into(),
                    size_ms: size,
                    advance_ms: advance,
                    gap_ms: gap,
                    grace_ms: w.grace_ms,
                }
            });
            nodes.insert(
                id.unique_id(),
                ManifestNode {
                    unique_id: id.unique_id(),
                    resource_type: "model".into(),
                    name: name.clone(),
                    path: m.file.path.display().to_string(),
                    description: m.description.clone(),
                    tags: m.tags.clone(),
                    depends_on: deps(&id),
                    columns: columns_of(&m.schema, &docs),
                    topic: Some(m.topic.clone()),
                    kind: Some(m.kind),
                    key: m.key.clone(),
                    format: Some(ValueFormat::Json),
                    config: Some(m.config.clone()),
                    operator: Some(m.operator),
                    window,
                    emit: Some(m.emit),
                    compiled_path: Some(compiled_path(&m.file.path)),
                    semantic_hash: Some(m.semantic_hash.clone()),
                    config_hash: Some(m.config_hash.clone()),
                    ..Default::default()
                },
            );
        }
        for (name, s) in &c.sinks {
            let id = NodeId::Sink(name.clone());
            let (topic, format, key) = match &s.decl.sink.connector {
                crate::project::config::SinkConnector::Kafka { topic, format, key, .. } => {
                    (Some(topic.clone()), Some(*format), key.clone().unwrap_or_default())
                }
                crate::project::config::SinkConnector::File { .. }
                | crate::project::config::SinkConnector::Postgres { .. }
                | crate::project::config::SinkConnector::Opensearch { .. } => (None, None, Vec::new()),
            };
            let columns = c.models.get(&s.from).map(|m| columns_of(&m.schema, &[])).unwrap_or_default();
            nodes.insert(
                id.unique_id(),
                ManifestNode {
                    unique_id: id.unique_id(),
                    resource_type: "sink".into(),
                    name: name.clone(),
                    path: s.decl.origin.doc.source.path.display().to_string(),
                    description: s.decl.sink.description.clone(),
                    tags: s.decl.sink.tags.clone(),
                    depends_on: deps(&id),
                    columns,
                    topic,
                    key,
                    format,
                    ..Default::default()
                },
            );
        }
        for cd in &c.project.connectors {
            let def = &cd.connector;
            let id = NodeId::Connector(def.name.clone());
            let topics = match def.kind {
                ConnectorKind::Source => def.topics.clone(),
                ConnectorKind::Sink => {
                    def.from.iter().filter_map(|m| c.models.get(m)).map(|m| m.topic.clone()).collect()
                }
            };
            let description = def
                .description
                .clone()
                .or_else(|| Some(format!("Kafka Connect {} connector {}", def.kind.word(), def.class)));
            nodes.insert(
                id.unique_id(),
                ManifestNode {
                    unique_id: id.unique_id(),
                    resource_type: "connector".into(),
                    name: def.name.clone(),
                    path: cd.origin.doc.source.path.display().to_string(),
                    description,
                    tags: def.tags.clone(),
                    depends_on: deps(&id),
                    connector: Some(ManifestConnector {
                        kind: def.kind.word().into(),
                        class: def.class.clone(),
                        cluster: def.cluster.clone().unwrap_or_else(|| DEFAULT_CONNECT_CLUSTER.into()),
                        topics,
                        transforms: def.transforms.iter().map(|t| format!("{}: {}", t.name, t.class)).collect(),
                    }),
                    ..Default::default()
                },
            );
        }
        let edges = c
            .graph
            .edges()
            .into_iter()
            .filter(|(a, b)| nodes.contains_key(&a.unique_id()) && nodes.contains_key(&b.unique_id()))
            .map(|(a, b)| [a.unique_id(), b.unique_id()])
            .collect();
        let order = c.order().iter().map(NodeId::unique_id).filter(|id| nodes.contains_key(id)).collect();
        Manifest {
            manifest_version: MANIFEST_VERSION,
            streamctl_version: env!("CARGO_PKG_VERSION").into(),
            project: c.project.config.name.clone(),
            project_version: c.project.config.version.clone(),
            nodes,
            edges,
            order,
        }
    }

    pub fn schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(Manifest)).expect("schema serializes")
    }
}
