//! Streaks of skipped steps (inner or meta, for non-finite values): the
//! first few are listed one by one, the rest counted when the streak ends,
//! and which losses were non-finite on every step of it.

use crate::session::metrics::Named;

/// How a skip streak's count ends when a step goes through.
pub(super) const WENT_THROUGH: &str = "this one went through";

/// Skipped updates over the whole run (since this process took it up), for
/// the summary at its end.
#[derive(Default)]
pub(super) struct SkipTotals {
    pub(super) steps: u64,
    pub(super) meta_steps: u64,
    /// The step the run started (or resumed) from.
    pub(super) since: u64,
    /// Each finding a skipped step's warning said of its rows: the first
    /// step that said it, and how many warnings have.
    pub(super) findings: std::collections::BTreeMap<String, (u64, u64)>,
}

impl SkipTotals {
    /// Notes that skipped step `step` found `finding` of its rows, and says
    /// when an earlier step found the same: its step and the count with
    /// this one. (A NaN model's ten listed steps each repeated a three-line
    /// guess, walkthrough C; two NaN rows' 22 warnings each listed their
    /// batch's 64 rows, J1.)
    pub(super) fn repeated_finding(&mut self, finding: &str, step: u64) -> Option<(u64, u64)> {
        let (first, count) = self
            .findings
            .entry(finding.to_string())
            .or_insert((step, 0));
        *count += 1;
        (*first != step).then_some((*first, *count))
    }

    /// `in all, 7 step updates and 4 meta updates were skipped …`, when any
    /// were; `now`: the step the run ends at. A share of the steps past
    /// [`NOTABLE_SKIPPED_SHARE`] is said as such (walkthrough P: a quarter of
    /// the batches trained nothing, and the run ended 0 with this line last).
    pub(super) fn summary(&self, now: u64) -> Option<String> {
        let plural =
            |n: u64, what: &str| format!("{n} {what} update{}", if n == 1 { "" } else { "s" });
        let parts: Vec<String> = [(self.steps, "step"), (self.meta_steps, "meta")]
            .into_iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| plural(n, what))
            .collect();
        let scope = match self.since {
            0 => "in all".to_string(),
            step => format!("since step {step}, where this start of the run took it up"),
        };
        let ran = now.saturating_sub(self.since);
        let share = self.steps as f64 / ran.max(1) as f64;
        let notable = if share >= NOTABLE_SKIPPED_SHARE {
            format!(
                ": {:.0}% of the {ran}{}, every loss's update lost with the bad one's; \
                 where the data is at fault, `meltr-tui check -c CONFIG --batches N` (N past the steps the warnings name) finds the batches",
                100.0 * share,
                crate::session::metrics::TRAINED_NOTHING
            )
        } else {
            String::new()
        };
        (!parts.is_empty()).then(|| {
            format!(
                "{scope}, {} {} skipped for non-finite values (the warnings name the first steps of each streak){notable}",
                parts.join(" and "),
                if self.steps + self.meta_steps == 1 { "was" } else { "were" },
            )
        })
    }
}

/// Steps (inner or meta) skipped in a row so far, as of the last flush.
#[derive(Default)]
pub(super) struct SkipStreak {
    pub(super) len: u64,
    first: u64,
    last: u64,
    /// The losses non-finite on every step of the streak (`None` before
    /// its first step).
    always_non_finite: Option<std::collections::BTreeSet<String>>,
    /// The losses non-finite on some step of the streak.
    ever_non_finite: std::collections::BTreeSet<String>,
}

impl SkipStreak {
    /// The streak's first step.
    pub(super) fn first(&self) -> u64 {
        self.first
    }

