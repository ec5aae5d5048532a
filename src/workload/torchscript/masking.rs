//! Non-finite values in the data files: a warning, unless the model masks
//! them, which a forward of the rows holding them (beside clean rows) tells.

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
}

/// Clean rows put beside the non-finite ones in the masking check, so a
/// masked mean over a batch has something to average.
const CLEAN_ROWS: usize = 16;

impl TorchScript {
    /// Scans both splits. Its forwards run in eval mode, before the run's
    /// generator is seeded (walkthroughs K and I: a model that masks its
    /// NaN targets was warned about at every start, and in every log).
    pub(super) fn scan_non_finite(&self) -> NonFiniteData {
        let mut out = NonFiniteData::default();
        let trained = |name: &str| name == self.primary || self.auxiliary.iter().any(|a| a == name);
        // Each split: its key and path, what its NaN do, the outputs checked.
        type Scanned<'a> = (
            &'a Split,
            &'a str,
            &'a str,
            &'a str,
            &'a dyn Fn(&str) -> bool,
        );
        let splits: [Scanned; 2] = [
            (
                &self.train,
                "workload.train",
                &self.train_path,
                "training batches that draw them give NaN losses and their updates are skipped",
                &trained,
            ),
            (
                &self.val,
                "workload.val",
                &self.val_path,
                "evaluation losses and metrics that read them are NaN (null in metrics.jsonl)",
                &|_| true,
            ),
        ];
        for (split, key, path, effect, checked) in splits {
            let rows = split.non_finite_rows();
            if rows.is_empty() {
                continue;
            }
            if self.masks(split, &rows, checked) {
                let said = "the model masks them (its outputs on a batch of those rows are finite)";
                out.notes.extend(split.non_finite(key, path, said));
            } else {
                let said = format!("{effect}, unless the model masks them");
                out.warnings.extend(split.non_finite(key, path, &said));
            }
        }
        out
    }

    /// Whether the `checked` outputs of a forward of `rows` (non-finite)
    /// and some clean rows of `split` are all finite.
    fn masks(&self, split: &Split, rows: &[i64], checked: &dyn Fn(&str) -> bool) -> bool {
        let candidates: Vec<i64> = (0..split.samples.min(4 * CLEAN_ROWS as i64)).collect();
        let flagged: Vec<i64> = split
            .non_finite_of(&candidates)
            .into_iter()
            .flat_map(|(_, rows)| rows)
            .collect();
        let clean = candidates
            .into_iter()
            .filter(|r| !flagged.contains(r))
            .take(CLEAN_ROWS);
        let batch_rows: Vec<i64> = rows.iter().copied().chain(clean).collect();
        let device = split
            .tensors
            .first()
            .map_or(tch::Device::Cpu, |t| t.1.device());
        let batch = split.rows(&Tensor::from_slice(&batch_rows).to_device(device));
        self.module.borrow_mut().set_eval();
        let outputs = tch::no_grad(|| self.forward_checked(&batch));
        self.module.borrow_mut().set_train();
        outputs.is_ok_and(|outputs| {
            outputs
                .iter()
                .filter(|(name, _)| {
                    checked(name.strip_prefix(super::METRIC_PREFIX).unwrap_or(name))
                })
                .all(|(_, t)| t.isfinite().all().int64_value(&[]) == 1)
        })
    }
}
