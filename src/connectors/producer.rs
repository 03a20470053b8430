//! Producing records to Kafka with every delivery checked: a send is not done until `flush`
//! says every record since the last flush was acknowledged. A transactional producer (one per
//! exactly-once job) groups its sends into transactions instead: nothing it sent is visible to
//! `read_committed` readers until `commit` succeeds.

use std::ffi::CString;
use std::ptr::NonNull;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::bindings as rdsys;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::ConsumerGroupMetadata;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, TopicPartitionList};

/// How long a transaction call may take (the coordinator may be moving, a zombie's transaction
/// being aborted).
pub const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A record to produce.
#[derive(Debug, Clone, Copy)]
pub struct OutRecord<'a> {
    /// `None`: the producer's partitioner picks (by key hash, murmur2 like the Java client).
    pub partition: Option<i32>,
    pub key: Option<&'a [u8]>,
    /// `None` is a tombstone.
    pub value: Option<&'a [u8]>,
    pub timestamp: i64,
}

#[derive(Default)]
struct DeliveryErrors {
    count: AtomicU64,
    last: Mutex<Option<String>>,
}

impl DeliveryErrors {
    fn record(&self, reason: String) {
        self.count.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut l) = self.last.lock() {
            *l = Some(reason);
        }
    }
}

struct DeliveryContext(Arc<DeliveryErrors>);

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.0.record(e.to_string());
        }
    }
}

/// How long one turn of the delivery-report thread waits (ms). A report wakes it at once, and so
/// does a dropped producer (`rd_kafka_queue_yield`): a short turn only woke it for nothing (a
/// thousand times a second with a producer per task: 1% of a stateless job's CPU at 10 ms).
const REPORT_POLL_MS: std::ffi::c_int = 1_000;

/// The delivery-report thread: waits on the producer's queue itself rather than through rdkafka's
/// `poll`, which waits out its whole timeout and, in the last millisecond of it (rounded down to a
/// zero wait), polls in a loop reading the clock: with a producer per task that spinning was half of
/// a stateless job's CPU time. Failed deliveries are counted (with the last reason); other events
/// are dropped: a fatal error is read from the producer when a send or a transaction fails.
fn serve_reports(producer: &BaseProducer<DeliveryContext>, stop: &AtomicBool) {
    let errors = &producer.context().0;
    // SAFETY: the client lives as long as `producer`; the queue reference is released below.
    let queue = unsafe { rdsys::rd_kafka_queue_get_main(producer.client().native_ptr()) };
    if queue.is_null() {
        return;
    }
    while !stop.load(Ordering::SeqCst) {
        // SAFETY: a live queue handle; the event is destroyed after its last use.
        unsafe {
            let event = rdsys::rd_kafka_queue_poll(queue, REPORT_POLL_MS);
            if event.is_null() {
                continue;
            }
            if rdsys::rd_kafka_event_type(event) == rdsys::RD_KAFKA_EVENT_DR {
                loop {
                    let m = rdsys::rd_kafka_event_message_next(event);
                    if m.is_null() {
                        break;
                    }
                    if (*m).err != rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                        // Worded as rdkafka's `KafkaError::MessageProduction` is, as in `delivery`.
                        let why = std::ffi::CStr::from_ptr(rdsys::rd_kafka_err2str((*m).err));
                        errors.record(format!("Message production error: {}", why.to_string_lossy()));
                    }
                }
            }
            rdsys::rd_kafka_event_destroy(event);
        }
    }
    // SAFETY: the reference taken above, released once, before the producer is dropped.
    unsafe { rdsys::rd_kafka_queue_destroy(queue) };
}

/// A producer that counts failed deliveries. A thread of its own serves the delivery reports,
/// which librdkafka sends for failed records only (`delivery.report.only.error`): a report per
/// delivered record cost the thread a callback each, 7% of a stateless job's time, for nothing.
pub struct RecordProducer {
    producer: Arc<BaseProducer<DeliveryContext>>,
    errors: Arc<DeliveryErrors>,
    transactional_id: Option<String>,
    stop: Arc<AtomicBool>,
    reports: Option<JoinHandle<()>>,
    /// librdkafka's handles of the topics sent to, by name: a send by name takes the client's
    /// write lock to look the topic up, for every record.
    topics: Mutex<Vec<(String, TopicHandle)>>,
}

