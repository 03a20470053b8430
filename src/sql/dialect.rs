//! The streaming clauses streamctl adds to DataFusion SQL, in ksqlDB's spelling:
//!
//! ```sql
//! SELECT order_status, COUNT(*) FROM {{ source('soe', 'orders') }}
//! WINDOW TUMBLING (SIZE 1 HOUR, GRACE PERIOD 10 MINUTES)
//! GROUP BY order_status
//! EMIT FINAL
//! ```
//!
//! DataFusion's parser does not know `WINDOW TUMBLING (...)` or `EMIT ...`, so these clauses are
//! recognised on the token stream, turned into a [`WindowSpec`] and [`EmitMode`], and replaced by
//! blanks of the same length. Every other character keeps its line and column, so positions in
//! DataFusion's errors stay valid for the user's file. What the window means for the query (group
//! by window bounds) is then applied to the parsed AST by [`super::rewrite`].

use std::collections::BTreeSet;
use std::fmt;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use serde::{Deserialize, Serialize};

/// A position-carrying error in the SQL text (1-based line and column, length in characters).
#[derive(Debug, Clone, PartialEq)]
pub struct SqlError {
    pub message: String,
    pub line: usize,
    pub column: usize,
    pub len: usize,
    pub help: Option<String>,
}

impl SqlError {
    fn at(tok: &TokenWithSpan, message: impl Into<String>) -> SqlError {
        let (line, column) = (tok.span.start.line as usize, tok.span.start.column as usize);
        let len = if tok.span.end.line == tok.span.start.line {
            (tok.span.end.column as usize).saturating_sub(column).max(1)
        } else {
            1
        };
        SqlError { message: message.into(), line, column, len, help: None }
    }

