//! A source's columns, from inline `columns:` or from a schema file (`.avsc` Avro, `.json`
//! JSON Schema) in the project.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use serde_json::Value;

use crate::project::config::ColumnDef;
use crate::sql::types::parse_sql_type;

/// A resolved column: the field name in the data, its type and nullability.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedColumn {
    pub name: String,
    pub data_type: DataType,
    pub nullable: bool,
    pub description: Option<String>,
}

pub fn from_column_defs(cols: &[ColumnDef]) -> Result<Vec<ResolvedColumn>, (usize, String)> {
    cols.iter()
        .enumerate()
        .map(|(i, c)| {
            let data_type = match (c.data_type.as_deref(), c.headers == Some(true), &c.header) {
                (Some(t), _, _) => parse_sql_type(t).map_err(|e| (i, format!("column `{}`: {e}", c.name)))?,
                (None, true, _) => crate::formats::headers::all_headers_type(),
                (None, false, Some(_)) => DataType::Binary,
                (None, false, None) => return Err((i, format!("column `{}` has no `type`", c.name))),
            };
            Ok(ResolvedColumn {
                name: c.name.clone(),
                data_type,
                nullable: c.nullable.unwrap_or(true),
                description: c.description.clone(),
            })
        })
        .collect()
}

/// Columns of an Avro record schema.
pub fn from_avro(schema: &Value) -> Result<Vec<ResolvedColumn>, String> {
    if schema.get("type").and_then(Value::as_str) != Some("record") {
        return Err("the Avro schema must be a record".into());
    }
    let fields = schema.get("fields").and_then(Value::as_array).ok_or("the Avro record has no `fields`")?;
    fields
        .iter()
        .map(|f| {
            let name = f.get("name").and_then(Value::as_str).ok_or("an Avro field has no `name`")?;
            let (data_type, nullable) =
                avro_type(f.get("type").unwrap_or(&Value::Null)).map_err(|e| format!("field `{name}`: {e}"))?;
            Ok(ResolvedColumn {
                name: name.to_string(),
                data_type,
                nullable,
                description: f.get("doc").and_then(Value::as_str).map(String::from),
            })
        })
        .collect()
}

fn avro_type(t: &Value) -> Result<(DataType, bool), String> {
    match t {
        Value::String(s) => Ok((avro_primitive(s, None)?, false)),
        Value::Array(branches) => {
            let non_null: Vec<&Value> = branches.iter().filter(|b| b.as_str() != Some("null")).collect();
            if non_null.len() != 1 {
                return Err("only unions of null and one type are supported".into());
            }
            let (dt, _) = avro_type(non_null[0])?;
            Ok((dt, non_null.len() < branches.len()))
        }
        Value::Object(o) => {
            let base = o.get("type").and_then(Value::as_str).unwrap_or_default();
            match base {
                "array" => {
                    let (item, n) = avro_type(o.get("items").unwrap_or(&Value::Null))?;
                    Ok((
                        DataType::List(std::sync::Arc::new(datafusion::arrow::datatypes::Field::new("item", item, n))),
                        false,
                    ))
                }
                "record" => {
                    let cols = from_avro(t)?;
                    let fields: Vec<_> = cols
                        .into_iter()
                        .map(|c| datafusion::arrow::datatypes::Field::new(c.name, c.data_type, c.nullable))
                        .collect();
                    Ok((DataType::Struct(fields.into()), false))
                }
                "enum" => Ok((DataType::Utf8, false)),
                _ => Ok((avro_primitive(base, o.get("logicalType").and_then(Value::as_str))?, false)),
            }
        }
        _ => Err(format!("unsupported Avro type {t}")),
    }
}

fn avro_primitive(name: &str, logical: Option<&str>) -> Result<DataType, String> {
    Ok(match (name, logical) {
        ("long", Some("timestamp-millis" | "timestamp-micros")) => DataType::Timestamp(TimeUnit::Millisecond, None),
        ("int", Some("date")) => DataType::Date32,
        ("boolean", _) => DataType::Boolean,
        ("int", _) => DataType::Int32,
        ("long", _) => DataType::Int64,
        ("float", _) => DataType::Float32,
        ("double", _) => DataType::Float64,
        ("string", _) => DataType::Utf8,
        ("bytes" | "fixed", _) => DataType::Binary,
        (other, _) => return Err(format!("unsupported Avro type `{other}`")),
    })
}

/// Columns of a JSON Schema object.
pub fn from_json_schema(schema: &Value) -> Result<Vec<ResolvedColumn>, String> {
    let props = schema.get("properties").and_then(Value::as_object).ok_or("the JSON Schema has no `properties`")?;
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    props
        .iter()
        .map(|(name, p)| {
            let (data_type, nullable) = json_schema_type(p).map_err(|e| format!("property `{name}`: {e}"))?;
            Ok(ResolvedColumn {
                name: name.clone(),
                data_type,
                nullable: nullable || !required.contains(&name.as_str()),
                description: p.get("description").and_then(Value::as_str).map(String::from),
            })
        })
        .collect()
}

fn json_schema_type(p: &Value) -> Result<(DataType, bool), String> {
    let (ty, nullable) = match p.get("type") {
        Some(Value::String(s)) => (s.as_str(), false),
        Some(Value::Array(a)) => {
            let non_null: Vec<&str> = a.iter().filter_map(Value::as_str).filter(|s| *s != "null").collect();
            if non_null.len() != 1 {
                return Err("only `[type, \"null\"]` unions are supported".into());
            }
            (non_null[0], non_null.len() < a.len())
        }
        _ => return Err("no `type`".into()),
    };
    let dt = match (ty, p.get("format").and_then(Value::as_str)) {
        ("string", Some("date-time")) => DataType::Timestamp(TimeUnit::Millisecond, None),
        ("string", Some("date")) => DataType::Date32,
        ("string", _) => DataType::Utf8,
        ("integer", _) => DataType::Int64,
        ("number", _) => DataType::Float64,
        ("boolean", _) => DataType::Boolean,
        ("array", _) => {
            let (item, _) = json_schema_type(p.get("items").unwrap_or(&Value::Null))?;
            DataType::List(std::sync::Arc::new(datafusion::arrow::datatypes::Field::new("item", item, true)))
        }
        ("object", _) => {
            let cols = from_json_schema(p)?;
            DataType::Struct(
                cols.into_iter()
                    .map(|c| datafusion::arrow::datatypes::Field::new(c.name, c.data_type, c.nullable))
                    .collect::<Vec<_>>()
                    .into(),
            )
        }
        (other, _) => return Err(format!("unsupported type `{other}`")),
    };
    Ok((dt, nullable))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn avro_records() {
        let s = json!({"type": "record", "name": "r", "fields": [
            {"name": "id", "type": "int"},
            {"name": "total", "type": ["null", "double"]},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}
        ]});
        let cols = from_avro(&s).unwrap();
        assert_eq!(cols[0].data_type, DataType::Int32);
        assert!(!cols[0].nullable);
        assert!(cols[1].nullable);
        assert_eq!(cols[2].data_type, DataType::Timestamp(TimeUnit::Millisecond, None));
    }

    #[test]
    fn json_schemas() {
        let s = json!({"type": "object", "required": ["id"], "properties": {
            "id": {"type": "integer"}, "name": {"type": ["string", "null"]}
        }});
        let cols = from_json_schema(&s).unwrap();
        assert_eq!((cols[0].name.as_str(), cols[0].nullable), ("id", false));
        assert_eq!((cols[1].data_type.clone(), cols[1].nullable), (DataType::Utf8, true));
    }
}
