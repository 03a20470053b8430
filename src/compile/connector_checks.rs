//! Checks of Kafka Connect connectors (`connectors/*.yml`) that the JSON Schema cannot express,
//! each at the setting: secrets written in clear, properties streamctl sets itself, fields that
//! belong to the other kind of connector, transform names given twice.

use std::collections::BTreeSet;

use super::CompiledProject;
use crate::connect::{is_secret_key, reserved};
use crate::diagnostics::Diagnostic;
use crate::jinja::Jinja;
use crate::project::config::TargetKind;
use crate::project::connectors::{ConfigScalar, ConnectorKind};
use crate::project::target::{ResolvedTarget, DEFAULT_CONNECT_CLUSTER};
use crate::project::ConnectorDecl;

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Whether a value takes its text from the environment (`{{ env_var('X') }}`).
fn from_env(text: &str) -> bool {
    text.contains("{{") && text.contains("env_var")
}

pub(crate) fn check(cp: &CompiledProject) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = cp.project.connectors.iter().flat_map(check_one).collect();
    out.extend(shared_topic_prefixes(&cp.project.connectors));
    out
}

/// Two source connectors of one Connect cluster with the same `topic.prefix`: Debezium keys its
/// metrics (and the topics' names) by it, so the second waits for the first one's to go away.
fn shared_topic_prefixes(connectors: &[ConnectorDecl]) -> Vec<Diagnostic> {
    let mut seen: std::collections::BTreeMap<(String, String), &str> = std::collections::BTreeMap::new();
    let mut out = Vec::new();
    for c in connectors {
        let def = &c.connector;
        let Some(prefix) = def.config.get("topic.prefix").map(ConfigScalar::text) else { continue };
        if def.kind != ConnectorKind::Source {
            continue;
        }
        let cluster = def.cluster.clone().unwrap_or_else(|| DEFAULT_CONNECT_CLUSTER.to_string());
        match seen.get(&(cluster.clone(), prefix.clone())) {
            Some(first) => out.push(
                c.origin
                    .doc
                    .error_at(
                        "connector",
                        &format!("{}/config/topic.prefix", c.origin.pointer),
                        false,
                        prefix.chars().count().max(1),
                        format!("connector `{}`: `topic.prefix` `{prefix}` is also connector `{first}`'s", def.name),
                    )
                    .with_help("each source connector needs a topic prefix of its own (Debezium keys its metrics and topic names by it)"),
            ),
            None => {
                seen.insert((cluster, prefix), def.name.as_str());
            }
        }
    }
    out
}

