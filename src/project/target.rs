//! Resolving the target to deploy to: the project's `targets:`, then environment variables, then
//! command-line flags, as CI systems expect. Secrets come in only through `{{ env_var('X') }}`,
//! which is rendered here, for the chosen target only.

use std::collections::BTreeMap;

use super::config::{Guarantee, Target, TargetKind};
use super::Project;
use crate::diagnostics::Diagnostic;
use crate::jinja::Jinja;

/// Settings given outside the project file (flags, or `STREAMCTL_*` environment variables).
#[derive(Clone, Default)]
pub struct TargetOverrides {
    pub target: Option<String>,
    pub bootstrap_servers: Option<String>,
    pub schema_registry_url: Option<String>,
}

impl std::fmt::Debug for TargetOverrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetOverrides")
            .field("target", &self.target)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("schema_registry_url", &self.schema_registry_url.as_deref().map(redact_url))
            .finish()
    }
}

/// A target with every setting final. Its Debug form shows no secret (see [`redacted`]).
#[derive(Clone, PartialEq)]
pub struct ResolvedTarget {
    pub name: String,
    pub kind: TargetKind,
    pub bootstrap_servers: Option<String>,
    pub schema_registry_url: Option<String>,
    pub properties: BTreeMap<String, String>,
    pub replication_factor: i32,
    pub control_topic: String,
    pub topic_prefix: String,
    /// The target's delivery guarantee for jobs whose model does not set one.
    pub guarantee: Guarantee,
}

pub const DEFAULT_CONTROL_TOPIC: &str = "_streamctl_deployments";

impl std::fmt::Debug for ResolvedTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: BTreeMap<&str, &str> =
            self.properties.iter().map(|(k, v)| (k.as_str(), redacted(k, v))).collect();
        f.debug_struct("ResolvedTarget")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("schema_registry_url", &self.schema_registry_url.as_deref().map(redact_url))
            .field("properties", &properties)
            .field("replication_factor", &self.replication_factor)
            .field("control_topic", &self.control_topic)
            .field("topic_prefix", &self.topic_prefix)
            .field("guarantee", &self.guarantee)
            .finish()
    }
}

/// A Kafka client property's value as it may be shown: passwords, secrets, keys, tokens and
/// JAAS configs (which hold passwords) are `<redacted>`.
pub fn redacted<'v>(key: &str, value: &'v str) -> &'v str {
    let key = key.to_ascii_lowercase();
    let secret = ["password", "secret", "jaas", "token", "credential"].iter().any(|w| key.contains(w))
        || key.ends_with(".key")
        || key.contains("key.pem")
        || key.contains("private");
    if secret {
        "<redacted>"
    } else {
        value
    }
}

/// A URL as it may be shown: the password of its userinfo (`https://KEY:SECRET@host`) is
/// `<redacted>`.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            let sep = if scheme.is_empty() { "" } else { "://" };
            format!("{scheme}{sep}{user}:<redacted>@{}", &rest[at + 1..])
        }
        None => url.to_string(),
    }
}

impl Project {
    /// `default_target` must name a target of the file (or the built-in `embedded`).
    pub fn check_default_target(&self) -> Option<Diagnostic> {
        let name = &self.config.default_target;
        if name == "embedded" || self.config.targets.contains_key(name) {
            return None;
        }
        let known: Vec<&str> = self.config.targets.keys().map(String::as_str).chain(["embedded"]).collect();
        let d = self.config_doc.error_at(
            "unknown-target",
            "/default_target",
            false,
            name.chars().count(),
            format!("default_target `{name}` is not one of the targets"),
        );
        Some(d.with_help(match crate::diagnostics::suggest(name, known.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("targets: {}", known.join(", ")),
        }))
    }

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
            guarantee: None,
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
        if target.kind == TargetKind::Embedded && overrides.bootstrap_servers.is_some() {
            // Deploying to an in-process broker while the user named a real one would say
            // "applied" about a cluster nobody asked for.
            let kafka: Vec<&str> = self
                .config
                .targets
                .iter()
                .filter(|(_, t)| t.kind == TargetKind::Kafka)
                .map(|(n, _)| n.as_str())
                .collect();
            return Err(Diagnostic::error(
                "target",
                format!("--bootstrap-servers given, but target `{name}` runs its own broker"),
            )
            .with_help(if kafka.is_empty() {
                "--bootstrap-servers (or STREAMCTL_BOOTSTRAP_SERVERS) is for Kafka targets: add one with `type: kafka`"
                    .to_string()
            } else {
                format!(
                    "pass --target {}; --bootstrap-servers and STREAMCTL_BOOTSTRAP_SERVERS are for Kafka targets",
                    kafka.join(" or ")
                )
            }));
        }
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
        let topic_prefix = opt("topic_prefix", &target.topic_prefix)?.unwrap_or_default();
        Ok(ResolvedTarget {
            name: name.clone(),
            kind: target.kind,
            bootstrap_servers,
            schema_registry_url,
            properties,
            replication_factor: target.replication_factor.unwrap_or(1),
            control_topic: opt("control_topic", &target.control_topic)?
                .unwrap_or_else(|| format!("{topic_prefix}{DEFAULT_CONTROL_TOPIC}")),
            topic_prefix,
            // Both kinds of target support transactions (librdkafka's mock cluster too).
            guarantee: target.guarantee.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod redaction_tests {
    use super::*;

    #[test]
    fn debug_of_a_resolved_target_shows_no_secret() {
        let target = ResolvedTarget {
            name: "prod".into(),
            kind: TargetKind::Kafka,
            bootstrap_servers: Some("b:9092".into()),
            schema_registry_url: Some("https://key:hunter2-url@registry.example.com/sr".into()),
            properties: BTreeMap::from([
                ("sasl.password".into(), "hunter2-sasl".into()),
                ("ssl.key.password".into(), "hunter2-key".into()),
                ("sasl.oauthbearer.client.secret".into(), "hunter2-oauth".into()),
                ("sasl.jaas.config".into(), "x password=\"hunter2-jaas\";".into()),
                ("ssl.key.pem".into(), "hunter2-pem".into()),
                ("sasl.username".into(), "alice".into()),
            ]),
            replication_factor: 3,
            control_topic: DEFAULT_CONTROL_TOPIC.into(),
            topic_prefix: String::new(),
            guarantee: Guarantee::default(),
        };
        let shown = format!("{target:?} {target:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("alice") && shown.contains("https://key:<redacted>@registry.example.com/sr"), "{shown}");
        let overrides =
            TargetOverrides { schema_registry_url: target.schema_registry_url.clone(), ..Default::default() };
        assert!(!format!("{overrides:?}").contains("hunter2"));
    }
}
