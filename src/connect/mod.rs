//! Kafka Connect: the properties of a project's connector as Connect stores them, the difference
//! between two such configs in words (with secrets masked), and a client of Connect's REST API
//! ([`client`]).

pub mod client;

use std::collections::BTreeMap;

use crate::jinja::Jinja;
use crate::project::connectors::{ConnectorDef, ConnectorKind, ErrorTolerance};
use crate::project::target::{redact_url, redacted};

/// How a masked value is shown.
pub const MASK: &str = "<redacted>";

/// Whether a property holds a secret (a password, secret, token, credential, JAAS config or
/// private key), which is only given through `env_var()` and never shown.
pub fn is_secret_key(key: &str) -> bool {
    redacted(key, "x") != "x"
}

/// A property value as it may be shown: secrets masked, a URL's password too.
pub fn shown(key: &str, value: &str) -> String {
    if is_secret_key(key) {
        MASK.to_string()
    } else if value.contains("://") && value.contains('@') {
        redact_url(value)
    } else {
        value.to_string()
    }
}

/// Where a property streamctl sets itself is written instead, or None for a free one.
pub fn reserved(key: &str, kind: ConnectorKind) -> Option<&'static str> {
    match key {
        "connector.class" => Some("`class:`"),
        "name" => Some("the connector's `name:`"),
        "tasks.max" => Some("`tasks_max:`"),
        "transforms" => Some("`transforms:`"),
        "topics" | "topics.regex" if kind == ConnectorKind::Sink => {
            Some("`from:` (streamctl sets `topics` to the models' output topics)")
        }
        k if k.starts_with("transforms.") => Some("`transforms:`"),
        k if k.starts_with("errors.") => Some("`errors:`"),
        _ => None,
    }
}

/// The connector's properties as Connect stores them, `{{ ... }}` templates not yet rendered.
/// `sink_topics`: the output topics of a sink connector's `from:` models. `replication_factor`:
/// the target's, for the dead-letter topic Connect creates.
pub fn properties(def: &ConnectorDef, sink_topics: &[String], replication_factor: i32) -> BTreeMap<String, String> {
    let mut p = BTreeMap::new();
    p.insert("connector.class".to_string(), def.class.clone());
    p.insert("tasks.max".to_string(), def.tasks_max.unwrap_or(1).to_string());
    for (k, v) in &def.config {
        p.insert(k.clone(), v.text());
    }
    if def.kind == ConnectorKind::Sink {
        p.insert("topics".to_string(), sink_topics.join(","));
    }
    if !def.transforms.is_empty() {
        let names: Vec<&str> = def.transforms.iter().map(|t| t.name.as_str()).collect();
        p.insert("transforms".to_string(), names.join(","));
        for t in &def.transforms {
            p.insert(format!("transforms.{}.type", t.name), t.class.clone());
            for (k, v) in &t.settings {
                p.insert(format!("transforms.{}.{k}", t.name), v.text());
            }
        }
    }
    if let Some(e) = &def.errors {
        if let Some(t) = e.tolerance {
            let word = match t {
                ErrorTolerance::None => "none",
                ErrorTolerance::All => "all",
            };
            p.insert("errors.tolerance".to_string(), word.to_string());
        }
        if let Some(log) = e.log {
            p.insert("errors.log.enable".to_string(), log.to_string());
            p.insert("errors.log.include.messages".to_string(), log.to_string());
        }
        if let Some(topic) = &e.dead_letter_topic {
            p.insert("errors.deadletterqueue.topic.name".to_string(), topic.clone());
            p.insert("errors.deadletterqueue.topic.replication.factor".to_string(), replication_factor.to_string());
            p.insert(
                "errors.deadletterqueue.context.headers.enable".to_string(),
                e.context_headers.unwrap_or(true).to_string(),
            );
        }
        if let Some(ms) = e.retry_timeout_ms {
            p.insert("errors.retry.timeout".to_string(), ms.to_string());
        }
    }
    p
}

/// Renders the `{{ env_var(..) }}` and `{{ var(..) }}` of every value; the error names the
/// property, never a value.
pub fn render(properties: &BTreeMap<String, String>, jinja: &Jinja) -> Result<BTreeMap<String, String>, String> {
    properties
        .iter()
        .map(|(k, v)| {
            let r =
                jinja.render_str(v).map_err(|e| format!("{k}: {}", e.detail().unwrap_or("cannot render the value")))?;
            Ok((k.clone(), r))
        })
        .collect()
}

/// Why a changed property can move what the connector has read (its offsets), or None.
pub fn offsets_risk(kind: ConnectorKind, key: &str) -> Option<&'static str> {
    match (kind, key) {
        (ConnectorKind::Source, "topic.prefix" | "database.server.name") => {
            Some("source offsets and topic names are keyed by it: the connector may snapshot again into new topics")
        }
        (ConnectorKind::Source, "slot.name" | "publication.name") => {
            Some("a new replication slot: changes since the old slot's position may be read again or skipped")
        }
        (ConnectorKind::Source, "database.hostname" | "database.port" | "database.dbname") => {
            Some("another database: the stored offsets belong to the old one")
        }
        (ConnectorKind::Source, "snapshot.mode") => Some("the snapshot mode decides what is read again on restart"),
        (_, "offsets.storage.topic") => Some("another offsets topic: the stored offsets are not read"),
        (ConnectorKind::Sink, "topics") => Some("added topics are read from `consumer.auto.offset.reset`"),
        (ConnectorKind::Sink, "consumer.override.group.id") => {
            Some("another consumer group: committed offsets are not read")
        }
        _ => None,
    }
}

