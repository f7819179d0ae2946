//! Configuration errors: every one names the file, the line and column, and the field.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

/// Why a configuration file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file itself could not be read.
    #[error("{}: cannot read the configuration: {reason}", file.display())]
    Read {
        /// The configuration file.
        file: PathBuf,
        /// Why (said once: it is part of this message, not a separate cause).
        reason: super::files::FileError,
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
        ConfigError::Invalid(Box::new(self.note(at, field, message)))
    }

    /// A note (a warning) at `at` about `field`: same form as an error.
    pub fn note(
        &self,
        at: impl Into<Position>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Invalid {
        let at = at.into();
        Invalid {
            file: self.file.to_path_buf(),
            line: at.line,
            column: at.column,
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Turns a parse error from serde-saphyr into ours: the path serde was at becomes the
/// field, and the message is reworded for the person editing the file ([`Wording`]).
/// `text` is the file's content, from which the offending value is quoted.
pub(crate) fn from_parse_error(
    file: &Path,
    text: &str,
    path: Option<String>,
    error: &serde_saphyr::Error,
) -> ConfigError {
    let error = error.without_snippet();
    let (line, column) = error
        .location()
        .map_or((1, 1), |at| (at.line().max(1), at.column().max(1)));
    let message = error.render_with_formatter(&Wording { text });
    // `Spanned<T>` shows up as a `.value` step in the path and a step serde could not
    // name as `?`; users wrote neither.
    let mut steps: Vec<&str> = Vec::new();
    let path = path.unwrap_or_default().replace(".value[", "[");
    for step in path.split('.') {
        if !matches!(step, "" | "value" | "?") {
            steps.push(step);
        }
    }
    // A repeated key is the step serde had not reached yet.
    if let serde_saphyr::Error::DuplicateMappingKey { key: Some(key), .. } = error {
        steps.push(key);
    }
    let field = if steps.is_empty() {
        "(document)".to_owned()
    } else {
        steps.join(".")
    };
    ConfigError::Invalid(Box::new(Invalid {
        file: file.to_path_buf(),
        line,
        column,
        field,
        message,
    }))
}

/// serde-saphyr's messages reworded for someone editing the file: what was expected,
/// what was found, and what to do. Anything not listed keeps the parser's user-facing
/// wording.
struct Wording<'t> {
    /// The whole file, to quote the value an error points at.
    text: &'t str,
}

impl Wording<'_> {
    /// The plain scalar written at `at`, up to a comment or the end of the line.
    fn value_at(&self, at: serde_saphyr::Location) -> Option<&str> {
        let line = self
            .text
            .lines()
            .nth(usize::try_from(at.line()).ok()?.checked_sub(1)?)?;
        let start = line
            .char_indices()
            .nth(usize::try_from(at.column()).ok()?.checked_sub(1)?)?
            .0;
        let rest = &line[start..];
        let end = rest.find(" #").unwrap_or(rest.len());
        let value = rest[..end].trim().trim_end_matches([',', ']', '}']).trim();
        (!value.is_empty() && value.len() <= MAX_QUOTED_VALUE_LEN).then_some(value)
    }
}

/// A value longer than this is not quoted back in a message: it is not a scalar typo.
const MAX_QUOTED_VALUE_LEN: usize = 60;

impl serde_saphyr::MessageFormatter for Wording<'_> {
    fn localizer(&self) -> &dyn serde_saphyr::localizer::Localizer {
        &NoPositionSuffix
    }

    fn format_message<'a>(&self, error: &'a serde_saphyr::Error) -> Cow<'a, str> {
        use serde_saphyr::Error;
        let found = |at: &serde_saphyr::Location| {
            self.value_at(*at)
                .map(|value| format!(", found `{value}`"))
                .unwrap_or_default()
        };
        match error {
            Error::InvalidScalar { ty, location } => {
                let value = self.value_at(*location);
                let expected = match *ty {
                    "boolean" | "bool" => "`true` or `false`",
                    "u16" => "a whole number from 0 to 65535",
                    "f32" | "f64" => "a number",
                    ty if ty.starts_with(['i', 'u']) => "a whole number",
                    other => return Cow::Owned(format!("expected {other}{}", found(location))),
                };
                match value {
                    // All digits, yet not a number of the type: it overflowed.
                    Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => {
                        Cow::Owned(format!("`{v}` is too large: expected {expected}"))
                    }
                    _ => Cow::Owned(format!("expected {expected}{}", found(location))),
                }
            }
            Error::InvalidBooleanStrict { location } => {
                Cow::Owned(format!("expected `true` or `false`{}", found(location)))
            }
            Error::Unexpected { expected, .. } => Cow::Borrowed(match *expected {
                "string scalar" | "scalar" => "expected a single value here, not a list or mapping",
                "sequence start" => {
                    "expected a list here: `[a, b]`, or one `- item` line per entry"
                }
                "mapping start" => "expected `key: value` lines here",
                other => return Cow::Owned(format!("expected {other}")),
            }),
            Error::SerdeUnknownField {
                field, expected, ..
            } => {
                let suggestion = closest(field, expected)
                    .map(|key| format!(": did you mean `{key}`?"))
                    .unwrap_or_default();
                Cow::Owned(format!(
                    "unknown key `{field}`{suggestion} (expected one of {})",
                    expected.join(", ")
                ))
            }
            Error::SerdeMissingField { field, .. } => Cow::Owned(format!("missing key `{field}`")),
            Error::DuplicateMappingKey { key, .. } => Cow::Owned(match key {
                Some(key) => format!("`{key}` is set twice here: keep only one"),
                None => "a key is set twice here: keep only one".to_owned(),
            }),
            Error::Budget { .. } => Cow::Borrowed(
                "the document is too large or too complex for a configuration (it passes one \
                 of the YAML parser's limits: about 250,000 nodes, deep nesting or many \
                 aliases); check that this is the right file",
            ),
            Error::ExternalMessage { msg, .. } => {
                // Scanner errors: the text is libyaml's, well known, but says nothing of
                // the usual cause.
                let hint = if msg.contains("mapping values are not allowed") {
                    "; check this line's indentation: keys of one entry start in the same column"
                } else if msg.contains("tab") {
                    "; indent with spaces"
                } else {
                    ""
                };
                Cow::Owned(format!("YAML syntax error: {msg}{hint}"))
            }
            _ => serde_saphyr::UserMessageFormatter.format_message(error),
        }
    }
}

