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
        .keys()
        .filter(|k| k.as_str() != keys::SEED)
        .map(|k| (k.clone(), run.setting(k).unwrap_or_default()))
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
        // By name, unless another run has that name too: then its id (a
        // walkthrough's four sessions named `cnn` left "cnn@200" to guess).
        let name = all
            .iter()
            .find(|p| &p.meta.id == parent)
            .map(|p| p.meta.name.as_str())
            .filter(|name| all.iter().filter(|o| o.meta.name == *name).count() == 1)
            .unwrap_or(parent.as_str());
        let at = r.meta.fork_step.map_or(String::new(), |s| format!("@{s}"));
        let named = format!("{name}{at}");
        if !parents.contains(&named) {
            parents.push(named);
        }
    }
    (!parents.is_empty()).then(|| few(&parents))
}

/// `NAME, NAME and 3 more`.
pub fn few(names: &[String]) -> String {
    const SHOWN: usize = 4;
    match names.len() {
        n if n <= SHOWN => names.join(", "),
        n => format!("{} and {} more", names[..SHOWN].join(", "), n - SHOWN),
    }
}

/// The note on a group whose runs did not all finish (`table --at-step`
/// leaves it out: it reads every run short of its end on purpose).
pub const UNFINISHED: &str = "has runs that did not finish";

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
        // Ranks live in session.json, not the config: runs on different
        // numbers pooled as seeds, unsaid (walkthrough L).
        let ranks = |r: &Run| r.meta.ranks();
        if g.runs.iter().any(|r| ranks(r) != ranks(g.runs[0])) {
            let mut each: Vec<String> = g
                .runs
                .iter()
                .map(|r| format!("{}: {}", r.meta.name, ranks(r)))
                .collect();
            each.sort_unstable();
            notes.push(format!(
                "{head} pools runs trained on different numbers of ranks ({}): M is not linear, so a \
                 MELTR run depends on it (a `sum` run does not, to rounding); --group-by ranks splits them",
                few(&each)
            ));
        }
        // Sessions put in different `--group`s pool when their settings
        // agree (walkthrough R3: seeds 0–2 and 3–7, run apart, read as one
        // row, unsaid).
        let mut in_groups: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &g.runs {
            *in_groups
                .entry(r.meta.group.as_deref().unwrap_or("none"))
                .or_default() += 1;
        }
        if in_groups.len() > 1 {
            let each: Vec<String> = in_groups.iter().map(|(n, c)| format!("{n}: {c}")).collect();
            notes.push(format!(
                "{head} pools runs of different session groups ({}), as their settings agree: --group \
                 NAME tabulates one alone, --group-by group splits them by group alone",
                few(&each)
            ));
        }
        // `HEAD what (a, b): why`, when there is anything to list.
        let mut listed = |what: &str, list: String, why: &str| {
            if !list.is_empty() {
                notes.push(format!("{head} {what} ({list}): {why}"));
            }
        };
        let fork_runs: Vec<&Run> = g
            .runs
            .iter()
            .filter(|r| {
                lineage(r)
                    .iter()
                    .any(|id| g.runs.iter().any(|o| o.meta.id == *id))
            })
            .copied()
            .collect();
        let forks: Vec<String> = fork_runs.iter().map(|r| r.meta.name.clone()).collect();
        listed(
            "counts forks with their parents",
            few(&forks),
            "a fork repeats its parent's steps up to the fork, so it is not an independent seed",
        );
        // Runs of one config, seed included, are repeats, not replicates:
        // n and the spread counted them as such, unsaid (a walkthrough's
        // n=2, ± 0.00).
        let mut by_config: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
        let is_fork = |r: &Run| fork_runs.iter().any(|f| f.meta.id == r.meta.id);
        for r in g.runs.iter().filter(|r| !is_fork(r)) {
            let seed = r.value("workload.seed").unwrap_or_default();
            let entry = by_config
                .entry(format!("{:?}", r.config))
                .or_insert_with(|| (seed, Vec::new()));
            entry.1.push(r.meta.name.clone());
        }
        let repeated: Vec<String> = by_config
            .values()
            .filter(|(_, names)| names.len() > 1)
            .map(|(seed, names)| format!("seed {seed}: {}", few(names)))
            .collect();
        listed(
            "has runs of the same seed",
            repeated.join("; "),
            "they repeat one another rather than replicate, so n and the spread overstate the evidence",
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
            UNFINISHED,
            few(&unfinished),
            "their last eval is not the end of training",
        );
        let edited: Vec<String> = g
            .runs
            .iter()
            .filter(|r| !r.edited.is_empty())
            .map(|r| {
                // A fork's edits up to its fork step are its parent's (a
                // walkthrough read them as the fork's own, and missed the
                // fork's own change at the fork).
                let fork_step = r.meta.fork_step.filter(|_| r.meta.parent.is_some());
                let (inherited, own): (Vec<_>, Vec<_>) = r
                    .edits()
                    .into_iter()
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
            "where a row or legend shows such a setting, it reads OLD→NEW@STEP",
        );
        let skipped: Vec<String> = g
            .runs
            .iter()
            .filter_map(|r| {
                let (percent, steps) = r.skipped_share?;
                Some(format!("{} {percent}% of {steps} steps", r.meta.name))
            })
            .collect();
        listed(
            "has runs whose updates were skipped on many steps",
            skipped.join("; "),
            "a non-finite loss or gradient trained nothing there; the run's warnings name the steps and rows",
        );
        let restored: Vec<String> = g
            .runs
            .iter()
            .filter(|r| !r.restores.is_empty())
            .map(|r| {
                // A fork's log holds its parent's lines up to the fork: those
                // restores were the parent's (walkthrough H's note gave the
                // fork all four). One said at the fork step takes effect
                // "before" the next; the fork's own come after its first step.
                let fork_step = r.meta.fork_step.filter(|_| r.meta.parent.is_some());
                let (inherited, own): (Vec<u64>, Vec<u64>) = r
                    .restores
                    .iter()
                    .partition(|&&before| fork_step.is_some_and(|at| before <= at + 1));
                let parts: Vec<String> =
                    [(inherited, " in its parent, before the fork"), (own, "")]
                        .into_iter()
                        .filter(|(steps, _)| !steps.is_empty())
                        .map(|(steps, whose)| {
                            let steps: Vec<String> = steps.iter().map(u64::to_string).collect();
                            format!(
                                "before step{} {}{whose}",
                                if steps.len() == 1 { "" } else { "s" },
                                few(&steps)
                            )
                        })
                        .collect();
                format!("{} {}", r.meta.name, parts.join("; "))
            })
            .collect();
        listed(
            "has runs with collapse restores",
            restored.join("; "),
            "φ was put back and the meta-learning rate in force halved (γ raised at the first); the settings shown are the configured ones",
        );
        let collapsed: Vec<String> = g
            .runs
            .iter()
            .filter(|r| !r.unrestored_collapses.is_empty())
            .map(|r| {
                let steps: Vec<String> =
                    r.unrestored_collapses.iter().map(u64::to_string).collect();
                // Walkthrough Q's best MELTR seed had risen back to 0.635,
                // and the note read as if its numbers came from a collapse;
                // the last logged weight, not the final mean, says so
                // (walkthrough T's mean straddled its fall to 0.01).
                let recovered = r
                    .last_primary_weight
                    .filter(|w| *w >= crate::engine::collapse::PRIMARY_FLOOR)
                    .map_or(String::new(), |w| {
                        format!(", back to {} at the end", crate::numfmt::readable(w))
                    });
                format!(
                    "{} at step{} {}{recovered}",
                    r.meta.name,
                    if steps.len() == 1 { "" } else { "s" },
                    few(&steps)
                )
            })
            .collect();
        listed(
            // Not "collapsed": most end while the watch still counts
            // (walkthrough N's read as a collapse the run had not said).
            "has runs whose primary weight fell below 0.1 (a tenth of its weight under `sum`) and was not put back",
            collapsed.join("; "),
            "the run ended before the collapse watch acted, it had no healthy meta step to restore yet (or only one whose restore had not lifted the weight before, or one its primary's loss had climbed far from since), or meltr.on_collapse = \"warn\" (the run's events say which); a run back above 0.1 at its end rose again on its own",
        );
        let cut: Vec<String> = g
            .runs
            .iter()
            .filter_map(|r| {
                let (cut, all) = r.neumann_cut.filter(|(cut, _)| *cut > 0)?;
                // The count with the share: 1 of 400 read "0%" (walkthrough Q2).
                let share = 100.0 * cut as f64 / all as f64;
                Some(format!("{} {cut} of {all}, {share:.0}%", r.meta.name))
            })
            .collect();
        listed(
            "has runs whose Neumann series was cut short on some meta steps",
            few(&cut),
            "it diverged there, and those meta steps took v_0 alone (as at J = 0; the run's events say when): \
             each run's divergence warning says whether a smaller aid.alpha would converge or none does (H curving down: aid.iterations = 0)",
        );
    }
    notes.extend(unlike_budgets(groups));
    notes
}

