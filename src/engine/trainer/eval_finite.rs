//! The evaluation's non-finite values, said once per episode: validation
//! losses (metrics from NaN outputs, an argmax of NaN being class 0, mean
//! nothing) and metrics (a metric NaN on one batch is NaN for the whole
//! evaluation, and was unsaid).

use super::*;
use crate::session::metrics::Named;

impl Trainer {
    /// Says what of `eval` is not finite, once until an evaluation is.
    pub(super) fn check_eval_is_finite(&mut self, eval: &workload::Evaluation) {
        let Some(said) = non_finite_eval(&eval.losses, &eval.metrics) else {
            self.eval_non_finite_said = false;
            return;
        };
        if std::mem::replace(&mut self.eval_non_finite_said, true) {
            return;
        }
        self.emit(Record::Event {
            level: Level::Warn,
            message: format!(
                "evaluation at step {}: {said}; said again only after a finite evaluation",
                self.step
            ),
        });
    }
}

/// What of an evaluation's `losses` and `metrics` is not finite, and what
/// that means; `None` when all are finite.
/// The names whose values are NaN or infinite, in name order.
pub(super) fn non_finite_names(values: &Named) -> Vec<String> {
    values
        .iter()
        .filter(|(_, v)| !v.is_finite())
        .map(|(name, _)| name.clone())
        .collect()
}

fn non_finite_eval(losses_of: &Named, metrics_of: &Named) -> Option<String> {
    let (losses, metrics) = (non_finite_names(losses_of), non_finite_names(metrics_of));
    if losses.is_empty() && metrics.is_empty() {
        return None;
    }
    let all = losses.len() == losses_of.len();
    let all_metrics: Vec<&str> = metrics_of.keys().map(String::as_str).collect();
    if losses.is_empty() {
        return Some(format!(
            "the metric {} is non-finite while every validation loss is finite: the model's \
             metric output is NaN or inf on some validation batch, which makes the mean over \
             the batches so too",
            metrics.join(", ")
        ));
    }
    let which = if all {
        "every validation loss is".to_string()
    } else {
        format!("the validation loss of {} is", losses.join(", "))
    };
    let cause = if all {
        "the model's parameters or buffers (e.g. BatchNorm's running statistics) or the validation data hold NaN or inf"
    } else {
        "the validation data or the model's outputs for those losses hold NaN or inf"
    };
    let consequence = match (all, metrics.is_empty(), all_metrics.is_empty()) {
        (_, _, true) => String::new(),
        (true, _, false) => format!(", so its metrics ({}) mean nothing", all_metrics.join(", ")),
        (false, true, false) => format!("; the metrics ({}) are finite", all_metrics.join(", ")),
        (false, false, false) => {
            format!(", and the metric {} is non-finite too", metrics.join(", "))
        }
    };
    Some(format!("{which} non-finite: {cause}{consequence}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(values: &[(&str, f64)]) -> Named {
        values.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn what_is_not_finite_is_said_with_what_it_means() {
        let finite = named(&[("cls", 0.5), ("aux", 1.0)]);
        let acc = named(&[("acc", 50.0)]);
        assert_eq!(non_finite_eval(&finite, &acc), None);
        // A metric NaN on one batch, every loss finite (a walkthrough).
        let said = non_finite_eval(&finite, &named(&[("mse", f64::NAN)])).unwrap();
        assert!(
            said.starts_with("the metric mse is non-finite while every validation loss is finite"),
            "{said}"
        );
        // An auxiliary's loss alone: the metrics are fine, and said so.
        let spiky = named(&[("cls", 0.5), ("spiky", f64::INFINITY)]);
        let said = non_finite_eval(&spiky, &acc).unwrap();
        assert!(
            said.contains("the validation loss of spiky is non-finite")
                && said.ends_with("; the metrics (acc) are finite"),
            "{said}"
        );
        // Every loss: the metrics mean nothing.
        let all = named(&[("cls", f64::NAN), ("aux", f64::NAN)]);
        let said = non_finite_eval(&all, &acc).unwrap();
        assert!(
            said.starts_with("every validation loss is non-finite")
                && said.ends_with("so its metrics (acc) mean nothing"),
            "{said}"
        );
    }
}
