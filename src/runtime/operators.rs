//! Executing a [`JobPlan`]: batches are pushed in at the scans and come out at the root.
//!
//! State lives in two operators. The join keeps the latest row per key of its table side
//! (a tombstone deletes). The aggregate keeps DataFusion partial aggregate states, one row per
//! group (and window), compacted with `PartialReduce`; results come from `Final` over the
//! states of the groups to emit. Both snapshot to Arrow IPC for checkpoints.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{
    concat_batches, filter_record_batch, interleave, lexsort_to_indices, take, SortColumn,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::JoinType;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::{collect, ExecutionPlan};

use crate::compile::streaming::job::{AggregateNode, JoinNode, Node, Step};
use crate::graph::NodeId;
use crate::sql::dialect::EmitMode;

/// Rows flowing between operators. `deletes[i]` marks row i as a tombstone of its key (tables).
#[derive(Debug, Clone)]
pub struct Chunk {
    pub batch: RecordBatch,
    pub deletes: Option<BooleanArray>,
}

impl Chunk {
    pub fn rows(batch: RecordBatch) -> Chunk {
        Chunk { batch, deletes: None }
    }
}

fn internal(msg: impl Into<String>) -> DataFusionError {
    DataFusionError::Execution(msg.into())
}

fn bool_array(a: ArrayRef) -> Result<BooleanArray> {
    a.as_any().downcast_ref::<BooleanArray>().cloned().ok_or_else(|| internal("a filter did not produce booleans"))
}

/// Runs stateless steps over a chunk. Tombstones pass every filter: a delete must reach the
/// output whatever the row's (absent) values.
pub fn apply_steps(steps: &[Step], mut chunk: Chunk) -> Result<Chunk> {
    for step in steps {
        match step {
            Step::Filter(pred) => {
                let mask = bool_array(pred.evaluate(&chunk.batch)?.into_array(chunk.batch.num_rows())?)?;
                let mask = match &chunk.deletes {
                    Some(d) => {
                        datafusion::arrow::compute::or(&datafusion::arrow::compute::prep_null_mask_filter(&mask), d)?
                    }
                    None => mask,
                };
                let batch = filter_record_batch(&chunk.batch, &mask)?;
                let deletes = match &chunk.deletes {
                    Some(d) => Some(bool_array(datafusion::arrow::compute::filter(d, &mask)?)?),
                    None => None,
                };
                chunk = Chunk { batch, deletes };
            }
            Step::Project(exprs, schema) => {
                let n = chunk.batch.num_rows();
                let cols = exprs.iter().map(|e| e.evaluate(&chunk.batch)?.into_array(n)).collect::<Result<Vec<_>>>()?;
                let batch = RecordBatch::try_new_with_options(
                    schema.clone(),
                    cols,
                    &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(n)),
                )
                .or_else(|_| {
                    // Nullability inferred by the planner can be stricter than the data (a
                    // tombstone's null value columns): relax to the data.
                    let cols =
                        exprs.iter().map(|e| e.evaluate(&chunk.batch)?.into_array(n)).collect::<Result<Vec<_>>>()?;
                    let fields: Vec<_> =
                        schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
                    RecordBatch::try_new(Arc::new(datafusion::arrow::datatypes::Schema::new(fields)), cols)
                        .map_err(DataFusionError::from)
                })?;
                chunk = Chunk { batch, deletes: chunk.deletes };
            }
        }
    }
    Ok(chunk)
}

/// Where a table row lives: (batch index, row index) in `TableState::batches`.
type RowAt = (usize, usize);

/// The latest row per key of a table.
#[derive(Debug)]
struct TableState {
    converter: RowConverter,
    /// batches[0] is a single all-null row: the match of a key that is absent.
    batches: Vec<RecordBatch>,
    /// Row-format key → where its current row is.
    index: HashMap<Box<[u8]>, RowAt, ahash::RandomState>,
    rows_held: usize,
}

impl TableState {
    fn new(schema: &SchemaRef, key_types: Vec<datafusion::arrow::datatypes::DataType>) -> Result<TableState> {
        let converter = RowConverter::new(key_types.into_iter().map(SortField::new).collect())?;
        Ok(TableState { converter, batches: vec![null_row(schema)?], index: HashMap::default(), rows_held: 0 })
    }

