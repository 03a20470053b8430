//! Jinja rendering of models (minijinja), dbt style: `ref`, `source`, `var`, `env_var`,
//! `config`, and macros from `macros/*.sql` callable by name from every model.
//!
//! Each render records what the template asked for (refs, sources, config) instead of failing
//! on the first unknown name, so the graph stage can report every problem with its position.
//! Rendering also returns a [`SourceMap`] from the rendered SQL back to the `.sql` file, which
//! is how SQL errors found by DataFusion in the rendered text are shown at the user's line.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use minijinja::value::{Kwargs, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, OutputSpanKind, UndefinedBehavior};

use crate::diagnostics::{pos_of, Diagnostic, Pos, SourceText};

/// What one model's template asked for while rendering.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    /// `ref('x')` calls, in order, with the byte offset of the call in the model file.
    pub refs: Vec<(String, Option<usize>)>,
    /// `source('group', 'table')` calls.
    pub sources: Vec<((String, String), Option<usize>)>,
    /// Keyword arguments of `config(...)`, as JSON.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Byte offset of the `config(...)` call.
    pub config_offset: Option<usize>,
    /// Byte offset of each `config()` keyword argument (`key=`) in the model file.
    pub config_keys: BTreeMap<String, usize>,
}

/// A rendered model.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub sql: String,
    pub captured: Captured,
    pub map: SourceMap,
}

/// Maps byte offsets of rendered output to byte offsets of the template source.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    /// (output range, source range, verbatim) in output order.
    spans: Vec<(std::ops::Range<usize>, std::ops::Range<usize>, bool)>,
}

impl SourceMap {
    /// The source offset that produced `out`: exact inside verbatim template text, the start of
    /// the `{{ expression }}` for expression output.
    pub fn source_offset(&self, out: usize) -> usize {
        let i = self.spans.partition_point(|(o, _, _)| o.end <= out);
        match self.spans.get(i) {
            Some((o, s, true)) if o.start <= out => s.start + (out - o.start).min(s.len()),
            Some((o, s, false)) if o.start <= out => s.start,
            _ => self.spans.last().map(|(_, s, _)| s.end).unwrap_or(0),
        }
    }

    /// Whether the output at `out` was written verbatim from the template.
    pub fn is_verbatim(&self, out: usize) -> bool {
        let i = self.spans.partition_point(|(o, _, _)| o.end <= out);
        matches!(self.spans.get(i), Some((o, _, true)) if o.start <= out)
    }
}

#[derive(Default)]
struct Recorder {
    captured: Captured,
    /// The model being rendered: lets `ref()` find its own call site.
    source: Option<String>,
}

/// The Jinja environment of a project.
pub struct Jinja {
    env: Environment<'static>,
    recorder: Arc<Mutex<Recorder>>,
    /// `{% from "macros/x.sql" import a, b %}` for every macro file, put in front of each model
    /// (on its first line, so line numbers do not move): macros callable by name, dbt style.
    imports: String,
    /// The macro files by template name, to show an error inside a macro where it is.
    macro_files: BTreeMap<String, SourceText>,
}

fn lock(r: &Arc<Mutex<Recorder>>) -> std::sync::MutexGuard<'_, Recorder> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

/// Quotes an identifier for SQL when it is not a plain lowercase name.
pub fn sql_ident(name: &str) -> String {
    let plain = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Finds `func(` followed by the given quoted arguments in a template, for call positions.
/// Byte offset of `key=` inside the first `func(...)` call that passes it.
fn find_keyword_arg(source: &str, func: &str, key: &str) -> Option<usize> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut from = 0;
    while let Some(i) = source[from..].find(func) {
        let start = from + i;
        from = start + func.len();
        if source[..start].ends_with(is_word) || !source[from..].trim_start().starts_with('(') {
            continue;
        }
        let call = &source[from..];
        let call = &call[..call.find(')').unwrap_or(call.len())];
        let mut at = 0;
        while let Some(j) = call[at..].find(key) {
            let k = at + j;
            at = k + key.len();
            if !call[..k].ends_with(is_word) && call[at..].trim_start().starts_with('=') {
                return Some(from + k);
            }
        }
    }
    None
}

