//! Non-finite values in the data files: a warning, unless the model masks
//! them, which a training step's forward and backward of the rows holding
//! them (beside clean rows) tells.

use super::data::Split;
use super::TorchScript;
use tch::Tensor;

/// What the start of a run says of the data's non-finite values.
#[derive(Debug, Default)]
pub(super) struct NonFiniteData {
    /// Per tensor, where the model's outputs are not finite on those rows.
    pub warnings: Vec<String>,
    /// Per tensor, where the model masks them.
    pub notes: Vec<String>,
    /// Why the training split's non-finite values are not (or not alone)
    /// the cause of a skipped step's NaN, though its batch holds such rows:
    /// the model masks them, or makes NaN on clean rows too.
    pub train_not_the_cause: Option<&'static str>,
}

/// What a forward (and, for training, a backward) of rows holding NaN or
/// inf says of the model.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Masking {
    /// Finite with those rows in the batch.
    Masks,
    /// Not finite with them, finite without them.
    DoesNotMask,
    /// Not finite on clean rows alone either: the model's own fault, which
    /// hides whether it masks the data's (walkthrough S's model multiplied
    /// its primary by NaN, and was told its masked NaN labels did it).
    NotFiniteOnCleanRows,
}

/// The phrase that says a model's outputs are not finite on clean rows
/// (`check` tells that cause from the data's).
pub const NOT_FINITE_ON_CLEAN_ROWS: &str = "not finite on a batch of rows whose data is finite";

/// Clean rows put beside the non-finite ones in the masking check, so a
/// masked mean over a batch has something to average.
const CLEAN_ROWS: usize = 16;

impl TorchScript {
    /// Scans both splits, before the run's generator is seeded and the
    /// model's buffers are put back (walkthroughs K and I: a model that
    /// masks its NaN targets was warned about at every start, in every log).
    pub(super) fn scan_non_finite(&self) -> NonFiniteData {
        let mut out = NonFiniteData::default();
        // Each split: its key and path, what its NaN do, whether a training
        // step checks them (its trained losses and their gradient; the
        // validation split's every output, in eval mode).
        let splits = [
            (
                &self.train,
                "workload.train",
                &self.train_path,
                "training batches that draw them give NaN losses or gradients, and their updates are skipped",
                true,
            ),
            (
                &self.val,
                "workload.val",
                &self.val_path,
                "evaluation losses and metrics that read them are NaN (null in metrics.jsonl)",
                false,
            ),
        ];
        for (split, key, path, effect, training) in splits {
            let rows = split.non_finite_rows();
            if rows.is_empty() {
                continue;
            }
            let masked = self.masks(split, &rows, training);
            // A model that masks NaN and not inf (nan_to_num leaves inf
            // as a large finite value; isnan masks only NaN): said so, not
            // "does not mask them" (walkthrough J2's one inf among 950 NaN).
            let infinite = split.infinite_rows();
            let nan_only: Vec<i64> = rows
                .iter()
                .copied()
                .filter(|r| !infinite.contains(r))
                .collect();
            let masks_nan_only = masked == Some(Masking::DoesNotMask)
                && !infinite.is_empty()
                && !nan_only.is_empty()
                && self.masks(split, &nan_only, training) == Some(Masking::Masks);
            let said = match masked {
                Some(Masking::DoesNotMask) if masks_nan_only => {
                    let shown: Vec<String> = infinite.iter().map(i64::to_string).collect();
                    format!(
                        "{effect} (the model masks the NaN but not the inf: a batch with row{} {} \
                         gives non-finite values)",
                        if shown.len() == 1 { "" } else { "s" },
                        shown.join(", ")
                    )
                }
                Some(Masking::Masks) if training => {
                    "the model masks them (a training step's losses and gradient \
                     on a batch of the first of those rows are finite)"
                        .to_string()
                }
                Some(Masking::Masks) => {
                    "the model masks them (its outputs on a batch of the first of \
                     those rows are finite)"
                        .to_string()
                }
                Some(Masking::DoesNotMask) => format!(
                    "{effect} (the model does not mask them: a batch of the first of those rows \
                     gives non-finite values)"
                ),
                Some(Masking::NotFiniteOnCleanRows) => format!(
                    "{effect}, unless the model masks them, which cannot be told: its {} are \
                     {NOT_FINITE_ON_CLEAN_ROWS} too, the model's own doing",
                    match training {
                        true => "training losses or their gradient",
                        false => "outputs",
                    }
                ),
                None => format!("{effect}, unless the model masks them"),
            };
            let lines = split.non_finite(key, path, &said);
            if training {
                out.train_not_the_cause = match masked {
                    Some(Masking::Masks) => Some("no cause: the model masks them, as the run's start found"),
                    Some(Masking::NotFiniteOnCleanRows) => Some(
                        "not the only cause: at the run's start the model's losses were not finite on \
                         clean rows either",
                    ),
                    _ => None,
                };
            }
            match masked {
                Some(Masking::Masks) => out.notes.extend(lines),
                _ => out.warnings.extend(lines),
            }
        }
        out
    }

