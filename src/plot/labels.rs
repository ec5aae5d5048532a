//! Axis labels: a metric's name with its direction of better, a training
//! series' name with its smoothing.

/// `validation METRIC ↑|↓`: the primary's direction, else the name's
/// when it reads as a score or an error, else no arrow, as the tables have
/// it (walkthrough O3's `codebook_usage` read ↑ in `compare` and neither
/// way in `table`).
pub fn eval_axis_label(meta: &crate::session::SessionMeta, metric: &str) -> String {
    let primary = (meta.primary_metric.as_str(), meta.higher_is_better);
    match eval_direction(primary, metric) {
        Some(higher) => format!("validation {metric} {}", better(higher)),
        None => format!("validation {metric}"),
    }
}

/// Which way `metric` is better (`Some(true)`: higher), beside the run's
/// primary metric and its direction.
fn eval_direction(primary: (&str, bool), metric: &str) -> Option<bool> {
    match primary.0 == metric {
        true => Some(primary.1),
        false => crate::workload::score_direction(metric),
    }
}

/// The direction-of-better arrow used in metric labels.
pub fn better(higher: bool) -> &'static str {
    if higher {
        "↑"
    } else {
        "↓"
    }
}

/// The y axis of a per-step series by its name (`compare --metric`): a
/// training loss, or a loss's effective weight or gradient share.
pub fn train_axis_label(metric: &str, ema_weight: f64) -> String {
    use super::data::{HYPERGRAD_NORM, LR, REG, TOTAL};
    use crate::session::metrics::{LOSS_PREFIX, SHARE_PREFIX, WEIGHT_PREFIX};
    let note = smoothing_note(ema_weight);
    let run_series = match metric {
        TOTAL => Some("combined training loss M(l)"),
        LR => Some("learning rate"),
        HYPERGRAD_NORM => Some("hypergradient norm (meta steps)"),
        REG => Some("regulariser |Σl − M(l)| (meta steps)"),
        _ => None,
    };
    if let Some(what) = run_series {
        format!("{what}{note}")
    } else if let Some(loss) = metric.strip_prefix(WEIGHT_PREFIX) {
        format!("effective weight ∂M/∂l of {loss}{note}")
    } else if let Some(loss) = metric.strip_prefix(SHARE_PREFIX) {
        format!("gradient share of {loss}{note}")
    } else {
        let loss = metric.strip_prefix(LOSS_PREFIX).unwrap_or(metric);
        format!("training loss {loss}{note}")
    }
}

/// The axis note for curves smoothed with EMA weight `ema_weight`.
pub fn smoothing_note(ema_weight: f64) -> String {
    if ema_weight > 0.0 {
        format!(" (EMA {ema_weight})")
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A metric other than the primary reads a direction only where its
    /// name is a known score or error; the primary's is the run's.
    #[test]
    fn an_eval_axis_has_an_arrow_only_where_a_direction_is_known() {
        let primary = ("codebook_usage", true);
        assert_eq!(eval_direction(primary, "codebook_usage"), Some(true));
        assert_eq!(eval_direction(("acc", true), "codebook_usage"), None);
        assert_eq!(eval_direction(("acc", true), "recon_mse"), Some(false));
        assert_eq!(eval_direction(("acc", false), "acc"), Some(false));
    }

    /// `compare --metric weight/<loss>` was refused; drawn, its axis must
    /// not read "training loss".
    #[test]
    fn a_series_axis_names_what_it_is() {
        assert_eq!(train_axis_label("cls", 0.9), "training loss cls (EMA 0.9)");
        assert_eq!(train_axis_label("loss/cls", 0.0), "training loss cls");
        assert_eq!(
            train_axis_label("weight/rot", 0.5),
            "effective weight ∂M/∂l of rot (EMA 0.5)"
        );
        assert_eq!(train_axis_label("share/rot", 0.0), "gradient share of rot");
        assert_eq!(train_axis_label("lr", 0.0), "learning rate");
        assert_eq!(
            train_axis_label("meta/hypergrad_norm", 0.9),
            "hypergradient norm (meta steps) (EMA 0.9)"
        );
    }
}
