//! `streamctl source import`: the columns of a source's registered schema (the latest version
//! of its subject in the target's registry) written into the source's YAML, so that a reviewer
//! sees them and `validate` works offline.

use serde::Serialize;

use crate::compile::source_schema::{from_avro, from_column_defs, from_json_schema};
use crate::project::config::{ColumnDef, ValueFormat};
use crate::project::edit::set_entry;
use crate::project::target::ResolvedTarget;
use crate::project::{Project, SourceDecl};
use crate::registry::SchemaType;
use crate::sql::types::sql_type_name;

/// What an import found (and wrote, unless a dry run).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Imported {
    /// `group.table`.
    pub source: String,
    /// The YAML file, relative to the project directory.
    pub file: String,
    pub registry: String,
    pub subject: String,
    pub version: i32,
    pub schema_id: i32,
    pub columns: Vec<ImportedColumn>,
    /// Whether the file was written (false: `--dry-run`, or it already said the same).
    pub written: bool,
    /// The file's text after the import.
    #[serde(skip)]
    pub text: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ImportedColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

/// The line above the imported columns; a later import replaces it with the columns.
const MARKER: &str = "# columns of ";

fn find<'a>(project: &'a Project, name: &str) -> Result<&'a SourceDecl, String> {
    let hits: Vec<&SourceDecl> = project
        .sources
        .iter()
        .filter(|s| s.full_name().eq_ignore_ascii_case(name) || s.table.name.eq_ignore_ascii_case(name))
        .collect();
    match hits.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("no source `{name}` (give `group.table` or the table's name)")),
        many => Err(format!(
            "`{name}` names {} sources: {}",
            many.len(),
            many.iter().map(|s| s.full_name()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Reads the source's subject (`subject`, else its `schema: {subject}`, else `<topic>-value`)
/// from the target's registry and puts its columns into the source's YAML (`write`: on disk).
pub fn import(
    project: &Project,
    target: &ResolvedTarget,
    name: &str,
    subject: Option<&str>,
    write: bool,
) -> Result<Imported, String> {
    let decl = find(project, name)?;
    let t = &decl.table;
    if !matches!(t.format, ValueFormat::Avro | ValueFormat::Json) {
        return Err(format!(
            "source `{}` is `{}`: only `avro` and `json` sources import columns",
            decl.full_name(),
            t.format.name()
        ));
    }
    let subject = subject
        .map(String::from)
        .or_else(|| t.schema.as_ref().and_then(|s| s.subject.clone()))
        .unwrap_or_else(|| format!("{}-value", t.topic));
    let embedded = target.kind == crate::project::config::TargetKind::Embedded;
    let registry = crate::registry::open(
        target.schema_registry_url.as_deref(),
        &target.schema_registry_access,
        embedded,
        &project.root,
    )
    .map_err(|e| e.to_string())?
    .ok_or_else(|| format!("target `{}` has no schema registry (schema_registry_url)", target.name))?;
    let latest = registry
        .versions(&subject)
        .map_err(|e| e.to_string())?
        .pop()
        .ok_or_else(|| format!("subject `{subject}` is not in {}", registry.describe()))?;
    let parsed: serde_json::Value = serde_json::from_str(&latest.schema)
        .map_err(|e| format!("subject `{subject}` version {}: not JSON: {e}", latest.version))?;
    let resolved = match latest.schema_type {
        SchemaType::Avro => from_avro(&parsed),
        SchemaType::Json => from_json_schema(&parsed),
    }
    .map_err(|e| format!("subject `{subject}` version {}: {e}", latest.version))?;
    // Columns read from headers are not in the value's schema: they are kept, after the value's
    // (which give way to one of the same name).
    let from_headers: Vec<&ColumnDef> =
        t.columns.iter().filter(|c| c.headers == Some(true) || c.header.is_some()).collect();
    let defs: Vec<ColumnDef> = resolved
        .iter()
        .filter(|c| !from_headers.iter().any(|h| h.name.eq_ignore_ascii_case(&c.name)))
        .map(|c| ColumnDef {
            name: c.name.clone(),
            data_type: Some(sql_type_name(&c.data_type)),
            description: c.description.clone(),
            nullable: (!c.nullable).then_some(false),
            headers: None,
            header: None,
        })
        .collect();
    // What is written must read back as the same columns.
    let back = from_column_defs(&defs).map_err(|(i, e)| format!("column {}: {e}", defs[i].name))?;
    if defs.iter().zip(&back).any(|(d, c)| d.data_type.as_deref() != Some(sql_type_name(&c.data_type).as_str())) {
        return Err(format!("subject `{subject}` has a type streamctl cannot write as a column type"));
    }
    let block: Vec<String> = defs.iter().chain(from_headers.iter().copied()).map(flow_column).collect();
    let comment = format!(
        "{MARKER}{subject} version {} (id {}) in {}, by `streamctl source import`",
        latest.version,
        latest.id,
        registry.describe()
    );
    // A subject named under `schema:` is replaced by the columns it gave.
    let replaces: &[&str] = if t.schema.as_ref().is_some_and(|s| s.file.is_none()) { &["schema"] } else { &[] };
    let text = set_entry(&decl.origin.doc, &decl.origin.pointer, "columns", (&comment, MARKER), &block, replaces)
        .map_err(|e| format!("{}: {e}", decl.origin.doc.source.path.display()))?;
    let path = &decl.origin.doc.source.path;
    let on_disk = project.root.join(path);
    let changed = text != *decl.origin.doc.source.text;
    if write && changed {
        std::fs::write(&on_disk, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(Imported {
        source: decl.full_name(),
        file: path.display().to_string(),
        registry: registry.describe(),
        subject,
        version: latest.version,
        schema_id: latest.id,
        columns: defs
            .iter()
            .map(|d| ImportedColumn {
                name: d.name.clone(),
                data_type: d.data_type.clone().unwrap_or_default(),
                nullable: d.nullable != Some(false),
            })
            .collect(),
        written: write && changed,
        text,
    })
}

/// A column as one flow-style YAML mapping: `- {name: X, type: T, ...}`.
fn flow_column(d: &ColumnDef) -> String {
    let mut fields = vec![format!("name: {}", yaml_scalar(&d.name))];
    if let Some(t) = &d.data_type {
        fields.push(format!("type: {}", yaml_scalar(t)));
    }
    if let Some(n) = d.nullable {
        fields.push(format!("nullable: {n}"));
    }
    if let Some(h) = d.headers {
        fields.push(format!("headers: {h}"));
    }
    if let Some(h) = &d.header {
        fields.push(format!("header: {}", yaml_scalar(h)));
    }
    if let Some(doc) = &d.description {
        fields.push(format!("description: {}", yaml_scalar(doc)));
    }
    format!("- {{{}}}", fields.join(", "))
}

/// A flow-style YAML scalar: plain when safe, else double-quoted JSON.
fn yaml_scalar(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '(' | ')' | '.' | ' ' | '-'))
        && !s.starts_with([' ', '-'])
        && !s.ends_with(' ')
        && !matches!(s.to_ascii_lowercase().as_str(), "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~");
    if plain && s.parse::<f64>().is_err() {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

/// The registry `validate` and `compile` read a source's missing columns from: the target's
/// (a Confluent-API registry, or `file:DIR`; the embedded target's is `schemas/`). `None` when no
/// source needs one, the target does not resolve (validate says why) or has no registry (the
/// project's file registry is used then). `Err`: the target's registry cannot be opened.
pub fn columns_registry(
    project: &Project,
    overrides: &crate::project::target::TargetOverrides,
) -> Result<Option<std::sync::Arc<dyn crate::registry::SchemaRegistry>>, String> {
    let needed = project.sources.iter().any(|s| {
        let t = &s.table;
        t.schema.as_ref().is_some_and(|sr| sr.subject.is_some())
            || (t.schema.is_none() && t.columns.is_empty() && t.format == ValueFormat::Avro)
    });
    if !needed {
        return Ok(None);
    }
    let jinja = crate::jinja::Jinja::new(project.config.vars.clone());
    let Ok(target) = project.resolve_target(overrides, &jinja) else { return Ok(None) };
    let embedded = target.kind == crate::project::config::TargetKind::Embedded;
    let opened = crate::registry::open(
        target.schema_registry_url.as_deref(),
        &target.schema_registry_access,
        embedded,
        &project.root,
    );
    let opened = opened.map_err(|e| format!("cannot open the schema registry of target `{}`: {e}", target.name))?;
    Ok(opened.map(std::sync::Arc::from))
}
