//! A job's checkpoint topic: compacted, holding for each of the job's tasks (see [`super::tasks`]; a
//! task's keys start with `t<p>/`, the whole job's have no prefix) its owner's claims (lease records),
//! its state in chunks (two slots, written alternately) and a manifest naming the complete slot, the
//! input offsets and event times it goes with, and the task's counters. Task `p` writes to partition
//! `p` of the topic (a worker grows the topic to the job's tasks): a reader reads committed records up
//! to the partition's last stable offset, so a transaction another task's dead owner left open
//! elsewhere never hides a task's own last checkpoint. (On the embedded target, where nobody dies
//! while another runs, the tasks share partition 0.)
//!
//! At-least-once checkpoints carry the writer's lease epoch (a record header): a reader ignores a
//! checkpoint record written after a newer lease epoch was claimed in the log, i.e. by an owner that
//! had lost the job (a batch slower than the lease, a paused process) and did not know it yet. So the
//! checkpoint a new owner restores stays the last one its predecessor wrote while it held the job, and
//! a late write of the old owner never pairs its state with other offsets. Exactly-once checkpoints
//! need no tag: a new owner's transactional producer fences the old one before it reads.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::error::RunError;
use super::tasks::TaskId;
use super::worker::JobStats;
use crate::connectors::consumer::manual_consumer;
use crate::connectors::lease::{now_ms, Lease, LeaseBook};
use crate::connectors::producer::{OutRecord, RecordProducer};

const CHUNK_BYTES: usize = 512 * 1024;

/// The header holding the lease epoch an at-least-once checkpoint record was written under.
const LEASE_EPOCH_HEADER: &str = "streamctl.lease.epoch";

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
    /// The lease epoch of the owner that wrote it (at-least-once); its chunks carry the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_epoch: Option<u64>,
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
    pub(crate) fn plus(self, s: &JobStats) -> Totals {
        Totals {
            records_in: self.records_in + s.records_in,
            records_out: self.records_out + s.records_out,
            bad_records: self.bad_records + s.bad_records,
            dead_lettered: self.dead_lettered + s.dead_lettered,
            late: self.late + s.late,
        }
    }
}

/// A job's last checkpoints and leases, as `status` shows them.
#[derive(Debug, Clone)]
pub struct CheckpointSummary {
    /// Each task's last committed checkpoint.
    pub manifests: Vec<(TaskId, CheckpointManifest)>,
    /// Each task's last claim, as written.
    pub leases: Vec<(TaskId, Lease)>,
    /// Records per second over the last [`THROUGHPUT_WINDOW_MS`].
    pub throughput: Throughput,
}

/// The span `status` measures throughput over: the last minute.
pub const THROUGHPUT_WINDOW_MS: i64 = 60_000;

/// Records per second over a span of time ending now, as the job's checkpoints counted them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Throughput {
    pub window_seconds: u64,
    pub records_in_per_second: f64,
    pub records_out_per_second: f64,
}

/// The counters a checkpoint log held at a moment and at its end. Every manifest carries the
/// job's totals and is stamped when written, so the totals at time t are those of the last
/// manifest written at or before t: zero before the first checkpoint the topic ever held (epoch
/// 1), and, when compaction removed the manifests before t, those of the earliest one left.
#[derive(Debug, Clone, Default)]
struct CounterHistory {
    since_ms: i64,
    first: Option<(u64, Totals)>,
    at_since: Option<Totals>,
    last: Option<Totals>,
}

impl CounterHistory {
    fn observe(&mut self, timestamp_ms: i64, manifest: &[u8]) {
        let Ok(m) = serde_json::from_slice::<CheckpointManifest>(manifest) else { return };
        self.first.get_or_insert((m.epoch, m.totals));
        if timestamp_ms <= self.since_ms {
            self.at_since = Some(m.totals);
        }
        self.last = Some(m.totals);
    }

    fn throughput(&self, window_ms: i64) -> Throughput {
        let last = self.last.unwrap_or_default();
        let start = match (self.at_since, self.first) {
            (Some(t), _) => t,
            (None, Some((epoch, totals))) if epoch > 1 => totals,
            _ => Totals::default(),
        };
        let seconds = window_ms as f64 / 1000.0;
        Throughput {
            window_seconds: (window_ms / 1000) as u64,
            records_in_per_second: last.records_in.saturating_sub(start.records_in) as f64 / seconds,
            records_out_per_second: last.records_out.saturating_sub(start.records_out) as f64 / seconds,
        }
    }
}

