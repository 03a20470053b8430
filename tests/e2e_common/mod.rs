//! Helpers shared by the end-to-end tests: Apache Kafka processes (`kafka`), a Kafka Connect worker
//! (`connect`), PostgreSQL (`postgres`), kcat as the foreign client,
//! the example project's sample data.
#![allow(dead_code)]

pub mod connect;
pub mod kafka;
pub mod postgres;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

pub fn tool(name: &str) -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin")));
    candidates.map(|d| d.join(name)).find(|p| p.is_file())
}

/// kcat, when Kafka (Java and the jars of `tests/kafka/fetch.sh`) and kcat are all here; else None, a skip
/// announced on stderr, or a failure when STREAMCTL_E2E is set (CI, where the tests must run).
pub fn tools() -> Option<PathBuf> {
    let missing = match (kafka::missing_piece(), tool("kcat")) {
        (None, Some(kcat)) => return Some(kcat),
        (Some(why), _) => why,
        (None, None) => "kcat is not installed".to_string(),
    };
    if std::env::var_os("STREAMCTL_E2E").is_some() {
        panic!("STREAMCTL_E2E is set but the end-to-end test cannot run: {missing} (.ci/run installs everything)");
    }
    eprintln!("skipped: {missing}; the end-to-end tests need Java, Kafka's jars and kcat (see .ci/run)");
    None
}

pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn streamctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_streamctl"));
    c.env("NO_COLOR", "1");
    c
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Creates the source topics (kcat cannot) with the partitions the sources declare.
pub fn create_source_topics(bootstrap: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cluster = streamctl::connectors::kafka::Cluster::Kafka {
        bootstrap: bootstrap.into(),
        properties: vec![],
        replication_factor: 1,
    };
    let topics = [
        ("ora-ogg-SOE-CUSTOMERS", 1, true),
        ("ora-ogg-SOE-LOGON-json", 2, false),
        ("ora-ogg-SOE-ORDERS-json", 2, false),
    ]
    .map(|(n, p, c)| streamctl::connectors::kafka::TopicSpec { name: n.into(), partitions: p, compacted: c });
    rt.block_on(cluster.ensure_topics(&topics)).unwrap();
}

/// Produces lines with kcat; `keyed` lines are `key<TAB>value`.
pub fn kcat_produce(kcat: &Path, bootstrap: &str, topic: &str, lines: &[String], keyed: bool) {
    let mut args = vec!["-P", "-b", bootstrap, "-t", topic];
    if keyed {
        args.extend(["-K", "\t"]);
    }
    let mut child = Command::new(kcat).args(&args).stdin(Stdio::piped()).spawn().unwrap();
    {
        let stdin = child.stdin.as_mut().unwrap();
        for l in lines {
            writeln!(stdin, "{l}").unwrap();
        }
    }
    assert!(child.wait().unwrap().success(), "kcat -P {topic}");
}

pub fn sample(name: &str) -> Vec<String> {
    std::fs::read_to_string(root().join("example-project/data").join(name))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect()
}

pub fn produce_samples(kcat: &Path, bootstrap: &str, part: std::ops::Range<f64>) {
    let slice = |v: Vec<String>| -> Vec<String> {
        let n = v.len() as f64;
        v[(part.start * n) as usize..(part.end * n) as usize].to_vec()
    };
    let customers: Vec<String> = sample("customers.jsonl")
        .into_iter()
        .map(|l| {
            let v: Value = serde_json::from_str(&l).unwrap();
            format!("{}\t{l}", v["CUSTOMER_ID"])
        })
        .collect();
    if part.start == 0.0 {
        kcat_produce(kcat, bootstrap, "ora-ogg-SOE-CUSTOMERS", &customers, true);
    }
    kcat_produce(kcat, bootstrap, "ora-ogg-SOE-LOGON-json", &slice(sample("logon.jsonl")), false);
    kcat_produce(kcat, bootstrap, "ora-ogg-SOE-ORDERS-json", &slice(sample("orders.jsonl")), false);
}

/// `(key, value)` of every record of a topic, read with kcat.
pub fn kcat_consume(kcat: &Path, bootstrap: &str, topic: &str) -> Vec<(String, Value)> {
    kcat_key_values(kcat, bootstrap, topic, &[])
}

