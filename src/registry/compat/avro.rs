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
                    Some(symbols @ Value::Array(_)) => strings(Some(symbols), &format!("symbols of enum {fullname}"))?,
                    _ => return Err(format!("enum {fullname} has no \"symbols\" array")),
                };
                let default = match map.get("default") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(d)) if symbols.contains(d) => Some(d.clone()),
                    Some(other) => return Err(format!("enum {fullname}: default {other} is not one of its symbols")),
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
            && (r.name == w.name || r.aliases.iter().any(|a| *a == w.fullname || a.rsplit('.').next() == Some(&w.name)))
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
                        None => self
                            .out
                            .push(format!("field {field_path} was removed but the older schema has no default for it")),
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
