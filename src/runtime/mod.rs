//! The streaming runtime: each model runs as a job over Arrow micro-batches.
//!
//! * [`operators`] executes the job a model was compiled into
//!   ([`crate::compile::streaming::job`]): stateless steps, stream–table join, incremental aggregation.
//! * [`job`] feeds a model's inputs in, assigns windows, drops late events, snapshots state.
//! * [`driver`] is the micro-batch loop both shells share: decode, bad records, watermark,
//!   push, late records, window closing.
//! * [`worker`] is the Kafka shell (poll, produce, checkpoint), [`bounded`] the in-memory one
//!   behind `streamctl test`.
//! * [`metrics`]: Prometheus metrics of the hosted jobs, served by `run --metrics-addr`.
//! * [`checkpoint`] is a job's checkpoint topic (state, offsets, counters per task).
//! * [`tasks`] cuts a job into tasks ([`repartition`]: the two stages of a GROUP BY on other
//!   columns than the input's key), [`group`] has Kafka's consumer group assign them to workers,
//!   [`runner`] runs them on a worker's threads, [`ownership`] records who holds each.

pub mod bounded;
pub(crate) mod checkpoint;
pub mod codec;
pub(crate) mod dead_letters;
pub mod driver;
mod error;
pub mod group;
pub mod job;
pub(crate) mod metrics;
pub(crate) mod operators;
mod ownership;
pub(crate) mod repartition;
pub mod runner;
pub(crate) mod samples;
pub mod tasks;
pub mod watermark;
pub mod worker;

pub use error::RunError;

use std::sync::Arc;

use datafusion::execution::TaskContext;
use datafusion::prelude::{SessionConfig, SessionContext};

/// The DataFusion context jobs execute in: one partition, and partial aggregation always on
/// (DataFusion would otherwise stop pre-aggregating a high-cardinality input after 100k rows,
/// and partial states are what a job keeps).
pub fn task_context() -> Arc<TaskContext> {
    let mut config = SessionConfig::new().with_target_partitions(1);
    config.options_mut().execution.skip_partial_aggregation_probe_ratio_threshold = 1.0;
    SessionContext::new_with_config(config).task_ctx()
}
