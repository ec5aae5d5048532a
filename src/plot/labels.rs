//! Axis labels: a metric's name with its direction of better, a training
//! series' name with its smoothing.

/// `validation METRIC ↑|↓`: the primary's direction, else the name's guess.
pub fn eval_axis_label(meta: &crate::session::SessionMeta, metric: &str) -> String {
    let higher = if meta.primary_metric == metric {
        meta.higher_is_better
    } else {
        !crate::workload::lower_is_better(metric)
    };
    format!("validation {metric} {}", better(higher))
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
