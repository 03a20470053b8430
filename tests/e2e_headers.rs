//! Record headers on Apache Kafka: a foreign producer (confluent-kafka, librdkafka underneath)
//! writes clicks with headers; `streamctl run` reads them into columns (`header: trace-id`,
//! `headers: true`) and writes headers from columns (`config(headers=...)`); a foreign consumer
//! (confluent-kafka) reads the headers streamctl wrote. A header that is not UTF-8 for a STRING
//! column sends its record to the dead-letter topic with the reason.
//! Needs Java, Kafka's jars, kcat and python3 with confluent-kafka (`.ci/run` installs them).

mod common;
mod e2e_common;

use std::path::Path;
use std::process::Command;

use e2e_common::kafka::KafkaCluster;
use e2e_common::*;
use serde_json::{json, Value};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/headers");
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/avro/confluent_io.py");
/// confluent_io.py takes a registry URL; JSON values never ask it.
const NO_REGISTRY: &str = "http://127.0.0.1:9";

fn python_client_available() -> bool {
    let ok = Command::new("python3").args(["-c", "import confluent_kafka"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os("STREAMCTL_E2E").is_none(), "STREAMCTL_E2E is set but python3 lacks confluent_kafka");
        eprintln!("skipped: python3 with confluent-kafka is not installed");
    }
    ok
}

fn client(args: &[&str], input: Option<&Value>) -> Vec<Value> {
    python_lines(CLIENT, args, input).iter().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn headers_written_by_a_foreign_producer_are_read_and_headers_written_are_read_by_a_foreign_consumer() {
    let Some(kcat) = tools() else { return };
    if !python_client_available() {
        return;
    }
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(Path::new(FIXTURE), dir.path(), &["target", "tests"]);
    std::fs::write(
        dir.path().join("streamctl_project.yml"),
        "name: headers\nversion: '1.0'\ntargets:\n  local:\n    type: kafka\n    bootstrap_servers: localhost:9092\n",
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cluster = streamctl::connectors::kafka::Cluster::Kafka {
        bootstrap: bootstrap.clone(),
        properties: vec![],
        replication_factor: 1,
    };
    let topic = streamctl::connectors::kafka::TopicSpec { name: "web.clicks".into(), partitions: 1, compacted: false };
    rt.block_on(cluster.ensure_topics(&[topic])).unwrap();

    // (click id, url, headers as the foreign producer writes them)
    let clicks = [
        (1, "/a", json!({"trace-id": "abc", "tenant": "t1"})),
        (2, "/b", json!({})),
        (3, "/c", json!({"tenant": "t2", "empty": null, "trace-id": "xyz"})),
        // Not UTF-8: TRACE is a STRING column, so the record is a bad one.
        (4, "/d", json!({"trace-id": {"hex": "ff00"}})),
        (5, "/e", json!({"trace-id": "e5"})),
    ];
    let records: Vec<Value> = clicks
        .iter()
        .map(|(id, url, h)| {
            let value = json!({"CLICK_ID": id, "URL": url}).to_string();
            json!({"topic": "web.clicks", "key": null, "raw_hex": hex(value.as_bytes()), "headers": h})
        })
        .collect();
    client(&["produce", &bootstrap, NO_REGISTRY], Some(&json!({ "records": records })));

    let cmd = |args: &[&str]| {
        let mut c = streamctl();
        c.arg("--project-dir").arg(dir.path()).args(["--target", "local", "--bootstrap-servers", &bootstrap]);
        c.args(args).output().unwrap()
    };
    let applied = cmd(&["apply", "--auto-approve"]);
    assert!(applied.status.success(), "{}", text(&applied));
    let run = cmd(&["run", "--until-caught-up"]);
    assert!(run.status.success(), "{}", text(&run));

    let consume = |topic: &str| client(&["consume", &bootstrap, NO_REGISTRY, topic, "json-values"], None);
    let traced = consume("traced");
    // Headers are written in the order of their names (config(headers=...) is a map).
    let got: Vec<(Value, Value)> = traced.iter().map(|r| (r["value"].clone(), r["headers"].clone())).collect();
    let want = vec![
        (
            json!({"click_id": 1, "url": "/a", "trace": "abc", "trace_text": "abc", "header_count": 2}),
            json!([["source-url", "/a"], ["trace-id", "abc"]]),
        ),
        (
            json!({"click_id": 2, "url": "/b", "trace": null, "trace_text": null, "header_count": 0}),
            json!([["source-url", "/b"]]),
        ),
        (
            json!({"click_id": 3, "url": "/c", "trace": "xyz", "trace_text": "xyz", "header_count": 3}),
            json!([["source-url", "/c"], ["trace-id", "xyz"]]),
        ),
        (
            json!({"click_id": 5, "url": "/e", "trace": "e5", "trace_text": "e5", "header_count": 1}),
            json!([["source-url", "/e"], ["trace-id", "e5"]]),
        ),
    ];
    let got_values: Vec<(Value, Value)> = got
        .iter()
        .map(|(v, h)| {
            let mut v = v.clone();
            // JSON output leaves out null columns: compare with them as null.
            for k in ["trace", "trace_text"] {
                if v.get(k).is_none() {
                    v[k] = Value::Null;
                }
            }
            (v, h.clone())
        })
        .collect();
    assert_eq!(got_values, want, "--- run\n{}", text(&run));

    // Every header of clicks 2.. passed on, in order, null values too; the bad click 4 is not.
    let forwarded = consume("forwarded");
    let headers: Vec<(Value, Value)> =
        forwarded.iter().map(|r| (r["value"]["click_id"].clone(), r["headers"].clone())).collect();
    assert_eq!(
        headers,
        vec![
            (json!(2), json!([])),
            (json!(3), json!([["tenant", "t2"], ["empty", null], ["trace-id", "xyz"]])),
            (json!(5), json!([["trace-id", "e5"]])),
        ]
    );

    // Click 4 went to the dead-letter topic once (both models read it), with the reason.
    let dlq = Command::new(&kcat)
        .args(["-C", "-b", &bootstrap, "-t", "web.clicks.dlq", "-o", "beginning", "-e", "-q", "-f", "%h\n"])
        .args(["-X", "isolation.level=read_committed"])
        .output()
        .unwrap();
    let lines = String::from_utf8_lossy(&dlq.stdout).into_owned();
    let reasons: Vec<&str> = lines.lines().filter_map(|l| l.split("streamctl.error=").nth(1)).collect();
    assert_eq!(reasons.len(), 1, "{lines}");
    assert!(reasons[0].starts_with("header `trace-id` is not UTF-8 text"), "{reasons:?}");
}
