//! Why a run whose last [`MAX_SKIPPED_IN_A_ROW`] steps were all skipped
//! stops: the words, with the fix its losses (or its gradient alone) point
//! to.

use super::*;

impl Trainer {
    /// Why a run whose last [`MAX_SKIPPED_IN_A_ROW`] steps were skipped
    /// stops, with the fix its losses point to.
    pub(super) fn unrecoverable_streak(&self) -> String {
        let streak = &self.skip_streak;
        let lower = format!(
            "lower train.lr (now {}) or train.grad_clip (now {})",
            self.config.train.lr, self.config.train.grad_clip
        );
        let always: Vec<&str> = self
            .loss_names
            .iter()
            .map(String::as_str)
            .filter(|name| streak.non_finite_throughout(name))
            .collect();
        let ran = self.step.saturating_sub(self.skipped.since);
        let head = match (streak.len >= ran, self.skipped.since) {
            (true, 0) => format!("all {} steps of the run were skipped", streak.len),
            (true, since) => format!(
                "all {} steps since step {since}, where this start of the run took it up, were skipped",
                streak.len
            ),
            (false, _) => format!("the last {} steps were all skipped", streak.len),
        };
        if streak.gradients_only() && streak.first() == 1 {
            // Not the learning rate: no update was ever made (walkthrough
            // J2's `torch.where` over NaN inputs was told to lower it).
            format!(
                "{head}: every loss was finite and the gradient was not, from the run's first step, before \
                 any update, so the model's backward makes it: an op over NaN or inf values whose result \
                 the loss then masks (torch.where, or a mask applied after the op: the masked entries' \
                 gradient is 0 × NaN = NaN). Zero such values before the op (torch.nan_to_num on the \
                 input), then start again; `meltr-tui check` names the loss"
            )
        } else if always.is_empty() {
            format!(
                "{head} (non-finite losses or gradients; see the events): the run cannot recover. \
                 {}, then start again",
                capitalised(&lower)
            )
        } else if always.len() == self.loss_names.len() {
            format!(
                "{head}: every loss was non-finite on each of them, so training has diverged \
                 (or the model returns NaN whatever its input): the run cannot recover. {}, \
                 then start again",
                capitalised(&lower)
            )
        } else {
            // From the first step of a new run, no training made it:
            // walkthrough S's model multiplied its primary by NaN and was
            // told to lower the learning rate.
            let remedy = match streak.first() {
                1 => "it was non-finite from the run's first step, before any update: look at how \
                      the model's forward computes it"
                    .to_string(),
                _ => format!("if that loss's curve blew up before, {lower}"),
            };
            // Walkthrough J2's others were finite on every step, and read
            // "finite on some".
            let others = match self
                .loss_names
                .iter()
                .filter(|n| !always.contains(&n.as_str()))
                .all(|n| streak.finite_throughout(n))
            {
                true => "finite on each",
                false => "finite on some",
            };
            format!(
                "{head}: loss {} was non-finite (NaN or inf) on each of them and the others \
                 were {others}, so the model computes it so at these weights or on these \
                 batches (a log of 0, a division by an empty count, a bad value in the data: \
                 the events name the first batches' rows). The run cannot recover; {remedy}",
                always.join(", ")
            )
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
