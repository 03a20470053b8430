//! project → graph → compile: renders every model, builds the dependency graph, and plans each
//! model's SQL with DataFusion against its inputs' schemas (sources' declared schemas, upstream
//! models' inferred output schemas), in dependency order. What comes out is everything later
//! stages need: output schemas, the streaming shape of each model, and a semantic hash.

pub mod carry_over;
pub mod catalog;
pub mod manifest;
pub mod names;
pub mod resolved;
pub mod source_schema;
pub mod streaming;
pub mod topic_names;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::Statement;
use sha2::{Digest, Sha256};

use crate::diagnostics::{pos_of, suggest, Diagnostic, Diagnostics, Pos, SourceText};
use crate::graph::select::NodeInfo;
use crate::graph::{EdgeAt, Graph, NodeId};
use crate::jinja::{Jinja, Rendered};
use crate::project::config::{ModelConfig, OnError, RelationKind, ReplayPolicy, ValueFormat};
use crate::project::{ModelFile, Origin, Project, SourceDecl};
use crate::sql::dialect::{self, EmitMode, PseudoColumn, StreamingSql, WindowSpec, WINDOWEND, WINDOWSTART};
use crate::sql::{functions, rewrite, types};
use catalog::RelationSchema;
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
            NodeId::Sink(_) => None,
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

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

struct Compiler<'a> {
    project: &'a Project,
    diags: Diagnostics,
    ctx: SessionContext,
    schemas: BTreeMap<String, Arc<RelationSchema>>,
}

/// Compiles a project: every problem goes into `diagnostics`, nothing stops at the first one.
pub async fn compile(project: Project, mut diags: Diagnostics) -> CompiledProject {
    let ctx = planning_context();
    let mut c = Compiler { project: &project, diags: Diagnostics::new(), ctx, schemas: BTreeMap::new() };
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
            NodeId::Sink(_) => false,
        });
        if !ready {
            continue;
        }
        if let Some(m) = c.compile_model(file, r, inputs, &sources, &models).await {
            c.schemas[MODEL_SCHEMA].insert(&m.name, m.schema.clone());
            models.insert(m.name.clone(), m);
        }
    }

    let mut sinks = BTreeMap::new();
    for s in &project.sinks {
        if models.contains_key(&s.sink.from) {
            sinks.insert(s.sink.name.clone(), CompiledSink { decl: s.clone(), from: s.sink.from.clone() });
        }
    }
    let node_info = node_info(&project, &models);
    diags.extend(c.diags.iter().cloned());
    let mut cp = CompiledProject { graph, sources, models, sinks, node_info, diagnostics: diags, project };
    let refused_names = topic_names::check(&cp);
    cp.diagnostics.extend(refused_names);
    cp
}

