//! The dependency graph of models (from their rendered `ref()` and `source()` calls) and its
//! cycles.

use std::collections::{BTreeMap, BTreeSet};

use super::Compiler;
use crate::diagnostics::{pos_of, suggest, Diagnostic, Pos};
use crate::graph::{EdgeAt, Graph, NodeId};
use crate::jinja::Rendered;
use crate::project::connectors::ConnectorKind;

impl Compiler<'_> {
    /// The graph, and the models with references that resolve to nothing (not planned: their
    /// SQL would only fail again on the missing table).
    pub(super) fn build_graph(&mut self, rendered: &BTreeMap<String, Rendered>) -> (Graph, BTreeSet<String>) {
        let mut g = Graph::default();
        let mut unresolved = BTreeSet::new();
        for s in &self.project.sources {
            g.add_node(NodeId::Source(s.full_name()));
        }
        let model_names: Vec<&str> = self.project.models.iter().map(|m| m.name.as_str()).collect();
        for m in &self.project.models {
            g.add_node(NodeId::Model(m.name.clone()));
        }
        let source_names: Vec<String> = self.project.sources.iter().map(|s| s.full_name()).collect();
        for m in &self.project.models {
            let Some(r) = rendered.get(&m.name) else { continue };
            let me = NodeId::Model(m.name.clone());
            let at = |off: Option<usize>, len: usize| {
                let (line, col) = off.map(|o| pos_of(&m.source.text, o)).unwrap_or((1, 1));
                Pos::new(line, col, len)
            };
            for (name, off) in &r.captured.refs {
                if model_names.contains(&name.as_str()) {
                    g.add_edge(&NodeId::Model(name.clone()), &me, EdgeAt(*off));
                } else {
                    unresolved.insert(m.name.clone());
                    let mut d = Diagnostic::error("unknown-ref", format!("`ref('{name}')`: no model named `{name}`"))
                        .at(&m.source, at(*off, name.chars().count() + 2));
                    if let Some(s) = suggest(name, model_names.iter().copied()) {
                        d = d.with_help(format!("did you mean `{s}`?"));
                    } else if source_names.iter().any(|s| s.ends_with(&format!(".{name}"))) {
                        d = d.with_help(format!("`{name}` is a source: use `source('<group>', '{name}')`"));
                    }
                    self.diags.push(d);
                }
            }
            for ((group, table), off) in &r.captured.sources {
                let full = format!("{group}.{table}");
                if source_names.contains(&full) {
                    g.add_edge(&NodeId::Source(full), &me, EdgeAt(*off));
                } else {
                    unresolved.insert(m.name.clone());
                    if self.project.broken_source_files > 0 {
                        // The table is most likely in the source file that did not load.
                        continue;
                    }
                    let mut d = Diagnostic::error(
                        "unknown-source",
                        format!("`source('{group}', '{table}')`: no source table `{full}`"),
                    )
                    .at(&m.source, at(*off, group.chars().count() + 2));
                    if let Some(s) = suggest(&full, source_names.iter().map(String::as_str)) {
                        let (sg, st) = s.split_once('.').unwrap_or((s, ""));
                        d = d.with_help(format!("did you mean `source('{sg}', '{st}')`?"));
                    }
                    self.diags.push(d);
                }
            }
        }
        for s in &self.project.sinks {
            let me = NodeId::Sink(s.sink.name.clone());
            if model_names.contains(&s.sink.from.as_str()) {
                g.add_edge(&NodeId::Model(s.sink.from.clone()), &me, EdgeAt(None));
            } else {
                g.add_node(me);
                let mut d = s.origin.error(
                    "unknown-ref",
                    "from",
                    format!("sink `{}` reads from `{}`, which is not a model", s.sink.name, s.sink.from),
                );
                if let Some(x) = suggest(&s.sink.from, model_names.iter().copied()) {
                    d = d.with_help(format!("did you mean `{x}`?"));
                }
                self.diags.push(d);
            }
        }
        self.connector_edges(&mut g, &model_names);
        (g, unresolved)
    }

    /// A source connector comes before the sources that read the topics it writes; a sink
    /// connector after the models it reads.
    fn connector_edges(&mut self, g: &mut Graph, model_names: &[&str]) {
        for c in &self.project.connectors {
            let def = &c.connector;
            let me = NodeId::Connector(def.name.clone());
            g.add_node(me.clone());
            for s in &self.project.sources {
                if def.kind == ConnectorKind::Source && def.topics.contains(&s.table.topic) {
                    g.add_edge(&me, &NodeId::Source(s.full_name()), EdgeAt(None));
                }
            }
            if def.kind != ConnectorKind::Sink {
                continue;
            }
            for (i, m) in def.from.iter().enumerate() {
                if model_names.contains(&m.as_str()) {
                    g.add_edge(&NodeId::Model(m.clone()), &me, EdgeAt(None));
                    continue;
                }
                let pointer = format!("{}/from/{i}", c.origin.pointer);
                let mut d = c.origin.doc.error_at(
                    "unknown-ref",
                    &pointer,
                    false,
                    m.chars().count().max(1),
                    format!("connector `{}` reads from `{m}`, which is not a model", def.name),
                );
                if let Some(x) = suggest(m, model_names.iter().copied()) {
                    d = d.with_help(format!("did you mean `{x}`?"));
                }
                self.diags.push(d);
            }
        }
    }

    pub(super) fn report_cycles(&mut self, cycles: &[Vec<(NodeId, EdgeAt)>]) {
        for cycle in cycles {
            let mut names: Vec<&str> = cycle.iter().map(|(n, _)| n.name()).collect();
            names.push(cycle[0].0.name());
            // Point at the reference that closes the cycle, in the first model.
            let (first, _) = &cycle[0];
            let (last, at) = &cycle[cycle.len() - 1];
            let file = self.project.models.iter().find(|m| m.name == first.name());
            let mut d = Diagnostic::error("cycle", format!("dependency cycle: {}", names.join(" → ")));
            if let Some(f) = file {
                match at.0 {
                    Some(off) => {
                        let (line, col) = pos_of(&f.source.text, off);
                        d = d.at(&f.source, Pos::new(line, col, last.name().chars().count() + 2));
                    }
                    None => d = d.in_file(&f.source),
                }
            }
            self.diags.push(d.with_help("a model cannot depend on itself, directly or through other models"));
        }
    }
}
