//! Running a task of a job against Kafka: the input/output shell around the micro-batch driver.
//!
//! A job is cut into tasks ([`super::tasks`]), which Kafka's consumer group spreads over the
//! workers ([`super::group`]) and a worker's threads ([`super::runner`]). A task's owner restores
//! the task's last checkpoint, assigns the input partitions of the task from it (or from the replay
//! position), and loops: poll a micro-batch, run it through the [`MicroBatchDriver`], produce its
//! outputs and dead letters, checkpoint when due.
//!
//! Delivery, `exactly_once` (the default): the task's producer is transactional. A transaction
//! spans one checkpoint interval: the outputs and dead letters of the batches in it, then the
//! state checkpoint and the next input offsets (`send_offsets_to_transaction`), committed
//! together. A crash or a failed commit aborts the transaction; the job restores the last
//! committed checkpoint and reprocesses from its offsets, so a `read_committed` reader sees every
//! output once. A new owner's producer (same transactional id) fences the old one.
//!
//! Delivery, `at_least_once`: after a micro-batch, outputs are produced; at each checkpoint the
//! producer is flushed (every output acknowledged), then the state and the next input offsets
//! are written to the checkpoint topic, then the offsets are committed to the group. After a
//! crash the job resumes from the last checkpoint: no input is lost and no aggregate counts an
//! input twice; outputs produced after that checkpoint are produced again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Serialize;

use super::checkpoint::{
    partition_count, position, task_partition, write_checkpoint, CheckpointHead, CheckpointLog, CheckpointManifest,
    Isolation, Totals,
};
use super::codec::Record;
pub use super::dead_letters::bad_record_writers;
pub(crate) use super::dead_letters::dead_letter_headers;
use super::driver::{BatchOutcome, MicroBatchDriver};
use super::error::RunError;
use super::metrics::{BatchCounts, JobMetrics, JobState, Metrics};
use super::ownership::Claim;
use super::repartition::Stage;
use super::tasks::TaskId;
use crate::compile::carry_over::{carry_over, CarryOver};
use crate::compile::{CompiledModel, CompiledProject, ReplayStart};
use crate::connectors::consumer::{partition_list, partition_offsets, RawMessage};
use crate::connectors::producer::{OutRecord, RecordProducer, SendError, TxnFailure, TXN_CALL_TIMEOUT};
use crate::connectors::task_input::{InputConsumers, TaskInput};
use crate::graph::NodeId;
use crate::project::config::{Guarantee, RelationKind};

/// How long a micro-batch's outputs wait for the last one's to be acknowledged
/// ([`RecordProducer::wait_acknowledged`]) before they are queued anyway.
const OUTPUT_ACK_WAIT: Duration = Duration::from_secs(30);

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
    /// The job that writes the bad records of each (source topic, dead-letter topic) to the
    /// dead-letter topic, among the jobs this run hosts (see [`bad_record_writers`]); the others
    /// count them only. A source missing here: every job reading it writes its own copy.
    pub bad_record_writers: Arc<BTreeMap<(String, String), String>>,
    /// The target's guarantee, for models that do not set their own.
    pub guarantee: Guarantee,
    /// Where the jobs report their metrics (`--metrics-addr`).
    pub metrics: Option<Arc<Metrics>>,
    /// The target's schema registry: Avro writer schemas by id, the ids of Avro outputs. `None`:
    /// the project's file registry (`schemas/`).
    pub registry: Option<crate::registry::SharedRegistry>,
    /// Threads running tasks in this process (`run --threads`).
    pub threads: usize,
    /// Tasks are assigned by the jobs' consumer groups, shared with other workers (a Kafka
    /// target); `false`: this process runs every task (the embedded target, whose broker no
    /// other process reaches).
    pub group: bool,
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
            bad_record_writers: Arc::default(),
            guarantee: Guarantee::default(),
            metrics: None,
            registry: None,
            threads: default_threads(),
            group: false,
        }
    }
}

/// The machine's cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A job's name and how its run ended.
pub type JobOutcome = (String, Result<JobStats, RunError>);

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
    /// Windows still open when the job stopped: their results come once event time passes them.
    pub open_windows: u64,
    /// Event time (epoch ms) the job had closed windows up to when it stopped.
    pub watermark: Option<i64>,
    /// Offsets that disappeared before they were read (retention or a broker's limits).
    pub gaps: Vec<String>,
    pub restored_epoch: Option<u64>,
    /// `exactly_once` or `at_least_once`.
    pub guarantee: &'static str,
    /// Transactions aborted (exactly-once): their outputs were never visible to `read_committed`
    /// readers, and their input was processed again.
    pub aborted_transactions: u64,
}

/// Shared by the jobs of one `run`: stop requests and which jobs have caught up.
#[derive(Debug, Default)]
pub struct RunControl {
    pub stop: AtomicBool,
    done: Mutex<BTreeSet<String>>,
    /// The target's registry: native sinks decode Avro outputs with it.
    pub registry: Option<crate::registry::SharedRegistry>,
}

impl RunControl {
    /// A control whose native sinks read Avro writer schemas from `registry` (the target's).
    pub fn with_registry(registry: Option<crate::registry::SharedRegistry>) -> RunControl {
        RunControl { registry, ..RunControl::default() }
    }

    pub(crate) fn is_done(&self, model: &str) -> bool {
        self.done.lock().map(|d| d.contains(model)).unwrap_or(false)
    }
    pub(crate) fn mark_done(&self, model: &str) {
        if let Ok(mut d) = self.done.lock() {
            d.insert(model.to_string());
        }
    }
}

pub(crate) fn log(model: &str, msg: &str) {
    eprintln!("[{model}] {msg}");
}

/// Who starts a task: the task, and (when a worker hosts it) the holder name and the producer
/// its claim is written with.
pub struct TaskStart {
    pub task: TaskId,
    pub owner: Option<(String, Arc<RecordProducer>)>,
}

/// What a task needs from the cluster before it runs: its producer (initialised for
/// transactions in exactly-once mode), its claim, and its last checkpoint read. Round trips to
/// the brokers, most of a task's start: the threads that run tasks prepare them on threads of
/// their own, all at once, instead of one after another.
pub struct PreparedTask {
    task: TaskId,
    guarantee: Guarantee,
    producer: RecordProducer,
    restored: Option<(CheckpointManifest, Vec<u8>)>,
    checkpoint_partition: i32,
    claim: Option<(Claim, Arc<RecordProducer>)>,
}