fn find_call(source: &str, func: &str, args: &[&str]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = source[from..].find(func) {
        let start = from + i;
        from = start + func.len();
        let before_ok = start == 0 || !source[..start].ends_with(|c: char| c.is_alphanumeric() || c == '_');
        let rest = source[from..].trim_start();
        if !before_ok || !rest.starts_with('(') {
            continue;
        }
        let mut rest = rest[1..].trim_start();
        let mut all = true;
        for (n, arg) in args.iter().enumerate() {
            let quoted = [format!("'{arg}'"), format!("\"{arg}\"")];
            match quoted.iter().find(|q| rest.starts_with(q.as_str())) {
                Some(q) => rest = rest[q.len()..].trim_start(),
                None => {
                    all = false;
                    break;
                }
            }
            if n + 1 < args.len() {
                match rest.strip_prefix(',') {
                    Some(r) => rest = r.trim_start(),
                    None => {
                        all = false;
                        break;
                    }
                }
            }
        }
        if all {
            // Point at the first argument: that is the name the user has to fix.
            let call_args = source[start..].find('(').map(|p| start + p + 1).unwrap_or(start);
            let skipped = source[call_args..].len() - source[call_args..].trim_start().len();
            return Some(call_args + skipped);
        }
    }
    None
}

/// The work one render may do: about this many instructions, or 64 bytes of created text per
/// unit (so at most ~64 MB).
pub const RENDER_FUEL: u64 = 1_000_000;

