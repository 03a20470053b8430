//! The cost of `exactly_once` against `at_least_once` on a real Apache Kafka (issue #11), in one run:
//! `bench/eos.sh` runs it (`cargo bench --bench eos`, a release build).
//!
//! One Kafka node is started as the end-to-end tests start it (`tests/e2e_common/kafka.rs`). Then, with the
//! project `bench/eos-project` and the default checkpoint interval (2 s):
//! - **Throughput.** EOS_EVENTS sequence-numbered keyed JSON events are loaded into `eos-events` (4
//!   partitions) once; then, in EOS_ROUNDS rounds (the order of the modes alternating), `streamctl run
//!   --select MODEL --until-caught-up` reads all of them from the earliest offset, once per model (`pass`,
//!   stateless; `counts`, a 10-second tumbling count and sum per key) and guarantee, each run with its own
//!   `topic_prefix` (fresh output and checkpoint topics). CPU seconds are the streamctl process's
//!   (user + system, GNU time); events per CPU-second is the input count over them, median over the rounds.
//! - **Latency.** Per guarantee, a `streamctl run --select live_pass` worker runs on `eos-live` while this
//!   program produces EOS_RATE events per second for EOS_SECONDS seconds, each stamped with the wall-clock
//!   time it was handed to the producer; a `read_committed` consumer on the output topic takes, for each
//!   sequence number, the time its first copy arrived minus that stamp: producer, broker, streamctl
//!   (micro-batch, transaction) and consumer together. CPU: the worker's, from /proc, over the timed part.
//!
//! Every output is checked against a reference computed here from the input: the stateless outputs hold
//! every sequence number (exactly once under `exactly_once`; repeats are counted under `at_least_once`),
//! every window has the reference's count and sum. A failed check fails the benchmark (exit status 1).
//! Results: a Markdown section (EOS_DOC) and JSON (EOS_RESULTS).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/e2e_common/mod.rs"]
mod e2e_common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use e2e_common::kafka::KafkaCluster;
use e2e_common::{root, streamctl};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;
use serde_json::{json, Value};

const KEYS: i64 = 100;
const WINDOW_MS: i64 = 10_000;
/// Event time of sequence number 0 (2026-01-01T00:00:00Z); 1 ms between events.
const BASE_TS: i64 = 1_767_225_600_000;
const PARTITIONS: i32 = 4;
const MODES: [&str; 2] = ["at_least_once", "exactly_once"];

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn key_of(seq: i64) -> i64 {
    (seq * 7919) % KEYS
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn event(seq: i64, k: i64, ts: i64) -> String {
    format!(r#"{{"seq":{seq},"k":{k},"ts":{ts},"note":"event {seq} of key {k}, a short note"}}"#)
}

fn producer(bootstrap: &str, linger_ms: &str) -> BaseProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", linger_ms)
        .set("log_level", "3")
        .create()
        .expect("create the input producer")
}

fn send(p: &BaseProducer, topic: &str, key: &str, value: &str, partition: Option<i32>) {
    let mut record = BaseRecord::to(topic).key(key).payload(value);
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    let mut record = Some(record);
    while let Some(r) = record.take() {
        if let Err((e, r)) = p.send(r) {
            assert!(
                matches!(e, rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull)),
                "producing input: {e}"
            );
            p.poll(Duration::from_millis(20));
            record = Some(r);
        }
    }
    p.poll(Duration::ZERO);
}

fn create_topics(bootstrap: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cluster = streamctl::connectors::kafka::Cluster::Kafka {
        bootstrap: bootstrap.into(),
        properties: vec![],
        replication_factor: 1,
    };
    let topics = ["eos-events", "eos-live"].map(|n| streamctl::connectors::kafka::TopicSpec {
        name: n.into(),
        partitions: PARTITIONS,
        compacted: false,
    });
    rt.block_on(cluster.ensure_topics(&topics)).unwrap();
}

/// The throughput input, then one record per partition far in the future (key -1) that closes every window.
fn load_events(bootstrap: &str, events: i64) {
    let p = producer(bootstrap, "20");
    for seq in 0..events {
        let k = key_of(seq);
        send(&p, "eos-events", &k.to_string(), &event(seq, k, BASE_TS + seq), None);
    }
    for partition in 0..PARTITIONS {
        send(&p, "eos-events", "-1", &event(-1, -1, BASE_TS + events + 10 * WINDOW_MS), Some(partition));
    }
    p.flush(Duration::from_secs(300)).expect("flush the input");
}

