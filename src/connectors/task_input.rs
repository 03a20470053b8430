//! Input consumers shared by the tasks of one thread. A task used to have an input consumer of its
//! own: a librdkafka client per task, with its own broker threads, fetch requests and buffers (with
//! 32 partitions on 2 threads, q1 took 10-20% more CPU and the join a third more wall time;
//! docs/benchmarks.md). Here the tasks of one model on one thread share a consumer: each task's
//! partitions are forwarded by librdkafka to a queue of the task's own, which only that task
//! reads, so a task still sees only its records and still pauses, positions and commits only its
//! partitions.

use std::collections::BTreeSet;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::bindings as rdsys;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::TopicPartitionList;

use super::consumer::{
    close, end_lookup_client, input_consumer, manual_consumer, partition_list, BatchReader, RawMessage,
};
use super::producer::kafka_err;

/// A topic partition, by name.
type Partition = (String, i32);

/// An input consumer and the partitions its tasks read through it.
pub struct SharedConsumer {
    group: String,
    consumer: BaseConsumer,
    assigned: Mutex<BTreeSet<Partition>>,
}

/// A consumer that fetches nothing, for a group's metadata and offset lookups. A request to a
/// broker is answered after those sent before it on the connection, so on the consumer that
/// fetches a lookup waits behind fetches of up to 16 MiB per partition: task starts, which look up
/// every input partition's offsets, took seconds each on a shared consumer.
pub struct Lookup(BaseConsumer);

impl Lookup {
    pub fn consumer(&self) -> &BaseConsumer {
        &self.0
    }
}

impl Drop for Lookup {
    fn drop(&mut self) {
        close(&self.0);
    }
}

impl Drop for SharedConsumer {
    fn drop(&mut self) {
        close(&self.consumer);
    }
}

/// The input consumers of one thread, one per consumer group, or more when two tasks read the same
/// partition (every task reads a table whole, and a consumer holds a partition once).
pub struct InputConsumers {
    client: ClientConfig,
    consumers: Vec<Arc<SharedConsumer>>,
    lookups: Vec<(String, Arc<Lookup>)>,
}

impl InputConsumers {
    pub fn new(client: &ClientConfig) -> InputConsumers {
        InputConsumers { client: client.clone(), consumers: Vec::new(), lookups: Vec::new() }
    }

    /// The consumer of `group` that looks topics and offsets up.
    pub fn lookup(&mut self, group: &str) -> Result<Arc<Lookup>, String> {
        if let Some((_, l)) = self.lookups.iter().find(|(g, _)| g == group) {
            return Ok(l.clone());
        }
        // End offsets are the high watermark: an upstream job's last transaction counts.
        let l = Arc::new(Lookup(manual_consumer(&end_lookup_client(&self.client), group)?));
        self.lookups.push((group.to_string(), l.clone()));
        Ok(l)
    }

    /// A consumer of `group` that reads none of `tpl`'s partitions yet (a new one when each does).
    fn pick(&mut self, group: &str, tpl: &TopicPartitionList) -> Result<Arc<SharedConsumer>, String> {
        // Consumers no task uses any more are let go.
        self.consumers.retain(|c| Arc::strong_count(c) > 1);
        let free = |c: &&Arc<SharedConsumer>| {
            c.group == group
                && c.assigned
                    .lock()
                    .is_ok_and(|a| tpl.elements().iter().all(|e| !a.contains(&(e.topic().to_string(), e.partition()))))
        };
        if let Some(c) = self.consumers.iter().find(free) {
            return Ok(c.clone());
        }
        let consumer = input_consumer(&self.client, group)?;
        let c = Arc::new(SharedConsumer { group: group.to_string(), consumer, assigned: Mutex::default() });
        self.consumers.push(c.clone());
        Ok(c)
    }