/// The expected key a typo most likely meant: the nearest by edit distance, if it is
/// near enough that suggesting it helps.
pub(crate) fn closest<'k>(written: &str, expected: &[&'k str]) -> Option<&'k str> {
    expected
        .iter()
        .map(|key| (edit_distance(written, key), *key))
        .filter(|(distance, key)| *distance <= max_typo_distance(key))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, key)| key)
}

/// Two slips (a doubled or dropped letter, two letters swapped) make a typo; more is a
/// different word, such as `password` for `password_env`. In a key of three letters or
/// fewer, two slips leave too little of it to go on.
fn max_typo_distance(key: &str) -> usize {
    if key.chars().count() <= 3 { 1 } else { 2 }
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// Our prefix already names the line and column; the parser's ` at line L, column C`
/// would say it twice.
struct NoPositionSuffix;

impl serde_saphyr::localizer::Localizer for NoPositionSuffix {
    fn attach_location<'a>(&self, base: Cow<'a, str>, _at: serde_saphyr::Location) -> Cow<'a, str> {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::{closest, edit_distance};

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("timout", "timeout"), 1);
        assert_eq!(edit_distance("pasword_file", "password_file"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn a_typo_suggests_the_key_it_resembles_and_nothing_else() {
        let keys = ["username", "password_file", "password_env"];
        assert_eq!(closest("pasword_file", &keys), Some("password_file"));
        assert_eq!(closest("password", &keys), None);
        assert_eq!(closest("hots", &["host", "port"]), Some("host"));
        assert_eq!(closest("colour", &["host", "port"]), None);
    }
}
