//! Kafka clients from a resolved target, and topic creation.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::types::RDKafkaErrorCode;

use super::embedded::EmbeddedBroker;

/// A topic streamctl needs.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    /// Tables, changelogs and checkpoints are compacted; other topics are created without time-based
    /// retention (`retention.ms=-1`), as their records carry event times.
    pub compacted: bool,
}

/// The topic configs streamctl decides (from a relation's kind); any other config of a topic is left as
/// it is on the cluster.
pub const MANAGED_TOPIC_CONFIGS: &[&str] = &["cleanup.policy"];

/// The whole config set for AlterConfigs: the topic's own overrides made outside streamctl, and the
/// managed configs as wanted (a managed key not wanted is left out: the broker's default).
fn with_managed_configs(
    current: &[rdkafka::admin::ConfigEntry],
    wanted: &std::collections::BTreeMap<String, String>,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut whole = std::collections::BTreeMap::new();
    for e in current.iter().filter(|e| !MANAGED_TOPIC_CONFIGS.contains(&e.name.as_str())) {
        match &e.value {
            Some(v) if !e.is_sensitive => {
                whole.insert(e.name.clone(), v.clone());
            }
            // AlterConfigs would drop a value the broker does not show: refuse rather than lose it.
            _ => {
                return Err(format!(
                    "the topic's config {} is hidden by the broker; it would be reset by the change",
                    e.name
                ))
            }
        }
    }
    for (k, v) in wanted {
        whole.insert(k.clone(), v.clone());
    }
    Ok(whole)
}

/// Remembers the reason of the client's last error (librdkafka reports failed TLS handshakes and
/// SASL authentication this way, not in the result of the call that needed the connection).
#[derive(Default)]
struct LastError(std::sync::Mutex<Option<String>>);

impl LastError {
    fn reason(&self) -> Option<String> {
        self.0.lock().ok().and_then(|r| r.clone())
    }
}

impl rdkafka::client::ClientContext for LastError {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        if let Ok(mut last) = self.0.lock() {
            *last = Some(if reason.is_empty() { error.to_string() } else { reason.to_string() });
        }
    }
}

impl rdkafka::consumer::ConsumerContext for LastError {}

/// Where to connect, and how to create topics there.
pub enum Cluster<'a> {
    Embedded(&'a EmbeddedBroker),
    Kafka { bootstrap: String, properties: Vec<(String, String)>, replication_factor: i32 },
}

impl Cluster<'_> {
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        match self {
            Cluster::Embedded(b) => {
                c.set("bootstrap.servers", b.bootstrap_servers());
                // The broker is in this process: a fetch that finds nothing need not wait the
                // default 500 ms for more (a bounded run ends on such a fetch).
                c.set("fetch.wait.max.ms", "10");
            }
            Cluster::Kafka { bootstrap, properties, .. } => {
                c.set("bootstrap.servers", bootstrap);
                for (k, v) in properties {
                    c.set(k, v);
                }
            }
        }
        c
    }

    /// Fails fast, with the servers named, when the cluster cannot be reached.
    pub fn check_reachable(&self) -> Result<(), String> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let servers = match self {
            Cluster::Embedded(b) => b.bootstrap_servers().to_string(),
            Cluster::Kafka { bootstrap, .. } => bootstrap.clone(),
        };
        let consumer: BaseConsumer<LastError> = self
            .client_config()
            .create_with_context(LastError::default())
            .map_err(|e| format!("cannot create a Kafka client: {e}"))?;
        consumer.fetch_metadata(None, Duration::from_secs(10)).map(|_| ()).map_err(|e| {
            // The metadata error says only "broker transport failure"; the client's error events
            // (delivered by polling) have the reason: authentication failed, certificate not trusted.
            for _ in 0..10 {
                if consumer.context().reason().is_some() {
                    break;
                }
                let _ = consumer.poll(Duration::from_millis(50));
            }
            match consumer.context().reason() {
                Some(reason) => format!("cannot reach Kafka at {servers}: {reason}"),
                None => format!("cannot reach Kafka at {servers}: {e}"),
            }
        })
    }

    /// Creates the topics that do not exist yet.
    pub async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), String> {
        match self {
            Cluster::Embedded(b) => {
                for t in topics {
                    b.create_topic(&t.name, t.partitions)?;
                }
                Ok(())
            }
            Cluster::Kafka { replication_factor, .. } => {
                let admin: AdminClient<DefaultClientContext> =
                    self.client_config().create().map_err(|e| format!("cannot create a Kafka admin client: {e}"))?;
                let new: Vec<NewTopic> = topics
                    .iter()
                    .map(|t| {
                        let nt = NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(*replication_factor));
                        if t.compacted {
                            nt.set("cleanup.policy", "compact")
                        } else {
                            // Outputs are stamped with their event time (downstream jobs read it from
                            // there), which may be years old: time-based retention counts from it and
                            // would delete a backfill at the next check. Not managed after creation:
                            // a retention set on the topic by hand stays.
                            nt.set("retention.ms", "-1")
                        }
                    })
                    .collect();
                if new.is_empty() {
                    return Ok(());
                }
                let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
                let results =
                    admin.create_topics(new.iter(), &opts).await.map_err(|e| format!("creating topics: {e}"))?;
                for r in results {
                    match r {
                        Ok(_) => {}
                        Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((name, code)) => return Err(format!("creating topic {name}: {code}")),
                    }
                }
                // Also the topics that existed: another client may have created them a moment ago.
                let names: Vec<(&str, usize)> = topics.iter().map(|t| (t.name.as_str(), 1)).collect();
                wait_for_leaders(&self.client_config(), &names, Duration::from_secs(30))
            }
        }
    }
}

