//! The dependency graph: sources → models → sinks (petgraph). Built from what each model's
//! template referenced, so an unknown `ref()` or a cycle is reported at the `ref()` call.

pub(crate) mod select;

use std::collections::BTreeMap;
use std::fmt;

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::{Deserialize, Serialize};

/// A node's identity, printed dbt-style as `source.soe.orders`, `model.x`, `sink.y`,
/// `connector.z` (a Kafka Connect connector).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum NodeId {
    Source(String),
    Model(String),
    Sink(String),
    Connector(String),
}

impl NodeId {
    pub fn name(&self) -> &str {
        match self {
            NodeId::Source(n) | NodeId::Model(n) | NodeId::Sink(n) | NodeId::Connector(n) => n,
        }
    }

    pub fn resource_type(&self) -> &'static str {
        match self {
            NodeId::Source(_) => "source",
            NodeId::Model(_) => "model",
            NodeId::Sink(_) => "sink",
            NodeId::Connector(_) => "connector",
        }
    }

    pub fn unique_id(&self) -> String {
        format!("{}.{}", self.resource_type(), self.name())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.unique_id())
    }
}

/// An edge's origin in the dependent's file: byte offset of the `ref()` / `source()` call.
#[derive(Debug, Clone, Copy, Default)]
pub struct EdgeAt(pub Option<usize>);

#[derive(Debug, Default, Clone)]
pub struct Graph {
    pub g: DiGraph<NodeId, EdgeAt>,
    index: BTreeMap<NodeId, NodeIndex>,
}

impl Graph {
    pub fn add_node(&mut self, id: NodeId) -> NodeIndex {
        if let Some(i) = self.index.get(&id) {
            return *i;
        }
        let i = self.g.add_node(id.clone());
        self.index.insert(id, i);
        i
    }

    /// `from` is an input of `to`.
    pub fn add_edge(&mut self, from: &NodeId, to: &NodeId, at: EdgeAt) {
        let (a, b) = (self.add_node(from.clone()), self.add_node(to.clone()));
        if self.g.find_edge(a, b).is_none() {
            self.g.add_edge(a, b, at);
        }
    }

    pub fn contains(&self, id: &NodeId) -> bool {
        self.index.contains_key(id)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeId> {
        self.index.keys()
    }

    /// Direct inputs of a node, sorted.
    pub fn parents(&self, id: &NodeId) -> Vec<NodeId> {
        self.neighbors(id, Direction::Incoming)
    }

    /// Direct consumers of a node, sorted.
    pub fn children(&self, id: &NodeId) -> Vec<NodeId> {
        self.neighbors(id, Direction::Outgoing)
    }

    fn neighbors(&self, id: &NodeId, dir: Direction) -> Vec<NodeId> {
        let Some(i) = self.index.get(id) else { return Vec::new() };
        let mut v: Vec<NodeId> = self.g.neighbors_directed(*i, dir).map(|n| self.g[n].clone()).collect();
        v.sort();
        v
    }

    /// Every node upstream (`Incoming`) or downstream (`Outgoing`) of `id`, not including it.
    pub fn closure(&self, id: &NodeId, dir: Direction) -> Vec<NodeId> {
        let Some(start) = self.index.get(id) else { return Vec::new() };
        let mut seen = std::collections::BTreeSet::new();
        let mut stack = vec![*start];
        while let Some(n) = stack.pop() {
            for m in self.g.neighbors_directed(n, dir) {
                if seen.insert(m) {
                    stack.push(m);
                }
            }
        }
        seen.remove(start);
        let mut v: Vec<NodeId> = seen.into_iter().map(|n| self.g[n].clone()).collect();
        v.sort();
        v
    }

    /// Nodes in dependency order (inputs first), ties broken by id for stable output; `Err` with
    /// the cycles when there are any.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, Vec<Vec<(NodeId, EdgeAt)>>> {
        if toposort(&self.g, None).is_err() {
            return Err(self.cycles());
        }
        // Kahn's algorithm with a sorted ready set: deterministic whatever the insertion order.
        let mut indegree: BTreeMap<NodeIndex, usize> =
            self.g.node_indices().map(|n| (n, self.g.neighbors_directed(n, Direction::Incoming).count())).collect();
        let mut ready: std::collections::BTreeSet<(NodeId, NodeIndex)> =
            indegree.iter().filter(|(_, d)| **d == 0).map(|(n, _)| (self.g[*n].clone(), *n)).collect();
        let mut order = Vec::new();
        while let Some(first) = ready.iter().next().cloned() {
            ready.remove(&first);
            order.push(first.0);
            for m in self.g.neighbors_directed(first.1, Direction::Outgoing) {
                let d = indegree.get_mut(&m).expect("every node has an in-degree");
                *d -= 1;
                if *d == 0 {
                    ready.insert((self.g[m].clone(), m));
                }
            }
        }
        Ok(order)
    }