/// Every record of a topic, read `read_committed` by kcat (a foreign client).
fn read_topic(kcat: &Path, bootstrap: &str, topic: &str) -> Vec<Value> {
    let out = Command::new(kcat)
        .args(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n"])
        .args(["-X", "isolation.level=read_committed"])
        .output()
        .expect("run kcat");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
        .collect()
}

fn int(v: &Value, field: &str) -> Option<i64> {
    v.get(field).and_then(Value::as_i64)
}

/// How an output compares with the reference.
#[derive(Debug, Default, Clone)]
struct Check {
    expected: usize,
    received: usize,
    lost: usize,
    duplicates: usize,
    wrong: usize,
    first_problem: Option<String>,
}

impl Check {
    fn note(&mut self, p: String) {
        self.first_problem.get_or_insert(p);
    }
    /// Nothing lost or wrong; under exactly-once nothing twice either.
    fn ok(&self, mode: &str) -> bool {
        self.lost == 0 && self.wrong == 0 && (mode != "exactly_once" || self.duplicates == 0)
    }
    fn summary(&self) -> String {
        format!(
            "{} expected, {} received, {} lost, {} duplicates, {} wrong{}",
            self.expected,
            self.received,
            self.lost,
            self.duplicates,
            self.wrong,
            self.first_problem.as_ref().map(|p| format!(" (first: {p})")).unwrap_or_default()
        )
    }
}

/// The stateless model: every sequence number of 0..events once, with its key and event time.
fn check_pass(records: &[Value], events: i64) -> Check {
    let mut c = Check { expected: events as usize, received: records.len(), ..Default::default() };
    let mut seen = vec![0u32; events as usize];
    for r in records {
        match int(r, "seq") {
            Some(-1) => {}
            Some(seq) if (0..events).contains(&seq) => {
                let good = int(r, "k") == Some(key_of(seq))
                    && int(r, "ts") == Some(BASE_TS + seq)
                    && r.get("note").and_then(Value::as_str)
                        == Some(format!("EVENT {seq} OF KEY {}, A SHORT NOTE", key_of(seq)).as_str());
                if good {
                    seen[seq as usize] += 1;
                } else {
                    c.wrong += 1;
                    c.note(format!("wrong record {r}"));
                }
            }
            _ => {
                c.wrong += 1;
                c.note(format!("unexpected record {r}"));
            }
        }
    }
    for (seq, n) in seen.iter().enumerate() {
        match n {
            0 => {
                c.lost += 1;
                c.note(format!("sequence number {seq} never arrived"));
            }
            n => c.duplicates += (*n - 1) as usize,
        }
    }
    c
}

/// Per (key, window start) the count and the sum of sequence numbers.
fn window_reference(events: i64) -> BTreeMap<(i64, i64), (i64, i64)> {
    let mut windows: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for seq in 0..events {
        let ts = BASE_TS + seq;
        let w = windows.entry((key_of(seq), ts - ts.rem_euclid(WINDOW_MS))).or_default();
        w.0 += 1;
        w.1 += seq;
    }
    windows
}

fn check_counts(records: &[Value], reference: &BTreeMap<(i64, i64), (i64, i64)>) -> Check {
    let mut c = Check { expected: reference.len(), received: records.len(), ..Default::default() };
    let mut seen: HashMap<(i64, i64), usize> = HashMap::new();
    for r in records {
        let (Some(k), Some(start), Some(n), Some(sum)) =
            (int(r, "k"), int(r, "windowstart"), int(r, "n"), int(r, "seq_sum"))
        else {
            c.wrong += 1;
            c.note(format!("unreadable window {r}"));
            continue;
        };
        if k < 0 {
            continue;
        }
        match reference.get(&(k, start)) {
            Some(&want) if want == (n, sum) => *seen.entry((k, start)).or_default() += 1,
            _ => {
                c.wrong += 1;
                c.note(format!("window {r} is not the reference's {:?}", reference.get(&(k, start))));
            }
        }
    }
    c.duplicates = seen.values().map(|n| n - 1).sum();
    for w in reference.keys() {
        if !seen.contains_key(w) {
            c.lost += 1;
            c.note(format!("window {w:?} never arrived"));
        }
    }
    c
}

fn short(mode: &str) -> &'static str {
    if mode == "exactly_once" {
        "eos"
    } else {
        "alo"
    }
}

