//! `plan` / `apply` against Apache Kafka (a broker process started by the test), with kcat producing the inputs
//! and reading the outputs: apply, a plan with nothing to do, an edited project planned and
//! applied while a worker runs, the worker switching generation without losing input, and two
//! applies of one saved plan at once, of which exactly one succeeds.

mod common;
mod e2e_common;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{copy_dir, replace_in};
use e2e_common::kafka::KafkaCluster;
use e2e_common::*;

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn apply_edit_apply_while_a_worker_runs() {
    let Some(kcat) = tools() else { return };
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    copy_dir(&root().join("example-project"), &project, &["target", "schemas"]);
    let cmd = |args: &[&str]| {
        let mut c = streamctl();
        c.arg("--project-dir").arg(&project).args([
            "--target",
            "local",
            "--bootstrap-servers",
            &bootstrap,
            "--schema-registry-url",
            "file:registry",
        ]);
        c.args(args);
        c
    };
    create_source_topics(&bootstrap);
    register_logon_schema(&project.join("registry"));
    produce_samples(&kcat, &bootstrap, 0.0..0.5);

    let first = cmd(&["apply", "--auto-approve"]).output().unwrap();
    assert!(first.status.success(), "{}", text(&first));
    assert!(text(&first).contains("as generation 1."), "{}", text(&first));
    assert!(project.join("registry/soe.orders-by-mode-value/v1.json").is_file());

    let again = cmd(&["plan", "--detailed-exitcode"]).output().unwrap();
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(text(&again).contains("No changes."), "{}", text(&again));

    // A worker runs the deployed generation.
    let logs = tempfile::tempdir().unwrap();
    let log = std::fs::File::create(logs.path().join("worker.log")).unwrap();
    let mut worker =
        Killed(cmd(&["run", "--checkpoint-interval-ms", "500"]).stdout(Stdio::null()).stderr(log).spawn().unwrap());
    let worker_log = || std::fs::read_to_string(logs.path().join("worker.log")).unwrap_or_default();
    // Both models to be edited run (and then checkpoint, every 500 ms) before the edit: a job
    // stopped while it starts has no checkpoint to tell the new generation about.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !["[logon_prime_loyal] task", "[orders_by_mode] task"]
        .iter()
        .all(|job| worker_log().lines().any(|l| l.starts_with(job) && l.contains(" runs on ")))
    {
        assert!(Instant::now() < deadline, "the jobs did not start:\n{}", worker_log());
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));

    // Two edits that keep the results: a stateless filter (offsets carry over) and a running
    // aggregation (its state is rebuilt from the earliest offset).
    replace_in(
        &project,
        "models/logon_prime_loyal.sql",
        "WHERE CUSTOMER_CLASS",
        "WHERE LOGON_ID > 0 AND CUSTOMER_CLASS",
    );
    replace_in(
        &project,
        "models/orders_by_mode.sql",
        "GROUP BY ORDER_MODE",
        "GROUP BY ORDER_MODE\nHAVING COUNT(*) > 0",
    );
    let plan = cmd(&["plan", "--detailed-exitcode"]).output().unwrap();
    let shown = text(&plan);
    assert_eq!(plan.status.code(), Some(2), "{shown}");
    assert!(shown.contains("~ job logon_prime_loyal"), "{shown}");
    assert!(shown.contains("no state: offsets kept"), "{shown}");
    assert!(shown.contains("-/+ job orders_by_mode"), "{shown}");
    assert!(shown.contains("reprocesses from earliest"), "{shown}");

    let second = cmd(&["apply", "--auto-approve"]).output().unwrap();
    assert!(second.status.success(), "{}", text(&second));
    assert!(text(&second).contains("as generation 2."), "{}", text(&second));
    produce_samples(&kcat, &bootstrap, 0.5..1.0);

    // Every expected output arrives: nothing was lost across the switch.
    let exp = expected();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let problems = check_outputs(&kcat, &bootstrap, &exp);
        if problems.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "outputs incomplete after the new generation: {problems:#?}\n--- worker\n{}",
            worker_log()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    // The outputs can be complete before the new generation's jobs have read their checkpoints
    // (the old ones run until they hand over), so their log lines are waited for.
    let wanted = [
        "generation 2 deployed: checkpointing and switching",
        "[logon_prime_loyal] the model changed; it keeps no state",
        "[orders_by_mode] the model changed since its last checkpoint",
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let wl = worker_log();
        if wanted.iter().all(|w| wl.contains(w)) {
            break;
        }
        assert!(Instant::now() < deadline, "missing one of {wanted:?} in:\n{wl}");
        std::thread::sleep(Duration::from_millis(500));
    }

    let status = cmd(&["status", "--format", "json"]).output().unwrap();
    assert!(status.status.success(), "{}", text(&status));
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(v["generation"], 2);
    let jobs = v["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 5);
    let job = |m: &str| jobs.iter().find(|j| j["model"] == m).unwrap().clone();
    assert_eq!(job("orders_by_mode")["generation"], 2);
    assert_eq!(job("logon_enriched")["generation"], 1);
    assert!(job("logon_enriched")["worker"].is_string(), "{v:#}");

    // One saved plan, applied twice at once: the lock (or, for the later one, the plan's
    // staleness) lets exactly one through.
    replace_in(&project, "models/logon_prime_loyal.sql", "WHERE LOGON_ID > 0 AND", "WHERE LOGON_ID > 1 AND");
    let saved = dir.path().join("p.plan");
    let out = cmd(&["plan", "--out"]).arg(&saved).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let a = cmd(&["apply"]).arg(&saved).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let b = cmd(&["apply"]).arg(&saved).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let wins = [&a, &b].iter().filter(|o| o.status.success()).count();
    assert_eq!(wins, 1, "--- a\n{}\n--- b\n{}", text(&a), text(&b));
    let loser = if a.status.success() { &b } else { &a };
    assert!(
        text(loser).contains("another apply holds the lock") || text(loser).contains("the plan is stale"),
        "{}",
        text(loser)
    );

    // Destroy: the worker lets its jobs go, and the target is empty again.
    let destroy = cmd(&["destroy", "--auto-approve"]).output().unwrap();
    assert!(destroy.status.success(), "{}", text(&destroy));
    let status = worker.exited_within(Duration::from_secs(30));
    let status = status.unwrap_or_else(|| panic!("the worker kept running after destroy\n{}", worker_log()));
    assert!(status.success(), "{}", worker_log());
    let after = cmd(&["plan", "--detailed-exitcode"]).output().unwrap();
    assert_eq!(after.status.code(), Some(2), "{}", text(&after));
    assert!(text(&after).contains("nothing deployed yet"), "{}", text(&after));
}