    fn apply(&mut self, keys: &[ArrayRef], chunk: &Chunk) -> Result<()> {
        let rows = self.converter.convert_columns(keys)?;
        let bi = self.batches.len();
        self.batches.push(chunk.batch.clone());
        self.rows_held += chunk.batch.num_rows();
        for i in 0..chunk.batch.num_rows() {
            if keys.iter().any(|k| k.is_null(i)) {
                continue;
            }
            let key: Box<[u8]> = rows.row(i).as_ref().into();
            if chunk.deletes.as_ref().is_some_and(|d| d.value(i)) {
                self.index.remove(&key);
            } else {
                self.index.insert(key, (bi, i));
            }
        }
        // Keep memory proportional to the live rows.
        if self.rows_held > 1024 && self.rows_held > 2 * self.index.len() {
            self.compact()?;
        }
        Ok(())
    }

    fn compact(&mut self) -> Result<()> {
        let mut entries: Vec<(Box<[u8]>, RowAt)> = self.index.drain().collect();
        entries.sort_by_key(|(_, at)| *at);
        let refs: Vec<&RecordBatch> = self.batches.iter().collect();
        let live = interleave_rows(&refs, &entries.iter().map(|(_, at)| *at).collect::<Vec<_>>())?;
        let null = self.batches[0].clone();
        self.batches = vec![null, live];
        self.rows_held = entries.len();
        self.index = entries.into_iter().enumerate().map(|(i, (k, _))| (k, (1, i))).collect();
        Ok(())
    }

    /// For each probe key, where its table row is ((0, 0): the null row when absent).
    fn lookup(&self, keys: &[ArrayRef], n: usize) -> Result<Vec<RowAt>> {
        let rows = self.converter.convert_columns(keys)?;
        Ok((0..n)
            .map(|i| {
                if keys.iter().any(|k| k.is_null(i)) {
                    return (0, 0);
                }
                self.index.get(rows.row(i).as_ref()).copied().unwrap_or((0, 0))
            })
            .collect())
    }

    fn snapshot(&mut self) -> Result<RecordBatch> {
        self.compact()?;
        Ok(self.batches.get(1).cloned().unwrap_or_else(|| self.batches[0].slice(0, 0)))
    }
}

fn null_row(schema: &SchemaRef) -> Result<RecordBatch> {
    let cols: Vec<ArrayRef> =
        schema.fields().iter().map(|f| datafusion::arrow::array::new_null_array(f.data_type(), 1)).collect();
    let fields: Vec<_> = schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
    Ok(RecordBatch::try_new(Arc::new(datafusion::arrow::datatypes::Schema::new(fields)), cols)?)
}

fn interleave_rows(batches: &[&RecordBatch], at: &[RowAt]) -> Result<RecordBatch> {
    let schema = batches[0].schema();
    let cols = (0..schema.fields().len())
        .map(|c| {
            let arrays: Vec<&dyn Array> = batches.iter().map(|b| b.column(c).as_ref()).collect();
            interleave(&arrays, at)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new_with_options(
        schema,
        cols,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(at.len())),
    )?)
}

fn eval_all(exprs: &[Arc<dyn datafusion::physical_expr::PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    exprs.iter().map(|e| e.evaluate(batch)?.into_array(batch.num_rows())).collect()
}

/// Aggregate state: partial states of every open group, plus partials not yet merged in.
#[derive(Debug, Default)]
pub struct AggState {
    state: Option<RecordBatch>,
    pending: Vec<RecordBatch>,
}

/// The runtime counterpart of a [`Node`], holding the state of stateful operators.
#[derive(Debug)]
pub enum Operator {
    Scan { input: NodeId, projection: Vec<usize> },
    Map { input: Box<Operator>, steps: Vec<Step> },
    Join { node: Box<JoinNode>, stream: Box<Operator>, table: Box<Operator>, state: TableStateCell },
    Aggregate { node: Box<AggregateNode>, input: Box<Operator>, state: AggState },
}

/// The table state of a join, created with the first table batch (its key types are known then).
#[derive(Debug, Default)]
pub struct TableStateCell(Option<TableState>);

pub struct ExecContext {
    pub task: Arc<TaskContext>,
    pub emit: EmitMode,
    pub grace_ms: i64,
    /// SESSION windows: overlapping windows of a key merge.
    pub sessions: bool,
}

impl std::fmt::Debug for ExecContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecContext").field("emit", &self.emit).field("grace_ms", &self.grace_ms).finish()
    }
}

