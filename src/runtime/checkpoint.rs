//! A job's checkpoint topic: one partition, compacted, holding the job's lease records, its
//! state in chunks (two slots, written alternately) and a manifest naming the complete slot, the
//! input offsets and event times it goes with, and the job's counters.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::error::RunError;
use super::worker::JobStats;
use crate::connectors::consumer::manual_consumer;
use crate::connectors::lease::{now_ms, Lease, LeaseBook};
use crate::connectors::producer::{OutRecord, RecordProducer};

const CHUNK_BYTES: usize = 512 * 1024;

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

/// A job's last checkpoint and lease, as `status` shows them.
#[derive(Debug, Clone)]
pub struct CheckpointSummary {
    pub manifest: Option<CheckpointManifest>,
    pub lease: Option<Lease>,
}

/// Reads a job's checkpoint topic (empty summary when it does not exist yet): the last committed
/// checkpoint, and the lease as written (leases are outside transactions, and a transaction a
/// dead owner left open must not hide the leases written after it).
pub fn read_checkpoint_summary(client: &ClientConfig, topic: &str) -> Result<CheckpointSummary, RunError> {
    let mut log = CheckpointLog::open(client, topic, Isolation::Committed)?;
    log.catch_up()?;
    let manifest = match log.latest.get(b"manifest".as_slice()) {
        Some(m) => serde_json::from_slice(m).ok(),
        None => None,
    };
    let mut leases = CheckpointLog::open(client, topic, Isolation::Leases)?;
    leases.catch_up()?;
    Ok(CheckpointSummary { manifest, lease: leases.leases.current().cloned() })
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
    latest: HashMap<Vec<u8>, Vec<u8>>,
    pub(crate) leases: LeaseBook,
    next: i64,
    /// The partition is assigned on the first read, at the offset its start had then.
    assigned: bool,
}

impl CheckpointLog {
    pub(crate) fn open(client: &ClientConfig, topic: &str, isolation: Isolation) -> Result<CheckpointLog, RunError> {
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
        let consumer = manual_consumer(&client, "streamctl-checkpoint-reader").map_err(RunError::Setup)?;
        Ok(CheckpointLog {
            consumer,
            topic: topic.to_string(),
            latest: HashMap::new(),
            leases: LeaseBook::default(),
            next: 0,
            assigned: false,
        })
    }

    /// Assigns the partition at its start offset as a number: a logical offset (`BEGINNING`)
    /// assigned before the client knows the partition's leader is looked up only after a fixed
    /// 500 ms retry in librdkafka, which every job start and lease claim would wait for.
    fn assign(&mut self, low: i64) -> Result<(), RunError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, 0, Offset::Offset(low))
            .map_err(|e| RunError::Setup(format!("checkpoint partition: {e}")))?;
        self.consumer.assign(&tpl).map_err(|e| RunError::Setup(format!("reading checkpoints: {e}")))?;
        self.next = low;
        self.assigned = true;
        Ok(())
    }

    pub(crate) fn topic(&self) -> &str {
        &self.topic
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
                    if k == b"lease" {
                        self.leases.observe(v);
                    } else {
                        self.latest.insert(k.to_vec(), v.to_vec());
                    }
                }
                Some(Err(e)) => return Err(RunError::Setup(format!("reading checkpoints: {e}"))),
                // Transaction markers take offsets but are never delivered: the position moves
                // past them.
                None => self.next = self.next.max(position(&self.consumer, &self.topic, 0).unwrap_or(0)),
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
            match self.consumer.fetch_watermarks(&self.topic, 0, Duration::from_secs(10)) {
                Ok(offsets) => return Ok(offsets),
                Err(e) if is_transient(&e) && Instant::now() + wait < deadline => {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(RunError::Setup(format!("reading checkpoint offsets: {e}"))),
            }
        }
    }

    /// The last complete checkpoint.
    pub(crate) fn checkpoint(&self) -> Result<Option<(CheckpointManifest, Vec<u8>)>, RunError> {
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

fn send_keyed(producer: &RecordProducer, topic: &str, key: &[u8], value: &[u8]) -> Result<(), RunError> {
    let r = OutRecord { partition: Some(0), key: Some(key), value: Some(value), timestamp: now_ms() };
    producer.send(topic, r, None).map_err(RunError::Setup)
}

/// Writes a lease record and waits until it is acknowledged.
pub(crate) fn write_lease(producer: &RecordProducer, topic: &str, lease: &Lease) -> Result<(), RunError> {
    let value = serde_json::to_vec(lease).map_err(|e| RunError::Setup(e.to_string()))?;
    send_keyed(producer, topic, b"lease", &value)?;
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
}

/// Flushes outputs, then writes state chunks and the manifest (double-buffered slots, so a
/// crash mid-write leaves the previous checkpoint whole).
pub(crate) fn write_checkpoint(
    producer: &RecordProducer,
    topic: &str,
    head: CheckpointHead,
    state: &[u8],
) -> Result<(), RunError> {
    producer.flush().map_err(RunError::Setup)?;
    let epoch = head.epoch;
    let slot = (epoch % 2) as u8;
    let chunks: Vec<&[u8]> = if state.is_empty() { vec![&[]] } else { state.chunks(CHUNK_BYTES).collect() };
    for (i, c) in chunks.iter().enumerate() {
        let mut value = epoch.to_le_bytes().to_vec();
        value.extend_from_slice(c);
        send_keyed(producer, topic, format!("chunk/{slot}/{i}").as_bytes(), &value)?;
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
    };
    let value = serde_json::to_vec(&manifest).map_err(|e| RunError::Setup(e.to_string()))?;
    producer.flush().map_err(RunError::Setup)?;
    send_keyed(producer, topic, b"manifest", &value)?;
    producer.flush().map_err(RunError::Setup)
}
