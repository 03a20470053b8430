//! Tasks on Apache Kafka (a broker process started by the test): `tests/tasks/project` reads a 6-partition
//! input; three `streamctl run` workers share the tasks through the jobs' consumer groups, each owning some
//! (as `status` shows); one is killed with SIGKILL and its tasks move to the others once its session times
//! out; a fourth joins and tasks rebalance to it. The outputs, read `read_committed`, equal a reference
//! computed here from the input alone: every filtered row once (exactly-once), every key's and every
//! group's final aggregate exact (also the aggregate grouped by a column other than the key, whose two
//! stages of tasks around its repartition topic move like the others).
//!
//! Needs Java, Kafka's jars (`tests/kafka/fetch.sh`) and kcat, like `e2e_run`.

mod common;
mod e2e_common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use e2e_common::*;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

const RECORDS: i64 = 3_000;
const KEYS: i64 = 24;
const SESSION_TIMEOUT: Duration = Duration::from_millis(streamctl::runtime::group::SESSION_TIMEOUT_MS);

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn group_of(k: i64) -> String {
    format!("g{}", k % 5)
}

/// Sequence numbers `range` into the input, keyed by K (so partitioned by it).
fn produce(bootstrap: &str, range: std::ops::Range<i64>) {
    let p: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .create()
        .expect("create the input producer");
    for seq in range {
        let k = (seq * 7) % KEYS;
        let value = format!(r#"{{"SEQ":{seq},"K":{k},"G":"{}","TS":{}}}"#, group_of(k), 1_767_225_600_000 + seq);
        let key = k.to_string();
        loop {
            match p.send(BaseRecord::to("tasks-events").key(&key).payload(&value)) {
                Ok(()) => break,
                Err((_, _)) => {
                    p.poll(Duration::from_millis(10));
                }
            }
        }
    }
    p.flush(Duration::from_secs(60)).expect("flush the input");
}

/// What is wrong with the outputs, against the reference (empty: they are the reference).
fn problems(kcat: &Path, bootstrap: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Every filtered row exactly once.
    let mut want: BTreeMap<(i64, i64), usize> = BTreeMap::new();
    for seq in (0..RECORDS).filter(|s| s % 3 != 0) {
        *want.entry((seq, (seq * 7) % KEYS)).or_default() += 1;
    }
    let mut got: BTreeMap<(i64, i64), usize> = BTreeMap::new();
    let rows = kcat_consume_committed(kcat, bootstrap, "tasks.filtered");
    for (_, v) in &rows {
        *got.entry((field(v, "SEQ").as_i64().unwrap_or(-1), field(v, "K").as_i64().unwrap_or(-1))).or_default() += 1;
    }
    if got != want {
        out.push(format!("tasks.filtered: first row {:?}", rows.first()));
        let missing = want.keys().filter(|k| !got.contains_key(k)).count();
        let twice = got.values().filter(|n| **n > 1).count();
        out.push(format!(
            "tasks_filtered: {} rows, want {}: {missing} missing, {twice} repeated",
            got.len(),
            want.len()
        ));
    }
    // The last row of each group is its aggregate over the whole input.
    let aggregates = |topic: &str, field: &str, group: &dyn Fn(i64) -> String| {
        let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for seq in 0..RECORDS {
            let e = want.entry(group((seq * 7) % KEYS)).or_default();
            e.0 += 1;
            e.1 += seq;
        }
        let mut got: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for (_, v) in kcat_consume_committed(kcat, bootstrap, topic) {
            let g = match self::field(&v, field) {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            got.insert(
                g,
                (self::field(&v, "N").as_i64().unwrap_or(-1), self::field(&v, "SEQ_SUM").as_i64().unwrap_or(-1)),
            );
        }
        (got != want).then(|| format!("{topic}: got {got:?}, want {want:?}"))
    };
    out.extend(aggregates("tasks.totals", "K", &|k| k.to_string()));
    out.extend(aggregates("tasks.by-group", "G", &|k| group_of(k)));
    out
}

#[test]
fn tasks_spread_over_workers_move_on_a_kill_and_rebalance_to_a_new_worker() {
    let Some(kcat) = tools() else { return };
    let setup = KafkaProject::start("tests/tasks/project", "tasks-events", 6);
    let (bootstrap, work) = (setup.bootstrap.clone(), &setup.work);
    let cmd = |args: &[&str]| setup.cmd(args);
    let applied = cmd(&["apply", "--auto-approve"]).output().unwrap();
    assert!(applied.status.success(), "{}", text(&applied));
    produce(&bootstrap, 0..RECORDS / 2);

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
    let logs = |n: usize| {
        (0..n)
            .map(|i| format!("--- worker {i}\n{}", std::fs::read_to_string(log_path(i)).unwrap_or_default()))
            .collect::<String>()
    };
    // Who holds each task of the stateless job, by process id, as `status` shows it.
    let holders = || -> BTreeMap<String, u32> {
        let out = cmd(&["status", "--format", "json"]).output().unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let job = v["jobs"].as_array().and_then(|j| j.iter().find(|j| j["model"] == "tasks_filtered").cloned());
        let tasks = job.and_then(|j| j["tasks"].as_array().cloned()).unwrap_or_default();
        tasks.iter().filter_map(|t| Some((t["task"].as_str()?.to_string(), pid_of(t["worker"].as_str()?)?))).collect()
    };
    let wait_for = |what: &str, limit: Duration, n: usize, ok: &dyn Fn(&BTreeMap<String, u32>) -> bool| {
        let deadline = Instant::now() + limit;
        loop {
            let h = holders();
            if ok(&h) {
                return h;
            }
            assert!(Instant::now() < deadline, "{what} within {limit:?}; tasks held: {h:?}\n{}", logs(n));
            std::thread::sleep(Duration::from_millis(300));
        }
    };

    let mut workers = vec![spawn(0), spawn(1), spawn(2)];
    let pids: Vec<u32> = workers.iter().map(|w| w.0.id()).collect();
    let spread = |h: &BTreeMap<String, u32>, among: &[u32]| {
        h.len() == 6 && h.values().all(|p| among.contains(p)) && among.iter().all(|p| h.values().any(|q| q == p))
    };
    let started = Instant::now();
    let h = wait_for("the six tasks spread over the three workers", Duration::from_secs(120), 3, &|h| spread(h, &pids));
    println!("tasks: six tasks over three workers after {:.1} s: {h:?}", started.elapsed().as_secs_f64());
    let shown = cmd(&["status"]).output().unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    println!("tasks: `streamctl status` said:\n{shown}");
    assert!(shown.contains("tasks_filtered tasks:") && shown.contains("/thread-"), "{shown}");

    // SIGKILL: the dead worker's tasks move to the others once its session times out.
    let victim = pids[0];
    let moved: BTreeSet<String> = h.iter().filter(|(_, p)| **p == victim).map(|(t, _)| t.clone()).collect();
    workers[0].0.kill().unwrap();
    let _ = workers[0].0.wait();
    let killed_at = Instant::now();
    let h = wait_for("the killed worker's tasks moved", SESSION_TIMEOUT + Duration::from_secs(60), 3, &|h| {
        spread(h, &pids[1..])
    });
    let took = killed_at.elapsed();
    println!(
        "tasks: {moved:?} of the killed worker moved in {:.1} s (session timeout {SESSION_TIMEOUT:?}): {h:?}",
        took.as_secs_f64()
    );

    // A fourth worker joins: tasks rebalance to it.
    workers.push(spawn(3));
    let all: Vec<u32> = workers[1..].iter().map(|w| w.0.id()).collect();
    let joined_at = Instant::now();
    let h = wait_for("tasks rebalanced to the new worker", Duration::from_secs(120), 4, &|h| spread(h, &all));
    println!("tasks: rebalanced to the fourth worker in {:.1} s: {h:?}", joined_at.elapsed().as_secs_f64());

    produce(&bootstrap, RECORDS / 2..RECORDS);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p = problems(&kcat, &bootstrap);
        if p.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "the outputs are not the reference: {p:#?}\n{}", logs(4));
        std::thread::sleep(Duration::from_secs(1));
    }
    // How the runs cut the jobs: the aggregate grouped by another column than the key in two stages.
    let cut: Vec<String> = logs(1)
        .lines()
        .filter(|l| l.starts_with('[') && (l.contains(" tasks") || l.contains("runs as one task")))
        .map(str::to_string)
        .collect();
    println!("tasks: worker 0 cut the jobs so:\n{}", cut.join("\n"));
    let two_stages = "[tasks_by_group] 6 tasks re-keying each partition of tasks-events by the GROUP BY into \
                      _streamctl.tasks.tasks_by_group.repartition, then 6 tasks aggregating";
    assert!(cut.iter().any(|l| l.starts_with(two_stages)), "{two_stages} not in:\n{}", logs(1));
    let restored = logs(4).matches("restored checkpoint").count();
    println!("tasks: outputs equal the reference; {restored} task restores from checkpoints");
    assert!(restored > 0, "no task was restored from a checkpoint:\n{}", logs(4));
}

