//! Groups of runs for a paper's figure or table: by default the runs that
//! differ only by seed (`workload.seed`) form one group; `--group-by KEY`
//! groups by the values of the given keys instead. Each group is labelled
//! by the keys whose values tell the groups apart (`kind=meltr`). A fork is
//! never another seed of the run it continues: it shares its parent's steps
//! up to the fork, so by seed it forms its own group.

use super::{filter, keys, Run};
use anyhow::Result;
use std::collections::BTreeMap;

/// How runs are grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// Runs whose configs are equal but for `workload.seed`.
    Seeds,
    /// Runs with the same values of these keys (config keys, or `status`,
    /// `group`, `name`, `id`).
    Keys(Vec<String>),
}

/// Some runs drawn (or tabulated) as one.
#[derive(Debug, Clone, PartialEq)]
pub struct Group<'a> {
    /// For legends: `kind=meltr, iterations=1`, or a name when nothing
    /// tells the groups apart.
    pub label: String,
    /// The keys that tell the groups apart and this group's values of them.
    pub values: Vec<(String, String)>,
    pub runs: Vec<&'a Run>,
    /// By seed, a group of forks with their parents' settings: `NAME@STEP`
    /// of the runs they continue.
    pub fork_of: Option<String>,
}

impl Group<'_> {
    /// The config keys, other than the seed and the grouping keys, whose
    /// values differ between this group's runs: what its n pools besides
    /// seeds.
    pub fn pooled_keys(&self) -> Vec<String> {
        keys::differing(self.runs.iter().copied())
            .into_iter()
            .filter(|k| k != keys::SEED && !self.values.iter().any(|(g, _)| g == k))
            .collect()
    }
}

/// The identity key that keeps a fork out of its parent's seeds.
const FORK_AT: &str = "fork at";

/// A run's settings but the seed: what runs that are seeds of one setting
/// share.
fn settings(run: &Run) -> Vec<(String, String)> {
    run.config
        .iter()
        .filter(|(k, _)| k.as_str() != keys::SEED)
        .map(|(k, v)| (k.clone(), keys::text(v)))
        .collect()
}

/// The run among `runs` that `run` was forked from, when it has the same
/// settings: then `run` repeats its steps up to the fork and is no other
/// seed of it. (A fork with edited settings is a setting of its own anyway.)
fn repeated_parent<'a>(run: &Run, runs: &'a [Run]) -> Option<&'a Run> {
    let parent = run.meta.parent.as_ref()?;
    runs.iter()
        .find(|r| &r.meta.id == parent)
        .filter(|p| settings(p) == settings(run))
}

/// `NAME@STEP, …`: the runs a group's forks repeat, and where they forked.
fn forked_from(runs: &[&Run], all: &[Run]) -> Option<String> {
    let mut parents: Vec<String> = Vec::new();
    for r in runs {
        let parent = repeated_parent(r, all)?;
        let at = r.meta.fork_step.map_or(String::new(), |s| format!("@{s}"));
        let named = format!("{}{at}", parent.meta.name);
        if !parents.contains(&named) {
            parents.push(named);
        }
    }
    (!parents.is_empty()).then(|| parents.join(", "))
}

/// A line for each group whose n is not seeds alone (possible with
/// `--group-by`): its runs differ in more than the seed, or it holds a fork
/// with its parent, whose steps up to the fork it repeats.
pub fn pooling_notes(groups: &[Group]) -> Vec<String> {
    let mut notes = Vec::new();
    for g in groups {
        let pooled = g.pooled_keys();
        if !pooled.is_empty() {
            notes.push(format!(
                "note: {} (n={}) pools runs that differ in {}; add {} to --group-by to split it",
                g.label,
                g.runs.len(),
                pooled.join(", "),
                if pooled.len() == 1 { "it" } else { "them" }
            ));
        }
        let with_parent = |r: &&&Run| {
            r.meta
                .parent
                .as_ref()
                .is_some_and(|p| g.runs.iter().any(|o| &o.meta.id == p))
        };
        let forks: Vec<String> = g
            .runs
            .iter()
            .filter(with_parent)
            .map(|r| r.meta.name.clone())
            .collect();
        if !forks.is_empty() {
            notes.push(format!(
                "note: {} (n={}) counts forks with their parents ({}): a fork repeats its parent's steps up to the fork, so it is not an independent seed",
                g.label,
                g.runs.len(),
                forks.join(", ")
            ));
        }
    }
    notes
}

