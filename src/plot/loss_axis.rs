//! The loss figure's y axis: linear or log, chosen from how far apart the
//! losses' typical sizes (and peaks) are, and the note that says so; and
//! the metric figure's, from how far its values span.

use super::data::{Curves, SessionData};
use super::scale::short;

/// The loss figure's y axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LossAxis {
    /// Logarithmic when the losses' typical sizes are more than 10x apart,
    /// or a loss's peak and another's typical size more than 20x (a
    /// linear axis would draw the small ones flat along zero), and none is
    /// ever negative (a loss at exactly 0 on some steps, a masked one on
    /// batches without its rows, is drawn without those points); linear
    /// otherwise.
    #[default]
    Auto,
    Linear,
    Log,
}

impl LossAxis {
    /// Whether the loss figure is drawn on a log axis, and a note when the
    /// losses are decades apart (which axis `auto` chose, or what a linear
    /// one hides).
    pub fn choose(self, data: &SessionData) -> (bool, Option<String>) {
        let span = losses_span(&data.losses);
        let log_scale = match self {
            LossAxis::Auto => span.as_ref().is_some_and(|s| s.none_negative),
            LossAxis::Linear => false,
            LossAxis::Log => true,
        };
        let note = match (span, log_scale) {
            (Some(span), true) if self == LossAxis::Auto => Some(format!(
                "losses: on a log axis, since {}{} (`meltr-tui export --y-scale linear` for a linear one)",
                span.text,
                span.zeros_left_out()
            )),
            (Some(span), false) => Some(format!(
                "losses: {}, which a linear axis draws flat; `meltr-tui export --y-scale log` shows both{}",
                span.text,
                if span.none_negative {
                    span.zeros_left_out()
                } else {
                    " (leaving out the values ≤ 0)".to_string()
                }
            )),
            _ => None,
        };
        (log_scale, note)
    }
}

/// Whether `auto` would draw these losses on a log axis (the TUI's loss
/// pane starts as the exported figure would, until `l` says otherwise).
pub fn worth_a_log_axis(losses: &Curves) -> bool {
    losses_span(losses).is_some_and(|s| s.none_negative)
}

/// Losses this many times apart by their medians leave the small ones
/// flat along zero on a linear axis (walkthrough K: at 18x apart, three of
/// four losses drew as one line along the bottom).
const MEDIANS_WORTH_A_LOG_AXIS: f64 = 10.0;

/// A loss's peak this many times another's median sets a linear axis's
/// range on its own, and draws that loss in the bottom twentieth of the
/// plot (a held-out conv net's x30 reconstruction loss started at 37 beside
/// losses near 1 and fell to 2; at the 100x this was, its figure drew the
/// other four flat: walkthrough R).
const PEAK_WORTH_A_LOG_AXIS: f64 = 20.0;

/// Losses whose typical sizes (medians) are decades apart.
struct LossSpan {
    /// "`a` (~x) is Nx `b` (~y)".
    text: String,
    /// No loss is negative where logged: a log axis leaves out only the
    /// points at exactly 0 ...
    none_negative: bool,
    /// ... which these losses have: `(name, points at 0, points)`.
    zeros: Vec<(String, usize, usize)>,
}

impl LossSpan {
    /// ` (the 65 of 250 points of `masked` at 0 left out)`, or nothing.
    fn zeros_left_out(&self) -> String {
        if self.zeros.is_empty() {
            return String::new();
        }
        let each: Vec<String> = self
            .zeros
            .iter()
            .map(|(name, zero, all)| format!("{zero} of {all} points of `{name}`"))
            .collect();
        format!(" (the {} at 0 left out)", each.join(", "))
    }
}

