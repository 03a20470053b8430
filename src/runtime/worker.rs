//! Running a job against Kafka.
//!
//! Each job runs on its own thread, on the worker that holds the job's lease: a record in the
//! job's checkpoint topic, renewed every 2 s and valid for 6 s. Other workers stand by; when the
//! lease expires (the owner died) or is released, they contend for the next epoch and the first
//! claim in the topic's log wins, restores the last checkpoint and runs the job. An owner that
//! sees a newer epoch stops. This relies on nothing but producing and consuming, so it behaves
//! the same on any Kafka-compatible broker.
//!
//! Delivery: after a micro-batch, outputs are produced; at each checkpoint the producer is
//! flushed (every output acknowledged), then the state and the next input offsets are written to
//! the checkpoint topic, then the offsets are committed to the group. After a crash the job
//! resumes from the last checkpoint: no input is lost and no aggregate counts an input twice;
//! outputs produced after that checkpoint are produced again (at-least-once on the output topic).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use serde::{Deserialize, Serialize};

use super::bounded::RunError;
use super::codec::{encode_output, InputCodec, Record};
use super::job::Job;
use super::lease::{hostname, now_ms, Lease, LeaseBook};
use super::watermark::WatermarkTracker;
use crate::compile::carry_over::{carry_over, CarryOver};
use crate::compile::names::checkpoint_topic;
use crate::compile::{CompiledProject, ReplayStart};
use crate::graph::NodeId;
use crate::project::config::{OnError, RelationKind};

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Stop once every input has been processed up to the end it had at start (for upstream
    /// models: after they finished), with a final checkpoint.
    pub until_caught_up: bool,
    pub max_batch_records: usize,
    /// Bytes of record values per micro-batch at most (a batch ends after the record that
    /// crosses it).
    pub max_batch_bytes: usize,
    pub max_batch_wait: Duration,
    pub checkpoint_interval: Duration,
    /// A caught-up partition quiet this long stops holding the watermark back.
    pub idle_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            until_caught_up: false,
            max_batch_records: 10_000,
            max_batch_bytes: 16 * 1024 * 1024,
            max_batch_wait: Duration::from_millis(100),
            checkpoint_interval: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(5),
        }
    }
}

/// A job's name and how its run ended.
pub type JobOutcome = (String, Result<JobStats, RunError>);

/// A topic's records as (key, value), in offset order per partition.
pub type TopicRows = Vec<(Option<Vec<u8>>, Option<Vec<u8>>)>;

/// What a job did, for the summary and `status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobStats {
    pub model: String,
    pub records_in: u64,
    pub records_out: u64,
    pub bad_records: u64,
    pub skipped: u64,
    pub dead_lettered: u64,
    pub late: u64,
    pub checkpoints: u64,
    /// Offsets that disappeared before they were read (retention or a broker's limits).
    pub gaps: Vec<String>,
    pub restored_epoch: Option<u64>,
}

/// Shared by the jobs of one `run`: stop requests and which jobs have caught up.
#[derive(Debug, Default)]
pub struct RunControl {
    pub stop: AtomicBool,
    done: Mutex<BTreeSet<String>>,
    /// Crash simulation for tests: after this many non-empty batches a job stops dead, after
    /// producing the batch's outputs and before any checkpoint (0: never).
    pub crash_after_batches: AtomicUsize,
}

impl RunControl {
    fn is_done(&self, model: &str) -> bool {
        self.done.lock().map(|d| d.contains(model)).unwrap_or(false)
    }
    fn mark_done(&self, model: &str) {
        if let Ok(mut d) = self.done.lock() {
            d.insert(model.to_string());
        }
    }
}