/// A bounded run (`run --until-caught-up`) ends once every task of each job has caught up, not only
/// the tasks the group gave it: while another member of the stateless job's task group (a plain
/// consumer here, standing for a worker that holds partitions but does not run them) holds half of the
/// tasks, the run keeps waiting after its own half caught up; once that member leaves, the run takes
/// its tasks over, ends, and the outputs are the reference.
#[test]
fn a_bounded_run_waits_for_the_tasks_another_member_holds() {
    let Some(kcat) = tools() else { return };
    let setup = KafkaProject::start("tests/tasks/project", "tasks-events", 6);
    let (bootstrap, work) = (setup.bootstrap.clone(), &setup.work);
    let cmd = |args: &[&str]| setup.cmd(args);
    let applied = cmd(&["apply", "--auto-approve"]).output().unwrap();
    assert!(applied.status.success(), "{}", text(&applied));
    produce(&bootstrap, 0..RECORDS);

    // The other member: joins the stateless job's task group first, so it holds every task, and keeps
    // polling (giving some up in the rebalance when the run joins) until told to leave.
    let group = format!("{}.tasks", streamctl::compile::names::consumer_group("tasks", "tasks_filtered"));
    let leave = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let held = std::sync::Arc::new(std::sync::Mutex::new(0usize));
    let member = {
        let (bootstrap, leave, held) = (bootstrap.clone(), leave.clone(), held.clone());
        std::thread::spawn(move || {
            use rdkafka::consumer::{BaseConsumer, Consumer};
            let c: BaseConsumer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("group.id", &group)
                .set("partition.assignment.strategy", "cooperative-sticky")
                .set("session.timeout.ms", "10000")
                .set("enable.auto.commit", "false")
                .create()
                .expect("create the other member");
            c.subscribe(&["tasks-events"]).expect("subscribe the other member");
            while !leave.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = c.poll(Duration::from_millis(100));
                let n = c.assignment().map(|a| a.count()).unwrap_or(0);
                if c.assignment().is_ok() {
                    let _ = c.pause(&c.assignment().unwrap());
                }
                *held.lock().unwrap() = n;
            }
            c.unsubscribe();
            let _ = c.poll(Duration::from_millis(500));
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while *held.lock().unwrap() < 6 {
        assert!(Instant::now() < deadline, "the other member did not get the six partitions");
        std::thread::sleep(Duration::from_millis(100));
    }

    let log_path = work.path().join("bounded.log");
    let mut run = Killed(
        cmd(&["run", "--until-caught-up", "--checkpoint-interval-ms", "300", "--threads", "2"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    // The run's own tasks of the stateless job catch up...
    let deadline = Instant::now() + Duration::from_secs(120);
    while !log().lines().any(|l| l.starts_with("[tasks_filtered] task p") && l.contains("caught up")) {
        assert!(Instant::now() < deadline, "none of the run's tasks caught up:\n{}", log());
        assert!(run.0.try_wait().unwrap().is_none(), "the run ended early:\n{}", log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let member_held = *held.lock().unwrap();
    assert!((1..6).contains(&member_held), "the other member should hold some tasks, holds {member_held}:\n{}", log());
    // ...and the run waits for the others (it ended here before: its own tasks were all it counted).
    std::thread::sleep(Duration::from_secs(5));
    assert!(run.0.try_wait().unwrap().is_none(), "the run ended without the other member's tasks:\n{}", log());

    leave.store(true, std::sync::atomic::Ordering::SeqCst);
    member.join().unwrap();
    let status = run.exited_within(Duration::from_secs(120));
    let status = status.unwrap_or_else(|| panic!("the run did not end after the other member left:\n{}", log()));
    assert!(status.success(), "{}", log());
    let p = problems(&kcat, &bootstrap);
    assert!(p.is_empty(), "the outputs are not the reference: {p:#?}\n{}", log());
    println!("tasks: the bounded run waited for the {member_held} tasks the other member held, then ran them");
}
