//! Schema registries: where the schema of every topic value (and key) streamctl writes is
//! registered, versioned and checked for compatibility before a change is applied.
//!
//! One interface, two implementations: [`file::FileRegistry`] (a directory of `.avsc` / JSON
//! Schema files, for the embedded target and for reviewing schema history in git) and
//! [`confluent::ConfluentRegistry`] (the Confluent Schema Registry REST API).
//! [`compat`] evaluates the compatibility modes locally, so `plan` catches a breaking change.

pub(crate) mod compat;
pub(crate) mod confluent;
pub mod file;
mod tls;

use std::path::Path;

use datafusion::arrow::datatypes::{DataType, Schema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    Avro,
    Json,
}

impl std::fmt::Display for SchemaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Json => "JSON",
        })
    }
}

pub use crate::project::compatibility::Compatibility;
use crate::project::target::RegistryAccess;

/// The level for a model's output when neither the model nor the registry sets one: consumers
/// of an output upgrade on their own schedule, so every schema they may still hold must read
/// what the new version writes.
pub const DEFAULT_OUTPUT_COMPATIBILITY: Compatibility = Compatibility::ForwardTransitive;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredSchema {
    pub subject: String,
    pub version: i32,
    pub id: i32,
    pub schema_type: SchemaType,
    pub schema: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry {url}: {message}")]
    Http { url: String, status: Option<u16>, message: String },
    #[error("{0}")]
    Other(String),
}

