//! dbt's node selection syntax: `m`, `+m` (m and everything upstream), `m+` (downstream),
//! `2+m` / `m+1` (bounded depth), `tag:x`, `path:models/x`, `source:soe.orders`,
//! `resource_type:model`, `*`; terms separated by spaces are a union, by commas an intersection.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use petgraph::Direction;

use super::{Graph, NodeId};

/// What selection needs to know of a node besides its id.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub tags: Vec<String>,
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SelectError(pub String);

impl std::fmt::Display for SelectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Depth of a `+`: none, unbounded, or at most n steps.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Depth {
    None,
    All,
    Steps(usize),
}

fn split_plus(atom: &str) -> (Depth, &str, Depth) {
    let mut s = atom;
    let mut up = Depth::None;
    if let Some(p) = s.find('+') {
        let digits = &s[..p];
        if digits.chars().all(|c| c.is_ascii_digit()) {
            up = if digits.is_empty() { Depth::All } else { Depth::Steps(digits.parse().unwrap_or(0)) };
            s = &s[p + 1..];
        }
    }
    let mut down = Depth::None;
    if let Some(p) = s.rfind('+') {
        let digits = &s[p + 1..];
        if digits.chars().all(|c| c.is_ascii_digit()) {
            down = if digits.is_empty() { Depth::All } else { Depth::Steps(digits.parse().unwrap_or(0)) };
            s = &s[..p];
        }
    }
    (up, s, down)
}

fn walk(graph: &Graph, from: &NodeId, dir: Direction, depth: Depth) -> Vec<NodeId> {
    match depth {
        Depth::None => Vec::new(),
        Depth::All => graph.closure(from, dir),
        Depth::Steps(n) => {
            let mut frontier = vec![from.clone()];
            let mut seen = BTreeSet::new();
            for _ in 0..n {
                let mut next = Vec::new();
                for f in &frontier {
                    let neighbors = if dir == Direction::Incoming { graph.parents(f) } else { graph.children(f) };
                    for x in neighbors {
                        if seen.insert(x.clone()) {
                            next.push(x);
                        }
                    }
                }
                frontier = next;
            }
            seen.into_iter().collect()
        }
    }
}

fn matches_method(id: &NodeId, info: &NodeInfo, method: &str, value: &str) -> Result<bool, SelectError> {
    Ok(match method {
        "tag" => info.tags.iter().any(|t| t == value),
        "path" => {
            let want = PathBuf::from(value.trim_end_matches('/'));
            info.path.as_ref().is_some_and(|p| p.starts_with(&want))
        }
        "source" => match id {
            NodeId::Source(n) => n == value || n.split('.').next() == Some(value),
            _ => false,
        },
        "model" => matches!(id, NodeId::Model(n) if n == value),
        "sink" => matches!(id, NodeId::Sink(n) if n == value),
        "connector" => matches!(id, NodeId::Connector(n) if n == value),
        "resource_type" => id.resource_type() == value,
        other => {
            return Err(SelectError(format!(
            "unknown selector method `{other}:` (use tag:, path:, source:, model:, sink:, connector:, resource_type:)"
        )))
        }
    })
}

/// Nodes selected by one atom such as `+tag:fraud`.
fn select_atom(graph: &Graph, info: &BTreeMap<NodeId, NodeInfo>, atom: &str) -> Result<BTreeSet<NodeId>, SelectError> {
    let (up, core, down) = split_plus(atom);
    if core.is_empty() {
        return Err(SelectError(format!("selector `{atom}` names nothing")));
    }
    let empty = NodeInfo::default();
    let mut base = BTreeSet::new();
    for id in graph.nodes() {
        let ni = info.get(id).unwrap_or(&empty);
        let hit = if core == "*" {
            true
        } else if let Some((method, value)) = core.split_once(':') {
            matches_method(id, ni, method, value)?
        } else {
            id.name() == core
        };
        if hit {
            base.insert(id.clone());
        }
    }
    // One rule for every selector, names and methods alike: one that matches nothing is a
    // mistake (a typo in CI must not select nothing and pass).
    if base.is_empty() && core != "*" {
        let (typed, candidates): (&str, Vec<String>) = match core.split_once(':') {
            Some(("tag", v)) => (v, info.values().flat_map(|i| i.tags.iter().cloned()).collect()),
            Some((_, v)) => (v, graph.nodes().map(|n| n.name().to_string()).collect()),
            None => (core, graph.nodes().map(|n| n.name().to_string()).collect()),
        };
        let hint = crate::diagnostics::suggest(typed, candidates.iter().map(String::as_str))
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(SelectError(format!("selector `{atom}` matches no node{hint}")));
    }
    let mut out = base.clone();
    for id in &base {
        out.extend(walk(graph, id, Direction::Incoming, up));
        out.extend(walk(graph, id, Direction::Outgoing, down));
    }
    Ok(out)
}

