//! `--format json` (issue #16 item 7): every command prints exactly one JSON document on stdout,
//! also when it fails, and each document follows its schema in `schemas/`.

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use common::copy_dir;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("example-project")
}

/// Runs `streamctl <args> --format json` in `dir`; returns the exit code and the one document.
fn json_run(dir: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::cargo_bin("streamctl")
        .unwrap()
        .args(args)
        .args(["--format", "json", "--project-dir"])
        .arg(dir)
        .env("NO_COLOR", "1")
        .env_remove("STREAMCTL_TARGET")
        .env_remove("STREAMCTL_BOOTSTRAP_SERVERS")
        .env_remove("STREAMCTL_SCHEMA_REGISTRY_URL")
        .write_stdin("")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Parsing the whole of stdout as one value fails on a second document or on words.
    let doc = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{args:?}: stdout is not one JSON document ({e}):\n{stdout}\nstderr: {stderr}"));
    (out.status.code().unwrap_or(-1), doc)
}

fn assert_follows(schema_file: &str, doc: &serde_json::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(schema_file);
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(doc).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{schema_file}: {errors:#?}\n{doc:#}");
}

#[test]
fn every_command_prints_one_document_that_follows_its_schema() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&example(), tmp.path(), &["target"]);
    let dir = tmp.path();
    let cases: &[(&[&str], &str, i32)] = &[
        (&["validate"], "validate.schema.json", 0),
        (&["compile"], "manifest.schema.json", 0),
        (&["ls"], "ls.schema.json", 0),
        (&["docs"], "docs.schema.json", 0),
        (&["docs", "--print", "mermaid"], "docs.schema.json", 0),
        (&["test"], "test.schema.json", 0),
        (&["plan"], "plan.schema.json", 0),
        (&["seed"], "seed.schema.json", 0),
        (&["run"], "run.schema.json", 0),
        (&["apply", "--auto-approve"], "apply.schema.json", 0),
        (&["destroy", "--auto-approve"], "plan.schema.json", 0),
        // Failures: the error document.
        (&["status"], "error.schema.json", 1),
        (&["ls", "--select", "nope"], "error.schema.json", 1),
        (&["test", "--select", "nope"], "error.schema.json", 1),
        (&["run", "--select", "nope"], "error.schema.json", 1),
        (&["seed", "--select", "model:nope"], "error.schema.json", 1),
        (&["apply"], "error.schema.json", 1),
        (&["plan", "--target", "prdo"], "error.schema.json", 1),
        (&["init", "models"], "error.schema.json", 1),
    ];
    for (args, schema, code) in cases {
        let (got, doc) = json_run(dir, args);
        assert_eq!(got, *code, "{args:?}: {doc:#}");
        assert_follows(schema, &doc);
    }
    let (_, apply) = json_run(dir, &["apply", "--auto-approve"]);
    assert_follows("plan.schema.json", &apply["plan"]);
    assert_eq!(apply["run"]["ok"], true, "{apply:#}");
    assert!(apply["run"]["jobs"].as_array().unwrap().iter().any(|j| j["open_windows"].as_u64() > Some(0)));

    let broken = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/broken/every_error");
    let (code, doc) = json_run(&broken, &["validate"]);
    assert_eq!(code, 1);
    assert_follows("validate.schema.json", &doc);
    for cmd in ["compile", "docs", "test", "plan", "apply", "run", "seed", "destroy", "status"] {
        let (code, doc) = json_run(&broken, &[cmd]);
        assert_eq!(code, 1, "{cmd}: {doc:#}");
        assert_follows("error.schema.json", &doc);
        assert_eq!(doc["errors"], 9, "{cmd}: {doc:#}");
    }

    let fresh = tempfile::tempdir().unwrap();
    let (code, doc) = json_run(fresh.path(), &["init", "payments"]);
    assert_eq!(code, 0);
    assert_follows("init.schema.json", &doc);
}
