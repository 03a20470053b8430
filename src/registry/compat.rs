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

mod avro {
    //! Avro schemas parsed from `.avsc` JSON, and the schema-resolution check.

    use std::collections::{HashMap, HashSet};
    use std::mem::discriminant;

    use serde_json::{Map, Value};

    use super::{join, Roles};

    #[derive(Debug)]
    pub(super) enum Ty {
        Null,
        Boolean,
        Int,
        Long,
        Float,
        Double,
        Bytes,
        String,
        Array(Box<Ty>),
        Map(Box<Ty>),
        Union(Vec<Ty>),
        /// Index into [`Schema::named`].
        Named(usize),
    }

    #[derive(Debug)]
    struct Field {
        name: String,
        aliases: Vec<String>,
        ty: Ty,
        has_default: bool,
    }

    #[derive(Debug)]
    enum Kind {
        Record(Vec<Field>),
        Enum { symbols: Vec<String>, default: Option<String> },
        Fixed(u64),
    }

    #[derive(Debug)]
    struct Named {
        fullname: String,
        name: String,
        aliases: Vec<String>,
        kind: Kind,
    }

    impl Named {
        fn kind_word(&self) -> &'static str {
            match self.kind {
                Kind::Record(_) => "record",
                Kind::Enum { .. } => "enum",
                Kind::Fixed(_) => "fixed",
            }
        }
    }

    #[derive(Debug)]
    pub(super) struct Schema {
        root: Ty,
        named: Vec<Named>,
    }

    pub(super) fn parse(text: &str) -> Result<Schema, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid Avro schema JSON: {e}"))?;
        let mut parser = Parser { named: Vec::new(), by_name: HashMap::new() };
        let root = parser.ty(&value, "").map_err(|e| format!("invalid Avro schema: {e}"))?;
        Ok(Schema { root, named: parser.named })
    }

    struct Parser {
        named: Vec<Named>,
        by_name: HashMap<String, usize>,
    }

    fn primitive(name: &str) -> Option<Ty> {
        Some(match name {
            "null" => Ty::Null,
            "boolean" => Ty::Boolean,
            "int" => Ty::Int,
            "long" => Ty::Long,
            "float" => Ty::Float,
            "double" => Ty::Double,
            "bytes" => Ty::Bytes,
            "string" => Ty::String,
            _ => return None,
        })
    }

    fn qualify(name: &str, namespace: &str) -> String {
        if name.contains('.') || namespace.is_empty() {
            name.to_string()
        } else {
            format!("{namespace}.{name}")
        }
    }

    fn strings(value: Option<&Value>, what: &str) -> Result<Vec<String>, String> {
        match value {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_string).ok_or_else(|| format!("{what} must be strings, found {item}"))
                })
                .collect(),
            Some(other) => Err(format!("{what} must be an array, found {other}")),
        }
    }

    impl Parser {
        fn ty(&mut self, value: &Value, namespace: &str) -> Result<Ty, String> {
            match value {
                Value::String(name) => self.by_name(name, namespace),
                Value::Array(branches) => {
                    if branches.is_empty() {
                        return Err("a union must have at least one branch".to_string());
                    }
                    let mut out = Vec::with_capacity(branches.len());
                    for branch in branches {
                        let ty = self.ty(branch, namespace)?;
                        if matches!(ty, Ty::Union(_)) {
                            return Err("a union may not directly contain another union".into());
                        }
                        out.push(ty);
                    }
                    Ok(Ty::Union(out))
                }
                Value::Object(map) => self.complex(map, namespace),
                other => Err(format!("{other} is not a valid type")),
            }
        }

        fn by_name(&self, name: &str, namespace: &str) -> Result<Ty, String> {
            if let Some(ty) = primitive(name) {
                return Ok(ty);
            }
            let found = self.by_name.get(&qualify(name, namespace)).or_else(|| self.by_name.get(name));
            match found {
                Some(&index) => Ok(Ty::Named(index)),
                None => Err(format!(
                    "unknown type \"{name}\" (named types must be defined before use; schema references are not supported)"
                )),
            }
        }

        fn complex(&mut self, map: &Map<String, Value>, namespace: &str) -> Result<Ty, String> {
            let kind = match map.get("type") {
                Some(Value::String(kind)) => kind.as_str(),
                Some(nested) => return self.ty(nested, namespace),
                None => return Err(format!("schema object without \"type\": {}", Value::Object(map.clone()))),
            };
            match kind {
                "record" | "error" | "enum" | "fixed" => self.named(kind, map, namespace),
                "array" => {
                    let items = map.get("items").ok_or("array schema without \"items\"")?;
                    Ok(Ty::Array(Box::new(self.ty(items, namespace)?)))
                }
                "map" => {
                    let values = map.get("values").ok_or("map schema without \"values\"")?;
                    Ok(Ty::Map(Box::new(self.ty(values, namespace)?)))
                }
                // A primitive with attributes (e.g. a logicalType), or a named-type reference.
                other => self.by_name(other, namespace),
            }
        }

        fn named(&mut self, kind: &str, map: &Map<String, Value>, enclosing: &str) -> Result<Ty, String> {
            let name = match map.get("name") {
                Some(Value::String(name)) if !name.trim().is_empty() => name.as_str(),
                _ => return Err(format!("{kind} schema without a \"name\"")),
            };
            let (fullname, short, namespace) = match name.rsplit_once('.') {
                Some((ns, short)) => (name.to_string(), short.to_string(), ns.to_string()),
                None => {
                    let ns = match map.get("namespace") {
                        Some(Value::String(ns)) => ns.clone(),
                        Some(Value::Null) | None => enclosing.to_string(),
                        Some(other) => return Err(format!("{name}: namespace must be a string, found {other}")),
                    };
                    (qualify(name, &ns), name.to_string(), ns)
                }
            };
            let aliases = strings(map.get("aliases"), &format!("aliases of {fullname}"))?
                .iter()
                .map(|alias| qualify(alias, &namespace))
                .collect();
            if self.by_name.contains_key(&fullname) {
                return Err(format!("type {fullname} is defined more than once"));
            }
            let kind = match kind {
                "enum" => {
                    let symbols = match map.get("symbols") {
                        Some(symbols @ Value::Array(_)) => {
                            strings(Some(symbols), &format!("symbols of enum {fullname}"))?
                        }
                        _ => return Err(format!("enum {fullname} has no \"symbols\" array")),
                    };
                    let default = match map.get("default") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(d)) if symbols.contains(d) => Some(d.clone()),
                        Some(other) => {
                            return Err(format!("enum {fullname}: default {other} is not one of its symbols"))
                        }
                    };
                    Kind::Enum { symbols, default }
                }
                "fixed" => match map.get("size").and_then(Value::as_u64) {
                    Some(size) => Kind::Fixed(size),
                    None => return Err(format!("fixed {fullname} has no valid \"size\"")),
                },
                _ => Kind::Record(Vec::new()),
            };
            let is_record = matches!(kind, Kind::Record(_));
            let index = self.named.len();
            self.named.push(Named { fullname: fullname.clone(), name: short, aliases, kind });
            self.by_name.insert(fullname.clone(), index);
            if is_record {
                // Registered before its fields are parsed, so a record can refer to itself.
                let fields = self.fields(map, &fullname, &namespace)?;
                if let Some(named) = self.named.get_mut(index) {
                    named.kind = Kind::Record(fields);
                }
            }
            Ok(Ty::Named(index))
        }

        fn fields(&mut self, map: &Map<String, Value>, fullname: &str, namespace: &str) -> Result<Vec<Field>, String> {
            let Some(Value::Array(raw)) = map.get("fields") else {
                return Err(format!("record {fullname} has no \"fields\" array"));
            };
            let mut fields: Vec<Field> = Vec::with_capacity(raw.len());
            for field in raw {
                let Value::Object(field) = field else {
                    return Err(format!("record {fullname}: a field must be an object, found {field}"));
                };
                let name = match field.get("name") {
                    Some(Value::String(name)) if !name.is_empty() => name.clone(),
                    _ => return Err(format!("record {fullname}: a field has no \"name\"")),
                };
                if fields.iter().any(|f| f.name == name) {
                    return Err(format!("record {fullname}: field {name} is defined twice"));
                }
                let Some(ty) = field.get("type") else {
                    return Err(format!("record {fullname}: field {name} has no \"type\""));
                };
                let ty = self.ty(ty, namespace).map_err(|e| format!("record {fullname}, field {name}: {e}"))?;
                let aliases = strings(field.get("aliases"), &format!("aliases of field {name}"))?;
                fields.push(Field { name, aliases, ty, has_default: field.contains_key("default") });
            }
            Ok(fields)
        }
    }

    pub(super) fn check(reader: &Schema, writer: &Schema, roles: Roles) -> Vec<String> {
        let mut checker = Checker { r: reader, w: writer, roles, in_progress: HashSet::new(), out: Vec::new() };
        checker.check(&reader.root, &writer.root, "");
        checker.out
    }

    struct Checker<'a> {
        r: &'a Schema,
        w: &'a Schema,
        roles: Roles,
        in_progress: HashSet<(usize, usize)>,
        out: Vec<String>,
    }

    fn display(schema: &Schema, ty: &Ty) -> String {
        match ty {
            Ty::Null => "null".into(),
            Ty::Boolean => "boolean".into(),
            Ty::Int => "int".into(),
            Ty::Long => "long".into(),
            Ty::Float => "float".into(),
            Ty::Double => "double".into(),
            Ty::Bytes => "bytes".into(),
            Ty::String => "string".into(),
            Ty::Array(items) => format!("array<{}>", display(schema, items)),
            Ty::Map(values) => format!("map<{}>", display(schema, values)),
            Ty::Union(branches) => {
                let names: Vec<String> = branches.iter().map(|b| display(schema, b)).collect();
                format!("[{}]", names.join(", "))
            }
            Ty::Named(index) => {
                schema.named.get(*index).map_or_else(|| "?".to_string(), |n| format!("{} {}", n.kind_word(), n.name))
            }
        }
    }

    /// Whether a value written as `w` is promoted to `r` by Avro's resolution rules.
    fn promotes(r: &Ty, w: &Ty) -> bool {
        matches!(
            (w, r),
            (Ty::Int, Ty::Long | Ty::Float | Ty::Double)
                | (Ty::Long, Ty::Float | Ty::Double)
                | (Ty::Float, Ty::Double)
                | (Ty::String, Ty::Bytes)
                | (Ty::Bytes, Ty::String)
        )
    }

    impl<'a> Checker<'a> {
        fn names_match(&self, r: usize, w: usize) -> bool {
            let (Some(r), Some(w)) = (self.r.named.get(r), self.w.named.get(w)) else {
                return false;
            };
            discriminant(&r.kind) == discriminant(&w.kind)
                && (r.name == w.name
                    || r.aliases.iter().any(|a| *a == w.fullname || a.rsplit('.').next() == Some(&w.name)))
        }

        /// Same kind of type (and same name for named types), ignoring promotions.
        fn same_shape(&self, r: &Ty, w: &Ty) -> bool {
            match (r, w) {
                (Ty::Named(a), Ty::Named(b)) => self.names_match(*a, *b),
                (Ty::Union(_), _) | (_, Ty::Union(_)) => false,
                _ => discriminant(r) == discriminant(w),
            }
        }

        fn readable_shape(&self, r: &Ty, w: &Ty) -> bool {
            self.same_shape(r, w) || promotes(r, w)
        }

        /// The reader union branch a writer (non-union) value resolves to.
        fn pick<'t>(&self, branches: &'t [Ty], w: &Ty) -> Option<&'t Ty> {
            branches.iter().find(|b| self.same_shape(b, w)).or_else(|| branches.iter().find(|b| promotes(b, w)))
        }

        fn type_changed(&mut self, r: &Ty, w: &Ty, path: &str) {
            let (old, new) = self.roles.old_new(display(self.w, w), display(self.r, r));
            let subject = if path.is_empty() { "schema".to_string() } else { format!("field {path}") };
            self.out.push(format!("{subject} changed type from {old} to {new}"));
        }

        fn check(&mut self, r: &'a Ty, w: &'a Ty, path: &str) {
            match (r, w) {
                (_, Ty::Union(writer_branches)) => {
                    let mut pairs = Vec::with_capacity(writer_branches.len());
                    for branch in writer_branches {
                        let target = match r {
                            Ty::Union(reader_branches) => self.pick(reader_branches, branch),
                            _ if self.readable_shape(r, branch) => Some(r),
                            _ => None,
                        };
                        match target {
                            Some(target) => pairs.push((target, branch)),
                            None => return self.type_changed(r, w, path),
                        }
                    }
                    for (target, branch) in pairs {
                        self.check(target, branch, path);
                    }
                }
                (Ty::Union(reader_branches), _) => match self.pick(reader_branches, w) {
                    Some(target) => self.check(target, w, path),
                    None => self.type_changed(r, w, path),
                },
                (Ty::Array(ri), Ty::Array(wi)) => self.check(ri, wi, &format!("{path}[]")),
                (Ty::Map(rv), Ty::Map(wv)) => self.check(rv, wv, &format!("{path}{{}}")),
                (Ty::Named(ri), Ty::Named(wi)) => {
                    if self.names_match(*ri, *wi) {
                        self.named(*ri, *wi, path);
                    } else {
                        self.type_changed(r, w, path);
                    }
                }
                _ => {
                    if !self.readable_shape(r, w) {
                        self.type_changed(r, w, path);
                    }
                }
            }
        }

        fn named(&mut self, ri: usize, wi: usize, path: &str) {
            let (reader, writer) = (self.r, self.w);
            let (Some(rn), Some(wn)) = (reader.named.get(ri), writer.named.get(wi)) else {
                return;
            };
            // Recursive types: a pair already being compared is assumed compatible.
            if !self.in_progress.insert((ri, wi)) {
                return;
            }
            match (&rn.kind, &wn.kind) {
                (Kind::Record(reader_fields), Kind::Record(writer_fields)) => {
                    for field in reader_fields {
                        let field_path = join(path, &field.name);
                        let matched = writer_fields
                            .iter()
                            .find(|w| w.name == field.name)
                            .or_else(|| writer_fields.iter().find(|w| field.aliases.contains(&w.name)));
                        match matched {
                            Some(w) => self.check(&field.ty, &w.ty, &field_path),
                            None if field.has_default => {}
                            None if self.roles.reader_is_new => {
                                self.out.push(format!("new required field {field_path} has no default"))
                            }
                            None => self.out.push(format!(
                                "field {field_path} was removed but the older schema has no default for it"
                            )),
                        }
                    }
                }
                (Kind::Enum { symbols: reader_symbols, default }, Kind::Enum { symbols: writer_symbols, .. })
                    if default.is_none() =>
                {
                    let label = if path.is_empty() { rn.name.as_str() } else { path };
                    for symbol in writer_symbols.iter().filter(|s| !reader_symbols.contains(s)) {
                        self.out.push(if self.roles.reader_is_new {
                                format!("enum {label} lost symbol {symbol}")
                            } else {
                                format!(
                                    "enum {label} gained symbol {symbol}, unknown to the older schema (which has no enum default)"
                                )
                            });
                    }
                }
                (Kind::Fixed(reader_size), Kind::Fixed(writer_size)) if reader_size != writer_size => {
                    let (old, new) = self.roles.old_new(writer_size, reader_size);
                    let label = if path.is_empty() { rn.name.as_str() } else { path };
                    self.out.push(format!("fixed {label} changed size from {old} to {new}"));
                }
                _ => {}
            }
            self.in_progress.remove(&(ri, wi));
        }
    }
}