impl PreparedTask {
    pub fn prepare(
        cp: &CompiledProject,
        model: &str,
        client: &ClientConfig,
        opts: &RunOptions,
        start: TaskStart,
    ) -> Result<PreparedTask, RunError> {
        let m = cp.models.get(model).ok_or_else(|| RunError::Setup(format!("no model `{model}`")))?;
        let guarantee = m.resolved.guarantee_on(opts.guarantee);
        let task = start.task;
        let producer = match guarantee {
            Guarantee::ExactlyOnce => RecordProducer::transactional(
                client,
                &task.transactional_id(&m.resolved.transactional_id),
                transaction_timeout_ms(opts),
            ),
            Guarantee::AtLeastOnce => RecordProducer::new(client),
        }
        .map_err(RunError::Setup)?;
        let ck_topic = &m.resolved.checkpoint_topic;
        let checkpoint_partition = task_partition(task, partition_count(client, ck_topic)?);
        // The claim goes before the read: an old owner's at-least-once writes after it are ignored.
        // It is read back `read_uncommitted`: read committed, it would not be seen while any
        // transaction on the partition is open (the partition's other task, or an owner killed
        // before committing, whose transaction stays open until it times out).
        let claim = match start.owner {
            Some((holder, lease_producer)) => {
                let mut leases = CheckpointLog::open(client, ck_topic, checkpoint_partition, Isolation::Leases)?;
                Some((Claim::take(&mut leases, &lease_producer, &holder, task)?, lease_producer))
            }
            None => None,
        };
        let mut log = CheckpointLog::open(client, ck_topic, checkpoint_partition, Isolation::Committed)?;
        log.catch_up()?;
        if log.stale_records > 0 {
            let n = log.stale_records;
            self::log(model, &format!("ignored {n} checkpoint records written by an owner that had lost the job"));
        }
        let mut restored = log.checkpoint(task)?;
        if restored.is_none() && task != TaskId::Whole {
            restored = super::checkpoint::from_whole_job(client, ck_topic, &log, m.stateful(), model)?;
        }
        Ok(PreparedTask { task, guarantee, producer, restored, checkpoint_partition, claim })
    }
}

/// How often an idle job asks where its input partitions end (see `KafkaJob::settle`).
const IDLE_ENDS_EVERY: Duration = Duration::from_secs(1);

/// Where one input partition stands.
struct PartitionState {
    input: NodeId,
    kind: RelationKind,
    next: i64,
    /// End offset to reach before stopping (`--until-caught-up`) or before streams start (tables).
    target: Option<i64>,
    high: i64,
    /// Co-partitioned inputs: the partition count by which each record's key must hash (murmur2,
    /// as Java clients partition) to the partition it is in.
    key_partitions: Option<i32>,
    /// Whether its records' headers are read: librdkafka parses them on demand, an allocation and
    /// a free per record (7% of a projection's CPU) that only header columns, dead letters (which
    /// keep them) and the repartition topic's markers need.
    headers: bool,
}

/// What `settle` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Running,
    /// Every input reached its end (`until_caught_up`), with a final checkpoint.
    CaughtUp,
    /// Stopped on request, with a final checkpoint.
    Stopped,
    /// The checkpoint could not be written, or the open transaction failed and was aborted:
    /// nothing since the last checkpoint is committed, so the job restarts from it.
    CheckpointFailed,
}

/// A polled micro-batch: its records in arrival order, cut into runs of one input topic.
#[derive(Default)]
struct PolledBatch {
    records: Vec<Record>,
    /// Each run's topic and where it ends in `records`.
    runs: Vec<(String, usize)>,
}

impl PolledBatch {
    fn with_capacity(n: usize) -> PolledBatch {
        PolledBatch { records: Vec::with_capacity(n), runs: Vec::new() }
    }

    fn push(&mut self, topic: &str, record: Record) {
        self.records.push(record);
        match self.runs.last_mut() {
            Some((t, end)) if t == topic => *end = self.records.len(),
            _ => self.runs.push((topic.to_string(), self.records.len())),
        }
    }

    /// A record of the same topic as the one pushed before it.
    fn push_to_last_run(&mut self, record: Record) {
        self.records.push(record);
        if let Some((_, end)) = self.runs.last_mut() {
            *end = self.records.len();
        }
    }

    /// The runs: a topic and its records.
    fn runs(&self) -> impl Iterator<Item = (&str, &[Record])> {
        let starts = std::iter::once(0).chain(self.runs.iter().map(|(_, end)| *end));
        self.runs.iter().zip(starts).map(|((topic, end), start)| (topic.as_str(), &self.records[start..*end]))
    }
}

/// Records of one input partition read one after another in a poll: what they need of the
/// partition's state, copied out once for the run, and its next offset, written back at the end.
struct InputRun {
    /// The records' topic, as told apart among the messages of one read call.
    topic_id: usize,
    key: (String, i32),
    /// For a partition the job reads (`parts`); `None` for one it does not track.
    tracked: Option<TrackedRun>,
    /// Records stamped before this are skipped (a source's `from`).
    skip_before: Option<i64>,
    /// Whether a record of the run is in the batch yet.
    in_batch: bool,
}

struct TrackedRun {
    next: i64,
    stream: bool,
    key_partitions: Option<i32>,
    headers: bool,
}

impl InputRun {
    fn start(
        msg: &RawMessage<'_>,
        parts: &BTreeMap<(String, i32), PartitionState>,
        skip_before: &HashMap<(String, i32), i64>,
    ) -> InputRun {
        let key = (msg.topic().to_string(), msg.partition());
        InputRun {
            topic_id: msg.topic_id(),
            tracked: parts.get(&key).map(|p| TrackedRun {
                next: p.next,
                stream: p.kind == RelationKind::Stream,
                key_partitions: p.key_partitions,
                headers: p.headers,
            }),
            skip_before: skip_before.get(&key).copied(),
            key,
            in_batch: false,
        }
    }

    fn end(self, parts: &mut BTreeMap<(String, i32), PartitionState>) {
        if let (Some(t), Some(p)) = (self.tracked, parts.get_mut(&self.key)) {
            p.next = t.next;
        }
    }
}

