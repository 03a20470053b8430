//! `streamctl test`: unit tests of models, offline. Each test's inputs run through the model's
//! real operators (the runtime's bounded driver), three times: one record per batch, two per
//! batch, and all at once. The first run is compared with the expectation; the other two must
//! agree with it (same end state), or the model depends on batch boundaries.

pub mod report;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use serde_json::{Map, Value};

use crate::compile::CompiledProject;
use crate::diagnostics::{suggest, Diagnostic};
use crate::graph::NodeId;
use crate::project::config::{GivenStep, RelationKind};
use crate::project::UnitTestDecl;
use crate::runtime::bounded::{run_model_steps, BoundedOptions, RunResult, Step};
use crate::runtime::codec::{InputCodec, Record};

/// A test ready to run: its steps and what to expect.
#[derive(Debug, Clone)]
pub struct PreparedTest {
    pub decl: UnitTestDecl,
    pub steps: Vec<Step>,
    pub expected: Vec<Map<String, Value>>,
    pub end_of_input: bool,
}

/// Why a test failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// Rows missing from the output, and rows the output has that were not expected.
    Rows {
        columns: Vec<String>,
        missing: Vec<Map<String, Value>>,
        unexpected: Vec<Map<String, Value>>,
    },
    /// The ordered sequence differs at `index`.
    Order {
        columns: Vec<String>,
        expected: Vec<Map<String, Value>>,
        actual: Vec<Map<String, Value>>,
    },
    Count {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    /// Another batching gave another end state.
    BatchDependence {
        batch: String,
        only_first: Vec<String>,
        only_other: Vec<String>,
    },
    Error(String),
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub test: UnitTestDecl,
    pub failures: Vec<Failure>,
    pub elapsed: std::time::Duration,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// `source('g', 't')`, `ref('m')`, `g.t` or `m` → the relation.
fn parse_input(text: &str) -> Option<NodeId> {
    let t = text.trim();
    let args = |inner: &str| -> Vec<String> {
        inner.split(',').map(|a| a.trim().trim_matches(|c| c == '\'' || c == '"').to_string()).collect()
    };
    if let Some(inner) = t.strip_prefix("source(").and_then(|r| r.strip_suffix(')')) {
        let a = args(inner);
        return (a.len() == 2).then(|| NodeId::Source(format!("{}.{}", a[0], a[1])));
    }
    if let Some(inner) = t.strip_prefix("ref(").and_then(|r| r.strip_suffix(')')) {
        let a = args(inner);
        return (a.len() == 1).then(|| NodeId::Model(a[0].clone()));
    }
    Some(if t.contains('.') { NodeId::Source(t.to_string()) } else { NodeId::Model(t.to_string()) })
}

/// Column names and types of an input, as named in the data.
fn data_columns(cp: &CompiledProject, id: &NodeId) -> Vec<(String, DataType)> {
    match id {
        NodeId::Source(n) => cp
            .sources
            .get(n)
            .map(|s| s.columns.iter().map(|c| (c.name.clone(), c.data_type.clone())).collect())
            .unwrap_or_default(),
        NodeId::Model(n) => cp
            .models
            .get(n)
            .map(|m| m.schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect())
            .unwrap_or_default(),
        NodeId::Sink(_) | NodeId::Connector(_) => Vec::new(),
    }
}

fn key_columns(cp: &CompiledProject, id: &NodeId) -> Vec<String> {
    match id {
        NodeId::Source(n) => cp.sources.get(n).map(|s| s.key.clone()).unwrap_or_default(),
        NodeId::Model(n) => cp.models.get(n).map(|m| m.key.clone()).unwrap_or_default(),
        NodeId::Sink(_) | NodeId::Connector(_) => Vec::new(),
    }
}

fn field<'a>(row: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    row.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

/// Reads rows from a `.jsonl` or `.csv` file; CSV values are typed by the columns' types.
pub fn read_rows(path: &std::path::Path, columns: &[(String, DataType)]) -> Result<Vec<Map<String, Value>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if path.extension().and_then(|e| e.to_str()) == Some("csv") {
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let headers = reader.headers().map_err(|e| e.to_string())?.clone();
        let mut rows = Vec::new();
        for (n, rec) in reader.records().enumerate() {
            let rec = rec.map_err(|e| format!("{} line {}: {e}", path.display(), n + 2))?;
            let mut row = Map::new();
            for (h, v) in headers.iter().zip(rec.iter()) {
                let ty = columns.iter().find(|(c, _)| c.eq_ignore_ascii_case(h)).map(|(_, t)| t.clone());
                row.insert(h.to_string(), csv_value(v, ty.as_ref()));
            }
            rows.push(row);
        }
        return Ok(rows);
    }
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(format!("{} line {}: not a JSON object", path.display(), n + 1)),
            Err(e) => Err(format!("{} line {}: {e}", path.display(), n + 1)),
        })
        .collect()
}

