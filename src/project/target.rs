//! Resolving the target to deploy to: the project's `targets:`, then environment variables, then
//! command-line flags, as CI systems expect. Secrets come in only through `{{ env_var('X') }}`,
//! which is rendered here, for the chosen target only.

use std::collections::BTreeMap;

use super::config::{Target, TargetKind};
use super::Project;
use crate::diagnostics::Diagnostic;
use crate::jinja::Jinja;

/// Settings given outside the project file (flags, or `STREAMCTL_*` environment variables).
#[derive(Debug, Clone, Default)]
pub struct TargetOverrides {
    pub target: Option<String>,
    pub bootstrap_servers: Option<String>,
    pub schema_registry_url: Option<String>,
}

/// A target with every setting final.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTarget {
    pub name: String,
    pub kind: TargetKind,
    pub bootstrap_servers: Option<String>,
    pub schema_registry_url: Option<String>,
    pub properties: BTreeMap<String, String>,
    pub replication_factor: i32,
    pub control_topic: String,
    pub topic_prefix: String,
}

pub const DEFAULT_CONTROL_TOPIC: &str = "_streamctl_deployments";

impl Project {
    /// The target chosen by `--target`, `STREAMCTL_TARGET` or the project's `default_target`.
    pub fn resolve_target(&self, overrides: &TargetOverrides, jinja: &Jinja) -> Result<ResolvedTarget, Diagnostic> {
        let name = overrides.target.clone().unwrap_or_else(|| self.config.default_target.clone());
        let builtin_embedded = Target {
            kind: TargetKind::Embedded,
            bootstrap_servers: None,
            schema_registry_url: None,
            properties: BTreeMap::new(),
            replication_factor: None,
            control_topic: None,
            topic_prefix: None,
        };
        let target = match self.config.targets.get(&name) {
            Some(t) => t,
            None if name == "embedded" => &builtin_embedded,
            None => {
                let known: Vec<&str> = self.config.targets.keys().map(String::as_str).chain(["embedded"]).collect();
                let mut d = Diagnostic::error("unknown-target", format!("no target named `{name}`"))
                    .in_file(&self.config_doc.source);
                d = d.with_help(match crate::diagnostics::suggest(&name, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("targets: {}", known.join(", ")),
                });
                return Err(d);
            }
        };
        let pointer = format!("/targets/{name}");
        let render = |field: &str, v: &str| -> Result<String, Diagnostic> {
            jinja.render_str(v).map_err(|e| {
                self.config_doc.error_at(
                    "jinja",
                    &format!("{pointer}/{field}"),
                    false,
                    v.chars().count(),
                    format!("target `{name}`: {}", e.detail().unwrap_or("cannot render value")),
                )
            })
        };
        let opt = |field: &str, v: &Option<String>| -> Result<Option<String>, Diagnostic> {
            v.as_deref().map(|v| render(field, v)).transpose()
        };
        let mut properties = BTreeMap::new();
        for (k, v) in &target.properties {
            properties.insert(k.clone(), render(&format!("properties/{k}"), v)?);
        }
        let bootstrap_servers =
            overrides.bootstrap_servers.clone().or(opt("bootstrap_servers", &target.bootstrap_servers)?);
        let schema_registry_url =
            overrides.schema_registry_url.clone().or(opt("schema_registry_url", &target.schema_registry_url)?);
        if target.kind == TargetKind::Kafka && bootstrap_servers.is_none() {
            return Err(self
                .config_doc
                .error_at(
                    "target",
                    &pointer,
                    true,
                    name.chars().count(),
                    format!("target `{name}` has no bootstrap_servers"),
                )
                .with_help("set `bootstrap_servers:`, pass --bootstrap-servers, or set STREAMCTL_BOOTSTRAP_SERVERS"));
        }
        Ok(ResolvedTarget {
            name: name.clone(),
            kind: target.kind,
            bootstrap_servers,
            schema_registry_url,
            properties,
            replication_factor: target.replication_factor.unwrap_or(1),
            control_topic: opt("control_topic", &target.control_topic)?.unwrap_or_else(|| DEFAULT_CONTROL_TOPIC.into()),
            topic_prefix: opt("topic_prefix", &target.topic_prefix)?.unwrap_or_default(),
        })
    }
}
