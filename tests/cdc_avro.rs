//! Debezium change events in Avro (`format: debezium_avro`, keys with `key_format: avro`), as
//! Debezium's MySQL connector writes them through Confluent's AvroConverter: the envelope and
//! key schemas of Debezium's documentation, registered in the project's file registry, the
//! records encoded by a foreign implementation (Python's `fastavro`). Read as a table, a
//! stream–table join sees each customer as of the update, and a delete (`d`, then a tombstone
//! keyed in Avro) removes it; malformed frames are dead-lettered with the reason.
//! Skipped with a note when `python3 -c 'import fastavro'` fails (`.ci/run` installs it).

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use streamctl::diagnostics::Diagnostics;
use streamctl::graph::NodeId;
use streamctl::project::Project;
use streamctl::registry::file::FileRegistry;
use streamctl::registry::{SchemaRegistry, SchemaType};
use streamctl::runtime::bounded::{run_model, BoundedOptions};
use streamctl::runtime::codec::Record;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/debezium_avro");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/avro/fastavro_io.py");

fn fastavro_available() -> bool {
    let ok = Command::new("python3").args(["-c", "import fastavro"]).output().is_ok_and(|o| o.status.success());
    assert!(ok || std::env::var_os("CI").is_none(), "CI: python3 cannot import fastavro");
    if !ok {
        eprintln!("note: python3 with fastavro not found (pip install fastavro); test skipped");
    }
    ok
}

