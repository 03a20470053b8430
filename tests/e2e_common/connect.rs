//! A Kafka Connect worker in distributed mode (`org.apache.kafka.connect.cli.ConnectDistributed`)
//! started by a test from the jars `tests/kafka/fetch.sh` copies from Maven Central: the worker
//! (`connect-runtime` and its dependencies) in `<home>/libs`, connector plugins (Debezium's
//! PostgreSQL connector, Kafka's file connectors) in `<home>/plugins`, its `plugin.path`. Killed
//! when dropped; a test can kill it (SIGKILL) and start it again on the same port.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where `tests/kafka/fetch.sh` puts Kafka Connect (`STREAMCTL_CONNECT_HOME`, else
/// `~/.cache/streamctl/connect-<kafka version>`).
pub fn connect_home() -> PathBuf {
    if let Some(h) = std::env::var_os("STREAMCTL_CONNECT_HOME") {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache/streamctl").join(format!("connect-{}", super::kafka::KAFKA_VERSION))
}

/// Why a Connect worker with the Debezium PostgreSQL connector cannot be started here, or None.
pub fn missing_piece() -> Option<String> {
    let home = connect_home();
    let runtime = home.join("libs").join(format!("connect-runtime-{}.jar", super::kafka::KAFKA_VERSION));
    let debezium = home.join("plugins/debezium-connector-postgres/debezium-connector-postgres-3.6.1.Final.jar");
    let file = home.join("plugins/connect-file/connect-file-4.3.0.jar");
    if !runtime.is_file() || !debezium.is_file() || !file.is_file() || !home.join(".complete").is_file() {
        return Some(format!(
            "Kafka Connect and Debezium are not in {} (run tests/kafka/fetch.sh, which needs Maven)",
            home.display()
        ));
    }
    None
}

/// The Connect jars, or None (a skip announced on stderr), or a failure when STREAMCTL_E2E is set.
pub fn available() -> bool {
    match missing_piece() {
        None => true,
        Some(why) if std::env::var_os("STREAMCTL_E2E").is_some() => {
            panic!("STREAMCTL_E2E is set but the Kafka Connect test cannot run: {why} (.ci/run fetches it)")
        }
        Some(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

pub struct ConnectWorker {
    pub port: u16,
    process: Mutex<Option<Child>>,
    config: PathBuf,
    log4j: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ConnectWorker {
    /// One distributed worker on `bootstrap` (its config, offsets and status topics replicated
    /// once), JSON converters without schemas by default, REST on a free port; returns when the
    /// REST API answers and the Debezium PostgreSQL and file sink connectors are among its plugins.
    pub fn start(bootstrap: &str) -> ConnectWorker {
        let dir = tempfile::Builder::new().prefix("streamctl-connect").tempdir().unwrap();
        let port = super::kafka::free_port();
        let home = connect_home();
        let props = format!(
            "bootstrap.servers={bootstrap}\ngroup.id=streamctl-test-connect\nlisteners=http://127.0.0.1:{port}\n\
             key.converter=org.apache.kafka.connect.json.JsonConverter\n\
             value.converter=org.apache.kafka.connect.json.JsonConverter\n\
             key.converter.schemas.enable=false\nvalue.converter.schemas.enable=false\n\
             config.storage.topic=_connect-configs\noffset.storage.topic=_connect-offsets\n\
             status.storage.topic=_connect-status\nconfig.storage.replication.factor=1\n\
             offset.storage.replication.factor=1\nstatus.storage.replication.factor=1\n\
             offset.storage.partitions=1\nstatus.storage.partitions=1\noffset.flush.interval.ms=1000\n\
             scheduled.rebalance.max.delay.ms=0\n\
             plugin.path={}\nplugin.discovery=only_scan\n",
            home.join("plugins").display()
        );
        let config = dir.path().join("connect.properties");
        std::fs::write(&config, props).unwrap();
        let level = std::env::var("STREAMCTL_KAFKA_LOG_LEVEL").unwrap_or_else(|_| "WARN".into());
        let log4j = dir.path().join("log4j2.properties");
        std::fs::write(
            &log4j,
            format!(
                "appender.out.type=Console\nappender.out.name=OUT\nappender.out.layout.type=PatternLayout\n\
                 appender.out.layout.pattern=[%d] %p %m (%c)%n\nrootLogger.level={level}\n\
                 rootLogger.appenderRef.out.ref=OUT\n"
            ),
        )
        .unwrap();
        let log = dir.path().join("connect.log");
        let worker = ConnectWorker { port, process: Mutex::new(None), config, log4j, log, _dir: dir };
        worker.spawn();
        worker
    }

    /// Starts the worker process and waits until it is ready.
    fn spawn(&self) {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let java = super::tool("java").expect("java");
        let child = Command::new(java)
            .arg(format!("-Dlog4j2.configurationFile={}", self.log4j.display()))
            .args(["-Xmx512m", "-Xms64m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true"])
            .arg("-cp")
            .arg(format!("{}/*", connect_home().join("libs").display()))
            .arg("org.apache.kafka.connect.cli.ConnectDistributed")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start the Kafka Connect worker");
        *self.process.lock().unwrap() = Some(child);
        self.wait_ready(Duration::from_secs(120));
    }

    /// Kills the worker with SIGKILL: its tasks stop wherever they are, nothing is flushed.
    pub fn kill(&self) {
        if let Some(mut c) = self.process.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the worker again with the same config and port (its state is in Kafka's topics; a
    /// delay of 0 before reassigning a lost worker's tasks, so the new one takes them at once).
    pub fn restart(&self) {
        self.kill();
        self.spawn();
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn logs(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.contains("CloudEventsConverter")).collect();
        format!("--- Kafka Connect ({})\n{}\n", self.log.display(), lines[lines.len().saturating_sub(40)..].join("\n"))
    }

    fn get(&self, path: &str) -> Option<String> {
        let agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(5))).build().new_agent();
        let mut r = agent.get(format!("{}{path}", self.url())).call().ok()?;
        r.body_mut().read_to_string().ok()
    }

    fn wait_ready(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let exited = self.process.lock().unwrap().as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                panic!("Kafka Connect exited ({status}) while starting\n{}", self.logs());
            }
            let plugins = self.get("/connector-plugins").unwrap_or_default();
            if plugins.contains("io.debezium.connector.postgresql") && plugins.contains("FileStreamSinkConnector") {
                return;
            }
            assert!(Instant::now() < deadline, "Kafka Connect did not answer within {limit:?}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for ConnectWorker {
    fn drop(&mut self) {
        self.kill();
    }
}
