//! Record keys in a source's or model's `key_format`: JSON (one column bare, several as an
//! object), Kafka's String/Long/Integer/Double serializers (one column), or Avro in the
//! Confluent wire format. Keys are small, so Avro keys go through `avro_json` (Avro binary ↔
//! JSON values), not arrow-avro.

use datafusion::arrow::datatypes::{DataType, Schema};
use serde_json::{json, Number, Value};

use super::avro::{split_frame, MAGIC_BYTE};
use super::avro_json;
use crate::project::config::KeyFormat;

/// The key bytes of a row whose key columns have these values (in key order).
/// `avro`: the key schema's registry id and the schema itself.
pub fn encode_key(
    format: KeyFormat,
    values: &[(String, Value)],
    avro: Option<&(i32, Value)>,
) -> Result<Vec<u8>, String> {
    let one = || match values {
        [(_, v)] => Ok(v),
        _ => Err(format!("key format `{}` takes one key column, not {}", format.name(), values.len())),
    };
    match format {
        KeyFormat::Json => {
            let v = match values {
                [(_, v)] => v.clone(),
                many => Value::Object(many.iter().cloned().collect()),
            };
            serde_json::to_vec(&v).map_err(|e| e.to_string())
        }
        KeyFormat::String => match one()? {
            Value::String(s) => Ok(s.clone().into_bytes()),
            Value::Null => Err("a null key cannot be written as a string".into()),
            other => Ok(other.to_string().into_bytes()),
        },
        KeyFormat::Long => {
            let n = one()?
                .as_i64()
                .ok_or_else(|| format!("key {} is not a whole number", one().unwrap_or(&Value::Null)))?;
            Ok(n.to_be_bytes().to_vec())
        }
        KeyFormat::Int => {
            let n = one()?.as_i64().and_then(|n| i32::try_from(n).ok());
            let n = n.ok_or_else(|| format!("key {} is not a 32-bit whole number", one().unwrap_or(&Value::Null)))?;
            Ok(n.to_be_bytes().to_vec())
        }
        KeyFormat::Double => {
            let n = one()?.as_f64().ok_or_else(|| format!("key {} is not a number", one().unwrap_or(&Value::Null)))?;
            Ok(n.to_be_bytes().to_vec())
        }
        KeyFormat::Avro => {
            let (id, schema) = avro.ok_or("no Avro key schema")?;
            let v = match (values, schema.get("type").and_then(Value::as_str)) {
                ([(_, v)], t) if t != Some("record") => v.clone(),
                (many, _) => Value::Object(many.iter().cloned().collect()),
            };
            let mut out = vec![MAGIC_BYTE];
            out.extend(id.to_be_bytes());
            avro_json::write(schema, &v, &mut out)?;
            Ok(out)
        }
    }
}

/// A key as JSON: an object for several columns (or an Avro record), else the bare value.
/// `writer_schema` looks an Avro key's writer schema up by id.
pub fn decode_key(
    format: KeyFormat,
    bytes: &[u8],
    writer_schema: &dyn Fn(i32) -> Result<String, String>,
) -> Result<Value, String> {
    let fixed = |n: usize| -> Result<[u8; 8], String> {
        if bytes.len() != n {
            return Err(format!("a `{}` key has {n} bytes, this one {}", format.name(), bytes.len()));
        }
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(bytes);
        Ok(b)
    };
    match format {
        KeyFormat::Json => serde_json::from_slice(bytes).map_err(|e| format!("key is not JSON: {e}")),
        KeyFormat::String => {
            std::str::from_utf8(bytes).map(|s| json!(s)).map_err(|_| "key is not UTF-8 text".to_string())
        }
        KeyFormat::Long => Ok(json!(i64::from_be_bytes(fixed(8)?))),
        KeyFormat::Int => {
            let b = fixed(4)?;
            Ok(json!(i32::from_be_bytes([b[0], b[1], b[2], b[3]])))
        }
        KeyFormat::Double => Number::from_f64(f64::from_be_bytes(fixed(8)?))
            .map(Value::Number)
            .ok_or_else(|| "key is not a finite number".to_string()),
        KeyFormat::Avro => {
            let (id, mut body) = split_frame(bytes)?;
            let schema: Value =
                serde_json::from_str(&writer_schema(id)?).map_err(|e| format!("key schema id {id}: {e}"))?;
            avro_json::read_all(&schema, &mut body)
        }
    }
}