/// A topic handle of the producer (`rd_kafka_topic_new`), released before the producer.
struct TopicHandle(NonNull<rdsys::rd_kafka_topic_t>);

// SAFETY: librdkafka's topic handles may be used from any thread.
unsafe impl Send for TopicHandle {}

impl Drop for RecordProducer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.reports.take() {
            // Ends the report thread's wait: a yield before it waits is kept, so it is never missed.
            // SAFETY: the client outlives this; the queue reference is released once, here.
            unsafe {
                let queue = rdsys::rd_kafka_queue_get_main(self.producer.client().native_ptr());
                if !queue.is_null() {
                    rdsys::rd_kafka_queue_yield(queue);
                    rdsys::rd_kafka_queue_destroy(queue);
                }
            }
            let _ = t.join();
        }
        // The handles go before the producer (dropped after this, with the fields).
        if let Ok(mut topics) = self.topics.lock() {
            for (_, h) in topics.drain(..) {
                // SAFETY: a handle from rd_kafka_topic_new, released once.
                unsafe { rdsys::rd_kafka_topic_destroy(h.0.as_ptr()) }
            }
        }
    }
}

/// Why a transaction did not commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnFailure {
    /// The producer can no longer be used: another producer with the same transactional id
    /// started (the job has another owner), or a fatal broker error.
    Fenced(String),
    /// The transaction was (or must be) aborted; a new one can start after `abort`.
    Aborted(String),
}

impl std::fmt::Display for TxnFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TxnFailure::Fenced(m) | TxnFailure::Aborted(m) => f.write_str(m),
        }
    }
}

/// Why a record could not be queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The open transaction has already failed (one of its records was not delivered, e.g. the
    /// broker lost its partition leadership): librdkafka queues nothing more until it is aborted.
    TransactionFailed(String),
    /// Any other refusal (no such topic, a record too large for the client, …).
    Refused(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::TransactionFailed(m) | SendError::Refused(m) => f.write_str(m),
        }
    }
}

impl From<SendError> for String {
    fn from(e: SendError) -> String {
        e.to_string()
    }
}

pub(crate) fn kafka_err(what: &str, e: KafkaError) -> String {
    format!("{what}: {e}")
}

/// The settings of every [`RecordProducer`].
fn producer_config(client: &ClientConfig) -> ClientConfig {
    let mut client = client.clone();
    if client.get("linger.ms").is_none() {
        client.set("linger.ms", "5");
    }
    client
        // Keyed records land where Kafka's Java clients would put them.
        .set("partitioner", "murmur2_random")
        .set("delivery.report.only.error", "true");
    client
}

impl RecordProducer {
    pub fn new(client: &ClientConfig) -> Result<RecordProducer, String> {
        let errors = Arc::new(DeliveryErrors::default());
        let producer: BaseProducer<DeliveryContext> = producer_config(client)
            .create_with_context(DeliveryContext(errors.clone()))
            .map_err(|e| kafka_err("creating the producer", e))?;
        RecordProducer::serving(producer, errors, None)
    }

    fn serving(
        producer: BaseProducer<DeliveryContext>,
        errors: Arc<DeliveryErrors>,
        transactional_id: Option<String>,
    ) -> Result<RecordProducer, String> {
        let producer = Arc::new(producer);
        let stop = Arc::new(AtomicBool::new(false));
        let reports = {
            let (producer, stop) = (producer.clone(), stop.clone());
            std::thread::Builder::new()
                .name("delivery-reports".into())
                .spawn(move || serve_reports(&producer, &stop))
                .map_err(|e| format!("cannot start the producer's delivery-report thread: {e}"))?
        };
        Ok(RecordProducer {
            producer,
            errors,
            transactional_id,
            stop,
            reports: Some(reports),
            topics: Mutex::new(Vec::new()),
        })
    }

