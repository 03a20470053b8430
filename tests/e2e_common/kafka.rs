//! Apache Kafka (KRaft, combined broker and controller per node) started by the tests from the jars that
//! `tests/kafka/fetch.sh` copies from Maven Central into a cache folder.
//!
//! Each cluster lives in its own temporary folder on free ports and is killed when dropped (also when a
//! test panics). Storage is formatted once per node id into the cache (the voters are static, so a
//! formatted folder holds no port) and copied for each cluster, which saves the formatter's JVM start.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Kafka version of `tests/kafka/pom.xml`.
pub const KAFKA_VERSION: &str = "4.4.0";

/// Where `tests/kafka/fetch.sh` puts Kafka (`STREAMCTL_KAFKA_HOME`, else `~/.cache/streamctl/kafka-<version>`).
pub fn kafka_home() -> PathBuf {
    if let Some(h) = std::env::var_os("STREAMCTL_KAFKA_HOME") {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".cache/streamctl").join(format!("kafka-{KAFKA_VERSION}"))
}

fn java() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("JAVA_HOME") {
        let j = Path::new(&h).join("bin/java");
        if j.is_file() {
            return Some(j);
        }
    }
    super::tool("java")
}

/// Why Kafka cannot be started here, or None when it can.
pub fn missing_piece() -> Option<String> {
    if java().is_none() {
        return Some("java (17 or newer) is not installed".into());
    }
    let jar = kafka_home().join("libs").join(format!("kafka_2.13-{KAFKA_VERSION}.jar"));
    if !jar.is_file() || !kafka_home().join("libs/.complete").is_file() {
        return Some(format!(
            "the Kafka jars are not in {} (run tests/kafka/fetch.sh, which needs Maven)",
            kafka_home().display()
        ));
    }
    None
}

/// A port free now for a server a test starts. Taken below Linux's ephemeral range (32768 and up),
/// so that no client connection made meanwhile (the tests' own, a broker's to another) is given it
/// before the server binds it, and never the same twice in one test process, whose tests run in
/// parallel; where in the range a process starts depends on its id, so test binaries run one after
/// another do not walk the same ports.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(u32::MAX, std::process::id() * 97 % SPAN, Ordering::SeqCst, Ordering::SeqCst);
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A listener beyond the plaintext one every node has: its name (also the security protocol unless mapped
/// otherwise in `properties`), and the port on each node, filled in by `start`.
#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub protocol: String,
    pub ports: Vec<u16>,
}

#[derive(Debug, Clone, Default)]
pub struct KafkaOptions {
    pub nodes: usize,
    /// Extra listeners as (name, security protocol).
    pub listeners: Vec<(String, String)>,
    /// Extra broker properties, for every node.
    pub properties: Vec<(String, String)>,
}

struct Node {
    id: usize,
    port: u16,
    controller_port: u16,
    config: PathBuf,
    log: PathBuf,
    process: Option<Child>,
}

pub struct KafkaCluster {
    nodes: Vec<Node>,
    pub listeners: Vec<Listener>,
    dir: tempfile::TempDir,
}

impl KafkaCluster {
    /// One node, plaintext.
    pub fn single() -> KafkaCluster {
        Self::start(KafkaOptions { nodes: 1, ..Default::default() })
    }

    /// Three nodes: every topic replicated three times, `min.insync.replicas=2`, so one node can be down.
    pub fn three_nodes() -> KafkaCluster {
        Self::start(KafkaOptions { nodes: 3, ..Default::default() })
    }

