//! Kafka Connect connectors managed by streamctl, on real parts: PostgreSQL (Debian's packages,
//! `wal_level=logical`) holds SOE-like `customers` and `orders` tables; Apache Kafka 4.4.0 and one
//! Kafka Connect 4.4.0 worker in distributed mode with Debezium's PostgreSQL connector 3.6.1.Final
//! on its plugin path (all from Maven Central, `tests/kafka/fetch.sh`). `streamctl apply` of
//! `tests/connect/project` creates the two Debezium connectors, the topics and the jobs; `streamctl
//! run` delivers the models to PostgreSQL tables (native postgres sinks). Rows inserted, updated
//! and deleted in the source tables arrive through the models: the sink tables then equal what SQL
//! over the source tables computes (psql, not streamctl). A sink connector (Kafka's
//! FileStreamSinkConnector) writes a model's rows to a file through a MaskField transform, and
//! the records the transform refuses reach its dead-letter topic. A plan right after apply is empty; a
//! changed SMT is an in-place connector change; `status` shows the connectors RUNNING; `destroy`
//! deletes them from Connect. The database password comes from `env_var()` and appears in no
//! output.

mod common;
mod e2e_common;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use e2e_common::connect::{self, ConnectWorker};
use e2e_common::kafka::KafkaCluster;
use e2e_common::postgres::{self, Postgres};
use e2e_common::*;
use serde_json::Value;

const PASSWORD: &str = "cdc-Secret-4471";
const CONNECTORS: [&str; 4] = ["soe-customers-cdc", "soe-orders-cdc", "customers-file", "orders-file"];

struct Env {
    bootstrap: String,
    connect: String,
    pg_port: u16,
    sink_file: std::path::PathBuf,
}

fn cmd(env: &Env, project: &Path, args: &[&str]) -> std::process::Command {
    let mut c = streamctl();
    c.args(args)
        .arg("--project-dir")
        .arg(project)
        .env("KAFKA_BOOTSTRAP_SERVERS", &env.bootstrap)
        .env("CONNECT_URL", &env.connect)
        .env("PG_PORT", env.pg_port.to_string())
        .env("PG_URL", format!("postgresql://streamctl@127.0.0.1:{}/postgres", env.pg_port))
        .env("PG_PASSWORD", PASSWORD)
        .env("SINK_FILE", &env.sink_file);
    c
}

fn run(env: &Env, project: &Path, args: &[&str]) -> Output {
    let out = cmd(env, project, args).output().unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains(PASSWORD), "`streamctl {}` printed the password:\n{all}", args.join(" "));
    out
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `doc` follows `schemas/<name>.schema.json`.
fn follows_schema(doc: &Value, name: &str) {
    let text = std::fs::read_to_string(root().join(format!("schemas/{name}.schema.json"))).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{name} --format json does not follow its schema: {errors:?}\n{doc}");
}

