//! Writing checkpoints (after the metrics are durable up to them).

use super::*;

impl Trainer {
    /// Writes a checkpoint now (and makes the metrics durable up to it).
    pub fn write_checkpoint(&mut self) -> Result<()> {
        self.flush_pending()?;
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
        tensors.extend(self.inner.state("inner"));
        if let Some(meta) = &self.meta {
            tensors.extend(meta.state("meta"));
        }
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
