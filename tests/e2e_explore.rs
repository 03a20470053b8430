//! `streamctl query` and `peek` on Apache Kafka (started by the test, see `e2e_common::kafka`),
//! with kcat producing the inputs: a push query prints the rows produced after it started, in
//! order, and stops at LIMIT; a pull query on a table model returns the latest row of a key
//! after that key was updated; peek shows a malformed record as malformed.

mod e2e_common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e_common::kafka::KafkaCluster;
use e2e_common::*;
use serde_json::Value;

fn order(id: i64, mode: &str, total: f64) -> String {
    format!(
        r#"{{"ORDER_ID": {id}, "ORDER_DATE": "2024-01-31 10:00:00", "ORDER_MODE": "{mode}", "CUSTOMER_ID": 1, "ORDER_STATUS": 1, "ORDER_TOTAL": {total}, "SALES_REP_ID": null}}"#
    )
}

fn streamctl_on(bootstrap: &str) -> std::process::Command {
    let mut c = streamctl();
    c.arg("--project-dir").arg(root().join("example-project"));
    c.args(["--target", "local", "--bootstrap-servers", bootstrap]);
    c
}

fn json_lines(s: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(s).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn query_and_peek_on_a_real_broker() {
    let Some(kcat) = tools() else { return };
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    create_source_topics(&bootstrap);
    let orders = "ora-ogg-SOE-ORDERS-json";
    let produce = |lines: &[String]| {
        // One partition: the order a query prints them in is defined.
        let mut args = vec!["-P", "-b", bootstrap.as_str(), "-t", orders, "-p", "0"];
        args.push("-q");
        let mut child = std::process::Command::new(&kcat).args(&args).stdin(Stdio::piped()).spawn().unwrap();
        {
            use std::io::Write;
            let stdin = child.stdin.as_mut().unwrap();
            for l in lines {
                writeln!(stdin, "{l}").unwrap();
            }
        }
        assert!(child.wait().unwrap().success());
    };
    produce(&(1..=3).map(|i| order(i, "direct", 10.0)).collect::<Vec<_>>());

    // Push: only what is produced after the query started, in order, stopping at LIMIT.
    let mut query = Killed(
        streamctl_on(&bootstrap)
            .args(["query", "--format", "json", "SELECT order_id, order_mode FROM soe.orders EMIT CHANGES LIMIT 5"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut err = BufReader::new(query.0.stderr.take().unwrap());
    let mut started = String::new();
    while !started.contains("query started") {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "the query ended before it started: {started}");
        started.push_str(&line);
    }
    produce(&(10..=17).map(|i| order(i, "online", 100.0)).collect::<Vec<_>>());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = query.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the query did not stop at LIMIT 5 within 60 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut err, &mut rest);
    assert!(status.success(), "{status}: {started}{rest}");
    let mut out = Vec::new();
    std::io::Read::read_to_end(query.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    let ids: Vec<i64> = json_lines(&out).iter().map(|r| r["order_id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [10, 11, 12, 13, 14], "{}", String::from_utf8_lossy(&out));

    // Pull: the table model's latest row for a key, before and after an update of that key.
    let run_model = || {
        let out =
            streamctl_on(&bootstrap).args(["run", "--select", "orders_by_mode", "--until-caught-up"]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let pull = || {
        let out = streamctl_on(&bootstrap)
            .args([
                "query",
                "--format",
                "json",
                "SELECT order_mode, order_count FROM orders_by_mode WHERE order_mode = 'online'",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        json_lines(&out.stdout)
    };
    run_model();
    assert_eq!(pull(), [serde_json::json!({"order_mode": "online", "order_count": 8})]);
    produce(&(20..=21).map(|i| order(i, "online", 1.0)).collect::<Vec<_>>());
    run_model();
    assert_eq!(pull(), [serde_json::json!({"order_mode": "online", "order_count": 10})]);

    // Peek: a malformed record is shown as malformed, with the reason, among the good ones.
    produce(&["{not json".to_string(), order(30, "direct", 5.0)]);
    let out = streamctl_on(&bootstrap)
        .args(["peek", "soe.orders", "--partition", "0", "--from", "latest", "-n", "2", "--format", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let records = json_lines(&out.stdout);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0]["malformed"]["raw"], "{not json", "{records:?}");
    assert!(records[0]["malformed"]["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(records[1]["value"]["order_id"], 30, "{records:?}");
    let text = streamctl_on(&bootstrap).args(["peek", "orders", "--from", "latest", "-n", "2"]).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("MALFORMED ("), "{}", String::from_utf8_lossy(&text.stdout));
}
