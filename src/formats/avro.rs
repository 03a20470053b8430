//! Avro values in the Confluent wire format ↔ Arrow, with arrow-avro.
//!
//! A value is the magic byte 0, the writer schema's registry id (4 bytes, big-endian) and the
//! Avro binary body. Writer schemas are fetched by id from the registry and cached; each one is
//! resolved (Avro schema resolution: fields by name, defaults, promotions) against a reader
//! schema made from the relation's declared columns, so records written with an older or newer
//! registered schema read into the same columns. A record that cannot be read (wrong magic
//! byte, unknown id, a writer schema that does not resolve, a truncated body, bytes after the
//! record) is a bad record, with the reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use arrow_avro::reader::{Decoder, ReaderBuilder};
use arrow_avro::schema::{
    AvroSchema, Fingerprint, FingerprintAlgorithm, FingerprintStrategy, SchemaStore, SCHEMA_METADATA_KEY,
};
use arrow_avro::writer::format::AvroSoeFormat;
use arrow_avro::writer::WriterBuilder;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use serde_json::{json, Value};

use super::json::JsonDecoder;
use super::BadRecord;
use crate::registry::file::content_id;
use crate::registry::{SchemaRegistry, SchemaType};

/// First byte of a Confluent wire-format value.
pub const MAGIC_BYTE: u8 = 0;
/// Magic byte and schema id.
const PREFIX_LEN: usize = 5;
/// Rows decoded before the decoder hands out a batch.
const ROWS_PER_FLUSH: usize = 4096;
/// Remembered failures (unknown ids, schemas that do not resolve) beyond which they are
/// forgotten: garbage ids must not grow memory without bound.
const MAX_REMEMBERED_FAILURES: usize = 1024;

/// Splits a Confluent wire-format value into the schema id and the Avro body.
pub fn split_frame(value: &[u8]) -> Result<(i32, &[u8]), String> {
    match value {
        [] => Err("empty value: not in the Avro wire format".into()),
        [m, ..] if *m != MAGIC_BYTE => {
            Err(format!("wrong magic byte 0x{m:02x}: Avro values in the Confluent wire format start with 0x00"))
        }
        v if v.len() < PREFIX_LEN => Err("truncated value: the schema id is incomplete".into()),
        v => Ok((i32::from_be_bytes([v[1], v[2], v[3], v[4]]), &v[PREFIX_LEN..])),
    }
}

/// A schema lookup that failed: `lasting` failures (unknown id, not Avro) are remembered;
/// others (the registry did not answer) are tried again for the next record.
#[derive(Debug, Clone)]
struct LookupError {
    reason: String,
    lasting: bool,
}

/// Writer schemas by registry id, from the registry (and schemas the project itself generates),
/// cached for the life of the codec.
pub struct SchemaSource {
    registry: Option<Arc<dyn SchemaRegistry>>,
    cache: Mutex<HashMap<i32, Result<Arc<str>, String>>>,
}

impl std::fmt::Debug for SchemaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaSource").field("registry", &self.registry.as_ref().map(|r| r.describe())).finish()
    }
}

impl SchemaSource {
    pub fn new(registry: Option<Arc<dyn SchemaRegistry>>) -> SchemaSource {
        SchemaSource { registry, cache: Mutex::new(HashMap::new()) }
    }

    fn cache(&self) -> MutexGuard<'_, HashMap<i32, Result<Arc<str>, String>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a schema known under an id without asking the registry.
    pub fn insert(&self, id: i32, schema: &str) {
        self.cache().insert(id, Ok(Arc::from(schema)));
    }

    /// The writer schema with this id (from the cache, else the registry).
    pub fn avro_schema(&self, id: i32) -> Result<String, String> {
        self.schema(id).map(|s| s.to_string()).map_err(|e| e.reason)
    }

