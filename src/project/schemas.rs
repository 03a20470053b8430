//! JSON Schemas of the project files, generated from the config types. The same schemas are
//! checked in under `schemas/` for editors and bots; a test fails when the two drift apart.

use std::sync::OnceLock;

use serde_json::Value;

use super::config::{ModelPropertiesFile, ProjectFile, SinksFile, SourcesFile, TestsFile};
use super::connectors::ConnectorsFile;
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
    Connectors,
}

impl FileKind {
    pub const ALL: [FileKind; 6] = [
        FileKind::Project,
        FileKind::Sources,
        FileKind::Models,
        FileKind::Sinks,
        FileKind::Tests,
        FileKind::Connectors,
    ];

    /// File name of the schema under `schemas/`.
    pub fn schema_file(self) -> &'static str {
        match self {
            FileKind::Project => "streamctl_project.schema.json",
            FileKind::Sources => "sources.schema.json",
            FileKind::Models => "models.schema.json",
            FileKind::Sinks => "sinks.schema.json",
            FileKind::Tests => "tests.schema.json",
            FileKind::Connectors => "connectors.schema.json",
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
                        FileKind::Connectors => schemars::schema_for!(ConnectorsFile),
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

/// The schema at a `$ref`, or the schema itself.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
        Some(p) => root.pointer(p).unwrap_or(schema),
        None => schema,
    }
}

/// The forms a value may take, in words (`` `earliest` ``, `a mapping with `timestamp``), from
/// the alternatives of an `anyOf`/`oneOf` (or one schema); `null` alternatives are left out.
fn forms(root: &Value, schema: &Value, depth: usize) -> Vec<String> {
    let schema = resolve(root, schema);
    if depth > 4 {
        return Vec::new();
    }
    if let Some(alts) = schema.as_array().or_else(|| schema.get("anyOf").or_else(|| schema.get("oneOf"))?.as_array()) {
        return alts.iter().flat_map(|a| forms(root, a, depth + 1)).collect();
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        return values.iter().filter(|v| !v.is_null()).map(value_text).collect();
    }
    if let Some(c) = schema.get("const") {
        return vec![value_text(c)];
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        let keys: Vec<String> = props.keys().map(|k| format!("`{k}`")).collect();
        return vec![format!("a mapping with {}", keys.join(", "))];
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    types
        .into_iter()
        .filter(|t| *t != "null")
        .map(|t| match t {
            "object" => "a mapping".to_string(),
            "array" => "a list".to_string(),
            "integer" => "an integer".to_string(),
            other => format!("a {other}"),
        })
        .collect()
}

/// For a mapping that matches no alternative: the closest known key to a key it has that no
/// alternative knows (`timestmp` → `timestamp`).
fn unknown_key_hint(root: &Value, instance: &Value, schema_path: &str) -> Option<String> {
    let given = instance.as_object()?;
    let mut known: Vec<String> = Vec::new();
    let mut stack: Vec<&Value> = root.pointer(schema_path)?.as_array()?.iter().collect();
    while let Some(s) = stack.pop() {
        let s = resolve(root, s);
        if let Some(alts) = s.get("anyOf").or_else(|| s.get("oneOf")).and_then(Value::as_array) {
            stack.extend(alts.iter());
        }
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            known.extend(props.keys().cloned());
        }
    }
    let unknown = given.keys().find(|k| !known.contains(k))?;
    suggest(unknown, known.iter().map(String::as_str)).map(|s| format!("`{unknown}`: did you mean `{s}`?"))
}

/// For alternatives that are tagged by a constant `type` (an enum serde tags by `type`, such as
/// a connector or a transform): `Ok` with the alternative the value's `type` names, `Err` with
/// the tags when it names none. `None` when the alternatives are not all tagged or the value has
/// no `type` string.
fn tagged<'a>(root: &'a Value, alts: &'a Value, instance: &Value) -> Option<Result<&'a Value, Vec<String>>> {
    let tag = instance.get("type")?.as_str()?;
    let alts = alts.as_array().or_else(|| alts.get("oneOf").or_else(|| alts.get("anyOf"))?.as_array())?;
    let mut tags = Vec::new();
    for alt in alts {
        let alt = resolve(root, alt);
        let t = alt.pointer("/properties/type/const")?.as_str()?;
        if t == tag {
            return Some(Ok(alt));
        }
        tags.push(t.to_string());
    }
    Some(Err(tags))
}