    /// Whether the model masks `rows` (non-finite) of `split`: the outputs
    /// of a forward of them beside some clean rows, and of the clean rows
    /// alone; see [`Self::finite_on`]. `None` where a forward fails (a
    /// model that needs another batch size).
    fn masks(&self, split: &Split, rows: &[i64], training: bool) -> Option<Masking> {
        let candidates: Vec<i64> = (0..split.samples.min(4 * CLEAN_ROWS as i64)).collect();
        let flagged: Vec<i64> = split
            .non_finite_of(&candidates)
            .into_iter()
            .flat_map(|(_, rows)| rows)
            .collect();
        let clean: Vec<i64> = candidates
            .into_iter()
            .filter(|r| !flagged.contains(r))
            .take(CLEAN_ROWS)
            .collect();
        if !clean.is_empty() && !self.finite_on(split, &clean, training)? {
            return Some(Masking::NotFiniteOnCleanRows);
        }
        let batch_rows: Vec<i64> = rows.iter().copied().chain(clean).collect();
        Some(match self.finite_on(split, &batch_rows, training)? {
            true => Masking::Masks,
            false => Masking::DoesNotMask,
        })
    }

    /// Whether the outputs of a forward of `batch_rows` of `split` are all
    /// finite; `training`: its trained losses, in training mode, and the
    /// gradient of their sum too, as a step skips its update on either (a
    /// `torch.where` over NaN gives a finite loss and a NaN gradient;
    /// BatchNorm's batch statistics spread a NaN input in training mode
    /// only). `None` where the forward fails.
    fn finite_on(&self, split: &Split, batch_rows: &[i64], training: bool) -> Option<bool> {
        let checked = |name: &str| {
            !training || name == self.primary || self.auxiliary.iter().any(|a| a == name)
        };
        let device = split
            .tensors
            .first()
            .map_or(tch::Device::Cpu, |t| t.1.device());
        let batch = split.rows(&Tensor::from_slice(batch_rows).to_device(device));
        let finite = |t: &Tensor| t.isfinite().all().int64_value(&[]) == 1;
        let named = |outputs: &[(String, Tensor)]| -> Vec<Tensor> {
            outputs
                .iter()
                .filter(|(name, _)| {
                    checked(name.strip_prefix(super::METRIC_PREFIX).unwrap_or(name))
                })
                .map(|(_, t)| t.shallow_clone())
                .collect()
        };
        if !training {
            self.module.borrow_mut().set_eval();
            let outputs = tch::no_grad(|| self.forward_checked(&batch));
            self.module.borrow_mut().set_train();
            return Some(named(&outputs.ok()?).iter().all(finite));
        }
        let losses = named(&self.forward_checked(&batch).ok()?);
        if !losses.iter().all(finite) {
            return Some(false);
        }
        let total = losses
            .iter()
            .map(|t| t.to_kind(tch::Kind::Double).sum(tch::Kind::Double))
            .reduce(|a, b| a + b)?;
        let theta = crate::nn::vars::sorted_variables(&self.vs);
        let grads = crate::nn::autograd::grad(&[&total], &theta, false, false).ok()?;
        Some(grads.iter().all(finite))
    }
}
