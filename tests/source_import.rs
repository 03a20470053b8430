//! `streamctl source import`: a source's registered columns written into its YAML, the rest of
//! the file (comments, blank lines, other sources) kept; a second import after a new schema
//! version replaces the block; `validate` then passes offline; `--format json` follows
//! schemas/source_import.schema.json.

use std::path::Path;

use assert_cmd::Command;
use streamctl::registry::file::FileRegistry;
use streamctl::registry::{SchemaRegistry, SchemaType};

const SOURCES: &str = "\
version: 1
# Orders and customers of the shop.
sources:
  - name: shop
    tables:
      - name: orders
        topic: shop.orders
        format: avro   # Confluent wire format
        # the columns come from the registry
        event_time: {column: ORDER_TS}
        on_error: dead_letter

      # Customers: a table, its schema named by subject.
      - name: customers
        topic: shop.customers
        kind: table
        key: [CUSTOMER_ID]
        format: avro
        schema: {subject: customers-v}
";

fn streamctl(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::cargo_bin("streamctl")
        .unwrap()
        .args(args)
        .arg("--project-dir")
        .arg(dir)
        .env("NO_COLOR", "1")
        .env_remove("STREAMCTL_TARGET")
        .env_remove("STREAMCTL_SCHEMA_REGISTRY_URL")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn order(extra: &str) -> String {
    format!(
        r#"{{"type": "record", "name": "Order", "fields": [
        {{"name": "ORDER_ID", "type": "long", "doc": "the order's id"}},
        {{"name": "AMOUNT", "type": ["null", "double"], "default": null}},
        {{"name": "ORDER_TS", "type": "long"}}{extra}]}}"#
    )
}

