//! JSON values ↔ Arrow, with arrow-json. A micro-batch is decoded in one pass (by
//! [`FlatJsonDecoder`] when its columns are numbers, booleans and strings); when that pass
//! fails, the batch is decoded record by record so that the bad records are isolated and
//! reported (with the reason) and the good ones still go through.

use bytes::Bytes;
use std::sync::Arc;

use arrow_json::writer::{LineDelimited, WriterBuilder};
use arrow_json::ReaderBuilder;
use datafusion::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;

use super::json_flat::FlatJsonDecoder;
use super::{BadRecord, EventTimeSpec};
use crate::sql::functions::parse_millis;

/// Decodes JSON objects whose field names are the source's column names (any case) into
/// batches whose columns carry the SQL (lowercase) names.
#[derive(Debug, Clone)]
pub struct JsonDecoder {
    /// Field names as they appear in the data.
    data_schema: SchemaRef,
    /// The same fields under their SQL names.
    sql_schema: SchemaRef,
    /// The direct decoder, when every column has a type it reads.
    flat: Option<FlatJsonDecoder>,
}

impl JsonDecoder {
    /// `data_names[i]` is how column i of `sql_schema` is named in the JSON.
    pub fn new(sql_schema: SchemaRef, data_names: &[String]) -> JsonDecoder {
        let fields: Vec<Field> = sql_schema
            .fields()
            .iter()
            .zip(data_names)
            // Values may be missing or null in the data whatever the declaration says: decode
            // as nullable, the contract is checked downstream.
            .map(|(f, n)| Field::new(n, f.data_type().clone(), true))
            .collect();
        let sql_fields: Vec<Field> =
            sql_schema.fields().iter().map(|f| f.as_ref().clone().with_nullable(true)).collect();
        let sql_schema = Arc::new(Schema::new(sql_fields));
        let flat = FlatJsonDecoder::new(sql_schema.clone(), data_names);
        JsonDecoder { data_schema: Arc::new(Schema::new(fields)), sql_schema, flat }
    }

    /// Leaves out the values of the string columns (by SQL name) not in `read`: a query that
    /// never looks at them gets nulls there, and their text is checked, not copied. Rows are
    /// good or bad exactly as when every column is read.
    pub fn reading_only(mut self, read: &dyn Fn(&str) -> bool) -> JsonDecoder {
        let mask: Vec<bool> = self.sql_schema.fields().iter().map(|f| read(f.name())).collect();
        self.flat = self.flat.map(|f| f.reading_only(&mask));
        self
    }

    fn decode_all(&self, records: &[&[u8]]) -> Result<RecordBatch, ArrowError> {
        let mut decoder = ReaderBuilder::new(self.data_schema.clone())
            .with_batch_size(records.len().max(1))
            .with_strict_mode(false)
            .build_decoder()?;
        for r in records {
            let mut rest: &[u8] = r;
            while !rest.is_empty() {
                let n = decoder.decode(rest)?;
                if n == 0 {
                    break;
                }
                rest = &rest[n..];
            }
            // Every record must be exactly one JSON value.
            if decoder.is_empty() && !r.iter().all(u8::is_ascii_whitespace) {
                return Err(ArrowError::JsonError("incomplete JSON value".into()));
            }
            decoder.decode(b"\n")?;
        }
        let batch = decoder.flush()?.unwrap_or_else(|| RecordBatch::new_empty(self.data_schema.clone()));
        if batch.num_rows() != records.len() {
            return Err(ArrowError::JsonError(format!("{} records gave {} rows", records.len(), batch.num_rows())));
        }
        Ok(batch)
    }

