//! The control topic: what is deployed on a target, recorded in the cluster itself. A compacted
//! topic (default `_streamctl_deployments`) with one record per deployed object, keyed
//! `<project>/<kind>/<name>`, plus the project's apply lock (a lease: the first claim of an
//! epoch in the log wins).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::desired::{hex, Bundle, ConnectorSpec, JobSpec, SchemaSpec, TopicSpec};
use crate::connectors::lease::{now_ms, Lease, LeaseBook};

/// Who applied an object, when, from which commit, as part of which generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Meta {
    pub generation: u64,
    pub applied_at: String,
    pub applied_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeployedTopic {
    pub spec: TopicSpec,
    pub meta: Meta,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeployedSchema {
    pub spec: SchemaSpec,
    pub id: i32,
    pub version: i32,
    pub meta: Meta,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeployedJob {
    pub spec: JobSpec,
    pub meta: Meta,
}

/// A connector streamctl created on a Kafka Connect cluster (its config with `env_var()`s
/// unrendered: no secret is recorded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DeployedConnector {
    pub spec: ConnectorSpec,
    pub meta: Meta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentStatus {
    /// An apply started this generation and has not finished (it may have failed midway:
    /// every object record written so far is accurate, and the next plan shows the rest).
    Applying,
    Applied,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Deployment {
    pub status: DeploymentStatus,
    pub meta: Meta,
}

/// Everything recorded for one project on a target.
#[derive(Debug, Clone, Default)]
pub struct DeployedState {
    pub deployment: Option<Deployment>,
    pub topics: BTreeMap<String, DeployedTopic>,
    pub schemas: BTreeMap<String, DeployedSchema>,
    pub jobs: BTreeMap<String, DeployedJob>,
    pub connectors: BTreeMap<String, DeployedConnector>,
    pub bundles: BTreeMap<u64, Bundle>,
    pub lock: LeaseBook,
    /// Records that could not be read (written by a newer streamctl, or damaged).
    pub unreadable: Vec<String>,
}

impl DeployedState {
    pub fn generation(&self) -> u64 {
        self.deployment.as_ref().map_or(0, |d| d.meta.generation)
    }

    pub fn is_empty(&self) -> bool {
        self.topics.is_empty() && self.schemas.is_empty() && self.jobs.is_empty() && self.connectors.is_empty()
    }

    /// Changes whenever any deployed object does: a saved plan made against another
    /// fingerprint is stale.
    pub fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        let mut put = |k: &str, v: String| {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
            h.update([0]);
        };
        put("generation", self.generation().to_string());
        for (k, v) in &self.topics {
            put(k, serde_json::to_string(v).unwrap_or_default());
        }
        for (k, v) in &self.schemas {
            put(k, serde_json::to_string(v).unwrap_or_default());
        }
        for (k, v) in &self.jobs {
            put(k, serde_json::to_string(v).unwrap_or_default());
        }
        for (k, v) in &self.connectors {
            put(&format!("connector/{k}"), serde_json::to_string(v).unwrap_or_default());
        }
        hex(&h.finalize()[..8])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control topic {topic}: {message}")]
    Kafka { topic: String, message: String },
    #[error("another apply holds the lock of project `{project}` on this target: {holder}, for {seconds} more s (it is released when that apply ends)")]
    Locked { project: String, holder: String, seconds: i64 },
}

/// How long an apply lock lasts if its holder dies without releasing it.
pub const LOCK_TTL_MS: i64 = 120_000;

pub struct ControlTopic {
    client: ClientConfig,
    pub topic: String,
    project: String,
    /// Made at the first write: a `run` only reads the control topic, and a producer's polling
    /// thread woke ten times a second for the whole run, spinning on the clock at each wake.
    producer: std::sync::OnceLock<FutureProducer>,
    rt: tokio::runtime::Runtime,
}

impl ControlTopic {
    pub fn new(client: &ClientConfig, topic: &str, project: &str) -> Result<ControlTopic, ControlError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ControlError::Kafka { topic: topic.into(), message: e.to_string() })?;
        let producer = std::sync::OnceLock::new();
        Ok(ControlTopic { client: client.clone(), topic: topic.into(), project: project.into(), producer, rt })
    }

    fn producer(&self) -> Result<&FutureProducer, ControlError> {
        if let Some(p) = self.producer.get() {
            return Ok(p);
        }
        let producer: FutureProducer = self
            .client
            .clone()
            .set("message.max.bytes", "8000000")
            .set("compression.type", "gzip")
            // Every record is waited for before the next is written: lingering for company
            // (librdkafka's default 5 ms) only delays each one.
            .set("linger.ms", "0")
            .create()
            .map_err(|e| self.err(format!("creating a producer: {e}")))?;
        Ok(self.producer.get_or_init(|| producer))
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    fn err(&self, message: impl Into<String>) -> ControlError {
        ControlError::Kafka { topic: self.topic.clone(), message: message.into() }
    }

    fn key(&self, kind: &str, name: &str) -> String {
        if name.is_empty() {
            format!("{}/{kind}", self.project)
        } else {
            format!("{}/{kind}/{name}", self.project)
        }
    }

    /// Reads the whole topic: the latest record of every key of this project.
    pub fn read(&self) -> Result<DeployedState, ControlError> {
        let mut state = DeployedState::default();
        let consumer: BaseConsumer = self
            .client
            .clone()
            .set("group.id", "streamctl-control-reader")
            .set("enable.auto.commit", "false")
            .set("fetch.message.max.bytes", "8000000")
            // The end of the partition is reported the moment a fetch reaches it, instead of
            // being inferred from a poll that waited in vain; and a fetch at the end returns at
            // once instead of the broker holding it 500 ms for records that will not come.
            // (A short-lived reader of a small topic: the extra fetches cost nothing.)
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "10")
            // Should the start move (retention) between reading it and fetching, read from the new start.
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(|e| self.err(format!("creating a consumer: {e}")))?;
        let _closed = crate::connectors::consumer::ClosedOnDrop(&consumer);
        let md = consumer
            .fetch_metadata(Some(&self.topic), Duration::from_secs(10))
            .map_err(|e| self.err(format!("metadata: {e}")))?;
        let exists =
            md.topics().iter().any(|t| t.name() == self.topic && t.error().is_none() && !t.partitions().is_empty());
        if !exists {
            return Ok(state);
        }
        let (low, high) = consumer
            .fetch_watermarks(&self.topic, 0, Duration::from_secs(10))
            .map_err(|e| self.err(format!("offsets: {e}")))?;
        // A number, not `BEGINNING`: librdkafka looks a logical offset up only after a 500 ms
        // retry when it does not know the partition's leader yet.
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.topic, 0, Offset::Offset(low)).map_err(|e| self.err(e.to_string()))?;
        consumer.assign(&tpl).map_err(|e| self.err(e.to_string()))?;
        let prefix = format!("{}/", self.project);
        let mut latest: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
        let mut next = 0i64;
        let deadline = Instant::now() + Duration::from_secs(30);
        // Read to the end offset, then until the broker says the partition has nothing more
        // (or, should that word not come, a poll finds nothing: some brokers report end offsets
        // loosely).
        loop {
            if Instant::now() > deadline {
                return Err(self.err("timed out reading the control topic"));
            }
            match consumer.poll(Duration::from_millis(if next >= high { 300 } else { 1000 })) {
                Some(Ok(m)) => {
                    next = m.offset() + 1;
                    let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else { continue };
                    let Some(rest) = key.strip_prefix(&prefix) else { continue };
                    if rest == "lock" {
                        if let Some(v) = m.payload() {
                            state.lock.observe(v);
                        }
                    } else {
                        latest.insert(rest.to_string(), m.payload().map(<[u8]>::to_vec));
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) if next >= high => break,
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => return Err(self.err(format!("reading: {e}"))),
                None if next >= high => break,
                None => {}
            }
        }
        for (key, value) in latest {
            let Some(value) = value else { continue };
            let (kind, name) = key.split_once('/').unwrap_or((key.as_str(), ""));
            fn parse<T: DeserializeOwned>(v: &[u8], key: &str, bad: &mut Vec<String>) -> Option<T> {
                serde_json::from_slice(v).map_err(|e| bad.push(format!("{key}: {e}"))).ok()
            }
            let bad = &mut state.unreadable;
            match kind {
                "deployment" => state.deployment = parse(&value, &key, bad),
                "topic" => {
                    if let Some(t) = parse(&value, &key, bad) {
                        state.topics.insert(name.to_string(), t);
                    }
                }
                "schema" => {
                    if let Some(s) = parse(&value, &key, bad) {
                        state.schemas.insert(name.to_string(), s);
                    }
                }
                "job" => {
                    if let Some(j) = parse(&value, &key, bad) {
                        state.jobs.insert(name.to_string(), j);
                    }
                }
                "connector" => {
                    if let Some(c) = parse(&value, &key, bad) {
                        state.connectors.insert(name.to_string(), c);
                    }
                }
                "bundle" => {
                    if let (Ok(g), Some(b)) = (name.parse::<u64>(), parse(&value, &key, bad)) {
                        state.bundles.insert(g, b);
                    }
                }
                _ => bad.push(format!("{key}: unknown kind of record")),
            }
        }
        Ok(state)
    }

    /// Writes (or with `None` deletes) one record and waits until the broker has it.
    pub fn put<T: Serialize>(&self, kind: &str, name: &str, value: Option<&T>) -> Result<(), ControlError> {
        let key = self.key(kind, name);
        let payload = match value {
            Some(v) => Some(serde_json::to_vec(v).map_err(|e| self.err(e.to_string()))?),
            None => None,
        };
        let mut rec: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic).key(key.as_str()).partition(0);
        if let Some(p) = &payload {
            rec = rec.payload(p.as_slice());
        }
        self.rt
            .block_on(self.producer()?.send(rec, Duration::from_secs(30)))
            .map(|_| ())
            .map_err(|(e, _)| self.err(format!("writing {key}: {e}")))
    }

    /// Takes the project's apply lock on this target, or says who holds it.
    pub fn lock(&self, holder: &str) -> Result<ApplyLock<'_>, ControlError> {
        let state = self.read()?;
        let now = now_ms();
        if !state.lock.is_free(now) {
            return Err(self.locked(&state.lock, now));
        }
        let epoch = state.lock.next_epoch();
        self.put("lock", "", Some(&Lease { holder: holder.into(), epoch, expires_ms: now + LOCK_TTL_MS }))?;
        // The claim was acknowledged, so the next read normally has it; a broker that reports
        // end offsets loosely gets a few seconds.
        for _ in 0..80 {
            let state = self.read()?;
            match state.lock.winner(epoch) {
                Some(w) if w == holder => return Ok(ApplyLock { control: self, holder: holder.into(), epoch }),
                Some(_) => return Err(self.locked(&state.lock, now_ms())),
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        Err(self.err("the lock claim did not come back from the broker"))
    }

    fn locked(&self, book: &LeaseBook, now: i64) -> ControlError {
        let (holder, expires) = book.current().map(|l| (l.holder.clone(), l.expires_ms)).unwrap_or_default();
        ControlError::Locked { project: self.project.clone(), holder, seconds: ((expires - now) / 1000).max(0) }
    }
}

/// Held while an apply runs; released when dropped.
pub struct ApplyLock<'a> {
    control: &'a ControlTopic,
    holder: String,
    epoch: u64,
}

impl Drop for ApplyLock<'_> {
    fn drop(&mut self) {
        let _ = self.control.put(
            "lock",
            "",
            Some(&Lease { holder: self.holder.clone(), epoch: self.epoch, expires_ms: 0 }),
        );
    }
}

/// The commit the project is at, `-dirty` when it has uncommitted changes; None outside git.
pub fn git_commit(root: &std::path::Path) -> Option<String> {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let head = run(&["rev-parse", "--short=12", "HEAD"])?;
    let dirty = run(&["status", "--porcelain", "--", "."]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

/// `user@host`, for the records and the lock.
pub fn whoami() -> String {
    let user = std::env::var("USER").or_else(|_| std::env::var("USERNAME")).unwrap_or_else(|_| "someone".into());
    let host = crate::connectors::lease::hostname().unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}
