//! Debezium change events (JSON): `{"before": {..}, "after": {..}, "op": "c|r|u|d",
//! "source": {"ts_ms": ..}, "ts_ms": ..}`, optionally wrapped by Kafka Connect's JsonConverter
//! as `{"schema": {..}, "payload": {..}}`. Each event becomes the flat row the JSON decoder
//! reads: creates, snapshot reads and updates give the `after` row; a delete gives the `before`
//! row, which a table applies as a delete of its key and a stream keeps as a change.

use serde_json::{Map, Value};

/// What one change event means for the relation.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// `c`, `r`, `u` or `d`.
    pub op: String,
    /// The row as a JSON object (after the change; for a delete, before it).
    pub row: Map<String, Value>,
    pub delete: bool,
    /// `source.ts_ms` (when the change happened in the database), else the envelope's `ts_ms`.
    pub ts_ms: Option<i64>,
}

/// Kafka Connect's JsonConverter with schemas enabled wraps the data in `payload`.
pub fn unwrap_payload(v: Value) -> Value {
    match v {
        Value::Object(mut o) if o.contains_key("schema") && o.contains_key("payload") => {
            o.remove("payload").unwrap_or(Value::Null)
        }
        other => other,
    }
}

/// Reads one change event; `op_column` (when the relation declares one) gets the op.
pub fn parse(value: &[u8], op_column: Option<&str>) -> Result<Change, String> {
    let v: Value = serde_json::from_slice(value).map_err(|e| format!("not a JSON change event: {e}"))?;
    let Value::Object(mut event) = unwrap_payload(v) else {
        return Err("a Debezium change event must be a JSON object".into());
    };
    let op = match event.get("op") {
        Some(Value::String(op)) if matches!(op.as_str(), "c" | "r" | "u" | "d") => op.clone(),
        Some(other) => return Err(format!("unknown Debezium op {other} (expected c, r, u or d)")),
        None => return Err("not a Debezium change event: no `op`".into()),
    };
    let delete = op == "d";
    let side = if delete { "before" } else { "after" };
    let mut row = match event.remove(side) {
        Some(Value::Object(row)) => row,
        _ => return Err(format!("Debezium `{op}` event without its `{side}` row")),
    };
    let ts_ms = event.get("source").and_then(|s| s.get("ts_ms")).or_else(|| event.get("ts_ms")).and_then(Value::as_i64);
    if let Some(col) = op_column {
        row.insert(col.to_string(), Value::String(op.clone()));
    }
    Ok(Change { op, row, delete, ts_ms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_documented_envelope() {
        let update = json!({
            "before": {"id": 1, "name": "a"}, "after": {"id": 1, "name": "b"},
            "source": {"ts_ms": 1_000, "db": "inventory"}, "op": "u", "ts_ms": 1_500});
        let c = parse(update.to_string().as_bytes(), Some("__op")).unwrap();
        assert_eq!(c.row, json!({"id": 1, "name": "b", "__op": "u"}).as_object().unwrap().clone());
        assert_eq!((c.delete, c.ts_ms), (false, Some(1_000)));
        let delete = json!({"schema": {}, "payload": {"before": {"id": 1}, "after": null, "op": "d", "ts_ms": 9}});
        let d = parse(delete.to_string().as_bytes(), None).unwrap();
        assert_eq!((d.delete, d.ts_ms, d.row.get("id")), (true, Some(9), Some(&json!(1))));
    }

    #[test]
    fn rejects_what_is_not_a_change_event() {
        assert!(parse(b"{\"id\": 1}", None).unwrap_err().contains("no `op`"));
        assert!(parse(b"{\"op\": \"x\"}", None).unwrap_err().contains("unknown Debezium op"));
        assert!(parse(b"{\"op\": \"c\", \"after\": null}", None).unwrap_err().contains("without its `after` row"));
        assert!(parse(b"[1]", None).is_err());
        assert!(parse(b"\xff", None).is_err());
    }
}