fn csv_value(v: &str, ty: Option<&DataType>) -> Value {
    if v.is_empty() {
        return Value::Null;
    }
    match ty {
        Some(t) if t.is_integer() => v.parse::<i64>().map(Value::from).unwrap_or_else(|_| Value::String(v.into())),
        Some(t) if t.is_floating() || matches!(t, DataType::Decimal128(..)) => v
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(v.into())),
        Some(DataType::Boolean) => match v {
            "true" | "TRUE" | "1" => Value::Bool(true),
            "false" | "FALSE" | "0" => Value::Bool(false),
            _ => Value::String(v.into()),
        },
        _ => Value::String(v.into()),
    }
}

/// Epoch ms from a number or a `yyyy-MM-dd HH:mm:ss[.SSS]` string.
fn time_value(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => crate::sql::functions::parse_millis(s, "%Y-%m-%d %H:%M:%S%.f")
            .or_else(|| crate::sql::functions::parse_millis(s, "%Y-%m-%d %H:%M:%S"))
            .or_else(|| chrono::DateTime::parse_from_rfc3339(s).ok().map(|d| d.timestamp_millis())),
        _ => None,
    }
}

/// Checks a test against the compiled project and turns its rows into records.
pub fn prepare(cp: &CompiledProject, decl: &UnitTestDecl) -> Result<PreparedTest, Diagnostic> {
    let t = &decl.test;
    let o = &decl.origin;
    let Some(model) = cp.models.get(&t.model) else {
        let mut d = o.error("test", "model", format!("test `{}`: no compiled model `{}`", t.name, t.model));
        if let Some(s) = suggest(&t.model, cp.models.keys().map(String::as_str)) {
            d = d.with_help(format!("did you mean `{s}`?"));
        }
        return Err(d);
    };
    let mut steps = Vec::new();
    let mut offsets: BTreeMap<(NodeId, i32), i64> = BTreeMap::new();
    for (si, step) in t.given.iter().enumerate() {
        let at = format!("given/{si}");
        match step {
            GivenStep::Watermark { watermark } => {
                let ms = time_value(watermark).ok_or_else(|| {
                    o.error("test", &format!("{at}/watermark"), "a watermark is epoch ms or 'yyyy-MM-dd HH:mm:ss'")
                })?;
                steps.push(Step::Watermark(ms));
            }
            GivenStep::Rows { input, rows, file } => {
                let id = parse_input(input).ok_or_else(|| {
                    o.error(
                        "test",
                        &format!("{at}/input"),
                        format!("cannot read input `{input}`: write source('group', 'table') or ref('model')"),
                    )
                })?;
                if !model.inputs.contains(&id) {
                    let names: Vec<String> = model.inputs.iter().map(|i| i.name().to_string()).collect();
                    return Err(o
                        .error(
                            "test",
                            &format!("{at}/input"),
                            format!("`{input}` is not an input of model `{}`", t.model),
                        )
                        .with_help(format!("its inputs: {}", names.join(", "))));
                }
                let columns = data_columns(cp, &id);
                let mut all = rows.clone().unwrap_or_default();
                if let Some(f) = file {
                    all.extend(
                        read_rows(&cp.project.root.join(f), &columns)
                            .map_err(|e| o.error("test", &format!("{at}/file"), e))?,
                    );
                }
                let given_rows = rows.as_ref().map_or(0, Vec::len);
                for (ri, row) in all.iter().enumerate() {
                    if let Some(d) = unknown_row_field(o, &at, ri, ri < given_rows, row, &columns, input) {
                        return Err(d);
                    }
                }
                let keys = key_columns(cp, &id);
                for (ri, row) in all.iter().enumerate() {
                    let record = row_record(cp, &id, row, &keys, &mut offsets, steps.len())
                        .map_err(|e| o.error("test", &format!("{at}/rows/{ri}"), e))?;
                    steps.push(Step::Record(id.clone(), record));
                }
            }
        }
    }
    let mut expected = t.expect.rows.clone().unwrap_or_default();
    if let Some(f) = &t.expect.file {
        let cols: Vec<(String, DataType)> =
            model.schema.fields().iter().map(|f| (f.name().clone(), f.data_type().clone())).collect();
        expected.extend(read_rows(&cp.project.root.join(f), &cols).map_err(|e| o.error("test", "expect/file", e))?);
    }
    for (i, row) in expected.iter().enumerate() {
        for k in row.keys().filter(|k| !k.starts_with('_')) {
            if model.schema.fields().iter().all(|f| !f.name().eq_ignore_ascii_case(k)) {
                let names: Vec<&str> = model.schema.fields().iter().map(|f| f.name().as_str()).collect();
                let mut d = o.error(
                    "test",
                    &format!("expect/rows/{i}"),
                    format!("`{k}` is not an output column of `{}`", t.model),
                );
                if let Some(s) = suggest(k, names.iter().copied()) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                return Err(d);
            }
        }
    }
    Ok(PreparedTest { decl: decl.clone(), steps, expected, end_of_input: t.end_of_input.unwrap_or(true) })
}

