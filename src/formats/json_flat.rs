//! A direct JSON → Arrow decoder for the common case: flat objects whose columns are integers,
//! floats, booleans and strings. Values go straight into Arrow builders in one pass over each
//! record, where arrow-json first builds a tape of the whole batch and then matches every field
//! name against the schema (about a fifth of a stateless query's CPU time, by the profiles).
//!
//! It reads only what it is sure to read exactly as arrow-json does, and gives up on the batch
//! (returns `None`) at anything else: a number with a fraction for an integer column, a string
//! for a number, a nested value for a column, a repeated field, invalid JSON. The caller then
//! decodes the batch with arrow-json, which also finds and explains the bad records.

use datafusion::arrow::array::{
    new_null_array, ArrayBuilder, ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, Int8Builder, RecordBatch, StringBuilder, UInt16Builder, UInt32Builder, UInt64Builder, UInt8Builder,
};
use datafusion::arrow::datatypes::{DataType, SchemaRef};

/// Nested values deeper than this (in fields that are not columns) make the decoder give up.
const MAX_DEPTH: usize = 64;

/// The decoder of one schema: built once per source, used for every batch.
#[derive(Debug, Clone)]
pub struct FlatJsonDecoder {
    /// Columns' names as they appear in the data, in the order of `schema`.
    names: Vec<Box<[u8]>>,
    types: Vec<DataType>,
    /// The batches' schema (the SQL names, every column nullable).
    schema: SchemaRef,
    /// String columns the query never reads: each value is checked as if it were read (so a
    /// batch is given up on exactly when it would be), but not copied; the column is all nulls.
    unread: Vec<bool>,
}

impl FlatJsonDecoder {
    /// `None` when a column's type is one this decoder does not read (timestamps, decimals,
    /// nested types...): arrow-json decodes those sources.
    pub fn new(schema: SchemaRef, data_names: &[String]) -> Option<FlatJsonDecoder> {
        let types: Vec<DataType> = schema.fields().iter().map(|f| f.data_type().clone()).collect();
        let supported = types.iter().all(|t| {
            matches!(
                t,
                DataType::Int8
                    | DataType::Int16
                    | DataType::Int32
                    | DataType::Int64
                    | DataType::UInt8
                    | DataType::UInt16
                    | DataType::UInt32
                    | DataType::UInt64
                    | DataType::Float32
                    | DataType::Float64
                    | DataType::Boolean
                    | DataType::Utf8
            )
        });
        (supported && data_names.len() == types.len()).then(|| FlatJsonDecoder {
            names: data_names.iter().map(|n| n.as_bytes().into()).collect(),
            unread: vec![false; types.len()],
            types,
            schema,
        })
    }

    /// Leaves out the values of the string columns for which `read` is false (see `unread`).
    pub fn reading_only(mut self, read: &[bool]) -> FlatJsonDecoder {
        for (c, t) in self.types.iter().enumerate() {
            self.unread[c] = *t == DataType::Utf8 && !read.get(c).copied().unwrap_or(true);
        }
        self
    }

    /// One row per record, or `None` if any record is one this decoder does not read.
    pub fn decode(&self, records: &[&[u8]]) -> Option<RecordBatch> {
        let n = records.len();
        let text_bytes: usize = records.iter().map(|r| r.len()).sum();
        let mut columns: Vec<Column> = self
            .types
            .iter()
            .zip(&self.unread)
            .map(|(t, unread)| if *unread { Column::Unread(0) } else { Column::new(t, n, text_bytes) })
            .collect();
        let mut batch = BatchState { seen: vec![0; self.names.len()], scratch: String::new() };
        for (row, record) in records.iter().enumerate() {
            // arrow-json checks every string is UTF-8 (with simdutf8); this checks the record
            // once, and every slice below starts and ends at an ASCII byte of it.
            let text = simdutf8::basic::from_utf8(record).ok()?;
            self.record(text, row as u32 + 1, &mut columns, &mut batch)?;
        }
        let arrays: Vec<ArrayRef> = columns.into_iter().map(Column::finish).collect();
        RecordBatch::try_new(self.schema.clone(), arrays).ok()
    }

