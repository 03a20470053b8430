//! `streamctl query`: one SELECT over the project's sources and models, compiled exactly like a
//! model (as a model of its own, next to the project's) and run through the same micro-batch
//! driver as a transient job: no checkpoint, no output topic, no consumer-group commits.
//!
//! * A push query (`EMIT CHANGES`) reads its streams from `--from` (default: the records
//!   produced after it started) and its tables from their start, and prints rows as they come;
//!   `LIMIT n` stops it after n rows.
//! * A pull query (no EMIT) over a table reads the table's topic to its current end, keeps the
//!   latest record per key (a tombstone deletes it), runs the query over those rows once and
//!   ends.
//!
//! Names in FROM and JOIN are the project's: a source as `group.table` (or its table name
//! alone when unambiguous), a model by name; `{{ source(..) }}` and `{{ ref(..) }}` work too.
//! They are rewritten to `source()`/`ref()` calls for the compiler, and every position the
//! compiler reports is mapped back to the query as typed.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::peek::{advance_to_positions, StartAt};
use crate::compile::{CompiledProject, OperatorKind};
use crate::connectors::consumer::{manual_consumer, partition_list, partition_offsets};
use crate::diagnostics::{offset_of, pos_of, Diagnostic, Diagnostics, Pos, SourceText};
use crate::graph::NodeId;
use crate::project::config::RelationKind;
use crate::project::{ModelFile, Project};
use crate::registry::SchemaRegistry;
use crate::runtime::codec::{record_of, Record};
use crate::runtime::driver::{BatchOutcome, MicroBatchDriver};
use crate::runtime::RunError;

/// The name the query is compiled under, as a model of the project.
pub const QUERY_MODEL: &str = "streamctl_query";
/// The file name diagnostics of the query carry.
pub const QUERY_FILE: &str = "<query>";

/// A query as typed, and as handed to the compiler.
#[derive(Debug, Clone)]
pub struct PreparedQuery {
    pub text: String,
    /// The model text: names rewritten to `source()`/`ref()`, LIMIT blanked.
    pub model_text: String,
    /// (range in `text`, length of its replacement in `model_text`), in order.
    edits: Vec<(std::ops::Range<usize>, usize)>,
    pub limit: Option<usize>,
    /// `EMIT CHANGES` (or `EMIT FINAL`): rows as they come.
    pub push: bool,
}

struct Tok {
    token: Token,
    range: std::ops::Range<usize>,
}

fn tokens(text: &str) -> Result<Vec<Tok>, Box<Diagnostic>> {
    let dialect = GenericDialect {};
    let toks: Vec<TokenWithSpan> =
        Tokenizer::new(&dialect, text).tokenize_with_location().map_err(|e| {
            Box::new(Diagnostic::error("sql-syntax", e.message.clone()).at(
                &SourceText::new(QUERY_FILE, text),
                Pos::new(e.location.line as usize, e.location.column as usize, 1),
            ))
        })?;
    Ok(toks
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
        .map(|t| {
            let start = offset_of(text, t.span.start.line as usize, t.span.start.column as usize);
            let end = offset_of(text, t.span.end.line as usize, t.span.end.column as usize);
            Tok { token: t.token, range: start..end }
        })
        .collect())
}

fn is_word(t: &Tok, w: &str) -> bool {
    matches!(&t.token, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w))
}

