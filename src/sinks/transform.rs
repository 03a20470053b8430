//! Single message transforms of the native sinks (a sink's `connector.transforms`): each row,
//! decoded from the model's topic, goes through them in order before the sink writes it.
//! `validate` checks them against the model's columns (`compile::sink_checks`); here they apply
//! to the rows, and a row one cannot convert is refused with the reason.

use std::collections::BTreeMap;
use std::fmt::Write;

use chrono::{DateTime, NaiveDateTime};
use datafusion::arrow::datatypes::DataType;
use serde_json::{Map, Value};

pub use crate::compile::sink_transforms::{column_after, columns_after};
use crate::project::config::{HeaderValueFrom, SinkTransform, TimestampKind};
use crate::sql::types::parse_sql_type;

/// The replacement of a masked string when the transform names none.
pub const DEFAULT_MASK: &str = "****";

/// The names `insert_header` can put in a header.
#[derive(Debug, Clone, Copy)]
pub struct Names<'a> {
    pub project: &'a str,
    pub model: &'a str,
    pub sink: &'a str,
}

/// A row after the transforms, and what they say about its record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transformed {
    pub row: Map<String, Value>,
    /// `set_key`: the record's key.
    pub key: Option<Value>,
    /// `insert_header`: headers to add, in order.
    pub headers: Vec<(String, String)>,
    /// `route`: where the row goes (a topic, a subdirectory), as rendered.
    pub route: Option<String>,
}

/// One row after the transforms; `Err` names why a transform cannot apply to it.
pub fn apply(transforms: &[SinkTransform], row: Map<String, Value>) -> Result<Map<String, Value>, String> {
    apply_all(transforms, row, Names { project: "", model: "", sink: "" }).map(|t| t.row)
}

/// One row after the transforms, with the key, headers and route they set.
pub fn apply_all(
    transforms: &[SinkTransform],
    row: Map<String, Value>,
    names: Names<'_>,
) -> Result<Transformed, String> {
    let mut out = Transformed { row, ..Transformed::default() };
    for t in transforms {
        let row = &mut out.row;
        match t {
            SinkTransform::MaskField { fields, replacement } => {
                for f in fields {
                    if let Some(v) = row.get_mut(f) {
                        *v = masked(v, replacement.as_deref().unwrap_or(DEFAULT_MASK));
                    }
                }
            }
            // `retain` keeps the other fields' order.
            SinkTransform::DropField { fields } => row.retain(|k, _| !fields.contains(k)),
            SinkTransform::RenameField { renames } => out.row = rename(renames, std::mem::take(row)),
            SinkTransform::Cast { fields } => {
                for (f, to) in fields {
                    let Some(v) = row.get_mut(f) else { continue };
                    let target = parse_sql_type(to).map_err(|e| format!("cast of `{f}`: {e}"))?;
                    *v = cast(v, &target).map_err(|e| format!("cast of `{f}` to {to}: {e}"))?;
                }
            }
            SinkTransform::TimestampConvert { field, to, format } => {
                if let Some(v) = row.get_mut(field) {
                    *v = convert_time(v, *to, format.as_deref())
                        .map_err(|e| format!("timestamp_convert of `{field}`: {e}"))?;
                }
            }
            SinkTransform::SetKey { fields } => {
                let value = |f: &String| row.get(f).cloned().ok_or_else(|| format!("set_key: the row has no `{f}`"));
                out.key = Some(match fields.as_slice() {
                    [one] => value(one)?,
                    many => {
                        Value::Object(many.iter().map(|f| Ok((f.clone(), value(f)?))).collect::<Result<_, String>>()?)
                    }
                });
            }
            SinkTransform::InsertHeader { header, value, value_from } => {
                let v = match (value, value_from) {
                    (Some(v), _) => v.clone(),
                    (None, Some(HeaderValueFrom::Project)) => names.project.to_string(),
                    (None, Some(HeaderValueFrom::Model)) => names.model.to_string(),
                    (None, Some(HeaderValueFrom::Sink)) => names.sink.to_string(),
                    (None, None) => String::new(),
                };
                out.headers.push((header.clone(), v));
            }
            SinkTransform::Route { to } => out.route = Some(render_route(to, row)?),
        }
    }
    Ok(out)
}

