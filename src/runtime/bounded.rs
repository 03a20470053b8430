//! Running jobs over a finite, in-memory list of records: the same decoding, operators and
//! watermark logic as on Kafka, without a broker. Used by `streamctl test` and by tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;

use super::codec::{encode_output, partition_for_key, InputCodec, Record};
use super::job::Job;
use super::watermark::WatermarkTracker;
use crate::compile::CompiledProject;
use crate::graph::NodeId;
use crate::project::config::{OnError, RelationKind};

/// A record that did not go through, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub input: NodeId,
    pub record: Record,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub outputs: Vec<Record>,
    /// Records sent to the dead-letter topic (`on_error: dead_letter`, and late events).
    pub dead_letters: Vec<Rejected>,
    pub skipped: usize,
    pub late: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("bad record on {topic} partition {partition} offset {offset}: {reason}")]
    BadRecord { topic: String, partition: i32, offset: i64, reason: String },
    #[error("{0}")]
    Engine(#[from] DataFusionError),
    #[error("{0}")]
    Setup(String),
}

#[derive(Debug, Clone, Copy)]
pub struct BoundedOptions {
    /// Records per micro-batch (consecutive records of one input).
    pub batch_size: usize,
    /// Close every window at the end, as if the watermark reached the end of time.
    pub end_of_input: bool,
}

/// One step of a bounded run.
#[derive(Debug, Clone)]
pub enum Step {
    /// A record arrives.
    Record(NodeId, Record),
    /// The watermark is moved to this event time (ms), as if every input had got there.
    Watermark(i64),
}

/// Runs one model over records given in arrival order.
pub async fn run_model(
    cp: &CompiledProject,
    model: &str,
    records: &[(NodeId, Record)],
    opts: BoundedOptions,
    task: Arc<TaskContext>,
) -> Result<RunResult, RunError> {
    let steps: Vec<Step> = records.iter().map(|(i, r)| Step::Record(i.clone(), r.clone())).collect();
    run_model_steps(cp, model, &steps, opts, task).await
}

/// Runs one model over steps: records in arrival order, and explicit watermark moves.
pub async fn run_model_steps(
    cp: &CompiledProject,
    model: &str,
    steps: &[Step],
    opts: BoundedOptions,
    task: Arc<TaskContext>,
) -> Result<RunResult, RunError> {
    let m = cp.models.get(model).ok_or_else(|| RunError::Setup(format!("no compiled model `{model}`")))?;
    let mut job = Job::new(m, task)?;
    let mut codecs = BTreeMap::new();
    for id in &m.inputs {
        let c = InputCodec::for_input(cp, id).ok_or_else(|| RunError::Setup(format!("no input `{id}`")))?;
        codecs.insert(id.clone(), c);
    }
    let streams: Vec<NodeId> =
        codecs.values().filter(|c| c.kind == RelationKind::Stream).map(|c| c.id.clone()).collect();
    let mut tracker = WatermarkTracker::new(Duration::from_secs(3600));
    let mut result = RunResult::default();
    let mut i = 0;
    while i < steps.len() {
        let input = match &steps[i] {
            Step::Watermark(wm) => {
                i += 1;
                for out in job.advance_watermark(*wm).await? {
                    result.outputs.extend(encode_output(&out, m).map_err(DataFusionError::from)?);
                }
                continue;
            }
            Step::Record(input, _) => input.clone(),
        };
        let input = &input;
        let mut batch: Vec<Record> = Vec::new();
        while i < steps.len() && batch.len() < opts.batch_size.max(1) {
            match &steps[i] {
                Step::Record(id, r) if id == input => batch.push(r.clone()),
                _ => break,
            }
            i += 1;
        }
        let Some(codec) = codecs.get(input) else { continue };
        let decoded = codec.decode(&batch);
        for bad in &decoded.bad {
            let record = batch[bad.index].clone();
            match codec.on_error {
                OnError::Fail => {
                    return Err(RunError::BadRecord {
                        topic: codec.topic.clone(),
                        partition: record.partition,
                        offset: record.offset,
                        reason: bad.reason.clone(),
                    })
                }
                OnError::Skip => result.skipped += 1,
                OnError::DeadLetter => {
                    result.dead_letters.push(Rejected { input: input.clone(), record, reason: bad.reason.clone() })
                }
            }
        }
        let row_watermarks = observe_rows(&mut tracker, codec, &decoded, &batch, &streams);
        let pushed = job.push(input, &decoded.batch, decoded.deletes.clone(), row_watermarks.as_deref()).await?;
        for late in pushed.late {
            result.late += 1;
            let record = batch[decoded.rows[late]].clone();
            result.dead_letters.push(Rejected {
                input: input.clone(),
                record,
                reason: "late: its window had closed".into(),
            });
        }
        for out in &pushed.outputs {
            result.outputs.extend(encode_output(out, m).map_err(DataFusionError::from)?);
        }
        let wm = tracker.watermark(&streams);
        if wm != i64::MIN {
            for out in job.advance_watermark(wm).await? {
                result.outputs.extend(encode_output(&out, m).map_err(DataFusionError::from)?);
            }
        }
    }
    if opts.end_of_input {
        for out in job.advance_watermark(i64::MAX).await? {
            result.outputs.extend(encode_output(&out, m).map_err(DataFusionError::from)?);
        }
    }
    Ok(result)
}

