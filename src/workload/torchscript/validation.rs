//! The validation split: checked up front in eval mode (the first batch and
//! the smaller last one), and evaluated over every row, each batch's means
//! weighted by its rows.

use super::{Split, TorchScript, METRIC_PREFIX};
use crate::workload::Evaluation;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// The tensors `has` holds and `short` lacks that `error_text` says a
/// forward looked up and did not find (`KeyError: NAME`).
pub(super) fn missing_tensors<'a>(error_text: &str, short: &Split, has: &'a Split) -> Vec<&'a str> {
    has.names()
        .filter(|name| !short.names().any(|n| n == *name))
        .filter(|name| {
            // The whole name: `mask` is not `KeyError: mask_2`.
            error_text
                .split(&format!("KeyError: {name}"))
                .skip(1)
                .any(|after| after.chars().next().is_none_or(char::is_whitespace))
        })
        .collect()
}

/// Which split's file lacks a tensor the other has.
#[derive(Debug, Clone, Copy)]
pub(super) enum Lacking {
    Train,
    Val,
}

impl TorchScript {
    /// Runs the model in eval mode on the first validation batch and, when
    /// the split does not divide into batches, on the smaller last one, so
    /// that a model the evaluation would fail on is refused up front; records
    /// the metrics the evaluation reports, in the model's order.
    pub(super) fn check_val_batches(&mut self) -> Result<()> {
        let batches = self.val_batches();
        let mut checked = vec![batches[0]];
        if batches.len() > 1 && batches[batches.len() - 1].1 != batches[0].1 {
            checked.push(batches[batches.len() - 1]);
        }
        self.module.borrow_mut().set_eval();
        let result = checked
            .iter()
            .zip(["first", "last"])
            .map(|(&(start, len), which)| {
                tch::no_grad(|| self.forward_in_order(&self.val.slice(start, len))).with_context(
                    || {
                        let alone = self
                            .rows_failing_alone_in(&self.val, &(start..start + len).collect::<Vec<_>>())
                            .map_or(String::new(), |rows| super::super::failing_alone_note(&rows));
                        format!(
                            "workload.val: the {which} validation batch (rows {start}..{} of {}){alone}",
                            start + len,
                            self.val_path
                        )
                    },
                )
            })
            .collect::<Result<Vec<_>>>();
        self.module.borrow_mut().set_train();
        let first = result
            .map_err(|error| self.name_tensors_lacking(error, Lacking::Val))?
            .swap_remove(0);
        self.metric_names = first
            .iter()
            .filter_map(|(name, _)| name.strip_prefix(METRIC_PREFIX))
            .map(str::to_string)
            .collect();
        Ok(())
    }

    /// `error` (the model failed on a batch of the split `lacking`), led
    /// by the tensors it names as missing (TorchScript's `KeyError: NAME`)
    /// that the other split's file has: the likely fix is in the data, not
    /// the model.
    pub(super) fn name_tensors_lacking(
        &self,
        error: anyhow::Error,
        lacking: Lacking,
    ) -> anyhow::Error {
        let (short, has) = match lacking {
            Lacking::Val => (&self.val, &self.train),
            Lacking::Train => (&self.train, &self.val),
        };
        let missing: Vec<String> = missing_tensors(&format!("{error:#}"), short, has)
            .iter()
            .map(|name| format!("`{name}`"))
            .collect();
        if missing.is_empty() {
            return error;
        }
        let missing = missing.join(", ");
        error.context(match lacking {
            Lacking::Val => format!(
                "workload.val ({}) has no tensor {missing}, which workload.train has and the model reads in eval mode; \
                 add it to the validation file (same shape per sample as in the training file)",
                self.val_path,
            ),
            Lacking::Train => format!(
                "workload.train ({}) has no tensor {missing}, which workload.val has and the model reads; \
                 add it to the training file (same shape per sample as in the validation file)",
                self.train_path,
            ),
        })
    }