/// Keys a `given` row may have besides the input's columns.
const RECORD_FIELDS: [&str; 6] = ["_key", "_partition", "_timestamp", "_delete", "_raw", "_headers"];

/// A row key that is neither a column of the input nor a record field: it would be dropped
/// silently, and the test would test something else than its author thinks.
fn unknown_row_field(
    o: &crate::project::Origin,
    at: &str,
    index: usize,
    inline: bool,
    row: &Map<String, Value>,
    columns: &[(String, DataType)],
    input: &str,
) -> Option<Diagnostic> {
    let k = row.keys().find(|k| {
        if k.starts_with('_') {
            !RECORD_FIELDS.contains(&k.as_str())
        } else {
            !columns.iter().any(|(c, _)| c.eq_ignore_ascii_case(k))
        }
    })?;
    let (message, candidates): (String, Vec<&str>) = if k.starts_with('_') {
        (format!("`{k}` is not a record field (those are {})", RECORD_FIELDS.join(", ")), RECORD_FIELDS.to_vec())
    } else {
        (format!("`{k}` is not a column of `{input}`"), columns.iter().map(|(c, _)| c.as_str()).collect())
    };
    let mut d = if inline {
        let pointer = format!("{}/{at}/rows/{index}/{}", o.pointer, k.replace('~', "~0").replace('/', "~1"));
        o.doc.error_at("test", &pointer, true, k.chars().count(), message)
    } else {
        o.error("test", &format!("{at}/file"), format!("row {}: {message}", index + 1))
    };
    if let Some(s) = suggest(k, candidates) {
        d = d.with_help(format!("did you mean `{s}`?"));
    }
    Some(d)
}

/// Every unit test checked against the compiled project, as `validate` reports them. Tests of
/// a model that failed to compile are left out: the model's own errors say what is wrong.
pub fn check_tests(cp: &CompiledProject) -> Vec<Diagnostic> {
    cp.project
        .unit_tests
        .iter()
        .filter(|decl| {
            cp.models.contains_key(&decl.test.model) || !cp.project.models.iter().any(|m| m.name == decl.test.model)
        })
        .filter_map(|decl| prepare(cp, decl).err())
        .collect()
}

