//! The judge: a bottom-up rewrite of a model's optimized logical plan that replaces every node
//! the streaming runtime runs with its streaming operator ([`super::nodes`]) and rejects every
//! other shape, with the reason and the SQL word to point at.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion, TreeNodeRewriter};
use datafusion::common::{DataFusionError, Result};
use datafusion::logical_expr::{Aggregate, Expr, Extension, Join, JoinType, LogicalPlan, TableScan};

use super::nodes::{StreamScan, StreamTableJoin, UpdatingAggregate, WindowedAggregate};
use super::Relations;
use crate::project::config::RelationKind;

/// A query shape the streaming runtime does not run.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// Where to point: the first of these SQL words found in the query (else its start).
    pub at: &'static [&'static str],
    pub message: String,
    pub help: String,
}

pub(super) fn reject(at: &'static [&'static str], message: impl Into<String>, help: impl Into<String>) -> Rejection {
    Rejection { at, message: message.into(), help: help.into() }
}

pub(super) struct StreamingRewriter<'a> {
    pub relations: &'a dyn Relations,
    /// The query has a WINDOW clause: its aggregation is per window.
    pub windowed: bool,
    /// Why the rewrite stopped, when it did.
    pub rejected: Option<Rejection>,
}

impl StreamingRewriter<'_> {
    fn stop(&mut self, r: Rejection) -> Result<Transformed<LogicalPlan>> {
        self.rejected = Some(r);
        Err(DataFusionError::Plan("the query shape cannot run as a stream".into()))
    }
}

impl TreeNodeRewriter for StreamingRewriter<'_> {
    type Node = LogicalPlan;

    fn f_up(&mut self, plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
        match judge(plan, self.relations, self.windowed) {
            Ok(t) => Ok(t),
            Err(r) => self.stop(r),
        }
    }
}

/// One node, its inputs already rewritten.
fn judge(plan: LogicalPlan, relations: &dyn Relations, windowed: bool) -> Result<Transformed<LogicalPlan>, Rejection> {
    match plan {
        LogicalPlan::TableScan(scan) => stream_scan(scan, relations).map(|n| Transformed::yes(extension(n))),
        LogicalPlan::Projection(_) | LogicalPlan::Filter(_) => {
            if plan.expressions().iter().any(has_subquery) {
                return Err(reject(
                    &["EXISTS", "IN", "SELECT"],
                    "a subquery in an expression is not supported on streams",
                    "read the other relation with a JOIN, or compute it in its own model and ref() it",
                ));
            }
            Ok(Transformed::no(plan))
        }
        LogicalPlan::SubqueryAlias(_) => Ok(Transformed::no(plan)),
        LogicalPlan::Join(join) => stream_table_join(join).map(|n| Transformed::yes(extension(n))),
        LogicalPlan::Aggregate(aggregate) => {
            check_aggregate(&aggregate)?;
            Ok(Transformed::yes(if windowed {
                extension(WindowedAggregate { aggregate })
            } else {
                extension(UpdatingAggregate { aggregate })
            }))
        }
        LogicalPlan::Sort(_) => Err(reject(
            &["ORDER"],
            "ORDER BY has no meaning on an unbounded stream",
            "sort downstream, where the data is read",
        )),
        LogicalPlan::Limit(_) => {
            Err(reject(&["LIMIT"], "LIMIT has no meaning on a continuous query", "filter with WHERE instead"))
        }
        LogicalPlan::Window(_) => Err(reject(
            &["OVER"],
            "window functions (OVER ...) are not supported on streams",
            "use a WINDOW clause with GROUP BY",
        )),
        LogicalPlan::Union(_) => Err(reject(&["UNION"], "UNION is not supported yet", "write one model per input")),
        LogicalPlan::Distinct(_) => Err(reject(
            &["DISTINCT"],
            "SELECT DISTINCT is not supported on streams yet",
            "use GROUP BY, which makes a table",
        )),
        LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => Err(reject(
            &["FROM", "SELECT"],
            "the query reads no source or model (or its filter is always false)",
            "select from {{ source(...) }} or {{ ref(...) }}",
        )),
        other => Err(reject(
            &["SELECT"],
            format!("{} is not supported in a streaming model", other.display()),
            "write the query as SELECT ... FROM a stream, optionally joined to a table or grouped",
        )),
    }
}

fn extension<N: datafusion::logical_expr::UserDefinedLogicalNode + 'static>(node: N) -> LogicalPlan {
    LogicalPlan::Extension(Extension { node: Arc::new(node) })
}

fn has_subquery(e: &Expr) -> bool {
    e.exists(|e| Ok(matches!(e, Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_)))).unwrap_or(false)
}