/// Feeds a stream batch's event times to the tracker, record by record, and returns the
/// watermark each record arrived under (None for tables, which do not move event time).
pub fn observe_rows(
    tracker: &mut WatermarkTracker,
    codec: &InputCodec,
    decoded: &super::codec::Decoded,
    records: &[Record],
    streams: &[NodeId],
) -> Option<Vec<i64>> {
    if codec.kind != RelationKind::Stream {
        return None;
    }
    let times = decoded
        .batch
        .column_by_name("rowtime")?
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Int64Array>()?
        .clone();
    let mut out = Vec::with_capacity(decoded.rows.len());
    let now = std::time::Instant::now();
    for (row, t) in decoded.rows.iter().zip(times.values().iter()) {
        out.push(tracker.watermark_at(streams, now));
        tracker.observe_at(&codec.id, records[*row].partition, *t, codec.lateness_ms, now);
    }
    Some(out)
}

/// Records of a sample data file (JSON Lines): keys from the source's key columns, partitions
/// as Kafka's default partitioner would pick (keyless: round robin), timestamps from the event
/// time column when it can be read, else the line number.
pub fn sample_records(cp: &CompiledProject, source: &str, text: &str) -> Vec<Record> {
    let Some(s) = cp.sources.get(source) else { return Vec::new() };
    let partitions = s.partitions;
    let codec = InputCodec::for_input(cp, &NodeId::Source(source.to_string()));
    let mut out = Vec::new();
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for (line_no, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Option<serde_json::Value> = serde_json::from_str(line).ok();
        let key = parsed.as_ref().and_then(|v| key_of(v, s));
        let partition = match &key {
            Some(k) => partition_for_key(k, partitions),
            None => (line_no as i32) % partitions,
        };
        let timestamp = parsed.as_ref().and_then(|v| event_time_of(v, s)).unwrap_or(line_no as i64);
        let off = next_offset.entry(partition).or_insert(0);
        // Encoded as the topic holds its values (Avro sources: with the declared columns' schema);
        // a line that cannot be encoded goes as it is, to be rejected as a bad record.
        let value = codec.as_ref().and_then(|c| c.value_from_json(line.as_bytes()).ok());
        out.push(Record {
            partition,
            offset: *off,
            timestamp,
            key,
            value: Some(value.unwrap_or_else(|| line.as_bytes().to_vec())),
        });
        *off += 1;
    }
    out
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    v.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

fn key_of(v: &serde_json::Value, s: &crate::compile::CompiledSource) -> Option<Vec<u8>> {
    match s.key.as_slice() {
        [] => None,
        [one] => serde_json::to_vec(field(v, one)?).ok(),
        many => {
            let mut obj = serde_json::Map::new();
            for k in many {
                obj.insert(k.clone(), field(v, k)?.clone());
            }
            serde_json::to_vec(&obj).ok()
        }
    }
}

fn event_time_of(v: &serde_json::Value, s: &crate::compile::CompiledSource) -> Option<i64> {
    let spec = s.event_time.as_ref()?;
    let value = field(v, &spec.column)?;
    match (value, &spec.chrono_format) {
        (serde_json::Value::String(t), Some(fmt)) => crate::sql::functions::parse_millis(t, fmt),
        (serde_json::Value::Number(n), _) => n.as_i64(),
        _ => None,
    }
}

/// Runs every model of the project over the sample data of its sources, in dependency order,
/// feeding each model's output to its consumers. Returns each model's result.
pub async fn run_project_on_samples(
    cp: &CompiledProject,
    opts: BoundedOptions,
    task: Arc<TaskContext>,
) -> Result<BTreeMap<String, RunResult>, RunError> {
    let mut topics: BTreeMap<NodeId, Vec<Record>> = BTreeMap::new();
    for (name, s) in &cp.sources {
        let Some(path) = &s.decl.table.sample_data else { continue };
        let text = std::fs::read_to_string(cp.project.root.join(path))
            .map_err(|e| RunError::Setup(format!("cannot read sample data {path}: {e}")))?;
        topics.insert(NodeId::Source(name.clone()), sample_records(cp, name, &text));
    }
    let mut results = BTreeMap::new();
    for id in cp.order() {
        let NodeId::Model(name) = &id else { continue };
        let Some(m) = cp.models.get(name) else { continue };
        // Arrival order: by timestamp across inputs, tables first on ties (a table row is
        // there before the events that refer to it).
        let mut records: Vec<(NodeId, Record)> = Vec::new();
        for input in &m.inputs {
            for r in topics.get(input).into_iter().flatten() {
                records.push((input.clone(), r.clone()));
            }
        }
        records.sort_by_key(|(i, r)| (r.timestamp, cp.relation_kind(i) != Some(RelationKind::Table)));
        let result = run_model(cp, name, &records, opts, task.clone()).await?;
        let partitions = m.resolved.partitions;
        let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
        let out: Vec<Record> = result
            .outputs
            .iter()
            .map(|r| {
                let p = r.key.as_deref().map_or(0, |k| partition_for_key(k, partitions));
                let o = offsets.entry(p).or_insert(0);
                let rec = Record { partition: p, offset: *o, ..r.clone() };
                *o += 1;
                rec
            })
            .collect();
        topics.insert(id.clone(), out);
        results.insert(name.clone(), result);
    }
    Ok(results)
}
