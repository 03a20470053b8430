//! Checks of native sink settings that the JSON Schema cannot express, each at the setting.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::CompiledProject;
use crate::diagnostics::Diagnostic;
use crate::project::config::{FileFormat, SinkConnector, SinkOnError};
use crate::project::SinkDecl;

/// One diagnostic per file sink with an empty directory or a directory another sink writes, per
/// PostgreSQL sink without a connection or with a password written in the file, and per
/// OpenSearch sink with a URL that is not HTTP(S) or a password written in the file.
pub(crate) fn check(cp: &CompiledProject) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut dirs: BTreeMap<PathBuf, &str> = BTreeMap::new();
    for s in &cp.project.sinks {
        out.extend(super::sink_transforms::check(cp, s));
        out.extend(check_on_error(s));
        if let SinkConnector::Postgres { .. } = &s.sink.connector {
            out.extend(check_postgres(s));
            continue;
        }
        if let SinkConnector::Opensearch { .. } = &s.sink.connector {
            out.extend(check_opensearch(s));
            continue;
        }
        let SinkConnector::File { path, format, compression, .. } = &s.sink.connector else { continue };
        out.extend(check_file_format(s, *format, compression.is_some()));
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

/// Why `format: parquet` is refused by a streamctl built without the `parquet` feature.
#[cfg(not(feature = "parquet"))]
pub(crate) const NO_PARQUET: &str =
    "this streamctl was built without Parquet support (build it with `cargo build --features parquet`)";

/// `compression` on a JSON Lines sink; `format: parquet` in a streamctl built without Parquet.
fn check_file_format(s: &SinkDecl, format: FileFormat, compression: bool) -> Option<Diagnostic> {
    let name = &s.sink.name;
    if compression && format != FileFormat::Parquet {
        let pointer = format!("{}/connector/compression", s.origin.pointer);
        return Some(
            s.origin
                .doc
                .error_at(
                    "sink-config",
                    &pointer,
                    true,
                    "compression".len(),
                    format!("file sink `{name}`: `compression` applies to Parquet files, not JSON Lines"),
                )
                .with_help("add `format: parquet`, or remove `compression`"),
        );
    }
    #[cfg(not(feature = "parquet"))]
    if format == FileFormat::Parquet {
        let pointer = format!("{}/connector/format", s.origin.pointer);
        return Some(
            s.origin
                .doc
                .error_at(
                    "sink-config",
                    &pointer,
                    false,
                    "parquet".len(),
                    format!("file sink `{name}`: {}", NO_PARQUET),
                )
                .with_help("or write JSON Lines: `format: jsonl`"),
        );
    }
    None
}

/// A `dead_letter_topic` without `on_error: dead_letter`.
fn check_on_error(s: &SinkDecl) -> Option<Diagnostic> {
    let name = &s.sink.name;
    if let (Some(t), SinkOnError::Retry) = (&s.sink.dead_letter_topic, s.sink.on_error) {
        let pointer = format!("{}/dead_letter_topic", s.origin.pointer);
        return Some(
            s.origin
                .doc
                .error_at(
                    "sink-config",
                    &pointer,
                    false,
                    t.chars().count().max(1),
                    format!("sink `{name}`: `dead_letter_topic` is set but `on_error` is not `dead_letter`"),
                )
                .with_help("add `on_error: dead_letter`, or remove `dead_letter_topic`"),
        );
    }
    None
}

/// Whether a setting's text takes its secret from the environment (`{{ env_var('X') }}`).
fn from_env(text: &str) -> bool {
    text.contains("{{") && text.contains("env_var")
}

/// The password written in a connection URL (userinfo or `?password=`) or `key=value` string.
fn password_in_url(url: &str) -> Option<&str> {
    if let Some((_, rest)) = url.split_once("://") {
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        let userinfo = authority.rfind('@').map(|at| &authority[..at]);
        if let Some(p) = userinfo.and_then(|u| u.split_once(':')).map(|(_, p)| p).filter(|p| !p.is_empty()) {
            return Some(p);
        }
    }
    let rest = &url[url.find("password=")? + "password=".len()..];
    let end = if rest.starts_with("{{") {
        rest.find("}}").map_or(rest.len(), |i| i + 2)
    } else {
        rest.find(|c: char| c.is_whitespace() || c == '&').unwrap_or(rest.len())
    };
    Some(&rest[..end]).filter(|p| !p.is_empty())
}

fn check_postgres(s: &SinkDecl) -> Vec<Diagnostic> {
    let SinkConnector::Postgres { url, host, port, dbname, user, password, .. } = &s.sink.connector else {
        return Vec::new();
    };
    let name = &s.sink.name;
    let at = |field: &str, len: usize, message: String, help: &str| {
        let pointer = format!("{}/connector{field}", s.origin.pointer);
        s.origin.doc.error_at("sink-config", &pointer, field.is_empty(), len.max(1), message).with_help(help)
    };
    let mut out = Vec::new();
    let env_help = "write `password: \"{{ env_var('PGPASSWORD') }}\"` and set the variable where streamctl runs";
    if let Some(p) = password.as_deref().filter(|p| !from_env(p)) {
        out.push(at(
            "/password",
            p.chars().count(),
            format!("postgres sink `{name}`: a password is given only through env_var(), never in the file"),
            env_help,
        ));
    }
    if let Some(u) = url {
        if password_in_url(u).is_some_and(|p| !from_env(p)) {
            out.push(at(
                "/url",
                u.chars().count(),
                format!("postgres sink `{name}`: the url holds a password; it is given only through env_var()"),
                "leave the password out of the url and give it as `password: \"{{ env_var('PGPASSWORD') }}\"`, or \
                 make the whole url `{{ env_var('PG_URL') }}`",
            ));
        }
        let both = [
            ("host", host.is_some()),
            ("port", port.is_some()),
            ("dbname", dbname.is_some()),
            ("user", user.is_some()),
        ];
        if let Some((field, _)) = both.iter().find(|(_, set)| *set) {
            out.push(at(
                &format!("/{field}"),
                field.len(),
                format!("postgres sink `{name}`: `{field}` and `url` both say where to connect"),
                "give either `url` or `host`, `port`, `dbname` and `user` (a password may go with either)",
            ));
        }
    } else if host.is_none() {
        out.push(at(
            "",
            name.chars().count(),
            format!("postgres sink `{name}`: no `url` or `host` says where to connect"),
            "add `url: postgresql://user@host:5432/dbname`, or `host`, `dbname` and `user`",
        ));
    }
    out
}

fn check_opensearch(s: &SinkDecl) -> Vec<Diagnostic> {
    let SinkConnector::Opensearch { url, index, password, .. } = &s.sink.connector else {
        return Vec::new();
    };
    let name = &s.sink.name;
    let at = |field: &str, len: usize, message: String, help: &str| {
        let pointer = format!("{}/connector{field}", s.origin.pointer);
        s.origin.doc.error_at("sink-config", &pointer, false, len.max(1), message).with_help(help)
    };
    let mut out = Vec::new();
    if let Some(p) = password.as_deref().filter(|p| !from_env(p)) {
        out.push(at(
            "/password",
            p.chars().count(),
            format!("opensearch sink `{name}`: a password is given only through env_var(), never in the file"),
            "write `password: \"{{ env_var('OPENSEARCH_PASSWORD') }}\"` and set the variable where streamctl runs",
        ));
    }
    if password_in_url(url).is_some_and(|p| !from_env(p)) {
        out.push(at(
            "/url",
            url.chars().count(),
            format!("opensearch sink `{name}`: the url holds a password; it is given only through env_var()"),
            "give `user` and `password: \"{{ env_var('OPENSEARCH_PASSWORD') }}\"`, or make the whole url \
             `{{ env_var('OPENSEARCH_URL') }}`",
        ));
    }
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if !from_env(url) && !matches!(scheme.as_deref(), Some("http" | "https")) {
        out.push(at(
            "/url",
            url.chars().count(),
            format!("opensearch sink `{name}`: `{url}` is not an http:// or https:// URL"),
            "write the node's address, e.g. `url: http://localhost:9200`",
        ));
    }
    // OpenSearch's rules for index names (a routed name is made to fit them row by row).
    let bad = index.chars().find(|c| c.is_ascii_uppercase() || "\\/*?\"<>| ,#:".contains(*c));
    let why = match bad {
        Some(c) => Some(format!("holds `{c}`")),
        None if index.starts_with(['-', '_', '+']) => Some("starts with `-`, `_` or `+`".into()),
        None if index == "." || index == ".." => Some("is `.` or `..`".into()),
        None if index.len() > 255 => Some("is longer than 255 bytes".into()),
        None => None,
    };
    if let Some(why) = why {
        out.push(at(
            "/index",
            index.chars().count(),
            format!(
                "opensearch sink `{name}`: index `{index}` {why}, which OpenSearch does not allow in an index name"
            ),
            "use lower-case letters, digits, `-`, `_` and `.`",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_found() {
        assert_eq!(password_in_url("postgresql://u:pw@h:5432/db"), Some("pw"));
        assert_eq!(password_in_url("postgresql://u@h/db"), None);
        assert_eq!(password_in_url("postgresql://h/db?user=u"), None);
        assert_eq!(password_in_url("postgresql://u:{{ env_var('P') }}@h/db"), Some("{{ env_var('P') }}"));
        assert_eq!(password_in_url("host=h user=u password=pw dbname=d"), Some("pw"));
        assert_eq!(password_in_url("host=h password={{ env_var('P') }} dbname=d"), Some("{{ env_var('P') }}"));
        assert_eq!(password_in_url("host=h dbname=d"), None);
        assert_eq!(password_in_url("postgresql://u@h/db?password=pw&x=1"), Some("pw"));
        assert!(from_env("{{ env_var('P') }}") && !from_env("hunter2"));
    }
}