    /// A task's input in `group`: `tpl` (the task's partitions at their offsets) read by a consumer of
    /// the group into a queue of the task's own. Each partition is forwarded before it is assigned:
    /// librdkafka leaves a forward set by the application in place when it starts fetching, so no
    /// record of the task goes to the shared consumer's own queue.
    pub fn task_input(&mut self, group: &str, tpl: &TopicPartitionList) -> Result<TaskInput, String> {
        let lookup = self.lookup(group)?;
        let shared = self.pick(group, tpl)?;
        let rk = shared.consumer.client().native_ptr();
        // SAFETY: the client is live while `shared` is; the queue is released when the reader drops.
        let queue =
            NonNull::new(unsafe { rdsys::rd_kafka_queue_new(rk) }).ok_or("cannot create a task's input queue")?;
        let reader = BatchReader::of_queue(queue);
        let partitions: Vec<Partition> =
            tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
        // Held from here on; the task input's drop gives them back, on every way out.
        if let Ok(mut a) = shared.assigned.lock() {
            a.extend(partitions.iter().cloned());
        }
        let mut input = TaskInput { reader, forwarded: Vec::new(), partitions, assigned: false, shared, lookup };
        for (topic, p) in &input.partitions {
            let name = std::ffi::CString::new(topic.as_str()).map_err(|_| "a topic name holds a NUL byte")?;
            // SAFETY: the client is live; the partition queue reference is released in drop.
            let q = unsafe { rdsys::rd_kafka_queue_get_partition(rk, name.as_ptr(), *p) };
            input.forwarded.push(NonNull::new(q).ok_or_else(|| format!("no queue for {topic} partition {p}"))?);
        }
        input.forward();
        input.shared.consumer.incremental_assign(tpl).map_err(|e| kafka_err("assigning input partitions", e))?;
        input.assigned = true;
        Ok(input)
    }
}

/// One task's partitions of a shared input consumer, read through the task's queue.
pub struct TaskInput {
    /// Reads the task's queue (its reference is released when the reader drops). Declared before
    /// `shared`, so dropped first: a consumer is destroyed only once no queue of it is left.
    reader: BatchReader,
    shared: Arc<SharedConsumer>,
    lookup: Arc<Lookup>,
    /// Each partition's queue (a reference of ours), forwarded to the task's.
    forwarded: Vec<NonNull<rdsys::rd_kafka_queue_t>>,
    partitions: Vec<Partition>,
    assigned: bool,
}

// The queue handles are librdkafka's, which is thread-safe; a task input is used by one thread at a time.
unsafe impl Send for TaskInput {}

impl TaskInput {
    /// The shared consumer, for what concerns the task's partitions only: their positions,
    /// pausing and resuming them, committing them, the group's metadata.
    pub fn consumer(&self) -> &BaseConsumer {
        &self.shared.consumer
    }

    /// For offset lookups (`fetch_watermarks`): see [`Lookup`].
    pub fn lookup(&self) -> &BaseConsumer {
        self.lookup.consumer()
    }

    /// (Re)points every partition of the task at its queue. A partition given up by an earlier
    /// task on this consumer (a task restarted here) has its forward cleared when its old fetcher
    /// stops, which may happen after this task set it: done before every read, it costs a lock
    /// per partition per micro-batch.
    fn forward(&self) {
        let dst = self.reader.queue();
        for q in &self.forwarded {
            // SAFETY: both queue references are ours and live.
            unsafe { rdsys::rd_kafka_queue_forward(q.as_ptr(), dst) };
        }
    }

