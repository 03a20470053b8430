//! streamctl's SQL surface: DataFusion SQL plus ksqlDB's streaming clauses and functions.

pub mod dialect;
pub mod functions;
pub mod rewrite;
pub mod types;
