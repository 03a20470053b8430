//! The streaming operators, as DataFusion extension nodes: the planner replaces the plan nodes
//! it can run continuously with these, so what runs is visible in the plan itself.

use std::cmp::Ordering;
use std::fmt;

use datafusion::common::{DFSchemaRef, Result};
use datafusion::logical_expr::{Aggregate, Expr, Join, LogicalPlan, TableScan, UserDefinedLogicalNodeCore};

use crate::graph::NodeId;
use crate::project::config::RelationKind;

/// An input relation read from its topic, in event-time order per partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamScan {
    pub input: NodeId,
    /// A table (the latest row per key), else a stream of events.
    pub is_table: bool,
    pub scan: TableScan,
}

impl StreamScan {
    pub fn kind(&self) -> RelationKind {
        if self.is_table {
            RelationKind::Table
        } else {
            RelationKind::Stream
        }
    }
}

impl PartialOrd for StreamScan {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match (&self.input, self.is_table).cmp(&(&other.input, other.is_table)) {
            Ordering::Equal => self.scan.partial_cmp(&other.scan),
            o => Some(o),
        }
    }
}

/// Each stream event joined to the current row of a table with the same key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct StreamTableJoin {
    pub join: Join,
    /// Whether the stream is the left input (its columns come first in the output).
    pub stream_is_left: bool,
}

/// An aggregation per window of event time; the window bounds are group columns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct WindowedAggregate {
    pub aggregate: Aggregate,
}

/// A running aggregation: a table updated by every event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd)]
pub struct UpdatingAggregate {
    pub aggregate: Aggregate,
}

impl UserDefinedLogicalNodeCore for StreamScan {
    fn name(&self) -> &str {
        "StreamScan"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.scan.projected_schema
    }
    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StreamScan: {} ({:?})", self.input, self.kind())
    }
    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(self.clone())
    }
}

/// `node` rebuilt from new expressions and inputs the way DataFusion rebuilds the plain node.
fn rebuild(node: LogicalPlan, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<LogicalPlan> {
    node.with_new_exprs(exprs, inputs)
}

impl UserDefinedLogicalNodeCore for StreamTableJoin {
    fn name(&self) -> &str {
        "StreamTableJoin"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![self.join.left.as_ref(), self.join.right.as_ref()]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.join.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        LogicalPlan::Join(self.join.clone()).expressions()
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let side = if self.stream_is_left { "stream on the left" } else { "stream on the right" };
        write!(f, "StreamTableJoin: {} ({side}) on {:?}", self.join.join_type, self.join.on)
    }
    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        match rebuild(LogicalPlan::Join(self.join.clone()), exprs, inputs)? {
            LogicalPlan::Join(join) => Ok(StreamTableJoin { join, stream_is_left: self.stream_is_left }),
            other => datafusion::common::internal_err!("a join rebuilt as {}", other.display()),
        }
    }
}

fn aggregate_exprs(a: &Aggregate) -> Vec<Expr> {
    LogicalPlan::Aggregate(a.clone()).expressions()
}

fn rebuild_aggregate(a: &Aggregate, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Aggregate> {
    match rebuild(LogicalPlan::Aggregate(a.clone()), exprs, inputs)? {
        LogicalPlan::Aggregate(a) => Ok(a),
        other => datafusion::common::internal_err!("an aggregate rebuilt as {}", other.display()),
    }
}

impl UserDefinedLogicalNodeCore for WindowedAggregate {
    fn name(&self) -> &str {
        "WindowedAggregate"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![self.aggregate.input.as_ref()]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.aggregate.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        aggregate_exprs(&self.aggregate)
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WindowedAggregate: groupBy={:?}, aggr={:?}", self.aggregate.group_expr, self.aggregate.aggr_expr)
    }
    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(WindowedAggregate { aggregate: rebuild_aggregate(&self.aggregate, exprs, inputs)? })
    }
}

impl UserDefinedLogicalNodeCore for UpdatingAggregate {
    fn name(&self) -> &str {
        "UpdatingAggregate"
    }
    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![self.aggregate.input.as_ref()]
    }
    fn schema(&self) -> &DFSchemaRef {
        &self.aggregate.schema
    }
    fn expressions(&self) -> Vec<Expr> {
        aggregate_exprs(&self.aggregate)
    }
    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "UpdatingAggregate: groupBy={:?}, aggr={:?}", self.aggregate.group_expr, self.aggregate.aggr_expr)
    }
    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(UpdatingAggregate { aggregate: rebuild_aggregate(&self.aggregate, exprs, inputs)? })
    }
}
