//! `check`'s words for values that are not finite: an evaluation's, the
//! losses' on the scanned batches (and where they come from), and a finite
//! loss's gradient; and for losses exactly 0 on scanned batches.

/// One evaluation's non-finite validation values, in words.
pub(super) fn evaluation_words(evaluation: &crate::engine::trainer::NonFiniteEvaluation) -> String {
    let mut named: Vec<String> = evaluation
        .losses
        .iter()
        .map(|l| format!("loss `{l}`"))
        .collect();
    named.extend(evaluation.metrics.iter().map(|m| format!("metric `{m}`")));
    if named.is_empty() {
        let values: Vec<String> = evaluation
            .values
            .iter()
            .map(|(name, v)| format!("{name} {}", crate::numfmt::readable(*v)))
            .collect();
        return format!(
            "one evaluation: every loss and metric finite; as the model starts, {}",
            values.join(", ")
        );
    }
    format!(
        "one evaluation: {} not finite (a mean over the split: NaN on one batch makes it NaN; \
         a run's evaluations warn of it)",
        named.join(", ")
    )
}

/// Where `check`'s non-finite losses come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum NanCause {
    /// The training data holds NaN or inf the model does not mask.
    Data,
    /// The data holds none the model leaves unmasked.
    Model,
    /// The model's losses are not finite on clean rows either.
    ModelOnCleanRows,
}

/// Why `check` fails on finite losses whose gradient is not finite on the
/// first batch.
pub(super) fn non_finite_gradient_words(losses: &[String]) -> String {
    let named: Vec<String> = losses.iter().map(|n| format!("`{n}`")).collect();
    let (is, its) = match losses.len() {
        1 => ("Loss", "is finite while its gradient is"),
        _ => ("Losses", "are finite while their gradients are"),
    };
    format!(
        "the gradient of {named} is not finite on the first training batch: a run skips the update of \
         every such step, and fails after {} in a row. {is} {named} {its} not: the model's backward makes \
         it, through an op over NaN or inf values whose result the loss then masks (torch.where, or a \
         mask applied after the op: the masked entries' gradient is 0 × NaN = NaN); zero such values \
         before the op (torch.nan_to_num on the input)",
        crate::engine::trainer::MAX_SKIPPED_IN_A_ROW,
        named = named.join(", "),
    )
}

/// Why `check` fails on losses that are not finite on some batches.
pub(super) fn non_finite_words(
    non_finite: &[(String, Vec<u64>)],
    batches: u64,
    cause: NanCause,
) -> String {
    let each: Vec<String> = non_finite
        .iter()
        .map(|(loss, steps)| {
            let shown: Vec<String> = steps.iter().take(8).map(u64::to_string).collect();
            let more = if steps.len() > 8 { ", …" } else { "" };
            if batches == 1 {
                format!("loss `{loss}` is not finite on the first training batch")
            } else {
                format!(
                    "loss `{loss}` is not finite on {} of {batches} training batches (step{} {}{more})",
                    steps.len(),
                    if steps.len() == 1 { "" } else { "s" },
                    shown.join(", ")
                )
            }
        })
        .collect();
    // Walkthrough K's NaN targets were told "where the data is finite".
    let cause = match cause {
        NanCause::ModelOnCleanRows => "The model makes it: its losses are not finite on a batch of rows whose \
                 data is finite either (the warning above), so the data's NaN are not the only cause: look at how \
                 the model's forward computes it",
        NanCause::Data => "The training data holds NaN or inf (the warnings above name the rows) and the model \
                 does not mask them: mask them in the model (keep the rows where `torch.isfinite` \
                 holds) or clean the data",
        NanCause::Model => "The model makes it (the data holds no NaN it leaves unmasked), often as a mean over an empty selection \
                  (a batch whose rows are all masked, or cross_entropy with ignore_index on a batch whose labels are \
                  all ignored): guard it, e.g. return `torch.zeros(())` when the batch selects nothing",
    };
    format!(
        "{}: a run skips the update of every such step, and fails after {} in a row. {cause}{}",
        each.join("; "),
        crate::engine::trainer::MAX_SKIPPED_IN_A_ROW,
        if batches == 1 {
            "; `check --batches N` scans more batches"
        } else {
            ""
        }
    )
}

/// The losses exactly 0 on scanned batches: those batches take no gradient
/// from them (walkthrough L's `rare`, 0 on most batches, read `rare 0` and
/// `0.0%` unremarked). On the first batch alone, how to count them.
pub(super) fn zero_notes(zero: &[(String, Vec<u64>)], batches: u64) -> Vec<String> {
    zero.iter()
        .map(|(name, steps)| match batches {
            0 | 1 => format!(
                "{name} is exactly 0 on the first batch, which takes no gradient from it (a masked loss with \
                 nothing to mask there, or a loss against the model's own starting state?); `--batches N` \
                 counts how often"
            ),
            // Scanned at the initial θ: a distillation to a frozen copy of
            // the model itself is 0 on every batch until θ moves (walkthrough
            // O2's LoRA `distill` read as a loss that never trains).
            n if steps.len() as u64 == n => format!(
                "{name} is exactly 0 on all {n} batches scanned, at the initial parameters: no weight makes it \
                 train the model there, unless it is a loss against the model's own starting state (a \
                 distillation to a frozen copy of the model is 0 until training moves it)"
            ),
            n => format!(
                "{name} is exactly 0 on {} of the {n} batches scanned, which take no gradient from it (a masked \
                 loss with nothing to mask there, or a term that is rarely on)",
                steps.len()
            ),
        })
        .collect()
}