    pub fn start(opts: KafkaOptions) -> KafkaCluster {
        if let Some(why) = missing_piece() {
            panic!("cannot start Kafka: {why}");
        }
        let n = opts.nodes.max(1);
        let dir = tempfile::Builder::new().prefix("streamctl-kafka").tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let mut listeners: Vec<Listener> = opts
            .listeners
            .iter()
            .map(|(name, protocol)| Listener { name: name.clone(), protocol: protocol.clone(), ports: vec![] })
            .collect();
        for l in &mut listeners {
            l.ports = (0..n).map(|_| free_port()).collect();
        }
        let voters = (0..n).map(|i| format!("{}@127.0.0.1:{}", i + 1, ports[i].1)).collect::<Vec<_>>().join(",");
        let replication = n.min(3);
        let min_isr = if n >= 3 { 2 } else { 1 };
        let mut nodes = Vec::new();
        for (i, (port, controller_port)) in ports.iter().copied().enumerate() {
            let id = i + 1;
            let data = dir.path().join(format!("node-{id}"));
            copy_formatted(id, &data);
            let mut listener_list =
                vec![format!("PLAINTEXT://127.0.0.1:{port}"), format!("CONTROLLER://127.0.0.1:{controller_port}")];
            let mut advertised = vec![format!("PLAINTEXT://127.0.0.1:{port}")];
            let mut protocol_map = vec!["PLAINTEXT:PLAINTEXT".to_string(), "CONTROLLER:PLAINTEXT".to_string()];
            for l in &listeners {
                listener_list.push(format!("{}://127.0.0.1:{}", l.name, l.ports[i]));
                advertised.push(format!("{}://127.0.0.1:{}", l.name, l.ports[i]));
                protocol_map.push(format!("{}:{}", l.name, l.protocol));
            }
            let mut props = vec![
                ("process.roles".to_string(), "broker,controller".to_string()),
                ("node.id".into(), id.to_string()),
                ("controller.quorum.voters".into(), voters.clone()),
                ("controller.listener.names".into(), "CONTROLLER".into()),
                ("inter.broker.listener.name".into(), "PLAINTEXT".into()),
                ("listeners".into(), listener_list.join(",")),
                ("advertised.listeners".into(), advertised.join(",")),
                ("listener.security.protocol.map".into(), protocol_map.join(",")),
                ("log.dirs".into(), data.display().to_string()),
                ("num.partitions".into(), "1".into()),
                ("default.replication.factor".into(), replication.to_string()),
                ("min.insync.replicas".into(), min_isr.to_string()),
                ("offsets.topic.replication.factor".into(), replication.to_string()),
                ("offsets.topic.num.partitions".into(), "10".into()),
                ("transaction.state.log.replication.factor".into(), replication.to_string()),
                ("transaction.state.log.min.isr".into(), min_isr.to_string()),
                ("transaction.state.log.num.partitions".into(), "10".into()),
                ("share.coordinator.state.topic.replication.factor".into(), replication.to_string()),
                ("share.coordinator.state.topic.min.isr".into(), min_isr.to_string()),
                ("group.initial.rebalance.delay.ms".into(), "0".into()),
                // A killed worker's partitions go to the survivor within seconds, not the default 45.
                ("group.consumer.session.timeout.ms".into(), "6000".into()),
                ("group.consumer.min.session.timeout.ms".into(), "1000".into()),
                ("group.min.session.timeout.ms".into(), "1000".into()),
                ("auto.create.topics.enable".into(), "false".into()),
                // The broker's default retention (7 days), checked every second: an output topic stamped
                // with event times (the example's are from 2017) and created with that retention would
                // lose its records during the test. streamctl creates its topics without time retention.
                ("log.retention.check.interval.ms".into(), "1000".into()),
            ];
            for (k, v) in &opts.properties {
                props.retain(|(pk, _)| pk != k);
                props.push((k.clone(), v.clone()));
            }
            let config = dir.path().join(format!("node-{id}.properties"));
            let text: String = props.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
            std::fs::write(&config, text).unwrap();
            let log = dir.path().join(format!("node-{id}.log"));
            nodes.push(Node { id, port, controller_port, config, log, process: None });
        }
        // Warnings and errors into each node's log (STREAMCTL_KAFKA_LOG_LEVEL=INFO for more).
        let level = std::env::var("STREAMCTL_KAFKA_LOG_LEVEL").unwrap_or_else(|_| "WARN".into());
        std::fs::write(
            dir.path().join("log4j2.properties"),
            format!(
                "appender.out.type=Console\nappender.out.name=OUT\nappender.out.layout.type=PatternLayout\n\
                 appender.out.layout.pattern=[%d] %p %m (%c)%n\nrootLogger.level={level}\n\
                 rootLogger.appenderRef.out.ref=OUT\n"
            ),
        )
        .unwrap();
        let mut cluster = KafkaCluster { nodes, listeners, dir };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster.wait_until_ready(Duration::from_secs(120));
        cluster
    }

    /// Plaintext bootstrap servers (every node).
    pub fn bootstrap(&self) -> String {
        self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect::<Vec<_>>().join(",")
    }

    /// Bootstrap servers of an extra listener.
    pub fn listener_bootstrap(&self, name: &str) -> String {
        let l = self.listeners.iter().find(|l| l.name == name).expect("no such listener");
        l.ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self, i: usize) {
        let java = java().unwrap();
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log).unwrap();
        let child = Command::new(java)
            .arg(format!("-Dlog4j2.configurationFile={}", self.dir.path().join("log4j2.properties").display()))
            .args(jvm_args())
            .arg("kafka.Kafka")
            .arg(&node.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the Kafka broker");
        node.process = Some(child);
    }