#[test]
fn writes_registered_columns_into_the_yaml_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("sources")).unwrap();
    std::fs::write(root.join("streamctl_project.yml"), "name: shop\nversion: '1.0'\n").unwrap();
    std::fs::write(root.join("sources/shop.yml"), SOURCES).unwrap();
    let registry = FileRegistry::new(root.join("schemas"), "schemas");
    registry.register("shop.orders-value", SchemaType::Avro, &order("")).unwrap();
    let customers = r#"{"type": "record", "name": "C", "fields": [{"name": "CUSTOMER_ID", "type": "long"},
        {"name": "TIER", "type": ["null", "string"], "default": null}]}"#;
    registry.register("customers-v", SchemaType::Avro, customers).unwrap();

    let (ok, out, err) = streamctl(root, &["source", "import", "orders"]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        out,
        "wrote 3 columns of `shop.orders` into sources/shop.yml (subject shop.orders-value version 1, id \
         1297458064, file registry schemas)\n"
            .replace("1297458064", &registry.versions("shop.orders-value").unwrap()[0].id.to_string())
    );
    let (ok, out, err) = streamctl(root, &["source", "import", "shop.customers"]);
    assert!(ok, "{out}{err}");
    let text = std::fs::read_to_string(root.join("sources/shop.yml")).unwrap();
    let (id1, idc) =
        (registry.versions("shop.orders-value").unwrap()[0].id, registry.versions("customers-v").unwrap()[0].id);
    let want = SOURCES
        .replace(
            "        on_error: dead_letter\n",
            &format!(
                "        on_error: dead_letter\n        # columns of shop.orders-value version 1 (id {id1}) in file registry \
                 schemas, by `streamctl source import`\n        columns:\n          - {{name: ORDER_ID, type: BIGINT, \
                 nullable: false, description: \"the order's id\"}}\n          - {{name: AMOUNT, type: DOUBLE}}\n          \
                 - {{name: ORDER_TS, type: BIGINT, nullable: false}}\n"
            ),
        )
        .replace(
            "        schema: {subject: customers-v}\n",
            &format!(
                "        # columns of customers-v version 1 (id {idc}) in file registry schemas, by `streamctl source \
                 import`\n        columns:\n          - {{name: CUSTOMER_ID, type: BIGINT, nullable: false}}\n          - \
                 {{name: TIER, type: STRING}}\n"
            ),
        );
    assert_eq!(text, want);
    let (ok, out, err) = streamctl(root, &["validate"]);
    assert!(ok, "{out}{err}");

    // A new version: the import replaces its block, and says nothing changed when run again.
    registry
        .register(
            "shop.orders-value",
            SchemaType::Avro,
            &order(r#", {"name": "CHANNEL", "type": "string", "default": "web"}"#),
        )
        .unwrap();
    let (ok, out, err) = streamctl(root, &["source", "import", "orders", "--format", "json"]);
    assert!(ok, "{out}{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/source_import.schema.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(jsonschema::validator_for(&schema).unwrap().is_valid(&doc), "{doc:#}");
    assert_eq!((doc["version"].as_i64(), doc["written"].as_bool()), (Some(2), Some(true)));
    assert_eq!(doc["columns"][3], serde_json::json!({"name": "CHANNEL", "type": "STRING", "nullable": false}));
    let again = std::fs::read_to_string(root.join("sources/shop.yml")).unwrap();
    assert_eq!(again.matches("# columns of shop.orders-value").count(), 1, "{again}");
    assert!(again.contains("version 2") && again.contains("{name: CHANNEL, type: STRING, nullable: false}"), "{again}");
    assert!(again.contains("# the columns come from the registry\n") && again.contains("# Customers: a table"));
    let (ok, out, _) = streamctl(root, &["source", "import", "orders"]);
    assert!(ok && out.starts_with("unchanged: 4 columns"), "{out}");

    // Errors name what is wrong.
    let (ok, _, err) = streamctl(root, &["source", "import", "nope"]);
    assert!(!ok && err.contains("no source `nope`"), "{err}");
    let (ok, _, err) = streamctl(root, &["source", "import", "orders", "--subject", "missing-value"]);
    assert!(!ok && err.contains("subject `missing-value` is not in file registry schemas"), "{err}");
}

/// The registry of `tests/avro/confluent_registry.py`, stopped when dropped.
struct Registry(std::process::Child, String);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_registry() -> Registry {
    use std::io::BufRead;
    // Port 0: the server takes a free port itself and says which, so no other process can take
    // it between a test choosing it and the server binding it.
    let mut child = std::process::Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/avro/confluent_registry.py"))
        .arg("0")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = line.strip_prefix("listening on ").map(str::trim);
    let port = port.unwrap_or_else(|| panic!("the registry did not start: {line}"));
    Registry(child, format!("http://127.0.0.1:{port}"))
}

/// Registers an Avro schema over the Confluent REST API.
fn register(url: &str, subject: &str, schema: &str) {
    let body = serde_json::json!({ "schema": schema }).to_string();
    ureq::post(&format!("{url}/subjects/{subject}/versions"))
        .header("Content-Type", "application/vnd.schemaregistry.v1+json")
        .send(body)
        .unwrap();
}

/// `validate` of an Avro source without `columns:` asks the target's Confluent-API registry
/// for the subject's latest version; a subject it lacks is an error naming the subject and the
/// registry, at the source's `format`; the embedded target keeps the file registry.
#[test]
fn validate_takes_missing_columns_from_the_targets_confluent_registry() {
    let registry = start_registry();
    let url = &registry.1;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("sources")).unwrap();
    std::fs::create_dir_all(root.join("models")).unwrap();
    std::fs::write(
        root.join("streamctl_project.yml"),
        format!(
            "name: shop\nversion: '1.0'\ntargets:\n  embedded:\n    type: embedded\n  local:\n    type: kafka\n    \
             bootstrap_servers: localhost:9092\n    schema_registry_url: {url}\n"
        ),
    )
    .unwrap();
    std::fs::write(root.join("sources/shop.yml"), SOURCES).unwrap();
    // CHANNEL is only in the registry's second version of the orders schema.
    std::fs::write(
        root.join("models/web_orders.sql"),
        "SELECT order_id, amount, channel FROM {{ source('shop', 'orders') }} WHERE channel = 'web'\n",
    )
    .unwrap();

    let (ok, _, err) = streamctl(root, &["validate", "--target", "local"]);
    assert!(!ok);
    // (miette wraps the message: the registry's URL may be on the next line)
    assert!(err.contains("source `shop.orders`: subject `shop.orders-value` is not in the schema registry"), "{err}");
    assert!(err.contains(url.as_str()), "{err}");
    assert!(err.contains("sources/shop.yml:8:17"), "the error is at the source's `format`: {err}");
    assert!(err.contains("subject `customers-v` is not in the schema registry"), "{err}");

    register(url, "shop.orders-value", &order(""));
    let customers = r#"{"type": "record", "name": "C", "fields": [{"name": "CUSTOMER_ID", "type": "long"}]}"#;
    register(url, "customers-v", customers);
    let (ok, _, err) = streamctl(root, &["validate", "--target", "local"]);
    assert!(!ok && err.contains("channel"), "version 1 has no CHANNEL: {err}");
    register(url, "shop.orders-value", &order(r#", {"name": "CHANNEL", "type": "string", "default": "web"}"#));
    let (ok, out, err) = streamctl(root, &["validate", "--target", "local"]);
    assert!(ok, "{out}{err}");
    assert_eq!(out, "valid: 2 sources, 1 model, 0 sinks\n");

    // The embedded target reads the project's file registry, which has neither subject.
    let (ok, _, err) = streamctl(root, &["validate"]);
    assert!(!ok && err.contains("subject `shop.orders-value` is not in the file registry schemas/"), "{err}");
    drop(registry);
    // A registry that does not answer: the error names the subject.
    let (ok, _, err) = streamctl(root, &["validate", "--target", "local"]);
    assert!(!ok && err.contains("cannot read the columns of subject `shop.orders-value`"), "{err}");
}

/// `query` and `shell` take an Avro source's missing columns from the target's registry (here
/// `file:registry`, not the project's `schemas/`), like `validate`; the sample data goes in
/// with that registry's id, and the query reads it back.
#[test]
fn query_and_shell_take_missing_columns_from_the_targets_registry() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("sources")).unwrap();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(
        root.join("streamctl_project.yml"),
        "name: shop\nversion: '1.0'\ntargets:\n  embedded:\n    type: embedded\n    schema_registry_url: file:registry\n",
    )
    .unwrap();
    std::fs::write(
        root.join("sources/shop.yml"),
        "version: 1\nsources:\n  - name: shop\n    tables:\n      - name: orders\n        topic: shop.orders\n        \
         format: avro\n        sample_data: data/orders.jsonl\n",
    )
    .unwrap();
    std::fs::write(
        root.join("data/orders.jsonl"),
        "{\"ORDER_ID\": 1, \"AMOUNT\": 2.5, \"ORDER_TS\": 10}\n{\"ORDER_ID\": 2, \"AMOUNT\": null, \"ORDER_TS\": 20}\n",
    )
    .unwrap();
    FileRegistry::new(root.join("registry"), "registry")
        .register("shop.orders-value", SchemaType::Avro, &order(""))
        .unwrap();

    let (ok, out, err) =
        streamctl(root, &["query", "SELECT order_id, amount FROM orders EMIT CHANGES", "--format", "json"]);
    assert!(ok, "{out}{err}");
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(
        rows,
        vec![serde_json::json!({"order_id": 1, "amount": 2.5}), serde_json::json!({"order_id": 2, "amount": null})]
    );

    let shell = Command::cargo_bin("streamctl")
        .unwrap()
        .args(["shell", "--project-dir"])
        .arg(root)
        .env("NO_COLOR", "1")
        .env_remove("STREAMCTL_TARGET")
        .env_remove("STREAMCTL_SCHEMA_REGISTRY_URL")
        .write_stdin("DESCRIBE orders\nSELECT order_id FROM orders WHERE amount > 1 EMIT CHANGES\n")
        .output()
        .unwrap();
    let out = format!("{}{}", String::from_utf8_lossy(&shell.stdout), String::from_utf8_lossy(&shell.stderr));
    assert!(shell.status.success(), "{out}");
    assert!(out.contains("order_ts  BIGINT  no"), "{out}");
    assert!(out.contains("order_id\n1\n") && out.contains("1 row"), "{out}");
}

/// `source import` keeps the columns read from headers (`headers: true`, `header: key`): they
/// are not in the value's schema.
#[test]
fn import_keeps_the_columns_read_from_headers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("sources")).unwrap();
    std::fs::write(root.join("streamctl_project.yml"), "name: shop\nversion: '1.0'\n").unwrap();
    std::fs::write(
        root.join("sources/shop.yml"),
        "version: 1\nsources:\n  - name: shop\n    tables:\n      - name: orders\n        topic: shop.orders\n        \
         format: avro\n        columns:\n          - name: OLD\n            type: INT\n          - name: ALL_HEADERS\n            \
         headers: true\n          - name: TRACE\n            header: trace-id\n            type: STRING\n            \
         description: the caller's trace\n",
    )
    .unwrap();
    FileRegistry::new(root.join("schemas"), "schemas")
        .register("shop.orders-value", SchemaType::Avro, &order(""))
        .unwrap();
    let (ok, out, err) = streamctl(root, &["source", "import", "orders"]);
    assert!(ok, "{out}{err}");
    let text = std::fs::read_to_string(root.join("sources/shop.yml")).unwrap();
    let columns = &text[text.find("        columns:\n").unwrap()..];
    assert_eq!(
        columns,
        "        columns:\n          - {name: ORDER_ID, type: BIGINT, nullable: false, description: \"the order's id\"}\n          \
         - {name: AMOUNT, type: DOUBLE}\n          - {name: ORDER_TS, type: BIGINT, nullable: false}\n          \
         - {name: ALL_HEADERS, headers: true}\n          - {name: TRACE, type: STRING, header: trace-id, description: \
         \"the caller's trace\"}\n"
    );
    let (ok, out, err) = streamctl(root, &["validate"]);
    assert!(ok, "{out}{err}");
}
