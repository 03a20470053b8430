//! Native sinks: a model's output delivered outside Kafka by `streamctl run`, without Kafka
//! Connect. A sink is a task of its own beside the jobs, like a Connect sink task: it reads the
//! model's output topic (read_committed, so only what the job committed), decodes each record
//! with the model's output codec, writes it to the destination, and commits its consumer offsets
//! (group [`names::sink_consumer_group`]) only after the destination holds the records.
//!
//! * [`file`], [`file_task`]: JSON Lines or Parquet (`parquet.rs`) files in a directory (one per
//!   routed name with a `route` transform), rolled by size and age.
//! * [`kafka`]: another Kafka topic (or one per routed name), at least once.
//! * [`opensearch`]: an OpenSearch index, by `_bulk` requests (document id = the model's key, or
//!   the record's topic, partition and offset), at least once with ids that make a repeat harmless.
//! * [`postgres`]: a PostgreSQL table (or one per routed name), rows and offsets written in one transaction (the sink
//!   resumes from the offsets in Postgres, not from the group's).

pub(crate) mod file;
pub(crate) mod file_task;
pub(crate) mod kafka;
pub(crate) mod opensearch;
#[cfg(feature = "parquet")]
pub(crate) mod parquet;
pub(crate) mod postgres;
pub(crate) mod postgres_sql;
pub(crate) mod transform;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Header;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::compile::{names, CompiledProject};
use crate::connectors::producer::{OutRecord, RecordProducer};
use crate::project::config::{SinkConnector, SinkOnError};
use crate::project::SinkDecl;
use crate::runtime::codec::{InputCodec, Record};
use crate::runtime::worker::dead_letter_headers;
use crate::runtime::worker::RunControl;

/// The sinks of a project that native sink tasks deliver, among those reading `models`.
pub fn native_sinks<'a>(cp: &'a CompiledProject, models: &[String]) -> Vec<&'a SinkDecl> {
    cp.project.sinks.iter().filter(|s| models.contains(&s.sink.from) && cp.models.contains_key(&s.sink.from)).collect()
}

/// How long a sink task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkRun {
    /// Until the records the topic holds when it starts are delivered (the embedded target,
    /// `--until-caught-up`).
    UntilCaughtUp,
    /// Until a stop is requested.
    UntilStopped,
}

/// What a sink task delivered.
#[derive(Debug, Clone)]
pub struct SinkOutcome {
    pub sink: String,
    pub model: String,
    /// Where the records went (a directory for a file sink, a table for a postgres sink).
    pub location: String,
    pub records: u64,
    /// Records copied to the sink's dead-letter topic instead (`on_error: dead_letter`).
    pub dead_lettered: u64,
    /// Whether the sink writes files (`files` then lists those this run closed).
    pub to_files: bool,
    /// Files this run closed.
    pub files: Vec<PathBuf>,
}

/// Runs one sink task. `fresh`: the topic's offsets start over (the embedded broker), so
/// earlier deliveries are replaced rather than resumed after.
pub fn run_sink(
    cp: &CompiledProject,
    sink: &SinkDecl,
    client: &ClientConfig,
    how: SinkRun,
    control: &RunControl,
    fresh: bool,
) -> Result<SinkOutcome, String> {
    let name = &sink.sink.name;
    match &sink.sink.connector {
        SinkConnector::Postgres { .. } => postgres::run(cp, sink, client, how, control, fresh),
        SinkConnector::Opensearch { .. } => opensearch::run(cp, sink, client, how, control, fresh),
        SinkConnector::Kafka { .. } => kafka::run(cp, sink, client, how, control, fresh),
        SinkConnector::File { .. } => file_task::run(cp, sink, client, how, control, fresh),
    }
    .map_err(|e| format!("sink {name}: {e}"))
}