    /// Whether the newest skipped step gets its own event, and what its
    /// message ends with: the first [`STEPS_LISTED_PER_STREAK`] of a streak
    /// do; the rest are counted (see [`Self::ended`]).
    pub(super) fn listing(&self) -> Option<&'static str> {
        match self.len.cmp(&STEPS_LISTED_PER_STREAK) {
            std::cmp::Ordering::Less => Some(""),
            std::cmp::Ordering::Equal => {
                Some("; further ones skipped in a row are counted, not listed")
            }
            std::cmp::Ordering::Greater => None,
        }
    }

    /// The event for a streak of `what` (steps, meta steps) that has just
    /// ended (`then`: how), when some of it went unlisted.
    pub(super) fn ended(self, what: &str, then: &str) -> Option<String> {
        (self.len > STEPS_LISTED_PER_STREAK).then(|| {
            format!(
                "{} {what} in a row were skipped (steps {}–{}); {then}",
                self.len, self.first, self.last
            )
        })
    }

    /// Whether every loss was finite on every step of the streak: its
    /// gradients were not.
    pub(super) fn gradients_only(&self) -> bool {
        self.len > 0 && self.ever_non_finite.is_empty()
    }

    /// Whether loss `name` was finite on every step of the streak.
    pub(super) fn finite_throughout(&self, name: &str) -> bool {
        !self.ever_non_finite.contains(name)
    }

    /// Whether loss `name` was non-finite on every step of the streak.
    pub(super) fn non_finite_throughout(&self, name: &str) -> bool {
        self.always_non_finite
            .as_ref()
            .is_some_and(|names| names.contains(name))
    }

    /// One more skipped step: its losses when they were not all finite
    /// (`None`: finite losses, a non-finite gradient).
    pub(super) fn add(&mut self, step: u64, losses: Option<&Named>) {
        if self.len == 0 {
            self.first = step;
        }
        self.last = step;
        self.len += 1;
        let bad: std::collections::BTreeSet<String> = losses
            .into_iter()
            .flatten()
            .filter(|(_, v)| !v.is_finite())
            .map(|(name, _)| name.clone())
            .collect();
        self.ever_non_finite.extend(bad.iter().cloned());
        self.always_non_finite = Some(match self.always_non_finite.take() {
            None => bad,
            Some(before) => before.intersection(&bad).cloned().collect(),
        });
    }
}

/// The share of a run's steps skipped that the summary calls out.
const NOTABLE_SKIPPED_SHARE: f64 = 0.05;

/// Skipped steps of one streak listed one by one; the rest are counted.
const STEPS_LISTED_PER_STREAK: u64 = 10;

#[cfg(test)]
mod tests {
    use super::*;

    /// Which losses a streak had non-finite throughout, on some step, or on
    /// none (walkthrough J2's others, finite on every step, read "finite
    /// on some").
    #[test]
    fn a_streak_tells_a_loss_finite_throughout_from_one_finite_on_some() {
        let named = |pairs: &[(&str, f64)]| -> Named {
            pairs.iter().map(|(n, v)| (n.to_string(), *v)).collect()
        };
        let mut streak = SkipStreak::default();
        streak.add(
            3,
            Some(&named(&[("a", f64::NAN), ("b", 1.0), ("c", f64::NAN)])),
        );
        streak.add(4, Some(&named(&[("a", f64::NAN), ("b", 1.0), ("c", 2.0)])));
        assert!(streak.non_finite_throughout("a") && !streak.non_finite_throughout("c"));
        assert!(streak.finite_throughout("b") && !streak.finite_throughout("c"));
        assert!(!streak.gradients_only());
        let mut gradients = SkipStreak::default();
        gradients.add(1, None);
        assert!(gradients.gradients_only() && gradients.finite_throughout("a"));
    }

    /// A finding is said once; a later one points back to the first step
    /// that said it, with the count; another finding is its own.
    #[test]
    fn a_finding_said_before_points_back_to_its_first_step() {
        let mut totals = SkipTotals::default();
        assert_eq!(totals.repeated_finding("; row 3 in `x`", 7), None);
        assert_eq!(totals.repeated_finding("; row 9 in `x`", 9), None);
        assert_eq!(totals.repeated_finding("; row 3 in `x`", 15), Some((7, 2)));
        assert_eq!(totals.repeated_finding("; row 3 in `x`", 30), Some((7, 3)));
    }

    #[test]
    fn the_run_summary_counts_both_kinds_and_only_when_any() {
        let mut totals = SkipTotals {
            since: 200,
            ..Default::default()
        };
        assert_eq!(totals.summary(1000), None);
        totals.meta_steps = 2;
        totals.since = 0;
        assert!(totals
            .summary(1000)
            .unwrap()
            .starts_with("in all, 2 meta updates were skipped for non-finite values (the"));
        totals.steps = 7;
        totals.meta_steps = 1;
        totals.since = 200;
        // 7 of 800 steps: under 5%, nothing more to say.
        assert_eq!(
            totals.summary(1000).unwrap(),
            "since step 200, where this start of the run took it up, 7 step updates and 1 meta update were skipped for non-finite values (the warnings name the first steps of each streak)"
        );
        // 7 of 100: said, with where to look.
        assert!(totals.summary(300).unwrap().ends_with(
            "(the warnings name the first steps of each streak): 7% of the 100 steps trained nothing, every loss's update lost with the bad one's; where the data is at fault, `meltr-tui check -c CONFIG --batches N` (N past the steps the warnings name) finds the batches"
        ));
        // As `table` reads it back; the summary below the share, not.
        let said = totals.summary(300).unwrap();
        assert_eq!(
            crate::session::metrics::trained_nothing(&said),
            Some((7, 100))
        );
        let quiet = totals.summary(1000).unwrap();
        assert_eq!(crate::session::metrics::trained_nothing(&quiet), None);
    }
}
