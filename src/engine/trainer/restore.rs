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

/// Meta lines are read at least this often (the default
/// `train.log_every`), whatever the log interval: see [`ReadPoint`].
pub(super) const READ_EVERY: u64 = 10;

/// A place in the step sequence where pending meta lines are read: at a
/// step's logging, before its meta step, or after that meta step (its
/// evaluation, its checkpoint, the run's end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ReadPoint {
    pub(super) step: u64,
    pub(super) after_meta: bool,
}

impl ReadPoint {
    pub(super) fn before_meta(step: u64) -> Self {
        Self {
            step,
            after_meta: false,
        }
    }

    pub(super) fn after_meta(step: u64) -> Self {
        Self {
            step,
            after_meta: true,
        }
    }
}

/// A restore a collapse verdict decided, waiting for its [`ReadPoint`]:
/// what it sets then (`None`: a live edit of the key came first, and the
/// edit's value stands).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct QueuedRestore {
    pub(super) at: ReadPoint,
    pub(super) meta_lr: Option<f64>,
    pub(super) gamma: Option<f64>,
}

impl Trainer {
    /// Writes what the device decided since the last flush, and applies
    /// a restore queued for this point (`now`) or before. Called at log
    /// steps and every [`READ_EVERY`]th, before evals and checkpoints, and
    /// at the end.
    pub(super) fn flush_pending_at(&mut self, now: ReadPoint) -> Result<()> {
        self.write_pending()?;
        self.apply_queued_restore(now);
        Ok(())
    }

    /// Writes the pending lines before a line of this step that comes
    /// between log steps (a live edit, a config error, a fallback route),
    /// so the log stays in step order (walkthrough G4's events pane had an
    /// edit at step 438 above a note of step 432). Only where that read
    /// changes nothing: on the CPU, where every meta step reads the skipped
    /// steps anyway (on CUDA only flushes do), and in a single process
    /// (data-parallel followers do not see every command). A restore it
    /// reads still waits for its point.
    pub(super) fn write_pending_in_order(&mut self) -> Result<()> {
        match self.on_cpu() && self.group.is_none() {
            true => self.write_pending(),
            false => Ok(()),
        }
    }

    /// [`Self::flush_pending_at`] after this step's meta step; at the
    /// run's end every queued restore is due (`train.steps` lowered under
    /// its point: the run's log has said it).
    pub(super) fn flush_pending(&mut self) -> Result<()> {
        let step = match self.step >= self.config.train.steps {
            true => u64::MAX,
            false => self.step,
        };
        self.flush_pending_at(ReadPoint::after_meta(step))
    }

    /// Where a collapse verdict on the meta step at `meta_step` takes
    /// effect, whatever `train.log_every`: the first point after that meta
    /// step where a run at the default log interval reads it (a logging at
    /// a multiple of [`READ_EVERY`] or at the last step; an evaluation; a
    /// checkpoint). A verdict that took effect where it was read fell
    /// where the logging happened to be: walkthrough M2's restore fell
    /// before step 526 at `log_every = 1` and before 532 at 10, and the
    /// runs parted from there.
    pub(super) fn verdict_point(&self, meta_step: u64) -> ReadPoint {
        let train = &self.config.train;
        if meta_step >= train.steps {
            return ReadPoint::after_meta(meta_step);
        }
        let logged = ((meta_step / READ_EVERY + 1) * READ_EVERY).min(train.steps);
        (meta_step..logged)
            .find(|&s| {
                s.is_multiple_of(train.eval_every) || s.is_multiple_of(train.checkpoint_every)
            })
            .map_or(ReadPoint::before_meta(logged), ReadPoint::after_meta)
    }

    /// Applies the queued restore once a flush reaches its point (`now`):
    /// φ is put back before the next forward, the meta-learning rate and
    /// γ take the values its event gave.
    pub(super) fn apply_queued_restore(&mut self, now: ReadPoint) {
        let Some(queued) = self.queued_restore.filter(|q| q.at <= now) else {
            return;
        };
        self.queued_restore = None;
        self.restore_due = true;
        // Before the next step, where the point fell or later (a live edit
        // of train.eval_every may have taken the point away).
        if let Some((from, _)) = self.restored {
            self.restored = Some((from, self.step + 1));
        }
        if let (Some(meta), Some(lr)) = (self.meta.as_mut(), queued.meta_lr) {
            meta.lr = lr;
        }
        if let Some(gamma) = queued.gamma {
            self.gamma = gamma;
        }
    }

    /// γ in force once a queued restore takes effect (what advice names).
    pub(super) fn gamma_after_queue(&self) -> f64 {
        self.queued_restore
            .and_then(|q| q.gamma)
            .unwrap_or(self.gamma)
    }

    /// The queued restore as checkpoint values: its point, then the
    /// meta-learning rate and γ it sets (NaN: none).
    pub(super) fn queued_restore_values(&self) -> Option<[f64; 4]> {
        self.queued_restore.map(|q| {
            [
                q.at.step as f64,
                f64::from(u8::from(q.at.after_meta)),
                q.meta_lr.unwrap_or(f64::NAN),
                q.gamma.unwrap_or(f64::NAN),
            ]
        })
    }
}

/// [`Trainer::queued_restore_values`] read back.
pub(super) fn queued_restore_from(values: &[f64]) -> Option<QueuedRestore> {
    let &[step, after_meta, meta_lr, gamma] = values else {
        return None;
    };
    if !step.is_finite() {
        return None;
    }
    Some(QueuedRestore {
        at: ReadPoint {
            step: step as u64,
            after_meta: after_meta != 0.0,
        },
        meta_lr: meta_lr.is_finite().then_some(meta_lr),
        gamma: gamma.is_finite().then_some(gamma),
    })
}
