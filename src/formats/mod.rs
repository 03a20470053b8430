//! Record encodings: bytes on a topic ↔ Arrow batches: JSON, and Avro in the Confluent wire
//! format; Debezium change events
//! are unwrapped into JSON rows. Each decoder returns the good rows and the bad records with the reason.

pub mod avro;
pub mod debezium;
pub mod json;

/// A record that could not be decoded, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRecord {
    /// Index of the record in the batch handed to the decoder.
    pub index: usize,
    pub reason: String,
}