    fn with_help(mut self, help: impl Into<String>) -> SqlError {
        self.help = Some(help.into());
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size_ms`.
    Tumbling { size_ms: i64 },
    /// Windows of `size_ms` starting every `advance_ms`.
    Hopping { size_ms: i64, advance_ms: i64 },
    /// Windows of activity closed by a gap of `gap_ms` without events for the key.
    Session { gap_ms: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    #[serde(flatten)]
    pub kind: WindowKind,
    /// How long after a window's end late events are still accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grace_ms: Option<i64>,
}

impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            WindowKind::Tumbling { size_ms } => write!(f, "TUMBLING (SIZE {}", fmt_duration(size_ms))?,
            WindowKind::Hopping { size_ms, advance_ms } => {
                write!(f, "HOPPING (SIZE {}, ADVANCE BY {}", fmt_duration(size_ms), fmt_duration(advance_ms))?
            }
            WindowKind::Session { gap_ms } => write!(f, "SESSION ({}", fmt_duration(gap_ms))?,
        }
        if let Some(g) = self.grace_ms {
            write!(f, ", GRACE PERIOD {}", fmt_duration(g))?;
        }
        f.write_str(")")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EmitMode {
    /// An updated row each time a micro-batch changes a result (ksqlDB's default).
    Changes,
    /// One row per window, when the watermark closes it.
    Final,
}

/// The pseudo columns a query may reference; they are added to the tables only when used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PseudoColumn {
    /// Event time, epoch milliseconds (BIGINT), as ksqlDB.
    Rowtime,
    /// Kafka partition of the record (INT).
    Rowpartition,
    /// Kafka offset of the record (BIGINT).
    Rowoffset,
}

impl PseudoColumn {
    pub const ALL: [PseudoColumn; 3] = [PseudoColumn::Rowtime, PseudoColumn::Rowpartition, PseudoColumn::Rowoffset];

    pub fn name(self) -> &'static str {
        match self {
            PseudoColumn::Rowtime => "rowtime",
            PseudoColumn::Rowpartition => "rowpartition",
            PseudoColumn::Rowoffset => "rowoffset",
        }
    }
}

pub const WINDOWSTART: &str = "windowstart";
pub const WINDOWEND: &str = "windowend";

/// A model's SQL with the streaming clauses taken out.
#[derive(Debug, Clone)]
pub struct StreamingSql {
    /// Same length and line layout as the input, streaming clauses blanked.
    pub sql: String,
    pub window: Option<WindowSpec>,
    /// The `WINDOW ...` clause position (line, column) for later errors.
    pub window_pos: Option<(usize, usize)>,
    pub emit: Option<EmitMode>,
    pub emit_pos: Option<(usize, usize)>,
    pub pseudo_columns: BTreeSet<PseudoColumn>,
}

/// The longest duration a window size, advance, gap, grace period or lateness may have: 100
/// years. Event times plus any such duration stay far from the end of `i64` milliseconds, so a
/// window always closes at the latest at the end of input.
pub const MAX_DURATION_MS: i64 = 36_500 * 86_400_000;

/// Parses `1 HOUR`, `10 seconds`, `500 ms`, `2 DAYS` into milliseconds (at most
/// [`MAX_DURATION_MS`]).
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let mut parts = text.split_whitespace();
    let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("expected `<number> <unit>` such as `10 SECONDS`, found `{text}`"));
    };
    if n.is_empty() || !n.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!("`{n}` is not a whole number"));
    }
    let unit_ms = unit_millis(unit).ok_or_else(|| format!("unknown time unit `{unit}`"))?;
    n.parse::<i64>().ok().and_then(|n| n.checked_mul(unit_ms)).filter(|ms| *ms <= MAX_DURATION_MS).ok_or_else(|| {
        format!(
            "`{n} {unit}` is longer than the limit of {} ({} MILLISECONDS, 100 years)",
            fmt_duration(MAX_DURATION_MS),
            MAX_DURATION_MS
        )
    })
}

fn unit_millis(unit: &str) -> Option<i64> {
    Some(match unit.to_uppercase().as_str() {
        "MS" | "MILLISECOND" | "MILLISECONDS" => 1,
        "SECOND" | "SECONDS" => 1_000,
        "MINUTE" | "MINUTES" => 60_000,
        "HOUR" | "HOURS" => 3_600_000,
        "DAY" | "DAYS" => 86_400_000,
        _ => return None,
    })
}

/// Formats milliseconds the way a user would write them (`1 HOUR`, `90 SECONDS`).
pub fn fmt_duration(ms: i64) -> String {
    for (unit, size) in [("DAY", 86_400_000), ("HOUR", 3_600_000), ("MINUTE", 60_000), ("SECOND", 1_000)] {
        if ms != 0 && ms % size == 0 {
            let n = ms / size;
            return format!("{n} {unit}{}", if n == 1 { "" } else { "S" });
        }
    }
    format!("{ms} MILLISECONDS")
}

fn word_is(tok: &TokenWithSpan, kw: &str) -> bool {
    matches!(&tok.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

/// Takes the streaming clauses out of `sql` (already rendered from Jinja).
pub fn extract(sql: &str) -> Result<StreamingSql, SqlError> {
    let dialect = GenericDialect {};
    let tokens: Vec<TokenWithSpan> = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| SqlError {
            message: e.message.clone(),
            line: e.location.line as usize,
            column: e.location.column as usize,
            len: 1,
            help: None,
        })?
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .collect();

    let mut out = StreamingSql {
        sql: sql.to_string(),
        window: None,
        window_pos: None,
        emit: None,
        emit_pos: None,
        pseudo_columns: BTreeSet::new(),
    };
    let mut blanks: Vec<(usize, usize)> = Vec::new();
    let mut depth = 0i32;
    let mut i = 0;
    while i < tokens.len() {
        let tok = &tokens[i];
        match &tok.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::Word(w) => {
                for pc in PseudoColumn::ALL {
                    if w.value.eq_ignore_ascii_case(pc.name()) {
                        out.pseudo_columns.insert(pc);
                    }
                }
            }
            _ => {}
        }
        let opens_window = word_is(tok, "WINDOW")
            && tokens
                .get(i + 1)
                .is_some_and(|t| word_is(t, "TUMBLING") || word_is(t, "HOPPING") || word_is(t, "SESSION"));
        if opens_window {
            if depth != 0 {
                return Err(SqlError::at(tok, "a WINDOW clause is only allowed in the outermost SELECT")
                    .with_help("move the windowed aggregation into its own model and `ref()` it"));
            }
            if out.window.is_some() {
                return Err(SqlError::at(tok, "a query can have only one WINDOW clause"));
            }
            let (spec, end) = parse_window(&tokens, i)?;
            out.window = Some(spec);
            out.window_pos = Some((tok.span.start.line as usize, tok.span.start.column as usize));
            blanks.push((i, end));
            i = end + 1;
            continue;
        }
        if word_is(tok, "EMIT") {
            let mode = match tokens.get(i + 1) {
                Some(t) if word_is(t, "CHANGES") => EmitMode::Changes,
                Some(t) if word_is(t, "FINAL") => EmitMode::Final,
                Some(t) => {
                    return Err(SqlError::at(t, format!("expected CHANGES or FINAL after EMIT, found `{}`", t.token)))
                }
                None => return Err(SqlError::at(tok, "expected CHANGES or FINAL after EMIT")),
            };
            let rest_ok = tokens[i + 2..].iter().all(|t| matches!(t.token, Token::SemiColon | Token::EOF));
            if depth != 0 || !rest_ok {
                return Err(SqlError::at(tok, "EMIT must end the query"));
            }
            out.emit = Some(mode);
            out.emit_pos = Some((tok.span.start.line as usize, tok.span.start.column as usize));
            blanks.push((i, i + 1));
            i += 2;
            continue;
        }
        i += 1;
    }
    for (from, to) in blanks {
        let start = crate::diagnostics::offset_of(
            sql,
            tokens[from].span.start.line as usize,
            tokens[from].span.start.column as usize,
        );
        let end =
            crate::diagnostics::offset_of(sql, tokens[to].span.end.line as usize, tokens[to].span.end.column as usize);
        blank_out(&mut out.sql, start, end);
    }
    Ok(out)
}

/// Replaces a byte range with spaces, keeping newlines and the character count of each line.
fn blank_out(s: &mut String, start: usize, end: usize) {
    let replaced: String = s[start..end].chars().map(|c| if c == '\n' { '\n' } else { ' ' }).collect();
    s.replace_range(start..end, &replaced);
}

/// Parses `WINDOW <kind> ( ... )` starting at `tokens[at]`; returns the spec and the index of
/// the closing parenthesis.
fn parse_window(tokens: &[TokenWithSpan], at: usize) -> Result<(WindowSpec, usize), SqlError> {
    let kind_tok = &tokens[at + 1];
    let kind_name = match &kind_tok.token {
        Token::Word(w) => w.value.to_uppercase(),
        other => return Err(SqlError::at(kind_tok, format!("expected TUMBLING, HOPPING or SESSION, found `{other}`"))),
    };
    if tokens.get(at + 2).is_none_or(|t| t.token != Token::LParen) {
        return Err(SqlError::at(kind_tok, format!("expected `(` after WINDOW {kind_name}")));
    }
    let mut i = at + 3;
    let (mut size, mut advance, mut gap, mut grace) = (None, None, None, None);
    let duration = |i: &mut usize| -> Result<i64, SqlError> {
        let num_tok = tokens.get(*i).ok_or_else(|| SqlError::at(&tokens[*i - 1], "expected a duration"))?;
        let n = match &num_tok.token {
            Token::Number(n, _) => n.clone(),
            other => return Err(SqlError::at(num_tok, format!("expected a number, found `{other}`"))),
        };
        let unit_tok = tokens.get(*i + 1).ok_or_else(|| SqlError::at(num_tok, "expected a time unit"))?;
        let unit = match &unit_tok.token {
            Token::Word(w) => w.value.clone(),
            other => return Err(SqlError::at(unit_tok, format!("expected a time unit, found `{other}`"))),
        };
        *i += 2;
        parse_duration(&format!("{n} {unit}")).map_err(|e| {
            if unit_millis(&unit).is_none() {
                SqlError::at(unit_tok, e).with_help("units: MILLISECONDS, SECONDS, MINUTES, HOURS, DAYS")
            } else {
                SqlError::at(num_tok, e)
            }
        })
    };
    loop {
        let Some(tok) = tokens.get(i) else {
            return Err(SqlError::at(&tokens[at], "WINDOW clause is missing its closing `)`"));
        };
        match &tok.token {
            Token::RParen => break,
            Token::Comma => {
                i += 1;
                continue;
            }
            _ => {}
        }
        if word_is(tok, "SIZE") && kind_name != "SESSION" {
            i += 1;
            size = Some(duration(&mut i)?);
        } else if word_is(tok, "ADVANCE") && kind_name == "HOPPING" {
            if !tokens.get(i + 1).is_some_and(|t| word_is(t, "BY")) {
                return Err(SqlError::at(tok, "expected `ADVANCE BY <duration>`"));
            }
            i += 2;
            advance = Some(duration(&mut i)?);
        } else if word_is(tok, "GRACE") {
            if !tokens.get(i + 1).is_some_and(|t| word_is(t, "PERIOD")) {
                return Err(SqlError::at(tok, "expected `GRACE PERIOD <duration>`"));
            }
            i += 2;
            grace = Some(duration(&mut i)?);
        } else if word_is(tok, "RETENTION") {
            // ksqlDB keeps closed windows for pull queries; here a window's state is dropped when it
            // closes, so a retention would be accepted and mean nothing.
            return Err(SqlError::at(
                tok,
                "RETENTION is not supported: a window's state is kept until the window closes (its end plus the \
                 GRACE PERIOD) and then dropped",
            )
            .with_help("remove RETENTION; to accept later events, set a longer GRACE PERIOD"));
        } else if kind_name == "SESSION" && matches!(tok.token, Token::Number(..)) && gap.is_none() {
            gap = Some(duration(&mut i)?);
        } else {
            let expected = match kind_name.as_str() {
                "TUMBLING" => "SIZE or GRACE PERIOD",
                "HOPPING" => "SIZE, ADVANCE BY or GRACE PERIOD",
                _ => "a gap duration or GRACE PERIOD",
            };
            return Err(SqlError::at(
                tok,
                format!("unexpected `{}` in WINDOW {kind_name}: expected {expected}", tok.token),
            ));
        }
    }
    let close = i;
    let missing = |what: &str| {
        SqlError::at(kind_tok, format!("WINDOW {kind_name} needs {what}")).with_help(match kind_name.as_str() {
            "TUMBLING" => "write WINDOW TUMBLING (SIZE 1 HOUR)",
            "HOPPING" => "write WINDOW HOPPING (SIZE 1 HOUR, ADVANCE BY 10 MINUTES)",
            _ => "write WINDOW SESSION (5 MINUTES)",
        })
    };
    let positive = |ms: i64, what: &str| {
        if ms > 0 {
            Ok(ms)
        } else {
            Err(SqlError::at(kind_tok, format!("WINDOW {kind_name} {what} must be greater than zero")))
        }
    };
    let kind = match kind_name.as_str() {
        "TUMBLING" => WindowKind::Tumbling { size_ms: positive(size.ok_or_else(|| missing("a SIZE"))?, "SIZE")? },
        "HOPPING" => {
            let size_ms = positive(size.ok_or_else(|| missing("a SIZE"))?, "SIZE")?;
            let advance_ms = positive(advance.ok_or_else(|| missing("an ADVANCE BY"))?, "ADVANCE BY")?;
            if advance_ms > size_ms || size_ms % advance_ms != 0 {
                return Err(SqlError::at(kind_tok, "HOPPING window SIZE must be a whole multiple of ADVANCE BY")
                    .with_help("windows are built from panes of ADVANCE BY; for a gap between windows use a filter"));
            }
            WindowKind::Hopping { size_ms, advance_ms }
        }
        _ => WindowKind::Session { gap_ms: positive(gap.ok_or_else(|| missing("a gap duration"))?, "gap")? },
    };
    Ok((WindowSpec { kind, grace_ms: grace }, close))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_out_the_window_and_emit_clauses_keeping_positions() {
        let sql = "SELECT a, COUNT(*)\nFROM t\nWINDOW TUMBLING (SIZE 1 HOUR, GRACE PERIOD 10 MINUTES)\nGROUP BY a\nEMIT FINAL";
        let s = extract(sql).unwrap();
        assert_eq!(s.sql.len(), sql.len());
        assert_eq!(s.sql, format!("SELECT a, COUNT(*)\nFROM t\n{}\nGROUP BY a\n{}", " ".repeat(54), " ".repeat(10)));
        assert_eq!(
            s.window,
            Some(WindowSpec { kind: WindowKind::Tumbling { size_ms: 3_600_000 }, grace_ms: Some(600_000) })
        );
        assert_eq!(s.emit, Some(EmitMode::Final));
        assert_eq!(s.window.unwrap().to_string(), "TUMBLING (SIZE 1 HOUR, GRACE PERIOD 10 MINUTES)");
    }

    #[test]
    fn hopping_and_session_windows() {
        let s = extract("SELECT 1 FROM t WINDOW HOPPING (SIZE 10 SECONDS ADVANCE BY 5 SECONDS) GROUP BY 1").unwrap();
        assert_eq!(s.window.unwrap().kind, WindowKind::Hopping { size_ms: 10_000, advance_ms: 5_000 });
        assert_eq!(s.emit, None);
        let s = extract("SELECT 1 FROM t WINDOW SESSION (30 SECONDS) GROUP BY 1 EMIT CHANGES;").unwrap();
        assert_eq!(s.window.unwrap().kind, WindowKind::Session { gap_ms: 30_000 });
        assert_eq!(s.emit, Some(EmitMode::Changes));
    }

    #[test]
    fn a_named_sql_window_is_left_alone() {
        let sql = "SELECT sum(x) OVER w FROM t WINDOW w AS (PARTITION BY y)";
        let s = extract(sql).unwrap();
        assert_eq!(s.sql, sql);
        assert!(s.window.is_none());
    }

    #[test]
    fn errors_point_at_the_offending_token() {
        let e = extract("SELECT 1 FROM t\nWINDOW TUMBLING (SIZE 1 FORTNIGHT) GROUP BY 1").unwrap_err();
        assert_eq!((e.line, e.column, e.message.as_str()), (2, 25, "unknown time unit `FORTNIGHT`"));
        let e = extract("SELECT 1 FROM t WINDOW HOPPING (SIZE 10 SECONDS) GROUP BY 1").unwrap_err();
        assert_eq!(e.message, "WINDOW HOPPING needs an ADVANCE BY");
        let e =
            extract("SELECT 1 FROM t WINDOW HOPPING (SIZE 10 SECONDS, ADVANCE BY 3 SECONDS) GROUP BY 1").unwrap_err();
        assert_eq!(e.message, "HOPPING window SIZE must be a whole multiple of ADVANCE BY");
        let e = extract("SELECT 1 FROM t EMIT FINAL WHERE x").unwrap_err();
        assert_eq!((e.column, e.message.as_str()), (17, "EMIT must end the query"));
        let e = extract("SELECT * FROM (SELECT 1 FROM t WINDOW TUMBLING (SIZE 1 SECOND))").unwrap_err();
        assert_eq!(e.message, "a WINDOW clause is only allowed in the outermost SELECT");
        let e = extract("SELECT 1 FROM t\nWINDOW TUMBLING (SIZE 1 HOUR, RETENTION 7 DAYS) GROUP BY 1").unwrap_err();
        assert_eq!((e.line, e.column, e.len), (2, 31, 9));
        assert!(e.message.starts_with("RETENTION is not supported"), "{}", e.message);
    }

    #[test]
    fn pseudo_columns_are_noticed() {
        let s = extract("SELECT ROWTIME, l.rowpartition FROM t l").unwrap();
        assert_eq!(
            s.pseudo_columns.into_iter().collect::<Vec<_>>(),
            vec![PseudoColumn::Rowtime, PseudoColumn::Rowpartition]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5 seconds"), Ok(5_000));
        assert_eq!(parse_duration("1 HOUR"), Ok(3_600_000));
        assert!(parse_duration("5").is_err());
        assert_eq!(parse_duration("36500 DAYS"), Ok(MAX_DURATION_MS));
        assert_eq!(
            parse_duration("9223372036854775807 MILLISECONDS"),
            Err("`9223372036854775807 MILLISECONDS` is longer than the limit of 36500 DAYS (3153600000000 MILLISECONDS, \
                 100 years)"
                .into())
        );
        assert_eq!(
            parse_duration("99999999999999999999 DAYS"),
            Err("`99999999999999999999 DAYS` is longer than the limit of 36500 DAYS (3153600000000 MILLISECONDS, 100 \
                 years)"
                .into())
        );
        assert_eq!(parse_duration("1.5 HOURS"), Err("`1.5` is not a whole number".into()));
        assert_eq!(fmt_duration(90_000), "90 SECONDS");
        assert_eq!(fmt_duration(7_200_000), "2 HOURS");
    }
}
