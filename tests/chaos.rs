//! Chaos suite: sequence-numbered keyed events flow through three models of `tests/chaos/project` (a
//! stateless filter, a 10-second tumbling count and sum per key, a stream–table join) on a three-node
//! Apache Kafka, while two `streamctl run` workers are killed with SIGKILL (at random moments, while a job
//! writes a checkpoint, and while a worker takes a job over from the other) and restarted, and one broker
//! is killed and restarted mid-run. The verdict compares the output topics, read `read_committed`, with a
//! reference computed here from the input alone (no streamctl code), once per guarantee:
//! - `exactly_once`: the outputs equal the reference: nothing lost, nothing twice, every window exact;
//! - `at_least_once`: nothing lost, no window or aggregate counting an input twice, no record that should
//!   not be there; repeated records are counted and reported.
//!
//! Inside `cargo test` (with STREAMCTL_E2E=1 or the tools present) it runs at a reduced size; the full size
//! (1,000,000 records, 20 kills) is `tests/chaos/run.sh --full`. Sizes: STREAMCTL_CHAOS_RECORDS,
//! STREAMCTL_CHAOS_KILLS, STREAMCTL_CHAOS_INPUT_MS, STREAMCTL_CHAOS_SEED.

mod common;
mod e2e_common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e_common::kafka::KafkaCluster;
use e2e_common::*;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

const KEYS: i64 = 50;
const WINDOW_MS: i64 = 10_000;
/// Event time of sequence number 0 (2026-01-01T00:00:00Z); each record is 5 ms after the previous one.
const BASE_TS: i64 = 1_767_225_600_000;
const STEP_MS: i64 = 5;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A small deterministic generator (xorshift64*), so a seed replays a run's kill schedule.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.next() % (to - from).max(1))
    }
}

fn key_of(seq: i64) -> i64 {
    (seq * 7919) % KEYS
}

fn group_of(k: i64) -> String {
    format!("g{}", k % 7)
}

fn ts_of(seq: i64) -> i64 {
    BASE_TS + seq * STEP_MS
}

fn producer(bootstrap: &str) -> BaseProducer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        // Idempotent: a retry across the broker restart must not duplicate input.
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("message.timeout.ms", "300000")
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
            p.poll(Duration::from_millis(50));
            record = Some(r);
        }
    }
    p.poll(Duration::ZERO);
}

