//! A table's note on its forks: each fork is one run from its parent's
//! state, so it is set against its parent run, not its parent's group (a
//! walkthrough's fork of one seed was bold above the mean of two, and ended
//! below its own parent).

use super::super::groups::Group;
use super::super::stats::significant_decimals;
use super::super::Run;
use super::value_of;
use crate::numfmt::padded;

/// "each fork beside its own parent run on METRIC: …", when the table has
/// forks; `decimals`: the primary column's, when it is one.
pub(super) fn beside_parents(
    groups: &[Group],
    primary: &str,
    decimals: Option<usize>,
    best: bool,
    up_to: Option<u64>,
) -> Option<String> {
    let all: Vec<&Run> = groups.iter().flat_map(|g| g.runs.iter().copied()).collect();
    let mut each = Vec::new();
    for fork in all.iter().filter(|r| r.meta.fork_step.is_some()) {
        let parent = all
            .iter()
            .find(|p| Some(&p.meta.id) == fork.meta.parent.as_ref());
        let Some(parent) = parent else {
            each.push(format!(
                "{}: its parent {} is not in the table",
                fork.meta.name,
                fork.meta.parent.as_deref().unwrap_or("?")
            ));
            continue;
        };
        let Ok(f) = value_of(fork, primary, best) else {
            continue;
        };
        // Best against best over the same stretch: the fork's is after its
        // fork step, so the parent's is too (walkthrough D's fork read
        // 13.3 below its parent's best, made 1000 steps before the fork,
        // where the parent stood near 18).
        let (p, since) = match (best, fork.meta.fork_step) {
            (true, Some(at)) => match best_after(parent, primary, at, up_to) {
                Some(p) => (p, format!(" after step {at}")),
                None => {
                    each.push(format!(
                        "{}: its parent {} has no evaluation after the fork step {at} to set its best against",
                        fork.meta.name, parent.meta.name
                    ));
                    continue;
                }
            },
            _ => match value_of(parent, primary, best) {
                Ok(p) => (p, String::new()),
                Err(_) => continue,
            },
        };
        let d = decimals.unwrap_or_else(|| significant_decimals(p.abs().max(f.abs())));
        each.push(format!(
            "{} {}, its parent {} {}{since} ({}{})",
            fork.meta.name,
            padded(f, d),
            parent.meta.name,
            padded(p, d),
            if f >= p { "+" } else { "" },
            padded(f - p, d)
        ));
    }
    (!each.is_empty()).then(|| {
        format!(
            "each fork beside its own parent run on {primary}: {}",
            each.join(", ")
        )
    })
}

/// `run`'s best finite `primary` over its evaluations after step `after`
/// (and up to `up_to`, a table's `--at-step`).
fn best_after(run: &Run, primary: &str, after: u64, up_to: Option<u64>) -> Option<f64> {
    let values = super::super::evals_of(&run.dir, &run.meta)
        .into_iter()
        .filter(|(step, _)| *step > after && up_to.is_none_or(|last| *step <= last))
        .filter_map(|(_, metrics)| metrics.get(primary).copied())
        .filter(|v| v.is_finite());
    match run.meta.higher_is_better {
        true => values.reduce(f64::max),
        false => values.reduce(f64::min),
    }
}
