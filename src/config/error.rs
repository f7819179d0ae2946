//! Configuration errors: every one names the file, the line and column, and the field.

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a configuration file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file itself could not be read.
    #[error("{file}: cannot read the configuration: {source}")]
    Read {
        /// The configuration file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A value in the file is wrong.
    #[error("{0}")]
    Invalid(Box<Invalid>),
}

/// A wrong value, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The configuration file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: u64,
    /// 1-based column.
    pub column: u64,
    /// The field path, e.g. `targets[2].port`.
    pub field: String,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.field,
            self.message
        )
    }
}

/// A position in the file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub line: u64,
    pub column: u64,
}

impl Position {
    /// The start of the document, for a key that is missing altogether.
    pub const START: Position = Position { line: 1, column: 1 };
}

impl From<serde_saphyr::Location> for Position {
    fn from(at: serde_saphyr::Location) -> Self {
        // serde-saphyr uses 0 for "unknown"; the start of the file is the honest fallback.
        Position {
            line: at.line().max(1),
            column: at.column().max(1),
        }
    }
}

/// Builds [`ConfigError::Invalid`] values for one file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorSite<'a> {
    pub file: &'a Path,
}

impl ErrorSite<'_> {
    /// An error at `at` about `field`.
    pub fn at(
        &self,
        at: impl Into<Position>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        let at = at.into();
        ConfigError::Invalid(Box::new(Invalid {
            file: self.file.to_path_buf(),
            line: at.line,
            column: at.column,
            field: field.into(),
            message: message.into(),
        }))
    }
}

/// Turns a parse error from serde-saphyr into ours: the path serde was at becomes the
/// field, and the position suffix the parser appends is dropped from the message
/// because the prefix already says it.
pub(crate) fn from_parse_error(
    file: &Path,
    path: Option<String>,
    error: &serde_saphyr::Error,
) -> ConfigError {
    let (line, column) = error
        .location()
        .map_or((1, 1), |at| (at.line().max(1), at.column().max(1)));
    let rendered = error.without_snippet().to_string();
    let message = strip_position_suffix(&rendered).to_owned();
    // `Spanned<T>` shows up as a `.value` step in the path; users never wrote it.
    let field = path
        .map(|p| p.replace(".value", ""))
        .filter(|p| !p.is_empty() && p != ".")
        .unwrap_or_else(|| "(document)".to_owned());
    ConfigError::Invalid(Box::new(Invalid {
        file: file.to_path_buf(),
        line,
        column,
        field,
        message,
    }))
}

/// `unknown field `x` at line 3, column 5` → `unknown field `x``.
fn strip_position_suffix(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(start)
            if message[start + " at line ".len()..]
                .chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c == ' ' || c.is_ascii_alphabetic()) =>
        {
            &message[..start]
        }
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::strip_position_suffix;

    #[test]
    fn the_parser_position_suffix_is_removed_once() {
        assert_eq!(
            strip_position_suffix("missing field `name` at line 2, column 5"),
            "missing field `name`"
        );
        assert_eq!(
            strip_position_suffix("no position here"),
            "no position here"
        );
    }
}