/// One line per property that differs between Connect's config (`actual`) and the project's
/// (`desired`), secrets masked; `name` (which Connect adds) is ignored.
pub fn differences(actual: &BTreeMap<String, String>, desired: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let keys: std::collections::BTreeSet<&String> = actual.keys().chain(desired.keys()).collect();
    for k in keys {
        if k == "name" {
            continue;
        }
        let line = match (actual.get(k), desired.get(k)) {
            (Some(a), Some(d)) if a == d => continue,
            (Some(_), Some(_)) if is_secret_key(k) => format!("{k}: changed (secret, not shown)"),
            (Some(a), Some(d)) => format!("{k}: {} → {}", shown(k, a), shown(k, d)),
            (None, Some(d)) => format!("{k}: added, {}", shown(k, d)),
            (Some(a), None) => format!("{k}: removed (was {})", shown(k, a)),
            (None, None) => continue,
        };
        out.push((k.clone(), line));
    }
    out
}

/// `text` with every secret value of `config` replaced by the mask: for errors and traces that
/// might quote them.
pub fn scrub(text: &str, config: &BTreeMap<String, String>) -> String {
    let mut out = text.to_string();
    for (k, v) in config {
        if is_secret_key(k) && v.len() >= 3 {
            out = out.replace(v.as_str(), MASK);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::connectors::{ConfigScalar, ConnectErrors, ConnectTransform};

    fn def(kind: ConnectorKind) -> ConnectorDef {
        ConnectorDef {
            name: "cdc".into(),
            description: None,
            kind,
            cluster: None,
            class: "io.debezium.connector.postgresql.PostgresConnector".into(),
            tasks_max: None,
            topics: vec![],
            from: vec![],
            config: BTreeMap::from([
                ("database.port".into(), ConfigScalar::Int(5432)),
                ("database.password".into(), ConfigScalar::Text("{{ env_var('PW') }}".into())),
                ("tombstones.on.delete".into(), ConfigScalar::Bool(false)),
            ]),
            transforms: vec![ConnectTransform {
                name: "mask".into(),
                class: "org.apache.kafka.connect.transforms.MaskField$Value".into(),
                settings: BTreeMap::from([("fields".into(), ConfigScalar::Text("email".into()))]),
            }],
            errors: Some(ConnectErrors {
                tolerance: Some(ErrorTolerance::All),
                log: Some(true),
                dead_letter_topic: Some("cdc.dlq".into()),
                context_headers: None,
                retry_timeout_ms: Some(5000),
            }),
            tags: vec![],
        }
    }

    #[test]
    fn a_connector_becomes_connects_properties() {
        let p = properties(&def(ConnectorKind::Sink), &["a".into(), "b".into()], 3);
        let want = [
            ("connector.class", "io.debezium.connector.postgresql.PostgresConnector"),
            ("tasks.max", "1"),
            ("database.port", "5432"),
            ("database.password", "{{ env_var('PW') }}"),
            ("tombstones.on.delete", "false"),
            ("topics", "a,b"),
            ("transforms", "mask"),
            ("transforms.mask.type", "org.apache.kafka.connect.transforms.MaskField$Value"),
            ("transforms.mask.fields", "email"),
            ("errors.tolerance", "all"),
            ("errors.log.enable", "true"),
            ("errors.log.include.messages", "true"),
            ("errors.deadletterqueue.topic.name", "cdc.dlq"),
            ("errors.deadletterqueue.topic.replication.factor", "3"),
            ("errors.deadletterqueue.context.headers.enable", "true"),
            ("errors.retry.timeout", "5000"),
        ];
        let want: BTreeMap<String, String> = want.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(p, want);
        assert!(!properties(&def(ConnectorKind::Source), &[], 1).contains_key("topics"));
    }

    #[test]
    fn differences_mask_secrets_and_ignore_the_name() {
        let actual = BTreeMap::from([
            ("name".to_string(), "cdc".to_string()),
            ("database.password".to_string(), "hunter2".to_string()),
            ("transforms.mask.fields".to_string(), "email".to_string()),
            ("old".to_string(), "1".to_string()),
        ]);
        let desired = BTreeMap::from([
            ("database.password".to_string(), "hunter3".to_string()),
            ("transforms.mask.fields".to_string(), "email,phone".to_string()),
            ("connection.url".to_string(), "http://u:hunter4@h".to_string()),
        ]);
        let lines: Vec<String> = differences(&actual, &desired).into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            lines,
            [
                "connection.url: added, http://u:<redacted>@h",
                "database.password: changed (secret, not shown)",
                "old: removed (was 1)",
                "transforms.mask.fields: email → email,phone",
            ]
        );
        assert_eq!(scrub("bad password hunter2!", &actual), "bad password <redacted>!");
    }

    #[test]
    fn reserved_keys_name_the_field_to_use() {
        assert_eq!(reserved("connector.class", ConnectorKind::Source), Some("`class:`"));
        assert_eq!(reserved("transforms.x.type", ConnectorKind::Source), Some("`transforms:`"));
        assert_eq!(reserved("errors.tolerance", ConnectorKind::Sink), Some("`errors:`"));
        assert!(reserved("topics", ConnectorKind::Sink).is_some());
        assert_eq!(reserved("topics", ConnectorKind::Source), None);
        assert_eq!(reserved("database.hostname", ConnectorKind::Source), None);
        assert!(is_secret_key("database.password") && !is_secret_key("database.user"));
    }
}
