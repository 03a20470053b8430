//! project → graph → compile: renders every model, builds the dependency graph, and plans each
//! model's SQL with DataFusion against its inputs' schemas (sources' declared schemas, upstream
//! models' inferred output schemas), in dependency order. What comes out is everything later
//! stages need: output schemas, the streaming shape of each model, and a semantic hash.

pub(crate) mod carry_over;
pub(crate) mod catalog;
mod connector_checks;
pub use connector_checks::target_problems as connector_target_problems;
mod contract;
mod dependencies;
pub mod manifest;
mod model;
pub mod names;
mod positions;
pub mod repartition;
pub(crate) mod resolved;
pub(crate) mod sink_checks;
pub(crate) mod sink_transforms;
pub(crate) mod source_schema;
mod sources;
pub(crate) mod streaming;
pub(crate) mod topic_names;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast::Statement;

use crate::diagnostics::{Diagnostics, SourceText};
use crate::graph::select::NodeInfo;
use crate::graph::{Graph, NodeId};
use crate::jinja::{Jinja, Rendered};
use crate::project::config::{ModelConfig, RelationKind};
use crate::project::{Project, SourceDecl};
use crate::sql::dialect::{EmitMode, PseudoColumn, StreamingSql, WindowSpec, WINDOWEND, WINDOWSTART};
use crate::sql::functions;
use catalog::RelationSchema;
pub(crate) use model::group_columns;
pub use resolved::{ReplayStart, ResolvedConfig};
use source_schema::ResolvedColumn;

/// Schema name under which models are registered for planning.
pub const MODEL_SCHEMA: &str = "public";

/// Hidden output column carrying each row's event time through stream models.
pub const ROWTIME_COLUMN: &str = "__streamctl_rowtime";

pub use crate::formats::EventTimeSpec;

#[derive(Debug, Clone)]
pub struct CompiledSource {
    pub decl: SourceDecl,
    /// Columns as named in the data (JSON field names).
    pub columns: Vec<ResolvedColumn>,
    /// The SQL schema: column names normalized to lowercase, as unquoted identifiers resolve.
    pub schema: SchemaRef,
    pub key: Vec<String>,
    pub event_time: Option<EventTimeSpec>,
    /// Partitions of its topic, when streamctl creates it (embedded target, sample data).
    pub partitions: i32,
    /// How late its events may arrive (0 without an event time column).
    pub allowed_lateness_ms: i64,
    /// Where its undecodable (with `on_error: dead_letter`) and late records go.
    pub dead_letter_topic: String,
    /// Columns read from the record's headers, not from its value.
    pub header_columns: Vec<crate::formats::headers::HeaderColumn>,
}

impl CompiledSource {
    /// The columns read from the record's value: their SQL schema and names in the data.
    pub fn value_columns(&self) -> (SchemaRef, Vec<String>) {
        let idx: Vec<usize> =
            (0..self.columns.len()).filter(|i| !self.header_columns.iter().any(|h| h.index == *i)).collect();
        let schema = self.schema.project(&idx).map(Arc::new).unwrap_or_else(|_| self.schema.clone());
        (schema, idx.iter().map(|i| self.columns[*i].name.clone()).collect())
    }
}

/// The streaming shape of a model, which decides the operator the runtime runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperatorKind {
    /// Projection and filter: no state.
    Stateless,
    /// Each stream event joined to the current row of a table.
    StreamTableJoin,
    /// Aggregation per window of event time.
    WindowedAggregate,
    /// Running aggregation (a table updated by every event).
    Aggregate,
}

#[derive(Debug, Clone)]
pub struct CompiledModel {
    pub name: String,
    pub file: SourceText,
    pub rendered_sql: String,
    pub streaming: StreamingSql,
    /// The query as planned (after the window rewrite), for the runtime.
    pub statement: Statement,
    pub plan: LogicalPlan,
    pub schema: SchemaRef,
    pub config: ModelConfig,
    pub kind: RelationKind,
    pub operator: OperatorKind,
    pub emit: EmitMode,
    pub topic: String,
    pub key: Vec<String>,
    pub inputs: Vec<NodeId>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub semantic_hash: String,
    pub config_hash: String,
    /// The operators the runtime runs for this model.
    pub job: streaming::job::JobPlan,
    /// Each input's schema as planned (its columns plus the pseudo and window columns used).
    pub input_schemas: BTreeMap<NodeId, SchemaRef>,
    /// The input the WINDOW applies to.
    pub windowed_input: Option<NodeId>,
    /// Index in the job's output of the hidden event-time column, for stream models.
    pub rowtime_column: Option<usize>,
    /// The configuration as deploy and the runtime read it.
    pub resolved: ResolvedConfig,
}

impl CompiledModel {
    pub fn window(&self) -> Option<WindowSpec> {
        self.streaming.window
    }

    /// Whether the job keeps state between batches (a changed stateful job rebuilds it).
    pub fn stateful(&self) -> bool {
        self.operator != OperatorKind::Stateless
    }
}

