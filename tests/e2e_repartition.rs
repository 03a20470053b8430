//! GROUP BY on a column other than the input's key, on Apache Kafka (a broker process started by the test):
//! `tests/repartition/project` reads a 5-partition input keyed by K and aggregates it by G (a running
//! aggregate and a tumbling window). Two `streamctl run` workers share the tasks of both stages: the first
//! re-keys each input partition by G into the model's repartition topic, the second aggregates each
//! partition of that topic. The test checks, against references computed here from the records it
//! produced:
//! - every record is in each repartition topic once (`read_committed`), in the partition Kafka's default
//!   partitioner (murmur2, written out in e2e_common) gives its key, so each group is in one partition, one task;
//! - each group's last running aggregate is its total over the input (a group split over tasks would end
//!   with one task's part), and every window's count and sum, once each (exactly-once, EMIT FINAL): the
//!   windows close in every aggregating task, also those that got no record of the last input (the first
//!   stage's watermark markers);
//! - `status` shows the tasks of both stages, held by both workers;
//! - `plan` shows the repartition topics, `destroy --delete-topics` deletes them from the cluster.
//!
//! Needs Java, Kafka's jars (`tests/kafka/fetch.sh`) and kcat, like `e2e_run`.

mod common;
mod e2e_common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e_common::*;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

const PARTITIONS: i32 = 5;
const RECORDS: i64 = 4_000;
const KEYS: i64 = 40;
const BASE_TS: i64 = 1_767_225_600_000;
/// Far after the data: records at this time close every window of the data.
const FLUSH_TS: i64 = BASE_TS + 1_000_000;
const WINDOW_MS: i64 = 10_000;
const GROUPS: i64 = 7;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// One input record: (SEQ, K, G, TS, partition it is produced to: by its key, or this one).
#[derive(Clone)]
struct Event {
    seq: i64,
    k: i64,
    g: String,
    ts: i64,
    partition: Option<i32>,
}

fn events(range: std::ops::Range<i64>) -> Vec<Event> {
    range
        .map(|seq| {
            let k = (seq * 7) % KEYS;
            Event { seq, k, g: format!("g{}", k % GROUPS), ts: BASE_TS + seq * 25, partition: None }
        })
        .collect()
}

/// A record in every partition, far later, all of one group (so in one partition of the repartition
/// topic): every input partition's event time passes every window of the data. The aggregating tasks
/// that do not get these records learn it from the first stage's watermark markers, else the last
/// windows of their groups would stay open.
fn flush() -> Vec<Event> {
    (0..PARTITIONS)
        .map(|p| Event { seq: 1_000_000 + i64::from(p), k: 0, g: "gz".into(), ts: FLUSH_TS, partition: Some(p) })
        .collect()
}

