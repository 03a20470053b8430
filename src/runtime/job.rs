//! One model's job: prepares input batches the way the model was planned (pseudo columns,
//! window bounds), drops late events, drives the operator tree, and snapshots its state.

use std::collections::{BTreeMap, VecDeque};
use std::io::Cursor;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;

use super::operators::{Chunk, ExecContext, Operator};
use crate::compile::CompiledModel;
use crate::graph::NodeId;
use crate::sql::dialect::{PseudoColumn, WindowKind, WindowSpec, WINDOWEND, WINDOWSTART};

/// What a push produced: output rows, and the input rows dropped because every window they
/// belong to had already closed (to be counted and dead-lettered by the caller).
#[derive(Debug, Default)]
pub struct Pushed {
    pub outputs: Vec<OutputBatch>,
    pub late: Vec<usize>,
}

/// Rows of the model's output, with the event time of each (the Kafka timestamp they are
/// produced with) and tombstone marks.
#[derive(Debug, Clone)]
pub struct OutputBatch {
    pub batch: RecordBatch,
    pub timestamps: Vec<i64>,
    pub deletes: Option<BooleanArray>,
}

#[derive(Debug)]
pub struct Job {
    pub model: String,
    root: Operator,
    /// Per input relation: the schema the model was planned against.
    inputs: BTreeMap<NodeId, SchemaRef>,
    window: Option<WindowSpec>,
    /// The relation the window applies to.
    windowed_input: Option<NodeId>,
    cx: ExecContext,
    watermark: i64,
    /// The model's output schema, and where its columns are in the operators' output.
    pub output_schema: SchemaRef,
    output_columns: Vec<usize>,
    rowtime_column: Option<usize>,
    window_end_column: Option<usize>,
}

fn err(msg: impl Into<String>) -> DataFusionError {
    DataFusionError::Execution(msg.into())
}

impl Job {
    pub fn new(model: &CompiledModel, task: Arc<TaskContext>) -> Result<Job> {
        let window = model.window();
        let job_schema = model.job.schema.clone();
        let output_columns = model
            .schema
            .fields()
            .iter()
            .map(|f| job_schema.index_of(f.name()).map_err(|_| err(format!("job output lacks column `{}`", f.name()))))
            .collect::<Result<Vec<_>>>()?;
        Ok(Job {
            output_columns,
            rowtime_column: model.rowtime_column,
            window_end_column: window.and_then(|_| model.schema.index_of(WINDOWEND).ok()),
            model: model.name.clone(),
            root: Operator::new(&model.job.root),
            inputs: model.input_schemas.clone(),
            window,
            windowed_input: model.windowed_input.clone(),
            cx: ExecContext {
                task,
                emit: model.emit,
                grace_ms: window.and_then(|w| w.grace_ms).unwrap_or(0),
                sessions: matches!(window, Some(WindowSpec { kind: WindowKind::Session { .. }, .. })),
            },
            watermark: i64::MIN,
            output_schema: model.schema.clone(),
        })
    }