/// Reads a job's checkpoint topic (empty summary when it does not exist yet): the last committed
/// checkpoint, the throughput over the last minute, and the lease as written (leases are outside
/// transactions, and a transaction a dead owner left open must not hide the leases written after
/// it).
pub fn read_checkpoint_summary(client: &ClientConfig, topic: &str) -> Result<CheckpointSummary, RunError> {
    let mut manifests: Vec<(TaskId, CheckpointManifest)> = Vec::new();
    let mut held: Vec<(TaskId, Lease)> = Vec::new();
    let mut throughput = Throughput {
        window_seconds: (THROUGHPUT_WINDOW_MS / 1000) as u64,
        records_in_per_second: 0.0,
        records_out_per_second: 0.0,
    };
    for partition in 0..partition_count(client, topic)? {
        let mut log = CheckpointLog::open(client, topic, partition, Isolation::Committed)?;
        log.history = Some(HashMap::new());
        log.catch_up()?;
        manifests.extend(
            log.latest
                .iter()
                .filter(|(k, _)| k.ends_with(b"manifest"))
                .filter_map(|(k, v)| Some((TaskId::of_key(k)?, serde_json::from_slice(v).ok()?))),
        );
        for h in log.history.iter().flat_map(|h| h.values()) {
            let t = h.throughput(THROUGHPUT_WINDOW_MS);
            throughput.records_in_per_second += t.records_in_per_second;
            throughput.records_out_per_second += t.records_out_per_second;
        }
        let mut leases = CheckpointLog::open(client, topic, partition, Isolation::Leases)?;
        leases.catch_up()?;
        held.extend(leases.leases.iter().filter_map(|(t, b)| b.current().map(|l| (*t, l.clone()))));
    }
    manifests.sort_by_key(|(t, _)| *t);
    held.sort_by_key(|(t, _)| *t);
    Ok(CheckpointSummary { manifests, leases: held, throughput })
}

/// Partitions of a checkpoint topic (1 when it does not exist yet: nothing to read).
pub(crate) fn partition_count(client: &ClientConfig, topic: &str) -> Result<i32, RunError> {
    let consumer = manual_consumer(client, "streamctl-checkpoint-reader").map_err(RunError::Setup)?;
    let _closed = crate::connectors::consumer::ClosedOnDrop(&consumer);
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| RunError::Setup(format!("reading metadata of {topic}: {e}")))?;
    Ok(md.topics().iter().find(|t| t.name() == topic).map_or(1, |t| t.partitions().len().max(1) as i32))
}

/// The partition of the checkpoint topic a task writes to, when the topic has `partitions`.
pub(crate) fn task_partition(task: TaskId, partitions: i32) -> i32 {
    match task {
        TaskId::Partition(p) | TaskId::Repartition(p) if p < partitions => p,
        _ => 0,
    }
}

/// Which records of the checkpoint topic a reader sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isolation {
    /// Committed checkpoints only (and non-transactional records): what a job restores from.
    /// Reading stops at the last stable offset, before a transaction still open.
    Committed,
    /// Everything, also records of open or aborted transactions: for the leases only (written
    /// outside transactions), so that a transaction a dead owner left open does not hide the
    /// lease records written after it.
    Leases,
}

/// The job's checkpoint topic, read as it grows: the latest value of every key, and for each
/// lease epoch the first worker that claimed it (log order decides between contenders).
pub(crate) struct CheckpointLog {
    consumer: BaseConsumer,
    topic: String,
    partition: i32,
    latest: HashMap<Vec<u8>, Vec<u8>>,
    /// The lease epoch each key's latest value was written under, where it says.
    written_under: HashMap<Vec<u8>, u64>,
    /// Checkpoint records ignored because their writer had lost the lease when it wrote them.
    pub(crate) stale_records: u64,
    /// Each task's claims.
    pub(crate) leases: HashMap<TaskId, LeaseBook>,
    next: i64,
    /// The partition is assigned on the first read, at the offset its start had then.
    assigned: bool,
    /// For `status`: the counters of each task's manifests, by time.
    history: Option<HashMap<TaskId, CounterHistory>>,
}

impl Drop for CheckpointLog {
    fn drop(&mut self) {
        crate::connectors::consumer::close(&self.consumer);
    }
}