/// Prepares a query for the compiler: LIMIT taken off (it is applied to the rows printed),
/// names of sources and models in FROM/JOIN turned into `source()`/`ref()` calls.
pub fn prepare(project: &Project, text: &str) -> Result<PreparedQuery, Box<Diagnostic>> {
    let toks = tokens(text)?;
    let file = SourceText::new(QUERY_FILE, text);
    let mut limit = None;
    let mut edits: Vec<(std::ops::Range<usize>, String)> = Vec::new();
    let mut depth = 0i32;
    let mut push = false;
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        if depth == 0 && is_word(t, "EMIT") {
            push = true;
        }
        if depth == 0 && is_word(t, "LIMIT") {
            let n = match toks.get(i + 1).map(|n| &n.token) {
                Some(Token::Number(n, _)) => n.parse::<usize>().ok(),
                _ => None,
            };
            let Some(n) = n else {
                return Err(Box::new(
                    Diagnostic::error("sql-syntax", "LIMIT needs a whole number of rows").at(&file, at(text, &t.range)),
                ));
            };
            limit = Some(n);
            edits.push((t.range.start..toks[i + 1].range.end, String::new()));
            i += 2;
            continue;
        }
        if is_word(t, "FROM") || is_word(t, "JOIN") {
            if let Some((range, name, next)) = relation_name(&toks, i + 1) {
                if let Some(call) = jinja_call(project, &name) {
                    edits.push((range, call));
                }
                i = next;
                continue;
            }
        }
        i += 1;
    }
    // Blanked (LIMIT) text keeps its length, so positions after it stay put.
    let mut model_text = String::with_capacity(text.len() + 64);
    let mut kept = Vec::new();
    let mut last = 0;
    for (range, replacement) in &edits {
        model_text.push_str(&text[last..range.start]);
        let replacement = if replacement.is_empty() {
            text[range.clone()].chars().map(|c| if c == '\n' { '\n' } else { ' ' }).collect()
        } else {
            replacement.clone()
        };
        model_text.push_str(&replacement);
        kept.push((range.clone(), replacement.len()));
        last = range.end;
    }
    model_text.push_str(&text[last..]);
    Ok(PreparedQuery { text: text.to_string(), model_text, edits: kept, limit, push })
}

fn at(text: &str, range: &std::ops::Range<usize>) -> Pos {
    let (line, column) = pos_of(text, range.start);
    Pos::new(line, column, text[range.clone()].chars().count().max(1))
}

/// The relation name starting at `toks[i]`: `a` or `a.b` (quoted or not). Returns its byte
/// range, the name as the project spells it (quotes off), and the index after it.
fn relation_name(toks: &[Tok], i: usize) -> Option<(std::ops::Range<usize>, String, usize)> {
    let part = |t: &Tok| match &t.token {
        Token::Word(w) if w.quote_style.is_some() || !is_reserved(&w.value) => Some(w.value.clone()),
        _ => None,
    };
    let first = toks.get(i)?;
    let mut name = part(first)?;
    let mut end = first.range.end;
    let mut next = i + 1;
    if toks.get(i + 1).is_some_and(|t| t.token == Token::Period) {
        let second = toks.get(i + 2)?;
        name = format!("{name}.{}", part(second)?);
        end = second.range.end;
        next = i + 3;
    }
    Some((first.range.start..end, name, next))
}

fn is_reserved(word: &str) -> bool {
    ["SELECT", "LATERAL", "UNNEST"].iter().any(|w| w.eq_ignore_ascii_case(word))
}

/// `{{ source('g', 't') }}` or `{{ ref('m') }}` for a name of the project; `None` leaves the
/// name to the compiler (which then says what it does not know).
fn jinja_call(project: &Project, name: &str) -> Option<String> {
    if let Some(m) = project.models.iter().find(|m| m.name.eq_ignore_ascii_case(name)) {
        return Some(format!("{{{{ ref('{}') }}}}", m.name));
    }
    if let Some(s) = project.sources.iter().find(|s| s.full_name().eq_ignore_ascii_case(name)) {
        return Some(format!("{{{{ source('{}', '{}') }}}}", s.group, s.table.name));
    }
    let by_table: Vec<_> = project.sources.iter().filter(|s| s.table.name.eq_ignore_ascii_case(name)).collect();
    match by_table.as_slice() {
        [s] => Some(format!("{{{{ source('{}', '{}') }}}}", s.group, s.table.name)),
        _ => None,
    }
}

