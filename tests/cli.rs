//! The CLI on the example project and on scaffolded projects: exact outputs and files.

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::copy_dir;

fn streamctl() -> Command {
    let mut c = Command::cargo_bin("streamctl").unwrap();
    c.env("NO_COLOR", "1").env_remove("STREAMCTL_TARGET");
    c
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("example-project")
}

/// A copy of a project in a temporary directory, to edit or compile into.
fn copy_project(from: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(from, tmp.path(), &["target"]);
    tmp
}

fn stdout(c: &mut Command) -> String {
    let out = c.output().unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_example_project_is_valid() {
    let out = stdout(streamctl().args(["validate", "--project-dir"]).arg(example()));
    assert_eq!(out, "valid: 3 sources, 5 models, 2 sinks\n");
}

#[test]
fn ls_selects_like_dbt() {
    let ls = |sel: &str| stdout(streamctl().args(["ls", "--project-dir"]).arg(example()).args(["--select", sel]));
    assert_eq!(
        ls("+logon_prime_loyal"),
        "source.soe.customers\nsource.soe.logon\nmodel.logon_enriched\nmodel.logon_prime_loyal\n"
    );
    assert_eq!(ls("source:soe.orders+"), "source.soe.orders\nmodel.orders_agg_hourly\nmodel.orders_by_mode\n");
    assert_eq!(ls("tag:fraud"), "model.logon_bursts\n");
    assert_eq!(ls("logon_enriched+,resource_type:sink"), "sink.prime_logons_files\nsink.prime_logons_out\n");
}

fn manifest(dir: &Path) -> serde_json::Value {
    stdout(streamctl().args(["compile", "--project-dir"]).arg(dir));
    serde_json::from_str(&std::fs::read_to_string(dir.join("target/manifest.json")).unwrap()).unwrap()
}

#[test]
fn compile_writes_the_manifest_and_compiled_sql() {
    let tmp = copy_project(&example());
    let m = manifest(tmp.path());
    let node = &m["nodes"]["model.orders_agg_hourly"];
    assert_eq!(node["operator"], "windowed_aggregate");
    assert_eq!(node["kind"], "table");
    assert_eq!(node["window"]["type"], "tumbling");
    assert_eq!(node["window"]["size_ms"], 3_600_000);
    assert_eq!(node["window"]["grace_ms"], 600_000);
    assert_eq!(node["emit"], "final");
    assert_eq!(node["key"], serde_json::json!(["order_status", "windowstart", "windowend"]));
    let cols: Vec<String> = node["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["name"].as_str().unwrap(), c["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        cols,
        [
            "order_status INT",
            "order_count BIGINT",
            "max_order_total DOUBLE",
            "sum_order_total DOUBLE",
            "window_start_ts STRING",
            "windowstart BIGINT",
            "windowend BIGINT"
        ]
    );
    assert_eq!(m["nodes"]["model.logon_enriched"]["operator"], "stream_table_join");
    assert_eq!(m["nodes"]["model.orders_by_mode"]["operator"], "aggregate");
    assert_eq!(m["nodes"]["model.logon_prime_loyal"]["depends_on"], serde_json::json!(["model.logon_enriched"]));
    let sql = std::fs::read_to_string(tmp.path().join("target/compiled/models/logon_prime_loyal.sql")).unwrap();
    assert!(sql.contains("FROM logon_enriched\nWHERE CUSTOMER_CLASS = 'Prime'\n  AND CUSTOMER_SINCE_YRS > 5"), "{sql}");
    // The manifest validates against its checked-in schema.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/manifest.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&m).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn semantic_hash_ignores_formatting_but_not_logic() {
    let tmp = copy_project(&example());
    let path = tmp.path().join("models/logon_prime_loyal.sql");
    let hash =
        |dir: &Path| manifest(dir)["nodes"]["model.logon_prime_loyal"]["semantic_hash"].as_str().unwrap().to_string();
    let original = std::fs::read_to_string(&path).unwrap();
    let before = hash(tmp.path());

    let reformatted = original.replace("    LOGON_ID,\n", "  logon_id ,  -- the logon\n").replace("FROM", "\n\nfrom");
    std::fs::write(&path, &reformatted).unwrap();
    assert_eq!(hash(tmp.path()), before, "whitespace, case and comments are not changes");

    std::fs::write(&path, original.replace("CUSTOMER_SINCE_YRS > {{", "CUSTOMER_SINCE_YRS >= {{")).unwrap();
    assert_ne!(hash(tmp.path()), before, "a changed filter is a change");
}

#[test]
fn init_scaffolds_a_project_that_validates() {
    let tmp = tempfile::tempdir().unwrap();
    let out = stdout(streamctl().args(["init", "payments", "--project-dir"]).arg(tmp.path()));
    assert!(out.contains("created"), "{out}");
    let project = tmp.path().join("payments");
    assert_eq!(
        stdout(streamctl().args(["validate", "--project-dir"]).arg(&project)),
        "valid: 2 sources, 2 models, 0 sinks\n"
    );
    let tests = stdout(streamctl().args(["test", "--project-dir"]).arg(&project));
    assert!(tests.ends_with("tests: 2 passed, 0 failed\n"), "{tests}");
    // A second init into the same place refuses.
    let again = streamctl().args(["init", "payments", "--project-dir"]).arg(tmp.path()).output().unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn docs_write_an_offline_page_and_lineage() {
    let tmp = copy_project(&example());
    stdout(streamctl().args(["docs", "--project-dir"]).arg(tmp.path()));
    let html = std::fs::read_to_string(tmp.path().join("target/docs/index.html")).unwrap();
    for model in ["logon_enriched", "logon_prime_loyal", "orders_agg_hourly", "logon_bursts", "orders_by_mode"] {
        assert!(html.contains(&format!("<title>model.{model}</title>")), "{model} missing from the graph");
    }
    for remote in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!html.contains(remote), "the page must not load anything remote ({remote})");
    }
    let mermaid = stdout(streamctl().args(["docs", "--print", "mermaid", "--project-dir"]).arg(tmp.path()));
    insta::assert_snapshot!("example_mermaid", mermaid);
}

