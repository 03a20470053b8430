//! The OpenSearch sink against a real OpenSearch node (2.19.6 from Maven Central, started by the
//! test, see `e2e_common::opensearch`) and Apache Kafka (`e2e_common::kafka`): the example project
//! with three opensearch sinks, a stream model (`logon_prime_loyal`, ids from topic, partition and
//! offset), a running aggregate updated with every order (`orders_by_mode`, a table: id = its key,
//! updates overwrite) and a windowed aggregate with a composite key (`orders_agg_hourly`) into an
//! index whose mapping refuses part of its rows (`sum_order_total` as a `short`): those go to the
//! dead-letter topic with OpenSearch's reason; and the stream again, routed to an index named
//! after a column. A long-running `streamctl run` is killed with
//! SIGKILL while it delivers, more input arrives, a second one resumes while one index is
//! write-blocked for a while (the sink stalls, logs and retries, drops nothing): the indices then
//! hold exactly the documents `tests/e2e/expected.py` computes from the sample data (none lost,
//! none twice), read back with `_search`. Last, a tombstone deletes its document.

mod common;
mod e2e_common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use e2e_common::kafka::KafkaCluster;
use e2e_common::opensearch::{self, OpenSearchNode};
use e2e_common::*;
use serde_json::{json, Value};

const PASSWORD: &str = "os-Secret-4410";
/// The sinks' indices and the model each holds.
const INDICES: [(&str, &str); 4] = [
    ("prime-logons", "logon_prime_loyal"),
    ("orders-by-mode", "orders_by_mode"),
    ("orders-hourly", "orders_agg_hourly"),
    // Routed by `logons-{{customer_class}}` (every row of the model is a Prime one).
    ("logons-prime", "logon_prime_loyal"),
];
/// `orders-hourly` maps this field as a `short`: larger sums are refused.
const SHORT_MAX: f64 = 32767.0;

/// A copy of the example project whose sinks also go to OpenSearch at `url`.
fn project(url: &str, batch: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&root().join("example-project"), dir.path(), &["target"]);
    let file = dir.path().join("sinks/downstream.yml");
    let mut text = std::fs::read_to_string(&file).unwrap();
    let connect = format!(
        "url: {url}\n      user: streamctl\n      password: \"{{{{ env_var('OS_SINK_PASSWORD') }}}}\"\n      \
         batch_records: {batch}"
    );
    text.push_str(&format!(
        "
  - name: prime_logons_os
    from: logon_prime_loyal
    connector:
      type: opensearch
      {connect}
      index: prime-logons

  - name: orders_by_mode_os
    from: orders_by_mode
    connector:
      type: opensearch
      {connect}
      index: orders-by-mode

  - name: orders_hourly_os
    from: orders_agg_hourly
    on_error: dead_letter
    dead_letter_topic: orders-hourly-refused
    connector:
      type: opensearch
      {connect}
      index: orders-hourly

  - name: logons_by_class_os
    from: logon_prime_loyal
    connector:
      type: opensearch
      {connect}
      index: logons
      transforms:
        - type: route
          to: \"logons-{{{{customer_class}}}}\"
"
    ));
    std::fs::write(&file, text).unwrap();
    dir
}

/// Documents of `want` not in `got` and documents of `got` not in `want`, counting repeats; an
/// id of `None` matches any id.
fn diff(want: &[Doc], got: &[Doc]) -> (Vec<Doc>, Vec<Doc>) {
    let matches = |w: &Doc, g: &Doc| (w.0.is_none() || w.0 == g.0) && same(&w.1, &g.1);
    let mut used = vec![false; got.len()];
    let mut missing = Vec::new();
    for w in want {
        match (0..got.len()).find(|i| !used[*i] && matches(w, &got[*i])) {
            Some(i) => used[i] = true,
            None => missing.push(w.clone()),
        }
    }
    let extra = got.iter().zip(&used).filter(|(_, u)| !**u).map(|(g, _)| g.clone()).collect();
    (missing, extra)
}

/// A document's id (where known) and source.
type Doc = (Option<String>, Value);

