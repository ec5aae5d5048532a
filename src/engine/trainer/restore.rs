//! Putting φ back after a collapse (`meltr.on_collapse = "restore"`): the
//! state a restore copies into, and when it is applied.

use super::*;

impl Trainer {
    /// Puts φ back to the newest healthy meta step, with its optimizer's
    /// step count and cleared moments, when a collapse asked for it (before
    /// a step's forward: no graph holds φ).
    pub(super) fn apply_due_restore(&mut self) {
        if std::mem::take(&mut self.restore_due) {
            self.collapse.restore(&self.restorable_state());
            // The moments are what carried φ into the collapse: restored,
            // they replay the slide (on the suite's few-labels seed 4 it
            // collapsed again: 46.2 against 57.6 with them cleared). The
            // step count is put back, so Adam's bias correction does not
            // blow the first updates up.
            if let Some(meta) = self.meta.as_mut() {
                meta.clear_moments();
            }
        }
    }

    /// Copies of [`Self::restorable_state`] (device copies; no host sync).
    pub(super) fn meta_snapshot(&self) -> Vec<Tensor> {
        tch::no_grad(|| self.restorable_state().iter().map(Tensor::copy).collect())
    }

    /// What a collapse restore puts back: φ, then the meta optimizer's step
    /// count (shallow).
    pub(super) fn restorable_state(&self) -> Vec<Tensor> {
        let mut state = self.combiner.params();
        if let Some(meta) = &self.meta {
            state.push(meta.step.shallow_clone());
        }
        state
    }
}