/// A masked value, of the same JSON type as `v` (Connect's MaskField).
fn masked(v: &Value, replacement: &str) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::String(_) => Value::String(replacement.to_string()),
        Value::Number(_) => Value::from(0),
        Value::Bool(_) => Value::Bool(false),
        Value::Array(_) => Value::Array(Vec::new()),
        Value::Object(_) => Value::Object(Map::new()),
    }
}

/// Renames at once (`{a: b, b: a}` swaps), keeping the fields' order.
fn rename(renames: &BTreeMap<String, String>, row: Map<String, Value>) -> Map<String, Value> {
    row.into_iter().map(|(k, v)| (renames.get(&k).cloned().unwrap_or(k), v)).collect()
}

/// A route template with each `{{field}}` replaced by the field's value (a string as it is, a
/// number or boolean as JSON); a missing or null field refuses the row.
fn render_route(template: &str, row: &Map<String, Value>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        let Some(j) = rest[i..].find("}}") else { break };
        out.push_str(&rest[..i]);
        let field = rest[i + 2..i + j].trim();
        match row.get(field) {
            Some(Value::String(s)) => out.push_str(s),
            Some(v @ (Value::Number(_) | Value::Bool(_))) => out.push_str(&v.to_string()),
            Some(Value::Null) | None => {
                return Err(format!("route: `{field}` is null, there is nowhere to send the row"))
            }
            Some(_) => return Err(format!("route: `{field}` is a list or an object, not a name")),
        }
        rest = &rest[i + j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A value cast to a SQL type, as JSON.
fn cast(v: &Value, to: &DataType) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let shown = || match v {
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    };
    let number = || -> Result<f64, String> {
        match v {
            Value::Number(n) => n.as_f64().ok_or_else(|| format!("{} is not a number", shown())),
            Value::String(s) => s.trim().parse::<f64>().map_err(|_| format!("{} is not a number", shown())),
            Value::Bool(b) => Ok(f64::from(u8::from(*b))),
            _ => Err(format!("{} is not a number", shown())),
        }
    };
    let integer = |min: i64, max: i64| -> Result<Value, String> {
        // Integers exactly (an i64 beyond 2^53 stays itself), others through f64, truncated.
        let i = match v {
            Value::Number(n) if n.is_i64() => n.as_i64().unwrap_or_default(),
            Value::String(s) if s.trim().parse::<i64>().is_ok() => s.trim().parse::<i64>().unwrap_or_default(),
            _ => {
                let f = number()?.trunc();
                if !f.is_finite() || f < i64::MIN as f64 || f > i64::MAX as f64 {
                    return Err(format!("{} is out of range", shown()));
                }
                f as i64
            }
        };
        if i < min || i > max {
            return Err(format!("{} is out of range", shown()));
        }
        Ok(Value::from(i))
    };
    match to {
        DataType::Boolean => match v {
            Value::Bool(b) => Ok(Value::Bool(*b)),
            Value::Number(n) => Ok(Value::Bool(n.as_f64().is_some_and(|f| f != 0.0))),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "t" | "yes" | "1" => Ok(Value::Bool(true)),
                "false" | "f" | "no" | "0" => Ok(Value::Bool(false)),
                _ => Err(format!("{} is not a boolean", shown())),
            },
            _ => Err(format!("{} is not a boolean", shown())),
        },
        DataType::Int8 => integer(i8::MIN.into(), i8::MAX.into()),
        DataType::Int16 => integer(i16::MIN.into(), i16::MAX.into()),
        DataType::Int32 => integer(i32::MIN.into(), i32::MAX.into()),
        DataType::Int64 => integer(i64::MIN, i64::MAX),
        DataType::Float32 | DataType::Float64 => {
            let f = number()?;
            serde_json::Number::from_f64(f).map(Value::Number).ok_or_else(|| format!("{} is not finite", shown()))
        }
        DataType::Decimal128(precision, scale) => {
            let f = number()?;
            let factor = 10f64.powi(i32::from(*scale));
            let rounded = (f * factor).round() / factor;
            let whole_digits = i32::from(*precision) - i32::from(*scale);
            if rounded.abs() >= 10f64.powi(whole_digits) {
                return Err(format!("{} does not fit DECIMAL({precision},{scale})", shown()));
            }
            serde_json::Number::from_f64(rounded).map(Value::Number).ok_or_else(|| format!("{} is not finite", shown()))
        }
        DataType::Utf8 => Ok(Value::String(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })),
        other => Err(format!("cannot cast to {other}")),
    }
}

