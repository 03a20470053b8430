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
        let consumer: BaseConsumer = self.client_config().create().map_err(|e| format!("cannot create a Kafka client: {e}"))?;
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
                let results = admin.create_topics(new.iter(), &opts).await.map_err(|e| format!("creating topics: {e}"))?;
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