/// The reference, computed by PostgreSQL from the source tables.
fn reference(pg: &Postgres) -> (Vec<Value>, Vec<Value>) {
    let q = |sql: &str| -> Vec<Value> {
        pg.psql(sql).lines().filter(|l| !l.is_empty()).map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let customers = q("SELECT row_to_json(t) FROM (SELECT customer_id, cust_first_name || ' ' || cust_last_name AS \
         full_name, customer_class, credit_limit::double precision AS credit_limit FROM customers) t");
    let orders = q("SELECT row_to_json(t) FROM (SELECT customer_id, count(*) AS order_count, \
         sum(order_total)::double precision AS order_sum FROM orders GROUP BY customer_id) t");
    (customers, orders)
}

/// Rows of `want` not in `got` and the other way round (repeats count).
fn differs(want: &[Value], got: &[Value]) -> Option<String> {
    let mut used = vec![false; got.len()];
    let mut missing = Vec::new();
    for w in want {
        match (0..got.len()).find(|i| !used[*i] && same(w, &got[*i])) {
            Some(i) => used[i] = true,
            None => missing.push(w.clone()),
        }
    }
    let extra: Vec<&Value> = got.iter().zip(&used).filter(|(_, u)| !**u).map(|(g, _)| g).collect();
    (!missing.is_empty() || !extra.is_empty()).then(|| {
        format!(
            "{} rows, {} expected; missing {:?}; not expected or twice {:?}",
            got.len(),
            want.len(),
            missing.iter().take(3).collect::<Vec<_>>(),
            extra.iter().take(3).collect::<Vec<_>>()
        )
    })
}

/// How the sink tables differ from what is expected: `customers_named` from the customers table,
/// `orders_by_customer` from `orders` (the expected rows of the orders model).
fn problems(pg: &Postgres, orders: &dyn Fn(&Postgres) -> Vec<Value>) -> Vec<String> {
    let (customers, _) = reference(pg);
    let mut out = Vec::new();
    for (table, want) in [("analytics.customers_named", customers), ("analytics.orders_by_customer", orders(pg))] {
        match pg.rows(table) {
            None => out.push(format!("{table}: no such table")),
            Some(got) => out.extend(differs(&want, &got).map(|d| format!("{table}: {d}"))),
        }
    }
    out
}

/// The orders model's rows as PostgreSQL computes them from the orders table.
fn orders_from_table(pg: &Postgres) -> Vec<Value> {
    reference(pg).1
}

fn wait_equal(pg: &Postgres, what: &str, logs: &dyn Fn() -> String) {
    wait_equal_to(pg, what, logs, &orders_from_table)
}

fn wait_equal_to(pg: &Postgres, what: &str, logs: &dyn Fn() -> String, orders: &dyn Fn(&Postgres) -> Vec<Value>) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let p = problems(pg, orders);
        if p.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the sink tables differ from the reference:\n{}\n{}",
            p.join("\n"),
            logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The orders topic's change events as kcat reads them (Connect's JsonConverter envelope
/// unwrapped): (order_id, customer_id, order_total) of every event with an `after` image.
fn order_changes(kcat: &Path, bootstrap: &str) -> Vec<(i64, i64, f64)> {
    kcat_consume(kcat, bootstrap, "sales.public.orders")
        .into_iter()
        .filter_map(|(_, v)| {
            let after = v.get("payload").unwrap_or(&v).get("after")?.clone();
            Some((after["order_id"].as_i64()?, after["customer_id"].as_i64()?, after["order_total"].as_f64()?))
        })
        .collect()
}

/// The orders model's rows computed from the change events in its topic (count and sum per
/// customer, every event counted: the model reads the topic as a stream of changes).
fn orders_from_topic(changes: &[(i64, i64, f64)]) -> Vec<Value> {
    let mut by_customer: std::collections::BTreeMap<i64, (i64, f64)> = Default::default();
    for (_, customer, total) in changes {
        let e = by_customer.entry(*customer).or_default();
        e.0 += 1;
        e.1 += total;
    }
    by_customer
        .into_iter()
        .map(|(c, (n, sum))| serde_json::json!({"customer_id": c, "order_count": n, "order_sum": sum}))
        .collect()
}

#[test]
fn debezium_connectors_are_planned_applied_and_their_changes_reach_postgres() {
    let Some(kcat) = tools() else { return };
    let Some(bin) = postgres::available() else { return };
    if !connect::available() {
        return;
    }
    let t0 = Instant::now();
    let phase = |what: &str| eprintln!("[{:>6.1} s] {what}", t0.elapsed().as_secs_f64());
    let pg = Postgres::start_logical(&bin, PASSWORD);
    pg.psql(
        "CREATE TABLE customers (customer_id bigint PRIMARY KEY, cust_first_name text, cust_last_name text, \
         customer_class text, credit_limit numeric(9,2)); \
         CREATE TABLE orders (order_id bigint PRIMARY KEY, customer_id bigint, order_mode text, \
         order_total numeric(9,2)); CREATE SCHEMA analytics; \
         INSERT INTO customers VALUES (1, 'ada', 'lovelace', 'Prime', 5000), (2, 'alan', 'turing', 'Regular', 1200), \
         (3, 'grace', 'hopper', 'Business', 800.5); \
         INSERT INTO orders VALUES (10, 1, 'online', 120.25), (11, 2, 'direct', 80), (12, 1, 'online', 19.75)",
    );
    let kafka = KafkaCluster::single();
    let worker = ConnectWorker::start(&kafka.bootstrap());
    phase("PostgreSQL, Kafka and Kafka Connect are up");
    let files = tempfile::tempdir().unwrap();
    let env = Env {
        bootstrap: kafka.bootstrap(),
        connect: worker.url(),
        pg_port: pg.port,
        sink_file: files.path().join("customers.txt"),
    };
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&root().join("tests/connect/project"), dir.path(), &["target"]);
    let project = dir.path();

    // The plan: the connectors first, their class and cluster, the topics they write.
    let plan = run(&env, project, &["plan"]);
    let shown = text(&plan);
    assert!(plan.status.success(), "{shown}");
    for name in &CONNECTORS[..3] {
        assert!(shown.contains(&format!("+ connector {name}")), "{shown}");
    }
    assert!(shown.contains("source connector io.debezium.connector.postgresql.PostgresConnector"), "{shown}");
    // The topics the connectors write are created first, a CDC table's compacted.
    let topic = shown.find("+ topic crm.public.customers").expect("the CDC topic is created");
    assert!(topic < shown.find("connector soe-customers-cdc").unwrap(), "{shown}");
    assert!(shown.contains("source soe.customers: 1 partition, compacted"), "{shown}");
    let first_job = shown.find("job ").unwrap();
    assert!(shown.find("connector soe-orders-cdc").unwrap() < first_job, "connectors come before the jobs:\n{shown}");
    // The sink connector after the job that writes its topic.
    let sink = shown.find("+ connector customers-file").expect("the sink connector is created");
    assert!(sink > shown.find("+ job customers_named").unwrap(), "{shown}");
    assert!(shown.contains("reads soe.customers-named"), "{shown}");

    eprintln!("{shown}");
    let apply = run(&env, project, &["apply", "--auto-approve"]);
    assert!(apply.status.success(), "{}\n{}", text(&apply), worker.logs());
    phase("applied");
    let logs = tempfile::tempdir().unwrap();
    let log_path = logs.path().join("run.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _run = Killed(
        cmd(&env, project, &["run", "--checkpoint-interval-ms", "500"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let run_log =
        || format!("--- streamctl run\n{}\n{}", std::fs::read_to_string(&log_path).unwrap_or_default(), worker.logs());
    wait_equal(&pg, "after the snapshot", &run_log);
    phase("the snapshot is in the sink tables");

    // Changes in the database: inserts, updates (a key's row changes twice), deletes.
    pg.psql(
        "INSERT INTO customers VALUES (4, 'edsger', 'dijkstra', 'Prime', 300); \
         UPDATE customers SET customer_class = 'Prime', credit_limit = 2500 WHERE customer_id = 2; \
         UPDATE customers SET cust_last_name = 'hopper-murray' WHERE customer_id = 3; \
         UPDATE customers SET credit_limit = 2600.5 WHERE customer_id = 2; \
         DELETE FROM customers WHERE customer_id = 1; \
         INSERT INTO orders VALUES (13, 2, 'direct', 40.5), (14, 4, 'online', 7), (15, 4, 'online', 8.25)",
    );
    wait_equal(&pg, "after inserts, updates and deletes", &run_log);
    phase("inserts, updates and deletes are in the sink tables");
    assert_eq!(pg.psql("SELECT count(*) FROM analytics.customers_named WHERE customer_id = 1").trim(), "0");

    // The sink connector: every row of the model's topic in the file with the credit limit masked,
    // every tombstone (which MaskField refuses) in the dead-letter topic with Connect's context.
    let records = kcat_consume(&kcat, &env.bootstrap, "soe.customers-named");
    let rows = records.iter().filter(|(_, v)| !v.is_null()).count();
    let tombstones = records.len() - rows;
    assert!(tombstones >= 1, "the deleted customer's tombstone: {records:?}");
    let dead_letters = || {
        let out = std::process::Command::new(&kcat)
            .args(["-C", "-b", &env.bootstrap, "-t", "soe.customers-file.dlq", "-o", "beginning", "-e", "-q"])
            .args(["-f", "%h\n--end--\n"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.matches("__connect.errors.topic=soe.customers-named").count()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let lines: Vec<String> =
            std::fs::read_to_string(&env.sink_file).unwrap_or_default().lines().map(String::from).collect();
        if lines.len() == rows && dead_letters() == tombstones {
            assert!(lines.iter().all(|l| l.contains("credit_limit=0.0")), "{lines:?}");
            assert!(lines.iter().any(|l| l.contains("full_name=alan turing")), "{lines:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the file has {} lines ({rows} rows), the dead-letter topic {} records ({tombstones} tombstones)\n{}",
            lines.len(),
            dead_letters(),
            worker.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // Right after apply nothing is left to do, connectors included.
    let again = run(&env, project, &["plan", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));

    // A changed SMT: an in-place change of that connector only, then applied.
    let file = project.join("connectors/cdc.yml");
    let yaml = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, yaml.replace("static.value: soe-v1", "static.value: soe-v2")).unwrap();
    let changed = run(&env, project, &["plan", "--format", "json"]);
    let doc: Value = serde_json::from_slice(&changed.stdout).unwrap();
    follows_schema(&doc, "plan");
    let changes = doc["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{}", text(&changed));
    assert_eq!(changes[0]["object"], "connector");
    assert_eq!(changes[0]["name"], "soe-customers-cdc");
    assert_eq!(changes[0]["action"], "update");
    let reasons = changes[0]["reasons"].to_string();
    assert!(reasons.contains("transforms.lineage.static.value: soe-v1 → soe-v2"), "{reasons}");
    eprintln!("{}", text(&run(&env, project, &["plan"])));
    let apply = run(&env, project, &["apply", "--auto-approve"]);
    assert!(apply.status.success(), "{}", text(&apply));
    phase("the changed SMT is applied");
    let client = streamctl::connect::client::ConnectClient::new("default", &env.connect).unwrap();
    let config = client.config("soe-customers-cdc").unwrap().unwrap();
    assert_eq!(config["transforms.lineage.static.value"], "soe-v2");
    let again = run(&env, project, &["plan", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));

    // A changed secret is shown as changed, never as its value; a changed topic.prefix warns that
    // the connector's offsets may reset. Planned only.
    let yaml = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, yaml.replace("topic.prefix: crm", "topic.prefix: crm2")).unwrap();
    let other = "other-Secret-9035";
    let out = cmd(&env, project, &["plan"]).env("PG_PASSWORD", other).output().unwrap();
    let shown = text(&out);
    assert!(!shown.contains(other) && !shown.contains(PASSWORD), "{shown}");
    assert!(shown.contains("database.password: changed (secret, not shown)"), "{shown}");
    assert!(shown.contains("topic.prefix: crm → crm2"), "{shown}");
    assert!(shown.contains("offsets may reset: topic.prefix changed"), "{shown}");
    std::fs::write(&file, yaml).unwrap();

    // The changes still flow after the connector restarted with its new config.
    pg.psql("UPDATE customers SET customer_class = 'Occasional' WHERE customer_id = 4; INSERT INTO orders VALUES (16, 3, 'direct', 99)");
    wait_equal(&pg, "after the connector's update", &run_log);
    phase("changes after the update are in the sink tables");

    // A SIGKILL of the Connect worker while changes arrive, more changes while it is down, a new
    // worker: Debezium resumes from the offsets Connect had committed. No change is lost: every
    // order is in the topic, and the customers table model (upserts by key) equals the table.
    // Debezium delivers at least once, so changes after its last committed offset may be in the
    // topic twice: the orders model counts the stream's changes, so its rows are checked against
    // the changes in the topic (kcat), which equal the orders table's when nothing came twice.
    // (Orders are only inserted: a deleted order would be one more change, not one order less.)
    pg.psql("UPDATE customers SET credit_limit = 3100 WHERE customer_id = 2; INSERT INTO orders VALUES (17, 2, 'online', 12.5)");
    worker.kill();
    phase("the Connect worker is killed");
    pg.psql(
        "INSERT INTO customers VALUES (5, 'barbara', 'liskov', 'Prime', 900); DELETE FROM customers WHERE customer_id = 4; \
         INSERT INTO orders VALUES (18, 5, 'direct', 31)",
    );
    worker.restart();
    phase("a new Connect worker is up");
    let orders: Vec<i64> =
        pg.psql("SELECT order_id FROM orders ORDER BY 1").lines().filter_map(|l| l.trim().parse().ok()).collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    let changes = loop {
        let changes = order_changes(&kcat, &env.bootstrap);
        if orders.iter().all(|o| changes.iter().any(|(id, _, _)| id == o)) {
            break changes;
        }
        assert!(
            Instant::now() < deadline,
            "orders missing from the topic after the restart: {orders:?} vs {changes:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    phase(&format!("every order is in the topic ({} changes for {} orders)", changes.len(), orders.len()));
    // Changes Debezium writes after the last one seen are inserts of new orders only (none here).
    wait_equal_to(&pg, "after a SIGKILL of the Connect worker", &run_log, &|_| orders_from_topic(&changes));
    phase("changes made while Connect was down are in the sink tables");
    eprintln!("{}", text(&run(&env, project, &["status"])));

    // status: both connectors and their tasks RUNNING on the worker.
    let status = run(&env, project, &["status", "--format", "json"]);
    assert!(status.status.success(), "{}", text(&status));
    let doc: Value = serde_json::from_slice(&status.stdout).unwrap();
    follows_schema(&doc, "status");
    let rows = doc["connectors"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{doc}");
    for r in rows {
        assert_eq!(r["state"], "RUNNING", "{r}");
        assert_eq!(r["tasks"][0]["state"], "RUNNING", "{r}");
    }

    // A connector whose task fails when it starts (a file in a directory that does not exist):
    // apply records it and fails with the first line of the trace; status shows the task FAILED.
    std::fs::write(
        project.join("connectors/broken.yml"),
        "version: 1\nconnectors:\n  - name: orders-file\n    type: sink\n    \
         class: org.apache.kafka.connect.file.FileStreamSinkConnector\n    from: [orders_by_customer]\n    \
         config:\n      file: /nonexistent-streamctl-dir/orders.txt\n",
    )
    .unwrap();
    let failed = run(&env, project, &["apply", "--auto-approve"]);
    let shown = text(&failed);
    eprintln!("{shown}");
    assert_eq!(failed.status.code(), Some(1), "{shown}");
    assert!(shown.contains("connector orders-file: task 0 FAILED on 127.0.0.1:"), "{shown}");
    assert!(shown.contains("/nonexistent-streamctl-dir/orders.txt"), "{shown}");
    let status = run(&env, project, &["status", "--format", "json"]);
    let doc: Value = serde_json::from_slice(&status.stdout).unwrap();
    follows_schema(&doc, "status");
    let broken = doc["connectors"].as_array().unwrap().iter().find(|c| c["name"] == "orders-file").cloned();
    let broken = broken.unwrap_or_else(|| panic!("orders-file is not in the status: {doc}"));
    assert_eq!(broken["tasks"][0]["state"], "FAILED", "{broken}");
    assert!(broken["tasks"][0]["error"].as_str().is_some_and(|e| e.contains("orders.txt")), "{broken}");
    eprintln!("{}", text(&run(&env, project, &["status"])));

    // destroy deletes them from Connect.
    let destroy = run(&env, project, &["destroy", "--auto-approve"]);
    let gone = text(&destroy);
    assert!(destroy.status.success(), "{gone}");
    // The sink connector goes before the jobs, the source connectors after them.
    let at = |what: &str| gone.find(what).unwrap_or_else(|| panic!("{what} is not destroyed:\n{gone}"));
    assert!(at("- connector customers-file") < at("- job customers_named"), "{gone}");
    assert!(at("- job customers_named") < at("- connector soe-customers-cdc"), "{gone}");
    for name in CONNECTORS {
        assert_eq!(client.config(name).unwrap(), None, "{name} is still on Connect");
    }
    eprintln!("{gone}");
    phase("destroyed");
}