fn stream_scan(scan: TableScan, relations: &dyn Relations) -> Result<StreamScan, Rejection> {
    if scan.fetch.is_some() {
        return Err(reject(&["LIMIT"], "LIMIT has no meaning on a continuous query", "filter with WHERE instead"));
    }
    let Some((input, kind)) = relations.resolve(&scan.table_name) else {
        return Err(reject(
            &["FROM"],
            format!("`{}` is not a source or a model", scan.table_name),
            "select from {{ source(...) }} or {{ ref(...) }}",
        ));
    };
    if !scan.filters.is_empty() {
        // The providers take no filters; a scan with some would drop rows the runtime never sees.
        return Err(reject(
            &["WHERE"],
            format!("a filter was pushed into the scan of `{}`", scan.table_name),
            "report this as a bug",
        ));
    }
    Ok(StreamScan { input, is_table: kind == RelationKind::Table, scan })
}

/// What a subtree of the rewritten plan holds.
#[derive(Default)]
struct Contents {
    kinds: Vec<RelationKind>,
    aggregates: usize,
    joins: usize,
}

fn contents(plan: &LogicalPlan) -> Contents {
    let mut c = Contents::default();
    let _ = plan.apply(|node| {
        if let LogicalPlan::Extension(e) = node {
            let any = e.node.as_any();
            if let Some(s) = any.downcast_ref::<StreamScan>() {
                c.kinds.push(s.kind());
            } else if any.is::<StreamTableJoin>() {
                c.joins += 1;
            } else if any.is::<WindowedAggregate>() || any.is::<UpdatingAggregate>() {
                c.aggregates += 1;
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    c
}

fn check_aggregate(a: &Aggregate) -> Result<(), Rejection> {
    let below = contents(&a.input);
    if below.aggregates > 0 {
        return Err(reject(
            &["GROUP"],
            "a model may hold one aggregation",
            "put the inner aggregation in its own model and ref() it",
        ));
    }
    if below.joins == 0 && below.kinds.contains(&RelationKind::Table) {
        return Err(reject(
            &["GROUP"],
            "aggregating a table (with retractions) is not supported yet",
            "aggregate a stream",
        ));
    }
    if a.group_expr.iter().any(|e| matches!(e, Expr::GroupingSet(_))) {
        return Err(reject(
            &["GROUPING", "CUBE", "ROLLUP", "GROUP"],
            "GROUPING SETS, CUBE and ROLLUP are not supported on streams",
            "write one model per grouping",
        ));
    }
    Ok(())
}

/// The kind of relation a join side reads: one source or model, through stateless steps only.
fn side_kind(side: &LogicalPlan) -> Option<RelationKind> {
    let c = contents(side);
    match (c.kinds.as_slice(), c.aggregates + c.joins) {
        ([k], 0) => Some(*k),
        _ => None,
    }
}

fn stream_table_join(join: Join) -> Result<StreamTableJoin, Rejection> {
    use RelationKind::{Stream, Table};
    let jt = join.join_type;
    if !matches!(jt, JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full) {
        return Err(reject(
            &["EXISTS", "IN", "JOIN"],
            "semi and anti joins (IN and EXISTS subqueries) are not supported on streams",
            "join the table explicitly: stream JOIN table ON ...",
        ));
    }
    let (Some(left), Some(right)) = (side_kind(&join.left), side_kind(&join.right)) else {
        return Err(reject(
            &["JOIN"],
            "a join side must be a source or a model, not a subquery",
            "move the subquery into its own model",
        ));
    };
    let stream_is_left = match (left, right, jt) {
        (Stream, Stream, _) => {
            return Err(reject(
                &["JOIN"],
                "joining two streams is not supported: the join state would grow without bound",
                "join a stream to a table (a source with kind: table, or an aggregation model)",
            ))
        }
        (Table, Table, _) => {
            return Err(reject(&["JOIN"], "table–table joins are not supported yet", "join a stream to a table"))
        }
        (Stream, Table, JoinType::Inner | JoinType::Left) => true,
        (Table, Stream, JoinType::Inner) => false,
        (Table, Stream, JoinType::Left | JoinType::Full) => {
            return Err(reject(
                &["JOIN"],
                format!("a {jt} JOIN keeps every row of its left side: the left side must be the stream"),
                "put the stream first: stream LEFT JOIN table",
            ))
        }
        (Stream, Table, _) => {
            return Err(reject(
                &["JOIN"],
                format!(
                    "a {jt} JOIN keeps every row of the table: only INNER and LEFT stream–table joins are supported"
                ),
                "use LEFT JOIN with the stream on the left",
            ))
        }
        (Table, Stream, _) => {
            return Err(reject(
                &["JOIN"],
                format!("a {jt} JOIN with the stream on the right is not supported"),
                "put the stream first: stream LEFT JOIN table",
            ))
        }
    };
    if join.on.is_empty() {
        return Err(reject(
            &["JOIN"],
            "a stream–table join needs an equality condition on the table's key (ON s.x = t.key)",
            "join on the table's key columns",
        ));
    }
    Ok(StreamTableJoin { join, stream_is_left })
}