fn row_record(
    cp: &CompiledProject,
    id: &NodeId,
    row: &Map<String, Value>,
    keys: &[String],
    offsets: &mut BTreeMap<(NodeId, i32), i64>,
    index: usize,
) -> Result<Record, String> {
    let partition = row.get("_partition").and_then(Value::as_i64).unwrap_or(0) as i32;
    let delete = row.get("_delete").and_then(Value::as_bool).unwrap_or(false);
    // A change-event source's topic holds tombstones after deletes, also when read as a stream.
    let change_events = match id {
        NodeId::Source(n) => cp.sources.get(n).is_some_and(|s| s.decl.table.format.is_change_events()),
        _ => false,
    };
    if delete && cp.relation_kind(id) != Some(RelationKind::Table) && !change_events {
        return Err("`_delete` applies to tables and change-event sources only".into());
    }
    let data: Map<String, Value> =
        row.iter().filter(|(k, _)| !k.starts_with('_')).map(|(k, v)| (k.clone(), v.clone())).collect();
    let key = match row.get("_key") {
        Some(Value::String(s)) => Some(serde_json::to_vec(&Value::String(s.clone())).map_err(|e| e.to_string())?),
        Some(other) => Some(serde_json::to_vec(other).map_err(|e| e.to_string())?),
        None => match keys {
            [] => None,
            [one] => field(&data, one).map(|v| serde_json::to_vec(v).unwrap_or_default()),
            many => {
                let mut obj = Map::new();
                for k in many {
                    obj.insert(k.clone(), field(&data, k).cloned().unwrap_or(Value::Null));
                }
                Some(serde_json::to_vec(&obj).map_err(|e| e.to_string())?)
            }
        },
    };
    if delete && key.is_none() {
        return Err("a `_delete` row needs its key columns or `_key`".into());
    }
    // Written as the topic holds its keys (`key_format`).
    let codec = InputCodec::for_input(cp, id);
    let key = match (key, &codec) {
        (Some(k), Some(c)) => Some(c.key_from_json(&k)?),
        (k, _) => k,
    };
    let value = if delete {
        None
    } else if let Some(raw) = row.get("_raw") {
        Some(raw.as_str().map(|s| s.as_bytes().to_vec()).unwrap_or_else(|| raw.to_string().into_bytes()))
    } else {
        let json = serde_json::to_vec(&data).map_err(|e| e.to_string())?;
        // Written as the topic holds it: Avro sources get Avro values.
        Some(match &codec {
            Some(codec) => codec.value_from_json(&json)?,
            None => json,
        })
    };
    let timestamp = row.get("_timestamp").and_then(time_value).unwrap_or(index as i64);
    let off = offsets.entry((id.clone(), partition)).or_insert(0);
    let headers = match &codec {
        Some(c) => c.headers_from_json(row)?,
        None => Vec::new(),
    };
    let r = Record {
        partition,
        offset: *off,
        timestamp,
        key: key.map(bytes::Bytes::from),
        value: value.map(bytes::Bytes::from),
        headers,
    };
    *off += 1;
    Ok(r)
}

/// An output record as a row; a tombstone is its key columns and `_delete: true`.
fn output_row(cp: &CompiledProject, model: &str, r: &Record) -> Map<String, Value> {
    let codec = InputCodec::for_input(cp, &NodeId::Model(model.to_string()));
    let mut row = output_value_row(cp, model, r, codec);
    // Headers the model wrote (`config(headers=...)`), for an expected row's `_headers`.
    if !r.headers.is_empty() {
        row.insert("_headers".into(), crate::formats::headers::to_json(&r.headers));
    }
    row
}

