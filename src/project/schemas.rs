//! JSON Schemas of the project files, generated from the config types. The same schemas are
//! checked in under `schemas/` for editors and bots; a test fails when the two drift apart.

use std::sync::OnceLock;

use serde_json::Value;

use super::config::{ModelPropertiesFile, ProjectFile, SinksFile, SourcesFile, TestsFile};
use crate::diagnostics::{suggest, Diagnostic, Pos, SourceText};
use crate::project::yaml::PositionIndex;

/// The kinds of YAML file in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Project,
    Sources,
    Models,
    Sinks,
    Tests,
}

impl FileKind {
    pub const ALL: [FileKind; 5] =
        [FileKind::Project, FileKind::Sources, FileKind::Models, FileKind::Sinks, FileKind::Tests];

    /// File name of the schema under `schemas/`.
    pub fn schema_file(self) -> &'static str {
        match self {
            FileKind::Project => "streamctl_project.schema.json",
            FileKind::Sources => "sources.schema.json",
            FileKind::Models => "models.schema.json",
            FileKind::Sinks => "sinks.schema.json",
            FileKind::Tests => "tests.schema.json",
        }
    }

    pub fn schema(self) -> &'static Value {
        static SCHEMAS: OnceLock<Vec<Value>> = OnceLock::new();
        let all = SCHEMAS.get_or_init(|| {
            FileKind::ALL
                .iter()
                .map(|k| {
                    let s = match k {
                        FileKind::Project => schemars::schema_for!(ProjectFile),
                        FileKind::Sources => schemars::schema_for!(SourcesFile),
                        FileKind::Models => schemars::schema_for!(ModelPropertiesFile),
                        FileKind::Sinks => schemars::schema_for!(SinksFile),
                        FileKind::Tests => schemars::schema_for!(TestsFile),
                    };
                    serde_json::to_value(s).expect("schemas serialize")
                })
                .collect()
        });
        &all[self as usize]
    }

    fn validator(self) -> &'static jsonschema::Validator {
        static VALIDATORS: OnceLock<Vec<jsonschema::Validator>> = OnceLock::new();
        let all = VALIDATORS.get_or_init(|| {
            FileKind::ALL
                .iter()
                .map(|k| jsonschema::validator_for(k.schema()).expect("generated schemas are valid"))
                .collect()
        });
        &all[self as usize]
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        Value::Null => "null".into(),
        other => format!("`{other}`"),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Validates a parsed YAML file against the schema of its kind; one diagnostic per problem.
pub fn validate(kind: FileKind, value: &Value, positions: &PositionIndex, file: &SourceText) -> Vec<Diagnostic> {
    let root = kind.schema();
    let mut out = Vec::new();
    for err in kind.validator().iter_errors(value) {
        use jsonschema::error::ValidationErrorKind as K;
        let pointer = err.instance_path().as_str().to_string();
        let instance = err.instance();
        let schema_parent = {
            let p = err.schema_path().as_str();
            p.rfind('/').map(|i| &p[..i]).unwrap_or("").to_string()
        };
        let (message, help): (String, Option<String>) = match err.kind() {
            K::AdditionalProperties { unexpected } => {
                let known: Vec<String> = root
                    .pointer(&schema_parent)
                    .and_then(|s| s.get("properties"))
                    .and_then(Value::as_object)
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                for key in unexpected {
                    let help = match suggest(key, known.iter().map(String::as_str)) {
                        Some(s) => Some(format!("did you mean `{s}`?")),
                        None if !known.is_empty() => Some(format!("expected one of: {}", known.join(", "))),
                        None => None,
                    };
                    let (line, column) = positions.key(&format!("{pointer}/{key}"));
                    let mut d = Diagnostic::error("yaml-schema", format!("unknown field `{key}`"))
                        .at(file, Pos::new(line, column, key.chars().count()));
                    d.help = help;
                    out.push(d);
                }
                continue;
            }
            K::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                (format!("missing required field `{name}`"), None)
            }
            K::Enum { options } => {
                let opts: Vec<String> =
                    options.as_array().map(|a| a.iter().map(value_text).collect()).unwrap_or_default();
                let help = instance.as_str().and_then(|s| {
                    let names: Vec<&str> = options.as_array()?.iter().filter_map(Value::as_str).collect();
                    suggest(s, names).map(|x| format!("did you mean `{x}`?"))
                });
                (format!("{} is not one of {}", value_text(instance), opts.join(", ")), help)
            }
            K::Type { kind } => {
                // TypeKind's Debug names the JSON types; `null` is how optional fields are written.
                let debug = format!("{kind:?}").to_lowercase();
                let names: Vec<&str> = ["boolean", "integer", "number", "string", "array", "object"]
                    .into_iter()
                    .filter(|t| debug.contains(t))
                    .collect();
                let expected = names.join(" or ");
                (format!("expected {expected}, found {} {}", type_name(instance), value_text(instance)), None)
            }
            K::Maximum { .. } | K::Minimum { .. } if pointer == "/version" => (
                format!("unsupported file format version {instance}: this streamctl reads version 1"),
                Some("write `version: 1`".to_string()),
            ),
            K::Pattern { pattern } => {
                (format!("{} does not match the pattern `{pattern}`", value_text(instance)), None)
            }
            _ => (err.to_string(), None),
        };
        let (line, column) = positions.value(&pointer);
        let len = match instance.as_ref() {
            Value::String(s) if !matches!(err.kind(), K::Required { .. }) => s.chars().count(),
            _ => 1,
        };
        let mut d = Diagnostic::error("yaml-schema", message).at(file, Pos::new(line, column, len));
        d.help = help;
        out.push(d);
    }
    out
}