    /// Decodes records (one JSON object each). Returns the good rows and the bad records;
    /// `kept[i]` is the index in `records` of row i.
    pub fn decode(&self, records: &[&[u8]]) -> (RecordBatch, Vec<usize>, Vec<BadRecord>) {
        if let Some(batch) = self.flat.as_ref().and_then(|f| f.decode(records)) {
            return (batch, (0..records.len()).collect(), Vec::new());
        }
        let all_objects = records.iter().all(|r| first_non_ws(r) == Some(b'{'));
        if all_objects {
            if let Ok(batch) = self.decode_all(records) {
                return (self.rename(batch), (0..records.len()).collect(), Vec::new());
            }
        }
        // Slow path: one record at a time, to find the bad ones.
        let mut good = Vec::new();
        let mut kept = Vec::new();
        let mut bad = Vec::new();
        for (i, r) in records.iter().enumerate() {
            if first_non_ws(r) != Some(b'{') {
                let reason = match std::str::from_utf8(r) {
                    Err(_) => "not UTF-8 text".to_string(),
                    Ok(s) if s.trim().is_empty() => "empty value".to_string(),
                    Ok(_) => "not a JSON object".to_string(),
                };
                bad.push(BadRecord { index: i, reason });
                continue;
            }
            match self.decode_all(&[r]) {
                Ok(b) => {
                    good.push(b);
                    kept.push(i);
                }
                Err(e) => bad.push(BadRecord { index: i, reason: clean_error(&e) }),
            }
        }
        let batch = concat_batches(&self.data_schema, &good)
            .unwrap_or_else(|_| RecordBatch::new_empty(self.data_schema.clone()));
        (self.rename(batch), kept, bad)
    }

    fn rename(&self, batch: RecordBatch) -> RecordBatch {
        RecordBatch::try_new(self.sql_schema.clone(), batch.columns().to_vec()).unwrap_or(batch)
    }
}

fn first_non_ws(r: &[u8]) -> Option<u8> {
    r.iter().copied().find(|b| !b.is_ascii_whitespace())
}

fn clean_error(e: &ArrowError) -> String {
    let s = e.to_string();
    s.strip_prefix("Json error: ").unwrap_or(&s).to_string()
}

/// Event time of each row in epoch milliseconds: from the declared column, else the Kafka
/// timestamps. `Err((row, reason))` for rows whose event time cannot be read.
pub fn event_times(
    batch: &RecordBatch,
    spec: Option<&EventTimeSpec>,
    kafka_ts: &[i64],
) -> (Vec<i64>, Vec<(usize, String)>) {
    let n = batch.num_rows();
    let Some(spec) = spec else { return (kafka_ts[..n].to_vec(), vec![]) };
    let mut out = Vec::with_capacity(n);
    let mut bad = Vec::new();
    let Some(col) = batch.column_by_name(&spec.column) else {
        return (kafka_ts[..n].to_vec(), vec![]);
    };
    let missing = |i: usize, bad: &mut Vec<(usize, String)>| {
        bad.push((i, format!("event time column `{}` is null", spec.column)))
    };
    match col.data_type() {
        DataType::Utf8 => {
            let a = col.as_any().downcast_ref::<StringArray>().expect("utf8");
            let fmt = spec.chrono_format.as_deref().unwrap_or("%Y-%m-%d %H:%M:%S");
            for i in 0..n {
                if a.is_null(i) {
                    missing(i, &mut bad);
                    out.push(0);
                    continue;
                }
                match parse_millis(a.value(i), fmt) {
                    Some(ms) => out.push(ms),
                    None => {
                        bad.push((
                            i,
                            format!("event time `{}` does not match the format of `{}`", a.value(i), spec.column),
                        ));
                        out.push(0);
                    }
                }
            }
        }
        _ => {
            let as_ms: ArrayRef = match col.data_type() {
                DataType::Timestamp(_, _) => cast(col, &DataType::Timestamp(TimeUnit::Millisecond, None))
                    .and_then(|c| cast(&c, &DataType::Int64))
                    .unwrap_or_else(|_| col.clone()),
                _ => cast(col, &DataType::Int64).unwrap_or_else(|_| col.clone()),
            };
            let a = as_ms.as_any().downcast_ref::<Int64Array>();
            for i in 0..n {
                match a {
                    Some(a) if a.is_valid(i) => out.push(a.value(i)),
                    _ => {
                        missing(i, &mut bad);
                        out.push(0);
                    }
                }
            }
        }
    }
    (out, bad)
}

