//! The file sink's Parquet files (`format: parquet`, cargo feature `parquet`), read back by
//! pyarrow (a foreign reader, `tests/e2e/read_parquet.py`):
//!
//! * on the embedded target, a project whose model has timestamps, decimals, dates, booleans,
//!   lists and structs: the files' rows and Arrow types equal a reference computed here from the
//!   sample data, and a table model's files end, per key, with the reference totals;
//! * on Apache Kafka (started by the test, see `e2e_common::kafka`), the example's file sink as
//!   Parquet, `streamctl run` killed with SIGKILL mid-delivery and restarted: the closed files,
//!   partition by partition, hold exactly the records of the model's topic as kcat reads them
//!   (read_committed), none lost or repeated, none rewritten.
//!
//! Built without the `parquet` feature, `validate` reports `format: parquet` at its position.
#![cfg_attr(not(feature = "parquet"), allow(dead_code, unused_imports))]

mod common;
mod e2e_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e_common::kafka::KafkaCluster;
use e2e_common::*;
use serde_json::{json, Value};

/// pyarrow is there; else a skip announced on stderr, or a failure when STREAMCTL_E2E is set.
fn pyarrow() -> bool {
    let ok = Command::new("python3").args(["-c", "import pyarrow.parquet"]).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(std::env::var_os("STREAMCTL_E2E").is_none(), "STREAMCTL_E2E is set but pyarrow is missing (.ci/run)");
        eprintln!("skipped: pyarrow is not installed (python3 -m pip install pyarrow)");
    }
    ok
}

/// A Parquet file as pyarrow reads it: its name, its columns (name, pyarrow type) and its rows.
type ParquetFile = (String, Vec<(String, String)>, Vec<Value>);

/// The closed Parquet files of a directory, by name.
fn read_parquet(dir: &Path) -> Vec<ParquetFile> {
    let out = Command::new("python3").arg(root().join("tests/e2e/read_parquet.py")).arg(dir).output().unwrap();
    assert!(out.status.success(), "read_parquet.py: {}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let schema = f["schema"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| (c[0].as_str().unwrap().into(), c[1].as_str().unwrap().into()));
            (f["name"].as_str().unwrap().to_string(), schema.collect(), f["rows"].as_array().unwrap().clone())
        })
        .collect()
}

const PROJECT: &str = "name: pq_types\ndefault_target: embedded\ntargets:\n  embedded:\n    type: embedded\n";

const SOURCES: &str = r#"
version: 1
sources:
  - name: shop
    tables:
      - name: payments
        topic: shop.payments
        kind: stream
        format: json
        partitions: 2
        sample_data: data/payments.jsonl
        columns:
          - {name: ID, type: INT}
          - {name: PAYER, type: STRING}
          - {name: PAID_AT, type: TIMESTAMP}
          - {name: AMOUNT, type: "DECIMAL(10,2)"}
          - {name: DAY, type: DATE}
          - {name: CARD_OK, type: BOOLEAN}
          - {name: TAGS, type: "ARRAY<STRING>"}
          - {name: CARD, type: "STRUCT<brand STRING, last4 STRING>"}
"#;

const PAYMENTS: &str = "{{ config(materialized='stream', topic='shop.payments-typed', partitions=2, key=['PAYER']) }}
SELECT ID, PAYER, PAID_AT, AMOUNT, DAY, CARD_OK, TAGS, CARD
FROM {{ source('shop', 'payments') }}
WHERE AMOUNT >= 5
";

const TOTALS: &str = "{{ config(materialized='table', topic='shop.totals', partitions=1, key=['PAYER']) }}
SELECT PAYER, COUNT(*) AS N, SUM(AMOUNT) AS TOTAL
FROM {{ source('shop', 'payments') }}
GROUP BY PAYER
";

const SINKS: &str = r#"
version: 1
sinks:
  - name: payments_pq
    from: payments_typed
    connector:
      type: file
      path: target/sinks/payments
      format: parquet
  - name: totals_pq
    from: totals
    connector:
      type: file
      path: target/sinks/totals
      format: parquet
      compression: none
      transforms:
        - type: rename_field
          renames: {n: payments}
"#;

/// The sample payments: 60 rows over 4 payers, amounts from 0.75 to 148.25.
fn payments() -> Vec<Value> {
    (0..60)
        .map(|i: i64| {
            let cents = 75 + i * 250;
            json!({
                "ID": i,
                "PAYER": format!("payer-{}", i % 4),
                "PAID_AT": format!("2026-12-03T10:{:02}:{:02}.{:03}", i / 60, i % 60, i * 7 % 1000),
                "AMOUNT": format!("{}.{:02}", cents / 100, cents % 100).parse::<f64>().unwrap(),
                "DAY": format!("2026-12-{:02}", 1 + i % 28),
                "CARD_OK": i % 3 != 0,
                "TAGS": (0..i % 3).map(|t| format!("t{t}")).collect::<Vec<_>>(),
                "CARD": {"brand": if i % 2 == 0 { "visa" } else { "amex" }, "last4": format!("{:04}", i * 37 % 10000)},
            })
        })
        .collect()
}

