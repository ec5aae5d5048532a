//! One call of the module's `forward`: its outputs checked against the
//! contract (a dict of 0-dim tensors) and cast to the run's kind.

use super::errors::{batch_hint, batch_inventory, describe};
use super::{batch_ivalue, plain_interpreter, torch_message, TorchScript, METRIC_PREFIX};
use crate::numfmt::readable;
use crate::workload::{Batch, SavedBuffers};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use tch::{IValue, TchError, Tensor};

/// An error of a forward that needed a graph it did not have:
/// `torch.autograd.grad` of an output computed without autograd.
fn lacks_a_graph(error: &TchError) -> bool {
    let message = error.to_string();
    message.contains("does not require grad") || message.contains("does not have a grad_fn")
}

/// Why a model runs with autograd on, from the error its forward gave
/// without it.
fn fails_without_autograd(error: &str) -> String {
    let first = error.lines().next().unwrap_or_default();
    format!("its forward fails with autograd off (\"{first}\")")
}

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
            .call_module(|| self.module.borrow().forward_is(&[batch_ivalue(batch)]))
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

    /// One call of the module, with autograd on where its forward needs it
    /// (`grad_in_forward`). A call that fails for lack of a graph (the
    /// engine evaluates under `no_grad`; `torch.autograd.grad` inside the
    /// forward then has nothing to differentiate) is tried again with
    /// autograd on, and when that one passes every later call runs so.
    pub(super) fn call_module<T>(
        &self,
        call: impl Fn() -> Result<T, TchError>,
    ) -> Result<T, TchError> {
        if self.grad_in_forward.borrow().is_some() {
            return tch::with_grad(call);
        }
        match call() {
            Err(error) if lacks_a_graph(&error) => match tch::with_grad(&call) {
                Ok(output) => {
                    *self.grad_in_forward.borrow_mut() =
                        Some(fails_without_autograd(&torch_message(&error)));
                    Ok(output)
                }
                Err(_) => Err(error),
            },
            other => other,
        }
    }

    /// Whether the model's training-mode losses on the first batch, seeded
    /// alike, differ with autograd off: a forward that reads the grad mode
    /// (`torch.is_grad_enabled()`, walkthrough N1's finite-difference
    /// residual under `no_grad`) computes another function there, and the
    /// meta step's JVPs and finite differences, evaluated without a graph,
    /// would differentiate that one. Such a model runs every forward with
    /// autograd on. (The buffers are put back after each forward.)
    pub(super) fn detect_grad_in_forward(&self) -> Result<()> {
        if self.grad_in_forward.borrow().is_some() {
            return Ok(());
        }
        let batch = self.train.slice(0, self.batch_size);
        let seed = crate::nn::rng::forward_seed(self.seed, 0, crate::nn::rng::Forward::Inner);
        let buffers = SavedBuffers::take(self)?;
        let forward = |grad: bool| -> Result<Result<Vec<(String, f64)>>> {
            tch::manual_seed(seed);
            let outputs = match grad {
                true => tch::with_grad(|| self.forward(&batch)),
                false => tch::no_grad(|| self.forward(&batch)),
            };
            buffers.restore(self)?;
            Ok(outputs.map(|outputs| {
                self.trained_losses()
                    .filter_map(|name| Some((name.clone(), outputs.get(name)?.double_value(&[]))))
                    .collect()
            }))
        };
        let without = match forward(false)? {
            _ if self.grad_in_forward.borrow().is_some() => return Ok(()), // flagged as it failed
            Ok(losses) => losses,
            Err(error) => {
                // Failed otherwise than for lack of a graph: still not with one.
                let cause = error.root_cause().to_string();
                *self.grad_in_forward.borrow_mut() = Some(fails_without_autograd(&cause));
                return Ok(());
            }
        };
        let with = forward(true)??;
        let differs = with.iter().zip(&without).find(|((_, a), (_, b))| {
            a.is_finite() && b.is_finite() && (a - b).abs() > 1e-5 * a.abs().max(b.abs())
        });
        if let Some(((name, a), (_, b))) = differs {
            *self.grad_in_forward.borrow_mut() = Some(format!(
                "its losses differ with autograd off (`{name}` {} with it, {} without: it reads the grad mode)",
                readable(*a),
                readable(*b)
            ));
        }
        Ok(())
    }

    /// Said at the start when the model's forwards run with autograd on.
    pub(super) fn grad_in_forward_note(&self) -> Option<String> {
        let why = self.grad_in_forward.borrow();
        why.as_ref().map(|why| {
            format!(
                "{}: {why}, so every forward the engine runs, evaluations and the meta step's JVPs and \
                 finite differences included, runs with autograd on, as a PyTorch loop's training step \
                 does (a model differentiating inside its forward, as a PINN's residual or a gradient \
                 penalty, needs it); this costs time and memory",
                self.model_label
            )
        })
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