impl Operator {
    pub fn new(node: &Node) -> Operator {
        match node {
            Node::Scan { input, projection, .. } => {
                Operator::Scan { input: input.clone(), projection: projection.clone() }
            }
            Node::Map { input, steps, .. } => {
                Operator::Map { input: Box::new(Operator::new(input)), steps: steps.clone() }
            }
            Node::Join(j) => Operator::Join {
                stream: Box::new(Operator::new(&j.stream)),
                table: Box::new(Operator::new(&j.table)),
                node: j.clone(),
                state: TableStateCell::default(),
            },
            Node::Aggregate(a) => Operator::Aggregate {
                input: Box::new(Operator::new(&a.input)),
                node: a.clone(),
                state: AggState::default(),
            },
        }
    }

    fn reads(&self, from: &NodeId) -> bool {
        match self {
            Operator::Scan { input, .. } => input == from,
            Operator::Map { input, .. } => input.reads(from),
            Operator::Join { stream, table, .. } => stream.reads(from) || table.reads(from),
            Operator::Aggregate { input, .. } => input.reads(from),
        }
    }

    /// Pushes a batch of the relation `from` in; returns what this operator emits.
    pub fn push<'a>(
        &'a mut self,
        from: &'a NodeId,
        chunk: &'a Chunk,
        cx: &'a ExecContext,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Chunk>>> + Send + 'a>> {
        Box::pin(async move {
            match self {
                Operator::Scan { input, projection } => {
                    if input != from {
                        return Ok(vec![]);
                    }
                    Ok(vec![Chunk { batch: chunk.batch.project(projection)?, deletes: chunk.deletes.clone() }])
                }
                Operator::Map { input, steps } => {
                    let out = input.push(from, chunk, cx).await?;
                    out.into_iter().map(|c| apply_steps(steps, c)).collect()
                }
                Operator::Join { node, stream, table, state } => {
                    if table.reads(from) {
                        for c in table.push(from, chunk, cx).await? {
                            let keys = eval_all(&node.table_keys, &c.batch)?;
                            if state.0.is_none() {
                                let types = keys.iter().map(|k| k.data_type().clone()).collect();
                                state.0 = Some(TableState::new(&node.table.schema(), types)?);
                            }
                            if let Some(s) = state.0.as_mut() {
                                s.apply(&keys, &c)?;
                            }
                        }
                        return Ok(vec![]);
                    }
                    let mut out = Vec::new();
                    for c in stream.push(from, chunk, cx).await? {
                        out.push(probe(node, state, &c)?);
                    }
                    Ok(out)
                }
                Operator::Aggregate { node, input, state } => {
                    let mut out = Vec::new();
                    for c in input.push(from, chunk, cx).await? {
                        if c.batch.num_rows() == 0 {
                            continue;
                        }
                        let partial = run_aggregate(node, AggregateMode::Partial, vec![c.batch], cx).await?;
                        if cx.emit == EmitMode::Changes {
                            state.pending.push(partial.clone());
                            compact(node, state, cx).await?;
                            out.extend(changes(node, state, &partial, cx).await?);
                        } else {
                            state.pending.push(partial);
                            if cx.sessions {
                                compact(node, state, cx).await?;
                                merge_sessions(node, state, cx).await?;
                            } else if state.pending.len() >= 16 {
                                compact(node, state, cx).await?;
                            }
                        }
                    }
                    Ok(out)
                }
            }
        })
    }

