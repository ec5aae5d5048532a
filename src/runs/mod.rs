//! The runs table: every session of a sessions folder as one [`Run`] —
//! status, progress, final and best primary metric, group, and its config
//! flattened to dotted keys. `ls` filters, sorts and prints these rows
//! (with the config keys that differ between them as columns), `table`
//! and `compare` gather them into groups of seeds: pure reading of
//! session folders (the command line overlays what live runners say).

pub mod best;
pub mod filter;
pub mod groups;
pub mod keys;
mod primary_metrics;
pub mod render;
pub mod stats;
pub mod table;
pub use primary_metrics::{mixed_metrics, shared_primary_metric};

use crate::session::metrics::{self, Named, Record};
use crate::session::{self, SessionDir, SessionMeta};
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// An eval line's step and metrics.
pub type Eval = (u64, Named);

/// One session as the runs table sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// The session folder.
    pub dir: PathBuf,
    /// Why its `metrics.jsonl` does not read (a corrupt line): its step,
    /// evals and weights are then unknown, not zero.
    pub log_error: Option<String>,
    /// Its `session.json`.
    pub meta: SessionMeta,
    /// The status shown: `session.json`'s, `crashed` for a non-terminal
    /// one whose process is gone (the command line may overlay what a live
    /// runner says).
    pub status: String,
    /// The runner's pid while its process is alive.
    pub alive_pid: Option<u32>,
    /// The last step logged.
    pub step: u64,
    /// The steps it runs to (the config in force).
    pub steps: u64,
    /// The last eval line.
    pub final_eval: Option<Eval>,
    /// The eval line with the best primary metric (per `higher_is_better`).
    pub best_eval: Option<Eval>,
    /// Each loss's effective weight at the end: the median of its last
    /// [`metrics::FINAL_WEIGHT_LINES`] logged values, or its last
    /// [`metrics::FINAL_WEIGHT_STEPS`] steps' (empty when none was logged).
    pub final_weights: Named,
    /// The primary loss's last finite logged effective weight: where a
    /// run ended, which the mean above can miss (a walkthrough's run fell
    /// from 1.03 to 0.01 inside that window; its mean read 0.21).
    pub last_primary_weight: Option<f64>,
    /// Each loss's share of the combined gradient at the end, averaged
    /// alike (empty when no shares were logged).
    pub final_shares: Named,
    /// How many logged share lines those means hold (shares are logged
    /// every `train.shares_every` steps).
    pub final_share_lines: usize,
    /// Each training loss at the end, averaged alike.
    pub final_losses: Named,
    /// The config it ran with, by dotted key (`aid.iterations`).
    pub config: BTreeMap<String, toml::Value>,
    /// A fork's changes at its fork step (the keys).
    pub fork_changes: Vec<String>,
    /// The steps before which a collapse restore put φ back (and lowered
    /// the meta-learning rate in force, γ raised the first time).
    pub restores: Vec<u64>,
    /// The steps of collapse warnings that put nothing back (no healthy
    /// meta step yet, or `meltr.on_collapse = "warn"`): its numbers after
    /// them come from a collapsed MELTR.
    pub unrestored_collapses: Vec<u64>,
    /// The skipped share its end said, `(percent, steps)`, when notable (a
    /// run whose updates were 18% skipped looked clean in `ls` and `table`,
    /// walkthrough S).
    pub skipped_share: Option<(u64, u64)>,
    /// Meta steps whose Neumann series was cut short (it diverged, and
    /// fewer iterations than `aid.iterations` were summed), and all its meta
    /// steps; `None` where `aid.iterations` was edited while it ran.
    pub neumann_cut: Option<(usize, usize)>,
    /// Settings changed while its numbers were made (live edits, a
    /// resume's `--set`s; a fork's history, its parents' edits before the
    /// fork, included and its own changes at the fork not), by key: the
    /// value before the first edit, and each edit's step and new value.
    pub edited: Edited,
    /// Every run this one was forked from, nearest first, with the step:
    /// its parent, its parent's parent, … (from the fork lines its log
    /// carries).
    pub ancestors: Vec<(String, u64)>,
    /// The step and reason of a refused `config.toml` edit that no later
    /// edit replaced: the file then says what the run does not do.
    pub refused_edit: Option<(u64, String)>,
}