/// Frames (hex) by fastavro: `(schema, id, value)` each.
fn encode(items: &[(Value, i32, Value)]) -> Vec<Vec<u8>> {
    let records: Vec<Value> =
        items.iter().map(|(s, id, v)| json!({"schema": s, "schema_id": id, "value": v})).collect();
    let mut child =
        Command::new("python3").args([SCRIPT, "encode"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(json!({ "records": records }).to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let unhex = |s: &str| (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect();
    String::from_utf8(out.stdout).unwrap().lines().map(unhex).collect()
}

/// The envelope Debezium's MySQL connector registers for `inventory.customers` (abridged
/// `source` block, as documented: the fields keep their types and order).
fn envelope() -> Value {
    json!({"type": "record", "name": "Envelope", "namespace": "dbserver1.inventory.customers", "fields": [
        {"name": "before", "type": ["null", {"type": "record", "name": "Value", "fields": [
            {"name": "id", "type": "int"},
            {"name": "first_name", "type": "string"},
            {"name": "last_name", "type": "string"},
            {"name": "email", "type": "string"}],
            "connect.name": "dbserver1.inventory.customers.Value"}], "default": null},
        {"name": "after", "type": ["null", "Value"], "default": null},
        {"name": "source", "type": {"type": "record", "name": "Source", "namespace": "io.debezium.connector.mysql",
            "fields": [
                {"name": "version", "type": "string"},
                {"name": "connector", "type": "string"},
                {"name": "name", "type": "string"},
                {"name": "ts_ms", "type": "long"},
                {"name": "snapshot", "type": [{"type": "string", "connect.version": 1,
                    "connect.parameters": {"allowed": "true,last,false,incremental"},
                    "connect.default": "false", "connect.name": "io.debezium.data.Enum"}, "null"],
                 "default": "false"},
                {"name": "db", "type": "string"},
                {"name": "table", "type": ["null", "string"], "default": null},
                {"name": "server_id", "type": "long"},
                {"name": "file", "type": "string"},
                {"name": "pos", "type": "long"},
                {"name": "row", "type": "int"}]}},
        {"name": "op", "type": "string"},
        {"name": "ts_ms", "type": ["null", "long"], "default": null}],
        "connect.name": "dbserver1.inventory.customers.Envelope"})
}

fn key_schema() -> Value {
    json!({"type": "record", "name": "Key", "namespace": "dbserver1.inventory.customers",
           "fields": [{"name": "id", "type": "int"}], "connect.name": "dbserver1.inventory.customers.Key"})
}

fn row(id: i64, first: &str, email: &str) -> Value {
    json!({"id": id, "first_name": first, "last_name": "Thomas", "email": email})
}

fn change(op: &str, before: Option<Value>, after: Option<Value>, ts: i64) -> Value {
    let snapshot = if op == "r" { "true" } else { "false" };
    json!({"before": before, "after": after, "op": op, "ts_ms": ts + 100,
           "source": {"version": "2.7.0.Final", "connector": "mysql", "name": "dbserver1", "ts_ms": ts,
                      "snapshot": snapshot, "db": "inventory", "table": "customers", "server_id": 223344,
                      "file": "mysql-bin.000003", "pos": 154, "row": 0}})
}

enum Event {
    /// A customer change: key id and the envelope (`None`: a tombstone).
    Customer(i64, Option<Value>),
    /// A customer record with this raw value (malformed).
    Raw(Vec<u8>),
    Order(i64, i64, i64),
}

#[test]
fn debezium_avro_changes_read_as_a_table_with_avro_keys() {
    if !fastavro_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(Path::new(FIXTURE), dir.path(), &["target"]);
    let registry = FileRegistry::new(dir.path().join("schemas"), "schemas");
    let value_id =
        registry.register("dbserver1.inventory.customers-value", SchemaType::Avro, &envelope().to_string()).unwrap().id;
    let key_id =
        registry.register("dbserver1.inventory.customers-key", SchemaType::Avro, &key_schema().to_string()).unwrap().id;

    let sally = row(1001, "Sally", "sally@example.com");
    let george = row(1002, "George", "gbailey@example.com");
    let sally2 = row(1001, "Sally", "sally.thomas@acme.com");
    let events = vec![
        Event::Customer(1001, Some(change("r", None, Some(sally.clone()), 1000))),
        Event::Customer(1002, Some(change("c", None, Some(george.clone()), 2000))),
        Event::Order(1, 1001, 3000),
        Event::Order(2, 1002, 3001),
        Event::Customer(1001, Some(change("u", Some(sally), Some(sally2), 4000))),
        Event::Customer(1002, Some(change("d", Some(george), None, 5000))),
        Event::Customer(1002, None),
        // Wrong magic byte, an unknown schema id, a truncated envelope.
        Event::Raw(b"{\"op\": \"c\"}".to_vec()),
        Event::Raw(vec![0, 0, 0, 0x30, 0x39, 0, 0]),
        Event::Order(3, 1001, 6000),
        Event::Order(4, 1002, 6001),
        Event::Customer(1001, None),
        Event::Order(5, 1001, 7000),
    ];
    let mut frames: Vec<(Value, i32, Value)> = Vec::new();
    for e in &events {
        if let Event::Customer(id, value) = e {
            frames.push((key_schema(), key_id, json!({"id": id})));
            if let Some(v) = value {
                frames.push((envelope(), value_id, v.clone()));
            }
        }
    }
    let mut encoded = encode(&frames).into_iter();
    let (customers, orders) = (NodeId::Source("inventory.customers".into()), NodeId::Source("shop.orders".into()));
    let mut offsets: BTreeMap<NodeId, i64> = BTreeMap::new();
    let mut truncated = None;
    let mut records: Vec<(NodeId, Record)> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let (source, key, value) = match e {
            Event::Customer(_, v) => {
                let key = encoded.next();
                let value = v.as_ref().map(|_| encoded.next().unwrap());
                if truncated.is_none() {
                    truncated = value.clone().map(|mut t| {
                        t.truncate(t.len() - 4);
                        t
                    });
                }
                (customers.clone(), key, value)
            }
            Event::Raw(v) => (customers.clone(), None, Some(v.clone())),
            Event::Order(id, cust, ts) => {
                let v = json!({"order_id": id, "customer_id": cust, "ts": ts}).to_string().into_bytes();
                (orders.clone(), None, Some(v))
            }
        };
        let off = offsets.entry(source.clone()).or_insert(0);
        records.push((
            source,
            Record {
                partition: 0,
                offset: *off,
                timestamp: i as i64,
                key: key.map(Into::into),
                value: value.map(Into::into),
                headers: Vec::new(),
            },
        ));
        *off += 1;
    }
    let mut cut = records[0].1.clone();
    cut.value = truncated.map(Into::into);
    cut.offset = 100;
    records.insert(9, (customers.clone(), cut));

    let mut diags = Diagnostics::new();
    let project = Project::load(dir.path(), &mut diags).expect("loads");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cp = rt.block_on(streamctl::compile::compile(project, diags));
    assert!(!cp.diagnostics.has_errors(), "{:?}", cp.diagnostics);
    for batch_size in [1, 4, 100] {
        let result = rt
            .block_on(run_model(
                &cp,
                "orders_enriched",
                &records,
                BoundedOptions { batch_size, end_of_input: true },
                streamctl::runtime::task_context(),
            ))
            .expect("runs");
        let got: Vec<Value> = result
            .outputs
            .iter()
            .map(|r| serde_json::from_slice::<Value>(r.value.as_deref().unwrap()).unwrap())
            .map(|v| json!([v["order_id"], v["first_name"], v["email"]]))
            .collect();
        assert_eq!(
            got,
            vec![
                json!([1, "Sally", "sally@example.com"]),
                json!([2, "George", "gbailey@example.com"]),
                json!([3, "Sally", "sally.thomas@acme.com"]),
                json!([4, null, null]),
                json!([5, null, null]),
            ],
            "batch size {batch_size}"
        );
        let reasons: Vec<&str> = result.dead_letters.iter().map(|d| d.reason.as_str()).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].starts_with("wrong magic byte 0x7b"), "{reasons:?}");
        assert!(reasons[1].starts_with("unknown schema id 12345"), "{reasons:?}");
        assert!(reasons[2].starts_with("invalid or truncated Avro body"), "{reasons:?}");
    }
}

/// `streamctl test` writes the given rows of a `debezium-avro` source as Avro create events
/// (and keys in Avro), so unit tests need no hand-made envelopes; see
/// `tests/fixtures/debezium_avro/tests/rows.yml`.
#[test]
fn streamctl_test_writes_given_rows_as_avro_change_events() {
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(Path::new(FIXTURE), dir.path(), &["target"]);
    let out = assert_cmd::Command::cargo_bin("streamctl")
        .unwrap()
        .args(["test", "--project-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("tests: 1 passed, 0 failed"), "{text}");
}