fn cents_text(c: i64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

#[cfg(feature = "parquet")]
#[test]
fn parquet_files_hold_the_models_rows_with_their_types() {
    if !pyarrow() {
        return;
    }
    let project = typed_project(SINKS);
    let p = project.path();
    std::fs::create_dir_all(p.join("data")).unwrap();
    let lines: Vec<String> = payments().iter().map(Value::to_string).collect();
    std::fs::write(p.join("data/payments.jsonl"), lines.join("\n") + "\n").unwrap();

    let out = streamctl().args(["apply", "--auto-approve", "--project-dir"]).arg(p).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));

    // The reference: the model's filter over the sample rows, values as pyarrow gives them back.
    let want: Vec<Value> = payments()
        .into_iter()
        .filter(|r| r["AMOUNT"].as_f64().unwrap() >= 5.0)
        .map(|r| {
            let cents = (r["AMOUNT"].as_f64().unwrap() * 100.0).round() as i64;
            json!({
                "id": r["ID"], "payer": r["PAYER"], "paid_at": r["PAID_AT"], "amount": cents_text(cents),
                "day": r["DAY"], "card_ok": r["CARD_OK"], "tags": r["TAGS"], "card": r["CARD"],
            })
        })
        .collect();
    let dir = p.join("target/sinks/payments");
    let printed = format!("sink payments_pq (payments_typed → {}): {} records in ", dir.display(), want.len());
    assert!(stdout.contains(&printed), "{printed}\n{stdout}");
    let files = read_parquet(&dir);
    assert!(!files.is_empty(), "no Parquet file in target/sinks/payments\n{stdout}");
    let want_types: Vec<(String, String)> = [
        ("id", "int32"),
        ("payer", "string"),
        ("paid_at", "timestamp[ms]"),
        ("amount", "decimal128(10, 2)"),
        ("day", "date32[day]"),
        ("card_ok", "bool"),
        ("tags", "list<item: string>"),
        ("card", "struct<brand: string, last4: string>"),
    ]
    .iter()
    .map(|(n, t)| (n.to_string(), t.to_string()))
    .collect();
    let mut got: Vec<Value> = Vec::new();
    for (name, schema, rows) in &files {
        assert!(name.ends_with(".parquet") && name.starts_with('p'), "{name}");
        assert_eq!(schema, &want_types, "{name}");
        got.extend(rows.iter().cloned());
    }
    let by_id = |v: &mut Vec<Value>| v.sort_by_key(|r| r["id"].as_i64());
    let mut want_sorted = want.clone();
    by_id(&mut got);
    by_id(&mut want_sorted);
    assert_eq!(got, want_sorted);

    // The table model: its changelog, each update a row with `_delete` false; the last row of
    // each payer holds the totals of all their payments (summed here in cents).
    let mut totals: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in payments() {
        let t = totals.entry(r["PAYER"].as_str().unwrap().to_string()).or_default();
        t.0 += 1;
        t.1 += (r["AMOUNT"].as_f64().unwrap() * 100.0).round() as i64;
    }
    let files = read_parquet(&p.join("target/sinks/totals"));
    assert!(!files.is_empty(), "no Parquet file in target/sinks/totals\n{stdout}");
    let mut last: BTreeMap<String, Value> = BTreeMap::new();
    for (name, schema, rows) in &files {
        let names: Vec<&str> = schema.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["payer", "payments", "total", "_delete"], "{name}");
        assert_eq!(schema[1].1, "int64", "{name}");
        assert!(schema[2].1.starts_with("decimal128(") && schema[2].1.ends_with(", 2)"), "{schema:?}");
        assert_eq!(schema[3].1, "bool", "{name}");
        for r in rows {
            assert_eq!(r["_delete"], json!(false), "{r}");
            last.insert(r["payer"].as_str().unwrap().to_string(), r.clone());
        }
    }
    let want_totals: BTreeMap<String, Value> = totals
        .iter()
        .map(|(k, (n, c))| (k.clone(), json!({"payer": k, "payments": n, "total": cents_text(*c), "_delete": false})))
        .collect();
    assert_eq!(last, want_totals);
}

/// The typed project in a temporary directory, with `sinks` as its sinks file.
fn typed_project(sinks: &str) -> tempfile::TempDir {
    let project = tempfile::tempdir().unwrap();
    let p = project.path();
    for d in ["sources", "models", "sinks"] {
        std::fs::create_dir_all(p.join(d)).unwrap();
    }
    std::fs::write(p.join("streamctl_project.yml"), PROJECT).unwrap();
    std::fs::write(p.join("sources/shop.yml"), SOURCES).unwrap();
    std::fs::write(p.join("models/payments_typed.sql"), PAYMENTS).unwrap();
    std::fs::write(p.join("models/totals.sql"), TOTALS).unwrap();
    std::fs::write(p.join("sinks/files.yml"), sinks).unwrap();
    project
}

