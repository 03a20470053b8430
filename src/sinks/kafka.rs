//! The Kafka sink: a model's rows copied to another topic after the sink's transforms, as JSON
//! values. The record key is the one `set_key` (or the sink's `key:`) makes, else the model's;
//! `insert_header` adds headers; `route` picks the topic row by row (created when first used).
//! A tombstone is copied as it is, to the sink's `topic`.
//!
//! At least once: the records are produced and acknowledged before the sink commits its
//! consumer offsets (group [`names::sink_consumer_group`]); a crash in between produces them again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

use super::transform::{self, Names};
use super::{commit, committed_offsets, record_of, skip_transaction_markers, DeadLetters, SinkOutcome, SinkRun};
use crate::compile::CompiledProject;
use crate::connectors::producer::{OutRecord, RecordProducer};
use crate::project::config::SinkConnector;
use crate::project::SinkDecl;
use crate::runtime::codec::InputCodec;
use crate::runtime::worker::RunControl;

/// How long produced records wait before they are flushed and their offsets committed.
const LINGER: Duration = Duration::from_millis(200);
const MAX_PENDING: usize = 5000;

/// A routed name as a topic name: characters Kafka refuses become `_`.
pub fn topic_name(routed: &str) -> String {
    let name: String = routed
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    match name.as_str() {
        "" | "." | ".." => format!("_{name}"),
        _ => name.chars().take(249).collect(),
    }
}

/// Creates a routed topic unless it exists (the broker's default replication factor). On a
/// thread of its own: the caller may be inside a runtime (the embedded run).
fn create_topic(client: &ClientConfig, topic: &str, partitions: i32, compacted: bool) -> Result<(), String> {
    let create = || -> Result<(), String> {
        let admin: AdminClient<DefaultClientContext> =
            client.create().map_err(|e| format!("cannot create a Kafka admin client: {e}"))?;
        let (config, value) = if compacted { ("cleanup.policy", "compact") } else { ("retention.ms", "-1") };
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1)).set(config, value);
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        let results =
            rt.block_on(admin.create_topics([&new], &opts)).map_err(|e| format!("creating topic {topic}: {e}"))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(format!("creating topic {name}: {code}")),
            }
        }
        Ok(())
    };
    std::thread::scope(|s| s.spawn(create).join().unwrap_or_else(|_| Err("the topic creation thread panicked".into())))
}

