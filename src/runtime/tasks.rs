//! A job's tasks: the units of work Kafka's consumer group spreads over workers and threads.
//!
//! A job whose stream input has `n` partitions and whose work is local to a partition (a stateless
//! model, a stream–table join, an aggregation grouped by columns that include the stream's key) is
//! `n` tasks: task `p` reads partition `p` of the stream, and every partition of the tables it joins
//! (each task holds the whole table, like a Kafka Streams global table, so the table need not be
//! co-partitioned with the stream), or only partition `p` of a table joined on the stream's key
//! ([`co_partitioned_table`]). An aggregation grouped by other columns of its one stream is two
//! stages of tasks around a repartition topic ([`super::repartition`]). Any other job is one task
//! reading every partition: it would otherwise split a group over tasks. A task keeps its own state,
//! checkpoint (keys `t<p>/…` in the job's checkpoint topic) and, exactly-once, its own transactional
//! id, so it moves with its partition and restores only its own state.

use crate::compile::repartition::Repartitioning;
use crate::compile::{group_columns, CompiledModel, CompiledProject, OperatorKind};
use crate::graph::NodeId;
use crate::project::config::{KeyFormat, RelationKind};

/// Which task of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskId {
    /// The whole job: every partition of every input (checkpoint keys as before tasks existed).
    Whole,
    /// Partition `p` of the job's streams (and the whole of its tables); in a job with a
    /// repartition topic, partition `p` of that topic (the aggregating stage).
    Partition(i32),
    /// The first stage of a job with a repartition topic: partition `p` of its stream input,
    /// re-keyed by the group columns into the repartition topic.
    Repartition(i32),
}

impl TaskId {
    /// The prefix of the task's keys in the job's checkpoint topic.
    pub fn key_prefix(&self) -> String {
        match self {
            TaskId::Whole => String::new(),
            TaskId::Partition(p) => format!("t{p}/"),
            TaskId::Repartition(p) => format!("r{p}/"),
        }
    }

    /// The task a checkpoint key belongs to (`None`: not a task's key).
    pub fn of_key(key: &[u8]) -> Option<TaskId> {
        let key = std::str::from_utf8(key).ok()?;
        if let Some((p, _)) = key.strip_prefix('r').and_then(|rest| rest.split_once('/')) {
            if let Ok(p) = p.parse() {
                return Some(TaskId::Repartition(p));
            }
        }
        match key.strip_prefix('t').and_then(|rest| rest.split_once('/')) {
            Some((p, _)) => p.parse().ok().map(TaskId::Partition),
            None => Some(TaskId::Whole),
        }
    }

    /// As logs and `status` show it: `all`, `p<partition>`, or `repartition-p<partition>` (the
    /// first stage, which re-keys partition `p` of the input).
    pub fn name(&self) -> String {
        match self {
            TaskId::Whole => "all".to_string(),
            TaskId::Partition(p) => format!("p{p}"),
            TaskId::Repartition(p) => format!("repartition-p{p}"),
        }
    }

    /// The task's transactional id (exactly-once): a new owner's producer fences the old one's.
    pub fn transactional_id(&self, job: &str) -> String {
        match self {
            TaskId::Whole => job.to_string(),
            TaskId::Partition(p) => format!("{job}.t{p}"),
            TaskId::Repartition(p) => format!("{job}.r{p}"),
        }
    }

    /// Whether the task reads `partition` of an input of this kind.
    pub fn reads(&self, kind: RelationKind, partition: i32) -> bool {
        match self {
            TaskId::Whole => true,
            TaskId::Partition(p) | TaskId::Repartition(p) => kind == RelationKind::Table || partition == *p,
        }
    }
}

/// How a job is cut into tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The input whose partitions the consumer group assigns: partition `p` of it is task `p`
    /// (one task: partition 0 of it carries the whole job).
    pub driving_topic: String,
    /// Tasks per partition of the driving topic; `None`: one task.
    pub partitions: Option<i32>,
    /// Why the job is one task, when it has more than one partition.
    pub whole_because: Option<String>,
    /// The repartition topic and its partition count, when the job runs in two stages: then
    /// `partitions` counts the driving topic's partitions (the first stage's tasks, one each), and
    /// the aggregating stage is a task per partition of the repartition topic.
    pub repartition: Option<(String, i32)>,
}

impl Layout {
    pub fn tasks(&self) -> Vec<TaskId> {
        match (self.partitions, &self.repartition) {
            (Some(n), Some((_, r))) => (0..n).map(TaskId::Repartition).chain((0..*r).map(TaskId::Partition)).collect(),
            (Some(n), None) => (0..n).map(TaskId::Partition).collect(),
            (None, _) => vec![TaskId::Whole],
        }
    }