/// The largest of the positive losses' medians against the smallest (or,
/// failing that, a loss's peak against the smallest median of the others:
/// a loss that starts 1000x the others sets a linear axis's range as well;
/// a held-out CNN's x100 auxiliary started at 460 and drew the others
/// flat), when they are more than [`MEDIANS_WORTH_A_LOG_AXIS`] (or
/// [`PEAK_WORTH_A_LOG_AXIS`]) apart.
fn losses_span(losses: &Curves) -> Option<LossSpan> {
    let mut none_negative = true;
    let mut zeros = Vec::new();
    // (name, median, (step, peak)) of each loss never logged negative, over
    // its positive values (walkthrough V's masked loss, 0 on batches
    // without its rows, kept the losses on a linear axis, all but one flat).
    let sizes: Vec<(&String, f64, (f64, f64))> = losses
        .iter()
        .filter_map(|(name, points)| {
            if points.iter().any(|p| p.1 < 0.0) {
                none_negative = false;
                return None;
            }
            let at_zero = points.iter().filter(|p| p.1 == 0.0).count();
            if at_zero > 0 {
                zeros.push((name.clone(), at_zero, points.len()));
            }
            let finite: Vec<(f64, f64)> = points
                .iter()
                .copied()
                .filter(|p| p.1.is_finite() && p.1 > 0.0)
                .collect();
            let peak = finite.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1))?;
            let mut values: Vec<f64> = finite.iter().map(|p| p.1).collect();
            values.sort_by(f64::total_cmp);
            Some((name, values[values.len() / 2], peak))
        })
        .collect();
    let smallest = sizes.iter().min_by(|a, b| a.1.total_cmp(&b.1))?;
    let largest = sizes.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
    let versus = |s: &(&String, f64, (f64, f64))| format!("`{}` (~{})", s.0, short(s.1));
    // Each loss's peak against the smallest median of the others (a loss
    // that falls 100-fold from its start is no reason on its own).
    let peak = sizes
        .iter()
        .filter_map(|loss| {
            let other = sizes
                .iter()
                .filter(|o| o.0 != loss.0)
                .min_by(|a, b| a.1.total_cmp(&b.1))?;
            Some((loss, other, loss.2 .1 / other.1))
        })
        .max_by(|a, b| a.2.total_cmp(&b.2));
    let text = if largest.1 / smallest.1 > MEDIANS_WORTH_A_LOG_AXIS {
        format!(
            "`{}` (~{}) is {:.0}x {}",
            largest.0,
            short(largest.1),
            largest.1 / smallest.1,
            versus(smallest)
        )
    } else if let Some((loss, other, ratio)) =
        peak.filter(|(_, _, ratio)| *ratio > PEAK_WORTH_A_LOG_AXIS)
    {
        let (step, value) = loss.2;
        format!(
            "`{}` peaks at {} (step {step}), {ratio:.0}x {}",
            loss.0,
            short(value),
            versus(other)
        )
    } else {
        return None;
    };
    Some(LossSpan {
        text,
        none_negative,
        zeros,
    })
}

/// A lower-is-better metric whose positive values span more than this
/// factor is drawn on a log axis: walkthrough O's perplexity peaked at
/// 600,000 early on, and a linear axis drew the rest of the run, 7 to 20,
/// flat along zero. Scores (accuracy, R@k) stay linear.
const METRIC_LOG_SPAN: f64 = 100.0;

/// The metric figure's y axis (see [`METRIC_LOG_SPAN`]).
pub fn metric_axis(points: &super::series::Points, higher_is_better: bool) -> super::scale::Kind {
    let (lo, hi) = points
        .iter()
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    match !higher_is_better && lo > 0.0 && hi > METRIC_LOG_SPAN * lo {
        true => super::scale::Kind::Log,
        false => super::scale::Kind::Linear,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Losses flat at `levels`, with a first value of `start` on the first.
    fn flat(levels: &[f64], start: f64) -> Curves {
        levels
            .iter()
            .enumerate()
            .map(|(i, &level)| {
                let points = (0..20)
                    .map(|s| {
                        let first = i == 0 && s == 0;
                        (s as f64, if first { start } else { level })
                    })
                    .collect();
                (format!("loss{i}"), points)
            })
            .collect()
    }

    #[test]
    fn medians_18x_apart_take_a_log_axis_and_5x_do_not() {
        // Walkthrough K: a reconstruction loss ~18x the primary.
        assert!(worth_a_log_axis(&flat(&[1.0, 18.0], 1.0)));
        assert!(!worth_a_log_axis(&flat(&[1.0, 5.0], 1.0)));
    }

    /// Walkthrough V: a masked loss at exactly 0 on some batches kept the
    /// figure linear; a negative loss (a log-likelihood) still does.
    #[test]
    fn zeros_are_left_out_of_a_log_axis_and_negatives_keep_it_linear() {
        let mut losses = flat(&[1.0, 2000.0, 0.5], 1.0);
        let masked = losses.get_mut("loss2").unwrap();
        for point in masked.iter_mut().step_by(4) {
            point.1 = 0.0;
        }
        assert!(worth_a_log_axis(&losses));
        assert_eq!(
            losses_span(&losses).unwrap().zeros_left_out(),
            " (the 5 of 20 points of `loss2` at 0 left out)"
        );
        losses.get_mut("loss2").unwrap()[3].1 = -0.1;
        assert!(!worth_a_log_axis(&losses));
    }

    #[test]
    fn a_peak_needs_20x_the_others() {
        // A loss falling 15-fold from its start beside another is common.
        assert!(!worth_a_log_axis(&flat(&[2.0, 1.0], 15.0)));
        // Walkthrough R: a loss starting 37x the others drew them flat.
        assert!(worth_a_log_axis(&flat(&[2.0, 1.0], 37.0)));
    }
}
