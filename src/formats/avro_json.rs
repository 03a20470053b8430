//! Avro binary ↔ JSON values, for small or nested data read record by record: Avro keys and
//! Debezium envelopes in Avro (`debezium-avro`). Handles the whole Avro type system: primitives,
//! records, enums, arrays, maps, unions, fixed, named type references, and the `decimal`
//! logical type (as a number). Values are bound to fields by name on writing.

use std::collections::HashMap;

use serde_json::{json, Map, Number, Value};

/// Named types seen so far (records, enums, fixed), by full and short name.
#[derive(Default)]
struct Names<'a>(HashMap<String, &'a Value>);

impl<'a> Names<'a> {
    fn define(&mut self, schema: &'a Value, namespace: Option<&str>) {
        let Some(name) = schema.get("name").and_then(Value::as_str) else { return };
        let ns = schema.get("namespace").and_then(Value::as_str).or(namespace);
        self.0.insert(name.to_string(), schema);
        if let Some(ns) = ns.filter(|_| !name.contains('.')) {
            self.0.insert(format!("{ns}.{name}"), schema);
        }
        if let Some((_, short)) = name.rsplit_once('.') {
            self.0.insert(short.to_string(), schema);
        }
    }

    /// Defines every named type in `schema` (a reference may come before the reader meets the
    /// definition, e.g. in an earlier union branch that the data does not take).
    fn collect(&mut self, schema: &'a Value, ns: Option<&str>, depth: usize) {
        if depth > 64 {
            return;
        }
        match schema {
            Value::Array(branches) => branches.iter().for_each(|b| self.collect(b, ns, depth + 1)),
            Value::Object(o) => {
                let inner = o.get("namespace").and_then(Value::as_str).or(ns);
                if matches!(o.get("type").and_then(Value::as_str), Some("record" | "error" | "enum" | "fixed")) {
                    self.define(schema, ns);
                }
                for f in o.get("fields").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(t) = f.get("type") {
                        self.collect(t, inner, depth + 1);
                    }
                }
                for k in ["items", "values"] {
                    if let Some(t) = o.get(k) {
                        self.collect(t, inner, depth + 1);
                    }
                }
                if let Some(t @ (Value::Object(_) | Value::Array(_))) = o.get("type") {
                    self.collect(t, inner, depth + 1);
                }
            }
            _ => {}
        }
    }

    fn resolve(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).copied().or_else(|| name.rsplit_once('.').and_then(|(_, s)| self.0.get(s).copied()))
    }
}

const PRIMITIVES: [&str; 8] = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"];

/// Reads one value of `schema` and checks that nothing follows it.
pub fn read_all(schema: &Value, input: &mut &[u8]) -> Result<Value, String> {
    let v = read(schema, input)?;
    if !input.is_empty() {
        return Err(format!("{} bytes after the Avro value", input.len()));
    }
    Ok(v)
}

/// Reads one value of `schema` from Avro binary.
pub fn read(schema: &Value, input: &mut &[u8]) -> Result<Value, String> {
    let mut names = Names::default();
    names.collect(schema, None, 0);
    read_with(schema, input, &mut names, None, 0)
}

fn read_long(input: &mut &[u8]) -> Result<i64, String> {
    let mut z: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first().ok_or("truncated Avro data")?;
        *input = rest;
        z |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok((z >> 1) as i64 ^ -((z & 1) as i64));
        }
    }
    Err("invalid Avro varint".into())
}

