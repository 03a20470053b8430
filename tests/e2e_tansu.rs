//! End to end against a separate Kafka-compatible broker process (tansu, in memory), with
//! kcat as the foreign client: the example project's sample data goes in with kcat, `streamctl
//! run` processes it, the outputs come back with kcat and must equal what
//! `tests/e2e/expected.py` computes independently. Then two workers share the jobs, one is
//! killed with SIGKILL mid-stream, and every expected output still arrives.
//!
//! Needs `tansu` and `kcat` on the PATH (`.ci/run` installs both and sets STREAMCTL_E2E=1,
//! which makes their absence a failure rather than a skip).

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn tool(name: &str) -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin")));
    candidates.map(|d| d.join(name)).find(|p| p.is_file())
}

/// The tools, or None (a skip, announced) when absent and not required.
fn tools() -> Option<(PathBuf, PathBuf)> {
    match (tool("tansu"), tool("kcat")) {
        (Some(t), Some(k)) => Some((t, k)),
        _ if std::env::var_os("STREAMCTL_E2E").is_some() => panic!("STREAMCTL_E2E is set but tansu or kcat is not installed"),
        _ => {
            eprintln!("skipped: tansu and kcat are needed for the end-to-end test (see .ci/run)");
            None
        }
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_broker(tansu: &Path) -> (Killed, String) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(tansu)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu");
    let guard = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not start listening");
        std::thread::sleep(Duration::from_millis(100));
    }
    (guard, format!("127.0.0.1:{port}"))
}

fn streamctl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_streamctl"));
    c.env("NO_COLOR", "1");
    c
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Creates the source topics (kcat cannot) with the partitions the sources declare.
fn create_source_topics(bootstrap: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cluster = streamctl::connectors::kafka::Cluster::Kafka { bootstrap: bootstrap.into(), properties: vec![], replication_factor: 1 };
    let topics = [("ora-ogg-SOE-CUSTOMERS", 1, true), ("ora-ogg-SOE-LOGON-json", 2, false), ("ora-ogg-SOE-ORDERS-json", 2, false)]
        .map(|(n, p, c)| streamctl::connectors::kafka::TopicSpec { name: n.into(), partitions: p, compacted: c });
    rt.block_on(cluster.ensure_topics(&topics)).unwrap();
}

/// Produces lines with kcat; `keyed` lines are `key<TAB>value`.
fn kcat_produce(kcat: &Path, bootstrap: &str, topic: &str, lines: &[String], keyed: bool) {
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

fn sample(name: &str) -> Vec<String> {
    std::fs::read_to_string(root().join("example-project/data").join(name)).unwrap().lines().filter(|l| !l.trim().is_empty()).map(String::from).collect()
}

fn produce_samples(kcat: &Path, bootstrap: &str, part: std::ops::Range<f64>) {
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
fn kcat_consume(kcat: &Path, bootstrap: &str, topic: &str) -> Vec<(String, Value)> {
    let out = Command::new(kcat).args(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once('\t').unwrap_or(("", l));
            (k.to_string(), serde_json::from_str(v).unwrap_or(Value::Null))
        })
        .collect()
}

fn expected() -> BTreeMap<String, Vec<Value>> {
    let dir = tempfile::tempdir().unwrap();
    let ok = Command::new("python3").arg(root().join("tests/e2e/expected.py")).arg(dir.path()).stdout(Stdio::null()).status().unwrap();
    assert!(ok.success());
    ["logon_enriched", "logon_prime_loyal", "orders_agg_hourly", "logon_bursts", "orders_by_mode"]
        .into_iter()
        .map(|m| {
            let rows = std::fs::read_to_string(dir.path().join(format!("{m}.jsonl"))).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            (m.to_string(), rows)
        })
        .collect()
}

const TOPICS: [(&str, &str, bool); 5] = [
    ("logon_enriched", "soe.logon-enriched", false),
    ("logon_prime_loyal", "soe.logon-prime-loyal", false),
    ("orders_agg_hourly", "soe.orders-agg-hourly", true),
    ("logon_bursts", "soe.logon-bursts", true),
    ("orders_by_mode", "soe.orders-by-mode", true),
];

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-9 * x.abs().max(1.0)
        }
        (Value::Object(x), Value::Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w))),
        _ => a == b,
    }
}

