//! What a new user hits (issue #16): closed pipes, selections, silent misconfiguration, names
//! Kafka refuses, unbounded templates, window bounds, noise in plans. Each test is a small
//! project in and the exact outcome out.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use assert_cmd::Command;
use common::copy_dir;

fn streamctl() -> Command {
    let mut c = Command::cargo_bin("streamctl").unwrap();
    c.env("NO_COLOR", "1")
        .env_remove("STREAMCTL_TARGET")
        .env_remove("STREAMCTL_BOOTSTRAP_SERVERS")
        .env_remove("STREAMCTL_SCHEMA_REGISTRY_URL");
    c
}

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("example-project")
}

fn copy_project(from: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(from, tmp.path(), &["target"]);
    tmp
}

/// Exit code, stdout and stderr of a run.
fn run(c: &mut Command) -> (i32, String, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---- 5: closed pipes and selections ----

/// `plan --format json | head -c1`: the reader closed the pipe; streamctl ends quietly (exit 0,
/// nothing on stderr) instead of panicking with exit 101.
#[test]
fn a_closed_stdout_ends_quietly() {
    for args in [&["plan", "--format", "json"][..], &["validate", "--format", "json"], &["ls"]] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("streamctl"))
            .args(args)
            .arg("--project-dir")
            .arg(example())
            .env("NO_COLOR", "1")
            .env_remove("STREAMCTL_TARGET")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before anything is written
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// One rule for selections: a selector that matches no node is an error, whether it is a name,
/// a tag, a path or a source; an intersection that leaves nothing is an empty listing.
#[test]
fn a_selector_that_matches_nothing_is_an_error() {
    let ls = |sel: &str| run(streamctl().args(["ls", "--project-dir"]).arg(example()).args(["--select", sel]));
    assert_eq!(
        ls("tag:fruad"),
        (1, String::new(), "error: selector `tag:fruad` matches no node (did you mean `fraud`?)\n".into())
    );
    assert_eq!(ls("tag:nightly"), (1, String::new(), "error: selector `tag:nightly` matches no node\n".into()));
    assert_eq!(
        ls("path:models/nope"),
        (1, String::new(), "error: selector `path:models/nope` matches no node\n".into())
    );
    assert_eq!(
        ls("logon_enrich"),
        (1, String::new(), "error: selector `logon_enrich` matches no node (did you mean `logon_enriched`?)\n".into())
    );
    assert_eq!(ls("tag:fraud,resource_type:source"), (0, String::new(), String::new()));
    let (_, help, _) = run(streamctl().args(["ls", "--help"]));
    assert!(
        help.contains("A selector that matches no node (an unknown name, tag, path or source) is an error"),
        "{help}"
    );
}

// ---- 2: silent misconfiguration ----

/// `--bootstrap-servers` names a real cluster; the default target is the embedded broker.
/// Deploying to the embedded broker anyway would report success about a cluster nobody asked for.
#[test]
fn bootstrap_servers_with_the_embedded_target_is_an_error() {
    let tmp = copy_project(&example());
    for args in [&["plan"][..], &["apply", "--auto-approve"], &["validate"]] {
        let (code, stdout, stderr) = run(streamctl()
            .args(args)
            .arg("--project-dir")
            .arg(tmp.path())
            .args(["--bootstrap-servers", "kafka.example.com:9092"]));
        assert_eq!(code, 1, "{args:?}: {stdout}");
        assert!(stderr.contains("--bootstrap-servers given, but target `embedded` runs its own broker"), "{stderr}");
        assert!(stderr.contains("pass --target local or prod"), "{args:?}: {stderr}");
    }
}

/// `validate` checks the target it would deploy to: an unknown `--target` is an error there too.
#[test]
fn validate_rejects_an_unknown_target() {
    let (code, _, stderr) = run(streamctl().args(["validate", "--target", "prdo", "--project-dir"]).arg(example()));
    assert_eq!(code, 1);
    assert!(stderr.contains("no target named `prdo`"), "{stderr}");
    assert!(stderr.contains("help: did you mean `prod`?"), "{stderr}");
    assert!(stderr.ends_with("invalid: 1 error in 3 sources, 5 models, 2 sinks\n"), "{stderr}");
}

// ---- 10: seed ----

/// `seed` produces every source's sample data into its topic and reads the topic back; on the
/// embedded target the topics are created. `--select` picks sources; JSON is one document.
#[test]
fn seed_loads_the_sample_data_into_the_source_topics() {
    let (code, stdout, stderr) = run(streamctl().args(["seed", "--project-dir"]).arg(example()));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "ora-ogg-SOE-CUSTOMERS: 40 records from data/customers.jsonl (topic created), the topic holds 40\n\
         ora-ogg-SOE-LOGON-avro: 301 records from data/logon.jsonl (topic created), the topic holds 301\n\
         ora-ogg-SOE-ORDERS-json: 300 records from data/orders.jsonl (topic created), the topic holds 300\n"
    );
    assert!(stderr.starts_with("Seeded 641 records into 3 topics on target `embedded`.\n"), "{stderr}");

    let (code, stdout, stderr) = run(streamctl()
        .args(["seed", "--format", "json", "--select", "source:soe.orders", "--project-dir"])
        .arg(example()));
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"target": "embedded", "sources": [{"source": "soe.orders", "topic": "ora-ogg-SOE-ORDERS-json",
            "file": "data/orders.jsonl", "records": 300, "created": true, "topic_records": 300}]})
    );
}