/// DataFusion's `Projections require unique expression names but the expression "a AS x" at
/// position 0 and "b AS x" at position 1 have the same name`: the name, and the two columns
/// counted from 1.
fn duplicate_projection(message: &str) -> Option<(String, usize, usize)> {
    let rest = message.split("Projections require unique expression names but the expression \"").nth(1)?;
    let (first_expr, rest) = rest.split_once("\" at position ")?;
    let (first_pos, rest) = rest.split_once(" and \"")?;
    let (_, rest) = rest.split_once("\" at position ")?;
    let second_pos: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let name = match first_expr.rsplit_once(" AS ") {
        Some((_, alias)) => alias.to_string(),
        None => first_expr.rsplit('.').next().unwrap_or(first_expr).to_string(),
    };
    Some((name.to_lowercase(), first_pos.trim().parse::<usize>().ok()? + 1, second_pos.parse::<usize>().ok()? + 1))
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

    fn compile_sources(&mut self) -> BTreeMap<String, CompiledSource> {
        let mut out = BTreeMap::new();
        for decl in &self.project.sources {
            if let Some(s) = self.compile_source(decl) {
                self.register_schema(&decl.group).insert(&decl.table.name, s.schema.clone());
                out.insert(decl.full_name(), s);
            }
        }
        out
    }

    fn compile_source(&mut self, decl: &SourceDecl) -> Option<CompiledSource> {
        let t = &decl.table;
        let o = &decl.origin;
        let full = decl.full_name();
        let columns = match (&t.schema, t.columns.is_empty()) {
            (Some(_), false) => {
                self.diags.push(o.error(
                    "source",
                    "schema",
                    format!("source `{full}` gives both `columns` and `schema`; give one"),
                ));
                return None;
            }
            (None, true) if t.format == ValueFormat::Avro => {
                // Avro topics carry registered schemas: the subject's latest version gives the columns.
                self.columns_from_subject(o, &full, &format!("{}-value", t.topic), "format")?
            }
            (None, true) => {
                self.diags.push(
                    o.error("source", "", format!("source `{full}` declares no columns"))
                        .with_help("add `columns:` with SQL types, or `schema: {file: schemas/x.avsc}`"),
                );
                return None;
            }
            (None, false) => match source_schema::from_column_defs(&t.columns) {
                Ok(c) => c,
                Err((i, msg)) => {
                    self.diags.push(o.error("source", &format!("columns/{i}/type"), msg));
                    return None;
                }
            },
            (Some(sr), true) => match (&sr.file, &sr.subject) {
                (Some(file), None) => self.columns_from_schema_file(o, file)?,
                (None, Some(subject)) => self.columns_from_subject(o, &full, subject, "schema/subject")?,
                _ => {
                    self.diags.push(o.error("source", "schema", "`schema` needs exactly one of `file` or `subject`"));
                    return None;
                }
            },
        };
        // Unquoted SQL identifiers are case-insensitive: the SQL name of a column is lowercase.
        let mut seen = BTreeSet::new();
        let mut fields = Vec::new();
        for (i, c) in columns.iter().enumerate() {
            let sql_name = c.name.to_lowercase();
            if !seen.insert(sql_name.clone()) {
                self.diags.push(o.error(
                    "source",
                    &format!("columns/{i}/name"),
                    format!("column `{}` is declared twice (names are case-insensitive)", c.name),
                ));
                return None;
            }
            fields.push(Field::new(sql_name, c.data_type.clone(), c.nullable));
        }
        let schema = Arc::new(Schema::new(fields));
        let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
        let find = |n: &str| columns.iter().position(|c| c.name.eq_ignore_ascii_case(n));

        let mut key = Vec::new();
        for (i, k) in t.key.iter().enumerate() {
            match find(k) {
                Some(ci) => key.push(columns[ci].name.to_lowercase()),
                None => {
                    let mut d =
                        o.error("source", &format!("key/{i}"), format!("key column `{k}` is not a column of `{full}`"));
                    if let Some(s) = suggest(k, names.iter().map(String::as_str)) {
                        d = d.with_help(format!("did you mean `{s}`?"));
                    }
                    self.diags.push(d);
                    return None;
                }
            }
        }
        if t.kind == RelationKind::Table && key.is_empty() {
            self.diags.push(
                o.error("source", "kind", format!("source `{full}` is a table but has no `key`"))
                    .with_help("a table keeps the latest row per key: list the key columns under `key:`"),
            );
            return None;
        }
        let event_time = match &t.event_time {
            None => None,
            Some(et) => {
                let Some(ci) = find(&et.column) else {
                    let mut d = o.error(
                        "source",
                        "event_time/column",
                        format!("event time column `{}` is not a column of `{full}`", et.column),
                    );
                    if let Some(s) = suggest(&et.column, names.iter().map(String::as_str)) {
                        d = d.with_help(format!("did you mean `{s}`?"));
                    }
                    self.diags.push(d);
                    return None;
                };
                let col = &columns[ci];
                let chrono_format = match (&col.data_type, &et.format) {
                    (DataType::Utf8, Some(f)) => match functions::java_to_chrono(f) {
                        Ok(cf) => Some(cf),
                        Err(e) => {
                            self.diags.push(o.error("source", "event_time/format", e));
                            return None;
                        }
                    },
                    (DataType::Utf8, None) => {
                        self.diags.push(
                            o.error(
                                "source",
                                "event_time",
                                format!("event time column `{}` is a STRING: give its `format`", col.name),
                            )
                            .with_help("for example `format: 'yyyy-MM-dd HH:mm:ss'`"),
                        );
                        return None;
                    }
                    (DataType::Int64 | DataType::Timestamp(..), None) => None,
                    (DataType::Int64 | DataType::Timestamp(..), Some(_)) => {
                        self.diags.push(o.error(
                            "source",
                            "event_time/format",
                            "`format` applies only to STRING event time columns",
                        ));
                        return None;
                    }
                    (other, _) => {
                        self.diags.push(o.error(
                            "source",
                            "event_time/column",
                            format!(
                                "event time column `{}` is {}: it must be TIMESTAMP, BIGINT (epoch ms) or STRING",
                                col.name,
                                types::sql_type_name(other)
                            ),
                        ));
                        return None;
                    }
                };
                let allowed_lateness_ms = match &et.allowed_lateness {
                    None => 0,
                    Some(l) => match dialect::parse_duration(l) {
                        Ok(ms) => ms,
                        Err(e) => {
                            self.diags.push(o.error("source", "event_time/allowed_lateness", e));
                            return None;
                        }
                    },
                };
                Some(EventTimeSpec { column: col.name.to_lowercase(), chrono_format, allowed_lateness_ms })
            }
        };
        if t.format == ValueFormat::Avro {
            let names: Vec<String> = columns.iter().map(|c| c.name.clone()).collect();
            if let Err(e) = crate::formats::avro::reader_fields(&schema, &names) {
                self.diags.push(o.error("source", "format", format!("source `{full}` cannot be read as Avro: {e}")));
                return None;
            }
        }
        if t.on_error != OnError::DeadLetter && t.dead_letter_topic.is_some() {
            self.diags.push(o.error(
                "source",
                "dead_letter_topic",
                "`dead_letter_topic` is set but `on_error` is not `dead_letter`",
            ));
            return None;
        }
        let partitions = t.partitions.unwrap_or(1);
        if partitions < 1 {
            self.diags.push(o.error(
                "source",
                "partitions",
                format!("partitions must be at least 1, got {partitions}"),
            ));
            return None;
        }
        let allowed_lateness_ms = event_time.as_ref().map_or(0, |e| e.allowed_lateness_ms);
        let dead_letter_topic = names::dead_letter_topic(t.dead_letter_topic.as_deref(), &t.topic);
        Some(CompiledSource {
            decl: decl.clone(),
            columns,
            schema,
            key,
            event_time,
            partitions,
            allowed_lateness_ms,
            dead_letter_topic,
        })
    }

    /// Columns from the latest version of a subject in the project's file registry (`schemas/`).
    fn columns_from_subject(
        &mut self,
        o: &Origin,
        full: &str,
        subject: &str,
        field: &str,
    ) -> Option<Vec<ResolvedColumn>> {
        use crate::registry::SchemaRegistry;
        let registry = crate::registry::file::FileRegistry::new(self.project.root.join("schemas"), "schemas");
        let latest = match registry.versions(subject) {
            Ok(v) => v.into_iter().last(),
            Err(e) => {
                self.diags.push(o.error("source", field, format!("source `{full}`: {e}")));
                return None;
            }
        };
        let Some(latest) = latest else {
            self.diags.push(
                o.error(
                    "source",
                    field,
                    format!("source `{full}`: subject `{subject}` is not in the file registry schemas/"),
                )
                .with_help(format!("register its schema as `schemas/{subject}/v1.avsc`, or declare `columns:`")),
            );
            return None;
        };
        let parsed = serde_json::from_str::<serde_json::Value>(&latest.schema).map_err(|e| e.to_string());
        let columns = match latest.schema_type {
            crate::registry::SchemaType::Avro => parsed.and_then(|v| source_schema::from_avro(&v)),
            crate::registry::SchemaType::Json => parsed.and_then(|v| source_schema::from_json_schema(&v)),
        };
        match columns {
            Ok(c) => Some(c),
            Err(e) => {
                self.diags.push(o.error(
                    "source",
                    field,
                    format!("source `{full}`: subject `{subject}` version {}: {e}", latest.version),
                ));
                None
            }
        }
    }

    fn columns_from_schema_file(&mut self, o: &Origin, file: &str) -> Option<Vec<ResolvedColumn>> {
        let path = self.project.root.join(file);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                self.diags.push(o.error("source", "schema/file", format!("cannot read schema file `{file}`: {e}")));
                return None;
            }
        };
        let src = SourceText::new(file, text);
        let value: serde_json::Value = match serde_json::from_str(&src.text) {
            Ok(v) => v,
            Err(e) => {
                self.diags.push(
                    Diagnostic::error("schema-file", format!("invalid JSON: {e}"))
                        .at(&src, Pos::new(e.line(), e.column(), 1)),
                );
                return None;
            }
        };
        let result = if file.ends_with(".avsc") {
            source_schema::from_avro(&value)
        } else {
            source_schema::from_json_schema(&value)
        };
        match result {
            Ok(c) => Some(c),
            Err(e) => {
                self.diags.push(Diagnostic::error("schema-file", e).in_file(&src));
                None
            }
        }
    }

    /// The graph, and the models with references that resolve to nothing (not planned: their
    /// SQL would only fail again on the missing table).
    fn build_graph(&mut self, rendered: &BTreeMap<String, Rendered>) -> (Graph, BTreeSet<String>) {
        let mut g = Graph::default();
        let mut unresolved = BTreeSet::new();
        for s in &self.project.sources {
            g.add_node(NodeId::Source(s.full_name()));
        }
        let model_names: Vec<&str> = self.project.models.iter().map(|m| m.name.as_str()).collect();
        for m in &self.project.models {
            g.add_node(NodeId::Model(m.name.clone()));
        }
        let source_names: Vec<String> = self.project.sources.iter().map(|s| s.full_name()).collect();
        for m in &self.project.models {
            let Some(r) = rendered.get(&m.name) else { continue };
            let me = NodeId::Model(m.name.clone());
            let at = |off: Option<usize>, len: usize| {
                let (line, col) = off.map(|o| pos_of(&m.source.text, o)).unwrap_or((1, 1));
                Pos::new(line, col, len)
            };
            for (name, off) in &r.captured.refs {
                if model_names.contains(&name.as_str()) {
                    g.add_edge(&NodeId::Model(name.clone()), &me, EdgeAt(*off));
                } else {
                    unresolved.insert(m.name.clone());
                    let mut d = Diagnostic::error("unknown-ref", format!("`ref('{name}')`: no model named `{name}`"))
                        .at(&m.source, at(*off, name.chars().count() + 2));
                    if let Some(s) = suggest(name, model_names.iter().copied()) {
                        d = d.with_help(format!("did you mean `{s}`?"));
                    } else if source_names.iter().any(|s| s.ends_with(&format!(".{name}"))) {
                        d = d.with_help(format!("`{name}` is a source: use `source('<group>', '{name}')`"));
                    }
                    self.diags.push(d);
                }
            }
            for ((group, table), off) in &r.captured.sources {
                let full = format!("{group}.{table}");
                if source_names.contains(&full) {
                    g.add_edge(&NodeId::Source(full), &me, EdgeAt(*off));
                } else {
                    unresolved.insert(m.name.clone());
                    if self.project.broken_source_files > 0 {
                        // The table is most likely in the source file that did not load.
                        continue;
                    }
                    let mut d = Diagnostic::error(
                        "unknown-source",
                        format!("`source('{group}', '{table}')`: no source table `{full}`"),
                    )
                    .at(&m.source, at(*off, group.chars().count() + 2));
                    if let Some(s) = suggest(&full, source_names.iter().map(String::as_str)) {
                        let (sg, st) = s.split_once('.').unwrap_or((s, ""));
                        d = d.with_help(format!("did you mean `source('{sg}', '{st}')`?"));
                    }
                    self.diags.push(d);
                }
            }
        }
        for s in &self.project.sinks {
            let me = NodeId::Sink(s.sink.name.clone());
            if model_names.contains(&s.sink.from.as_str()) {
                g.add_edge(&NodeId::Model(s.sink.from.clone()), &me, EdgeAt(None));
            } else {
                g.add_node(me);
                let mut d = s.origin.error(
                    "unknown-ref",
                    "from",
                    format!("sink `{}` reads from `{}`, which is not a model", s.sink.name, s.sink.from),
                );
                if let Some(x) = suggest(&s.sink.from, model_names.iter().copied()) {
                    d = d.with_help(format!("did you mean `{x}`?"));
                }
                self.diags.push(d);
            }
        }
        (g, unresolved)
    }

    fn report_cycles(&mut self, cycles: &[Vec<(NodeId, EdgeAt)>]) {
        for cycle in cycles {
            let mut names: Vec<&str> = cycle.iter().map(|(n, _)| n.name()).collect();
            names.push(cycle[0].0.name());
            // Point at the reference that closes the cycle, in the first model.
            let (first, _) = &cycle[0];
            let (last, at) = &cycle[cycle.len() - 1];
            let file = self.project.models.iter().find(|m| m.name == first.name());
            let mut d = Diagnostic::error("cycle", format!("dependency cycle: {}", names.join(" → ")));
            if let Some(f) = file {
                match at.0 {
                    Some(off) => {
                        let (line, col) = pos_of(&f.source.text, off);
                        d = d.at(&f.source, Pos::new(line, col, last.name().chars().count() + 2));
                    }
                    None => d = d.in_file(&f.source),
                }
            }
            self.diags.push(d.with_help("a model cannot depend on itself, directly or through other models"));
        }
    }

    /// A diagnostic at a (line, column) of the rendered SQL, mapped back into the model file.
    fn at_rendered(
        &self,
        file: &ModelFile,
        r: &Rendered,
        line: usize,
        column: usize,
        len: usize,
        d: Diagnostic,
    ) -> Diagnostic {
        let out = crate::diagnostics::offset_of(&r.sql, line, column);
        let src = r.map.source_offset(out);
        let (l, c) = pos_of(&file.source.text, src);
        // Inside expanded Jinja the length in the rendered text means nothing in the file.
        let len = if r.map.is_verbatim(out) { len } else { 1 };
        d.at(&file.source, Pos::new(l, c, len))
    }

    /// Position of the first occurrence of an identifier or keyword (as a whole word) in the SQL.
    fn find_word(sql: &str, word: &str) -> Option<(usize, usize)> {
        let lower = sql.to_lowercase();
        let w = word.to_lowercase();
        let mut from = 0;
        while let Some(i) = lower[from..].find(&w) {
            let s = from + i;
            let e = s + w.len();
            let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            if boundary(lower[..s].chars().next_back()) && boundary(lower[e..].chars().next()) {
                return Some(pos_of(sql, s));
            }
            from = e;
        }
        None
    }

    /// A rejection of the streaming planner, at the first of its words found in the SQL.
    fn rejection_diag(&self, file: &ModelFile, r: &Rendered, rejection: &streaming::Rejection) -> Diagnostic {
        let d = Diagnostic::error("streaming", rejection.message.clone()).with_help(rejection.help.clone());
        for word in rejection.at {
            if let Some((l, c)) = Self::find_word(&r.sql, word) {
                return self.at_rendered(file, r, l, c, word.len(), d);
            }
        }
        self.at_rendered(file, r, 1, 1, 1, d)
    }

    fn datafusion_diag(&self, file: &ModelFile, r: &Rendered, e: &DataFusionError) -> Diagnostic {
        let root = e.find_root();
        let mut message = match e.diagnostic() {
            Some(d) => d.message.clone(),
            None => clean_df_message(&root.strip_backtrace()),
        };
        let mut help: Vec<String> = Vec::new();
        if let Some(d) = e.diagnostic() {
            help.extend(d.helps.iter().map(|h| h.message.clone()));
            help.extend(d.notes.iter().map(|n| n.message.clone()));
        }
        // Position: the diagnostic's span, else the parser's "Line: x, Column: y", else a name
        // from the message found in the SQL.
        let span = e.diagnostic().and_then(|d| d.span).filter(|s| s.start.line > 0);
        let (mut line, mut col, mut len) = (0, 0, 1);
        if let Some(s) = span {
            line = s.start.line as usize;
            col = s.start.column as usize;
            if s.end.line == s.start.line {
                len = (s.end.column as usize).saturating_sub(col).max(1);
            }
        } else if let Some((l, c)) = parser_location(&root.strip_backtrace()) {
            line = l;
            col = c;
        } else if let Some(name) = quoted_name(&root.strip_backtrace()) {
            if let Some((l, c)) = Self::find_word(&r.sql, &name) {
                line = l;
                col = c;
                len = name.chars().count();
            }
        }
        if let DataFusionError::SQL(parser_error, _) = root {
            use datafusion::sql::sqlparser::parser::ParserError;
            let inner = match parser_error.as_ref() {
                ParserError::ParserError(s) | ParserError::TokenizerError(s) => s.clone(),
                other => other.to_string(),
            };
            message = format!("SQL syntax error: {}", strip_location(&inner));
        }
        // DataFusion's "no function matches" error lists every signature tried, then the useful
        // sentence and the candidates: keep the sentence, turn the candidates into a hint.
        if let Some(i) = message.find("No function matches the given name and argument types") {
            let rest = &message[i..];
            let (sentence, candidates) = match rest.find("Candidate functions:") {
                Some(j) => (&rest[..j], Some(&rest[j + "Candidate functions:".len()..])),
                None => (rest, None),
            };
            let sentence = sentence.trim().to_string();
            if let Some(c) = candidates {
                let list: Vec<&str> = c.split_whitespace().collect();
                help.push(format!("candidates: {}", list.join(", ")));
            }
            message = sentence;
        }
        if let Some((name, first, second)) = duplicate_projection(&message) {
            let plain = name.chars().all(|c| c.is_alphanumeric() || c == '_');
            message = if plain {
                format!("output columns {first} and {second} are both named `{name}`")
            } else {
                format!("output columns {first} and {second} are the same expression without a name")
            };
            help = vec!["give one of them another name with AS".into()];
            let word = if plain { name.as_str() } else { "SELECT" };
            if let (0, Some((l, c))) = (line, Self::find_word(&r.sql, word)) {
                (line, col, len) = (l, c, word.chars().count());
            }
        }
        if let DataFusionError::SchemaError(schema_err, _) = root {
            if let datafusion::common::SchemaError::FieldNotFound { field, valid_fields } = schema_err.as_ref() {
                let names: Vec<String> = valid_fields.iter().map(|c| c.name.clone()).collect();
                message = format!("unknown column `{}`", field.name);
                help.clear();
                if let Some(s) = suggest(&field.name, names.iter().map(String::as_str)) {
                    help.push(format!("did you mean `{s}`?"));
                } else if !names.is_empty() {
                    let mut uniq: Vec<String> = names.clone();
                    uniq.sort();
                    uniq.dedup();
                    help.push(format!("available columns: {}", uniq.join(", ")));
                }
                if line == 0 {
                    if let Some((l, c)) = Self::find_word(&r.sql, &field.name) {
                        line = l;
                        col = c;
                        len = field.name.chars().count();
                    }
                }
            }
        }
        let code = match root {
            DataFusionError::SQL(..) => "sql-syntax",
            _ => "sql-plan",
        };
        let mut d = Diagnostic::error(code, message);
        if !help.is_empty() {
            d = d.with_help(help.join("; "));
        }
        if line > 0 {
            self.at_rendered(file, r, line, col, len, d)
        } else {
            d.in_file(&file.source)
        }
    }

    async fn compile_model(
        &mut self,
        file: &ModelFile,
        r: &Rendered,
        inputs: Vec<NodeId>,
        sources: &BTreeMap<String, CompiledSource>,
        models: &BTreeMap<String, CompiledModel>,
    ) -> Option<CompiledModel> {
        let streaming = match dialect::extract(&r.sql) {
            Ok(s) => s,
            Err(e) => {
                let mut d = Diagnostic::error("sql-syntax", e.message);
                if let Some(h) = e.help {
                    d = d.with_help(h);
                }
                self.diags.push(self.at_rendered(file, r, e.line, e.column, e.len, d));
                return None;
            }
        };
        let statements = DFParserBuilder::new(streaming.sql.as_str()).build().and_then(|mut p| p.parse_statements());
        let mut statements = match statements {
            Ok(s) => s,
            Err(e) => {
                self.diags.push(self.datafusion_diag(file, r, &e));
                return None;
            }
        };
        let mut statement = match (statements.pop_front(), statements.is_empty()) {
            (Some(DFStatement::Statement(s)), true) if matches!(*s, Statement::Query(_)) => *s,
            (None, _) => {
                self.diags.push(
                    Diagnostic::error("sql-syntax", "the model has no SQL")
                        .in_file(&file.source)
                        .with_help("a model is one SELECT statement"),
                );
                return None;
            }
            _ => {
                self.diags.push(
                    Diagnostic::error("sql-syntax", "a model must be exactly one SELECT statement")
                        .in_file(&file.source)
                        .with_help("streamctl creates the topic and the job itself: write only the SELECT, without CREATE ... AS"),
                );
                return None;
            }
        };
        let window_at = |this: &Self, msg: &str| {
            let (l, c) = streaming.window_pos.unwrap_or((1, 1));
            this.at_rendered(file, r, l, c, 6, Diagnostic::error("sql-window", msg.to_string()))
        };
        if streaming.window.is_some() {
            if let Err(msg) = rewrite::apply_window(&mut statement) {
                self.diags.push(window_at(self, msg));
                return None;
            }
        }
        if streaming.emit == Some(EmitMode::Final) && streaming.window.is_none() {
            let (l, c) = streaming.emit_pos.unwrap_or((1, 1));
            let d = Diagnostic::error("sql-window", "EMIT FINAL needs a WINDOW: without one, no result is ever final")
                .with_help("use EMIT CHANGES, or add WINDOW TUMBLING (SIZE ...)");
            self.diags.push(self.at_rendered(file, r, l, c, 4, d));
            return None;
        }

        // Inputs as the planner must see them for this model.
        let driving = rewrite::driving_relation(&statement);
        let mut input_schemas = BTreeMap::new();
        let mut windowed_input = None;
        for id in &inputs {
            let (schema_name, table, base) = match id {
                NodeId::Source(n) => {
                    let s = &sources[n];
                    (s.decl.group.clone(), s.decl.table.name.clone(), s.schema.clone())
                }
                NodeId::Model(n) => (MODEL_SCHEMA.to_string(), n.clone(), models[n].schema.clone()),
                NodeId::Sink(_) => continue,
            };
            let mut extra: Vec<Field> = streaming.pseudo_columns.iter().map(|p| pseudo_field(*p)).collect();
            let is_driving = driving.as_ref().is_some_and(|d| {
                let t = table.to_lowercase();
                match d.as_slice() {
                    [tbl] => schema_name == MODEL_SCHEMA && (tbl == &table || tbl == &t),
                    [sch, tbl] => sch == &schema_name && (tbl == &table || tbl == &t),
                    _ => false,
                }
            });
            if streaming.window.is_some() && is_driving {
                extra.extend(window_fields());
                windowed_input = Some(id.clone());
            }
            let planned = with_fields(&base, extra);
            input_schemas.insert(id.clone(), planned.clone());
            self.schemas[&schema_name].set_overlay(&table, planned);
        }
        let state = self.ctx.state();
        let planned = state.statement_to_plan(DFStatement::Statement(Box::new(statement.clone()))).await;
        let planned = planned.and_then(|p| state.analyzer().execute_and_check(p, state.config_options(), |_, _| {}));
        for s in self.schemas.values() {
            s.clear_overlay();
        }
        let plan = match planned {
            Ok(p) => p,
            Err(e) => {
                self.diags.push(self.datafusion_diag(file, r, &e));
                return None;
            }
        };
        if streaming.window.is_some() && driving.is_none() {
            self.diags.push(window_at(self, "a WINDOW needs a stream in FROM (a source or a model, not a subquery)"));
            return None;
        }

        // Output columns, without table qualifiers.
        let fields: Vec<Field> = plan.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut seen = BTreeSet::new();
        for f in &fields {
            if !seen.insert(f.name().clone()) {
                let d = Diagnostic::error("sql-plan", format!("the output has two columns named `{}`", f.name()))
                    .with_help("give one of them another name with AS");
                self.diags.push(match Self::find_word(&r.sql, f.name()) {
                    Some((l, c)) => self.at_rendered(file, r, l, c, f.name().chars().count(), d),
                    None => d.in_file(&file.source),
                });
                return None;
            }
        }
        let schema = Arc::new(Schema::new(fields));

        // The streaming planner judges the query and, for the job, the variant of it that
        // carries event time (below).
        let relations = ProjectRelations { sources, models };
        let windowed = streaming.window.is_some();
        let judged = match streaming::plan(&state, &plan, &relations, windowed) {
            Ok(p) => p,
            Err(rejection) => {
                self.diags.push(self.rejection_diag(file, r, &rejection));
                return None;
            }
        };
        let operator = judged.operator;
        // Stream outputs carry each row's event time: plan a variant of the query that also
        // selects the stream input's rowtime, as a hidden last column, and run that.
        let mut job_source = judged;
        let mut rowtime_out = None;
        if matches!(operator, OperatorKind::Stateless | OperatorKind::StreamTableJoin) {
            if let Some((p, sid, schema)) =
                self.plan_with_rowtime(&statement, &inputs, &input_schemas, sources, models).await
            {
                match streaming::plan(&state, &p, &relations, windowed) {
                    Ok(variant) => job_source = variant,
                    Err(rejection) => {
                        self.diags.push(self.rejection_diag(file, r, &rejection));
                        return None;
                    }
                }
                input_schemas.insert(sid, schema);
                rowtime_out = Some(p.schema().fields().len() - 1);
            }
        }
        let job = match streaming::job::build(&state, &job_source.plan).await {
            Ok(j) => j,
            Err(e) => {
                let rejection = streaming::Rejection {
                    at: &["SELECT"],
                    message: format!("the streaming runtime cannot run this query: {}", e.0),
                    help: "report this as a bug, with the model's SQL".into(),
                };
                self.diags.push(self.rejection_diag(file, r, &rejection));
                return None;
            }
        };
        if let Some(WindowSpec { kind: dialect::WindowKind::Session { .. }, .. }) = streaming.window {
            if streaming.emit != Some(EmitMode::Final) {
                self.diags.push(
                    window_at(self, "SESSION windows run with EMIT FINAL only: a session can still merge with another until it closes")
                        .with_help("end the query with EMIT FINAL"),
                );
                return None;
            }
        }
        let props = self.project.model_props.get(&file.name);

        // Configuration: project defaults < properties YAML < config() in the SQL.
        let from_sql = match serde_json::from_value::<ModelConfig>(serde_json::Value::Object(r.captured.config.clone()))
        {
            Ok(c) => c,
            Err(e) => {
                let (l, c) = r.captured.config_offset.map(|o| pos_of(&file.source.text, o)).unwrap_or((1, 1));
                self.diags
                    .push(Diagnostic::error("config", format!("config(): {e}")).at(&file.source, Pos::new(l, c, 6)));
                return None;
            }
        };
        let config =
            from_sql.or(&props.map(|p| p.props.config.clone()).unwrap_or_default()).or(&self.project.config.models);
        let config_pos = r.captured.config_offset.map(|o| pos_of(&file.source.text, o)).unwrap_or((1, 1));
        let config_err =
            |msg: String| Diagnostic::error("config", msg).at(&file.source, Pos::new(config_pos.0, config_pos.1, 6));

        let kind = match (operator, config.materialized) {
            (OperatorKind::Aggregate, Some(RelationKind::Stream)) => {
                self.diags.push(
                    config_err(format!(
                        "model `{}` is an aggregation without a WINDOW: its result is a table, not a stream",
                        file.name
                    ))
                    .with_help("remove materialized='stream' or add a WINDOW ... EMIT FINAL"),
                );
                return None;
            }
            (OperatorKind::WindowedAggregate, Some(RelationKind::Stream))
                if streaming.emit != Some(EmitMode::Final) =>
            {
                self.diags.push(
                    config_err(format!(
                        "model `{}` emits window updates (EMIT CHANGES): it is a table, not a stream",
                        file.name
                    ))
                    .with_help("use EMIT FINAL for a stream of final window results"),
                );
                return None;
            }
            (_, Some(k)) => k,
            (OperatorKind::Aggregate | OperatorKind::WindowedAggregate, None) => RelationKind::Table,
            (_, None) => {
                let all_tables = inputs.iter().all(|i| {
                    matches!(i, NodeId::Source(n) if sources[n].decl.table.kind == RelationKind::Table)
                        || matches!(i, NodeId::Model(n) if models[n].kind == RelationKind::Table)
                });
                if all_tables && !inputs.is_empty() {
                    RelationKind::Table
                } else {
                    RelationKind::Stream
                }
            }
        };

        // Key: configured, else the grouping columns (and window bounds) of an aggregation.
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let mut key = Vec::new();
        match &config.key {
            Some(k) => {
                for col in k {
                    match names.iter().find(|n| n.eq_ignore_ascii_case(col)) {
                        Some(n) => key.push(n.to_string()),
                        None => {
                            let mut d =
                                config_err(format!("key column `{col}` is not an output column of `{}`", file.name));
                            if let Some(s) = suggest(col, names.iter().copied()) {
                                d = d.with_help(format!("did you mean `{s}`?"));
                            }
                            self.diags.push(d);
                            return None;
                        }
                    }
                }
            }
            None => {
                if let Some(group_cols) = group_columns(&plan) {
                    // The grouping columns are the table's key: each must be an output column,
                    // or rows of different groups would overwrite each other on the topic.
                    if let Some(missing) = group_cols.iter().find(|c| !names.contains(&c.as_str())) {
                        let d = Diagnostic::error(
                            "sql-plan",
                            format!("GROUP BY column `{missing}` is not selected: it is part of the table's key"),
                        )
                        .with_help(format!("add `{missing}` to the SELECT list"));
                        self.diags.push(match Self::find_word(&r.sql, "GROUP") {
                            Some((l, c)) => self.at_rendered(file, r, l, c, 5, d),
                            None => d.in_file(&file.source),
                        });
                        return None;
                    }
                    key = group_cols;
                }
            }
        }
        if streaming.window.is_some() {
            for w in [WINDOWSTART, WINDOWEND] {
                if !key.iter().any(|k| k == w) {
                    key.push(w.to_string());
                }
            }
        }
        match config.format {
            Some(ValueFormat::DebeziumJson) => {
                self.diags.push(config_err(format!(
                    "model `{}`: format `debezium-json` is read-only; a model writes `json` or `avro`",
                    file.name
                )));
                return None;
            }
            Some(ValueFormat::Avro) => {
                if let Err(e) = crate::formats::avro::output_schema(&file.name, &schema) {
                    self.diags.push(config_err(format!("model `{}` cannot write Avro: {e}", file.name)));
                    return None;
                }
            }
            _ => {}
        }
        if kind == RelationKind::Table && key.is_empty() {
            self.diags.push(
                config_err(format!("model `{}` is a table but has no key", file.name))
                    .with_help("set key=[...] in config()"),
            );
            return None;
        }
        let partitions = config.partitions.unwrap_or(1);
        if partitions < 1 {
            self.diags.push(config_err(format!("partitions must be at least 1, got {partitions}")));
            return None;
        }
        let Some(replay) = ReplayStart::of(&config.replay) else {
            let timestamp = match &config.replay {
                Some(ReplayPolicy::Timestamp { timestamp }) => timestamp.as_str(),
                _ => "",
            };
            self.diags.push(config_err(format!(
                "replay timestamp `{timestamp}` is not RFC 3339 (e.g. 2024-01-31T00:00:00Z)"
            )));
            return None;
        };

        let mut tags: Vec<String> = props.map(|p| p.props.tags.clone()).unwrap_or_default();
        tags.extend(config.tags.clone().unwrap_or_default());
        tags.sort();
        tags.dedup();

        if let Some(p) = props {
            if !self.check_contract(&file.name, p, &schema) {
                return None;
            }
        }

        let emit = streaming.emit.unwrap_or(EmitMode::Changes);
        let plan_text = plan.display_indent_schema().to_string();
        let window_text = streaming.window.map(|w| w.to_string()).unwrap_or_default();
        let semantic_hash =
            short_hash(&[&plan_text, &window_text, &format!("{emit:?}"), &format!("{kind:?}"), &key.join(",")]);
        let config_hash = short_hash(&[&serde_json::to_string(&config).unwrap_or_default()]);
        let topic = config.topic.clone().unwrap_or_else(|| file.name.clone());
        let resolved = resolved::resolve(
            &self.project.config.name,
            resolved::Output { name: &file.name, topic: &topic, kind, partitions, replay, enabled: config.enabled },
            resolved::Inputs { ids: &inputs, sources, models },
        );
        Some(CompiledModel {
            name: file.name.clone(),
            file: file.source.clone(),
            rendered_sql: r.sql.clone(),
            streaming,
            statement,
            plan,
            schema,
            config,
            kind,
            operator,
            emit,
            topic,
            key,
            inputs,
            description: props.and_then(|p| p.props.description.clone()),
            tags,
            semantic_hash,
            config_hash,
            job,
            input_schemas,
            windowed_input,
            rowtime_column: rowtime_out,
            resolved,
        })
    }

    /// Plans `statement` with `<stream>.rowtime AS __streamctl_rowtime` appended to its SELECT
    /// list. Returns the plan, the stream input and its schema with `rowtime`.
    async fn plan_with_rowtime(
        &self,
        statement: &Statement,
        inputs: &[NodeId],
        input_schemas: &BTreeMap<NodeId, SchemaRef>,
        sources: &BTreeMap<String, CompiledSource>,
        models: &BTreeMap<String, CompiledModel>,
    ) -> Option<(LogicalPlan, NodeId, SchemaRef)> {
        use datafusion::sql::sqlparser::ast::{Expr as AstExpr, Ident, SelectItem, SetExpr, TableFactor};
        let is_stream = |id: &NodeId| match id {
            NodeId::Source(n) => sources.get(n).is_some_and(|s| s.decl.table.kind == RelationKind::Stream),
            NodeId::Model(n) => models.get(n).is_some_and(|m| m.kind == RelationKind::Stream),
            NodeId::Sink(_) => false,
        };
        let streams: Vec<&NodeId> = inputs.iter().filter(|i| is_stream(i)).collect();
        let [stream] = streams.as_slice() else { return None };
        let (schema_name, table) = match stream {
            NodeId::Source(n) => {
                let s = &sources[n];
                (s.decl.group.clone(), s.decl.table.name.clone())
            }
            NodeId::Model(n) => (MODEL_SCHEMA.to_string(), n.clone()),
            NodeId::Sink(_) => return None,
        };
        let mut stmt = statement.clone();
        let Statement::Query(q) = &mut stmt else { return None };
        let SetExpr::Select(select) = q.body.as_mut() else { return None };
        // How the query names the stream: its alias, else its name.
        let mut reference: Option<Vec<Ident>> = None;
        let factors =
            select.from.iter().flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)));
        for f in factors {
            if let TableFactor::Table { name, alias, .. } = f {
                let parts = rewrite::normalize_object_name(name);
                let hit = match parts.as_slice() {
                    [t] => schema_name == MODEL_SCHEMA && t.eq_ignore_ascii_case(&table),
                    [s, t] => s == &schema_name && t.eq_ignore_ascii_case(&table),
                    _ => false,
                };
                if hit {
                    reference = Some(match alias {
                        Some(a) => vec![a.name.clone()],
                        None => name.0.iter().filter_map(|p| p.as_ident().cloned()).collect(),
                    });
                    break;
                }
            }
        }
        let mut parts = reference?;
        parts.push(Ident::new(PseudoColumn::Rowtime.name()));
        select.projection.push(SelectItem::ExprWithAlias {
            expr: AstExpr::CompoundIdentifier(parts),
            alias: Ident::new(ROWTIME_COLUMN),
        });
        for (id, schema) in input_schemas {
            let (sn, tn) = match id {
                NodeId::Source(n) => (sources[n].decl.group.clone(), sources[n].decl.table.name.clone()),
                NodeId::Model(n) => (MODEL_SCHEMA.to_string(), n.clone()),
                NodeId::Sink(_) => continue,
            };
            let s =
                if id == *stream { with_fields(schema, [pseudo_field(PseudoColumn::Rowtime)]) } else { schema.clone() };
            self.schemas[&sn].set_overlay(&tn, s);
        }
        let with_rowtime = with_fields(&input_schemas[*stream], [pseudo_field(PseudoColumn::Rowtime)]);
        let state = self.ctx.state();
        let planned = state.statement_to_plan(DFStatement::Statement(Box::new(stmt))).await;
        let planned = planned.and_then(|p| state.analyzer().execute_and_check(p, state.config_options(), |_, _| {}));
        for s in self.schemas.values() {
            s.clear_overlay();
        }
        Some((planned.ok()?, (*stream).clone(), with_rowtime))
    }

    /// Output columns against an enforced contract; every mismatch reported at its YAML line.
    fn check_contract(&mut self, name: &str, p: &crate::project::ModelPropsDecl, schema: &Schema) -> bool {
        let enforced = p.props.contract.as_ref().is_some_and(|c| c.enforced);
        if !enforced {
            return true;
        }
        let o = &p.origin;
        let mut ok = true;
        let declared: Vec<&str> = p.props.columns.iter().map(|c| c.name.as_str()).collect();
        for (i, col) in p.props.columns.iter().enumerate() {
            let Some(field) = schema.fields().iter().find(|f| f.name().eq_ignore_ascii_case(&col.name)) else {
                let mut d = o.error(
                    "contract",
                    &format!("columns/{i}/name"),
                    format!("contract of `{name}`: column `{}` is not in the model's output", col.name),
                );
                let outs: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                if let Some(s) = suggest(&col.name, outs.iter().copied()) {
                    d = d.with_help(format!("the output has `{s}`"));
                }
                self.diags.push(d);
                ok = false;
                continue;
            };
            let Some(t) = &col.data_type else {
                self.diags.push(o.error(
                    "contract",
                    &format!("columns/{i}"),
                    format!("contract of `{name}`: column `{}` needs a `type`", col.name),
                ));
                ok = false;
                continue;
            };
            match types::parse_sql_type(t) {
                Err(e) => {
                    self.diags.push(o.error(
                        "contract",
                        &format!("columns/{i}/type"),
                        format!("contract of `{name}`: column `{}`: {e}", col.name),
                    ));
                    ok = false;
                }
                Ok(dt) if !types::same_sql_type(&dt, field.data_type()) => {
                    self.diags.push(
                        o.error(
                            "contract",
                            &format!("columns/{i}/type"),
                            format!(
                                "contract of `{name}`: column `{}` is declared {} but the query produces {}",
                                col.name,
                                types::sql_type_name(&dt),
                                types::sql_type_name(field.data_type())
                            ),
                        )
                        .with_help(format!(
                            "change the declared type, or CAST the column to {} in the SELECT",
                            types::sql_type_name(&dt)
                        )),
                    );
                    ok = false;
                }
                Ok(_) => {
                    if col.nullable == Some(false) && field.is_nullable() {
                        self.diags.push(o.error("contract", &format!("columns/{i}/nullable"), format!("contract of `{name}`: column `{}` is declared NOT NULL but the query may produce NULL", col.name)).with_help("wrap it in COALESCE(...) or filter NULLs out"));
                        ok = false;
                    }
                }
            }
        }
        for f in schema.fields() {
            if !declared.iter().any(|d| d.eq_ignore_ascii_case(f.name())) {
                self.diags.push(
                    o.error(
                        "contract",
                        "columns",
                        format!(
                            "contract of `{name}`: the output column `{}` ({}) is not declared",
                            f.name(),
                            types::sql_type_name(f.data_type())
                        ),
                    )
                    .with_help("declare it under `columns:` or remove it from the SELECT"),
                );
                ok = false;
            }
        }
        ok
    }
}

