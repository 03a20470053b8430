//! The streaming planner: the one place that decides whether a model's query can run as a
//! continuous job, and how.
//!
//! Following DataFusion's own extension points (the way Arroyo plans streaming SQL):
//! 1. the analyzed logical plan is optimized, without the rules that would change the shape
//!    the judge sees (DISTINCT into an aggregation, UNION into a filter, COUNT(DISTINCT) alone
//!    into two nested aggregations: one aggregation with a distinct accumulator runs as is);
//! 2. a [`TreeNode`](datafusion::common::tree_node::TreeNode) rewriter replaces each node the
//!    runtime runs with a streaming extension node ([`nodes`]: `StreamScan`, `StreamTableJoin`,
//!    `WindowedAggregate`, `UpdatingAggregate`) and rejects every other shape with a
//!    [`Rejection`] that names the SQL word to point at;
//! 3. the job the runtime executes is built from that rewritten plan ([`job`]).
//!
//! The operator kind (and with it whether the job keeps state) is read off the same plan.

pub mod job;
pub mod nodes;
mod rewrite;

use std::sync::Arc;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::TableReference;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::optimizer::{Optimizer, OptimizerRule};

pub use rewrite::Rejection;
use rewrite::{reject, StreamingRewriter};

use super::OperatorKind;
use crate::graph::NodeId;
use crate::project::config::RelationKind;
use nodes::{StreamTableJoin, UpdatingAggregate, WindowedAggregate};

/// Resolves a scanned table to the relation it reads and that relation's kind.
pub trait Relations {
    fn resolve(&self, table: &TableReference) -> Option<(NodeId, RelationKind)>;
}

/// A model's query as it runs: the optimized plan with streaming operators in it.
#[derive(Debug, Clone)]
pub struct StreamingPlan {
    pub plan: LogicalPlan,
    pub operator: OperatorKind,
}

/// Optimizer rules that change a query's shape into one the judge would read differently.
const SHAPE_CHANGING_RULES: [&str; 3] =
    ["replace_distinct_aggregate", "single_distinct_aggregation_to_group_by", "unions_to_filter"];

fn optimizer() -> Optimizer {
    let rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> =
        Optimizer::new().rules.into_iter().filter(|r| !SHAPE_CHANGING_RULES.contains(&r.name())).collect();
    Optimizer::with_rules(rules)
}

/// Plans a model's analyzed logical plan as a stream, or says why it cannot run.
/// `windowed`: the query has a WINDOW clause.
pub fn plan(
    state: &SessionState,
    analyzed: &LogicalPlan,
    relations: &dyn Relations,
    windowed: bool,
) -> Result<StreamingPlan, Rejection> {
    let optimized = optimizer().optimize(analyzed.clone(), state, |_, _| {}).map_err(|e| {
        reject(&["SELECT"], format!("cannot optimize the query: {}", e.strip_backtrace()), "report this as a bug")
    })?;
    let mut rewriter = StreamingRewriter { relations, windowed, rejected: None };
    let plan = match optimized.rewrite(&mut rewriter) {
        Ok(t) => t.data,
        Err(e) => {
            return Err(rewriter.rejected.take().unwrap_or_else(|| {
                reject(&["SELECT"], format!("cannot plan the query: {}", e.strip_backtrace()), "report this as a bug")
            }))
        }
    };
    let operator = operator_of(&plan);
    if windowed && operator != OperatorKind::WindowedAggregate {
        return Err(reject(
            &["WINDOW"],
            "a WINDOW needs an aggregation with GROUP BY in the outermost SELECT",
            "add GROUP BY, or remove the WINDOW clause",
        ));
    }
    Ok(StreamingPlan { plan, operator })
}

/// The operator a streaming plan runs: its stateful node, if any.
fn operator_of(plan: &LogicalPlan) -> OperatorKind {
    let mut kind = OperatorKind::Stateless;
    let _ = plan.apply(|node| {
        if let LogicalPlan::Extension(e) = node {
            let any = e.node.as_any();
            if any.is::<WindowedAggregate>() {
                kind = OperatorKind::WindowedAggregate;
                return Ok(TreeNodeRecursion::Stop);
            }
            if any.is::<UpdatingAggregate>() {
                kind = OperatorKind::Aggregate;
                return Ok(TreeNodeRecursion::Stop);
            }
            if any.is::<StreamTableJoin>() {
                kind = OperatorKind::StreamTableJoin;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    kind
}
