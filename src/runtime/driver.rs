//! The micro-batch driver: what happens to a run of records of one input, the same on Kafka
//! (`worker`) and over an in-memory list (`bounded`, behind `streamctl test`). Decode, handle
//! bad records as the input's `on_error` says, feed event times to the watermark, push the rows
//! through the job's operators, dead-letter the rows that came too late, and close windows as
//! the watermark moves. The shells around it only read records and write what it returns.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::Int64Array;
use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;

use super::codec::{project_registry, Decoded, InputCodec, OutputCodec, Record};
use super::error::RunError;
use super::job::{Job, OutputBatch};
use super::watermark::WatermarkTracker;
use crate::compile::repartition::Repartitioning;
use crate::compile::{CompiledModel, CompiledProject};
use crate::graph::NodeId;
use crate::project::config::{OnError, RelationKind};
use crate::registry::SharedRegistry;

/// Why a late record is dead-lettered.
pub const LATE_REASON: &str = "late: its window had closed";

/// A record that goes to its input's dead-letter topic, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub input: NodeId,
    /// The topic the record was read from.
    pub topic: String,
    pub dead_letter_topic: String,
    pub record: Record,
    pub reason: String,
}

/// What the driver produced since it was last drained: encoded output records (in order), dead
/// letters, and counters.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    pub outputs: Vec<Record>,
    pub dead_letters: Vec<DeadLetter>,
    pub bad_records: u64,
    pub skipped: u64,
    pub late: u64,
}

/// One model's job with its inputs' decoders and the watermark of its streams.
pub struct MicroBatchDriver {
    job: Job,
    output: OutputCodec,
    codecs: BTreeMap<NodeId, InputCodec>,
    streams: Vec<NodeId>,
    tracker: WatermarkTracker,
    /// Inputs whose bad records another job of the run writes to the dead-letter topic: this
    /// job counts them and leaves them (one copy per bad record, not one per job).
    bad_records_left_to_others: BTreeSet<NodeId>,
    /// Inputs whose bad records another task of this job counts and writes (a table every task
    /// reads whole): neither counted nor written here.
    bad_records_of_another_task: BTreeSet<NodeId>,
}

impl MicroBatchDriver {
    /// `idle_timeout`: a caught-up partition quiet this long stops holding the watermark back.
    /// `registry`: where Avro writer schemas and output schema ids come from (the target's);
    /// `None`: the project's file registry.
    pub fn new(
        cp: &CompiledProject,
        model: &str,
        task: Arc<TaskContext>,
        idle_timeout: Duration,
        registry: Option<&SharedRegistry>,
    ) -> Result<MicroBatchDriver, RunError> {
        let m = cp.models.get(model).ok_or_else(|| RunError::Setup(format!("no compiled model `{model}`")))?;
        let job = Job::new(m, task)?;
        let registry = registry.map(|r| r.0.clone()).unwrap_or_else(|| project_registry(cp));
        let mut codecs = BTreeMap::new();
        for id in &m.inputs {
            let c = InputCodec::for_input_with_registry(cp, id, Some(registry.clone()))
                .ok_or_else(|| RunError::Setup(format!("no input `{id}`")))?;
            let c = match columns_read(m, id) {
                Some(columns) => c.reading_only(&columns),
                None => c,
            };
            codecs.insert(id.clone(), c);
        }
        let output = OutputCodec::new(m, registry.as_ref()).map_err(RunError::Setup)?;
        let streams = codecs.values().filter(|c| c.kind == RelationKind::Stream).map(|c| c.id.clone()).collect();
        Ok(MicroBatchDriver {
            job,
            output,
            codecs,
            streams,
            tracker: WatermarkTracker::new(idle_timeout),
            bad_records_left_to_others: BTreeSet::new(),
            bad_records_of_another_task: BTreeSet::new(),
        })
    }

    /// Another job writes `input`'s bad records to its dead-letter topic: count them, do not
    /// write them. Late records are not affected: they depend on this job's windows.
    pub fn leave_bad_records_to_another_job(&mut self, input: &NodeId) {
        self.bad_records_left_to_others.insert(input.clone());
    }

    /// Another task of this job reads the same records of `input` (a table read whole by every
    /// task) and counts and writes its bad records: here they are neither counted nor written.
    pub fn leave_bad_records_to_another_task(&mut self, input: &NodeId) {
        self.bad_records_of_another_task.insert(input.clone());
    }

    pub fn codecs(&self) -> impl Iterator<Item = &InputCodec> {
        self.codecs.values()
    }

