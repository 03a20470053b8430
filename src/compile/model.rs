//! One model, in phases: parse the query and its streaming clauses, plan it against its inputs,
//! let the streaming planner judge it and build its job, then layer its configuration, key and
//! contract.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::Statement;
use sha2::{Digest, Sha256};

use super::{
    pseudo_field, resolved, streaming, window_fields, with_fields, CompiledModel, CompiledSource, Compiler,
    OperatorKind, ReplayStart, MODEL_SCHEMA, ROWTIME_COLUMN,
};
use crate::diagnostics::{pos_of, suggest, Diagnostic, Pos};
use crate::graph::NodeId;
use crate::jinja::Rendered;
use crate::project::config::{ModelConfig, RelationKind, ReplayPolicy, ValueFormat};
use crate::project::ModelFile;
use crate::sql::dialect::{self, EmitMode, PseudoColumn, StreamingSql, WindowSpec, WINDOWEND, WINDOWSTART};
use crate::sql::rewrite;

/// What every phase of one model reads.
#[derive(Clone, Copy)]
struct ModelInput<'m> {
    file: &'m ModelFile,
    r: &'m Rendered,
    inputs: &'m [NodeId],
    sources: &'m BTreeMap<String, CompiledSource>,
    models: &'m BTreeMap<String, CompiledModel>,
}

/// The query planned against its inputs.
struct PlannedQuery {
    plan: LogicalPlan,
    schema: SchemaRef,
    /// Each input's schema as planned (its columns plus the pseudo and window columns used).
    input_schemas: BTreeMap<NodeId, SchemaRef>,
    windowed_input: Option<NodeId>,
}

/// What the job runs.
struct PlannedJob {
    operator: OperatorKind,
    job: streaming::job::JobPlan,
    rowtime_column: Option<usize>,
}

