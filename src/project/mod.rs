//! Loading a project directory: `streamctl_project.yml`, sources, models, model properties,
//! sinks and macros. Every YAML file is checked against its JSON Schema first, so a typo is
//! reported at its line and column, and loading goes on through all files to report everything.

pub(crate) mod compatibility;
pub mod config;
pub mod connectors;
pub mod edit;
pub mod schemas;
pub mod target;
pub(crate) mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::diagnostics::{pos_of, suggest, Diagnostic, Diagnostics, Pos, SourceText};
use config::{
    ModelProperties, ModelPropertiesFile, ProjectFile, SinkDef, SinksFile, SourceTable, SourcesFile, TestsFile,
    UnitTest,
};
use connectors::{ConnectorDef, ConnectorsFile};
use schemas::FileKind;
use yaml::PositionIndex;

pub const PROJECT_FILE: &str = "streamctl_project.yml";

/// A YAML file with the position of each node, for pointing diagnostics at it.
#[derive(Debug, Clone)]
pub struct YamlDoc {
    pub source: SourceText,
    pub positions: PositionIndex,
}

impl YamlDoc {
    /// A diagnostic at the value (or, with `key`, the key) of a JSON pointer.
    pub fn error_at(
        &self,
        code: &'static str,
        pointer: &str,
        key: bool,
        len: usize,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (line, column) = if key { self.positions.key(pointer) } else { self.positions.value(pointer) };
        Diagnostic::error(code, message).at(&self.source, Pos::new(line, column, len))
    }
}

/// Where a declaration sits: its file and JSON pointer.
#[derive(Debug, Clone)]
pub struct Origin {
    pub doc: Arc<YamlDoc>,
    pub pointer: String,
}

impl Origin {
    pub fn error(&self, code: &'static str, field: &str, message: impl Into<String>) -> Diagnostic {
        let pointer = if field.is_empty() { self.pointer.clone() } else { format!("{}/{field}", self.pointer) };
        self.doc.error_at(code, &pointer, false, 1, message)
    }
}

/// One source table (topic), with its group.
#[derive(Debug, Clone)]
pub struct SourceDecl {
    pub group: String,
    pub group_tags: Vec<String>,
    pub table: SourceTable,
    pub origin: Origin,
}

impl SourceDecl {
    /// `group.table`, the name used in selection and in the graph.
    pub fn full_name(&self) -> String {
        format!("{}.{}", self.group, self.table.name)
    }
}

/// A model's SQL file.
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub name: String,
    pub source: SourceText,
}

#[derive(Debug, Clone)]
pub struct ModelPropsDecl {
    pub props: ModelProperties,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct UnitTestDecl {
    pub test: UnitTest,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct SinkDecl {
    pub sink: SinkDef,
    pub origin: Origin,
}

/// A Kafka Connect connector of `connectors/*.yml`.
#[derive(Debug, Clone)]
pub struct ConnectorDecl {
    pub connector: ConnectorDef,
    pub origin: Origin,
}

/// A loaded project. `load` returns it together with every problem found while loading; later
/// stages work with whatever did load.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub config: ProjectFile,
    pub config_doc: Arc<YamlDoc>,
    pub sources: Vec<SourceDecl>,
    pub models: Vec<ModelFile>,
    pub model_props: BTreeMap<String, ModelPropsDecl>,
    pub sinks: Vec<SinkDecl>,
    pub connectors: Vec<ConnectorDecl>,
    pub macro_files: Vec<SourceText>,
    /// Source files that failed to load: references to their tables are not reported again.
    pub broken_source_files: usize,
    pub unit_tests: Vec<UnitTestDecl>,
}

fn rel(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root).unwrap_or(path).to_path_buf()
}