/// A task of a job running against Kafka, one micro-batch at a time. Whoever drives it must have
/// been given the task by the group ([`super::runner`] does). Dropping it without a final
/// checkpoint is a crash: the next owner resumes from the last checkpoint.
pub struct KafkaJob {
    rt: tokio::runtime::Runtime,
    model: CompiledModel,
    stateful: bool,
    opts: RunOptions,
    driver: MicroBatchDriver,
    producer: RecordProducer,
    /// The task's input partitions, read through a consumer the thread's tasks share.
    input: TaskInput,
    /// The output topic's partition count: keyless outputs go to one partition per micro-batch,
    /// in turn, instead of through librdkafka's sticky partitioner, which reads the clock for
    /// every record. `None` (not known): the partitioner picks.
    output_partitions: Option<i32>,
    /// The partition the next micro-batch's keyless outputs go to.
    next_output_partition: i32,
    checkpoint_topic: String,
    inputs_by_topic: BTreeMap<String, NodeId>,
    parts: BTreeMap<(String, i32), PartitionState>,
    /// Replay from a time: records stamped earlier are skipped.
    skip_before: HashMap<(String, i32), i64>,
    /// Held as names, not as a `TopicPartitionList`: a list that went through `pause` holds
    /// references into the consumer, and destroying the consumer first would wait for them.
    stream_partitions: Vec<(String, i32)>,
    tables_loaded: bool,
    targets_known: bool,
    last_checkpoint: Instant,
    /// When the lag and watermark were last reported to the metrics: a task with nothing to
    /// checkpoint (an idle partition) reports them anyway, once per checkpoint interval.
    last_positions: Option<Instant>,
    /// When the broker was last asked where the input partitions end, if no poll has found
    /// records since: see `settle`.
    ends_asked: Option<Instant>,
    dirty: bool,
    /// The open transaction failed while records were queued, and was aborted: the task resumes
    /// from its last committed checkpoint.
    aborted: bool,
    /// Records polled by the last `poll_and_process`.
    last_polled: usize,
    /// Bytes of keys and values the last poll copied, which size the next poll's buffer.
    arena_hint: usize,
    epoch: u64,
    base_totals: Totals,
    stats: JobStats,
    guarantee: Guarantee,
    metrics: Option<JobMetrics>,
    /// The lease epoch the job runs under, when a lease is held (at-least-once checkpoints carry it).
    lease_epoch: Option<u64>,
    task: TaskId,
    /// Input topics that are tables (every task reads them whole).
    table_topics: BTreeSet<String>,
    /// The task's partition of the checkpoint topic.
    checkpoint_partition: i32,
    /// The task's claim and the producer it was written with.
    claim: Option<(Claim, Arc<RecordProducer>)>,
    /// Which stage of a job with a repartition topic the task runs.
    stage: Stage,
}

impl KafkaJob {
    /// Restores the last committed checkpoint (as far as the model's change allows) and assigns
    /// every input partition from it or from the replay position. Exactly-once: first starts the
    /// job's transactional producer, which fences any older owner's and aborts what it left
    /// open, so the checkpoint read next is the last one anybody will commit.
    pub fn start(
        cp: Arc<CompiledProject>,
        model: &str,
        client: &ClientConfig,
        opts: &RunOptions,
        stats: JobStats,
    ) -> Result<KafkaJob, RunError> {
        let start = TaskStart { task: TaskId::Whole, owner: None };
        KafkaJob::start_task(cp, model, client, opts, stats, start, &mut InputConsumers::new(client))
    }

    /// [`KafkaJob::start`] for one task of the job; with an owner, the task is claimed first. Its
    /// input is read through one of `inputs` (the consumers of the thread that runs it).
    pub fn start_task(
        cp: Arc<CompiledProject>,
        model: &str,
        client: &ClientConfig,
        opts: &RunOptions,
        stats: JobStats,
        start: TaskStart,
        inputs: &mut InputConsumers,
    ) -> Result<KafkaJob, RunError> {
        let prepared = PreparedTask::prepare(&cp, model, client, opts, start)?;
        KafkaJob::start_prepared(cp, model, opts, stats, prepared, inputs)
    }

    /// Starts a task from its [`PreparedTask`]: its input is read through one of `inputs`.
    pub fn start_prepared(
        cp: Arc<CompiledProject>,
        model: &str,
        opts: &RunOptions,
        stats: JobStats,
        prepared: PreparedTask,
        inputs: &mut InputConsumers,
    ) -> Result<KafkaJob, RunError> {
        let PreparedTask { task, guarantee, producer, restored, checkpoint_partition, claim } = prepared;
        let mut job = KafkaJob::start_from(cp, model, inputs, opts, stats, restored, producer, guarantee, task)?;
        job.checkpoint_partition = checkpoint_partition;
        if let Some((c, _)) = &claim {
            job.lease_epoch = Some(c.epoch());
        }
        job.claim = claim;
        if guarantee == Guarantee::ExactlyOnce {
            job.producer.begin().map_err(txn_error)?;
        }
        Ok(job)
    }

