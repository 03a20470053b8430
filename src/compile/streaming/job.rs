//! The job a model runs, built from its streaming plan (see [`super`]).
//!
//! The plan is cut at its streaming operators. What lies between them is stateless and
//! becomes a list of [`Step`]s: physical expressions evaluated on each Arrow batch, planned
//! once. `StreamTableJoin` becomes a [`JoinNode`] (joined against a materialized table),
//! `WindowedAggregate` and `UpdatingAggregate` an [`AggregateNode`] (DataFusion's own aggregate
//! operators run in Partial / PartialReduce / Final mode over partial-state batches). Which
//! shapes run was decided by the planner; what fails here is building physical expressions.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::{DFSchema, DFSchemaRef};
use datafusion::execution::context::ExecutionProps;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Aggregate, EmptyRelation, Expr, JoinType, LogicalPlan};
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::udaf::AggregateFunctionExpr;
use datafusion::physical_plan::ExecutionPlan;

use super::nodes::{StreamScan, StreamTableJoin, UpdatingAggregate, WindowedAggregate};
use crate::graph::NodeId;
use crate::project::config::RelationKind;

/// A stateless transformation of one batch.
#[derive(Debug, Clone)]
pub enum Step {
    /// Keep the rows where the predicate is true.
    Filter(Arc<dyn PhysicalExpr>),
    /// Compute new columns.
    Project(Vec<Arc<dyn PhysicalExpr>>, SchemaRef),
}

/// The operator tree of a job. Batches flow from the scans up to the root.
#[derive(Debug, Clone)]
pub enum Node {
    /// An input relation. `projection` picks columns of the input batch (which has the schema
    /// the model was planned against: the relation's columns plus the pseudo and window
    /// columns it uses).
    Scan {
        input: NodeId,
        kind: RelationKind,
        projection: Vec<usize>,
        schema: SchemaRef,
    },
    /// Stateless steps over the child's output.
    Map {
        input: Box<Node>,
        steps: Vec<Step>,
        schema: SchemaRef,
    },
    Join(Box<JoinNode>),
    Aggregate(Box<AggregateNode>),
}

impl Node {
    /// The columns of `input` (indices into the schema it was planned against) that any scan of
    /// it reads: what its records must be decoded into; the others are never looked at.
    pub fn columns_read(&self, input: &NodeId) -> std::collections::BTreeSet<usize> {
        let mut read = std::collections::BTreeSet::new();
        let mut stack = vec![self];
        while let Some(node) = stack.pop() {
            match node {
                Node::Scan { input: i, projection, .. } => {
                    if i == input {
                        read.extend(projection.iter().copied());
                    }
                }
                Node::Map { input, .. } => stack.push(input),
                Node::Join(j) => stack.extend([&j.stream, &j.table]),
                Node::Aggregate(a) => stack.push(&a.input),
            }
        }
        read
    }

    pub fn schema(&self) -> SchemaRef {
        match self {
            Node::Scan { schema, .. } | Node::Map { schema, .. } => schema.clone(),
            Node::Join(j) => j.schema.clone(),
            Node::Aggregate(a) => a.output_schema.clone(),
        }
    }
}

/// Each stream row joined to the current row of the table with the same key.
#[derive(Debug, Clone)]
pub struct JoinNode {
    pub stream: Node,
    pub table: Node,
    /// Whether the stream is the left input (its columns come first in the output).
    pub stream_is_left: bool,
    /// Key expressions, evaluated on the stream side's and the table side's batches.
    pub stream_keys: Vec<Arc<dyn PhysicalExpr>>,
    pub table_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// Extra join condition over the joined row.
    pub filter: Option<Arc<dyn PhysicalExpr>>,
    /// `Inner` or `Left` (with the stream on the left).
    pub join_type: JoinType,
    pub schema: SchemaRef,
}

