//! Parquet part files of the file sink (`format: parquet`, cargo feature `parquet`): the rows a
//! part file receives (JSON objects after the sink's transforms) are decoded into Arrow batches
//! with the model's column types after the transforms, a thousand rows at a time, and written as
//! row groups by the parquet crate's Arrow writer; closing a part writes the footer. The Arrow
//! schema goes into the file's metadata, so readers get back the model's types (timestamps with
//! their unit, decimals with their precision and scale, lists and structs).

use std::fs::File;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::{Map, Value};

use crate::formats::json::JsonDecoder;
use crate::project::config::ParquetCompression;

/// The column a table model's files carry to tell a deleted row (true) from an upsert (false).
pub const DELETE_COLUMN: &str = "_delete";

/// Rows decoded and handed to the Parquet writer at a time (and JSON bytes at most).
const DECODE_ROWS: usize = 1024;
const DECODE_BYTES: usize = 1 << 20;

/// How the part files of one sink are written: their columns and compression.
#[derive(Debug)]
pub struct ParquetFormat {
    schema: SchemaRef,
    decoder: JsonDecoder,
    props: WriterProperties,
    /// The key columns (after the transforms) a tombstone fills, `None` for a stream model.
    key: Option<Vec<String>>,
}

/// A column type as the files hold it: strings and binaries in their plain Arrow layout (not
/// views or large offsets), inside lists and structs too.
fn file_type(t: &DataType) -> DataType {
    let field = |f: &Field| Field::new(f.name(), file_type(f.data_type()), true);
    match t {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        DataType::List(f) | DataType::LargeList(f) | DataType::ListView(f) | DataType::LargeListView(f) => {
            DataType::List(Arc::new(field(f)))
        }
        DataType::Struct(fs) => DataType::Struct(fs.iter().map(|f| field(f)).collect::<Fields>()),
        t => t.clone(),
    }
}

impl ParquetFormat {
    /// `columns`: the row's columns after the sink's transforms. `key`: for a table model, its
    /// key columns after the transforms (the files then get a `_delete` column).
    pub fn new(columns: &[(String, DataType)], key: Option<Vec<String>>, compression: ParquetCompression) -> Self {
        let mut fields: Vec<Field> = columns.iter().map(|(n, t)| Field::new(n, file_type(t), true)).collect();
        if key.is_some() {
            fields.push(Field::new(DELETE_COLUMN, DataType::Boolean, true));
        }
        let schema = Arc::new(Schema::new(fields));
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let props = WriterProperties::builder()
            .set_compression(match compression {
                ParquetCompression::Snappy => Compression::SNAPPY,
                ParquetCompression::None => Compression::UNCOMPRESSED,
            })
            .set_created_by(format!("streamctl {}", env!("CARGO_PKG_VERSION")))
            .build();
        ParquetFormat { decoder: JsonDecoder::new(schema.clone(), &names), schema, props, key }
    }

    /// The row a deleted key becomes: its key columns and `_delete: true`. `line` is the JSON
    /// Lines form of the tombstone, `{"_key": <key>, "_delete": true}`.
    pub fn tombstone_row(&self, line: &[u8]) -> Result<Vec<u8>, String> {
        let Some(key) = &self.key else {
            return Err("a tombstone in the output of a stream model has no row to write".into());
        };
        let key_value = serde_json::from_slice::<Value>(line).ok().and_then(|mut v| v.get_mut("_key").map(Value::take));
        let mut row = Map::new();
        match (key_value, key.as_slice()) {
            (Some(Value::Object(o)), _) => {
                for k in key {
                    let found = o.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.clone());
                    row.insert(k.clone(), found.unwrap_or(Value::Null));
                }
            }
            (Some(v), [one]) => {
                row.insert(one.clone(), v);
            }
            _ => return Err("a tombstone's key does not match the model's key columns".into()),
        }
        row.insert(DELETE_COLUMN.into(), Value::Bool(true));
        serde_json::to_vec(&Value::Object(row)).map_err(|e| e.to_string())
    }
}

/// One Parquet file being written.
pub struct ParquetPart {
    format: Arc<ParquetFormat>,
    writer: ArrowWriter<File>,
    /// Rows not decoded yet: the record's offset and its JSON object.
    pending: Vec<(i64, Vec<u8>)>,
    pending_bytes: usize,
}

impl ParquetPart {
    pub fn new(file: File, format: Arc<ParquetFormat>) -> Result<Self, String> {
        let writer = ArrowWriter::try_new(file, format.schema.clone(), Some(format.props.clone()))
            .map_err(|e| format!("starting a Parquet file: {e}"))?;
        Ok(ParquetPart { format, writer, pending: Vec::new(), pending_bytes: 0 })
    }

    /// Adds the row of the record at `offset` (a JSON object; a table model's upsert gets
    /// `_delete: false`, added when decoded).
    pub fn write(&mut self, offset: i64, row: &[u8]) -> Result<(), String> {
        self.pending_bytes += row.len();
        self.pending.push((offset, row.to_vec()));
        if self.pending.len() >= DECODE_ROWS || self.pending_bytes >= DECODE_BYTES {
            self.encode_pending()?;
        }
        Ok(())
    }