fn produce(bootstrap: &str, events: &[Event]) {
    let p: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .expect("create the input producer");
    for e in events {
        let value = format!(r#"{{"SEQ":{},"K":{},"G":"{}","TS":{}}}"#, e.seq, e.k, e.g, e.ts);
        let key = e.k.to_string();
        loop {
            let mut r = BaseRecord::to("rp-events").key(&key).payload(&value);
            if let Some(p) = e.partition {
                r = r.partition(p);
            }
            match p.send(r) {
                Ok(()) => break,
                Err(_) => {
                    p.poll(Duration::from_millis(10));
                }
            }
        }
    }
    p.flush(Duration::from_secs(60)).expect("flush the input");
}

/// `(partition, key, value)` of every committed record of a topic.
fn read_committed(kcat: &Path, bootstrap: &str, topic: &str) -> Vec<(i32, String, Value)> {
    let out = Command::new(kcat)
        .args(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p\t%k\t%s\n"])
        .args(["-X", "isolation.level=read_committed"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let mut parts = l.splitn(3, '\t');
            let p = parts.next()?.parse().ok()?;
            let k = parts.next()?.to_string();
            Some((p, k, serde_json::from_str(parts.next()?).unwrap_or(Value::Null)))
        })
        .collect()
}

/// What is wrong with the outputs and repartition topics, against the references (empty: nothing).
fn problems(kcat: &Path, bootstrap: &str, input: &[Event]) -> Vec<String> {
    let mut out = Vec::new();
    for model in ["rp_by_group", "rp_windowed"] {
        let topic = format!("_streamctl.rp.{model}.repartition");
        let rows = read_committed(kcat, bootstrap, &topic);
        let mut seqs: BTreeMap<i64, usize> = BTreeMap::new();
        let mut partitions_of_group: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
        let mut markers = 0;
        for (p, key, v) in &rows {
            // The first stage's watermark markers: no key, no value.
            if key.is_empty() && v.is_null() {
                markers += 1;
                continue;
            }
            *seqs.entry(field(v, "SEQ").as_i64().unwrap_or(-1)).or_default() += 1;
            let want = java_partition(key.as_bytes(), PARTITIONS);
            if *p != want {
                out.push(format!("{topic}: key {key} in partition {p}, Kafka's partitioner says {want}"));
            }
            let g = field(v, "G").as_str().unwrap_or("").to_string();
            if key != &format!(r#"["{g}"]"#) {
                out.push(format!("{topic}: a record of group {g} keyed {key}"));
            }
            partitions_of_group.entry(g).or_default().insert(*p);
        }
        if markers == 0 {
            out.push(format!("{topic}: no watermark markers"));
        }
        let want: BTreeMap<i64, usize> = input.iter().map(|e| (e.seq, 1)).collect();
        if seqs != want {
            let missing = want.keys().filter(|s| !seqs.contains_key(s)).count();
            let twice = seqs.values().filter(|n| **n > 1).count();
            out.push(format!(
                "{topic}: {} records, want {}: {missing} missing, {twice} repeated",
                rows.len(),
                input.len()
            ));
        }
        for (g, ps) in partitions_of_group.iter().filter(|(_, ps)| ps.len() > 1) {
            out.push(format!("{topic}: group {g} in partitions {ps:?}"));
        }
    }
    // Running aggregate: each group's last row is its total over the input.
    let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for e in input {
        let t = want.entry(e.g.clone()).or_default();
        t.0 += 1;
        t.1 += e.seq;
    }
    let mut got: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for (_, _, v) in read_committed(kcat, bootstrap, "rp.by-group") {
        let g = field(&v, "G").as_str().unwrap_or("").to_string();
        got.insert(g, (field(&v, "N").as_i64().unwrap_or(-1), field(&v, "SEQ_SUM").as_i64().unwrap_or(-1)));
    }
    if got != want {
        out.push(format!("rp.by-group: got {got:?}, want {want:?}"));
    }
    // Windows: every window of the data closed (the flush records' stay open), each once.
    let mut want: BTreeMap<(String, i64), (i64, i64)> = BTreeMap::new();
    for e in input.iter().filter(|e| e.ts < FLUSH_TS) {
        let t = want.entry((e.g.clone(), e.ts - e.ts % WINDOW_MS)).or_default();
        t.0 += 1;
        t.1 += e.seq;
    }
    let mut got: BTreeMap<(String, i64), Vec<(i64, i64)>> = BTreeMap::new();
    for (_, _, v) in read_committed(kcat, bootstrap, "rp.windowed") {
        let g = field(&v, "G").as_str().unwrap_or("").to_string();
        let ws = field(&v, "WS").as_i64().unwrap_or(-1);
        got.entry((g, ws))
            .or_default()
            .push((field(&v, "N").as_i64().unwrap_or(-1), field(&v, "SEQ_SUM").as_i64().unwrap_or(-1)));
    }
    let got_once: BTreeMap<(String, i64), (i64, i64)> =
        got.iter().filter(|(_, v)| v.len() == 1).map(|(k, v)| (k.clone(), v[0])).collect();
    if got_once != want || got.values().any(|v| v.len() != 1) {
        let twice: Vec<_> = got.iter().filter(|(_, v)| v.len() != 1).collect();
        let wrong: Vec<_> = want.iter().filter(|(k, v)| got_once.get(*k) != Some(*v)).take(5).collect();
        out.push(format!(
            "rp.windowed: {} windows, want {}; emitted more than once: {twice:?}; first wrong or missing: {wrong:?}",
            got.len(),
            want.len()
        ));
    }
    out
}

#[test]
fn group_by_another_column_goes_through_a_repartition_topic_and_equals_the_reference() {
    let Some(kcat) = tools() else { return };
    let setup = KafkaProject::start("tests/repartition/project", "rp-events", PARTITIONS);
    let (bootstrap, work) = (setup.bootstrap.clone(), &setup.work);
    let cmd = |args: &[&str]| setup.cmd(args);
    let planned = cmd(&["plan"]).output().unwrap();
    let planned = text(&planned);
    assert!(
        planned.contains("+ topic _streamctl.rp.rp_by_group.repartition")
            && planned.contains("repartition of rp_by_group: 5 partitions"),
        "{planned}"
    );
    let applied = cmd(&["apply", "--auto-approve"]).output().unwrap();
    assert!(applied.status.success(), "{}", text(&applied));

    let mut input = events(0..RECORDS / 2);
    produce(&bootstrap, &input);
    let log_path = |i: usize| work.path().join(format!("worker-{i}.log"));
    let spawn = |i: usize| {
        let log = std::fs::File::create(log_path(i)).unwrap();
        Killed(
            cmd(&["run", "--checkpoint-interval-ms", "300", "--threads", "2"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    };
    let logs = || {
        (0..2)
            .map(|i| format!("--- worker {i}\n{}", std::fs::read_to_string(log_path(i)).unwrap_or_default()))
            .collect::<String>()
    };
    let workers = [spawn(0), spawn(1)];
    let pids: Vec<u32> = workers.iter().map(|w| w.0.id()).collect();

    // Both stages' tasks, spread over both workers, as `status` shows them.
    let holders = |model: &str| -> BTreeMap<String, u32> {
        let out = cmd(&["status", "--format", "json"]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let job = v["jobs"].as_array().and_then(|j| j.iter().find(|j| j["model"] == model).cloned());
        let tasks = job.and_then(|j| j["tasks"].as_array().cloned()).unwrap_or_default();
        tasks.iter().filter_map(|t| Some((t["task"].as_str()?.to_string(), pid_of(t["worker"].as_str()?)?))).collect()
    };
    let all_tasks: BTreeSet<String> =
        (0..PARTITIONS).flat_map(|p| [format!("repartition-p{p}"), format!("p{p}")]).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let h = holders("rp_by_group");
        let tasks: BTreeSet<String> = h.keys().cloned().collect();
        if tasks == all_tasks && pids.iter().all(|p| h.values().any(|q| q == p)) {
            println!("repartition: rp_by_group's tasks: {h:?}");
            break;
        }
        assert!(Instant::now() < deadline, "both stages' tasks over both workers; held: {h:?}\n{}", logs());
        std::thread::sleep(Duration::from_millis(300));
    }
    let shown = String::from_utf8_lossy(&cmd(&["status"]).output().unwrap().stdout).to_string();
    println!("repartition: `streamctl status` said:\n{shown}");
    assert!(shown.contains("repartition-p0") && shown.contains("rp_windowed"), "{shown}");

    let rest = events(RECORDS / 2..RECORDS);
    produce(&bootstrap, &rest);
    input.extend(rest);
    let flushed = flush();
    produce(&bootstrap, &flushed);
    input.extend(flushed);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    loop {
        let p = problems(&kcat, &bootstrap, &input);
        if p.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the outputs are not the reference: {p:#?}\n{}", logs());
        println!(
            "repartition: after {:.1} s: {:?}",
            started.elapsed().as_secs_f64(),
            p.iter().map(|l| l.chars().take(150).collect::<String>()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    println!("repartition: outputs equal the reference {:.1} s after the last input", started.elapsed().as_secs_f64());
    let logs = logs();
    for model in ["rp_by_group", "rp_windowed"] {
        let line = format!(
            "[{model}] 5 tasks re-keying each partition of rp-events by the GROUP BY into _streamctl.rp.{model}.repartition"
        );
        assert!(logs.contains(&line), "{line} not in the logs:\n{logs}");
    }
    assert!(!logs.contains("runs as one task"), "{logs}");

    // `destroy --delete-topics` deletes the repartition topics with the jobs' other topics.
    drop(workers);
    let destroyed = cmd(&["destroy", "--delete-topics", "--auto-approve"]).output().unwrap();
    let said = text(&destroyed);
    assert!(destroyed.status.success(), "{said}");
    let repartition_topics = ["_streamctl.rp.rp_by_group.repartition", "_streamctl.rp.rp_windowed.repartition"];
    for t in repartition_topics {
        assert!(said.contains(&format!("- topic {t}")), "{t} not destroyed:\n{said}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let listed = Command::new(&kcat).args(["-L", "-b", &bootstrap]).output().unwrap();
        let listed = String::from_utf8_lossy(&listed.stdout).to_string();
        let left: Vec<&str> = repartition_topics.into_iter().filter(|t| listed.contains(&format!("\"{t}\""))).collect();
        if left.is_empty() && listed.contains("\"rp-events\"") {
            break;
        }
        assert!(Instant::now() < deadline, "{left:?} still on the cluster after destroy --delete-topics:\n{listed}");
        std::thread::sleep(Duration::from_millis(500));
    }
}
