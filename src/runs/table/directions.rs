//! Which way each column of the table is better, if any.

use super::is_per_loss;
use crate::runs::groups::Group;
use crate::session::metrics::EVAL_LOSS_PREFIX;

/// Each column's direction (`Some(true)`: higher is better), and the
/// metrics whose runs disagree on theirs.
pub(super) fn of_columns<'a>(
    groups: &[Group],
    names: &'a [String],
) -> (Vec<Option<bool>>, Vec<&'a String>) {
    let first = groups[0].runs[0];
    let primary = &first.meta.primary_metric;
    // Runs of one metric that disagree on its direction (one run's
    // `workload.metric_goal = "min"`, another's guess "higher"): no side of
    // that column is better (walkthrough N's `nrmse ↑` bolded its worse
    // value beside a run that had said "min").
    let disagreeing: Vec<&String> = names
        .iter()
        .filter(|n| {
            let goals: std::collections::BTreeSet<bool> = groups
                .iter()
                .flat_map(|g| &g.runs)
                .filter(|r| &r.meta.primary_metric == *n)
                .map(|r| r.meta.higher_is_better)
                .collect();
            goals.len() > 1
        })
        .collect();
    // Each column's direction: the session's for the primary metric, else
    // read from the name (`val_mse` lower, `r2` higher); none for a weight
    // (no row is better for a larger one) or a name that is no known score
    // (a model's BatchNorm statistic had an ↑ and a bold "best"), or an
    // auxiliary's validation loss (a harmful one's lower is no better).
    let higher: Vec<Option<bool>> = names
        .iter()
        .map(|n| {
            if is_per_loss(n) {
                None
            } else if let Some(loss) = n.strip_prefix(EVAL_LOSS_PREFIX) {
                (loss == first.meta.primary).then_some(false)
            } else if disagreeing.contains(&n) {
                None
            } else if n == primary {
                Some(first.meta.higher_is_better)
            } else {
                crate::workload::score_direction(n)
            }
        })
        .collect();
    (higher, disagreeing)
}
