//! Helpers shared by the end-to-end tests: Apache Kafka processes (`kafka`), a Kafka Connect worker
//! (`connect`), PostgreSQL (`postgres`), an OpenSearch node (`opensearch`), kcat as the foreign client,
//! the example project's sample data.
#![allow(dead_code)]

pub mod connect;
pub mod kafka;
pub mod opensearch;
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

impl Killed {
    /// The process's exit status once it has exited, within `limit` (`None`: still running).
    pub fn exited_within(&mut self, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return Some(s);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

/// A test project on a single-node Kafka of its own: its input topic created, the project copied
/// into a temporary folder, `streamctl` commands run on it against that Kafka.
pub struct KafkaProject {
    pub kafka: kafka::KafkaCluster,
    pub bootstrap: String,
    pub work: tempfile::TempDir,
    pub project: PathBuf,
}

impl KafkaProject {
    /// `dir`: the project under the repository root; `input`: a stream topic and its partitions.
    pub fn start(dir: &str, input: &str, partitions: i32) -> KafkaProject {
        let kafka = kafka::KafkaCluster::single();
        let bootstrap = kafka.bootstrap();
        create_topics(&bootstrap, &[(input, partitions, false)]);
        let work = tempfile::tempdir().unwrap();
        let project = work.path().join("project");
        crate::common::copy_dir(&root().join(dir), &project, &["target"]);
        KafkaProject { kafka, bootstrap, work, project }
    }

    /// `streamctl --project-dir <project> ARGS` against this Kafka.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = streamctl();
        c.arg("--project-dir").arg(&self.project).args(args).env("KAFKA_BOOTSTRAP_SERVERS", &self.bootstrap);
        c
    }
}

/// Creates topics (name, partitions, compacted) on a Kafka; kcat cannot.
pub fn create_topics(bootstrap: &str, topics: &[(&str, i32, bool)]) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let cluster = streamctl::connectors::kafka::Cluster::Kafka {
        bootstrap: bootstrap.into(),
        properties: vec![],
        replication_factor: 1,
    };
    let topics: Vec<_> = topics
        .iter()
        .map(|(n, p, c)| streamctl::connectors::kafka::TopicSpec { name: n.to_string(), partitions: *p, compacted: *c })
        .collect();
    rt.block_on(cluster.ensure_topics(&topics)).unwrap();
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
    create_topics(
        bootstrap,
        &[("ora-ogg-SOE-CUSTOMERS", 1, true), (LOGON_TOPIC, 2, false), ("ora-ogg-SOE-ORDERS-json", 2, false)],
    );
}

/// Produces lines with kcat; `keyed` lines are `key<TAB>value`.
pub fn kcat_produce(kcat: &Path, bootstrap: &str, topic: &str, lines: &[String], keyed: bool) {
    kcat_produce_to(kcat, bootstrap, topic, lines, keyed, None)
}

/// `kcat_produce` into one partition, or where the partitioner puts each record (`None`).
pub fn kcat_produce_to(
    kcat: &Path,
    bootstrap: &str,
    topic: &str,
    lines: &[String],
    keyed: bool,
    partition: Option<i32>,
) {
    let partition = partition.map(|p| p.to_string());
    let mut args = vec!["-P", "-b", bootstrap, "-t", topic];
    if keyed {
        args.extend(["-K", "\t"]);
    }
    if let Some(p) = &partition {
        args.extend(["-p", p]);
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

/// What `read` gives once two reads a second apart agree (a server still finishing requests it
/// had when a writer was killed); fails after 60 s.
pub fn once_still<T: PartialEq + std::fmt::Debug>(read: impl Fn() -> T) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut last = read();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        let now = read();
        if now == last {
            return now;
        }
        assert!(std::time::Instant::now() < deadline, "still changing after 60 s: {last:?} then {now:?}");
        last = now;
    }
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
    // The keyless topics' records go to their 2 partitions in turn, not where kcat's sticky
    // partitioner puts them (often all of a small batch in one partition): each partition gets
    // records from every part of the sample, so windows close on both partitions' event times
    // rather than on one partition going idle, and no run depends on how a batch fell.
    let (id, schema) = logon_schema();
    let logons: Vec<Vec<u8>> = slice(sample("logon.jsonl")).iter().map(|l| logon_avro(l, id, &schema)).collect();
    let orders = slice(sample("orders.jsonl"));
    for p in 0..2 {
        let mine = |i: &usize| i % 2 == p;
        let logons: Vec<Vec<u8>> = logons.iter().enumerate().filter(|(i, _)| mine(i)).map(|(_, v)| v.clone()).collect();
        kcat_produce_values(kcat, bootstrap, LOGON_TOPIC, &logons, Some(p as i32));
        let orders: Vec<String> = orders.iter().enumerate().filter(|(i, _)| mine(i)).map(|(_, v)| v.clone()).collect();
        kcat_produce_to(kcat, bootstrap, "ora-ogg-SOE-ORDERS-json", &orders, false, Some(p as i32));
    }
}