/// A grouped aggregation, kept as DataFusion partial aggregate states between batches.
#[derive(Debug, Clone)]
pub struct AggregateNode {
    pub input: Node,
    pub group_by: PhysicalGroupBy,
    pub aggr_expr: Vec<Arc<AggregateFunctionExpr>>,
    pub filter_expr: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// Schema of the aggregate's input batches.
    pub input_schema: SchemaRef,
    /// Schema of partial states: group columns, then each aggregate's state fields.
    pub state_schema: SchemaRef,
    /// Schema of final rows: group columns, then each aggregate's value.
    pub output_schema: SchemaRef,
    /// Index of the `windowend` group column in state and output batches, for windowed models.
    pub window_end: Option<usize>,
    pub window_start: Option<usize>,
}

/// What a model runs: an operator tree and the stateless steps after its root.
#[derive(Debug, Clone)]
pub struct JobPlan {
    pub root: Node,
    pub schema: SchemaRef,
}

/// Why a streaming plan could not be built into a job.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildError(pub String);

type Result<T> = std::result::Result<T, BuildError>;

fn build_error<T>(msg: impl Into<String>) -> Result<T> {
    Err(BuildError(msg.into()))
}

fn df<T>(r: datafusion::error::Result<T>) -> Result<T> {
    r.map_err(|e| BuildError(format!("cannot plan the operator: {}", e.strip_backtrace())))
}

/// Builds the job of a streaming plan.
pub async fn build(state: &SessionState, plan: &LogicalPlan) -> Result<JobPlan> {
    let builder = JobBuilder { state, props: ExecutionProps::new() };
    let root = builder.node(plan).await?;
    Ok(JobPlan { schema: root.schema(), root })
}

struct JobBuilder<'a> {
    state: &'a SessionState,
    props: ExecutionProps,
}