    #[allow(clippy::too_many_arguments)]
    fn start_from(
        cp: Arc<CompiledProject>,
        model: &str,
        consumers: &mut InputConsumers,
        opts: &RunOptions,
        mut stats: JobStats,
        restored: Option<(CheckpointManifest, Vec<u8>)>,
        producer: RecordProducer,
        guarantee: Guarantee,
        task: TaskId,
    ) -> Result<KafkaJob, RunError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| RunError::Setup(e.to_string()))?;
        let m = cp.models.get(model).ok_or_else(|| RunError::Setup(format!("no model `{model}`")))?.clone();
        let checkpoint_topic = m.resolved.checkpoint_topic.clone();
        let mut stage = Stage::of(&m, task);
        // The first stage keeps no state: a changed model keeps its offsets.
        let stateful = m.stateful() && !matches!(stage, Stage::Rekey { .. });
        let mut driver =
            MicroBatchDriver::new(&cp, model, super::task_context(), opts.idle_timeout, opts.registry.as_ref())?;
        stats.guarantee = guarantee.word();

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
                    if !state.is_empty() {
                        driver.restore(&state)?;
                    }
                    log(model, &format!("restored checkpoint {epoch} (task {})", task.name()));
                }
                CarryOver::KeepOffsets => {
                    log(model, "the model changed; it keeps no state, so it goes on from the last checkpoint's offsets")
                }
                CarryOver::Replay => log(
                    model,
                    "the model changed since its last checkpoint: new state, rebuilt from its replay position",
                ),
            }
            if carried != CarryOver::Replay {
                offsets.extend(manifest.offsets.into_iter().map(|(t, p, o)| ((t, p), o)));
                event_times = manifest.event_times;
                stats.restored_epoch = Some(epoch);
            }
        }

        // Not a group member: offsets are committed to the job's group for monitoring only;
        // the checkpoint holds the authoritative ones.
        let lookup = consumers.lookup(&m.resolved.consumer_group).map_err(RunError::Setup)?;
        let data = lookup.consumer();
        // Asked of the producer, which writes the topic anyway (the input consumer is left alone).
        let output_partitions = producer.partition_count(&m.topic);
        let start_at_end = m.resolved.replay == ReplayStart::Latest;
        let start_at_time: Option<i64> = match &m.resolved.replay {
            ReplayStart::At { ms, .. } => Some(*ms),
            _ => None,
        };
        let has_upstream =
            m.inputs.iter().any(|i| matches!(i, NodeId::Model(_))) || matches!(stage, Stage::Aggregate(..));
        let mut parts: BTreeMap<(String, i32), PartitionState> = BTreeMap::new();
        let mut skip_before: HashMap<(String, i32), i64> = HashMap::new();
        let mut inputs_by_topic = BTreeMap::new();
        let mut tpl = TopicPartitionList::new();
        // Each input: its topic (the aggregating stage reads the repartition topic), kind, allowed
        // lateness and partitions.
        let mut inputs = Vec::new();
        for c in driver.codecs() {
            let topic = stage.topic_of(&c.id, &c.topic).to_string();
            let Some(partitions) = partition_offsets(data, &topic).map_err(RunError::Setup)? else {
                return Err(RunError::Setup(format!("input topic {topic} ({}) does not exist", c.id)));
            };
            let headers = c.reads_headers() || matches!(stage, Stage::Aggregate(..));
            inputs.push((topic, c.id.clone(), c.kind, c.lateness_ms, headers, partitions));
        }
        // A table joined on the stream's key, with as many partitions: task p reads its partition
        // p only, and every record of both is checked to be where its key puts it (`key_checked`:
        // by that partition count).
        let stream_partitions = inputs.iter().find(|i| i.2 == RelationKind::Stream).map(|i| i.5.len());
        let co_partitioned = match (task, &stage) {
            (TaskId::Partition(_), Stage::Whole) => super::tasks::co_partitioned_table(&cp, &m)
                .filter(|t| inputs.iter().any(|i| &i.1 == t && Some(i.5.len()) == stream_partitions)),
            _ => None,
        };
        let key_checked = co_partitioned.as_ref().and(stream_partitions).map(|n| n as i32);
        for (topic, input, kind, lateness_ms, headers, partitions) in inputs {
            inputs_by_topic.insert(topic.clone(), input.clone());
            let by_partition = co_partitioned.as_ref() == Some(&input);
            if let (true, TaskId::Partition(p)) = (by_partition, task) {
                self::log(model, &format!("task p{p} reads partition {p} of {topic} (co-partitioned with the stream)"));
            }
            let reads = |p: i32| match task {
                TaskId::Partition(t) if by_partition => p == t,
                _ => task.reads(kind, p),
            };
            let key_partitions = if kind == RelationKind::Stream || by_partition { key_checked } else { None };
            for (p, low, high) in partitions.into_iter().filter(|(p, _, _)| reads(*p)) {
                let next = match offsets.get(&(topic.clone(), p)) {
                    Some(o) => {
                        if *o < low && kind == RelationKind::Stream {
                            report_gap(model, &mut stats, &topic, p, *o, low);
                        }
                        (*o).max(low)
                    }
                    None if start_at_end && kind == RelationKind::Stream => high,
                    None => {
                        // Replay from a time: read from the start, skipping records stamped
                        // earlier (works on any broker, and also skips stragglers).
                        if let (RelationKind::Stream, Some(ts)) = (kind, start_at_time) {
                            skip_before.insert((topic.clone(), p), ts);
                        }
                        low
                    }
                };
                tpl.add_partition_offset(&topic, p, Offset::Offset(next))
                    .map_err(|e| RunError::Setup(format!("assigning {topic}: {e}")))?;
                let target = if kind == RelationKind::Table || (opts.until_caught_up && !has_upstream) {
                    Some(high)
                } else {
                    None
                };
                parts.insert(
                    (topic.clone(), p),
                    PartitionState { input: input.clone(), kind, next, target, high, key_partitions, headers },
                );
                if kind == RelationKind::Stream && !matches!(stage, Stage::Aggregate(..)) {
                    driver.tracker().add_partition(&input, p, lateness_ms);
                }
            }
        }
        let left_to_others: Vec<NodeId> = driver
            .codecs()
            .filter(|c| {
                opts.bad_record_writers
                    .get(&(c.topic.clone(), c.dead_letter_topic.clone()))
                    .is_some_and(|writer| writer != model)
            })
            .map(|c| c.id.clone())
            .collect();
        for input in &left_to_others {
            driver.leave_bad_records_to_another_job(input);
        }
        // Every task reads a table whole, and the first counts and writes its bad records (once
        // per job); a task reading its own partition of a co-partitioned table handles its own.
        let tables_of_the_first_task: Vec<NodeId> = driver
            .codecs()
            .filter(|c| {
                c.kind == RelationKind::Table
                    && co_partitioned.as_ref() != Some(&c.id)
                    && !matches!(task, TaskId::Whole | TaskId::Partition(0))
            })
            .map(|c| c.id.clone())
            .collect();
        for input in &tables_of_the_first_task {
            driver.leave_bad_records_to_another_task(input);
        }
        if let Stage::Rekey { r, partitions, .. } = &mut stage {
            *partitions = partition_offsets(data, &r.topic).map_err(RunError::Setup)?.map_or(0, |p| p.len() as i32);
        }
        // The aggregating stage tracks event time per partition of the input the records came from.
        if let Stage::Aggregate(r, n, idleness) = &mut stage {
            *n = partition_offsets(data, &r.input_topic).map_err(RunError::Setup)?.map_or(0, |p| p.len() as i32);
            *idleness = super::repartition::Idleness::new(*n, Instant::now());
            let lateness = driver.codecs().find(|c| c.id == r.input).map_or(0, |c| c.lateness_ms);
            for p in 0..*n {
                driver.tracker().add_partition(&r.input, p, lateness);
            }
        }
        let now = Instant::now();
        for (topic, p, t) in event_times {
            let lateness = driver.codecs().find(|c| c.topic == topic).map_or(0, |c| c.lateness_ms);
            match &stage {
                Stage::Aggregate(r, ..) if r.input_topic == topic => {
                    driver.tracker().observe_at(&r.input, p, t, lateness, now)
                }
                _ => {
                    if let Some(st) = parts.get(&(topic.clone(), p)) {
                        driver.tracker().observe_at(&st.input, p, t, lateness, now);
                    }
                }
            }
        }
        let input = consumers.task_input(&m.resolved.consumer_group, &tpl).map_err(RunError::Setup)?;
        // Tables first: streams wait until every table has been read to its current end.
        let stream_partitions: Vec<(String, i32)> =
            parts.iter().filter(|(_, st)| st.kind == RelationKind::Stream).map(|(k, _)| k.clone()).collect();
        let tables_loaded = tables_loaded(&parts);
        if !tables_loaded {
            let _ = input.consumer().pause(&partition_list(&stream_partitions));
        }
        let table_topics = parts
            .iter()
            .filter(|(_, st)| st.kind == RelationKind::Table && co_partitioned.as_ref() != Some(&st.input))
            .map(|((t, _), _)| t.clone())
            .collect();
        Ok(KafkaJob {
            rt,
            stateful,
            opts: opts.clone(),
            driver,
            producer,
            input,
            output_partitions,
            next_output_partition: 0,
            checkpoint_topic,
            inputs_by_topic,
            parts,
            skip_before,
            stream_partitions,
            tables_loaded,
            targets_known: !has_upstream || !opts.until_caught_up,
            last_checkpoint: Instant::now(),
            last_positions: None,
            ends_asked: None,
            dirty: false,
            aborted: false,
            last_polled: 0,
            arena_hint: 0,
            epoch,
            base_totals,
            stats,
            metrics: opts.metrics.as_ref().map(|metrics| metrics.job(model)),
            model: m,
            guarantee,
            lease_epoch: None,
            task,
            table_topics,
            checkpoint_partition: 0,
            claim: None,
            stage,
        })
    }

    /// How long a poll waits to fill a micro-batch (a thread running several tasks shares its wait).
    pub fn set_batch_wait(&mut self, wait: std::time::Duration) {
        self.opts.max_batch_wait = wait;
    }

    /// The task it runs.
    pub fn task(&self) -> TaskId {
        self.task
    }

    /// Marks the task as held by nobody (after its final checkpoint).
    pub fn release(&self) {
        if let Some((claim, producer)) = &self.claim {
            claim.release(producer);
        }
    }

    /// The job runs under this lease epoch: its at-least-once checkpoints say so, and readers ignore them
    /// once a newer epoch has been claimed (an owner that lost the lease during a slow batch).
    pub fn owned_under(&mut self, lease_epoch: u64) {
        self.lease_epoch = Some(lease_epoch);
    }

    pub(crate) fn report_state(&self, state: JobState) {
        if let Some(m) = &self.metrics {
            m.state(state);
        }
    }

    pub fn stats(&self) -> &JobStats {
        &self.stats
    }

    pub fn into_stats(self) -> JobStats {
        self.stats
    }

    /// The stats with where event time stands: the watermark and the windows still open.
    pub fn finish(mut self) -> Result<JobStats, RunError> {
        let (watermark, open) = self.rt.block_on(self.driver.progress())?;
        self.stats.watermark = watermark;
        self.stats.open_windows = open as u64;
        Ok(self.stats)
    }

    /// Polls a micro-batch (nothing when `stopping`), runs it through the driver and produces
    /// what it gave. Returns the number of records polled.
    pub fn poll_and_process(&mut self, stopping: bool) -> Result<usize, RunError> {
        let started = Instant::now();
        let batch = if stopping { PolledBatch::default() } else { self.poll()? };
        self.last_polled = batch.records.len();
        // Every task reads the tables whole (but for co-partitioned ones): their records count once
        // per job, in its first task.
        // The aggregating stage's records were counted as they came in by the first.
        let counts = |topic: &str| match (&self.stage, self.task) {
            (Stage::Aggregate(..), _) => false,
            (_, TaskId::Whole | TaskId::Partition(0)) => true,
            _ => !self.table_topics.contains(topic),
        };
        let (mut counted, mut bytes_in) = (0usize, 0u64);
        for (topic, records) in batch.runs() {
            if counts(topic) {
                counted += records.len();
                bytes_in += records.iter().map(|r| r.value.as_ref().map_or(0, |v| v.len()) as u64).sum::<u64>();
            }
        }
        self.stats.records_in += counted as u64;
        let mut out = BatchOutcome::default();
        for (topic, records) in batch.runs() {
            if let Some(input) = self.inputs_by_topic.get(topic).cloned() {
                match &mut self.stage {
                    Stage::Rekey { r, seen, .. } => {
                        let t = self.driver.rekey(&input, records, &r.columns, &mut out)?;
                        *seen = t.map_or(*seen, |t| t.max(*seen));
                        super::repartition::heard_from_input(&mut self.stage, Instant::now());
                    }
                    Stage::Aggregate(_, _, idleness) => self.rt.block_on(self.driver.process_repartitioned(
                        &input,
                        records.to_vec(),
                        idleness,
                        &mut out,
                    ))?,
                    Stage::Whole => self.rt.block_on(self.driver.process(&input, records, &mut out))?,
                }
            }
            self.dirty = true;
        }
        if let TaskId::Repartition(p) = self.task {
            out.outputs.extend(super::repartition::markers(&mut self.stage, p));
        }
        self.write(out)?;
        // The metrics count what `status` counts: input records once per job (not the repartition
        // topic's again), output records of the model (not re-keyed records or markers).
        if let Some(m) = &self.metrics {
            let counts = BatchCounts { records_in: counted as u64, bytes_in, ..BatchCounts::default() };
            m.batch(counts, (self.last_polled > 0).then(|| started.elapsed()));
        }
        Ok(self.last_polled)
    }

    /// Polls up to a micro-batch: the records, and the runs of them that came from one input
    /// topic (its name, how many records), in arrival order. Records are read many per call
    /// ([`BatchReader`]): a poll per record cost librdkafka a queue lock and two clock reads each.
    fn poll(&mut self) -> Result<PolledBatch, RunError> {
        let max_records = self.opts.max_batch_records;
        let mut batch = PolledBatch::with_capacity(max_records.min(100_000));
        let mut batch_bytes = 0usize;
        let deadline = Instant::now() + self.opts.max_batch_wait;
        // The partition of the last record: records come in runs of one partition, so what they
        // need of its state is looked up once per run, not once per record.
        let mut run: Option<InputRun> = None;
        // Offsets skipped in a stream partition (from, to): checked against retention below.
        let mut skipped: Vec<(String, i32, i64, i64)> = Vec::new();
        let mut failure: Option<RunError> = None;
        // Keys and values are copied into one buffer, each record's kept as where it lies there:
        // the records become slices of it once the poll is done, not an allocation each.
        // Half again as large as the last poll needed: a poll a little larger than the one before
        // (most are) would otherwise grow it, a copy of all it holds so far.
        let mut arena: Vec<u8> = Vec::with_capacity((self.arena_hint + self.arena_hint / 2).max(64 * 1024));
        let mut spans: Vec<[Option<(usize, usize)>; 2]> = Vec::with_capacity(batch.records.capacity());
        let copy = |arena: &mut Vec<u8>, bytes: Option<&[u8]>| {
            bytes.map(|b| {
                arena.extend_from_slice(b);
                (arena.len() - b.len(), arena.len())
            })
        };
        let reader = &mut self.input;
        let (parts, skip_before) = (&mut self.parts, &self.skip_before);
        while batch.records.len() < max_records && batch_bytes < self.opts.max_batch_bytes && failure.is_none() {
            // What is already fetched is taken without a wait; the clock is read once per call.
            let left = deadline.saturating_duration_since(Instant::now());
            // As many records as fit the byte budget at the average size so far.
            let average = if batch.records.is_empty() { 4096 } else { (batch_bytes / batch.records.len()).max(1) };
            let fit = (self.opts.max_batch_bytes - batch_bytes).div_ceil(average);
            let want = (max_records - batch.records.len()).min(fit).max(1);
            let read = reader
                .read(left, want, |msg| {
                    if failure.is_some() {
                        return;
                    }
                    let partition = msg.partition();
                    let r = match &mut run {
                        Some(r) if r.topic_id == msg.topic_id() && r.key.1 == partition => r,
                        _ => {
                            if let Some(done) = run.take() {
                                done.end(parts);
                            }
                            run.insert(InputRun::start(&msg, parts, skip_before))
                        }
                    };
                    let mut with_headers = true;
                    if let Some(p) = &mut r.tracked {
                        with_headers = p.headers;
                        // Offsets skipped are transaction markers or aborted records, or records
                        // deleted (retention) before they were read: only the last is a loss.
                        if msg.offset() > p.next && p.stream {
                            skipped.push((r.key.0.clone(), r.key.1, p.next, msg.offset()));
                        }
                        p.next = msg.offset() + 1;
                        if let (Some(n), Some(k)) = (p.key_partitions, msg.key()) {
                            let expected = super::repartition::partition_of(k, n);
                            if expected != r.key.1 {
                                let why = not_co_partitioned(&r.key.0, r.key.1, msg.offset(), k, expected);
                                failure = Some(RunError::Setup(why));
                                return;
                            }
                        }
                    }
                    batch_bytes += msg.payload_len();
                    let timestamp = msg.timestamp();
                    if r.skip_before.is_some_and(|t| timestamp < t) {
                        return;
                    }
                    let record = Record {
                        partition,
                        offset: msg.offset(),
                        timestamp,
                        key: None,
                        value: None,
                        headers: if with_headers { msg.headers() } else { Vec::new() },
                    };
                    spans.push([copy(&mut arena, msg.key()), copy(&mut arena, msg.payload())]);
                    if r.in_batch {
                        batch.push_to_last_run(record);
                    } else {
                        batch.push(&r.key.0, record);
                        r.in_batch = true;
                    }
                })
                .map_err(RunError::Setup)?;
            // The messages of that call are gone, and with them what made a topic id unique.
            if let Some(done) = run.take() {
                done.end(parts);
            }
            if read < want || left.is_zero() {
                break;
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        self.arena_hint = arena.len();
        let arena = bytes::Bytes::from(arena);
        for (r, [key, value]) in batch.records.iter_mut().zip(spans) {
            r.key = key.map(|(from, to)| arena.slice(from..to));
            r.value = value.map(|(from, to)| arena.slice(from..to));
        }
        for (topic, partition, from, to) in skipped {
            let low = self
                .input
                .lookup()
                .fetch_watermarks(&topic, partition, Duration::from_secs(5))
                .map_or(to, |(low, _)| low);
            if low > from {
                report_gap(&self.model.name, &mut self.stats, &topic, partition, from, low.min(to));
            }
        }
        Ok(batch)
    }

    /// Produces outputs and dead letters, and counts them.
    fn write(&mut self, out: BatchOutcome) -> Result<(), RunError> {
        if self.aborted {
            return Ok(());
        }
        let model_outputs = !matches!(self.stage, Stage::Rekey { .. });
        if let Some(m) = &self.metrics {
            let outputs = if model_outputs { out.outputs.as_slice() } else { &[] };
            m.batch(
                BatchCounts {
                    records_out: outputs.len() as u64,
                    bytes_out: outputs.iter().map(|r| r.value.as_ref().map_or(0, |v| v.len()) as u64).sum(),
                    bad: out.bad_records,
                    dead_lettered: out.dead_letters.len() as u64,
                    late: out.late,
                    ..BatchCounts::default()
                },
                None,
            );
        }
        self.stats.bad_records += out.bad_records;
        self.stats.skipped += out.skipped;
        self.stats.late += out.late;
        for d in &out.dead_letters {
            let headers = dead_letter_headers(&self.model.name, &d.topic, &d.record, &d.reason);
            let r = &d.record;
            let rec =
                OutRecord { partition: None, key: r.key.as_deref(), value: r.value.as_deref(), timestamp: r.timestamp };
            if let Err(e) = self.producer.send(&d.dead_letter_topic, rec, Some(&headers)) {
                return self.send_failed(e);
            }
            self.stats.dead_lettered += 1;
        }
        // Keyless outputs of the model go to one partition per micro-batch, in turn.
        let keyless = self.output_partitions.map(|n| {
            self.next_output_partition = (self.next_output_partition + 1) % n;
            self.next_output_partition
        });
        // The first stage's outputs go to the repartition topic, partitioned by their key.
        let (topic, counted, partitions) = match &self.stage {
            Stage::Rekey { r, partitions, .. } => (r.topic.as_str(), 0, Some(*partitions)),
            Stage::Whole | Stage::Aggregate(..) => (self.model.topic.as_str(), out.outputs.len() as u64, None),
        };
        if !out.outputs.is_empty() {
            self.producer.wait_acknowledged(OUTPUT_ACK_WAIT);
        }
        for r in &out.outputs {
            let partition = match partitions {
                // A re-keyed record goes where its key hashes to, a marker (no key) where it says.
                Some(n) => Some(r.key.as_deref().map_or(r.partition, |k| super::repartition::partition_of(k, n))),
                None if r.key.is_none() => keyless,
                None => None,
            };
            let rec = OutRecord { partition, key: r.key.as_deref(), value: r.value.as_deref(), timestamp: r.timestamp };
            let headers = super::codec::kafka_headers(&r.headers);
            if let Err(e) = self.producer.send(topic, rec, headers.as_ref()) {
                return self.send_failed(e);
            }
        }
        self.stats.records_out += counted;
        self.dirty |= !out.outputs.is_empty();
        Ok(())
    }

    /// A record that could not be queued. When the open transaction has already failed (one of
    /// its records was not delivered) it is aborted, and the task resumes from its last committed
    /// checkpoint, as after a failed commit. A fenced producer, or any other refusal, stops it.
    fn send_failed(&mut self, e: SendError) -> Result<(), RunError> {
        if let Some(fatal) = self.producer.fatal_error().filter(|_| self.producer.is_transactional()) {
            return Err(RunError::Fenced(fatal));
        }
        match e {
            SendError::TransactionFailed(why) => {
                self.abort_transaction(&why);
                Ok(())
            }
            SendError::Refused(why) => Err(RunError::Setup(why)),
        }
    }

    /// Aborts the open transaction: nothing since the last checkpoint is committed, so replaying
    /// from it is safe.
    fn abort_transaction(&mut self, why: &str) {
        self.producer.abort();
        self.stats.aborted_transactions += 1;
        self.aborted = true;
        log(&self.model.name, &format!("transaction aborted ({why}); resuming from the last committed checkpoint"));
    }

    /// After a batch: moves the watermark, notices caught-up inputs, checkpoints when due.
    /// `upstream_done`: every upstream job has caught up (the ends to reach are known then).
    pub fn settle(&mut self, stopping: bool, upstream_done: bool) -> Result<Progress, RunError> {
        if self.aborted {
            return Ok(Progress::CheckpointFailed);
        }
        let polled_nothing = self.last_polled == 0;
        if !polled_nothing {
            self.ends_asked = None;
        }
        // Where each partition stands against its end, asked when a poll found nothing: at once
        // after records, then once a second while the job stays idle (a bounded run: every time,
        // as its end is what it waits for). Each ask is a request per partition; an idle job
        // asked ten times a second, most of what it did.
        let ask_ends = polled_nothing
            && (self.opts.until_caught_up || self.ends_asked.is_none_or(|t| t.elapsed() >= IDLE_ENDS_EVERY));
        if ask_ends {
            self.ends_asked = Some(Instant::now());
            for ((topic, p), st) in self.parts.iter_mut() {
                if let Ok((_, high)) = self.input.lookup().fetch_watermarks(topic, *p, Duration::from_secs(5)) {
                    st.high = high;
                }
                // Past the transaction markers at the end, which are never delivered.
                if let Some(pos) = position(self.input.consumer(), topic, *p) {
                    st.next = st.next.max(pos);
                }
            }
        }
        let mut out = BatchOutcome::default();
        match &mut self.stage {
            // Input partitions are idle as the first stage's idle markers say.
            Stage::Aggregate(r, _, idleness) => {
                let now = Instant::now();
                let lateness = self.driver.codecs().find(|c| c.id == r.input).map_or(0, |c| c.lateness_ms);
                for p in idleness.expire(now, self.opts.idle_timeout) {
                    let tracker = self.driver.tracker();
                    let t = tracker.max_event_time(&r.input, p).unwrap_or(i64::MIN);
                    tracker.observe_at(&r.input, p, t, lateness, now);
                }
                for p in idleness.idle_at(now, self.opts.idle_timeout) {
                    self.driver.tracker().caught_up(&r.input, p);
                }
            }
            stage => {
                let mut at_end = true;
                for ((_, p), st) in &self.parts {
                    if st.kind == RelationKind::Stream && st.next >= st.high {
                        // Not on an end a second old, which records written since may have passed.
                        if ask_ends || !polled_nothing {
                            self.driver.tracker().caught_up(&st.input, *p);
                        }
                    } else if st.kind == RelationKind::Stream {
                        at_end = false;
                    }
                }
                if let TaskId::Repartition(p) = self.task {
                    let (timeout, now) = (self.opts.idle_timeout, Instant::now());
                    // As above: an idle marker only on an end just asked for.
                    let caught_up = at_end && ask_ends;
                    out.outputs.extend(super::repartition::idle_markers(stage, p, caught_up, timeout, now));
                }
            }
        }
        if !self.tables_loaded && tables_loaded(&self.parts) {
            self.tables_loaded = true;
            let _ = self.input.consumer().resume(&partition_list(&self.stream_partitions));
        }
        self.rt.block_on(self.driver.advance_watermark(&mut out))?;
        self.write(out)?;
        if self.opts.until_caught_up
            && !self.targets_known
            && upstream_done
            && self.stage.upstream_done(self.input.lookup(), polled_nothing)
        {
            for ((topic, p), st) in self.parts.iter_mut() {
                if let Ok((_, high)) = self.input.lookup().fetch_watermarks(topic, *p, Duration::from_secs(10)) {
                    st.high = high;
                    st.target = Some(high);
                }
            }
            self.targets_known = true;
        }
        // Caught up: every target reached, and a poll that found nothing more (some brokers
        // report end offsets loosely).
        let caught_up = self.opts.until_caught_up
            && self.targets_known
            && self.tables_loaded
            && polled_nothing
            && self.parts.values().all(|p| p.target.is_none_or(|t| p.next >= t));
        if caught_up {
            let mut out = BatchOutcome::default();
            self.rt.block_on(self.driver.advance_to_end_of_inputs(&mut out))?;
            self.write(out)?;
            if self.aborted {
                return Ok(Progress::CheckpointFailed);
            }
        }
        let due = self.dirty && self.last_checkpoint.elapsed() >= self.opts.checkpoint_interval;
        if due || caught_up || stopping {
            let started = Instant::now();
            let checkpointed = self.checkpoint();
            if let (Some(m), Ok(())) = (&self.metrics, &checkpointed) {
                m.checkpoint(started.elapsed());
                self.report_positions();
            }
            match checkpointed {
                Ok(()) => {}
                Err(RunError::Fenced(why)) => return Err(RunError::Fenced(why)),
                Err(e) => {
                    if self.guarantee == Guarantee::ExactlyOnce {
                        self.abort_transaction(&e.to_string());
                    } else {
                        log(&self.model.name, &format!("checkpoint failed ({e}); resuming from the last checkpoint"));
                    }
                    return Ok(Progress::CheckpointFailed);
                }
            }
        } else if self.last_positions.is_none_or(|t| t.elapsed() >= self.opts.checkpoint_interval) {
            self.report_positions();
        }
        Ok(if caught_up {
            Progress::CaughtUp
        } else if stopping {
            Progress::Stopped
        } else {
            Progress::Running
        })
    }

    /// Each input partition's lag (its end now minus the next offset to read) and the watermark.
    fn report_positions(&mut self) {
        let Some(m) = &self.metrics else { return };
        self.last_positions = Some(Instant::now());
        let mut lag = Vec::new();
        for ((topic, p), st) in self.parts.iter_mut() {
            if let Ok((_, high)) = self.input.lookup().fetch_watermarks(topic, *p, Duration::from_secs(2)) {
                st.high = high;
            }
            lag.push((topic.as_str(), *p, st.high - st.next));
        }
        m.positions(lag, self.driver.watermark());
    }

    /// Flushes outputs, writes state and offsets, then commits the offsets to the group.
    fn checkpoint(&mut self) -> Result<(), RunError> {
        let state = self.rt.block_on(self.driver.snapshot())?;
        let head = CheckpointHead {
            epoch: self.epoch + 1,
            semantic_hash: self.model.semantic_hash.clone(),
            stateful: self.stateful,
            totals: self.base_totals.plus(&self.stats),
            offsets: self.parts.iter().map(|((t, p), st)| (t.clone(), *p, st.next)).collect(),
            event_times: match &self.stage {
                Stage::Aggregate(r, n, _) => (0..*n)
                    .filter_map(|p| self.driver.max_event_time(&r.input, p).map(|e| (r.input_topic.clone(), p, e)))
                    .collect(),
                _ => self
                    .parts
                    .iter()
                    .filter_map(|((t, p), st)| self.driver.max_event_time(&st.input, *p).map(|e| (t.clone(), *p, e)))
                    .collect(),
            },
            // Exactly-once needs no tag: the transactional id fences an old owner's writes.
            lease_epoch: self.lease_epoch.filter(|_| self.guarantee == Guarantee::AtLeastOnce),
        };
        let mut commit = TopicPartitionList::new();
        for ((topic, p), st) in &self.parts {
            let _ = commit.add_partition_offset(topic, *p, Offset::Offset(st.next));
        }
        match self.guarantee {
            Guarantee::ExactlyOnce => {
                // Outputs, checkpoint and offsets of this interval become visible together.
                if let Err(e) = write_checkpoint(
                    &self.producer,
                    (&self.checkpoint_topic, self.checkpoint_partition),
                    self.task,
                    head,
                    &state,
                ) {
                    return Err(self.producer.fatal_error().map_or(e, RunError::Fenced));
                }
                let group = self
                    .input
                    .consumer()
                    .group_metadata()
                    .ok_or_else(|| RunError::Setup("the input consumer has no group metadata".into()))?;
                self.producer.send_offsets(&commit, group, TXN_CALL_TIMEOUT).map_err(txn_error)?;
                self.producer.commit().map_err(txn_error)?;
                self.epoch += 1;
                self.producer.begin().map_err(txn_error)?;
            }
            Guarantee::AtLeastOnce => {
                write_checkpoint(
                    &self.producer,
                    (&self.checkpoint_topic, self.checkpoint_partition),
                    self.task,
                    head,
                    &state,
                )?;
                self.epoch += 1;
                if let Err(e) = self.input.consumer().commit(&commit, CommitMode::Sync) {
                    log(
                        &self.model.name,
                        &format!("committing offsets to the group failed ({e}); the checkpoint holds them"),
                    );
                }
            }
        }
        self.stats.checkpoints += 1;
        self.last_checkpoint = Instant::now();
        self.dirty = false;
        Ok(())
    }
}

/// Why a co-partitioned join cannot go on: a record is not in the partition its key hashes to.
/// Records of a stream partition deleted (retention) before the job read them: said in the log
/// and counted, never skipped quietly.
fn report_gap(model: &str, stats: &mut JobStats, topic: &str, partition: i32, from: i64, to: i64) {
    let gap = format!("{topic} partition {partition} offsets {from}..{to} were deleted before being processed");
    log(model, &format!("DATA LOST: {gap}"));
    stats.gaps.push(gap);
}

fn not_co_partitioned(topic: &str, partition: i32, offset: i64, key: &[u8], expected: i32) -> String {
    format!(
        "{topic} partition {partition} offset {offset}: its key {} belongs in partition {expected} by murmur2 (the \
         Java clients' default partitioner); this stream–table join reads the table partition by partition, with the \
         stream's partition of the same number, which needs both topics partitioned by murmur2 over the same key \
         bytes. Produce them so (librdkafka: partitioner=murmur2_random), or leave the stream's `key:` out of its \
         declaration: then every task reads the whole table",
        String::from_utf8_lossy(key)
    )
}

/// A transaction that did not commit: fenced (stop producing) or aborted (restore and go on).
fn txn_error(e: TxnFailure) -> RunError {
    match e {
        TxnFailure::Fenced(m) => RunError::Fenced(m),
        TxnFailure::Aborted(m) => RunError::Setup(m),
    }
}

/// How long the broker keeps a job's transaction open before aborting it: well beyond one
/// checkpoint interval of work, so only a hung or dead owner's transaction times out.
fn transaction_timeout_ms(opts: &RunOptions) -> u64 {
    let interval = opts.checkpoint_interval.as_millis() as u64;
    interval.saturating_mul(10).clamp(60_000, 900_000)
}

fn tables_loaded(parts: &BTreeMap<(String, i32), PartitionState>) -> bool {
    parts.values().filter(|p| p.kind == RelationKind::Table).all(|p| p.target.is_none_or(|t| p.next >= t))
}
