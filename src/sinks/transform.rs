//! Single message transforms of the native sinks (a sink's `connector.transforms`): each row,
//! decoded from the model's topic, goes through them in order before the sink writes it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::project::config::SinkTransform;

/// The replacement of a masked string when the transform names none.
pub const DEFAULT_MASK: &str = "****";

/// One row after the transforms; `Err` names why a transform cannot apply to it.
pub fn apply(transforms: &[SinkTransform], mut row: Map<String, Value>) -> Result<Map<String, Value>, String> {
    for t in transforms {
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
            SinkTransform::RenameField { renames } => row = rename(renames, row),
        }
    }
    Ok(row)
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

/// The name a column has after the transforms, `None` when one drops it.
pub fn column_after(transforms: &[SinkTransform], column: &str) -> Option<String> {
    let mut name = column.to_string();
    for t in transforms {
        match t {
            SinkTransform::MaskField { .. } => {}
            SinkTransform::DropField { fields } => {
                if fields.contains(&name) {
                    return None;
                }
            }
            SinkTransform::RenameField { renames } => {
                if let Some(to) = renames.get(&name) {
                    name = to.clone();
                }
            }
        }
    }
    Some(name)
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
    fn unknown_types_and_fields_do_not_parse() {
        let bad = |v: Value| serde_json::from_value::<Vec<SinkTransform>>(v).is_err();
        assert!(bad(json!([{"type": "hash_field", "fields": ["a"]}])));
        assert!(bad(json!([{"type": "drop_field", "field": ["a"]}])));
    }
}