    /// A transactional producer with this id, initialised: `init_transactions` fences any older
    /// producer with the same id and aborts the transaction it left open. `timeout_ms`: how
    /// long the broker lets a transaction stay open before it aborts it.
    pub fn transactional(
        client: &ClientConfig,
        transactional_id: &str,
        timeout_ms: u64,
    ) -> Result<RecordProducer, String> {
        let errors = Arc::new(DeliveryErrors::default());
        let producer: BaseProducer<DeliveryContext> = producer_config(client)
            .set("transactional.id", transactional_id)
            .set("transaction.timeout.ms", timeout_ms.to_string())
            .create_with_context(DeliveryContext(errors.clone()))
            .map_err(|e| kafka_err("creating the transactional producer", e))?;
        let p = RecordProducer::serving(producer, errors, Some(transactional_id.to_string()))?;
        // With no broker connection up yet, librdkafka's first search for the transaction
        // coordinator fails and is retried only after a fixed 500 ms: a metadata request first
        // waits for a connection (a round trip), so the search succeeds at once.
        let _ = p.producer.client().fetch_metadata(None, Duration::from_secs(10));
        p.producer.init_transactions(TXN_CALL_TIMEOUT).map_err(|e| {
            let unsupported = matches!(
                e.rdkafka_error_code(),
                Some(
                    RDKafkaErrorCode::UnsupportedVersion
                        | RDKafkaErrorCode::UnsupportedFeature
                        | RDKafkaErrorCode::CoordinatorNotAvailable
                        | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
                        | RDKafkaErrorCode::ClusterAuthorizationFailed
                )
            );
            let mut msg = format!("starting transactions (transactional id `{transactional_id}`): {e}");
            if unsupported {
                msg.push_str(
                    "; the broker does not offer transactions to this client: set `guarantee: at_least_once` on the \
                     target or the model, or grant the principal access to the transactional id",
                );
            }
            msg
        })?;
        Ok(p)
    }

    pub fn is_transactional(&self) -> bool {
        self.transactional_id.is_some()
    }

    pub fn begin(&self) -> Result<(), TxnFailure> {
        self.producer.begin_transaction().map_err(|e| self.txn_failure("beginning a transaction", e))
    }

    /// Commits the input offsets with the transaction (they count only if it commits).
    ///
    /// librdkafka 2.12 can wait here forever, past `timeout`, when the consumer group's coordinator
    /// goes away during the call, as in a broker's restart (confluentinc/librdkafka#5456). So the
    /// call runs on a thread of its own; if it has not returned shortly after `timeout`, this
    /// producer is given up as fenced: its task starts again with a new one (which fences it),
    /// and the thread and this producer are left to librdkafka.
    pub fn send_offsets(
        &self,
        offsets: &TopicPartitionList,
        group: ConsumerGroupMetadata,
        timeout: Duration,
    ) -> Result<(), TxnFailure> {
        let what = "adding the input offsets to the transaction";
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (producer, offsets) = (self.producer.clone(), offsets.clone());
        std::thread::Builder::new()
            .name("txn-offsets".into())
            .spawn(move || {
                let _ = tx.send(producer.send_offsets_to_transaction(&offsets, &group, timeout));
            })
            .map_err(|e| TxnFailure::Aborted(format!("{what}: cannot start a thread: {e}")))?;
        match rx.recv_timeout(timeout + Duration::from_secs(5)) {
            Ok(r) => r.map_err(|e| self.txn_failure(what, e)),
            Err(_) => Err(TxnFailure::Fenced(format!(
                "{what}: no answer within {} s (the consumer group's coordinator was lost); the producer is \
                 replaced",
                timeout.as_secs() + 5
            ))),
        }
    }

    /// Commits: flushes every record of the transaction, then makes them visible at once.
    pub fn commit(&self) -> Result<(), TxnFailure> {
        let r = self.producer.commit_transaction(TXN_CALL_TIMEOUT).map_err(|e| self.txn_failure("committing", e));
        // Failed deliveries belong to this transaction: it committed without them or it failed.
        self.errors.count.store(0, Ordering::SeqCst);
        r
    }

    /// Aborts the open transaction (best effort: a fenced producer cannot, and need not).
    pub fn abort(&self) {
        let _ = self.producer.abort_transaction(TXN_CALL_TIMEOUT);
        self.errors.count.store(0, Ordering::SeqCst);
    }