/// Each row as a JSON object (nulls written as null), in column order.
pub fn encode_rows(batch: &RecordBatch) -> Result<Vec<Bytes>, ArrowError> {
    if batch.num_rows() == 0 {
        return Ok(Vec::new());
    }
    // Each row is a slice of the one buffer written, not a copy of its own.
    if let Some((text, ends)) = super::json_flat_encode::encode(batch) {
        let text = Bytes::from(text);
        let mut start = 0;
        return Ok(ends
            .into_iter()
            .map(|end| {
                let row = text.slice(start..end);
                start = end;
                row
            })
            .collect());
    }
    // One object per line; newlines inside strings are escaped, so splitting is safe.
    // Sized for short values up front: grown by doubling, the buffer was copied about once over.
    let guess = batch.num_rows() * (batch.num_columns() * 16 + 2);
    let mut writer =
        WriterBuilder::new().with_explicit_nulls(true).build::<_, LineDelimited>(Vec::with_capacity(guess));
    writer.write(batch)?;
    writer.finish()?;
    // Each row is a slice of the one buffer written, not a copy of its own.
    let bytes = Bytes::from(writer.into_inner());
    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', &bytes) {
        if end > start {
            rows.push(bytes.slice(start..end));
        }
        start = end + 1;
    }
    if start < bytes.len() {
        rows.push(bytes.slice(start..));
    }
    Ok(rows)
}

/// Record keys: a single key column as a bare JSON value, several as a JSON object.
pub fn encode_keys(batch: &RecordBatch, key: &[String]) -> Result<Vec<Option<Bytes>>, ArrowError> {
    if key.is_empty() {
        return Ok(vec![None; batch.num_rows()]);
    }
    let idx: Vec<usize> = key.iter().filter_map(|k| batch.schema().index_of(k).ok()).collect();
    let projected = batch.project(&idx)?;
    let rows = encode_rows(&projected)?;
    rows.into_iter()
        .map(|r| {
            if key.len() == 1 {
                let v: serde_json::Value =
                    serde_json::from_slice(&r).map_err(|e| ArrowError::JsonError(e.to_string()))?;
                let inner = v.as_object().and_then(|o| o.values().next().cloned()).unwrap_or(serde_json::Value::Null);
                Ok(Some(serde_json::to_vec(&inner).map_err(|e| ArrowError::JsonError(e.to_string()))?.into()))
            } else {
                Ok(Some(r))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder() -> JsonDecoder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int32, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        JsonDecoder::new(schema, &["ID".to_string(), "NAME".to_string()])
    }

    #[test]
    fn decodes_and_renames() {
        let (b, kept, bad) = decoder().decode(&[br#"{"ID": 1, "NAME": "a"}"#, br#"{"ID": 2}"#]);
        assert!(bad.is_empty());
        assert_eq!(kept, vec![0, 1]);
        assert_eq!(b.schema().field(0).name(), "id");
        assert_eq!(b.num_rows(), 2);
        assert!(b.column(1).is_null(1));
    }

    #[test]
    fn isolates_bad_records() {
        let recs: Vec<&[u8]> = vec![br#"{"ID": 1}"#, br#"{"ID": "x"}"#, b"not json", br#"{"ID": 4}"#, b"[1]"];
        let (b, kept, bad) = decoder().decode(&recs);
        assert_eq!(b.num_rows(), 2);
        assert_eq!(kept, vec![0, 3]);
        let idx: Vec<usize> = bad.iter().map(|b| b.index).collect();
        assert_eq!(idx, vec![1, 2, 4]);
        assert!(bad[0].reason.contains("x"), "{}", bad[0].reason);
        assert_eq!(bad[2].reason, "not a JSON object");
    }

    #[test]
    fn encodes_rows_and_keys() {
        let (b, _, _) = decoder().decode(&[br#"{"ID": 1, "NAME": "a\nb"}"#, br#"{"ID": 2}"#]);
        let rows = encode_rows(&b).unwrap();
        // Each row is its own slice of the buffer written: a newline inside a string stays escaped.
        let rows: Vec<String> = rows.iter().map(|r| String::from_utf8(r.to_vec()).unwrap()).collect();
        assert_eq!(rows, [r#"{"id":1,"name":"a\nb"}"#, r#"{"id":2,"name":null}"#]);
        let keys = encode_keys(&b, &["id".to_string()]).unwrap();
        assert_eq!(keys[0].as_deref(), Some(&b"1"[..]));
    }
}