impl Run {
    /// Reads the session in `dir`.
    pub fn load(dir: &Path) -> Result<Run> {
        let meta = SessionMeta::read(dir)?;
        Ok(Run::from_meta(dir, meta))
    }

    /// The run of the session in `dir` whose `session.json` is `meta`.
    pub fn from_meta(dir: &Path, meta: SessionMeta) -> Run {
        Run::up_to(dir, meta, None)
    }

    /// This run as it stood at `step` (`table --at-step`): its log read up
    /// to that step, so its last eval, best eval, final means, restores and
    /// edits are those of the steps up to it.
    pub fn at_step(&self, step: u64) -> Run {
        Run::up_to(&self.dir, self.meta.clone(), Some(step))
    }

    /// The run from the lines of its log up to `last_step` (all: `None`).
    fn up_to(dir: &Path, meta: SessionMeta, last_step: Option<u64>) -> Run {
        let Logged {
            step,
            evals,
            fork_changes,
            restores,
            unrestored_collapses,
            skipped_share,
            meta_terms,
            edited,
            ancestors,
            refused_edit,
            weights,
            shares,
            losses,
            unreadable,
            edited_later,
        } = logged(dir, &meta, last_step);
        let better = |a: f64, b: f64| {
            if meta.higher_is_better {
                a > b
            } else {
                a < b
            }
        };
        let primary = |e: &Eval| e.1.get(&meta.primary_metric).copied();
        let mut best: Option<&Eval> = None;
        // A fork's log starts with its parent's: its best is after the fork
        // point (walkthrough M's fork reported its parent's evaluation as
        // its own best; walkthrough G's `table --best` credited a fork's new
        // meta_lr with the evaluation at its fork step, made before it).
        let since_fork = |e: &&Eval| meta.owns(e.0);
        for e in evals.iter().filter(since_fork) {
            let Some(v) = primary(e).filter(|v| v.is_finite()) else {
                continue;
            };
            if best.and_then(primary).is_none_or(|b| better(v, b)) {
                best = Some(e);
            }
        }
        let alive = !meta.status.is_terminal() && meta.runner_alive();
        let status = if !meta.status.is_terminal() && !alive {
            "crashed".to_string()
        } else {
            meta.status.as_str().to_string()
        };
        let mut config = keys::config_of(dir);
        for (key, then) in edited_later {
            if let Ok(value) = serde_json::from_value::<toml::Value>(then) {
                config.insert(key, value);
            }
        }
        let steps = config
            .get("train.steps")
            .and_then(toml::Value::as_integer)
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(meta.steps);
        // Against the setting it ran with throughout (walkthrough N's J = 1
        // rows were J = 0 on 10–21% of their meta steps, unsaid).
        let iterations = config
            .get("aid.iterations")
            .and_then(toml::Value::as_integer);
        // A fork that set J ran its parent's meta steps under the parent's
        // (walkthrough P: a J = 0 → 1 fork was said to be cut short on the
        // 100 J = 0 meta steps it had copied).
        let under_own_j = |&&(at, _): &&(u64, u32)| {
            !fork_changes.iter().any(|k| k == "aid.iterations")
                || meta.fork_step.is_none_or(|fork| at > fork)
        };
        let terms: Vec<u32> = meta_terms
            .iter()
            .filter(under_own_j)
            .map(|&(_, t)| t)
            .collect();
        let neumann_cut = iterations
            .filter(|_| !edited.contains_key("aid.iterations") && !terms.is_empty())
            .map(|j| {
                let cut = terms.iter().filter(|&&t| i64::from(t) < j).count();
                (cut, terms.len())
            });
        Run {
            dir: dir.to_path_buf(),
            status,
            alive_pid: alive.then_some(meta.pid),
            step,
            steps,
            best_eval: best.cloned(),
            // A fork's last eval is its own only after its fork step.
            final_eval: evals.last().filter(since_fork).cloned(),
            final_weights: metrics::final_weight_medians(&weights, &losses)
                .map_or_else(Named::new, |(_, m)| m),
            last_primary_weight: weights
                .get(&meta.primary)
                .and_then(|points| points.iter().rev().find(|(_, w)| w.is_finite()))
                .map(|&(_, w)| w),
            final_shares: metrics::final_means(&shares).map_or_else(Named::new, |(_, m)| m),
            final_share_lines: metrics::final_means(&shares).map_or(0, |((from, to), _)| {
                shares.values().next().map_or(0, |points| {
                    points
                        .iter()
                        .filter(|(step, v)| v.is_finite() && (from..=to).contains(step))
                        .count()
                })
            }),
            final_losses: metrics::final_means(&losses).map_or_else(Named::new, |(_, m)| m),
            config,
            fork_changes,
            restores,
            unrestored_collapses,
            skipped_share,
            neumann_cut,
            edited,
            ancestors,
            refused_edit,
            log_error: unreadable,
            meta,
        }
    }

