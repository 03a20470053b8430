//! Writes Nexmark events (the `nexmark` crate's generator) as JSON into Kafka topics
//! `nexmark.person`, `nexmark.auction`, `nexmark.bid`, creating them if needed.
//! Usage: nexmark-gen BOOTSTRAP EVENTS [PARTITIONS]
//! PARTITIONS (default 1) is every topic's partition count. Bids are keyed by their auction, auctions and
//! persons by their id, hashed with murmur2 as Java clients do: partition p of the bids holds the bids of
//! the auctions in partition p of the auctions (co-partitioned, also for Kafka Streams).
//! With `-` as BOOTSTRAP the events go to stdout as JSON Lines (`{"topic":..., "value":...}`).
//! `NEXMARK_TOPIC_PREFIX` (default `nexmark.`) changes the topics' prefix: Denormalized reads a
//! dotted topic name as schema.table, so it gets `nexmark_`.
//! `NEXMARK_AVRO_SCHEMA=FILE` (an `.avsc` of the bid's seven fields, in the order of the JSON) also writes
//! every bid as Avro in the Confluent wire format to `<prefix>bid_avro` (same key, partition and
//! timestamp), framed with the id the project's file registry gives that schema (Avro against JSON
//! input in `bench/scale.sh`).

use std::time::{Duration, Instant};

use nexmark::config::NexmarkConfig;
use nexmark::event::Event;
use nexmark::EventGenerator;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: nexmark-gen BOOTSTRAP EVENTS [PARTITIONS]");
        std::process::exit(2);
    }
    let bootstrap = &args[1];
    let events: usize = args[2].parse().expect("EVENTS is a number");
    let partitions: i32 = args.get(3).map(|p| p.parse().expect("PARTITIONS is a number")).unwrap_or(1);
    if bootstrap == "-" {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for e in EventGenerator::new(fixed_config()).take(events) {
            let (topic, value) = to_json(e);
            if writeln!(out, "{}", json!({"topic": topic, "value": value})).is_err() {
                return; // the reader went away (e.g. `| head`)
            }
        }
        return;
    }
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let admin: AdminClient<DefaultClientContext> = cfg.create().expect("admin client");
    let prefix = std::env::var("NEXMARK_TOPIC_PREFIX").unwrap_or_else(|_| "nexmark.".into());
    let mut names: Vec<String> = ["person", "auction", "bid"].iter().map(|t| format!("{prefix}{t}")).collect();
    let avro = std::env::var("NEXMARK_AVRO_SCHEMA").ok().map(|path| avro_frame_id(&path));
    if avro.is_some() {
        names.push(format!("{prefix}bid_avro"));
    }
    let topics: Vec<NewTopic> =
        names.iter().map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1))).collect();
    for r in rt.block_on(admin.create_topics(topics.iter(), &AdminOptions::new())).expect("create topics") {
        if let Err((t, code)) = r {
            if code != RDKafkaErrorCode::TopicAlreadyExists {
                panic!("creating {t}: {code}");
            }
        }
    }
    let producer: BaseProducer = cfg
        .clone()
        .set("linger.ms", "20")
        .set("partitioner", "murmur2_random")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let started = Instant::now();
    let mut counts = [0usize; 3];
    for e in EventGenerator::new(fixed_config()).take(events) {
        let (topic, value) = to_json(e);
        let i = match topic {
            "nexmark.person" => 0,
            "nexmark.auction" => 1,
            _ => 2,
        };
        let key = if i == 2 { value["auction"].to_string() } else { value["id"].to_string() };
        let ts = value["date_time"].as_u64().unwrap_or(0);
        counts[i] += 1;
        let payload = value.to_string();
        send(&producer, BaseRecord::to(&names[i]).key(&key).payload(payload.as_bytes()).timestamp(ts as i64));
        if let (2, Some(id)) = (i, avro) {
            let body = avro_bid(id, &value);
            send(&producer, BaseRecord::to(&names[3]).key(&key).payload(body.as_slice()).timestamp(ts as i64));
        }
    }
    producer.flush(Duration::from_secs(300)).expect("flush");
    eprintln!(
        "produced {} persons, {} auctions, {} bids in {:.1}s",
        counts[0],
        counts[1],
        counts[2],
        started.elapsed().as_secs_f64()
    );
    println!("{} {} {}", counts[0], counts[1], counts[2]);
}

