//! Checks of native sink settings that the JSON Schema cannot express, each at the setting.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::CompiledProject;
use crate::diagnostics::Diagnostic;
use crate::project::config::SinkConnector;

/// One diagnostic per file sink with an empty directory or a directory another sink writes.
pub(crate) fn check(cp: &CompiledProject) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut dirs: BTreeMap<PathBuf, &str> = BTreeMap::new();
    for s in &cp.project.sinks {
        let SinkConnector::File { path, .. } = &s.sink.connector else { continue };
        let pointer = format!("{}/connector/path", s.origin.pointer);
        let len = path.chars().count().max(1);
        if path.trim().is_empty() {
            out.push(
                s.origin
                    .doc
                    .error_at(
                        "sink-config",
                        &pointer,
                        false,
                        len,
                        format!("file sink `{}`: `path` is empty", s.sink.name),
                    )
                    .with_help("name the directory the files go to, relative to the project directory"),
            );
            continue;
        }
        // Two sinks in one directory would take each other's part files for their own.
        let dir: PathBuf =
            std::path::Path::new(path).components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect();
        if let Some(other) = dirs.get(&dir) {
            out.push(
                s.origin
                    .doc
                    .error_at(
                        "sink-config",
                        &pointer,
                        false,
                        len,
                        format!("file sink `{}` writes to `{path}`, the directory of sink `{other}`", s.sink.name),
                    )
                    .with_help("give each file sink a directory of its own"),
            );
        } else {
            dirs.insert(dir, &s.sink.name);
        }
    }
    out
}