/// Resolves scanned tables to project relations, for the streaming planner.
struct ProjectRelations<'a> {
    sources: &'a BTreeMap<String, CompiledSource>,
    models: &'a BTreeMap<String, CompiledModel>,
}

impl streaming::Relations for ProjectRelations<'_> {
    fn resolve(&self, table: &datafusion::common::TableReference) -> Option<(NodeId, RelationKind)> {
        match table.schema() {
            Some(MODEL_SCHEMA) | None => {
                self.models.get(table.table()).map(|m| (NodeId::Model(m.name.clone()), m.kind))
            }
            Some(group) => {
                let full = format!("{group}.{}", table.table());
                self.sources.get(&full).map(|s| (NodeId::Source(full.clone()), s.decl.table.kind))
            }
        }
    }
}

/// Output names of the GROUP BY columns of the (single) aggregation, if any.
fn group_columns(plan: &LogicalPlan) -> Option<Vec<String>> {
    let mut out = None;
    let _ = plan.apply(|node| {
        if let LogicalPlan::Aggregate(a) = node {
            out = Some(
                a.group_expr
                    .iter()
                    .filter_map(|e| match e {
                        datafusion::logical_expr::Expr::Column(c) => Some(c.name.clone()),
                        _ => None,
                    })
                    .filter(|n| n != WINDOWSTART && n != WINDOWEND)
                    .collect(),
            );
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out
}

/// "at Line: 3, Column: 5" in sqlparser messages.
fn parser_location(msg: &str) -> Option<(usize, usize)> {
    let i = msg.rfind("Line: ")?;
    let rest = &msg[i + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let col: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, col.parse().ok()?))
}

fn strip_location(msg: &str) -> String {
    match msg.rfind(" at Line: ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// The first `'quoted'` or `"quoted"` name in a message.
fn quoted_name(msg: &str) -> Option<String> {
    for q in ['\'', '"', '`'] {
        if let Some(i) = msg.find(q) {
            if let Some(j) = msg[i + 1..].find(q) {
                let name = &msg[i + 1..i + 1 + j];
                if !name.is_empty() && !name.contains(' ') {
                    return Some(name.split('.').next_back().unwrap_or(name).to_string());
                }
            }
        }
    }
    None
}

/// DataFusion's messages without the internal prefixes users do not need.
fn clean_df_message(msg: &str) -> String {
    let mut m = msg.trim().to_string();
    for prefix in ["Error during planning: ", "Schema error: ", "SQL error: ", "This feature is not implemented: "] {
        if let Some(rest) = m.strip_prefix(prefix) {
            m = rest.to_string();
        }
    }
    m
}
