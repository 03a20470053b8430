//! Whether a model's aggregation goes through a repartition topic, as ksqlDB's `GROUP BY` on
//! columns other than the key does: a `GROUP BY` whose columns do not include its stream input's
//! key would split a group over the input's partitions (so over tasks). Its job then runs in two
//! stages: the first re-keys each input record by the group columns it traces to (the record's
//! value unchanged) and produces it to `_streamctl.<project>.<model>.repartition`, where Kafka's
//! default partitioner (murmur2 of the key) puts every group in one partition; the second runs
//! the aggregation as a task per partition of that topic.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;

use super::streaming::job::{Node, Step};
use super::{group_columns, names, CompiledModel, CompiledSource, OperatorKind};
use crate::graph::NodeId;
use crate::project::config::RelationKind;

/// A model's repartition topic and what keys it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repartition {
    pub topic: String,
    /// Partitions it is created with: its input's as declared (more than one; the repartition
    /// topic's count on the cluster is what the job uses).
    pub partitions: i32,
    /// The stream input it re-keys, and that input's topic.
    pub input: NodeId,
    pub input_topic: String,
    /// The input's columns (as decoded) the GROUP BY is a function of: the record's new key.
    pub columns: Vec<String>,
}

/// How a model's groups meet its tasks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Repartitioning {
    /// Not an aggregation, or one grouped by its input's key (a group's rows share a partition).
    #[default]
    NotNeeded,
    Topic(Repartition),
    /// The groups cannot be traced to input columns: the job runs as one task, for this reason.
    Impossible(String),
}

/// Decides whether `m` needs a repartition topic (see the module's doc).
pub(crate) fn decide(
    project: &str,
    m: &CompiledModel,
    sources: &BTreeMap<String, CompiledSource>,
    models: &BTreeMap<String, CompiledModel>,
) -> Repartitioning {
    if !matches!(m.operator, OperatorKind::Aggregate | OperatorKind::WindowedAggregate) {
        return Repartitioning::NotNeeded;
    }
    let streams: Vec<(NodeId, String, Vec<String>, i32)> = m
        .inputs
        .iter()
        .filter_map(|i| match i {
            NodeId::Source(s) => sources
                .get(s)
                .filter(|s| s.decl.table.kind == RelationKind::Stream)
                .map(|s| (i.clone(), s.decl.table.topic.clone(), s.key.clone(), s.partitions)),
            NodeId::Model(n) => models
                .get(n)
                .filter(|u| u.kind == RelationKind::Stream)
                .map(|u| (i.clone(), u.topic.clone(), u.key.clone(), u.resolved.partitions)),
            NodeId::Sink(_) | NodeId::Connector(_) => None,
        })
        .collect();
    let [(input, input_topic, key, partitions)] = streams.as_slice() else {
        return Repartitioning::NotNeeded;
    };
    let groups = group_columns(&m.plan).unwrap_or_default();
    if !key.is_empty() && key.iter().all(|k| groups.iter().any(|g| g.eq_ignore_ascii_case(k))) {
        return Repartitioning::NotNeeded;
    }
    if *partitions <= 1 {
        let what = if matches!(input, NodeId::Source(_)) { "the source" } else { "the model" };
        return Repartitioning::Impossible(format!(
            "its GROUP BY ({}) does not include the key of {input_topic}, and {input} declares one partition, so \
             no repartition topic was planned for it: set `partitions:` on {what} to the topic's count and apply",
            groups.join(", ")
        ));
    }
    let columns = traced_group_columns(m, input);
    if columns.is_empty() {
        return Repartitioning::Impossible(format!(
            "its GROUP BY ({}) does not include the key of {input_topic} and has no column read from {input_topic} \
             as it is (only expressions or joined columns), so a group's rows may be in any partition",
            groups.join(", ")
        ));
    }
    Repartitioning::Topic(Repartition {
        topic: names::repartition_topic(project, &m.name),
        partitions: (*partitions).max(1),
        input: input.clone(),
        input_topic: input_topic.clone(),
        columns,
    })
}

/// The group columns that are columns of `input` passed through unchanged (filters and plain
/// renames allowed): a key made of them is a function of the group, so each group's rows get the
/// same key. Window bounds are not among them (a window's rows are in many partitions anyway).
fn traced_group_columns(m: &CompiledModel, input: &NodeId) -> Vec<String> {
    let Some(agg) = aggregate_of(&m.job.root) else { return Vec::new() };
    let Some(input_schema) = m.input_schemas.get(input) else { return Vec::new() };
    let mut out: Vec<String> = Vec::new();
    for (i, (expr, _)) in agg.group_by.expr().iter().enumerate() {
        if Some(i) == agg.window_start || Some(i) == agg.window_end {
            continue;
        }
        let Some((from, index)) = trace(&agg.input, expr) else { continue };
        if &from != input {
            continue;
        }
        if let Some(f) = input_schema.fields().get(index) {
            if !out.contains(f.name()) {
                out.push(f.name().clone());
            }
        }
    }
    out
}

fn aggregate_of(node: &Node) -> Option<&super::streaming::job::AggregateNode> {
    match node {
        Node::Aggregate(a) => Some(a),
        Node::Map { input, .. } => aggregate_of(input),
        Node::Scan { .. } | Node::Join(_) => None,
    }
}

/// The input and the column of its decoded batch that `expr` (over `node`'s output) is.
fn trace(node: &Node, expr: &Arc<dyn PhysicalExpr>) -> Option<(NodeId, usize)> {
    let mut index = expr.downcast_ref::<Column>()?.index();
    let mut node = node;
    loop {
        match node {
            Node::Scan { input, kind: RelationKind::Stream, projection, .. } => {
                return projection.get(index).map(|i| (input.clone(), *i))
            }
            Node::Map { input, steps, .. } => {
                for step in steps.iter().rev() {
                    if let Step::Project(exprs, _) = step {
                        index = exprs.get(index)?.downcast_ref::<Column>()?.index();
                    }
                }
                node = input;
            }
            Node::Scan { .. } | Node::Join(_) | Node::Aggregate(_) => return None,
        }
    }
}
