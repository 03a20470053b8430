//! Record encodings: bytes on a topic ↔ Arrow batches. JSON today; Avro and Debezium JSON will
//! be further implementations of the same decode/encode pair.

pub mod json;

/// A record that could not be decoded, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct BadRecord {
    /// Index of the record in the batch handed to the decoder.
    pub index: usize,
    pub reason: String,
}