    /// The watermark moved to `wm`: windows ending at or before `wm - grace` close.
    pub fn advance<'a>(
        &'a mut self,
        wm: i64,
        cx: &'a ExecContext,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<Chunk>>> + Send + 'a>> {
        Box::pin(async move {
            match self {
                Operator::Scan { .. } => Ok(vec![]),
                Operator::Map { input, steps } => {
                    let out = input.advance(wm, cx).await?;
                    out.into_iter().map(|c| apply_steps(steps, c)).collect()
                }
                Operator::Join { stream, .. } => stream.advance(wm, cx).await,
                Operator::Aggregate { node, state, .. } => {
                    let Some(end_col) = node.window_end else { return Ok(vec![]) };
                    compact(node, state, cx).await?;
                    let Some(current) = state.state.take() else { return Ok(vec![]) };
                    let ends = current
                        .column(end_col)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .ok_or_else(|| internal("windowend is not BIGINT"))?;
                    let limit = wm.saturating_sub(cx.grace_ms);
                    let closed: BooleanArray = ends.iter().map(|e| Some(e.is_some_and(|e| e <= limit))).collect();
                    let open = datafusion::arrow::compute::not(&closed)?;
                    let closed_rows = filter_record_batch(&current, &closed)?;
                    let open_rows = filter_record_batch(&current, &open)?;
                    state.state = (open_rows.num_rows() > 0).then_some(open_rows);
                    if closed_rows.num_rows() == 0 || cx.emit == EmitMode::Changes {
                        // With EMIT CHANGES every update was emitted already; closing only frees.
                        return Ok(vec![]);
                    }
                    let finals = run_aggregate(node, AggregateMode::Final, vec![closed_rows], cx).await?;
                    Ok(vec![Chunk::rows(sort_by_groups(node, finals)?)])
                }
            }
        })
    }

    /// Windows that hold state and have not closed yet, one per key and window (the rows
    /// their closing will emit).
    pub fn open_windows<'a>(
        &'a mut self,
        cx: &'a ExecContext,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<usize>> + Send + 'a>> {
        Box::pin(async move {
            match self {
                Operator::Scan { .. } => Ok(0),
                Operator::Map { input, .. } => input.open_windows(cx).await,
                Operator::Join { stream, .. } => stream.open_windows(cx).await,
                Operator::Aggregate { node, input, state } => {
                    let below = input.open_windows(cx).await?;
                    if node.window_end.is_none() {
                        return Ok(below);
                    }
                    compact(node, state, cx).await?;
                    Ok(below + state.state.as_ref().map_or(0, RecordBatch::num_rows))
                }
            }
        })
    }

    /// Every state this operator tree holds, as batches (for checkpoints), in a fixed order.
    pub async fn snapshot(&mut self, cx: &ExecContext) -> Result<Vec<Option<RecordBatch>>> {
        let mut out = Vec::new();
        self.snapshot_into(&mut out, cx).await?;
        Ok(out)
    }

    fn snapshot_into<'a>(
        &'a mut self,
        out: &'a mut Vec<Option<RecordBatch>>,
        cx: &'a ExecContext,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>> {
        Box::pin(async move {
            match self {
                Operator::Scan { .. } => {}
                Operator::Map { input, .. } => input.snapshot_into(out, cx).await?,
                Operator::Join { stream, table, state, .. } => {
                    out.push(match state.0.as_mut() {
                        Some(s) => Some(s.snapshot()?),
                        None => None,
                    });
                    stream.snapshot_into(out, cx).await?;
                    table.snapshot_into(out, cx).await?;
                }
                Operator::Aggregate { node, input, state } => {
                    compact(node, state, cx).await?;
                    out.push(state.state.clone());
                    input.snapshot_into(out, cx).await?;
                }
            }
            Ok(())
        })
    }

    /// Restores what [`Operator::snapshot`] took, in the same order.
    pub fn restore(&mut self, states: &mut std::collections::VecDeque<Option<RecordBatch>>) -> Result<()> {
        match self {
            Operator::Scan { .. } => {}
            Operator::Map { input, .. } => input.restore(states)?,
            Operator::Join { node, stream, table, state } => {
                if let Some(Some(batch)) = states.pop_front() {
                    let keys = eval_all(&node.table_keys, &batch)?;
                    let types = keys.iter().map(|k| k.data_type().clone()).collect();
                    let mut s = TableState::new(&node.table.schema(), types)?;
                    s.apply(&keys, &Chunk::rows(batch))?;
                    state.0 = Some(s);
                }
                stream.restore(states)?;
                table.restore(states)?;
            }
            Operator::Aggregate { input, state, .. } => {
                state.state = states.pop_front().flatten();
                state.pending.clear();
                input.restore(states)?;
            }
        }
        Ok(())
    }
}