impl PreparedQuery {
    /// The query's result as a stream of rows (a query over a table without aggregation has
    /// no key of its own to be a table by; its rows are printed, not kept).
    fn materialize_as_stream(&mut self) {
        const CONFIG: &str = "{{ config(materialized='stream') }}";
        if !self.model_text.starts_with(CONFIG) {
            self.model_text.insert_str(0, CONFIG);
            self.edits.insert(0, (0..0, CONFIG.len()));
        }
    }

    /// A byte offset of the model text as the offset in the query as typed.
    fn original_offset(&self, model_offset: usize) -> usize {
        let mut shift: isize = 0;
        for (range, new_len) in &self.edits {
            let new_start = (range.start as isize + shift) as usize;
            if model_offset < new_start {
                break;
            }
            if model_offset < new_start + new_len {
                return range.start;
            }
            shift += *new_len as isize - range.len() as isize;
        }
        (model_offset as isize - shift).max(0) as usize
    }

    /// A diagnostic in the model text, re-pointed at the query as typed.
    pub fn map_diagnostic(&self, mut d: Diagnostic) -> Diagnostic {
        let in_query = d.file.as_deref() == Some(Path::new(QUERY_FILE));
        if !in_query {
            return d;
        }
        if let Some(pos) = d.pos {
            let start = self.original_offset(offset_of(&self.model_text, pos.line, pos.column));
            let end_model = offset_of(&self.model_text, pos.line, pos.column + pos.len.max(1));
            let end = self.original_offset(end_model).max(start + 1).min(self.text.len());
            let (line, column) = pos_of(&self.text, start);
            let len = self.text.get(start..end).map_or(1, |s| s.chars().count().max(1));
            d.pos = Some(Pos::new(line, column, len));
        }
        d.source = Some(SourceText::new(QUERY_FILE, self.text.clone()));
        d
    }
}

/// The project with the query compiled as one more model, or the query's diagnostics (mapped to
/// the query as typed). Problems elsewhere in the project do not stop a query that compiled.
/// `registry`: where Avro sources without columns take them from (see
/// [`crate::ops::source_import::columns_registry`]).
pub async fn compile_query(
    mut project: Project,
    load_diags: Diagnostics,
    query: &mut PreparedQuery,
    registry: Option<Arc<dyn SchemaRegistry>>,
) -> Result<CompiledProject, Diagnostics> {
    project.models.retain(|m| m.name != QUERY_MODEL);
    let with_query = |project: &Project, query: &PreparedQuery| {
        let mut p = project.clone();
        p.models.push(ModelFile {
            name: QUERY_MODEL.into(),
            source: SourceText::new(QUERY_FILE, query.model_text.clone()),
        });
        p
    };
    let compile = |p: Project, d: Diagnostics| crate::compile::compile_with_registry(p, d, registry.clone());
    let mut cp = compile(with_query(&project, query), load_diags.clone()).await;
    let keyless_table = cp.diagnostics.iter().any(|d| {
        d.file.as_deref() == Some(Path::new(QUERY_FILE)) && d.code == "config" && d.message.ends_with("has no key")
    });
    if keyless_table {
        query.materialize_as_stream();
        cp = compile(with_query(&project, query), load_diags).await;
    }
    let mine: Vec<Diagnostic> = cp
        .diagnostics
        .iter()
        .filter(|d| d.file.as_deref() == Some(Path::new(QUERY_FILE)))
        .map(|d| query.map_diagnostic(d.clone()))
        .collect();
    let Some(m) = cp.models.get_mut(QUERY_MODEL) else {
        let mut out = Diagnostics::new();
        if mine.is_empty() {
            // The query did not compile because something it reads did not: say what.
            out.extend(cp.diagnostics.iter().cloned());
        } else {
            out.extend(mine);
        }
        return Err(out);
    };
    // Rows are printed, so they are encoded as JSON whatever the project's default format.
    m.config.format = None;
    let inputs = m.inputs.clone();
    if !query.push {
        let streams: Vec<&NodeId> =
            inputs.iter().filter(|i| cp.relation_kind(i) == Some(RelationKind::Stream)).collect();
        if let Some(s) = streams.first() {
            let mut d = Diagnostic::error(
                "query",
                format!("{s} is a stream: a query over a stream runs continuously and needs EMIT CHANGES"),
            )
            .with_help("end the query with EMIT CHANGES (and LIMIT n to stop after n rows); a query without EMIT reads tables only (a pull query)");
            d.file = Some(QUERY_FILE.into());
            // At the query's last character: the end of input has no column to point at.
            let trimmed = query.text.trim_end();
            let end = trimmed.char_indices().last().map_or(0, |(i, _)| i);
            let (line, column) = pos_of(&query.text, end);
            d.pos = Some(Pos::new(line, column, 1));
            d.source = Some(SourceText::new(QUERY_FILE, query.text.clone()));
            let mut out = Diagnostics::new();
            out.push(d);
            return Err(out);
        }
    }
    Ok(cp)
}

