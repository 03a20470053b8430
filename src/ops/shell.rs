//! `streamctl shell`: an interactive session over the target, in the spirit of the ksql CLI.
//! This module carries out its statements: `SHOW SOURCES`, `SHOW MODELS`, `DESCRIBE x`,
//! `PEEK x [n]` and SELECTs (through [`super::query`]), over one connection to the target (on
//! the embedded target one broker, loaded with what the statements read as they need it). The
//! terminal side (line editing, history, completion, printing) is `cli::shell`.

use std::ops::Range;
use std::sync::Arc;

use super::peek::{resolve_peek_target, resolve_relation, PeekOptions, ReadTarget, Relation, StartAt};
use super::query::{compile_query, prepare, PreparedQuery, QUERY_FILE, QUERY_MODEL};
use crate::compile::{CompiledProject, ROWTIME_COLUMN};
use crate::diagnostics::{pos_of, suggest, Diagnostic, Diagnostics, Pos, SourceText};
use crate::graph::NodeId;
use crate::project::config::{RelationKind, TargetKind, ValueFormat};
use crate::project::target::ResolvedTarget;
use crate::project::Project;
use crate::sql::types::sql_type_name;

/// Records `PEEK x` shows without a count.
pub const PEEK_DEFAULT: usize = 10;

/// The shell's own words, and SQL's most used ones, for completion.
pub const KEYWORDS: &[&str] = &[
    "SHOW", "SOURCES", "MODELS", "DESCRIBE", "PEEK", "HELP", "EXIT", "QUIT", "SELECT", "FROM", "WHERE", "JOIN", "LEFT",
    "ON", "AS", "AND", "OR", "NOT", "NULL", "IS", "IN", "LIKE", "BETWEEN", "CASE", "WHEN", "THEN", "ELSE", "END",
    "GROUP", "BY", "HAVING", "ORDER", "EMIT", "CHANGES", "FINAL", "LIMIT", "WINDOW", "TUMBLING", "HOPPING", "SESSION",
    "SIZE", "ADVANCE", "GRACE", "PERIOD", "COUNT", "SUM", "AVG", "MIN", "MAX", "CAST", "DISTINCT", "ROWTIME",
    "EARLIEST", "LATEST",
];

/// One statement as typed (positions are byte ranges in the line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    Empty,
    ShowSources,
    ShowModels,
    Describe {
        name: String,
        at: Range<usize>,
    },
    Peek {
        name: String,
        at: Range<usize>,
        limit: usize,
        start: StartAt,
    },
    /// A SELECT, as typed (without a trailing `;`).
    Query(String),
    Help,
    Exit,
}

/// What went wrong with a statement: diagnostics pointing into the text typed, or a message.
#[derive(Debug)]
pub enum ShellError {
    Diagnostics(Diagnostics),
    Message(String),
}

impl ShellError {
    fn at(text: &str, range: Range<usize>, message: impl Into<String>, help: Option<String>) -> ShellError {
        let (line, column) = pos_of(text, range.start);
        let len = text.get(range).map_or(1, |s| s.chars().count().max(1));
        let mut d =
            Diagnostic::error("statement", message).at(&SourceText::new(QUERY_FILE, text), Pos::new(line, column, len));
        if let Some(h) = help {
            d = d.with_help(h);
        }
        let mut diags = Diagnostics::new();
        diags.push(d);
        ShellError::Diagnostics(diags)
    }
}

/// Whitespace-separated words with their byte ranges.
fn words(text: &str) -> Vec<(Range<usize>, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                out.push((s..i, &text[s..i]));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s..text.len(), &text[s..]));
    }
    out
}

const STATEMENTS: &str = "SHOW SOURCES, SHOW MODELS, DESCRIBE x, PEEK x [n] [FROM earliest|latest|TIME], \
                          SELECT ... [EMIT CHANGES] [LIMIT n], HELP, EXIT";