fn send(producer: &BaseProducer, record: BaseRecord<'_, String, [u8]>) {
    let mut record = Some(record);
    while let Some(r) = record.take() {
        match producer.send(r) {
            Ok(()) => {}
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                producer.poll(Duration::from_millis(10));
                record = Some(r);
            }
            Err((e, _)) => panic!("producing: {e}"),
        }
    }
    producer.poll(Duration::ZERO);
}

/// The fields of the bid schema, in order: `avro_bid` writes them so.
const BID_FIELDS: [(&str, &str); 7] = [
    ("auction", "long"),
    ("bidder", "long"),
    ("price", "long"),
    ("channel", "string"),
    ("url", "string"),
    ("date_time", "long"),
    ("extra", "string"),
];

/// The registry id of the bid schema in FILE (as the project's file registry gives it), after
/// checking that its fields are the ones `avro_bid` writes.
fn avro_frame_id(path: &str) -> i32 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let fields: Vec<(String, String)> = schema["fields"]
        .as_array()
        .map(|fs| fs.iter().map(|f| (f["name"].to_string(), f["type"].to_string())).collect())
        .unwrap_or_default();
    let expected: Vec<(String, String)> =
        BID_FIELDS.iter().map(|(n, t)| (format!("\"{n}\""), format!("\"{t}\""))).collect();
    assert_eq!(fields, expected, "{path}: the bid schema must have exactly these fields, in this order");
    streamctl::registry::file::content_id(streamctl::registry::SchemaType::Avro, &text)
}

/// A bid (its JSON value) as Avro in the Confluent wire format: magic byte 0, the schema id (4 bytes,
/// big-endian), then the fields of `BID_FIELDS` in order (long: zigzag varint; string: length, bytes).
fn avro_bid(id: i32, bid: &serde_json::Value) -> Vec<u8> {
    fn long(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }
    let mut out = vec![0u8];
    out.extend_from_slice(&id.to_be_bytes());
    for (name, ty) in BID_FIELDS {
        if ty == "long" {
            long(&mut out, bid[name].as_i64().unwrap_or_else(|| panic!("bid field {name} is not a number")));
        } else {
            let s = bid[name].as_str().unwrap_or_else(|| panic!("bid field {name} is not a string"));
            long(&mut out, s.len() as i64);
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

/// An event as (topic, JSON value).
fn to_json(e: Event) -> (&'static str, serde_json::Value) {
    match e {
        Event::Person(p) => (
            "nexmark.person",
            json!({"id": p.id, "name": p.name, "email_address": p.email_address, "credit_card": p.credit_card, "city": p.city, "state": p.state, "date_time": p.date_time, "extra": p.extra}),
        ),
        Event::Auction(a) => (
            "nexmark.auction",
            json!({"id": a.id, "item_name": a.item_name, "description": a.description, "initial_bid": a.initial_bid, "reserve": a.reserve, "date_time": a.date_time, "expires": a.expires, "seller": a.seller, "category": a.category, "extra": a.extra}),
        ),
        Event::Bid(b) => (
            "nexmark.bid",
            json!({"auction": b.auction, "bidder": b.bidder, "price": b.price, "channel": b.channel, "url": b.url, "date_time": b.date_time, "extra": b.extra}),
        ),
    }
}

/// The crate's defaults, but starting at a fixed time (2024-01-01T00:00:00Z) instead of now, so
/// that the same number of events is always the same data set.
fn fixed_config() -> NexmarkConfig {
    NexmarkConfig { base_time: 1_704_067_200_000, ..NexmarkConfig::default() }
}