    /// SIGKILL to one node (0-based index); its data stays for `restart_node`.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].process.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed node again and waits until the whole cluster answers.
    pub fn restart_node(&mut self, i: usize) {
        assert!(self.nodes[i].process.is_none(), "node {} is running", self.nodes[i].id);
        self.spawn(i);
        self.wait_until_ready(Duration::from_secs(120));
    }

    /// The last lines of every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| {
                let text = std::fs::read_to_string(&n.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                format!("--- Kafka node {} ({})\n{tail}\n", n.id, n.log.display())
            })
            .collect()
    }

    /// Waits until every running node is in the cluster metadata and the broker accepts a topic.
    fn wait_until_ready(&mut self, limit: Duration) {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let deadline = Instant::now() + limit;
        let running: Vec<usize> = self.nodes.iter().filter(|n| n.process.is_some()).map(|n| n.id).collect();
        loop {
            for i in 0..self.nodes.len() {
                let n = &mut self.nodes[i];
                if let Some(status) = n.process.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    n.process = None;
                    let id = n.id;
                    panic!("Kafka node {id} exited ({status}) while starting\n{}", self.logs());
                }
            }
            let servers: Vec<String> =
                self.nodes.iter().filter(|n| n.process.is_some()).map(|n| format!("127.0.0.1:{}", n.port)).collect();
            let consumer: Result<BaseConsumer, _> =
                rdkafka::ClientConfig::new().set("bootstrap.servers", servers.join(",")).set("log_level", "0").create();
            if let Ok(Ok(md)) = consumer.as_ref().map(|c| c.fetch_metadata(None, Duration::from_secs(2))) {
                let ids: Vec<usize> = md.brokers().iter().map(|b| b.id() as usize).collect();
                if running.iter().all(|id| ids.contains(id)) {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!("Kafka did not answer within {limit:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        if std::env::var_os("STREAMCTL_KAFKA_KEEP").is_some() {
            eprintln!("Kafka's folder is kept: {}", self.dir.path().display());
            self.dir.disable_cleanup(true);
        }
        for n in &mut self.nodes {
            if let Some(mut c) = n.process.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A small heap and the quick compiler only: the tests need a fast start more than peak throughput, and
/// share two cores with the build and streamctl.
fn jvm_args() -> Vec<String> {
    let libs = kafka_home().join("libs");
    vec![
        "-Xmx512m".into(),
        "-Xms64m".into(),
        "-XX:+UseSerialGC".into(),
        "-XX:TieredStopAtLevel=1".into(),
        "-Djava.awt.headless=true".into(),
        "-cp".into(),
        format!("{}/*", libs.display()),
    ]
}

/// Copies the formatted storage of node `id` (made once into the cache) to `to`.
fn copy_formatted(id: usize, to: &Path) {
    let template = kafka_home().join("formatted").join(format!("node-{id}"));
    if !template.join("meta.properties").is_file() {
        format_storage(id, &template);
    }
    copy_tree(&template, to);
}

/// `kafka-storage format` for a node of a static-voter cluster: the formatted folder holds the cluster id,
/// the node id and the initial feature levels, but no address, so it can serve any ports.
fn format_storage(id: usize, template: &Path) {
    let parent = template.parent().unwrap();
    std::fs::create_dir_all(parent).unwrap();
    // Formatted beside the template and renamed into place: tests running at once never see half of one.
    let work = tempfile::Builder::new().prefix("formatting").tempdir_in(parent).unwrap();
    let data = work.path().join("data");
    let config = work.path().join("server.properties");
    std::fs::write(
        &config,
        format!(
            "process.roles=broker,controller\nnode.id={id}\ncontroller.quorum.voters={id}@127.0.0.1:9093\n\
             controller.listener.names=CONTROLLER\nlisteners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093\n\
             log.dirs={}\n",
            data.display()
        ),
    )
    .unwrap();
    let out = Command::new(java().unwrap())
        .args(jvm_args())
        .args(["kafka.tools.StorageTool", "format", "--config"])
        .arg(&config)
        .args(["--cluster-id", "c3RyZWFtY3RsLXRlc3RzAA"])
        .output()
        .expect("run the Kafka storage formatter");
    assert!(
        out.status.success(),
        "formatting Kafka storage failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Another test may have won the race; either folder is as good.
    let _ = std::fs::rename(&data, template);
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
