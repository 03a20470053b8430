//! The streaming runtime: each model runs as a job over Arrow micro-batches.
//!
//! * [`plan`] cuts a model's DataFusion plan into operators (planned once, at compile time).
//! * [`operators`] executes them: stateless steps, stream–table join, incremental aggregation.
//! * [`job`] feeds a model's inputs in, assigns windows, drops late events, checkpoints state.

pub mod bounded;
pub mod codec;
pub mod host;
pub mod job;
pub mod operators;
pub mod plan;
pub mod watermark;
pub mod worker;