const EMBEDDED_CREATES_TOPICS_ONLY: &str = "the embedded broker supports creating topics only";

/// Admin operations beyond creating topics. The embedded broker starts empty in every process,
/// so it only ever needs creation.
impl Cluster<'_> {
    fn admin(&self) -> Result<AdminClient<DefaultClientContext>, String> {
        match self {
            Cluster::Embedded(_) => Err(EMBEDDED_CREATES_TOPICS_ONLY.into()),
            Cluster::Kafka { .. } => {
                self.client_config().create().map_err(|e| format!("cannot create a Kafka admin client: {e}"))
            }
        }
    }

    /// Grows a topic of `partitions_now` partitions to at least `total`, and returns once the
    /// partitions added are served (`grow_topic`).
    pub fn create_partitions(&self, topic: &str, partitions_now: i32, total: i32) -> Result<(), String> {
        match self {
            Cluster::Embedded(_) => Err(EMBEDDED_CREATES_TOPICS_ONLY.into()),
            Cluster::Kafka { .. } => grow_topic(&self.client_config(), topic, partitions_now, total),
        }
    }

    /// Sets the configs streamctl manages (`MANAGED_TOPIC_CONFIGS`) on a topic to `configs`: a managed
    /// key missing from `configs` goes back to the broker's default. Configs set on the topic outside
    /// streamctl (by hand, or by a platform's policy) are kept.
    pub async fn alter_configs(
        &self,
        topic: &str,
        configs: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), String> {
        let admin = self.admin()?;
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let current = topic_overrides(&admin, topic).await?;
        let whole = with_managed_configs(&current, configs)?;
        // rdkafka offers AlterConfigs only, which replaces the topic's whole set: hence the set above.
        let mut ac = rdkafka::admin::AlterConfig::new(rdkafka::admin::ResourceSpecifier::Topic(topic));
        for (k, v) in &whole {
            ac = ac.set(k, v);
        }
        for r in admin.alter_configs([&ac], &opts).await.map_err(|e| format!("changing configs of {topic}: {e}"))? {
            r.map_err(|(_, code)| format!("changing configs of {topic}: {code}"))?;
        }
        Ok(())
    }

    pub async fn delete_topic(&self, topic: &str) -> Result<(), String> {
        let admin = self.admin()?;
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for r in admin.delete_topics(&[topic], &opts).await.map_err(|e| format!("deleting {topic}: {e}"))? {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((t, code)) => return Err(format!("deleting {t}: {code}")),
            }
        }
        Ok(())
    }

    /// Partitions and records held (end minus start offsets) of each of these topics that exists.
    pub fn topic_facts(&self, topics: &[String]) -> Result<std::collections::BTreeMap<String, (i32, i64)>, String> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let consumer: BaseConsumer =
            self.client_config().create().map_err(|e| format!("cannot create a Kafka client: {e}"))?;
        let md = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(|e| format!("reading cluster metadata: {e}"))?;
        let mut out = std::collections::BTreeMap::new();
        for t in md.topics() {
            if !topics.iter().any(|n| n == t.name()) || t.error().is_some() || t.partitions().is_empty() {
                continue;
            }
            let mut records = 0;
            for p in t.partitions() {
                if let Ok((low, high)) = consumer.fetch_watermarks(t.name(), p.id(), Duration::from_secs(10)) {
                    records += (high - low).max(0);
                }
            }
            out.insert(t.name().to_string(), (t.partitions().len() as i32, records));
        }
        Ok(out)
    }
}

/// The configs set on a topic itself (not inherited from the broker), as the broker describes them.
async fn topic_overrides(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
) -> Result<Vec<rdkafka::admin::ConfigEntry>, String> {
    let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    let described = admin
        .describe_configs([&rdkafka::admin::ResourceSpecifier::Topic(topic)], &opts)
        .await
        .map_err(|e| format!("reading the configs of {topic}: {e}"))?;
    let resource = described
        .into_iter()
        .next()
        .ok_or_else(|| format!("reading the configs of {topic}: no answer"))?
        .map_err(|code| format!("reading the configs of {topic}: {code}"))?;
    Ok(resource.entries.into_iter().filter(|e| e.source == rdkafka::admin::ConfigSource::DynamicTopic).collect())
}