/// The groups of `runs`, in the order of their first run.
pub fn gather<'a>(runs: &'a [Run], by: &GroupBy) -> Result<Vec<Group<'a>>> {
    let all_runs = runs;
    if let GroupBy::Keys(ks) = by {
        for k in ks {
            filter::check_key(runs, k)?;
        }
    }
    let identity = |r: &Run| -> Vec<(String, String)> {
        match by {
            GroupBy::Seeds => {
                let mut id = settings(r);
                // Forks at one step from runs of one setting pool with each
                // other, not with the runs they repeat.
                if repeated_parent(r, runs).is_some() {
                    let at = r.meta.fork_step.map_or("?".into(), |s| s.to_string());
                    id.push((FORK_AT.to_string(), at));
                }
                id
            }
            GroupBy::Keys(ks) => ks
                .iter()
                .map(|k| (k.clone(), r.value(k).unwrap_or_else(|| "-".into())))
                .collect(),
        }
    };
    let mut order: Vec<Vec<(String, String)>> = Vec::new();
    let mut members: BTreeMap<Vec<(String, String)>, Vec<&Run>> = BTreeMap::new();
    for r in runs {
        let id = identity(r);
        if !members.contains_key(&id) {
            order.push(id.clone());
        }
        members.entry(id).or_default().push(r);
    }
    let label_keys: Vec<String> = match by {
        GroupBy::Keys(ks) => ks.clone(),
        GroupBy::Seeds => {
            let firsts: Vec<&Run> = order.iter().map(|id| members[id][0]).collect();
            keys::differing(firsts)
                .into_iter()
                .filter(|k| k != keys::SEED)
                .collect()
        }
    };
    let mut groups: Vec<Group> = order
        .into_iter()
        .map(|id| {
            let runs = members.remove(&id).unwrap_or_default();
            let values: Vec<(String, String)> = label_keys
                .iter()
                .map(|k| {
                    let v = runs
                        .first()
                        .and_then(|r| r.value(k))
                        .unwrap_or_else(|| "-".into());
                    (k.clone(), v)
                })
                .collect();
            let label = if values.is_empty() {
                fallback_label(&runs)
            } else {
                label_of(&values)
            };
            let fork_of = match by {
                GroupBy::Seeds => forked_from(&runs, all_runs),
                GroupBy::Keys(_) => None,
            };
            Group {
                label,
                values,
                runs,
                fork_of,
            }
        })
        .collect();
    // A fork labelled like another group says whose fork it is.
    let labels: Vec<String> = groups.iter().map(|g| g.label.clone()).collect();
    for g in &mut groups {
        let twin = labels.iter().filter(|l| **l == g.label).count() > 1;
        if let (true, Some(fork)) = (twin, &g.fork_of) {
            g.label = format!("{} (fork of {fork})", g.label);
        }
    }
    // Per key, numbers ascending (lr 0.15, 0.2, 0.3, 1.0) and before
    // words, words in the order their first run came: a total order, so
    // the sort is well defined whatever the values.
    let mut words: Vec<Vec<String>> = vec![Vec::new(); label_keys.len()];
    for g in &groups {
        for (i, (_, v)) in g.values.iter().enumerate() {
            if v.parse::<f64>().is_err() && !words[i].contains(v) {
                words[i].push(v.clone());
            }
        }
    }
    let rank = |g: &Group| -> Vec<(u8, f64)> {
        g.values
            .iter()
            .enumerate()
            .map(|(i, (_, v))| match v.parse::<f64>() {
                Ok(x) => (0, x),
                Err(_) => (1, words[i].iter().position(|w| w == v).unwrap_or(0) as f64),
            })
            .collect()
    };
    let mut ranked: Vec<(Vec<(u8, f64)>, Group)> =
        groups.into_iter().map(|g| (rank(&g), g)).collect();
    ranked.sort_by(|(a, _), (b, _)| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    Ok(ranked.into_iter().map(|(_, g)| g).collect())
}