/// Files under `dir` (recursively) with one of the extensions, sorted, hidden ones skipped.
fn files_with_ext(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().and_then(|x| x.to_str()).is_some_and(|x| exts.contains(&x)) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Reads a project file as text. A UTF-8 byte-order mark (which some Windows editors write) is
/// dropped, or it would become part of the first YAML key or SQL word; a byte that is not
/// UTF-8 is reported at its line and column.
pub fn read_source(root: &Path, path: &Path, diags: &mut Diagnostics) -> Option<SourceText> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            diags.push(Diagnostic::error("io", format!("cannot read file: {e}")).at_path(&rel(root, path)));
            return None;
        }
    };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF".as_slice()).unwrap_or(&bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(SourceText::new(rel(root, path), text)),
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            // The valid prefix is text: show the line up to the bad byte.
            let source = SourceText::new(rel(root, path), String::from_utf8_lossy(bytes).into_owned());
            let (line, column) = pos_of(&source.text, std::str::from_utf8(valid).map_or(0, str::len));
            let bad = bytes.get(e.valid_up_to()).copied().unwrap_or_default();
            diags.push(
                Diagnostic::error(
                    "encoding",
                    format!("byte 0x{bad:02X} is not UTF-8: project files must be UTF-8 text"),
                )
                .at(&source, Pos::new(line, column, 1))
                .with_help("save the file as UTF-8 (a Latin-1 `é` or `ü` is a single byte like this one)"),
            );
            None
        }
    }
}

/// Parses and validates one YAML file of a known kind.
pub fn load_yaml<T: DeserializeOwned>(
    kind: FileKind,
    source: SourceText,
    diags: &mut Diagnostics,
) -> Option<(T, Arc<YamlDoc>)> {
    let (value, positions) = match yaml::parse(&source.text) {
        Ok(v) => v,
        Err(e) => {
            diags.push(
                Diagnostic::error("yaml-syntax", format!("invalid YAML: {}", e.message))
                    .at(&source, Pos::new(e.line, e.column, 1)),
            );
            return None;
        }
    };
    let problems = schemas::validate(kind, &value, &positions, &source);
    let doc = Arc::new(YamlDoc { source, positions });
    if !problems.is_empty() {
        diags.extend(problems);
        return None;
    }
    match serde_json::from_value::<T>(value) {
        Ok(v) => Some((v, doc)),
        Err(e) => {
            diags.push(Diagnostic::error("yaml-schema", e.to_string()).in_file(&doc.source));
            None
        }
    }
}

impl Project {
    /// Loads the project at `root`; problems go to `diags`. `None` only when there is no usable
    /// `streamctl_project.yml` (that problem is in `diags` too).
    pub fn load(root: &Path, diags: &mut Diagnostics) -> Option<Project> {
        let project_path = root.join(PROJECT_FILE);
        if !project_path.is_file() {
            diags.push(
                Diagnostic::error("no-project", format!("no {PROJECT_FILE} in {}", root.display()))
                    .with_help("pass --project-dir, or create a project with `streamctl init NAME`"),
            );
            return None;
        }
        let source = read_source(root, &project_path, diags)?;
        let (config, config_doc) = load_yaml::<ProjectFile>(FileKind::Project, source, diags)?;

        let mut project = Project {
            root: root.to_path_buf(),
            config,
            config_doc,
            sources: Vec::new(),
            models: Vec::new(),
            model_props: BTreeMap::new(),
            sinks: Vec::new(),
            connectors: Vec::new(),
            macro_files: Vec::new(),
            broken_source_files: 0,
            unit_tests: Vec::new(),
        };
        diags.extend(project.check_default_target());
        project.load_sources(diags);
        project.load_models(diags);
        project.load_sinks(diags);
        project.load_connectors(diags);
        project.load_tests(diags);
        for dir in project.config.paths.macros.clone() {
            for path in files_with_ext(&root.join(dir), &["sql", "jinja"]) {
                if let Some(src) = read_source(root, &path, diags) {
                    project.macro_files.push(src);
                }
            }
        }
        Some(project)
    }