fn probe(node: &JoinNode, state: &TableStateCell, c: &Chunk) -> Result<Chunk> {
    let n = c.batch.num_rows();
    let keys = eval_all(&node.stream_keys, &c.batch)?;
    let table_schema = node.table.schema();
    let null = null_row(&table_schema)?;
    let (mut at, batches): (Vec<RowAt>, Vec<&RecordBatch>) = match &state.0 {
        Some(s) => (s.lookup(&keys, n)?, s.batches.iter().collect()),
        None => (vec![(0, 0); n], vec![&null]),
    };
    let joined = |at: &[RowAt]| -> Result<RecordBatch> {
        let right = interleave_rows(&batches, at)?;
        let (first, second) = if node.stream_is_left { (&c.batch, &right) } else { (&right, &c.batch) };
        let mut cols = first.columns().to_vec();
        cols.extend(second.columns().iter().cloned());
        let fields: Vec<_> = node
            .schema
            .fields()
            .iter()
            .zip(&cols)
            .map(|(f, c)| f.as_ref().clone().with_nullable(f.is_nullable() || c.null_count() > 0))
            .collect();
        Ok(RecordBatch::try_new_with_options(
            Arc::new(datafusion::arrow::datatypes::Schema::new(fields)),
            cols,
            &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(n)),
        )?)
    };
    let mut batch = joined(&at)?;
    if let Some(f) = &node.filter {
        // Rows whose match fails the extra condition have no match.
        let pass = bool_array(f.evaluate(&batch)?.into_array(n)?)?;
        let mut changed = false;
        for (i, a) in at.iter_mut().enumerate() {
            if *a != (0, 0) && !(pass.is_valid(i) && pass.value(i)) {
                *a = (0, 0);
                changed = true;
            }
        }
        if changed {
            batch = joined(&at)?;
        }
    }
    if node.join_type == JoinType::Inner {
        let matched: BooleanArray = at.iter().map(|a| Some(*a != (0, 0))).collect();
        batch = filter_record_batch(&batch, &matched)?;
    }
    Ok(Chunk::rows(batch))
}

async fn run_aggregate(
    node: &AggregateNode,
    mode: AggregateMode,
    batches: Vec<RecordBatch>,
    cx: &ExecContext,
) -> Result<RecordBatch> {
    let (group_by, filters, input_schema) = match mode {
        AggregateMode::Partial => (node.group_by.clone(), node.filter_expr.clone(), node.input_schema.clone()),
        _ => (node.group_by.as_final(), vec![None; node.aggr_expr.len()], node.state_schema.clone()),
    };
    let schema = batches.first().map(|b| b.schema()).unwrap_or_else(|| input_schema.clone());
    let source = MemorySourceConfig::try_new_exec(&[batches], schema, None)?;
    let exec =
        AggregateExec::try_new(mode, group_by, node.aggr_expr.clone(), filters, source, node.input_schema.clone())?;
    let out_schema = exec.schema();
    let out = collect(Arc::new(exec) as Arc<dyn ExecutionPlan>, cx.task.clone()).await?;
    Ok(concat_batches(&out_schema, &out)?)
}

async fn compact(node: &AggregateNode, state: &mut AggState, cx: &ExecContext) -> Result<()> {
    if state.pending.is_empty() {
        return Ok(());
    }
    let mut all: Vec<RecordBatch> = state.state.take().into_iter().collect();
    all.append(&mut state.pending);
    let merged = run_aggregate(node, AggregateMode::PartialReduce, all, cx).await?;
    state.state = (merged.num_rows() > 0).then_some(merged);
    Ok(())
}

