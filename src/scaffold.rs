//! `streamctl init`: a new project from `templates/init/`, embedded in the binary so it works
//! wherever streamctl is installed. Files are rendered with minijinja (`{{ name }}`).

use std::path::Path;

/// (path in the new project, template text).
const FILES: &[(&str, &str)] = &[
    ("streamctl_project.yml", include_str!("../templates/init/streamctl_project.yml")),
    ("sources/shop.yml", include_str!("../templates/init/sources/shop.yml")),
    ("models/large_payments.sql", include_str!("../templates/init/models/large_payments.sql")),
    ("models/payments_per_minute.sql", include_str!("../templates/init/models/payments_per_minute.sql")),
    ("models/models.yml", include_str!("../templates/init/models/models.yml")),
    ("tests/payments.yml", include_str!("../templates/init/tests/payments.yml")),
    ("data/payments.jsonl", include_str!("../templates/init/data/payments.jsonl")),
    ("data/accounts.jsonl", include_str!("../templates/init/data/accounts.jsonl")),
    ("README.md", include_str!("../templates/init/README.md")),
    (".gitignore", include_str!("../templates/init/gitignore")),
];

#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error("`{0}` is not a valid project name: use letters, digits, `_` and `-`, starting with a letter")]
    BadName(String),
    #[error("{0} already exists and is not empty")]
    NotEmpty(String),
    #[error("cannot write {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("template {path}: {source}")]
    Template { path: String, source: minijinja::Error },
}

/// Writes a new project named `name` into `dir`; returns the files written.
pub fn scaffold(dir: &Path, name: &str) -> Result<Vec<String>, ScaffoldError> {
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid {
        return Err(ScaffoldError::BadName(name.to_string()));
    }
    if dir.exists() && std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(ScaffoldError::NotEmpty(dir.display().to_string()));
    }
    let env = minijinja::Environment::new();
    let mut written = Vec::new();
    for (path, text) in FILES {
        let rendered = if path.ends_with(".jsonl") {
            text.to_string()
        } else {
            env.render_str(text, minijinja::context! { name => name })
                .map_err(|source| ScaffoldError::Template { path: path.to_string(), source })?
        };
        let full = dir.join(path);
        let io = |source| ScaffoldError::Io { path: full.display().to_string(), source };
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&full, rendered)
            .map_err(|source| ScaffoldError::Io { path: full.display().to_string(), source })?;
        written.push(path.to_string());
    }
    Ok(written)
}