#[derive(Debug, Clone)]
pub struct CompiledSink {
    pub decl: crate::project::SinkDecl,
    pub from: String,
    /// The group a native sink commits the offsets it has delivered to (after `topic_prefix`).
    pub consumer_group: String,
}

/// A project checked and planned. Models whose SQL (or whose inputs) failed are absent from
/// `models`; `diagnostics` says why.
pub struct CompiledProject {
    pub project: Project,
    pub graph: Graph,
    pub sources: BTreeMap<String, CompiledSource>,
    pub models: BTreeMap<String, CompiledModel>,
    pub sinks: BTreeMap<String, CompiledSink>,
    pub node_info: BTreeMap<NodeId, NodeInfo>,
    pub diagnostics: Diagnostics,
}

impl CompiledProject {
    /// Nodes in deploy order (inputs first).
    pub fn order(&self) -> Vec<NodeId> {
        self.graph.topo_order().unwrap_or_default()
    }

    pub fn relation_kind(&self, id: &NodeId) -> Option<RelationKind> {
        match id {
            NodeId::Source(n) => self.sources.get(n).map(|s| s.decl.table.kind),
            NodeId::Model(n) => self.models.get(n).map(|m| m.kind),
            NodeId::Sink(_) | NodeId::Connector(_) => None,
        }
    }
}

/// A DataFusion session set up for planning streamctl models: one partition, spans collected
/// for error positions, streamctl's functions registered.
pub fn planning_context() -> SessionContext {
    let mut config = SessionConfig::new().with_target_partitions(1).with_information_schema(false);
    config.options_mut().sql_parser.collect_spans = true;
    config.options_mut().sql_parser.enable_ident_normalization = true;
    let ctx = SessionContext::new_with_config(config);
    for udf in functions::udfs() {
        ctx.register_udf(udf);
    }
    ctx
}

pub fn pseudo_field(pc: PseudoColumn) -> Field {
    match pc {
        PseudoColumn::Rowtime => Field::new(pc.name(), DataType::Int64, false),
        PseudoColumn::Rowpartition => Field::new(pc.name(), DataType::Int32, false),
        PseudoColumn::Rowoffset => Field::new(pc.name(), DataType::Int64, false),
    }
}

pub fn window_fields() -> [Field; 2] {
    [Field::new(WINDOWSTART, DataType::Int64, false), Field::new(WINDOWEND, DataType::Int64, false)]
}

/// `schema` plus extra fields (those it does not already have).
pub fn with_fields(schema: &Schema, extra: impl IntoIterator<Item = Field>) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    for f in extra {
        if schema.field_with_name(f.name()).is_err() {
            fields.push(f);
        }
    }
    Arc::new(Schema::new(fields))
}

struct Compiler<'a> {
    project: &'a Project,
    diags: Diagnostics,
    ctx: SessionContext,
    schemas: BTreeMap<String, Arc<RelationSchema>>,
    /// Where a source's missing columns come from (`None`: the project's file registry `schemas/`).
    registry: Option<Arc<dyn crate::registry::SchemaRegistry>>,
}

/// Compiles a project: every problem goes into `diagnostics`, nothing stops at the first one.
pub async fn compile(project: Project, diags: Diagnostics) -> CompiledProject {
    compile_with_registry(project, diags, None).await
}