    /// The primary metric at the last eval.
    pub fn metric(&self) -> Option<f64> {
        self.final_eval
            .as_ref()
            .and_then(|e| e.1.get(&self.meta.primary_metric).copied())
    }

    /// The best primary metric over the run's evals.
    pub fn best_metric(&self) -> Option<f64> {
        self.best_eval
            .as_ref()
            .and_then(|e| e.1.get(&self.meta.primary_metric).copied())
    }

    /// The steps where settings changed while it trained, in order, with
    /// the keys each changed (from [`Self::edited`]).
    pub fn edits(&self) -> Vec<(u64, Vec<String>)> {
        let mut by_step: BTreeMap<u64, Vec<String>> = BTreeMap::new();
        for (key, (_, changes)) in &self.edited {
            for (step, _) in changes {
                by_step.entry(*step).or_default().push(key.clone());
            }
        }
        by_step.into_iter().collect()
    }

    /// The value of `key` as a row or a legend shows it: [`Self::value`],
    /// with its live edits as `OLD→NEW@STEP` (a walkthrough's sweep member,
    /// edited at step 505, read as if it had trained with the new value
    /// throughout, in a row and a legend entry of its own).
    pub fn setting(&self, key: &str) -> Option<String> {
        let value = self.value(key)?;
        let Some((before, changes)) = self.edited.get(key) else {
            return Some(value);
        };
        let mut text = before.clone();
        for (step, new) in changes {
            text.push_str(&format!("→{new}@{step}"));
        }
        Some(text)
    }

    /// The value a `--where`/`--group-by` key names: a config key, or
    /// `status`, `group`, `name`, `id`, `ranks` (`2`, or `2→1` for a run
    /// resumed on another number).
    pub fn value(&self, key: &str) -> Option<String> {
        match key {
            "status" => Some(self.status.clone()),
            "ranks" => Some(self.meta.ranks()),
            "group" => self.meta.group.clone(),
            "name" => Some(self.meta.name.clone()),
            "id" => Some(self.meta.id.clone()),
            _ => self.config.get(key).map(keys::text),
        }
    }
}

/// Live-edited keys: the value before, and `(step, new value)` per edit.
pub type Edited = BTreeMap<String, (String, Vec<(u64, String)>)>;

/// A config value of the log (JSON) as [`keys::text`] writes it.
fn json_text(value: &serde_json::Value) -> String {
    serde_json::from_value::<toml::Value>(value.clone())
        .map_or_else(|_| value.to_string(), |v| keys::text(&v))
}

/// What `Run` reads from a session's log (a session with no log yet:
/// step 0, nothing else).
#[derive(Default)]
struct Logged {
    step: u64,
    evals: Vec<Eval>,
    fork_changes: Vec<String>,
    restores: Vec<u64>,
    unrestored_collapses: Vec<u64>,
    skipped_share: Option<(u64, u64)>,
    /// The Neumann terms each meta step summed, with its step.
    meta_terms: Vec<(u64, u32)>,
    edited: Edited,
    ancestors: Vec<(String, u64)>,
    refused_edit: Option<(u64, String)>,
    /// Each loss's logged effective weights, `(step, w)`.
    weights: BTreeMap<String, Vec<(f64, f64)>>,
    /// Each loss's logged gradient shares, `(step, share)`.
    shares: BTreeMap<String, Vec<(f64, f64)>>,
    /// Each logged training loss, `(step, value)`.
    losses: BTreeMap<String, Vec<(f64, f64)>>,
    /// Why the log does not read, when it is there and does not.
    unreadable: Option<String>,
    /// Read up to a step: each key edited at or after it, with its value
    /// before the first such edit (the config then).
    edited_later: BTreeMap<String, serde_json::Value>,
}