/// Points `c` (a streamctl command line so far) at the benchmark project, for `mode`, with topics under `prefix`.
fn on_project(mut c: Command, bootstrap: &str, mode: &str, prefix: &str) -> Command {
    c.arg("--project-dir")
        .arg(root().join("bench/eos-project"))
        .args(["--target", short(mode)])
        .env("NO_COLOR", "1")
        .env("EOS_BOOTSTRAP", bootstrap)
        .env("EOS_PREFIX", prefix);
    c
}

#[derive(Debug, Clone)]
struct ThroughputRun {
    model: &'static str,
    mode: &'static str,
    round: usize,
    input: i64,
    wall_s: f64,
    cpu_s: f64,
    rss_mib: f64,
    records_out: i64,
    checkpoints: i64,
    check: Check,
}

/// One `streamctl run --until-caught-up` under GNU time, then its output checked.
fn throughput_run(
    kcat: &Path,
    bootstrap: &str,
    work: &Path,
    (model, mode, round): (&'static str, &'static str, usize),
    events: i64,
    windows: &BTreeMap<(i64, i64), (i64, i64)>,
) -> ThroughputRun {
    let prefix = format!("r{round}-{}.", short(mode));
    let timing = work.join(format!("time-{model}-{}-{round}.txt", short(mode)));
    let log = work.join(format!("run-{model}-{}-{round}.log", short(mode)));
    let mut time = Command::new("/usr/bin/time");
    time.args(["-f", "%e %U %S %M", "-o"]).arg(&timing).arg(env!("CARGO_BIN_EXE_streamctl"));
    let out = on_project(time, bootstrap, mode, &prefix)
        .args(["--format", "json", "run", "--select", model, "--until-caught-up"])
        .stderr(std::fs::File::create(&log).unwrap())
        .output()
        .expect("run streamctl under /usr/bin/time");
    assert!(
        out.status.success(),
        "streamctl run ({model}, {mode}) failed: {}\n{}",
        out.status,
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let summary: Value = serde_json::from_slice(&out.stdout).expect("streamctl run --format json");
    let job = summary.get("jobs").and_then(|j| j.get(0)).cloned().unwrap_or(Value::Null);
    let t: Vec<f64> =
        std::fs::read_to_string(&timing).unwrap().split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let records = read_topic(kcat, bootstrap, &format!("{prefix}{model}"));
    let check = if model == "counts" { check_counts(&records, windows) } else { check_pass(&records, events) };
    let run = ThroughputRun {
        model,
        mode,
        round,
        input: events + PARTITIONS as i64,
        wall_s: t[0],
        cpu_s: t[1] + t[2],
        rss_mib: t[3] / 1024.0,
        records_out: int(&job, "records_out").unwrap_or(-1),
        checkpoints: int(&job, "checkpoints").unwrap_or(-1),
        check,
    };
    eprintln!(
        "eos bench: round {round} {model} {mode}: {:.2} CPU-s, {:.2} s wall, {:.0} events/CPU-s, {} checkpoints; output: {}",
        run.cpu_s,
        run.wall_s,
        run.input as f64 / run.cpu_s,
        run.checkpoints,
        run.check.summary()
    );
    run
}

/// utime + stime of a process so far, seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|x| x.parse::<f64>().ok()).sum());
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0);
    ticks / hz
}

#[derive(Debug, Clone)]
struct LatencyRun {
    mode: &'static str,
    rate: u64,
    events: i64,
    wall_s: f64,
    cpu_s: f64,
    p50_ms: i64,
    p90_ms: i64,
    p99_ms: i64,
    max_ms: i64,
    check: Check,
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// What the output consumer saw: per sequence number, the arrivals and the first latency.
#[derive(Default)]
struct Arrivals {
    count: HashMap<i64, u32>,
    latency_ms: HashMap<i64, i64>,
    /// Sequence numbers of the timed part (0 and up) seen at least once.
    timed_seen: i64,
    wrong: usize,
    first_wrong: Option<String>,
}

/// Reads `topic` (`read_committed`, from the beginning, once it exists) into `arrivals` until `stop`.
fn consume_output(bootstrap: String, topic: String, arrivals: Arc<Mutex<Arrivals>>, stop: Arc<AtomicBool>) {
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", "eos-bench-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "10")
        .set("log_level", "3")
        .create()
        .expect("create the output consumer");
    while !stop.load(Ordering::SeqCst) {
        let exists = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(5))
            .is_ok_and(|md| md.topics().iter().any(|t| t.name() == topic && t.partitions().len() as i32 == PARTITIONS));
        if exists {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(&topic, p, rdkafka::Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).expect("assign the output topic");
    while !stop.load(Ordering::SeqCst) {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) else { continue };
        let arrived = now_ms();
        let v: Value = m.payload().and_then(|p| serde_json::from_slice(p).ok()).unwrap_or(Value::Null);
        let mut a = arrivals.lock().unwrap();
        match (int(&v, "seq"), int(&v, "k"), int(&v, "ts")) {
            (Some(seq), Some(k), Some(ts)) if k == key_of(seq.abs()) => {
                let n = a.count.entry(seq).or_default();
                *n += 1;
                if *n == 1 && seq >= 0 {
                    a.timed_seen += 1;
                }
                a.latency_ms.entry(seq).or_insert(arrived - ts);
            }
            _ => {
                a.wrong += 1;
                a.first_wrong.get_or_insert(format!("unexpected record {v}"));
            }
        }
    }
}

