//! Running jobs over a finite, in-memory list of records: the same decoding, operators and
//! watermark logic as on Kafka, without a broker. Used by `streamctl test` and by tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use datafusion::execution::TaskContext;

use super::codec::{partition_for_key, Record};
use super::driver::{BatchOutcome, MicroBatchDriver};
pub use super::error::RunError;
use super::samples::sample_records;
use crate::compile::CompiledProject;
use crate::graph::NodeId;
use crate::project::config::RelationKind;

/// A record that did not go through, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub input: NodeId,
    pub record: Record,
    pub reason: String,
}

#[derive(Debug, Clone, Default)]
pub struct RunResult {
    pub outputs: Vec<Record>,
    /// Records sent to the dead-letter topic (`on_error: dead_letter`, and late events).
    pub dead_letters: Vec<Rejected>,
    pub skipped: usize,
    pub late: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct BoundedOptions {
    /// Records per micro-batch (consecutive records of one input).
    pub batch_size: usize,
    /// Close every window at the end, as if the watermark reached the end of time.
    pub end_of_input: bool,
}

/// One step of a bounded run.
#[derive(Debug, Clone)]
pub enum Step {
    /// A record arrives.
    Record(NodeId, Record),
    /// The watermark is moved to this event time (ms), as if every input had got there.
    Watermark(i64),
}

/// Runs one model over records given in arrival order.
pub async fn run_model(
    cp: &CompiledProject,
    model: &str,
    records: &[(NodeId, Record)],
    opts: BoundedOptions,
    task: Arc<TaskContext>,
) -> Result<RunResult, RunError> {
    let steps: Vec<Step> = records.iter().map(|(i, r)| Step::Record(i.clone(), r.clone())).collect();
    run_model_steps(cp, model, &steps, opts, task).await
}

/// Runs one model over steps: records in arrival order, and explicit watermark moves.
pub async fn run_model_steps(
    cp: &CompiledProject,
    model: &str,
    steps: &[Step],
    opts: BoundedOptions,
    task: Arc<TaskContext>,
) -> Result<RunResult, RunError> {
    // Partitions never idle out within a bounded run: the watermark moves with the data.
    let mut driver = MicroBatchDriver::new(cp, model, task, Duration::from_secs(3600), None)?;
    let mut out = BatchOutcome::default();
    let mut i = 0;
    while i < steps.len() {
        let input = match &steps[i] {
            Step::Watermark(wm) => {
                i += 1;
                driver.advance_to(*wm, &mut out).await?;
                continue;
            }
            Step::Record(input, _) => input.clone(),
        };
        let mut batch: Vec<Record> = Vec::new();
        while i < steps.len() && batch.len() < opts.batch_size.max(1) {
            match &steps[i] {
                Step::Record(id, r) if *id == input => batch.push(r.clone()),
                _ => break,
            }
            i += 1;
        }
        driver.process(&input, &batch, &mut out).await?;
        driver.advance_watermark(&mut out).await?;
    }
    if opts.end_of_input {
        driver.advance_to(i64::MAX, &mut out).await?;
    }
    Ok(RunResult {
        outputs: out.outputs,
        dead_letters: out
            .dead_letters
            .into_iter()
            .map(|d| Rejected { input: d.input, record: d.record, reason: d.reason })
            .collect(),
        skipped: out.skipped as usize,
        late: out.late as usize,
    })
}

/// Runs every model of the project over the sample data of its sources, in dependency order,
/// feeding each model's output to its consumers. Returns each model's result.
pub async fn run_project_on_samples(
    cp: &CompiledProject,
    opts: BoundedOptions,
    task: Arc<TaskContext>,
) -> Result<BTreeMap<String, RunResult>, RunError> {
    let mut topics: BTreeMap<NodeId, Vec<Record>> = BTreeMap::new();
    for (name, s) in &cp.sources {
        let Some(path) = &s.decl.table.sample_data else { continue };
        let text = std::fs::read_to_string(cp.project.root.join(path))
            .map_err(|e| RunError::Setup(format!("cannot read sample data {path}: {e}")))?;
        let records = sample_records(cp, name, &text, super::codec::project_registry(cp).as_ref());
        topics.insert(NodeId::Source(name.clone()), records.map_err(RunError::Setup)?);
    }
    let mut results = BTreeMap::new();
    for id in cp.order() {
        let NodeId::Model(name) = &id else { continue };
        let Some(m) = cp.models.get(name) else { continue };
        // Arrival order: by timestamp across inputs, tables first on ties (a table row is
        // there before the events that refer to it).
        let mut records: Vec<(NodeId, Record)> = Vec::new();
        for input in &m.inputs {
            for r in topics.get(input).into_iter().flatten() {
                records.push((input.clone(), r.clone()));
            }
        }
        records.sort_by_key(|(i, r)| (r.timestamp, cp.relation_kind(i) != Some(RelationKind::Table)));
        let result = run_model(cp, name, &records, opts, task.clone()).await?;
        let partitions = m.resolved.partitions;
        let mut offsets: BTreeMap<i32, i64> = BTreeMap::new();
        let out: Vec<Record> = result
            .outputs
            .iter()
            .map(|r| {
                let p = r.key.as_deref().map_or(0, |k| partition_for_key(k, partitions));
                let o = offsets.entry(p).or_insert(0);
                let rec = Record { partition: p, offset: *o, ..r.clone() };
                *o += 1;
                rec
            })
            .collect();
        topics.insert(id.clone(), out);
        results.insert(name.clone(), result);
    }
    Ok(results)
}
