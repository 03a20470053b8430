//! Sources: declared columns or schema files, keys, event time, dead-letter settings, checked
//! and turned into the SQL schemas models are planned against.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};

use super::source_schema::{self, ResolvedColumn};
use super::{names, CompiledSource, Compiler, EventTimeSpec};
use crate::diagnostics::{suggest, Diagnostic, Pos, SourceText};
use crate::formats::headers::{self, HeaderColumn};
use crate::project::config::{OnError, RelationKind, ValueFormat};
use crate::project::{Origin, SourceDecl};
use crate::sql::dialect::{self};
use crate::sql::{functions, types};

impl Compiler<'_> {
    pub(super) fn compile_sources(&mut self) -> BTreeMap<String, CompiledSource> {
        let mut out = BTreeMap::new();
        for decl in &self.project.sources {
            if let Some(s) = self.compile_source(decl) {
                self.register_schema(&decl.group).insert(&decl.table.name, s.schema.clone());
                out.insert(decl.full_name(), s);
            }
        }
        out
    }

    pub(super) fn compile_source(&mut self, decl: &SourceDecl) -> Option<CompiledSource> {
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
        let header_columns = self.header_columns(decl, &columns)?;
        let from_headers = |ci: usize| header_columns.iter().any(|h| h.index == ci);

        let mut key = Vec::new();
        for (i, k) in t.key.iter().enumerate() {
            match find(k) {
                Some(ci) if from_headers(ci) => {
                    self.diags.push(o.error(
                        "source",
                        &format!("key/{i}"),
                        format!("key column `{k}` is read from the headers: a key column must be in the record's key"),
                    ));
                    return None;
                }
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
                if from_headers(ci) {
                    self.diags.push(o.error(
                        "source",
                        "event_time/column",
                        format!("event time column `{}` is read from the headers: it must be in the value", et.column),
                    ));
                    return None;
                }
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
            let value_idx: Vec<usize> = (0..columns.len()).filter(|ci| !from_headers(*ci)).collect();
            let names: Vec<String> = value_idx.iter().map(|ci| columns[*ci].name.clone()).collect();
            let value_schema = schema.project(&value_idx).unwrap_or_else(|_| schema.as_ref().clone());
            if let Err(e) = crate::formats::avro::reader_fields(&value_schema, &names) {
                self.diags.push(o.error("source", "format", format!("source `{full}` cannot be read as Avro: {e}")));
                return None;
            }
        }
        if let Err(e) = crate::formats::keys::check_key_format(t.key_format, &t.key, &schema) {
            self.diags.push(o.error("source", "key_format", format!("source `{full}`: {e}")));
            return None;
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
            header_columns,
        })
    }

    /// The declared columns read from headers (`headers: true`, `header: name`), checked.
    fn header_columns(&mut self, decl: &SourceDecl, columns: &[ResolvedColumn]) -> Option<Vec<HeaderColumn>> {
        let (o, t) = (&decl.origin, &decl.table);
        let mut out = Vec::new();
        let mut ok = true;
        for (i, c) in t.columns.iter().enumerate() {
            let all = c.headers == Some(true);
            let field = if c.header.is_some() { "header" } else { "headers" };
            let Some(dt) = columns.get(i).map(|r| &r.data_type) else { continue };
            let problem = match (all, &c.header) {
                (false, None) => continue,
                (true, Some(_)) => {
                    Some((field, "give `headers: true` (every header) or `header: name`, not both".into()))
                }
                (false, Some(h)) if h.is_empty() => {
                    Some(("header", "`header` names a header: it cannot be empty".into()))
                }
                (false, Some(_)) if !headers::is_single_header_type(dt) => Some((
                    "type",
                    format!(
                        "column `{}` reads a header: its type is BYTES or STRING, not {}",
                        c.name,
                        types::sql_type_name(dt)
                    ),
                )),
                (true, None) if !headers::is_all_headers_type(dt) => Some((
                    "type",
                    format!(
                        "column `{}` holds every header: its type is ARRAY<STRUCT<key STRING, value BYTES>>, not {}",
                        c.name,
                        types::sql_type_name(dt)
                    ),
                )),
                _ => None,
            };
            match problem {
                Some((at, msg)) => {
                    self.diags.push(o.error("source", &format!("columns/{i}/{at}"), msg));
                    ok = false;
                }
                None => out.push(HeaderColumn { index: i, header: if all { None } else { c.header.clone() } }),
            }
        }
        ok.then_some(out)
    }

    /// Columns from the latest version of a subject in the target's registry, else in the
    /// project's file registry (`schemas/`).
    pub(super) fn columns_from_subject(
        &mut self,
        o: &Origin,
        full: &str,
        subject: &str,
        field: &str,
    ) -> Option<Vec<ResolvedColumn>> {
        use crate::registry::SchemaRegistry;
        let registry: Arc<dyn SchemaRegistry> = match &self.registry {
            Some(r) => r.clone(),
            None => Arc::new(crate::registry::file::FileRegistry::new(self.project.root.join("schemas"), "schemas")),
        };
        let latest = match registry.versions(subject) {
            Ok(v) => v.into_iter().last(),
            Err(e) => {
                self.diags.push(o.error(
                    "source",
                    field,
                    format!("source `{full}`: cannot read the columns of subject `{subject}`: {e}"),
                ));
                return None;
            }
        };
        let Some(latest) = latest else {
            let where_ = if registry.content_addressed() {
                format!("{}/", registry.describe())
            } else {
                format!("schema registry {}", registry.describe())
            };
            let help = if registry.content_addressed() {
                format!("register its schema as `schemas/{subject}/v1.avsc`, or declare `columns:`")
            } else {
                "register the topic's schema under that subject, or declare `columns:`".to_string()
            };
            self.diags.push(
                o.error("source", field, format!("source `{full}`: subject `{subject}` is not in the {where_}"))
                    .with_help(help),
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

    pub(super) fn columns_from_schema_file(&mut self, o: &Origin, file: &str) -> Option<Vec<ResolvedColumn>> {
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
}