/// A checkpoint's manifest: the last key written, after every chunk of its state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointManifest {
    pub epoch: u64,
    slot: u8,
    chunks: u32,
    pub semantic_hash: String,
    /// Whether the job keeps state (older checkpoints did not say: assume it does).
    #[serde(default = "yes")]
    pub stateful: bool,
    /// (topic, partition, next offset to read).
    pub offsets: Vec<(String, i32, i64)>,
    /// (topic, partition, largest event time read): where event time stood with those offsets,
    /// so a restarted job closes the windows its inputs had passed without new input.
    #[serde(default)]
    pub event_times: Vec<(String, i32, i64)>,
    /// Counters since the job was first deployed (carried over when the model changes).
    #[serde(default)]
    pub totals: Totals,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    pub records_in: u64,
    pub records_out: u64,
    pub bad_records: u64,
    pub dead_lettered: u64,
    pub late: u64,
}

impl Totals {
    fn plus(self, s: &JobStats) -> Totals {
        Totals {
            records_in: self.records_in + s.records_in,
            records_out: self.records_out + s.records_out,
            bad_records: self.bad_records + s.bad_records,
            dead_lettered: self.dead_lettered + s.dead_lettered,
            late: self.late + s.late,
        }
    }
}

/// A job's last checkpoint and lease, as `status` shows them.
#[derive(Debug, Clone)]
pub struct CheckpointSummary {
    pub manifest: Option<CheckpointManifest>,
    pub lease: Option<Lease>,
}

/// Reads a job's checkpoint topic (empty summary when it does not exist yet).
pub fn read_checkpoint_summary(
    client: &ClientConfig,
    project: &str,
    model: &str,
) -> Result<CheckpointSummary, RunError> {
    let topic = checkpoint_topic(project, model);
    let mut log = CheckpointLog::open(client, &topic)?;
    log.catch_up()?;
    let manifest = match log.latest.get(b"manifest".as_slice()) {
        Some(m) => serde_json::from_slice(m).ok(),
        None => None,
    };
    Ok(CheckpointSummary { manifest, lease: log.leases.current().cloned() })
}

const CHUNK_BYTES: usize = 512 * 1024;

/// How long a lease lasts without renewal, and how often the owner renews it.
const LEASE_TTL_MS: i64 = 6_000;
const LEASE_RENEW_MS: i64 = 2_000;

/// The job's checkpoint topic, read as it grows: the latest value of every key, and for each
/// lease epoch the first worker that claimed it (log order decides between contenders).
struct CheckpointLog {
    consumer: BaseConsumer,
    topic: String,
    latest: HashMap<Vec<u8>, Vec<u8>>,
    leases: LeaseBook,
    next: i64,
}

impl CheckpointLog {
    fn open(client: &ClientConfig, topic: &str) -> Result<CheckpointLog, RunError> {
        let consumer: BaseConsumer = client
            .clone()
            .set("group.id", "streamctl-checkpoint-reader")
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| kafka_err("creating the checkpoint reader", e))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, 0, Offset::Beginning).map_err(|e| kafka_err("checkpoint partition", e))?;
        consumer.assign(&tpl).map_err(|e| kafka_err("reading checkpoints", e))?;
        Ok(CheckpointLog {
            consumer,
            topic: topic.to_string(),
            latest: HashMap::new(),
            leases: LeaseBook::default(),
            next: 0,
        })
    }

    /// Reads everything written so far.
    fn catch_up(&mut self) -> Result<(), RunError> {
        let (_, high) = self
            .consumer
            .fetch_watermarks(&self.topic, 0, Duration::from_secs(10))
            .map_err(|e| kafka_err("reading checkpoint offsets", e))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.next < high {
            if Instant::now() > deadline {
                return Err(RunError::Setup(format!("timed out reading {}", self.topic)));
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    self.next = m.offset() + 1;
                    let (Some(k), Some(v)) = (m.key(), m.payload()) else { continue };
                    if k == b"lease" {
                        self.leases.observe(v);
                    } else {
                        self.latest.insert(k.to_vec(), v.to_vec());
                    }
                }
                Some(Err(e)) => return Err(kafka_err("reading checkpoints", e)),
                None => {}
            }
        }
        Ok(())
    }

    /// The last complete checkpoint.
    fn checkpoint(&self) -> Result<Option<(CheckpointManifest, Vec<u8>)>, RunError> {
        let Some(manifest) = self.latest.get(b"manifest".as_slice()) else { return Ok(None) };
        let manifest: CheckpointManifest = serde_json::from_slice(manifest)
            .map_err(|e| RunError::Setup(format!("corrupt checkpoint manifest: {e}")))?;
        let mut state = Vec::new();
        for i in 0..manifest.chunks {
            let key = format!("chunk/{}/{i}", manifest.slot);
            let chunk = self
                .latest
                .get(key.as_bytes())
                .ok_or_else(|| RunError::Setup(format!("checkpoint chunk {key} is missing")))?;
            if chunk.len() < 8 || u64::from_le_bytes(chunk[..8].try_into().unwrap_or_default()) != manifest.epoch {
                return Err(RunError::Setup(format!("checkpoint chunk {key} belongs to another epoch")));
            }
            state.extend_from_slice(&chunk[8..]);
        }
        Ok(Some((manifest, state)))
    }
}

