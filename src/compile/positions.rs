//! Positions of SQL problems: a place in the rendered SQL mapped back into the model file, and
//! DataFusion's and the streaming planner's errors turned into positioned diagnostics.

use datafusion::error::DataFusionError;

use super::{streaming, Compiler};
use crate::diagnostics::{pos_of, suggest, Diagnostic, Pos};
use crate::jinja::Rendered;
use crate::project::ModelFile;

impl Compiler<'_> {
    /// A diagnostic at a (line, column) of the rendered SQL, mapped back into the model file.
    pub(super) fn at_rendered(
        &self,
        file: &ModelFile,
        r: &Rendered,
        line: usize,
        column: usize,
        len: usize,
        d: Diagnostic,
    ) -> Diagnostic {
        let out = crate::diagnostics::offset_of(&r.sql, line, column);
        let src = r.map.source_offset(out);
        let (l, c) = pos_of(&file.source.text, src);
        // Inside expanded Jinja the length in the rendered text means nothing in the file.
        let len = if r.map.is_verbatim(out) { len } else { 1 };
        d.at(&file.source, Pos::new(l, c, len))
    }

    /// Position of the first occurrence of an identifier or keyword (as a whole word) in the SQL.
    pub(super) fn find_word(sql: &str, word: &str) -> Option<(usize, usize)> {
        let lower = sql.to_lowercase();
        let w = word.to_lowercase();
        let mut from = 0;
        while let Some(i) = lower[from..].find(&w) {
            let s = from + i;
            let e = s + w.len();
            let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
            if boundary(lower[..s].chars().next_back()) && boundary(lower[e..].chars().next()) {
                return Some(pos_of(sql, s));
            }
            from = e;
        }
        None
    }

    /// A rejection of the streaming planner, at the first of its words found in the SQL.
    pub(super) fn rejection_diag(
        &self,
        file: &ModelFile,
        r: &Rendered,
        rejection: &streaming::Rejection,
    ) -> Diagnostic {
        let d = Diagnostic::error("streaming", rejection.message.clone()).with_help(rejection.help.clone());
        for word in rejection.at {
            if let Some((l, c)) = Self::find_word(&r.sql, word) {
                return self.at_rendered(file, r, l, c, word.len(), d);
            }
        }
        self.at_rendered(file, r, 1, 1, 1, d)
    }

    /// Every problem a DataFusion error holds (it collects several, e.g. one per SELECT item).
    pub(super) fn datafusion_diags(&self, file: &ModelFile, r: &Rendered, e: &DataFusionError) -> Vec<Diagnostic> {
        let mut top = e;
        while let DataFusionError::Context(_, inner) = top {
            top = inner;
        }
        top.iter().map(|one| self.datafusion_diag(file, r, one)).collect()
    }

    pub(super) fn datafusion_diag(&self, file: &ModelFile, r: &Rendered, e: &DataFusionError) -> Diagnostic {
        let root = e.find_root();
        let mut message = match e.diagnostic() {
            Some(d) => d.message.clone(),
            None => clean_df_message(&root.strip_backtrace()),
        };
        let mut help: Vec<String> = Vec::new();
        if let Some(d) = e.diagnostic() {
            help.extend(d.helps.iter().map(|h| h.message.clone()));
            help.extend(d.notes.iter().map(|n| n.message.clone()));
        }
        // Position: the diagnostic's span, else the parser's "Line: x, Column: y", else a name
        // from the message found in the SQL.
        let span = e.diagnostic().and_then(|d| d.span).filter(|s| s.start.line > 0);
        let (mut line, mut col, mut len) = (0, 0, 1);
        if let Some(s) = span {
            line = s.start.line as usize;
            col = s.start.column as usize;
            if s.end.line == s.start.line {
                len = (s.end.column as usize).saturating_sub(col).max(1);
            }
        } else if let Some((l, c)) = parser_location(&root.strip_backtrace()) {
            line = l;
            col = c;
        } else if let Some(name) = quoted_name(&root.strip_backtrace()) {
            if let Some((l, c)) = Self::find_word(&r.sql, &name) {
                line = l;
                col = c;
                len = name.chars().count();
            }
        }
        if let DataFusionError::SQL(parser_error, _) = root {
            use datafusion::sql::sqlparser::parser::ParserError;
            let inner = match parser_error.as_ref() {
                ParserError::ParserError(s) | ParserError::TokenizerError(s) => s.clone(),
                other => other.to_string(),
            };
            message = format!("SQL syntax error: {}", strip_location(&inner));
        }
        // DataFusion's "no function matches" error lists every signature tried, then the useful
        // sentence and the candidates: keep the sentence, turn the candidates into a hint.
        if let Some(i) = message.find("No function matches the given name and argument types") {
            let rest = &message[i..];
            let (sentence, candidates) = match rest.find("Candidate functions:") {
                Some(j) => (&rest[..j], Some(&rest[j + "Candidate functions:".len()..])),
                None => (rest, None),
            };
            let sentence = sentence.trim().to_string();
            if let Some(c) = candidates {
                let list: Vec<&str> = c.split_whitespace().collect();
                help.push(format!("candidates: {}", list.join(", ")));
            }
            message = sentence;
        }
        if let Some((name, first, second)) = duplicate_projection(&message) {
            let plain = name.chars().all(|c| c.is_alphanumeric() || c == '_');
            message = if plain {
                format!("output columns {first} and {second} are both named `{name}`")
            } else {
                format!("output columns {first} and {second} are the same expression without a name")
            };
            help = vec!["give one of them another name with AS".into()];
            let word = if plain { name.as_str() } else { "SELECT" };
            if let (0, Some((l, c))) = (line, Self::find_word(&r.sql, word)) {
                (line, col, len) = (l, c, word.chars().count());
            }
        }
        if let DataFusionError::SchemaError(schema_err, _) = root {
            if let datafusion::common::SchemaError::FieldNotFound { field, valid_fields } = schema_err.as_ref() {
                let names: Vec<String> = valid_fields.iter().map(|c| c.name.clone()).collect();
                message = format!("unknown column `{}`", field.name);
                help.clear();
                if let Some(s) = suggest(&field.name, names.iter().map(String::as_str)) {
                    help.push(format!("did you mean `{s}`?"));
                } else if !names.is_empty() {
                    let mut uniq: Vec<String> = names.clone();
                    uniq.sort();
                    uniq.dedup();
                    help.push(format!("available columns: {}", uniq.join(", ")));
                }
                if line == 0 {
                    if let Some((l, c)) = Self::find_word(&r.sql, &field.name) {
                        line = l;
                        col = c;
                        len = field.name.chars().count();
                    }
                }
            }
        }
        let code = match root {
            DataFusionError::SQL(..) => "sql-syntax",
            _ => "sql-plan",
        };
        let mut d = Diagnostic::error(code, message);
        if !help.is_empty() {
            d = d.with_help(help.join("; "));
        }
        if line > 0 {
            self.at_rendered(file, r, line, col, len, d)
        } else {
            d.in_file(&file.source)
        }
    }
}