/// `kind=meltr, iterations=1`: each key by its last segment unless two
/// label keys share it.
fn label_of(values: &[(String, String)]) -> String {
    let last = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    values
        .iter()
        .map(|(k, v)| {
            let short = last(k);
            let clash = values.iter().filter(|(o, _)| last(o) == short).count() > 1;
            format!("{}={v}", if clash { k.as_str() } else { &short })
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The group's name when all its runs share one, else the first run's name.
fn fallback_label(runs: &[&Run]) -> String {
    let group = runs.first().and_then(|r| r.meta.group.clone());
    match group {
        Some(g) if runs.iter().all(|r| r.meta.group.as_ref() == Some(&g)) => g,
        _ => runs
            .first()
            .map(|r| r.meta.name.clone())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_settings_come_in_ascending_order_and_words_as_they_came() {
        let root = tempfile::tempdir().unwrap();
        let mut runs = Vec::new();
        for (i, (lr, kind)) in [(0.3, "meltr"), (1.0, "sum"), (0.15, "meltr"), (0.2, "sum")]
            .into_iter()
            .enumerate()
        {
            let mut config = crate::config::Config::default();
            config.train.lr = lr;
            config.combiner.kind = kind.parse().unwrap();
            let dir = crate::session::create(root.path(), &format!("r{i}"), &config).unwrap();
            runs.push(Run::load(&dir).unwrap());
        }
        let labels = |by: GroupBy| -> Vec<String> {
            gather(&runs, &by)
                .unwrap()
                .into_iter()
                .map(|g| g.label)
                .collect()
        };
        assert_eq!(
            labels(GroupBy::Keys(vec!["train.lr".into()])),
            ["lr=0.15", "lr=0.2", "lr=0.3", "lr=1.0"]
        );
        assert_eq!(
            labels(GroupBy::Keys(vec!["combiner.kind".into()])),
            ["kind=meltr", "kind=sum"]
        );
        // Words first-seen order, then numbers within: kinds not interleaved.
        assert_eq!(
            labels(GroupBy::Keys(vec![
                "combiner.kind".into(),
                "train.lr".into()
            ])),
            [
                "kind=meltr, lr=0.15",
                "kind=meltr, lr=0.3",
                "kind=sum, lr=0.2",
                "kind=sum, lr=1.0"
            ]
        );
    }

    #[test]
    fn a_group_pooling_other_settings_says_which() {
        let root = tempfile::tempdir().unwrap();
        let mut runs = Vec::new();
        for (i, (lr, kind, seed)) in [
            (0.1, "meltr", 0),
            (0.1, "meltr", 1),
            (0.1, "sum", 0),
            (0.3, "sum", 1),
        ]
        .into_iter()
        .enumerate()
        {
            let mut config = crate::config::Config::default();
            config.train.lr = lr;
            config.combiner.kind = kind.parse().unwrap();
            config.workload.seed = seed;
            let dir = crate::session::create(root.path(), &format!("r{i}"), &config).unwrap();
            runs.push(Run::load(&dir).unwrap());
        }
        let groups = gather(&runs, &GroupBy::Keys(vec!["combiner.kind".into()])).unwrap();
        assert_eq!(
            groups[0].pooled_keys(),
            Vec::<String>::new(),
            "seeds alone are not noted"
        );
        assert_eq!(groups[1].pooled_keys(), ["train.lr"]);
        assert_eq!(
            pooling_notes(&groups),
            ["note: kind=sum (n=2) pools runs that differ in train.lr; add it to --group-by to split it"]
        );
        let by_seed = gather(&runs, &GroupBy::Seeds).unwrap();
        assert!(pooling_notes(&by_seed).is_empty());
    }

    /// A fork with no edits continued its parent bit for bit and was
    /// counted as a fourth seed (walkthrough: n=4 where 3 ran).
    #[test]
    fn a_fork_is_not_another_seed_of_its_parent() {
        let root = tempfile::tempdir().unwrap();
        let mut runs = Vec::new();
        let runs_named = [
            ("s0", 0),
            ("s1", 1),
            ("s2", 2),
            ("s1-fork", 1),
            ("s2-fork", 2),
            ("orphan", 3),
        ];
        for (name, seed) in runs_named {
            let mut config = crate::config::Config::default();
            config.workload.seed = seed;
            let dir = crate::session::create(root.path(), name, &config).unwrap();
            let mut run = Run::load(&dir).unwrap();
            run.meta.group = Some("matrix".into());
            runs.push(run);
        }
        for (fork, parent) in [(3, 1), (4, 2)] {
            runs[fork].meta.parent = Some(runs[parent].meta.id.clone());
            runs[fork].meta.fork_step = Some(200);
        }
        // Its parent deleted (not among the runs): an ordinary seed.
        runs[5].meta.parent = Some("20200101-000000-gone".into());
        runs[5].meta.fork_step = Some(100);
        let by_seed = gather(&runs, &GroupBy::Seeds).unwrap();
        let sizes: Vec<(String, usize)> = by_seed
            .iter()
            .map(|g| (g.label.clone(), g.runs.len()))
            .collect();
        assert_eq!(
            sizes,
            [
                ("matrix".to_string(), 4),
                ("matrix (fork of s1@200, s2@200)".to_string(), 2)
            ]
        );
        assert!(pooling_notes(&by_seed).is_empty());
        let by_kind = gather(&runs, &GroupBy::Keys(vec!["combiner.kind".into()])).unwrap();
        assert_eq!(
            by_kind[0].runs.len(),
            6,
            "--group-by pools what it is told to"
        );
        let notes = pooling_notes(&by_kind);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("counts forks with their parents (s1-fork, s2-fork)"),
            "{}",
            notes[0]
        );
    }

    #[test]
    fn labels_use_short_keys_unless_they_clash() {
        let v = |k: &str, x: &str| (k.to_string(), x.to_string());
        assert_eq!(
            label_of(&[v("combiner.kind", "meltr"), v("aid.iterations", "1")]),
            "kind=meltr, iterations=1"
        );
        assert_eq!(
            label_of(&[v("combiner.kind", "sum"), v("workload.kind", "synthetic")]),
            "combiner.kind=sum, workload.kind=synthetic"
        );
    }
}
