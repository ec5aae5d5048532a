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
    /// By seed, a group of forks: `NAME@STEP` of the runs they continue.
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

/// The runs `run` continues: its parent, then its parent's ancestors.
fn lineage(run: &Run) -> Vec<&str> {
    let mut ids: Vec<&str> = run.meta.parent.iter().map(String::as_str).collect();
    for (id, _) in &run.ancestors {
        if !ids.contains(&id.as_str()) {
            ids.push(id);
        }
    }
    ids
}

/// Whether `run` is a fork whose history is not a from-scratch run's of
/// its settings: a run it continues (its parent, or theirs) is among
/// `runs` (with the same settings it repeats that run's steps; with others
/// it trained under them until the fork), or it changed settings at the
/// fork. A fork of runs all gone, nothing changed, is just a longer run of
/// those settings.
fn forked_history(run: &Run, runs: &[Run]) -> bool {
    run.meta.parent.is_some()
        && (!run.fork_changes.is_empty()
            || lineage(run)
                .iter()
                .any(|id| runs.iter().any(|r| r.meta.id == *id)))
}

/// `NAME@STEP, …`: where a group of forks with a history of their own was
/// forked from.
fn forked_from(runs: &[&Run], all: &[Run]) -> Option<String> {
    let mut parents: Vec<String> = Vec::new();
    for r in runs {
        if !forked_history(r, all) {
            return None;
        }
        let parent = r.meta.parent.as_ref()?;
        let name = all
            .iter()
            .find(|p| &p.meta.id == parent)
            .map_or(parent.as_str(), |p| p.meta.name.as_str());
        let at = r.meta.fork_step.map_or(String::new(), |s| format!("@{s}"));
        let named = format!("{name}{at}");
        if !parents.contains(&named) {
            parents.push(named);
        }
    }
    (!parents.is_empty()).then(|| few(&parents))
}

/// `NAME, NAME and 3 more`.
fn few(names: &[String]) -> String {
    const SHOWN: usize = 4;
    match names.len() {
        n if n <= SHOWN => names.join(", "),
        n => format!("{} and {} more", names[..SHOWN].join(", "), n - SHOWN),
    }
}

