//! Resolving the target to deploy to: the project's `targets:`, then environment variables, then
//! command-line flags, as CI systems expect. Secrets come in only through `{{ env_var('X') }}`,
//! which is rendered here, for the chosen target only.

use std::collections::BTreeMap;
use std::path::PathBuf;

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
    /// TLS files and basic auth for an `https://` registry.
    pub schema_registry_access: RegistryAccess,
    pub properties: BTreeMap<String, String>,
    pub replication_factor: i32,
    pub control_topic: String,
    pub topic_prefix: String,
    /// The target's delivery guarantee for jobs whose model does not set one.
    pub guarantee: Guarantee,
    /// Kafka Connect clusters, name → REST URL (`connect_url` is `default`).
    pub connect: BTreeMap<String, String>,
}

/// The name of the Connect cluster at the target's `connect_url`.
pub const DEFAULT_CONNECT_CLUSTER: &str = "default";

pub const DEFAULT_CONTROL_TOPIC: &str = "_streamctl_deployments";

/// How the target's schema registry is reached besides its URL: the CA to trust, a client
/// certificate, basic-auth credentials. Paths are absolute (relative ones are taken from the
/// project directory). Its Debug form shows no password.
#[derive(Clone, Default, PartialEq)]
pub struct RegistryAccess {
    pub ca_location: Option<PathBuf>,
    pub certificate_location: Option<PathBuf>,
    pub key_location: Option<PathBuf>,
    /// `USER:PASSWORD`.
    pub basic_auth_user_info: Option<String>,
}

impl std::fmt::Debug for RegistryAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let user = self.basic_auth_user_info.as_deref().map(|u| format!("{}:<redacted>", basic_auth_user(u)));
        f.debug_struct("RegistryAccess")
            .field("ca_location", &self.ca_location)
            .field("certificate_location", &self.certificate_location)
            .field("key_location", &self.key_location)
            .field("basic_auth_user_info", &user)
            .finish()
    }
}

/// The user of `USER:PASSWORD` (all of it when there is no `:`).
fn basic_auth_user(user_info: &str) -> &str {
    user_info.split_once(':').map_or(user_info, |(user, _)| user)
}

impl std::fmt::Debug for ResolvedTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: BTreeMap<&str, &str> =
            self.properties.iter().map(|(k, v)| (k.as_str(), redacted(k, v))).collect();
        f.debug_struct("ResolvedTarget")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("schema_registry_url", &self.schema_registry_url.as_deref().map(redact_url))
            .field("schema_registry_access", &self.schema_registry_access)
            .field("properties", &properties)
            .field("replication_factor", &self.replication_factor)
            .field("control_topic", &self.control_topic)
            .field("topic_prefix", &self.topic_prefix)
            .field("guarantee", &self.guarantee)
            .field("connect", &self.connect.iter().map(|(k, v)| (k, redact_url(v))).collect::<BTreeMap<_, _>>())
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
            schema_registry_ca_location: None,
            schema_registry_certificate_location: None,
            schema_registry_key_location: None,
            schema_registry_basic_auth_user_info: None,
            properties: BTreeMap::new(),
            replication_factor: None,
            control_topic: None,
            topic_prefix: None,
            guarantee: None,
            connect_url: None,
            connect_clusters: BTreeMap::new(),
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
        let path = |field: &str, v: &Option<String>| -> Result<Option<PathBuf>, Diagnostic> {
            Ok(opt(field, v)?.map(|p| self.root.join(p)))
        };
        let schema_registry_access = RegistryAccess {
            ca_location: path("schema_registry_ca_location", &target.schema_registry_ca_location)?,
            certificate_location: path(
                "schema_registry_certificate_location",
                &target.schema_registry_certificate_location,
            )?,
            key_location: path("schema_registry_key_location", &target.schema_registry_key_location)?,
            basic_auth_user_info: opt(
                "schema_registry_basic_auth_user_info",
                &target.schema_registry_basic_auth_user_info,
            )?,
        };
        self.check_registry_access(&name, target, &schema_registry_access)?;
        let mut connect = BTreeMap::new();
        if let Some(url) = opt("connect_url", &target.connect_url)? {
            connect.insert(DEFAULT_CONNECT_CLUSTER.to_string(), url);
        }
        for (cluster, url) in &target.connect_clusters {
            connect.insert(cluster.clone(), render(&format!("connect_clusters/{cluster}"), url)?);
        }
        Ok(ResolvedTarget {
            name: name.clone(),
            kind: target.kind,
            bootstrap_servers,
            schema_registry_url,
            schema_registry_access,
            properties,
            replication_factor: target.replication_factor.unwrap_or(1),
            control_topic: opt("control_topic", &target.control_topic)?
                .unwrap_or_else(|| format!("{topic_prefix}{DEFAULT_CONTROL_TOPIC}")),
            topic_prefix,
            // Both kinds of target support transactions (librdkafka's mock cluster too).
            guarantee: target.guarantee.unwrap_or_default(),
            connect,
        })
    }
}