/// The example's LOGON topic: Avro in the Confluent wire format, as GoldenGate writes it.
pub const LOGON_TOPIC: &str = "ora-ogg-SOE-LOGON-avro";
/// The subject its values' schema is registered under.
pub const LOGON_SUBJECT: &str = "ora-ogg-SOE-LOGON-avro-value";

/// The example's LOGON value schema (in its file registry, `schemas/`) and its id there: the id
/// every file registry holding this schema gives it.
pub fn logon_schema() -> (i32, Value) {
    use streamctl::registry::SchemaRegistry;
    let registry = streamctl::registry::file::FileRegistry::new(root().join("example-project/schemas"), "schemas");
    let latest = registry.versions(LOGON_SUBJECT).unwrap().pop().expect("the example registers the LOGON schema");
    (latest.id, serde_json::from_str(&latest.schema).unwrap())
}

/// Registers the LOGON schema in a file registry (`DIR/<subject>/`), as GoldenGate registers it
/// before it writes: for tests whose target uses a registry of their own (`file:registry`).
pub fn register_logon_schema(registry_dir: &Path) {
    let from = root().join("example-project/schemas").join(LOGON_SUBJECT);
    common_copy(&from, &registry_dir.join(LOGON_SUBJECT));
}

fn common_copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn zigzag(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// A LOGON sample line as GoldenGate writes it, encoded here (not by streamctl): magic byte 0,
/// the schema id (4 bytes, big-endian), the Avro body of `schema`, whose fields are all
/// `["null", int | long | string]`. A line that does not fit the schema (the sample's two
/// malformed lines) is returned as it is: a record that is not Avro.
pub fn logon_avro(line: &str, id: i32, schema: &Value) -> Vec<u8> {
    let Ok(Value::Object(row)) = serde_json::from_str::<Value>(line) else { return line.as_bytes().to_vec() };
    let mut out = vec![0u8];
    out.extend(id.to_be_bytes());
    for f in schema["fields"].as_array().unwrap() {
        let branches = f["type"].as_array().expect("a [\"null\", type] union");
        assert_eq!(branches[0], "null");
        match (row.get(f["name"].as_str().unwrap()), branches[1].as_str().unwrap()) {
            (None | Some(Value::Null), _) => zigzag(0, &mut out),
            (Some(Value::Number(n)), "int" | "long") if n.is_i64() => {
                zigzag(1, &mut out);
                zigzag(n.as_i64().unwrap(), &mut out);
            }
            (Some(Value::String(s)), "string") => {
                zigzag(1, &mut out);
                zigzag(s.len() as i64, &mut out);
                out.extend(s.as_bytes());
            }
            _ => return line.as_bytes().to_vec(),
        }
    }
    out
}

/// Produces values (any bytes) with kcat, one file per record, without keys, into one partition
/// or where the partitioner puts each record (`None`).
pub fn kcat_produce_values(kcat: &Path, bootstrap: &str, topic: &str, values: &[Vec<u8>], partition: Option<i32>) {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let f = dir.path().join(format!("{i:05}"));
            std::fs::write(&f, v).unwrap();
            f
        })
        .collect();
    if files.is_empty() {
        return;
    }
    let partition: Vec<String> = partition.map(|p| vec!["-p".to_string(), p.to_string()]).unwrap_or_default();
    let ok =
        Command::new(kcat).args(["-P", "-b", bootstrap, "-t", topic]).args(&partition).args(&files).status().unwrap();
    assert!(ok.success(), "kcat -P {topic}");
}

