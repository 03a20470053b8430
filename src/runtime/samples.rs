//! Sample data files (JSON Lines) as Kafka records: keys, partitions and timestamps as a
//! producer would give them. Loaded into the embedded broker, and read by bounded runs.

use std::collections::BTreeMap;

use super::codec::{partition_for_key, InputCodec, Record};
use crate::compile::CompiledProject;
use crate::graph::NodeId;

/// Records of a sample data file (JSON Lines): keys from the source's key columns, partitions
/// as Kafka's default partitioner would pick (keyless: round robin), timestamps from the event
/// time column when it can be read, else the line number.
pub fn sample_records(cp: &CompiledProject, source: &str, text: &str) -> Vec<Record> {
    let Some(s) = cp.sources.get(source) else { return Vec::new() };
    let partitions = s.partitions;
    let codec = InputCodec::for_input(cp, &NodeId::Source(source.to_string()));
    let mut out = Vec::new();
    let mut next_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for (line_no, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Option<serde_json::Value> = serde_json::from_str(line).ok();
        // Keys as the topic holds them (`key_format`).
        let key = parsed.as_ref().and_then(|v| key_of(v, s));
        let key = match (key, &codec) {
            (Some(k), Some(c)) => c.key_from_json(&k).ok(),
            (k, _) => k,
        };
        let partition = match &key {
            Some(k) => partition_for_key(k, partitions),
            None => (line_no as i32) % partitions,
        };
        let timestamp = parsed.as_ref().and_then(|v| event_time_of(v, s)).unwrap_or(line_no as i64);
        let off = next_offset.entry(partition).or_insert(0);
        // Encoded as the topic holds its values (Avro sources: with the declared columns' schema);
        // a line that cannot be encoded goes as it is, to be rejected as a bad record.
        let value = codec.as_ref().and_then(|c| c.value_from_json(line.as_bytes()).ok());
        // `_headers` and columns read from headers become the record's headers.
        let headers = match (&codec, parsed.as_ref().and_then(serde_json::Value::as_object)) {
            (Some(c), Some(row)) => c.headers_from_json(row).unwrap_or_default(),
            _ => Vec::new(),
        };
        out.push(Record {
            headers,
            partition,
            offset: *off,
            timestamp,
            key,
            value: Some(value.unwrap_or_else(|| line.as_bytes().to_vec())),
        });
        *off += 1;
    }
    out
}

fn field<'a>(v: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    v.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v)
}

fn key_of(v: &serde_json::Value, s: &crate::compile::CompiledSource) -> Option<Vec<u8>> {
    match s.key.as_slice() {
        [] => None,
        [one] => serde_json::to_vec(field(v, one)?).ok(),
        many => {
            let mut obj = serde_json::Map::new();
            for k in many {
                obj.insert(k.clone(), field(v, k)?.clone());
            }
            serde_json::to_vec(&obj).ok()
        }
    }
}

fn event_time_of(v: &serde_json::Value, s: &crate::compile::CompiledSource) -> Option<i64> {
    let spec = s.event_time.as_ref()?;
    let value = field(v, &spec.column)?;
    match (value, &spec.chrono_format) {
        (serde_json::Value::String(t), Some(fmt)) => crate::sql::functions::parse_millis(t, fmt),
        (serde_json::Value::Number(n), _) => n.as_i64(),
        _ => None,
    }
}