fn check_one(c: &ConnectorDecl) -> Vec<Diagnostic> {
    let def = &c.connector;
    let name = &def.name;
    let mut out = Vec::new();
    let at = |field: &str, key: bool, len: usize, message: String, help: &str| {
        let pointer = format!("{}{field}", c.origin.pointer);
        c.origin.doc.error_at("connector", &pointer, key, len.max(1), message).with_help(help)
    };
    match def.kind {
        ConnectorKind::Source if !def.from.is_empty() => out.push(at(
            "/from",
            true,
            4,
            format!("source connector `{name}`: `from:` is for sink connectors"),
            "a source connector names the topics it writes in `topics:`",
        )),
        ConnectorKind::Sink if !def.topics.is_empty() => out.push(at(
            "/topics",
            true,
            6,
            format!("sink connector `{name}`: `topics:` is for source connectors"),
            "a sink connector reads models: name them in `from:` (streamctl sets Connect's `topics`)",
        )),
        ConnectorKind::Sink if def.from.is_empty() => out.push(at(
            "/name",
            false,
            name.chars().count(),
            format!("sink connector `{name}` reads no model"),
            "name the models whose output it delivers in `from: [model, ...]`",
        )),
        _ => {}
    }
    if def.kind == ConnectorKind::Source {
        if let Some(t) = def.errors.as_ref().and_then(|e| e.dead_letter_topic.as_ref()) {
            out.push(at(
                "/errors/dead_letter_topic",
                false,
                t.chars().count(),
                format!("source connector `{name}`: Kafka Connect has dead-letter topics for sink connectors only"),
                "leave it out; `tolerance: all` skips (and `log: true` logs) records a transform or converter fails on",
            ));
        }
    }
    let secret_help = "write it as \"{{ env_var('NAME') }}\" and set the variable where streamctl runs";
    for (key, value) in &def.config {
        let field = format!("/config/{}", escape(key));
        if let Some(instead) = reserved(key, def.kind) {
            out.push(at(
                &field,
                true,
                key.chars().count(),
                format!("connector `{name}`: `{key}` is set by streamctl"),
                &format!("use {instead}"),
            ));
        }
        if let Some(d) = clear_secret(key, value) {
            out.push(at(
                &field,
                false,
                d,
                format!("connector `{name}`: `{key}` is a secret written in the file"),
                secret_help,
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (i, t) in def.transforms.iter().enumerate() {
        if !seen.insert(t.name.as_str()) {
            out.push(at(
                &format!("/transforms/{i}/name"),
                false,
                t.name.chars().count(),
                format!("connector `{name}`: transform `{}` is given twice", t.name),
                "each transform needs a name of its own (it is its alias in Connect's `transforms`)",
            ));
        }
        for (key, value) in &t.settings {
            if let Some(d) = clear_secret(key, value) {
                let field = format!("/transforms/{i}/{}", escape(key));
                out.push(at(
                    &field,
                    false,
                    d,
                    format!("connector `{name}`: transform `{}`: `{key}` is a secret written in the file", t.name),
                    secret_help,
                ));
            }
        }
    }
    out
}

/// The length of a secret written in clear (to underline it), or None.
fn clear_secret(key: &str, value: &ConfigScalar) -> Option<usize> {
    if !is_secret_key(key) {
        return None;
    }
    let text = value.text();
    (!from_env(&text) && !text.is_empty()).then(|| text.chars().count())
}

/// Problems of the connectors on the target in use: a Connect cluster it lacks, an `env_var()`
/// that is not set. None on the embedded target, which deploys no connector.
pub fn target_problems(cp: &CompiledProject, target: &ResolvedTarget) -> Vec<Diagnostic> {
    if target.kind == TargetKind::Embedded {
        return Vec::new();
    }
    let jinja = Jinja::new(cp.project.config.vars.clone());
    let mut out = Vec::new();
    for c in &cp.project.connectors {
        let def = &c.connector;
        let cluster = def.cluster.as_deref().unwrap_or(DEFAULT_CONNECT_CLUSTER);
        if !target.connect.contains_key(cluster) {
            let (field, len) = match &def.cluster {
                Some(name) => ("/cluster", name.chars().count()),
                None => ("/name", def.name.chars().count()),
            };
            let help = if cluster == DEFAULT_CONNECT_CLUSTER {
                format!("set `connect_url:` (Kafka Connect's REST URL) in target `{}`", target.name)
            } else {
                format!("add `{cluster}: <REST URL>` to `connect_clusters:` of target `{}`", target.name)
            };
            out.push(
                c.origin
                    .doc
                    .error_at(
                        "connector",
                        &format!("{}{field}", c.origin.pointer),
                        false,
                        len.max(1),
                        format!(
                            "connector `{}`: target `{}` has no Kafka Connect cluster `{cluster}`",
                            def.name, target.name
                        ),
                    )
                    .with_help(help),
            );
        }
        for (key, value) in &def.config {
            let text = value.text();
            if let Err(e) = jinja.render_str(&text) {
                let pointer = format!("{}/config/{}", c.origin.pointer, escape(key));
                out.push(c.origin.doc.error_at(
                    "jinja",
                    &pointer,
                    false,
                    text.chars().count().max(1),
                    format!("connector `{}`: `{key}`: {}", def.name, e.detail().unwrap_or("cannot render the value")),
                ));
            }
        }
    }
    out
}
