//! YAML → JSON values with positions.
//!
//! Project files are validated against JSON Schemas, whose errors name a JSON pointer
//! (`/sources/0/tables/2/kind`). To turn that into `file:line:col` we parse the YAML once with an
//! event parser that reports positions, and keep, for every node, where its value (and its key,
//! for mapping entries) starts.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// 1-based line and column of each node, by JSON pointer.
#[derive(Debug, Default, Clone)]
pub struct PositionIndex {
    values: HashMap<String, (usize, usize)>,
    keys: HashMap<String, (usize, usize)>,
}

impl PositionIndex {
    /// Where the value at `pointer` starts; falls back to the closest ancestor.
    pub fn value(&self, pointer: &str) -> (usize, usize) {
        let mut p = pointer.to_string();
        loop {
            if let Some(pos) = self.values.get(&p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p.truncate(i),
                None => return (1, 1),
            }
        }
    }

    /// Where the key of the mapping entry at `pointer` starts (else its value).
    pub fn key(&self, pointer: &str) -> (usize, usize) {
        self.keys.get(pointer).copied().unwrap_or_else(|| self.value(pointer))
    }
}

#[derive(Debug)]
pub struct YamlError {
    pub message: String,
    pub line: usize,
    pub column: usize,
}

/// A collection being built: its items, its pointer, its anchor id, and (maps) the pending key.
enum Frame {
    Seq(Vec<Value>, String, usize),
    Map(Map<String, Value>, String, usize, Option<String>),
}

struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    anchors: HashMap<usize, Value>,
    index: PositionIndex,
    error: Option<YamlError>,
    documents: usize,
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

impl Builder {
    /// The pointer of the node about to be added.
    fn next_pointer(&self) -> String {
        match self.stack.last() {
            None => String::new(),
            Some(Frame::Seq(items, p, _)) => format!("{p}/{}", items.len()),
            Some(Frame::Map(_, p, _, Some(k))) => format!("{p}/{}", escape_pointer(k)),
            // A key is being read: its pointer is the one of the entry it opens.
            Some(Frame::Map(_, p, _, None)) => p.clone(),
        }
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map(_, _, _, None)))
    }

    fn add(&mut self, value: Value, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq(items, _, _)) => items.push(value),
            Some(Frame::Map(map, _, _, key)) => {
                if let Some(k) = key.take() {
                    map.insert(k, value);
                }
            }
        }
    }

    fn fail(&mut self, message: String, mark: Marker) {
        if self.error.is_none() {
            self.error = Some(YamlError { message, line: mark.line(), column: mark.col() + 1 });
        }
    }
}

fn scalar_value(text: &str, style: TScalarStyle) -> Value {
    if style != TScalarStyle::Plain {
        return Value::String(text.to_string());
    }
    // YAML 1.2 core schema resolution of plain scalars.
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    let looks_numeric = text.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'-' || b == b'+' || b == b'.')
        && !text.contains(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E');
    if looks_numeric {
        if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(text.to_string())
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let pos = (mark.line(), mark.col() + 1);
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.fail("a project file holds one YAML document; found a second one".into(), mark);
                }
            }
            Event::Scalar(text, style, anchor, _) => {
                if self.expecting_key() {
                    let pointer = self.next_pointer();
                    if let Some(Frame::Map(map, _, _, key)) = self.stack.last_mut() {
                        let k = text.clone();
                        let entry = format!("{pointer}/{}", escape_pointer(&k));
                        if map.contains_key(&k) {
                            self.fail(format!("duplicate key `{k}`"), mark);
                            return;
                        }
                        *key = Some(k);
                        self.index.keys.insert(entry, pos);
                    }
                } else {
                    let pointer = self.next_pointer();
                    self.index.values.insert(pointer, pos);
                    self.add(scalar_value(&text, style), anchor);
                }
            }
            Event::Alias(id) => {
                if self.expecting_key() {
                    self.fail("aliases cannot be used as mapping keys".into(), mark);
                    return;
                }
                let pointer = self.next_pointer();
                self.index.values.insert(pointer, pos);
                let v = self.anchors.get(&id).cloned().unwrap_or(Value::Null);
                self.add(v, 0);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.expecting_key() {
                    self.fail("complex mapping keys are not supported".into(), mark);
                    return;
                }
                let pointer = self.next_pointer();
                self.index.values.insert(pointer.clone(), pos);
                let frame = if matches!(ev, Event::SequenceStart(..)) {
                    Frame::Seq(Vec::new(), pointer, anchor)
                } else {
                    Frame::Map(Map::new(), pointer, anchor, None)
                };
                self.stack.push(frame);
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (value, anchor) = match self.stack.pop() {
                    Some(Frame::Seq(items, _, anchor)) => (Value::Array(items), anchor),
                    Some(Frame::Map(map, _, anchor, _)) => (Value::Object(map), anchor),
                    None => return,
                };
                self.add(value, anchor);
            }
            _ => {}
        }
    }
}

/// Parses one YAML document into a JSON value and the position of every node.
pub fn parse(text: &str) -> Result<(Value, PositionIndex), YamlError> {
    let mut builder = Builder {
        stack: Vec::new(),
        root: None,
        anchors: HashMap::new(),
        index: PositionIndex::default(),
        error: None,
        documents: 0,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        let m = e.marker();
        return Err(YamlError { message: e.info().to_string(), line: m.line(), column: m.col() + 1 });
    }
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok((builder.root.unwrap_or(Value::Null), builder.index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_and_positions() {
        let text = "name: demo\nsources:\n  - name: soe\n    tables:\n      - {name: a, partitions: 3}\n";
        let (v, idx) = parse(text).unwrap();
        assert_eq!(
            v,
            json!({"name": "demo", "sources": [{"name": "soe", "tables": [{"name": "a", "partitions": 3}]}]})
        );
        assert_eq!(idx.value("/name"), (1, 7));
        assert_eq!(idx.key("/sources/0/tables"), (4, 5));
        assert_eq!(idx.value("/sources/0/tables/0/partitions"), (5, 31));
        assert_eq!(idx.key("/sources/0/tables/0/partitions"), (5, 19));
        // Unknown pointers fall back to the nearest ancestor.
        assert_eq!(idx.value("/sources/0/tables/0/nope"), (5, 9));
    }

    #[test]
    fn scalars_follow_the_core_schema() {
        let (v, _) = parse("a: 1\nb: '1'\nc: 1.5\nd: yes\ne: ~\nf: true\ng: 1 HOUR\n").unwrap();
        assert_eq!(v, json!({"a": 1, "b": "1", "c": 1.5, "d": "yes", "e": null, "f": true, "g": "1 HOUR"}));
    }

    #[test]
    fn anchors_and_aliases() {
        let (v, _) = parse("base: &b {x: 1}\nother: *b\nlist: &l [1, 2]\nl2: *l\n").unwrap();
        assert_eq!(v, json!({"base": {"x": 1}, "other": {"x": 1}, "list": [1, 2], "l2": [1, 2]}));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.line >= 1, "{e:?}");
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!((e.line, e.column, e.message.as_str()), (2, 1, "duplicate key `a`"));
    }
}