fn validate(project: &Path) -> (Option<i32>, String) {
    let out = streamctl().args(["validate", "--project-dir"]).arg(project).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn an_unknown_parquet_compression_is_reported_at_its_line_and_column() {
    let project = typed_project(&SINKS.replace("compression: none", "compression: lz4"));
    let (code, stderr) = validate(project.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("sinks/files.yml:16:20"), "{stderr}");
    assert!(stderr.contains("lz4"), "{stderr}");
}

#[test]
fn a_parquet_sinks_mask_of_a_timestamp_is_reported_at_the_field() {
    let masked =
        "      format: parquet\n      transforms:\n        - type: mask_field\n          fields: [payer, paid_at]\n";
    let project = typed_project(&SINKS.replacen("      format: parquet\n", masked, 1));
    let (code, stderr) = validate(project.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("mask_field of `paid_at`, a TIMESTAMP column"), "{stderr}");
    assert!(stderr.contains("sinks/files.yml:12:27"), "{stderr}");
    assert!(!stderr.contains("of `payer`"), "a string column holds the mask: {stderr}");
}

#[cfg(feature = "parquet")]
#[test]
fn parquet_sinks_validate() {
    let project = typed_project(SINKS);
    let (code, stderr) = validate(project.path());
    assert_eq!(code, Some(0), "{stderr}");
}

#[cfg(not(feature = "parquet"))]
#[test]
fn parquet_without_the_feature_is_reported_at_its_line_and_column() {
    let project = typed_project(SINKS);
    let (code, stderr) = validate(project.path());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("sinks/files.yml:9:15"), "{stderr}");
    assert!(stderr.contains("built without Parquet support"), "{stderr}");
}

const TOPIC: &str = "soe.logon-prime-loyal";

fn closed_files(dir: &Path) -> SinkFiles {
    let mut out: SinkFiles = BTreeMap::new();
    if !dir.is_dir() {
        return out;
    }
    for (name, _, rows) in read_parquet(dir) {
        let stem = name.strip_suffix(".parquet").unwrap();
        let n: Vec<i64> = stem.trim_start_matches('p').split('-').map(|x| x.parse().unwrap()).collect();
        out.entry(n[0]).or_default().push((n[1], n[2], rows));
    }
    for files in out.values_mut() {
        files.sort_by_key(|f| f.0);
    }
    out
}

#[cfg(feature = "parquet")]
#[test]
fn parquet_file_sink_survives_sigkill_without_losing_or_repeating_records() {
    if !pyarrow() {
        return;
    }
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
        "format: parquet\n      roll_bytes: 1500\n      roll_seconds: 1",
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
    let parquet_bytes = |dir: &Path| -> BTreeMap<String, Vec<u8>> {
        std::fs::read_dir(dir)
            .map(|es| {
                es.flatten()
                    .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                    .filter(|(n, _)| n.ends_with(".parquet"))
                    .map(|(n, p)| (n, std::fs::read(p).unwrap()))
                    .collect()
            })
            .unwrap_or_default()
    };

    let mut first = worker("first.log");
    let deadline = Instant::now() + Duration::from_secs(120);
    while parquet_bytes(&dir).is_empty() {
        assert!(Instant::now() < deadline, "no file closed within 120 s\n{}", log("first.log"));
        std::thread::sleep(Duration::from_millis(200));
    }
    // SIGKILL while delivering: no chance to close the open files or commit.
    first.0.kill().unwrap();
    let _ = first.0.wait();
    let before = parquet_bytes(&dir);
    let parts_at_kill = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .count();

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

    // Every file closed before the kill is still there, byte for byte.
    let after_bytes = parquet_bytes(&dir);
    for (name, bytes) in &before {
        assert!(after_bytes.get(name) == Some(bytes), "{name} changed or went away after the restart");
    }
    let after = closed_files(&dir);
    assert_eq!(delivered(&after), topic_rows_by_partition(&kcat, &bootstrap, TOPIC));
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The records are the model's: every expected prime logon is in the files, typed as the
    // model's columns are.
    let (_, schema, _) = read_parquet(&dir).into_iter().next().unwrap();
    let types: Vec<String> = schema.iter().map(|(n, t)| format!("{n}: {t}")).collect();
    assert_eq!(
        types,
        [
            "logon_id: int32",
            "logon_date: string",
            "customer_id: int32",
            "cust_full_name: string",
            "cust_email: string",
            "customer_class: string",
            // Years as a customer: a DOUBLE (macros/time.sql).
            "customer_since_yrs: double"
        ]
    );
    let rows: Vec<Value> = delivered(&after).into_values().flatten().collect();
    let missing = missing(&expected()["logon_prime_loyal"], &rows);
    assert!(missing.is_empty(), "not delivered: {missing:#?}");
    eprintln!(
        "{} files closed before the kill ({parts_at_kill} part files open), {} after the restart, {} rows; restart log:\n{}",
        before.len(),
        after_bytes.len(),
        rows.len(),
        log("second.log").lines().filter(|l| l.contains("sink")).collect::<Vec<_>>().join("\n")
    );
}
