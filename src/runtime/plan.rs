//! From a model's logical plan to the operators a job runs.
//!
//! The optimized DataFusion plan is cut at its stateful nodes. What lies between them is
//! stateless and becomes a list of [`Step`]s: physical expressions evaluated on each Arrow batch,
//! planned once. The stateful nodes become a [`JoinNode`] (stream–table join against a
//! materialized table) or an [`AggregateNode`] (DataFusion's own aggregate operators run in
//! Partial / PartialReduce / Final mode over partial-state batches). Planning happens at
//! compile time, so `validate` rejects exactly the shapes no operator runs.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::{DFSchema, DFSchemaRef, TableReference};
use datafusion::execution::context::ExecutionProps;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Aggregate, EmptyRelation, Expr, JoinType, LogicalPlan};
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::udaf::AggregateFunctionExpr;
use datafusion::physical_plan::ExecutionPlan;

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

/// A shape the runtime does not run, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsupported(pub String);

type Result<T> = std::result::Result<T, Unsupported>;

fn unsupported<T>(msg: impl Into<String>) -> Result<T> {
    Err(Unsupported(msg.into()))
}

fn df<T>(r: datafusion::error::Result<T>) -> Result<T> {
    r.map_err(|e| Unsupported(format!("cannot plan the operator: {}", e.strip_backtrace())))
}

/// Resolves a scanned table to the relation it reads and that relation's kind.
pub trait Relations {
    fn resolve(&self, table: &TableReference) -> Option<(NodeId, RelationKind)>;
}

pub struct JobPlanner<'a> {
    pub state: &'a SessionState,
    pub relations: &'a dyn Relations,
    props: ExecutionProps,
}

impl<'a> JobPlanner<'a> {
    pub fn new(state: &'a SessionState, relations: &'a dyn Relations) -> Self {
        JobPlanner { state, relations, props: ExecutionProps::new() }
    }

    fn physical(&self, e: &Expr, schema: &DFSchema) -> Result<Arc<dyn PhysicalExpr>> {
        df(create_physical_expr(e, schema, &self.props, &PhysicalPlanningContext::default()))
    }

    /// Plans the job of an optimized logical plan.
    pub async fn plan(&self, plan: &LogicalPlan) -> Result<JobPlan> {
        let root = self.node(plan).await?;
        Ok(JobPlan { schema: root.schema(), root })
    }

    fn node<'p>(
        &'p self,
        plan: &'p LogicalPlan,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Node>> + 'p>> {
        Box::pin(async move {
            match plan {
                LogicalPlan::TableScan(scan) => {
                    if !scan.filters.is_empty() || scan.fetch.is_some() {
                        return unsupported("a scan with pushed-down filters or a limit");
                    }
                    let Some((input, kind)) = self.relations.resolve(&scan.table_name) else {
                        return unsupported(format!("`{}` is not a source or a model", scan.table_name));
                    };
                    let full = scan.source.schema();
                    let projection: Vec<usize> = match &scan.projection {
                        Some(p) => p.clone(),
                        None => (0..full.fields().len()).collect(),
                    };
                    Ok(Node::Scan { input, kind, projection, schema: arrow_schema(plan.schema()) })
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
                LogicalPlan::Join(j) => self.join(j, plan).await,
                LogicalPlan::Aggregate(a) => self.aggregate(a, plan).await,
                LogicalPlan::EmptyRelation(_) | LogicalPlan::Values(_) => {
                    unsupported("a query that reads no source or model")
                }
                other => unsupported(format!("{} is not supported in a streaming model", other.display())),
            }
        })
    }

    async fn join(&self, j: &datafusion::logical_expr::Join, plan: &LogicalPlan) -> Result<Node> {
        let left = self.node(&j.left).await?;
        let right = self.node(&j.right).await?;
        let kind = |n: &Node| -> Option<RelationKind> {
            let mut kinds = Vec::new();
            collect_scan_kinds(n, &mut kinds);
            match kinds.as_slice() {
                [k] => Some(*k),
                _ => None,
            }
        };
        let (lk, rk) = (kind(&left), kind(&right));
        let stream_is_left = match (lk, rk, j.join_type) {
            (Some(RelationKind::Stream), Some(RelationKind::Table), JoinType::Inner | JoinType::Left) => true,
            (Some(RelationKind::Table), Some(RelationKind::Stream), JoinType::Inner) => false,
            (Some(RelationKind::Stream), Some(RelationKind::Stream), _) => return unsupported("joining two streams"),
            (Some(RelationKind::Table), Some(RelationKind::Table), _) => return unsupported("joining two tables"),
            _ => return unsupported(format!("a {} JOIN between these inputs", j.join_type)),
        };
        if j.on.is_empty() {
            return unsupported("a join without an equality condition (ON a.x = b.y)");
        }
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
        if contains_stateful(&stream) || contains_stateful(&table) {
            return unsupported("a join over an aggregation or another join in the same model");
        }
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
        if matches!(input, Node::Aggregate(_)) || contains_aggregate(&input) {
            return unsupported("an aggregation over another aggregation");
        }
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
            return unsupported("DataFusion planned no aggregate operator");
        };
        if exec.group_expr().has_grouping_set() {
            return unsupported("GROUPING SETS, CUBE and ROLLUP");
        }
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

fn collect_scan_kinds(n: &Node, out: &mut Vec<RelationKind>) {
    match n {
        Node::Scan { kind, .. } => out.push(*kind),
        Node::Map { input, .. } => collect_scan_kinds(input, out),
        Node::Join(j) => {
            collect_scan_kinds(&j.stream, out);
            collect_scan_kinds(&j.table, out);
        }
        Node::Aggregate(a) => collect_scan_kinds(&a.input, out),
    }
}

fn contains_stateful(n: &Node) -> bool {
    match n {
        Node::Scan { .. } => false,
        Node::Map { input, .. } => contains_stateful(input),
        Node::Join(_) | Node::Aggregate(_) => true,
    }
}

fn contains_aggregate(n: &Node) -> bool {
    match n {
        Node::Scan { .. } => false,
        Node::Map { input, .. } => contains_aggregate(input),
        Node::Join(j) => contains_aggregate(&j.stream) || contains_aggregate(&j.table),
        Node::Aggregate(_) => true,
    }
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
