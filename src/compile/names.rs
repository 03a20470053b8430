//! Every name streamctl gives things on the cluster, and the topics each job needs. Deploy (which
//! creates them) and the runtime (which uses them) both read them from here, so the two cannot
//! disagree.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The consumer group a model's job commits its offsets to (for monitoring: the checkpoint holds
/// the offsets the job resumes from).
pub fn consumer_group(project: &str, model: &str) -> String {
    format!("streamctl.{project}.{model}")
}

/// The consumer group a native sink commits the offsets it has delivered to.
pub fn sink_consumer_group(project: &str, sink: &str) -> String {
    format!("streamctl.{project}.sink.{sink}")
}

/// The compacted topic holding a model's job state, checkpoints and lease.
pub fn checkpoint_topic(project: &str, model: &str) -> String {
    format!("_streamctl.{project}.{model}.checkpoints")
}

/// The transactional id of a model's job producer (exactly-once). One per job: a new owner's
/// producer fences the previous owner's. `task` (a partition, once jobs split into tasks) gives
/// each task its own id.
pub fn transactional_id(project: &str, model: &str, task: Option<i32>) -> String {
    match task {
        None => format!("_streamctl.{project}.{model}"),
        Some(t) => format!("_streamctl.{project}.{model}.{t}"),
    }
}

/// Where the undecodable and late records of a relation go: the configured topic, else
/// `<topic>.dlq`.
pub fn dead_letter_topic(configured: Option<&str>, topic: &str) -> String {
    match configured {
        Some(t) => t.to_string(),
        None => format!("{topic}.dlq"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TopicRole {
    /// A source's topic (created only on the embedded target, where it receives sample data).
    Source,
    /// A model's output.
    Output,
    /// A job's state and lease.
    Checkpoint,
    /// Undecodable and late records of a source.
    DeadLetter,
}

/// A topic a job writes, as it must be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTopic {
    pub name: String,
    pub role: TopicRole,
    pub partitions: i32,
    pub compacted: bool,
    /// The node it belongs to: the model, or the source whose dead letters it holds.
    pub owner: String,
}
