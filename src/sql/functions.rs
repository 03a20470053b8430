//! ksqlDB's time functions, which the seed's SQL uses, as DataFusion scalar UDFs. Times are
//! BIGINT epoch milliseconds in UTC, as in ksqlDB; patterns are Java `SimpleDateFormat` style.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::array::{Array, ArrayRef, Int64Array, Int64Builder, StringArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

/// Translates a Java date pattern (`yyyy-MM-dd HH:mm:ss.SSS`) into a chrono format string.
pub fn java_to_chrono(pattern: &str) -> Result<String, String> {
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            // Quoted literal; '' is a single quote.
            let mut j = i + 1;
            if chars.get(j) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            while j < chars.len() && chars[j] != '\'' {
                push_literal(&mut out, chars[j]);
                j += 1;
            }
            i = j + 1;
            continue;
        }
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        let spec = match (c, n) {
            ('y', 2) => "%y",
            ('y', _) => "%Y",
            ('M', 1 | 2) => "%m",
            ('M', 3) => "%b",
            ('M', _) => "%B",
            ('d', _) => "%d",
            ('H', _) => "%H",
            ('h', _) => "%I",
            ('m', _) => "%M",
            ('s', _) => "%S",
            ('S', _) => "%3f",
            ('a', _) => "%p",
            ('E', 1..=3) => "%a",
            ('E', _) => "%A",
            ('X' | 'Z', _) => "%z",
            (c, _) if c.is_ascii_alphabetic() => {
                return Err(format!("unsupported pattern letter `{c}` in `{pattern}`"))
            }
            _ => {
                for _ in 0..n {
                    push_literal(&mut out, c);
                }
                i += n;
                continue;
            }
        };
        out.push_str(spec);
        i += n;
    }
    Ok(out)
}

fn push_literal(out: &mut String, c: char) {
    if c == '%' {
        out.push_str("%%");
    } else {
        out.push(c);
    }
}

/// Parses a string with a chrono format into epoch milliseconds (UTC); date-only formats give
/// midnight.
pub fn parse_millis(text: &str, chrono_fmt: &str) -> Option<i64> {
    if let Ok(dt) = DateTime::parse_from_str(text, chrono_fmt) {
        return Some(dt.timestamp_millis());
    }
    if let Ok(dt) = NaiveDateTime::parse_from_str(text, chrono_fmt) {
        return Some(dt.and_utc().timestamp_millis());
    }
    NaiveDate::parse_from_str(text, chrono_fmt)
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc().timestamp_millis())
}

pub fn format_millis(ms: i64, chrono_fmt: &str) -> Option<String> {
    use std::fmt::Write;
    let dt = DateTime::from_timestamp_millis(ms)?;
    let mut s = String::new();
    write!(s, "{}", dt.format(chrono_fmt)).ok()?;
    Some(s)
}

fn literal_pattern(args: &ScalarFunctionArgs, fname: &str) -> Result<String> {
    match &args.args[1] {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(p)) | ScalarValue::LargeUtf8(Some(p)) | ScalarValue::Utf8View(Some(p)),
        ) => match java_to_chrono(p) {
            Ok(f) => Ok(f),
            Err(e) => exec_err!("{fname}: {e}"),
        },
        _ => exec_err!("{fname}: the format must be a string literal"),
    }
}

/// `STRINGTOTIMESTAMP(text, pattern)` → BIGINT epoch milliseconds; NULL when `text` does not match.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StringToTimestamp {
    signature: Signature,
}

/// `TIMESTAMPTOSTRING(millis, pattern)` → STRING.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TimestampToString {
    signature: Signature,
}

impl ScalarUDFImpl for StringToTimestamp {
    fn name(&self) -> &str {
        "stringtotimestamp"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let fmt = literal_pattern(&args, "STRINGTOTIMESTAMP")?;
        let n = args.number_rows;
        let input = args.args[0].clone().into_array(n)?;
        let input = cast(&input, &DataType::Utf8)?;
        let strings = input.as_any().downcast_ref::<StringArray>().expect("cast to Utf8");
        let mut b = Int64Builder::with_capacity(strings.len());
        for i in 0..strings.len() {
            if strings.is_null(i) {
                b.append_null();
            } else {
                b.append_option(parse_millis(strings.value(i), &fmt));
            }
        }
        let out: ArrayRef = Arc::new(b.finish());
        Ok(ColumnarValue::Array(out))
    }
}

impl ScalarUDFImpl for TimestampToString {
    fn name(&self) -> &str {
        "timestamptostring"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let fmt = literal_pattern(&args, "TIMESTAMPTOSTRING")?;
        let n = args.number_rows;
        let input = cast(&args.args[0].clone().into_array(n)?, &DataType::Int64)?;
        let millis = input.as_any().downcast_ref::<Int64Array>().expect("cast to Int64");
        let mut b = StringBuilder::with_capacity(millis.len(), millis.len() * 20);
        for i in 0..millis.len() {
            if millis.is_null(i) {
                b.append_null();
            } else {
                b.append_option(format_millis(millis.value(i), &fmt));
            }
        }
        Ok(ColumnarValue::Array(Arc::new(b.finish())))
    }
}

/// Every function streamctl adds to DataFusion's.
pub fn udfs() -> Vec<ScalarUDF> {
    use DataType::*;
    let exact = |rows: Vec<Vec<DataType>>| {
        Signature::one_of(rows.into_iter().map(TypeSignature::Exact).collect(), Volatility::Immutable)
    };
    vec![
        ScalarUDF::from(StringToTimestamp {
            signature: exact(vec![vec![Utf8, Utf8], vec![Utf8View, Utf8], vec![LargeUtf8, Utf8]]),
        }),
        ScalarUDF::from(TimestampToString { signature: exact(vec![vec![Int64, Utf8], vec![Int32, Utf8]]) }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_patterns() {
        assert_eq!(java_to_chrono("yyyy-MM-dd HH:mm:ss").unwrap(), "%Y-%m-%d %H:%M:%S");
        assert_eq!(
            java_to_chrono("yyyy-MM-dd'T'HH:mm:ss.SSS").unwrap(),
            "%Y-%m-%dT%H:%M:%S%.3f".replace("%.3f", ".%3f")
        );
        assert!(java_to_chrono("yyyy-QQ").is_err());
    }

    #[test]
    fn parse_and_format_round_trip() {
        let f = java_to_chrono("yyyy-MM-dd HH:mm:ss").unwrap();
        let ms = parse_millis("2017-09-27 19:00:40", &f).unwrap();
        assert_eq!(ms, 1_506_538_840_000);
        assert_eq!(format_millis(ms, &f).unwrap(), "2017-09-27 19:00:40");
        assert_eq!(parse_millis("not a date", &f), None);
        assert_eq!(parse_millis("2017-09-27", &java_to_chrono("yyyy-MM-dd").unwrap()), Some(1_506_470_400_000));
    }
}
