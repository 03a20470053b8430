//! Kafka record headers as SQL columns, after ksqlDB's model: a source column declared with
//! `headers: true` holds every header of its record as `ARRAY<STRUCT<key STRING, value BYTES>>`
//! (ksqlDB's `HEADERS`), one declared with `header: 'name'` the last header with that key as
//! `BYTES` or `STRING` (ksqlDB's `HEADER('name')`). A model writes headers from its columns
//! with `config(headers={'name': 'COLUMN'})`: each row's value of the column becomes the header
//! (the column stays in the value too); the name `*` takes an `ARRAY<STRUCT<key, value>>`
//! column and writes each of its entries.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BinaryViewArray, LargeBinaryArray, LargeStringArray, ListArray, StringArray,
    StringViewArray, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields};

/// A record's headers in their order: key, value (`None`: a null value).
pub type Headers = Vec<(String, Option<Vec<u8>>)>;

/// A declared column read from the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderColumn {
    /// Position among the relation's columns.
    pub index: usize,
    /// `Some(name)`: the last header with that key; `None`: every header.
    pub header: Option<String>,
}

/// The type of a `headers: true` column: `ARRAY<STRUCT<key STRING, value BYTES>>`.
pub fn all_headers_type() -> DataType {
    let entry =
        Fields::from(vec![Field::new("key", DataType::Utf8, true), Field::new("value", DataType::Binary, true)]);
    DataType::List(Arc::new(Field::new("item", DataType::Struct(entry), true)))
}

/// Whether a column of this type can hold every header (key STRING, value BYTES, any field names' case).
pub fn is_all_headers_type(dt: &DataType) -> bool {
    let DataType::List(item) = dt else { return false };
    let DataType::Struct(fields) = item.data_type() else { return false };
    matches!(fields.iter().map(|f| (f.name().to_lowercase(), f.data_type().clone())).collect::<Vec<_>>().as_slice(),
        [(k, DataType::Utf8), (v, DataType::Binary)] if k == "key" && v == "value")
}

/// Whether a single header can be read into (or written from) a column of this type.
pub fn is_single_header_type(dt: &DataType) -> bool {
    matches!(dt, DataType::Binary | DataType::Utf8)
}

/// The last value of header `name`.
fn last<'a>(headers: &'a Headers, name: &str) -> Option<&'a [u8]> {
    headers.iter().rev().find(|(k, _)| k == name).and_then(|(_, v)| v.as_deref())
}

/// The column `col` (of type `dt`) for rows with these headers; rows whose header cannot be read
/// (not UTF-8 for a STRING column) are listed with the reason and hold null.
pub fn read_column(col: &HeaderColumn, dt: &DataType, rows: &[&Headers]) -> (ArrayRef, Vec<(usize, String)>) {
    let mut errors = Vec::new();
    let array: ArrayRef = match (&col.header, dt) {
        (Some(name), DataType::Utf8) => Arc::new(StringArray::from_iter(rows.iter().enumerate().map(|(j, h)| {
            let bytes = last(h, name)?;
            match std::str::from_utf8(bytes) {
                Ok(s) => Some(s.to_string()),
                Err(_) => {
                    errors.push((j, format!("header `{name}` is not UTF-8 text (declare the column BYTES)")));
                    None
                }
            }
        }))),
        (Some(name), _) => Arc::new(BinaryArray::from_iter(rows.iter().map(|h| last(h, name)))),
        (None, DataType::List(item)) => {
            let DataType::Struct(fields) = item.data_type() else {
                return (datafusion::arrow::array::new_null_array(dt, rows.len()), errors);
            };
            let keys: StringArray = rows.iter().flat_map(|h| h.iter().map(|(k, _)| Some(k.as_str()))).collect();
            let values = BinaryArray::from_iter(rows.iter().flat_map(|h| h.iter().map(|(_, v)| v.as_deref())));
            let offsets = OffsetBuffer::from_lengths(rows.iter().map(|h| h.len()));
            let columns: Vec<ArrayRef> = vec![Arc::new(keys), Arc::new(values)];
            let entries = StructArray::new(fields.clone(), columns, None);
            Arc::new(ListArray::new(item.clone(), offsets, Arc::new(entries), None))
        }
        _ => datafusion::arrow::array::new_null_array(dt, rows.len()),
    };
    (array, errors)
}

/// The bytes of row `row` of a STRING or BYTES column (`None` when null or another type).
fn bytes_at(col: &dyn Array, row: usize) -> Option<Vec<u8>> {
    if col.is_null(row) {
        return None;
    }
    let any = col.as_any();
    if let Some(a) = any.downcast_ref::<StringArray>() {
        return Some(a.value(row).as_bytes().to_vec());
    }
    if let Some(a) = any.downcast_ref::<StringViewArray>() {
        return Some(a.value(row).as_bytes().to_vec());
    }
    if let Some(a) = any.downcast_ref::<LargeStringArray>() {
        return Some(a.value(row).as_bytes().to_vec());
    }
    if let Some(a) = any.downcast_ref::<BinaryArray>() {
        return Some(a.value(row).to_vec());
    }
    if let Some(a) = any.downcast_ref::<BinaryViewArray>() {
        return Some(a.value(row).to_vec());
    }
    any.downcast_ref::<LargeBinaryArray>().map(|a| a.value(row).to_vec())
}