/// Parses one line: the statement's words are case-insensitive, a trailing `;` is optional.
pub fn parse_statement(line: &str) -> Result<Statement, ShellError> {
    let body = line.trim_end();
    let body = body.strip_suffix(';').unwrap_or(body);
    let ws = words(body);
    let Some((first_at, first)) = ws.first().cloned() else { return Ok(Statement::Empty) };
    let is = |w: &str, k: &str| w.eq_ignore_ascii_case(k);
    let extra = |i: usize| -> Result<(), ShellError> {
        match ws.get(i) {
            Some((at, w)) => Err(ShellError::at(line, at.clone(), format!("unexpected `{w}`"), None)),
            None => Ok(()),
        }
    };
    if first.starts_with("--") {
        return Ok(Statement::Empty);
    }
    let head = first.to_ascii_uppercase();
    match head.as_str() {
        "EXIT" | "QUIT" => extra(1).map(|_| Statement::Exit),
        "HELP" => extra(1).map(|_| Statement::Help),
        "SELECT" | "WITH" => Ok(Statement::Query(body.to_string())),
        "SHOW" | "LIST" => match ws.get(1) {
            Some((_, w)) if is(w, "SOURCES") || is(w, "STREAMS") => extra(2).map(|_| Statement::ShowSources),
            Some((_, w)) if is(w, "MODELS") => extra(2).map(|_| Statement::ShowModels),
            Some((at, w)) => Err(ShellError::at(
                line,
                at.clone(),
                format!("cannot show `{w}`"),
                Some("SHOW SOURCES or SHOW MODELS".into()),
            )),
            None => Err(ShellError::at(
                line,
                first_at.end..first_at.end,
                "SHOW what?",
                Some("SHOW SOURCES or SHOW MODELS".into()),
            )),
        },
        "DESCRIBE" | "DESC" => match ws.get(1) {
            Some((at, w)) => extra(2).map(|_| Statement::Describe { name: w.to_string(), at: at.clone() }),
            None => Err(ShellError::at(line, first_at, "DESCRIBE needs a source or model name", None)),
        },
        "PEEK" | "PRINT" => {
            let Some((at, name)) = ws.get(1).cloned() else {
                return Err(ShellError::at(line, first_at, "PEEK needs a source, model or topic name", None));
            };
            let mut limit = PEEK_DEFAULT;
            let mut start = StartAt::Earliest;
            let mut i = 2;
            if let Some((n_at, n)) = ws.get(i) {
                if !is(n, "FROM") {
                    limit = n.parse().map_err(|_| {
                        ShellError::at(line, n_at.clone(), format!("`{n}` is not a number of records"), None)
                    })?;
                    i += 1;
                }
            }
            if let Some((from_at, w)) = ws.get(i) {
                if !is(w, "FROM") {
                    return Err(ShellError::at(line, from_at.clone(), format!("unexpected `{w}`"), None));
                }
                let Some((t_at, t)) = ws.get(i + 1) else {
                    return Err(ShellError::at(line, from_at.clone(), "FROM needs earliest, latest or a time", None));
                };
                start = StartAt::parse(&t.to_ascii_lowercase())
                    .or_else(|_| StartAt::parse(t))
                    .map_err(|e| ShellError::at(line, t_at.clone(), e, None))?;
                i += 2;
            }
            extra(i)?;
            Ok(Statement::Peek { name: name.to_string(), at, limit, start })
        }
        _ => {
            let heads = ["SHOW", "DESCRIBE", "PEEK", "SELECT", "HELP", "EXIT", "QUIT"];
            let help = match suggest(&head, heads) {
                Some(s) => format!("did you mean `{s}`? Statements: {STATEMENTS}"),
                None => format!("statements: {STATEMENTS}"),
            };
            Err(ShellError::at(line, first_at, format!("unknown statement `{first}`"), Some(help)))
        }
    }
}

/// A relation as `DESCRIBE` shows it.
#[derive(Debug, Clone)]
pub struct Description {
    /// `soe.orders`, `orders_by_mode`.
    pub name: String,
    /// `source` or `model`.
    pub node: &'static str,
    pub kind: RelationKind,
    pub topic: String,
    pub format: &'static str,
    pub key: Vec<String>,
    pub event_time: Option<String>,
    /// Models: what they read.
    pub inputs: Vec<String>,
    pub description: Option<String>,
    /// (name, SQL type, nullable, description).
    pub columns: Vec<(String, String, bool, Option<String>)>,
}

