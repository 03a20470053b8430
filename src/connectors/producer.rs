//! Producing records to Kafka with every delivery checked: a send is not done until `flush`
//! says every record since the last flush was acknowledged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

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

struct DeliveryContext(Arc<DeliveryErrors>);

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.0.count.fetch_add(1, Ordering::SeqCst);
            if let Ok(mut l) = self.0.last.lock() {
                *l = Some(e.to_string());
            }
        }
    }
}

/// A producer that counts failed deliveries.
pub struct RecordProducer {
    producer: ThreadedProducer<DeliveryContext>,
    errors: Arc<DeliveryErrors>,
}

pub(crate) fn kafka_err(what: &str, e: KafkaError) -> String {
    format!("{what}: {e}")
}

impl RecordProducer {
    pub fn new(client: &ClientConfig) -> Result<RecordProducer, String> {
        let errors = Arc::new(DeliveryErrors::default());
        let producer: ThreadedProducer<DeliveryContext> = client
            .clone()
            // Keyed records land where Kafka's Java clients would put them.
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .create_with_context(DeliveryContext(errors.clone()))
            .map_err(|e| kafka_err("creating the producer", e))?;
        Ok(RecordProducer { producer, errors })
    }

    /// Queues a record (waits while the local queue is full).
    pub fn send(&self, topic: &str, r: OutRecord<'_>, headers: Option<&OwnedHeaders>) -> Result<(), String> {
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
                Err((e, _)) => return Err(kafka_err(&format!("producing to {topic}"), e)),
            }
        }
    }

    /// Waits until everything sent is acknowledged; fails if anything was not.
    pub fn flush(&self) -> Result<(), String> {
        self.producer.flush(Duration::from_secs(60)).map_err(|e| kafka_err("flushing the producer", e))?;
        let n = self.errors.count.swap(0, Ordering::SeqCst);
        if n > 0 {
            let last = self.errors.last.lock().ok().and_then(|l| l.clone()).unwrap_or_default();
            return Err(format!("{n} records were not delivered: {last}"));
        }
        Ok(())
    }
}