/// `forked from session ID at step N[ with K=V, …]`: the id, the step and
/// the keys changed (see `fork::seed`).
fn fork_line(message: &str) -> Option<(String, u64, Vec<String>)> {
    let rest = message.strip_prefix("forked from session ")?;
    let (id, rest) = rest.split_once(" at step ")?;
    let (step, changes) = match rest.split_once(" with ") {
        Some((step, changes)) => (step, changes),
        None => (rest, ""),
    };
    let keys = changes
        .split(", ")
        .filter_map(|c| c.split_once('=').map(|(k, _)| k.trim().to_string()))
        .filter(|k| !k.is_empty() && !k.contains(' '))
        .collect();
    Some((id.to_string(), step.trim().parse().ok()?, keys))
}

/// The session's eval lines in log order (empty when its log does not
/// read).
pub fn evals_of(dir: &Path, meta: &SessionMeta) -> Vec<Eval> {
    logged(dir, meta, None).evals
}

/// What the log says up to `last_step` (all of it: `None`).
fn logged(dir: &Path, meta: &SessionMeta, last_step: Option<u64>) -> Logged {
    let path = SessionDir::new(dir).metrics();
    let read = match session::log::read_metrics(&path) {
        Ok(read) => read,
        Err(e) => {
            return Logged {
                unreadable: path.exists().then(|| format!("{e:#}")),
                ..Logged::default()
            }
        }
    };
    // Up to a step, the edits made at it or after it came after its
    // numbers (an eval comes before a config line of its step): the config
    // then is each such key's value before them (walkthrough S's run
    // resumed at its last step 600 with `train.steps=700` was no longer
    // pooled with its sweep at `--at-step 600`).
    // With no eval at the step, the last one before it is read: the edits
    // from its step on came after it too (a review).
    let edits_from = last_step.map(|last| {
        read.lines
            .iter()
            .filter(|l| l.step <= last && matches!(l.record, Record::Eval { .. }))
            .map(|l| l.step)
            .max()
            .unwrap_or(last)
            // A fork's changes at its fork step are its settings, not edits
            // after the parent's eval of that step.
            .max(meta.first_own_step())
    });
    // An edit at step 0 of a run that is no fork (while its runner set up)
    // is its start setting (walkthrough F's read `0.1→0.2@0`, unpooled).
    let at_start = |step: u64| step == 0 && meta.fork_step.is_none();
    let mut edited_later: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let lines: Vec<_> = read
        .lines
        .into_iter()
        .filter(|l| match (last_step, &l.record) {
            (None, _) => true,
            (Some(_), Record::Config { changed, .. })
                if edits_from.is_some_and(|from| l.step >= from) && !at_start(l.step) =>
            {
                for (key, (old, _)) in changed {
                    edited_later
                        .entry(key.clone())
                        .or_insert_with(|| old.clone());
                }
                false
            }
            (Some(last), _) => l.step <= last,
        })
        .collect();
    let mut out = Logged {
        step: lines.last().map_or(0, |l| l.step),
        edited_later,
        ..Logged::default()
    };
    // Config lines at the fork step after this run's own fork line are its
    // changes at the fork; those before it were its parent's.
    let mut own_fork_seen = false;
    for line in lines {
        match line.record {
            Record::Eval { metrics, losses } => out
                .evals
                .push((line.step, metrics::eval_values(&metrics, &losses))),
            Record::Train {
                weights,
                shares,
                losses,
                ..
            } => {
                for (name, l) in losses {
                    let series = out.losses.entry(name).or_default();
                    series.push((line.step as f64, l));
                }
                for (name, w) in weights {
                    let series = out.weights.entry(name).or_default();
                    series.push((line.step as f64, w));
                }
                for (name, share) in shares {
                    let series = out.shares.entry(name).or_default();
                    series.push((line.step as f64, share));
                }
            }
            Record::Config { changed, error } => {
                out.refused_edit = error.map(|e| (line.step, e));
                let own = own_fork_seen && Some(line.step) == meta.fork_step;
                for (key, (old, new)) in &changed {
                    // The fork's own change is its setting, unless its
                    // history edited the key: then it continues that
                    // chain (walkthrough W's fork to J = 0 of a run edited
                    // to J = 2 read `0→2@100`, the one value it lacked).
                    if (own && !out.edited.contains_key(key)) || at_start(line.step) {
                        continue;
                    }
                    let (before, changes) = out
                        .edited
                        .entry(key.clone())
                        .or_insert_with(|| (json_text(old), Vec::new()));
                    // Edits at one step apply together, before the next:
                    // a value between them never trained (walkthrough J's
                    // `meta_lr=0.001→0.5@200→0.002@200`, the 0.5 undone
                    // while paused, read as if it had run).
                    if changes.last().is_some_and(|(at, _)| *at == line.step) {
                        changes.pop();
                    }
                    let previous = changes.last().map_or(&*before, |(_, v)| v);
                    if *previous != json_text(new) {
                        changes.push((line.step, json_text(new)));
                    }
                    if changes.is_empty() {
                        out.edited.remove(key);
                    }
                }
            }
            Record::Meta { aid_iterations, .. } => out.meta_terms.push((line.step, aid_iterations)),
            Record::Event { message, .. } => {
                // A collapse restore changes φ and the meta-learning rate
                // in force: the numbers after it come from those.
                if let Some(before) = metrics::restored_before(&message) {
                    out.restores.push(before);
                } else if message.starts_with(metrics::COLLAPSE_EVENT)
                    || message.starts_with(metrics::ENDS_COLLAPSED_EVENT)
                {
                    out.unrestored_collapses.push(line.step);
                }
                if let Some(share) = metrics::trained_nothing(&message) {
                    out.skipped_share = Some(share);
                }
                if let Some((id, step, keys)) = fork_line(&message) {
                    if meta.parent.as_ref() == Some(&id) && meta.fork_step == Some(step) {
                        own_fork_seen = true;
                        out.fork_changes = keys;
                    }
                    out.ancestors.insert(0, (id, step));
                }
            }
            _ => {}
        }
    }
    out
}

