//! The example's README, "Running it on a local Kafka", on Apache Kafka: `seed --create-topics`
//! creates the source topics and loads the sample data, `apply` and `run --until-caught-up`
//! process it, and the outputs (read with kcat) equal what `tests/e2e/expected.py` computes. The
//! JSON sources' records as kcat reads them are the sample data files' lines. The LOGON records
//! are Avro in the Confluent wire format: a foreign client (confluent-kafka) reads them and
//! fastavro decodes them with the schema in the example's `schemas/` (the local target's
//! registry), checking the id in each frame; they are the sample lines, except the two malformed
//! lines, which no Avro schema takes and which are produced as they are. Without
//! `--create-topics`, a missing source topic is an error that names it.
//!
//! Needs Java, Kafka's jars, kcat and python3 with confluent-kafka and fastavro, like the other
//! e2e tests (STREAMCTL_E2E=1 makes their absence a failure).

mod common;
mod e2e_common;

use std::process::Output;

use e2e_common::kafka::KafkaCluster;
use e2e_common::*;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The LOGON records as a foreign client reads them: the values in Avro decoded by fastavro with
/// the registered schema (after checking each frame's magic byte and id), and the values that
/// are not Avro as text.
/// `id`: the id every Avro frame must carry.
fn foreign_logons(bootstrap: &str, id: i32) -> (Vec<serde_json::Value>, Vec<String>) {
    let (_, schema) = logon_schema();
    let client = root().join("tests/avro/confluent_io.py");
    let records = python_lines(
        client.to_str().unwrap(),
        &["consume", bootstrap, "http://127.0.0.1:9", LOGON_TOPIC, "raw-values"],
        None,
    );
    let (avro, other): (Vec<String>, Vec<String>) = records
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["value"].as_str().unwrap().to_string())
        .partition(|hex| hex.starts_with("00"));
    let fastavro = root().join("tests/avro/fastavro_io.py");
    let decoded = python_lines(
        fastavro.to_str().unwrap(),
        &["decode"],
        Some(&serde_json::json!({"schema": schema, "schema_id": id, "values": avro})),
    );
    let hex = |h: &String| (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect();
    (
        decoded.iter().map(|l| serde_json::from_str(l).unwrap()).collect(),
        other.iter().map(|h| String::from_utf8(hex(h)).unwrap()).collect(),
    )
}

#[test]
fn the_readme_sequence_seed_apply_run_on_kafka() {
    let Some(kcat) = tools() else { return };
    if !python_avro_client() {
        return;
    }
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
    for (topic, file) in [("ora-ogg-SOE-ORDERS-json", "orders.jsonl"), ("ora-ogg-SOE-CUSTOMERS", "customers.jsonl")] {
        let parse = |l: &str| serde_json::from_str(l).unwrap_or(serde_json::Value::Null).to_string();
        let mut lines: Vec<String> = sample(file).iter().map(|l| parse(l)).collect();
        let mut records: Vec<String> =
            kcat_consume(&kcat, &bootstrap, topic).into_iter().map(|(_, v)| v.to_string()).collect();
        lines.sort();
        records.sort();
        assert_eq!(records, lines, "{topic}: {}", text(&seeded));
    }
    // LOGON: the lines with an int LOGON_ID and CUSTOMER_ID and a string LOGON_DATE, in Avro;
    // the two others as they are.
    let (decoded, not_avro) = foreign_logons(&bootstrap, logon_schema().0);
    let fits =
        |v: &serde_json::Value| v["LOGON_ID"].is_i64() && v["CUSTOMER_ID"].is_i64() && v["LOGON_DATE"].is_string();
    let (mut rows, mut malformed): (Vec<String>, Vec<String>) =
        sample("logon.jsonl").into_iter().partition(|l| fits(&serde_json::from_str(l).unwrap()));
    assert_eq!(malformed.len(), 2, "{malformed:?}");
    // Keys in order: fastavro_io.py sorts them.
    let canon = |v: &serde_json::Value| {
        serde_json::to_string(&v.as_object().unwrap().iter().collect::<std::collections::BTreeMap<_, _>>()).unwrap()
    };
    let mut got: Vec<String> = decoded.iter().map(canon).collect();
    rows = rows.iter().map(|l| canon(&serde_json::from_str(l).unwrap())).collect();
    let mut not_avro = not_avro;
    for v in [&mut rows, &mut got, &mut malformed, &mut not_avro] {
        v.sort();
    }
    assert_eq!(got.len(), 299, "{}", text(&seeded));
    assert_eq!(got, rows, "{}", text(&seeded));
    assert_eq!(not_avro, malformed);

    let apply = run(&["apply", "--auto-approve"]);
    assert!(apply.status.success(), "{}", text(&apply));
    let out = run(&["run", "--until-caught-up"]);
    assert!(out.status.success(), "{}", text(&out));
    let problems = check_outputs(&kcat, &bootstrap, &expected());
    assert!(problems.is_empty(), "{problems:#?}\n--- seed\n{}\n--- run\n{}", text(&seeded), text(&out));
}

/// On a target whose Confluent-API registry lacks the LOGON subject, `seed` registers the schema
/// of the example's `schemas/` there (as a producer's serializer does) and frames the records
/// with the id that registry gave it; `apply` and `run` with that registry read them.
#[test]
fn seed_registers_the_logon_schema_in_the_targets_confluent_registry() {
    let Some(kcat) = tools() else { return };
    if !python_avro_client() {
        return;
    }
    let (_registry, url) = start_registry();
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    let project = tempfile::tempdir().unwrap();
    common::copy_dir(&root().join("example-project"), project.path(), &["target"]);
    let run = |args: &[&str]| {
        streamctl()
            .args(args)
            .arg("--project-dir")
            .arg(project.path())
            .args(["--target", "local", "--schema-registry-url", &url])
            .env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap)
            .env_remove("STREAMCTL_BOOTSTRAP_SERVERS")
            .env_remove("STREAMCTL_TARGET")
            .output()
            .unwrap()
    };
    let seeded = run(&["seed", "--create-topics"]);
    assert!(seeded.status.success(), "{}", text(&seeded));
    let client = root().join("tests/avro/confluent_io.py");
    let latest = python_lines(client.to_str().unwrap(), &["latest", &url, LOGON_SUBJECT], None).concat();
    let id: i32 = latest.parse().unwrap();
    // The registry's own id, not the one the file registry gives the schema; the schema
    // registered is the example's (GoldenGate's), not one made from the declared columns.
    assert_ne!(id, logon_schema().0);
    let registered: serde_json::Value = serde_json::from_str(
        &ureq::get(&format!("{url}/subjects/{LOGON_SUBJECT}/versions/latest"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap(),
    )
    .unwrap();
    let registered: serde_json::Value = serde_json::from_str(registered["schema"].as_str().unwrap()).unwrap();
    assert_eq!(registered, logon_schema().1);
    let (decoded, not_avro) = foreign_logons(&bootstrap, id);
    assert_eq!((decoded.len(), not_avro.len()), (299, 2), "{}", text(&seeded));

    let apply = run(&["apply", "--auto-approve"]);
    assert!(apply.status.success(), "{}", text(&apply));
    let out = run(&["run", "--until-caught-up"]);
    assert!(out.status.success(), "{}", text(&out));
    let problems = check_outputs(&kcat, &bootstrap, &expected());
    assert!(problems.is_empty(), "{problems:#?}\n--- run\n{}", text(&out));
}