    /// Reads the task's records as [`BatchReader::read`] does. The shared consumer's own queue is
    /// looked at too: a record there would belong to no task (the task is failed, and restarts
    /// from its checkpoint, rather than skip it), and a fatal error fails it; other errors of the
    /// client (a broker connection lost for a while) pass, as they did before the queue was shared.
    pub fn read(&mut self, timeout: Duration, max: usize, each: impl FnMut(RawMessage<'_>)) -> Result<usize, String> {
        self.forward();
        while let Some(event) = self.shared.consumer.poll(Duration::ZERO) {
            match event {
                Ok(m) => {
                    let (t, p, o) = (m.topic(), m.partition(), m.offset());
                    return Err(format!("consuming: a record of {t} partition {p} offset {o} came to no task"));
                }
                Err(e @ KafkaError::MessageConsumptionFatal(_)) => return Err(kafka_err("consuming", e)),
                Err(_) => {}
            }
        }
        self.reader.read(timeout, max, each)
    }
}

impl Drop for TaskInput {
    fn drop(&mut self) {
        for q in self.forwarded.drain(..) {
            // SAFETY: our references, released once; the forward is cleared first.
            unsafe {
                rdsys::rd_kafka_queue_forward(q.as_ptr(), std::ptr::null_mut());
                rdsys::rd_kafka_queue_destroy(q.as_ptr());
            }
        }
        if self.assigned {
            let _ = self.shared.consumer.incremental_unassign(&partition_list(&self.partitions));
        }
        if let Ok(mut a) = self.shared.assigned.lock() {
            for p in &self.partitions {
                a.remove(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::embedded::EmbeddedBroker;
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use rdkafka::Offset;
    use std::time::Instant;

    fn partitions(topic: &str, ps: &[i32], from: i64) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for p in ps {
            tpl.add_partition_offset(topic, *p, Offset::Offset(from)).unwrap();
        }
        tpl
    }

    /// (partition, offset) of every record `input` reads within a few seconds, `n` at most.
    fn read(input: &mut TaskInput, n: usize) -> Vec<(i32, i64)> {
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while out.len() < n && Instant::now() < deadline {
            input.read(Duration::from_millis(100), 1000, |m| out.push((m.partition(), m.offset()))).unwrap();
        }
        // Nothing more comes.
        input.read(Duration::from_millis(300), 1000, |m| out.push((m.partition(), m.offset()))).unwrap();
        out.sort();
        out
    }

    /// Tasks of one thread share a consumer and each reads only its partitions; a task started
    /// again on the same partitions of the same consumer (a task restarted on its thread) reads
    /// them from where it says; a partition two tasks read (a table every task reads whole) gets a
    /// second consumer; and the consumers go once their tasks have.
    #[test]
    fn tasks_share_a_consumer_and_each_reads_only_its_own_partitions() {
        let broker = EmbeddedBroker::start().unwrap();
        broker.create_topic("shared-in", 4).unwrap();
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", broker.bootstrap_servers());
        let producer: BaseProducer = client.create().unwrap();
        for i in 0..400i64 {
            let rec = BaseRecord::<[u8], [u8]>::to("shared-in").partition((i % 4) as i32).payload(b"x");
            producer.send(rec).map_err(|(e, _)| e).unwrap();
            producer.poll(Duration::ZERO);
        }
        producer.flush(Duration::from_secs(30)).unwrap();
        let all = |ps: &[i32], from: i64| -> Vec<(i32, i64)> {
            let mut v: Vec<_> = ps.iter().flat_map(|p| (from..100).map(move |o| (*p, o))).collect();
            v.sort();
            v
        };

        let mut inputs = InputConsumers::new(&client);
        let mut a = inputs.task_input("g", &partitions("shared-in", &[0, 1], 0)).unwrap();
        let mut b = inputs.task_input("g", &partitions("shared-in", &[2, 3], 0)).unwrap();
        assert!(Arc::ptr_eq(&a.shared, &b.shared), "the two tasks share one consumer");
        assert_eq!(read(&mut a, 200), all(&[0, 1], 0));
        assert_eq!(read(&mut b, 200), all(&[2, 3], 0));

        // Restarted on the same thread, from offset 40.
        drop(a);
        let mut a = inputs.task_input("g", &partitions("shared-in", &[0, 1], 40)).unwrap();
        assert!(Arc::ptr_eq(&a.shared, &b.shared));
        assert_eq!(read(&mut a, 120), all(&[0, 1], 40));

        // Partition 3 again: another consumer.
        let mut c = inputs.task_input("g", &partitions("shared-in", &[3], 90)).unwrap();
        assert!(!Arc::ptr_eq(&c.shared, &b.shared));
        assert_eq!(read(&mut c, 10), all(&[3], 90));
        // Another group: another consumer.
        let d = inputs.task_input("h", &partitions("shared-in", &[0], 0)).unwrap();
        assert!(!Arc::ptr_eq(&d.shared, &a.shared));

        // Every task gone: the consumers close and drop at once (a queue left would make it hang).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop((a, b, c, d));
            drop(inputs);
            let _ = tx.send(());
        });
        assert!(rx.recv_timeout(Duration::from_secs(20)).is_ok(), "the shared consumers did not close and drop");
    }
}
