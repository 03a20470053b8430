//! The example's README, "Running it on a local Kafka", on Apache Kafka: `seed --create-topics`
//! creates the source topics and loads the sample data, `apply` and `run --until-caught-up`
//! process it, and the outputs (read with kcat) equal what `tests/e2e/expected.py` computes. The
//! sources' records as kcat reads them are the sample data files' lines. Without
//! `--create-topics`, a missing source topic is an error that names it.
//!
//! Needs Java, Kafka's jars and kcat, like the other e2e tests (STREAMCTL_E2E=1 makes their
//! absence a failure).

mod common;
mod e2e_common;

use std::process::Output;

use e2e_common::kafka::KafkaCluster;
use e2e_common::*;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn the_readme_sequence_seed_apply_run_on_kafka() {
    let Some(kcat) = tools() else { return };
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    let project = tempfile::tempdir().unwrap();
    common::copy_dir(&root().join("example-project"), project.path(), &["target"]);
    let run = |args: &[&str]| {
        streamctl()
            .args(args)
            .arg("--project-dir")
            .arg(project.path())
            .args(["--target", "local"])
            .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
            .env_remove("STREAMCTL_BOOTSTRAP_SERVERS")
            .env_remove("STREAMCTL_TARGET")
            .output()
            .unwrap()
    };

    // No topics yet: without --create-topics, seed says which are missing and writes nothing.
    let refused = run(&["seed"]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("ora-ogg-SOE-ORDERS-json"), "{}", text(&refused));
    assert!(text(&refused).contains("--create-topics"), "{}", text(&refused));

    let seeded = run(&["seed", "--create-topics"]);
    assert!(seeded.status.success(), "{}", text(&seeded));
    for (topic, file) in [
        ("ora-ogg-SOE-ORDERS-json", "orders.jsonl"),
        ("ora-ogg-SOE-LOGON-json", "logon.jsonl"),
        ("ora-ogg-SOE-CUSTOMERS", "customers.jsonl"),
    ] {
        let parse = |l: &str| serde_json::from_str(l).unwrap_or(serde_json::Value::Null).to_string();
        let mut lines: Vec<String> = sample(file).iter().map(|l| parse(l)).collect();
        let mut records: Vec<String> =
            kcat_consume(&kcat, &bootstrap, topic).into_iter().map(|(_, v)| v.to_string()).collect();
        lines.sort();
        records.sort();
        assert_eq!(records, lines, "{topic}: {}", text(&seeded));
    }

    let apply = run(&["apply", "--auto-approve"]);
    assert!(apply.status.success(), "{}", text(&apply));
    let out = run(&["run", "--until-caught-up"]);
    assert!(out.status.success(), "{}", text(&out));
    let problems = check_outputs(&kcat, &bootstrap, &expected());
    assert!(problems.is_empty(), "{problems:#?}\n--- seed\n{}\n--- run\n{}", text(&seeded), text(&out));
}
