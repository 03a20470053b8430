//! A schema registry kept as files: `DIR/<subject>/v<N>.avsc` (Avro) or `.json` (JSON Schema),
//! and `DIR/<subject>/config.json` for the subject's compatibility level. Committed to git, it
//! is the schema history of the embedded target and can be reviewed like code.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{same_schema, Compatibility, RegisteredSchema, RegistryError, SchemaRegistry, SchemaType};

pub struct FileRegistry {
    root: PathBuf,
    shown: String,
}

impl FileRegistry {
    /// `shown`: the directory as the user named it, for messages.
    pub fn new(root: PathBuf, shown: &str) -> FileRegistry {
        FileRegistry { root, shown: shown.to_string() }
    }

    fn dir(&self, subject: &str) -> Result<PathBuf, RegistryError> {
        if subject.is_empty() || subject.contains(['/', '\\']) || subject.starts_with('.') {
            return Err(RegistryError::Other(format!("subject `{subject}` cannot be a file name")));
        }
        Ok(self.root.join(subject))
    }

    fn io(&self, what: &str, path: &Path, e: std::io::Error) -> RegistryError {
        RegistryError::Other(format!("file registry {}: {what} {}: {e}", self.shown, path.display()))
    }
}

/// A stable id for a schema text: the registry is files, so there is no counter to share.
/// It is what a Confluent wire-format frame carries for a schema of this registry.
pub fn content_id(schema_type: SchemaType, schema: &str) -> i32 {
    let canonical = serde_json::from_str::<serde_json::Value>(schema)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| schema.trim().to_string());
    let d = Sha256::digest(format!("{schema_type}:{canonical}").as_bytes());
    (u32::from_be_bytes([d[0], d[1], d[2], d[3]]) & 0x7fff_ffff) as i32
}

impl SchemaRegistry for FileRegistry {
    fn describe(&self) -> String {
        format!("file registry {}", self.shown)
    }

    fn content_addressed(&self) -> bool {
        true
    }

    fn subjects(&self) -> Result<Vec<String>, RegistryError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(self.io("cannot read", &self.root, e)),
        };
        for e in entries.flatten() {
            if e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.') {
                out.push(e.file_name().to_string_lossy().to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    fn versions(&self, subject: &str) -> Result<Vec<RegisteredSchema>, RegistryError> {
        let dir = self.dir(subject)?;
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io("cannot read", &dir, e)),
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some((stem, ext)) = name.rsplit_once('.') else { continue };
            let schema_type = match ext {
                "avsc" => SchemaType::Avro,
                "json" if stem != "config" => SchemaType::Json,
                _ => continue,
            };
            let Some(version) = stem.strip_prefix('v').and_then(|v| v.parse::<i32>().ok()) else { continue };
            let schema = std::fs::read_to_string(e.path()).map_err(|err| self.io("cannot read", &e.path(), err))?;
            out.push(RegisteredSchema {
                subject: subject.to_string(),
                version,
                id: content_id(schema_type, &schema),
                schema_type,
                schema,
            });
        }
        out.sort_by_key(|s| s.version);
        Ok(out)
    }

    fn compatibility(&self, subject: &str) -> Result<Option<Compatibility>, RegistryError> {
        let path = self.dir(subject)?.join("config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io("cannot read", &path, e)),
        };
        #[derive(serde::Deserialize)]
        struct Config {
            compatibility: Compatibility,
        }
        serde_json::from_str::<Config>(&text)
            .map(|c| Some(c.compatibility))
            .map_err(|e| RegistryError::Other(format!("file registry {}: {}: {e}", self.shown, path.display())))
    }

    fn set_compatibility(&self, subject: &str, level: Compatibility) -> Result<(), RegistryError> {
        let dir = self.dir(subject)?;
        std::fs::create_dir_all(&dir).map_err(|e| self.io("cannot create", &dir, e))?;
        let path = dir.join("config.json");
        let text =
            serde_json::to_string_pretty(&serde_json::json!({ "compatibility": level })).unwrap_or_default() + "\n";
        std::fs::write(&path, text).map_err(|e| self.io("cannot write", &path, e))
    }

    fn register(
        &self,
        subject: &str,
        schema_type: SchemaType,
        schema: &str,
    ) -> Result<RegisteredSchema, RegistryError> {
        let existing = self.versions(subject)?;
        if let Some(same) = existing.iter().find(|s| s.schema_type == schema_type && same_schema(&s.schema, schema)) {
            return Ok(same.clone());
        }
        let version = existing.last().map_or(1, |s| s.version + 1);
        let dir = self.dir(subject)?;
        std::fs::create_dir_all(&dir).map_err(|e| self.io("cannot create", &dir, e))?;
        let ext = match schema_type {
            SchemaType::Avro => "avsc",
            SchemaType::Json => "json",
        };
        let path = dir.join(format!("v{version}.{ext}"));
        let mut text = schema.to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        std::fs::write(&path, &text).map_err(|e| self.io("cannot write", &path, e))?;
        Ok(RegisteredSchema {
            subject: subject.to_string(),
            version,
            id: content_id(schema_type, schema),
            schema_type,
            schema: text,
        })
    }

    fn delete_subject(&self, subject: &str) -> Result<Vec<i32>, RegistryError> {
        let versions: Vec<i32> = self.versions(subject)?.iter().map(|s| s.version).collect();
        let dir = self.dir(subject)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| self.io("cannot delete", &dir, e))?;
        }
        Ok(versions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_versions_idempotently_and_keeps_config() {
        let dir = tempfile::tempdir().unwrap();
        let r = FileRegistry::new(dir.path().join("schemas"), "schemas");
        assert!(r.subjects().unwrap().is_empty());
        assert!(r.versions("t-value").unwrap().is_empty());
        let v1 = r.register("t-value", SchemaType::Json, r#"{"type":"object"}"#).unwrap();
        assert_eq!(v1.version, 1);
        // The same schema, formatted differently: the same version.
        let again = r.register("t-value", SchemaType::Json, "{ \"type\" : \"object\" }").unwrap();
        assert_eq!(again, v1);
        let v2 = r.register("t-value", SchemaType::Avro, r#"{"type":"record","name":"T","fields":[]}"#).unwrap();
        assert_eq!(v2.version, 2);
        assert_ne!(v2.id, v1.id);
        assert!(dir.path().join("schemas/t-value/v2.avsc").is_file());
        let all = r.versions("t-value").unwrap();
        assert_eq!(
            all.iter().map(|s| (s.version, s.schema_type)).collect::<Vec<_>>(),
            vec![(1, SchemaType::Json), (2, SchemaType::Avro)]
        );
        assert_eq!(r.compatibility("t-value").unwrap(), None);
        r.set_compatibility("t-value", Compatibility::FullTransitive).unwrap();
        assert_eq!(r.compatibility("t-value").unwrap(), Some(Compatibility::FullTransitive));
        assert_eq!(r.subjects().unwrap(), vec!["t-value"]);
        assert_eq!(r.delete_subject("t-value").unwrap(), vec![1, 2]);
        assert!(r.versions("t-value").unwrap().is_empty());
        assert!(r.register("../x", SchemaType::Json, "{}").is_err());
    }
}