/// A line of `SHOW SOURCES` / `SHOW MODELS`.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub kind: RelationKind,
    pub topic: String,
    pub format: &'static str,
    /// Sources: the key columns; models: their inputs.
    pub detail: String,
}

fn format_word(f: ValueFormat) -> &'static str {
    f.name()
}

/// `stream` or `table`.
pub fn kind_word(k: RelationKind) -> &'static str {
    match k {
        RelationKind::Stream => "stream",
        RelationKind::Table => "table",
    }
}

/// A shell session: the project (compiled once when the session starts), its target, and the
/// connection the statements read through (opened with the first statement that reads).
pub struct Session {
    project: Project,
    load_diags: Diagnostics,
    pub cp: Arc<CompiledProject>,
    target: ResolvedTarget,
    /// Where Avro sources without columns take them from (the target's registry).
    registry: Option<Arc<dyn crate::registry::SchemaRegistry>>,
    reader: Option<ReadTarget>,
    /// Where push queries' streams start.
    pub from: StartAt,
}

/// A SELECT compiled, with its inputs read: ready to run.
pub struct ReadyQuery {
    pub cp: Arc<CompiledProject>,
    pub prepared: PreparedQuery,
}

impl Session {
    /// `registry`: where Avro sources without columns take them from, as `cp` did.
    pub fn new(
        project: Project,
        load_diags: Diagnostics,
        cp: CompiledProject,
        target: ResolvedTarget,
        registry: Option<Arc<dyn crate::registry::SchemaRegistry>>,
    ) -> Session {
        let from = if target.kind == TargetKind::Embedded { StartAt::Earliest } else { StartAt::Latest };
        Session { project, load_diags, cp: Arc::new(cp), target, registry, reader: None, from }
    }

    pub fn target_name(&self) -> &str {
        &self.target.name
    }

    pub fn embedded(&self) -> bool {
        self.target.kind == TargetKind::Embedded
    }

    /// The connection, opened on first use, with `reads` (and, embedded, their upstream) loaded.
    pub fn reader(&mut self, cp: &Arc<CompiledProject>, reads: &[NodeId]) -> Result<&ReadTarget, ShellError> {
        if self.reader.is_none() {
            self.reader = Some(ReadTarget::connect(cp, &self.target).map_err(ShellError::Message)?);
        }
        let reader = self.reader.as_mut().ok_or_else(|| ShellError::Message("no connection".into()))?;
        reader.load(cp, reads).map_err(ShellError::Message)?;
        Ok(reader)
    }

    /// The sources, by name.
    pub fn sources(&self) -> Vec<Listed> {
        self.cp
            .sources
            .iter()
            .map(|(name, s)| Listed {
                name: name.clone(),
                kind: s.decl.table.kind,
                topic: s.decl.table.topic.clone(),
                format: format_word(s.decl.table.format),
                detail: s.key.join(", "),
            })
            .collect()
    }

    /// The models, in the order they run.
    pub fn models(&self) -> Vec<Listed> {
        self.cp
            .order()
            .into_iter()
            .filter_map(|n| if let NodeId::Model(m) = n { self.cp.models.get(&m) } else { None })
            .map(|m| Listed {
                name: m.name.clone(),
                kind: m.kind,
                topic: m.topic.clone(),
                format: format_word(m.config.format.unwrap_or_default()),
                detail: m.inputs.iter().map(|i| i.name().to_string()).collect::<Vec<_>>().join(", "),
            })
            .collect()
    }

