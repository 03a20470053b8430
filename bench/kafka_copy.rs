//! The librdkafka floor for `bench/scale.sh`: copies every record of a topic to another topic,
//! unchanged, through streamctl's own client code without decoding, SQL or encoding: the input
//! consumer and task queue a job reads through (`connectors::task_input`, many records per call),
//! micro-batches of 10,000 records at most handed to the producer once the batch before is
//! acknowledged, and a transactional producer (`connectors::producer::RecordProducer`) that writes
//! the values, without keys, each to the partition it was read from, and commits a transaction
//! (with the consumed offsets) every 2 s, as a streamctl job does at each checkpoint
//! (`--checkpoint-interval-ms`' default). Its events per CPU-second is what librdkafka alone costs
//! per record: a job that reads and writes every record can at best approach it.
//!
//! Usage: kafka-copy BOOTSTRAP IN_TOPIC OUT_TOPIC [PARTITION | per-partition-producers]. Creates
//! OUT_TOPIC with as many partitions as IN_TOPIC, reads IN_TOPIC to the end offsets it finds at
//! start, then prints the number copied. With PARTITION, only that partition is copied: a client
//! pair per partition, as a streamctl task once had. With `per-partition-producers`, one consumer
//! reads every partition and each partition has a transactional producer of its own, which
//! commits that partition's offsets: the layout of a streamctl thread whose tasks share its
//! consumer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use streamctl::connectors::producer::{OutRecord, RecordProducer};
use streamctl::connectors::task_input::InputConsumers;

const COMMIT_EVERY: Duration = Duration::from_secs(2);
const TIMEOUT: Duration = Duration::from_secs(30);
/// `streamctl run --max-batch-records`' default.
const BATCH_RECORDS: usize = 10_000;

fn main() {
    if let Err(e) = run() {
        eprintln!("kafka-copy: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let (bootstrap, input, output, only, producer_each) = match args.as_slice() {
        [_, b, i, o] => (b, i, o, None, false),
        [_, b, i, o, m] if m == "per-partition-producers" => (b, i, o, None, true),
        [_, b, i, o, p] => (b, i, o, Some(p.parse::<i32>().map_err(|e| format!("partition {p}: {e}"))?), false),
        _ => return Err("usage: kafka-copy BOOTSTRAP IN_TOPIC OUT_TOPIC [PARTITION | per-partition-producers]".into()),
    };
    let group = format!("kafka-copy-{}", std::process::id());
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", bootstrap.as_str());
    let mut consumers = InputConsumers::new(&client);
    let lookup = consumers.lookup(&group)?;
    let meta = lookup.consumer().fetch_metadata(Some(input), TIMEOUT).map_err(|e| e.to_string())?;
    let all: Vec<i32> =
        meta.topics().first().map(|t| t.partitions().iter().map(|p| p.id()).collect()).unwrap_or_default();
    if all.is_empty() {
        return Err(format!("no topic {input}"));
    }
    let partitions: Vec<i32> = all.iter().copied().filter(|p| only.is_none_or(|o| o == *p)).collect();
    // One transactional producer, or one per partition (indexed by partition).
    let mut producers = Vec::new();
    for i in 0..if producer_each { all.len() } else { 1 } {
        let producer = RecordProducer::transactional(&client, &format!("{group}-{i}"), 60_000)?;
        producer.begin().map_err(|e| e.to_string())?;
        producers.push(producer);
    }
    let mut ends = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        let (_, high) = lookup.consumer().fetch_watermarks(input, p, TIMEOUT).map_err(|e| e.to_string())?;
        ends.insert(p, high);
        tpl.add_partition_offset(input, p, Offset::Beginning).map_err(|e| e.to_string())?;
    }
    create_topic(bootstrap, output, all.len() as i32)?;
    let mut reader = consumers.task_input(&group, &tpl)?;

    let mut positions: HashMap<i32, i64> = HashMap::new();
    let mut records = 0u64;
    let mut txn_started = Instant::now();
    let caught_up = |positions: &HashMap<i32, i64>| {
        ends.iter().all(|(p, end)| positions.get(p).map_or(*end == 0, |next| next >= end))
    };
    while !caught_up(&positions) {
        // As a job hands a micro-batch's outputs over (see `RecordProducer::wait_acknowledged`).
        for producer in &producers {
            producer.wait_acknowledged(TIMEOUT);
        }
        let mut failure = None;
        reader.read(Duration::from_millis(100), BATCH_RECORDS, |msg| {
            let partition = msg.partition();
            positions.insert(partition, msg.offset() + 1);
            records += 1;
            let producer = &producers[if producer_each { partition as usize } else { 0 }];
            let out =
                OutRecord { partition: Some(partition), key: None, value: msg.payload(), timestamp: msg.timestamp() };
            if msg.payload().is_some() {
                if let Err(e) = producer.send(output, out, None) {
                    failure.get_or_insert(e.to_string());
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if txn_started.elapsed() >= COMMIT_EVERY {
            commit_all(&reader, &producers, input, &positions, producer_each)?;
            txn_started = Instant::now();
        }
    }
    commit_all(&reader, &producers, input, &positions, producer_each)?;
    println!("{records}");
    Ok(())
}

/// Commits each producer's transaction with the offsets it copied (all of them, or its partition's)
/// and begins the next.
fn commit_all(
    reader: &streamctl::connectors::task_input::TaskInput,
    producers: &[RecordProducer],
    input: &str,
    positions: &HashMap<i32, i64>,
    producer_each: bool,
) -> Result<(), String> {
    for (i, producer) in producers.iter().enumerate() {
        let mut offsets = TopicPartitionList::new();
        for (&p, &next) in positions {
            if !producer_each || p as usize == i {
                offsets.add_partition_offset(input, p, Offset::Offset(next)).map_err(|e| e.to_string())?;
            }
        }
        let meta = reader.consumer().group_metadata().ok_or("no group metadata")?;
        producer.send_offsets(&offsets, meta, TIMEOUT).map_err(|e| e.to_string())?;
        producer.commit().map_err(|e| e.to_string())?;
        producer.begin().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// OUT_TOPIC with as many partitions as the input (the broker may not create topics itself).
fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<(), String> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let results = rt.block_on(admin.create_topics([&new], &AdminOptions::new())).map_err(|e| e.to_string())?;
    for r in results {
        match r {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, e)) => return Err(format!("cannot create {t}: {e}")),
        }
    }
    Ok(())
}
