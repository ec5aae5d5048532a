//! A configuration problem, located as precisely as we can: the file, the
//! line, the dotted key, and a message in one line.

use super::text;
use std::fmt;
use std::path::PathBuf;

/// A configuration problem, located as precisely as we can.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub(super) fn at_key(key: &str, message: impl Into<String>) -> Self {
        Self {
            file: None,
            line: None,
            key: Some(key.to_string()),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{}: ", file.display(), line)?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        // One line: TOML's messages break lines ("invalid table header\n
        // expected ..."), which one-line readers (the TUI, events) glued.
        let parts: Vec<&str> = self
            .message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        write!(f, "{}", text::readable_type_error(&parts.join("; ")))
    }
}

impl std::error::Error for ConfigError {}