/// The reference: each index's documents as `(id, source)`; ids of tables from their key (the
/// composite one as a JSON list), of the stream unknown (`None`: any id, each row once). And the
/// hourly rows the mapping refuses.
fn reference() -> (BTreeMap<&'static str, Vec<Doc>>, Vec<Value>) {
    let exp = expected();
    let mut out = BTreeMap::new();
    out.insert("prime-logons", exp["logon_prime_loyal"].iter().map(|r| (None, r.clone())).collect());
    out.insert("logons-prime", exp["logon_prime_loyal"].iter().map(|r| (None, r.clone())).collect());
    out.insert(
        "orders-by-mode",
        exp["orders_by_mode"]
            .iter()
            .map(|r| (Some(r["order_mode"].as_str().unwrap().to_string()), r.clone()))
            .collect(),
    );
    let (fits, refused): (Vec<Value>, Vec<Value>) =
        exp["orders_agg_hourly"].iter().cloned().partition(|r| r["sum_order_total"].as_f64().unwrap() <= SHORT_MAX);
    out.insert(
        "orders-hourly",
        fits.into_iter()
            .map(|r| (Some(json!([r["order_status"], r["windowstart"], r["windowend"]]).to_string()), r))
            .collect(),
    );
    (out, refused)
}

/// What differs between the indices and the reference, one line per index; empty when equal.
fn problems(node: &OpenSearchNode, want: &BTreeMap<&'static str, Vec<Doc>>) -> Vec<String> {
    INDICES
        .iter()
        .filter_map(|(index, _)| {
            let Some(got) = node.documents(index) else { return Some(format!("{index}: no such index")) };
            let want = &want[index];
            let got: Vec<Doc> = got.into_iter().map(|(id, v)| (Some(id), v)).collect();
            let (missing, extra) = diff(want, &got);
            (!missing.is_empty() || !extra.is_empty()).then(|| {
                format!(
                    "{index}: {} documents, {} expected; {} missing (first {:?}), {} not expected or twice (first {:?})",
                    got.len(),
                    want.len(),
                    missing.len(),
                    missing.first(),
                    extra.len(),
                    extra.first()
                )
            })
        })
        .collect()
}

