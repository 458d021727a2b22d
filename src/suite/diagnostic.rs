//! Errors that point into a suite file: `file:line:column: message`.

use std::ops::Range;
use std::path::{Path, PathBuf};

/// A suite file that could not be read, parsed or validated.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("{0}; check the suite path (suites live in suites/, e.g. suites/quickstart.toml)")]
    File(crate::files::FileError),
    #[error("{}:{line}:{column}: {message}", file.display())]
    At { file: PathBuf, line: usize, column: usize, message: String },
}

impl SuiteError {
    /// The 1-based line the error points at, if it points into the file.
    pub fn line(&self) -> Option<usize> {
        match self {
            SuiteError::At { line, .. } => Some(*line),
            SuiteError::File(_) => None,
        }
    }
}

/// Turns byte spans into `file:line:column` errors for one suite file.
pub struct Locator<'a> {
    pub file: &'a Path,
    pub source: &'a str,
}

impl Locator<'_> {
    pub fn at(&self, span: Range<usize>, message: impl Into<String>) -> SuiteError {
        let start = span.start.min(self.source.len());
        let before = &self.source[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        SuiteError::At { file: self.file.to_path_buf(), line, column, message: message.into() }
    }
}

/// `— did you mean "x"?` when one known name is close to what was written.
pub fn did_you_mean<'a>(written: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    let best = known.into_iter().map(|k| (strsim::jaro_winkler(written, k), k)).max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((score, k)) if score >= 0.8 => format!(" — did you mean \"{k}\"?"),
        _ => String::new(),
    }
}

/// The message for a name that is not in a closed set.
pub fn unknown(kind: &str, written: &str, known: &[&str]) -> String {
    let hint = did_you_mean(written, known.iter().copied());
    if hint.is_empty() {
        format!("unknown {kind} \"{written}\"; known: {}", known.join(", "))
    } else {
        format!("unknown {kind} \"{written}\"{hint}")
    }
}

/// Improves serde's `unknown field `x`, expected one of ...` with a suggestion.
pub fn improve_serde_message(message: &str) -> String {
    let message = message.trim_end();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once('`') {
            let known: Vec<&str> = expected.split('`').skip(1).step_by(2).filter(|s| !s.is_empty()).collect();
            let hint = did_you_mean(field, known.iter().copied());
            if !hint.is_empty() {
                return format!("unknown key \"{field}\"{hint}");
            }
            return format!("unknown key \"{field}\"; allowed here: {}", known.join(", "));
        }
    }
    message.to_string()
}

// Not `#[from]`: the message already holds the file error, so it is not also its source.
impl From<crate::files::FileError> for SuiteError {
    fn from(e: crate::files::FileError) -> Self {
        SuiteError::File(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let src = "a = 1\nbackends = [\"x\"]\n";
        let loc = Locator { file: Path::new("s.toml"), source: src };
        let at = src.find("\"x\"").unwrap();
        let e = loc.at(at..at + 3, "bad");
        assert_eq!(e.to_string(), "s.toml:2:13: bad");
    }

    #[test]
    fn suggestion_only_for_close_names() {
        assert_eq!(
            unknown("backend", "trac-cpu", &["candle-cpu", "tract-cpu"]),
            "unknown backend \"trac-cpu\" — did you mean \"tract-cpu\"?"
        );
        assert_eq!(
            unknown("backend", "onnxruntime", &["candle-cpu", "tract-cpu"]),
            "unknown backend \"onnxruntime\"; known: candle-cpu, tract-cpu"
        );
    }

    #[test]
    fn serde_unknown_field_gets_a_suggestion() {
        let m = improve_serde_message("unknown field `batch_size`, expected one of `name`, `batch_sizes`, `schemes`\n");
        assert_eq!(m, "unknown key \"batch_size\" — did you mean \"batch_sizes\"?");
    }
}