    /// The topics whose partitions the group hands over: the driving topic, and the repartition
    /// topic.
    pub fn group_topics(&self) -> Vec<&str> {
        std::iter::once(self.driving_topic.as_str()).chain(self.repartition.as_ref().map(|(t, _)| t.as_str())).collect()
    }

    /// The task the group hands over with this partition of `topic` (one of
    /// [`group_topics`](Self::group_topics)).
    pub fn task_of(&self, topic: &str, partition: i32) -> Option<TaskId> {
        match &self.repartition {
            Some((t, n)) if t == topic => return (partition < *n).then_some(TaskId::Partition(partition)),
            Some(_) => {
                return match self.partitions {
                    Some(n) if partition < n => Some(TaskId::Repartition(partition)),
                    _ => None,
                }
            }
            None => {}
        }
        match self.partitions {
            Some(n) if partition < n => Some(TaskId::Partition(partition)),
            Some(_) => None,
            None => (partition == 0).then_some(TaskId::Whole),
        }
    }
}

/// How `model` is cut into tasks, given its inputs' partition counts (`partitions_of(topic)`).
pub fn layout(cp: &CompiledProject, model: &CompiledModel, partitions_of: &dyn Fn(&str) -> Option<i32>) -> Layout {
    let inputs: Vec<(String, RelationKind, Vec<String>)> =
        model.inputs.iter().filter_map(|i| input_info(cp, i)).collect();
    let streams: Vec<&(String, RelationKind, Vec<String>)> =
        inputs.iter().filter(|(_, k, _)| *k == RelationKind::Stream).collect();
    let driving_topic = streams.first().copied().or(inputs.first()).map(|(t, _, _)| t.clone()).unwrap_or_default();
    let whole = |why: Option<String>| Layout {
        driving_topic: driving_topic.clone(),
        partitions: None,
        whole_because: why,
        repartition: None,
    };
    let Some(n) = partitions_of(&driving_topic) else { return whole(None) };
    if n <= 1 {
        return whole(None);
    }
    let [(topic, _, key)] = streams.as_slice() else {
        return whole(Some(match streams.len() {
            0 => "it reads no stream".to_string(),
            _ => "it reads more than one stream".to_string(),
        }));
    };
    let mut repartition = None;
    if matches!(model.operator, OperatorKind::Aggregate | OperatorKind::WindowedAggregate) {
        match &model.resolved.repartition {
            Repartitioning::Topic(r) => {
                // As many partitions as the input: one it lacks would be found missing at start.
                let n = partitions_of(&r.topic).unwrap_or(0);
                if n < 1 {
                    return whole(Some(format!("its repartition topic {} does not exist (run apply)", r.topic)));
                }
                repartition = Some((r.topic.clone(), n));
            }
            Repartitioning::Impossible(why) => return whole(Some(why.clone())),
            Repartitioning::NotNeeded => {}
        }
    }
    if matches!(model.operator, OperatorKind::Aggregate | OperatorKind::WindowedAggregate) && repartition.is_none() {
        let groups = group_columns(&model.plan).unwrap_or_default();
        let grouped_by_key = !key.is_empty() && key.iter().all(|k| groups.iter().any(|g| g.eq_ignore_ascii_case(k)));
        if !grouped_by_key {
            let key = if key.is_empty() { "none declared".to_string() } else { key.join(", ") };
            return whole(Some(format!(
                "its GROUP BY ({}) does not include the key of {topic} ({key}), so a group's rows may be in \
                 any partition",
                groups.join(", ")
            )));
        }
    }
    Layout { driving_topic, partitions: Some(n), whole_because: None, repartition }
}