    fn schema(&self, id: i32) -> Result<Arc<str>, LookupError> {
        if let Some(hit) = self.cache().get(&id) {
            return hit.clone().map_err(|reason| LookupError { reason, lasting: true });
        }
        let found = match &self.registry {
            None => Err(format!("unknown schema id {id} (no schema registry to ask)")),
            Some(r) => match r.schema_by_id(id) {
                Ok(Some(s)) if s.schema_type == SchemaType::Avro => Ok(Arc::from(s.schema.as_str())),
                Ok(Some(s)) => Err(format!("schema id {id} is a {} schema, not Avro", s.schema_type)),
                Ok(None) => Err(format!("unknown schema id {id} in {}", r.describe())),
                Err(e) => return Err(LookupError { reason: e.to_string(), lasting: false }),
            },
        };
        let mut cache = self.cache();
        if cache.len() >= MAX_REMEMBERED_FAILURES {
            cache.retain(|_, s| s.is_ok());
        }
        cache.insert(id, found.clone());
        found.map_err(|reason| LookupError { reason, lasting: true })
    }
}

/// The Avro type of a column of this SQL type (without null).
pub(crate) fn avro_type(dt: &DataType) -> Result<Value, String> {
    use DataType::*;
    Ok(match dt {
        Int8 | Int16 | Int32 | UInt8 | UInt16 => json!("int"),
        Int64 | UInt32 | UInt64 => json!("long"),
        Float16 | Float32 => json!("float"),
        Float64 => json!("double"),
        Boolean => json!("boolean"),
        Utf8 | LargeUtf8 | Utf8View => json!("string"),
        Binary | LargeBinary | BinaryView => json!("bytes"),
        Date32 | Date64 => json!({"type": "int", "logicalType": "date"}),
        Timestamp(TimeUnit::Second | TimeUnit::Millisecond, _) => {
            json!({"type": "long", "logicalType": "timestamp-millis"})
        }
        Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, _) => {
            json!({"type": "long", "logicalType": "timestamp-micros"})
        }
        Decimal128(p, s) => json!({"type": "bytes", "logicalType": "decimal", "precision": p, "scale": s}),
        List(f) | LargeList(f) => json!({"type": "array", "items": ["null", avro_type(f.data_type())?]}),
        other => return Err(format!("type {other} has no Avro mapping yet")),
    })
}

/// The Arrow type arrow-avro encodes for the Avro type `avro_type(dt)`.
fn canonical_type(dt: &DataType) -> DataType {
    use DataType::*;
    match dt {
        Int8 | Int16 | UInt8 | UInt16 => Int32,
        UInt32 | UInt64 => Int64,
        Float16 => Float32,
        LargeUtf8 | Utf8View => Utf8,
        LargeBinary | BinaryView => Binary,
        Date64 => Date32,
        Timestamp(TimeUnit::Second, tz) => Timestamp(TimeUnit::Millisecond, tz.clone()),
        Timestamp(TimeUnit::Nanosecond, tz) => Timestamp(TimeUnit::Microsecond, tz.clone()),
        List(f) | LargeList(f) => List(Arc::new(Field::new(f.name(), canonical_type(f.data_type()), true))),
        other => other.clone(),
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A record field that may be null and defaults to null, so that a writer without it resolves.
fn nullable_field(name: &str, dt: &DataType) -> Result<Value, String> {
    if !valid_name(name) {
        return Err(format!("column `{name}` is not a valid Avro field name (letters, digits, _)"));
    }
    let t = avro_type(dt).map_err(|e| format!("column `{name}`: {e}"))?;
    Ok(json!({"name": name, "type": ["null", t], "default": null}))
}

/// The Avro schema streamctl registers for a model's output (and writes its values with): a
/// record named after the model, one field per column, each nullable with default null (so
/// that adding or dropping a column stays compatible in both directions).
pub fn output_schema(record_name: &str, schema: &Schema) -> Result<String, String> {
    let name: String =
        record_name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    let name = if valid_name(&name) { name } else { format!("_{name}") };
    let fields =
        schema.fields().iter().map(|f| nullable_field(f.name(), f.data_type())).collect::<Result<Vec<_>, _>>()?;
    Ok(serde_json::to_string_pretty(&json!({"type": "record", "name": name, "fields": fields})).unwrap_or_default())
}

/// Decodes Confluent-framed Avro values into batches with the relation's columns (SQL names).
#[derive(Clone)]
pub struct AvroDecoder {
    /// The relation's columns under their SQL names, all nullable.
    sql_schema: SchemaRef,
    /// Reader schema fields: the columns under their names in the data.
    reader_fields: Vec<Value>,
    schemas: Arc<SchemaSource>,
    /// The declared columns as an Avro record, and its file-registry id: the writer schema of
    /// values made from JSON rows (test rows, sample data).
    own_schema: Arc<(i32, String, SchemaRef)>,
    /// One decoder per writer schema id; an `Err` is why that schema cannot be read.
    decoders: Arc<Mutex<HashMap<i32, Result<Decoder, String>>>>,
}

impl std::fmt::Debug for AvroDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroDecoder").field("sql_schema", &self.sql_schema).field("schemas", &self.schemas).finish()
    }
}

