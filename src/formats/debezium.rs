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
    parse_value(v, op_column)
}

/// Reads one change event given as a JSON value (decoded from JSON, or from Avro).
pub fn parse_value(v: Value, op_column: Option<&str>) -> Result<Change, String> {
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

/// Reads one Oracle GoldenGate change record (the JSON formatter, operation mode):
/// `{"table", "op_type": "I|U|D", "op_ts": "2015-11-05 18:45:36.000000", "before", "after"}`.
/// An insert or update gives its `after` row (over its `before` row, so that an update that
/// carries only the changed columns still has the others); a delete its `before` row. `op_ts`
/// (UTC, the time of the operation in the source database) is the change's time; the op column
/// gets `op_type`.
pub fn parse_goldengate(value: &[u8], op_column: Option<&str>) -> Result<Change, String> {
    let v: Value = serde_json::from_slice(value).map_err(|e| format!("not a JSON change record: {e}"))?;
    let Value::Object(mut event) = v else {
        return Err("a GoldenGate change record must be a JSON object".into());
    };
    let op = match event.get("op_type") {
        Some(Value::String(op)) if matches!(op.as_str(), "I" | "U" | "D") => op.clone(),
        Some(other) => return Err(format!("unsupported GoldenGate op_type {other} (expected I, U or D)")),
        None => return Err("not a GoldenGate change record: no `op_type`".into()),
    };
    let delete = op == "D";
    let side = |event: &mut Map<String, Value>, name: &str| match event.remove(name) {
        Some(Value::Object(row)) => Some(row),
        _ => None,
    };
    let (before, after) = (side(&mut event, "before"), side(&mut event, "after"));
    let mut row = match (delete, before, after) {
        (true, Some(b), _) => b,
        (false, b, Some(a)) => {
            let mut row = b.unwrap_or_default();
            row.extend(a);
            row
        }
        (true, None, _) => return Err("GoldenGate `D` record without its `before` row".into()),
        (false, _, None) => return Err(format!("GoldenGate `{op}` record without its `after` row")),
    };
    let ts_ms = match event.get("op_ts") {
        Some(Value::String(ts)) => Some(goldengate_time(ts)?),
        Some(other) => return Err(format!("GoldenGate op_ts {other} is not a timestamp")),
        None => None,
    };
    if let Some(col) = op_column {
        row.insert(col.to_string(), Value::String(op.clone()));
    }
    Ok(Change { op, row, delete, ts_ms })
}

/// `2015-11-05 18:45:36.000000` (GoldenGate's format, UTC) or ISO 8601 as epoch ms.
fn goldengate_time(ts: &str) -> Result<i64, String> {
    let t = ts.trim().replacen('T', " ", 1);
    chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S%.f")
        .map(|d| d.and_utc().timestamp_millis())
        .map_err(|e| format!("GoldenGate op_ts `{ts}`: {e}"))
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
    fn reads_goldengate_change_records() {
        let insert = json!({"table": "SOE.CUSTOMERS", "op_type": "I", "op_ts": "2015-11-05 18:45:36.123000",
            "current_ts": "2015-11-05T18:45:39.000000", "pos": "00000000000000001234",
            "after": {"CUSTOMER_ID": 1, "NAME": "a"}});
        let c = parse_goldengate(insert.to_string().as_bytes(), Some("OP")).unwrap();
        assert_eq!(c.row, json!({"CUSTOMER_ID": 1, "NAME": "a", "OP": "I"}).as_object().unwrap().clone());
        assert_eq!((c.delete, c.ts_ms), (false, Some(1_446_749_136_123)));
        // A compressed update: only the changed column in `after`.
        let update = json!({"op_type": "U", "op_ts": "2015-11-05 18:45:37.000000",
            "before": {"CUSTOMER_ID": 1, "NAME": "a"}, "after": {"NAME": "b"}});
        let u = parse_goldengate(update.to_string().as_bytes(), None).unwrap();
        assert_eq!(u.row, json!({"CUSTOMER_ID": 1, "NAME": "b"}).as_object().unwrap().clone());
        let delete = json!({"op_type": "D", "op_ts": "2015-11-05 18:45:38", "before": {"CUSTOMER_ID": 1}});
        let d = parse_goldengate(delete.to_string().as_bytes(), None).unwrap();
        assert!(d.delete);
        assert_eq!(d.row.get("CUSTOMER_ID"), Some(&json!(1)));
        assert!(parse_goldengate(b"{\"op_type\": \"T\"}", None)
            .unwrap_err()
            .contains("unsupported GoldenGate op_type"));
        assert!(parse_goldengate(b"{\"op\": \"c\"}", None).unwrap_err().contains("no `op_type`"));
        let bad_ts = json!({"op_type": "I", "op_ts": "yesterday", "after": {}});
        assert!(parse_goldengate(bad_ts.to_string().as_bytes(), None).unwrap_err().contains("op_ts"));
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