/// "at Line: 3, Column: 5" in sqlparser messages.
fn parser_location(msg: &str) -> Option<(usize, usize)> {
    let i = msg.rfind("Line: ")?;
    let rest = &msg[i + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let col: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((line.trim().parse().ok()?, col.parse().ok()?))
}

fn strip_location(msg: &str) -> String {
    match msg.rfind(" at Line: ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// The first `'quoted'` or `"quoted"` name in a message.
fn quoted_name(msg: &str) -> Option<String> {
    for q in ['\'', '"', '`'] {
        if let Some(i) = msg.find(q) {
            if let Some(j) = msg[i + 1..].find(q) {
                let name = &msg[i + 1..i + 1 + j];
                if !name.is_empty() && !name.contains(' ') {
                    return Some(name.split('.').next_back().unwrap_or(name).to_string());
                }
            }
        }
    }
    None
}

/// DataFusion's messages without the internal prefixes users do not need.
fn clean_df_message(msg: &str) -> String {
    let mut m = msg.trim().to_string();
    for prefix in ["Error during planning: ", "Schema error: ", "SQL error: ", "This feature is not implemented: "] {
        if let Some(rest) = m.strip_prefix(prefix) {
            m = rest.to_string();
        }
    }
    m
}

/// DataFusion's `Projections require unique expression names but the expression "a AS x" at
/// position 0 and "b AS x" at position 1 have the same name`: the name, and the two columns
/// counted from 1.
fn duplicate_projection(message: &str) -> Option<(String, usize, usize)> {
    let rest = message.split("Projections require unique expression names but the expression \"").nth(1)?;
    let (first_expr, rest) = rest.split_once("\" at position ")?;
    let (first_pos, rest) = rest.split_once(" and \"")?;
    let (_, rest) = rest.split_once("\" at position ")?;
    let second_pos: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let name = match first_expr.rsplit_once(" AS ") {
        Some((_, alias)) => alias.to_string(),
        None => first_expr.rsplit('.').next().unwrap_or(first_expr).to_string(),
    };
    Some((name.to_lowercase(), first_pos.trim().parse::<usize>().ok()? + 1, second_pos.parse::<usize>().ok()? + 1))
}