impl JobBuilder<'_> {
    fn physical(&self, e: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        df(create_physical_expr(e, schema, &self.props, &PhysicalPlanningContext::default()))
    }

    fn node<'p>(
        &'p self,
        plan: &'p LogicalPlan,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Node>> + 'p>> {
        Box::pin(async move {
            match plan {
                LogicalPlan::Extension(e) => {
                    let any = e.node.as_any();
                    if let Some(s) = any.downcast_ref::<StreamScan>() {
                        let projection: Vec<usize> = match &s.scan.projection {
                            Some(p) => p.clone(),
                            None => (0..s.scan.source.schema().fields().len()).collect(),
                        };
                        Ok(Node::Scan {
                            input: s.input.clone(),
                            kind: s.kind(),
                            projection,
                            schema: arrow_schema(plan.schema()),
                        })
                    } else if let Some(j) = any.downcast_ref::<StreamTableJoin>() {
                        self.join(j, plan).await
                    } else if let Some(a) = any.downcast_ref::<WindowedAggregate>() {
                        self.aggregate(&a.aggregate, plan).await
                    } else if let Some(a) = any.downcast_ref::<UpdatingAggregate>() {
                        self.aggregate(&a.aggregate, plan).await
                    } else {
                        build_error(format!("{} is not a streaming operator", e.node.name()))
                    }
                }
                LogicalPlan::SubqueryAlias(a) => self.node(&a.input).await,
                LogicalPlan::Projection(p) => {
                    let input = self.node(&p.input).await?;
                    let exprs =
                        p.expr.iter().map(|e| self.physical(e, p.input.schema())).collect::<Result<Vec<_>>>()?;
                    Ok(push_step(input, Step::Project(exprs, arrow_schema(plan.schema())), arrow_schema(plan.schema())))
                }
                LogicalPlan::Filter(f) => {
                    let input = self.node(&f.input).await?;
                    let pred = self.physical(&f.predicate, f.input.schema())?;
                    Ok(push_step(input, Step::Filter(pred), arrow_schema(plan.schema())))
                }
                other => build_error(format!("{} was left in the streaming plan", other.display())),
            }
        })
    }

    async fn join(&self, node: &StreamTableJoin, plan: &LogicalPlan) -> Result<Node> {
        let j = &node.join;
        let stream_is_left = node.stream_is_left;
        let left = self.node(&j.left).await?;
        let right = self.node(&j.right).await?;
        let mut stream_keys = Vec::new();
        let mut table_keys = Vec::new();
        for (l, r) in &j.on {
            let lp = self.physical(l, j.left.schema())?;
            let rp = self.physical(r, j.right.schema())?;
            if stream_is_left {
                stream_keys.push(lp);
                table_keys.push(rp);
            } else {
                stream_keys.push(rp);
                table_keys.push(lp);
            }
        }
        let filter = match &j.filter {
            Some(f) => Some(self.physical(f, &j.schema)?),
            None => None,
        };
        let (stream, table) = if stream_is_left { (left, right) } else { (right, left) };
        Ok(Node::Join(Box::new(JoinNode {
            stream,
            table,
            stream_is_left,
            stream_keys,
            table_keys,
            filter,
            join_type: j.join_type,
            schema: arrow_schema(plan.schema()),
        })))
    }

    async fn aggregate(&self, a: &Aggregate, plan: &LogicalPlan) -> Result<Node> {
        let input = self.node(&a.input).await?;
        // Plan the aggregate alone over an empty input of the same schema, and take the
        // expressions DataFusion's planner made for it.
        let empty =
            LogicalPlan::EmptyRelation(EmptyRelation { produce_one_row: false, schema: a.input.schema().clone() });
        let alone = df(Aggregate::try_new(Arc::new(empty), a.group_expr.clone(), a.aggr_expr.clone()))?;
        // The physical planner alone: the logical optimizer would fold an aggregate over an
        // empty relation away.
        use datafusion::physical_planner::PhysicalPlanner;
        let planner = datafusion::physical_planner::DefaultPhysicalPlanner::default();
        let physical = df(planner.create_physical_plan(&LogicalPlan::Aggregate(alone), self.state).await)?;
        let Some(exec) = first_aggregate(&physical) else {
            return build_error("DataFusion planned no aggregate operator");
        };
        let group_by = exec.group_expr().clone();
        let aggr_expr = exec.aggr_expr().to_vec();
        let filter_expr = exec.filter_expr().to_vec();
        let input_schema = exec.input_schema();
        let partial = df(AggregateExec::try_new(
            AggregateMode::Partial,
            group_by.clone(),
            aggr_expr.clone(),
            filter_expr.clone(),
            empty_exec(&input_schema),
            input_schema.clone(),
        ))?;
        let state_schema = partial.schema();
        let output_schema = arrow_schema(plan.schema());
        let group_names: Vec<String> = group_by.expr().iter().map(|(_, n)| n.clone()).collect();
        let find = |name: &str| group_names.iter().position(|n| n == name || n.ends_with(&format!(".{name}")));
        Ok(Node::Aggregate(Box::new(AggregateNode {
            input,
            group_by,
            aggr_expr,
            filter_expr,
            input_schema,
            state_schema,
            output_schema,
            window_end: find(crate::sql::dialect::WINDOWEND),
            window_start: find(crate::sql::dialect::WINDOWSTART),
        })))
    }
}

fn empty_exec(schema: &SchemaRef) -> Arc<dyn ExecutionPlan> {
    Arc::new(datafusion::physical_plan::empty::EmptyExec::new(schema.clone()))
}

fn first_aggregate(plan: &Arc<dyn ExecutionPlan>) -> Option<AggregateExec> {
    // The deepest aggregate is the one reading the raw input (Partial or Single).
    for child in plan.children() {
        if let Some(a) = first_aggregate(child) {
            return Some(a);
        }
    }
    plan.downcast_ref::<AggregateExec>().cloned()
}

/// Adds a step, merging into an existing Map.
fn push_step(input: Node, step: Step, schema: SchemaRef) -> Node {
    match input {
        Node::Map { input, mut steps, .. } => {
            steps.push(step);
            Node::Map { input, steps, schema }
        }
        other => Node::Map { input: Box::new(other), steps: vec![step], schema },
    }
}

fn arrow_schema(s: &DFSchemaRef) -> SchemaRef {
    Arc::new(Schema::new(s.fields().iter().map(|f| f.as_ref().clone()).collect::<Vec<_>>()))
}