/// The configs of a topic as the broker describes them (those set on the topic itself), once
/// `settled` says they are: a broker applies a config change from the metadata log a moment after
/// AlterConfigs returns. After 10 s, whatever they are.
fn topic_overrides(
    bootstrap: &str,
    topic: &str,
    settled: impl Fn(&std::collections::BTreeMap<String, String>) -> bool,
) -> std::collections::BTreeMap<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let configs = described_overrides(bootstrap, topic);
        if settled(&configs) || Instant::now() > deadline {
            return configs;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn described_overrides(bootstrap: &str, topic: &str) -> std::collections::BTreeMap<String, String> {
    use rdkafka::admin::{AdminClient, AdminOptions, ConfigSource, ResourceSpecifier};
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let admin: AdminClient<rdkafka::client::DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let described = rt
        .block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new()))
        .unwrap()
        .remove(0)
        .unwrap();
    described
        .entries
        .into_iter()
        .filter(|e| e.source == ConfigSource::DynamicTopic)
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect()
}

fn topics_on(bootstrap: &str) -> Vec<String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap).create().unwrap();
    let md = c.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    let mut names: Vec<String> =
        md.topics().iter().map(|t| t.name().to_string()).filter(|n| !n.starts_with("__")).collect();
    names.sort();
    names
}