/// Epoch milliseconds of a timestamp value: a number is already epoch ms; a string is read with
/// `format`, else as the timestamps the jobs write (`2017-09-27T17:04:17.000`, RFC 3339 too).
fn epoch_ms(v: &Value, format: Option<&str>) -> Result<i64, String> {
    match v {
        Value::Number(n) => {
            n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)).ok_or_else(|| format!("{n} is not epoch milliseconds"))
        }
        Value::String(s) => {
            let naive = match format {
                Some(f) => NaiveDateTime::parse_from_str(s, f)
                    .or_else(|e| {
                        // A format of a date only.
                        chrono::NaiveDate::parse_from_str(s, f)
                            .map(|d| d.and_time(chrono::NaiveTime::MIN))
                            .map_err(|_| e)
                    })
                    .map_err(|e| format!("\"{s}\" does not match the format `{f}`: {e}"))?,
                None => match DateTime::parse_from_rfc3339(s) {
                    Ok(t) => return Ok(t.timestamp_millis()),
                    Err(_) => ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
                        .iter()
                        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
                        .ok_or_else(|| format!("\"{s}\" is not a timestamp"))?,
                },
            };
            Ok(naive.and_utc().timestamp_millis())
        }
        other => Err(format!("{other} is not a timestamp")),
    }
}

/// The form of a timestamp `timestamp_convert` writes for `to: timestamp`.
const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3f";

