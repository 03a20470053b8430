//! Problems found in a project, with the file and position they come from.
//!
//! Every stage (YAML, Jinja, SQL, graph, contracts) reports into one [`Diagnostics`] list instead
//! of returning on the first error, so a single `streamctl validate` shows everything that is
//! wrong. Rendering goes through miette for people and through serde for `--format json`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// A position in a file: 1-based line and column (columns count characters), plus the length
/// of the highlighted text in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
    #[serde(skip)]
    pub len: usize,
}

impl Pos {
    pub fn new(line: usize, column: usize, len: usize) -> Pos {
        Pos { line, column, len }
    }
}

/// The text of a project file, shared by every diagnostic that points into it.
#[derive(Debug, Clone)]
pub struct SourceText {
    pub path: PathBuf,
    pub text: Arc<String>,
}

impl SourceText {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> SourceText {
        SourceText { path: path.into(), text: Arc::new(text.into()) }
    }

    /// Byte offset of a 1-based line/column (column in characters), clamped to the text.
    pub fn offset_of(&self, line: usize, column: usize) -> usize {
        offset_of(&self.text, line, column)
    }

    /// 1-based line and column of a byte offset.
    pub fn pos_of(&self, offset: usize) -> (usize, usize) {
        pos_of(&self.text, offset)
    }
}

pub fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut start = 0;
    for _ in 1..line.max(1) {
        match text[start..].find('\n') {
            Some(i) => start += i + 1,
            None => return text.len(),
        }
    }
    let line_text = &text[start..];
    let line_end = line_text.find('\n').unwrap_or(line_text.len());
    let col_bytes =
        line_text[..line_end].char_indices().nth(column.saturating_sub(1)).map(|(i, _)| i).unwrap_or(line_end);
    start + col_bytes
}

pub fn pos_of(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, before[line_start..].chars().count() + 1)
}

fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// One problem.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// A stable, searchable name for the kind of problem (`unknown-ref`, `sql-plan`, ...).
    pub code: &'static str,
    pub message: String,
    /// Path relative to the project directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub pos: Option<Pos>,
    /// Short text under the highlighted span.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(skip)]
    pub source: Option<SourceText>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            file: None,
            pos: None,
            label: None,
            help: None,
            source: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, message) }
    }

    /// Points the diagnostic at a file, without a position.
    pub fn in_file(mut self, source: &SourceText) -> Diagnostic {
        self.file = Some(source.path.clone());
        self.source = Some(source.clone());
        self
    }

    /// Points the diagnostic at a position of a file.
    pub fn at(mut self, source: &SourceText, pos: Pos) -> Diagnostic {
        self.file = Some(source.path.clone());
        self.source = Some(source.clone());
        self.pos = Some(pos);
        self
    }

    /// Points at a file by path only (no text available to show).
    pub fn at_path(mut self, path: &Path) -> Diagnostic {
        self.file = Some(path.to_path_buf());
        self
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = Some(label.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:col` (or less, when not known).
    pub fn location(&self) -> Option<String> {
        let file = self.file.as_ref()?.display().to_string();
        Some(match self.pos {
            Some(p) => format!("{file}:{}:{}", p.line, p.column),
            None => file,
        })
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location() {
            Some(loc) => write!(f, "{loc}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// Adapter to miette's report trait; the source is named `file:line:col` so the position is
/// printed in the snippet header even when the snippet itself is not shown.
struct MietteView<'a> {
    diag: &'a Diagnostic,
    named: Option<NamedSource<Arc<String>>>,
    span: Option<SourceSpan>,
}

impl fmt::Debug for MietteView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.diag, f)
    }
}

impl fmt::Display for MietteView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.diag.location(), &self.named) {
            // Without a snippet the location has to go into the message itself.
            (Some(loc), None) => write!(f, "{loc}: {}", self.diag.message),
            _ => f.write_str(&self.diag.message),
        }
    }
}

impl std::error::Error for MietteView<'_> {}

impl miette::Diagnostic for MietteView<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.diag.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diag.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.named.as_ref().map(|n| n as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.span?;
        let label = LabeledSpan::new_primary_with_span(self.diag.label.clone(), span);
        Some(Box::new(std::iter::once(label)))
    }
}

/// Renders diagnostics for a terminal (or a log / snapshot when `color` is false).
pub fn render(diag: &Diagnostic, color: bool) -> String {
    let (named, span) = match (&diag.source, diag.pos) {
        (Some(src), Some(pos)) => {
            let start = src.offset_of(pos.line, pos.column);
            let end = offset_of(&src.text, pos.line, pos.column + pos.len.max(1));
            let name = format!("{}:{}:{}", src.path.display(), pos.line, pos.column);
            (
                Some(NamedSource::new(name, src.text.clone())),
                Some(SourceSpan::new(start.into(), end.saturating_sub(start).max(usize::from(end > start)))),
            )
        }
        _ => (None, None),
    };
    let view = MietteView { diag, named, span };
    let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false)
        .without_primary_span_start()
        .with_context_lines(1);
    let mut out = String::new();
    if handler.render_report(&mut out, &view).is_err() {
        out = format!("{diag}\n");
    }
    out
}

/// Every problem found in one run, in the order found.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new() -> Diagnostics {
        Diagnostics::default()
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn extend(&mut self, ds: impl IntoIterator<Item = Diagnostic>) {
        self.items.extend(ds);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.is_error()).count()
    }

    pub fn warning_count(&self) -> usize {
        self.items.len() - self.error_count()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sorted by file and position so output is stable whatever order the stages ran in.
    pub fn sorted(&self) -> Vec<&Diagnostic> {
        let mut v: Vec<&Diagnostic> = self.items.iter().collect();
        v.sort_by(|a, b| (&a.file, a.pos).cmp(&(&b.file, b.pos)));
        v
    }
}

/// Closest candidate by edit distance, for "did you mean" hints.
pub fn suggest<'a>(wanted: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wanted_l = wanted.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(&wanted_l, &c.to_lowercase()), c))
        .filter(|(d, c)| *d <= (c.chars().count().max(wanted.chars().count()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_and_positions_round_trip() {
        let text = "ab\ncdé f\n\nx";
        // `é` is two bytes: the fourth character of line 2 starts at byte 7.
        assert_eq!(offset_of(text, 2, 4), 7);
        assert_eq!(pos_of(text, 7), (2, 4));
        assert_eq!(offset_of(text, 2, 5), 8);
        assert_eq!(pos_of(text, 8), (2, 5));
        assert_eq!(offset_of(text, 9, 1), text.len());
    }

    #[test]
    fn suggestions_pick_the_closest_name() {
        assert_eq!(suggest("custmers", ["orders", "customers", "logon"]), Some("customers"));
        assert_eq!(suggest("zzz", ["orders", "customers"]), None);
    }
}
