//! A single OpenSearch node started by a test from the jars `tests/kafka/fetch.sh` copies from
//! Maven Central (`tests/kafka/opensearch-pom.xml`: the server and its netty4 transport module,
//! no security plugin), run by `tests/opensearch/TestNode.java` (compiled with javac once per
//! version of its source, into the cache). Each node lives in a temporary home on free ports and
//! is killed when dropped (also when a test panics).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// The OpenSearch version of `tests/kafka/opensearch-pom.xml`.
pub const OPENSEARCH_VERSION: &str = "2.19.6";

/// Where `tests/kafka/fetch.sh` puts OpenSearch (`STREAMCTL_OPENSEARCH_HOME`, else
/// `~/.cache/streamctl/opensearch-<version>`).
pub fn opensearch_home() -> PathBuf {
    if let Some(h) = std::env::var_os("STREAMCTL_OPENSEARCH_HOME") {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache/streamctl").join(format!("opensearch-{OPENSEARCH_VERSION}"))
}

/// Why an OpenSearch node cannot be started here, or None.
pub fn missing_piece() -> Option<String> {
    if super::tool("java").is_none() || super::tool("javac").is_none() {
        return Some("java and javac (a JDK 17 or newer) are not installed".into());
    }
    let libs = opensearch_home().join("libs");
    if !libs.join(format!("opensearch-{OPENSEARCH_VERSION}.jar")).is_file() || !libs.join(".complete").is_file() {
        return Some(format!(
            "the OpenSearch jars are not in {} (run tests/kafka/fetch.sh, which needs Maven)",
            opensearch_home().display()
        ));
    }
    None
}

/// Whether a node can start, or a skip announced on stderr, or a failure when STREAMCTL_E2E is set.
pub fn available() -> bool {
    match missing_piece() {
        None => true,
        Some(why) if std::env::var_os("STREAMCTL_E2E").is_some() => {
            panic!("STREAMCTL_E2E is set but the OpenSearch test cannot run: {why} (.ci/run fetches it)")
        }
        Some(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

/// The compiled launcher: `<home>/launcher-<hash of its source>`, compiled unless there.
fn launcher() -> PathBuf {
    let source_file = super::root().join("tests/opensearch/TestNode.java");
    let source = std::fs::read(&source_file).unwrap();
    let hash: String = Sha256::digest(&source)[..6].iter().map(|b| format!("{b:02x}")).collect();
    let dir = opensearch_home().join(format!("launcher-{hash}"));
    if dir.join("TestNode.class").is_file() {
        return dir;
    }
    // Compiled aside and renamed, so that two tests at once never see half a directory.
    let tmp = tempfile::Builder::new().prefix("launcher-").tempdir_in(opensearch_home()).unwrap();
    let out = Command::new(super::tool("javac").expect("javac"))
        .arg("-d")
        .arg(tmp.path())
        .arg("-cp")
        .arg(format!("{}/*", opensearch_home().join("libs").display()))
        .arg(&source_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "javac TestNode.java:\n{}", String::from_utf8_lossy(&out.stderr));
    let tmp = tmp.keep();
    if std::fs::rename(&tmp, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    dir
}

pub struct OpenSearchNode {
    pub port: u16,
    process: Option<Child>,
    log: PathBuf,
    started: Instant,
    _dir: tempfile::TempDir,
}

impl OpenSearchNode {
    /// Starts a node and returns when it answers.
    pub fn start() -> OpenSearchNode {
        let mut node = OpenSearchNode::spawn();
        node.wait_ready();
        node
    }

    /// Starts a node without waiting for it (start Kafka meanwhile, then [`OpenSearchNode::wait_ready`]).
    pub fn spawn() -> OpenSearchNode {
        let dir = tempfile::Builder::new().prefix("streamctl-opensearch").tempdir().unwrap();
        let classes = launcher();
        let (port, transport) = (super::kafka::free_port(), super::kafka::free_port());
        let level = std::env::var("STREAMCTL_OPENSEARCH_LOG_LEVEL").unwrap_or_else(|_| "WARN".into());
        let log4j = dir.path().join("log4j2.properties");
        std::fs::write(
            &log4j,
            format!(
                "status=error\nappender.out.type=Console\nappender.out.name=OUT\nappender.out.layout.type=PatternLayout\n\
                 appender.out.layout.pattern=[%d] %p %m (%c)%n\nrootLogger.level={level}\n\
                 rootLogger.appenderRef.out.ref=OUT\n"
            ),
        )
        .unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join("config")).unwrap();
        let log = dir.path().join("opensearch.log");
        let out = std::fs::File::create(&log).unwrap();
        let classpath = format!("{}:{}/*", classes.display(), opensearch_home().join("libs").display());
        let child = Command::new(super::tool("java").expect("java"))
            .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
            .args(["-Xms512m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"])
            .arg("-cp")
            .arg(classpath)
            .arg("TestNode")
            .arg(&home)
            .arg(port.to_string())
            .arg(transport.to_string())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start the OpenSearch node");
        OpenSearchNode { port, process: Some(child), log, started: Instant::now(), _dir: dir }
    }

    /// Waits until the node answers `GET /_cluster/health` (two minutes at most); returns how long
    /// it took since the JVM started.
    pub fn wait_ready(&mut self) -> Duration {
        let limit = Duration::from_secs(120);
        loop {
            if let Some(status) = self.process.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("OpenSearch exited ({status}) while starting\n{}", self.logs());
            }
            if let Some((200, _)) = self.request("GET", "/_cluster/health", None) {
                return self.started.elapsed();
            }
            assert!(self.started.elapsed() < limit, "OpenSearch did not answer within {limit:?}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn logs(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        format!("--- OpenSearch ({})\n{}\n", self.log.display(), lines[lines.len().saturating_sub(40)..].join("\n"))
    }

    /// `(status, body)` of a request, or None without an answer.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, String)> {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let url = format!("{}{path}", self.url());
        let response = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            ("DELETE", _) => agent.delete(&url).call(),
            ("PUT", Some(b)) => agent.put(&url).header("Content-Type", "application/json").send(b.to_string()),
            ("POST", Some(b)) => agent.post(&url).header("Content-Type", "application/json").send(b.to_string()),
            ("POST", None) => agent.post(&url).send_empty(),
            _ => panic!("unsupported request {method} {path}"),
        };
        let response = response.ok()?;
        let status = response.status().as_u16();
        Some((status, response.into_body().read_to_string().ok()?))
    }

    /// A request that must succeed (2xx), as JSON.
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, text) =
            self.request(method, path, body).unwrap_or_else(|| panic!("no answer to {method} {path}\n{}", self.logs()));
        assert!((200..300).contains(&status), "{method} {path}: HTTP {status}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Every document of an index as `(id, source)`, sorted by id, after a refresh; None when the
    /// index does not exist.
    pub fn documents(&self, index: &str) -> Option<Vec<(String, Value)>> {
        match self.request("POST", &format!("/{index}/_refresh"), None) {
            Some((404, _)) => return None,
            Some((200, _)) => {}
            other => panic!("refreshing {index}: {other:?}"),
        }
        let v = self.call("POST", &format!("/{index}/_search"), Some(&serde_json::json!({"size": 10000})));
        let mut docs: Vec<(String, Value)> = v["hits"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["_id"].as_str().unwrap().to_string(), h["_source"].clone()))
            .collect();
        docs.sort_by(|a, b| a.0.cmp(&b.0));
        Some(docs)
    }

    /// How many documents an index holds (0 when it does not exist), after a refresh.
    pub fn count(&self, index: &str) -> usize {
        match self.request("POST", &format!("/{index}/_refresh"), None) {
            Some((200, _)) => {}
            _ => return 0,
        }
        self.call("GET", &format!("/{index}/_count"), None)["count"].as_u64().unwrap() as usize
    }
}

impl Drop for OpenSearchNode {
    fn drop(&mut self) {
        if let Some(mut c) = self.process.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
