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

/// The topic a model's `GROUP BY` on columns other than its input's key goes through: its input's
/// records keyed by the group columns, so that every group lives in one partition (one task).
pub fn repartition_topic(project: &str, model: &str) -> String {
    format!("_streamctl.{project}.{model}.repartition")
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

/// Where a native sink with `on_error: dead_letter` puts the records it refuses: the configured
/// topic, else `<model topic>.<sink name>.dlq`.
pub fn sink_dead_letter_topic(configured: Option<&str>, model_topic: &str, sink: &str) -> String {
    match configured {
        Some(t) => t.to_string(),
        None => format!("{model_topic}.{sink}.dlq"),
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
    /// A model's input re-keyed by its GROUP BY columns (internal to the model's job).
    Repartition,
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

/// Puts the target's `topic_prefix` before every topic name streamctl derives: a model's output topic
/// when its `topic:` is not set, every checkpoint topic, and the dead-letter topics not set by
/// `dead_letter_topic:` (the prefix, then the relation's topic, then `.dlq`), and every job's consumer
/// group and transactional id. Topics a project names
/// itself, and the sources' topics, stay as written. The control topic's default takes the prefix where
/// the target is resolved.
pub fn prefix_derived_topics(cp: &mut super::CompiledProject, prefix: &str) {
    if prefix.is_empty() {
        return;
    }
    let mut renamed: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for s in cp.sources.values_mut() {
        if s.decl.table.dead_letter_topic.is_none() {
            let name = format!("{prefix}{}", dead_letter_topic(None, &s.decl.table.topic));
            renamed.insert(std::mem::replace(&mut s.dead_letter_topic, name.clone()), name);
        }
    }
    for m in cp.models.values_mut() {
        let written_topic = m.topic.clone();
        if m.config.topic.is_none() {
            m.topic = format!("{prefix}{written_topic}");
            renamed.insert(written_topic.clone(), m.topic.clone());
        }
        // A sink's default dead-letter topic follows its model's topic.
        for s in cp.project.sinks.iter().filter(|s| s.sink.from == m.name && s.sink.dead_letter_topic.is_none()) {
            renamed.insert(
                sink_dead_letter_topic(None, &written_topic, &s.sink.name),
                sink_dead_letter_topic(None, &m.topic, &s.sink.name),
            );
        }
        let r = &mut m.resolved;
        let checkpoint = format!("{prefix}{}", r.checkpoint_topic);
        renamed.insert(std::mem::replace(&mut r.checkpoint_topic, checkpoint.clone()), checkpoint);
        if let super::repartition::Repartitioning::Topic(rp) = &mut r.repartition {
            let topic = format!("{prefix}{}", rp.topic);
            renamed.insert(std::mem::replace(&mut rp.topic, topic.clone()), topic);
        }
        // Two targets on one cluster never share a job's consumer group (its task group follows)
        // nor its transactional ids (they would fence each other's producers).
        r.consumer_group = format!("{prefix}{}", r.consumer_group);
        r.transactional_id = format!("{prefix}{}", r.transactional_id);
        let dead_letters = format!("{prefix}{}", dead_letter_topic(None, &written_topic));
        renamed.insert(std::mem::replace(&mut r.dead_letter_topic, dead_letters.clone()), dead_letters);
    }
    // Nor a native sink's group: each target's sink delivers every record of its own model's topic.
    for s in cp.sinks.values_mut() {
        s.consumer_group = format!("{prefix}{}", s.consumer_group);
    }
    // Each job's list of the topics it writes names its output, checkpoint and dead-letter topics;
    // a repartition re-keys an upstream model's output, which may be renamed.
    for m in cp.models.values_mut() {
        for t in &mut m.resolved.topics {
            if let Some(new) = renamed.get(&t.name) {
                t.name = new.clone();
            }
        }
        if let super::repartition::Repartitioning::Topic(rp) = &mut m.resolved.repartition {
            if let Some(new) = renamed.get(&rp.input_topic) {
                rp.input_topic = new.clone();
            }
        }
    }
}