/// The table of `model`'s stream–table join that a task reads partition by partition (partition
/// `p` of the table with partition `p` of the stream) instead of whole, if it is one joined on its one
/// key column to the stream's one declared key column, both keys written alike (the same key
/// format, not Avro, whose bytes carry a schema id), so that a key's rows are in the same partition
/// of both topics when both are partitioned by the key as Java clients do (murmur2). The worker
/// reads them so only when both topics have as many partitions, and checks every record's
/// partition against its key.
pub(crate) fn co_partitioned_table(cp: &CompiledProject, model: &CompiledModel) -> Option<NodeId> {
    use crate::compile::streaming::job::{JoinNode, Node};
    use datafusion::physical_expr::expressions::Column;
    fn join_of(node: &Node) -> Option<&JoinNode> {
        match node {
            Node::Join(j) => Some(j),
            Node::Map { input, .. } => join_of(input),
            Node::Aggregate(a) => join_of(&a.input),
            Node::Scan { .. } => None,
        }
    }
    fn scanned(node: &Node) -> Option<&NodeId> {
        match node {
            Node::Scan { input, .. } => Some(input),
            Node::Map { input, .. } => scanned(input),
            Node::Join(_) | Node::Aggregate(_) => None,
        }
    }
    let key_of = |id: &NodeId| -> Option<(String, KeyFormat)> {
        let (key, format) = match id {
            NodeId::Source(s) => cp.sources.get(s).map(|s| (&s.key, s.decl.table.key_format))?,
            NodeId::Model(m) => cp.models.get(m).map(|m| (&m.key, m.config.key_format.unwrap_or_default()))?,
            NodeId::Sink(_) | NodeId::Connector(_) => return None,
        };
        match key.as_slice() {
            [k] if format != KeyFormat::Avro => Some((k.clone(), format)),
            _ => None,
        }
    };
    let j = join_of(&model.job.root)?;
    let (stream, table) = (scanned(&j.stream)?, scanned(&j.table)?);
    let ((stream_key, stream_format), (table_key, table_format)) = (key_of(stream)?, key_of(table)?);
    let name = |e: &std::sync::Arc<dyn datafusion::physical_expr::PhysicalExpr>| {
        let any: &dyn std::any::Any = e.as_ref();
        any.downcast_ref::<Column>().map(|c| c.name().to_string())
    };
    let on_keys = j.stream_keys.iter().zip(&j.table_keys).any(|(s, t)| {
        name(s).is_some_and(|s| s.eq_ignore_ascii_case(&stream_key))
            && name(t).is_some_and(|t| t.eq_ignore_ascii_case(&table_key))
    });
    (on_keys && stream_format == table_format).then(|| table.clone())
}

/// An input's topic, kind and key columns.
pub(crate) fn input_info(cp: &CompiledProject, id: &NodeId) -> Option<(String, RelationKind, Vec<String>)> {
    match id {
        NodeId::Source(s) => {
            let s = cp.sources.get(s)?;
            Some((s.decl.table.topic.clone(), s.decl.table.kind, s.key.clone()))
        }
        NodeId::Model(m) => {
            let m = cp.models.get(m)?;
            Some((m.topic.clone(), m.kind, m.key.clone()))
        }
        NodeId::Sink(_) | NodeId::Connector(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_keys_and_names() {
        assert_eq!(TaskId::Partition(3).key_prefix(), "t3/");
        assert_eq!(TaskId::Whole.key_prefix(), "");
        assert_eq!(TaskId::of_key(b"t12/manifest"), Some(TaskId::Partition(12)));
        assert_eq!(TaskId::of_key(b"manifest"), Some(TaskId::Whole));
        assert_eq!(TaskId::of_key(b"chunk/0/1"), Some(TaskId::Whole));
        assert_eq!(TaskId::Partition(2).transactional_id("_streamctl.p.m"), "_streamctl.p.m.t2");
        assert!(TaskId::Partition(1).reads(RelationKind::Table, 0));
        assert!(!TaskId::Partition(1).reads(RelationKind::Stream, 0));
        let l = Layout { driving_topic: "t".into(), partitions: Some(4), whole_because: None, repartition: None };
        assert_eq!(l.task_of("t", 3), Some(TaskId::Partition(3)));
        assert_eq!(l.task_of("t", 4), None);
        let w = Layout { driving_topic: "t".into(), partitions: None, whole_because: None, repartition: None };
        assert_eq!(w.task_of("t", 0), Some(TaskId::Whole));
        assert_eq!(w.task_of("t", 1), None);
        let r = Layout { repartition: Some(("r".into(), 3)), ..l };
        assert_eq!(r.task_of("t", 3), Some(TaskId::Repartition(3)));
        assert_eq!(r.task_of("r", 2), Some(TaskId::Partition(2)));
        assert_eq!(r.task_of("r", 3), None);
        assert_eq!(r.tasks().len(), 7);
        assert_eq!(r.group_topics(), ["t", "r"]);
        assert_eq!(TaskId::of_key(b"r5/manifest"), Some(TaskId::Repartition(5)));
        assert_eq!(TaskId::Repartition(5).key_prefix(), "r5/");
        assert_eq!(TaskId::Repartition(1).name(), "repartition-p1");
    }
}
