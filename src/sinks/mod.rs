//! Native sinks: a model's output delivered outside Kafka by `streamctl run`, without Kafka
//! Connect. A sink is a task of its own beside the jobs, like a Connect sink task: it reads the
//! model's output topic (read_committed, so only what the job committed), decodes each record
//! with the model's output codec, writes it to the destination, and commits its consumer offsets
//! (group [`names::sink_consumer_group`]) only after the destination holds the records.
//!
//! * [`file`]: JSON Lines files in a directory, rolled by size and age.
//! * [`postgres`]: a PostgreSQL table, rows and offsets written in one transaction (the sink
//!   resumes from the offsets in Postgres, not from the group's).

pub(crate) mod file;
pub(crate) mod postgres;
pub(crate) mod transform;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::compile::{names, CompiledProject};
use crate::connectors::consumer::partition_offsets;
use crate::connectors::producer::{OutRecord, RecordProducer};
use crate::graph::NodeId;
use crate::project::config::{SinkConnector, SinkOnError};
use crate::project::SinkDecl;
use crate::runtime::codec::{InputCodec, Record};
use crate::runtime::worker::dead_letter_headers;
use crate::runtime::worker::RunControl;
use file::FileWriter;

/// The sinks of a project that native sink tasks deliver, among those reading `models`.
pub fn native_sinks<'a>(cp: &'a CompiledProject, models: &[String]) -> Vec<&'a SinkDecl> {
    cp.project
        .sinks
        .iter()
        .filter(|s| matches!(s.sink.connector, SinkConnector::File { .. } | SinkConnector::Postgres { .. }))
        .filter(|s| models.contains(&s.sink.from) && cp.models.contains_key(&s.sink.from))
        .collect()
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
    let model_name = &sink.sink.from;
    if let SinkConnector::Postgres { .. } = &sink.sink.connector {
        return postgres::run(cp, sink, client, how, control, fresh).map_err(|e| format!("sink {name}: {e}"));
    }
    let model = cp.models.get(model_name).ok_or_else(|| format!("sink {name}: no model `{model_name}`"))?;
    let SinkConnector::File { path, roll_bytes, roll_seconds, .. } = &sink.sink.connector else {
        return Err(format!("sink {name}: not delivered by streamctl (only file and postgres sinks are)"));
    };
    let codec = InputCodec::for_input(cp, &NodeId::Model(model_name.clone()))
        .ok_or_else(|| format!("sink {name}: cannot decode the output of `{model_name}`"))?;
    let dir = cp.project.root.join(path);
    let Some(_lock) = wait_for_lock(name, &dir, how, control)? else {
        return Ok(SinkOutcome {
            sink: name.clone(),
            model: model_name.clone(),
            location: dir.display().to_string(),
            records: 0,
            dead_lettered: 0,
            to_files: true,
            files: Vec::new(),
        });
    };
    let roll_after = Duration::from_secs(roll_seconds.unwrap_or(file::DEFAULT_ROLL_SECONDS));
    let (mut writer, recovered) =
        FileWriter::open(&dir, roll_bytes.unwrap_or(file::DEFAULT_ROLL_BYTES), roll_after, fresh)
            .map_err(|e| format!("sink {name}: {e}"))?;
    if recovered.discarded_parts > 0 {
        eprintln!(
            "[sink {name}] removed {} unfinished part file(s) of an earlier run; their records are written again",
            recovered.discarded_parts
        );
    }
    if recovered.removed_closed > 0 {
        eprintln!(
            "[sink {name}] removed {} file(s) of an earlier run in {} (the embedded broker starts empty)",
            recovered.removed_closed,
            dir.display()
        );
    }

    let topic = &model.topic;
    let group = names::sink_consumer_group(&cp.project.config.name, name);
    let consumer: BaseConsumer = client
        .clone()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|e| format!("sink {name}: creating the consumer: {e}"))?;
    let _closed = crate::connectors::consumer::ClosedOnDrop(&consumer);
    let partitions = partition_offsets(&consumer, topic)
        .map_err(|e| format!("sink {name}: {e}"))?
        .ok_or_else(|| format!("sink {name}: topic {topic} of model `{model_name}` does not exist"))?;
    let committed = committed_offsets(&consumer, topic, &partitions, fresh).map_err(|e| format!("sink {name}: {e}"))?;

    // Where each partition resumes: after the newest closed file or the committed offset,
    // whichever is later (a crash between closing a file and committing leaves the file ahead).
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    let mut ahead = BTreeMap::new();
    for (p, low, high) in &partitions {
        let from_files = recovered.next_offsets.get(p).copied();
        if from_files.is_some_and(|f| f > *high) {
            // Reading from the topic's start again would write files of the same names.
            return Err(format!(
                "sink {name}: the files in {} end at offset {} of partition {p}, but {topic} ends at {high}: they \
                 were written from another topic of that name (recreated, or another cluster). Move them away \
                 to deliver this topic there",
                dir.display(),
                from_files.unwrap_or_default() - 1
            ));
        }
        let from_group = committed.get(p).copied();
        let resume = from_files.max(from_group).unwrap_or(*low).max(*low);
        if from_files > from_group {
            ahead.insert(*p, resume);
        }
        next.insert(*p, resume);
        assignment
            .add_partition_offset(topic, *p, Offset::Offset(resume))
            .map_err(|e| format!("sink {name}: assigning {topic}: {e}"))?;
    }
    commit(&consumer, topic, &ahead, name);
    consumer.assign(&assignment).map_err(|e| format!("sink {name}: assigning {topic}: {e}"))?;

    // A bounded run delivers what the topic holds now.
    let ends: BTreeMap<i32, i64> = partitions.iter().map(|(p, _, high)| (*p, *high)).collect();
    let caught_up = |next: &BTreeMap<i32, i64>| ends.iter().all(|(p, end)| next.get(p).is_some_and(|n| n >= end));
    let mut records = 0u64;
    let mut dead_letters = DeadLetters::for_sink(cp, sink, client).map_err(|e| format!("sink {name}: {e}"))?;
    let mut last_progress = Instant::now();
    loop {
        if control.stop.load(Ordering::SeqCst) {
            break;
        }
        if how == SinkRun::UntilCaughtUp && caught_up(&next) {
            break;
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                let transforms = sink.sink.connector.transforms();
                match (jsonl_line(&codec, transforms, m.key(), m.payload()), dead_letters.as_mut()) {
                    (Ok(line), _) => {
                        writer.write(m.partition(), m.offset(), &line).map_err(|e| format!("sink {name}: {e}"))?;
                        records += 1;
                    }
                    (Err(refused), Some(d)) => d.send(topic, &record_of(&m), &refused.reason)?,
                    (Err(Refused { written: Some(line), .. }), None) => {
                        writer.write(m.partition(), m.offset(), &line).map_err(|e| format!("sink {name}: {e}"))?;
                        records += 1;
                    }
                    (Err(Refused { reason, written: None }), None) => {
                        return Err(format!(
                            "sink {name}: offset {} of partition {} of {topic}: {reason} (the sink stalls here; with \
                             `on_error: dead_letter` such records are copied to a dead-letter topic)",
                            m.offset(),
                            m.partition()
                        ))
                    }
                }
                next.insert(m.partition(), m.offset() + 1);
                last_progress = Instant::now();
            }
            Some(Err(e)) => eprintln!("[sink {name}] reading {topic}: {e} (retrying)"),
            None => {
                skip_transaction_markers(&consumer, topic, &mut next);
                if how == SinkRun::UntilCaughtUp && last_progress.elapsed() > Duration::from_secs(120) {
                    return Err(format!(
                        "sink {name}: no record of {topic} arrived for 120 s before its end offsets {ends:?} \
                         (at {next:?})"
                    ));
                }
            }
        }
        let closed = writer.roll_due(Instant::now()).map_err(|e| format!("sink {name}: {e}"))?;
        flush_dead_letters(&dead_letters, &closed, name)?;
        commit(&consumer, topic, &closed, name);
    }
    let closed = writer.finish().map_err(|e| format!("sink {name}: {e}"))?;
    // Every copy, also of records after the last closed file, is acknowledged before the run ends.
    if let Some(d) = &dead_letters {
        d.flush().map_err(|e| format!("sink {name}: {e}"))?;
    }
    commit(&consumer, topic, &closed, name);
    Ok(SinkOutcome {
        sink: name.clone(),
        model: model_name.clone(),
        location: dir.display().to_string(),
        records,
        dead_lettered: dead_letters.as_ref().map_or(0, |d| d.count),
        to_files: true,
        files: writer.closed,
    })
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
        if let Some(lock) = file::lock_dir(dir).map_err(|e| format!("sink {name}: {e}"))? {
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
            return Err(format!("sink {name}: another streamctl process has held {} for 120 s", dir.display()));
        }
        for _ in 0..10 {
            if control.stop.load(Ordering::SeqCst) {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(200));
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

/// Commits delivered offsets. A failed commit is logged, not fatal: the closed files say where
/// a restart resumes.
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
        eprintln!("[sink {sink}] committing offsets {offsets:?} of {topic}: {e} (the closed files keep the position)");
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

/// One record as a JSON Lines line: the value as a JSON object after the sink's transforms; a
/// tombstone as its key with `"_delete": true`. A value the model's codec cannot read is refused,
/// with a line that keeps it as `_raw` text with `_error` (only `_error` when the sink has
/// transforms); a row a transform cannot convert is refused without one.
fn jsonl_line(
    codec: &InputCodec,
    transforms: &[crate::project::config::SinkTransform],
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<Vec<u8>, Refused> {
    let line = match value {
        Some(v) => match codec.value_as_json(v) {
            Some(obj) => serde_json::Value::Object(
                transform::apply(transforms, obj).map_err(|reason| Refused { reason, written: None })?,
            ),
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
    Ok(serde_json::to_vec(&line).unwrap_or_default())
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

/// A consumed record as the runtime's [`Record`].
pub(crate) fn record_of(m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    Record {
        partition: m.partition(),
        offset: m.offset(),
        timestamp: m.timestamp().to_millis().unwrap_or(0),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().map(<[u8]>::to_vec),
    }
}