/// The query's output columns, in order.
pub fn columns(cp: &CompiledProject) -> Vec<String> {
    cp.models.get(QUERY_MODEL).map(|m| m.schema.fields().iter().map(|f| f.name().clone()).collect()).unwrap_or_default()
}

/// How a query run reads its inputs.
#[derive(Debug, Clone, Copy)]
pub struct QueryOptions {
    /// Where streams start (tables always from their start).
    pub start: StartAt,
    /// Stop when every input is at the end it had when the query started (the embedded target,
    /// whose inputs never grow).
    pub until_caught_up: bool,
}

/// A row of the result, as JSON (`None` for the deletion of a key).
pub type Row = Option<serde_json::Map<String, serde_json::Value>>;

/// Runs the compiled query, handing each result row to `emit` until `emit` returns false, the
/// stop flag is set, or (pull, `until_caught_up`) the inputs are read. Returns the rows emitted.
pub fn run_query(
    cp: &CompiledProject,
    client: &ClientConfig,
    registry: Option<&crate::registry::SharedRegistry>,
    push: bool,
    opts: QueryOptions,
    stop: &AtomicBool,
    emit: &mut dyn FnMut(Row) -> bool,
) -> Result<usize, RunError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let mut driver =
        MicroBatchDriver::new(cp, QUERY_MODEL, crate::runtime::task_context(), Duration::from_secs(2), registry)?;
    let m = &cp.models[QUERY_MODEL];
    let stateless = m.operator == OperatorKind::Stateless;
    let consumer = manual_consumer(client, "streamctl-query").map_err(RunError::Setup)?;
    let _closed = crate::connectors::consumer::ClosedOnDrop(&consumer);
    let mut emitted = 0usize;
    let mut emit_out = |out: &mut BatchOutcome, emitted: &mut usize| -> bool {
        for r in out.outputs.drain(..) {
            let row = r.value.as_deref().and_then(|v| serde_json::from_slice(v).ok());
            *emitted += 1;
            if !emit(row) {
                return false;
            }
        }
        true
    };
    if !push {
        // Pull: the latest record per key of each table input, then the query over them once.
        let mut out = BatchOutcome::default();
        let inputs: Vec<_> = driver.codecs().map(|c| (c.id.clone(), c.topic.clone())).collect();
        for (input, topic) in inputs {
            let latest = latest_per_key(&consumer, &topic, stop)?;
            rt.block_on(driver.process(&input, &latest, &mut out))?;
        }
        if !stateless {
            rt.block_on(driver.advance_to(i64::MAX, &mut out))?;
        }
        emit_out(&mut out, &mut emitted);
        return Ok(emitted);
    }

    // Push: tables from their start, streams from `start`; streams wait until the tables are read.
    let mut tpl = TopicPartitionList::new();
    let mut parts: BTreeMap<(String, i32), PartState> = BTreeMap::new();
    let mut by_topic: HashMap<String, NodeId> = HashMap::new();
    let codecs: Vec<_> = driver.codecs().map(|c| (c.topic.clone(), c.id.clone(), c.kind, c.lateness_ms)).collect();
    for (topic, input, kind, lateness) in codecs {
        by_topic.insert(topic.clone(), input.clone());
        let Some(partitions) = partition_offsets(&consumer, &topic).map_err(RunError::Setup)? else {
            return Err(RunError::Setup(format!("input topic {topic} ({input}) does not exist")));
        };
        let times = match (kind, opts.start) {
            (RelationKind::Stream, StartAt::Time(ms)) => offsets_for_time(&consumer, &topic, &partitions, ms)?,
            _ => BTreeMap::new(),
        };
        for (p, low, high) in partitions {
            let start = match (kind, opts.start) {
                (RelationKind::Table, _) | (_, StartAt::Earliest) => low,
                (_, StartAt::Latest) => high,
                (_, StartAt::Time(_)) => times.get(&p).copied().unwrap_or(high).clamp(low, high),
            };
            tpl.add_partition_offset(&topic, p, Offset::Offset(start))
                .map_err(|e| RunError::Setup(format!("assigning {topic}: {e}")))?;
            parts.insert((topic.clone(), p), PartState { input: input.clone(), kind, next: start, high, end: high });
            if kind == RelationKind::Stream {
                driver.tracker().add_partition(&input, p, lateness);
            }
        }
    }
    consumer.assign(&tpl).map_err(|e| RunError::Setup(format!("assigning the inputs: {e}")))?;
    // Said once the start offsets are fixed: whatever is produced from now on is read.
    eprintln!("query started: rows are printed as they come (Ctrl-C ends)");
    let streams: Vec<(String, i32)> =
        parts.iter().filter(|(_, s)| s.kind == RelationKind::Stream).map(|(k, _)| k.clone()).collect();
    let tables_read = |parts: &BTreeMap<(String, i32), PartState>| {
        parts.values().filter(|s| s.kind == RelationKind::Table).all(|s| s.next >= s.end)
    };
    let mut streams_paused = !tables_read(&parts);
    if streams_paused {
        let _ = consumer.pause(&partition_list(&streams));
    }
    let mut last_ends = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let batch = poll_batch(&consumer, &mut parts)?;
        let mut out = BatchOutcome::default();
        let mut rest = batch.as_slice();
        while let Some((topic, _)) = rest.first() {
            let run = rest.iter().take_while(|(t, _)| t == topic).count();
            let records: Vec<Record> = rest[..run].iter().map(|(_, r)| r.clone()).collect();
            if let Some(input) = by_topic.get(topic) {
                rt.block_on(driver.process(input, &records, &mut out))?;
            }
            rest = &rest[run..];
        }
        if batch.is_empty() {
            // Past commit markers the consumer skipped without handing them out.
            if let Ok(positions) = consumer.position() {
                for ((topic, p), st) in parts.iter_mut() {
                    if let Some(Offset::Offset(o)) = positions.find_partition(topic, *p).map(|e| e.offset()) {
                        st.next = st.next.max(o);
                    }
                }
            }
        }
        if batch.is_empty() && last_ends.elapsed() >= Duration::from_secs(1) {
            last_ends = Instant::now();
            for ((topic, p), st) in parts.iter_mut() {
                if let Ok((_, high)) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(5)) {
                    st.high = high;
                }
            }
        }
        for ((_, p), st) in &parts {
            if st.kind == RelationKind::Stream && st.next >= st.high {
                driver.tracker().caught_up(&st.input, *p);
            }
        }
        if streams_paused && tables_read(&parts) {
            streams_paused = false;
            let _ = consumer.resume(&partition_list(&streams));
        }
        rt.block_on(driver.advance_watermark(&mut out))?;
        let at_end = opts.until_caught_up && batch.is_empty() && parts.values().all(|s| s.next >= s.end);
        if at_end {
            rt.block_on(driver.advance_to_end_of_inputs(&mut out))?;
        }
        if !emit_out(&mut out, &mut emitted) || at_end {
            break;
        }
    }
    Ok(emitted)
}