/// Runs a kafka sink task.
pub fn run(
    cp: &CompiledProject,
    sink: &SinkDecl,
    client: &ClientConfig,
    how: SinkRun,
    control: &RunControl,
    fresh: bool,
) -> Result<SinkOutcome, String> {
    let name = &sink.sink.name;
    let model_name = &sink.sink.from;
    let SinkConnector::Kafka { topic: out_topic, key: key_fields, partitions: out_partitions, transforms, .. } =
        &sink.sink.connector
    else {
        return Err("not a kafka sink".into());
    };
    let model = cp.models.get(model_name).ok_or_else(|| format!("no model `{model_name}`"))?;
    let codec = InputCodec::for_model_output(cp, model_name, control.registry.as_ref())
        .ok_or_else(|| format!("cannot decode the output of `{model_name}`"))?;
    let label = Names { project: &cp.project.config.name, model: model_name, sink: name };
    let topic = &model.topic;
    let (consumer, partitions) = super::output_consumer(cp, client, name, model_name)?;
    let _closed = crate::connectors::consumer::ClosedOnDrop(&consumer);
    let committed = committed_offsets(&consumer, topic, &partitions, fresh)?;
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    for (p, low, _) in &partitions {
        let resume = committed.get(p).copied().unwrap_or(*low).max(*low);
        next.insert(*p, resume);
        assignment
            .add_partition_offset(topic, *p, Offset::Offset(resume))
            .map_err(|e| format!("assigning {topic}: {e}"))?;
    }
    consumer.assign(&assignment).map_err(|e| format!("assigning {topic}: {e}"))?;
    let producer = RecordProducer::new(client)?;
    let mut dead_letters = DeadLetters::for_sink(cp, sink, client)?;
    let route_partitions = out_partitions.unwrap_or(partitions.len() as i32).max(1);
    let mut topics: BTreeSet<String> = BTreeSet::from([out_topic.clone()]);

    let ends: BTreeMap<i32, i64> = partitions.iter().map(|(p, _, high)| (*p, *high)).collect();
    let caught_up = |next: &BTreeMap<i32, i64>| ends.iter().all(|(p, end)| next.get(p).is_some_and(|n| n >= end));
    let (mut records, mut pending) = (0u64, 0usize);
    let mut oldest_pending = Instant::now();
    let mut waiting = super::BoundedWait::new(how);
    let mut committed_at = next.clone();
    loop {
        let stopping = control.stop.load(Ordering::SeqCst);
        let done = how == SinkRun::UntilCaughtUp && caught_up(&next);
        if next != committed_at && (stopping || done || pending >= MAX_PENDING || oldest_pending.elapsed() >= LINGER) {
            // Acknowledged first, then the offsets past them.
            producer.flush().map_err(|e| format!("producing to {out_topic}: {e}"))?;
            if let Some(d) = &dead_letters {
                d.flush()?;
            }
            commit(&consumer, topic, &next, name);
            committed_at = next.clone();
            pending = 0;
        }
        if stopping || done {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if pending == 0 {
                    oldest_pending = Instant::now();
                }
                let transformed = match m.payload() {
                    None => Ok(None),
                    Some(v) => codec
                        .value_as_json(v)
                        .ok_or_else(|| "not a value of the model's output format".to_string())
                        .and_then(|row| transform::apply_all(transforms, row, label))
                        .map(Some),
                };
                match (transformed, dead_letters.as_mut()) {
                    (Ok(None), _) => {
                        let rec = OutRecord { partition: None, key: m.key(), value: None, timestamp: timestamp(&m) };
                        producer.send(out_topic, rec, None)?;
                        records += 1;
                    }
                    (Ok(Some(t)), _) => {
                        let key = match (&t.key, key_fields) {
                            (Some(k), _) => Some(serde_json::to_vec(k).unwrap_or_default()),
                            (None, Some(fields)) => Some(key_of(&t.row, fields)),
                            (None, None) => m.key().map(<[u8]>::to_vec),
                        };
                        let dest = match &t.route {
                            Some(r) => topic_name(r),
                            None => out_topic.clone(),
                        };
                        if !topics.contains(&dest) {
                            create_topic(
                                client,
                                &dest,
                                route_partitions,
                                model.kind == crate::project::config::RelationKind::Table,
                            )?;
                            eprintln!("[sink {name}] routed rows to {dest} (created it if missing)");
                            topics.insert(dest.clone());
                        }
                        let headers = (!t.headers.is_empty()).then(|| {
                            t.headers.iter().fold(OwnedHeaders::new(), |h, (k, v)| {
                                h.insert(Header { key: k.as_str(), value: Some(v.as_str()) })
                            })
                        });
                        let value = serde_json::to_vec(&serde_json::Value::Object(t.row)).unwrap_or_default();
                        let rec = OutRecord {
                            partition: None,
                            key: key.as_deref(),
                            value: Some(&value),
                            timestamp: timestamp(&m),
                        };
                        producer.send(&dest, rec, headers.as_ref())?;
                        records += 1;
                    }
                    (Err(reason), Some(d)) => d.send(topic, &record_of(&m), &reason)?,
                    (Err(reason), None) => {
                        return Err(format!(
                            "offset {} of partition {} of {topic}: {reason} (the sink stalls here; with `on_error: \
                             dead_letter` such records are copied to a dead-letter topic)",
                            m.offset(),
                            m.partition()
                        ))
                    }
                }
                pending += 1;
                next.insert(m.partition(), m.offset() + 1);
                waiting.record_arrived();
            }
            Some(Err(e)) => eprintln!("[sink {name}] reading {topic}: {e} (retrying)"),
            None => {
                skip_transaction_markers(&consumer, topic, &mut next);
                waiting.nothing_polled((name, topic), &consumer, &next, &ends)?;
            }
        }
    }
    let location = match topics.len() {
        1 => format!("topic {out_topic}"),
        n => format!("topic {out_topic} and {} routed", n - 1),
    };
    Ok(SinkOutcome {
        sink: name.clone(),
        model: model_name.clone(),
        location,
        records,
        dead_lettered: dead_letters.as_ref().map_or(0, |d| d.count),
        to_files: false,
        files: Vec::new(),
    })
}

/// The record's timestamp (the model's event time), kept.
fn timestamp(m: &rdkafka::message::BorrowedMessage<'_>) -> i64 {
    m.timestamp().to_millis().unwrap_or(0)
}

/// A key of these fields: one field's value, or an object of several.
fn key_of(row: &serde_json::Map<String, serde_json::Value>, fields: &[String]) -> Vec<u8> {
    let get = |f: &String| row.get(f).cloned().unwrap_or(serde_json::Value::Null);
    let v = match fields {
        [one] => get(one),
        many => serde_json::Value::Object(many.iter().map(|f| (f.clone(), get(f))).collect()),
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routed_names_become_topic_names() {
        assert_eq!(topic_name("orders-online"), "orders-online");
        assert_eq!(topic_name("orders-in store/ü"), "orders-in_store__");
        assert_eq!(topic_name(".."), "_..");
        assert_eq!(topic_name(&"x".repeat(300)).len(), 249);
    }

    #[test]
    fn keys_of_one_field_are_bare_and_of_several_objects() {
        let row = serde_json::json!({"a": 1, "b": "x"}).as_object().unwrap().clone();
        assert_eq!(key_of(&row, &["b".into()]), b"\"x\"");
        assert_eq!(key_of(&row, &["a".into(), "b".into()]), br#"{"a":1,"b":"x"}"#);
    }
}
