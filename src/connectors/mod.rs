//! Connections to the outside: Kafka (any cluster, or the broker embedded in the process).

pub mod embedded;
pub mod kafka;
