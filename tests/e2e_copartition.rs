//! A co-partitioned stream–table join on Apache Kafka (a broker process started by the test):
//! `tests/copartition/project` joins a stream keyed by K to a table keyed by K, both on four
//! partitions and produced with the Java clients' partitioner (murmur2). Each task reads its
//! partition of the stream and the same partition of the table (not the whole table), the output
//! is the reference computed here, and a bad table record outside partition 0 is dead-lettered by
//! the task that reads it. A second model joins the same table from the stream declared without
//! its key: each of its tasks reads the whole table, and the bad record counts once in each job. A table record then written to another partition than its key's
//! stops the job with the topic, partition, offset and the fix, instead of joining wrongly.
//!
//! Needs Java, Kafka's jars (`tests/kafka/fetch.sh`) and kcat, like `e2e_run`.

mod common;
mod e2e_common;

use std::collections::BTreeMap;
use std::process::Output;
use std::time::Duration;

use e2e_common::*;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

const EVENTS: i64 = 2_000;
const KEYS: i64 = 40;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn group_of(k: i64) -> String {
    format!("g{}", k % 7)
}

/// Keyed records, partitioned by librdkafka with `partitioner` (or into `partition` when given).
fn produce(bootstrap: &str, partitioner: &str, topic: &str, records: &[(String, String)], partition: Option<i32>) {
    let p: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", partitioner)
        .create()
        .expect("create the producer");
    for (key, value) in records {
        let mut r = BaseRecord::to(topic).key(key).payload(value);
        if let Some(partition) = partition {
            r = r.partition(partition);
        }
        p.send(r).expect("queue a record");
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(60)).expect("flush");
}

#[test]
fn each_task_reads_its_partition_of_a_co_partitioned_table() {
    let Some(kcat) = tools() else { return };
    let setup = KafkaProject::start("tests/copartition/project", "copart-events", 4);
    let bootstrap = setup.bootstrap.clone();
    create_topics(&bootstrap, &[("copart-groups", 4, true)]);
    let applied = setup.cmd(&["apply", "--auto-approve"]).output().unwrap();
    assert!(applied.status.success(), "{}", text(&applied));
    let groups: Vec<(String, String)> =
        (0..KEYS).map(|k| (k.to_string(), format!(r#"{{"K":{k},"GRP":"{}"}}"#, group_of(k)))).collect();
    produce(&bootstrap, "murmur2_random", "copart-groups", &groups, None);
    // A bad group record, of a key outside the events' keys, in a partition other than 0: its task
    // (not task p0, as for a table read whole) writes it to the dead-letter topic.
    let bad_key = (KEYS..KEYS + 20).map(|k| k.to_string()).find(|k| java_partition(k.as_bytes(), 4) != 0).unwrap();
    produce(&bootstrap, "murmur2_random", "copart-groups", &[(bad_key.clone(), "{\"K\": oops".into())], None);
    let events: Vec<(String, String)> = (0..EVENTS)
        .map(|seq| {
            let k = (seq * 13) % KEYS;
            (k.to_string(), format!(r#"{{"SEQ":{seq},"K":{k}}}"#))
        })
        .collect();
    produce(&bootstrap, "murmur2_random", "copart-events", &events, None);

    let run = setup.cmd(&["run", "--until-caught-up", "--threads", "2", "--format", "json"]).output().unwrap();
    assert!(run.status.success(), "{}", text(&run));
    let log = text(&run);
    // The bad group record counts once per job: in the co-partitioned job, in the task reading its
    // partition; in the job reading the table whole in every task, in its first task only.
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).expect("the run's JSON summary");
    for job in summary["jobs"].as_array().expect("jobs") {
        assert_eq!(job["bad_records"], 1, "{job}\n{log}");
    }
    for p in 0..4 {
        let line = format!("[copart_joined] task p{p} reads partition {p} of copart-groups (co-partitioned");
        assert!(log.contains(&line), "`{line}` not in:\n{log}");
    }
    // Every event once, with its key's group.
    let want: BTreeMap<i64, (i64, String)> =
        (0..EVENTS).map(|seq| (seq, ((seq * 13) % KEYS, group_of((seq * 13) % KEYS)))).collect();
    let mut got: BTreeMap<i64, (i64, String)> = BTreeMap::new();
    let rows = kcat_consume_committed(&kcat, &bootstrap, "copart.joined");
    for (_, v) in &rows {
        let seq = field(v, "SEQ").as_i64().unwrap_or(-1);
        let row = (field(v, "K").as_i64().unwrap_or(-1), field(v, "GRP").as_str().unwrap_or("").to_string());
        assert!(got.insert(seq, row).is_none(), "event {seq} joined twice:\n{log}");
    }
    assert_eq!(got.len(), want.len(), "{} joined rows, want {}:\n{log}", got.len(), want.len());
    assert_eq!(got, want, "the joined rows are not the reference");
    let dead = kcat_records(&kcat, &bootstrap, "copart-groups.dlq");
    assert_eq!(dead.len(), 1, "one dead letter (the bad group record), got {}:\n{log}", dead.len());

    // A group record put into a partition its key does not hash to: the job stops and says where.
    let key = "3";
    let right = java_partition(key.as_bytes(), 4);
    let wrong = (right + 1) % 4;
    produce(
        &bootstrap,
        "murmur2_random",
        "copart-groups",
        &[(key.into(), r#"{"K":3,"GRP":"moved"}"#.into())],
        Some(wrong),
    );
    let run = setup.cmd(&["run", "--until-caught-up"]).output().unwrap();
    let log = text(&run);
    assert!(!run.status.success(), "the run should fail on a record in the wrong partition:\n{log}");
    let why = format!("copart-groups partition {wrong} offset");
    assert!(log.contains(&why), "`{why}` not in:\n{log}");
    let why = format!("its key 3 belongs in partition {right} by murmur2");
    assert!(log.contains(&why), "`{why}` not in:\n{log}");
    println!("copartition: 4 tasks each read one partition of the table; {} rows = the reference", got.len());
}
