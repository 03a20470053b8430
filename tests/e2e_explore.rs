//! `streamctl query`, `peek` and `shell` on Apache Kafka (started by the test, see
//! `e2e_common::kafka`), with kcat producing the inputs: a push query prints the rows produced
//! after it started, in order, and stops at LIMIT; a pull query on a table model returns the
//! latest row of a key after that key was updated; peek shows a malformed record as malformed
//! and starts at a time; the shell in a terminal prints a push query's rows as they come and
//! Ctrl-C cancels the query, not the shell. `/metrics` and `status`'s throughput after a run.

mod common;
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

    // Peek from a time: the records stamped at or after it (by the broker's offsets for times),
    // with the time as epoch ms or RFC 3339.
    std::thread::sleep(Duration::from_millis(20));
    let since = chrono::Utc::now();
    std::thread::sleep(Duration::from_millis(20));
    produce(&(40..=42).map(|i| order(i, "direct", 7.0)).collect::<Vec<_>>());
    for from in [since.timestamp_millis().to_string(), since.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()] {
        let out = streamctl_on(&bootstrap)
            .args(["peek", "soe.orders", "--from", &from, "-n", "100", "--format", "json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let ids: Vec<i64> = json_lines(&out.stdout).iter().map(|r| r["value"]["order_id"].as_i64().unwrap()).collect();
        assert_eq!(ids, [40, 41, 42], "--from {from}");
    }
    let later = (since + chrono::Duration::hours(1)).timestamp_millis().to_string();
    let out = streamctl_on(&bootstrap).args(["peek", "soe.orders", "--from", &later]).output().unwrap();
    assert!(out.status.success());
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no records"));

    // The shell in a terminal: a push query's rows as they are produced; Ctrl-C cancels the query
    // and the shell goes on; `exit` leaves.
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&root().join("example-project"), dir.path(), &["target"]);
    let project = dir.path().to_str().unwrap().to_string();
    let args = ["--project-dir", &project, "--target", "local", "--bootstrap-servers", &bootstrap, "shell"];
    let Some(t) = common::tmux::Tmux::start(
        "kafka",
        std::path::Path::new(env!("CARGO_BIN_EXE_streamctl")),
        &args,
        &[("NO_COLOR", "1")],
    ) else {
        return;
    };
    t.wait_for_count("streamctl> ", 1, 60);
    t.type_text("SELECT order_id, order_mode FROM soe.orders WHERE order_mode = 'online' EMIT CHANGES");
    t.keys(&["Enter"]);
    t.wait_for_count("query started", 1, 60);
    produce(&[order(50, "online", 1.0), order(51, "direct", 1.0), order(52, "online", 1.0)]);
    let rows = |s: &str| -> Vec<String> {
        s.lines().filter(|l| l.ends_with("online") && !l.contains("streamctl>")).map(|l| l.trim().to_string()).collect()
    };
    let screen = t.wait_until("rows 50 and 52", 60, |s| rows(s).len() >= 2);
    let got = rows(&screen);
    assert!(got[0].starts_with("50 ") && got[1].starts_with("52 "), "{screen}");
    assert!(t.alive());
    t.keys(&["C-c"]);
    let screen = t.wait_for_count("streamctl> ", 2, 30);
    assert!(screen.contains("2 rows\n(cancelled)"), "{screen}");
    assert!(t.alive(), "{screen}");
    t.type_text("PEEK soe.orders 1 FROM latest");
    t.keys(&["Enter"]);
    let screen = t.wait_for_count("streamctl> ", 3, 30);
    assert!(screen.contains("\"order_id\":52"), "{screen}");
    t.type_text("exit");
    t.keys(&["Enter"]);
    assert_eq!(t.wait_exit(30), 0, "{}", t.screen());
}

/// GET of a path on the metrics endpoint: (status line, body).
fn http_get(addr: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// The value of one sample (`name{labels}`) in the text format.
fn sample_value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
}

