//! `export --format model`: the fine-tuned TorchScript module a
//! checkpoint holds, from the newest checkpoint, the one at a step
//! (`--at`), or the one whose evaluation scored best (`--best`).

use crate::engine::checkpoint::{self, Loaded};
use crate::session::{atomic_write, SessionDir, SessionMeta};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Which checkpoint the module comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The newest readable one.
    Newest,
    /// The one written at this step.
    At(u64),
    /// Among the kept checkpoints written at an evaluation's step, the one
    /// with the best primary metric.
    Best,
}

/// A written module: its path, its step, and what to tell about the pick
/// (`--best`: the metric, and the better evaluation whose checkpoint was
/// not kept, if any).
pub struct Written {
    pub path: PathBuf,
    pub step: u64,
    pub note: Option<String>,
}

/// The best-scoring checkpoint among `checkpoints` (steps, ascending) by
/// the evaluations at their steps (`evals`: step and primary metric, in
/// log order; a step evaluated twice, as after a resume, counts its last),
/// and a note naming the metric and, when an evaluation without a kept
/// checkpoint scored better, that one.
fn best_of(
    checkpoints: &[u64],
    evals: &[(u64, f64)],
    metric: &str,
    higher_is_better: bool,
) -> Result<(u64, String)> {
    let better = |a: f64, b: f64| if higher_is_better { a > b } else { a < b };
    let mut at_step = std::collections::BTreeMap::new();
    for &(step, value) in evals {
        at_step.insert(step, value);
    }
    let best_among = |steps: &mut dyn Iterator<Item = u64>| {
        let mut best: Option<(u64, f64)> = None;
        for step in steps {
            let Some(&value) = at_step.get(&step).filter(|v| v.is_finite()) else {
                continue;
            };
            if best.is_none_or(|(_, b)| better(value, b)) {
                best = Some((step, value));
            }
        }
        best
    };
    let Some((step, value)) = best_among(&mut checkpoints.iter().copied()) else {
        let steps: Vec<String> = checkpoints.iter().map(u64::to_string).collect();
        bail!(
            "no kept checkpoint was written at an evaluation's step (checkpoints at steps {}; \
             evaluations with a finite {metric} at {} steps): --best needs both at one step \
             (train.checkpoint_best = true, the default, writes one at each new best evaluation; \
             or train.checkpoint_every a multiple of train.eval_every); --at STEP or the newest \
             checkpoint exports one anyway",
            steps.join(", "),
            at_step.values().filter(|v| v.is_finite()).count(),
        );
    };
    let goal = if higher_is_better {
        "highest"
    } else {
        "lowest"
    };
    let mut note = format!(
        "the {goal} {metric} among the kept checkpoints' evaluations: {}",
        crate::numfmt::readable(value)
    );
    if let Some((overall_step, overall)) = best_among(&mut at_step.keys().copied()) {
        if better(overall, value) {
            note.push_str(&format!(
                "; the evaluation at step {overall_step} scored {} but has no checkpoint kept \
                 (one is written every train.checkpoint_every steps and, with \
                 train.checkpoint_best = true, the default, at each new best evaluation; a run \
                 keeps its newest train.keep_checkpoints, 0 keeps all)",
                crate::numfmt::readable(overall)
            ));
        }
    }
    Ok((step, note))
}

/// For a fork that never beat the model it started from (its fork step
/// `start`, and that step's evaluation, its parent's, against the best of
/// its `own` evaluations, kept or not), the words that say so; empty
/// otherwise (walkthrough O's fork at 400 exported its step 450,
/// ppl 17.65, while its step-400 checkpoint, its parent's, read 10.78).
fn start_scored_better(
    (at, value): (u64, f64),
    own: &[(u64, f64)],
    higher_is_better: bool,
    kept: &[u64],
) -> String {
    let better = |a: f64, b: f64| if higher_is_better { a > b } else { a < b };
    let own_best = own
        .iter()
        .map(|e| e.1)
        .filter(|v| v.is_finite())
        .reduce(|a, b| if better(b, a) { b } else { a });
    if !own_best.is_some_and(|best| better(value, best)) {
        return String::new();
    }
    let how = match kept.contains(&at) {
        true => format!("`--at {at}` exports it"),
        false => "its parent's checkpoint there exports it".to_string(),
    };
    format!(
        "; the model it was forked from (step {at}, its parent's) scored {}, better than any \
         evaluation of its own: {how}",
        crate::numfmt::readable(value)
    )
}