    /// The event-time tracker: partitions to wait for, restored event times, caught-up marks.
    pub fn tracker(&mut self) -> &mut WatermarkTracker {
        &mut self.tracker
    }

    pub fn max_event_time(&self, input: &NodeId, partition: i32) -> Option<i64> {
        self.tracker.max_event_time(input, partition)
    }

    /// Processes a run of consecutive records of one input, in arrival order.
    pub async fn process(
        &mut self,
        input: &NodeId,
        records: &[Record],
        out: &mut BatchOutcome,
    ) -> Result<(), RunError> {
        let Some(codec) = self.codecs.get(input) else { return Ok(()) };
        let decoded = codec.decode(records);
        self.bad_records(input, &decoded, records, out)?;
        let row_watermarks = observe_rows(&mut self.tracker, codec, &decoded, records, &self.streams);
        let pushed = self.job.push(input, &decoded.batch, decoded.deletes.clone(), row_watermarks.as_deref()).await?;
        for late in pushed.late {
            out.late += 1;
            out.dead_letters.push(dead_letter(codec, &records[decoded.rows[late]], LATE_REASON));
        }
        self.encode(&pushed.outputs, out)
    }

    /// The first stage of a job with a repartition topic ([`super::repartition`]): each good
    /// record of a run of `input`'s, keyed by its values of `columns`, for the repartition topic.
    /// Returns the largest event time among them.
    pub fn rekey(
        &mut self,
        input: &NodeId,
        records: &[Record],
        columns: &[String],
        out: &mut BatchOutcome,
    ) -> Result<Option<i64>, RunError> {
        let Some(codec) = self.codecs.get(input) else { return Ok(None) };
        let decoded = codec.decode(records);
        self.bad_records(input, &decoded, records, out)?;
        let keys = super::repartition::row_keys(&decoded.batch, columns).map_err(RunError::Setup)?;
        for (row, key) in decoded.rows.iter().zip(keys) {
            out.outputs.push(super::repartition::rekeyed(&records[*row], key));
        }
        let times = decoded.batch.column_by_name("rowtime").and_then(|c| c.as_any().downcast_ref::<Int64Array>());
        Ok(times.and_then(|t| t.values().iter().max().copied()))
    }

    /// The aggregating stage of a job with a repartition topic: a run of records read from it, in
    /// order, each restored as it was read from `input` and processed, and the first stage's
    /// markers moving the event time of the input partitions they name or marking them idle.
    pub(crate) async fn process_repartitioned(
        &mut self,
        input: &NodeId,
        records: Vec<Record>,
        idleness: &mut super::repartition::Idleness,
        out: &mut BatchOutcome,
    ) -> Result<(), RunError> {
        use super::repartition::{marker_of, restore, Marker};
        let lateness = self.codecs.get(input).map_or(0, |c| c.lateness_ms);
        let now = Instant::now();
        let mut run: Vec<Record> = Vec::new();
        for mut r in records {
            let marker = marker_of(&r);
            let heard = match marker {
                None => {
                    restore(&mut r);
                    Some(r.partition)
                }
                Some(Marker::EventTime(p, _)) => Some(p),
                Some(Marker::Idle(_)) => None,
            };
            if heard.is_some_and(|p| idleness.heard(p, now)) {
                // The others hold the watermark back again until they idle anew.
                for p in idleness.marked() {
                    let t = self.tracker.max_event_time(input, p).unwrap_or(i64::MIN);
                    self.tracker.observe_at(input, p, t, lateness, now);
                }
            }
            match marker {
                None => run.push(r),
                Some(m) => {
                    if !run.is_empty() {
                        self.process(input, &std::mem::take(&mut run), out).await?;
                    }
                    match m {
                        Marker::EventTime(p, t) => self.tracker.observe_at(input, p, t, lateness, now),
                        Marker::Idle(p) => idleness.idled(p, now),
                    }
                }
            }
        }
        if !run.is_empty() {
            self.process(input, &run, out).await?;
        }
        Ok(())
    }

    /// Counts a decoded run's bad records and handles them as the input's `on_error` says.
    fn bad_records(
        &self,
        input: &NodeId,
        decoded: &Decoded,
        records: &[Record],
        out: &mut BatchOutcome,
    ) -> Result<(), RunError> {
        let Some(codec) = self.codecs.get(input) else { return Ok(()) };
        let counted_elsewhere = self.bad_records_of_another_task.contains(input);
        for bad in &decoded.bad {
            if counted_elsewhere && codec.on_error != OnError::Fail {
                continue;
            }
            out.bad_records += 1;
            let record = &records[bad.index];
            match codec.on_error {
                OnError::Fail => {
                    return Err(RunError::BadRecord {
                        topic: codec.topic.clone(),
                        partition: record.partition,
                        offset: record.offset,
                        reason: bad.reason.clone(),
                    })
                }
                OnError::Skip => out.skipped += 1,
                OnError::DeadLetter if self.bad_records_left_to_others.contains(input) => {}
                OnError::DeadLetter => out.dead_letters.push(dead_letter(codec, record, &bad.reason)),
            }
        }
        Ok(())
    }