    /// Every file the project was loaded from that defines what runs (not tests or sample
    /// data), by path relative to the root: what `apply` deploys.
    pub fn definition_files(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut put = |s: &SourceText| {
            out.insert(s.path.display().to_string().replace('\\', "/"), s.text.as_ref().clone());
        };
        put(&self.config_doc.source);
        self.sources.iter().for_each(|d| put(&d.origin.doc.source));
        self.models.iter().for_each(|m| put(&m.source));
        self.model_props.values().for_each(|p| put(&p.origin.doc.source));
        self.sinks.iter().for_each(|d| put(&d.origin.doc.source));
        self.connectors.iter().for_each(|d| put(&d.origin.doc.source));
        self.macro_files.iter().for_each(&mut put);
        // The schema files sources take their columns from: a deployed generation is compiled
        // from these files alone (`streamctl run` following the cluster's generations).
        for file in self.sources.iter().filter_map(|d| d.table.schema.as_ref()?.file.as_deref()) {
            let rel = file.replace('\\', "/");
            if rel.split('/').any(|c| c == "..") || rel.starts_with('/') {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(self.root.join(&rel)) {
                out.insert(rel.trim_start_matches("./").to_string(), text);
            }
        }
        out
    }

    fn yaml_files(&self, dirs: &[String]) -> Vec<PathBuf> {
        dirs.iter().flat_map(|d| files_with_ext(&self.root.join(d), &["yml", "yaml"])).collect()
    }

    fn load_sources(&mut self, diags: &mut Diagnostics) {
        let mut seen: BTreeMap<String, Origin> = BTreeMap::new();
        for path in self.yaml_files(&self.config.paths.sources.clone()) {
            let Some(src) = read_source(&self.root, &path, diags) else { continue };
            let Some((file, doc)) = load_yaml::<SourcesFile>(FileKind::Sources, src, diags) else {
                self.broken_source_files += 1;
                continue;
            };
            for (gi, group) in file.sources.into_iter().enumerate() {
                for (ti, table) in group.tables.into_iter().enumerate() {
                    let origin = Origin { doc: doc.clone(), pointer: format!("/sources/{gi}/tables/{ti}") };
                    let decl = SourceDecl { group: group.name.clone(), group_tags: group.tags.clone(), table, origin };
                    let full = decl.full_name();
                    if let Some(first) = seen.get(&full) {
                        diags.push(
                            decl.origin
                                .error("duplicate", "name", format!("source `{full}` is defined twice"))
                                .with_help(format!("first defined in {}", location_of(first))),
                        );
                        continue;
                    }
                    seen.insert(full, decl.origin.clone());
                    self.sources.push(decl);
                }
            }
        }
    }

    fn load_models(&mut self, diags: &mut Diagnostics) {
        let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
        let model_dirs = self.config.paths.models.clone();
        for dir in &model_dirs {
            for path in files_with_ext(&self.root.join(dir), &["sql"]) {
                let Some(src) = read_source(&self.root, &path, diags) else { continue };
                let name = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
                if let Some(first) = by_name.get(&name) {
                    diags.push(
                        Diagnostic::error("duplicate", format!("model `{name}` is defined twice"))
                            .in_file(&src)
                            .with_help(format!(
                                "first defined in {}; model names come from file names and must be unique",
                                first.display()
                            )),
                    );
                    continue;
                }
                by_name.insert(name.clone(), src.path.clone());
                self.models.push(ModelFile { name, source: src });
            }
        }
        for path in self.yaml_files(&model_dirs) {
            let Some(src) = read_source(&self.root, &path, diags) else { continue };
            let Some((file, doc)) = load_yaml::<ModelPropertiesFile>(FileKind::Models, src, diags) else { continue };
            for (i, props) in file.models.into_iter().enumerate() {
                let origin = Origin { doc: doc.clone(), pointer: format!("/models/{i}") };
                if !by_name.contains_key(&props.name) {
                    let mut d = origin.error(
                        "unknown-model",
                        "name",
                        format!("properties given for model `{}`, which has no .sql file", props.name),
                    );
                    if let Some(s) = suggest(&props.name, by_name.keys().map(String::as_str)) {
                        d = d.with_help(format!("did you mean `{s}`?"));
                    }
                    diags.push(d);
                    continue;
                }
                if let Some(first) = self.model_props.get(&props.name) {
                    diags.push(
                        origin
                            .error("duplicate", "name", format!("properties of model `{}` are given twice", props.name))
                            .with_help(format!("first given in {}", location_of(&first.origin))),
                    );
                    continue;
                }
                self.model_props.insert(props.name.clone(), ModelPropsDecl { props, origin });
            }
        }
    }

    fn load_sinks(&mut self, diags: &mut Diagnostics) {
        let mut seen: BTreeMap<String, Origin> = BTreeMap::new();
        for path in self.yaml_files(&self.config.paths.sinks.clone()) {
            let Some(src) = read_source(&self.root, &path, diags) else { continue };
            let Some((file, doc)) = load_yaml::<SinksFile>(FileKind::Sinks, src, diags) else { continue };
            for (i, sink) in file.sinks.into_iter().enumerate() {
                let origin = Origin { doc: doc.clone(), pointer: format!("/sinks/{i}") };
                if let Some(first) = seen.get(&sink.name) {
                    diags.push(
                        origin
                            .error("duplicate", "name", format!("sink `{}` is defined twice", sink.name))
                            .with_help(format!("first defined in {}", location_of(first))),
                    );
                    continue;
                }
                seen.insert(sink.name.clone(), origin.clone());
                self.sinks.push(SinkDecl { sink, origin });
            }
        }
    }

    fn load_connectors(&mut self, diags: &mut Diagnostics) {
        let mut seen: BTreeMap<String, Origin> = BTreeMap::new();
        for path in self.yaml_files(&self.config.paths.connectors.clone()) {
            let Some(src) = read_source(&self.root, &path, diags) else { continue };
            let Some((file, doc)) = load_yaml::<ConnectorsFile>(FileKind::Connectors, src, diags) else { continue };
            for (i, connector) in file.connectors.into_iter().enumerate() {
                let origin = Origin { doc: doc.clone(), pointer: format!("/connectors/{i}") };
                if let Some(first) = seen.get(&connector.name) {
                    diags.push(
                        origin
                            .error("duplicate", "name", format!("connector `{}` is defined twice", connector.name))
                            .with_help(format!("first defined in {}", location_of(first))),
                    );
                    continue;
                }
                seen.insert(connector.name.clone(), origin.clone());
                self.connectors.push(ConnectorDecl { connector, origin });
            }
        }
    }

    fn load_tests(&mut self, diags: &mut Diagnostics) {
        let mut seen: BTreeMap<(String, String), Origin> = BTreeMap::new();
        for path in self.yaml_files(&self.config.paths.tests.clone()) {
            let Some(src) = read_source(&self.root, &path, diags) else { continue };
            let Some((file, doc)) = load_yaml::<TestsFile>(FileKind::Tests, src, diags) else { continue };
            for (i, test) in file.unit_tests.into_iter().enumerate() {
                let origin = Origin { doc: doc.clone(), pointer: format!("/unit_tests/{i}") };
                let id = (test.model.clone(), test.name.clone());
                if let Some(first) = seen.get(&id) {
                    diags.push(
                        origin
                            .error(
                                "duplicate",
                                "name",
                                format!("test `{}` of model `{}` is defined twice", test.name, test.model),
                            )
                            .with_help(format!("first defined in {}", location_of(first))),
                    );
                    continue;
                }
                seen.insert(id, origin.clone());
                self.unit_tests.push(UnitTestDecl { test, origin });
            }
        }
    }

    pub fn source(&self, group: &str, table: &str) -> Option<&SourceDecl> {
        self.sources.iter().find(|s| s.group == group && s.table.name == table)
    }
}

/// `file:line:col` of a declaration.
pub fn location_of(origin: &Origin) -> String {
    let (line, col) = origin.doc.positions.value(&origin.pointer);
    format!("{}:{line}:{col}", origin.doc.source.path.display())
}