fn write_lease(sender: &Sender, topic: &str, lease: &Lease) -> Result<(), RunError> {
    let value = serde_json::to_vec(lease).map_err(|e| RunError::Setup(e.to_string()))?;
    sender.send(
        topic,
        Some(0),
        &Record { partition: 0, offset: -1, timestamp: now_ms(), key: Some(b"lease".to_vec()), value: Some(value) },
        None,
    )?;
    sender.flush()
}

#[derive(Default)]
struct DeliveryErrors {
    count: AtomicU64,
    last: Mutex<Option<String>>,
}

struct ProduceContext(Arc<DeliveryErrors>);

impl ClientContext for ProduceContext {}

impl ProducerContext for ProduceContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.0.count.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut l) = self.0.last.lock() {
                *l = Some(e.to_string());
            }
        }
    }
}

fn kafka_err(what: &str, e: KafkaError) -> RunError {
    RunError::Setup(format!("{what}: {e}"))
}

fn log(model: &str, msg: &str) {
    eprintln!("[{model}] {msg}");
}

struct Sender {
    producer: ThreadedProducer<ProduceContext>,
    errors: Arc<DeliveryErrors>,
}

impl Sender {
    fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        r: &Record,
        headers: Option<OwnedHeaders>,
    ) -> Result<(), RunError> {
        loop {
            let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).timestamp(r.timestamp);
            if let Some(k) = &r.key {
                rec = rec.key(k.as_slice());
            }
            if let Some(v) = &r.value {
                rec = rec.payload(v.as_slice());
            }
            if let Some(p) = partition {
                rec = rec.partition(p);
            }
            if let Some(h) = &headers {
                rec = rec.headers(h.clone());
            }
            match self.producer.send(rec) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(kafka_err(&format!("producing to {topic}"), e)),
            }
        }
    }

    /// Waits until everything sent is acknowledged; fails if anything was not.
    fn flush(&self) -> Result<(), RunError> {
        self.producer.flush(Duration::from_secs(60)).map_err(|e| kafka_err("flushing the producer", e))?;
        let n = self.errors.count.swap(0, Ordering::SeqCst);
        if n > 0 {
            let last = self.errors.last.lock().ok().and_then(|l| l.clone()).unwrap_or_default();
            return Err(RunError::Setup(format!("{n} records were not delivered: {last}")));
        }
        Ok(())
    }
}

/// One input partition's progress.
#[derive(Debug, Clone)]
struct PartitionState {
    input: NodeId,
    kind: RelationKind,
    next: i64,
    /// End offset to reach before stopping (`--until-caught-up`) or before streams start (tables).
    target: Option<i64>,
    high: i64,
}

