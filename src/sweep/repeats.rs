//! Combinations that repeat each other: members whose combiner is not
//! meta-trained and whose settings differ only in `meltr.*` and `aid.*`
//! keys, which such a run does not read. A sweep runs the first of each.

use super::{Member, Plan};
use crate::config::Config;

/// A member's `(key, value)`.
type Setting = (String, String);

impl Plan {
    /// The positions of members that repeat each other, a set each, in
    /// member order (`configs` as [`Plan::member_configs`] gives them).
    fn repeat_sets(&self, configs: &[Config]) -> Vec<Vec<usize>> {
        let mut same: std::collections::BTreeMap<Vec<&(String, String)>, Vec<usize>> =
            Default::default();
        for (at, (member, config)) in self.members.iter().zip(configs).enumerate() {
            if config.combiner.kind.meta_trained() {
                continue;
            }
            let read: Vec<&(String, String)> = member
                .settings
                .iter()
                .filter(|(k, _)| !k.starts_with("meltr.") && !k.starts_with("aid."))
                .collect();
            same.entry(read).or_default().push(at);
        }
        let mut sets: Vec<Vec<usize>> = same.into_values().filter(|s| s.len() > 1).collect();
        sets.sort();
        sets
    }

    /// The note on one set of repeating members, by their settings (the
    /// combination numbers change as the repeats leave).
    fn repeat_note(members: &[&Member]) -> String {
        let (varying, common): (Vec<&Setting>, Vec<&Setting>) = members[0]
            .settings
            .iter()
            .partition(|setting| members.iter().any(|m| !m.settings.contains(setting)));
        let pairs = |settings: &[&Setting]| -> Vec<String> {
            settings.iter().map(|(k, v)| format!("{k}={v}")).collect()
        };
        let unread: Vec<String> = varying
            .iter()
            .map(|(key, _)| {
                let mut values: Vec<&str> = Vec::new();
                for m in members {
                    if let Some((_, v)) = m.settings.iter().find(|(k, _)| k == key) {
                        if !values.contains(&v.as_str()) {
                            values.push(v);
                        }
                    }
                }
                format!("{key} = {}", values.join(", "))
            })
            .collect();
        format!(
            "{} would run the same for {}, which only the meta-trained combiners (meltr, mlp) \
             read: it runs once, as {}",
            pairs(&common).join(" "),
            unread.join(" and "),
            pairs(&varying).join(" ")
        )
    }

    /// The plan without the members that repeat an earlier one, renumbered
    /// (walkthrough L's sweep ran its `sum` runs once per aid.iterations),
    /// their configs, and a note per set left out.
    pub fn without_repeats(mut self, configs: Vec<Config>) -> (Plan, Vec<Config>, Vec<String>) {
        let sets = self.repeat_sets(&configs);
        let notes = sets
            .iter()
            .map(|set| {
                Plan::repeat_note(&set.iter().map(|&at| &self.members[at]).collect::<Vec<_>>())
            })
            .collect();
        let dropped: std::collections::BTreeSet<usize> = sets
            .iter()
            .flat_map(|set| set[1..].iter().copied())
            .collect();
        let kept: Vec<(Member, Config)> = std::mem::take(&mut self.members)
            .into_iter()
            .zip(configs)
            .enumerate()
            .filter(|(at, _)| !dropped.contains(at))
            .map(|(_, kept)| kept)
            .collect();
        let width = kept.len().saturating_sub(1).to_string().len().max(3);
        let (members, configs): (Vec<Member>, Vec<Config>) = kept
            .into_iter()
            .enumerate()
            .map(|(index, (member, config))| {
                let name = format!("{}-{index:0width$}", self.group);
                (
                    Member {
                        index,
                        name,
                        ..member
                    },
                    config,
                )
            })
            .unzip();
        self.members = members;
        (self, configs, notes)
    }
}