impl CheckpointLog {
    pub(crate) fn open(
        client: &ClientConfig,
        topic: &str,
        partition: i32,
        isolation: Isolation,
    ) -> Result<CheckpointLog, RunError> {
        let mut client = client.clone();
        client.set(
            "isolation.level",
            match isolation {
                Isolation::Committed => "read_committed",
                Isolation::Leases => "read_uncommitted",
            },
        );
        // Should the start move (retention) between reading it and fetching, read from the new start.
        client.set("auto.offset.reset", "earliest");
        // A log is read to its end once and closed. A fetch that finds nothing committed yet (a
        // claim's transaction committing while the task starts) is held by the broker this long;
        // librdkafka's default, 500 ms, was most of a task's start.
        client.set("fetch.wait.max.ms", "10");
        let consumer = manual_consumer(&client, "streamctl-checkpoint-reader").map_err(RunError::Setup)?;
        Ok(CheckpointLog {
            consumer,
            topic: topic.to_string(),
            partition,
            latest: HashMap::new(),
            written_under: HashMap::new(),
            stale_records: 0,
            leases: HashMap::new(),
            next: 0,
            assigned: false,
            history: None,
        })
    }

    /// Assigns the partition at its start offset as a number: a logical offset (`BEGINNING`)
    /// assigned before the client knows the partition's leader is looked up only after a fixed
    /// 500 ms retry in librdkafka, which every job start and lease claim would wait for.
    fn assign(&mut self, low: i64) -> Result<(), RunError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, self.partition, Offset::Offset(low))
            .map_err(|e| RunError::Setup(format!("checkpoint partition: {e}")))?;
        self.consumer.assign(&tpl).map_err(|e| RunError::Setup(format!("reading checkpoints: {e}")))?;
        self.next = low;
        self.assigned = true;
        Ok(())
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
    }

    pub(crate) fn partition(&self) -> i32 {
        self.partition
    }

    /// Reads everything written so far (read_committed: up to the last stable offset).
    pub(crate) fn catch_up(&mut self) -> Result<(), RunError> {
        let (low, high) = self.offsets()?;
        if !self.assigned {
            if low >= high {
                return Ok(()); // nothing written yet: assigned on a later read, from where the log starts then
            }
            self.assign(low)?;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.next < high {
            if Instant::now() > deadline {
                return Err(RunError::Setup(format!("timed out reading {}", self.topic)));
            }
            match self.consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    self.next = m.offset() + 1;
                    let (Some(k), Some(v)) = (m.key(), m.payload()) else { continue };
                    let Some(task) = TaskId::of_key(k) else { continue };
                    let suffix = &k[task.key_prefix().len()..];
                    if suffix == b"lease" {
                        self.leases.entry(task).or_default().observe(v);
                        continue;
                    }
                    let under = lease_epoch_of(&m);
                    // Written by an owner that had lost the task to a newer lease epoch by then.
                    let current = self.leases.get(&task).and_then(LeaseBook::current);
                    if under.is_some_and(|e| current.is_some_and(|l| l.epoch > e)) {
                        self.stale_records += 1;
                        continue;
                    }
                    if let (Some(h), b"manifest") = (self.history.as_mut(), suffix) {
                        let since_ms = now_ms() - THROUGHPUT_WINDOW_MS;
                        let h = h.entry(task).or_insert_with(|| CounterHistory { since_ms, ..Default::default() });
                        h.observe(m.timestamp().to_millis().unwrap_or(0), v);
                    }
                    self.latest.insert(k.to_vec(), v.to_vec());
                    match under {
                        Some(e) => self.written_under.insert(k.to_vec(), e),
                        None => self.written_under.remove(k),
                    };
                }
                Some(Err(e)) => return Err(RunError::Setup(format!("reading checkpoints: {e}"))),
                // Transaction markers take offsets but are never delivered: the position moves
                // past them.
                None => self.next = self.next.max(position(&self.consumer, &self.topic, self.partition).unwrap_or(0)),
            }
        }
        Ok(())
    }

    /// The start and end offsets, retried with backoff while the partition has no leader (a
    /// broker restarting, leadership moving): that passes, and a job should not stop for it.
    fn offsets(&self) -> Result<(i64, i64), RunError> {
        let mut wait = Duration::from_millis(100);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.consumer.fetch_watermarks(&self.topic, self.partition, Duration::from_secs(10)) {
                Ok(offsets) => return Ok(offsets),
                Err(e) if is_transient(&e) && Instant::now() + wait < deadline => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(RunError::Setup(format!("reading checkpoint offsets: {e}"))),
            }
        }
    }

    /// The last complete checkpoint of a task.
    pub(crate) fn checkpoint(&self, task: TaskId) -> Result<Option<(CheckpointManifest, Vec<u8>)>, RunError> {
        let prefix = task.key_prefix();
        let Some(manifest) = self.latest.get(format!("{prefix}manifest").as_bytes()) else { return Ok(None) };
        let manifest: CheckpointManifest = serde_json::from_slice(manifest)
            .map_err(|e| RunError::Setup(format!("corrupt checkpoint manifest: {e}")))?;
        let mut state = Vec::new();
        for i in 0..manifest.chunks {
            let key = format!("{prefix}chunk/{}/{i}", manifest.slot);
            let chunk = self
                .latest
                .get(key.as_bytes())
                .ok_or_else(|| RunError::Setup(format!("checkpoint chunk {key} is missing")))?;
            if chunk.len() < 8 || u64::from_le_bytes(chunk[..8].try_into().unwrap_or_default()) != manifest.epoch {
                return Err(RunError::Setup(format!("checkpoint chunk {key} belongs to another epoch")));
            }
            if manifest.lease_epoch.is_some() && self.written_under.get(key.as_bytes()) != manifest.lease_epoch.as_ref()
            {
                return Err(RunError::Setup(format!("checkpoint chunk {key} was written by another owner")));
            }
            state.extend_from_slice(&chunk[8..]);
        }
        Ok(Some((manifest, state)))
    }
}