fn output_value_row(cp: &CompiledProject, model: &str, r: &Record, codec: Option<InputCodec>) -> Map<String, Value> {
    match &r.value {
        Some(v) => codec.and_then(|codec| codec.value_as_json(v)).unwrap_or_default(),
        None => {
            let mut m = Map::new();
            m.insert("_delete".into(), Value::Bool(true));
            let key: Option<Value> = r.key.as_ref().and_then(|k| codec.as_ref()?.key_as_json(k));
            let cols = &cp.models[model].key;
            match (key, cols.as_slice()) {
                (Some(Value::Object(o)), _) => m.extend(o),
                (Some(v), [one]) => {
                    m.insert(one.clone(), v);
                }
                _ => {}
            }
            m
        }
    }
}

fn values_match(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap_or(f64::NAN), b.as_f64().unwrap_or(f64::NAN));
            a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
        }
        (Value::Object(a), Value::Object(b)) => a.iter().all(|(k, v)| b.get(k).is_some_and(|w| values_match(v, w))),
        _ => expected == actual,
    }
}

/// Whether `actual` has every column of `expected` with a matching value.
fn row_matches(expected: &Map<String, Value>, actual: &Map<String, Value>) -> bool {
    expected.iter().all(|(k, v)| match field(actual, k) {
        Some(a) => values_match(v, a),
        None => v.is_null() && k != "_delete",
    })
}

fn columns_of(rows: &[Map<String, Value>]) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    for r in rows {
        for k in r.keys() {
            if !cols.iter().any(|c| c.eq_ignore_ascii_case(k)) {
                cols.push(k.clone());
            }
        }
    }
    cols
}

/// Compares actual rows with expected ones: as a multiset, or in order.
pub fn compare(expected: &[Map<String, Value>], actual: &[Map<String, Value>], ordered: bool) -> Option<Failure> {
    let columns = columns_of(expected);
    let project = |r: &Map<String, Value>| -> Map<String, Value> {
        columns.iter().map(|c| (c.clone(), field(r, c).cloned().unwrap_or(Value::Null))).collect()
    };
    if ordered {
        let same = expected.len() == actual.len() && expected.iter().zip(actual).all(|(e, a)| row_matches(e, a));
        return (!same).then(|| Failure::Order {
            columns: columns.clone(),
            expected: expected.to_vec(),
            actual: actual.iter().map(project).collect(),
        });
    }
    let mut used = vec![false; actual.len()];
    let mut missing = Vec::new();
    for e in expected {
        match (0..actual.len()).find(|i| !used[*i] && row_matches(e, &actual[*i])) {
            Some(i) => used[i] = true,
            None => missing.push(e.clone()),
        }
    }
    let unexpected: Vec<Map<String, Value>> =
        actual.iter().zip(&used).filter(|(_, u)| !**u).map(|(a, _)| project(a)).collect();
    (!missing.is_empty() || !unexpected.is_empty()).then_some(Failure::Rows { columns, missing, unexpected })
}

/// Every output record, in order.
fn every_row(cp: &CompiledProject, model: &str, r: &RunResult) -> Vec<Map<String, Value>> {
    r.outputs.iter().map(|o| output_row(cp, model, o)).collect()
}

/// What the output holds at the end: for a table the latest row per key (a tombstone removes
/// the key), for a stream every row.
fn final_rows(cp: &CompiledProject, model: &str, r: &RunResult) -> Vec<Map<String, Value>> {
    if cp.models.get(model).map(|m| m.kind) != Some(RelationKind::Table) {
        return every_row(cp, model, r);
    }
    let mut order: Vec<bytes::Bytes> = Vec::new();
    let mut latest: BTreeMap<bytes::Bytes, Option<Map<String, Value>>> = BTreeMap::new();
    for o in &r.outputs {
        let key = o.key.clone().unwrap_or_default();
        if !latest.contains_key(&key) {
            order.push(key.clone());
        }
        latest.insert(key, o.value.as_ref().map(|_| output_row(cp, model, o)));
    }
    order.into_iter().filter_map(|k| latest.remove(&k).flatten()).collect()
}