fn take<'b>(input: &mut &'b [u8], n: usize) -> Result<&'b [u8], String> {
    if input.len() < n {
        return Err("truncated Avro data".into());
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn length(input: &mut &[u8]) -> Result<usize, String> {
    usize::try_from(read_long(input)?).map_err(|_| "negative length in Avro data".to_string())
}

/// A decimal's unscaled big-endian two's complement bytes as a number.
fn decimal(bytes: &[u8], scale: i64) -> Value {
    let mut n: i128 = if bytes.first().is_some_and(|b| b & 0x80 != 0) { -1 } else { 0 };
    for b in bytes.iter().take(16) {
        n = (n << 8) | i128::from(*b);
    }
    Number::from_f64(n as f64 / 10f64.powi(scale as i32)).map_or(Value::Null, Value::Number)
}

fn read_with<'a>(
    schema: &'a Value,
    input: &mut &[u8],
    names: &mut Names<'a>,
    ns: Option<&str>,
    depth: usize,
) -> Result<Value, String> {
    if depth > 64 {
        return Err("Avro schema nested too deeply".into());
    }
    let unsupported = || format!("unsupported Avro schema {schema}");
    match schema {
        Value::Array(branches) => {
            let i = read_long(input)?;
            let b = usize::try_from(i).ok().and_then(|i| branches.get(i)).ok_or("invalid Avro union branch")?;
            read_with(b, input, names, ns, depth + 1)
        }
        Value::String(t) if !PRIMITIVES.contains(&t.as_str()) => {
            let named = names.resolve(t).ok_or_else(|| format!("unknown Avro type `{t}`"))?;
            read_with(named, input, names, ns, depth + 1)
        }
        Value::String(t) => read_primitive(t, schema, input),
        Value::Object(o) => {
            let t = o.get("type").ok_or_else(unsupported)?;
            let inner_ns = o.get("namespace").and_then(Value::as_str).or(ns);
            match t.as_str() {
                Some("record" | "error") => {
                    names.define(schema, ns);
                    let fields = o.get("fields").and_then(Value::as_array).ok_or_else(unsupported)?;
                    let mut m = Map::new();
                    for f in fields {
                        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
                        let ft = f.get("type").ok_or_else(unsupported)?;
                        m.insert(name.to_string(), read_with(ft, input, names, inner_ns, depth + 1)?);
                    }
                    Ok(Value::Object(m))
                }
                Some("enum") => {
                    names.define(schema, ns);
                    let i = read_long(input)?;
                    let symbols = o.get("symbols").and_then(Value::as_array).ok_or_else(unsupported)?;
                    usize::try_from(i)
                        .ok()
                        .and_then(|i| symbols.get(i))
                        .cloned()
                        .ok_or("invalid Avro enum index".into())
                }
                Some("fixed") => {
                    names.define(schema, ns);
                    let size = o.get("size").and_then(Value::as_u64).ok_or_else(unsupported)? as usize;
                    let bytes = take(input, size)?;
                    Ok(match o.get("logicalType").and_then(Value::as_str) {
                        Some("decimal") => decimal(bytes, o.get("scale").and_then(Value::as_i64).unwrap_or(0)),
                        _ => json!(String::from_utf8_lossy(bytes)),
                    })
                }
                Some("array") => {
                    let items = o.get("items").ok_or_else(unsupported)?;
                    let mut out = Vec::new();
                    loop {
                        let mut n = read_long(input)?;
                        if n == 0 {
                            return Ok(Value::Array(out));
                        }
                        if n < 0 {
                            n = -n;
                            read_long(input)?; // the block's size in bytes
                        }
                        for _ in 0..n {
                            out.push(read_with(items, input, names, inner_ns, depth + 1)?);
                        }
                    }
                }
                Some("map") => {
                    let values = o.get("values").ok_or_else(unsupported)?;
                    let mut out = Map::new();
                    loop {
                        let mut n = read_long(input)?;
                        if n == 0 {
                            return Ok(Value::Object(out));
                        }
                        if n < 0 {
                            n = -n;
                            read_long(input)?;
                        }
                        for _ in 0..n {
                            let len = length(input)?;
                            let k = String::from_utf8_lossy(take(input, len)?).to_string();
                            out.insert(k, read_with(values, input, names, inner_ns, depth + 1)?);
                        }
                    }
                }
                Some(p) if PRIMITIVES.contains(&p) => read_primitive(p, schema, input),
                // `{"type": {...}}` or `{"type": "Named"}`: the inner schema.
                _ => read_with(t, input, names, inner_ns, depth + 1),
            }
        }
        _ => Err(unsupported()),
    }
}

fn read_primitive(t: &str, schema: &Value, input: &mut &[u8]) -> Result<Value, String> {
    Ok(match t {
        "null" => Value::Null,
        "boolean" => json!(take(input, 1)?[0] != 0),
        "int" | "long" => json!(read_long(input)?),
        "float" => {
            let b = take(input, 4)?;
            Number::from_f64(f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64).map_or(Value::Null, Value::Number)
        }
        "double" => {
            let b = take(input, 8)?;
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            Number::from_f64(f64::from_le_bytes(a)).map_or(Value::Null, Value::Number)
        }
        "bytes" | "string" => {
            let n = length(input)?;
            let bytes = take(input, n)?;
            match schema.get("logicalType").and_then(Value::as_str) {
                Some("decimal") => decimal(bytes, schema.get("scale").and_then(Value::as_i64).unwrap_or(0)),
                _ => json!(String::from_utf8_lossy(bytes)),
            }
        }
        _ => return Err(format!("unsupported Avro type {t}")),
    })
}