/// The lease epoch header of a checkpoint record, if it has one.
fn lease_epoch_of(m: &rdkafka::message::BorrowedMessage<'_>) -> Option<u64> {
    let headers = m.headers()?;
    headers.iter().find(|h| h.key == LEASE_EPOCH_HEADER).and_then(|h| std::str::from_utf8(h.value?).ok()?.parse().ok())
}

/// The consumer's position on a partition: the next offset it delivers, past any transaction
/// markers it skipped.
pub(crate) fn position(consumer: &BaseConsumer, topic: &str, partition: i32) -> Option<i64> {
    let tpl = consumer.position().ok()?;
    match tpl.find_partition(topic, partition)?.offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    }
}

/// Errors that pass on their own: no leader for the moment, a broker not reachable right now.
pub(crate) fn is_transient(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::NotLeaderForPartition
                | C::LeaderNotAvailable
                | C::UnknownTopicOrPartition
                | C::NotCoordinator
                | C::CoordinatorNotAvailable
                | C::RequestTimedOut
                | C::OperationTimedOut
                | C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::FencedLeaderEpoch
                | C::UnknownLeaderEpoch
                | C::NotEnoughReplicas
        )
    )
}

fn send_keyed(
    producer: &RecordProducer,
    (topic, partition): (&str, i32),
    key: &[u8],
    value: &[u8],
    headers: Option<&OwnedHeaders>,
) -> Result<(), RunError> {
    let r = OutRecord { partition: Some(partition), key: Some(key), value: Some(value), timestamp: now_ms() };
    producer.send(topic, r, headers).map_err(|e| RunError::Setup(e.to_string()))
}

/// Writes a task's lease record and waits until it is acknowledged.
pub(crate) fn write_lease(
    producer: &RecordProducer,
    at: (&str, i32),
    task: TaskId,
    lease: &Lease,
) -> Result<(), RunError> {
    let value = serde_json::to_vec(lease).map_err(|e| RunError::Setup(e.to_string()))?;
    send_keyed(producer, at, format!("{}lease", task.key_prefix()).as_bytes(), &value, None)?;
    producer.flush().map_err(RunError::Setup)
}

/// What a checkpoint records besides the state.
pub(crate) struct CheckpointHead {
    pub epoch: u64,
    pub semantic_hash: String,
    pub stateful: bool,
    pub totals: Totals,
    pub offsets: Vec<(String, i32, i64)>,
    pub event_times: Vec<(String, i32, i64)>,
    /// At-least-once: the writer's lease epoch, for readers to ignore it once a newer owner claimed the job.
    pub lease_epoch: Option<u64>,
}

