//! A model's configuration as deploy and the runtime use it: defaults applied, timestamps
//! parsed, cluster-side names given, decided once when the model compiles.

use std::collections::BTreeMap;

use super::names::{self, JobTopic, TopicRole};
use super::{CompiledModel, CompiledSource, OperatorKind};
use crate::graph::NodeId;
use crate::project::config::{Guarantee, OnError, RelationKind, ReplayFrom, ReplayPolicy};

/// Where a job starts reading when it is created or its state must be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayStart {
    Earliest,
    Latest,
    /// The first offsets at or after this time; `rfc3339` is the timestamp as configured.
    At {
        ms: i64,
        rfc3339: String,
    },
}

impl ReplayStart {
    /// `None` when the configured timestamp is not RFC 3339.
    pub(crate) fn of(policy: &Option<ReplayPolicy>) -> Option<ReplayStart> {
        Some(match policy {
            None | Some(ReplayPolicy::Named(ReplayFrom::Earliest)) => ReplayStart::Earliest,
            Some(ReplayPolicy::Named(ReplayFrom::Latest)) => ReplayStart::Latest,
            Some(ReplayPolicy::Timestamp { timestamp }) => ReplayStart::At {
                ms: chrono::DateTime::parse_from_rfc3339(timestamp).ok()?.timestamp_millis(),
                rfc3339: timestamp.clone(),
            },
        })
    }

    /// As configured: `earliest`, `latest`, or the timestamp.
    pub fn text(&self) -> &str {
        match self {
            ReplayStart::Earliest => "earliest",
            ReplayStart::Latest => "latest",
            ReplayStart::At { rfc3339, .. } => rfc3339,
        }
    }
}

/// A model's job settings, with nothing left to default.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedConfig {
    /// `enabled: false` keeps the model in the project but deploys and runs no job.
    pub enabled: bool,
    /// Partitions of the output topic.
    pub partitions: i32,
    pub replay: ReplayStart,
    /// How late the model's input events may be: the largest allowed lateness of its inputs
    /// (a model's output keeps its inputs' disorder).
    pub allowed_lateness_ms: i64,
    pub consumer_group: String,
    pub checkpoint_topic: String,
    /// Where late records of this model's output go when another model reads it.
    pub dead_letter_topic: String,
    /// Every topic the job writes, each once: its output, its checkpoint topic, the dead-letter
    /// topics of the sources it reads with `on_error: dead_letter`.
    pub topics: Vec<JobTopic>,
    /// The model's own `guarantee`; `None` leaves it to the target ([`Self::guarantee_on`]).
    pub guarantee: Option<Guarantee>,
    /// Kafka transactional id of the job's producer (exactly-once).
    pub transactional_id: String,
    /// Whether its GROUP BY goes through a repartition topic (set once the model has compiled).
    pub repartition: super::repartition::Repartitioning,
}

impl ResolvedConfig {
    /// The job's guarantee on a target whose own setting is `target`.
    pub fn guarantee_on(&self, target: Guarantee) -> Guarantee {
        self.guarantee.unwrap_or(target)
    }
}

/// The model's output, as its settings depend on it (`partitions` checked to be at least 1).
pub(crate) struct Output<'a> {
    pub name: &'a str,
    pub topic: &'a str,
    pub kind: RelationKind,
    pub partitions: i32,
    pub replay: ReplayStart,
    pub enabled: Option<bool>,
    pub guarantee: Option<Guarantee>,
    pub operator: OperatorKind,
}

/// The model's inputs, as its settings depend on them.
pub(crate) struct Inputs<'a> {
    pub ids: &'a [NodeId],
    pub sources: &'a BTreeMap<String, CompiledSource>,
    pub models: &'a BTreeMap<String, CompiledModel>,
}

pub(crate) fn resolve(project: &str, out: Output<'_>, inputs: Inputs<'_>) -> ResolvedConfig {
    let allowed_lateness_ms = inputs
        .ids
        .iter()
        .map(|i| match i {
            NodeId::Source(n) => inputs.sources.get(n).map_or(0, |s| s.allowed_lateness_ms),
            NodeId::Model(n) => inputs.models.get(n).map_or(0, |m| m.resolved.allowed_lateness_ms),
            NodeId::Sink(_) | NodeId::Connector(_) => 0,
        })
        .max()
        .unwrap_or(0);
    let checkpoint_topic = names::checkpoint_topic(project, out.name);
    let mut topics = vec![
        JobTopic {
            name: out.topic.to_string(),
            role: TopicRole::Output,
            partitions: out.partitions,
            compacted: out.kind == RelationKind::Table,
            owner: out.name.to_string(),
        },
        JobTopic {
            name: checkpoint_topic.clone(),
            role: TopicRole::Checkpoint,
            partitions: 1,
            compacted: true,
            owner: out.name.to_string(),
        },
    ];
    // An input's dead-letter topic receives its bad records (`on_error: dead_letter`) and, for a
    // windowed aggregate, its late records (each job's own), so the job creates it then.
    let late_records = out.operator == OperatorKind::WindowedAggregate;
    for id in inputs.ids {
        let (owner, dead_letter_topic) = match id {
            NodeId::Source(n) => match inputs.sources.get(n) {
                Some(s) if late_records || s.decl.table.on_error == OnError::DeadLetter => (n, &s.dead_letter_topic),
                _ => continue,
            },
            NodeId::Model(n) => match inputs.models.get(n) {
                Some(m) if late_records => (n, &m.resolved.dead_letter_topic),
                _ => continue,
            },
            NodeId::Sink(_) | NodeId::Connector(_) => continue,
        };
        if !topics.iter().any(|t| &t.name == dead_letter_topic) {
            topics.push(JobTopic {
                name: dead_letter_topic.clone(),
                role: TopicRole::DeadLetter,
                partitions: 1,
                compacted: false,
                owner: owner.clone(),
            });
        }
    }
    ResolvedConfig {
        enabled: out.enabled != Some(false),
        partitions: out.partitions,
        replay: out.replay,
        allowed_lateness_ms,
        consumer_group: names::consumer_group(project, out.name),
        checkpoint_topic,
        dead_letter_topic: names::dead_letter_topic(None, out.topic),
        topics,
        guarantee: out.guarantee,
        transactional_id: names::transactional_id(project, out.name, None),
        repartition: Default::default(),
    }
}