// ---- 7: one JSON document per run, errors included ----

fn json_doc(stdout: &str) -> serde_json::Value {
    // Exactly one document: parsing the whole of stdout fails on a second one.
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {stdout}"))
}

fn assert_follows(schema_file: &str, doc: &serde_json::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(schema_file);
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(doc).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{schema_file}: {errors:#?}\n{doc:#}");
}

/// `plan --format json` on an invalid project prints the problems as the one JSON document on
/// stdout, as does every command that stops before its work; the words stay on stderr.
#[test]
fn json_errors_are_one_document_on_stdout() {
    let broken = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken/unknown_ref");
    let (code, stdout, stderr) = run(streamctl().args(["plan", "--format", "json", "--project-dir"]).arg(&broken));
    assert_eq!(code, 1);
    assert!(stderr.ends_with("not planning: 1 error\n"), "{stderr}");
    let doc = json_doc(&stdout);
    assert_follows("error.schema.json", &doc);
    assert_eq!(doc["error"], "not planning: 1 error");
    assert_eq!(doc["diagnostics"][0]["code"], "unknown-ref");
    assert_eq!(doc["diagnostics"][0]["file"], "models/report.sql");
    assert_eq!(doc["diagnostics"][0]["line"], 2);

    let (code, stdout, _) = run(streamctl().args(["status", "--format", "json", "--project-dir"]).arg(example()));
    assert_eq!(code, 1);
    assert_follows("error.schema.json", &json_doc(&stdout));

    let (code, stdout, _) =
        run(streamctl().args(["plan", "--format", "json", "--target", "prdo", "--project-dir"]).arg(example()));
    assert_eq!(code, 1);
    let doc = json_doc(&stdout);
    assert_follows("error.schema.json", &doc);
    assert_eq!(doc["diagnostics"][0]["code"], "unknown-target");
}

/// `docs --format json` says what it wrote.
#[test]
fn docs_json_names_the_files() {
    let tmp = copy_project(&example());
    let (code, stdout, stderr) = run(streamctl().args(["docs", "--format", "json", "--project-dir"]).arg(tmp.path()));
    assert_eq!(code, 0, "{stderr}");
    let doc = json_doc(&stdout);
    assert_eq!(doc["models"], 5);
    assert!(doc["index_html"].as_str().unwrap().ends_with("target/docs/index.html"), "{doc}");

    // 13: the lineage page has a legend, links between nodes, words for operators, and no raw
    // Mermaid source (that is lineage.mmd).
    let html = std::fs::read_to_string(tmp.path().join("target/docs/index.html")).unwrap();
    assert!(html.contains("<span class=\"swatch source\"></span> source"), "legend");
    assert!(html.contains("read by <a href=\"#model_logon_prime_loyal\"><code>model.logon_prime_loyal</code></a>"));
    assert!(html.contains("reads <a href=\"#source_soe_logon\"><code>source.soe.logon</code></a>"));
    assert!(html.contains("· windowed aggregation</span>"));
    assert!(!html.contains("windowed_aggregate") && !html.contains("flowchart LR"));
    // A sink shows its description, and its columns the descriptions the model gives them.
    let sink = &html[html.find("id=\"sink_prime_logons_out\"").unwrap()..];
    assert!(sink.contains("Logons of loyal Prime customers, published for downstream consumers"), "{sink}");
    assert!(sink.contains("<td>cust_email</td><td>STRING</td><td>yes</td><td>Customer e-mail address.</td>"), "{sink}");
}