/// Nodes selected by `--select` words (each word may hold spaces: they are split too).
pub fn select(
    graph: &Graph,
    info: &BTreeMap<NodeId, NodeInfo>,
    selectors: &[String],
) -> Result<BTreeSet<NodeId>, SelectError> {
    let terms: Vec<&str> = selectors.iter().flat_map(|s| s.split_whitespace()).collect();
    if terms.is_empty() {
        return Ok(graph.nodes().cloned().collect());
    }
    let mut union = BTreeSet::new();
    for term in terms {
        let mut acc: Option<BTreeSet<NodeId>> = None;
        for atom in term.split(',') {
            let s = select_atom(graph, info, atom)?;
            acc = Some(match acc {
                None => s,
                Some(a) => a.intersection(&s).cloned().collect(),
            });
        }
        union.extend(acc.unwrap_or_default());
    }
    Ok(union)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::EdgeAt;

    fn graph() -> (Graph, BTreeMap<NodeId, NodeInfo>) {
        let s = NodeId::Source("soe.orders".into());
        let (a, b, c) = (NodeId::Model("a".into()), NodeId::Model("b".into()), NodeId::Model("c".into()));
        let mut g = Graph::default();
        g.add_edge(&s, &a, EdgeAt(None));
        g.add_edge(&a, &b, EdgeAt(None));
        g.add_edge(&b, &c, EdgeAt(None));
        let mut info = BTreeMap::new();
        info.insert(a.clone(), NodeInfo { tags: vec!["x".into()], path: Some("models/a.sql".into()) });
        info.insert(b.clone(), NodeInfo { tags: vec!["x".into(), "y".into()], path: Some("models/sub/b.sql".into()) });
        info.insert(c, NodeInfo { tags: vec![], path: Some("models/sub/c.sql".into()) });
        (g, info)
    }

    fn names(g: &Graph, info: &BTreeMap<NodeId, NodeInfo>, sel: &str) -> Vec<String> {
        select(g, info, &[sel.to_string()]).unwrap().iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn selection_methods() {
        let (g, i) = graph();
        assert_eq!(names(&g, &i, "b"), ["model.b"]);
        assert_eq!(names(&g, &i, "+b"), ["source.soe.orders", "model.a", "model.b"]);
        assert_eq!(names(&g, &i, "a+"), ["model.a", "model.b", "model.c"]);
        assert_eq!(names(&g, &i, "a+1"), ["model.a", "model.b"]);
        assert_eq!(names(&g, &i, "1+c"), ["model.b", "model.c"]);
        assert_eq!(names(&g, &i, "tag:x"), ["model.a", "model.b"]);
        assert_eq!(names(&g, &i, "tag:x,path:models/sub"), ["model.b"]);
        assert_eq!(names(&g, &i, "tag:y c"), ["model.b", "model.c"]);
        assert_eq!(names(&g, &i, "source:soe+1"), ["source.soe.orders", "model.a"]);
        assert_eq!(names(&g, &i, "resource_type:source"), ["source.soe.orders"]);
    }

    #[test]
    fn unknown_names_are_errors() {
        let (g, i) = graph();
        let e = select(&g, &i, &["bb".to_string()]).unwrap_err();
        assert_eq!(e.0, "selector `bb` matches no node (did you mean `b`?)");
        assert!(select(&g, &i, &["colour:red".to_string()]).is_err());
    }
}