/// Shared by the jobs of a run, so `Send + Sync`.
pub trait SchemaRegistry: Send + Sync {
    /// Human-readable location ("http://sr:8081", "file registry schemas/").
    fn describe(&self) -> String;
    fn subjects(&self) -> Result<Vec<String>, RegistryError>;
    /// Every registered version of the subject, oldest first; empty when the subject does not exist.
    fn versions(&self, subject: &str) -> Result<Vec<RegisteredSchema>, RegistryError>;
    /// The subject's own compatibility level, if it has one.
    fn compatibility(&self, subject: &str) -> Result<Option<Compatibility>, RegistryError>;
    fn set_compatibility(&self, subject: &str, level: Compatibility) -> Result<(), RegistryError>;
    /// Registers (idempotent: an identical schema returns the existing version).
    fn register(&self, subject: &str, schema_type: SchemaType, schema: &str)
        -> Result<RegisteredSchema, RegistryError>;
    /// Deletes the subject; returns the deleted versions.
    fn delete_subject(&self, subject: &str) -> Result<Vec<i32>, RegistryError>;
    /// The schema registered under this id (the id in a Confluent wire-format frame), if any.
    /// By default every subject's versions are searched.
    fn schema_by_id(&self, id: i32) -> Result<Option<RegisteredSchema>, RegistryError> {
        for subject in self.subjects()? {
            if let Some(found) = self.versions(&subject)?.into_iter().find(|s| s.id == id) {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
    /// Whether a schema's id is derived from its content (the file registry): then the id is
    /// known without registering, and the same schema has the same id in every such registry.
    fn content_addressed(&self) -> bool {
        false
    }
}

/// A registry shared by the jobs of a run (cheap to clone); `Debug` shows where it is.
#[derive(Clone)]
pub struct SharedRegistry(pub std::sync::Arc<dyn SchemaRegistry>);

impl std::fmt::Debug for SharedRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SharedRegistry").field(&self.0.describe()).finish()
    }
}

/// The id a registry gives `schema` under `subject`: an existing version's, or (not registered
/// yet, e.g. a `run` of local files that were never applied) a new registration's, as the
/// Confluent serializers do by default. A content-addressed registry knows it without asking.
pub fn id_for(
    registry: &dyn SchemaRegistry,
    subject: &str,
    schema_type: SchemaType,
    schema: &str,
) -> Result<i32, RegistryError> {
    if registry.content_addressed() {
        return Ok(file::content_id(schema_type, schema));
    }
    let versions = registry.versions(subject)?;
    if let Some(found) = versions.iter().rev().find(|v| v.schema_type == schema_type && same_schema(&v.schema, schema))
    {
        return Ok(found.id);
    }
    Ok(registry.register(subject, schema_type, schema)?.id)
}

/// The registry a target names: `file:DIR` (relative to the project) or an http(s) URL, reached
/// with the target's TLS files and credentials (`access`).
/// The embedded target uses the project's `schemas/` directory when it names none.
pub fn open(
    url: Option<&str>,
    access: &RegistryAccess,
    embedded: bool,
    project_root: &Path,
) -> Result<Option<Box<dyn SchemaRegistry>>, RegistryError> {
    let url = match url {
        Some(u) => u.to_string(),
        None if embedded => "file:schemas".to_string(),
        None => return Ok(None),
    };
    if let Some(dir) = url.strip_prefix("file:") {
        let dir = dir.trim_start_matches("//");
        return Ok(Some(Box::new(file::FileRegistry::new(project_root.join(dir), dir))));
    }
    Ok(Some(Box::new(confluent::ConfluentRegistry::new(&url)?.with_access(access)?)))
}

/// The JSON Schema of the JSON values streamctl writes for these columns: one property per
/// column, required when the column cannot be null. The content model is open, as for most
/// JSON producers: readers ignore properties they do not know.
pub fn json_schema_of(title: &str, schema: &Schema, columns: Option<&[String]>) -> String {
    let mut props = serde_json::Map::new();
    let mut required = Vec::new();
    for f in schema.fields() {
        if columns.is_some_and(|c| !c.iter().any(|n| n.eq_ignore_ascii_case(f.name()))) {
            continue;
        }
        let mut t = json_type(f.data_type());
        if f.is_nullable() {
            if let Some(Value::String(name)) = t.get("type").cloned() {
                t["type"] = json!([name, "null"]);
            }
        } else {
            required.push(Value::String(f.name().clone()));
        }
        props.insert(f.name().clone(), t);
    }
    let doc = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": title,
        "type": "object",
        "properties": props,
        "required": required,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The JSON Schema of a single-column key (the bare value, as the runtime writes it).
pub fn json_schema_of_scalar(title: &str, dt: &DataType) -> String {
    let mut t = json_type(dt);
    if let Value::Object(o) = &mut t {
        o.insert("$schema".into(), json!("http://json-schema.org/draft-07/schema#"));
        o.insert("title".into(), json!(title));
    }
    serde_json::to_string_pretty(&t).unwrap_or_default()
}

fn json_type(dt: &DataType) -> Value {
    use DataType::*;
    match dt {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => json!({"type": "integer"}),
        Float16 | Float32 | Float64 | Decimal128(..) | Decimal256(..) => json!({"type": "number"}),
        Boolean => json!({"type": "boolean"}),
        Utf8 | LargeUtf8 | Utf8View => json!({"type": "string"}),
        Date32 | Date64 => json!({"type": "string", "format": "date"}),
        Timestamp(..) => json!({"type": "string", "format": "date-time"}),
        List(f) | LargeList(f) => json!({"type": "array", "items": json_type(f.data_type())}),
        Struct(fields) => {
            let mut props = serde_json::Map::new();
            for f in fields {
                props.insert(f.name().clone(), json_type(f.data_type()));
            }
            json!({"type": "object", "properties": props})
        }
        _ => json!({}),
    }
}

/// Schemas compare equal when they say the same thing, whatever their formatting.
pub fn same_schema(a: &str, b: &str) -> bool {
    match (serde_json::from_str::<Value>(a), serde_json::from_str::<Value>(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a.trim() == b.trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Field;

    #[test]
    fn json_schema_marks_non_null_columns_required() {
        let s = Schema::new(vec![Field::new("ID", DataType::Int64, false), Field::new("NAME", DataType::Utf8, true)]);
        let v: Value = serde_json::from_str(&json_schema_of("t", &s, None)).unwrap();
        assert_eq!(v["properties"]["ID"], json!({"type": "integer"}));
        assert_eq!(v["properties"]["NAME"], json!({"type": ["string", "null"]}));
        assert_eq!(v["required"], json!(["ID"]));
        let k: Value = serde_json::from_str(&json_schema_of_scalar("k", &DataType::Int32)).unwrap();
        assert_eq!(k["type"], "integer");
    }

    #[test]
    fn formatting_does_not_make_a_new_schema() {
        assert!(same_schema("{\"a\": 1, \"b\": [2]}", "{\"b\":[2],\"a\":1}"));
        assert!(!same_schema("{\"a\": 1}", "{\"a\": 2}"));
    }
}