impl Project {
    /// A client certificate comes with its key; basic-auth credentials are `USER:PASSWORD` (the
    /// message names the field, never its value).
    fn check_registry_access(&self, name: &str, target: &Target, access: &RegistryAccess) -> Result<(), Diagnostic> {
        let pointer = format!("/targets/{name}");
        let field_error = |field: &str, message: String, help: &str| {
            let len = field.chars().count();
            self.config_doc.error_at("target", &format!("{pointer}/{field}"), true, len, message).with_help(help)
        };
        match (&target.schema_registry_certificate_location, &target.schema_registry_key_location) {
            (Some(_), None) => {
                return Err(field_error(
                    "schema_registry_certificate_location",
                    format!("target `{name}`: a client certificate without `schema_registry_key_location`"),
                    "set both, or neither (the registry asks for a client certificate only with mutual TLS)",
                ))
            }
            (None, Some(_)) => {
                return Err(field_error(
                    "schema_registry_key_location",
                    format!("target `{name}`: a client key without `schema_registry_certificate_location`"),
                    "set both, or neither (the registry asks for a client certificate only with mutual TLS)",
                ))
            }
            _ => {}
        }
        let files = [
            ("schema_registry_ca_location", &access.ca_location),
            ("schema_registry_certificate_location", &access.certificate_location),
            ("schema_registry_key_location", &access.key_location),
        ];
        for (field, path) in files {
            if let Some(path) = path.as_ref().filter(|p| !p.is_file()) {
                return Err(field_error(
                    field,
                    format!("target `{name}`: `{field}`: no file {}", path.display()),
                    "a PEM file; a relative path is taken from the project directory",
                ));
            }
        }
        if access.basic_auth_user_info.as_deref().is_some_and(|u| !u.contains(':')) {
            return Err(field_error(
                "schema_registry_basic_auth_user_info",
                format!("target `{name}`: `schema_registry_basic_auth_user_info` is not `USER:PASSWORD`"),
                "for example \"{{ env_var('SR_API_KEY') }}:{{ env_var('SR_API_SECRET') }}\"",
            ));
        }
        Ok(())
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
            schema_registry_access: RegistryAccess {
                basic_auth_user_info: Some("sr-key:hunter2-basic".into()),
                ..Default::default()
            },
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
            connect: BTreeMap::from([("default".into(), "http://connect:hunter2-connect@c.example.com:8083".into())]),
        };
        let shown = format!("{target:?} {target:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("alice") && shown.contains("https://key:<redacted>@registry.example.com/sr"), "{shown}");
        assert!(shown.contains("sr-key:<redacted>"), "{shown}");
        let overrides =
            TargetOverrides { schema_registry_url: target.schema_registry_url.clone(), ..Default::default() };
        assert!(!format!("{overrides:?}").contains("hunter2"));
    }
}