/// One worker on the live input under `mode`: warm-up until its output flows, then `rate` events per second
/// for `seconds`, then until every one arrived (at most 120 s more).
fn latency_run(bootstrap: &str, work: &Path, mode: &'static str, rate: u64, seconds: u64) -> LatencyRun {
    let prefix = format!("lat-{}.", short(mode));
    let log = work.join(format!("live-{}.log", short(mode)));
    let mut worker = on_project(streamctl(), bootstrap, mode, &prefix)
        .args(["run", "--select", "live_pass"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start the worker");
    let arrivals = Arc::new(Mutex::new(Arrivals::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (b, t, a, s) = (bootstrap.to_string(), format!("{prefix}live_pass"), arrivals.clone(), stop.clone());
        std::thread::spawn(move || consume_output(b, t, a, s))
    };
    let p = producer(bootstrap, "1");
    // Warm-up (negative sequence numbers) until the job runs from the end of the live topic and its output
    // flows: the job starts at the end of its input, so what was produced before it started is not read.
    let started = Instant::now();
    let mut warm = 1i64;
    while !arrivals.lock().unwrap().count.keys().any(|s| *s < 0) {
        assert!(started.elapsed() < Duration::from_secs(120), "no output within 120 s\n{}", tail(&log));
        assert!(worker.try_wait().unwrap().is_none(), "the worker exited\n{}", tail(&log));
        let k = key_of(warm);
        send(&p, "eos-live", &k.to_string(), &event(-warm, k, now_ms()), None);
        warm += 1;
        p.poll(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let cpu_before = cpu_seconds(worker.id());
    let timed = Instant::now();
    let events = (rate * seconds) as i64;
    let mut seq = 0i64;
    while seq < events {
        let due = ((timed.elapsed().as_secs_f64() * rate as f64) as i64).min(events);
        while seq < due {
            let k = key_of(seq);
            send(&p, "eos-live", &k.to_string(), &event(seq, k, now_ms()), None);
            seq += 1;
        }
        p.poll(Duration::from_millis(2));
    }
    p.flush(Duration::from_secs(60)).expect("flush the live input");
    let deadline = Instant::now() + Duration::from_secs(120);
    while arrivals.lock().unwrap().timed_seen < events && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let wall_s = timed.elapsed().as_secs_f64();
    let cpu_s = cpu_seconds(worker.id()) - cpu_before;
    let _ = worker.kill();
    let _ = worker.wait();
    stop.store(true, Ordering::SeqCst);
    reader.join().expect("the output consumer failed");
    let a = arrivals.lock().unwrap();
    let mut check = Check { expected: events as usize, wrong: a.wrong, ..Default::default() };
    if let Some(w) = &a.first_wrong {
        check.note(w.clone());
    }
    let mut latencies = Vec::with_capacity(events as usize);
    for s in 0..events {
        match a.count.get(&s) {
            None => {
                check.lost += 1;
                check.note(format!("sequence number {s} never arrived"));
            }
            Some(n) => {
                check.received += *n as usize;
                check.duplicates += (*n - 1) as usize;
                latencies.push(a.latency_ms[&s]);
            }
        }
    }
    latencies.sort_unstable();
    let run = LatencyRun {
        mode,
        rate,
        events,
        wall_s,
        cpu_s,
        p50_ms: percentile(&latencies, 0.5),
        p90_ms: percentile(&latencies, 0.9),
        p99_ms: percentile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(-1),
        check,
    };
    eprintln!(
        "eos bench: latency {mode}: p50 {} ms, p99 {} ms, max {} ms; {:.2} CPU-s over {:.1} s; output: {}",
        run.p50_ms,
        run.p99_ms,
        run.max_ms,
        run.cpu_s,
        run.wall_s,
        run.check.summary()
    );
    run
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn thousands(x: f64) -> String {
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn report(events: i64, rounds: usize, runs: &[ThroughputRun], lat: &[LatencyRun], command: &str) -> String {
    let mut md = String::new();
    md.push_str(&format!(
        "Command: `{command}` (measured {}; streamctl {}). One Apache Kafka {} node, started as the tests \
         start it; default checkpoint interval (2 s).\n\n",
        utc_now(),
        git_version(),
        e2e_common::kafka::KAFKA_VERSION
    ));
    md.push_str(&format!(
        "**Throughput**: {} events (JSON, 4 partitions) read from the earliest offset by `streamctl run \
         --until-caught-up`, one model per run; median of {rounds} rounds (range in brackets).\n\n",
        thousands(events as f64)
    ));
    md.push_str("| model | guarantee | events / CPU-s | CPU s | wall s | checkpoints | output check |\n");
    md.push_str("|---|---|---:|---:|---:|---:|---|\n");
    for model in ["pass", "counts"] {
        let mut per_mode = Vec::new();
        for mode in MODES {
            let rs: Vec<&ThroughputRun> = runs.iter().filter(|r| r.model == model && r.mode == mode).collect();
            let eps: Vec<f64> = rs.iter().map(|r| r.input as f64 / r.cpu_s).collect();
            let lo = eps.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = eps.iter().copied().fold(0.0, f64::max);
            let m = median(eps.clone());
            per_mode.push(m);
            let checks: Vec<String> = rs.iter().map(|r| check_cell(&r.check, mode)).collect();
            md.push_str(&format!(
                "| {} | {mode} | {} ({}–{}) | {:.2} | {:.2} | {} | {} |\n",
                if model == "pass" { "`pass` (stateless)" } else { "`counts` (10 s windows)" },
                thousands(m),
                thousands(lo),
                thousands(hi),
                median(rs.iter().map(|r| r.cpu_s).collect()),
                median(rs.iter().map(|r| r.wall_s).collect()),
                median(rs.iter().map(|r| r.checkpoints as f64).collect()),
                dedup(checks).join("; ")
            ));
        }
        md.push_str(&format!("| | **EOS / ALO** | **{:.2}×** | | | | |\n", per_mode[1] / per_mode[0]));
    }
    if let (Some(alo), Some(eos)) = (lat.iter().find(|l| l.mode == MODES[0]), lat.iter().find(|l| l.mode == MODES[1])) {
        md.push_str(&format!(
            "\n**End-to-end latency**: {} events per second for {} s ({} events) produced to `eos-live` while a \
             `streamctl run` worker runs `live_pass` (stateless) on it; latency = when a `read_committed` consumer \
             of the output first sees an event − when the event was handed to the producer.\n\n",
            thousands(alo.rate as f64),
            alo.events / alo.rate as i64,
            thousands(alo.events as f64)
        ));
        md.push_str(
            "| guarantee | p50 ms | p90 ms | p99 ms | max ms | worker CPU s | events / CPU-s | output check |\n",
        );
        md.push_str("|---|---:|---:|---:|---:|---:|---:|---|\n");
        for l in [alo, eos] {
            md.push_str(&format!(
                "| {} | {} | {} | {} | {} | {:.2} | {} | {} |\n",
                l.mode,
                l.p50_ms,
                l.p90_ms,
                l.p99_ms,
                l.max_ms,
                l.cpu_s,
                thousands(l.events as f64 / l.cpu_s),
                check_cell(&l.check, l.mode)
            ));
        }
        let ratio = |a: i64, b: i64| if b > 0 { format!("{:.1}×", a as f64 / b as f64) } else { "–".into() };
        md.push_str(&format!(
            "| **EOS / ALO** | **{}** | {} | **{}** | {} | | **{:.2}×** | |\n",
            ratio(eos.p50_ms, alo.p50_ms),
            ratio(eos.p90_ms, alo.p90_ms),
            ratio(eos.p99_ms, alo.p99_ms),
            ratio(eos.max_ms, alo.max_ms),
            (eos.events as f64 / eos.cpu_s) / (alo.events as f64 / alo.cpu_s)
        ));
    }
    md
}

fn check_cell(c: &Check, mode: &str) -> String {
    if !c.ok(mode) {
        return format!("✗ {}", c.summary());
    }
    if c.duplicates > 0 {
        format!("ok, {} repeated", c.duplicates)
    } else {
        "ok: equals the reference".into()
    }
}

fn dedup(v: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in v {
        if !out.contains(&s) {
            out.push(s);
        }
    }
    out
}

fn utc_now() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn git_version() -> String {
    let rev = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let clean = Command::new("git")
        .args(["diff", "--quiet", "HEAD", "--", "src", "Cargo.toml"])
        .current_dir(root())
        .status()
        .is_ok_and(|s| s.success());
    if clean {
        rev
    } else {
        format!("{rev}+local changes")
    }
}

fn main() {
    let Some(kcat) = e2e_common::tools() else {
        eprintln!("eos bench: cannot run without Kafka and kcat");
        std::process::exit(2);
    };
    let events = env_number("EOS_EVENTS", 1_000_000) as i64;
    let rounds = env_number("EOS_ROUNDS", 3) as usize;
    let rate = env_number("EOS_RATE", 10_000);
    let seconds = env_number("EOS_SECONDS", 60);
    let command = std::env::var("EOS_COMMAND").unwrap_or_else(|_| "bench/eos.sh".into());
    let work = tempfile::Builder::new().prefix("streamctl-eos-bench").tempdir().unwrap();
    let logs = std::env::var_os("EOS_LOGS").map(PathBuf::from).unwrap_or_else(|| work.path().to_path_buf());
    std::fs::create_dir_all(&logs).unwrap();

    let t0 = Instant::now();
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    create_topics(&bootstrap);
    eprintln!("eos bench: Kafka up at {bootstrap} after {:.1} s", t0.elapsed().as_secs_f64());
    load_events(&bootstrap, events);
    eprintln!("eos bench: {events} events loaded after {:.1} s", t0.elapsed().as_secs_f64());
    let windows = window_reference(events);

    let mut runs = Vec::new();
    for round in 0..rounds {
        // Alternate which mode goes first, so that neither always meets a warmer broker.
        let order: Vec<&'static str> =
            if round % 2 == 0 { MODES.to_vec() } else { MODES.iter().rev().copied().collect() };
        for mode in order {
            for model in ["pass", "counts"] {
                runs.push(throughput_run(&kcat, &bootstrap, &logs, (model, mode, round), events, &windows));
            }
        }
    }
    let lat: Vec<LatencyRun> = if seconds > 0 {
        MODES.iter().map(|m| latency_run(&bootstrap, &logs, m, rate, seconds)).collect()
    } else {
        vec![]
    };

    let md = report(events, rounds, &runs, &lat, &command);
    println!("{md}");
    if let Some(path) = std::env::var_os("EOS_DOC") {
        std::fs::write(path, &md).unwrap();
    }
    if let Some(path) = std::env::var_os("EOS_RESULTS") {
        let j = json!({
            "events": events,
            "throughput": runs.iter().map(|r| json!({
                "model": r.model, "guarantee": r.mode, "round": r.round, "input": r.input, "cpu_s": r.cpu_s,
                "wall_s": r.wall_s, "peak_rss_mib": r.rss_mib, "records_out": r.records_out,
                "checkpoints": r.checkpoints, "ok": r.check.ok(r.mode), "check": r.check.summary(),
            })).collect::<Vec<_>>(),
            "latency": lat.iter().map(|l| json!({
                "guarantee": l.mode, "rate": l.rate, "events": l.events, "wall_s": l.wall_s, "cpu_s": l.cpu_s,
                "p50_ms": l.p50_ms, "p90_ms": l.p90_ms, "p99_ms": l.p99_ms, "max_ms": l.max_ms,
                "ok": l.check.ok(l.mode), "check": l.check.summary(),
            })).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&j).unwrap()).unwrap();
    }
    let failed = runs.iter().any(|r| !r.check.ok(r.mode)) || lat.iter().any(|l| !l.check.ok(l.mode));
    eprintln!("eos bench: done after {:.1} s", t0.elapsed().as_secs_f64());
    drop(kafka);
    if failed {
        eprintln!("eos bench: an output differs from the reference (see the table)");
        std::process::exit(1);
    }
}