    /// A source or model, or an error at the name with the nearest one.
    pub fn describe(&self, line: &str, name: &str, at: Range<usize>) -> Result<Description, ShellError> {
        let cp = &self.cp;
        let Some(relation) = resolve_relation(cp, name) else {
            let names = self.relation_names();
            let help = suggest(name, names.iter().map(String::as_str))
                .map(|s| format!("did you mean `{s}`?"))
                .or_else(|| Some("SHOW SOURCES and SHOW MODELS list them".into()));
            return Err(ShellError::at(line, at, format!("no source or model `{name}`"), help));
        };
        Ok(match relation {
            Relation::Source(s) => {
                let src = &cp.sources[&s];
                let described: Vec<(String, Option<String>)> =
                    src.columns.iter().map(|c| (c.name.to_lowercase(), c.description.clone())).collect();
                Description {
                    name: s.clone(),
                    node: "source",
                    kind: src.decl.table.kind,
                    topic: src.decl.table.topic.clone(),
                    format: format_word(src.decl.table.format),
                    key: src.key.clone(),
                    event_time: src.event_time.as_ref().map(|e| e.column.clone()),
                    inputs: Vec::new(),
                    description: src.decl.table.description.clone(),
                    columns: src
                        .schema
                        .fields()
                        .iter()
                        .map(|f| {
                            let d = described
                                .iter()
                                .find(|(n, _)| *n == f.name().to_lowercase())
                                .and_then(|(_, d)| d.clone());
                            (f.name().clone(), sql_type_name(f.data_type()), f.is_nullable(), d)
                        })
                        .collect(),
                }
            }
            Relation::Topic(t) => return Err(ShellError::Message(format!("`{t}` is a topic, not a source or model"))),
            Relation::Model(m) => {
                let model = &cp.models[&m];
                Description {
                    name: m.clone(),
                    node: "model",
                    kind: model.kind,
                    topic: model.topic.clone(),
                    format: format_word(model.config.format.unwrap_or_default()),
                    key: model.key.clone(),
                    event_time: None,
                    inputs: model.inputs.iter().map(|i| i.name().to_string()).collect(),
                    description: model.description.clone(),
                    columns: model
                        .schema
                        .fields()
                        .iter()
                        .filter(|f| f.name() != ROWTIME_COLUMN)
                        .map(|f| (f.name().clone(), sql_type_name(f.data_type()), f.is_nullable(), None))
                        .collect(),
                }
            }
        })
    }

    /// What `PEEK name` reads, with its inputs loaded.
    pub fn peek_target(&mut self, name: &str) -> Result<(Relation, &ReadTarget), ShellError> {
        let cp = self.cp.clone();
        let relation = resolve_peek_target(&cp, name);
        let reads: Vec<NodeId> = relation.node().into_iter().collect();
        let reader = self.reader(&cp, &reads)?;
        Ok((relation, reader))
    }

    /// The options of `PEEK x n FROM start`.
    pub fn peek_options(limit: usize, start: StartAt) -> PeekOptions {
        PeekOptions { limit: Some(limit), start, partition: None, follow: false }
    }

    /// Compiles a SELECT as `streamctl query` does (errors point into the text typed) and
    /// loads what it reads.
    pub fn prepare_query(&mut self, text: &str) -> Result<(ReadyQuery, &ReadTarget), ShellError> {
        let mut prepared = prepare(&self.project, text).map_err(|d| {
            let mut diags = Diagnostics::new();
            diags.push(*d);
            ShellError::Diagnostics(diags)
        })?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ShellError::Message(e.to_string()))?;
        let cp = rt
            .block_on(compile_query(
                self.project.clone(),
                self.load_diags.clone(),
                &mut prepared,
                self.registry.clone(),
            ))
            .map_err(ShellError::Diagnostics)?;
        let cp = Arc::new(cp);
        let inputs = cp.models[QUERY_MODEL].inputs.clone();
        let reader = self.reader(&cp, &inputs)?;
        Ok((ReadyQuery { cp, prepared }, reader))
    }

    /// Names of sources (`group.table` and the table alone) and models.
    pub fn relation_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.cp.sources.keys().cloned().collect();
        names.extend(self.cp.sources.values().map(|s| s.decl.table.name.clone()));
        names.extend(self.cp.models.keys().cloned());
        names.sort();
        names.dedup();
        names
    }

    /// Column names of every source and model.
    pub fn column_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .cp
            .sources
            .values()
            .flat_map(|s| s.schema.fields().iter().map(|f| f.name().clone()).collect::<Vec<_>>())
            .chain(self.cp.models.values().flat_map(|m| {
                m.schema.fields().iter().map(|f| f.name().clone()).filter(|n| n != ROWTIME_COLUMN).collect::<Vec<_>>()
            }))
            .collect();
        names.sort();
        names.dedup();
        names
    }
}