mod json {
    //! JSON Schema: "is every document valid under the writer also valid under the reader?",
    //! with Confluent's rules for open and closed content models.

    use std::collections::HashSet;

    use serde_json::{Map, Value};

    use super::{at, dedup, join, Roles};

    const TYPES: [&str; 7] = ["null", "boolean", "object", "array", "number", "string", "integer"];

    /// Keywords that constrain documents; everything else is an annotation and is ignored.
    const VALIDATION: [&str; 44] = [
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "patternProperties",
        "items",
        "prefixItems",
        "additionalItems",
        "minItems",
        "maxItems",
        "uniqueItems",
        "contains",
        "minContains",
        "maxContains",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
        "minProperties",
        "maxProperties",
        "propertyNames",
        "dependencies",
        "dependentRequired",
        "dependentSchemas",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "if",
        "then",
        "else",
        "unevaluatedProperties",
        "unevaluatedItems",
        "$ref",
        "$dynamicRef",
        "$recursiveRef",
        "contentSchema",
        "additionalItems",
    ];

    /// Validation keywords this checker does not model: the reader's must equal the writer's.
    const UNCHECKED: [&str; 17] = [
        "not",
        "if",
        "then",
        "else",
        "dependencies",
        "dependentRequired",
        "dependentSchemas",
        "patternProperties",
        "propertyNames",
        "contains",
        "minContains",
        "maxContains",
        "unevaluatedProperties",
        "unevaluatedItems",
        "$dynamicRef",
        "$recursiveRef",
        "contentSchema",
    ];

    static TRUE_SCHEMA: Value = Value::Bool(true);

