//! Record encodings: bytes on a topic ↔ Arrow batches: JSON, and Avro in the Confluent wire
//! format; Debezium change events
//! are unwrapped into JSON rows; record headers as columns. Each decoder returns the good rows and the bad records with the reason.

pub mod avro;
pub mod avro_json;
pub mod debezium;
pub mod headers;
pub mod json;
pub mod json_flat;
pub mod json_flat_encode;
pub mod keys;

/// How a source's event time is read from its records.
#[derive(Debug, Clone, PartialEq)]
pub struct EventTimeSpec {
    /// Column name in the SQL schema (normalized).
    pub column: String,
    /// chrono format, for string columns.
    pub chrono_format: Option<String>,
    pub allowed_lateness_ms: i64,
}

/// A record that could not be decoded, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRecord {
    /// Index of the record in the batch handed to the decoder.
    pub index: usize,
    pub reason: String,
}