/// Merges overlapping sessions of each key: their rows get the union's bounds, and rows that
/// then share a group are combined with `PartialReduce`.
async fn merge_sessions(node: &AggregateNode, state: &mut AggState, cx: &ExecContext) -> Result<()> {
    let (Some(ws_i), Some(we_i)) = (node.window_start, node.window_end) else { return Ok(()) };
    let Some(current) = state.state.take() else { return Ok(()) };
    let n_groups = node.group_by.expr().len();
    let key_cols: Vec<usize> = (0..n_groups).filter(|i| *i != ws_i && *i != we_i).collect();
    let starts = current
        .column(ws_i)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| internal("windowstart is not BIGINT"))?
        .clone();
    let ends = current
        .column(we_i)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| internal("windowend is not BIGINT"))?
        .clone();
    let fields: Vec<SortField> =
        key_cols.iter().map(|i| SortField::new(current.column(*i).data_type().clone())).collect();
    let keys = if fields.is_empty() {
        None
    } else {
        let cols: Vec<ArrayRef> = key_cols.iter().map(|i| current.column(*i).clone()).collect();
        Some(RowConverter::new(fields)?.convert_columns(&cols)?)
    };
    let mut by_key: HashMap<Box<[u8]>, Vec<usize>> = HashMap::new();
    for r in 0..current.num_rows() {
        let k: Box<[u8]> = keys.as_ref().map(|k| k.row(r).as_ref().into()).unwrap_or_default();
        by_key.entry(k).or_default().push(r);
    }
    let mut new_ws: Vec<i64> = starts.values().to_vec();
    let mut new_we: Vec<i64> = ends.values().to_vec();
    let mut merged = false;
    for rows in by_key.values_mut() {
        rows.sort_by_key(|r| (starts.value(*r), ends.value(*r)));
        let mut run: Vec<usize> = Vec::new();
        let (mut s, mut e) = (i64::MIN, i64::MIN);
        let mut flush = |run: &mut Vec<usize>, s: i64, e: i64, merged: &mut bool| {
            if run.len() > 1 {
                *merged = true;
            }
            for r in run.drain(..) {
                new_ws[r] = s;
                new_we[r] = e;
            }
        };
        for &r in rows.iter() {
            let (rs, re) = (starts.value(r), ends.value(r));
            if run.is_empty() || rs >= e {
                flush(&mut run, s, e, &mut merged);
                s = rs;
                e = re;
            } else {
                e = e.max(re);
            }
            run.push(r);
        }
        flush(&mut run, s, e, &mut merged);
    }
    if !merged {
        state.state = Some(current);
        return Ok(());
    }
    let mut cols = current.columns().to_vec();
    cols[ws_i] = Arc::new(Int64Array::from(new_ws));
    cols[we_i] = Arc::new(Int64Array::from(new_we));
    let relabelled = RecordBatch::try_new(current.schema(), cols)?;
    let reduced = run_aggregate(node, AggregateMode::PartialReduce, vec![relabelled], cx).await?;
    state.state = (reduced.num_rows() > 0).then_some(reduced);
    Ok(())
}

/// Final values of the groups a batch touched (EMIT CHANGES).
async fn changes(
    node: &AggregateNode,
    state: &AggState,
    touched: &RecordBatch,
    cx: &ExecContext,
) -> Result<Vec<Chunk>> {
    let Some(current) = &state.state else { return Ok(vec![]) };
    let n_groups = node.group_by.expr().len();
    let types: Vec<SortField> = (0..n_groups).map(|i| SortField::new(current.column(i).data_type().clone())).collect();
    let converter = RowConverter::new(types)?;
    let touched_rows = converter.convert_columns(&touched.columns()[..n_groups])?;
    let wanted: HashSet<Box<[u8]>> = (0..touched.num_rows()).map(|i| touched_rows.row(i).as_ref().into()).collect();
    let state_rows = converter.convert_columns(&current.columns()[..n_groups])?;
    let mask: BooleanArray =
        (0..current.num_rows()).map(|i| Some(wanted.contains(state_rows.row(i).as_ref()))).collect();
    let rows = filter_record_batch(current, &mask)?;
    let finals = run_aggregate(node, AggregateMode::Final, vec![rows], cx).await?;
    Ok(vec![Chunk::rows(sort_by_groups(node, finals)?)])
}

/// Orders result rows by window end, then group columns: stable output whatever the hash order.
fn sort_by_groups(node: &AggregateNode, batch: RecordBatch) -> Result<RecordBatch> {
    let n_groups = node.group_by.expr().len();
    if batch.num_rows() < 2 || n_groups == 0 {
        return Ok(batch);
    }
    let mut order: Vec<usize> = Vec::new();
    if let Some(e) = node.window_end {
        order.push(e);
    }
    order.extend((0..n_groups).filter(|i| Some(*i) != node.window_end));
    let cols: Vec<SortColumn> =
        order.iter().map(|i| SortColumn { values: batch.column(*i).clone(), options: None }).collect();
    let idx: UInt32Array = lexsort_to_indices(&cols, None)?;
    let cols = batch.columns().iter().map(|c| take(c, &idx, None)).collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), cols)?)
}