/// Validates a parsed YAML file against the schema of its kind; one diagnostic per problem.
pub fn validate(kind: FileKind, value: &Value, positions: &PositionIndex, file: &SourceText) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    validate_at(kind.schema(), kind.validator(), value, "", positions, file, &mut out);
    out
}

/// The problems of `value`, found at `base` in the file, against `root` (compiled as `validator`).
/// A value of a tagged enum is checked against the alternative its `type` names, so its problems
/// are reported at their own place rather than as a mismatch of the whole value.
fn validate_at(
    root: &Value,
    validator: &jsonschema::Validator,
    value: &Value,
    base: &str,
    positions: &PositionIndex,
    file: &SourceText,
    out: &mut Vec<Diagnostic>,
) {
    for err in validator.iter_errors(value) {
        use jsonschema::error::ValidationErrorKind as K;
        let pointer = format!("{base}{}", err.instance_path().as_str());
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
            K::AnyOf { .. } | K::OneOfNotValid { .. }
                if root
                    .pointer(err.schema_path().as_str())
                    .and_then(|alts| tagged(root, alts, instance.as_ref()))
                    .is_some() =>
            {
                let alts = root.pointer(err.schema_path().as_str()).unwrap_or(&Value::Null);
                match tagged(root, alts, instance.as_ref()) {
                    Some(Ok(alt)) => {
                        // The alternative alone, with the definitions it refers to.
                        let mut sub = alt.clone();
                        if let (Some(obj), Some(defs)) = (sub.as_object_mut(), root.get("$defs")) {
                            obj.insert("$defs".into(), defs.clone());
                        }
                        if let Ok(v) = jsonschema::validator_for(&sub) {
                            validate_at(&sub, &v, instance.as_ref(), &pointer, positions, file, out);
                            continue;
                        }
                        (err.to_string(), None)
                    }
                    _ => {
                        let Some(Err(tags)) = tagged(root, alts, instance.as_ref()) else { continue };
                        let given = instance.get("type").and_then(Value::as_str).unwrap_or_default();
                        let what = pointer
                            .rsplit('/')
                            .find(|f| !f.is_empty() && f.parse::<usize>().is_err())
                            .map(|f| f.trim_end_matches('s'))
                            .unwrap_or("this value");
                        let listed: Vec<String> = tags.iter().map(|t| format!("`{t}`")).collect();
                        let help = match suggest(given, tags.iter().map(String::as_str)) {
                            Some(t) => format!("did you mean `{t}`?"),
                            None => format!("expected one of: {}", listed.join(", ")),
                        };
                        let (line, column) = positions.value(&format!("{pointer}/type"));
                        let mut d = Diagnostic::error("yaml-schema", format!("unknown {what} type `{given}`"))
                            .at(file, Pos::new(line, column, given.chars().count().max(1)));
                        d.help = Some(help);
                        out.push(d);
                        continue;
                    }
                }
            }
            K::AnyOf { .. } | K::OneOfNotValid { .. } => {
                let forms =
                    root.pointer(err.schema_path().as_str()).map(|alts| forms(root, alts, 0)).unwrap_or_default();
                let field = pointer.rsplit('/').next().filter(|f| !f.is_empty()).unwrap_or("this value");
                let help = unknown_key_hint(root, instance, err.schema_path().as_str());
                if forms.is_empty() {
                    (format!("{} is not a valid `{field}`", value_text(instance)), help)
                } else {
                    (
                        format!("{} is not a valid `{field}`: expected {}", value_text(instance), forms.join(", or ")),
                        help,
                    )
                }
            }
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
}