/// Produces the input over `duration`, in order; then one record per partition far in the future (key -1)
/// so that every window of the real input closes.
fn produce_input(bootstrap: &str, records: i64, duration: Duration) {
    let p = producer(bootstrap);
    let start = Instant::now();
    for seq in 0..records {
        let k = key_of(seq);
        let value = format!(r#"{{"SEQ":{seq},"K":{k},"TS":{}}}"#, ts_of(seq));
        send(&p, "chaos-events", &k.to_string(), &value, None);
        if seq % 500 == 0 {
            let due = duration.mul_f64(seq as f64 / records as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    let end_ts = ts_of(records) + 10 * WINDOW_MS;
    for partition in 0..4 {
        let value = format!(r#"{{"SEQ":-1,"K":-1,"TS":{end_ts}}}"#);
        send(&p, "chaos-events", "-1", &value, Some(partition));
    }
    p.flush(Duration::from_secs(300)).expect("flush the input");
}

fn create_topics(bootstrap: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cluster = streamctl::connectors::kafka::Cluster::Kafka {
        bootstrap: bootstrap.into(),
        properties: vec![],
        replication_factor: 3,
    };
    let topics = [("chaos-events", 4, false), ("chaos-groups", 1, true)]
        .map(|(n, p, c)| streamctl::connectors::kafka::TopicSpec { name: n.into(), partitions: p, compacted: c });
    rt.block_on(cluster.ensure_topics(&topics)).unwrap();
    let p = producer(bootstrap);
    for k in 0..KEYS {
        send(&p, "chaos-groups", &k.to_string(), &format!(r#"{{"K":{k},"GRP":"{}"}}"#, group_of(k)), None);
    }
    p.flush(Duration::from_secs(60)).unwrap();
}

/// Every record of a topic: its JSON value.
fn read_topic(kcat: &Path, bootstrap: &str, topic: &str) -> Vec<Value> {
    let out = Command::new(kcat)
        .args(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n"])
        .args(["-X", "isolation.level=read_committed"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
        .collect()
}

#[derive(Debug, Default)]
struct Verdict {
    /// Expected records (or windows) that never arrived.
    lost: usize,
    /// Arrivals beyond the first of one record (at-least-once repeats).
    duplicates: usize,
    /// Records that are wrong: not expected at all, or a window whose count or sum is not the reference.
    wrong: usize,
    received: usize,
    expected: usize,
    /// The lowest and highest sequence number that arrived more than once (stream outputs).
    duplicated_span: Option<(i64, i64)>,
    first_problem: Option<String>,
}

impl Verdict {
    fn note(&mut self, problem: String) {
        self.first_problem.get_or_insert(problem);
    }
    fn complete(&self) -> bool {
        self.lost == 0 && self.wrong == 0
    }
}

fn int(v: &Value, field: &str) -> Option<i64> {
    v.get(field).and_then(Value::as_i64)
}

/// Stream outputs: one record per expected sequence number; `check` validates a record's other fields.
fn verdict_stream(records: &[Value], expected: &HashSet<i64>, check: impl Fn(i64, &Value) -> bool) -> Verdict {
    let mut v = Verdict { received: records.len(), expected: expected.len(), ..Default::default() };
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for r in records {
        match int(r, "seq") {
            Some(seq) if seq < 0 => {} // the closing records
            Some(seq) if expected.contains(&seq) && check(seq, r) => *seen.entry(seq).or_default() += 1,
            _ => {
                v.wrong += 1;
                v.note(format!("unexpected record {r}"));
            }
        }
    }
    v.duplicates = seen.values().map(|n| n - 1).sum();
    let repeated = seen.iter().filter(|(_, n)| **n > 1).map(|(seq, _)| *seq);
    v.duplicated_span = repeated.clone().min().zip(repeated.max());
    for seq in expected {
        if !seen.contains_key(seq) {
            v.lost += 1;
            v.note(format!("sequence number {seq} never arrived"));
        }
    }
    v
}

/// The windowed aggregate: per (key, window start) the count and the sum of sequence numbers, exactly.
fn verdict_windows(records: &[Value], reference: &BTreeMap<(i64, i64), (i64, i64)>) -> Verdict {
    let mut v = Verdict { received: records.len(), expected: reference.len(), ..Default::default() };
    let mut seen: HashMap<(i64, i64), usize> = HashMap::new();
    for r in records {
        let (Some(k), Some(start), Some(n), Some(sum)) =
            (int(r, "k"), int(r, "windowstart"), int(r, "n"), int(r, "seq_sum"))
        else {
            v.wrong += 1;
            v.note(format!("unreadable window {r}"));
            continue;
        };
        if k < 0 {
            continue;
        }
        match reference.get(&(k, start)) {
            Some(&want) if want == (n, sum) => *seen.entry((k, start)).or_default() += 1,
            Some(&(want_n, want_sum)) => {
                v.wrong += 1;
                v.note(format!("key {k} window {start}: count {n} sum {sum}, reference count {want_n} sum {want_sum}"));
            }
            None => {
                v.wrong += 1;
                v.note(format!("window not in the reference: {r}"));
            }
        }
    }
    v.duplicates = seen.values().map(|n| n - 1).sum();
    for w in reference.keys() {
        if !seen.contains_key(w) {
            v.lost += 1;
            v.note(format!("window {w:?} never arrived"));
        }
    }
    v
}

struct Reference {
    filtered: HashSet<i64>,
    joined: HashSet<i64>,
    windows: BTreeMap<(i64, i64), (i64, i64)>,
}

fn reference(records: i64) -> Reference {
    let mut windows: BTreeMap<(i64, i64), (i64, i64)> = BTreeMap::new();
    for seq in 0..records {
        let start = ts_of(seq) - ts_of(seq).rem_euclid(WINDOW_MS);
        let w = windows.entry((key_of(seq), start)).or_default();
        w.0 += 1;
        w.1 += seq;
    }
    Reference { filtered: (0..records).filter(|s| s % 3 != 0).collect(), joined: (0..records).collect(), windows }
}

fn verdicts(kcat: &Path, bootstrap: &str, reference: &Reference) -> [(&'static str, Verdict); 3] {
    let filtered = read_topic(kcat, bootstrap, "chaos.filtered");
    let joined = read_topic(kcat, bootstrap, "chaos.joined");
    let counts = read_topic(kcat, bootstrap, "chaos.counts");
    [
        (
            "chaos_filtered (stateless)",
            verdict_stream(&filtered, &reference.filtered, |seq, r| {
                int(r, "k") == Some(key_of(seq)) && int(r, "ts") == Some(ts_of(seq))
            }),
        ),
        ("chaos_counts (windowed aggregate)", verdict_windows(&counts, &reference.windows)),
        (
            "chaos_joined (stream-table join)",
            verdict_stream(&joined, &reference.joined, |seq, r| {
                r.get("grp").and_then(Value::as_str) == Some(group_of(key_of(seq)).as_str())
            }),
        ),
    ]
}

/// A `streamctl run` process and its log.
struct Worker {
    name: String,
    log: std::path::PathBuf,
    process: Option<Child>,
    starts: usize,
    /// Times the process was found to have exited by itself (then restarted, as a service manager would).
    exits: usize,
}

impl Worker {
    fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }

    /// Whether the process exited by itself since the last look.
    fn exited(&mut self) -> bool {
        let gone = self.process.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some());
        if gone {
            self.process = None;
            self.exits += 1;
        }
        gone
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.process.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Lines of its log that say it took a job over from a checkpoint.
    fn takeovers(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("restored checkpoint"))
            .count()
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// The process id holding each task's lease, by `<checkpoint topic>/<task key prefix>` (a job's tasks
/// write their records under `t<p>/` in its checkpoint topic; a job that is one task, under no prefix).
type Holders = std::sync::Arc<std::sync::Mutex<HashMap<String, u32>>>;

/// The task a checkpoint topic record belongs to: `<topic>/<key prefix>`.
fn task_of(topic: &str, key: &[u8]) -> String {
    let key = String::from_utf8_lossy(key);
    let prefix = match key.split_once('/') {
        Some((t, _)) if t.starts_with('t') && t[1..].parse::<u32>().is_ok() => format!("{t}/"),
        _ => String::new(),
    };
    format!("{topic}/{prefix}")
}

/// Watches the jobs' checkpoint topics (uncommitted reads too): who holds each task's lease (into
/// `holders`), and a message the moment a task writes a checkpoint record (anything but a lease), with the
/// writer's process id.
fn watch_checkpoints(
    bootstrap: String,
    topics: Vec<String>,
    holders: Holders,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::sync::mpsc::Receiver<(String, Option<u32>)> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let consumer: BaseConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "chaos-checkpoint-watcher")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_uncommitted")
            .set("log_level", "0")
            .create()
            .expect("create the checkpoint watcher");
        // The workers create the checkpoint topics, and grow them to a partition per task (four): wait for them.
        loop {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let exist = consumer.fetch_metadata(None, Duration::from_secs(5)).is_ok_and(|md| {
                topics.iter().all(|t| md.topics().iter().any(|m| m.name() == t && m.partitions().len() >= 4))
            });
            if exist {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let mut assignment = rdkafka::TopicPartitionList::new();
        for t in &topics {
            for p in 0..4 {
                assignment.add_partition_offset(t, p, rdkafka::Offset::Beginning).unwrap();
            }
        }
        consumer.assign(&assignment).expect("assign the checkpoint topics");
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else { continue };
            let Some(key) = m.key() else { continue };
            let task = task_of(m.topic(), key);
            if key.ends_with(b"lease") {
                // The holder is `<host>-<pid>-<start, hex>/thread-<n>`; a released lease has `expires_ms` 0.
                let lease = m.payload().and_then(|p| serde_json::from_slice::<Value>(p).ok()).unwrap_or_default();
                let released = lease.get("expires_ms").and_then(Value::as_i64) == Some(0);
                let holder = lease.get("holder").and_then(Value::as_str).map(String::from);
                let pid = holder.and_then(|h| h.split('/').next()?.rsplit('-').nth(1).and_then(|p| p.parse().ok()));
                match pid {
                    Some(_) if released => {
                        holders.lock().unwrap().remove(&task);
                    }
                    Some(pid) => {
                        holders.lock().unwrap().insert(task, pid);
                    }
                    None => {}
                }
            } else if tx.send((task.clone(), holders.lock().unwrap().get(&task).copied())).is_err() {
                return;
            }
        }
    });
    rx
}

/// The two runs share the machine's cores: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn at_least_once_workers_and_a_broker_killed_at_random_lose_nothing_and_count_nothing_twice() {
    chaos("at_least_once");
}

#[test]
fn exactly_once_workers_and_a_broker_killed_at_random_committed_output_is_the_reference() {
    chaos("exactly_once");
}

/// One chaos run with every job under `guarantee`. `exactly_once`: the committed outputs equal the
/// reference (nothing lost, nothing twice, no wrong window). `at_least_once`: nothing lost, no wrong
/// window (no input counted twice); repeated records are counted and reported.
fn chaos(guarantee: &str) {
    let Some(kcat) = tools() else { return };
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let exactly_once = guarantee == "exactly_once";
    let records = env_number("STREAMCTL_CHAOS_RECORDS", 50_000) as i64;
    let kills = env_number("STREAMCTL_CHAOS_KILLS", 6) as usize;
    let seed = env_number(
        "STREAMCTL_CHAOS_SEED",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1,
    );
    // Input is produced over this long, and the kills are spread over it.
    let input_time = Duration::from_millis(env_number("STREAMCTL_CHAOS_INPUT_MS", (records as u64 / 2).max(20_000)));
    println!("chaos: {guarantee}: {records} records over {input_time:?}, {kills} worker kills, seed {seed}");
    let mut rng = Rng(seed);

    let started = Instant::now();
    let mut kafka = KafkaCluster::three_nodes();
    let bootstrap = kafka.bootstrap();
    println!("chaos: three Kafka nodes up after {:.1} s", started.elapsed().as_secs_f64());
    create_topics(&bootstrap);
    let work = tempfile::tempdir().unwrap();
    let project = work.path().join("project");
    common::copy_dir(&root().join("tests/chaos/project"), &project, &["target"]);
    common::replace_in(
        &project,
        "streamctl_project.yml",
        "replication_factor: 3",
        &format!("replication_factor: 3\n    guarantee: {guarantee}"),
    );
    let logs = work.path().to_path_buf();
    if std::env::var_os("STREAMCTL_KAFKA_KEEP").is_some() {
        println!("chaos: worker logs kept in {}", logs.display());
        let _ = work.keep();
    }

    let spawn = |w: &mut Worker| {
        w.starts += 1;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&w.log).unwrap();
        let child = streamctl()
            .arg("--project-dir")
            .arg(&project)
            .args(["--target", "chaos", "run", "--checkpoint-interval-ms", "300"])
            .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        w.process = Some(child);
    };
    let mut workers: Vec<Worker> = ["worker-a", "worker-b"]
        .map(|n| Worker { name: n.into(), log: logs.join(format!("{n}.log")), process: None, starts: 0, exits: 0 })
        .into();
    for w in &mut workers {
        spawn(w);
    }
    let stop_watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let holders = Holders::default();
    let checkpoints = watch_checkpoints(
        bootstrap.clone(),
        ["chaos_filtered", "chaos_counts", "chaos_joined"].map(|m| format!("_streamctl.chaos.{m}.checkpoints")).into(),
        holders.clone(),
        stop_watching.clone(),
    );

    let producer_bootstrap = bootstrap.clone();
    let producing = std::thread::spawn(move || produce_input(&producer_bootstrap, records, input_time));

    // The kills, spread over the input time, take turns between three kinds:
    // - at a random moment, a random worker;
    // - during a checkpoint: the moment a job's checkpoint record appears, the worker holding its lease;
    // - during a hand-over: one worker, then the other as soon as it has restored a job the first one held.
    // Killed workers restart after a random pause; the broker restart comes after half of the kills.
    let broker_restart_at = kills / 2;
    let mut kill_log = Vec::new();
    let pace = (input_time.as_millis() as u64 / kills.max(1) as u64).max(1_000);
    let wait_limit = Duration::from_secs(60);
    for i in 0..kills {
        std::thread::sleep(rng.millis(pace / 4, pace));
        for w in &mut workers {
            if w.exited() {
                spawn(w);
            }
        }
        let at = |started: Instant| format!("{:.1}s", started.elapsed().as_secs_f64());
        match i % 3 {
            0 => {
                let victim = (rng.next() % 2) as usize;
                workers[victim].kill();
                kill_log.push(format!("{} {} (random moment)", at(started), workers[victim].name));
                std::thread::sleep(rng.millis(0, 4_000));
                spawn(&mut workers[victim]);
            }
            1 => {
                while checkpoints.try_recv().is_ok() {}
                let deadline = Instant::now() + wait_limit;
                let mut done = false;
                while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                    let Ok((topic, Some(pid))) = checkpoints.recv_timeout(left) else { continue };
                    if let Some(w) = workers.iter_mut().find(|w| w.pid() == Some(pid)) {
                        w.kill();
                        let job = topic.trim_start_matches("_streamctl.chaos.").replacen(".checkpoints/", " task ", 1);
                        let job = job.trim_end_matches('/');
                        kill_log.push(format!("{} {} (writing a checkpoint of {job})", at(started), w.name));
                        std::thread::sleep(rng.millis(0, 2_000));
                        spawn(w);
                        done = true;
                        break;
                    }
                }
                if !done {
                    // Jobs with nothing new to process write no checkpoints (the input may have ended).
                    let victim = (rng.next() % 2) as usize;
                    workers[victim].kill();
                    kill_log.push(format!(
                        "{} {} (random moment: no checkpoint within {wait_limit:?})",
                        at(started),
                        workers[victim].name
                    ));
                    std::thread::sleep(rng.millis(0, 2_000));
                    spawn(&mut workers[victim]);
                }
            }
            _ => {
                // The first victim is a worker holding a lease, so that the other has a job to take over
                // (just after a kill the live workers may still be waiting for the dead one's leases).
                let deadline = Instant::now() + wait_limit;
                let first = loop {
                    let held: Vec<u32> = holders.lock().unwrap().values().copied().collect();
                    let leases_of = |w: &Worker| held.iter().filter(|p| Some(**p) == w.pid()).count();
                    match leases_of(&workers[0]).cmp(&leases_of(&workers[1])) {
                        std::cmp::Ordering::Greater => break 0,
                        std::cmp::Ordering::Less => break 1,
                        std::cmp::Ordering::Equal if leases_of(&workers[0]) > 0 => break (rng.next() % 2) as usize,
                        std::cmp::Ordering::Equal => {}
                    }
                    assert!(Instant::now() < deadline, "no worker took a lease within {wait_limit:?}");
                    std::thread::sleep(Duration::from_millis(50));
                };
                let second = 1 - first;
                let (first_pid, second_pid) = (workers[first].pid(), workers[second].pid());
                let held_by_first: Vec<String> = holders
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(_, p)| Some(**p) == first_pid)
                    .map(|(t, _)| t.clone())
                    .collect();
                workers[first].kill();
                // The moment the survivor claims one of the dead worker's leases, before it has restored the job.
                let deadline = Instant::now() + wait_limit;
                let taken = || {
                    let h = holders.lock().unwrap();
                    held_by_first.iter().any(|t| h.get(t).copied() == second_pid)
                };
                while !taken() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                assert!(
                    taken(),
                    "{} took none of {held_by_first:?} over within {wait_limit:?} after {} was killed\n{}",
                    workers[second].name,
                    workers[first].name,
                    workers[second].log_tail(20)
                );
                workers[second].kill();
                kill_log.push(format!(
                    "{} {} then {} (taking a job over)",
                    at(started),
                    workers[first].name,
                    workers[second].name
                ));
                std::thread::sleep(rng.millis(0, 3_000));
                spawn(&mut workers[first]);
                spawn(&mut workers[second]);
            }
        }
        if i == broker_restart_at {
            kafka.kill_node(1);
            println!("chaos: Kafka node 2 killed at {:.1} s", started.elapsed().as_secs_f64());
            std::thread::sleep(Duration::from_secs(5));
            kafka.restart_node(1);
            println!("chaos: Kafka node 2 back at {:.1} s", started.elapsed().as_secs_f64());
        }
    }
    if kills == 0 {
        kafka.kill_node(1);
        std::thread::sleep(Duration::from_secs(5));
        kafka.restart_node(1);
    }
    producing.join().expect("the input producer failed");
    println!("chaos: input produced after {:.1} s", started.elapsed().as_secs_f64());
    for k in &kill_log {
        println!("chaos: kill at {k}");
    }

    let reference = reference(records);
    let deadline = Instant::now() + Duration::from_secs(env_number("STREAMCTL_CHAOS_DRAIN_S", 300));
    let results = loop {
        let results = verdicts(&kcat, &bootstrap, &reference);
        if results.iter().all(|(_, v)| v.complete()) || Instant::now() > deadline {
            break results;
        }
        for w in &mut workers {
            if w.exited() {
                spawn(w);
            }
        }
        std::thread::sleep(Duration::from_secs(3));
    };
    println!("chaos: outputs checked after {:.1} s", started.elapsed().as_secs_f64());
    stop_watching.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in &mut workers {
        w.exited();
        w.kill();
        println!(
            "chaos: {} started {} times, exited by itself {} times, restored a job {} times",
            w.name,
            w.starts,
            w.exits,
            w.takeovers()
        );
    }
    for (model, v) in &results {
        println!(
            "chaos: {guarantee}: {model}: expected {}, received {}, lost {}, duplicates {}{}, wrong {}",
            v.expected,
            v.received,
            v.lost,
            v.duplicates,
            v.duplicated_span.map(|(a, b)| format!(" (sequence numbers {a} to {b})")).unwrap_or_default(),
            v.wrong
        );
    }
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, v)| !v.complete() || (exactly_once && v.duplicates > 0))
        .map(|(m, v)| match &v.first_problem {
            Some(p) => format!("{m}: {p}"),
            None => format!("{m}: {} duplicates under exactly_once", v.duplicates),
        })
        .collect();
    if !failed.is_empty() {
        panic!(
            "chaos verdict ({guarantee}, seed {seed}): {failed:#?}\n--- worker-a\n{}\n--- worker-b\n{}\n{}",
            workers[0].log_tail(40),
            workers[1].log_tail(40),
            kafka.logs()
        );
    }
}