impl Jinja {
    /// `vars` are the project's `vars:`; `macros` are (name, source) of macro files.
    pub fn new(vars: BTreeMap<String, serde_json::Value>) -> Jinja {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // A model renders to a few kilobytes with a few hundred steps; nested loops or string
        // repetition must stop with an error instead of running for minutes into gigabytes.
        env.set_fuel(Some(RENDER_FUEL));
        env.set_auto_escape_callback(|_| AutoEscape::None);
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder().keep_trailing_newline(true).build() {
            env.set_syntax(syntax);
        }
        let recorder = Arc::new(Mutex::new(Recorder::default()));

        let r = recorder.clone();
        env.add_function("ref", move |name: String| -> Result<String, Error> {
            let mut rec = lock(&r);
            let at = rec.source.as_deref().and_then(|s| find_call(s, "ref", &[&name]));
            rec.captured.refs.push((name.clone(), at));
            Ok(sql_ident(&name))
        });
        let r = recorder.clone();
        env.add_function("source", move |group: String, table: String| -> Result<String, Error> {
            let mut rec = lock(&r);
            let at = rec.source.as_deref().and_then(|s| find_call(s, "source", &[&group, &table]));
            rec.captured.sources.push(((group.clone(), table.clone()), at));
            Ok(format!("{}.{}", sql_ident(&group), sql_ident(&table)))
        });
        let r = recorder.clone();
        env.add_function("config", move |kwargs: Kwargs| -> Result<String, Error> {
            let mut rec = lock(&r);
            for key in kwargs.args() {
                let v: Value = kwargs.get(key)?;
                let json = serde_json::to_value(&v)
                    .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("config({key}=...): {e}")))?;
                rec.captured.config.insert(key.to_string(), json);
                if !rec.captured.config_keys.contains_key(key) {
                    if let Some(at) = rec.source.as_deref().and_then(|s| find_keyword_arg(s, "config", key)) {
                        rec.captured.config_keys.insert(key.to_string(), at);
                    }
                }
            }
            if rec.captured.config_offset.is_none() {
                rec.captured.config_offset = rec.source.as_deref().and_then(|s| s.find("config"));
            }
            Ok(String::new())
        });
        let vars = Arc::new(vars);
        env.add_function("var", move |name: String, default: Option<Value>| -> Result<Value, Error> {
            match (vars.get(&name), default) {
                (Some(v), _) => Ok(Value::from(minijinja::value::Serde(v))),
                (None, Some(d)) => Ok(d),
                (None, None) => Err(Error::new(
                    ErrorKind::UndefinedError,
                    format!("var('{name}') is not set in streamctl_project.yml `vars:` and has no default"),
                )),
            }
        });
        env.add_function("env_var", |name: String, default: Option<String>| -> Result<String, Error> {
            match (std::env::var(&name), default) {
                (Ok(v), _) => Ok(v),
                (Err(_), Some(d)) => Ok(d),
                (Err(_), None) => Err(Error::new(
                    ErrorKind::UndefinedError,
                    format!("environment variable `{name}` is not set and env_var() has no default"),
                )),
            }
        });
        Jinja { env, recorder, imports: String::new(), macro_files: BTreeMap::new() }
    }

    /// Loads macro files and makes every macro they define callable by name from any model.
    pub fn add_macro_files(&mut self, files: &[SourceText]) -> Vec<Diagnostic> {
        let mut diags = Vec::new();
        let mut defined: BTreeMap<String, String> = BTreeMap::new();
        for file in files {
            let name = file.path.display().to_string().replace('\\', "/");
            self.macro_files.insert(name.clone(), file.clone());
            if let Err(e) = self.env.add_template_owned(name.clone(), file.text.as_str().to_owned()) {
                diags.push(jinja_diagnostic(&e, file, 0));
                continue;
            }
            let Ok(tmpl) = self.env.get_template(&name) else { continue };
            let exports: Vec<String> = match tmpl.render_captured(()) {
                Ok(captured) => captured.state().exports().iter().map(|s| s.to_string()).collect(),
                Err(e) => {
                    diags.push(jinja_diagnostic(&e, file, 0));
                    continue;
                }
            };
            let mut mine = Vec::new();
            for export in exports {
                if let Some(first) = defined.get(&export) {
                    diags.push(
                        Diagnostic::error("duplicate", format!("macro `{export}` is defined twice"))
                            .in_file(file)
                            .with_help(format!("first defined in {first}")),
                    );
                    continue;
                }
                defined.insert(export.clone(), name.clone());
                mine.push(export);
            }
            if !mine.is_empty() {
                self.imports.push_str(&format!("{{% from \"{name}\" import {} %}}", mine.join(", ")));
            }
        }
        diags
    }

    /// Renders one model file.
    pub fn render(&self, file: &SourceText) -> Result<Rendered, Diagnostic> {
        {
            let mut rec = lock(&self.recorder);
            rec.captured = Captured::default();
            rec.source = Some(file.text.as_str().to_owned());
        }
        let shift = self.imports.len();
        let text = format!("{}{}", self.imports, file.text);
        let result = self
            .env
            .template_from_named_str(&file.path.display().to_string(), &text)
            .and_then(|t| t.render_with_spans(()));
        let captured = std::mem::take(&mut lock(&self.recorder).captured);
        let (sql, spans) = result.map_err(|e| self.render_diagnostic(&e, file, shift))?;
        let map = SourceMap {
            spans: spans
                .iter()
                .map(|s| {
                    let r = s.source_range();
                    (
                        s.output_range(),
                        r.start.saturating_sub(shift)..r.end.saturating_sub(shift),
                        s.kind() == OutputSpanKind::Raw,
                    )
                })
                .collect(),
        };
        Ok(Rendered { sql, captured, map })
    }

    /// A render error of `file`; an error inside a macro is shown in the macro file, with the
    /// model that called it.
    fn render_diagnostic(&self, e: &Error, file: &SourceText, shift: usize) -> Diagnostic {
        match e.name().and_then(|n| self.macro_files.get(n)) {
            Some(macro_file) if e.name() != Some(&file.path.display().to_string()) => {
                let mut d = jinja_diagnostic(e, macro_file, 0);
                d.message = format!("{} (in a macro called from {})", d.message, file.path.display());
                if e.kind() == ErrorKind::UndefinedError {
                    d = d.with_help(
                        "a macro parameter the call does not pass is undefined too: check the call's arguments",
                    );
                }
                d
            }
            _ => jinja_diagnostic(e, file, shift),
        }
    }

    /// Renders a YAML string value (target settings), for `{{ env_var('X') }}`.
    pub fn render_str(&self, text: &str) -> Result<String, Error> {
        if !text.contains("{{") && !text.contains("{%") {
            return Ok(text.to_string());
        }
        self.env.render_str(text, ())
    }
}

/// A Jinja error as a diagnostic at its position in the template; `shift` is the length of the
/// text put in front of the file before rendering.
pub fn jinja_diagnostic(e: &Error, file: &SourceText, shift: usize) -> Diagnostic {
    let message = match e.detail() {
        Some(d) => format!("{}: {d}", kind_text(e.kind())),
        None => kind_text(e.kind()).to_string(),
    };
    let mut d = Diagnostic::error("jinja", message);
    // An error inside a macro file is reported there.
    let in_this_file = e.name().is_none_or(|n| n == file.path.display().to_string());
    if !in_this_file {
        d.message = format!("{} (in {})", d.message, e.name().unwrap_or_default());
    }
    match (e.range(), e.line()) {
        (Some(r), _) if in_this_file => {
            let r =
                r.start.saturating_sub(shift).min(file.text.len())..r.end.saturating_sub(shift).min(file.text.len());
            let (line, column) = pos_of(&file.text, r.start);
            let len = file.text.get(r.clone()).map_or(1, |t| t.chars().count().max(1));
            if e.kind() == ErrorKind::UndefinedError && e.detail().is_none() {
                if let Some(what) = file.text.get(r.clone()).filter(|t| !t.is_empty() && !t.contains('\n')) {
                    d.message = format!("`{what}` is undefined");
                }
            }
            d.at(file, Pos::new(line, column, len))
        }
        (None, Some(line)) if in_this_file => d.at(file, Pos::new(line, 1, 1)),
        _ => d.in_file(file),
    }
}