#[test]
fn help_has_examples() {
    let out = stdout(streamctl().arg("--help"));
    assert!(out.contains("Examples:"));
    let out = stdout(streamctl().args(["validate", "--help"]));
    assert!(out.contains("Exit codes: 0 valid, 1 invalid."));
}

/// The README's main job: on the embedded target, apply deploys the example project, loads the
/// sample data, runs every job until caught up and prints the outputs. The schemas registered
/// in the project's file registry are the ones checked in; a second apply in another process
/// (a fresh embedded broker) finds them registered already.
#[test]
fn apply_on_the_embedded_target_deploys_and_runs_the_example() {
    let tmp = copy_project(&example());
    let out = streamctl().arg("apply").arg("--project-dir").arg(tmp.path()).arg("--auto-approve").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Applied 31 changes as generation 1."), "{stderr}");
    assert!(stdout.contains("Plan: 31 to create, 0 to update in place, 0 to replace, 0 to destroy."), "{stdout}");
    assert!(stdout.contains("already registered in file registry schemas as version 1"), "{stdout}");
    // The embedded target runs exactly-once by default (librdkafka's mock cluster has transactions).
    let job = stdout.lines().find(|l| l.contains("+ job logon_enriched")).unwrap_or_default();
    assert!(job.ends_with("; exactly_once"), "{job}");
    // job, in, out (the same figures as `run`, checked against generate.py in runtime_example).
    for (job, counts) in
        [("logon_enriched", "341      299"), ("orders_agg_hourly", "300       33"), ("orders_by_mode", "300        2")]
    {
        let line = stdout.lines().find(|l| l.starts_with(job)).unwrap_or_default();
        assert!(line.contains(counts), "{job}: {line}\n{stdout}");
    }
    assert!(stdout.contains("orders_by_mode → soe.orders-by-mode: 2 records"), "{stdout}");
    // The 33 hourly rows leave the last hour's 11 (one per order status) open: the summary says so.
    let hourly = stdout.lines().find(|l| l.starts_with("orders_agg_hourly")).unwrap_or_default();
    assert_eq!(hourly.split_whitespace().nth(7), Some("11"), "open windows: {hourly}");
    assert!(hourly.contains("2017-09-27T19:58:57.000Z"), "the watermark: {hourly}");
    assert!(stdout.contains("12 windows (one per key) still open"), "{stdout}");
    // The main job ends in a file sink: the files printed hold the model's records.
    assert!(stdout.contains("logon_prime_loyal → soe.logon-prime-loyal: 45 records"), "{stdout}");
    // The kafka sink copies them to its topic (created with the model's topics).
    assert!(
        stdout.contains("sink prime_logons_out (logon_prime_loyal → topic soe.prime-logons.v1): 45 records written"),
        "{stdout}"
    );
    let dir = tmp.path().join("target/sinks/prime_logons");
    assert!(
        stdout.contains(&format!("sink prime_logons_files (logon_prime_loyal → {}): 45 records", dir.display())),
        "{stdout}"
    );
    let files: Vec<&str> = stdout.lines().filter(|l| l.trim_end().ends_with(".jsonl")).map(str::trim).collect();
    assert!(!files.is_empty(), "{stdout}");
    let mut rows = 0;
    for f in &files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(row["customer_class"], "Prime", "{f}: {line}");
            rows += 1;
        }
    }
    assert_eq!(rows, 45);
    // Registering changed nothing in the checked-in registry.
    for subject in ["soe.orders-agg-hourly-value", "soe.logon-enriched-key"] {
        let a = std::fs::read_to_string(example().join("schemas").join(subject).join("v1.json")).unwrap();
        let b = std::fs::read_to_string(tmp.path().join("schemas").join(subject).join("v1.json")).unwrap();
        assert_eq!(a, b);
        assert!(!tmp.path().join("schemas").join(subject).join("v2.json").exists());
    }
}