struct PartState {
    input: NodeId,
    kind: RelationKind,
    next: i64,
    /// The end offset as last seen (for the watermark's idle partitions).
    high: i64,
    /// The end offset when the query started (tables are read to it before streams start).
    end: i64,
}

/// Up to 1000 records, or what arrives within 100 ms.
fn poll_batch(
    consumer: &BaseConsumer,
    parts: &mut BTreeMap<(String, i32), PartState>,
) -> Result<Vec<(String, Record)>, RunError> {
    let mut batch = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(100);
    while batch.len() < 1000 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let msg = match consumer.poll(left) {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(RunError::Setup(format!("consuming: {e}"))),
            None => break,
        };
        if let Some(st) = parts.get_mut(&(msg.topic().to_string(), msg.partition())) {
            st.next = msg.offset() + 1;
            st.high = st.high.max(st.next);
        }
        batch.push((msg.topic().to_string(), record_of(&msg)));
    }
    Ok(batch)
}

/// A table topic read to its current end: the latest record per key, in offset order
/// (a key whose latest record is a tombstone is gone).
fn latest_per_key(consumer: &BaseConsumer, topic: &str, stop: &AtomicBool) -> Result<Vec<Record>, RunError> {
    let partitions = partition_offsets(consumer, topic)
        .map_err(RunError::Setup)?
        .ok_or_else(|| RunError::Setup(format!("topic {topic} does not exist")))?;
    let mut tpl = TopicPartitionList::new();
    let mut ends: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    for (p, low, high) in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Offset(*low))
            .map_err(|e| RunError::Setup(format!("assigning {topic}: {e}")))?;
        ends.insert(*p, (*low, *high));
    }
    consumer.assign(&tpl).map_err(|e| RunError::Setup(format!("reading {topic}: {e}")))?;
    let mut latest: HashMap<(i32, Option<bytes::Bytes>), Record> = HashMap::new();
    while !stop.load(Ordering::SeqCst) && ends.values().any(|(next, end)| next < end) {
        match consumer.poll(Duration::from_millis(200)) {
            None => advance_to_positions(consumer, topic, &mut ends),
            Some(Err(e)) => return Err(RunError::Setup(format!("reading {topic}: {e}"))),
            Some(Ok(msg)) => {
                if let Some(e) = ends.get_mut(&msg.partition()) {
                    e.0 = msg.offset() + 1;
                }
                let r = record_of(&msg);
                latest.insert((r.partition, r.key.clone()), r);
            }
        }
    }
    let mut rows: Vec<Record> = latest.into_values().filter(|r| r.value.is_some()).collect();
    rows.sort_by_key(|r| (r.partition, r.offset));
    Ok(rows)
}

fn offsets_for_time(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[(i32, i64, i64)],
    ms: i64,
) -> Result<BTreeMap<i32, i64>, RunError> {
    let mut tpl = TopicPartitionList::new();
    for (p, _, _) in partitions {
        tpl.add_partition_offset(topic, *p, Offset::Offset(ms))
            .map_err(|e| RunError::Setup(format!("{topic}: {e}")))?;
    }
    let found = consumer
        .offsets_for_times(tpl, Duration::from_secs(10))
        .map_err(|e| RunError::Setup(format!("looking up offsets of {topic} by time: {e}")))?;
    Ok(partitions
        .iter()
        .map(|(p, _, high)| {
            let at = match found.find_partition(topic, *p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => *high,
            };
            (*p, at)
        })
        .collect())
}