/// Runs one model's job until stopped (or caught up). Blocking: call on a thread of its own.
pub fn run_job(
    cp: Arc<CompiledProject>,
    model: String,
    client: ClientConfig,
    opts: RunOptions,
    control: Arc<RunControl>,
) -> Result<JobStats, RunError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let task = super::task_context();
    let m = cp.models.get(&model).ok_or_else(|| RunError::Setup(format!("no model `{model}`")))?.clone();
    let ck_topic = m.resolved.checkpoint_topic.clone();
    let stateful = m.stateful();
    let mut stats = JobStats { model: model.clone(), ..Default::default() };

    let me = format!("{}-{}-{:x}", hostname().unwrap_or_else(|| "worker".into()), std::process::id(), now_ms());
    let mut log_tail = CheckpointLog::open(&client, &ck_topic)?;

    let errors = Arc::new(DeliveryErrors::default());
    let producer: ThreadedProducer<ProduceContext> = client
        .clone()
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create_with_context(ProduceContext(errors.clone()))
        .map_err(|e| kafka_err("creating the producer", e))?;
    let sender = Sender { producer, errors };

    let mut codecs: BTreeMap<String, InputCodec> = BTreeMap::new();
    for id in &m.inputs {
        let c = InputCodec::for_input(&cp, id).ok_or_else(|| RunError::Setup(format!("no input {id}")))?;
        codecs.insert(c.topic.clone(), c);
    }
    let upstream_models: Vec<String> =
        m.inputs.iter().filter_map(|i| if let NodeId::Model(n) = i { Some(n.clone()) } else { None }).collect();
    let streams: Vec<NodeId> =
        codecs.values().filter(|c| c.kind == RelationKind::Stream).map(|c| c.id.clone()).collect();

    'outer: loop {
        // Stand by until this worker holds the job's lease: take it when it is free or expired;
        // of several contenders, the first to write the next epoch wins.
        let my_epoch = loop {
            if control.stop.load(Ordering::SeqCst) {
                return Ok(stats);
            }
            log_tail.catch_up()?;
            if log_tail.leases.is_free(now_ms()) {
                let epoch = log_tail.leases.next_epoch();
                write_lease(
                    &sender,
                    &ck_topic,
                    &Lease { holder: me.clone(), epoch, expires_ms: now_ms() + LEASE_TTL_MS },
                )?;
                log_tail.catch_up()?;
                if log_tail.leases.winner(epoch) == Some(me.as_str()) {
                    break epoch;
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let mut renewed_at = now_ms();
        let mut job = Job::new(&m, task.clone())?;
        let restored = log_tail.checkpoint()?;
        let mut offsets: HashMap<(String, i32), i64> = HashMap::new();
        let mut event_times: Vec<(String, i32, i64)> = Vec::new();
        let mut epoch = 0u64;
        let mut base_totals = Totals::default();
        if let Some((manifest, state)) = restored {
            epoch = manifest.epoch;
            base_totals = manifest.totals;
            let carried = carry_over(&manifest.semantic_hash, manifest.stateful, &m.semantic_hash, stateful);
            match carried {
                CarryOver::Resume => {
                    rt.block_on(async { job.restore(&state) })?;
                    log(&model, &format!("restored checkpoint {epoch}"));
                }
                CarryOver::KeepOffsets => log(
                    &model,
                    "the model changed; it keeps no state, so it goes on from the last checkpoint's offsets",
                ),
                CarryOver::Replay => log(
                    &model,
                    "the model changed since its last checkpoint: new state, rebuilt from its replay position",
                ),
            }
            if carried != CarryOver::Replay {
                for (t, p, o) in manifest.offsets {
                    offsets.insert((t, p), o);
                }
                event_times = manifest.event_times;
                stats.restored_epoch = Some(epoch);
            }
        }

        // Assign every input partition, from the checkpoint or the replay position.
        // Not a group member: offsets are committed to the job's group for monitoring only; the
        // checkpoint holds the authoritative ones.
        let data: BaseConsumer = client
            .clone()
            .set("group.id", &m.resolved.consumer_group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            // Large fetches: a micro-batch should not wait on many small round trips.
            .set("fetch.max.bytes", "67108864")
            .set("max.partition.fetch.bytes", "16777216")
            .set("fetch.wait.max.ms", "100")
            .create()
            .map_err(|e| kafka_err("creating the input consumer", e))?;
        let mut parts: BTreeMap<(String, i32), PartitionState> = BTreeMap::new();
        let mut skip_before: HashMap<(String, i32), i64> = HashMap::new();
        let mut tpl = TopicPartitionList::new();
        let mut tracker = WatermarkTracker::new(opts.idle_timeout);
        let start_at_end = m.resolved.replay == ReplayStart::Latest;
        let start_at_time: Option<i64> = match &m.resolved.replay {
            ReplayStart::At { ms, .. } => Some(*ms),
            _ => None,
        };
        for (topic, codec) in &codecs {
            let md = data
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .map_err(|e| kafka_err(&format!("reading metadata of {topic}"), e))?;
            let Some(t) = md.topics().iter().find(|t| t.name() == topic) else { continue };
            if t.error().is_some() || t.partitions().is_empty() {
                return Err(RunError::Setup(format!("input topic {topic} ({}) does not exist", codec.id)));
            }
            for p in t.partitions() {
                let (low, high) = data
                    .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                    .map_err(|e| kafka_err("reading offsets", e))?;
                let next = match offsets.get(&(topic.clone(), p.id())) {
                    Some(o) => {
                        if *o < low && codec.kind == RelationKind::Stream {
                            let gap = format!(
                                "{topic} partition {} offsets {o}..{low} were deleted before being processed",
                                p.id()
                            );
                            log(&model, &format!("DATA LOST: {gap}"));
                            stats.gaps.push(gap);
                        }
                        (*o).max(low)
                    }
                    None if start_at_end && codec.kind == RelationKind::Stream => high,
                    None => {
                        // Replay from a time: read from the start, skipping records stamped
                        // earlier (works on any broker, and also skips stragglers).
                        if codec.kind == RelationKind::Stream {
                            if let Some(ts) = start_at_time {
                                skip_before.insert((topic.clone(), p.id()), ts);
                            }
                        }
                        low
                    }
                };
                tpl.add_partition_offset(topic, p.id(), Offset::Offset(next)).map_err(|e| kafka_err("assigning", e))?;
                let target =
                    if codec.kind == RelationKind::Table || (opts.until_caught_up && upstream_models.is_empty()) {
                        Some(high)
                    } else {
                        None
                    };
                parts.insert(
                    (topic.clone(), p.id()),
                    PartitionState { input: codec.id.clone(), kind: codec.kind, next, target, high },
                );
                if codec.kind == RelationKind::Stream {
                    tracker.add_partition(&codec.id, p.id(), codec.lateness_ms);
                }
            }
        }
        let now = Instant::now();
        for (topic, p, t) in event_times.drain(..) {
            if let (Some(st), Some(c)) = (parts.get(&(topic.clone(), p)), codecs.get(&topic)) {
                tracker.observe_at(&st.input, p, t, c.lateness_ms, now);
            }
        }
        data.assign(&tpl).map_err(|e| kafka_err("assigning input partitions", e))?;
        // Tables first: streams wait until every table has been read to its current end.
        let stream_tpl = partitions_of(&parts, |p| p.kind == RelationKind::Stream);
        let mut tables_loaded =
            parts.values().filter(|p| p.kind == RelationKind::Table).all(|p| p.target.is_none_or(|t| p.next >= t));
        if !tables_loaded {
            let _ = data.pause(&stream_tpl);
        }
        let mut targets_known = upstream_models.is_empty() || !opts.until_caught_up;
        let mut last_checkpoint = Instant::now();
        let mut dirty = false;
        let mut batches = 0usize;

        loop {
            // Keep the lease: renew it, and stop if someone else holds a newer one.
            if now_ms() - renewed_at >= LEASE_RENEW_MS {
                log_tail.catch_up()?;
                if log_tail.leases.superseded(my_epoch) {
                    log(&model, "another worker took over this job; standing by");
                    continue 'outer;
                }
                let renewal = Lease { holder: me.clone(), epoch: my_epoch, expires_ms: now_ms() + LEASE_TTL_MS };
                if write_lease(&sender, &ck_topic, &renewal).is_err() {
                    if now_ms() - renewed_at >= LEASE_TTL_MS {
                        log(&model, "could not renew the lease in time; standing by");
                        continue 'outer;
                    }
                } else {
                    renewed_at = now_ms();
                }
            }
            let stopping = control.stop.load(Ordering::SeqCst);
            // Poll a micro-batch.
            let mut batch: Vec<(String, Record)> = Vec::with_capacity(opts.max_batch_records.min(100_000));
            let mut batch_bytes = 0usize;
            let deadline = Instant::now() + opts.max_batch_wait;
            while !stopping && batch.len() < opts.max_batch_records && batch_bytes < opts.max_batch_bytes {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match data.poll(left) {
                    Some(Ok(msg)) => {
                        let topic = msg.topic().to_string();
                        let key = (topic.clone(), msg.partition());
                        if let Some(p) = parts.get_mut(&key) {
                            if msg.offset() > p.next && p.kind == RelationKind::Stream {
                                let gap = format!(
                                    "{topic} partition {} offsets {}..{} were deleted before being processed",
                                    msg.partition(),
                                    p.next,
                                    msg.offset()
                                );
                                log(&model, &format!("DATA LOST: {gap}"));
                                stats.gaps.push(gap);
                            }
                            p.next = msg.offset() + 1;
                        }
                        batch_bytes += msg.payload_len();
                        let ts = msg.timestamp().to_millis().unwrap_or(0);
                        if skip_before.get(&key).is_some_and(|t| ts < *t) {
                            continue;
                        }
                        batch.push((
                            topic,
                            Record {
                                partition: msg.partition(),
                                offset: msg.offset(),
                                timestamp: msg.timestamp().to_millis().unwrap_or(0),
                                key: msg.key().map(<[u8]>::to_vec),
                                value: msg.payload().map(<[u8]>::to_vec),
                            },
                        ));
                    }
                    Some(Err(e)) => return Err(kafka_err("consuming", e)),
                    None => break,
                }
            }
            stats.records_in += batch.len() as u64;
            // Process runs of records of the same input, in arrival order.
            let mut i = 0;
            while i < batch.len() {
                let topic = batch[i].0.clone();
                let mut j = i;
                while j < batch.len() && batch[j].0 == topic {
                    j += 1;
                }
                // Moved out, not copied: the batch is not used after this.
                let records: Vec<Record> = batch[i..j].iter_mut().map(|(_, r)| std::mem::take(r)).collect();
                i = j;
                let Some(codec) = codecs.get(&topic) else { continue };
                let decoded = codec.decode(&records);
                for bad in &decoded.bad {
                    stats.bad_records += 1;
                    let r = &records[bad.index];
                    match codec.on_error {
                        OnError::Fail => {
                            return Err(RunError::BadRecord {
                                topic: topic.clone(),
                                partition: r.partition,
                                offset: r.offset,
                                reason: bad.reason.clone(),
                            })
                        }
                        OnError::Skip => stats.skipped += 1,
                        OnError::DeadLetter => {
                            sender.send(
                                &codec.dead_letter_topic,
                                None,
                                r,
                                Some(dlq_headers(&model, &topic, r, &bad.reason)),
                            )?;
                            stats.dead_lettered += 1;
                        }
                    }
                }
                let row_watermarks = super::bounded::observe_rows(&mut tracker, codec, &decoded, &records, &streams);
                let pushed = rt.block_on(job.push(
                    &codec.id,
                    &decoded.batch,
                    decoded.deletes.clone(),
                    row_watermarks.as_deref(),
                ))?;
                for late in &pushed.late {
                    stats.late += 1;
                    let r = &records[decoded.rows[*late]];
                    sender.send(
                        &codec.dead_letter_topic,
                        None,
                        r,
                        Some(dlq_headers(&model, &topic, r, "late: its window had closed")),
                    )?;
                    stats.dead_lettered += 1;
                }
                stats.records_out += produce(&sender, &m, &pushed.outputs)?;
                dirty = true;
            }
            if !batch.is_empty() {
                batches += 1;
                let crash_at = control.crash_after_batches.load(Ordering::SeqCst);
                if crash_at > 0 && batches >= crash_at {
                    let _ = sender.producer.flush(Duration::from_secs(10));
                    log(&model, "simulated crash: stopping without a checkpoint");
                    return Ok(stats);
                }
            }
            // Where each partition stands against its end.
            if batch.is_empty() {
                for ((topic, p), st) in parts.iter_mut() {
                    if let Ok((_, high)) = data.fetch_watermarks(topic, *p, Duration::from_secs(5)) {
                        st.high = high;
                    }
                }
            }
            for ((_, p), st) in &parts {
                if st.kind == RelationKind::Stream && st.next >= st.high {
                    tracker.caught_up(&st.input, *p);
                }
            }
            if !tables_loaded
                && parts
                    .values()
                    .filter(|p| p.kind == RelationKind::Table)
                    .all(|p| p.target.is_none_or(|t| p.next >= t))
            {
                tables_loaded = true;
                let _ = data.resume(&stream_tpl);
            }
            let wm = tracker.watermark(&streams);
            if wm != i64::MIN {
                let n = produce(&sender, &m, &rt.block_on(job.advance_watermark(wm))?)?;
                stats.records_out += n;
                dirty |= n > 0;
            }
            // Until-caught-up: the ends to reach are known once every upstream job is done.
            if opts.until_caught_up && !targets_known && upstream_models.iter().all(|u| control.is_done(u)) {
                for ((topic, p), st) in parts.iter_mut() {
                    if let Ok((_, high)) = data.fetch_watermarks(topic, *p, Duration::from_secs(10)) {
                        st.high = high;
                        st.target = Some(high);
                    }
                }
                targets_known = true;
            }
            // Caught up: every target reached, and a poll that found nothing more (some brokers
            // report end offsets loosely).
            let caught_up = opts.until_caught_up
                && targets_known
                && tables_loaded
                && batch.is_empty()
                && parts.values().all(|p| p.target.is_none_or(|t| p.next >= t));
            if caught_up {
                // Every input is at its end: as a live job would once the idle timeout passed,
                // the partitions stop holding the watermark back.
                let wm = tracker.watermark_at_end(&streams);
                if wm != i64::MIN {
                    stats.records_out += produce(&sender, &m, &rt.block_on(job.advance_watermark(wm))?)?;
                }
            }
            if (dirty && last_checkpoint.elapsed() >= opts.checkpoint_interval) || caught_up || stopping {
                epoch += 1;
                let state = rt.block_on(job.snapshot())?;
                let head = CheckpointHead {
                    epoch,
                    semantic_hash: &m.semantic_hash,
                    stateful,
                    totals: base_totals.plus(&stats),
                };
                if let Err(e) = checkpoint(&sender, &ck_topic, &head, &state, &parts, &tracker) {
                    // Nothing since the last checkpoint is committed: replaying from it is safe.
                    log(&model, &format!("checkpoint failed ({e}); resuming from the last checkpoint"));
                    std::thread::sleep(Duration::from_secs(1));
                    continue 'outer;
                }
                let mut commit = TopicPartitionList::new();
                for ((topic, p), st) in &parts {
                    let _ = commit.add_partition_offset(topic, *p, Offset::Offset(st.next));
                }
                if let Err(e) = data.commit(&commit, CommitMode::Sync) {
                    log(&model, &format!("committing offsets to the group failed ({e}); the checkpoint holds them"));
                }
                stats.checkpoints += 1;
                last_checkpoint = Instant::now();
                dirty = false;
            }
            if caught_up || stopping {
                // Hand the job over at once: an expired lease is free to take.
                let _ = write_lease(&sender, &ck_topic, &Lease { holder: me.clone(), epoch: my_epoch, expires_ms: 0 });
            }
            if caught_up {
                control.mark_done(&model);
                log(&model, &format!("caught up: {} records in, {} out", stats.records_in, stats.records_out));
                return Ok(stats);
            }
            if stopping {
                return Ok(stats);
            }
        }
    }
}

/// Encodes a model's output batches and produces them to its topic; returns the record count.
fn produce(
    sender: &Sender,
    m: &crate::compile::CompiledModel,
    outputs: &[super::job::OutputBatch],
) -> Result<u64, RunError> {
    let topic = &m.topic;
    let mut n = 0;
    for out in outputs {
        for r in encode_output(out, m).map_err(datafusion::error::DataFusionError::from)? {
            sender.send(topic, None, &r, None)?;
            n += 1;
        }
    }
    Ok(n)
}

fn partitions_of(
    parts: &BTreeMap<(String, i32), PartitionState>,
    f: impl Fn(&PartitionState) -> bool,
) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for ((t, p), st) in parts {
        if f(st) {
            tpl.add_partition(t, *p);
        }
    }
    tpl
}

fn dlq_headers(model: &str, topic: &str, r: &Record, reason: &str) -> OwnedHeaders {
    let partition = r.partition.to_string();
    let offset = r.offset.to_string();
    OwnedHeaders::new()
        .insert(Header { key: "streamctl.error", value: Some(reason) })
        .insert(Header { key: "streamctl.source.topic", value: Some(topic) })
        .insert(Header { key: "streamctl.source.partition", value: Some(&partition) })
        .insert(Header { key: "streamctl.source.offset", value: Some(&offset) })
        .insert(Header { key: "streamctl.job", value: Some(model) })
}

/// Flushes outputs, then writes state chunks and the manifest (double-buffered slots, so a
/// crash mid-write leaves the previous checkpoint whole).
struct CheckpointHead<'a> {
    epoch: u64,
    semantic_hash: &'a str,
    stateful: bool,
    totals: Totals,
}