    /// Reads one object into the columns; each column gets exactly one value (null if absent).
    fn record(&self, text: &str, stamp: u32, columns: &mut [Column], state: &mut BatchState) -> Option<()> {
        let s = text.as_bytes();
        let mut i = skip_ws(s, 0);
        if s.get(i) != Some(&b'{') {
            return None;
        }
        i = skip_ws(s, i + 1);
        // Fields usually come in the schema's order: the next column is tried first.
        let mut next = 0usize;
        if s.get(i) == Some(&b'}') {
            i += 1;
        } else {
            loop {
                let (key, after) = plain_string(s, i)?;
                i = skip_ws(s, after);
                if s.get(i) != Some(&b':') {
                    return None;
                }
                i = skip_ws(s, i + 1);
                let found = if self.names.get(next).is_some_and(|n| **n == *key) {
                    Some(next)
                } else {
                    self.names.iter().position(|n| **n == *key)
                };
                match found {
                    Some(c) => {
                        if state.seen[c] == stamp {
                            return None;
                        }
                        state.seen[c] = stamp;
                        i = columns[c].append(text, i, &mut state.scratch)?;
                        next = c + 1;
                    }
                    None => i = skip_value(s, i, 0)?,
                }
                i = skip_ws(s, i);
                match s.get(i) {
                    Some(b',') => i = skip_ws(s, i + 1),
                    Some(b'}') => {
                        i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        if skip_ws(s, i) != s.len() {
            return None;
        }
        for (c, column) in columns.iter_mut().enumerate() {
            if state.seen[c] != stamp {
                column.append_null();
            }
        }
        Some(())
    }
}

struct BatchState {
    /// `seen[c]` is the stamp (row + 1) of the last record that had column c.
    seen: Vec<u32>,
    /// Strings with escapes are unescaped here.
    scratch: String,
}

enum Column {
    I8(Int8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    U8(UInt8Builder),
    U16(UInt16Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
    /// A string column whose values are checked and not kept: how many it has had.
    Unread(usize),
}

impl Column {
    fn new(t: &DataType, rows: usize, text_bytes: usize) -> Column {
        match t {
            DataType::Int8 => Column::I8(Int8Builder::with_capacity(rows)),
            DataType::Int16 => Column::I16(Int16Builder::with_capacity(rows)),
            DataType::Int32 => Column::I32(Int32Builder::with_capacity(rows)),
            DataType::Int64 => Column::I64(Int64Builder::with_capacity(rows)),
            DataType::UInt8 => Column::U8(UInt8Builder::with_capacity(rows)),
            DataType::UInt16 => Column::U16(UInt16Builder::with_capacity(rows)),
            DataType::UInt32 => Column::U32(UInt32Builder::with_capacity(rows)),
            DataType::UInt64 => Column::U64(UInt64Builder::with_capacity(rows)),
            DataType::Float32 => Column::F32(Float32Builder::with_capacity(rows)),
            DataType::Float64 => Column::F64(Float64Builder::with_capacity(rows)),
            DataType::Boolean => Column::Bool(BooleanBuilder::with_capacity(rows)),
            // A string column holds at most the text of the records; a quarter of it is a start.
            _ => Column::Str(StringBuilder::with_capacity(rows, text_bytes / 4)),
        }
    }

    fn append_null(&mut self) {
        match self {
            Column::I8(b) => b.append_null(),
            Column::I16(b) => b.append_null(),
            Column::I32(b) => b.append_null(),
            Column::I64(b) => b.append_null(),
            Column::U8(b) => b.append_null(),
            Column::U16(b) => b.append_null(),
            Column::U32(b) => b.append_null(),
            Column::U64(b) => b.append_null(),
            Column::F32(b) => b.append_null(),
            Column::F64(b) => b.append_null(),
            Column::Bool(b) => b.append_null(),
            Column::Str(b) => b.append_null(),
            Column::Unread(n) => *n += 1,
        }
    }

    /// Appends the value at `text[i..]`; returns where it ends.
    fn append(&mut self, text: &str, i: usize, scratch: &mut String) -> Option<usize> {
        let s = text.as_bytes();
        // A value starts at `i` (the record does not end there).
        s.get(i)?;
        if s[i..].starts_with(b"null") {
            self.append_null();
            return Some(i + 4);
        }
        match self {
            Column::Str(b) => {
                let (value, end) = string_value(text, i, scratch)?;
                b.append_value(value);
                Some(end)
            }
            Column::Unread(n) => {
                let (_, end) = string_value(text, i, scratch)?;
                *n += 1;
                Some(end)
            }
            Column::Bool(b) => {
                if s[i..].starts_with(b"true") {
                    b.append_value(true);
                    Some(i + 4)
                } else if s[i..].starts_with(b"false") {
                    b.append_value(false);
                    Some(i + 5)
                } else {
                    None
                }
            }
            // Rust's parsing and arrow-json's (lexical) both round correctly; an overflow to
            // infinity is left to arrow-json.
            Column::F32(b) => {
                let (end, _) = number(s, i)?;
                let v: f32 = text[i..end].parse().ok().filter(|v: &f32| v.is_finite())?;
                b.append_value(v);
                Some(end)
            }
            Column::F64(b) => {
                let (end, _) = number(s, i)?;
                let v: f64 = text[i..end].parse().ok().filter(|v: &f64| v.is_finite())?;
                b.append_value(v);
                Some(end)
            }
            int => {
                let (end, integral) = number(s, i)?;
                if !integral {
                    return None;
                }
                let v = integer(&s[i..end])?;
                int.append_integer(v)?;
                Some(end)
            }
        }
    }

    /// An integer literal's value into an integer column, `None` when out of its range.
    fn append_integer(&mut self, v: i128) -> Option<()> {
        match self {
            Column::I8(b) => b.append_value(v.try_into().ok()?),
            Column::I16(b) => b.append_value(v.try_into().ok()?),
            Column::I32(b) => b.append_value(v.try_into().ok()?),
            Column::I64(b) => b.append_value(v.try_into().ok()?),
            Column::U8(b) => b.append_value(v.try_into().ok()?),
            Column::U16(b) => b.append_value(v.try_into().ok()?),
            Column::U32(b) => b.append_value(v.try_into().ok()?),
            Column::U64(b) => b.append_value(v.try_into().ok()?),
            _ => return None,
        }
        Some(())
    }

    fn finish(self) -> ArrayRef {
        fn done(mut b: impl ArrayBuilder) -> ArrayRef {
            b.finish()
        }
        match self {
            Column::I8(b) => done(b),
            Column::I16(b) => done(b),
            Column::I32(b) => done(b),
            Column::I64(b) => done(b),
            Column::U8(b) => done(b),
            Column::U16(b) => done(b),
            Column::U32(b) => done(b),
            Column::U64(b) => done(b),
            Column::F32(b) => done(b),
            Column::F64(b) => done(b),
            Column::Bool(b) => done(b),
            Column::Str(b) => done(b),
            Column::Unread(n) => new_null_array(&DataType::Utf8, n),
        }
    }
}

/// The string value at `text[i..]`: its text (unescaped into `scratch` when it has escapes) and
/// where it ends; `None` when it is not a string or has an invalid escape.
fn string_value<'a>(text: &'a str, i: usize, scratch: &'a mut String) -> Option<(&'a str, usize)> {
    let s = text.as_bytes();
    if s.get(i) != Some(&b'"') {
        return None;
    }
    let (end, escaped) = string_end(s, i + 1)?;
    if !escaped {
        return Some((&text[i + 1..end], end + 1));
    }
    scratch.clear();
    unescape(&text[i + 1..end], scratch)?;
    Some((scratch.as_str(), end + 1))
}

/// JSON's whitespace (not the form feed and vertical tab that ASCII also counts).
fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while matches!(s.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The string starting at `s[i]` (a quote) when it has no escapes: its bytes and where it ends.
fn plain_string(s: &[u8], i: usize) -> Option<(&[u8], usize)> {
    if s.get(i) != Some(&b'"') {
        return None;
    }
    let (end, escaped) = string_end(s, i + 1)?;
    (!escaped).then(|| (&s[i + 1..end], end + 1))
}

/// The closing quote of a string whose text starts at `from`, and whether it has escapes.
/// `None` for an unterminated string. Raw control characters are kept, as arrow-json keeps them.
fn string_end(s: &[u8], from: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    let mut i = from;
    loop {
        let at = i + memchr::memchr2(b'"', b'\\', &s[i..])?;
        if s[at] == b'"' {
            return Some((at, escaped));
        }
        escaped = true;
        // The escaped character is checked by `unescape`; a quote after a backslash does not end.
        i = at + 2;
        if i > s.len() {
            return None;
        }
    }
}

/// A string's text with its escapes resolved, appended to `out`; `None` for an invalid escape
/// or a lone surrogate.
fn unescape(text: &str, out: &mut String) -> Option<()> {
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let b = rest.as_bytes();
        let (c, used) = match *b.get(at + 1)? {
            b'"' => ('"', 2),
            b'\\' => ('\\', 2),
            b'/' => ('/', 2),
            b'b' => ('\u{8}', 2),
            b'f' => ('\u{c}', 2),
            b'n' => ('\n', 2),
            b'r' => ('\r', 2),
            b't' => ('\t', 2),
            b'u' => {
                let high = hex4(rest.get(at + 2..at + 6)?)?;
                if (0xD800..0xDC00).contains(&high) {
                    if rest.get(at + 6..at + 8)? != "\\u" {
                        return None;
                    }
                    let low = hex4(rest.get(at + 8..at + 12)?)?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return None;
                    }
                    (char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?, 12)
                } else {
                    (char::from_u32(high)?, 6)
                }
            }
            _ => return None,
        };
        out.push(c);
        rest = &rest[at + used..];
    }
    out.push_str(rest);
    Some(())
}

fn hex4(h: &str) -> Option<u32> {
    if h.len() != 4 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(h, 16).ok()
}

/// A number by JSON's grammar at `s[i..]`: where it ends, and whether it is an integer (no
/// fraction, no exponent).
fn number(s: &[u8], mut i: usize) -> Option<(usize, bool)> {
    let digits = |s: &[u8], mut i: usize| {
        let from = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i > from).then_some(i)
    };
    if s.get(i) == Some(&b'-') {
        i += 1;
    }
    // No leading zeros: "0" alone, or a digit 1-9 and more.
    i = match s.get(i)? {
        b'0' => i + 1,
        b'1'..=b'9' => digits(s, i)?,
        _ => return None,
    };
    let mut integral = true;
    if s.get(i) == Some(&b'.') {
        i = digits(s, i + 1)?;
        integral = false;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits(s, i)?;
        integral = false;
    }
    Some((i, integral))
}

/// An integer literal's value (up to 38 digits; longer ones are out of every column's range).
fn integer(lit: &[u8]) -> Option<i128> {
    let (negative, digits) = match lit.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, lit),
    };
    let v = if digits.len() <= 18 {
        // The common case in 64-bit arithmetic, which 18 digits cannot overflow.
        i128::from(digits.iter().fold(0i64, |v, d| v * 10 + i64::from(d - b'0')))
    } else if digits.len() <= 38 {
        digits.iter().fold(0i128, |v, d| v * 10 + i128::from(d - b'0'))
    } else {
        return None;
    };
    Some(if negative { -v } else { v })
}

/// Skips a whole JSON value (a field that is not a column), checking it is valid.
fn skip_value(s: &[u8], i: usize, depth: usize) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    match *s.get(i)? {
        b'"' => string_end(s, i + 1).and_then(|(end, escaped)| {
            // An escape is only skipped once it is known to be valid.
            if escaped {
                let text = std::str::from_utf8(&s[i + 1..end]).ok()?;
                unescape(text, &mut String::new())?;
            }
            Some(end + 1)
        }),
        b'{' | b'[' => {
            let close = if s[i] == b'{' { b'}' } else { b']' };
            let mut j = skip_ws(s, i + 1);
            if s.get(j) == Some(&close) {
                return Some(j + 1);
            }
            loop {
                if close == b'}' {
                    // A member's name, then a colon.
                    if s.get(j) != Some(&b'"') {
                        return None;
                    }
                    j = skip_ws(s, skip_value(s, j, depth + 1)?);
                    if s.get(j) != Some(&b':') {
                        return None;
                    }
                    j = skip_ws(s, j + 1);
                }
                j = skip_ws(s, skip_value(s, j, depth + 1)?);
                match s.get(j) {
                    Some(b',') => j = skip_ws(s, j + 1),
                    Some(c) if *c == close => return Some(j + 1),
                    _ => return None,
                }
            }
        }
        b't' if s[i..].starts_with(b"true") => Some(i + 4),
        b'f' if s[i..].starts_with(b"false") => Some(i + 5),
        b'n' if s[i..].starts_with(b"null") => Some(i + 4),
        _ => number(s, i).map(|(end, _)| end),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_json::ReaderBuilder;
    use datafusion::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("small", DataType::Int8, true),
            Field::new("count", DataType::UInt32, true),
            Field::new("price", DataType::Float64, true),
            Field::new("ratio", DataType::Float32, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    /// What arrow-json makes of the same records, as `JsonDecoder` calls it.
    fn arrow_json(schema: &SchemaRef, records: &[&[u8]]) -> Option<RecordBatch> {
        let mut d = ReaderBuilder::new(schema.clone()).with_strict_mode(false).build_decoder().ok()?;
        for r in records {
            let n = d.decode(r).ok()?;
            if n != r.len() || d.is_empty() {
                return None;
            }
            d.decode(b"\n").ok()?;
        }
        d.flush().ok()?.filter(|b| b.num_rows() == records.len())
    }

    fn flat(records: &[&str]) -> Option<RecordBatch> {
        let s = schema();
        let names: Vec<String> = s.fields().iter().map(|f| f.name().clone()).collect();
        let records: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
        FlatJsonDecoder::new(s, &names).unwrap().decode(&records)
    }

    /// Reads the records exactly as arrow-json does.
    fn same_as_arrow_json(records: &[&str]) {
        let got = flat(records).unwrap_or_else(|| panic!("gave up on {records:?}"));
        let bytes: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
        let want = arrow_json(&schema(), &bytes).expect("arrow-json reads it");
        assert_eq!(got, want, "{records:?}");
    }

    /// Gives up where arrow-json reads something else or fails.
    fn gives_up(record: &str) {
        assert!(flat(&[r#"{"id": 1}"#, record]).is_none(), "did not give up on {record}");
    }

    #[test]
    fn reads_flat_objects_as_arrow_json_does() {
        same_as_arrow_json(&[
            r#"{"id": 1, "small": -128, "count": 4294967295, "price": 1.5e3, "ratio": 0.25, "ok": true, "name": "a"}"#,
            r#"{"name":"b","id":-9223372036854775808,"ok":false}"#,
            r#" { "id" : 9223372036854775807 , "price": -0.0, "extra": {"a": [1, 2.5, "x", null, true, {}]}, "ratio": 3 } "#,
            r#"{}"#,
            r#"{"id": null, "name": null, "ok": null, "price": 12, "unknown": "\u00e9\n"}"#,
            r#"{"name": "tab\there \"quoted\" \\ \/ \u00e9 \ud83d\ude00 é 😀", "small": 0}"#,
            "{\"name\": \"line\\nbreak\",\r\n\t\"count\": 0}",
            "{\"name\": \"raw\ttab and \u{1} kept\"}",
            r#"{"price": 0.1, "ratio": 1e-7, "id": -0}"#,
        ]);
        assert_eq!(flat(&[]).unwrap().num_rows(), 0);
    }

    #[test]
    fn gives_up_where_arrow_json_differs_or_fails() {
        for record in [
            r#"{"id": 1.0}"#,
            r#"{"id": "1"}"#,
            r#"{"id": 1e2}"#,
            r#"{"small": 128}"#,
            r#"{"count": -1}"#,
            r#"{"id": 99999999999999999999}"#,
            r#"{"name": 1}"#,
            r#"{"name": true}"#,
            r#"{"ok": 1}"#,
            r#"{"ok": "true"}"#,
            r#"{"price": "1"}"#,
            r#"{"price": 1e999}"#,
            r#"{"id": 1, "id": 2}"#,
            r#"{"id": [1]}"#,
            r#"{"name": {"a": 1}}"#,
            r#"{"id": 01}"#,
            r#"{"id": +1}"#,
            r#"{"id": 1,}"#,
            r#"{"id": 1} {"id": 2}"#,
            r#"{"id": 1"#,
            r#"{"name": "unterminated}"#,
            r#"{"name": "bad \x escape"}"#,
            r#"{"name": "lone \ud800 surrogate"}"#,
            r#"{"na\u006de": "escaped key"}"#,
            r#"{"other": [1, 2,]}"#,
            r#"{"other": nul}"#,
            r#"[1]"#,
            r#""text""#,
            "",
            "\u{c}{}",
        ] {
            gives_up(record);
        }
        assert!(FlatJsonDecoder::new(schema(), &["id".into()]).is_none());
        let nested = Arc::new(Schema::new(vec![Field::new("t", DataType::Date32, true)]));
        assert!(FlatJsonDecoder::new(nested, &["t".into()]).is_none());
    }

    /// The `name` column left unread: nulls there, the other columns as read whole, and the
    /// same records given up on.
    fn flat_without_name(records: &[&str]) -> Option<RecordBatch> {
        let s = schema();
        let names: Vec<String> = s.fields().iter().map(|f| f.name().clone()).collect();
        let read: Vec<bool> = names.iter().map(|n| n != "name").collect();
        let records: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
        FlatJsonDecoder::new(s, &names).unwrap().reading_only(&read).decode(&records)
    }

    #[test]
    fn a_string_column_left_unread_is_null_and_checked_as_if_read() {
        let records = [
            r#"{"id": 1, "name": "a", "price": 2.5}"#,
            r#"{"name": "tab\there \"quoted\" \u00e9", "id": 2}"#,
            r#"{"id": 3, "name": null}"#,
            r#"{"id": 4}"#,
        ];
        let got = flat_without_name(&records).unwrap();
        let whole = flat(&records).unwrap();
        let name = got.schema().index_of("name").unwrap();
        assert_eq!(got.column(name).null_count(), 4);
        assert_eq!(got.column(name).data_type(), &DataType::Utf8);
        for c in (0..whole.num_columns()).filter(|c| *c != name) {
            assert_eq!(got.column(c), whole.column(c), "column {c}");
        }
        for record in [
            r#"{"name": 1}"#,
            r#"{"name": true}"#,
            r#"{"name": {"a": 1}}"#,
            r#"{"name": "unterminated}"#,
            r#"{"name": "bad \x escape"}"#,
            r#"{"name": "lone \ud800 surrogate"}"#,
            r#"{"name": "a", "name": "b"}"#,
        ] {
            assert!(flat(&[record]).is_none(), "read whole: {record}");
            assert!(flat_without_name(&[r#"{"id": 1}"#, record]).is_none(), "did not give up on {record}");
        }
    }

    #[test]
    fn gives_up_on_text_that_is_not_utf8() {
        let s = schema();
        let names: Vec<String> = s.fields().iter().map(|f| f.name().clone()).collect();
        let bad: &[u8] = b"{\"name\": \"\xff\"}";
        assert!(FlatJsonDecoder::new(s, &names).unwrap().decode(&[bad]).is_none());
    }

    /// Records made by mutating a valid one byte by byte: whatever the decoder reads, arrow-json
    /// reads the same.
    #[test]
    fn never_reads_differently_from_arrow_json() {
        let base = r#"{"id": 12, "small": -3, "count": 7, "price": 2.5, "ratio": 1e1, "ok": true, "name": "a\"b", "x": [{"y": null}]}"#;
        let alphabet = b" {}[]:,\"\\-+.0123456789eEtrufalsn\n";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut random = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut read, mut total) = (0, 0);
        for _ in 0..20_000 {
            let mut r = base.as_bytes().to_vec();
            for _ in 0..1 + random() % 3 {
                let at = (random() as usize) % r.len();
                let c = alphabet[(random() as usize) % alphabet.len()];
                match random() % 3 {
                    0 => r[at] = c,
                    1 => r.insert(at, c),
                    _ => {
                        r.remove(at);
                    }
                }
            }
            let text = String::from_utf8(r).unwrap();
            total += 1;
            if let Some(got) = flat(&[&text]) {
                read += 1;
                let want = arrow_json(&schema(), &[text.as_bytes()]);
                assert_eq!(Some(got), want, "{text}");
            }
        }
        // The mutations keep a good share of the records valid: the comparison is not empty.
        assert!(read > total / 10, "{read} of {total}");
    }
}
