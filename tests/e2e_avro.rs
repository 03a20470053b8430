//! Avro end to end on Apache Kafka with a Confluent-API schema registry: a foreign producer
//! (confluent-kafka's `AvroSerializer`, registering its schemas in the registry as producers do)
//! writes the inputs, with a schema change mid-stream (a field added with a default);
//! `streamctl apply` registers the output schemas in the same registry, `streamctl run
//! --until-caught-up` runs a stream–table join and a window, reading writer schemas by id from
//! the registry; the foreign `AvroDeserializer` decodes the outputs (schemas fetched by the id
//! in each frame) and they must equal a reference computed here from the plain data (the window's
//! keys, written with `key_format='avro'`, decoded the same way). Malformed
//! frames (wrong magic byte, unknown schema id, truncated body) go to the dead-letter topic with
//! the reason in the `streamctl.error` header.
//!
//! The registry is `tests/avro/confluent_registry.py` (no Confluent or Karapace server is
//! available here); that it speaks the API is shown by the foreign client using it.
//! Needs Java, Kafka's jars, kcat, and python3 with confluent-kafka[avro,schemaregistry]
//! (`.ci/run` installs them and sets STREAMCTL_E2E=1).

mod common;
mod e2e_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use e2e_common::kafka::KafkaCluster;
use e2e_common::*;
use serde_json::{json, Value};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/avro");
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/avro/confluent_io.py");

fn client(args: &[&str], input: Option<&Value>) -> Vec<String> {
    python_lines(CLIENT, args, input)
}

fn orders_v1() -> Value {
    json!({"type": "record", "name": "Order", "namespace": "shop", "fields": [
        {"name": "ORDER_ID", "type": "long"},
        {"name": "CUSTOMER_ID", "type": "long"},
        {"name": "AMOUNT", "type": "double"},
        {"name": "ORDER_TS", "type": "long"}]})
}

/// v1 plus a field with a default: a BACKWARD-compatible change, registered mid-stream.
fn orders_v2() -> Value {
    let mut v = orders_v1();
    v["fields"].as_array_mut().unwrap().push(json!({"name": "CHANNEL", "type": "string", "default": "web"}));
    v
}

fn customers_v1() -> Value {
    json!({"type": "record", "name": "Customer", "namespace": "shop", "fields": [
        {"name": "CUSTOMER_ID", "type": "long"},
        {"name": "NAME", "type": "string"},
        {"name": "TIER", "type": "string"}]})
}

const CUSTOMERS: [(i64, &str, &str); 3] = [(1, "Alice", "gold"), (2, "Bob", "silver"), (3, "Carol", "bronze")];