fn checkpoint(
    sender: &Sender,
    topic: &str,
    head: &CheckpointHead<'_>,
    state: &[u8],
    parts: &BTreeMap<(String, i32), PartitionState>,
    tracker: &WatermarkTracker,
) -> Result<(), RunError> {
    sender.flush()?;
    let epoch = head.epoch;
    let slot = (epoch % 2) as u8;
    let chunks: Vec<&[u8]> = if state.is_empty() { vec![&[]] } else { state.chunks(CHUNK_BYTES).collect() };
    for (i, c) in chunks.iter().enumerate() {
        let mut value = epoch.to_le_bytes().to_vec();
        value.extend_from_slice(c);
        let r = Record {
            partition: 0,
            offset: -1,
            timestamp: now_ms(),
            key: Some(format!("chunk/{slot}/{i}").into_bytes()),
            value: Some(value),
        };
        sender.send(topic, Some(0), &r, None)?;
    }
    let manifest = CheckpointManifest {
        epoch,
        slot,
        chunks: chunks.len() as u32,
        semantic_hash: head.semantic_hash.to_string(),
        stateful: head.stateful,
        totals: head.totals,
        offsets: parts.iter().map(|((t, p), st)| (t.clone(), *p, st.next)).collect(),
        event_times: parts
            .iter()
            .filter_map(|((t, p), st)| tracker.max_event_time(&st.input, *p).map(|e| (t.clone(), *p, e)))
            .collect(),
    };
    let value = serde_json::to_vec(&manifest).map_err(|e| RunError::Setup(e.to_string()))?;
    sender.flush()?;
    sender.send(
        topic,
        Some(0),
        &Record { partition: 0, offset: -1, timestamp: now_ms(), key: Some(b"manifest".to_vec()), value: Some(value) },
        None,
    )?;
    sender.flush()
}