/// Holds the sink directory's lock. A long-running sink stands by while another process
/// delivers (and takes over when that one dies); a bounded one waits up to two minutes.
/// `None`: a stop came first.
fn wait_for_lock(
    name: &str,
    dir: &std::path::Path,
    how: SinkRun,
    control: &RunControl,
) -> Result<Option<std::fs::File>, String> {
    let started = Instant::now();
    let mut told = false;
    loop {
        if let Some(lock) = file::lock_dir(dir)? {
            if told {
                eprintln!("[sink {name}] took over {}", dir.display());
            }
            return Ok(Some(lock));
        }
        if !told {
            eprintln!("[sink {name}] another streamctl process delivers into {}: standing by", dir.display());
            told = true;
        }
        if how == SinkRun::UntilCaughtUp && started.elapsed() > Duration::from_secs(120) {
            return Err(format!("another streamctl process has held {} for 120 s", dir.display()));
        }
        for _ in 0..10 {
            if control.stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A sink task's consumer of its model's output topic: the sink's own group, only what the
/// model's job committed, from the start when the group has no offsets; and the topic's
/// partitions with their ends (see [`end_offsets`](crate::connectors::consumer::end_offsets)). Hold a
/// `ClosedOnDrop` on it while it is used.
fn output_consumer(
    cp: &CompiledProject,
    client: &ClientConfig,
    sink: &str,
    model: &str,
) -> Result<(BaseConsumer, crate::connectors::consumer::PartitionOffsets), String> {
    let group = cp.sinks.get(sink).map(|s| s.consumer_group.clone()).ok_or_else(|| format!("no sink `{sink}`"))?;
    let consumer: BaseConsumer = client
        .clone()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| format!("creating the consumer: {e}"))?;
    let topic = cp.models.get(model).map(|m| m.topic.as_str()).ok_or_else(|| format!("no model `{model}`"))?;
    // The ends to reach on a bounded run: the high watermark, past the last transaction's markers.
    let partitions = crate::connectors::consumer::end_offsets(client, topic)
        .and_then(|p| p.ok_or_else(|| format!("topic {topic} of model `{model}` does not exist")));
    match partitions {
        Ok(p) => Ok((consumer, p)),
        Err(e) => {
            crate::connectors::consumer::close(&consumer);
            Err(e)
        }
    }
}

/// The group's committed offsets per partition (none when `fresh`).
fn committed_offsets(
    consumer: &BaseConsumer,
    topic: &str,
    partitions: &[(i32, i64, i64)],
    fresh: bool,
) -> Result<BTreeMap<i32, i64>, String> {
    if fresh {
        return Ok(BTreeMap::new());
    }
    let mut tpl = TopicPartitionList::new();
    for (p, _, _) in partitions {
        tpl.add_partition(topic, *p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(30))
        .map_err(|e| format!("reading the committed offsets of {topic}: {e}"))?;
    Ok(got
        .elements_for_topic(topic)
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect())
}

/// A bounded run's wait for the rest of its topic. After 5 s without a record it says, once per
/// stall, which partitions it waits for behind a transaction still open (a `read_committed` reader gets
/// nothing past one: a job's not committed yet, or one its dead owner left, until the broker aborts
/// it after the producer's `transaction.timeout.ms`); after 120 s it gives up, with the same reason.
/// A long-running sink just waits.
struct BoundedWait {
    bounded: bool,
    last_record: Instant,
    told: bool,
}

impl BoundedWait {
    const TELL_AFTER: Duration = Duration::from_secs(5);
    const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

    fn new(how: SinkRun) -> BoundedWait {
        BoundedWait { bounded: how == SinkRun::UntilCaughtUp, last_record: Instant::now(), told: false }
    }

    fn record_arrived(&mut self) {
        self.last_record = Instant::now();
        self.told = false;
    }

    /// What a poll that found nothing calls for now.
    fn due(&self) -> Stalled {
        let since_progress = self.last_record.elapsed();
        if !self.bounded {
            Stalled::Wait
        } else if since_progress > Self::GIVE_UP_AFTER {
            Stalled::GiveUp
        } else if !self.told && since_progress > Self::TELL_AFTER {
            Stalled::Tell
        } else {
            Stalled::Wait
        }
    }

    /// A poll found nothing.
    fn nothing_polled(
        &mut self,
        (name, topic): (&str, &str),
        consumer: &BaseConsumer,
        next: &BTreeMap<i32, i64>,
        ends: &BTreeMap<i32, i64>,
    ) -> Result<(), String> {
        let due = self.due();
        if due == Stalled::Wait {
            return Ok(());
        }
        self.told = true;
        let open = behind_open_transactions(consumer, topic, next, ends);
        let why = if open.is_empty() {
            String::new()
        } else {
            let at: Vec<String> = open.iter().map(|(p, lso)| format!("partition {p} from offset {lso}")).collect();
            format!(
                "; a transaction is still open on {topic} {} (nothing after its start can be read until it is \
                 committed or aborted; a dead writer's is aborted by the broker after its transaction.timeout.ms)",
                at.join(", ")
            )
        };
        if due == Stalled::GiveUp {
            return Err(format!(
                "no record of {topic} arrived for {} s before its end offsets {ends:?} (at {next:?}){why}",
                Self::GIVE_UP_AFTER.as_secs()
            ));
        }
        if !why.is_empty() {
            eprintln!("[sink {name}] waiting for the end of {topic}{why}");
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stalled {
    Wait,
    /// Say what it waits for.
    Tell,
    GiveUp,
}

/// Partitions not read to their end whose last stable offset (what a `read_committed` consumer
/// is told is the end) is short of it: (partition, last stable offset).
fn behind_open_transactions(
    consumer: &BaseConsumer,
    topic: &str,
    next: &BTreeMap<i32, i64>,
    ends: &BTreeMap<i32, i64>,
) -> Vec<(i32, i64)> {
    ends.iter()
        .filter(|(p, end)| next.get(p).is_none_or(|n| n < end))
        .filter_map(|(p, end)| {
            let (_, stable) = consumer.fetch_watermarks(topic, *p, Duration::from_secs(5)).ok()?;
            (stable < *end && next.get(p).is_none_or(|n| *n >= stable)).then_some((*p, stable))
        })
        .collect()
}

/// Moves each partition's next offset past transaction markers: they take offsets no record has,
/// and the consumer's position passes them without delivering anything.
fn skip_transaction_markers(consumer: &BaseConsumer, topic: &str, next: &mut BTreeMap<i32, i64>) {
    if let Ok(pos) = consumer.position() {
        for e in pos.elements_for_topic(topic) {
            if let Offset::Offset(o) = e.offset() {
                let n = next.entry(e.partition()).or_insert(o);
                *n = (*n).max(o);
            }
        }
    }
}

/// Commits delivered offsets. A failed commit is logged, not fatal: a restart delivers again
/// from the last committed ones (and a file sink skips what its closed files hold).
fn commit(consumer: &BaseConsumer, topic: &str, offsets: &BTreeMap<i32, i64>, sink: &str) {
    if offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (p, o) in offsets {
        if tpl.add_partition_offset(topic, *p, Offset::Offset(*o)).is_err() {
            return;
        }
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
        eprintln!(
            "[sink {sink}] committing offsets {offsets:?} of {topic}: {e} (a restart delivers again from the last \
             committed ones; a file sink skips what its closed files hold)"
        );
    }
}

/// The copies a sink sent to its dead-letter topic are acknowledged before the offsets past them
/// are committed.
fn flush_dead_letters(d: &Option<DeadLetters>, committing: &BTreeMap<i32, i64>, name: &str) -> Result<(), String> {
    match d {
        Some(d) if !committing.is_empty() => d.flush().map_err(|e| format!("sink {name}: {e}")),
        _ => Ok(()),
    }
}

/// A record a sink does not deliver as it is, and why.
struct Refused {
    reason: String,
    /// What a file sink without a dead-letter topic writes instead (`None`: it stalls).
    written: Option<Vec<u8>>,
}

/// One record as a JSON Lines line, and where a `route` sends it: the value as a JSON object after
/// the sink's transforms; a tombstone (not routed) as its key with `"_delete": true`. A value the model's codec cannot read is refused,
/// with a line that keeps it as `_raw` text with `_error` (only `_error` when the sink has
/// transforms); a row a transform cannot convert is refused without one.
fn jsonl_line(
    codec: &InputCodec,
    transforms: &[crate::project::config::SinkTransform],
    names: transform::Names<'_>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<(Option<String>, Vec<u8>), Refused> {
    let line = match value {
        Some(v) => match codec.value_as_json(v) {
            Some(obj) => {
                let t =
                    transform::apply_all(transforms, obj, names).map_err(|reason| Refused { reason, written: None })?;
                return Ok((t.route, serde_json::to_vec(&serde_json::Value::Object(t.row)).unwrap_or_default()));
            }
            None => {
                const REASON: &str = "not a value of the model's output format";
                // The transforms cannot apply to a value they cannot read: it is left out rather
                // than written unmasked.
                let line = if transforms.is_empty() {
                    serde_json::json!({"_raw": String::from_utf8_lossy(v), "_error": REASON})
                } else {
                    serde_json::json!({"_error": format!("{REASON} (left out: the sink's transforms cannot apply)")})
                };
                return Err(Refused {
                    reason: REASON.into(),
                    written: Some(serde_json::to_vec(&line).unwrap_or_default()),
                });
            }
        },
        None => {
            let key = key.map_or(serde_json::Value::Null, |k| {
                serde_json::from_slice(k)
                    .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(k).into()))
            });
            // A key of several columns is renamed like the rows (validate keeps transforms from
            // masking or dropping a table's key columns).
            let key = match key {
                serde_json::Value::Object(k) => serde_json::Value::Object(
                    transform::apply(transforms, k).map_err(|reason| Refused { reason, written: None })?,
                ),
                k => k,
            };
            serde_json::json!({"_key": key, "_delete": true})
        }
    };
    Ok((None, serde_json::to_vec(&line).unwrap_or_default()))
}

/// Where a sink with `on_error: dead_letter` copies the records it refuses, with the reason in
/// the headers the jobs' dead letters carry (`streamctl.error`, `streamctl.source.*`,
/// `streamctl.job`) and `streamctl.sink`. Copies are flushed before the offsets of their records
/// are stored, so a crash repeats a copy at worst (at least once), never loses one.
pub(crate) struct DeadLetters {
    producer: RecordProducer,
    pub topic: String,
    sink: String,
    model: String,
    /// Records copied by this task.
    pub count: u64,
}

impl DeadLetters {
    /// `None` unless the sink has `on_error: dead_letter`.
    pub fn for_sink(cp: &CompiledProject, sink: &SinkDecl, client: &ClientConfig) -> Result<Option<Self>, String> {
        if sink.sink.on_error != SinkOnError::DeadLetter {
            return Ok(None);
        }
        let model = cp.models.get(&sink.sink.from).ok_or_else(|| format!("no model `{}`", sink.sink.from))?;
        let topic =
            names::sink_dead_letter_topic(sink.sink.dead_letter_topic.as_deref(), &model.topic, &sink.sink.name);
        Ok(Some(DeadLetters {
            producer: RecordProducer::new(client)?,
            topic,
            sink: sink.sink.name.clone(),
            model: model.name.clone(),
            count: 0,
        }))
    }

    /// Queues a copy of `record`, read from `from_topic`, refused for `reason`.
    pub fn send(&mut self, from_topic: &str, record: &Record, reason: &str) -> Result<(), String> {
        let headers = dead_letter_headers(&self.model, from_topic, record, reason)
            .insert(Header { key: "streamctl.sink", value: Some(self.sink.as_str()) });
        let out = OutRecord {
            partition: None,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            timestamp: record.timestamp,
        };
        self.producer.send(&self.topic, out, Some(&headers))?;
        self.count += 1;
        Ok(())
    }

    /// Waits until every copy sent is acknowledged.
    pub fn flush(&self) -> Result<(), String> {
        self.producer.flush().map_err(|e| format!("writing to the dead-letter topic {}: {e}", self.topic))
    }
}

pub(crate) use crate::runtime::codec::record_of;

#[cfg(test)]
mod tests {
    use super::*;

    fn stalled_for(wait: &mut BoundedWait, secs: u64) {
        wait.last_record = Instant::now() - Duration::from_secs(secs);
    }

    #[test]
    fn a_bounded_wait_tells_once_per_stall_and_gives_up_after_120_s() {
        let mut wait = BoundedWait::new(SinkRun::UntilCaughtUp);
        assert_eq!(wait.due(), Stalled::Wait);
        stalled_for(&mut wait, 6);
        assert_eq!(wait.due(), Stalled::Tell);
        wait.told = true;
        assert_eq!(wait.due(), Stalled::Wait, "told once for this stall");
        // Records come again, then stop: the new stall is told too.
        wait.record_arrived();
        assert_eq!(wait.due(), Stalled::Wait);
        stalled_for(&mut wait, 6);
        assert_eq!(wait.due(), Stalled::Tell);
        wait.told = true;
        stalled_for(&mut wait, 121);
        assert_eq!(wait.due(), Stalled::GiveUp);
    }

    #[test]
    fn a_long_running_sink_just_waits() {
        let mut wait = BoundedWait::new(SinkRun::UntilStopped);
        stalled_for(&mut wait, 121);
        assert_eq!(wait.due(), Stalled::Wait);
    }
}