    /// What the file holds so far: the bytes written and the estimated size of the row group
    /// being built, plus the JSON size of the rows not decoded yet.
    pub fn size(&self) -> u64 {
        (self.writer.bytes_written() + self.writer.in_progress_size() + self.pending_bytes) as u64
    }

    fn encode_pending(&mut self) -> Result<(), String> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows: Vec<&[u8]> = self.pending.iter().map(|(_, r)| r.as_slice()).collect();
        let (mut batch, _, bad) = self.format.decoder.decode(&rows);
        if let Some(b) = bad.first() {
            return Err(format!(
                "offset {}: the row does not fit the Parquet file's column types: {} (the sink stalls here)",
                self.pending[b.index].0, b.reason
            ));
        }
        if self.format.key.is_some() {
            // Upserts: `_delete` false where the row did not say true.
            let i = batch.num_columns() - 1;
            let deleted = batch.column(i).as_any().downcast_ref::<datafusion::arrow::array::BooleanArray>().cloned();
            if let Some(d) = deleted {
                let filled: datafusion::arrow::array::BooleanArray =
                    d.iter().map(|v| Some(v.unwrap_or(false))).collect();
                let mut columns = batch.columns().to_vec();
                columns[i] = Arc::new(filled);
                batch = datafusion::arrow::array::RecordBatch::try_new(batch.schema(), columns)
                    .map_err(|e| format!("encoding rows: {e}"))?;
            }
        }
        self.writer.write(&batch).map_err(|e| format!("encoding rows as Parquet: {e}"))?;
        self.pending.clear();
        self.pending_bytes = 0;
        Ok(())
    }

    /// Writes the rows still pending and the footer; returns the file to sync.
    pub fn finish(mut self) -> Result<File, String> {
        self.encode_pending()?;
        self.writer.into_inner().map_err(|e| format!("writing the Parquet footer: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Decimal128Type, Int64Type, TimeUnit, TimestampMillisecondType};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn columns() -> Vec<(String, DataType)> {
        vec![
            ("id".into(), DataType::Int64),
            ("at".into(), DataType::Timestamp(TimeUnit::Millisecond, None)),
            ("amount".into(), DataType::Decimal128(10, 2)),
            ("name".into(), DataType::Utf8View),
            ("tags".into(), DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))),
        ]
    }

    #[test]
    fn rows_keep_their_types_and_tombstones_become_deleted_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.parquet");
        let format = Arc::new(ParquetFormat::new(&columns(), Some(vec!["id".into()]), ParquetCompression::Snappy));
        let mut part = ParquetPart::new(File::create(&path).unwrap(), format.clone()).unwrap();
        for i in 0..1500i64 {
            let row = format!(
                r#"{{"id":{i},"at":"2017-09-27T17:04:17.{:03}","amount":{i}.25,"name":"n{i}","tags":["a","b{i}"]}}"#,
                i % 1000
            );
            part.write(i, row.as_bytes()).unwrap();
        }
        let tomb = format.tombstone_row(br#"{"_key":7,"_delete":true}"#).unwrap();
        part.write(1500, &tomb).unwrap();
        assert!(part.size() > 0);
        part.finish().unwrap();

        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap().build().unwrap();
        let batches: Vec<_> = reader.map(Result::unwrap).collect();
        let batch = datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
        assert_eq!(batch.num_rows(), 1501);
        let s = batch.schema();
        assert_eq!(s.field(1).data_type(), &DataType::Timestamp(TimeUnit::Millisecond, None));
        assert_eq!(s.field(2).data_type(), &DataType::Decimal128(10, 2));
        assert_eq!(s.field(3).data_type(), &DataType::Utf8);
        assert_eq!(s.field(5).name(), DELETE_COLUMN);
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(1499), 1499);
        assert_eq!(batch.column(1).as_primitive::<TimestampMillisecondType>().value(3), 1506531857003);
        assert_eq!(batch.column(2).as_primitive::<Decimal128Type>().value(2), 225);
        assert_eq!(batch.column(4).as_list::<i32>().value(1).as_string::<i32>().value(1), "b1");
        let deleted = batch.column(5).as_boolean();
        assert_eq!((deleted.value(0), deleted.value(1500)), (false, true));
        assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(1500), 7);
        assert!(batch.column(1).is_null(1500));
    }

    #[test]
    fn a_row_the_types_cannot_hold_names_its_offset() {
        let dir = tempfile::tempdir().unwrap();
        let format = Arc::new(ParquetFormat::new(&columns(), None, ParquetCompression::None));
        let mut part = ParquetPart::new(File::create(dir.path().join("f.parquet")).unwrap(), format.clone()).unwrap();
        part.write(41, br#"{"id":1}"#).unwrap();
        part.write(42, br#"{"id":"x1"}"#).unwrap();
        let err = part.finish().err().unwrap();
        assert!(err.starts_with("offset 42: the row does not fit"), "{err}");
        assert!(format.tombstone_row(br#"{"_key":1,"_delete":true}"#).is_err(), "a stream model has no deletes");
    }
}
