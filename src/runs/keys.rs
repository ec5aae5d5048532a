//! A session's config as dotted keys (`aid.iterations` -> `1`): reading it
//! (the config in force, else `config.toml`), writing a value as text, the
//! keys whose values differ between sessions (the runs table's diff view),
//! and whether a value matches one typed on the command line.

use super::Run;
use crate::config::Config;
use crate::session::SessionDir;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The key that tells seeds apart.
pub const SEED: &str = "workload.seed";

/// The config the session ran with, flattened: `config.in-force.toml` (what
/// the trainer applied), else `config.toml`; empty when neither reads.
pub fn config_of(dir: &Path) -> BTreeMap<String, toml::Value> {
    let layout = SessionDir::new(dir);
    Config::load(&layout.config_in_force())
        .or_else(|_| Config::load(&layout.config()))
        .map(|c| c.flatten())
        .unwrap_or_default()
}

/// A value as a user writes it: strings bare, arrays `[a, b]`.
pub fn text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(text).collect();
            format!("[{}]", items.join(", "))
        }
        toml::Value::Table(t) => {
            let items: Vec<String> = t.iter().map(|(k, v)| format!("{k}={}", text(v))).collect();
            format!("{{{}}}", items.join(", "))
        }
        // 1e30 read `1000000000000000000000000000000.0` in tables and
        // legends (walkthrough D); 1e-5 and 1e6 keep their short form.
        toml::Value::Float(f) if *f != 0.0 && !(1e-4..1e6).contains(&f.abs()) => format!("{f:e}"),
        other => other.to_string(),
    }
}

/// A `meltr.*` or `aid.*` key of a run whose combiner is fixed (`sum`,
/// `primary`, …): the run never read it, so listings show `–` for it
/// (walkthrough O's `sum` rows read `init=pytorch`; walkthrough L's
/// `ls` read `meltr.on_collapse = restore` beside `primary` runs).
pub fn unread_by(run: &Run, key: &str) -> bool {
    (key.starts_with("meltr.") || key.starts_with("aid."))
        && run
            .value("combiner.kind")
            .and_then(|k| k.parse::<crate::config::CombinerKind>().ok())
            .is_some_and(|k| !k.meta_trained())
}

/// The keys whose values are not the same in every run (a key missing in
/// some runs differs too), in key order; none for fewer than two runs.
pub fn differing<'a>(runs: impl IntoIterator<Item = &'a Run>) -> Vec<String> {
    let runs: Vec<&Run> = runs.into_iter().collect();
    if runs.len() < 2 {
        return Vec::new();
    }
    let all: BTreeSet<&String> = runs.iter().flat_map(|r| r.config.keys()).collect();
    all.into_iter()
        .filter(|key| {
            let first = runs[0].config.get(*key);
            runs.iter().any(|r| r.config.get(*key) != first)
        })
        .cloned()
        .collect()
}

/// `keys` with every key a run of `runs` changed while it trained, in key
/// order: a listing's columns, where a run's `*` shows even when it ended
/// on the value the others have (walkthrough A's `aid.iterations` went
/// 0→1→3→2→0, and `ls` dropped its column once the run finished).
pub fn with_edited<'a>(
    mut keys: Vec<String>,
    runs: impl IntoIterator<Item = &'a Run>,
) -> Vec<String> {
    for run in runs {
        keys.extend(run.edited.keys().cloned());
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Whether `asked` names the config key `key`: whole (`combiner.kind`) or
/// by its last part (`kind`), as table headers show keys.
pub fn names_key(key: &str, asked: &str) -> bool {
    key == asked || key.rsplit('.').next() == Some(asked)
}

/// Whether `actual` (a value's [`text`]) is what the user typed: numbers
/// compare as numbers (`0.1` matches `1e-1`), everything else as text.
pub fn matches(actual: &str, wanted: &str) -> bool {
    match (actual.parse::<f64>(), wanted.trim().parse::<f64>()) {
        (Ok(a), Ok(b)) => a == b,
        _ => actual == wanted.trim(),
    }
}

/// What a value [`past_shared_folders`] shortened starts with.
pub const SHORTENED: &str = "…/";

/// Where two or more of `values` are paths (with a `/`, not a list) and
/// those share leading folders (more than a root), the number of bytes
/// the folders take with their slashes: listings and tables show what
/// follows ([`past_shared_folders`]); the other values stay as they are.
pub fn shared_folders(values: &[&str]) -> Option<usize> {
    let values: Vec<&str> = values.iter().copied().filter(|v| is_path(v)).collect();
    if values.len() < 2 {
        return None;
    }
    let folders = |v: &str| -> Vec<String> {
        let mut parts: Vec<String> = v.split('/').map(str::to_string).collect();
        parts.pop();
        parts
    };
    let mut shared = folders(values[0]);
    for v in &values[1..] {
        let other = folders(v);
        let same = shared
            .iter()
            .zip(&other)
            .take_while(|(a, b)| a == b)
            .count();
        shared.truncate(same);
    }
    if shared.iter().all(String::is_empty) {
        return None;
    }
    Some(shared.iter().map(|s| s.len() + 1).sum())
}

/// A value [`shared_folders`] reads as a path.
fn is_path(value: &str) -> bool {
    value.contains('/') && !value.starts_with(['[', '{'])
}

/// `value` past its first `cut` bytes (from [`shared_folders`]), after
/// [`SHORTENED`]; a value that is no path as it is.
pub fn past_shared_folders(value: &str, cut: usize) -> String {
    match is_path(value) && cut < value.len() && value.is_char_boundary(cut) {
        true => format!("{SHORTENED}{}", &value[cut..]),
        false => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_read_as_typed_and_numbers_match_by_value() {
        assert_eq!(text(&toml::Value::String("meltr".into())), "meltr");
        assert_eq!(text(&toml::Value::Float(0.003)), "0.003");
        assert_eq!(text(&toml::Value::Integer(3)), "3");
        assert_eq!(text(&toml::Value::Float(1e30)), "1e30");
        assert_eq!(text(&toml::Value::Float(2.5e-5)), "2.5e-5");
        assert_eq!(text(&toml::Value::Float(1000.0)), "1000.0");
        assert!(matches(&text(&toml::Value::Float(1e30)), "1e30"));
        let list = toml::Value::Array(vec!["a".into(), "b".into()]);
        assert_eq!(text(&list), "[a, b]");
        assert!(matches("0.1", "1e-1"));
        assert!(matches("3", "3.0"));
        assert!(!matches("3", "4"));
        assert!(matches("meltr", "meltr"));
        assert!(!matches("meltr", "sum"));
        let paths = ["/root/suite/mixed/model.pt", "/root/suite/few/a/model.pt"];
        let cut = shared_folders(&paths).unwrap();
        assert_eq!(past_shared_folders(paths[1], cut), "…/few/a/model.pt");
        assert_eq!(shared_folders(&["/a/model.pt", "/b/model.pt"]), None);
        assert_eq!(shared_folders(&["/a/model.pt", "-"]), None);
        assert_eq!(shared_folders(&["/a/model.pt"]), None);
        // Only the values that are paths: a renamed cell stays as it is.
        assert_eq!(
            shared_folders(&["/r/a/model.pt", "MELTR", "/r/b/model.pt"]),
            Some(3)
        );
        assert_eq!(shared_folders(&["[/r/a, /r/b]", "[/r/c, /r/d]"]), None);
        assert_eq!(past_shared_folders("MELTR", 3), "MELTR");
    }
}
