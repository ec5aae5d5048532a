//! Writing checkpoints (after the metrics are durable up to them).

use super::*;

/// Checkpoint names of the run state beyond the parameters and moments.
pub(super) const META_LR: &str = "meta.lr";
/// γ in force (a collapse restore raises it) and the configured one.
pub(super) const GAMMA: &str = "meltr.gamma";
pub(super) const COLLAPSE: &str = "collapse";
/// The steps of the meta step's pool whose update was skipped (when any).
pub(super) const POOL_SKIPPED: &str = "pool.skipped";
/// `meltr.loss_scale` other than `raw`: the factors measured on the first
/// batch.
pub(super) const LOSS_SCALE: &str = "meltr.loss_scale";

impl Trainer {
    /// Writes a checkpoint now (and makes the metrics durable up to it).
    pub fn write_checkpoint(&mut self) -> Result<()> {
        self.flush_pending()?;
        // A restore the flush asked for lands before the checkpoint (nothing
        // reads φ before the next step's forward), so a resume starts from
        // the restored φ, like the run that goes on.
        self.apply_due_restore();
        if self.is_follower() {
            return Ok(());
        }
        if self.checkpointed_at == Some(self.step) && !self.checkpoint_owed {
            return Ok(());
        }
        let mut tensors = Vec::new();
        for (name, t) in self.workload.state() {
            tensors.push((format!("model.{name}"), t));
        }
        tensors.extend(crate::nn::vars::named_state(
            self.combiner.var_store(),
            "combiner.",
        ));
        if let Some(scale) = self.combiner.meltr_net().and_then(|n| n.input_scale()) {
            tensors.push((LOSS_SCALE.to_string(), scale.shallow_clone()));
        }
        tensors.extend(self.inner.state("inner"));
        if let Some(meta) = &self.meta {
            tensors.extend(meta.state("meta"));
            // The meta-learning rate in use (a collapse restore halves it)
            // and the configured one it came from.
            let lr = [meta.lr, self.config.meltr.meta_lr];
            tensors.push((META_LR.to_string(), Tensor::from_slice(&lr)));
        }
        let gamma = [self.gamma, self.config.meltr.gamma];
        tensors.push((GAMMA.to_string(), Tensor::from_slice(&gamma)));
        tensors.extend(self.collapse.state(COLLAPSE));
        if !self.pool_skipped.is_empty() {
            let steps: Vec<f64> = self.pool_skipped.iter().map(|&s| s as f64).collect();
            tensors.push((POOL_SKIPPED.to_string(), Tensor::from_slice(&steps)));
        }
        let config = self.config.to_toml_string();
        tensors.push((
            checkpoint::CONFIG_IN_FORCE.to_string(),
            Tensor::from_slice(config.as_bytes()),
        ));
        let written = self
            .log
            .sync()
            .and_then(|()| checkpoint::write(&self.dir.checkpoints(), self.step, &tensors));
        let path = match written {
            Ok(path) => path,
            Err(e) => {
                // The previous checkpoint is intact; pause and retry on resume.
                self.storage_error.get_or_insert(format!("{e:#}"));
                self.checkpoint_owed = true;
                return Ok(());
            }
        };
        self.checkpoint_owed = false;
        self.checkpointed_at = Some(self.step);
        self.emit(Record::Event {
            level: Level::Info,
            message: format!(
                "checkpoint {} written",
                path.file_name().unwrap_or_default().to_string_lossy()
            ),
        });
        Ok(())
    }
}
