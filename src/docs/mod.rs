//! Lineage for people: Mermaid and DOT text, and a static HTML page (rendered from
//! `templates/docs/index.html`) with the graph drawn as inline SVG, so it opens offline.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::compile::manifest::{Manifest, ManifestNode};
use crate::graph::NodeId;

fn mermaid_id(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

/// `flowchart LR` with one node per source/model/sink.
pub fn mermaid(m: &Manifest) -> String {
    let mut s = String::from("flowchart LR\n");
    for (id, n) in &m.nodes {
        let (open, close) = match n.resource_type.as_str() {
            "source" => ("[(", ")]"),
            "sink" => ("[/", "/]"),
            "connector" => ("{{", "}}"),
            _ => ("[", "]"),
        };
        let _ = writeln!(s, "  {}{open}\"{}\"{close}", mermaid_id(id), n.name);
    }
    for [a, b] in &m.edges {
        let _ = writeln!(s, "  {} --> {}", mermaid_id(a), mermaid_id(b));
    }
    s
}

/// Graphviz DOT, left to right.
pub fn dot(m: &Manifest) -> String {
    let mut s = String::from("digraph lineage {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n");
    for (id, n) in &m.nodes {
        let shape = match n.resource_type.as_str() {
            "source" => "cylinder",
            "sink" => "parallelogram",
            "connector" => "hexagon",
            _ => "box",
        };
        let _ = writeln!(s, "  \"{id}\" [label=\"{}\", shape={shape}];", n.name.replace('"', "\\\""));
    }
    for [a, b] in &m.edges {
        let _ = writeln!(s, "  \"{a}\" -> \"{b}\";");
    }
    s.push_str("}\n");
    s
}

#[derive(Debug, Clone, Serialize)]
struct SvgNode {
    id: String,
    anchor: String,
    name: String,
    kind: String,
    x: i64,
    y: i64,
}

#[derive(Debug, Clone, Serialize)]
struct SvgEdge {
    path: String,
}

const NODE_W: i64 = 200;
const NODE_H: i64 = 40;
const COL_GAP: i64 = 80;
const ROW_GAP: i64 = 24;

/// Layered layout: a node's column is the length of the longest path reaching it.
fn layout(m: &Manifest) -> (Vec<SvgNode>, Vec<SvgEdge>, i64, i64) {
    let mut layer: BTreeMap<&str, i64> = BTreeMap::new();
    for id in &m.order {
        let l = m.nodes[id].depends_on.iter().filter_map(|d| layer.get(d.as_str())).max().map_or(0, |l| l + 1);
        layer.insert(id, l);
    }
    for id in m.nodes.keys() {
        layer.entry(id).or_insert(0);
    }
    let mut rows: BTreeMap<i64, i64> = BTreeMap::new();
    let mut pos: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    let mut nodes = Vec::new();
    // Sources first, then models, then sinks, each in deploy order.
    let mut ids: Vec<&String> = m.order.iter().collect();
    for id in m.nodes.keys() {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    // Column by column, each node near the rows of what it reads (fewer crossing arrows).
    let mut by_column: BTreeMap<i64, Vec<&String>> = BTreeMap::new();
    for id in ids {
        by_column.entry(layer[id.as_str()]).or_default().push(id);
    }
    let mut placed: Vec<&String> = Vec::new();
    let mut row_of: BTreeMap<&str, f64> = BTreeMap::new();
    for column in by_column.values_mut() {
        let centre = |id: &String| {
            let parents: Vec<f64> =
                m.nodes[id].depends_on.iter().filter_map(|d| row_of.get(d.as_str()).copied()).collect();
            if parents.is_empty() {
                f64::MAX
            } else {
                parents.iter().sum::<f64>() / parents.len() as f64
            }
        };
        let mut keyed: Vec<(f64, &String)> = column.iter().map(|id| (centre(id), *id)).collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (i, (_, id)) in keyed.into_iter().enumerate() {
            row_of.insert(id.as_str(), i as f64);
            placed.push(id);
        }
    }
    for id in placed {
        let col = layer[id.as_str()];
        let row = rows.entry(col).or_insert(0);
        let (x, y) = (20 + col * (NODE_W + COL_GAP), 20 + *row * (NODE_H + ROW_GAP));
        *row += 1;
        pos.insert(id, (x, y));
        let n = &m.nodes[id];
        nodes.push(SvgNode {
            id: id.clone(),
            anchor: mermaid_id(id),
            name: n.name.clone(),
            kind: n.resource_type.clone(),
            x,
            y,
        });
    }
    let edges = m
        .edges
        .iter()
        .filter_map(|[a, b]| {
            let (ax, ay) = pos.get(a.as_str())?;
            let (bx, by) = pos.get(b.as_str())?;
            let (x1, y1, x2, y2) = (ax + NODE_W, ay + NODE_H / 2, *bx, by + NODE_H / 2);
            let mid = (x1 + x2) / 2;
            Some(SvgEdge { path: format!("M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}") })
        })
        .collect();
    let width = pos.values().map(|(x, _)| x + NODE_W + 20).max().unwrap_or(200);
    let height = pos.values().map(|(_, y)| y + NODE_H + 20).max().unwrap_or(100);
    (nodes, edges, width, height)
}

/// The HTML page: lineage picture, then each node with its SQL and columns.
pub fn html(m: &Manifest, compiled_sql: &BTreeMap<String, String>) -> Result<String, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.add_template("index.html", include_str!("../../templates/docs/index.html"))?;
    env.add_filter("anchor", |id: String| mermaid_id(&id));
    env.add_filter("in_words", |operator: String| operator_in_words(&operator).to_string());
    let (nodes, edges, width, height) = layout(m);
    let details: Vec<serde_json::Value> = m
        .order
        .iter()
        .chain(m.nodes.keys().filter(|k| !m.order.contains(k)))
        .map(|id| {
            let n = &with_inherited_column_docs(m, &m.nodes[id]);
            serde_json::json!({
                "id": id,
                "anchor": mermaid_id(id),
                "node": n,
                "sql": compiled_sql.get(id),
                "consumers": m.edges.iter().filter(|[a, _]| a == id).map(|[_, b]| b.clone()).collect::<Vec<_>>(),
            })
        })
        .collect();
    env.get_template("index.html")?.render(minijinja::context! {
        project => &m.project,
        version => &m.project_version,
        svg_nodes => minijinja::value::Serde(nodes),
        svg_edges => minijinja::value::Serde(edges),
        width => width,
        height => height,
        node_w => NODE_W,
        node_h => NODE_H,
        nodes => minijinja::value::Serde(details),
    })
}

/// A sink delivers its model's columns: where the sink does not describe a column, the model's
/// description of it is shown.
fn with_inherited_column_docs(m: &Manifest, node: &ManifestNode) -> ManifestNode {
    let mut node = node.clone();
    if node.resource_type != "sink" {
        return node;
    }
    let upstream: Vec<&ManifestNode> = node.depends_on.iter().filter_map(|d| m.nodes.get(d)).collect();
    for column in node.columns.iter_mut().filter(|c| c.description.is_none()) {
        column.description = upstream
            .iter()
            .flat_map(|u| &u.columns)
            .find(|c| c.name.eq_ignore_ascii_case(&column.name))
            .and_then(|c| c.description.clone());
    }
    node
}

/// The manifest's operator names as a reader of the page says them.
fn operator_in_words(operator: &str) -> &str {
    match operator {
        "stateless" => "filter and projection",
        "stream_table_join" => "stream-table join",
        "windowed_aggregate" => "windowed aggregation",
        "aggregate" => "running aggregation",
        other => other,
    }
}

/// Unique id → rendered SQL, for the page.
pub fn compiled_sql(c: &crate::compile::CompiledProject) -> BTreeMap<String, String> {
    c.models.iter().map(|(n, m)| (NodeId::Model(n.clone()).unique_id(), m.rendered_sql.trim().to_string())).collect()
}
