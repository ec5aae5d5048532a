//! One call of the module's `forward`: its outputs checked against the
//! contract (a dict of 0-dim tensors) and cast to the run's kind.

use super::errors::{batch_hint, batch_inventory, describe};
use super::{batch_ivalue, plain_interpreter, torch_message, TorchScript, METRIC_PREFIX};
use crate::workload::Batch;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use tch::{IValue, Tensor};

impl TorchScript {
    /// One forward pass: every output, losses and metrics, by name. Errors
    /// name the model file (callers add which batch).
    pub(super) fn forward(&self, batch: &Batch) -> Result<BTreeMap<String, Tensor>> {
        Ok(self.forward_in_order(batch)?.into_iter().collect())
    }

    /// `forward`'s outputs in the order the model returned them. A failure
    /// says which tensors hold class indices of the wrong kind, found by
    /// trying them (see `batch_hint_tried`).
    pub(super) fn forward_in_order(&self, batch: &Batch) -> Result<Vec<(String, Tensor)>> {
        self.forward_hinted(batch, true)
            .with_context(|| self.model_label.clone())
    }

    /// One forward, its failure hinted from the batch alone: what the scans
    /// of rows run, one forward a row (no retries for each).
    pub(super) fn forward_checked(&self, batch: &Batch) -> Result<Vec<(String, Tensor)>> {
        self.forward_hinted(batch, false)
    }

    fn forward_hinted(&self, batch: &Batch, try_casts: bool) -> Result<Vec<(String, Tensor)>> {
        plain_interpreter();
        let output = self
            .module
            .borrow()
            .forward_is(&[batch_ivalue(batch)])
            .map_err(|e| {
                let message = torch_message(&e);
                let hint = match try_casts {
                    true => self.batch_hint_tried(&message, batch),
                    false => batch_hint(&message, batch),
                };
                let hint = hint.map_or(String::new(), |h| format!("\n{h}"));
                anyhow!(
                    "forward failed: {message}\nthe batch it was given: {}{hint}",
                    batch_inventory(batch)
                )
            })?;
        let IValue::GenericDict(entries) = output else {
            bail!(
                "forward must return Dict[str, Tensor] (losses and `metric/...` values); it returned {}",
                describe(&output)
            );
        };
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let IValue::String(name) = key else {
                bail!(
                    "forward returned a dict whose keys are not strings ({})",
                    describe(&key)
                );
            };
            let IValue::Tensor(tensor) = value else {
                bail!(
                    "forward's `{name}` is {}, not a tensor; every value must be a 0-dim tensor",
                    describe(&value)
                );
            };
            if tensor.dim() != 0 {
                bail!(
                    "forward's `{name}` has shape {:?}; every value must be a 0-dim tensor ({})",
                    tensor.size(),
                    crate::workload::to_scalar(tensor.numel())
                );
            }
            if tensor.is_floating_point() && tensor.kind() != self.kind {
                let mut cast = self.cast_outputs.borrow_mut();
                if !cast.iter().any(|(n, _)| *n == name) {
                    cast.push((name.clone(), tensor.kind()));
                }
            }
            out.push((name, self.in_run_kind(tensor)));
        }
        Ok(out)
    }

    /// `value` in the run's kind when it is floating point in another.
    pub(super) fn in_run_kind(&self, value: Tensor) -> Tensor {
        if value.is_floating_point() && value.kind() != self.kind {
            value.to_kind(self.kind)
        } else {
            value
        }
    }

    /// Said at the start: the outputs `forward` returned in another kind
    /// than the run's, cast (walkthrough L's f64 loss was cast unsaid).
    pub(super) fn cast_note(&self) -> Option<String> {
        let cast = self.cast_outputs.borrow();
        if cast.is_empty() {
            return None;
        }
        let listed: Vec<String> = cast
            .iter()
            .map(|(name, kind)| format!("`{name}` as {kind:?}"))
            .collect();
        // A metric takes no gradient (walkthrough H2 read that one did).
        let gradient = match cast
            .iter()
            .any(|(name, _)| !name.starts_with(METRIC_PREFIX))
        {
            true => " (a loss's gradient flows back through the cast)",
            false => "",
        };
        Some(format!(
            "{}: forward returns {}: cast to {:?}, the run's train.dtype{gradient}",
            self.model_label,
            listed.join(", "),
            self.kind
        ))
    }
}
