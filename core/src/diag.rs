//! Diagnostics: errors and warnings that point into the policy file.
//!
//! Every problem found while reading, resolving or compiling a policy becomes a [`Diagnostic`]
//! with a stable code, a byte [`Span`], a label and usually a hint. They are collected, never
//! thrown one at a time, so a user fixes a file in one pass. Rendering (miette's graphical
//! report, with `file:line:column`) is done by [`Diagnostic::render`].

use std::fmt;
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use serde::Serialize;

/// A byte range in the policy source.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, PartialOrd, Ord, Serialize)]
pub struct Span {
    /// Byte offset of the first byte.
    pub offset: usize,
    /// Length in bytes (may be zero for a position).
    pub len: usize,
}

impl Span {
    /// A span from `offset` of `len` bytes.
    pub fn new(offset: usize, len: usize) -> Self {
        Self { offset, len }
    }
}

impl From<Span> for SourceSpan {
    fn from(s: Span) -> Self {
        SourceSpan::new(s.offset.into(), s.len)
    }
}

/// A policy file: its display name and text.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// What the user called it (the path as given).
    pub name: String,
    /// The whole text (for a file that is not UTF-8: with U+FFFD for each bad sequence).
    pub text: Arc<str>,
    /// Byte offset of the first byte that is not UTF-8, for a file that is not.
    pub not_utf8_at: Option<usize>,
    /// The file starts with a UTF-16 byte-order mark.
    pub utf16: bool,
}

/// The longest policy, baseline or plan file perimeter reads: 16 MiB. A longer file is
/// refused before it is parsed (`input::too-large`).
pub const MAX_INPUT_BYTES: u64 = 16 * 1024 * 1024;

/// The most diagnostics the text report renders; JSON reports every one.
pub const MAX_RENDERED: usize = 100;

impl SourceFile {
    /// Wraps a name and text.
    pub fn new(name: impl Into<String>, text: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
            not_utf8_at: None,
            utf16: false,
        }
    }

    /// Wraps a file's bytes. Bytes that are not UTF-8 are kept as U+FFFD so that every
    /// position can still be shown; [`crate::policy::load`] reports the first of them.
    pub fn from_bytes(name: impl Into<String>, bytes: Vec<u8>) -> Self {
        let utf16 = bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]);
        match String::from_utf8(bytes) {
            Ok(text) => Self::new(name, text),
            Err(e) => {
                let at = e.utf8_error().valid_up_to();
                // Control bytes (UTF-16's zeros) become spaces, byte for byte, so the excerpt
                // shown with the error prints cleanly and every offset stays where it was.
                let text: String = String::from_utf8_lossy(e.as_bytes())
                    .chars()
                    .map(|c| {
                        if c.is_control() && !"\n\r\t".contains(c) {
                            ' '
                        } else {
                            c
                        }
                    })
                    .collect();
                // The replacement character is 3 bytes: map the offset into the lossy text.
                let lossy_at = String::from_utf8_lossy(&e.as_bytes()[..at]).len();
                Self {
                    name: name.into(),
                    text: text.into(),
                    not_utf8_at: Some(lossy_at),
                    utf16,
                }
            }
        }
    }

    /// 1-based line and 1-based column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..floor_char_boundary(&self.text, offset)];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        (line, col)
    }
}

/// A window of a long line around a span.
struct Window {
    text: String,
    caret_at: usize,
    caret_len: usize,
}

/// Lines up to this many characters are rendered whole.
const LONG_LINE: usize = 240;
/// Characters shown on each side of the column in a long line's window.
const WINDOW_SIDE: usize = 40;

fn long_line_window(source: &SourceFile, span: Span) -> Option<Window> {
    let text = &source.text;
    let at = floor_char_boundary(text, span.offset.min(text.len()));
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line = &text[start..end];
    if line.chars().count() <= LONG_LINE && span.len <= LONG_LINE {
        return None;
    }
    let column = text[start..at].chars().count();
    let first = column.saturating_sub(WINDOW_SIDE);
    let span_chars = text[at..floor_char_boundary(text, (at + span.len).min(end))]
        .chars()
        .count();
    let shown: String = line
        .chars()
        .skip(first)
        .take(2 * WINDOW_SIDE + span_chars.min(WINDOW_SIDE))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let more = line.chars().count() > first + shown.chars().count();
    let prefix = if first > 0 { "…" } else { "" };
    Some(Window {
        text: format!("{prefix}{shown}{}", if more { "…" } else { "" }),
        caret_at: column - first + prefix.chars().count(),
        caret_len: span_chars.min(WINDOW_SIDE),
    })
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// How bad a diagnostic is.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The policy cannot be used.
    Error,
    /// The policy works but probably not as meant.
    Warning,
}

