//! Kafka's rules for topic names, checked at validate time for every topic streamctl creates or
//! reads (sources, their dead-letter topics, model outputs, checkpoint topics, sinks), so a name
//! the broker would refuse at apply is reported at the place it comes from.

use super::{names, CompiledProject};
use crate::diagnostics::{Diagnostic, Pos};
use crate::project::config::{SinkConnector, SinkOnError};
use crate::project::Origin;

/// Kafka's longest topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Why Kafka would refuse `name` as a topic name, or `None`.
pub fn topic_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a topic name cannot be empty".into());
    }
    if name == "." || name == ".." {
        return Some(format!("`{name}` cannot be a topic name"));
    }
    let len = name.chars().count();
    if len > MAX_TOPIC_NAME_LEN {
        return Some(format!("topic name is {len} characters long; Kafka allows at most {MAX_TOPIC_NAME_LEN}"));
    }
    let bad: String = {
        let mut seen: Vec<char> = Vec::new();
        for c in name.chars().filter(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c))) {
            if !seen.contains(&c) {
                seen.push(c);
            }
        }
        seen.into_iter()
            .map(|c| if c == ' ' { "space".to_string() } else { format!("`{c}`") })
            .collect::<Vec<_>>()
            .join(", ")
    };
    (!bad.is_empty()).then(|| {
        format!("topic name `{name}` has characters Kafka refuses ({bad}): use letters, digits, `.`, `_` and `-`")
    })
}

/// One diagnostic per topic name Kafka would refuse.
pub(crate) fn check(cp: &CompiledProject) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let at_field = |origin: &Origin, field: &str, len: usize, message: String| {
        origin.doc.error_at("topic-name", &format!("{}/{field}", origin.pointer), false, len, message)
    };
    for s in cp.sources.values() {
        let t = &s.decl.table;
        let o = &s.decl.origin;
        if let Some(p) = topic_name_problem(&t.topic) {
            out.push(at_field(o, "topic", t.topic.chars().count(), format!("source `{}`: {p}", s.decl.full_name())));
            continue;
        }
        if let Some(p) = topic_name_problem(&s.dead_letter_topic) {
            let (field, len) = match &t.dead_letter_topic {
                Some(d) => ("dead_letter_topic", d.chars().count()),
                None => ("topic", t.topic.chars().count()),
            };
            let d = at_field(o, field, len, format!("source `{}`: dead-letter {p}", s.decl.full_name()));
            out.push(if t.dead_letter_topic.is_none() {
                d.with_help("the dead-letter topic is the source topic plus `.dlq`: set a shorter `dead_letter_topic:`")
            } else {
                d
            });
        }
    }
    for m in cp.models.values() {
        if let Some(p) = topic_name_problem(&m.topic) {
            out.push(model_topic_diagnostic(cp, m, format!("model `{}`: output {p}", m.name)));
            continue;
        }
        let checkpoint = names::checkpoint_topic(&cp.project.config.name, &m.name);
        if let Some(p) = topic_name_problem(&checkpoint) {
            out.push(
                Diagnostic::error("topic-name", format!("model `{}`: checkpoint {p}", m.name))
                    .at(&m.file, Pos::new(1, 1, 1))
                    .with_help(format!(
                        "the checkpoint topic is `{checkpoint}`, made of the project and model names: shorten the \
                         model's file name"
                    )),
            );
        }
    }
    for s in &cp.project.sinks {
        let model_topic = cp.models.get(&s.sink.from).map(|m| m.topic.as_str());
        if let (SinkOnError::DeadLetter, Some(model_topic)) = (s.sink.on_error, model_topic) {
            let dlq = names::sink_dead_letter_topic(s.sink.dead_letter_topic.as_deref(), model_topic, &s.sink.name);
            if let Some(p) = topic_name_problem(&dlq) {
                let d = match &s.sink.dead_letter_topic {
                    Some(t) => at_field(
                        &s.origin,
                        "dead_letter_topic",
                        t.chars().count(),
                        format!("sink `{}`: {p}", s.sink.name),
                    ),
                    None => at_field(
                        &s.origin,
                        "on_error",
                        "dead_letter".len(),
                        format!("sink `{}`: dead-letter {p}", s.sink.name),
                    )
                    .with_help(format!("the dead-letter topic is `{dlq}`: set a shorter `dead_letter_topic:`")),
                };
                out.push(d);
            }
        }
        let SinkConnector::Kafka { topic, .. } = &s.sink.connector else { continue };
        if let Some(p) = topic_name_problem(topic) {
            out.push(at_field(
                &s.origin,
                "connector/topic",
                topic.chars().count(),
                format!("sink `{}`: {p}", s.sink.name),
            ));
        }
    }
    out
}

/// Points at where the model's topic is set: the `topic=` in its `config()`, its properties
/// file, the project's model defaults, or (the default, its name) its file.
fn model_topic_diagnostic(cp: &CompiledProject, m: &super::CompiledModel, message: String) -> Diagnostic {
    let len = m.topic.chars().count();
    let text = &m.file.text;
    for quote in ['\'', '"'] {
        if let Some(i) = text.find(&format!("{quote}{}{quote}", m.topic)) {
            let (line, column) = m.file.pos_of(i + 1);
            return Diagnostic::error("topic-name", message).at(&m.file, Pos::new(line, column, len));
        }
    }
    if let Some(p) = cp.project.model_props.get(&m.name).filter(|p| p.props.config.topic.is_some()) {
        return p.origin.doc.error_at("topic-name", &format!("{}/config/topic", p.origin.pointer), false, len, message);
    }
    if cp.project.config.models.topic.is_some() {
        return cp.project.config_doc.error_at("topic-name", "/models/topic", false, len, message);
    }
    Diagnostic::error("topic-name", message).at(&m.file, Pos::new(1, 1, 1)).with_help(format!(
        "the output topic defaults to the model's name (its file name); set topic= in config() or rename {}",
        m.file.path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_topic_name_rules() {
        assert_eq!(topic_name_problem("soe.orders-agg_hourly"), None);
        assert_eq!(topic_name_problem(&"a".repeat(249)), None);
        assert_eq!(
            topic_name_problem(&"a".repeat(250)),
            Some("topic name is 250 characters long; Kafka allows at most 249".into())
        );
        assert_eq!(topic_name_problem(".."), Some("`..` cannot be a topic name".into()));
        assert_eq!(
            topic_name_problem("my orders/ü!"),
            Some(
                "topic name `my orders/ü!` has characters Kafka refuses (space, `/`, `ü`, `!`): use letters, digits, \
                 `.`, `_` and `-`"
                    .into()
            )
        );
    }
}