#[test]
fn opensearch_indices_hold_exactly_the_models_documents_after_a_sigkill() {
    if !opensearch::available() {
        return;
    }
    let Some(kcat) = tools() else { return };
    let started = Instant::now();
    // The node starts while Kafka does.
    let mut node = OpenSearchNode::spawn();
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    let node_start = node.wait_ready();
    eprintln!("OpenSearch answered {:.1} s after its JVM started", node_start.as_secs_f64());
    node.call(
        "PUT",
        "/orders-hourly",
        Some(&json!({"mappings": {"properties": {"sum_order_total": {"type": "short"}}}})),
    );
    // Small batches: many bulk requests, so the kill lands among them.
    let project = project(&node.url(), 5);
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
                .env("OS_SINK_PASSWORD", PASSWORD)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap(),
        )
    };
    let log = |n: &str| std::fs::read_to_string(logs.path().join(n)).unwrap_or_default();

    let mut first = worker("first.log");
    let deadline = Instant::now() + Duration::from_secs(120);
    while node.count("prime-logons") == 0 {
        assert!(Instant::now() < deadline, "no document in prime-logons within 120 s\n{}", log("first.log"));
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGKILL while delivering: bulk requests may be under way, offsets uncommitted.
    first.0.kill().unwrap();
    let _ = first.0.wait();

    // The index refuses writes for a while (the cluster's state, not the documents'): the sink
    // must stall and retry, not drop them or copy them aside.
    node.call("PUT", "/prime-logons/_settings", Some(&json!({"index.blocks.write": true})));
    // Counted once the counts stand still: a bulk request the node had when the worker died
    // is still indexed.
    let at_kill = once_still(|| INDICES.iter().map(|(i, _)| node.count(i)).collect::<Vec<usize>>());
    produce_samples(&kcat, &bootstrap, 0.5..1.0);
    let mut second = worker("second.log");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !log("second.log").contains("cluster_block_exception") {
        assert!(Instant::now() < deadline, "the write block is not logged within 120 s\n{}", log("second.log"));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(log("second.log").contains("the sink stalls and sends the batch again in"), "{}", log("second.log"));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(node.count("prime-logons"), at_kill[0], "documents arrived past the write block");
    node.call("PUT", "/prime-logons/_settings", Some(&json!({"index.blocks.write": null})));

    let (want, refused) = reference();
    assert!(!refused.is_empty() && want["orders-hourly"].len() > 1, "the sample has rows on both sides of the short");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let p = problems(&node, &want);
        if p.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the indices differ from the reference after 120 s:\n{}\n--- first (killed)\n{}\n--- second\n{}",
            p.join("\n"),
            log("first.log"),
            log("second.log")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The rows the mapping refuses are in the dead-letter topic with OpenSearch's reason (at least
    // once: the kill may have repeated a copy).
    let copies = kcat_records(&kcat, &bootstrap, "orders-hourly-refused");
    let values: Vec<Value> = copies.iter().map(|r| serde_json::from_str(&r.payload).unwrap()).collect();
    let missing: Vec<&Value> = refused.iter().filter(|r| !values.iter().any(|v| same(r, v))).collect();
    assert!(missing.is_empty(), "not in the dead-letter topic: {missing:?}");
    assert!(values.iter().all(|v| refused.iter().any(|r| same(r, v))), "dead letters that fit: {values:?}");
    for h in copies.iter().map(|r| &r.headers) {
        assert!(h["streamctl.error"].starts_with("OpenSearch refused the document: mapper_parsing_exception"), "{h:?}");
        assert_eq!(h["streamctl.sink"], "orders_hourly_os");
        assert_eq!(h["streamctl.source.topic"], "soe.orders-agg-hourly");
    }

    // SIGTERM: the sinks write what they hold and the process exits 0.
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
    for n in ["first.log", "second.log"] {
        assert!(!log(n).contains(PASSWORD), "{n} shows the password");
    }

    // A tombstone on the table model's topic deletes its document (and only it).
    let mut kcat_p = Command::new(&kcat)
        .args(["-P", "-b", &bootstrap, "-t", "soe.orders-by-mode", "-K", "\t", "-Z"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        writeln!(kcat_p.stdin.as_mut().unwrap(), "\"direct\"\t").unwrap();
    }
    assert!(kcat_p.wait().unwrap().success());
    let out = streamctl()
        .args(["run", "--until-caught-up", "--select", "orders_by_mode", "--project-dir"])
        .arg(project.path())
        .args(["--target", "local", "--bootstrap-servers", &bootstrap])
        .env("OS_SINK_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let ids: Vec<String> = node.documents("orders-by-mode").unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["online"], "{stdout}");
    let shown = format!("sink orders_by_mode_os (orders_by_mode → OpenSearch {} index orders-by-mode)", node.url());
    assert!(stdout.contains(&shown), "{stdout}");
    eprintln!(
        "documents at the kill: {at_kill:?}; at the end: {:?}; {} dead letters; wall time {:.1} s\n{}",
        INDICES.iter().map(|(i, _)| node.count(i)).collect::<Vec<_>>(),
        copies.len(),
        started.elapsed().as_secs_f64(),
        log("second.log").lines().filter(|l| l.contains("sink")).take(12).collect::<Vec<_>>().join("\n")
    );
    eprintln!("{}", stdout.lines().filter(|l| l.starts_with("sink ")).collect::<Vec<_>>().join("\n"));
}

/// On the embedded target the run delivers after the jobs have caught up; a second run (the
/// in-process broker starts empty) writes the same ids again: the indices equal the reference
/// after each.
#[test]
fn embedded_runs_fill_the_indices_and_a_rerun_overwrites_the_same_documents() {
    if !opensearch::available() {
        return;
    }
    let node = OpenSearchNode::start();
    node.call(
        "PUT",
        "/orders-hourly",
        Some(&json!({"mappings": {"properties": {"sum_order_total": {"type": "short"}}}})),
    );
    let project = project(&node.url(), 50);
    let (want, refused) = reference();
    for round in 1..=2 {
        let out = streamctl()
            .args(["run", "--project-dir"])
            .arg(project.path())
            .env("OS_SINK_PASSWORD", PASSWORD)
            .output()
            .unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "run {round}:\n{stdout}\n{stderr}");
        let p = problems(&node, &want);
        assert!(p.is_empty(), "run {round}: {}\n{stderr}", p.join("\n"));
        let shown = format!(
            "sink orders_hourly_os (orders_agg_hourly → OpenSearch {} index orders-hourly): {} records written, {} \
             records to the dead-letter topic",
            node.url(),
            want["orders-hourly"].len(),
            refused.len()
        );
        assert!(stdout.contains(&shown), "run {round} does not say `{shown}`:\n{stdout}");
        let routed = format!(
            "sink logons_by_class_os (logon_prime_loyal → OpenSearch {} indices logons-prime): {} records written",
            node.url(),
            want["logons-prime"].len()
        );
        assert!(stdout.contains(&routed), "run {round} does not say `{routed}`:\n{stdout}");
        assert!(!stdout.contains(PASSWORD) && !stderr.contains(PASSWORD), "run {round} shows the password");
        if round == 2 {
            eprintln!("{}", stdout.lines().filter(|l| l.starts_with("sink ")).collect::<Vec<_>>().join("\n"));
        }
    }
}

/// Without a server: a password written in the file, a password in the url and an index name
/// OpenSearch does not allow are errors at their place; `route` on a table model's sink too.
#[test]
fn validate_rejects_passwords_and_bad_index_names_in_opensearch_sinks() {
    let project = project("http://127.0.0.1:9200", 10);
    let file = project.path().join("sinks/downstream.yml");
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replacen("password: \"{{ env_var('OS_SINK_PASSWORD') }}\"", "password: hunter2", 1)
        .replacen("url: http://127.0.0.1:9200", "url: http://streamctl:hunter3@127.0.0.1:9200", 2)
        .replace(
            "index: orders-by-mode",
            "index: Orders-By-Mode\n      transforms:\n        - type: route\n          to: \"orders-{{order_mode}}\"",
        );
    std::fs::write(&file, &text).unwrap();
    let at = |needle: &str, nth: usize, column: usize| {
        let line = text.lines().enumerate().filter(|(_, l)| l.contains(needle)).nth(nth).unwrap().0 + 1;
        format!("sinks/downstream.yml:{line}:{column}")
    };
    let out = streamctl().args(["validate", "--project-dir"]).arg(project.path()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&at("password: hunter2", 0, 17)), "{stderr}");
    assert!(
        stderr.contains("opensearch sink `prime_logons_os`: a password is given only through env_var()"),
        "{stderr}"
    );
    assert!(stderr.contains(&at("hunter3", 1, 12)), "{stderr}");
    assert!(stderr.contains("opensearch sink `orders_by_mode_os`: the url holds a password"), "{stderr}");
    assert!(stderr.contains(&at("index: Orders-By-Mode", 0, 14)), "{stderr}");
    assert!(stderr.contains("index `Orders-By-Mode` holds `O`"), "{stderr}");
    assert!(stderr.contains("route on an opensearch sink of table model `orders_by_mode`"), "{stderr}");
}

/// `plan` ends with the sinks `run` delivers, the indices among them.
#[test]
fn plan_lists_the_opensearch_sinks() {
    let project = project("http://127.0.0.1:9200", 10);
    let out = streamctl().args(["plan", "--project-dir"]).arg(project.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let listed: Vec<String> = stdout
        .split("Sinks delivered by `streamctl run`:\n")
        .nth(1)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    for line in [
        "prime_logons_os logon_prime_loyal → OpenSearch index prime-logons",
        "orders_by_mode_os orders_by_mode → OpenSearch index orders-by-mode",
        "orders_hourly_os orders_agg_hourly → OpenSearch index orders-hourly",
    ] {
        assert!(listed.iter().any(|l| l == line), "{line:?} not in {listed:?}");
    }
}