    /// The producer's fatal error, if it has one (fenced by a newer producer with its id).
    pub fn fatal_error(&self) -> Option<String> {
        let (code, reason) = self.producer.client().fatal_error()?;
        let id = self.transactional_id.as_deref().unwrap_or("");
        Some(if is_fencing(code) {
            format!("fenced: another producer with transactional id `{id}` started (another worker owns this job now)")
        } else {
            format!("the producer failed for good ({code}): {reason}")
        })
    }

    fn txn_failure(&self, what: &str, e: KafkaError) -> TxnFailure {
        if let Some(fatal) = self.fatal_error() {
            return TxnFailure::Fenced(fatal);
        }
        let fenced = e.rdkafka_error_code().is_some_and(is_fencing);
        let is_fatal = matches!(&e, KafkaError::Transaction(t) if t.is_fatal());
        if fenced || is_fatal {
            let id = self.transactional_id.as_deref().unwrap_or("");
            return TxnFailure::Fenced(format!("{what}: {e} (transactional id `{id}`)"));
        }
        TxnFailure::Aborted(format!("{what}: {e}"))
    }

    /// Waits, `limit` at most, until every record handed over so far has been acknowledged.
    ///
    /// An idempotent (so a transactional) librdkafka producer sends one request at a time per
    /// partition, yet wakes its broker thread at once for records already due: while a request is
    /// in flight, records queued behind it make that thread spin (poll with no wait, read the
    /// clock, again) until the broker answers. Handing a micro-batch over only once the one before
    /// is acknowledged keeps them out of its queue: with the broker stopped (SIGSTOP) 2 s in every
    /// 3, a windowed job took 6.8-10.5 CPU-s instead of 3.1, most of it in those threads.
    pub fn wait_acknowledged(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.producer.in_flight_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Queues a record (waits while the local queue is full).
    pub fn send(&self, topic: &str, r: OutRecord<'_>, headers: Option<&OwnedHeaders>) -> Result<(), SendError> {
        if headers.is_none() {
            if let Some(rkt) = self.topic_handle(topic) {
                return self.send_to(rkt, topic, r);
            }
        }
        loop {
            let mut rec: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(topic).timestamp(r.timestamp);
            if let Some(k) = r.key {
                rec = rec.key(k);
            }
            if let Some(v) = r.value {
                rec = rec.payload(v);
            }
            if let Some(p) = r.partition {
                rec = rec.partition(p);
            }
            if let Some(h) = headers {
                rec = rec.headers(h.clone());
            }
            match self.producer.send(rec) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => {
                    let state = matches!(e, KafkaError::MessageProduction(RDKafkaErrorCode::State));
                    return Err(self.refusal(state, kafka_err(&format!("producing to {topic}"), e)));
                }
            }
        }
    }

    /// How many partitions `topic` has, if the cluster says within 10 s.
    pub fn partition_count(&self, topic: &str) -> Option<i32> {
        let md = self.producer.client().fetch_metadata(Some(topic), Duration::from_secs(10)).ok()?;
        let n = md.topics().iter().find(|t| t.name() == topic)?.partitions().len() as i32;
        (n > 0).then_some(n)
    }

    /// The producer's handle of `topic`, made on its first use.
    fn topic_handle(&self, topic: &str) -> Option<*mut rdsys::rd_kafka_topic_t> {
        let mut topics = self.topics.lock().ok()?;
        if let Some((_, h)) = topics.iter().find(|(t, _)| t == topic) {
            return Some(h.0.as_ptr());
        }
        let name = CString::new(topic).ok()?;
        // SAFETY: a valid client and name; no configuration (the producer's default topic
        // configuration applies, as for a send by name). Released in `drop`.
        let h = NonNull::new(unsafe {
            rdsys::rd_kafka_topic_new(self.producer.client().native_ptr(), name.as_ptr(), std::ptr::null_mut())
        })?;
        topics.push((topic.to_string(), TopicHandle(h)));
        Some(h.as_ptr())
    }