    /// Moves the job's watermark to where the tracker has it: closes the windows it passed.
    pub async fn advance_watermark(&mut self, out: &mut BatchOutcome) -> Result<(), RunError> {
        let wm = self.tracker.watermark(&self.streams);
        self.advance_to(wm, out).await
    }

    /// Every input is at its end: as once the idle timeout passed, partitions stop holding the
    /// watermark back.
    pub async fn advance_to_end_of_inputs(&mut self, out: &mut BatchOutcome) -> Result<(), RunError> {
        let wm = self.tracker.watermark_at_end(&self.streams);
        self.advance_to(wm, out).await
    }

    /// Moves the job's watermark to `wm` (ms; `i64::MAX` closes every window).
    pub async fn advance_to(&mut self, wm: i64, out: &mut BatchOutcome) -> Result<(), RunError> {
        if wm == i64::MIN {
            return Ok(());
        }
        let outputs = self.job.advance_watermark(wm).await?;
        self.encode(&outputs, out)
    }

    /// Event time the job closed windows up to (ms).
    pub fn watermark(&self) -> Option<i64> {
        self.job.watermark()
    }

    /// Event time the job closed windows up to (ms), and the windows still open.
    pub async fn progress(&mut self) -> Result<(Option<i64>, usize), RunError> {
        Ok((self.job.watermark(), self.job.open_windows().await?))
    }

    pub async fn snapshot(&mut self) -> Result<Vec<u8>, RunError> {
        Ok(self.job.snapshot().await?)
    }

    pub fn restore(&mut self, state: &[u8]) -> Result<(), RunError> {
        Ok(self.job.restore(state)?)
    }

    fn encode(&self, outputs: &[OutputBatch], out: &mut BatchOutcome) -> Result<(), RunError> {
        for o in outputs {
            out.outputs.extend(self.output.encode(o).map_err(DataFusionError::from)?);
        }
        Ok(())
    }
}

/// The columns of `input` the model's job reads (SQL names): those its scans project, and those
/// a repartition topic is keyed by. `None` (read every column) for an input it was not planned
/// against.
fn columns_read(m: &CompiledModel, input: &NodeId) -> Option<BTreeSet<String>> {
    let schema = m.input_schemas.get(input)?;
    let mut read: BTreeSet<String> = m
        .job
        .root
        .columns_read(input)
        .into_iter()
        .filter_map(|i| Some(schema.fields().get(i)?.name().clone()))
        .collect();
    if let Repartitioning::Topic(r) = &m.resolved.repartition {
        if &r.input == input {
            read.extend(r.columns.iter().cloned());
        }
    }
    Some(read)
}

fn dead_letter(codec: &InputCodec, record: &Record, reason: &str) -> DeadLetter {
    DeadLetter {
        input: codec.id.clone(),
        topic: codec.topic.clone(),
        dead_letter_topic: codec.dead_letter_topic.clone(),
        record: record.clone(),
        reason: reason.to_string(),
    }
}

/// Feeds a stream batch's event times to the tracker, record by record, and returns the
/// watermark each record arrived under (None for tables, which do not move event time).
fn observe_rows(
    tracker: &mut WatermarkTracker,
    codec: &InputCodec,
    decoded: &Decoded,
    records: &[Record],
    streams: &[NodeId],
) -> Option<Vec<i64>> {
    if codec.kind != RelationKind::Stream {
        return None;
    }
    let times = decoded.batch.column_by_name("rowtime")?.as_any().downcast_ref::<Int64Array>()?.clone();
    let mut out = Vec::with_capacity(decoded.rows.len());
    let now = Instant::now();
    let times = times.values();
    let rows = &decoded.rows[..decoded.rows.len().min(times.len())];
    // Records come in runs of one partition.
    let mut start = 0;
    while start < rows.len() {
        let partition = records[rows[start]].partition;
        let end =
            rows[start..].iter().position(|r| records[*r].partition != partition).map_or(rows.len(), |n| start + n);
        let run = times[start..end].iter().copied();
        tracker.observe_run(streams, &codec.id, partition, run, codec.lateness_ms, now, &mut out);
        start = end;
    }
    Some(out)
}
