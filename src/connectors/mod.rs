//! Connections to the outside: Kafka (any cluster, or the broker embedded in the process).
//!
//! * [`kafka`]: clients from a resolved target, topic creation.
//! * [`producer`] / [`consumer`]: producing with every delivery checked; the consumers jobs and
//!   readers use.
//! * [`task_input`]: the input consumers a thread's tasks share, each task reading its own queue.
//! * [`lease`]: who holds something (a job, an apply lock), recorded in a topic.
//! * [`embedded`]: librdkafka's mock cluster inside the process.

pub mod consumer;
pub mod embedded;
pub mod kafka;
pub(crate) mod lease;
pub mod producer;
pub mod task_input;
