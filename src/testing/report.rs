//! How test outcomes are shown: a line per test, a table diff per failure, JUnit XML for CI.

use std::fmt::Write;

use serde_json::{Map, Value};

use super::{Failure, Outcome};
use crate::project::location_of;

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "null".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Rows as an aligned table with a marker column (`-` expected only, `+` actual only).
fn table(columns: &[String], rows: &[(&str, &Map<String, Value>)]) -> String {
    let get = |r: &Map<String, Value>, c: &str| cell(r.iter().find(|(k, _)| k.eq_ignore_ascii_case(c)).map(|(_, v)| v));
    let widths: Vec<usize> = columns
        .iter()
        .map(|c| rows.iter().map(|(_, r)| get(r, c).chars().count()).max().unwrap_or(0).max(c.chars().count()))
        .collect();
    let line = |mark: &str, cells: Vec<String>| {
        let mut s = format!("      {mark} │");
        for (c, w) in cells.iter().zip(&widths) {
            let _ = write!(s, " {c:<w$} │");
        }
        s.push('\n');
        s
    };
    let mut out = line(" ", columns.to_vec());
    for (mark, r) in rows {
        out.push_str(&line(mark, columns.iter().map(|c| get(r, c)).collect()));
    }
    out
}

pub fn describe(f: &Failure) -> String {
    match f {
        Failure::Rows { columns, missing, unexpected } => {
            let mut rows: Vec<(&str, &Map<String, Value>)> = missing.iter().map(|r| ("-", r)).collect();
            rows.extend(unexpected.iter().map(|r| ("+", r)));
            format!(
                "    rows differ ({} expected but not produced: -, {} produced but not expected: +)\n{}",
                missing.len(),
                unexpected.len(),
                table(columns, &rows)
            )
        }
        Failure::Order { columns, expected, actual } => {
            let mut s = format!("    the sequence differs: expected {} rows in this order\n", expected.len());
            s.push_str(&table(columns, &expected.iter().map(|r| (" ", r)).collect::<Vec<_>>()));
            let _ = writeln!(s, "    produced {} rows:", actual.len());
            s.push_str(&table(columns, &actual.iter().map(|r| (" ", r)).collect::<Vec<_>>()));
            s
        }
        Failure::Count { what, expected, actual } => format!("    expected {expected} {what}, got {actual}\n"),
        Failure::BatchDependence { batch, only_first, only_other } => {
            let mut s = format!("    the result depends on batch boundaries: with {batch} the end state differs from one record per batch\n");
            for r in only_first {
                let _ = writeln!(s, "      - {r}");
            }
            for r in only_other {
                let _ = writeln!(s, "      + {r}");
            }
            s
        }
        Failure::Error(e) => format!("    error: {e}\n"),
    }
}

pub fn title(o: &Outcome) -> String {
    format!("{} › {}", o.test.test.model, o.test.test.name)
}

/// The text report for people.
pub fn text(outcomes: &[Outcome]) -> String {
    let mut s = String::new();
    for o in outcomes {
        if o.passed() {
            let _ = writeln!(s, "  PASS  {}", title(o));
        } else {
            let _ = writeln!(s, "  FAIL  {}  ({})", title(o), location_of(&o.test.origin));
            for f in &o.failures {
                s.push_str(&describe(f));
            }
        }
    }
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let _ = writeln!(s, "\ntests: {} passed, {} failed", outcomes.len() - failed, failed);
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// JUnit XML, one testsuite per model.
pub fn junit(outcomes: &[Outcome]) -> String {
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let total: f64 = outcomes.iter().map(|o| o.elapsed.as_secs_f64()).sum();
    let mut s = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"streamctl\" tests=\"{}\" failures=\"{failed}\" time=\"{total:.3}\">\n",
        outcomes.len()
    );
    let mut models: Vec<&str> = outcomes.iter().map(|o| o.test.test.model.as_str()).collect();
    models.dedup();
    models.sort();
    models.dedup();
    for m in models {
        let mine: Vec<&Outcome> = outcomes.iter().filter(|o| o.test.test.model == m).collect();
        let f = mine.iter().filter(|o| !o.passed()).count();
        let _ = writeln!(s, "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\">", xml_escape(m), mine.len());
        for o in mine {
            let _ = write!(
                s,
                "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\" time=\"{:.3}\"",
                xml_escape(m),
                xml_escape(&o.test.test.name),
                xml_escape(&o.test.origin.doc.source.path.display().to_string()),
                o.elapsed.as_secs_f64()
            );
            if o.passed() {
                s.push_str("/>\n");
            } else {
                let body: String = o.failures.iter().map(describe).collect();
                let first = body.lines().next().unwrap_or("failed").trim().to_string();
                let _ = write!(
                    s,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    xml_escape(&first),
                    xml_escape(&body)
                );
            }
        }
        s.push_str("  </testsuite>\n");
    }
    s.push_str("</testsuites>\n");
    s
}