/// (order id, customer, amount, event time ms, channel: None = written with v1)
type Order = (i64, i64, f64, i64, Option<&'static str>);

const ORDERS: [Order; 9] = [
    (1, 1, 10.0, 1_000, None),
    (2, 2, 20.0, 2_000, None),
    (3, 1, 5.5, 30_000, None),
    (4, 3, 7.0, 61_000, None),
    // The schema changes here: v2 adds CHANNEL.
    (5, 1, 1.25, 62_000, Some("app")),
    (6, 2, 3.0, 65_000, Some("store")),
    (7, 1, 100.0, 121_000, Some("web")),
    (8, 2, 8.0, 122_000, Some("app")),
    (9, 4, 2.0, 125_000, Some("app")),
];

fn expected_enriched() -> Vec<Value> {
    ORDERS
        .iter()
        .map(|&(id, cust, amount, _, channel)| {
            let c = CUSTOMERS.iter().find(|c| c.0 == cust);
            json!({"order_id": id, "customer_id": cust, "name": c.map(|c| c.1), "tier": c.map(|c| c.2),
                   "amount": amount, "channel": channel})
        })
        .collect()
}

/// Per customer and minute, the count and sum; a window is emitted once the largest event time
/// reaches its end (no allowed lateness, no grace).
fn expected_per_customer() -> Vec<Value> {
    let watermark = ORDERS.iter().map(|o| o.3).max().unwrap();
    let mut acc: BTreeMap<(i64, i64), (i64, f64)> = BTreeMap::new();
    for &(_, cust, amount, ts, _) in &ORDERS {
        let e = acc.entry((ts / 60_000 * 60_000, cust)).or_default();
        e.0 += 1;
        e.1 += amount;
    }
    acc.into_iter()
        .filter(|((start, _), _)| start + 60_000 <= watermark)
        .map(|((start, cust), (n, total))| {
            json!({"customer_id": cust, "orders": n, "total": total, "windowstart": start, "windowend": start + 60_000})
        })
        .collect()
}

fn sorted(mut rows: Vec<Value>, by: &[&str]) -> Vec<Value> {
    rows.sort_by_key(|r| by.iter().map(|k| r[*k].to_string()).collect::<Vec<_>>());
    rows
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The fixture project with a Kafka target.
fn project(dir: &Path) {
    common::copy_dir(Path::new(FIXTURE), dir, &["target", "tests"]);
    std::fs::write(
        dir.join("streamctl_project.yml"),
        "name: shop\nversion: '1.0'\ntargets:\n  local:\n    type: kafka\n    bootstrap_servers: localhost:9092\n",
    )
    .unwrap();
    // The window's keys (customer, window start and end) in Avro too.
    std::fs::write(
        dir.join("models/per_customer.sql"),
        std::fs::read_to_string(dir.join("models/per_customer.sql"))
            .unwrap()
            .replace("config(format='avro')", "config(format='avro', key_format='avro')"),
    )
    .unwrap();
    // A native sink of the Avro output: it decodes with the target's registry.
    std::fs::create_dir_all(dir.join("sinks")).unwrap();
    std::fs::write(
        dir.join("sinks/files.yml"),
        "version: 1\nsinks:\n  - name: enriched_files\n    from: enriched\n    connector:\n      type: file\n      \
         path: target/sinks/enriched\n",
    )
    .unwrap();
}

/// The rows of a file sink's JSON Lines files.
fn sink_rows(dir: &Path) -> Vec<Value> {
    let mut rows = Vec::new();
    for e in std::fs::read_dir(dir).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default() {
        if e.file_name().to_string_lossy().starts_with('.') || !e.path().is_file() {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).unwrap();
        rows.extend(text.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str::<Value>(l).unwrap()));
    }
    rows
}

#[test]
fn confluent_serialized_avro_through_a_join_and_a_window_with_the_registry() {
    let Some(kcat) = tools() else { return };
    if !python_avro_client() {
        return;
    }
    let kafka = KafkaCluster::single();
    let bootstrap = kafka.bootstrap();
    let (_registry, url) = start_registry();
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cluster = streamctl::connectors::kafka::Cluster::Kafka {
        bootstrap: bootstrap.clone(),
        properties: vec![],
        replication_factor: 1,
    };
    let topics = [("shop.orders", false), ("shop.customers", true)]
        .map(|(n, c)| streamctl::connectors::kafka::TopicSpec { name: n.into(), partitions: 1, compacted: c });
    rt.block_on(cluster.ensure_topics(&topics)).unwrap();

    // The foreign producer: customers, then orders (v1, then v2) with three malformed frames.
    let mut records: Vec<Value> = CUSTOMERS
        .iter()
        .map(|(id, name, tier)| {
            json!({"topic": "shop.customers", "key": id.to_string(), "schema": customers_v1(),
                   "value": {"CUSTOMER_ID": id, "NAME": name, "TIER": tier}})
        })
        .collect();
    for (i, &(id, cust, amount, ts, channel)) in ORDERS.iter().enumerate() {
        let mut value = json!({"ORDER_ID": id, "CUSTOMER_ID": cust, "AMOUNT": amount, "ORDER_TS": ts});
        let schema = match channel {
            None => orders_v1(),
            Some(ch) => {
                value["CHANNEL"] = json!(ch);
                orders_v2()
            }
        };
        records.push(json!({"topic": "shop.orders", "key": null, "schema": schema, "value": value}));
        match i {
            // Wrong magic byte: a JSON value on the Avro topic.
            1 => records.push(json!({"topic": "shop.orders", "raw_hex": hex(br#"{"ORDER_ID": 90}"#)})),
            // A schema id the registry does not know (and an otherwise good v1 body).
            4 => records.push(json!({"topic": "shop.orders", "raw_hex": format!("0000bc614e{}", "02")})),
            _ => {}
        }
    }
    let ids = client(&["produce", &bootstrap, &url], Some(&json!({ "records": records })));
    // Ids as the registry gave them: one for customers, two for the order versions.
    let order_ids: Vec<&String> = ids.iter().skip(CUSTOMERS.len()).filter(|s| *s != "raw").collect();
    assert_eq!(order_ids.len(), ORDERS.len());
    let (v1, v2) = (order_ids[0].clone(), order_ids[ORDERS.len() - 1].clone());
    assert_ne!(v1, v2, "{ids:?}");
    // Truncated: a v2 order cut short in its AMOUNT (the registry knows the id).
    let truncated = format!("00{:08x}{}", v2.parse::<u32>().unwrap(), "c60114");
    client(&["produce", &bootstrap, &url], Some(&json!({"records": [{"topic": "shop.orders", "raw_hex": truncated}]})));

    let streamctl_cmd = |args: &[&str]| {
        let mut c = streamctl();
        c.arg("--project-dir").arg(dir.path()).args([
            "--target",
            "local",
            "--bootstrap-servers",
            &bootstrap,
            "--schema-registry-url",
            &url,
        ]);
        c.args(args);
        c.output().unwrap()
    };
    let applied = streamctl_cmd(&["apply", "--auto-approve"]);
    assert!(applied.status.success(), "{}", text(&applied));
    let run = streamctl_cmd(&["run", "--until-caught-up"]);
    assert!(run.status.success(), "{}", text(&run));

    // The outputs, decoded by the foreign deserializer with the schemas the registry serves.
    for (model, want, order) in [
        ("enriched", expected_enriched(), vec!["order_id"]),
        ("per_customer", expected_per_customer(), vec!["windowstart", "customer_id"]),
    ] {
        let latest = client(&["latest", &url, &format!("{model}-value")], None).concat();
        let keys = if model == "per_customer" { "avro-keys" } else { "text" };
        let rows: Vec<Value> = client(&["consume", &bootstrap, &url, model, keys], None)
            .iter()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .inspect(|r| assert_eq!(r["schema_id"].to_string(), latest, "{model}: {r}"))
            .inspect(|r| {
                if model == "per_customer" {
                    let v = &r["value"];
                    let key = json!({"customer_id": v["customer_id"], "windowstart": v["windowstart"], "windowend": v["windowend"]});
                    assert_eq!(r["key"], key, "the Avro key of {r}");
                }
            })
            .map(|r| r["value"].clone())
            .collect();
        assert_eq!(sorted(rows, &order), sorted(want, &order), "{model}\n--- run\n{}", text(&run));
    }

    // The file sink decoded the Avro output with the target's registry (the ids in the frames are
    // the registry's, not the project's file registry's).
    let delivered = sink_rows(&dir.path().join("target/sinks/enriched"));
    assert_eq!(sorted(delivered, &["order_id"]), sorted(expected_enriched(), &["order_id"]), "--- run\n{}", text(&run));

    // `peek` decodes with the same registry: every order (v1 and v2), and the malformed frames
    // shown as such.
    let peeked = streamctl_cmd(&["peek", "shop.orders", "-n", "100", "--from", "earliest", "--format", "json"]);
    assert!(peeked.status.success(), "{}", text(&peeked));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&peeked.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids: Vec<i64> = lines.iter().filter_map(|l| l["value"]["order_id"].as_i64()).collect();
    assert_eq!(ids, ORDERS.iter().map(|o| o.0).collect::<Vec<_>>(), "{}", text(&peeked));
    assert_eq!(lines.iter().filter(|l| !l["malformed"].is_null()).count(), 3, "{}", text(&peeked));
    let fifth = lines.iter().find(|l| l["value"]["order_id"] == json!(5)).unwrap();
    assert_eq!((&fifth["value"]["channel"], &lines[0]["value"]["channel"]), (&json!("app"), &Value::Null));

    // The three malformed frames, once each, with the reason.
    let dlq = Command::new(&kcat)
        .args(["-C", "-b", &bootstrap, "-t", "shop.orders.dlq", "-o", "beginning", "-e", "-q", "-f", "%h\n"])
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&dlq.stdout);
    let reasons: Vec<&str> = headers.lines().filter_map(|l| l.split("streamctl.error=").nth(1)).collect();
    assert_eq!(reasons.len(), 3, "{headers}");
    assert!(reasons[0].starts_with("wrong magic byte 0x7b"), "{reasons:?}");
    assert!(reasons[1].starts_with("unknown schema id 12345678"), "{reasons:?}");
    assert!(reasons[2].starts_with("invalid or truncated Avro body"), "{reasons:?}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