#[test]
fn apply_without_a_terminal_needs_auto_approve() {
    let tmp = copy_project(&example());
    let out = streamctl().arg("apply").arg("--project-dir").arg(tmp.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pass --auto-approve"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `plan --detailed-exitcode`: 2 with changes (the embedded broker starts empty), 1 when an
/// output's new schema breaks its subject's compatibility level in the file registry.
#[test]
fn plan_exit_codes_and_a_breaking_schema_change() {
    let tmp = copy_project(&example());
    let out = streamctl().arg("plan").arg("--project-dir").arg(tmp.path()).arg("--detailed-exitcode").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let model = tmp.path().join("models/orders_agg_hourly.sql");
    let sql = std::fs::read_to_string(&model).unwrap();
    // Drop MAX_ORDER_TOTAL: consumers holding version 1 require it (FORWARD_TRANSITIVE).
    let edited = sql.replace("MAX(ORDER_TOTAL) AS MAX_ORDER_TOTAL,", "");
    assert_ne!(edited, sql);
    std::fs::write(&model, edited).unwrap();
    let yml = tmp.path().join("models/models.yml");
    let props = std::fs::read_to_string(&yml).unwrap();
    let relaxed = props.replace("    contract:\n      enforced: true\n", "");
    assert_ne!(relaxed, props);
    std::fs::write(&yml, relaxed).unwrap();
    let out = streamctl().arg("plan").arg("--project-dir").arg(tmp.path()).arg("--detailed-exitcode").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    // The breaking change is an error: on stderr, with the plan's changes on stdout.
    let breaks = "breaks FORWARD_TRANSITIVE compatibility of subject soe.orders-agg-hourly-value (version 1)";
    assert!(stderr.contains(breaks), "{stderr}");
    assert!(stderr.contains("error: orders_agg_hourly: "), "{stderr}");
    assert!(!stdout.contains(breaks) && stdout.contains("Plan: "), "{stdout}");
}

/// `plan --format json` is what `schemas/plan.schema.json` documents.
#[test]
fn plan_json_follows_its_schema() {
    let tmp = copy_project(&example());
    let out = streamctl().arg("plan").arg("--project-dir").arg(tmp.path()).args(["--format", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/plan.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(&plan).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(plan["changes"].as_array().unwrap().len(), 31);
    assert_eq!(plan["changes"][0]["action"], "create");
}