/// python3 with confluent-kafka's Avro serializers and fastavro (the foreign Avro client); when
/// missing, a skip announced on stderr, or a failure when STREAMCTL_E2E is set.
pub fn python_avro_client() -> bool {
    let probe = "import confluent_kafka.schema_registry.avro, fastavro";
    let ok = Command::new("python3").args(["-c", probe]).output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("STREAMCTL_E2E").is_none(),
            "STREAMCTL_E2E is set but python3 cannot import confluent_kafka's Avro serializers (.ci/run installs them)"
        );
        eprintln!("skipped: python3 with confluent-kafka[avro,schemaregistry] and fastavro is not installed");
    }
    ok
}

/// Starts `tests/avro/confluent_registry.py` (the Confluent Schema Registry REST API) on a free
/// port: the process (stopped when dropped) and its URL.
pub fn start_registry() -> (Killed, String) {
    use std::io::BufRead;
    let port = kafka::free_port();
    let mut child = Command::new("python3")
        .arg(root().join("tests/avro/confluent_registry.py"))
        .arg(port.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("listening"), "the registry did not start: {line}");
    (Killed(child), format!("http://127.0.0.1:{port}"))
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
        // What a consumer of the topic sees: not the copies of an aborted transaction (a job's
        // dead letters are written in its transactions).
        .args(["-X", "isolation.level=read_committed"])
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

/// A file sink's closed files by partition: (first offset, last offset, rows), in offset order.
pub type SinkFiles = BTreeMap<i64, Vec<(i64, i64, Vec<Value>)>>;

/// A topic's values by partition, in offset order, as a read_committed consumer sees them.
pub fn topic_rows_by_partition(kcat: &Path, bootstrap: &str, topic: &str) -> BTreeMap<i64, Vec<Value>> {
    let out = Command::new(kcat)
        .args(["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p\t%s\n"])
        .args(["-X", "isolation.level=read_committed"])
        .output()
        .unwrap();
    let mut rows: BTreeMap<i64, Vec<Value>> = BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()) {
        let (p, v) = l.split_once('\t').unwrap();
        rows.entry(p.parse().unwrap()).or_default().push(serde_json::from_str(v).unwrap());
    }
    rows
}

/// What a file sink's closed files hold, partition by partition, after checking that their offset
/// ranges follow each other without overlapping.
pub fn delivered(files: &SinkFiles) -> BTreeMap<i64, Vec<Value>> {
    files
        .iter()
        .map(|(p, fs)| {
            for w in fs.windows(2) {
                assert!(
                    w[0].1 < w[1].0,
                    "partition {p}: files {:?} and {:?} overlap",
                    (w[0].0, w[0].1),
                    (w[1].0, w[1].1)
                );
            }
            (*p, fs.iter().flat_map(|f| f.2.iter().cloned()).collect())
        })
        .collect()
}

/// A field of an output row, whatever the case of its name.
pub fn field<'v>(v: &'v Value, name: &str) -> &'v Value {
    v.as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
        .unwrap_or(&Value::Null)
}

/// The process id in a task holder's name (`<host>-<pid>-<start>/thread-<n>`).
pub fn pid_of(holder: &str) -> Option<u32> {
    holder.split('/').next()?.rsplit('-').nth(1)?.parse().ok()
}

/// Kafka's `Utils.murmur2` (the Java client's default partitioner), written out here from its
/// definition (a test's own reference, not streamctl's).
fn murmur2(data: &[u8]) -> u32 {
    let m: u32 = 0x5bd1e995;
    let mut h: u32 = 0x9747b28c ^ data.len() as u32;
    let whole = data.len() / 4 * 4;
    for i in (0..whole).step_by(4) {
        let mut k = u32::from(data[i])
            | u32::from(data[i + 1]) << 8
            | u32::from(data[i + 2]) << 16
            | u32::from(data[i + 3]) << 24;
        k = k.wrapping_mul(m);
        k ^= k >> 24;
        k = k.wrapping_mul(m);
        h = h.wrapping_mul(m);
        h ^= k;
    }
    let left = data.len() - whole;
    if left == 3 {
        h ^= u32::from(data[whole + 2]) << 16;
    }
    if left >= 2 {
        h ^= u32::from(data[whole + 1]) << 8;
    }
    if left >= 1 {
        h ^= u32::from(data[whole]);
        h = h.wrapping_mul(m);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(m);
    h ^= h >> 15;
    h
}

/// The partition Kafka's default partitioner puts `key` in, of `n`.
pub fn java_partition(key: &[u8], n: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % n as u32) as i32
}
