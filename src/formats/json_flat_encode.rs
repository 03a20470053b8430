//! A direct Arrow → JSON encoder for the common case: batches whose columns are integers, floats,
//! booleans and strings. It writes every row as arrow-json's line-delimited writer does with
//! explicit nulls (the same bytes: names and strings escaped by serde_json, numbers written by
//! lexical-core, non-finite floats as null) and notes where each row ends as it goes, where
//! arrow-json calls an encoder per value through a trait object and the rows were then found by
//! scanning the text for newlines. Other batches are left to arrow-json (`None`).

use datafusion::arrow::array::{
    Array, ArrowPrimitiveType, AsArray, BooleanArray, PrimitiveArray, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type,
    UInt8Type,
};
use lexical_core::{FormattedSize, ToLexical};

enum Column<'a> {
    I8(&'a PrimitiveArray<Int8Type>),
    I16(&'a PrimitiveArray<Int16Type>),
    I32(&'a PrimitiveArray<Int32Type>),
    I64(&'a PrimitiveArray<Int64Type>),
    U8(&'a PrimitiveArray<UInt8Type>),
    U16(&'a PrimitiveArray<UInt16Type>),
    U32(&'a PrimitiveArray<UInt32Type>),
    U64(&'a PrimitiveArray<UInt64Type>),
    F32(&'a PrimitiveArray<Float32Type>),
    F64(&'a PrimitiveArray<Float64Type>),
    Bool(&'a BooleanArray),
    Str(&'a StringArray),
}

impl<'a> Column<'a> {
    fn of(array: &'a dyn Array) -> Option<Column<'a>> {
        Some(match array.data_type() {
            DataType::Int8 => Column::I8(array.as_primitive()),
            DataType::Int16 => Column::I16(array.as_primitive()),
            DataType::Int32 => Column::I32(array.as_primitive()),
            DataType::Int64 => Column::I64(array.as_primitive()),
            DataType::UInt8 => Column::U8(array.as_primitive()),
            DataType::UInt16 => Column::U16(array.as_primitive()),
            DataType::UInt32 => Column::U32(array.as_primitive()),
            DataType::UInt64 => Column::U64(array.as_primitive()),
            DataType::Float32 => Column::F32(array.as_primitive()),
            DataType::Float64 => Column::F64(array.as_primitive()),
            DataType::Boolean => Column::Bool(array.as_boolean()),
            DataType::Utf8 => Column::Str(array.as_string()),
            _ => return None,
        })
    }

    /// Writes row `i`'s value, which is not null.
    fn write(&self, i: usize, out: &mut Vec<u8>, scratch: &mut Scratch) {
        match self {
            Column::I8(a) => number(a, i, out, scratch),
            Column::I16(a) => number(a, i, out, scratch),
            Column::I32(a) => number(a, i, out, scratch),
            Column::I64(a) => number(a, i, out, scratch),
            Column::U8(a) => number(a, i, out, scratch),
            Column::U16(a) => number(a, i, out, scratch),
            Column::U32(a) => number(a, i, out, scratch),
            Column::U64(a) => number(a, i, out, scratch),
            Column::F32(a) if a.value(i).is_finite() => number(a, i, out, scratch),
            Column::F64(a) if a.value(i).is_finite() => number(a, i, out, scratch),
            // NaN and the infinities, as arrow-json writes them.
            Column::F32(_) | Column::F64(_) => out.extend_from_slice(b"null"),
            Column::Bool(a) => out.extend_from_slice(if a.value(i) { b"true" } else { b"false" }),
            Column::Str(a) => string(a.value(i), out),
        }
    }
}

/// Where numbers are formatted before they are copied out: the longest any of the types takes.
type Scratch = [u8; SCRATCH];
const SCRATCH: usize = max(
    max(<f64 as FormattedSize>::FORMATTED_SIZE, <f32 as FormattedSize>::FORMATTED_SIZE),
    max(<i64 as FormattedSize>::FORMATTED_SIZE, <u64 as FormattedSize>::FORMATTED_SIZE),
);

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

fn number<T: ArrowPrimitiveType>(a: &PrimitiveArray<T>, i: usize, out: &mut Vec<u8>, scratch: &mut Scratch)
where
    T::Native: ToLexical + FormattedSize,
{
    out.extend_from_slice(lexical_core::write(a.value(i), scratch));
}

/// A JSON string, escaped as serde_json (and so arrow-json) escapes it.
fn string(s: &str, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    let _ = serde::Serializer::serialize_str(&mut serde_json::Serializer::new(&mut *out), s);
}

/// The rows of `batch` as JSON objects in one buffer, and where each ends in it; `None` when a
/// column has a type this encoder does not write.
pub fn encode(batch: &RecordBatch) -> Option<(Vec<u8>, Vec<usize>)> {
    let columns: Vec<Column<'_>> = batch.columns().iter().map(|c| Column::of(c.as_ref())).collect::<Option<_>>()?;
    // `"name":` of each column, and whether it has nulls at all.
    let names: Vec<Vec<u8>> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let mut name = Vec::with_capacity(f.name().len() + 3);
            string(f.name(), &mut name);
            name.push(b':');
            name
        })
        .collect();
    let nullable: Vec<bool> = batch.columns().iter().map(|c| c.null_count() > 0).collect();
    let rows = batch.num_rows();
    let mut out = Vec::with_capacity(rows * (names.iter().map(Vec::len).sum::<usize>() + batch.num_columns() * 8 + 2));
    let mut ends = Vec::with_capacity(rows);
    let mut scratch: Scratch = [0; SCRATCH];
    for i in 0..rows {
        out.push(b'{');
        for (c, column) in columns.iter().enumerate() {
            if c > 0 {
                out.push(b',');
            }
            out.extend_from_slice(&names[c]);
            if nullable[c] && batch.column(c).is_null(i) {
                out.extend_from_slice(b"null");
            } else {
                column.write(i, &mut out, &mut scratch);
            }
        }
        out.push(b'}');
        ends.push(out.len());
    }
    Some((out, ends))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_json::writer::{LineDelimited, WriterBuilder};
    use datafusion::arrow::array::{
        ArrayRef, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array, Int8Array, UInt16Array, UInt32Array,
        UInt64Array, UInt8Array,
    };
    use std::sync::Arc;

    /// arrow-json's rows, as `encode_rows` wrote them before (explicit nulls, one per line).
    fn arrow_json(batch: &RecordBatch) -> Vec<Vec<u8>> {
        let mut w = WriterBuilder::new().with_explicit_nulls(true).build::<_, LineDelimited>(Vec::new());
        w.write(batch).unwrap();
        w.finish().unwrap();
        w.into_inner().split(|b| *b == b'\n').filter(|r| !r.is_empty()).map(<[u8]>::to_vec).collect()
    }

    fn direct(batch: &RecordBatch) -> Vec<Vec<u8>> {
        let (out, ends) = encode(batch).expect("a flat batch");
        let mut start = 0;
        ends.iter()
            .map(|&end| {
                let row = out[start..end].to_vec();
                start = end;
                row
            })
            .collect()
    }

    /// A small deterministic generator (xorshift64), so a failure replays.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn writes_the_bytes_arrow_json_writes() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let n = 2000;
        let nulls = |rng: &mut Rng| (0..n).map(|_| !rng.next().is_multiple_of(5)).collect::<Vec<bool>>();
        let pick = |rng: &mut Rng| -> u64 { rng.next() };
        let floats = |rng: &mut Rng| -> Vec<f64> {
            (0..n)
                .map(|i| match i % 9 {
                    0 => f64::NAN,
                    1 => f64::INFINITY,
                    2 => -0.0,
                    3 => 1e-7,
                    4 => 123456789.0 * 0.908,
                    5 => f64::MAX,
                    _ => f64::from_bits(rng.next()),
                })
                .collect()
        };
        let texts = [
            "plain",
            "",
            "quote \" backslash \\ slash /",
            "tab\tnewline\nreturn\r",
            "control \u{1} \u{1f} del \u{7f}",
            "é 😀 \u{2028}",
        ];
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("i8", Arc::new(Int8Array::from_iter((0..n).map(|_| pick(&mut rng) as i8)))),
            ("i16", Arc::new(Int16Array::from_iter_values((0..n).map(|_| pick(&mut rng) as i16)))),
            ("i32", Arc::new(Int32Array::from_iter_values((0..n).map(|_| pick(&mut rng) as i32)))),
            ("i64", {
                let keep = nulls(&mut rng);
                Arc::new(Int64Array::from_iter((0..n).map(|i| keep[i].then(|| pick(&mut rng) as i64))))
            }),
            ("u8", Arc::new(UInt8Array::from_iter_values((0..n).map(|_| pick(&mut rng) as u8)))),
            ("u16", Arc::new(UInt16Array::from_iter_values((0..n).map(|_| pick(&mut rng) as u16)))),
            ("u32", Arc::new(UInt32Array::from_iter_values((0..n).map(|_| pick(&mut rng) as u32)))),
            ("u64", Arc::new(UInt64Array::from_iter_values((0..n).map(|_| pick(&mut rng))))),
            ("f32", Arc::new(Float32Array::from_iter_values(floats(&mut rng).into_iter().map(|v| v as f32)))),
            ("f64", {
                let keep = nulls(&mut rng);
                Arc::new(Float64Array::from_iter(floats(&mut rng).into_iter().zip(keep).map(|(v, k)| k.then_some(v))))
            }),
            ("ok", {
                let keep = nulls(&mut rng);
                Arc::new(BooleanArray::from_iter((0..n).map(|i| keep[i].then(|| pick(&mut rng) % 2 == 0))))
            }),
            ("name \"quoted\" é", {
                let keep = nulls(&mut rng);
                Arc::new(StringArray::from_iter((0..n).map(|i| keep[i].then(|| texts[pick(&mut rng) as usize % 6]))))
            }),
        ];
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        assert_eq!(direct(&batch), arrow_json(&batch));
        // A slice (offsets into its arrays) and an empty batch.
        let slice = batch.slice(7, 100);
        assert_eq!(direct(&slice), arrow_json(&slice));
        assert!(direct(&batch.slice(0, 0)).is_empty());
    }

    #[test]
    fn leaves_other_types_to_arrow_json() {
        let list =
            datafusion::arrow::array::ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1)])]);
        let batch = RecordBatch::try_from_iter([("l", Arc::new(list) as ArrayRef)]).unwrap();
        assert!(encode(&batch).is_none());
    }
}