    pub(super) fn parse(text: &str) -> Result<Value, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON Schema JSON: {e}"))?;
        validate(&value, "#").map_err(|e| format!("invalid JSON Schema: {e}"))?;
        Ok(value)
    }

    /// Structural validation, so that the checker can rely on keyword shapes.
    fn validate(value: &Value, pointer: &str) -> Result<(), String> {
        let map = match value {
            Value::Bool(_) => return Ok(()),
            Value::Object(map) => map,
            other => return Err(format!("{pointer}: a schema must be an object or a boolean, found {other}")),
        };
        for (key, v) in map {
            let here = format!("{pointer}/{key}");
            let schemas_in_object = |v: &Value| -> Result<(), String> {
                match v {
                    Value::Object(m) => m.iter().try_for_each(|(k, s)| validate(s, &format!("{here}/{k}"))),
                    other => Err(format!("{here}: must be an object, found {other}")),
                }
            };
            let schemas_in_array = |v: &Value, non_empty: bool| -> Result<(), String> {
                match v {
                    Value::Array(items) if !(non_empty && items.is_empty()) => {
                        items.iter().enumerate().try_for_each(|(i, s)| validate(s, &format!("{here}/{i}")))
                    }
                    other => Err(format!("{here}: must be a non-empty array of schemas, found {other}")),
                }
            };
            match key.as_str() {
                "type" => {
                    let names: Vec<&Value> = match v {
                        Value::Array(items) => items.iter().collect(),
                        single => vec![single],
                    };
                    for name in names {
                        if !name.as_str().is_some_and(|n| TYPES.contains(&n)) {
                            return Err(format!("{here}: unknown type {name}"));
                        }
                    }
                }
                "properties" | "patternProperties" | "definitions" | "$defs" | "dependentSchemas" => {
                    schemas_in_object(v)?
                }
                "dependencies" => match v {
                    Value::Object(m) => {
                        for (k, dep) in m {
                            if !dep.is_array() {
                                validate(dep, &format!("{here}/{k}"))?;
                            }
                        }
                    }
                    other => return Err(format!("{here}: must be an object, found {other}")),
                },
                "required" if !v.as_array().is_some_and(|items| items.iter().all(Value::is_string)) => {
                    return Err(format!("{here}: must be an array of property names, found {v}"));
                }
                "items" => {
                    if v.is_array() {
                        schemas_in_array(v, false)?
                    } else {
                        validate(v, &here)?
                    }
                }
                "prefixItems" => schemas_in_array(v, false)?,
                "allOf" | "anyOf" | "oneOf" => schemas_in_array(v, true)?,
                "additionalProperties"
                | "additionalItems"
                | "not"
                | "if"
                | "then"
                | "else"
                | "contains"
                | "propertyNames"
                | "unevaluatedProperties"
                | "unevaluatedItems" => validate(v, &here)?,
                "enum" if !v.is_array() => {
                    return Err(format!("{here}: must be an array, found {v}"));
                }
                "$ref" | "pattern" if !v.is_string() => {
                    return Err(format!("{here}: must be a string, found {v}"));
                }
                "minLength" | "maxLength" | "minItems" | "maxItems" | "minProperties" | "maxProperties" | "minimum"
                | "maximum"
                    if !v.is_number() =>
                {
                    return Err(format!("{here}: must be a number, found {v}"));
                }
                "multipleOf" if !v.as_f64().is_some_and(|m| m > 0.0) => {
                    return Err(format!("{here}: must be a number greater than 0, found {v}"));
                }
                "exclusiveMinimum" | "exclusiveMaximum" if !(v.is_number() || v.is_boolean()) => {
                    return Err(format!("{here}: must be a number, found {v}"));
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub(super) fn check(reader: &Value, writer: &Value, roles: Roles) -> Vec<String> {
        let mut checker = Checker { w_root: writer, r_root: reader, roles, in_progress: HashSet::new(), depth: 0 };
        checker.sub(S::new(writer), S::new(reader), "")
    }

    const SKIP_REF: u8 = 1;
    const SKIP_ANY: u8 = 2;
    const SKIP_ALL: u8 = 4;

    /// A view of a schema node: some keywords hidden (to look at a combinator's siblings
    /// without cloning), and optionally its `type` narrowed to one name.
    #[derive(Clone, Copy)]
    struct S<'v> {
        v: &'v Value,
        skip: u8,
        ty: Option<&'static str>,
    }

    impl<'v> S<'v> {
        fn new(v: &'v Value) -> Self {
            S { v, skip: 0, ty: None }
        }
        fn without(self, flag: u8) -> Self {
            S { skip: self.skip | flag, ..self }
        }
        fn hidden(&self, key: &str) -> bool {
            (self.skip & SKIP_REF != 0 && key == "$ref")
                || (self.skip & SKIP_ANY != 0 && (key == "anyOf" || key == "oneOf"))
                || (self.skip & SKIP_ALL != 0 && key == "allOf")
        }
        fn get(&self, key: &str) -> Option<&'v Value> {
            if self.hidden(key) {
                return None;
            }
            self.v.as_object()?.get(key)
        }
        fn is_false(&self) -> bool {
            matches!(self.v, Value::Bool(false))
        }
        /// Accepts every document (`true`, `{}`, or only annotations).
        fn is_trivial(&self) -> bool {
            self.ty.is_none()
                && match self.v {
                    Value::Bool(b) => *b,
                    Value::Object(map) => !map.keys().any(|k| !self.hidden(k) && VALIDATION.contains(&k.as_str())),
                    _ => false,
                }
        }
        fn str(&self, key: &str) -> Option<&'v str> {
            self.get(key).and_then(Value::as_str)
        }
        fn num(&self, key: &str) -> Option<f64> {
            self.get(key).and_then(Value::as_f64)
        }
        fn strings(&self, key: &str) -> Vec<&'v str> {
            self.get(key)
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default()
        }
        fn object(&self, key: &str) -> Option<&'v Map<String, Value>> {
            self.get(key).and_then(Value::as_object)
        }
        /// The values the schema is restricted to by `const` / `enum`.
        fn values(&self) -> Option<Vec<&'v Value>> {
            if let Some(c) = self.get("const") {
                return Some(vec![c]);
            }
            self.get("enum").and_then(Value::as_array).map(|items| items.iter().collect())
        }
        /// The JSON types the schema admits; None: any.
        fn types(&self) -> Option<Vec<&'static str>> {
            if let Some(t) = self.ty {
                return Some(vec![t]);
            }
            if let Some(declared) = self.get("type") {
                let names: Vec<&Value> = match declared {
                    Value::Array(items) => items.iter().collect(),
                    single => vec![single],
                };
                let mut out = Vec::new();
                for name in names.iter().filter_map(|n| n.as_str()) {
                    if let Some(t) = TYPES.iter().find(|t| **t == name) {
                        if !out.contains(t) {
                            out.push(*t);
                        }
                    }
                }
                return Some(out);
            }
            if let Some(values) = self.values() {
                let mut out = Vec::new();
                for t in values.into_iter().map(value_type) {
                    if !out.contains(&t) {
                        out.push(t);
                    }
                }
                return Some(out);
            }
            // No `type`: infer it when every keyword present belongs to one type.
            const GROUPS: [(&str, &[&str]); 4] = [
                (
                    "object",
                    &[
                        "properties",
                        "required",
                        "additionalProperties",
                        "patternProperties",
                        "minProperties",
                        "maxProperties",
                        "propertyNames",
                        "dependencies",
                        "dependentRequired",
                        "dependentSchemas",
                    ],
                ),
                (
                    "array",
                    &["items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems", "contains"],
                ),
                ("string", &["minLength", "maxLength", "pattern"]),
                ("number", &["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"]),
            ];
            let present: Vec<&'static str> =
                GROUPS.iter().filter(|(_, keys)| keys.iter().any(|k| self.get(k).is_some())).map(|(t, _)| *t).collect();
            match present.as_slice() {
                [single] => Some(vec![*single]),
                _ => None,
            }
        }
    }

    fn value_type(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
            Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    fn json_eq(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
            (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q)),
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
            }
            _ => a == b,
        }
    }

    fn accepts(reader_types: &[&str], t: &str) -> bool {
        reader_types.contains(&t) || (t == "integer" && reader_types.contains(&"number"))
    }

    fn show_types(types: &[&str]) -> String {
        match types {
            [single] => format!("\"{single}\""),
            many => {
                let quoted: Vec<String> = many.iter().map(|t| format!("\"{t}\"")).collect();
                format!("[{}]", quoted.join(", "))
            }
        }
    }

    fn resolve<'v>(root: &'v Value, reference: &str) -> Option<&'v Value> {
        let fragment = reference.strip_prefix('#')?;
        if fragment.is_empty() {
            Some(root)
        } else if fragment.starts_with('/') {
            root.pointer(fragment)
        } else {
            None
        }
    }

    /// A lower (`minimum`) or upper (`maximum`) bound: (value, exclusive).
    fn bound(s: &S, inclusive: &str, exclusive: &str, lower: bool) -> Option<(f64, bool)> {
        let plain = s.num(inclusive);
        match s.get(exclusive) {
            Some(Value::Bool(true)) => plain.map(|v| (v, true)),
            Some(Value::Number(n)) => {
                let e = n.as_f64()?;
                match plain {
                    Some(p) if (lower && p > e) || (!lower && p < e) => Some((p, false)),
                    _ => Some((e, true)),
                }
            }
            _ => plain.map(|v| (v, false)),
        }
    }

    fn show_bound(b: (f64, bool), lower: bool) -> String {
        let op = match (lower, b.1) {
            (true, false) => ">=",
            (true, true) => ">",
            (false, false) => "<=",
            (false, true) => "<",
        };
        format!("{op} {}", b.0)
    }

    #[derive(Clone, Copy)]
    enum Extra<'v> {
        Open,
        Closed,
        Schema(&'v Value),
    }

    fn extra<'v>(s: &S<'v>) -> Extra<'v> {
        if s.object("patternProperties").is_some_and(|m| !m.is_empty()) {
            return Extra::Open;
        }
        match s.get("additionalProperties") {
            None | Some(Value::Bool(true)) => Extra::Open,
            Some(Value::Bool(false)) => Extra::Closed,
            Some(schema) if S::new(schema).is_trivial() => Extra::Open,
            Some(schema) => Extra::Schema(schema),
        }
    }

    fn show_extra(e: Extra) -> &'static str {
        match e {
            Extra::Open => "true",
            Extra::Closed => "false",
            Extra::Schema(_) => "a schema",
        }
    }

    type GuardKey = (usize, u8, Option<&'static str>, usize, u8);

    struct Checker<'a> {
        w_root: &'a Value,
        r_root: &'a Value,
        roles: Roles,
        /// (writer node, reader node) pairs being compared through a `$ref`: recursion guard.
        in_progress: HashSet<GuardKey>,
        depth: usize,
    }

    impl<'a> Checker<'a> {
        fn sub(&mut self, w: S<'a>, r: S<'a>, path: &str) -> Vec<String> {
            if self.depth > 200 {
                return vec![format!("{}schema is nested too deeply to check", at(path))];
            }
            self.depth += 1;
            let out = self.sub_inner(w, r, path);
            self.depth -= 1;
            dedup(out)
        }

        fn guarded(&mut self, w: S<'a>, r: S<'a>, path: &str) -> Vec<String> {
            let key = (w.v as *const Value as usize, w.skip, w.ty, r.v as *const Value as usize, r.skip);
            if !self.in_progress.insert(key) {
                return Vec::new();
            }
            let out = self.sub(w, r, path);
            self.in_progress.remove(&key);
            out
        }

        fn constraint(&self, path: &str, keyword: &str, writer: Option<String>, reader: String) -> String {
            let a = at(path);
            match (self.roles.reader_is_new, writer) {
                (true, None) => format!("{a}{keyword} {reader} was added"),
                (true, Some(w)) => format!("{a}{keyword} tightened from {w} to {reader}"),
                (false, None) => {
                    format!("{a}{keyword} {reader} was removed, the older schema still enforces it")
                }
                (false, Some(w)) => format!("{a}{keyword} loosened from {reader} to {w}"),
            }
        }

        fn sub_inner(&mut self, w: S<'a>, r: S<'a>, path: &str) -> Vec<String> {
            let roles = self.roles;
            if let Some(reference) = w.str("$ref") {
                return match resolve(self.w_root, reference) {
                    Some(target) => self.guarded(S { v: target, skip: 0, ty: w.ty }, r, path),
                    None if r.str("$ref") == Some(reference) => Vec::new(),
                    None => vec![format!("{}cannot resolve $ref \"{reference}\" of the {}", at(path), roles.writer())],
                };
            }
            if let Some(reference) = r.str("$ref") {
                let Some(target) = resolve(self.r_root, reference) else {
                    return vec![format!("{}cannot resolve $ref \"{reference}\" of the {}", at(path), roles.reader())];
                };
                let mut out = self.guarded(w, S::new(target), path);
                let siblings = r.without(SKIP_REF);
                if !siblings.is_trivial() {
                    out.extend(self.sub(w, siblings, path));
                }
                return out;
            }
            if r.is_trivial() || w.is_false() {
                return Vec::new();
            }
            if r.is_false() {
                return vec![format!("{}the {} accepts no value here", at(path), roles.reader())];
            }

            // Writer combinators: every alternative must be readable.
            if let Some(Value::Array(branches)) = w.get("anyOf").or_else(|| w.get("oneOf")) {
                let siblings = w.without(SKIP_ANY);
                if !siblings.is_trivial() && self.sub(siblings, r, path).is_empty() {
                    return Vec::new();
                }
                let mut out = Vec::new();
                for branch in branches {
                    out.extend(self.sub(S { ty: w.ty, ..S::new(branch) }, r, path));
                }
                return out;
            }
            if let Some(Value::Array(members)) = w.get("allOf") {
                let siblings = w.without(SKIP_ALL);
                let candidates =
                    std::iter::once(siblings).filter(|s| !s.is_trivial()).chain(members.iter().map(S::new));
                let mut first: Option<Vec<String>> = None;
                for candidate in candidates {
                    let errors = self.sub(candidate, r, path);
                    if errors.is_empty() {
                        return errors;
                    }
                    first.get_or_insert(errors);
                }
                return first.unwrap_or_default();
            }

            // Reader combinators.
            if let Some(Value::Array(members)) = r.get("allOf") {
                let mut out = Vec::new();
                for member in members {
                    out.extend(self.sub(w, S::new(member), path));
                }
                let siblings = r.without(SKIP_ALL);
                if !siblings.is_trivial() {
                    out.extend(self.sub(w, siblings, path));
                }
                return out;
            }
            if let Some(Value::Array(branches)) = r.get("anyOf").or_else(|| r.get("oneOf")) {
                if let Some(types) = w.types() {
                    if types.len() > 1 {
                        // ["null", "string"] against anyOf [{null}, {string}]: one type at a time.
                        let mut out = Vec::new();
                        for t in types {
                            out.extend(self.sub(S { ty: Some(t), ..w }, r, path));
                        }
                        return out;
                    }
                }
                let mut out = Vec::new();
                let siblings = r.without(SKIP_ANY);
                if !siblings.is_trivial() {
                    out.extend(self.sub(w, siblings, path));
                }
                let writer_types = w.types();
                let mut best: Option<(bool, Vec<String>)> = None;
                for branch in branches {
                    let branch = S::new(branch);
                    let errors = self.sub(w, branch, path);
                    if errors.is_empty() {
                        return out;
                    }
                    // Prefer the alternative of the writer's own type when explaining the failure.
                    let type_fits = match (&writer_types, branch.types()) {
                        (_, None) => true,
                        (None, Some(_)) => false,
                        (Some(wt), Some(bt)) => wt.iter().all(|t| accepts(&bt, t)),
                    };
                    let better = match &best {
                        None => true,
                        Some((fits, errs)) => (type_fits && !fits) || (type_fits == *fits && errors.len() < errs.len()),
                    };
                    if better {
                        best = Some((type_fits, errors));
                    }
                }
                if let Some((_, errors)) = best {
                    out.extend(errors);
                }
                return out;
            }
            self.core(w, r, path)
        }

        fn core(&mut self, w: S<'a>, r: S<'a>, path: &str) -> Vec<String> {
            let roles = self.roles;
            let a = at(path);
            let mut out = Vec::new();
            for keyword in UNCHECKED {
                if let Some(rv) = r.get(keyword) {
                    if !w.get(keyword).is_some_and(|wv| json_eq(wv, rv)) {
                        out.push(format!("{a}keyword \"{keyword}\" differs between the schemas and cannot be checked"));
                    }
                }
            }

            let writer_values = w.values();
            let effective: Option<Vec<&'static str>> = match (w.types(), r.types()) {
                (wt, None) => wt,
                (None, Some(rt)) => {
                    out.push(format!(
                        "{a}the {} allows any type but the {} only accepts {}",
                        roles.writer(),
                        roles.reader(),
                        show_types(&rt)
                    ));
                    return out;
                }
                (Some(wt), Some(rt)) => {
                    let mut kept = Vec::new();
                    for t in wt {
                        if accepts(&rt, t) {
                            kept.push(t);
                        } else {
                            out.push(format!("{a}type \"{t}\" is not accepted by {}", show_types(&rt)));
                        }
                    }
                    Some(kept)
                }
            };

            if let Some(reader_values) = r.values() {
                match &writer_values {
                    None => {
                        let shown: Vec<String> = reader_values.iter().map(|v| v.to_string()).collect();
                        out.push(if roles.reader_is_new {
                            format!("{a}values are now restricted to [{}]", shown.join(", "))
                        } else {
                            format!(
                                "{a}the older schema restricts values to [{}], the new schema does not",
                                shown.join(", ")
                            )
                        });
                    }
                    Some(values) => {
                        for value in values {
                            if !reader_values.iter().any(|rv| json_eq(rv, value)) {
                                out.push(if roles.reader_is_new {
                                    format!("{a}enum lost value {value}")
                                } else {
                                    format!("{a}new enum value {value} is not accepted by the older schema")
                                });
                            }
                        }
                    }
                }
            }

            let admits = |t: &str| {
                effective
                    .as_ref()
                    .is_none_or(|types| types.iter().any(|x| *x == t || (t == "number" && *x == "integer")))
            };
            match &writer_values {
                None => {
                    if admits("string") {
                        self.strings(w, r, path, &mut out);
                    }
                    if admits("number") {
                        self.numbers(w, r, path, &mut out);
                    }
                }
                Some(values) => self.values_against(values, w, r, path, &mut out),
            }
            if admits("array") {
                self.arrays(w, r, path, &mut out);
            }
            if admits("object") {
                self.objects(w, r, path, &mut out);
            }
            out
        }

        /// Reader `max*` keyword: the writer must have one at most as large.
        fn upper(&self, w: S, r: S, keyword: &str, path: &str, out: &mut Vec<String>) {
            if let Some(rv) = r.num(keyword) {
                let wv = w.num(keyword);
                if wv.is_none_or(|wv| wv > rv) {
                    out.push(self.constraint(path, keyword, wv.map(|v| v.to_string()), rv.to_string()));
                }
            }
        }

        /// Reader `min*` count keyword: the writer's (default 0) must be at least as large.
        fn lower(&self, w: S, r: S, keyword: &str, path: &str, out: &mut Vec<String>) {
            if let Some(rv) = r.num(keyword) {
                let wv = w.num(keyword);
                if wv.unwrap_or(0.0) < rv {
                    out.push(self.constraint(path, keyword, wv.map(|v| v.to_string()), rv.to_string()));
                }
            }
        }

        fn strings(&self, w: S, r: S, path: &str, out: &mut Vec<String>) {
            self.upper(w, r, "maxLength", path, out);
            self.lower(w, r, "minLength", path, out);
            if let Some(rp) = r.str("pattern") {
                let wp = w.str("pattern");
                if wp != Some(rp) {
                    out.push(self.constraint(path, "pattern", wp.map(|p| format!("\"{p}\"")), format!("\"{rp}\"")));
                }
            }
        }

        fn numbers(&self, w: S, r: S, path: &str, out: &mut Vec<String>) {
            for lower in [true, false] {
                let (inclusive, exclusive, name) = if lower {
                    ("minimum", "exclusiveMinimum", "minimum")
                } else {
                    ("maximum", "exclusiveMaximum", "maximum")
                };
                let Some(rb) = bound(&r, inclusive, exclusive, lower) else {
                    continue;
                };
                let wb = bound(&w, inclusive, exclusive, lower);
                let implied = wb.is_some_and(|(wv, we)| {
                    (if lower { wv > rb.0 } else { wv < rb.0 }) || (wv == rb.0 && (we || !rb.1))
                });
                if !implied {
                    out.push(self.constraint(path, name, wb.map(|b| show_bound(b, lower)), show_bound(rb, lower)));
                }
            }
            if let Some(rm) = r.num("multipleOf") {
                let wm = w.num("multipleOf");
                let integer_only = w.types().is_some_and(|t| t == ["integer"]);
                let ok = match wm {
                    Some(wm) => (wm / rm - (wm / rm).round()).abs() < 1e-9,
                    None => integer_only && rm == 1.0,
                };
                if !ok {
                    out.push(self.constraint(path, "multipleOf", wm.map(|m| m.to_string()), rm.to_string()));
                }
            }
        }

        /// The writer admits only the listed values: check those against the reader's
        /// string and number constraints.
        fn values_against(&self, values: &[&Value], w: S, r: S, path: &str, out: &mut Vec<String>) {
            let a = at(path);
            for value in values {
                let reject = match value {
                    Value::String(s) => {
                        let len = s.chars().count() as f64;
                        r.num("maxLength").is_some_and(|m| len > m)
                            || r.num("minLength").is_some_and(|m| len < m)
                            || r.str("pattern").is_some_and(|p| w.str("pattern") != Some(p))
                    }
                    Value::Number(n) => {
                        let x = n.as_f64().unwrap_or(f64::NAN);
                        let below =
                            bound(&r, "minimum", "exclusiveMinimum", true).is_some_and(|(v, e)| x < v || (e && x == v));
                        let above = bound(&r, "maximum", "exclusiveMaximum", false)
                            .is_some_and(|(v, e)| x > v || (e && x == v));
                        let not_multiple =
                            r.num("multipleOf").is_some_and(|m| ((x / m) - (x / m).round()).abs() > 1e-9);
                        below || above || not_multiple
                    }
                    _ => false,
                };
                if reject {
                    out.push(format!("{a}value {value} is not accepted by the {}", self.roles.reader()));
                }
            }
        }

        fn arrays(&mut self, w: S<'a>, r: S<'a>, path: &str, out: &mut Vec<String>) {
            self.upper(w, r, "maxItems", path, out);
            self.lower(w, r, "minItems", path, out);
            if r.get("uniqueItems") == Some(&Value::Bool(true)) && w.get("uniqueItems") != Some(&Value::Bool(true)) {
                out.push(self.constraint(path, "uniqueItems", None, "true".into()));
            }
            let item_path = format!("{path}[]");
            match r.get("items") {
                None => {}
                Some(Value::Array(_)) => {
                    let same = |k: &str| match (w.get(k), r.get(k)) {
                        (Some(x), Some(y)) => json_eq(x, y),
                        (x, y) => x.is_none() && y.is_none(),
                    };
                    if !same("items") || !same("additionalItems") {
                        out.push(format!("{}tuple-form \"items\" differ and cannot be checked", at(path)));
                    }
                }
                Some(reader_items) => {
                    let reader_items = S::new(reader_items);
                    if let Some(Value::Array(prefix)) = w.get("prefixItems") {
                        for (i, item) in prefix.iter().enumerate() {
                            out.extend(self.sub(S::new(item), reader_items, &format!("{path}[{i}]")));
                        }
                    }
                    match w.get("items") {
                        Some(Value::Array(tuple)) => {
                            for (i, item) in tuple.iter().enumerate() {
                                out.extend(self.sub(S::new(item), reader_items, &format!("{path}[{i}]")));
                            }
                            let rest = w.get("additionalItems").unwrap_or(&TRUE_SCHEMA);
                            out.extend(self.sub(S::new(rest), reader_items, &item_path));
                        }
                        Some(writer_items) => out.extend(self.sub(S::new(writer_items), reader_items, &item_path)),
                        None => out.extend(self.sub(S::new(&TRUE_SCHEMA), reader_items, &item_path)),
                    }
                }
            }
        }

        fn objects(&mut self, w: S<'a>, r: S<'a>, path: &str, out: &mut Vec<String>) {
            let roles = self.roles;
            static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
            let empty = EMPTY.get_or_init(Map::new);
            let writer_props = w.object("properties").unwrap_or(empty);
            let reader_props = r.object("properties").unwrap_or(empty);
            let writer_required = w.strings("required");
            let (writer_extra, reader_extra) = (extra(&w), extra(&r));

            for name in r.strings("required") {
                if writer_required.contains(&name) {
                    continue;
                }
                // Confluent accepts a newly required property that has a default.
                if reader_props.get(name).and_then(|p| p.get("default")).is_some() {
                    continue;
                }
                let p = join(path, name);
                out.push(if roles.reader_is_new {
                    format!("property {p} is required but the older schema does not guarantee it")
                } else {
                    format!("property {p} is required by the older schema but the new schema does not guarantee it")
                });
            }

            for (name, reader_prop) in reader_props {
                let p = join(path, name);
                match (writer_props.get(name), writer_extra) {
                    (Some(writer_prop), _) => out.extend(self.sub(S::new(writer_prop), S::new(reader_prop), &p)),
                    (None, Extra::Closed) => {}
                    (None, Extra::Schema(additional)) => {
                        out.extend(self.sub(S::new(additional), S::new(reader_prop), &p))
                    }
                    (None, Extra::Open) => {
                        if !S::new(reader_prop).is_trivial() {
                            out.push(if roles.reader_is_new {
                                format!("property {p} was added to an open content model, where older data may already hold any value for it")
                            } else {
                                format!("property {p} was removed from an open content model, where new data may hold any value for it")
                            });
                        }
                    }
                }
            }

            for (name, writer_prop) in writer_props {
                if reader_props.contains_key(name) {
                    continue;
                }
                let p = join(path, name);
                match reader_extra {
                    Extra::Open => {}
                    Extra::Schema(additional) => out.extend(self.sub(S::new(writer_prop), S::new(additional), &p)),
                    Extra::Closed => {
                        if !S::new(writer_prop).is_false() {
                            out.push(if roles.reader_is_new {
                                format!("property {p} was removed from a closed content model (additionalProperties: false)")
                            } else {
                                format!("property {p} was added but the older schema's content model is closed (additionalProperties: false)")
                            });
                        }
                    }
                }
            }

            match (writer_extra, reader_extra) {
                (Extra::Closed, _) | (_, Extra::Open) => {}
                (Extra::Schema(a), Extra::Schema(b)) => out.extend(self.sub(S::new(a), S::new(b), &join(path, "*"))),
                (we, re) => {
                    let (old, new) = roles.old_new(show_extra(we), show_extra(re));
                    let verb = if roles.reader_is_new { "narrowed" } else { "widened" };
                    out.push(format!("{}additionalProperties {verb} from {old} to {new}", at(path)));
                }
            }

            self.upper(w, r, "maxProperties", path, out);
            self.lower(w, r, "minProperties", path, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODES: [Compatibility; 7] = [
        Compatibility::None,
        Compatibility::Backward,
        Compatibility::BackwardTransitive,
        Compatibility::Forward,
        Compatibility::ForwardTransitive,
        Compatibility::Full,
        Compatibility::FullTransitive,
    ];

    /// Whether `mode` accepts a change that is (backward_ok, forward_ok).
    fn expected(mode: Compatibility, backward_ok: bool, forward_ok: bool) -> bool {
        match mode {
            Compatibility::None => true,
            Compatibility::Backward | Compatibility::BackwardTransitive => backward_ok,
            Compatibility::Forward | Compatibility::ForwardTransitive => forward_ok,
            Compatibility::Full | Compatibility::FullTransitive => backward_ok && forward_ok,
        }
    }

    fn run(mode: Compatibility, t: SchemaType, new: &str, previous: &[&str]) -> Vec<Incompatibility> {
        let versions: Vec<(i32, SchemaType, &str)> =
            previous.iter().enumerate().map(|(i, s)| (i as i32 + 1, t, *s)).collect();
        match check_compatibility(mode, t, new, &versions) {
            Ok(found) => found,
            Err(e) => panic!("unexpected Err for {mode}: {e}\nnew: {new}"),
        }
    }

    fn messages(found: &[Incompatibility]) -> Vec<&str> {
        found.iter().map(|i| i.message.as_str()).collect()
    }

    /// (name, old, new, backward_ok, forward_ok), checked under every mode.
    fn check_table(t: SchemaType, table: &[(&str, String, String, bool, bool)]) {
        for (name, old, new, backward_ok, forward_ok) in table {
            for mode in MODES {
                let found = run(mode, t, new, &[old.as_str()]);
                let want = expected(mode, *backward_ok, *forward_ok);
                assert_eq!(
                    found.is_empty(),
                    want,
                    "{t:?} case '{name}' under {mode}: expected {}, got {:?}",
                    if want { "compatible" } else { "incompatible" },
                    messages(&found)
                );
                for i in &found {
                    assert_eq!(i.version, 1, "case '{name}'");
                    let direction_allowed = match i.direction {
                        Direction::Backward => !backward_ok,
                        Direction::Forward => !forward_ok,
                    };
                    assert!(direction_allowed, "case '{name}' under {mode}: unexpected {i}");
                    assert!(!i.message.is_empty());
                }
            }
        }
    }

    fn rec(fields: &str) -> String {
        format!(r#"{{"type":"record","name":"Order","namespace":"shop","fields":[{fields}]}}"#)
    }

    const ID: &str = r#"{"name":"id","type":"long"}"#;

    fn avro_table() -> Vec<(&'static str, String, String, bool, bool)> {
        let status = |symbols: &str, default: &str| {
            format!(
                r#"{ID},{{"name":"STATUS","type":{{"type":"enum","name":"Status","symbols":[{symbols}]{default}}}}}"#
            )
        };
        let address = |extra: &str| {
            format!(
                r#"{ID},{{"name":"address","type":{{"type":"record","name":"Address","fields":[{{"name":"street","type":"string"}},{{"name":"zip","type":"string"}}{extra}]}}}}"#
            )
        };
        vec![
            ("identical", rec(ID), rec(ID), true, true),
            ("add field with default", rec(ID), rec(&format!(r#"{ID},{{"name":"note","type":"string","default":""}}"#)), true, true),
            ("add field without default", rec(ID), rec(&format!(r#"{ID},{{"name":"MAX_ORDER_TOTAL","type":"double"}}"#)), false, true),
            ("remove field with default", rec(&format!(r#"{ID},{{"name":"note","type":"string","default":""}}"#)), rec(ID), true, true),
            ("remove field without default", rec(&format!(r#"{ID},{{"name":"note","type":"string"}}"#)), rec(ID), true, false),
            ("promote int to long", rec(r#"{"name":"qty","type":"int"}"#), rec(r#"{"name":"qty","type":"long"}"#), true, false),
            ("promote float to double", rec(r#"{"name":"x","type":"float"}"#), rec(r#"{"name":"x","type":"double"}"#), true, false),
            ("narrow double to int", rec(r#"{"name":"ORDER_TOTAL","type":"double"}"#), rec(r#"{"name":"ORDER_TOTAL","type":"int"}"#), false, true),
            ("string to int", rec(r#"{"name":"x","type":"string"}"#), rec(r#"{"name":"x","type":"int"}"#), false, false),
            ("string to bytes", rec(r#"{"name":"x","type":"string"}"#), rec(r#"{"name":"x","type":"bytes"}"#), true, true),
            ("make field nullable", rec(r#"{"name":"x","type":"string"}"#), rec(r#"{"name":"x","type":["null","string"],"default":null}"#), true, false),
            ("make field non-nullable", rec(r#"{"name":"x","type":["null","string"],"default":null}"#), rec(r#"{"name":"x","type":"string"}"#), false, true),
            ("union gains a branch", rec(r#"{"name":"x","type":["null","int"]}"#), rec(r#"{"name":"x","type":["null","int","string"]}"#), true, false),
            ("union branch promoted", rec(r#"{"name":"x","type":["null","int"]}"#), rec(r#"{"name":"x","type":["null","long"]}"#), true, false),
            ("enum symbol added", rec(&status(r#""NEW","PAID""#, "")), rec(&status(r#""NEW","PAID","SHIPPED""#, "")), true, false),
            ("enum symbol removed", rec(&status(r#""NEW","PAID","SHIPPED""#, "")), rec(&status(r#""NEW","PAID""#, "")), false, true),
            ("enum symbol removed, reader default", rec(&status(r#""NEW","PAID","SHIPPED""#, "")), rec(&status(r#""NEW","PAID""#, r#","default":"NEW""#)), true, true),
            ("enum symbol added, both defaults", rec(&status(r#""NEW","PAID""#, r#","default":"NEW""#)), rec(&status(r#""NEW","PAID","SHIPPED""#, r#","default":"NEW""#)), true, true),
            ("nested field added without default", rec(&address("")), rec(&address(r#",{"name":"country","type":"string"}"#)), false, true),
            ("nested field added with default", rec(&address("")), rec(&address(r#",{"name":"country","type":"string","default":"NL"}"#)), true, true),
            ("nested type changed", rec(&address("")), rec(&address("").replace(r#"{"name":"zip","type":"string"}"#, r#"{"name":"zip","type":"int"}"#)), false, false),
            ("field renamed with alias", rec(r#"{"name":"amount","type":"double"}"#), rec(r#"{"name":"total","type":"double","aliases":["amount"]}"#), true, false),
            ("record renamed", rec(ID), rec(ID).replace(r#""name":"Order""#, r#""name":"Purchase""#), false, false),
            ("record renamed with alias", rec(ID), rec(ID).replace(r#""name":"Order""#, r#""name":"Purchase","aliases":["Order"]"#), true, false),
            ("namespace changed", rec(ID), rec(ID).replace(r#""namespace":"shop""#, r#""namespace":"store""#), true, true),
            ("array items promoted", rec(r#"{"name":"xs","type":{"type":"array","items":"int"}}"#), rec(r#"{"name":"xs","type":{"type":"array","items":"long"}}"#), true, false),
            ("map values changed", rec(r#"{"name":"m","type":{"type":"map","values":"string"}}"#), rec(r#"{"name":"m","type":{"type":"map","values":"int"}}"#), false, false),
            ("fixed size changed", rec(r#"{"name":"h","type":{"type":"fixed","name":"Hash","size":16}}"#), rec(r#"{"name":"h","type":{"type":"fixed","name":"Hash","size":8}}"#), false, false),
            ("logical type annotation", rec(r#"{"name":"ts","type":"long"}"#), rec(r#"{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}}"#), true, true),
            ("recursive type unchanged", r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null}]}"#.to_string(), r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null}]}"#.to_string(), true, true),
            ("recursive type, field widened", r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","Node"],"default":null}]}"#.to_string(), r#"{"type":"record","name":"Node","fields":[{"name":"v","type":"long"},{"name":"next","type":["null","Node"],"default":null}]}"#.to_string(), true, false),
            ("named type reused by reference", rec(r#"{"name":"a","type":{"type":"enum","name":"E","symbols":["X","Y"]}},{"name":"b","type":"E"}"#), rec(r#"{"name":"a","type":{"type":"enum","name":"E","symbols":["X"]}},{"name":"b","type":"shop.E"}"#), false, true),
            ("primitive top level", r#""int""#.to_string(), r#""long""#.to_string(), true, false),
        ]
    }

    fn obj(props: &str, required: &str, additional: &str) -> String {
        format!(r#"{{"type":"object","properties":{{{props}}},"required":[{required}]{additional}}}"#)
    }
    const CLOSED: &str = r#","additionalProperties":false"#;
    const A: &str = r#""a":{"type":"string"}"#;
    const AB: &str = r#""a":{"type":"string"},"b":{"type":"string"}"#;

    fn json_table() -> Vec<(&'static str, String, String, bool, bool)> {
        let field = |t: &str| obj(&format!(r#""x":{t}"#), "", CLOSED);
        vec![
            ("identical", obj(A, r#""a""#, ""), obj(A, r#""a""#, ""), true, true),
            ("open model: add optional property", obj(A, "", ""), obj(AB, "", ""), false, true),
            ("open model: add property with empty schema", obj(A, "", ""), obj(r#""a":{"type":"string"},"b":{}"#, "", ""), true, true),
            ("open model: remove property", obj(AB, "", ""), obj(A, "", ""), true, false),
            ("closed model: add optional property", obj(A, "", CLOSED), obj(AB, "", CLOSED), true, false),
            ("closed model: add required property", obj(A, "", CLOSED), obj(AB, r#""b""#, CLOSED), false, false),
            ("closed model: remove property", obj(AB, "", CLOSED), obj(A, "", CLOSED), false, true),
            ("required added", obj(AB, r#""a""#, CLOSED), obj(AB, r#""a","b""#, CLOSED), false, true),
            ("required added with default", obj(AB, r#""a""#, CLOSED), obj(r#""a":{"type":"string"},"b":{"type":"string","default":"x"}"#, r#""a","b""#, CLOSED), true, true),
            ("required removed", obj(AB, r#""a","b""#, CLOSED), obj(AB, r#""a""#, CLOSED), true, false),
            ("integer to number", field(r#"{"type":"integer"}"#), field(r#"{"type":"number"}"#), true, false),
            ("number to integer", field(r#"{"type":"number"}"#), field(r#"{"type":"integer"}"#), false, true),
            ("string to object", field(r#"{"type":"string"}"#), field(r#"{"type":"object"}"#), false, false),
            ("made nullable", field(r#"{"type":"string"}"#), field(r#"{"type":["null","string"]}"#), true, false),
            ("made non-nullable", field(r#"{"type":["null","string"]}"#), field(r#"{"type":"string"}"#), false, true),
            ("oneOf nullable to plain", field(r#"{"oneOf":[{"type":"null"},{"type":"string"}]}"#), field(r#"{"type":"string"}"#), false, true),
            ("type array to anyOf", field(r#"{"type":["null","string"]}"#), field(r#"{"anyOf":[{"type":"null"},{"type":"string"}]}"#), true, true),
            ("enum value added", field(r#"{"type":"string","enum":["A","B"]}"#), field(r#"{"type":"string","enum":["A","B","C"]}"#), true, false),
            ("enum value removed", field(r#"{"type":"string","enum":["A","B","C"]}"#), field(r#"{"type":"string","enum":["A","B"]}"#), false, true),
            ("open to closed", obj(A, "", ""), obj(A, "", CLOSED), false, true),
            ("closed to open", obj(A, "", CLOSED), obj(A, "", ""), true, false),
            ("partially open: added property covered", obj(A, "", r#","additionalProperties":{"type":"string"}"#), obj(AB, "", r#","additionalProperties":{"type":"string"}"#), true, true),
            ("partially open: added property not covered", obj(A, "", r#","additionalProperties":{"type":"string"}"#), obj(r#""a":{"type":"string"},"b":{"type":"integer"}"#, "", r#","additionalProperties":{"type":"string"}"#), false, false),
            ("nested closed object widened", field(r#"{"type":"object","properties":{"amount":{"type":"integer"}},"additionalProperties":false}"#), field(r#"{"type":"object","properties":{"amount":{"type":"number"}},"additionalProperties":false}"#), true, false),
            ("nested open object gains property", field(r#"{"type":"object","properties":{"amount":{"type":"integer"}}}"#), field(r#"{"type":"object","properties":{"amount":{"type":"integer"},"cur":{"type":"string"}}}"#), false, true),
            ("array items widened", field(r#"{"type":"array","items":{"type":"integer"}}"#), field(r#"{"type":"array","items":{"type":"number"}}"#), true, false),
            ("maxLength tightened", field(r#"{"type":"string","maxLength":10}"#), field(r#"{"type":"string","maxLength":5}"#), false, true),
            ("minimum added", field(r#"{"type":"integer"}"#), field(r#"{"type":"integer","minimum":0}"#), false, true),
            ("annotations changed", field(r#"{"type":"string","description":"old","title":"X"}"#), field(r#"{"type":"string","description":"new","format":"email"}"#), true, true),
            ("unsupported keyword added", field(r#"{"type":"string"}"#), field(r#"{"type":"string","not":{"const":""}}"#), false, true),
            ("$ref definition: optional property added to closed model",
                r##"{"type":"object","properties":{"addr":{"$ref":"#/definitions/Addr"}},"additionalProperties":false,"definitions":{"Addr":{"type":"object","properties":{"street":{"type":"string"}},"additionalProperties":false}}}"##.to_string(),
                r##"{"type":"object","properties":{"addr":{"$ref":"#/$defs/Addr"}},"additionalProperties":false,"$defs":{"Addr":{"type":"object","properties":{"street":{"type":"string"},"zip":{"type":"string"}},"additionalProperties":false}}}"##.to_string(),
                true, false),
            ("recursive $ref unchanged",
                r##"{"type":"object","properties":{"v":{"type":"integer"},"children":{"type":"array","items":{"$ref":"#"}}},"additionalProperties":false}"##.to_string(),
                r##"{"type":"object","properties":{"v":{"type":"integer"},"children":{"type":"array","items":{"$ref":"#"}}},"additionalProperties":false}"##.to_string(),
                true, true),
            ("recursive $ref, field widened",
                r##"{"type":"object","properties":{"v":{"type":"integer"},"children":{"type":"array","items":{"$ref":"#"}}},"additionalProperties":false}"##.to_string(),
                r##"{"type":"object","properties":{"v":{"type":"number"},"children":{"type":"array","items":{"$ref":"#"}}},"additionalProperties":false}"##.to_string(),
                true, false),
            ("anything to empty schema", field(r#"{"type":"string"}"#), obj(r#""x":{}"#, "", CLOSED), true, false),
        ]
    }

    #[test]
    fn avro_pairs_under_every_mode() {
        check_table(SchemaType::Avro, &avro_table());
    }

    #[test]
    fn json_pairs_under_every_mode() {
        check_table(SchemaType::Json, &json_table());
    }

    #[test]
    fn avro_messages() {
        let backward = |old: String, new: String| {
            messages(&run(Compatibility::Backward, SchemaType::Avro, &new, &[&old]))
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let forward = |old: String, new: String| {
            messages(&run(Compatibility::Forward, SchemaType::Avro, &new, &[&old]))
                .into_iter()
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            backward(rec(ID), rec(&format!(r#"{ID},{{"name":"MAX_ORDER_TOTAL","type":"double"}}"#))),
            ["new required field MAX_ORDER_TOTAL has no default"]
        );
        assert_eq!(
            backward(rec(r#"{"name":"ORDER_TOTAL","type":"double"}"#), rec(r#"{"name":"ORDER_TOTAL","type":"int"}"#)),
            ["field ORDER_TOTAL changed type from double to int"]
        );
        assert_eq!(
            forward(rec(r#"{"name":"qty","type":"int"}"#), rec(r#"{"name":"qty","type":"long"}"#)),
            ["field qty changed type from int to long"]
        );
        let status = |symbols: &str| {
            rec(&format!(r#"{{"name":"STATUS","type":{{"type":"enum","name":"Status","symbols":[{symbols}]}}}}"#))
        };
        assert_eq!(backward(status(r#""NEW","SHIPPED""#), status(r#""NEW""#)), ["enum STATUS lost symbol SHIPPED"]);
        assert_eq!(
            forward(rec(&format!(r#"{ID},{{"name":"note","type":"string"}}"#)), rec(ID)),
            ["field note was removed but the older schema has no default for it"]
        );
        assert_eq!(
            backward(
                rec(
                    r#"{"name":"address","type":{"type":"record","name":"A","fields":[{"name":"zip","type":"string"}]}}"#
                ),
                rec(
                    r#"{"name":"address","type":{"type":"record","name":"A","fields":[{"name":"zip","type":"string"},{"name":"country","type":"string"}]}}"#
                )
            ),
            ["new required field address.country has no default"]
        );
        assert_eq!(
            backward(
                rec(r#"{"name":"x","type":["null","string"],"default":null}"#),
                rec(r#"{"name":"x","type":"string"}"#)
            ),
            ["field x changed type from [null, string] to string"]
        );
        assert_eq!(
            backward(
                rec(r#"{"name":"h","type":{"type":"fixed","name":"H","size":16}}"#),
                rec(r#"{"name":"h","type":{"type":"fixed","name":"H","size":8}}"#)
            ),
            ["fixed h changed size from 16 to 8"]
        );
    }

    #[test]
    fn json_messages() {
        let check = |mode, old: String, new: String| {
            messages(&run(mode, SchemaType::Json, &new, &[&old])).into_iter().map(str::to_string).collect::<Vec<_>>()
        };
        let total = |amount: &str| {
            format!(
                r#"{{"type":"object","properties":{{"total":{{"type":"object","properties":{{"amount":{{"type":"{amount}"}}}},"additionalProperties":false}}}},"additionalProperties":false}}"#
            )
        };
        assert_eq!(
            check(Compatibility::Forward, total("integer"), total("number")),
            [r#"field total.amount: type "number" is not accepted by "integer""#]
        );
        assert_eq!(
            check(Compatibility::Backward, total("number"), total("integer")),
            [r#"field total.amount: type "number" is not accepted by "integer""#]
        );
        assert_eq!(
            check(
                Compatibility::Backward,
                obj(r#""max_order_total":{"type":"number"}"#, "", CLOSED),
                obj(r#""max_order_total":{"type":"number"}"#, r#""max_order_total""#, CLOSED)
            ),
            ["property max_order_total is required but the older schema does not guarantee it"]
        );
        assert_eq!(
            check(Compatibility::Backward, obj(A, "", ""), obj(AB, "", "")),
            ["property b was added to an open content model, where older data may already hold any value for it"]
        );
        assert_eq!(
            check(Compatibility::Backward, obj(AB, "", CLOSED), obj(A, "", CLOSED)),
            ["property b was removed from a closed content model (additionalProperties: false)"]
        );
        assert_eq!(
            check(Compatibility::Forward, obj(A, "", CLOSED), obj(AB, "", CLOSED)),
            ["property b was added but the older schema's content model is closed (additionalProperties: false)"]
        );
        assert_eq!(
            check(
                Compatibility::Backward,
                obj(r#""s":{"enum":["NEW","SHIPPED"]}"#, "", CLOSED),
                obj(r#""s":{"enum":["NEW"]}"#, "", CLOSED)
            ),
            [r#"field s: enum lost value "SHIPPED""#]
        );
        assert_eq!(
            check(Compatibility::Backward, obj(A, "", ""), obj(A, "", CLOSED)),
            ["additionalProperties narrowed from true to false"]
        );
    }

    #[test]
    fn transitive_modes_check_every_version() {
        let avro_back = [rec(&format!(r#"{ID},{{"name":"a","type":"string"}}"#)), rec(ID), rec(ID)];
        let avro_back_new = rec(&format!(r#"{ID},{{"name":"a","type":"int","default":0}}"#));
        let avro_fwd = [
            rec(&format!(r#"{ID},{{"name":"a","type":"int"}}"#)),
            rec(&format!(r#"{ID},{{"name":"a","type":"int","default":0}}"#)),
            rec(&format!(r#"{ID},{{"name":"a","type":"int","default":0}}"#)),
        ];
        let avro_fwd_new = rec(ID);
        let x = |t: &str| obj(&format!(r#""x":{{"type":"{t}"}}"#), "", CLOSED);
        let json_back = [x("number"), x("integer"), x("integer")];
        let json_fwd = [x("integer"), x("number"), x("number")];

        /// (type, versions oldest first, new schema, plain mode, transitive mode, failing
        /// direction, message); under the transitive mode only version 1 fails.
        type Case<'a> = (SchemaType, &'a [String], String, Compatibility, Compatibility, Direction, &'a str);
        let cases: Vec<Case> = vec![
            (
                SchemaType::Avro,
                &avro_back,
                avro_back_new,
                Compatibility::Backward,
                Compatibility::BackwardTransitive,
                Direction::Backward,
                "field a changed type from string to int",
            ),
            (
                SchemaType::Avro,
                &avro_fwd,
                avro_fwd_new,
                Compatibility::Forward,
                Compatibility::ForwardTransitive,
                Direction::Forward,
                "field a was removed but the older schema has no default for it",
            ),
            (
                SchemaType::Json,
                &json_back,
                x("integer"),
                Compatibility::Backward,
                Compatibility::BackwardTransitive,
                Direction::Backward,
                r#"field x: type "number" is not accepted by "integer""#,
            ),
            (
                SchemaType::Json,
                &json_fwd,
                x("number"),
                Compatibility::Forward,
                Compatibility::ForwardTransitive,
                Direction::Forward,
                r#"field x: type "number" is not accepted by "integer""#,
            ),
            (
                SchemaType::Json,
                &json_back,
                x("integer"),
                Compatibility::Full,
                Compatibility::FullTransitive,
                Direction::Backward,
                r#"field x: type "number" is not accepted by "integer""#,
            ),
            (
                SchemaType::Avro,
                &avro_fwd,
                rec(ID),
                Compatibility::Full,
                Compatibility::FullTransitive,
                Direction::Forward,
                "field a was removed but the older schema has no default for it",
            ),
        ];
        for (t, versions, new, plain, transitive, direction, message) in cases {
            let versions: Vec<&str> = versions.iter().map(String::as_str).collect();
            let latest_only = run(plain, t, &new, &versions);
            assert!(latest_only.is_empty(), "{t:?} {plain}: {latest_only:?}");
            let all = run(transitive, t, &new, &versions);
            assert_eq!(
                all,
                vec![Incompatibility { version: 1, direction, message: message.to_string() }],
                "{t:?} {transitive}"
            );
            assert!(run(Compatibility::None, t, &new, &versions).is_empty());
        }
    }

    #[test]
    fn full_reports_both_directions() {
        let old = rec(r#"{"name":"x","type":"string"}"#);
        let new = rec(r#"{"name":"x","type":"int"}"#);
        let found = run(Compatibility::Full, SchemaType::Avro, &new, &[&old]);
        let directions: Vec<Direction> = found.iter().map(|i| i.direction).collect();
        assert_eq!(directions, [Direction::Backward, Direction::Forward]);
        assert_eq!(found[1].message, "field x changed type from string to int");
    }

    #[test]
    fn schema_type_change_is_one_incompatibility() {
        let previous = [(1, SchemaType::Json, r#"{"type":"object"}"#), (2, SchemaType::Avro, r#""int""#)];
        let found =
            check_compatibility(Compatibility::FullTransitive, SchemaType::Json, r#"{"type":"object"}"#, &previous);
        assert_eq!(
            found,
            Ok(vec![Incompatibility {
                version: 2,
                direction: Direction::Backward,
                message: "schema type changed from AVRO to JSON".into()
            }])
        );
        let found = check_compatibility(Compatibility::Forward, SchemaType::Avro, r#""int""#, &previous[..1]);
        assert_eq!(
            found.map(|f| f.iter().map(|i| (i.direction, i.message.clone())).collect::<Vec<_>>()),
            Ok(vec![(Direction::Forward, "schema type changed from JSON to AVRO".to_string())])
        );
    }

    #[test]
    fn nothing_to_check() {
        let none =
            check_compatibility(Compatibility::None, SchemaType::Avro, "not even json", &[(1, SchemaType::Avro, "{")]);
        assert_eq!(none, Ok(vec![]));
        let first = check_compatibility(Compatibility::FullTransitive, SchemaType::Avro, r#""int""#, &[]);
        assert_eq!(first, Ok(vec![]));
        // A non-transitive mode does not even parse older versions.
        let latest = check_compatibility(
            Compatibility::Backward,
            SchemaType::Avro,
            r#""long""#,
            &[(1, SchemaType::Avro, "{broken"), (2, SchemaType::Avro, r#""int""#)],
        );
        assert_eq!(latest, Ok(vec![]));
    }

    #[test]
    fn unparseable_schemas_are_errors_not_panics() {
        let bad_avro = [
            "",
            "{",
            "[]",
            "42",
            r#"{"type":"record"}"#,
            r#"{"type":"record","name":"R"}"#,
            r#"{"type":"record","name":"R","fields":[{"name":"a"}]}"#,
            r#"{"type":"record","name":"R","fields":[{"type":"int"}]}"#,
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"Missing"}]}"#,
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"a","type":"int"}]}"#,
            r#"{"type":"enum","name":"E","symbols":[1]}"#,
            r#"{"type":"enum","name":"E","symbols":["A"],"default":"B"}"#,
            r#"{"type":"fixed","name":"F"}"#,
            r#"{"type":"array"}"#,
            r#"{"type":"map"}"#,
            r#"[["int"]]"#,
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":{"type":"enum","name":"R","symbols":["A"]}}]}"#,
        ];
        let bad_json = [
            "",
            "{",
            "42",
            r#""string""#,
            r#"{"type":"strng"}"#,
            r#"{"type":["string",3]}"#,
            r#"{"properties":3}"#,
            r#"{"properties":{"a":5}}"#,
            r#"{"required":"a"}"#,
            r#"{"anyOf":[]}"#,
            r#"{"items":[1]}"#,
            r#"{"$ref":7}"#,
            r#"{"multipleOf":0}"#,
        ];
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        let good_avro = rec(ID);
        let good_json = obj(A, "", "");
        for (t, bad, good) in [
            (SchemaType::Avro, bad_avro.iter().copied().chain([deep.as_str()]).collect::<Vec<_>>(), good_avro.as_str()),
            (SchemaType::Json, bad_json.iter().copied().chain([deep.as_str()]).collect::<Vec<_>>(), good_json.as_str()),
        ] {
            for text in bad {
                let as_new = check_compatibility(Compatibility::Full, t, text, &[(1, t, good)]);
                match as_new {
                    Err(e) => assert!(e.starts_with("new schema: invalid"), "{t:?} {text}: {e}"),
                    Ok(found) => panic!("{t:?} accepted invalid schema {text}: {found:?}"),
                }
                let as_old = check_compatibility(Compatibility::Full, t, good, &[(7, t, text)]);
                match as_old {
                    Err(e) => assert!(e.starts_with("registered version 7: invalid"), "{t:?} {text}: {e}"),
                    Ok(found) => panic!("{t:?} accepted invalid schema {text}: {found:?}"),
                }
            }
        }
    }

    #[test]
    fn unresolvable_json_refs_are_reported_not_fatal() {
        let old = r##"{"type":"object","properties":{"a":{"$ref":"#/definitions/Nope"}}}"##;
        let same = run(Compatibility::Full, SchemaType::Json, old, &[old]);
        assert!(same.is_empty(), "{same:?}");
        let new = r##"{"type":"object","properties":{"a":{"$ref":"other.json#/X"}}}"##;
        let found = run(Compatibility::Backward, SchemaType::Json, new, &[old]);
        assert_eq!(messages(&found), [r##"field a: cannot resolve $ref "#/definitions/Nope" of the older schema"##]);
    }

    #[test]
    fn compatibility_display_and_parse() {
        for mode in MODES {
            let text = mode.to_string();
            assert_eq!(text.parse::<Compatibility>(), Ok(mode));
            assert_eq!(text.to_lowercase().parse::<Compatibility>(), Ok(mode));
            let serde_name = serde_json::to_string(&mode).map_err(|e| e.to_string());
            assert_eq!(serde_name, Ok(format!("\"{text}\"")));
        }
        assert_eq!(Compatibility::BackwardTransitive.to_string(), "BACKWARD_TRANSITIVE");
        assert_eq!(" full-transitive ".parse::<Compatibility>(), Ok(Compatibility::FullTransitive));
        let err = "sideways".parse::<Compatibility>();
        assert!(err.as_ref().is_err_and(|e| e.contains("'sideways'") && e.contains("FULL_TRANSITIVE")), "{err:?}");
    }
}