    /// [`RecordProducer::send`] of a record without headers through the topic's handle
    /// (`rd_kafka_produceva`): no name to copy and look up for each record.
    fn send_to(&self, rkt: *mut rdsys::rd_kafka_topic_t, topic: &str, r: OutRecord<'_>) -> Result<(), SendError> {
        use rdsys::rd_kafka_vtype_t as T;
        fn vu(vtype: T, u: rdsys::rd_kafka_vu_s__bindgen_ty_1) -> rdsys::rd_kafka_vu_t {
            rdsys::rd_kafka_vu_t { vtype, u }
        }
        fn mem(b: Option<&[u8]>) -> rdsys::rd_kafka_vu_s__bindgen_ty_1 {
            let (ptr, size) = b.map_or((std::ptr::null_mut(), 0), |b| (b.as_ptr() as *mut std::ffi::c_void, b.len()));
            rdsys::rd_kafka_vu_s__bindgen_ty_1 { mem: rdsys::rd_kafka_vu_s__bindgen_ty_1__bindgen_ty_1 { ptr, size } }
        }
        type U = rdsys::rd_kafka_vu_s__bindgen_ty_1;
        let args = [
            vu(T::RD_KAFKA_VTYPE_RKT, U { rkt }),
            vu(T::RD_KAFKA_VTYPE_PARTITION, U { i32_: r.partition.unwrap_or(-1) }),
            // librdkafka copies key and value: the caller's buffers are free again on return.
            vu(T::RD_KAFKA_VTYPE_MSGFLAGS, U { i: rdsys::RD_KAFKA_MSG_F_COPY }),
            vu(T::RD_KAFKA_VTYPE_VALUE, mem(r.value)),
            vu(T::RD_KAFKA_VTYPE_KEY, mem(r.key)),
            vu(T::RD_KAFKA_VTYPE_TIMESTAMP, U { i64_: r.timestamp }),
        ];
        loop {
            // SAFETY: a valid client, a topic handle of it (alive until `drop`), and key and
            // value buffers that outlive the call (librdkafka copies them).
            let error =
                unsafe { rdsys::rd_kafka_produceva(self.producer.client().native_ptr(), args.as_ptr(), args.len()) };
            let Some(error) = NonNull::new(error) else { return Ok(()) };
            // SAFETY: an error object returned to us, read then released once.
            let (code, text) = unsafe {
                let code = rdsys::rd_kafka_error_code(error.as_ptr());
                let text = std::ffi::CStr::from_ptr(rdsys::rd_kafka_error_string(error.as_ptr()))
                    .to_string_lossy()
                    .into_owned();
                rdsys::rd_kafka_error_destroy(error.as_ptr());
                (code, text)
            };
            if code == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__QUEUE_FULL {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
            let state = code == rdsys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__STATE;
            return Err(self.refusal(state, format!("producing to {topic}: {text}")));
        }
    }

    /// What a refused record means: in a transaction, librdkafka's state error says the
    /// transaction has already failed (it must be aborted); anything else is a plain refusal.
    fn refusal(&self, state_error: bool, message: String) -> SendError {
        if state_error && self.is_transactional() {
            SendError::TransactionFailed(message)
        } else {
            SendError::Refused(message)
        }
    }

    /// Waits until everything sent is acknowledged; fails if anything was not. In a
    /// transaction: acknowledged, not yet visible to `read_committed` readers.
    pub fn flush(&self) -> Result<(), String> {
        // Asked with no timeout, librdkafka only says whether anything is still queued or in
        // flight (and sends what lingers at once); rdkafka's own waiting polls 100 ms at a time.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.producer.flush(Duration::ZERO) {
                Ok(()) => break,
                Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => return Err(kafka_err("flushing the producer", e)),
            }
        }
        let n = self.errors.count.swap(0, Ordering::SeqCst);
        if n > 0 {
            let last = self.errors.last.lock().ok().and_then(|l| l.clone()).unwrap_or_default();
            return Err(format!("{n} records were not delivered: {last}"));
        }
        Ok(())
    }
}