/// Flushes outputs, then writes state chunks and the manifest (double-buffered slots, so a
/// crash mid-write leaves the previous checkpoint whole).
pub(crate) fn write_checkpoint(
    producer: &RecordProducer,
    topic: (&str, i32),
    task: TaskId,
    head: CheckpointHead,
    state: &[u8],
) -> Result<(), RunError> {
    let prefix = task.key_prefix();
    producer.flush().map_err(RunError::Setup)?;
    let epoch = head.epoch;
    let slot = (epoch % 2) as u8;
    let chunks: Vec<&[u8]> = if state.is_empty() { vec![&[]] } else { state.chunks(CHUNK_BYTES).collect() };
    let lease = head.lease_epoch.map(|e| e.to_string());
    let headers =
        lease.as_deref().map(|e| OwnedHeaders::new().insert(Header { key: LEASE_EPOCH_HEADER, value: Some(e) }));
    for (i, c) in chunks.iter().enumerate() {
        let mut value = epoch.to_le_bytes().to_vec();
        value.extend_from_slice(c);
        send_keyed(producer, topic, format!("{prefix}chunk/{slot}/{i}").as_bytes(), &value, headers.as_ref())?;
    }
    let manifest = CheckpointManifest {
        epoch,
        slot,
        chunks: chunks.len() as u32,
        semantic_hash: head.semantic_hash,
        stateful: head.stateful,
        totals: head.totals,
        offsets: head.offsets,
        event_times: head.event_times,
        lease_epoch: head.lease_epoch,
    };
    let value = serde_json::to_vec(&manifest).map_err(|e| RunError::Setup(e.to_string()))?;
    producer.flush().map_err(RunError::Setup)?;
    send_keyed(producer, topic, format!("{prefix}manifest").as_bytes(), &value, headers.as_ref())?;
    producer.flush().map_err(RunError::Setup)
}

/// A task's start when the job ran as one task before (its checkpoint is the whole job's, in
/// partition 0): the task takes over its offsets, and its state only when it keeps none (a whole
/// job's state cannot be split by partition).
pub(crate) fn from_whole_job(
    client: &ClientConfig,
    topic: &str,
    ck: &CheckpointLog,
    stateful: bool,
    model: &str,
) -> Result<Option<(CheckpointManifest, Vec<u8>)>, RunError> {
    let whole = if ck.partition() == 0 {
        ck.checkpoint(TaskId::Whole)?
    } else {
        let mut first = CheckpointLog::open(client, topic, 0, Isolation::Committed)?;
        first.catch_up()?;
        first.checkpoint(TaskId::Whole)?
    };
    let Some((mut manifest, _)) = whole else { return Ok(None) };
    if stateful || manifest.stateful {
        super::worker::log(model, "the job was one task before: this task rebuilds its state from its replay position");
        return Ok(None);
    }
    super::worker::log(model, "the job was one task before: this task goes on from its offsets");
    // Its counters stay the whole job's: the tasks count from zero.
    manifest.totals = Totals::default();
    Ok(Some((manifest, Vec::new())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(epoch: u64, records_in: u64, records_out: u64) -> Vec<u8> {
        let totals = Totals { records_in, records_out, ..Totals::default() };
        let m = CheckpointManifest {
            epoch,
            slot: 0,
            chunks: 1,
            semantic_hash: String::new(),
            stateful: false,
            offsets: Vec::new(),
            event_times: Vec::new(),
            totals,
            lease_epoch: None,
        };
        serde_json::to_vec(&m).unwrap()
    }

    #[test]
    fn throughput_is_the_growth_of_the_totals_over_the_window() {
        // Checkpoints before the window and in it: the growth since the last one before it.
        let mut h = CounterHistory { since_ms: 1_000_000, ..CounterHistory::default() };
        h.observe(900_000, &manifest(7, 100, 10));
        h.observe(990_000, &manifest(8, 400, 40));
        h.observe(1_010_000, &manifest(9, 700, 70));
        h.observe(1_050_000, &manifest(10, 1000, 100));
        let t = h.throughput(60_000);
        assert_eq!(t.window_seconds, 60);
        assert_eq!(t.records_in_per_second, 10.0);
        assert_eq!(t.records_out_per_second, 1.0);

        // A job whose first checkpoint ever is in the window: everything it counted is recent.
        let mut h = CounterHistory { since_ms: 1_000_000, ..CounterHistory::default() };
        h.observe(1_010_000, &manifest(1, 120, 30));
        assert_eq!(h.throughput(60_000).records_in_per_second, 2.0);
        assert_eq!(h.throughput(60_000).records_out_per_second, 0.5);

        // Earlier manifests compacted away: the earliest one left is the start.
        let mut h = CounterHistory { since_ms: 1_000_000, ..CounterHistory::default() };
        h.observe(1_010_000, &manifest(40, 5000, 30));
        h.observe(1_020_000, &manifest(41, 5600, 30));
        assert_eq!(h.throughput(60_000).records_in_per_second, 10.0);

        // Nothing checkpointed in the last minute: nothing processed.
        let mut h = CounterHistory { since_ms: 1_000_000, ..CounterHistory::default() };
        h.observe(900_000, &manifest(3, 500, 50));
        assert_eq!(h.throughput(60_000).records_in_per_second, 0.0);
    }
}
