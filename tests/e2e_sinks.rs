//! Native sinks against Apache Kafka (started by the test, see `e2e_common::kafka`): the
//! example's file sink, delivered by a long-running `streamctl run` that is killed with SIGKILL
//! mid-delivery and restarted. Afterwards the closed files, partition by partition, hold
//! exactly the records of the model's topic as kcat reads them (read_committed): none lost,
//! none repeated, no file rewritten.
//!
//! Needs Java, Kafka's jars and kcat, like the other end-to-end tests.

mod common;
mod e2e_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e_common::kafka::KafkaCluster;
use e2e_common::*;
use serde_json::Value;

const TOPIC: &str = "soe.logon-prime-loyal";

fn closed_files(dir: &Path) -> SinkFiles {
    let mut out: SinkFiles = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".jsonl") else { continue };
        let n: Vec<i64> = stem.trim_start_matches('p').split('-').map(|x| x.parse().unwrap()).collect();
        let rows =
            std::fs::read_to_string(e.path()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        out.entry(n[0]).or_default().push((n[1], n[2], rows));
    }
    for files in out.values_mut() {
        files.sort_by_key(|f| f.0);
    }
    out
}

#[test]
fn file_sink_survives_sigkill_without_losing_or_repeating_records() {
    let Some(kcat) = tools() else { return };
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    let project = tempfile::tempdir().unwrap();
    common::copy_dir(&root().join("example-project"), project.path(), &["target"]);
    // Small files closed every second, so the kill lands between closed files and open ones.
    common::replace_in(
        project.path(),
        "sinks/downstream.yml",
        "format: jsonl",
        "format: jsonl\n      roll_bytes: 1500\n      roll_seconds: 1",
    );
    let dir = project.path().join("target/sinks/prime_logons");
    create_source_topics(&bootstrap);
    produce_samples(&kcat, &bootstrap, 0.0..0.5);
    let logs = tempfile::tempdir().unwrap();
    let worker = |name: &str| {
        let log = std::fs::File::create(logs.path().join(name)).unwrap();
        Killed(
            streamctl()
                .args(["run", "--project-dir"])
                .arg(project.path())
                .args(["--target", "local", "--bootstrap-servers", &bootstrap, "--checkpoint-interval-ms", "500"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    };
    let log = |n: &str| std::fs::read_to_string(logs.path().join(n)).unwrap_or_default();

    let mut first = worker("first.log");
    let deadline = Instant::now() + Duration::from_secs(120);
    while closed_files(&dir).is_empty() {
        assert!(Instant::now() < deadline, "no file closed within 120 s\n{}", log("first.log"));
        std::thread::sleep(Duration::from_millis(200));
    }
    // SIGKILL while delivering: no chance to close the open files or commit.
    first.0.kill().unwrap();
    let _ = first.0.wait();
    let before = closed_files(&dir);

    produce_samples(&kcat, &bootstrap, 0.5..1.0);
    let mut second = worker("second.log");
    let expected_rows = expected()["logon_prime_loyal"].len();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let topic = topic_rows_by_partition(&kcat, &bootstrap, TOPIC);
        let in_topic: usize = topic.values().map(Vec::len).sum();
        if in_topic >= expected_rows && delivered(&closed_files(&dir)) == topic {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the files do not match {TOPIC} after 180 s ({in_topic} records in the topic)\n--- first (killed)\n{}\n--- second\n{}",
            log("first.log"),
            log("second.log")
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // SIGTERM: the sink closes what is open and the process exits 0.
    assert!(Command::new("kill").args(["-TERM", &second.0.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = second.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the worker did not stop within 60 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "exit status after SIGTERM: {status}\n{}", log("second.log"));

    let after = closed_files(&dir);
    // Every file closed before the kill is still there, unchanged.
    for (p, fs) in &before {
        for f in fs {
            assert!(
                after[p].contains(f),
                "partition {p}: file {:?} changed or went away after the restart",
                (f.0, f.1)
            );
        }
    }
    assert_eq!(delivered(&after), topic_rows_by_partition(&kcat, &bootstrap, TOPIC));
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The records are the model's: every expected prime logon is in the files.
    let rows: Vec<Value> = delivered(&after).into_values().flatten().collect();
    let missing = missing(&expected()["logon_prime_loyal"], &rows);
    assert!(missing.is_empty(), "not delivered: {missing:#?}");
    let count = |f: &SinkFiles| f.values().map(Vec::len).sum::<usize>();
    eprintln!(
        "{} files closed before the kill, {} after the restart, {} rows; restart log:\n{}",
        count(&before),
        count(&after),
        rows.len(),
        log("second.log").lines().filter(|l| l.contains("sink")).collect::<Vec<_>>().join("\n")
    );
}

/// A bounded run's sinks read their model's topic to its end, committed records only. A
/// transaction left open on the topic holds them back until it ends; they say so, naming the
/// partition and the offset it starts at, instead of waiting without a word, and finish once it
/// is aborted.
#[test]
fn a_bounded_sink_says_which_open_transaction_it_waits_for() {
    use streamctl::connectors::producer::{OutRecord, RecordProducer};
    let Some(kcat) = tools() else { return };
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    let project = tempfile::tempdir().unwrap();
    common::copy_dir(&root().join("example-project"), project.path(), &["target"]);
    create_source_topics(&bootstrap);
    produce_samples(&kcat, &bootstrap, 0.0..1.0);
    let bounded = |log: &Path| {
        Killed(
            streamctl()
                .args(["run", "--until-caught-up", "--select", "+logon_prime_loyal", "--project-dir"])
                .arg(project.path())
                .args(["--target", "local", "--bootstrap-servers", &bootstrap])
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap())
                .spawn()
                .unwrap(),
        )
    };
    let logs = tempfile::tempdir().unwrap();
    let (first_log, second_log) = (logs.path().join("first.log"), logs.path().join("second.log"));
    let status = bounded(&first_log).0.wait().unwrap();
    assert!(status.success(), "{}", std::fs::read_to_string(&first_log).unwrap());

    // Another writer's transaction, open on partition 1 of the model's topic.
    let client = streamctl::connectors::kafka::Cluster::Kafka {
        bootstrap: bootstrap.clone(),
        properties: vec![],
        replication_factor: 1,
    }
    .client_config();
    let start = {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let c: BaseConsumer = client.create().unwrap();
        c.fetch_watermarks(TOPIC, 1, Duration::from_secs(10)).unwrap().1
    };
    let open = RecordProducer::transactional(&client, "left-open", 120_000).unwrap();
    open.begin().unwrap();
    let record = OutRecord { partition: Some(1), key: None, value: Some(b"{}"), timestamp: 0 };
    open.send(TOPIC, record, None).unwrap();
    open.flush().unwrap();

    let mut second = bounded(&second_log);
    let said = || std::fs::read_to_string(&second_log).unwrap_or_default();
    let wanted = format!("a transaction is still open on {TOPIC} partition 1 from offset {start}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !said().contains(&wanted) {
        assert!(second.0.try_wait().unwrap().is_none(), "the run ended past an open transaction:\n{}", said());
        assert!(Instant::now() < deadline, "no word of the open transaction (`{wanted}`) in 60 s:\n{}", said());
        std::thread::sleep(Duration::from_millis(200));
    }
    open.abort();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = second.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the run did not end once the transaction was aborted:\n{}", said());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "{}", said());
}
