//! Sample data files (JSON Lines) as Kafka records: keys, partitions and timestamps as a
//! producer would give them. Loaded into the embedded broker, and read by bounded runs.

use std::collections::BTreeMap;

use super::codec::{partition_for_key, InputCodec, Record};
use crate::compile::{CompiledProject, CompiledSource};
use crate::formats::avro::MAGIC_BYTE;
use crate::formats::avro_json;
use crate::graph::NodeId;
use crate::project::config::ValueFormat;
use crate::registry::{id_for, SchemaRegistry, SchemaType};

/// Records of a sample data file (JSON Lines): keys from the source's key columns, partitions
/// as Kafka's default partitioner would pick (keyless: round robin), timestamps from the event
/// time column when it can be read, else the line number. Values of an Avro source are written
/// as a producer writes them: in the Confluent wire format, with the schema registered for the
/// topic in `registry` and its id (see [`sample_writer`]). `Err`: the registry cannot be read.
pub fn sample_records(
    cp: &CompiledProject,
    source: &str,
    text: &str,
    registry: &dyn SchemaRegistry,
) -> Result<Vec<Record>, String> {
    let Some(s) = cp.sources.get(source) else { return Ok(Vec::new()) };
    let partitions = s.partitions;
    let codec = InputCodec::for_input(cp, &NodeId::Source(source.to_string()));
    let writer = match &codec {
        Some(c) => sample_writer(cp, s, c, registry)?,
        None => None,
    };
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
        // Encoded as the topic holds its values (Avro sources: with the registered schema); a line
        // that cannot be encoded goes as it is, to be rejected as a bad record.
        let value = match (&writer, parsed.as_ref()) {
            (Some((id, schema)), Some(row)) => {
                let mut out = vec![MAGIC_BYTE];
                out.extend(id.to_be_bytes());
                avro_json::write(schema, row, &mut out).ok().map(|()| out)
            }
            (Some(_), None) => None,
            (None, _) => codec.as_ref().and_then(|c| c.value_from_json(line.as_bytes()).ok()),
        };
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
            key: key.map(bytes::Bytes::from),
            value: Some(value.unwrap_or_else(|| line.as_bytes().to_vec()).into()),
        });
        *off += 1;
    }
    Ok(out)
}

/// The schema an Avro source's sample values are written with, and its id in `registry`: the
/// latest version of the topic's value subject (`schema: {subject}`, else `<topic>-value`) in
/// `registry`; else the project's own (`schemas/`), registered in `registry` as a producer's
/// serializer does; else the declared columns' schema, likewise. `None`: not an Avro source.
pub fn sample_writer(
    cp: &CompiledProject,
    s: &CompiledSource,
    codec: &InputCodec,
    registry: &dyn SchemaRegistry,
) -> Result<Option<(i32, serde_json::Value)>, String> {
    let t = &s.decl.table;
    if t.format != ValueFormat::Avro {
        return Ok(None);
    }
    let subject = t.schema.as_ref().and_then(|sr| sr.subject.clone()).unwrap_or_else(|| format!("{}-value", t.topic));
    let latest = |r: &dyn SchemaRegistry| -> Result<Option<String>, String> {
        let versions = r.versions(&subject).map_err(|e| format!("source `{}`: {e}", s.decl.full_name()))?;
        Ok(versions.into_iter().rev().find(|v| v.schema_type == SchemaType::Avro).map(|v| v.schema))
    };
    let text = match latest(registry)? {
        Some(text) => text,
        None => match latest(super::codec::project_registry(cp).as_ref())? {
            Some(text) => text,
            None => match codec.own_avro_schema() {
                Some(own) => own,
                None => return Ok(None),
            },
        },
    };
    let id = id_for(registry, &subject, SchemaType::Avro, &text)
        .map_err(|e| format!("source `{}`: registering its schema (subject `{subject}`): {e}", s.decl.full_name()))?;
    let schema = serde_json::from_str(&text)
        .map_err(|e| format!("source `{}`: subject `{subject}` is not JSON: {e}", s.decl.full_name()))?;
    Ok(Some((id, schema)))
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