/// A target's `topic_prefix` names every topic streamctl derives (output, checkpoint, dead letters,
/// control), apply and run agree on them; a relation's kind changing alters its topic's
/// `cleanup.policy` in place, back to the broker default too, and keeps configs set by hand; more
/// partitions are added in place.
#[test]
fn topic_prefix_and_topic_configs_on_kafka() {
    let Some(kcat) = tools() else { return };
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path();
    std::fs::create_dir_all(project.join("sources")).unwrap();
    std::fs::create_dir_all(project.join("models")).unwrap();
    std::fs::write(
        project.join("streamctl_project.yml"),
        "name: cfg\nversion: \"1.0.0\"\ndefault_target: dev\ntargets:\n  dev:\n    type: kafka\n    \
         bootstrap_servers: \"{{ env_var('KAFKA_BOOTSTRAP_SERVERS') }}\"\n    topic_prefix: dev.\n",
    )
    .unwrap();
    std::fs::write(
        project.join("sources/s.yml"),
        "version: 1\nsources:\n  - name: s\n    tables:\n      - name: events\n        topic: cfg-events\n        \
         kind: stream\n        format: json\n        on_error: dead_letter\n        columns:\n          - name: K\n            \
         type: INT\n          - name: V\n            type: BIGINT\n",
    )
    .unwrap();
    let model = project.join("models/latest_v.sql");
    std::fs::write(
        &model,
        "{{ config(materialized='table', key=['K']) }}\nSELECT K, V FROM {{ source('s', 'events') }}\n",
    )
    .unwrap();
    let cmd = |args: &[&str]| {
        let mut c = streamctl();
        c.arg("--project-dir").arg(project).env("KAFKA_BOOTSTRAP_SERVERS", &bootstrap).args(args);
        c.output().unwrap()
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cluster = streamctl::connectors::kafka::Cluster::Kafka {
        bootstrap: bootstrap.clone(),
        properties: vec![],
        replication_factor: 1,
    };
    let source = streamctl::connectors::kafka::TopicSpec { name: "cfg-events".into(), partitions: 1, compacted: false };
    rt.block_on(cluster.ensure_topics(&[source])).unwrap();

    let applied = cmd(&["apply", "--auto-approve"]);
    assert!(applied.status.success(), "{}", text(&applied));
    assert_eq!(
        topics_on(&bootstrap),
        [
            "cfg-events",
            "dev._streamctl.cfg.latest_v.checkpoints",
            "dev._streamctl_deployments",
            "dev.cfg-events.dlq",
            "dev.latest_v"
        ],
        "{}",
        text(&applied)
    );
    let configs = topic_overrides(&bootstrap, "dev.latest_v", |c| c.contains_key("cleanup.policy"));
    assert_eq!(configs.get("cleanup.policy").map(String::as_str), Some("compact"));

    // The jobs of the deployed generation use the same names.
    let lines: Vec<String> = [r#"{"K":1,"V":10}"#, r#"{"K":1,"V":11}"#, "not json"].map(String::from).into();
    kcat_produce(&kcat, &bootstrap, "cfg-events", &lines, false);
    let ran = cmd(&["run", "--until-caught-up"]);
    assert!(ran.status.success(), "{}", text(&ran));
    let out: Vec<i64> =
        kcat_consume(&kcat, &bootstrap, "dev.latest_v").iter().filter_map(|(_, v)| v["v"].as_i64()).collect();
    assert_eq!(out, [10, 11], "{}", text(&ran));
    assert_eq!(kcat_consume(&kcat, &bootstrap, "dev.cfg-events.dlq").len(), 1, "{}", text(&ran));
    assert!(!topics_on(&bootstrap).iter().any(|t| t.starts_with("_streamctl") || t == "latest_v"));
    // Records stamped with event times: no time-based retention on the topics streamctl creates.
    let configs = topic_overrides(&bootstrap, "dev.cfg-events.dlq", |c| c.contains_key("retention.ms"));
    assert_eq!(configs.get("retention.ms").map(String::as_str), Some("-1"));

    // A config set by hand (AlterConfigs sets a topic's whole set: both here).
    let set_by_hand = [("cleanup.policy", "compact"), ("retention.ms", "86400000")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    rt.block_on(cluster.alter_configs("dev.latest_v", &set_by_hand)).unwrap();
    topic_overrides(&bootstrap, "dev.latest_v", |c| c.contains_key("retention.ms"));

    // A stream: the compaction goes back to the broker's default, in place.
    common::replace_in(project, "models/latest_v.sql", "materialized='table'", "materialized='stream'");
    let plan = cmd(&["plan"]);
    assert!(text(&plan).contains("~ topic dev.latest_v"), "{}", text(&plan));
    assert!(text(&plan).contains("cleanup.policy compact → (default)"), "{}", text(&plan));
    let applied = cmd(&["apply", "--auto-approve"]);
    assert!(applied.status.success(), "{}", text(&applied));
    let configs = topic_overrides(&bootstrap, "dev.latest_v", |c| !c.contains_key("cleanup.policy"));
    assert_eq!(configs.get("cleanup.policy"), None, "{configs:?}");
    assert_eq!(configs.get("retention.ms").map(String::as_str), Some("86400000"), "{configs:?}");

    // And a table again.
    common::replace_in(project, "models/latest_v.sql", "materialized='stream'", "materialized='table'");
    let applied = cmd(&["apply", "--auto-approve"]);
    assert!(applied.status.success(), "{}", text(&applied));
    let configs = topic_overrides(&bootstrap, "dev.latest_v", |c| c.contains_key("cleanup.policy"));
    assert_eq!(configs.get("cleanup.policy").map(String::as_str), Some("compact"), "{configs:?}");
    assert_eq!(configs.get("retention.ms").map(String::as_str), Some("86400000"), "{configs:?}");

    // More partitions: added in place, and served by the time apply returns.
    common::replace_in(project, "models/latest_v.sql", "key=['K']", "key=['K'], partitions=3");
    let plan = cmd(&["plan"]);
    assert!(text(&plan).contains("partitions 1 → 3"), "{}", text(&plan));
    let applied = cmd(&["apply", "--auto-approve"]);
    assert!(applied.status.success(), "{}", text(&applied));
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    let md = c.fetch_metadata(Some("dev.latest_v"), Duration::from_secs(10)).unwrap();
    assert_eq!(md.topics()[0].partitions().len(), 3);
    assert_eq!(c.fetch_watermarks("dev.latest_v", 2, Duration::from_secs(10)).unwrap(), (0, 0));
    let configs = topic_overrides(&bootstrap, "dev.latest_v", |_| true);
    assert_eq!(configs.get("retention.ms").map(String::as_str), Some("86400000"), "{configs:?}");
}