fn convert_time(v: &Value, to: TimestampKind, format: Option<&str>) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    // A format describes the string side: the input, unless the output is the string.
    let ms = epoch_ms(v, if to == TimestampKind::String { None } else { format })?;
    let at = DateTime::from_timestamp_millis(ms).ok_or_else(|| format!("{ms} ms is out of range"))?.naive_utc();
    let text = |f: &str| {
        let mut s = String::new();
        write!(s, "{}", at.format(f)).map(|_| s).map_err(|_| format!("`{f}` is not a valid format"))
    };
    Ok(match to {
        TimestampKind::UnixMs => Value::from(ms),
        TimestampKind::Timestamp => Value::String(text(TIMESTAMP_FORMAT)?),
        TimestampKind::String => Value::String(text(format.unwrap_or(TIMESTAMP_FORMAT))?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn parse(v: Value) -> Vec<SinkTransform> {
        serde_json::from_value(v).unwrap()
    }

    const NAMES: Names<'static> = Names { project: "soe_demo", model: "orders", sink: "orders_out" };

    #[test]
    fn mask_replaces_values_by_their_type() {
        let ts = parse(json!([{"type": "mask_field", "fields": ["name", "id", "ok", "tags", "none", "absent"]}]));
        let got = apply(&ts, row(json!({"name": "Ann", "id": 42, "ok": true, "tags": ["a"], "none": null, "x": 1.5})))
            .unwrap();
        assert_eq!(got, row(json!({"name": "****", "id": 0, "ok": false, "tags": [], "none": null, "x": 1.5})));
        let ts = parse(json!([{"type": "mask_field", "fields": ["name", "score"], "replacement": "REDACTED"}]));
        assert_eq!(
            apply(&ts, row(json!({"name": "Ann", "score": 2.5}))).unwrap(),
            row(json!({"name": "REDACTED", "score": 0}))
        );
    }

    #[test]
    fn drop_and_rename_change_the_columns_in_order() {
        let ts = parse(json!([
            {"type": "drop_field", "fields": ["secret"]},
            {"type": "rename_field", "renames": {"a": "b", "b": "a", "c": "d"}},
            {"type": "mask_field", "fields": ["d"]},
        ]));
        let got = apply(&ts, row(json!({"a": 1, "secret": "s", "b": 2, "c": "x"}))).unwrap();
        assert_eq!(got, row(json!({"b": 1, "a": 2, "d": "****"})));
        let order: Vec<&String> = got.keys().collect();
        assert_eq!(order, ["b", "a", "d"], "the fields keep their order");
        assert_eq!(column_after(&ts, "secret"), None);
        assert_eq!(column_after(&ts, "a").as_deref(), Some("b"));
        assert_eq!(column_after(&ts, "c").as_deref(), Some("d"));
        assert_eq!(column_after(&ts, "e").as_deref(), Some("e"));
    }

    #[test]
    fn cast_converts_or_refuses_the_row() {
        let ts = parse(json!([{"type": "cast", "fields": {
            "a": "BIGINT", "b": "STRING", "c": "DOUBLE", "d": "BOOLEAN", "e": "DECIMAL(5,2)", "f": "INT", "n": "INT"
        }}]));
        let got =
            apply(&ts, row(json!({"a": "42", "b": 7, "c": "2.5", "d": "yes", "e": 12.34567, "f": 9.9, "n": null})));
        assert_eq!(got.unwrap(), row(json!({"a": 42, "b": "7", "c": 2.5, "d": true, "e": 12.35, "f": 9, "n": null})));
        let bad = |v: Value| apply(&ts, row(v)).unwrap_err();
        assert_eq!(bad(json!({"a": "abc"})), "cast of `a` to BIGINT: \"abc\" is not a number");
        assert_eq!(bad(json!({"f": 3_000_000_000i64})), "cast of `f` to INT: 3000000000 is out of range");
        assert_eq!(bad(json!({"e": 1234.5})), "cast of `e` to DECIMAL(5,2): 1234.5 does not fit DECIMAL(5,2)");
        assert_eq!(bad(json!({"d": "maybe"})), "cast of `d` to BOOLEAN: \"maybe\" is not a boolean");
        // An i64 beyond f64's integers stays exact.
        let ts = parse(json!([{"type": "cast", "fields": {"a": "BIGINT"}}]));
        assert_eq!(apply(&ts, row(json!({"a": "9007199254740993"}))).unwrap()["a"], json!(9007199254740993i64));
    }

    #[test]
    fn timestamps_convert_between_strings_timestamps_and_epoch_ms() {
        let f = "%Y-%m-%d %H:%M:%S";
        let ts = parse(json!([
            {"type": "timestamp_convert", "field": "s", "to": "unix_ms", "format": f},
            {"type": "timestamp_convert", "field": "t", "to": "string", "format": "%d/%m/%Y %H:%M"},
            {"type": "timestamp_convert", "field": "ms", "to": "timestamp"},
        ]));
        let got =
            apply(&ts, row(json!({"s": "2017-09-27 17:04:17", "t": "2017-09-27T17:04:17", "ms": 1506531857000i64})));
        assert_eq!(
            got.unwrap(),
            row(json!({"s": 1506531857000i64, "t": "27/09/2017 17:04", "ms": "2017-09-27T17:04:17.000"}))
        );
        let bad = apply(&ts, row(json!({"s": "27.09.2017"}))).unwrap_err();
        assert!(bad.starts_with("timestamp_convert of `s`: \"27.09.2017\" does not match the format"), "{bad}");
        let cols = columns_after(&ts, vec![("s".into(), DataType::Utf8), ("ms".into(), DataType::Int64)]);
        let ms = DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Millisecond, None);
        assert_eq!(cols, vec![("s".into(), DataType::Int64), ("ms".into(), ms)]);
    }

    #[test]
    fn keys_headers_and_routes() {
        let ts = parse(json!([
            {"type": "set_key", "fields": ["mode"]},
            {"type": "insert_header", "header": "lineage.model", "value_from": "model"},
            {"type": "insert_header", "header": "lineage.team", "value": "sales"},
            {"type": "route", "to": "orders-{{mode}}-{{ status }}"},
            {"type": "set_key", "fields": ["mode", "status"]},
        ]));
        let got = apply_all(&ts, row(json!({"mode": "online", "status": 2})), NAMES).unwrap();
        assert_eq!(got.key, Some(json!({"mode": "online", "status": 2})));
        assert_eq!(
            got.headers,
            vec![("lineage.model".into(), "orders".into()), ("lineage.team".into(), "sales".into())]
        );
        assert_eq!(got.route.as_deref(), Some("orders-online-2"));
        let bad = apply_all(&ts, row(json!({"mode": null, "status": 1})), NAMES).unwrap_err();
        assert_eq!(bad, "route: `mode` is null, there is nowhere to send the row");
    }

    #[test]
    fn unknown_types_and_fields_do_not_parse() {
        let bad = |v: Value| serde_json::from_value::<Vec<SinkTransform>>(v).is_err();
        assert!(bad(json!([{"type": "hash_field", "fields": ["a"]}])));
        assert!(bad(json!([{"type": "drop_field", "field": ["a"]}])));
        assert!(bad(json!([{"type": "timestamp_convert", "field": "a", "to": "date"}])));
    }
}