/// Errors that mean a newer producer with the same transactional id exists.
fn is_fencing(code: RDKafkaErrorCode) -> bool {
    matches!(code, RDKafkaErrorCode::Fenced | RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::InvalidProducerEpoch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::embedded::EmbeddedBroker;

    /// A target's `linger.ms` is kept; the partitioner, which puts keyed records where Java
    /// clients would, is not the target's to change.
    #[test]
    fn target_properties_override_the_producers_linger_but_not_its_partitioner() {
        let defaults = producer_config(&ClientConfig::new());
        assert_eq!(defaults.get("linger.ms"), Some("5"));
        assert_eq!(defaults.get("partitioner"), Some("murmur2_random"));

        let mut target = ClientConfig::new();
        target.set("linger.ms", "50").set("partitioner", "random").set("compression.type", "zstd");
        let set = producer_config(&target);
        assert_eq!(set.get("linger.ms"), Some("50"));
        assert_eq!(set.get("partitioner"), Some("murmur2_random"));
        assert_eq!(set.get("compression.type"), Some("zstd"));
    }

    /// A dropped producer wakes its delivery-report thread out of its wait (a second long) and
    /// ends it: dropping takes a moment, not the rest of the thread's wait.
    #[test]
    fn a_dropped_producer_ends_its_report_thread_at_once() {
        let broker = EmbeddedBroker::start().unwrap();
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", broker.bootstrap_servers());
        for _ in 0..3 {
            let producer = RecordProducer::new(&client).unwrap();
            // The thread is waiting on the queue by now.
            std::thread::sleep(Duration::from_millis(100));
            let started = Instant::now();
            drop(producer);
            let took = started.elapsed();
            assert!(took < Duration::from_millis(REPORT_POLL_MS as u64 / 2), "dropping took {took:?}");
        }
    }

    /// The delivery-report thread counts records that were not delivered, and `flush` says so
    /// with the reason (the broker is gone and the records time out).
    #[test]
    fn records_not_delivered_are_counted_and_reported_by_flush() {
        let broker = EmbeddedBroker::start().unwrap();
        broker.create_topic("out", 1).unwrap();
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", broker.bootstrap_servers()).set("message.timeout.ms", "300");
        let producer = RecordProducer::new(&client).unwrap();
        let rec = OutRecord { partition: Some(0), key: Some(b"k"), value: Some(b"v"), timestamp: 1 };
        producer.send("out", rec, None).unwrap();
        producer.flush().expect("delivered while the broker is up");
        drop(broker);
        for _ in 0..3 {
            producer.send("out", rec, None).unwrap();
        }
        let err = producer.flush().expect_err("the broker is gone");
        assert!(err.starts_with("3 records were not delivered: Message production error: "), "{err}");
        assert!(err.contains("timed out"), "{err}");
    }
}

#[cfg(test)]
mod coordinator_down_tests {
    use super::*;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::mocking::{MockCluster, MockCoordinator};
    use rdkafka::{Offset, TopicPartitionList};

    /// The group coordinator goes down while a task adds its input offsets to the transaction:
    /// librdkafka (2.12, issue #5456) then waits forever, past the call's timeout. The call
    /// returns within its timeout all the same, with a failure that makes the task start again
    /// with a new producer.
    #[test]
    fn adding_offsets_returns_when_the_group_coordinator_is_down() {
        let cluster = MockCluster::new(3).unwrap();
        cluster.create_topic("in", 1, 1).unwrap();
        cluster.create_topic("out", 1, 1).unwrap();
        cluster.coordinator(MockCoordinator::Group("g".into()), 2).unwrap();
        cluster.coordinator(MockCoordinator::Transaction("t".into()), 1).unwrap();
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", cluster.bootstrap_servers());
        let producer = RecordProducer::transactional(&client, "t", 60_000).unwrap();
        let consumer: BaseConsumer = client.clone().set("group.id", "g").create().unwrap();
        let group = consumer.group_metadata().unwrap();
        producer.begin().unwrap();
        let rec = OutRecord { partition: Some(0), key: Some(b"k"), value: Some(b"v"), timestamp: 1 };
        producer.send("out", rec, None).unwrap();
        cluster.broker_down(2).unwrap();
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset("in", 0, Offset::Offset(1)).unwrap();
        let started = Instant::now();
        let r = producer.send_offsets(&offsets, group, Duration::from_secs(2));
        assert!(started.elapsed() < Duration::from_secs(10), "returned after {:?}", started.elapsed());
        assert!(r.is_err(), "{r:?}");
    }
}
