//! Reports: what is wrong with a bundle, anchored at the file, line and column to edit.
//!
//! Stage: bundle load, only when something is reported. Input: Cedar's diagnostics and
//! cedargate's own messages. Output: miette [`Report`]s gathered in [`Problems`] (errors refuse
//! the bundle; warnings do not), rendered with source spans by `validate` and as one line each
//! in logs.
//!
//! Invariant: every report names its file when it has one. Cedar's errors carry the text they
//! were parsed from but not the file name, so they are wrapped ([`in_file`]); cedargate's own
//! checks work on positions found again in the text ([`located_at`]).

use std::fmt;

use miette::{Diagnostic, NamedSource, Report, SourceOffset, SourceSpan};

use super::files::BundleFiles;

/// Everything wrong (and worth a warning) with a bundle, rendered with source spans.
#[derive(Debug, Default)]
pub struct Problems {
    pub errors: Vec<Report>,
    pub warnings: Vec<Report>,
}

impl Problems {
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
    pub(crate) fn error(&mut self, r: Report) {
        self.errors.push(r);
    }
    /// Records a warning; it renders as one (⚠) whatever the report's own severity.
    pub(crate) fn warn(&mut self, r: Report) {
        self.warnings.push(Report::new(AsWarning(r)));
    }
    /// One line per problem, for logs.
    pub fn summary(&self) -> String {
        let lines: Vec<String> = self.errors.iter().map(one_line).collect();
        lines.join("; ")
    }
}

/// A report's message with its cause chain and first location, on one line.
pub fn one_line(r: &Report) -> String {
    let mut s = r.to_string();
    let mut cause = r.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    if let Some(help) = r.help() {
        s.push_str(&format!(" (help: {help})"));
    }
    s
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error(s): {}", self.errors.len(), self.summary())
    }
}

impl std::error::Error for Problems {}

/// A message anchored at a place in a file.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
struct Located {
    message: String,
    #[source_code]
    src: NamedSource<String>,
    #[label("here")]
    span: Option<SourceSpan>,
    #[help]
    help: Option<String>,
}

pub(crate) fn located(
    file: &str,
    text: &str,
    needle: Option<&str>,
    message: String,
    help: Option<String>,
) -> Report {
    let span = needle.and_then(|n| text.find(n)).map(|at| {
        let len = needle.map_or(1, str::len).max(1);
        SourceSpan::new(SourceOffset::from(at), len)
    });
    Report::new(Located {
        message,
        src: NamedSource::new(file, text.to_owned()),
        span,
        help,
    })
}

/// A Cedar diagnostic shown against the bundle file it came from.
///
/// Cedar's errors carry the text they were parsed from but not its file name, and miette
/// prefers an error's own source over one attached later (`with_source_code`), so reports
/// said `[6:3]` without saying where. This wrapper supplies the named file instead; the spans
/// are unchanged, since they are offsets into that same text.
struct InFile {
    inner: Box<dyn Diagnostic + Send + Sync + 'static>,
    src: NamedSource<String>,
}

impl fmt::Debug for InFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl fmt::Display for InFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl std::error::Error for InFile {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner.source()
    }
}

impl Diagnostic for InFile {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.inner.code()
    }
    fn severity(&self) -> Option<miette::Severity> {
        self.inner.severity()
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.inner.help()
    }
    fn url<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.inner.url()
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.inner.labels()
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        self.inner.related()
    }
    fn diagnostic_source(&self) -> Option<&dyn Diagnostic> {
        self.inner.diagnostic_source()
    }
}

/// `e` (an error about the combined schema) as a report against the schema file it came from.
/// Cedar's schema errors carry the text of the fragment they were found in; the file is the one
/// whose text has the same bytes under the error's first label.
pub(crate) fn in_schema_file(e: cedar_policy::SchemaError, files: &BundleFiles) -> Report {
    let texts: Vec<(&String, &String)> = files.with_prefix("schema/", ".cedarschema").collect();
    let label = e.labels().and_then(|mut l| l.next());
    let shown = label.as_ref().and_then(|l| {
        let src = e.source_code()?;
        let data = src.read_span(l.inner(), 0, 0).ok()?;
        Some(data.data().to_vec())
    });
    let owner = match (texts.as_slice(), &label, &shown) {
        ([one], _, _) => Some(*one),
        (_, Some(l), Some(bytes)) => texts.iter().copied().find(|(_, t)| {
            t.as_bytes().get(l.offset()..l.offset() + l.len()) == Some(bytes.as_slice())
        }),
        _ => None,
    };
    match owner {
        Some((path, text)) => in_file(e, path, text),
        None => Report::new(e),
    }
}

/// A report shown with warning severity (cedargate's own warnings are built as plain reports).
struct AsWarning(Report);

impl fmt::Debug for AsWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for AsWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for AsWarning {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl Diagnostic for AsWarning {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0.code()
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(miette::Severity::Warning)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0.help()
    }
    fn url<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.0.url()
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.0.source_code()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.0.labels()
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        self.0.related()
    }
    fn diagnostic_source(&self) -> Option<&dyn Diagnostic> {
        self.0.diagnostic_source()
    }
}

/// `e` as a report that names `file` and shows its text.
pub(crate) fn in_file(
    e: impl Diagnostic + Send + Sync + 'static,
    file: &str,
    text: &str,
) -> Report {
    Report::new(InFile {
        inner: Box::new(e),
        src: NamedSource::new(file, text.to_owned()),
    })
}

/// A message anchored at a byte range of a file (or at the whole file when `span` is `None`).
pub(crate) fn located_at(
    file: &str,
    text: &str,
    span: Option<(usize, usize)>,
    message: String,
    help: Option<String>,
) -> Report {
    Report::new(Located {
        message,
        src: NamedSource::new(file, text.to_owned()),
        span: span.map(|(at, len)| SourceSpan::new(SourceOffset::from(at), len.max(1))),
        help,
    })
}