/// Completions of the word that ends at `pos` in `line`: (start of the word, candidates).
/// Keywords follow the case of what was typed; names are given as the project spells them.
pub fn complete(line: &str, pos: usize, relations: &[String], columns: &[String]) -> (usize, Vec<String>) {
    let pos = pos.min(line.len());
    let start = line[..pos]
        .char_indices()
        .rev()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '.'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let word = &line[start..pos];
    if word.is_empty() {
        return (start, Vec::new());
    }
    let prefix = |s: &str| s.len() >= word.len() && s[..word.len()].eq_ignore_ascii_case(word);
    // After `x.` (an alias or a relation): the column part alone.
    let (col_start, col_word) = match word.rfind('.') {
        Some(i) => (start + i + 1, &word[i + 1..]),
        None => (start, word),
    };
    let mut out: Vec<String> = Vec::new();
    out.extend(relations.iter().filter(|r| prefix(r)).cloned());
    if word.contains('.') && out.is_empty() {
        let col_prefix = |s: &str| s.len() >= col_word.len() && s[..col_word.len()].eq_ignore_ascii_case(col_word);
        let cols: Vec<String> = columns.iter().filter(|c| col_prefix(c)).cloned().collect();
        return (col_start, cols);
    }
    let lower = word.chars().all(|c| !c.is_alphabetic() || c.is_lowercase());
    out.extend(KEYWORDS.iter().filter(|k| prefix(k)).map(|k| if lower { k.to_lowercase() } else { (*k).to_string() }));
    out.extend(columns.iter().filter(|c| prefix(c)).cloned());
    out.sort();
    out.dedup();
    (start, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_parse_with_positions() {
        assert_eq!(parse_statement("  show sources; ").unwrap(), Statement::ShowSources);
        assert_eq!(parse_statement("SHOW MODELS").unwrap(), Statement::ShowModels);
        assert_eq!(parse_statement("").unwrap(), Statement::Empty);
        assert_eq!(parse_statement("-- a comment").unwrap(), Statement::Empty);
        assert_eq!(parse_statement("quit;").unwrap(), Statement::Exit);
        assert_eq!(
            parse_statement("describe orders;").unwrap(),
            Statement::Describe { name: "orders".into(), at: 9..15 }
        );
        assert_eq!(
            parse_statement("PEEK logon 3 FROM latest").unwrap(),
            Statement::Peek { name: "logon".into(), at: 5..10, limit: 3, start: StartAt::Latest }
        );
        assert_eq!(
            parse_statement("select * from x emit changes;").unwrap(),
            Statement::Query("select * from x emit changes".into())
        );
        let pos = |e: ShellError| match e {
            ShellError::Diagnostics(d) => d.iter().next().unwrap().pos.map(|p| (p.line, p.column, p.len)).unwrap(),
            ShellError::Message(m) => panic!("{m}"),
        };
        assert_eq!(pos(parse_statement("PEEK logon three").unwrap_err()), (1, 12, 5));
        assert_eq!(pos(parse_statement("  SELEKT 1").unwrap_err()), (1, 3, 6));
        assert_eq!(pos(parse_statement("SHOW tables").unwrap_err()), (1, 6, 6));
    }

    #[test]
    fn completion_of_names_keywords_and_columns() {
        let rel = vec!["logon".to_string(), "logon_enriched".into(), "soe.logon".into(), "soe.orders".into()];
        let cols = vec!["customer_id".to_string(), "logon_id".into()];
        assert_eq!(complete("PEEK logon_e", 12, &rel, &cols), (5, vec!["logon_enriched".to_string()]));
        assert_eq!(complete("sel", 3, &rel, &cols), (0, vec!["select".to_string()]));
        assert_eq!(complete("SEL", 3, &rel, &cols), (0, vec!["SELECT".to_string()]));
        assert_eq!(complete("SELECT l.cust", 13, &rel, &cols), (9, vec!["customer_id".to_string()]));
        assert_eq!(complete("FROM soe.o", 10, &rel, &cols), (5, vec!["soe.orders".to_string()]));
        assert_eq!(complete("SELECT ", 7, &rel, &cols), (7, Vec::<String>::new()));
    }
}