/// Compiles a project; Avro sources without `columns:` (and `schema: {subject}`) take their
/// columns from `registry` (the target's), else from the project's file registry `schemas/`.
pub async fn compile_with_registry(
    project: Project,
    mut diags: Diagnostics,
    registry: Option<Arc<dyn crate::registry::SchemaRegistry>>,
) -> CompiledProject {
    let ctx = planning_context();
    let mut c = Compiler { project: &project, diags: Diagnostics::new(), ctx, schemas: BTreeMap::new(), registry };
    c.register_schema(MODEL_SCHEMA);

    let sources = c.compile_sources();
    let mut jinja = Jinja::new(project.config.vars.clone());
    c.diags.extend(jinja.add_macro_files(&project.macro_files));
    let mut rendered: BTreeMap<String, Rendered> = BTreeMap::new();
    for m in &project.models {
        match jinja.render(&m.source) {
            Ok(r) => {
                rendered.insert(m.name.clone(), r);
            }
            Err(d) => c.diags.push(d),
        }
    }
    let (graph, unresolved) = c.build_graph(&rendered);

    let mut models: BTreeMap<String, CompiledModel> = BTreeMap::new();
    let order = match graph.topo_order() {
        Ok(o) => o,
        Err(cycles) => {
            c.report_cycles(&cycles);
            Vec::new()
        }
    };
    for id in &order {
        let NodeId::Model(name) = id else { continue };
        if unresolved.contains(name) {
            continue;
        }
        let (Some(file), Some(r)) = (project.models.iter().find(|m| &m.name == name), rendered.get(name)) else {
            continue;
        };
        let inputs = graph.parents(id);
        // A model whose inputs did not compile cannot be checked; their errors are reported already.
        let ready = inputs.iter().all(|i| match i {
            NodeId::Source(n) => sources.contains_key(n),
            NodeId::Model(n) => models.contains_key(n),
            NodeId::Sink(_) | NodeId::Connector(_) => false,
        });
        if !ready {
            continue;
        }
        if let Some(mut m) = c.compile_model(file, r, inputs, &sources, &models).await {
            m.resolved.repartition = repartition::decide(&project.config.name, &m, &sources, &models);
            if let repartition::Repartitioning::Topic(rp) = &m.resolved.repartition {
                m.resolved.topics.push(names::JobTopic {
                    name: rp.topic.clone(),
                    role: names::TopicRole::Repartition,
                    partitions: rp.partitions,
                    compacted: false,
                    owner: m.name.clone(),
                });
            }
            c.schemas[MODEL_SCHEMA].insert(&m.name, m.schema.clone());
            models.insert(m.name.clone(), m);
        }
    }

    let mut sinks = BTreeMap::new();
    for s in &project.sinks {
        if let Some(m) = models.get_mut(&s.sink.from) {
            let consumer_group = names::sink_consumer_group(&project.config.name, &s.sink.name);
            sinks.insert(
                s.sink.name.clone(),
                CompiledSink { decl: s.clone(), from: s.sink.from.clone(), consumer_group },
            );
            // A kafka sink's topic is created with its model's topics (as many partitions, and
            // compacted for a table, unless it says otherwise).
            if let crate::project::config::SinkConnector::Kafka { topic, partitions, .. } = &s.sink.connector {
                let model_partitions = m.resolved.topics.iter().find(|t| t.name == m.topic).map_or(1, |t| t.partitions);
                if !m.resolved.topics.iter().any(|t| &t.name == topic) {
                    m.resolved.topics.push(names::JobTopic {
                        name: topic.clone(),
                        role: names::TopicRole::Output,
                        partitions: partitions.unwrap_or(model_partitions),
                        compacted: m.kind == RelationKind::Table,
                        owner: m.name.clone(),
                    });
                }
            }
            // A native sink's dead-letter topic is created with its model's topics.
            if s.sink.on_error == crate::project::config::SinkOnError::DeadLetter {
                let name = names::sink_dead_letter_topic(s.sink.dead_letter_topic.as_deref(), &m.topic, &s.sink.name);
                if !m.resolved.topics.iter().any(|t| t.name == name) {
                    m.resolved.topics.push(names::JobTopic {
                        name,
                        role: names::TopicRole::DeadLetter,
                        partitions: 1,
                        compacted: false,
                        // Planned, applied and destroyed with the model's own topics.
                        owner: m.name.clone(),
                    });
                }
            }
        }
    }
    let node_info = node_info(&project, &models);
    diags.extend(c.diags.iter().cloned());
    let mut cp = CompiledProject { graph, sources, models, sinks, node_info, diagnostics: diags, project };
    let refused_names = topic_names::check(&cp);
    cp.diagnostics.extend(refused_names);
    let sink_problems = sink_checks::check(&cp);
    cp.diagnostics.extend(sink_problems);
    let connector_problems = connector_checks::check(&cp);
    cp.diagnostics.extend(connector_problems);
    cp
}

fn node_info(project: &Project, models: &BTreeMap<String, CompiledModel>) -> BTreeMap<NodeId, NodeInfo> {
    let mut out = BTreeMap::new();
    for s in &project.sources {
        let mut tags = s.group_tags.clone();
        tags.extend(s.table.tags.iter().cloned());
        out.insert(NodeId::Source(s.full_name()), NodeInfo { tags, path: Some(s.origin.doc.source.path.clone()) });
    }
    for m in &project.models {
        let tags = models
            .get(&m.name)
            .map(|c| c.tags.clone())
            .unwrap_or_else(|| project.model_props.get(&m.name).map(|p| p.props.tags.clone()).unwrap_or_default());
        out.insert(NodeId::Model(m.name.clone()), NodeInfo { tags, path: Some(m.source.path.clone()) });
    }
    for s in &project.sinks {
        out.insert(
            NodeId::Sink(s.sink.name.clone()),
            NodeInfo { tags: s.sink.tags.clone(), path: Some(s.origin.doc.source.path.clone()) },
        );
    }
    for c in &project.connectors {
        out.insert(
            NodeId::Connector(c.connector.name.clone()),
            NodeInfo { tags: c.connector.tags.clone(), path: Some(c.origin.doc.source.path.clone()) },
        );
    }
    out
}

impl Compiler<'_> {
    fn register_schema(&mut self, name: &str) -> Arc<RelationSchema> {
        if let Some(s) = self.schemas.get(name) {
            return s.clone();
        }
        let provider = Arc::new(RelationSchema::default());
        if let Some(catalog) = self.ctx.catalog("datafusion") {
            // Replacing the default `public` schema is intended: models live there.
            let _ = catalog.register_schema(name, provider.clone());
        }
        self.schemas.insert(name.to_string(), provider.clone());
        provider
    }
}