/// `(key, value)` of every committed record of a topic (aborted transactions skipped).
pub fn kcat_consume_committed(kcat: &Path, bootstrap: &str, topic: &str) -> Vec<(String, Value)> {
    kcat_key_values(kcat, bootstrap, topic, &["-X", "isolation.level=read_committed"])
}

fn kcat_key_values(kcat: &Path, bootstrap: &str, topic: &str, extra: &[&str]) -> Vec<(String, Value)> {
    let out = Command::new(kcat)
        .args(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n"])
        .args(extra)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once('\t').unwrap_or(("", l));
            (k.to_string(), serde_json::from_str(v).unwrap_or(Value::Null))
        })
        .collect()
}

/// A record as kcat's JSON envelope (`-J`) shows it; header values as text.
pub struct KcatRecord {
    pub key: String,
    pub headers: BTreeMap<String, String>,
    pub payload: String,
}

/// Every record of a topic with its headers, read with kcat's JSON envelope.
pub fn kcat_records(kcat: &Path, bootstrap: &str, topic: &str) -> Vec<KcatRecord> {
    let out = Command::new(kcat)
        .args(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-J"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let h = v["headers"].as_array().cloned().unwrap_or_default();
            let headers = h
                .chunks(2)
                .map(|kv| (kv[0].as_str().unwrap_or("").to_string(), kv[1].as_str().unwrap_or("").to_string()))
                .collect();
            KcatRecord {
                key: v["key"].as_str().unwrap_or("").to_string(),
                headers,
                payload: v["payload"].as_str().unwrap_or("").to_string(),
            }
        })
        .collect()
}

/// Runs `python3 <script> <args...>` with `input` as JSON on its stdin: its stdout's lines. The
/// foreign clients under tests/avro/ speak this way.
pub fn python_lines(script: &str, args: &[&str], input: Option<&Value>) -> Vec<String> {
    let mut child = Command::new("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    if let Some(v) = input {
        stdin.write_all(v.to_string().as_bytes()).unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let name = Path::new(script).file_name().unwrap_or_default().to_string_lossy();
    assert!(out.status.success(), "{name} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(String::from).collect()
}

pub fn expected() -> BTreeMap<String, Vec<Value>> {
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new("python3")
        .arg(root().join("tests/e2e/expected.py"))
        .arg(dir.path())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    ["logon_enriched", "logon_prime_loyal", "orders_agg_hourly", "logon_bursts", "orders_by_mode"]
        .into_iter()
        .map(|m| {
            let rows = std::fs::read_to_string(dir.path().join(format!("{m}.jsonl")))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            (m.to_string(), rows)
        })
        .collect()
}

pub const TOPICS: [(&str, &str, bool); 5] = [
    ("logon_enriched", "soe.logon-enriched", false),
    ("logon_prime_loyal", "soe.logon-prime-loyal", false),
    ("orders_agg_hourly", "soe.orders-agg-hourly", true),
    ("logon_bursts", "soe.logon-bursts", true),
    ("orders_by_mode", "soe.orders-by-mode", true),
];

pub fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-9 * x.abs().max(1.0)
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Output rows as the topic ends up: tables the latest row per key, streams every row once
/// (the guarantee is at-least-once: a repeated record is identical).
pub fn end_rows(records: &[(String, Value)], table: bool) -> Vec<Value> {
    if table {
        let mut latest: BTreeMap<&str, &Value> = BTreeMap::new();
        for (k, v) in records {
            latest.insert(k, v);
        }
        return latest.into_values().cloned().collect();
    }
    let mut out: Vec<Value> = Vec::new();
    for (_, v) in records {
        if !out.iter().any(|o| same(o, v)) {
            out.push(v.clone());
        }
    }
    out
}

pub fn missing(expected: &[Value], actual: &[Value]) -> Vec<Value> {
    expected.iter().filter(|e| !actual.iter().any(|a| same(e, a))).cloned().collect()
}

pub fn check_outputs(kcat: &Path, bootstrap: &str, exp: &BTreeMap<String, Vec<Value>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (model, topic, table) in TOPICS {
        let got = end_rows(&kcat_consume(kcat, bootstrap, topic), table);
        let want = &exp[model];
        let miss = missing(want, &got);
        let extra = missing(&got, want);
        if !miss.is_empty() || !extra.is_empty() {
            problems.push(format!(
                "{model}: {} missing (first: {:?}), {} unexpected (first: {:?})",
                miss.len(),
                miss.first(),
                extra.len(),
                extra.first()
            ));
        }
    }
    problems
}