/// The headers of each row written from `columns` (header name, column): a null single value
/// writes no header; `*` writes every entry of an `ARRAY<STRUCT<key, value>>` column.
pub fn write_headers(columns: &[(String, ArrayRef)], rows: usize) -> Vec<Headers> {
    let mut out: Vec<Headers> = vec![Vec::new(); rows];
    for (name, col) in columns {
        if name == "*" {
            let Some(list) = col.as_any().downcast_ref::<ListArray>() else { continue };
            for (row, headers) in out.iter_mut().enumerate() {
                if list.is_null(row) {
                    continue;
                }
                let entries = list.value(row);
                let Some(entries) = entries.as_any().downcast_ref::<StructArray>() else { continue };
                let (Some(keys), Some(values)) = (entries.column_by_name("key"), entries.column_by_name("value"))
                else {
                    continue;
                };
                for i in 0..entries.len() {
                    if let Some(k) = bytes_at(keys.as_ref(), i) {
                        headers.push((String::from_utf8_lossy(&k).into_owned(), bytes_at(values.as_ref(), i)));
                    }
                }
            }
        } else {
            for (row, headers) in out.iter_mut().enumerate() {
                if let Some(v) = bytes_at(col.as_ref(), row) {
                    headers.push((name.clone(), Some(v)));
                }
            }
        }
    }
    out
}

/// Headers as JSON (test rows): `{"name": "text", ...}`, values as UTF-8 text (lossy), null kept.
pub fn to_json(headers: &Headers) -> serde_json::Value {
    headers
        .iter()
        .map(|(k, v)| {
            (k.clone(), v.as_ref().map_or(serde_json::Value::Null, |v| String::from_utf8_lossy(v).into_owned().into()))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Headers given as JSON (test rows, sample data): an object `{"name": value}` or a list of
/// `{"key": ..., "value": ...}`; a string value is its UTF-8 bytes, null a null value, anything
/// else its JSON text.
pub fn from_json(v: &serde_json::Value) -> Result<Headers, String> {
    let bytes = |v: &serde_json::Value| match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.as_bytes().to_vec()),
        other => Some(other.to_string().into_bytes()),
    };
    match v {
        serde_json::Value::Object(o) => Ok(o.iter().map(|(k, v)| (k.clone(), bytes(v))).collect()),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|e| -> Result<(String, Option<Vec<u8>>), String> {
                let key =
                    e.get("key").and_then(serde_json::Value::as_str).ok_or("a header entry needs a string `key`")?;
                Ok((key.to_string(), e.get("value").and_then(bytes)))
            })
            .collect(),
        serde_json::Value::Null => Ok(Vec::new()),
        _ => Err("headers are an object {\"name\": \"value\"} or a list of {\"key\", \"value\"}".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;

    fn h(pairs: &[(&str, Option<&str>)]) -> Headers {
        pairs.iter().map(|(k, v)| (k.to_string(), v.map(|v| v.as_bytes().to_vec()))).collect()
    }

    #[test]
    fn a_single_header_is_its_last_value_and_text_must_be_utf8() {
        let rows = [h(&[("t", Some("a")), ("t", Some("b"))]), h(&[]), vec![("t".into(), Some(vec![0xff]))]];
        let refs: Vec<&Headers> = rows.iter().collect();
        let col = HeaderColumn { index: 0, header: Some("t".into()) };
        let (a, errors) = read_column(&col, &DataType::Utf8, &refs);
        let s = a.as_string::<i32>();
        assert_eq!((s.value(0), s.is_null(1), s.is_null(2)), ("b", true, true));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, 2);
        let (b, errors) = read_column(&col, &DataType::Binary, &refs);
        assert!(errors.is_empty());
        assert_eq!(b.as_binary::<i32>().value(2), &[0xff]);
    }

    #[test]
    fn every_header_reads_as_a_list_and_writes_back() {
        let rows = [h(&[("a", Some("1")), ("b", None)]), h(&[]), h(&[("c", Some("3"))])];
        let refs: Vec<&Headers> = rows.iter().collect();
        let dt = crate::sql::types::parse_sql_type("ARRAY<STRUCT<key STRING, value BYTES>>").unwrap();
        assert!(is_all_headers_type(&dt));
        assert_eq!(dt, all_headers_type());
        let (a, errors) = read_column(&HeaderColumn { index: 0, header: None }, &dt, &refs);
        assert!(errors.is_empty());
        assert_eq!(a.data_type(), &dt);
        let written = write_headers(&[("*".into(), a)], 3);
        assert_eq!(written, rows.to_vec());
        let text: ArrayRef = Arc::new(StringArray::from(vec![Some("x"), None, Some("z")]));
        let written = write_headers(&[("trace".into(), text)], 3);
        assert_eq!(written, vec![h(&[("trace", Some("x"))]), h(&[]), h(&[("trace", Some("z"))])]);
    }

    #[test]
    fn headers_from_and_to_json() {
        let v = serde_json::json!({"a": "1", "b": null, "n": 5});
        let hs = from_json(&v).unwrap();
        assert_eq!(hs, h(&[("a", Some("1")), ("b", None), ("n", Some("5"))]));
        assert_eq!(to_json(&hs), serde_json::json!({"a": "1", "b": null, "n": "5"}));
        let list = serde_json::json!([{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]);
        assert_eq!(from_json(&list).unwrap(), h(&[("a", Some("1")), ("a", Some("2"))]));
        assert!(from_json(&serde_json::json!(3)).is_err());
    }
}
