//! `status`: what is deployed, which worker runs each job, how far behind it is, how fast it goes.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::connectors::lease::now_ms;
use crate::deploy::control::DeployedState;
use crate::runtime::checkpoint::{read_checkpoint_summary, CheckpointManifest, Throughput, Totals};

#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    pub model: String,
    pub generation: u64,
    pub applied_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// The workers holding the job's tasks (`<host>-<pid>-<start>/thread-<n>`), comma-separated.
    pub worker: Option<String>,
    /// Each task's holder (as it last claimed the task; `None`: released), by task.
    pub tasks: Vec<TaskStatus>,
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

/// Who holds one task of a job.
#[derive(Debug, Clone, Serialize)]
pub struct TaskStatus {
    /// `all` (the job is one task), or `p<partition>`.
    pub task: String,
    pub worker: Option<String>,
}

pub fn jobs(client: &ClientConfig, state: &DeployedState) -> Vec<JobStatus> {
    let mut out = Vec::new();
    for (model, job) in &state.jobs {
        let summary = read_checkpoint_summary(client, &job.spec.checkpoint_topic).ok();
        let now = now_ms();
        let tasks: Vec<TaskStatus> = summary
            .iter()
            .flat_map(|s| s.leases.iter())
            .map(|(t, l)| TaskStatus { task: t.name(), worker: (l.expires_ms >= now).then(|| l.holder.clone()) })
            .collect();
        let mut holders: Vec<String> = tasks.iter().filter_map(|t| t.worker.clone()).collect();
        holders.sort();
        holders.dedup();
        let worker = (!holders.is_empty()).then(|| holders.join(", "));
        let manifests: Vec<&CheckpointManifest> =
            summary.as_ref().map(|s| s.manifests.iter().map(|(_, m)| m).collect()).unwrap_or_default();
        let totals = (!manifests.is_empty()).then(|| {
            manifests.iter().fold(Totals::default(), |t, m| Totals {
                records_in: t.records_in + m.totals.records_in,
                records_out: t.records_out + m.totals.records_out,
                bad_records: t.bad_records + m.totals.bad_records,
                dead_lettered: t.dead_lettered + m.totals.dead_lettered,
                late: t.late + m.totals.late,
            })
        });
        out.push(JobStatus {
            model: model.clone(),
            generation: job.meta.generation,
            applied_at: job.meta.applied_at.clone(),
            git_commit: job.meta.git_commit.clone(),
            worker,
            tasks,
            checkpoint_current: (!manifests.is_empty())
                .then(|| manifests.iter().all(|m| m.semantic_hash == job.spec.semantic_hash)),
            lag: lag(client, &job.spec.consumer_group, &job.spec.input_topics).ok(),
            totals,
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
