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
        write!(f, "{}", self.readable_message())
    }
}

impl ConfigError {
    /// The message as shown after the location: one line (TOML's messages
    /// break lines, "invalid table header\nexpected ...", which one-line
    /// readers such as the TUI and events glued), serde's type words made
    /// readable with this key's range (`train.steps`: "≥ 1", not "≥ 0").
    pub(super) fn readable_message(&self) -> String {
        let parts: Vec<&str> = self
            .message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        text::readable_type_error(&parts.join("; "), self.key.as_deref())
    }

    /// `more` said after this message: "…; also …". The message is made
    /// readable first: its readable form reads it to its end (the list of
    /// keys of an unknown key's hint took in what came after).
    pub(super) fn also(&mut self, more: &[String]) {
        if !more.is_empty() {
            self.message = format!("{}; also {}", self.readable_message(), more.join("; also "));
        }
    }
}

impl std::error::Error for ConfigError {}

/// Further problems a file holds are said after the first, this many at
/// most.
const FURTHER_PROBLEMS: usize = 3;

/// `first` with the file's further problems appended (`; also line 4: key
/// `train.lr`: …`): each found by reading the file again without the keys
/// already found wrong, through `read`. A walkthrough's live edits had a
/// typo and a negative learning rate in one file; only the typo was said,
/// and the second refusal came only after it was fixed. Stops at a
/// problem without a key (a syntax error) or one no removal gets past.
pub(super) fn with_further_problems(
    mut first: ConfigError,
    text: &str,
    read: impl Fn(&str) -> Result<super::Config, ConfigError>,
) -> ConfigError {
    let Ok(mut table) = toml::from_str::<toml::Table>(text) else {
        return first;
    };
    let mut key = first.key.clone();
    let mut said = Vec::new();
    while let Some(wrong) = key.take() {
        if said.len() == FURTHER_PROBLEMS || !remove_dotted(&mut table, &wrong) {
            break;
        }
        let Ok(reduced) = toml::to_string(&table) else {
            break;
        };
        let Err(mut next) = read(&reduced) else {
            break;
        };
        if next.key.as_deref() == Some(wrong.as_str()) {
            break;
        }
        next.line = next.key.as_deref().and_then(|k| super::locate_key(text, k));
        next.file = None;
        key = next.key.clone();
        said.push((next.line, next.to_string()));
    }
    // In the file's order, as a reader goes through it (walkthrough B's
    // read lines 3, 8, 6, 5); those without a line last.
    said.sort_by_key(|(line, _)| line.unwrap_or(usize::MAX));
    let said: Vec<String> = said.into_iter().map(|(_, text)| text).collect();
    first.also(&said);
    first
}

/// Removes `a.b.c` from `table`; whether it was there.
pub(super) fn remove_dotted(table: &mut toml::Table, key: &str) -> bool {
    match key.split_once('.') {
        None => table.remove(key).is_some(),
        Some((head, rest)) => match table.get_mut(head) {
            Some(toml::Value::Table(inner)) => remove_dotted(inner, rest),
            _ => false,
        },
    }
}