/// Rows decoded so far in one call: batches (SQL schema) and, per row, its record index.
struct Collected {
    batches: Vec<RecordBatch>,
    kept: Vec<usize>,
    bad: Vec<BadRecord>,
}

/// The reader schema's fields for these columns (`data_names[i]`: column i's name in the data);
/// an error names a column that has no Avro mapping.
pub fn reader_fields(sql_schema: &Schema, data_names: &[String]) -> Result<Vec<Value>, String> {
    sql_schema.fields().iter().zip(data_names).map(|(f, n)| nullable_field(n, f.data_type())).collect()
}

impl AvroDecoder {
    /// `data_names[i]` is how column i of `sql_schema` is named in the Avro records;
    /// `record_name` names the record of values made from JSON rows.
    pub fn new(
        record_name: &str,
        sql_schema: SchemaRef,
        data_names: &[String],
        schemas: Arc<SchemaSource>,
    ) -> Result<AvroDecoder, String> {
        let reader_fields = reader_fields(&sql_schema, data_names)?;
        let data_schema = Arc::new(Schema::new(
            sql_schema
                .fields()
                .iter()
                .zip(data_names)
                .map(|(f, n)| Field::new(n, f.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let own = output_schema(record_name, &data_schema)?;
        let own_id = content_id(SchemaType::Avro, &own);
        schemas.insert(own_id, &own);
        let sql_fields: Vec<Field> =
            sql_schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
        Ok(AvroDecoder {
            sql_schema: Arc::new(Schema::new(sql_fields)),
            reader_fields,
            schemas,
            own_schema: Arc::new((own_id, own, data_schema)),
            decoders: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The schema of the declared columns, which values made from JSON rows are written with.
    pub fn own_schema(&self) -> &str {
        &self.own_schema.1
    }

    /// A JSON object (fields named as in the data) as a framed Avro value, written with the
    /// schema of the declared columns.
    pub fn encode_json(&self, json: &[u8]) -> Result<Vec<u8>, String> {
        let (id, schema, data_schema) = self.own_schema.as_ref();
        let names: Vec<String> = data_schema.fields().iter().map(|f| f.name().clone()).collect();
        let (batch, _, bad) = JsonDecoder::new(self.sql_schema.clone(), &names).decode(&[json]);
        if let Some(b) = bad.into_iter().next() {
            return Err(b.reason);
        }
        let batch = RecordBatch::try_new(data_schema.clone(), batch.columns().to_vec()).map_err(|e| e.to_string())?;
        let mut values = AvroEncoder::new(*id, schema, data_schema).encode(&batch).map_err(|e| e.to_string())?;
        values.pop().ok_or_else(|| "no row".to_string())
    }

    /// A framed Avro value as a JSON object with the SQL column names.
    pub fn decode_to_json(&self, value: &[u8]) -> Result<serde_json::Map<String, Value>, String> {
        let (batch, _, bad) = self.decode(&[value]);
        if let Some(b) = bad.into_iter().next() {
            return Err(b.reason);
        }
        let rows = super::json::encode_rows(&batch).map_err(|e| e.to_string())?;
        let row = rows.first().ok_or("no row")?;
        match serde_json::from_slice(row).map_err(|e| e.to_string())? {
            Value::Object(m) => Ok(m),
            _ => Err("not an object".into()),
        }
    }

    /// A decoder from the writer schema `id` to the declared columns.
    fn build(&self, id: i32) -> Result<Decoder, LookupError> {
        let writer = self.schemas.schema(id)?;
        let lasting = |reason: String| LookupError { reason, lasting: true };
        let w: Value =
            serde_json::from_str(&writer).map_err(|e| lasting(format!("schema id {id} is not valid JSON: {e}")))?;
        // Schema resolution matches records by name: the reader takes the writer's.
        let (Some("record"), Some(name)) = (w.get("type").and_then(Value::as_str), w.get("name")) else {
            return Err(lasting(format!("schema id {id} is not an Avro record")));
        };
        let mut reader = json!({"type": "record", "name": name, "fields": self.reader_fields});
        if let Some(ns) = w.get("namespace") {
            reader["namespace"] = ns.clone();
        }
        let mut store = SchemaStore::new_with_type(FingerprintAlgorithm::Id);
        let fp = Fingerprint::Id(id as u32);
        store
            .set(fp, AvroSchema::new(writer.to_string()))
            .map_err(|e| lasting(format!("schema id {id} is not a valid Avro schema: {e}")))?;
        ReaderBuilder::new()
            .with_batch_size(ROWS_PER_FLUSH)
            .with_reader_schema(AvroSchema::new(reader.to_string()))
            .with_writer_schema_store(store)
            .with_active_fingerprint(fp)
            .build_decoder()
            .map_err(|e| lasting(format!("schema id {id} cannot be read as the declared columns: {e}")))
    }

    /// Decodes records (one framed value each). Returns the good rows and the bad records;
    /// `kept[i]` is the index in `records` of row i.
    pub fn decode(&self, records: &[&[u8]]) -> (RecordBatch, Vec<usize>, Vec<BadRecord>) {
        let mut decoders = self.decoders.lock().unwrap_or_else(|e| e.into_inner());
        let mut done = Collected { batches: Vec::new(), kept: Vec::new(), bad: Vec::new() };
        // Records decoded into the current decoder since its last flush.
        let mut pending: Vec<usize> = Vec::new();
        let mut current: Option<i32> = None;
        for (i, value) in records.iter().enumerate() {
            let id = match split_frame(value) {
                Ok((id, _)) => id,
                Err(reason) => {
                    done.bad.push(BadRecord { index: i, reason });
                    continue;
                }
            };
            if current != Some(id) {
                if let Some(c) = current {
                    self.flush(&mut decoders, c, &mut pending, records, &mut done);
                }
                current = Some(id);
            }
            if let std::collections::hash_map::Entry::Vacant(slot) = decoders.entry(id) {
                match self.build(id) {
                    Ok(d) => {
                        slot.insert(Ok(d));
                    }
                    Err(e) if e.lasting => {
                        slot.insert(Err(e.reason));
                    }
                    Err(e) => {
                        done.bad.push(BadRecord { index: i, reason: e.reason });
                        continue;
                    }
                }
            }
            let decoder = match decoders.get_mut(&id) {
                Some(Ok(d)) => d,
                Some(Err(reason)) => {
                    done.bad.push(BadRecord { index: i, reason: reason.clone() });
                    continue;
                }
                None => continue,
            };
            match decode_one(decoder, value) {
                Ok(()) => {
                    pending.push(i);
                    if decoder.batch_is_full() {
                        self.flush(&mut decoders, id, &mut pending, records, &mut done);
                    }
                }
                Err(reason) => {
                    done.bad.push(BadRecord { index: i, reason });
                    // The failed record may have left a partial row: start over with a new
                    // decoder and the records that were good.
                    self.rebuild(&mut decoders, id, &mut pending, records, &mut done);
                }
            }
        }
        if let Some(c) = current {
            self.flush(&mut decoders, c, &mut pending, records, &mut done);
        }
        if decoders.len() > MAX_REMEMBERED_FAILURES {
            decoders.retain(|_, d| d.is_ok());
        }
        done.bad.sort_by_key(|b| b.index);
        let batch = concat_batches(&self.sql_schema, &done.batches)
            .unwrap_or_else(|_| RecordBatch::new_empty(self.sql_schema.clone()));
        (batch, done.kept, done.bad)
    }

    fn rebuild(
        &self,
        decoders: &mut HashMap<i32, Result<Decoder, String>>,
        id: i32,
        pending: &mut Vec<usize>,
        records: &[&[u8]],
        done: &mut Collected,
    ) {
        let again = std::mem::take(pending);
        match self.build(id) {
            Ok(mut d) => {
                for i in again {
                    match decode_one(&mut d, records[i]) {
                        Ok(()) => pending.push(i),
                        Err(reason) => done.bad.push(BadRecord { index: i, reason }),
                    }
                }
                decoders.insert(id, Ok(d));
            }
            Err(e) => {
                decoders.remove(&id);
                done.bad.extend(again.into_iter().map(|index| BadRecord { index, reason: e.reason.clone() }));
            }
        }
    }

    fn flush(
        &self,
        decoders: &mut HashMap<i32, Result<Decoder, String>>,
        id: i32,
        pending: &mut Vec<usize>,
        records: &[&[u8]],
        done: &mut Collected,
    ) {
        if pending.is_empty() {
            return;
        }
        let Some(Ok(decoder)) = decoders.get_mut(&id) else { return };
        let converted = decoder
            .flush()
            .map_err(|e| e.to_string())
            .and_then(|b| b.ok_or_else(|| "the decoder returned no rows".to_string()))
            .and_then(|b| self.to_sql(&b).map_err(|e| e.to_string()));
        match converted {
            Ok(b) if b.num_rows() == pending.len() => {
                done.batches.push(b);
                done.kept.append(pending);
            }
            other => {
                let reason = match other {
                    Err(e) => format!("cannot convert the decoded rows: {e}"),
                    Ok(b) => format!("{} records gave {} rows", pending.len(), b.num_rows()),
                };
                decoders.remove(&id);
                let again = std::mem::take(pending);
                if again.len() == 1 {
                    done.bad.extend(again.into_iter().map(|index| BadRecord { index, reason: reason.clone() }));
                    return;
                }
                // One record spoilt the rows (a string that is not UTF-8 fails only here): each
                // record again on its own, so that the good ones still go through.
                for i in again {
                    match self.build(id) {
                        Ok(mut d) => match decode_one(&mut d, records[i]) {
                            Ok(()) => {
                                decoders.insert(id, Ok(d));
                                pending.push(i);
                                self.flush(decoders, id, pending, records, done);
                            }
                            Err(reason) => done.bad.push(BadRecord { index: i, reason }),
                        },
                        Err(e) => done.bad.push(BadRecord { index: i, reason: e.reason }),
                    }
                }
            }
        }
    }

    /// The decoded columns (Avro field names, arrow-avro's types) as the SQL columns.
    fn to_sql(&self, batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
        let cols = batch
            .columns()
            .iter()
            .zip(self.sql_schema.fields())
            .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { cast(c, f.data_type()) })
            .collect::<Result<Vec<ArrayRef>, _>>()?;
        RecordBatch::try_new(self.sql_schema.clone(), cols)
    }
}

/// Decodes one framed value as exactly one row.
fn decode_one(decoder: &mut Decoder, value: &[u8]) -> Result<(), String> {
    let before = decoder.capacity();
    let consumed = decoder.decode(value).map_err(|e| format!("invalid or truncated Avro body ({e})"))?;
    let rows = before - decoder.capacity();
    if rows == 1 && consumed == value.len() {
        Ok(())
    } else if rows == 0 {
        Err("invalid or truncated Avro body (it ends before the record does)".into())
    } else {
        Err("bytes after the Avro record".into())
    }
}

/// Encodes rows as Confluent-framed Avro values with a registered schema.
#[derive(Debug, Clone)]
pub struct AvroEncoder {
    schema_id: i32,
    /// The output columns as arrow-avro encodes them, with the Avro schema in the metadata.
    arrow_schema: SchemaRef,
}

impl AvroEncoder {
    /// `avro_schema` must be `output_schema` of the same columns (what `apply` registered).
    pub fn new(schema_id: i32, avro_schema: &str, columns: &Schema) -> AvroEncoder {
        let fields: Vec<Field> =
            columns.fields().iter().map(|f| Field::new(f.name(), canonical_type(f.data_type()), true)).collect();
        let metadata = HashMap::from([(SCHEMA_METADATA_KEY.to_string(), avro_schema.to_string())]);
        AvroEncoder { schema_id, arrow_schema: Arc::new(Schema::new_with_metadata(fields, metadata)) }
    }

    /// One framed value per row.
    pub fn encode(&self, batch: &RecordBatch) -> Result<Vec<Vec<u8>>, ArrowError> {
        if batch.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let cols = batch
            .columns()
            .iter()
            .zip(self.arrow_schema.fields())
            .map(|(c, f)| if c.data_type() == f.data_type() { Ok(c.clone()) } else { cast(c, f.data_type()) })
            .collect::<Result<Vec<ArrayRef>, _>>()?;
        let plain = Arc::new(Schema::new(self.arrow_schema.fields().clone()));
        let batch = RecordBatch::try_new(plain, cols)?;
        let mut encoder = WriterBuilder::new(self.arrow_schema.as_ref().clone())
            .with_fingerprint_strategy(FingerprintStrategy::Id(self.schema_id as u32))
            .build_encoder::<AvroSoeFormat>()
            .map_err(ArrowError::from)?;
        encoder.encode(&batch).map_err(ArrowError::from)?;
        Ok(encoder.flush().iter().map(|row| row.to_vec()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Float64Array, Int64Array, StringArray};

    const V1: &str = r#"{"type":"record","name":"Logon","namespace":"soe","fields":[
        {"name":"LOGON_ID","type":"long"},{"name":"CUSTOMER_ID","type":"long"}]}"#;
    const V2: &str = r#"{"type":"record","name":"Logon","namespace":"soe","fields":[
        {"name":"LOGON_ID","type":"long"},{"name":"CUSTOMER_ID","type":"long"},
        {"name":"CHANNEL","type":"string","default":"web"}]}"#;

    fn zigzag(mut out: Vec<u8>, n: i64) -> Vec<u8> {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    fn framed(id: i32, body: Vec<u8>) -> Vec<u8> {
        let mut v = vec![MAGIC_BYTE];
        v.extend(id.to_be_bytes());
        v.extend(body);
        v
    }

    fn v1(logon: i64, customer: i64) -> Vec<u8> {
        framed(1, zigzag(zigzag(Vec::new(), logon), customer))
    }

    fn v2(logon: i64, customer: i64, channel: &str) -> Vec<u8> {
        let mut body = zigzag(zigzag(Vec::new(), logon), customer);
        body = zigzag(body, channel.len() as i64);
        body.extend(channel.as_bytes());
        framed(2, body)
    }

    fn decoder(columns: &[(&str, DataType)]) -> AvroDecoder {
        let source = Arc::new(SchemaSource::new(None));
        source.insert(1, V1);
        source.insert(2, V2);
        let sql =
            Schema::new(columns.iter().map(|(n, t)| Field::new(n.to_lowercase(), t.clone(), true)).collect::<Vec<_>>());
        let names: Vec<String> = columns.iter().map(|(n, _)| n.to_string()).collect();
        AvroDecoder::new("T", Arc::new(sql), &names, source).unwrap()
    }

    #[test]
    fn resolves_old_and_new_writer_schemas_into_the_declared_columns() {
        let d =
            decoder(&[("LOGON_ID", DataType::Int64), ("CHANNEL", DataType::Utf8), ("CUSTOMER_ID", DataType::Int64)]);
        let recs = [v1(1, 10), v2(2, 20, "app"), v1(3, 30)];
        let refs: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
        let (b, kept, bad) = d.decode(&refs);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(kept, vec![0, 1, 2]);
        assert_eq!(b.schema().field(0).name(), "logon_id");
        let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.values(), &[1, 2, 3]);
        let channel = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        // v1 has no CHANNEL: the reader's default (null); v2 carries it.
        assert!(channel.is_null(0));
        assert_eq!(channel.value(1), "app");
        let customers = b.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(customers.values(), &[10, 20, 30]);
    }

    #[test]
    fn bad_records_are_isolated_with_the_reason() {
        let d = decoder(&[("LOGON_ID", DataType::Int64), ("CUSTOMER_ID", DataType::Int64)]);
        let mut truncated = v1(2, 1_000_000);
        truncated.pop();
        let mut trailing = v1(5, 50);
        trailing.push(7);
        let recs = [
            v1(1, 10),
            truncated,
            b"{\"LOGON_ID\": 3}".to_vec(),
            framed(99, vec![2, 4]),
            v1(4, 40),
            trailing,
            vec![0, 0],
            v1(6, 60),
        ];
        let refs: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
        let (b, kept, bad) = d.decode(&refs);
        assert_eq!(kept, vec![0, 4, 7]);
        let ids = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
        assert_eq!(ids.values(), &[1, 4, 6]);
        let reasons: Vec<(usize, &str)> = bad.iter().map(|b| (b.index, b.reason.as_str())).collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert_eq!(reasons[0].0, 1);
        assert!(reasons[0].1.starts_with("invalid or truncated Avro body"), "{reasons:?}");
        assert!(reasons[1].1.starts_with("wrong magic byte 0x7b"), "{reasons:?}");
        assert!(reasons[2].1.starts_with("unknown schema id 99"), "{reasons:?}");
        assert_eq!(reasons[3].0, 5);
        assert_eq!(reasons[4], (6, "truncated value: the schema id is incomplete"));
    }

    #[test]
    fn a_writer_schema_that_does_not_resolve_is_a_bad_record() {
        // LOGON_ID declared as a STRING: a long cannot be read as a string.
        let d = decoder(&[("LOGON_ID", DataType::Utf8)]);
        let recs = [v1(1, 10)];
        let refs: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
        let (b, kept, bad) = d.decode(&refs);
        assert_eq!(b.num_rows(), 0);
        assert!(kept.is_empty());
        assert!(bad[0].reason.contains("schema id 1 cannot be read"), "{}", bad[0].reason);
    }

    /// Mutated frames (bytes flipped, cut, appended, random) never panic, and every record
    /// is either a row or a bad record; the good records around them still decode.
    #[test]
    fn mutated_frames_never_panic_and_every_record_is_accounted_for() {
        let d =
            decoder(&[("LOGON_ID", DataType::Int64), ("CHANNEL", DataType::Utf8), ("CUSTOMER_ID", DataType::Int64)]);
        // xorshift64: deterministic, so a failure can be replayed.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..2_000 {
            let mut recs: Vec<Vec<u8>> = Vec::new();
            for j in 0..(1 + next() % 8) {
                let mut v = if j % 2 == 0 { v1(next() as i64, 7) } else { v2(3, next() as i64 % 1000, "chan") };
                match next() % 6 {
                    0 => {
                        let at = (next() as usize) % v.len();
                        v[at] ^= 1 << (next() % 8);
                    }
                    1 => v.truncate((next() as usize) % v.len()),
                    2 => v.extend((0..next() % 5).map(|_| next() as u8)),
                    3 => v = (0..next() % 12).map(|_| next() as u8).collect(),
                    _ => {}
                }
                recs.push(v);
            }
            let refs: Vec<&[u8]> = recs.iter().map(Vec::as_slice).collect();
            let (b, kept, bad) = d.decode(&refs);
            assert_eq!(b.num_rows(), kept.len(), "round {round}");
            let mut all: Vec<usize> = kept.iter().copied().chain(bad.iter().map(|b| b.index)).collect();
            all.sort_unstable();
            assert_eq!(all, (0..recs.len()).collect::<Vec<_>>(), "round {round}: {bad:?}");
        }
        // The decoder is still sound after all that.
        let good = [v1(1, 2)];
        let refs: Vec<&[u8]> = good.iter().map(Vec::as_slice).collect();
        assert_eq!(d.decode(&refs).1, vec![0]);
    }

    #[test]
    fn encodes_what_it_decodes() {
        let cols = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8View, true),
            Field::new("total", DataType::Float64, true),
        ]);
        let schema = output_schema("orders-agg", &cols).unwrap();
        assert!(schema.contains("\"name\": \"orders_agg\""), "{schema}");
        let batch = RecordBatch::try_new(
            Arc::new(cols.clone()),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(datafusion::arrow::array::StringViewArray::from(vec![Some("a"), None])),
                Arc::new(Float64Array::from(vec![Some(1.5), None])),
            ],
        )
        .unwrap();
        let values = AvroEncoder::new(42, &schema, &cols).encode(&batch).unwrap();
        assert_eq!(values.len(), 2);
        assert_eq!(&values[0][..5], &[0, 0, 0, 0, 42]);
        let source = Arc::new(SchemaSource::new(None));
        source.insert(42, &schema);
        let sql = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("total", DataType::Float64, true),
        ]);
        let d = AvroDecoder::new("T", Arc::new(sql), &["id".into(), "name".into(), "total".into()], source).unwrap();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let (b, kept, bad) = d.decode(&refs);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(kept, vec![0, 1]);
        let names = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(names.value(0), "a");
        assert!(names.is_null(1));
        let totals = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
        assert_eq!(totals.value(0), 1.5);
    }
}
