//! The sinks' transforms `cast`, `timestamp_convert`, `set_key`, `insert_header` and `route` on
//! Apache Kafka (started by the test, see `e2e_common::kafka`), with the example project: a kafka
//! sink with typed values, a key and lineage headers; a kafka sink and a file sink that route the
//! hourly aggregate by order status to a topic / a subdirectory each; a file sink whose cast
//! refuses some rows, which go to its dead-letter topic. What arrives is compared with the rows
//! `tests/e2e/expected.py` computes, transformed here. A second bounded run delivers nothing
//! again.
//!
//! Needs Java, Kafka's jars and kcat, like the other end-to-end tests.

mod common;
mod e2e_common;

use std::collections::BTreeMap;
use std::path::Path;

use e2e_common::kafka::KafkaCluster;
use e2e_common::*;
use serde_json::{json, Value};

const SINKS: &str = r#"
  - name: logons_typed
    from: logon_prime_loyal
    connector:
      type: kafka
      topic: soe.logons-typed
      transforms:
        - type: timestamp_convert
          field: logon_date
          to: unix_ms
          format: "%Y-%m-%d %H:%M:%S"
        - type: cast
          fields: {logon_id: STRING, customer_since_yrs: INT}
        - type: set_key
          fields: [logon_id]
        - type: insert_header
          header: lineage.model
          value_from: model
        - type: insert_header
          header: lineage.project
          value_from: project
        - type: insert_header
          header: team
          value: sales

  - name: hourly_by_status
    from: orders_agg_hourly
    connector:
      type: kafka
      topic: soe.hourly-unrouted
      transforms:
        - type: timestamp_convert
          field: windowstart
          to: string
          format: "%Y-%m-%d %H:%M"
        - type: route
          to: "soe.hourly-status-{{order_status}}"

  - name: hourly_files
    from: orders_agg_hourly
    connector:
      type: file
      path: target/sinks/hourly
      transforms:
        - type: cast
          fields: {max_order_total: "DECIMAL(10,1)"}
        - type: route
          to: "status-{{order_status}}"

  - name: logons_strict
    from: logon_prime_loyal
    on_error: dead_letter
    connector:
      type: file
      path: target/sinks/strict
      transforms:
        - type: cast
          fields: {customer_since_yrs: "DECIMAL(3,2)"}
"#;

/// Every record of a topic: (key, headers, value), the value parsed as JSON where it is JSON.
fn records(kcat: &Path, bootstrap: &str, topic: &str) -> Vec<(String, BTreeMap<String, String>, Value)> {
    let records = kcat_records(kcat, bootstrap, topic);
    records
        .into_iter()
        .map(|r| (r.key, r.headers, serde_json::from_str(&r.payload).unwrap_or(json!(r.payload))))
        .collect()
}

/// The rows of the closed JSON Lines files in a directory.
fn file_rows(dir: &Path) -> Vec<Value> {
    let mut rows = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().ends_with(".jsonl") {
            let text = std::fs::read_to_string(e.path()).unwrap();
            rows.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
        }
    }
    rows
}

/// Rows of `want` not in `got`, and of `got` not in `want`.
fn differ(want: &[Value], got: &[Value]) -> Option<String> {
    let (miss, extra) = (missing(want, got), missing(got, want));
    (!miss.is_empty() || !extra.is_empty() || want.len() != got.len()).then(|| {
        format!(
            "{} rows, {} expected; missing {:?}; not expected {:?}",
            got.len(),
            want.len(),
            miss.first(),
            extra.first()
        )
    })
}

fn epoch_ms(text: &str, format: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(text, format).unwrap().and_utc().timestamp_millis()
}

fn with(row: &Value, changes: &[(&str, Value)]) -> Value {
    let mut r = row.as_object().unwrap().clone();
    for (k, v) in changes {
        r.insert(k.to_string(), v.clone());
    }
    Value::Object(r)
}

