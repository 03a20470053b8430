//! `status`: what is deployed, which worker runs each job, how far behind it is, how fast it goes.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::connectors::lease::now_ms;
use crate::deploy::control::DeployedState;
use crate::runtime::checkpoint::{read_checkpoint_summary, Throughput, Totals};

#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub model: String,
    pub generation: u64,
    pub applied_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// The worker holding the job's lease, if it is alive.
    pub worker: Option<String>,
    /// Whether the last checkpoint comes from the deployed query.
    pub checkpoint_current: Option<bool>,
    /// Records in the inputs not yet processed (end offsets minus the group's committed offsets).
    pub lag: Option<i64>,
    pub totals: Option<Totals>,
    /// Records in and out per second over the last minute, from the job's checkpoints (`None`
    /// when its checkpoint topic cannot be read).
    pub throughput: Option<Throughput>,
    /// `exactly_once` or `at_least_once`, as deployed.
    pub guarantee: &'static str,
}

pub fn jobs(client: &ClientConfig, state: &DeployedState) -> Vec<JobStatus> {
    let mut out = Vec::new();
    for (model, job) in &state.jobs {
        let summary = read_checkpoint_summary(client, &job.spec.checkpoint_topic).ok();
        let now = now_ms();
        let worker =
            summary.as_ref().and_then(|s| s.lease.as_ref()).filter(|l| l.expires_ms >= now).map(|l| l.holder.clone());
        let manifest = summary.as_ref().and_then(|s| s.manifest.as_ref());
        out.push(JobStatus {
            model: model.clone(),
            generation: job.meta.generation,
            applied_at: job.meta.applied_at.clone(),
            git_commit: job.meta.git_commit.clone(),
            worker,
            checkpoint_current: manifest.map(|m| m.semantic_hash == job.spec.semantic_hash),
            lag: lag(client, &job.spec.consumer_group, &job.spec.input_topics).ok(),
            totals: manifest.map(|m| m.totals),
            throughput: summary.as_ref().map(|s| s.throughput),
            guarantee: job.spec.guarantee.word(),
        });
    }
    out
}

/// End offsets minus the group's committed offsets, over every partition of the topics
/// (a partition with no commit counts from its start).
fn lag(client: &ClientConfig, group: &str, topics: &[String]) -> Result<i64, String> {
    let consumer: BaseConsumer =
        client.clone().set("group.id", group).set("enable.auto.commit", "false").create().map_err(|e| e.to_string())?;
    let _closed = crate::connectors::consumer::ClosedOnDrop(&consumer);
    let mut tpl = TopicPartitionList::new();
    let mut ends = Vec::new();
    for t in topics {
        let md = consumer.fetch_metadata(Some(t), Duration::from_secs(10)).map_err(|e| e.to_string())?;
        for mt in md.topics().iter().filter(|mt| mt.name() == t) {
            for p in mt.partitions() {
                let (low, high) =
                    consumer.fetch_watermarks(t, p.id(), Duration::from_secs(10)).map_err(|e| e.to_string())?;
                tpl.add_partition(t, p.id());
                ends.push((t.clone(), p.id(), low, high));
            }
        }
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let mut total = 0;
    for (t, p, low, high) in ends {
        let at = match committed.find_partition(&t, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o.max(low),
            _ => low,
        };
        total += (high - at).max(0);
    }
    Ok(total)
}

/// A deployed Kafka Connect connector as its cluster reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorStatus {
    pub name: String,
    /// `source` or `sink`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub cluster: String,
    pub generation: u64,
    /// `RUNNING`, `PAUSED`, `STOPPED`, `FAILED`, `UNASSIGNED`, `RESTARTING`; null when Connect
    /// could not be asked or has no such connector (`error` says which).
    pub state: Option<String>,
    pub worker: Option<String>,
    pub tasks: Vec<ConnectorTask>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectorTask {
    pub id: i64,
    pub state: String,
    pub worker: String,
    /// A FAILED task's reason: the first line of its trace.
    pub error: Option<String>,
}

/// The state of every connector the project deployed, and of its tasks.
pub fn connectors(connect: &crate::deploy::connect::Connect, state: &DeployedState) -> Vec<ConnectorStatus> {
    let mut out = Vec::new();
    for (name, c) in &state.connectors {
        // A trace might quote a secret of the config: masked when the config renders here.
        let config = connect.rendered(&c.spec).unwrap_or_default();
        let scrub = |t: &str| crate::connect::scrub(t, &config);
        let mut row = ConnectorStatus {
            name: name.clone(),
            kind: c.spec.kind.word(),
            cluster: c.spec.cluster.clone(),
            generation: c.meta.generation,
            state: None,
            worker: None,
            tasks: Vec::new(),
            error: None,
        };
        match connect.client(&c.spec.cluster).and_then(|client| client.status(name)) {
            Ok(Some(s)) => {
                row.state = Some(s.connector.state.clone());
                row.worker = Some(s.connector.worker_id.clone());
                row.error = s.connector.trace_first_line().map(scrub);
                row.tasks = s
                    .tasks
                    .iter()
                    .map(|t| ConnectorTask {
                        id: t.id.unwrap_or_default(),
                        state: t.state.clone(),
                        worker: t.worker_id.clone(),
                        error: t.trace_first_line().map(scrub),
                    })
                    .collect();
            }
            Ok(None) => row.error = Some("not on the Connect cluster (deleted outside streamctl?)".into()),
            Err(e) => row.error = Some(e),
        }
        out.push(row);
    }
    out
}
