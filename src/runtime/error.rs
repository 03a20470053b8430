//! How a job run fails.

use datafusion::error::DataFusionError;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("bad record on {topic} partition {partition} offset {offset}: {reason}")]
    BadRecord { topic: String, partition: i32, offset: i64, reason: String },
    #[error("{0}")]
    Engine(#[from] DataFusionError),
    #[error("{0}")]
    Setup(String),
    /// Another owner's transactional producer fenced this job's (exactly-once): the job must
    /// stop producing; whatever it had not committed is aborted.
    #[error("{0}")]
    Fenced(String),
}