fn zigzag(n: i64, out: &mut Vec<u8>) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// The type name of a schema (`"long"`, `{"type": "long", "logicalType": ...}`, a record...).
fn type_of(schema: &Value) -> Option<&str> {
    match schema {
        Value::String(s) => Some(s),
        Value::Object(o) => o.get("type").and_then(type_of),
        _ => None,
    }
}

/// Writes `v` in Avro binary with `schema` (primitives, records and unions of them); record
/// fields are matched by name, case-insensitively; a missing field is null.
pub fn write(schema: &Value, v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    if let Value::Array(branches) = schema {
        // The null branch for null, else the first other one.
        let i = branches
            .iter()
            .position(|b| (type_of(b) == Some("null")) == v.is_null())
            .ok_or_else(|| format!("no branch of {schema} takes {v}"))?;
        zigzag(i as i64, out);
        return write(&branches[i], v, out);
    }
    let bad = || format!("{v} is not an Avro {schema}");
    match type_of(schema).ok_or_else(bad)? {
        "null" if v.is_null() => {}
        "boolean" => out.push(u8::from(v.as_bool().ok_or_else(bad)?)),
        "int" | "long" => zigzag(v.as_i64().ok_or_else(bad)?, out),
        "float" => out.extend((v.as_f64().ok_or_else(bad)? as f32).to_le_bytes()),
        "double" => out.extend(v.as_f64().ok_or_else(bad)?.to_le_bytes()),
        "string" | "bytes" => {
            let s = v.as_str().ok_or_else(bad)?;
            zigzag(s.len() as i64, out);
            out.extend(s.as_bytes());
        }
        "record" => {
            let fields = schema.get("fields").and_then(Value::as_array).ok_or_else(bad)?;
            for f in fields {
                let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
                let fv = v.as_object().and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)));
                write(&f["type"], fv.map_or(&Value::Null, |(_, v)| v), out)?;
            }
        }
        _ => return Err(bad()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_named_references_arrays_maps_enums_and_decimals() {
        let schema = json!({"type": "record", "name": "Envelope", "namespace": "db", "fields": [
            {"name": "before", "type": ["null", {"type": "record", "name": "Value", "fields": [
                {"name": "id", "type": "int"},
                {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 6, "scale": 2}}]}]},
            {"name": "after", "type": ["null", "Value"]},
            {"name": "tags", "type": {"type": "array", "items": "string"}},
            {"name": "attrs", "type": {"type": "map", "values": "long"}},
            {"name": "op", "type": {"type": "enum", "name": "Op", "symbols": ["c", "u", "d"]}}]});
        let mut data = vec![0u8]; // before: null
        data.extend([2, 6]); // after: branch 1, id 3
        data.extend([4, 0x04, 0xd2]); // price: 2 bytes, 1234 -> 12.34
        data.extend([2, 2, b'x', 0]); // tags: ["x"]
        data.extend([2, 2, b'k', 10, 0]); // attrs: {"k": 5}
        data.push(2); // op: "u"
        let v = read_all(&schema, &mut data.as_slice()).unwrap();
        assert_eq!(
            v,
            json!({"before": null, "after": {"id": 3, "price": 12.34}, "tags": ["x"], "attrs": {"k": 5}, "op": "u"})
        );
        assert!(read_all(&schema, &mut &data[..data.len() - 1]).unwrap_err().contains("truncated"));
        let mut longer = data.clone();
        longer.push(0);
        assert!(read_all(&schema, &mut longer.as_slice()).unwrap_err().contains("1 bytes after"));
    }

    #[test]
    fn writes_what_it_reads() {
        let schema = json!({"type": "record", "name": "K", "fields": [
            {"name": "A", "type": "long"}, {"name": "B", "type": ["null", "string"]}, {"name": "C", "type": "double"}]});
        let mut out = Vec::new();
        write(&schema, &json!({"a": -300, "b": "é", "c": 0.5}), &mut out).unwrap();
        assert_eq!(read_all(&schema, &mut out.as_slice()).unwrap(), json!({"A": -300, "B": "é", "C": 0.5}));
        assert!(write(&json!("long"), &json!("x"), &mut Vec::new()).is_err());
    }
}
