//! The loss figure's y axis: linear or log, chosen from how far apart the
//! losses' typical sizes are, and the note that says so.

use super::data::SessionData;
use super::scale::short;

/// The loss figure's y axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LossAxis {
    /// Logarithmic when the losses' typical sizes are more than 100x
    /// apart (a linear axis would draw the small ones flat along zero) and
    /// all of them are positive; linear otherwise.
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
        let span = losses_span(data);
        let log_scale = match self {
            LossAxis::Auto => span.as_ref().is_some_and(|s| s.all_positive),
            LossAxis::Linear => false,
            LossAxis::Log => true,
        };
        let note = match (span, log_scale) {
            (Some(span), true) if self == LossAxis::Auto => Some(format!(
                "losses: on a log axis, since {} (`meltr-tui export --y-scale linear` for a linear one)",
                span.text
            )),
            (Some(span), false) => Some(format!(
                "losses: {}, which a linear axis draws flat; `meltr-tui export --y-scale log` shows both{}",
                span.text,
                if span.all_positive {
                    ""
                } else {
                    " (leaving out the losses that are ever ≤ 0)"
                }
            )),
            _ => None,
        };
        (log_scale, note)
    }
}

/// Losses this many times apart (by their medians) leave the small ones
/// flat along zero on a linear axis.
const SPAN_WORTH_A_LOG_AXIS: f64 = 100.0;

/// Losses whose typical sizes (medians) are decades apart.
struct LossSpan {
    /// "`a` (~x) is Nx `b` (~y)".
    text: String,
    /// Every loss is positive wherever logged: a log axis leaves none out.
    all_positive: bool,
}

/// The largest and smallest of the positive losses' medians, when they
/// are more than [`SPAN_WORTH_A_LOG_AXIS`] apart.
fn losses_span(data: &SessionData) -> Option<LossSpan> {
    let mut all_positive = true;
    let medians: Vec<(&String, f64)> = data
        .losses
        .iter()
        .filter_map(|(name, points)| {
            if points.iter().any(|p| p.1 <= 0.0) {
                all_positive = false;
                return None;
            }
            let mut values: Vec<f64> = points
                .iter()
                .map(|p| p.1)
                .filter(|v| v.is_finite())
                .collect();
            values.sort_by(f64::total_cmp);
            values.get(values.len() / 2).map(|m| (name, *m))
        })
        .collect();
    let largest = medians.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
    let smallest = medians.iter().min_by(|a, b| a.1.total_cmp(&b.1))?;
    (largest.1 / smallest.1 > SPAN_WORTH_A_LOG_AXIS).then(|| LossSpan {
        text: format!(
            "`{}` (~{}) is {:.0}x `{}` (~{})",
            largest.0,
            short(largest.1),
            largest.1 / smallest.1,
            smallest.0,
            short(smallest.1)
        ),
        all_positive,
    })
}