    /// Pushes rows of relation `from`. `batch` holds the relation's columns by SQL name plus
    /// the pseudo columns `rowtime`, `rowpartition`, `rowoffset`; `deletes` marks tombstones.
    /// `row_watermarks[i]` is the watermark as it stood when row i arrived (after the rows
    /// before it): lateness is judged per record, so results do not depend on how records
    /// are cut into batches.
    pub async fn push(
        &mut self,
        from: &NodeId,
        batch: &RecordBatch,
        deletes: Option<BooleanArray>,
        row_watermarks: Option<&[i64]>,
    ) -> Result<Pushed> {
        let Some(schema) = self.inputs.get(from).cloned() else {
            return Ok(Pushed::default());
        };
        let mut late = Vec::new();
        let (batch, deletes) = if self.windowed_input.as_ref() == Some(from) {
            let (b, l) = self.assign_windows(batch, &schema, row_watermarks)?;
            late = l;
            (b, None)
        } else {
            (conform(batch, &schema, None)?, deletes)
        };
        let fallback_ts = batch
            .column_by_name(PseudoColumn::Rowtime.name())
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>().and_then(datafusion::arrow::compute::max))
            .unwrap_or(self.watermark.max(0));
        let chunk = Chunk { batch, deletes };
        let outputs = self.root.push(from, &chunk, &self.cx).await?;
        let outputs = outputs.into_iter().map(|c| self.to_output(c, fallback_ts)).collect::<Result<Vec<_>>>()?;
        Ok(Pushed { outputs: outputs.into_iter().filter(|o| o.batch.num_rows() > 0).collect(), late })
    }

    /// The model's columns of an operator output, and each row's event time: the hidden
    /// rowtime column (stream models), the window's last millisecond (windowed models), else
    /// `fallback`.
    fn to_output(&self, c: Chunk, fallback: i64) -> Result<OutputBatch> {
        let n = c.batch.num_rows();
        let timestamps: Vec<i64> = if let Some(i) = self.rowtime_column {
            let a = c
                .batch
                .column(i)
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| err("hidden rowtime is not BIGINT"))?;
            (0..n).map(|r| if a.is_valid(r) { a.value(r) } else { fallback }).collect()
        } else if let Some(we) = self.window_end_column {
            let cols = c.batch.project(&self.output_columns)?;
            let a =
                cols.column(we).as_any().downcast_ref::<Int64Array>().ok_or_else(|| err("windowend is not BIGINT"))?;
            (0..n).map(|r| if a.is_valid(r) { a.value(r) - 1 } else { fallback }).collect()
        } else {
            vec![fallback; n]
        };
        let projected = c.batch.project(&self.output_columns)?;
        // Same columns, the model's declared names and types, nullability as the data has it.
        let fields: Vec<Field> = self
            .output_schema
            .fields()
            .iter()
            .zip(projected.columns())
            .map(|(f, col)| f.as_ref().clone().with_nullable(f.is_nullable() || col.null_count() > 0))
            .collect();
        let batch = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            projected.columns().to_vec(),
            &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(n)),
        )?;
        Ok(OutputBatch { batch, timestamps, deletes: c.deletes })
    }

    /// Event time the job has closed windows up to (ms); `None` before any moved it.
    pub fn watermark(&self) -> Option<i64> {
        (self.watermark != i64::MIN).then_some(self.watermark)
    }

    /// Windows holding state that have not closed yet.
    pub async fn open_windows(&mut self) -> Result<usize> {
        self.root.open_windows(&self.cx).await
    }

    /// Moves the watermark forward (never back) and returns what closing windows emit.
    pub async fn advance_watermark(&mut self, wm: i64) -> Result<Vec<OutputBatch>> {
        if wm <= self.watermark {
            return Ok(vec![]);
        }
        self.watermark = wm;
        let out = self.root.advance(wm, &self.cx).await?;
        out.into_iter().filter(|c| c.batch.num_rows() > 0).map(|c| self.to_output(c, wm)).collect()
    }

    /// Window bounds for each row (one copy per window for HOPPING); copies in windows that are
    /// closed already are dropped, and rows left with no window are reported late.
    fn assign_windows(
        &self,
        batch: &RecordBatch,
        schema: &SchemaRef,
        row_watermarks: Option<&[i64]>,
    ) -> Result<(RecordBatch, Vec<usize>)> {
        let Some(w) = self.window else { return Ok((conform(batch, schema, None)?, vec![])) };
        let rowtime = batch
            .column_by_name(PseudoColumn::Rowtime.name())
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>().cloned())
            .ok_or_else(|| err("input batch has no rowtime"))?;
        // A session starts as the event's own window [t, t + gap); the aggregate merges
        // overlapping sessions of a key.
        let (size, step, aligned) = match w.kind {
            WindowKind::Tumbling { size_ms } => (size_ms, size_ms, true),
            WindowKind::Hopping { size_ms, advance_ms } => (size_ms, advance_ms, true),
            WindowKind::Session { gap_ms } => (gap_ms, gap_ms, false),
        };
        let copies = size / step;
        let closed_until = |i: usize| {
            let wm = row_watermarks.and_then(|w| w.get(i).copied()).unwrap_or(i64::MIN).max(self.watermark);
            if wm == i64::MIN {
                i64::MIN
            } else {
                wm.saturating_sub(self.cx.grace_ms)
            }
        };
        let mut take_idx = Vec::with_capacity(batch.num_rows());
        let mut starts = Vec::with_capacity(batch.num_rows());
        let mut late = Vec::new();
        for i in 0..batch.num_rows() {
            let t = rowtime.value(i);
            let closed_until = closed_until(i);
            let last_start = if aligned { t - t.rem_euclid(step) } else { t };
            let mut kept = false;
            for j in (0..copies).rev() {
                let start = last_start - j * step;
                if start + size <= closed_until {
                    continue;
                }
                take_idx.push(i as u32);
                starts.push(start);
                kept = true;
            }
            if !kept {
                late.push(i);
            }
        }
        let idx = UInt32Array::from(take_idx);
        let cols = batch.columns().iter().map(|c| take(c, &idx, None)).collect::<std::result::Result<Vec<_>, _>>()?;
        let taken = RecordBatch::try_new(batch.schema(), cols)?;
        let ends: Vec<i64> = starts.iter().map(|s| s + size).collect();
        let extra: Vec<(&str, ArrayRef)> =
            vec![(WINDOWSTART, Arc::new(Int64Array::from(starts))), (WINDOWEND, Arc::new(Int64Array::from(ends)))];
        Ok((conform(&taken, schema, Some(&extra))?, late))
    }

    /// The whole state, as bytes: every operator state as an Arrow IPC stream, and the watermark.
    pub async fn snapshot(&mut self) -> Result<Vec<u8>> {
        let states = self.root.snapshot(&self.cx).await?;
        let mut out = Vec::new();
        out.extend_from_slice(b"SCK1");
        out.extend_from_slice(&self.watermark.to_le_bytes());
        out.extend_from_slice(&(states.len() as u32).to_le_bytes());
        for s in states {
            match s {
                None => out.push(0),
                Some(batch) => {
                    out.push(1);
                    let mut buf = Vec::new();
                    {
                        let mut w = StreamWriter::try_new(&mut buf, &batch.schema())?;
                        w.write(&batch)?;
                        w.finish()?;
                    }
                    out.extend_from_slice(&(buf.len() as u64).to_le_bytes());
                    out.extend_from_slice(&buf);
                }
            }
        }
        Ok(out)
    }

    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        let bad = || err("checkpoint state is corrupt");
        if bytes.len() < 16 || &bytes[..4] != b"SCK1" {
            return Err(bad());
        }
        let wm = i64::from_le_bytes(bytes[4..12].try_into().map_err(|_| bad())?);
        let n = u32::from_le_bytes(bytes[12..16].try_into().map_err(|_| bad())?) as usize;
        let mut pos = 16;
        let mut states = VecDeque::new();
        for _ in 0..n {
            let flag = *bytes.get(pos).ok_or_else(bad)?;
            pos += 1;
            if flag == 0 {
                states.push_back(None);
                continue;
            }
            let len =
                u64::from_le_bytes(bytes.get(pos..pos + 8).ok_or_else(bad)?.try_into().map_err(|_| bad())?) as usize;
            pos += 8;
            let data = bytes.get(pos..pos + len).ok_or_else(bad)?;
            pos += len;
            let reader = StreamReader::try_new(Cursor::new(data), None)?;
            let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
            let batch = match batches.len() {
                0 => return Err(bad()),
                1 => batches.into_iter().next().ok_or_else(bad)?,
                _ => datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches)?,
            };
            states.push_back(Some(batch));
        }
        self.root.restore(&mut states)?;
        self.watermark = wm;
        Ok(())
    }
}

/// Builds a batch with exactly the columns of `schema`, taken by name from `batch` or `extra`.
fn conform(batch: &RecordBatch, schema: &SchemaRef, extra: Option<&[(&str, ArrayRef)]>) -> Result<RecordBatch> {
    let mut cols = Vec::with_capacity(schema.fields().len());
    let mut fields = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        let col = extra
            .and_then(|e| e.iter().find(|(n, _)| *n == f.name()).map(|(_, c)| c.clone()))
            .or_else(|| batch.column_by_name(f.name()).cloned())
            .ok_or_else(|| err(format!("input has no column `{}`", f.name())))?;
        let col =
            if col.data_type() == f.data_type() { col } else { datafusion::arrow::compute::cast(&col, f.data_type())? };
        fields.push(Field::new(f.name(), f.data_type().clone(), f.is_nullable() || col.null_count() > 0));
        cols.push(col);
    }
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        cols,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )?)
}