/// The checkpoint `pick` names in the session in `dir` (`id`), read.
fn picked(dir: &Path, id: &str, pick: Pick) -> Result<(Loaded, Option<String>)> {
    let layout = SessionDir::new(dir);
    let all = checkpoint::list(&layout.checkpoints());
    let steps: Vec<u64> = all.iter().map(|(step, _)| *step).collect();
    let listed = || {
        steps
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (step, note) = match pick {
        Pick::Newest => {
            let (newest, unreadable) = Loaded::newest_readable(&layout.checkpoints());
            let unread = match unreadable.first() {
                Some((path, why)) => format!(" ({} does not read back: {why})", path.display()),
                None => String::new(),
            };
            let newest = newest.with_context(|| {
                format!(
                    "session {id} has no checkpoint to export the model from{unread}: a run writes \
                     one every train.checkpoint_every steps, at its end, and on `c` in the TUI"
                )
            })?;
            return Ok((newest, None));
        }
        Pick::At(at) if steps.contains(&at) => (at, None),
        Pick::At(at) => bail!(
            "session {id} has no checkpoint at step {at}; it has checkpoints at steps {} (a run \
             keeps its newest train.keep_checkpoints, 3 by default; 0 keeps all)",
            listed()
        ),
        Pick::Best => {
            if steps.is_empty() {
                bail!("session {id} has no checkpoint to export the model from");
            }
            let meta = SessionMeta::read(dir)?;
            // A fork's own evals, after its fork step: the checkpoint at
            // that step is its parent's model (a review: `ls` and `table`
            // read a later best than the export took).
            let all_evals: Vec<(u64, f64)> = crate::runs::evals_of(dir, &meta)
                .into_iter()
                .filter_map(|(step, metrics)| metrics.get(&meta.primary_metric).map(|&v| (step, v)))
                .collect();
            let evals: Vec<(u64, f64)> = all_evals
                .iter()
                .copied()
                .filter(|(step, _)| meta.owns(*step))
                .collect();
            let (step, mut note) =
                best_of(&steps, &evals, &meta.primary_metric, meta.higher_is_better)
                    .with_context(|| format!("session {id}"))?;
            let start = meta.fork_step.and_then(|at| {
                let value = all_evals.iter().rev().find(|(s, _)| *s == at)?.1;
                Some((at, value))
            });
            if let Some(start) = start {
                note.push_str(&start_scored_better(
                    start,
                    &evals,
                    meta.higher_is_better,
                    &steps,
                ));
            }
            (step, Some(note))
        }
    };
    let path = &all[steps
        .iter()
        .position(|&s| s == step)
        .expect("a listed step")]
    .1;
    let loaded = Loaded::read(path, step)
        .with_context(|| format!("checkpoint {} does not read back", path.display()))?;
    Ok((loaded, note))
}

/// Writes `<out>/<session id>-step-<N>.pt`, the TorchScript module as the
/// picked checkpoint holds it (trained parameters and buffers, frozen
/// ones as loaded; in the run's dtype and on its device).
pub fn write_model(session: &Path, out: &Path, pick: Pick) -> Result<Written> {
    let dir = SessionDir::new(session);
    let id = dir.id();
    let (ckpt, note) = picked(session, &id, pick)?;
    let module = ckpt
        .get(&crate::workload::saved_module_key())
        .with_context(|| {
            let path = ckpt.path.display();
            match SessionMeta::read(session).map(|m| m.workload) {
                Ok(kind) if kind != "torchscript" => format!(
                    "session {id} trains the built-in {kind} workload, not a TorchScript model: its \
                     checkpoint {path} holds the parameters as model.* tensors (safetensors), there \
                     is no module to export"
                ),
                _ => format!(
                    "checkpoint {path} holds no TorchScript module (the run could not serialize it \
                     then; its output.log says why); its model.* tensors are the trained parameters"
                ),
            }
        })?;
    let bytes = Vec::<u8>::try_from(module)
        .with_context(|| format!("checkpoint {}: the saved module", ckpt.path.display()))?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let path = out.join(format!("{id}-step-{}.pt", ckpt.step));
    atomic_write(&path, &bytes)?;
    Ok(Written {
        path,
        step: ckpt.step,
        note,
    })
}

#[cfg(test)]
mod tests {
    use super::{best_of, start_scored_better};

    #[test]
    fn best_picks_the_best_evaluated_checkpoint_and_names_a_better_unkept_one() {
        // Accuracy: evaluations every 50 steps, checkpoints kept at 200, 300, 400.
        let evals = [
            (50, 0.60),
            (100, 0.90),
            (200, 0.80),
            (250, 0.85),
            (300, 0.82),
            (400, 0.70),
        ];
        let (step, note) = best_of(&[200, 300, 400], &evals, "acc", true).unwrap();
        assert_eq!(step, 300);
        assert!(
            note.starts_with("the highest acc among the kept checkpoints' evaluations: 0.82"),
            "{note}"
        );
        assert!(
            note.contains("the evaluation at step 100 scored 0.9 but has no checkpoint kept"),
            "{note}"
        );
        // A loss-like metric: the lowest wins; with the overall lowest kept,
        // no second part.
        let (step, note) = best_of(&[50, 300, 400], &evals, "mse", false).unwrap();
        assert_eq!(step, 50);
        assert!(
            note.starts_with("the lowest mse") && !note.contains("no checkpoint kept"),
            "{note}"
        );
    }

    #[test]
    fn a_fork_that_never_beat_its_start_says_so() {
        // Its own: 17.65 kept at 450, 12.0 at 420 without a checkpoint.
        let own = [(420, 12.0), (450, 17.65)];
        let said = start_scored_better((400, 10.78), &own, false, &[400, 450]);
        assert!(
            said.contains("forked from (step 400, its parent's) scored 10.78"),
            "{said}"
        );
        assert!(said.ends_with("`--at 400` exports it"), "{said}");
        let gone = start_scored_better((400, 10.78), &own, false, &[450]);
        assert!(
            gone.ends_with("its parent's checkpoint there exports it"),
            "{gone}"
        );
        // An evaluation of its own beat the start, kept or not: nothing.
        assert_eq!(start_scored_better((400, 12.5), &own, false, &[400]), "");
        assert_eq!(
            start_scored_better((400, 0.7), &[(450, 0.8)], true, &[400]),
            ""
        );
        assert!(!start_scored_better((400, 0.8), &[(450, 0.7)], true, &[400]).is_empty());
        assert_eq!(start_scored_better((400, 0.8), &[], true, &[400]), "");
    }

    #[test]
    fn best_counts_a_steps_last_evaluation_and_skips_non_finite_ones() {
        // Step 200 evaluated twice (a resume): its second value counts.
        let evals = [(100, 0.5), (200, 0.9), (200, 0.4), (300, f64::NAN)];
        let (step, _) = best_of(&[100, 200, 300], &evals, "acc", true).unwrap();
        assert_eq!(step, 100);
    }

    #[test]
    fn best_without_an_evaluated_checkpoint_says_what_would_give_one() {
        let err = best_of(&[30, 60], &[(25, 0.5), (50, 0.6)], "acc", true).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("checkpoints at steps 30, 60; evaluations with a finite acc at 2 steps")
                && text.contains("--at STEP"),
            "{text}"
        );
    }
}