/// A run's end state: the latest row per key for tables, every row for streams; floats rounded
/// so that sums added in another order agree.
pub fn end_state(cp: &CompiledProject, model: &str, r: &RunResult) -> Vec<String> {
    fn round(v: &Value) -> Value {
        match v {
            Value::Number(n) if n.is_f64() => {
                let f = n.as_f64().unwrap_or_default();
                Value::String(format!("{:.9e}", f))
            }
            Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), round(v))).collect()),
            other => other.clone(),
        }
    }
    let kind = cp.models.get(model).map(|m| m.kind);
    let mut out: Vec<String> = if kind == Some(RelationKind::Table) {
        let mut latest: BTreeMap<bytes::Bytes, String> = BTreeMap::new();
        for o in &r.outputs {
            let row = Value::Object(output_row(cp, model, o));
            latest.insert(o.key.clone().unwrap_or_default(), round(&row).to_string());
        }
        latest.into_values().collect()
    } else {
        r.outputs.iter().map(|o| round(&Value::Object(output_row(cp, model, o))).to_string()).collect()
    };
    out.sort();
    out
}

/// The batch sizes every test runs with: one record at a time, two, and everything at once.
pub const BATCHINGS: [(usize, &str); 3] = [(1, "batches of 1"), (2, "batches of 2"), (usize::MAX, "one batch")];

/// Runs a prepared test with the runtime's operators.
pub async fn run_test(
    cp: &CompiledProject,
    t: &PreparedTest,
    task: Arc<datafusion::execution::TaskContext>,
) -> Outcome {
    run_test_with(cp, t, |cp, t, batch| {
        let task = task.clone();
        Box::pin(async move {
            run_model_steps(
                cp,
                &t.decl.test.model,
                &t.steps,
                BoundedOptions { batch_size: batch, end_of_input: t.end_of_input },
                task,
            )
            .await
            .map_err(|e| e.to_string())
        })
    })
    .await
}

type RunFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<RunResult, String>> + 'a>>;

/// Runs a test with the given runner (the runtime, or a stand-in in the runner's own tests).
pub async fn run_test_with<'a, F>(cp: &'a CompiledProject, t: &'a PreparedTest, runner: F) -> Outcome
where
    F: Fn(&'a CompiledProject, &'a PreparedTest, usize) -> RunFuture<'a>,
{
    let started = std::time::Instant::now();
    let model = &t.decl.test.model;
    let mut failures = Vec::new();
    let mut first: Option<RunResult> = None;
    for (batch, label) in BATCHINGS {
        let r = match runner(cp, t, batch).await {
            Ok(r) => r,
            Err(e) => {
                failures.push(Failure::Error(format!("{label}: {e}")));
                break;
            }
        };
        match &first {
            None => {
                let exp = &t.decl.test.expect;
                let actual = if exp.ordered { every_row(cp, model, &r) } else { final_rows(cp, model, &r) };
                if let Some(f) = compare(&t.expected, &actual, exp.ordered) {
                    failures.push(f);
                }
                if let Some(n) = exp.dead_letters {
                    if n != r.dead_letters.len() {
                        failures.push(Failure::Count {
                            what: "dead letters",
                            expected: n,
                            actual: r.dead_letters.len(),
                        });
                    }
                }
                if let Some(n) = exp.late {
                    if n != r.late {
                        failures.push(Failure::Count { what: "late events", expected: n, actual: r.late });
                    }
                }
                first = Some(r);
            }
            Some(f) => {
                let (a, b) = (end_state(cp, model, f), end_state(cp, model, &r));
                if a != b {
                    let only_first = a.iter().filter(|x| !b.contains(x)).cloned().collect();
                    let only_other = b.iter().filter(|x| !a.contains(x)).cloned().collect();
                    failures.push(Failure::BatchDependence { batch: label.to_string(), only_first, only_other });
                }
            }
        }
    }
    Outcome { test: t.decl.clone(), failures, elapsed: started.elapsed() }
}
