//! Local schema compatibility checks (Avro and JSON Schema), following Confluent Schema
//! Registry's compatibility levels, so that `plan` can report a breaking change before `apply`
//! registers it.
//!
//! * BACKWARD: the new schema (reader) can read data written with an older one (writer).
//! * FORWARD: an older schema (reader) can read data written with the new one (writer).
//! * FULL: both. Non-transitive levels check the latest version only, `*_TRANSITIVE` every one.
//!
//! Avro follows the Avro specification's schema resolution (what Java's `SchemaCompatibility`
//! checks): records matched by name or reader aliases, fields by name or reader field aliases,
//! a reader field missing from the writer needs a default, promotions int→long→float→double and
//! string↔bytes, enum symbols (a reader enum default absorbs unknown symbols), fixed sizes,
//! arrays, maps, unions (every writer branch must be readable) and named-type references.
//!
//! JSON Schema treats compatibility as "every document valid under the writer schema is valid
//! under the reader schema", with Confluent's content-model rules: a property added to an open
//! writer model (`additionalProperties` absent or `true`) is incompatible unless its schema is
//! empty, a property the reader removes is fine only if the reader's model is open, an optional
//! property may be added to a closed model, `required` may only be added together with a
//! `default`, integer widens to number. Deliberate simplifications (all on the cautious side
//! unless noted):
//! * `oneOf` is treated as `anyOf` (as Confluent does); a writer `anyOf`/`allOf` is checked
//!   branch by branch, without merging sibling keywords into each branch.
//! * keywords not modelled (`not`, `if`/`then`/`else`, `patternProperties`, `dependencies`,
//!   `propertyNames`, `contains`, `unevaluated*`, ...) must be identical on the reader side, or
//!   the pair is reported as uncheckable; on the writer side they are ignored (sound: they only
//!   narrow the writer). `patternProperties` makes a model count as open.
//! * a schema without `type` whose keywords all belong to one type (e.g. only `properties`)
//!   is taken to be of that type, as Confluent's diff does. `format` is an annotation.
//! * `$ref` is resolved for local JSON pointers (`#`, `#/definitions/..`, `#/$defs/..`);
//!   anything else is only accepted when both sides carry the same reference.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use super::{Compatibility, SchemaType};

const LEVELS: [(Compatibility, &str); 7] = [
    (Compatibility::None, "NONE"),
    (Compatibility::Backward, "BACKWARD"),
    (Compatibility::BackwardTransitive, "BACKWARD_TRANSITIVE"),
    (Compatibility::Forward, "FORWARD"),
    (Compatibility::ForwardTransitive, "FORWARD_TRANSITIVE"),
    (Compatibility::Full, "FULL"),
    (Compatibility::FullTransitive, "FULL_TRANSITIVE"),
];

impl fmt::Display for Compatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = LEVELS.iter().find(|(level, _)| level == self).map_or("NONE", |(_, name)| name);
        f.write_str(name)
    }
}

impl FromStr for Compatibility {
    type Err = String;

    /// Case-insensitive; `-` is accepted for `_` ("full-transitive").
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_uppercase().replace('-', "_");
        LEVELS.iter().find(|(_, name)| *name == wanted).map(|(level, _)| *level).ok_or_else(|| {
            let names: Vec<&str> = LEVELS.iter().map(|(_, name)| *name).collect();
            format!("unknown compatibility level '{}' (expected one of {})", s.trim(), names.join(", "))
        })
    }
}

/// Which way the check failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The new schema cannot read data written with an older one.
    Backward,
    /// An older schema cannot read data written with the new one.
    Forward,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Backward => "BACKWARD",
            Direction::Forward => "FORWARD",
        })
    }
}

/// One reason why the new schema breaks compatibility with one registered version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    pub version: i32,
    pub direction: Direction,
    pub message: String,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "version {} ({}): {}", self.version, self.direction, self.message)
    }
}