impl Cluster<'_> {
    /// The control topic: one partition (a total order for the lock), compacted.
    pub fn ensure_control_topic(&self, topic: &str) -> Result<(), String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        if self.topic_facts(&[topic.to_string()])?.contains_key(topic) {
            return Ok(());
        }
        rt.block_on(self.ensure_topics(&[TopicSpec { name: topic.to_string(), partitions: 1, compacted: true }]))
    }
}

/// Waits until each topic has at least its number of partitions and the leader of every one
/// answers. A broker answers CreateTopics and CreatePartitions before the new partitions are
/// served; a client that reads or writes them at once gets NotLeaderForPartition or
/// UnknownTopicOrPartition, and retries after a backoff (a job's task on a checkpoint partition
/// just added waited 0.7 s for it).
fn wait_for_leaders(client: &ClientConfig, topics: &[(&str, usize)], limit: Duration) -> Result<(), String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    if topics.is_empty() {
        return Ok(());
    }
    let consumer: BaseConsumer = client.create().map_err(|e| format!("cannot create a Kafka client: {e}"))?;
    let deadline = std::time::Instant::now() + limit;
    let mut waiting: Vec<&(&str, usize)> = topics.iter().collect();
    while !waiting.is_empty() {
        let mut still = Vec::new();
        for t @ &(topic, at_least) in waiting {
            let partitions = consumer.fetch_metadata(Some(topic), Duration::from_secs(5)).ok().and_then(|md| {
                md.topics()
                    .iter()
                    .find(|t| {
                        t.error().is_none()
                            && t.partitions().len() >= at_least.max(1)
                            && t.partitions().iter().all(|p| p.leader() >= 0 && p.error().is_none())
                    })
                    .map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
            });
            // The metadata can name a leader before that broker serves the partition: ask it.
            let ready = partitions.is_some_and(|ps| {
                ps.iter().all(|&p| consumer.fetch_watermarks(topic, p, Duration::from_secs(5)).is_ok())
            });
            if !ready {
                still.push(t);
            }
        }
        waiting = still;
        if waiting.is_empty() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let names: Vec<&str> = waiting.iter().map(|t| t.0).collect();
            return Err(format!("new partitions have no leader after {limit:?}: {}", names.join(", ")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Grows a topic to at least `total` partitions (a job's checkpoint topic, to one partition per
/// task); a topic already that large, or grown by another worker meanwhile, is left as it is.
/// Returns once the partitions added are served (`wait_for_leaders`).
pub fn grow_topic(client: &ClientConfig, topic: &str, partitions_now: i32, total: i32) -> Result<(), String> {
    if partitions_now >= total {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> =
        client.create().map_err(|e| format!("cannot create a Kafka admin client: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    let np = rdkafka::admin::NewPartitions::new(topic, total as usize);
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results =
        rt.block_on(admin.create_partitions([&np], &opts)).map_err(|e| format!("adding partitions to {topic}: {e}"))?;
    for r in results {
        match r {
            Ok(_) => {}
            // Another worker grew it first.
            Err((_, RDKafkaErrorCode::InvalidPartitions)) => {}
            Err((t, code)) => return Err(format!("adding partitions to {t}: {code}")),
        }
    }
    wait_for_leaders(client, &[(topic, total as usize)], Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use rdkafka::admin::{ConfigEntry, ConfigSource};

    fn entry(name: &str, value: &str) -> ConfigEntry {
        ConfigEntry {
            name: name.into(),
            value: Some(value.into()),
            source: ConfigSource::DynamicTopic,
            is_read_only: false,
            is_default: false,
            is_sensitive: false,
        }
    }

    #[test]
    fn altering_keeps_configs_set_outside_streamctl_and_resets_unwanted_managed_ones() {
        let current = [entry("retention.ms", "1000"), entry("cleanup.policy", "compact")];
        let whole = super::with_managed_configs(&current, &Default::default()).unwrap();
        assert_eq!(whole.into_iter().collect::<Vec<_>>(), [("retention.ms".to_string(), "1000".to_string())]);
        let wanted = [("cleanup.policy".to_string(), "compact".to_string())].into();
        let whole = super::with_managed_configs(&[entry("retention.ms", "1000")], &wanted).unwrap();
        assert_eq!(whole.len(), 2);
        let hidden = ConfigEntry { value: None, is_sensitive: true, ..entry("x", "") };
        assert!(super::with_managed_configs(&[hidden], &wanted).unwrap_err().contains("config x is hidden"));
    }

    /// Managed Kafka needs TLS and SASL: librdkafka must be built with OpenSSL (which also brings
    /// SCRAM) and with OAUTHBEARER.
    #[test]
    fn librdkafka_is_built_with_tls_and_sasl() {
        let conf = rdkafka::ClientConfig::new().create_native_config().unwrap();
        let features = conf.get("builtin.features").unwrap();
        for f in ["ssl", "sasl_plain", "sasl_scram", "sasl_oauthbearer"] {
            assert!(features.split(',').any(|x| x == f), "librdkafka lacks {f}: {features}");
        }
    }
}
