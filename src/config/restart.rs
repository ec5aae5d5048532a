//! What a live edit may change: the restart-only keys (one list, which
//! the tests iterate over), the diff between two configs, and a requested
//! config with its restart-only keys kept at their running values.

use super::*;

/// Keys that only take effect when a run starts; a live edit of them is
/// refused with this reason. A key matches when it equals an entry or starts
/// with an entry followed by a dot.
pub const RESTART_ONLY: &[(&str, &str)] = &[
    ("workload", "the workload is built once when the run starts"),
    ("train.device", "tensors live on the device chosen at start"),
    ("train.trace", "a trace starts with the run's initial state"),
    (
        "train.collective_timeout_s",
        "the ranks' process group is made with it when the run starts",
    ),
    (
        "train.bucket_mb",
        "the gradient buckets are laid out when the ranks join",
    ),
    (
        "train.dtype",
        "parameters are created in this dtype at start",
    ),
    (
        "combiner.kind",
        "the combiner's parameters are created at start",
    ),
    (
        "meltr.d_model",
        "MELTR's size is fixed once its parameters exist",
    ),
    (
        "meltr.d_hidden",
        "MELTR's size is fixed once its parameters exist",
    ),
    (
        "meltr.d_ff",
        "MELTR's size is fixed once its parameters exist",
    ),
    (
        "meltr.heads",
        "MELTR's size is fixed once its parameters exist",
    ),
    (
        "meltr.init",
        "MELTR is initialised once, before the first step",
    ),
    (
        "meltr.loss_scale",
        "the losses' scales are measured once, on the first batch",
    ),
    (
        "meltr.max_loss_ratio",
        "the losses' scales are measured once, on the first batch",
    ),
];

/// Why a key cannot change while a run goes on, or `None` when it is live.
pub fn restart_only_reason(key: &str) -> Option<&'static str> {
    RESTART_ONLY
        .iter()
        .find(|(prefix, _)| {
            key == *prefix
                || (key.starts_with(prefix) && key.as_bytes().get(prefix.len()) == Some(&b'.'))
        })
        .map(|(_, reason)| *reason)
}

/// One changed key between two configs.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: String,
    pub old: toml::Value,
    pub new: toml::Value,
    /// `Some(reason)` when the key can only change at restart.
    pub restart_only: Option<&'static str>,
}

/// A config line's `changed` map (`metrics.jsonl`): each key's old and
/// new value.
pub fn changed_values(
    changes: &[Change],
) -> std::collections::BTreeMap<String, (serde_json::Value, serde_json::Value)> {
    let json = |v: &toml::Value| serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
    changes
        .iter()
        .map(|c| (c.key.clone(), (json(&c.old), json(&c.new))))
        .collect()
}

impl Change {
    /// Why this change does not apply, for a restart-only key: "`key` = new
    /// can only change at restart (why); old stays in force".
    pub fn refusal(&self) -> Option<String> {
        self.restart_only.map(|why| {
            format!(
                "`{}` = {} can only change at restart ({why}); {} stays in force",
                self.key, self.new, self.old
            )
        })
    }
}

impl Config {
    /// The keys that differ between `self` (old) and `new`.
    pub fn diff(&self, new: &Config) -> Vec<Change> {
        let old = self.flatten();
        let new = new.flatten();
        let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        keys.into_iter()
            .filter(|k| old.get(*k) != new.get(*k))
            .map(|k| Change {
                key: k.clone(),
                old: old
                    .get(k)
                    .cloned()
                    .unwrap_or_else(|| toml::Value::String("(unset)".into())),
                new: new
                    .get(k)
                    .cloned()
                    .unwrap_or_else(|| toml::Value::String("(unset)".into())),
                restart_only: restart_only_reason(k),
            })
            .collect()
    }

    /// This config with every restart-only key set back to `running`'s value
    /// (what a live edit can actually change): each [`RESTART_ONLY`] entry's
    /// value (a key, or a whole section) is copied from `running`.
    pub fn keeping_restart_only_of(self, running: &Config) -> Config {
        let mut root = toml::Value::try_from(&self).expect("a Config always serialises");
        let from = toml::Value::try_from(running).expect("a Config always serialises");
        for (entry, _) in RESTART_ONLY {
            let (parent, leaf) = match entry.rsplit_once('.') {
                Some((parent, leaf)) => (lookup_mut(&mut root, parent), leaf),
                None => (Some(&mut root), *entry),
            };
            let Some(toml::Value::Table(parent)) = parent else {
                continue;
            };
            match lookup(&from, entry) {
                Some(value) => {
                    parent.insert(leaf.to_string(), value.clone());
                }
                None => {
                    parent.remove(leaf);
                }
            }
        }
        root.try_into()
            .expect("values taken from two Configs make a Config")
    }
}