/// One problem in a policy, located in the source.
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Stable machine-readable code, e.g. `policy::unknown-key`.
    pub code: &'static str,
    /// One line saying what is wrong (lowercase, no trailing period).
    pub message: String,
    /// Where (absent for problems with no place in the file).
    pub span: Option<Span>,
    /// What the marked text is or what was expected there.
    pub label: String,
    /// How to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error at `span`.
    pub fn error(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            message: message.into(),
            span: Some(span),
            label: String::new(),
            help: None,
        }
    }

    /// A warning at `span`: the policy is usable, but probably not as meant.
    pub fn warning(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, span, message)
        }
    }

    /// Sets the label shown under the marked text.
    #[must_use]
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Sets the hint.
    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// `file:line:column` of the diagnostic, or the file name alone.
    pub fn location(&self, source: &SourceFile) -> String {
        match self.span {
            Some(span) => {
                let (line, col) = source.line_col(span.offset);
                format!("{}:{line}:{col}", source.name)
            }
            None => source.name.clone(),
        }
    }

    /// Renders the diagnostic with a source excerpt. `color` selects ANSI styling.
    pub fn render(&self, source: &SourceFile, color: bool) -> String {
        if let Some(window) = self.span.and_then(|s| long_line_window(source, s)) {
            return self.render_window(source, &window);
        }
        let theme = if color {
            GraphicalTheme::unicode()
        } else {
            GraphicalTheme::unicode_nocolor()
        };
        let handler = GraphicalReportHandler::new_themed(theme).with_context_lines(1);
        let report = Located {
            diag: self,
            source: NamedSource::new(&source.name, source.text.clone()),
        };
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = handler.render_report(&mut out, &report);
        // miette shows the location inside the box; a plain first line is easier to grep in
        // CI logs and is what editors jump to.
        format!(
            "{}: {}[{}]: {}\n{out}",
            self.location(source),
            self.severity_word(),
            self.code,
            self.message
        )
    }

    /// A diagnostic on a very long line: the header, a window of the line around the column
    /// with a caret under the span, the label and the help. (The graphical renderer formats
    /// columns into a fixed-width field and lays out the whole line.)
    fn render_window(&self, source: &SourceFile, window: &Window) -> String {
        let mut out = format!(
            "{}: {}[{}]: {}\n  │ {}\n  │ {}{} {}\n",
            self.location(source),
            self.severity_word(),
            self.code,
            self.message,
            window.text,
            " ".repeat(window.caret_at),
            "^".repeat(window.caret_len.max(1)),
            self.label
        );
        if let Some(help) = &self.help {
            out.push_str(&format!("  help: {help}\n"));
        }
        out
    }

    fn severity_word(&self) -> &'static str {
        match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

/// A diagnostic together with its source, as miette wants it.
struct Located<'a> {
    diag: &'a Diagnostic,
    source: NamedSource<Arc<str>>,
}

impl fmt::Debug for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.diag, f)
    }
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diag.message)
    }
}

impl std::error::Error for Located<'_> {}

impl miette::Diagnostic for Located<'_> {
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diag
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.diag
            .span
            .map(|_| &self.source as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.diag.span?;
        let label = (!self.diag.label.is_empty()).then(|| self.diag.label.clone());
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(
            label, span,
        ))))
    }
}

/// Every diagnostic found in one policy. Non-empty when returned as an error.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    /// Adds one.
    pub fn push(&mut self, d: Diagnostic) {
        self.0.push(d);
    }

    /// True when any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(Diagnostic::is_error)
    }

    /// Number of errors.
    pub fn error_count(&self) -> usize {
        self.0.iter().filter(|d| d.is_error()).count()
    }

    /// Sorts by position so the report reads top to bottom.
    pub fn sort(&mut self) {
        self.0
            .sort_by_key(|d| d.span.map_or((usize::MAX, 0), |s| (s.offset, s.len)));
    }

    /// Every diagnostic as JSON (`validate --format json`, docs/cli.md), in order.
    pub fn json(&self, source: &SourceFile) -> serde_json::Value {
        let list: Vec<serde_json::Value> = self
            .0
            .iter()
            .map(|d| {
                let (line, column) = d.span.map_or((0, 0), |s| source.line_col(s.offset));
                serde_json::json!({
                    "severity": d.severity,
                    "code": d.code,
                    "message": d.message,
                    "file": source.name,
                    "line": line,
                    "column": column,
                    "label": d.label,
                    "help": d.help,
                })
            })
            .collect();
        serde_json::Value::Array(list)
    }

    /// Renders the first [`MAX_RENDERED`] of them, then how many more there are, then a count
    /// line: time linear in the number of diagnostics, whatever the file.
    pub fn render(&self, source: &SourceFile, color: bool) -> String {
        let mut out = String::new();
        for d in self.0.iter().take(MAX_RENDERED) {
            out.push_str(&d.render(source, color));
            out.push('\n');
        }
        if self.0.len() > MAX_RENDERED {
            out.push_str(&format!(
                "… and {} more not shown here (`perimeter validate {} --format json` lists every one)\n",
                self.0.len() - MAX_RENDERED,
                source.name
            ));
        }
        let errors = self.error_count();
        let warnings = self.0.len() - errors;
        out.push_str(&format!(
            "{}: {} error{}, {} warning{}\n",
            source.name,
            errors,
            if errors == 1 { "" } else { "s" },
            warnings,
            if warnings == 1 { "" } else { "s" }
        ));
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} problem(s) in the policy", self.0.len())
    }
}

impl std::error::Error for Diagnostics {}

/// The closest candidate to `word` by edit distance, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let src = SourceFile::new("p.yaml", "a: 1\nbé: x\n");
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(5), (2, 1));
        // "bé: " is 5 bytes but 4 characters.
        assert_eq!(src.line_col(10), (2, 5));
    }

    #[test]
    fn suggestions_only_for_near_misses() {
        let keys = ["ingress", "egress", "networks"];
        assert_eq!(did_you_mean("ingres", keys), Some("ingress"));
        assert_eq!(did_you_mean("netwrks", keys), Some("networks"));
        assert_eq!(did_you_mean("zzz", keys), None);
    }
}