    /// One cycle per strongly connected component with more than one node (or a self loop),
    /// as the list of (node, where it references the next node).
    pub fn cycles(&self) -> Vec<Vec<(NodeId, EdgeAt)>> {
        let mut out = Vec::new();
        for scc in tarjan_scc(&self.g) {
            let self_loop = scc.len() == 1 && self.g.find_edge(scc[0], scc[0]).is_some();
            if scc.len() < 2 && !self_loop {
                continue;
            }
            let members: std::collections::BTreeSet<NodeIndex> = scc.iter().copied().collect();
            // Start at the smallest id so the report is stable, then walk inside the component.
            let start = *scc.iter().min_by_key(|n| self.g[**n].clone()).expect("non-empty");
            let path = self.cycle_from(start, &members);
            out.push(path);
        }
        out.sort_by(|a, b| a[0].0.cmp(&b[0].0));
        out
    }

    /// A path start → ... → start inside `members`, by depth-first search.
    fn cycle_from(&self, start: NodeIndex, members: &std::collections::BTreeSet<NodeIndex>) -> Vec<(NodeId, EdgeAt)> {
        let mut stack: Vec<(NodeIndex, Vec<NodeIndex>)> = vec![(start, vec![start])];
        let mut visited = std::collections::BTreeSet::new();
        while let Some((n, path)) = stack.pop() {
            let mut next: Vec<_> =
                self.g.edges_directed(n, Direction::Outgoing).filter(|e| members.contains(&e.target())).collect();
            next.sort_by_key(|e| std::cmp::Reverse(self.g[e.target()].clone()));
            for e in next {
                if e.target() == start {
                    // Edge weights live on edges a→b and say where b references a.
                    let mut full = path.clone();
                    full.push(start);
                    return full
                        .windows(2)
                        .map(|w| {
                            let at = self.g.find_edge(w[0], w[1]).map(|e| self.g[e]).unwrap_or_default();
                            (self.g[w[0]].clone(), at)
                        })
                        .collect();
                }
                if visited.insert(e.target()) {
                    let mut p = path.clone();
                    p.push(e.target());
                    stack.push((e.target(), p));
                }
            }
        }
        vec![(self.g[start].clone(), EdgeAt(None))]
    }

    pub fn edges(&self) -> Vec<(NodeId, NodeId)> {
        let mut v: Vec<(NodeId, NodeId)> =
            self.g.edge_references().map(|e| (self.g[e.source()].clone(), self.g[e.target()].clone())).collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(n: &str) -> NodeId {
        NodeId::Model(n.into())
    }

    #[test]
    fn topological_order_is_stable() {
        let mut g = Graph::default();
        g.add_edge(&NodeId::Source("s.t".into()), &m("b"), EdgeAt(None));
        g.add_edge(&m("b"), &m("c"), EdgeAt(None));
        g.add_edge(&NodeId::Source("s.t".into()), &m("a"), EdgeAt(None));
        let order: Vec<String> = g.topo_order().unwrap().iter().map(|n| n.to_string()).collect();
        assert_eq!(order, ["source.s.t", "model.a", "model.b", "model.c"]);
    }

    #[test]
    fn cycles_are_reported_with_their_path() {
        let mut g = Graph::default();
        g.add_edge(&m("a"), &m("b"), EdgeAt(Some(1)));
        g.add_edge(&m("b"), &m("c"), EdgeAt(Some(2)));
        g.add_edge(&m("c"), &m("a"), EdgeAt(Some(3)));
        g.add_edge(&m("c"), &m("d"), EdgeAt(None));
        let cycles = g.topo_order().unwrap_err();
        assert_eq!(cycles.len(), 1);
        let names: Vec<&str> = cycles[0].iter().map(|(n, _)| n.name()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }
}