/// Finished runs whose final evals lie at different steps: rows trained for
/// different budgets (a walkthrough resumed one sweep member to 700 steps,
/// and its n = 1 row read best against 500-step ones).
fn unlike_budgets(groups: &[Group]) -> Option<String> {
    // Budgets told apart on purpose (--group-by train.steps) are the point.
    if groups
        .iter()
        .any(|g| g.values.iter().any(|(key, _)| key == "train.steps"))
    {
        return None;
    }
    let mut by_step: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for r in groups.iter().flat_map(|g| &g.runs) {
        if let (Some((step, _)), "finished") = (&r.final_eval, r.status.as_str()) {
            by_step.entry(*step).or_default().push(r.meta.name.clone());
        }
    }
    (by_step.len() > 1).then(|| {
        let ends: Vec<String> = by_step
            .iter()
            .map(|(step, names)| match names.len() {
                1 => format!("{step}: {}", names[0]),
                n => format!("{step}: {n} runs"),
            })
            .collect();
        let most = by_step
            .iter()
            .max_by_key(|(_, names)| names.len())
            .map_or(0, |(step, _)| *step);
        format!(
            "note: the runs' final evals lie at different steps ({}): groups of different training budgets compare unlike; \
             --where train.steps={most} keeps those of {most} steps",
            ends.join("; ")
        )
    })
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
                .map(|k| (k.clone(), r.setting(k).unwrap_or_else(|| "-".into())))
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
            // As the groups were told apart: by setting, edits included.
            let firsts: Vec<&Run> = order.iter().map(|id| members[id][0]).collect();
            let all: std::collections::BTreeSet<&String> =
                firsts.iter().flat_map(|r| r.config.keys()).collect();
            all.into_iter()
                .filter(|k| k.as_str() != keys::SEED)
                .filter(|k| firsts.iter().any(|r| r.setting(k) != firsts[0].setting(k)))
                .cloned()
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
                        .and_then(|r| r.setting(k))
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
    unread_keys_as_dashes(&mut groups);
    finish_labels(&mut groups);
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

mod labels;
use labels::{fallback_label, finish_labels, unread_keys_as_dashes};
pub use labels::{label_of, relabel, shorten_shared_folders};

#[cfg(test)]
mod tests;
