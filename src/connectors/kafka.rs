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
    /// Tables, changelogs and checkpoints are compacted.
    pub compacted: bool,
}

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
        let consumer: BaseConsumer =
            self.client_config().create().map_err(|e| format!("cannot create a Kafka client: {e}"))?;
        consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .map(|_| ())
            .map_err(|e| format!("cannot reach Kafka at {servers}: {e}"))
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
                            nt
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
                Ok(())
            }
        }
    }
}

/// Admin operations beyond creating topics. The embedded broker starts empty in every process,
/// so it only ever needs creation.
impl Cluster<'_> {
    fn admin(&self) -> Result<AdminClient<DefaultClientContext>, String> {
        match self {
            Cluster::Embedded(_) => Err("the embedded broker supports creating topics only".into()),
            Cluster::Kafka { .. } => {
                self.client_config().create().map_err(|e| format!("cannot create a Kafka admin client: {e}"))
            }
        }
    }

    /// Grows a topic to `total` partitions.
    pub async fn create_partitions(&self, topic: &str, total: i32) -> Result<(), String> {
        let admin = self.admin()?;
        let np = rdkafka::admin::NewPartitions::new(topic, total as usize);
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for r in
            admin.create_partitions([&np], &opts).await.map_err(|e| format!("adding partitions to {topic}: {e}"))?
        {
            r.map_err(|(t, code)| format!("adding partitions to {t}: {code}"))?;
        }
        Ok(())
    }

    pub async fn alter_configs(
        &self,
        topic: &str,
        configs: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), String> {
        let admin = self.admin()?;
        let mut ac = rdkafka::admin::AlterConfig::new(rdkafka::admin::ResourceSpecifier::Topic(topic));
        for (k, v) in configs {
            ac = ac.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
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