fn kind_text(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::SyntaxError => "Jinja syntax error",
        ErrorKind::UndefinedError => "undefined value in Jinja",
        ErrorKind::UnknownFunction => "unknown Jinja function",
        ErrorKind::UnknownFilter => "unknown Jinja filter",
        ErrorKind::UnknownTest => "unknown Jinja test",
        ErrorKind::MissingArgument => "missing argument in Jinja call",
        ErrorKind::TooManyArguments => "too many arguments in Jinja call",
        ErrorKind::InvalidOperation => "invalid Jinja operation",
        ErrorKind::BadSerialization => "value cannot be used in Jinja",
        ErrorKind::OutOfFuel => {
            "the template does too much work (over a million steps, or about 64 MB of text: a loop or a string \
             repetition that runs away?)"
        }
        _ => "Jinja error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> SourceText {
        SourceText::new("models/m.sql", text)
    }

    #[test]
    fn records_refs_sources_and_config() {
        let j = Jinja::new(BTreeMap::from([("n".to_string(), serde_json::json!(5))]));
        let f = file("{{ config(materialized='table', partitions=3) }}\nSELECT * FROM {{ ref('up') }} JOIN {{ source('soe', 'Orders') }} WHERE x > {{ var('n') }}");
        let r = j.render(&f).unwrap();
        assert_eq!(r.sql, "\nSELECT * FROM up JOIN soe.\"Orders\" WHERE x > 5");
        assert_eq!(r.captured.refs[0].0, "up");
        assert_eq!(r.captured.refs[0].1, Some(f.text.find("'up'").unwrap()));
        assert_eq!(r.captured.sources[0].0, ("soe".to_string(), "Orders".to_string()));
        assert_eq!(r.captured.config["materialized"], serde_json::json!("table"));
        assert_eq!(r.captured.config["partitions"], serde_json::json!(3));
        // `WHERE` in the output maps back to `WHERE` in the source.
        let out = r.sql.find("WHERE").unwrap();
        assert_eq!(r.map.source_offset(out), f.text.find("WHERE").unwrap());
        // The expanded ref maps to its expression.
        let out = r.sql.find("up").unwrap();
        assert_eq!(&f.text[r.map.source_offset(out)..][..9], "ref('up')");
    }

    #[test]
    fn macros_are_global() {
        let mut j = Jinja::new(BTreeMap::new());
        let diags = j
            .add_macro_files(&[SourceText::new("macros/m.sql", "{% macro cents(x) %}({{ x }} / 100.0){% endmacro %}")]);
        assert!(diags.is_empty(), "{diags:?}");
        let r = j.render(&file("SELECT {{ cents('amount') }} FROM t")).unwrap();
        assert_eq!(r.sql, "SELECT (amount / 100.0) FROM t");
    }

    #[test]
    fn runaway_templates_stop_with_an_error_naming_the_file() {
        let j = Jinja::new(BTreeMap::new());
        let started = std::time::Instant::now();
        for text in [
            "SELECT 1 {% for a in range(100000) %}{% for b in range(100000) %} {% endfor %}{% endfor %}",
            "SELECT '{{ 'x' * 99999999 }}{{ 'y' * 99999999 }}'",
            "{% set ns = namespace(s='x') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        ] {
            let e = j.render(&file(text)).unwrap_err();
            assert_eq!(e.file.as_deref(), Some(std::path::Path::new("models/m.sql")));
            assert!(e.message.starts_with("the template does too much work"), "{}", e.message);
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    }

    #[test]
    fn errors_have_positions() {
        let j = Jinja::new(BTreeMap::new());
        let e = j.render(&file("SELECT 1\nFROM {{ ref('a') }\n")).unwrap_err();
        assert_eq!(e.code, "jinja");
        assert_eq!(e.pos.map(|p| p.line), Some(2));
        let e = j.render(&file("SELECT {{ var('missing') }}")).unwrap_err();
        assert!(e.message.contains("var('missing') is not set"), "{}", e.message);
    }
}