impl Compiler<'_> {
    pub(super) async fn compile_model(
        &mut self,
        file: &ModelFile,
        r: &Rendered,
        inputs: Vec<NodeId>,
        sources: &BTreeMap<String, CompiledSource>,
        models: &BTreeMap<String, CompiledModel>,
    ) -> Option<CompiledModel> {
        let m = ModelInput { file, r, inputs: &inputs, sources, models };
        // The configuration does not depend on the SQL: its problems are reported together
        // with the SQL's, not only once the SQL is right.
        let config = self.layered_config(&m);
        let settings = config.as_ref().and_then(|c| self.job_settings(&m, c));
        let (streaming, statement) = self.parse_query(&m)?;
        let query = self.plan_query(&m, &streaming, &statement).await?;
        let (query, job) = self.plan_job(&m, &streaming, &statement, query).await?;
        let props = self.project.model_props.get(&file.name);
        let config = config?;
        let (partitions, replay) = settings?;
        let kind = self.relation_kind(&m, &streaming, job.operator, &config)?;
        let key = self.output_key(&m, &streaming, &query, &config)?;
        self.check_output(&m, &query.schema, &config, kind, &key)?;

        let mut tags: Vec<String> = props.map(|p| p.props.tags.clone()).unwrap_or_default();
        tags.extend(config.tags.clone().unwrap_or_default());
        tags.sort();
        tags.dedup();

        if let Some(p) = props {
            if !self.check_contract(&file.name, p, &query.schema) {
                return None;
            }
        }

        let emit = streaming.emit.unwrap_or(EmitMode::Changes);
        let plan_text = query.plan.display_indent_schema().to_string();
        let window_text = streaming.window.map(|w| w.to_string()).unwrap_or_default();
        let semantic_hash =
            short_hash(&[&plan_text, &window_text, &format!("{emit:?}"), &format!("{kind:?}"), &key.join(",")]);
        let config_hash = short_hash(&[&serde_json::to_string(&config).unwrap_or_default()]);
        let topic = config.topic.clone().unwrap_or_else(|| file.name.clone());
        let resolved = resolved::resolve(
            &self.project.config.name,
            resolved::Output {
                name: &file.name,
                topic: &topic,
                kind,
                partitions,
                replay,
                enabled: config.enabled,
                guarantee: config.guarantee,
                operator: job.operator,
            },
            resolved::Inputs { ids: &inputs, sources, models },
        );
        Some(CompiledModel {
            name: file.name.clone(),
            file: file.source.clone(),
            rendered_sql: r.sql.clone(),
            streaming,
            statement,
            plan: query.plan,
            schema: query.schema,
            config,
            kind,
            operator: job.operator,
            emit,
            topic,
            key,
            inputs,
            description: props.and_then(|p| p.props.description.clone()),
            tags,
            semantic_hash,
            config_hash,
            job: job.job,
            input_schemas: query.input_schemas,
            windowed_input: query.windowed_input,
            rowtime_column: job.rowtime_column,
            resolved,
        })
    }

    /// Phase 1: the streaming clauses and the one SELECT statement, its WINDOW rewritten.
    fn parse_query(&mut self, m: &ModelInput<'_>) -> Option<(StreamingSql, Statement)> {
        let ModelInput { file, r, .. } = *m;
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
        if streaming.window.is_some() {
            if let Err(msg) = rewrite::apply_window(&mut statement) {
                self.diags.push(self.window_error(m, &streaming, msg));
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
        Some((streaming, statement))
    }

    /// Phase 2: the query planned against its inputs' schemas (with the pseudo and window
    /// columns it uses), and its output columns.
    async fn plan_query(
        &mut self,
        m: &ModelInput<'_>,
        streaming: &StreamingSql,
        statement: &Statement,
    ) -> Option<PlannedQuery> {
        let ModelInput { file, r, inputs, sources, models } = *m;
        // Inputs as the planner must see them for this model.
        let driving = rewrite::driving_relation(statement);
        let mut input_schemas = BTreeMap::new();
        let mut windowed_input = None;
        for id in inputs {
            let (schema_name, table, base) = match id {
                NodeId::Source(n) => {
                    let s = &sources[n];
                    (s.decl.group.clone(), s.decl.table.name.clone(), s.schema.clone())
                }
                NodeId::Model(n) => (MODEL_SCHEMA.to_string(), n.clone(), models[n].schema.clone()),
                NodeId::Sink(_) | NodeId::Connector(_) => continue,
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
        // DataFusion stops at the first problem of a clause: plan the clauses apart to find the
        // others (while the inputs are still overlaid).
        let more_errors = match &planned {
            Ok(_) => Vec::new(),
            Err(_) => {
                let mut errors = Vec::new();
                for part in rewrite::clauses_apart(statement) {
                    if let Err(e) = state.statement_to_plan(DFStatement::Statement(Box::new(part))).await {
                        errors.push(e);
                    }
                }
                errors
            }
        };
        for s in self.schemas.values() {
            s.clear_overlay();
        }
        let plan = match planned {
            Ok(p) => p,
            Err(e) => {
                let mut diags: Vec<Diagnostic> = Vec::new();
                for e in std::iter::once(&e).chain(&more_errors) {
                    for d in self.datafusion_diags(file, r, e) {
                        let same = |o: &Diagnostic| o.message == d.message && o.pos == d.pos;
                        if !diags.iter().any(same) {
                            diags.push(d);
                        }
                    }
                }
                self.diags.extend(diags);
                return None;
            }
        };
        if streaming.window.is_some() && driving.is_none() {
            self.diags.push(self.window_error(
                m,
                streaming,
                "a WINDOW needs a stream in FROM (a source or a model, not a subquery)",
            ));
            return None;
        }

        // Output columns, without table qualifiers.
        let fields: Vec<Field> = plan.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut seen = BTreeSet::new();
        let mut duplicated = false;
        for f in &fields {
            if !seen.insert(f.name().clone()) {
                duplicated = true;
                let d = Diagnostic::error("sql-plan", format!("the output has two columns named `{}`", f.name()))
                    .with_help("give one of them another name with AS");
                self.diags.push(match Self::find_word(&r.sql, f.name()) {
                    Some((l, c)) => self.at_rendered(file, r, l, c, f.name().chars().count(), d),
                    None => d.in_file(&file.source),
                });
            }
        }
        if duplicated {
            return None;
        }
        let schema = Arc::new(Schema::new(fields));
        Some(PlannedQuery { plan, schema, input_schemas, windowed_input })
    }

    /// Phase 3: the streaming planner judges the query and builds the job it runs.
    async fn plan_job(
        &mut self,
        m: &ModelInput<'_>,
        streaming: &StreamingSql,
        statement: &Statement,
        mut query: PlannedQuery,
    ) -> Option<(PlannedQuery, PlannedJob)> {
        let ModelInput { file, r, inputs, sources, models } = *m;
        // The streaming planner judges the query and, for the job, the variant of it that
        // carries event time (below).
        let relations = ProjectRelations { sources, models };
        let state = self.ctx.state();
        let windowed = streaming.window.is_some();
        let judged = match streaming::plan(&state, &query.plan, &relations, windowed) {
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
                self.plan_with_rowtime(statement, inputs, &query.input_schemas, sources, models).await
            {
                match streaming::plan(&state, &p, &relations, windowed) {
                    Ok(variant) => job_source = variant,
                    Err(rejection) => {
                        self.diags.push(self.rejection_diag(file, r, &rejection));
                        return None;
                    }
                }
                query.input_schemas.insert(sid, schema);
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
                    self.window_error(m, streaming, "SESSION windows run with EMIT FINAL only: a session can still merge with another until it closes")
                        .with_help("end the query with EMIT FINAL"),
                );
                return None;
            }
        }
        Some((query, PlannedJob { operator, job, rowtime_column: rowtime_out }))
    }

    /// Phase 4: the configuration, layered. Every bad `config()` argument is reported, each at
    /// its `key=` in the file.
    fn layered_config(&mut self, m: &ModelInput<'_>) -> Option<ModelConfig> {
        let ModelInput { file, r, .. } = *m;
        let props = self.project.model_props.get(&file.name);
        // Configuration: project defaults < properties YAML < config() in the SQL.
        let from_sql = match serde_json::from_value::<ModelConfig>(serde_json::Value::Object(r.captured.config.clone()))
        {
            Ok(c) => c,
            Err(whole) => {
                // serde stops at the first problem: judge each argument on its own to find all.
                let mut found = false;
                let mut good = serde_json::Map::new();
                for (key, value) in &r.captured.config {
                    let one = serde_json::Map::from_iter([(key.clone(), value.clone())]);
                    match serde_json::from_value::<ModelConfig>(serde_json::Value::Object(one)) {
                        Ok(_) => {
                            good.insert(key.clone(), value.clone());
                        }
                        Err(e) => {
                            // serde's words for an untagged enum name a Rust type.
                            let msg = match key.as_str() {
                                "replay" => format!(
                                    "config(): `replay={value}` is not `earliest`, `latest` or {{'timestamp': '<RFC 3339>'}}"
                                ),
                                _ => format!("config(): {e}"),
                            };
                            self.diags.push(Self::config_key_error(m, Some(key), msg));
                            found = true;
                        }
                    }
                }
                if !found {
                    self.diags.push(Self::config_key_error(m, None, format!("config(): {whole}")));
                }
                // The settings of the good arguments are checked too.
                if let Ok(partial) = serde_json::from_value::<ModelConfig>(serde_json::Value::Object(good)) {
                    let partial = partial
                        .or(&props.map(|p| p.props.config.clone()).unwrap_or_default())
                        .or(&self.project.config.models);
                    self.job_settings(m, &partial);
                }
                return None;
            }
        };
        let config =
            from_sql.or(&props.map(|p| p.props.config.clone()).unwrap_or_default()).or(&self.project.config.models);
        Some(config)
    }

    /// Phase 5: stream or table, from the operator and `materialized`.
    fn relation_kind(
        &mut self,
        m: &ModelInput<'_>,
        streaming: &StreamingSql,
        operator: OperatorKind,
        config: &ModelConfig,
    ) -> Option<RelationKind> {
        let ModelInput { file, inputs, sources, models, .. } = *m;
        let kind = match (operator, config.materialized) {
            (OperatorKind::Aggregate, Some(RelationKind::Stream)) => {
                self.diags.push(
                    Self::config_error(
                        m,
                        format!(
                            "model `{}` is an aggregation without a WINDOW: its result is a table, not a stream",
                            file.name
                        ),
                    )
                    .with_help("remove materialized='stream' or add a WINDOW ... EMIT FINAL"),
                );
                return None;
            }
            (OperatorKind::WindowedAggregate, Some(RelationKind::Stream))
                if streaming.emit != Some(EmitMode::Final) =>
            {
                self.diags.push(
                    Self::config_error(
                        m,
                        format!(
                            "model `{}` emits window updates (EMIT CHANGES): it is a table, not a stream",
                            file.name
                        ),
                    )
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
        Some(kind)
    }

    /// Phase 6: the output key: configured, else the grouping columns and window bounds.
    fn output_key(
        &mut self,
        m: &ModelInput<'_>,
        streaming: &StreamingSql,
        query: &PlannedQuery,
        config: &ModelConfig,
    ) -> Option<Vec<String>> {
        let ModelInput { file, r, .. } = *m;
        // Key: configured, else the grouping columns (and window bounds) of an aggregation.
        let names: Vec<&str> = query.schema.fields().iter().map(|f| f.name().as_str()).collect();
        let mut key = Vec::new();
        match &config.key {
            Some(k) => {
                for col in k {
                    match names.iter().find(|n| n.eq_ignore_ascii_case(col)) {
                        Some(n) => key.push(n.to_string()),
                        None => {
                            let mut d = Self::config_error(
                                m,
                                format!("key column `{col}` is not an output column of `{}`", file.name),
                            );
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
                if let Some(group_cols) = group_columns(&query.plan) {
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
        Some(key)
    }

    /// Phase 7: the output can be written: its format, and a key when it is a table.
    fn check_output(
        &mut self,
        m: &ModelInput<'_>,
        schema: &Schema,
        config: &ModelConfig,
        kind: RelationKind,
        key: &[String],
    ) -> Option<()> {
        let file = m.file;
        match config.format {
            Some(f) if f.is_change_events() => {
                self.diags.push(Self::config_error(
                    m,
                    format!(
                        "model `{}`: format `{}` is read-only; a model writes `json` or `avro`",
                        file.name,
                        f.name()
                    ),
                ));
                return None;
            }
            Some(ValueFormat::Avro) => {
                if let Err(e) = crate::formats::avro::output_schema(&file.name, schema) {
                    self.diags.push(Self::config_error(m, format!("model `{}` cannot write Avro: {e}", file.name)));
                    return None;
                }
            }
            _ => {}
        }
        if let Some(f) = config.key_format.filter(|f| !f.is_json()) {
            let problem = if key.is_empty() {
                Err(format!("key_format `{}` needs a key (key=[...] in config())", f.name()))
            } else {
                crate::formats::keys::check_key_format(f, key, schema)
            };
            if let Err(e) = problem {
                self.diags.push(Self::config_key_error(m, Some("key_format"), format!("model `{}`: {e}", file.name)));
                return None;
            }
        }
        for (name, col) in config.headers.iter().flatten() {
            if let Err(e) = header_column_problem(name, col, schema) {
                self.diags.push(Self::config_key_error(m, Some("headers"), format!("model `{}`: {e}", file.name)));
                return None;
            }
        }
        if kind == RelationKind::Table && key.is_empty() {
            self.diags.push(
                Self::config_error(m, format!("model `{}` is a table but has no key", file.name))
                    .with_help("set key=[...] in config()"),
            );
            return None;
        }
        Some(())
    }

    /// Phase 8: the job settings checked (partitions, replay start); both are reported.
    fn job_settings(&mut self, m: &ModelInput<'_>, config: &ModelConfig) -> Option<(i32, ReplayStart)> {
        let partitions = config.partitions.unwrap_or(1);
        let replay = ReplayStart::of(&config.replay);
        if partitions < 1 {
            self.diags.push(Self::config_key_error(
                m,
                Some("partitions"),
                format!("partitions must be at least 1, got {partitions}"),
            ));
        }
        if replay.is_none() {
            let timestamp = match &config.replay {
                Some(ReplayPolicy::Timestamp { timestamp }) => timestamp.as_str(),
                _ => "",
            };
            self.diags.push(Self::config_key_error(
                m,
                Some("replay"),
                format!("replay timestamp `{timestamp}` is not RFC 3339 (e.g. 2024-01-31T00:00:00Z)"),
            ));
        }
        let replay = replay?;
        (partitions >= 1).then_some((partitions, replay))
    }

    /// A `config()` problem, at the `config(` call (else the top of the file).
    fn config_error(m: &ModelInput<'_>, msg: String) -> Diagnostic {
        Self::config_key_error(m, None, msg)
    }

    /// A `config()` problem, at `key=` when the SQL's `config()` passes it, else at the
    /// `config(` call, else at the top of the file.
    fn config_key_error(m: &ModelInput<'_>, key: Option<&str>, msg: String) -> Diagnostic {
        let captured = &m.r.captured;
        let at_key = key.and_then(|k| captured.config_keys.get(k).map(|o| (*o, k.chars().count())));
        let (offset, len) = match (at_key, captured.config_offset) {
            (Some(at), _) => (Some(at.0), at.1),
            (None, o) => (o, 6),
        };
        let (l, c) = offset.map(|o| pos_of(&m.file.source.text, o)).unwrap_or((1, 1));
        Diagnostic::error("config", msg).at(&m.file.source, Pos::new(l, c, len))
    }

    /// A problem of the WINDOW clause, at the clause.
    fn window_error(&self, m: &ModelInput<'_>, streaming: &StreamingSql, msg: &str) -> Diagnostic {
        let (l, c) = streaming.window_pos.unwrap_or((1, 1));
        self.at_rendered(m.file, m.r, l, c, 6, Diagnostic::error("sql-window", msg.to_string()))
    }

    /// Plans `statement` with `<stream>.rowtime AS __streamctl_rowtime` appended to its SELECT
    /// list. Returns the plan, the stream input and its schema with `rowtime`.
    pub(super) async fn plan_with_rowtime(
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
            NodeId::Sink(_) | NodeId::Connector(_) => false,
        };
        let streams: Vec<&NodeId> = inputs.iter().filter(|i| is_stream(i)).collect();
        let [stream] = streams.as_slice() else { return None };
        let (schema_name, table) = match stream {
            NodeId::Source(n) => {
                let s = &sources[n];
                (s.decl.group.clone(), s.decl.table.name.clone())
            }
            NodeId::Model(n) => (MODEL_SCHEMA.to_string(), n.clone()),
            NodeId::Sink(_) | NodeId::Connector(_) => return None,
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
                NodeId::Sink(_) | NodeId::Connector(_) => continue,
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
pub(crate) fn group_columns(plan: &LogicalPlan) -> Option<Vec<String>> {
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

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Why `config(headers={name: col})` cannot write header `name` from column `col`, if it cannot.
fn header_column_problem(name: &str, col: &str, schema: &Schema) -> Result<(), String> {
    use crate::formats::headers::{is_all_headers_type, is_single_header_type};
    use datafusion::arrow::datatypes::DataType;
    if name.is_empty() {
        return Err("a header name cannot be empty".into());
    }
    let Some(f) = schema.fields().iter().find(|f| f.name().eq_ignore_ascii_case(col)) else {
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let hint = crate::diagnostics::suggest(col, names.iter().copied())
            .map_or_else(String::new, |s| format!(" (did you mean `{s}`?)"));
        return Err(format!("header `{name}`: `{col}` is not an output column{hint}"));
    };
    let dt = match f.data_type() {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        other => other.clone(),
    };
    let name_type = crate::sql::types::sql_type_name(f.data_type());
    if name == "*" && !is_all_headers_type(&dt) {
        return Err(format!(
            "header `*` writes every entry of an ARRAY<STRUCT<key STRING, value BYTES>> column; `{col}` is {name_type}"
        ));
    }
    if name != "*" && !is_single_header_type(&dt) {
        return Err(format!("header `{name}`: column `{col}` is {name_type}; a header is written from a STRING or BYTES column (CAST it)"));
    }
    Ok(())
}
