//! The model's losses beyond the contract's shape checks: those the config
//! trains on need a gradient on some batch; the others are only logged.

use super::TorchScript;
use anyhow::{bail, Context, Result};
use tch::Tensor;

impl TorchScript {
    /// Finds the parameters the trained losses' gradient does not reach on
    /// the first batch (see [`super::params::unreached_note`]), and says
    /// which (the trainer skips any parameter a step's losses do not
    /// reach; with data-parallel ranks it puts these back until a gradient
    /// reaches them). Where a trained loss is a constant on that batch (a masked
    /// auxiliary), none: other batches may reach more. The forward runs in
    /// training mode, seeded as step 0's would be.
    pub(super) fn find_unreached(&mut self) -> Result<Option<String>> {
        let batch = self.train.slice(0, self.batch_size);
        let seed = crate::nn::rng::forward_seed(self.seed, 0, crate::nn::rng::Forward::Inner);
        // (The workload is built under the caller's hold on the global
        // draws, as the seed at the end of `TorchScript::new`.)
        tch::manual_seed(seed);
        let outputs = self.forward(&batch)?;
        let trained: Vec<&Tensor> = self
            .trained_losses()
            .filter_map(|name| outputs.get(name))
            .collect();
        if trained.iter().any(|loss| !loss.requires_grad()) {
            return Ok(None);
        }
        let Some(total) = trained
            .iter()
            .map(|loss| loss.to_kind(tch::Kind::Double))
            .reduce(|a, b| a + b)
        else {
            return Ok(None);
        };
        let listed = self.module.borrow().named_parameters()?;
        let (parameters, _) = super::params::distinct_parameters(listed);
        let parameters: Vec<(String, Tensor)> = parameters
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        let tensors: Vec<Tensor> = parameters.iter().map(|(_, t)| t.shallow_clone()).collect();
        let grads = Tensor::f_run_backward(&[&total], &tensors, false, false)
            .context("the trained losses' gradient on the first batch")?;
        // Said, not silent (walkthrough L2's `sparse=True` embeddings
        // trained as dense ones with no word of it).
        let sparse: Vec<&str> = parameters
            .iter()
            .zip(&grads)
            .filter(|(_, g)| g.defined() && g.is_sparse())
            .map(|((name, _), _)| name.as_str())
            .collect();
        if !sparse.is_empty() {
            self.data_notes.push(format!(
                "workload.model: the gradient of {} comes sparse (nn.Embedding(sparse=True)); the engine takes \
                 it dense, so it trains as with sparse=False, at a dense gradient's cost (PyTorch's AdamW \
                 refuses sparse gradients)",
                sparse.join(", ")
            ));
        }
        let reached: Vec<bool> = grads.iter().map(Tensor::defined).collect();
        self.unreached = parameters
            .iter()
            .zip(&reached)
            .filter(|(_, reached)| !**reached)
            .map(|((_, t), _)| t.shallow_clone())
            .collect();
        Ok(super::params::unreached_note(&parameters, &reached))
    }

    /// Refuses a loss that depends on no parameter. A loss may be a
    /// constant on some batches (a masked loss over a batch with nothing
    /// masked returns `zeros(())`; the engine then takes no gradient from
    /// it), so `constant`, the losses without a gradient on the first batch,
    /// are looked at on the following batches, through the whole training
    /// set if need be (data sorted by class or length may hold the rows
    /// such a loss needs at the end), before the run is refused.
    pub(super) fn check_some_batch_differentiates(
        &self,
        model_path: &str,
        mut constant: Vec<String>,
    ) -> Result<()> {
        let samples = self.train.samples;
        let size = self.batch_size;
        let mut start = size;
        while !constant.is_empty() && start < samples {
            // The last window is a full batch too (overlapping the one
            // before): training never forwards a smaller one, and a model
            // may not take one (BatchNorm on a single row).
            start = start.min(samples - size);
            let rows = self.train.slice(start, size);
            let outputs = self.forward(&rows).with_context(|| {
                format!(
                    "training rows {start}..{}, checked because a loss had no gradient on the first batch",
                    start + size
                )
            })?;
            constant.retain(|name| !outputs.get(name).is_some_and(Tensor::requires_grad));
            start += size;
        }
        match constant.first() {
            None => Ok(()),
            Some(name) => bail!(
                "workload.model: {model_path}: loss `{name}` is not differentiable with respect to any parameter on any row of workload.train ({samples} rows, in batches of {}): it does not require grad (computed from a `.detach()`ed tensor, under no_grad, from data only, or from frozen parameters). No weight can make it train the model: to log it, return it as `{}{name}` (a metric), or leave it out of {}",
                self.batch_size,
                super::METRIC_PREFIX,
                if *name == self.primary { "workload.primary (the primary must be the model's own task's loss)" } else { "workload.auxiliary" }
            ),
        }
    }

    /// The losses the model returns that the config does not combine:
    /// never trained on, but in the eval lines, where they could pass for
    /// trained ones (a held-out walkthrough's `1e4·` loss sat there
    /// unexplained).
    pub(super) fn untrained_losses_note(&self) -> Option<String> {
        let left: Vec<&str> = self
            .loss_names
            .iter()
            .filter(|name| **name != self.primary && !self.auxiliary.contains(name))
            .map(String::as_str)
            .collect();
        (!left.is_empty()).then(|| {
            format!(
                "{}: the model also returns {} (not in workload.primary or workload.auxiliary): \
                 not trained on, logged in metrics.jsonl's eval lines only (`eval_loss/NAME` in `table`)",
                self.model_label,
                left.join(", ")
            )
        })
    }

    /// Metrics the model returns in training mode but not in eval mode,
    /// where the engine reads them: the primary metric fell back to the
    /// validation loss unsaid (walkthrough N).
    pub(super) fn metrics_in_training_mode_note(&self) -> Option<String> {
        let only_in_training = self.metric_names.is_empty() && !self.train_mode_metrics.is_empty();
        only_in_training.then(|| {
            let names: Vec<String> = self.train_mode_metrics.iter().map(|m| format!("metric/{m}")).collect();
            format!(
                "{}: the model returns {} in training mode but no metric in eval mode, where evaluations read them, \
                 so the primary metric is the validation loss `{}`: return metrics when `not self.training` too",
                self.model_label,
                names.join(", "),
                self.primary
            )
        })
    }
}