/// Every session under `root`, oldest first.
pub fn all(root: &Path) -> Vec<Run> {
    session::list(root)
        .into_iter()
        .map(|(dir, meta)| Run::from_meta(&dir, meta))
        .collect()
}

/// How `ls` orders its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SortBy {
    /// By id: oldest first.
    Id,
    /// By the final primary metric, best first (each session's
    /// `higher_is_better`); sessions without one last. Sessions reporting
    /// different metrics are not compared: they are sorted within each
    /// metric, the metrics in name order.
    Metric,
    /// By the best primary metric over the run, best first.
    Best,
}

/// Sorts `runs` in place (stable: ties keep their id order).
pub fn sort(runs: &mut [Run], by: SortBy) {
    let key = |r: &Run| {
        let v = match by {
            SortBy::Id => return f64::NAN,
            SortBy::Metric => r.metric(),
            SortBy::Best => r.best_metric(),
        };
        match v.filter(|v| v.is_finite()) {
            Some(v) if r.meta.higher_is_better => -v,
            Some(v) => v,
            None => f64::INFINITY,
        }
    };
    if by != SortBy::Id {
        // Sessions without a value last; the others by metric (name and
        // direction), best first within each.
        let group = |r: &Run| {
            let value = key(r);
            let rank = (
                value == f64::INFINITY,
                r.meta.primary_metric.clone(),
                !r.meta.higher_is_better,
            );
            (rank, value)
        };
        runs.sort_by(|a, b| {
            let ((a_rank, a_value), (b_rank, b_value)) = (group(a), group(b));
            a_rank.cmp(&b_rank).then(a_value.total_cmp(&b_value))
        });
    }
}

#[cfg(test)]
mod tests;