/// What a reader of a group's numbers must know, one line each: its runs
/// differ in more than the seed (possible with `--group-by`), it holds a
/// fork with its parent (whose steps up to the fork it repeats), runs that
/// did not finish, or runs whose settings changed while they trained.
pub fn caveats(groups: &[Group]) -> Vec<String> {
    let mut notes = Vec::new();
    for g in groups {
        let head = format!("note: {} (n={})", g.label, g.runs.len());
        let pooled = g.pooled_keys();
        if !pooled.is_empty() {
            notes.push(format!(
                "{head} pools runs that differ in {}; add {} to --group-by to split it",
                pooled.join(", "),
                if pooled.len() == 1 { "it" } else { "them" }
            ));
        }
        // `HEAD what (a, b): why`, when there is anything to list.
        let mut listed = |what: &str, list: String, why: &str| {
            if !list.is_empty() {
                notes.push(format!("{head} {what} ({list}): {why}"));
            }
        };
        let forks: Vec<String> = g
            .runs
            .iter()
            .filter(|r| {
                lineage(r)
                    .iter()
                    .any(|id| g.runs.iter().any(|o| o.meta.id == *id))
            })
            .map(|r| r.meta.name.clone())
            .collect();
        listed(
            "counts forks with their parents",
            few(&forks),
            "a fork repeats its parent's steps up to the fork, so it is not an independent seed",
        );
        let unfinished: Vec<String> = g
            .runs
            .iter()
            .filter(|r| r.status != "finished")
            .map(|r| {
                format!(
                    "{} {} at {}",
                    r.meta.name,
                    r.status,
                    super::render::progress_text(r)
                )
            })
            .collect();
        listed(
            "has runs that did not finish",
            few(&unfinished),
            "their last eval is not the end of training",
        );
        let edited: Vec<String> = g
            .runs
            .iter()
            .filter(|r| !r.edits.is_empty())
            .map(|r| {
                // A fork's edits up to its fork step are its parent's (a
                // walkthrough read them as the fork's own, and missed the
                // fork's own change at the fork).
                let fork_step = r.meta.fork_step.filter(|_| r.meta.parent.is_some());
                let (inherited, own): (Vec<_>, Vec<_>) = r
                    .edits
                    .iter()
                    .partition(|(s, _)| fork_step.is_some_and(|at| *s <= at));
                let mut parts: Vec<String> = [(inherited, true), (own, false)]
                    .into_iter()
                    .filter(|(edits, _)| !edits.is_empty())
                    .map(|(edits, before_fork)| {
                        let mut keys: Vec<&str> = edits
                            .iter()
                            .flat_map(|(_, k)| k.iter().map(String::as_str))
                            .collect();
                        keys.sort_unstable();
                        keys.dedup();
                        let mut steps: Vec<String> =
                            edits.iter().map(|(s, _)| s.to_string()).collect();
                        steps.dedup();
                        format!(
                            "{} at step{} {}{}",
                            keys.join(", "),
                            if steps.len() == 1 { "" } else { "s" },
                            few(&steps),
                            if before_fork {
                                " in its parent, before the fork"
                            } else {
                                ""
                            }
                        )
                    })
                    .collect();
                if let (Some(at), false) = (fork_step, r.fork_changes.is_empty()) {
                    parts.push(format!(
                        "{} at its fork (step {at})",
                        r.fork_changes.join(", ")
                    ));
                }
                format!("{}: {}", r.meta.name, parts.join("; "))
            })
            .collect();
        listed(
            "has runs whose settings changed while they trained",
            edited.join("; "),
            "the settings shown are the last ones",
        );
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
                // Forks at one step pool with each other, not with the runs
                // they repeat or with runs trained from scratch.
                if forked_history(r, runs) {
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
    // A group of forks says whose forks they are.
    for g in &mut groups {
        if let Some(fork) = &g.fork_of {
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

    /// A finished run of the default settings with `seed`.
    fn finished_seed(root: &std::path::Path, name: &str, seed: u64) -> Run {
        let mut config = crate::config::Config::default();
        config.workload.seed = seed;
        let dir = crate::session::create(root, name, &config).unwrap();
        let mut run = Run::load(&dir).unwrap();
        run.status = "finished".into();
        run
    }

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
            let mut run = Run::load(&dir).unwrap();
            run.status = "finished".into();
            runs.push(run);
        }
        let groups = gather(&runs, &GroupBy::Keys(vec!["combiner.kind".into()])).unwrap();
        assert_eq!(
            groups[0].pooled_keys(),
            Vec::<String>::new(),
            "seeds alone are not noted"
        );
        assert_eq!(groups[1].pooled_keys(), ["train.lr"]);
        assert_eq!(
            caveats(&groups),
            ["note: kind=sum (n=2) pools runs that differ in train.lr; add it to --group-by to split it"]
        );
        let by_seed = gather(&runs, &GroupBy::Seeds).unwrap();
        assert!(caveats(&by_seed).is_empty());
    }

    /// A fork with no edits continued its parent bit for bit and was
    /// counted as a fourth seed (walkthrough: n=4 where 3 ran).
    #[test]
    fn a_fork_is_not_another_seed_of_its_parent() {
        let root = tempfile::tempdir().unwrap();
        let mut runs = Vec::new();
        let runs_named = [
            ("s0", 0, 0.1),
            ("s1", 1, 0.1),
            ("s2", 2, 0.1),
            ("s1-fork", 1, 0.1),
            ("s2-fork", 2, 0.1),
            ("orphan", 3, 0.1),
            ("g03", 0, 0.3),
            ("g03-fork", 0, 0.3),
        ];
        for (name, seed, gamma) in runs_named {
            let mut config = crate::config::Config::default();
            config.workload.seed = seed;
            config.meltr.gamma = gamma;
            let dir = crate::session::create(root.path(), name, &config).unwrap();
            let mut run = Run::load(&dir).unwrap();
            run.meta.group = Some("matrix".into());
            run.status = "finished".into();
            runs.push(run);
        }
        for (fork, parent) in [(3, 1), (4, 2), (7, 0)] {
            runs[fork].meta.parent = Some(runs[parent].meta.id.clone());
            runs[fork].meta.fork_step = Some(200);
        }
        // Trained under γ 0.1 until step 200: not a γ 0.3 run from scratch.
        runs[7].fork_changes = vec!["meltr.gamma".into()];
        // Its parent deleted (not among the runs), nothing changed: an
        // ordinary seed.
        runs[5].meta.parent = Some("20200101-000000-gone".into());
        runs[5].meta.fork_step = Some(100);
        let by_seed = gather(&runs, &GroupBy::Seeds).unwrap();
        let sizes: Vec<(String, usize, Option<String>)> = by_seed
            .iter()
            .map(|g| (g.label.clone(), g.runs.len(), g.fork_of.clone()))
            .collect();
        let fork = |s: &str| Some(s.to_string());
        assert_eq!(
            sizes,
            [
                ("gamma=0.1".to_string(), 4, None),
                (
                    "gamma=0.1 (fork of s1@200, s2@200)".to_string(),
                    2,
                    fork("s1@200, s2@200")
                ),
                ("gamma=0.3".to_string(), 1, None),
                ("gamma=0.3 (fork of s0@200)".to_string(), 1, fork("s0@200")),
            ]
        );
        assert!(caveats(&by_seed).is_empty());
        let by_kind = gather(&runs, &GroupBy::Keys(vec!["combiner.kind".into()])).unwrap();
        assert_eq!(
            by_kind[0].runs.len(),
            8,
            "--group-by pools what it is told to"
        );
        let notes = caveats(&by_kind);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].contains("pools runs that differ in meltr.gamma"),
            "{}",
            notes[0]
        );
        assert!(
            notes[1].contains("counts forks with their parents (s1-fork, s2-fork, g03-fork)"),
            "{}",
            notes[1]
        );
    }

    /// A fork of a fork whose middle run is not among the runs still
    /// continues the first: it is no seed of it.
    #[test]
    fn a_fork_of_a_fork_is_no_seed_of_the_first() {
        let root = tempfile::tempdir().unwrap();
        let mut runs = Vec::new();
        for (name, seed) in [("a", 0), ("b", 1), ("grandchild", 0)] {
            runs.push(finished_seed(root.path(), name, seed));
        }
        runs[2].meta.parent = Some("20200101-000000-middle".into());
        runs[2].meta.fork_step = Some(300);
        runs[2].ancestors = vec![
            ("20200101-000000-middle".into(), 300),
            (runs[0].meta.id.clone(), 200),
        ];
        let groups = gather(&runs, &GroupBy::Seeds).unwrap();
        let sizes: Vec<usize> = groups.iter().map(|g| g.runs.len()).collect();
        assert_eq!(sizes, [2, 1]);
        let by_kind = gather(&runs, &GroupBy::Keys(vec!["combiner.kind".into()])).unwrap();
        let notes = caveats(&by_kind);
        assert!(
            notes
                .iter()
                .any(|n| n.contains("counts forks with their parents (grandchild)")),
            "{notes:?}"
        );
    }

    /// A stopped run and one edited while it trained entered tables like
    /// any other (walkthrough).
    #[test]
    fn unfinished_and_edited_runs_are_noted() {
        let root = tempfile::tempdir().unwrap();
        let mut runs = Vec::new();
        for (name, seed) in [("s0", 0), ("s1", 1), ("s2", 2)] {
            runs.push(finished_seed(root.path(), name, seed));
        }
        runs[1].status = "stopped".into();
        (runs[1].step, runs[1].steps) = (150, 400);
        runs[2].edits = vec![
            (100, vec!["aid.iterations".into()]),
            (300, vec!["aid.iterations".into()]),
        ];
        let groups = gather(&runs, &GroupBy::Seeds).unwrap();
        assert_eq!(
            caveats(&groups),
            [
                "note: s0 (n=3) has runs that did not finish (s1 stopped at 150/400): their last eval is not the end of training",
                "note: s0 (n=3) has runs whose settings changed while they trained (s2: aid.iterations at steps 100, 300): the settings shown are the last ones",
            ]
        );
        // A fork (its parent gone): the edits up to its fork step were its
        // parent's, and its own change at the fork is named.
        runs[2].meta.parent = Some("20200101-000000-gone".into());
        runs[2].meta.fork_step = Some(200);
        runs[2].fork_changes = vec!["aid.alpha".into()];
        runs[1].status = "finished".into();
        let groups = gather(&runs, &GroupBy::Seeds).unwrap();
        let notes = caveats(&groups);
        assert!(
            notes.iter().any(|n| n.contains(
                "(s2: aid.iterations at step 100 in its parent, before the fork; aid.iterations at step 300; aid.alpha at its fork (step 200))"
            )),
            "{notes:?}"
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
