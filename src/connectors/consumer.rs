//! Consuming from Kafka: the consumers streamctl creates, a topic's partitions, and reading a
//! topic from its start to its current end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::bindings as rdsys;
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
    input_consumer_config(client, group).create().map_err(|e| kafka_err("creating the input consumer", e))
}

/// The settings of [`input_consumer`].
fn input_consumer_config(client: &ClientConfig, group: &str) -> ClientConfig {
    let mut client = client.clone();
    // Defaults the target's properties may override (the embedded target sets a shorter wait).
    // `fetch.wait.max.ms`: a fetch that finds nothing is held this long by the broker, and the
    // watermark queries a job makes while it waits for input are answered after it (a connection
    // answers in order).
    // librdkafka keeps up to `queued.min.messages` records of each partition fetched ahead, and
    // a partition whose queue is fuller is not fetched again for `fetch.queue.backoff.ms` (1 s by
    // default). A task drains a partition's queue in a few micro-batches, then waited out the rest
    // of that second: q2 of bench/scale.sh read its 8 partitions at 530K records/s after the first
    // queues were drained, against 1.8M/s while they lasted. Fuller queues only held memory: each
    // record keeps the fetch response it came in alive (100,000 per partition: peak RSS 690-745
    // MiB on q1 and the window, 20,000: 290-335 MiB; 5,000 was slower).
    let defaults = [("fetch.wait.max.ms", "100"), ("fetch.queue.backoff.ms", "20"), ("queued.min.messages", "20000")];
    for (key, value) in defaults {
        if client.get(key).is_none() {
            client.set(key, value);
        }
    }
    client
        .set("group.id", group)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        // librdkafka reads a whole fetch response into one buffer: kept under glibc's largest mmap
        // threshold (32 MiB, set by the runner), it comes from memory freed by the last response
        // instead of fresh pages the kernel zeroes. 64 MiB responses cost q2 9% more CPU.
        .set("fetch.max.bytes", "25165824")
        .set("max.partition.fetch.bytes", "4194304");
    client
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

/// The partitions, without offsets (to pause, resume or give up).
pub fn partition_list(partitions: &[(String, i32)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    for (t, p) in partitions {
        tpl.add_partition(t, *p);
    }
    tpl
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

/// `client` for consumers that look ends up: told a partition's high watermark as its end, not
/// the last stable offset a `read_committed` client is told. That offset lags a just committed
/// transaction until the broker has written its markers, so a reader that took it for the end of
/// what a finished job wrote stopped short of the job's last records (a bounded run closed windows
/// without them: the e2e_seed test, 3 runs in 6 on a loaded machine, 0 in 6 with this). Reading
/// to the high watermark, the markers are passed by the reader's position.
pub fn end_lookup_client(client: &ClientConfig) -> ClientConfig {
    let mut client = client.clone();
    client.set("isolation.level", "read_uncommitted");
    client
}

/// A topic's partitions with their (low, high) offsets, high being the high watermark (see
/// [`end_lookup_client`]).
pub fn end_offsets(client: &ClientConfig, topic: &str) -> Result<Option<PartitionOffsets>, String> {
    let consumer: BaseConsumer = end_lookup_client(client).create().map_err(|e| kafka_err("creating a consumer", e))?;
    partition_offsets(&consumer, topic)
}

/// Every committed record of a topic, from its start to its current end.
pub fn read_topic(client: &ClientConfig, topic: &str) -> Result<TopicRows, String> {
    let consumer = manual_consumer(client, "streamctl-reader")?;
    let _closed = ClosedOnDrop(&consumer);
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for (p, low, high) in end_offsets(client, topic)?.unwrap_or_default() {
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

/// Reads a queue's records many per call (`rd_kafka_consume_batch_queue`) instead of one per
/// `poll` (an event, an allocation and two clock reads each). It holds a reference to a queue of a
/// consumer: it must be dropped before the consumer, whose destruction otherwise waits for that
/// reference forever; every message it reads is destroyed before `read` returns, for the same
/// reason.
pub struct BatchReader {
    queue: std::ptr::NonNull<rdsys::rd_kafka_queue_t>,
    messages: Vec<*mut rdsys::rd_kafka_message_t>,
}

// The queue handle is librdkafka's, which is thread-safe; a reader is used by one thread at a time.
unsafe impl Send for BatchReader {}

/// A consumed record, valid during the callback of [`BatchReader::read`].
pub struct RawMessage<'a>(&'a rdsys::rd_kafka_message_t);

impl RawMessage<'_> {
    pub fn topic(&self) -> &str {
        // SAFETY: a consumed message has its topic, whose name lives as long as the handle.
        let name = unsafe { std::ffi::CStr::from_ptr(rdsys::rd_kafka_topic_name(self.0.rkt)) };
        name.to_str().unwrap_or("")
    }

    /// Tells the topics of the messages of one read call apart without reading their names:
    /// the address of librdkafka's topic handle, which those messages keep alive.
    pub fn topic_id(&self) -> usize {
        self.0.rkt as usize
    }

    pub fn partition(&self) -> i32 {
        self.0.partition
    }

    pub fn offset(&self) -> i64 {
        self.0.offset
    }

    pub fn key(&self) -> Option<&[u8]> {
        bytes(self.0.key, self.0.key_len)
    }

    pub fn payload(&self) -> Option<&[u8]> {
        bytes(self.0.payload, self.0.len)
    }

    pub fn payload_len(&self) -> usize {
        if self.0.payload.is_null() {
            0
        } else {
            self.0.len
        }
    }

    /// The record's timestamp in epoch ms (0 when it has none).
    pub fn timestamp(&self) -> i64 {
        let mut kind = rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
        // SAFETY: the message is valid for the callback.
        let t = unsafe { rdsys::rd_kafka_message_timestamp(self.0, &mut kind) };
        if kind == rdsys::rd_kafka_timestamp_type_t::RD_KAFKA_TIMESTAMP_NOT_AVAILABLE || t < 0 {
            0
        } else {
            t
        }
    }

    /// The record's headers, in order (a null value is `None`).
    pub fn headers(&self) -> Vec<(String, Option<Vec<u8>>)> {
        let mut hdrs: *mut rdsys::rd_kafka_headers_t = std::ptr::null_mut();
        // SAFETY: the message is valid for the callback; the headers belong to it.
        let found = unsafe { rdsys::rd_kafka_message_headers(self.0, &mut hdrs) };
        if found != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || hdrs.is_null() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for idx in 0.. {
            let (mut name, mut value, mut size) = (std::ptr::null(), std::ptr::null(), 0usize);
            // SAFETY: as above; `name` is NUL-terminated, `value` has `size` bytes or is null.
            let err = unsafe { rdsys::rd_kafka_header_get_all(hdrs, idx, &mut name, &mut value, &mut size) };
            if err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
                break;
            }
            let name = unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned();
            out.push((name, bytes(value as *mut std::ffi::c_void, size).map(<[u8]>::to_vec)));
        }
        out
    }
}

fn bytes<'a>(ptr: *mut std::ffi::c_void, len: usize) -> Option<&'a [u8]> {
    if ptr.is_null() {
        None
    } else if len == 0 {
        Some(&[])
    } else {
        // SAFETY: librdkafka gives `len` bytes at `ptr`, valid while the message lives.
        Some(unsafe { std::slice::from_raw_parts(ptr as *const u8, len) })
    }
}

impl BatchReader {
    /// A reader of `queue`, whose reference it takes over (released in drop).
    pub(crate) fn of_queue(queue: std::ptr::NonNull<rdsys::rd_kafka_queue_t>) -> BatchReader {
        BatchReader { queue, messages: vec![std::ptr::null_mut(); 4096] }
    }

    /// The queue it reads (still the reader's reference).
    pub(crate) fn queue(&self) -> *mut rdsys::rd_kafka_queue_t {
        self.queue.as_ptr()
    }

    /// Reads what arrives within `timeout`, `max` records at most, calling `each` on every record;
    /// returns how many were read. A consume error (other than reaching a partition's end) is
    /// returned after the batch's messages have been released.
    pub fn read(
        &mut self,
        timeout: Duration,
        max: usize,
        mut each: impl FnMut(RawMessage<'_>),
    ) -> Result<usize, String> {
        let size = max.clamp(1, self.messages.len());
        let ms = timeout.as_millis().min(i32::MAX as u128) as std::ffi::c_int;
        // SAFETY: the buffer has room for `size` pointers; the queue handle is live.
        let n =
            unsafe { rdsys::rd_kafka_consume_batch_queue(self.queue.as_ptr(), ms, self.messages.as_mut_ptr(), size) };
        if n < 0 {
            return Err("consuming: the consumer's queue cannot be read".into());
        }
        let mut error = None;
        let mut read = 0;
        for m in &self.messages[..n as usize] {
            // SAFETY: librdkafka filled the first `n` slots with messages we now own.
            let msg = unsafe { &**m };
            if msg.err == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                each(RawMessage(msg));
                read += 1;
            } else if msg.err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__PARTITION_EOF && error.is_none() {
                let why = unsafe { std::ffi::CStr::from_ptr(rdsys::rd_kafka_message_errstr(msg)) };
                error = Some(format!("consuming: {}", why.to_string_lossy()));
            }
        }
        for m in &mut self.messages[..n as usize] {
            // SAFETY: each message is destroyed once, after its last use.
            unsafe { rdsys::rd_kafka_message_destroy(*m) };
            *m = std::ptr::null_mut();
        }
        error.map_or(Ok(read), Err)
    }
}

impl Drop for BatchReader {
    fn drop(&mut self) {
        // SAFETY: the reference taken in `new`, released once.
        unsafe { rdsys::rd_kafka_queue_destroy(self.queue.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::embedded::EmbeddedBroker;
    use crate::connectors::task_input::InputConsumers;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    type Row = (i32, i64, i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Option<Vec<u8>>)>);

    /// The input consumer's fetch-queue and wait defaults apply unless the target's properties
    /// set them; the group, the isolation level and the fetch sizes are always its own.
    #[test]
    fn target_properties_override_the_input_consumers_defaults() {
        let defaults = input_consumer_config(&ClientConfig::new(), "g");
        assert_eq!(defaults.get("fetch.wait.max.ms"), Some("100"));
        assert_eq!(defaults.get("fetch.queue.backoff.ms"), Some("20"));
        assert_eq!(defaults.get("queued.min.messages"), Some("20000"));

        let mut target = ClientConfig::new();
        target.set("fetch.wait.max.ms", "10").set("fetch.queue.backoff.ms", "500").set("queued.min.messages", "1000");
        target.set("isolation.level", "read_uncommitted").set("fetch.max.bytes", "1024");
        let set = input_consumer_config(&target, "g");
        assert_eq!(set.get("fetch.wait.max.ms"), Some("10"));
        assert_eq!(set.get("fetch.queue.backoff.ms"), Some("500"));
        assert_eq!(set.get("queued.min.messages"), Some("1000"));
        assert_eq!(set.get("group.id"), Some("g"));
        assert_eq!(set.get("isolation.level"), Some("read_committed"));
        assert_eq!(set.get("fetch.max.bytes"), Some("25165824"));
    }

    /// Every record read by a batch reader is the one written (key, value or none, timestamp,
    /// headers with a null value among them), in offset order per partition; and the consumer
    /// closes and drops at once afterwards (a reference left on its queue makes that hang).
    #[test]
    fn a_batch_reader_reads_every_record_as_written_and_lets_the_consumer_go() {
        let broker = EmbeddedBroker::start().unwrap();
        broker.create_topic("batch-in", 3).unwrap();
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", broker.bootstrap_servers());
        let producer: BaseProducer = client.create().unwrap();
        let mut written: Vec<Row> = Vec::new();
        for i in 0..9_000i64 {
            let p = (i % 3) as i32;
            let key = (i % 7 != 0).then(|| format!("k{i}").into_bytes());
            let value = (i % 11 != 0).then(|| format!("{{\"n\":{i}}}").into_bytes());
            let headers: Vec<(String, Option<Vec<u8>>)> = match i % 5 {
                0 => vec![("h".into(), Some(b"v".to_vec())), ("nul".into(), None)],
                _ => vec![],
            };
            let ts = 1_700_000_000_000 + i;
            let mut rec = BaseRecord::<[u8], [u8]>::to("batch-in").partition(p).timestamp(ts);
            if let Some(k) = &key {
                rec = rec.key(k.as_slice());
            }
            if let Some(v) = &value {
                rec = rec.payload(v.as_slice());
            }
            if !headers.is_empty() {
                let hs = headers
                    .iter()
                    .fold(OwnedHeaders::new(), |hs, (k, v)| hs.insert(Header { key: k.as_str(), value: v.as_deref() }));
                rec = rec.headers(hs);
            }
            producer.send(rec).map_err(|(e, _)| e).unwrap();
            producer.poll(Duration::ZERO);
            written.push((p, i / 3, ts, key, value, headers));
        }
        producer.flush(Duration::from_secs(30)).unwrap();

        // Read as a job's task reads: through a shared input consumer, into the task's queue.
        let mut consumers = InputConsumers::new(&client);
        let mut tpl = TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition_offset("batch-in", p, Offset::Offset(0)).unwrap();
        }
        let mut reader = consumers.task_input("batch-reader-test", &tpl).unwrap();
        let mut read: Vec<Row> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while read.len() < written.len() && Instant::now() < deadline {
            reader
                .read(Duration::from_millis(200), 1000, |m| {
                    assert_eq!(m.topic(), "batch-in");
                    let row = (
                        m.partition(),
                        m.offset(),
                        m.timestamp(),
                        m.key().map(<[u8]>::to_vec),
                        m.payload().map(<[u8]>::to_vec),
                        m.headers(),
                    );
                    read.push(row);
                })
                .unwrap();
        }
        read.sort_by_key(|r| (r.1, r.0));
        written.sort_by_key(|r| (r.1, r.0));
        assert_eq!(read.len(), written.len());
        assert!(read == written, "first difference: {:?}", read.iter().zip(&written).find(|(a, b)| a != b));

        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(reader);
            drop(consumers);
            let _ = tx.send(());
        });
        assert!(rx.recv_timeout(Duration::from_secs(20)).is_ok(), "the consumer did not close and drop");
    }
}