/// `previous`: the subject's registered versions, oldest first, as (version, schema type, schema text).
/// Non-transitive modes check against the latest only; *_TRANSITIVE against all. NONE checks nothing.
/// Err(String) when a schema cannot be parsed (message says which one and why).
pub fn check_compatibility(
    mode: Compatibility,
    new_type: SchemaType,
    new_schema: &str,
    previous: &[(i32, SchemaType, &str)],
) -> Result<Vec<Incompatibility>, String> {
    let (backward, forward, transitive) = match mode {
        Compatibility::None => return Ok(Vec::new()),
        Compatibility::Backward => (true, false, false),
        Compatibility::BackwardTransitive => (true, false, true),
        Compatibility::Forward => (false, true, false),
        Compatibility::ForwardTransitive => (false, true, true),
        Compatibility::Full => (true, true, false),
        Compatibility::FullTransitive => (true, true, true),
    };
    let targets = match previous.len() {
        0 => return Ok(Vec::new()),
        n if transitive => &previous[..n],
        n => &previous[n - 1..],
    };
    let new = parse(new_type, new_schema).map_err(|e| format!("new schema: {e}"))?;
    let mut out = Vec::new();
    for &(version, old_type, old_text) in targets {
        if old_type != new_type {
            out.push(Incompatibility {
                version,
                direction: if backward { Direction::Backward } else { Direction::Forward },
                message: format!("schema type changed from {} to {}", type_name(old_type), type_name(new_type)),
            });
            continue;
        }
        let old = parse(old_type, old_text).map_err(|e| format!("registered version {version}: {e}"))?;
        let mut push = |direction, messages: Vec<String>| {
            for message in dedup(messages) {
                out.push(Incompatibility { version, direction, message });
            }
        };
        if backward {
            push(Direction::Backward, problems(&new, &old, Roles { reader_is_new: true }));
        }
        if forward {
            push(Direction::Forward, problems(&old, &new, Roles { reader_is_new: false }));
        }
    }
    Ok(out)
}

fn type_name(t: SchemaType) -> &'static str {
    match t {
        SchemaType::Avro => "AVRO",
        SchemaType::Json => "JSON",
    }
}

enum Parsed {
    Avro(avro::Schema),
    Json(Value),
}

fn parse(t: SchemaType, text: &str) -> Result<Parsed, String> {
    match t {
        SchemaType::Avro => avro::parse(text).map(Parsed::Avro),
        SchemaType::Json => json::parse(text).map(Parsed::Json),
    }
}

/// Why `reader` cannot read every datum written with `writer` (empty: it can).
fn problems(reader: &Parsed, writer: &Parsed, roles: Roles) -> Vec<String> {
    match (reader, writer) {
        (Parsed::Avro(r), Parsed::Avro(w)) => avro::check(r, w, roles),
        (Parsed::Json(r), Parsed::Json(w)) => json::check(r, w, roles),
        _ => vec!["schema type changed".to_string()],
    }
}

/// Which side is the new schema, to word messages from the user's point of view.
#[derive(Debug, Clone, Copy)]
struct Roles {
    reader_is_new: bool,
}

impl Roles {
    fn reader(self) -> &'static str {
        if self.reader_is_new {
            "new schema"
        } else {
            "older schema"
        }
    }
    fn writer(self) -> &'static str {
        if self.reader_is_new {
            "older schema"
        } else {
            "new schema"
        }
    }
    /// (old, new) from (writer, reader).
    fn old_new<T>(self, writer: T, reader: T) -> (T, T) {
        if self.reader_is_new {
            (writer, reader)
        } else {
            (reader, writer)
        }
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// Message prefix naming the field a problem is at ("" at the top level).
fn at(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("field {path}: ")
    }
}

fn dedup(messages: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    messages.into_iter().filter(|m| seen.insert(m.clone())).collect()
}

mod avro;
mod json;

#[cfg(test)]
mod tests;
