//! `streamctl query` and `peek` on the embedded target (the example project's sample data):
//! push and pull queries through the models' runtime, the compiler's errors at positions in the
//! query text, malformed records shown as such. The same commands on a real broker:
//! `tests/e2e_explore.rs`.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn streamctl() -> Command {
    let mut c = Command::cargo_bin("streamctl").unwrap();
    c.env("NO_COLOR", "1").env_remove("STREAMCTL_TARGET");
    c
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("example-project")
}

fn sample(name: &str) -> Vec<Value> {
    std::fs::read_to_string(example().join("data").join(name))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// (exit code, stdout, stderr)
fn run(args: &[&str]) -> (i32, String, String) {
    let out = streamctl().arg("--project-dir").arg(example()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

#[test]
fn a_push_query_filters_a_source_and_stops_at_limit() {
    let (code, out, err) = run(&[
        "query",
        "--format",
        "json",
        "SELECT order_id, order_total FROM soe.orders WHERE order_total > 1000 EMIT CHANGES LIMIT 4",
    ]);
    assert_eq!(code, 0, "{err}");
    let rows = json_lines(&out);
    assert_eq!(rows.len(), 4, "{out}");
    let orders = sample("orders.jsonl");
    for r in &rows {
        assert_eq!(r.as_object().unwrap().keys().collect::<Vec<_>>(), ["order_id", "order_total"], "{r}");
        assert!(r["order_total"].as_f64().unwrap() > 1000.0, "{r}");
        let id = r["order_id"].as_i64().unwrap();
        assert!(orders.iter().any(|o| o["ORDER_ID"].as_i64() == Some(id)), "{r} is not in the sample data");
    }
}

#[test]
fn a_push_query_joins_by_table_name_and_prints_an_aligned_table() {
    let (code, out, err) = run(&[
        "query",
        "SELECT l.logon_id, c.customer_class FROM logon l JOIN customers c ON l.customer_id = c.customer_id \
         EMIT CHANGES LIMIT 2",
    ]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("logon_id      customer_class"), "{out}");
    assert!(err.contains("2 rows"), "{err}");
}

#[test]
fn a_pull_query_reads_the_current_row_of_a_key_of_a_table_model() {
    let (code, out, err) =
        run(&["query", "--format", "json", "SELECT * FROM orders_by_mode WHERE order_mode = 'online'"]);
    assert_eq!(code, 0, "{err}");
    let rows = json_lines(&out);
    let online = sample("orders.jsonl").iter().filter(|o| o["ORDER_MODE"] == "online").count();
    assert_eq!(rows.len(), 1, "{out}");
    assert_eq!(rows[0]["order_mode"], "online");
    assert_eq!(rows[0]["order_count"].as_u64(), Some(online as u64), "{out}");
}

#[test]
fn query_errors_are_the_compilers_at_positions_in_the_query() {
    let (code, out, err) = run(&["query", "SELECT *\nFROM logon l JOIN customers c ON l.customer_id = c.customer_idd"]);
    assert_eq!(code, 1);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("unknown column `customer_idd`"), "{err}");
    assert!(err.contains("<query>:2:50"), "{err}");
    assert!(err.contains("did you mean `customer_id`?"), "{err}");

    let (code, _, err) = run(&["query", "SELECT nosuch FROM soe.orders EMIT CHANGES"]);
    assert_eq!(code, 1);
    assert!(err.contains("<query>:1:8"), "{err}");

    // A stream needs EMIT CHANGES; the error says so.
    let (code, _, err) = run(&["query", "SELECT * FROM logon"]);
    assert_eq!(code, 1);
    assert!(err.contains("needs EMIT CHANGES"), "{err}");

    // The streaming planner's rejections come through as for a model.
    let (code, _, err) =
        run(&["query", "SELECT * FROM logon l JOIN orders o ON l.customer_id = o.customer_id EMIT CHANGES"]);
    assert_eq!(code, 1);
    assert!(err.contains("<query>:1:"), "{err}");

    // --format json: the error document on stdout.
    let (code, out, _) = run(&["query", "--format", "json", "SELECT nosuch FROM soe.orders EMIT CHANGES"]);
    assert_eq!(code, 1);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["diagnostics"][0]["file"], "<query>");
    assert_eq!(doc["diagnostics"][0]["column"], 8);
}

#[test]
fn peek_shows_malformed_records_with_the_reason() {
    let (code, out, err) = run(&["peek", "soe.logon", "-n", "1000", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let records = json_lines(&out);
    let lines = std::fs::read_to_string(example().join("data/logon.jsonl")).unwrap();
    assert_eq!(records.len(), lines.lines().filter(|l| !l.trim().is_empty()).count());
    let malformed: Vec<&Value> = records.iter().filter(|r| r.get("malformed").is_some()).collect();
    assert_eq!(malformed.len(), 2, "{out}");
    // The two sample lines that the LOGON Avro schema does not take went in as JSON.
    assert!(malformed.iter().all(|r| r["malformed"]["reason"].as_str().unwrap().contains("wrong magic byte 0x7b")));
    assert!(malformed.iter().all(|r| r["malformed"]["raw"].as_str().unwrap().contains("LOGON_ID")));
    for r in records.iter().filter(|r| r.get("malformed").is_none()) {
        assert!(r["value"]["logon_id"].is_i64(), "{r}");
        assert!(r["partition"].is_i64() && r["offset"].is_i64() && r["timestamp"].is_i64(), "{r}");
    }

    let (code, out, _) = run(&["peek", "logon", "-n", "1000"]);
    assert_eq!(code, 0);
    assert!(out.lines().next().unwrap().starts_with("PART  OFFSET  TIMESTAMP"), "{out}");
    assert_eq!(out.matches("MALFORMED (").count(), 2, "{out}");
}

#[test]
fn peek_reads_a_models_output_and_the_last_records() {
    let (code, out, err) = run(&["peek", "logon_enriched", "--partition", "0", "-n", "3", "--format", "json"]);
    assert_eq!(code, 0, "{err}");
    let records = json_lines(&out);
    assert_eq!(records.len(), 3);
    for r in &records {
        assert_eq!(r["partition"], 0, "{r}");
        assert!(r["value"].as_object().unwrap().contains_key("cust_full_name"), "{r}");
    }
    assert_eq!(records.iter().map(|r| r["offset"].as_i64().unwrap()).collect::<Vec<_>>(), [0, 1, 2]);

    let (code, out, _) = run(&["peek", "soe.orders", "--from", "latest", "-n", "2", "--format", "json"]);
    assert_eq!(code, 0);
    let records = json_lines(&out);
    let orders = sample("orders.jsonl");
    let last_two: Vec<&Value> = orders[orders.len() - 2..].iter().collect();
    let ids: Vec<&Value> = records.iter().map(|r| &r["value"]["order_id"]).collect();
    assert_eq!(ids, last_two.iter().map(|o| &o["ORDER_ID"]).collect::<Vec<_>>(), "{out}");
}