    /// The validation split as batches, `(first row, rows)`: full batches
    /// of `batch_size`, then the rows left over, so that every row counts.
    pub(super) fn val_batches(&self) -> Vec<(i64, i64)> {
        let (samples, len) = (self.val.samples, self.eval_batch_size.min(self.val.samples));
        (0..samples)
            .step_by(len.max(1) as usize)
            .map(|start| (start, len.min(samples - start)))
            .collect()
    }

    /// The evaluation: means over every validation row (see the module's
    /// doc), metrics without their prefix; with no metrics, the primary
    /// loss stands in as one.
    pub(super) fn evaluate_split(&self) -> Result<Evaluation> {
        self.module.borrow_mut().set_eval();
        let result = tch::no_grad(|| -> Result<Evaluation> {
            let batches = self.val_batches();
            let count = batches.len();
            // Sums of each output times its batch's rows stay on the device;
            // one host copy at the end. Every row weighs the same; an output
            // a batch leaves out is averaged over the rows that had it.
            let mut sums: BTreeMap<String, (Tensor, i64)> = BTreeMap::new();
            for (b, &(start, len)) in batches.iter().enumerate() {
                let outputs = self.forward(&self.val.slice(start, len)).with_context(|| {
                    // The rows that fail on their own, to find a bad sample.
                    let alone = self
                        .rows_failing_alone_in(&self.val, &(start..start + len).collect::<Vec<_>>())
                        .map_or(String::new(), |rows| super::super::failing_alone_note(&rows));
                    format!(
                        "validation batch {} of {count} (rows {start}..{} of workload.val {}){alone}",
                        b + 1,
                        start + len,
                        self.val_path
                    )
                })?;
                for (name, value) in outputs {
                    let value = value.to_kind(Kind::Double) * len as f64;
                    match sums.get_mut(&name) {
                        Some((sum, rows)) => {
                            *sum += value;
                            *rows += len;
                        }
                        None => {
                            sums.insert(name, (value, len));
                        }
                    }
                }
            }
            let mut eval = Evaluation::default();
            for (name, (sum, rows)) in sums {
                let mean = sum.double_value(&[]) / rows as f64;
                match name.strip_prefix(METRIC_PREFIX) {
                    Some(metric) => eval.metrics.insert(metric.to_string(), mean),
                    None => eval.losses.insert(name, mean),
                };
            }
            if self.metric_names.is_empty() {
                // No metrics: the header shows the primary validation loss.
                if let Some(&loss) = eval.losses.get(&self.primary) {
                    eval.metrics.insert(self.primary.clone(), loss);
                }
            }
            Ok(eval)
        });
        self.module.borrow_mut().set_train();
        result
    }
}

/// Metric names (lowercase parts) that are no mean over rows, whose mean
/// over evaluation batches is not their value over the split.
const NOT_ROW_MEANS: [&str; 12] = [
    "r2", "rmse", "f1", "auc", "corr", "pearson", "spearman", "mcc", "kappa", "recall", "max",
    "min",
];

impl TorchScript {
    /// Said when a metric named like [`NOT_ROW_MEANS`] is averaged over
    /// more than one evaluation batch (a walkthrough's R² read 0.344 where
    /// the split's was 0.408; the README said why, the run did not).
    pub(super) fn batch_averaged_metrics_note(&self) -> Option<String> {
        let batches = self.val_batches();
        let named: Vec<&String> = self
            .metric_names
            .iter()
            .filter(|name| {
                let lower = name.to_lowercase();
                NOT_ROW_MEANS.iter().any(|part| lower.contains(part))
            })
            .collect();
        (batches.len() > 1 && !named.is_empty()).then(|| {
            let names: Vec<&str> = named.iter().map(|n| n.as_str()).collect();
            format!(
                "metrics are means over {} evaluation batches of up to {} rows, weighted by rows; \
                 {}: named like a metric that is not a mean over rows (a ranking's AUC, R², F1): if it is \
                 not, a mean over batches is not its value over the whole split \
                 (workload.eval_batch_size = {} evaluates it in one batch)",
                batches.len(),
                self.eval_batch_size,
                names.join(", "),
                self.val.samples
            )
        })
    }
}
