//! Consuming from Kafka: the consumers streamctl creates, a topic's partitions, and reading a
//! topic from its start to its current end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use super::producer::kafka_err;

/// A topic's records as (key, value), in offset order per partition.
pub type TopicRows = Vec<(Option<Vec<u8>>, Option<Vec<u8>>)>;

/// A consumer that assigns partitions itself and commits only when told (offsets live in
/// checkpoints; the group sees them for monitoring).
pub fn manual_consumer(client: &ClientConfig, group: &str) -> Result<BaseConsumer, String> {
    client
        .clone()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| kafka_err("creating a consumer", e))
}

/// A job's input consumer: large fetches, so a micro-batch does not wait on many small round
/// trips; only committed records (an upstream exactly-once job's aborted outputs are skipped).
pub fn input_consumer(client: &ClientConfig, group: &str) -> Result<BaseConsumer, String> {
    let mut client = client.clone();
    // A fetch that finds nothing is held this long by the broker, and the watermark queries a
    // job makes while it waits for input are answered after it (a connection answers in order):
    // the embedded target sets a shorter wait, which stays.
    if client.get("fetch.wait.max.ms").is_none() {
        client.set("fetch.wait.max.ms", "100");
    }
    client
        .set("group.id", group)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.bytes", "67108864")
        .set("max.partition.fetch.bytes", "16777216")
        .create()
        .map_err(|e| kafka_err("creating the input consumer", e))
}

/// Closes a consumer that has a group before it is dropped. rdkafka's drop closes it too, but
/// waits for the close in polls of 100 ms that only the timeout ends: every short-lived reader
/// (a plan reads the control topic five times) cost 100 ms more than its work.
pub fn close<C: ConsumerContext>(consumer: &BaseConsumer<C>) {
    if consumer.close_queue().is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !consumer.closed() && Instant::now() < deadline {
        consumer.poll(Duration::from_millis(1));
    }
}

/// Closes its consumer quickly ([`close`]) when it goes out of scope: declared right after the
/// consumer, it is dropped first, on every way out of the function.
pub struct ClosedOnDrop<'a, C: ConsumerContext>(pub &'a BaseConsumer<C>);

impl<C: ConsumerContext> Drop for ClosedOnDrop<'_, C> {
    fn drop(&mut self) {
        close(self.0);
    }
}

/// (partition, low offset, high offset) of each partition of a topic.
pub type PartitionOffsets = Vec<(i32, i64, i64)>;

/// A topic's partitions with their (low, high) offsets; `None` when the topic does not exist.
pub fn partition_offsets(consumer: &BaseConsumer, topic: &str) -> Result<Option<PartitionOffsets>, String> {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| kafka_err(&format!("reading metadata of {topic}"), e))?;
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else { return Ok(None) };
    if t.error().is_some() || t.partitions().is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for p in t.partitions() {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
            .map_err(|e| kafka_err(&format!("reading offsets of {topic}"), e))?;
        out.push((p.id(), low, high));
    }
    Ok(Some(out))
}

/// Every committed record of a topic, from its start to its current end.
pub fn read_topic(client: &ClientConfig, topic: &str) -> Result<TopicRows, String> {
    let consumer = manual_consumer(client, "streamctl-reader")?;
    let _closed = ClosedOnDrop(&consumer);
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for (p, low, high) in partition_offsets(&consumer, topic)?.unwrap_or_default() {
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Offset(low)).map_err(|e| kafka_err("assigning", e))?;
            ends.insert(p, high);
        }
    }
    let mut out = Vec::new();
    if ends.is_empty() {
        return Ok(out);
    }
    consumer.assign(&tpl).map_err(|e| kafka_err(&format!("reading {topic}"), e))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut done: BTreeMap<i32, bool> = ends.keys().map(|p| (*p, false)).collect();
    while done.values().any(|d| !d) && Instant::now() < deadline {
        // Short polls: an exactly-once topic ends in a transaction marker, which is never
        // delivered, so its end is seen only in the position after a poll that found nothing.
        match consumer.poll(Duration::from_millis(20)) {
            Some(Ok(m)) => {
                out.push((m.key().map(<[u8]>::to_vec), m.payload().map(<[u8]>::to_vec)));
                if ends.get(&m.partition()).is_some_and(|end| m.offset() + 1 >= *end) {
                    done.insert(m.partition(), true);
                }
            }
            Some(Err(e)) => return Err(kafka_err(&format!("reading {topic}"), e)),
            // A transaction marker may end a partition: it is skipped, the position moves on.
            None => {
                if let Ok(positions) = consumer.position() {
                    for e in positions.elements() {
                        if let (Offset::Offset(o), Some(end)) = (e.offset(), ends.get(&e.partition())) {
                            if o >= *end {
                                done.insert(e.partition(), true);
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}
