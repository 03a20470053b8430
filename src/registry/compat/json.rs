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
            "properties" | "patternProperties" | "definitions" | "$defs" | "dependentSchemas" => schemas_in_object(v)?,
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
            ("array", &["items", "prefixItems", "additionalItems", "minItems", "maxItems", "uniqueItems", "contains"]),
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
            let candidates = std::iter::once(siblings).filter(|s| !s.is_trivial()).chain(members.iter().map(S::new));
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
            effective.as_ref().is_none_or(|types| types.iter().any(|x| *x == t || (t == "number" && *x == "integer")))
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
            let implied =
                wb.is_some_and(|(wv, we)| (if lower { wv > rb.0 } else { wv < rb.0 }) || (wv == rb.0 && (we || !rb.1)));
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
                    let above =
                        bound(&r, "maximum", "exclusiveMaximum", false).is_some_and(|(v, e)| x > v || (e && x == v));
                    let not_multiple = r.num("multipleOf").is_some_and(|m| ((x / m) - (x / m).round()).abs() > 1e-9);
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
                (None, Extra::Schema(additional)) => out.extend(self.sub(S::new(additional), S::new(reader_prop), &p)),
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