/// Output rows as the topic ends up: tables the latest row per key, streams every row once
/// (the guarantee is at-least-once: a repeated record is identical).
fn end_rows(records: &[(String, Value)], table: bool) -> Vec<Value> {
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

fn missing(expected: &[Value], actual: &[Value]) -> Vec<Value> {
    expected.iter().filter(|e| !actual.iter().any(|a| same(e, a))).cloned().collect()
}

fn check_outputs(kcat: &Path, bootstrap: &str, exp: &BTreeMap<String, Vec<Value>>) -> Vec<String> {
    let mut problems = Vec::new();
    for (model, topic, table) in TOPICS {
        let got = end_rows(&kcat_consume(kcat, bootstrap, topic), table);
        let want = &exp[model];
        let miss = missing(want, &got);
        let extra = missing(&got, want);
        if !miss.is_empty() || !extra.is_empty() {
            problems.push(format!("{model}: {} missing (first: {:?}), {} unexpected (first: {:?})", miss.len(), miss.first(), extra.len(), extra.first()));
        }
    }
    problems
}

#[test]
fn example_project_on_a_real_broker_with_kcat() {
    let Some((tansu, kcat)) = tools() else { return };
    let (_broker, bootstrap) = start_broker(&tansu);
    create_source_topics(&bootstrap);
    produce_samples(&kcat, &bootstrap, 0.0..1.0);
    let out = streamctl()
        .args(["run", "--project-dir"])
        .arg(root().join("example-project"))
        .args(["--target", "local", "--bootstrap-servers", &bootstrap, "--until-caught-up"])
        .output()
        .unwrap();
    assert!(out.status.success(), "streamctl run failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let problems = check_outputs(&kcat, &bootstrap, &expected());
    assert!(
        problems.is_empty(),
        "{problems:#?}\n--- streamctl run\n{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    // The two malformed logons, once per job reading the logon topic, with their headers.
    let dlq = Command::new(&kcat).args(["-C", "-b", &bootstrap, "-t", "ora-ogg-SOE-LOGON-json.dlq", "-o", "beginning", "-e", "-q", "-f", "%h\n"]).output().unwrap();
    let headers = String::from_utf8_lossy(&dlq.stdout);
    assert_eq!(headers.lines().count(), 4, "{headers}");
    assert!(headers.contains("streamctl.source.topic=ora-ogg-SOE-LOGON-json"), "{headers}");
}

#[test]
fn two_workers_and_one_killed_mid_stream() {
    let Some((tansu, kcat)) = tools() else { return };
    let (_broker, bootstrap) = start_broker(&tansu);
    create_source_topics(&bootstrap);
    produce_samples(&kcat, &bootstrap, 0.0..0.5);
    let logs = tempfile::tempdir().unwrap();
    let worker = |name: &str| {
        let log = std::fs::File::create(logs.path().join(name)).unwrap();
        streamctl()
            .args(["run", "--project-dir"])
            .arg(root().join("example-project"))
            .args(["--target", "local", "--bootstrap-servers", &bootstrap, "--checkpoint-interval-ms", "500"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let mut a = Killed(worker("a.log"));
    let mut b = Killed(worker("b.log"));
    std::thread::sleep(Duration::from_secs(8));
    // SIGKILL: no chance to checkpoint or leave the group.
    a.0.kill().unwrap();
    let _ = a.0.wait();
    produce_samples(&kcat, &bootstrap, 0.5..1.0);
    let exp = expected();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let problems = check_outputs(&kcat, &bootstrap, &exp);
        if problems.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let log = |n: &str| std::fs::read_to_string(logs.path().join(n)).unwrap_or_default();
            panic!("after the kill, outputs are still incomplete: {problems:#?}\n--- worker a (killed)\n{}\n--- worker b\n{}", log("a.log"), log("b.log"));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    // SIGTERM: the survivor finishes its batches, checkpoints and exits 0.
    let term = Command::new("kill").args(["-TERM", &b.0.id().to_string()]).status().unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = b.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the worker did not stop within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