#[test]
fn metrics_of_a_run_pass_promtool_and_match_its_summary() {
    let Some(kcat) = tools() else { return };
    let promtool = tool("promtool");
    if promtool.is_none() && std::env::var_os("STREAMCTL_E2E").is_some() {
        panic!("STREAMCTL_E2E is set but promtool (Debian package prometheus) is missing");
    }
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    create_source_topics(&bootstrap);
    // Every order into partition 1: partition 0 stays empty, and its lag is reported all the same.
    let lines = sample("orders.jsonl");
    kcat_produce_to(&kcat, &bootstrap, "ora-ogg-SOE-ORDERS-json", &lines, false, Some(1));
    let orders = lines.len() as f64;
    let lag = |p: i32| {
        format!("streamctl_consumer_lag{{job=\"orders_by_mode\",topic=\"ora-ogg-SOE-ORDERS-json\",partition=\"{p}\"}}")
    };
    let mut run = Killed(
        streamctl_on(&bootstrap)
            .args(["run", "--select", "orders_by_mode", "--format", "json", "--metrics-addr", "127.0.0.1:0"])
            .args(["--checkpoint-interval-ms", "500"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut err = BufReader::new(run.0.stderr.take().unwrap());
    let mut seen = String::new();
    let addr = loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "run ended before serving metrics: {seen}");
        seen.push_str(&line);
        if let Some(rest) = line.strip_prefix("metrics on http://") {
            break rest.split('/').next().unwrap().to_string();
        }
    };
    // Keep draining stderr so the run never blocks on it.
    let log = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut rest);
        rest
    });
    let records_in = r#"streamctl_records_in_total{job="orders_by_mode"}"#;
    let records_out = r#"streamctl_records_out_total{job="orders_by_mode"}"#;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last = String::new();
    // Every order read, and the counters still the same a second later (nothing in flight).
    loop {
        let (status, body) = http_get(&addr, "/metrics");
        assert!(status.contains("200"), "{status}");
        // Read, and checkpointed after (the checkpoint series appear with the first one).
        let checkpointed =
            sample_value(&body, r#"streamctl_checkpoints_total{job="orders_by_mode"}"#).is_some_and(|n| n >= 1.0);
        // Every partition reported with nothing left to read (partition 0 has no records).
        let read_all = (0..2).all(|p| sample_value(&body, &lag(p)) == Some(0.0));
        let done = sample_value(&body, records_in) == Some(orders) && checkpointed && read_all;
        if done && body == last {
            break;
        }
        last = body;
        assert!(Instant::now() < deadline, "records in did not reach {orders} with a checkpoint: {last}");
        std::thread::sleep(Duration::from_secs(1));
    }
    for series in [
        "streamctl_bytes_in_total{job=\"orders_by_mode\"}",
        "streamctl_batch_records_count{job=\"orders_by_mode\"}",
        "streamctl_checkpoint_seconds_count{job=\"orders_by_mode\"}",
        "streamctl_consumer_lag{job=\"orders_by_mode\",topic=\"ora-ogg-SOE-ORDERS-json\",partition=\"0\"}",
        "streamctl_consumer_lag{job=\"orders_by_mode\",topic=\"ora-ogg-SOE-ORDERS-json\",partition=\"1\"}",
        "streamctl_job_running{job=\"orders_by_mode\"}",
    ] {
        assert!(sample_value(&last, series).is_some(), "no {series} in:\n{last}");
    }
    assert_eq!(sample_value(&last, "streamctl_job_running{job=\"orders_by_mode\"}"), Some(1.0));
    for p in 0..2 {
        assert_eq!(sample_value(&last, &lag(p)), Some(0.0), "{} in:\n{last}", lag(p));
    }
    if let Some(promtool) = promtool {
        let mut check = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(check.stdin.as_mut().unwrap(), last.as_bytes()).unwrap();
        drop(check.stdin.take());
        let out = check.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}\n{last}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (status, body) = http_get(&addr, "/healthz");
    assert!(status.contains("200"), "{status} {body}");
    assert!(body.contains("orders_by_mode: running"), "{body}");

    // SIGTERM: the run stops and prints its summary; its counters are the scraped ones.
    assert!(std::process::Command::new("kill").args(["-TERM", &run.0.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while run.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "run did not stop within 60 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut out = String::new();
    std::io::Read::read_to_string(run.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    let summary: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{}", log.join().unwrap()));
    let job = &summary["jobs"][0];
    assert_eq!(job["records_in"].as_f64(), sample_value(&last, records_in), "{summary}");
    assert_eq!(job["records_out"].as_f64(), sample_value(&last, records_out), "{summary}");
    assert!(job["records_out"].as_u64().unwrap() > 0, "{summary}");
}

#[test]
fn status_shows_each_jobs_throughput_over_the_last_minute() {
    let Some(kcat) = tools() else { return };
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    common::copy_dir(&root().join("example-project"), &project, &["target", "schemas"]);
    let cmd = |args: &[&str]| {
        let mut c = streamctl();
        c.arg("--project-dir").arg(&project);
        c.args(["--target", "local", "--bootstrap-servers", &bootstrap, "--schema-registry-url", "file:registry"]);
        c.args(args);
        c.output().unwrap()
    };
    let text = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    create_source_topics(&bootstrap);
    register_logon_schema(&project.join("registry"));
    produce_samples(&kcat, &bootstrap, 0.0..1.0);
    let apply = cmd(&["apply", "--auto-approve"]);
    assert!(apply.status.success(), "{}", text(&apply));
    let ran = Instant::now();
    let run = cmd(&["run", "--until-caught-up", "--checkpoint-interval-ms", "500"]);
    assert!(run.status.success(), "{}", text(&run));

    let status = cmd(&["status", "--format", "json"]);
    assert!(status.status.success(), "{}", text(&status));
    let doc: Value = serde_json::from_slice(&status.stdout).unwrap();
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("schemas/status.schema.json")).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&doc).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}\n{doc:#}");
    let jobs = doc["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 5, "{doc:#}");
    // The jobs' first run: when all of it was within the last minute, their rates are their
    // totals over 60 s (on a machine so slow that it was not, at most that).
    let within_a_minute = ran.elapsed() < Duration::from_secs(55);
    for job in jobs {
        let t = job["throughput"].as_object().unwrap_or_else(|| panic!("{job:#}"));
        assert_eq!(
            t.keys().collect::<Vec<_>>(),
            ["window_seconds", "records_in_per_second", "records_out_per_second"],
            "{job:#}"
        );
        assert_eq!(t["window_seconds"], 60);
        for (rate, total) in [("records_in_per_second", "records_in"), ("records_out_per_second", "records_out")] {
            let rate = t[rate].as_f64().unwrap();
            let total = job["totals"][total].as_f64().unwrap();
            if within_a_minute {
                assert!((rate * 60.0 - total).abs() < 1e-6, "{rate}/s against {total} in: {job:#}");
            } else {
                assert!(rate * 60.0 <= total + 1e-6, "{rate}/s against {total} in: {job:#}");
            }
        }
    }
    let orders = jobs.iter().find(|j| j["model"] == "orders_by_mode").unwrap();
    let orders_in = orders["throughput"]["records_in_per_second"].as_f64().unwrap();
    assert!(orders_in > 0.0, "{orders:#}");

    let status = cmd(&["status"]);
    let shown = String::from_utf8_lossy(&status.stdout).into_owned();
    eprintln!("{shown}");
    assert!(shown.lines().any(|l| l.contains("in/s") && l.contains("out/s")), "{shown}");
    let line = shown.lines().find(|l| l.starts_with("orders_by_mode")).unwrap_or_else(|| panic!("{shown}"));
    assert!(line.split_whitespace().any(|w| w == format!("{orders_in:.1}")), "{line}");
}