#[test]
fn kafka_and_file_sinks_cast_convert_key_label_and_route_rows() {
    let Some(kcat) = tools() else { return };
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&root().join("example-project"), dir.path(), &["target"]);
    let file = dir.path().join("sinks/downstream.yml");
    let text = std::fs::read_to_string(&file).unwrap() + SINKS;
    std::fs::write(&file, text).unwrap();
    create_source_topics(&bootstrap);
    produce_samples(&kcat, &bootstrap, 0.0..1.0);
    let run = || {
        let out = streamctl()
            .args(["run", "--until-caught-up", "--project-dir"])
            .arg(dir.path())
            .args(["--target", "local", "--bootstrap-servers", &bootstrap])
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{stdout}\n{stderr}");
        (stdout.into_owned(), stderr.into_owned())
    };
    let (stdout, _) = run();
    let expected = expected();

    // Typed values, keyed by the logon id (a string after the cast), with lineage headers.
    let logons = &expected["logon_prime_loyal"];
    let got = records(&kcat, &bootstrap, "soe.logons-typed");
    let want: Vec<Value> = logons
        .iter()
        .map(|r| {
            with(
                r,
                &[
                    ("logon_date", json!(epoch_ms(r["logon_date"].as_str().unwrap(), "%Y-%m-%d %H:%M:%S"))),
                    ("logon_id", json!(r["logon_id"].to_string())),
                    ("customer_since_yrs", json!(r["customer_since_yrs"].as_f64().unwrap().trunc() as i64)),
                ],
            )
        })
        .collect();
    let values: Vec<Value> = got.iter().map(|(_, _, v)| v.clone()).collect();
    assert_eq!(differ(&want, &values), None, "soe.logons-typed\n{stdout}");
    for (key, headers, value) in &got {
        assert_eq!(key, &format!("\"{}\"", value["logon_id"].as_str().unwrap()));
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(h, [("lineage.model", "logon_prime_loyal"), ("lineage.project", "soe_demo"), ("team", "sales")]);
    }

    // Routed by order status: a topic and a subdirectory per status, each with its rows only.
    let hourly = &expected["orders_agg_hourly"];
    let statuses: std::collections::BTreeSet<i64> =
        hourly.iter().map(|r| r["order_status"].as_i64().unwrap()).collect();
    assert!(statuses.len() > 3, "the sample has several statuses");
    for s in &statuses {
        let of_status: Vec<&Value> = hourly.iter().filter(|r| r["order_status"] == *s).collect();
        let want: Vec<Value> = of_status
            .iter()
            .map(|r| {
                let start = chrono::DateTime::from_timestamp_millis(r["windowstart"].as_i64().unwrap()).unwrap();
                with(r, &[("windowstart", json!(start.format("%Y-%m-%d %H:%M").to_string()))])
            })
            .collect();
        let topic = format!("soe.hourly-status-{s}");
        let got: Vec<(String, Value)> =
            records(&kcat, &bootstrap, &topic).into_iter().map(|(k, _, v)| (k, v)).collect();
        assert_eq!(differ(&want, &end_rows(&got, true)), None, "{topic}");
        let want: Vec<Value> = of_status
            .iter()
            .map(|r| {
                let total = (r["max_order_total"].as_f64().unwrap() * 10.0).round() / 10.0;
                with(r, &[("max_order_total", json!(total))])
            })
            .collect();
        let files = file_rows(&dir.path().join(format!("target/sinks/hourly/status-{s}")));
        assert_eq!(differ(&want, &files), None, "status-{s} files");
    }
    assert!(records(&kcat, &bootstrap, "soe.hourly-unrouted").is_empty(), "every row was routed");

    // A cast that fails for some rows (10 years or more do not fit DECIMAL(3,2)): those go to the
    // dead-letter topic with the reason, the others are written rounded.
    let rounded = |r: &Value| (r["customer_since_yrs"].as_f64().unwrap() * 100.0).round() / 100.0;
    let (fine, refused): (Vec<Value>, Vec<Value>) = logons.iter().cloned().partition(|r| rounded(r) < 10.0);
    assert!(!fine.is_empty() && !refused.is_empty(), "the sample has customers of under and over 10 years");
    let fine: Vec<Value> = fine.iter().map(|r| with(r, &[("customer_since_yrs", json!(rounded(r)))])).collect();
    assert_eq!(differ(&fine, &file_rows(&dir.path().join("target/sinks/strict"))), None, "strict files");
    let dead = records(&kcat, &bootstrap, "soe.logon-prime-loyal.logons_strict.dlq");
    let lower =
        |v: &Value| Value::Object(v.as_object().unwrap().iter().map(|(k, v)| (k.to_lowercase(), v.clone())).collect());
    let dead_values: Vec<Value> = dead.iter().map(|(_, _, v)| lower(v)).collect();
    assert_eq!(differ(&refused, &dead_values), None, "dead letters");
    for (_, h, _) in &dead {
        let reason = &h["streamctl.error"];
        assert!(reason.starts_with("cast of `customer_since_yrs` to DECIMAL(3,2): "), "{reason}");
        assert!(reason.ends_with(" does not fit DECIMAL(3,2)"), "{reason}");
        assert_eq!(h["streamctl.sink"], "logons_strict");
    }
    assert!(stdout.contains(&format!("{} records to the dead-letter topic", refused.len())), "{stdout}");

    // Again: everything was delivered and committed, nothing is written twice.
    let counts = |dir: &Path| -> usize {
        std::fs::read_dir(dir.join("target/sinks/hourly"))
            .unwrap()
            .flatten()
            .filter(|d| d.path().is_dir())
            .map(|d| file_rows(&d.path()).len())
            .sum()
    };
    let before = (records(&kcat, &bootstrap, "soe.logons-typed").len(), counts(dir.path()));
    let (stdout2, _) = run();
    let after = (records(&kcat, &bootstrap, "soe.logons-typed").len(), counts(dir.path()));
    assert_eq!(before, after, "a second run delivered again:\n{stdout2}");
    eprintln!(
        "{}\nfirst record of soe.logons-typed: {:?}",
        stdout.lines().filter(|l| l.starts_with("sink ")).collect::<Vec<_>>().join("\n"),
        got.first()
    );
}
