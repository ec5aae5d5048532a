//! `table --at-step`: the runs as they stood at a step.

use crate::runs::{groups, Run};
use anyhow::{bail, Result};

/// `table --at-step STEP`: each run as it stood at `step`, and a note
/// naming the runs with no eval at that step (their last before it is
/// read) and the forks left out (made after it). A run that has not
/// reached the step is an error.
pub(super) fn runs_at_step(runs: &[Run], step: u64) -> Result<(Vec<Run>, Option<String>)> {
    // A fork's log before its fork step is its parent's: at such a step it
    // did not exist yet (its row read its parent's numbers under its own
    // settings, a review).
    // A fork from a later step is not short of it: it starts after it
    // (walkthrough B read "has not reached it" of a fork at 801 for 700).
    // Such forks are left out, said (a fork joins its parent's group, and
    // `table --group G --at-step` was refused whole for it, walkthrough F);
    // nothing else left is an error.
    let is_later_fork = |r: &Run| r.meta.fork_step.is_some_and(|at| at >= step);
    let later_forks: Vec<String> = runs
        .iter()
        .filter(|r| is_later_fork(r))
        .map(|r| {
            format!(
                "{} (forked at step {})",
                r.meta.id,
                r.meta.fork_step.unwrap_or(step)
            )
        })
        .collect();
    let left_out = (!later_forks.is_empty()).then(|| {
        format!(
            "--at-step {step}: left out {}, which did not exist yet (a fork is its own only after its fork step; \
             up to it, its log is its parent's): {}",
            if later_forks.len() == 1 { "a fork" } else { "forks" },
            later_forks.join(", ")
        )
    });
    let runs: Vec<Run> = runs.iter().filter(|r| !is_later_fork(r)).cloned().collect();
    if runs.is_empty() {
        bail!(
            "{}; pick a later step",
            left_out.unwrap_or_else(|| format!("--at-step {step}: no sessions"))
        );
    }
    let runs = runs.as_slice();
    let short: Vec<String> = runs
        .iter()
        .filter_map(|r| match &r.log_error {
            Some(e) => Some(format!("{} (its log does not read: {e})", r.meta.id)),
            None if r.step < step => Some(format!("{} (at step {})", r.meta.id, r.step)),
            None => None,
        })
        .collect();
    if !short.is_empty() {
        bail!(
            "--at-step {step}: {} not reached it: {}; pick an earlier step, or leave {} out",
            if short.len() == 1 {
                "a session has"
            } else {
                "sessions have"
            },
            short.join(", "),
            if short.len() == 1 { "it" } else { "them" }
        );
    }
    let at: Vec<Run> = runs.iter().map(|r| r.at_step(step)).collect();
    // Evaluated only after the step: "has no eval line (it is at step 20)"
    // named the step asked for as the run's (walkthrough Q).
    let early: Vec<String> = at
        .iter()
        .zip(runs)
        .filter(|(then, _)| then.final_eval.is_none())
        .map(|(_, whole)| {
            // A fork's own evals are those after its fork step.
            let evals = crate::runs::evals_of(&whole.dir, &whole.meta);
            let first = evals.iter().map(|e| e.0).find(|&at| whole.meta.owns(at));
            match (first, whole.meta.fork_step) {
                (Some(first), _) => format!("{} (its first at step {first})", whole.meta.id),
                (None, Some(fork)) => {
                    format!("{} (none after its fork step {fork})", whole.meta.id)
                }
                (None, None) => format!("{} (none at all)", whole.meta.id),
            }
        })
        .collect();
    if !early.is_empty() {
        bail!(
            "--at-step {step}: no eval at or before it in {}; pick a later step",
            early.join(", ")
        );
    }
    let runs = at;
    // By the step read: a sweep's hundred runs are one clause, not a list.
    let mut elsewhere: std::collections::BTreeMap<u64, Vec<&str>> = Default::default();
    for r in &runs {
        if let Some((at, _)) = &r.final_eval {
            if *at != step {
                elsewhere.entry(*at).or_default().push(&r.meta.id);
            }
        }
    }
    let note = (!elsewhere.is_empty()).then(|| {
        let each: Vec<String> = elsewhere
            .iter()
            .map(|(at, ids)| {
                let ids: Vec<String> = ids.iter().map(|id| id.to_string()).collect();
                format!("{} at step {at}", groups::few(&ids))
            })
            .collect();
        // "some runs" of all of them misread (walkthrough G).
        let missing: usize = elsewhere.values().map(Vec::len).sum();
        let which = match missing == runs.len() {
            true => "any run, so each one's",
            false => "some runs, whose",
        };
        format!(
            "--at-step {step}: no eval at that step in {which} last eval before it is read: {}",
            each.join("; ")
        )
    });
    let note = match (left_out, note) {
        (Some(left), Some(note)) => Some(format!("{left}\n{note}")),
        (left, note) => left.or(note),
    };
    Ok((runs, note))
}