/// Whether `format` can carry the key columns `key` of `schema`: Kafka's serializers take one
/// column of a matching type (`long`/`int` whole numbers, `double` numbers, `string` any scalar).
pub fn check_key_format(format: KeyFormat, key: &[String], schema: &Schema) -> Result<(), String> {
    if matches!(format, KeyFormat::Json | KeyFormat::Avro) {
        return Ok(());
    }
    let [one] = key else {
        return Err(format!(
            "key_format `{}` takes exactly one key column; the key is [{}]",
            format.name(),
            key.join(", ")
        ));
    };
    let Some(field) = schema.fields().iter().find(|f| f.name().eq_ignore_ascii_case(one)) else {
        return Ok(()); // an unknown key column is reported where the key is checked
    };
    let dt = field.data_type();
    let fits = match format {
        KeyFormat::Long | KeyFormat::Int => dt.is_integer(),
        KeyFormat::Double => dt.is_numeric(),
        _ => !matches!(dt, DataType::List(_) | DataType::LargeList(_) | DataType::Struct(_) | DataType::Map(..)),
    };
    if fits {
        Ok(())
    } else {
        let sql = crate::sql::types::sql_type_name(dt);
        Err(format!("key_format `{}` cannot carry key column `{one}` of type {sql}", format.name()))
    }
}

/// The Avro schema of a key: the one column's type, or a record of the columns (each nullable).
pub fn avro_key_schema(record_name: &str, key: &[String], schema: &Schema) -> Result<Value, String> {
    let fields: Vec<_> = key
        .iter()
        .map(|k| {
            let f = schema.fields().iter().find(|f| f.name().eq_ignore_ascii_case(k));
            f.map(|f| (f.name().clone(), f.data_type().clone())).ok_or_else(|| format!("no key column `{k}`"))
        })
        .collect::<Result<_, _>>()?;
    if let [(_, dt)] = fields.as_slice() {
        return Ok(json!(["null", super::avro::avro_type(dt)?]));
    }
    let cols = Schema::new(
        fields.iter().map(|(n, dt)| datafusion::arrow::datatypes::Field::new(n, dt.clone(), true)).collect::<Vec<_>>(),
    );
    let text = super::avro::output_schema(&format!("{record_name}_key"), &cols)?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: i32) -> Result<String, String> {
        Err("no registry".into())
    }

    #[test]
    fn kafka_primitive_serializers_round_trip() {
        let k = |v: Value| vec![("ID".to_string(), v)];
        assert_eq!(encode_key(KeyFormat::Long, &k(json!(1)), None).unwrap(), vec![0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(encode_key(KeyFormat::Int, &k(json!(-2)), None).unwrap(), vec![0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(encode_key(KeyFormat::String, &k(json!(42)), None).unwrap(), b"42");
        assert_eq!(encode_key(KeyFormat::Json, &k(json!("a")), None).unwrap(), b"\"a\"");
        for (f, v) in [
            (KeyFormat::Long, json!(-77)),
            (KeyFormat::Int, json!(5)),
            (KeyFormat::Double, json!(2.5)),
            (KeyFormat::String, json!("x y")),
        ] {
            let bytes = encode_key(f, &k(v.clone()), None).unwrap();
            assert_eq!(decode_key(f, &bytes, &none).unwrap(), v);
        }
        assert!(decode_key(KeyFormat::Long, &[1, 2, 3], &none).unwrap_err().contains("8 bytes"));
        assert!(encode_key(KeyFormat::Long, &[("A".into(), json!(1)), ("B".into(), json!(2))], None).is_err());
    }

    #[test]
    fn avro_keys_round_trip_in_the_wire_format() {
        let schema = json!({"type": "record", "name": "K", "fields": [
            {"name": "A", "type": "long"}, {"name": "B", "type": ["null", "string"], "default": null}]});
        let values = [("A".to_string(), json!(300)), ("B".to_string(), json!("x"))];
        let bytes = encode_key(KeyFormat::Avro, &values, Some(&(7, schema.clone()))).unwrap();
        // magic, id 7, zigzag(300) = d8 04, branch 1, "x".
        assert_eq!(bytes, vec![0, 0, 0, 0, 7, 0xd8, 0x04, 2, 2, b'x']);
        let lookup = |id: i32| if id == 7 { Ok(schema.to_string()) } else { Err(format!("unknown schema id {id}")) };
        assert_eq!(decode_key(KeyFormat::Avro, &bytes, &lookup).unwrap(), json!({"A": 300, "B": "x"}));
        let long = encode_key(KeyFormat::Avro, &[("A".into(), json!(-3))], Some(&(7, json!("long")))).unwrap();
        assert_eq!(&long[5..], &[5]);
        assert!(decode_key(KeyFormat::Avro, &bytes[..8], &lookup).unwrap_err().contains("truncated"));
        assert!(decode_key(KeyFormat::Avro, &[0, 0, 0, 0, 9, 2], &lookup).unwrap_err().contains("unknown schema id 9"));
    }
}
