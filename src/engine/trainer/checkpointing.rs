//! Writing checkpoints (after the metrics are durable up to them), and
//! reading a resumed run's state back from one.

use super::*;

/// Checkpoint names of the run state beyond the parameters and moments.
pub(super) const META_LR: &str = "meta.lr";
/// γ in force (a collapse restore raises it) and the configured one.
pub(super) const GAMMA: &str = "meltr.gamma";
pub(super) const COLLAPSE: &str = "collapse";
/// The steps of the meta step's pool whose update was skipped (when any).
pub(super) const POOL_SKIPPED: &str = "pool.skipped";
/// The Neumann series' stop episodes so far and whether the last meta
/// step's stopped (a resumed run counts its warnings on).
pub(super) const NEUMANN_STOPS: &str = "aid.neumann_stops";
/// Present when the last logging step's losses were not finite: the
/// resumed run's next step logs.
pub(super) const TRAIN_LINE_OWED: &str = "train.line_owed";
/// `meltr.loss_scale` other than `raw`: the factors measured on the first
/// batch.
pub(super) const LOSS_SCALE: &str = "meltr.loss_scale";
/// A collapse restore not yet read by a meta step after it: the healthy
/// step it put back and the step it applies before (a resumed run reads
/// it, and marks a restore that did not help, as the run would have).
pub(super) const RESTORE_UNREAD: &str = "collapse.restore_unread";
/// A restore decided and not yet applied: see `restore.rs`.
pub(super) const RESTORE_QUEUED: &str = "collapse.restore_queued";
/// The best-evaluated checkpoint's step and primary metric.
pub(super) const BEST_EVALUATED: &str = "eval.best_checkpoint";

/// The checkpoint with the best primary metric among those written at an
/// evaluation's step: kept past `train.keep_checkpoints`, so that
/// `export --best` finds it.
#[derive(Debug)]
pub(super) struct BestEvaluated {
    metric: String,
    higher_is_better: bool,
    /// The last evaluation's step and primary metric.
    last_eval: Option<(u64, f64)>,
    /// The best checkpoint written so far: step and metric.
    best: Option<(u64, f64)>,
    /// The best primary metric of this process's evaluations.
    seen: Option<f64>,
}

impl BestEvaluated {
    pub(super) fn new(metric: &str, higher_is_better: bool, saved: Option<Vec<f64>>) -> Self {
        let best = match saved.as_deref() {
            Some(&[step, value]) => Some((step as u64, value)),
            _ => None,
        };
        Self {
            metric: metric.to_string(),
            higher_is_better,
            last_eval: None,
            best,
            seen: None,
        }
    }

    fn better(&self, a: f64, b: f64) -> bool {
        match self.higher_is_better {
            true => a > b,
            false => a < b,
        }
    }

    pub(super) fn evaluated(
        &mut self,
        step: u64,
        metrics: &std::collections::BTreeMap<String, f64>,
    ) {
        self.last_eval = metrics.get(&self.metric).map(|&v| (step, v));
        self.seen_before(metrics);
    }

    /// Counts an evaluation toward the best seen (a resumed run's logged
    /// ones: a best whose checkpoint was not written still counts).
    pub(super) fn seen_before(&mut self, metrics: &std::collections::BTreeMap<String, f64>) {
        if let Some(&v) = metrics.get(&self.metric).filter(|v| v.is_finite()) {
            if self.seen.is_none_or(|seen| self.better(v, seen)) {
                self.seen = Some(v);
            }
        }
    }

    /// The primary metric of `step`'s evaluation when it beats every
    /// evaluation so far, and every one with a checkpoint
    /// (`train.checkpoint_best`; one whose checkpoint could not be written
    /// still counts, so a lower one later is no "best so far").
    fn new_best_at(&self, step: u64) -> Option<f64> {
        let (at, value) = self.with_checkpoint_at(step)?;
        let written = self.best.is_some_and(|b| b.0 == step);
        (at == step && !written && self.seen == Some(value)).then_some(value)
    }

    /// The best checkpoint once one is written at `step`.
    fn with_checkpoint_at(&self, step: u64) -> Option<(u64, f64)> {
        let here = self
            .last_eval
            .filter(|&(at, value)| at == step && value.is_finite());
        match (self.best, here) {
            (Some(best), Some(here)) => Some(match self.better(here.1, best.1) {
                true => here,
                false => best,
            }),
            (best, here) => here.or(best),
        }
    }
}

impl Trainer {
    /// Rank 0: a checkpoint asked for by hand, taken by every rank at this
    /// step (see [`lockstep::Order::Checkpoint`]).
    pub(super) fn checkpoint_on_every_rank(&mut self, keep: bool) -> Result<()> {
        self.lockstep(lockstep::Order::Checkpoint { keep })?;
        self.write_checkpoint_asked(keep)
    }

    /// The checkpoints one drain of commands asked for (`keep` each, see
    /// [`Self::write_checkpoint_asked`]), written after the drain: a config
    /// edit queued with them applies first, so they hold the config the
    /// next step trains with (a walkthrough's checkpoint asked while the
    /// runner set up held the config before that time's edits, and a fork
    /// from it ran without them; a resumed run's pinned its start
    /// checkpoint, hence `edited_since_checkpoint`).
    pub(super) fn write_checkpoints_asked(&mut self, keeps: Vec<bool>) -> Result<()> {
        for keep in keeps {
            self.checkpoint_on_every_rank(keep)?;
        }
        Ok(())
    }

    /// A checkpoint asked for by hand (`keep`: the TUI's `c`, kept past
    /// `train.keep_checkpoints`; else `f`'s, for a fork): written now.
    pub(super) fn write_checkpoint_asked(&mut self, keep: bool) -> Result<()> {
        self.write_checkpoint()?;
        if self.is_follower() || self.checkpointed_at != Some(self.step) {
            return Ok(());
        }
        let step = self.step;
        if !keep {
            self.emit(Record::Event {
                level: Level::Info,
                message: format!("{CHECKPOINT_ASKED_EVENT}{step} written for a fork"),
            });
            return Ok(());
        }
        let message = match checkpoint::pin(&self.dir.checkpoints(), step) {
            Ok(()) => format!(
                "{CHECKPOINT_ASKED_EVENT}{step} kept past train.keep_checkpoints (asked for by hand)"
            ),
            Err(e) => format!(
                "{CHECKPOINT_ASKED_EVENT}{step} may be pruned as any other (it could not be kept: {e:#})"
            ),
        };
        self.emit(Record::Event {
            level: Level::Info,
            message,
        });
        Ok(())
    }

    /// `train.checkpoint_best`: a checkpoint at an evaluation that scored
    /// the best primary metric so far, between the periodic ones, so that
    /// `export --best` has the best model (a walkthrough's best evaluation
    /// fell between two checkpoints). Rank 0 alone (the others have no
    /// metric; a restore it applies here, they apply before the next
    /// step's forward, as it would have). Not at the run's last step, which
    /// writes an ordinary checkpoint anyway.
    pub(super) fn write_best_checkpoint(&mut self) -> Result<()> {
        let Some(value) = self.best_evaluated.new_best_at(self.step) else {
            return Ok(());
        };
        if !self.config.train.checkpoint_best
            || self.step == self.config.train.steps
            || self.is_follower()
            || self.checkpointed_at == Some(self.step)
        {
            return Ok(());
        }
        self.write_checkpoint_of(Some(value))
    }

    /// Writes a checkpoint now (and makes the metrics durable up to it).
    pub fn write_checkpoint(&mut self) -> Result<()> {
        self.write_checkpoint_of(None)
    }

    /// [`Self::write_checkpoint`]; `best_only`: the primary metric of the
    /// evaluation a best-only checkpoint is written for. Such a write that
    /// fails is warned about, not paused for (the periodic checkpoints
    /// say whether the disk holds up).
    fn write_checkpoint_of(&mut self, best_only: Option<f64>) -> Result<()> {
        self.flush_pending()?;
        // A restore the flush asked for lands before the checkpoint (nothing
        // reads φ before the next step's forward), so a resume starts from
        // the restored φ, like the run that goes on.
        self.apply_due_restore();
        if self.is_follower() {
            return Ok(());
        }
        if self.checkpointed_at == Some(self.step)
            && !self.checkpoint_owed
            && !self.edited_since_checkpoint
        {
            // A stop or `c` at a best-only checkpoint's step: it stays.
            checkpoint::unmark_best_only(&self.dir.checkpoints(), self.step);
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
        if self.neumann_episodes > 0 {
            let stops = [
                f64::from(self.neumann_episodes),
                f64::from(u8::from(self.neumann_stopped)),
            ];
            tensors.push((NEUMANN_STOPS.to_string(), Tensor::from_slice(&stops)));
        }
        if let Some((from, before)) = self.restored {
            let unread = [from as f64, before as f64];
            tensors.push((RESTORE_UNREAD.to_string(), Tensor::from_slice(&unread)));
        }
        if let Some(queued) = self.queued_restore_values() {
            tensors.push((RESTORE_QUEUED.to_string(), Tensor::from_slice(&queued)));
        }
        if self.train_line_owed {
            tensors.push((TRAIN_LINE_OWED.to_string(), Tensor::from_slice(&[1.0f64])));
        }
        let config = self.config.to_toml_string();
        tensors.push((
            checkpoint::CONFIG_IN_FORCE.to_string(),
            Tensor::from_slice(config.as_bytes()),
        ));
        let best = self.best_evaluated.with_checkpoint_at(self.step);
        let new_best = self.best_evaluated.new_best_at(self.step);
        if let Some((step, value)) = best {
            tensors.push((
                BEST_EVALUATED.to_string(),
                Tensor::from_slice(&[step as f64, value]),
            ));
        }
        let written = self.log.sync().and_then(|()| {
            let keep = checkpoint::Keep {
                newest: self.config.train.keep_checkpoints,
                best: best.map(|(step, _)| step),
                best_only: best_only.is_some(),
            };
            checkpoint::write(&self.dir.checkpoints(), self.step, &tensors, keep)
        });
        // Named by its step (`checkpoint::file_name`), as the event says.
        match (written, best_only) {
            (Err(e), Some(_)) => {
                self.emit(Record::Event {
                    level: Level::Warn,
                    message: format!(
                        "the checkpoint of step {}'s best evaluation could not be written ({e:#}); \
                         the run goes on, and `export --best` takes the best kept checkpoint",
                        self.step
                    ),
                });
                return Ok(());
            }
            // The previous checkpoint is intact; pause and retry on resume.
            (Err(e), None) => {
                self.storage_error.get_or_insert(format!("{e:#}"));
                self.checkpoint_owed = true;
                return Ok(());
            }
            (Ok(_), _) => {}
        }
        self.checkpoint_owed = false;
        self.edited_since_checkpoint = false;
        self.checkpointed_at = Some(self.step);
        self.best_evaluated.best = best;
        let metric = &self.best_evaluated.metric;
        let message = match (best_only, new_best) {
            (Some(value), _) => checkpoint::best_checkpoint_written(self.step, metric, value),
            // A periodic checkpoint at a new best says so too (walkthrough
            // R read it only between checkpoints, and took the ones at
            // checkpoint steps for not the best).
            (None, Some(value)) => checkpoint::periodic_best_written(self.step, metric, value),
            (None, None) => checkpoint::checkpoint_written(self.step),
        };
        self.emit(Record::Event {
            level: Level::Info,
            message,
        });
        Ok(())
    }
}

pub(super) type Parts = (Box<dyn Workload>, Box<dyn Combiner>, AdamW, Option<AdamW>);

pub(super) fn restore(
    ckpt: &checkpoint::Loaded,
    (workload, combiner, inner, meta): &mut Parts,
) -> Result<()> {
    let context = || {
        format!(
            "checkpoint {} does not match this config",
            ckpt.path.display()
        )
    };
    workload
        .load_state(&ckpt.lookup("model."))
        .with_context(context)?;
    crate::nn::vars::load_into(combiner.var_store(), "combiner.", &|n| ckpt.get(n))
        .with_context(context)?;
    // The factors measured at the run's start (`meltr.loss_scale` is fixed
    // for a run; `start_loss_scale` says so if the config now disagrees).
    if let (Some(scale), Some(net)) = (ckpt.get(LOSS_SCALE), combiner.meltr_net_mut()) {
        net.set_input_scale(Some(scale));
    }
    inner
        .load_state("inner", &|n| ckpt.get(n))
        .with_context(context)?;
    if let Some(meta) = meta {
        meta.load_state("meta", &|n| ckpt.get(n))
            .with_context(context)?;
    }
    Ok(())
}

/// The collapse watch, and the meta-learning rate and γ a collapse restore
/// left (checkpoints from before they were saved: a fresh watch, the
/// configured values). A resume whose config edits `meltr.meta_lr` or
/// `meltr.gamma` takes the edit, as a live edit does. Returns γ in force and
/// a note for the log for each value that is not the configured one.
pub(super) fn restore_watch(
    ckpt: &checkpoint::Loaded,
    config: &Config,
    (_, combiner, _, meta): &mut Parts,
    collapse: &mut CollapseGuard,
    device: Device,
) -> Result<(f64, Vec<String>)> {
    let context = || format!("checkpoint {}", ckpt.path.display());
    collapse
        .load_state(COLLAPSE, &|n| ckpt.get(n), device)
        .with_context(context)?;
    collapse.copies.fit(1 + config.workload.auxiliary.len());
    if let Some(saved) = collapse.snapshot_len() {
        let expected = combiner.params().len() + usize::from(meta.is_some());
        anyhow::ensure!(
            saved == expected,
            "{}: its collapse snapshot holds {saved} tensors, this config's restorable state {expected}",
            context()
        );
    }
    // [in force, configured] as the checkpoint saved them: the value in
    // force when the configuration has not changed since.
    let in_force = |key: &str, configured_now: f64| -> Result<Option<f64>> {
        let Some(saved) = saved_values(ckpt, key)? else {
            return Ok(None);
        };
        let [in_use, configured] = <[f64; 2]>::try_from(saved)
            .ok()
            .with_context(|| format!("{}: `{key}` is not [in use, configured]", context()))?;
        Ok((configured == configured_now && in_use != configured).then_some(in_use))
    };
    let mut notes = Vec::new();
    if let Some(meta) = meta.as_mut() {
        if let Some(lr) = in_force(META_LR, config.meltr.meta_lr)? {
            meta.lr = lr;
            notes.push(format!(
                "the meta-learning rate resumes at {lr:.3e}, not meltr.meta_lr = {:.3e}: \
                 a collapse restore lowered it before the checkpoint (an edit of meltr.meta_lr sets it again)",
                config.meltr.meta_lr
            ));
        }
    }
    let mut gamma = config.meltr.gamma;
    if let Some(raised) = in_force(GAMMA, config.meltr.gamma)? {
        gamma = raised;
        notes.push(format!(
            "γ resumes at {}, not meltr.gamma = {}: a collapse restore raised it before the \
             checkpoint (an edit of meltr.gamma sets it again)",
            super::meta_words::fmt_gamma(raised),
            super::meta_words::fmt_gamma(config.meltr.gamma)
        ));
    }
    Ok((gamma, notes))
}

/// A restore's healthy step and the step it applies before (until the
/// first meta step after it is read), and a restore decided and not yet
/// applied (see `restore.rs`).
pub(super) type RestoreState = (Option<(u64, u64)>, Option<super::restore::QueuedRestore>);

/// The checkpoint's [`RestoreState`]. A queued restore leaves a key the
/// resumed config edits (`meltr.meta_lr`, `meltr.gamma`) as edited, as a
/// live edit does.
pub(super) fn restore_state(ckpt: &checkpoint::Loaded, config: &Config) -> Result<RestoreState> {
    let restored = match saved_values(ckpt, RESTORE_UNREAD)?.as_deref() {
        Some(&[from, before]) => Some((from as u64, before as u64)),
        _ => None,
    };
    let mut queued = saved_values(ckpt, RESTORE_QUEUED)?
        .as_deref()
        .and_then(super::restore::queued_restore_from);
    let edited = |key: &str, now: f64| -> Result<bool> {
        Ok(saved_values(ckpt, key)?
            .as_deref()
            .is_some_and(|saved| saved.get(1).is_some_and(|&configured| configured != now)))
    };
    if let Some(queued) = queued.as_mut() {
        if edited(META_LR, config.meltr.meta_lr)? {
            queued.meta_lr = None;
        }
        if edited(GAMMA, config.meltr.gamma)? {
            queued.gamma = None;
        }
    }
    Ok((restored, queued))
}

/// A run-state entry of the checkpoint as numbers, when it has one.
pub(super) fn saved_values(ckpt: &checkpoint::Loaded, key: &str) -> Result<Option<Vec<f64>>> {
    ckpt.get(key)
        .map(|t| Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)))
        .transpose()
        .with_context(|| format!("checkpoint {}: `{key}`", ckpt.path.display()))
}

#[cfg(test)]
mod best_tests {
    use super::BestEvaluated;
    use std::collections::BTreeMap;

    fn metric(value: f64) -> BTreeMap<String, f64> {
        BTreeMap::from([("acc".to_string(), value), ("other".to_string(), 9.0)])
    }

    /// Only a checkpoint written at an evaluation's step counts; the best
    /// stays until a better one is written; a non-finite metric never wins.
    #[test]
    fn the_best_evaluated_checkpoint_is_the_best_written_at_an_evaluation() {
        let mut best = BestEvaluated::new("acc", true, None);
        best.evaluated(50, &metric(0.9));
        assert_eq!(best.with_checkpoint_at(60), None, "no evaluation at 60");
        assert_eq!(best.with_checkpoint_at(50), Some((50, 0.9)));
        best.best = best.with_checkpoint_at(50);
        best.evaluated(100, &metric(0.7));
        assert_eq!(best.with_checkpoint_at(100), Some((50, 0.9)));
        best.evaluated(150, &metric(f64::NAN));
        assert_eq!(best.with_checkpoint_at(150), Some((50, 0.9)));
        best.evaluated(200, &metric(0.95));
        assert_eq!(best.with_checkpoint_at(200), Some((200, 0.95)));
        // Lower is better; a resumed run starts from the saved best.
        let mut loss = BestEvaluated::new("acc", false, Some(vec![50.0, 0.3]));
        loss.evaluated(100, &metric(0.4));
        assert_eq!(loss.with_checkpoint_at(100), Some((50, 0.3)));
        loss.evaluated(150, &metric(0.2));
        assert_eq!(loss.with_checkpoint_at(150), Some((150, 0.2)));
    }

    /// `train.checkpoint_best`: a new best is the best evaluation seen,
    /// also before a resume (the review: one whose checkpoint was not
    /// written, then a lower one logged as "the best so far").
    #[test]
    fn a_new_best_beats_every_evaluation_seen_before_a_resume_too() {
        let mut best = BestEvaluated::new("acc", true, Some(vec![50.0, 0.7]));
        best.seen_before(&metric(0.9));
        best.evaluated(100, &metric(0.8));
        assert_eq!(best.new_best_at(100), None, "0.8 is below the 0.9 seen");
        best.evaluated(150, &metric(0.95));
        assert_eq!(best.new_best_at(150), Some(0.95));
        best.best = best.with_checkpoint_at(150);
        assert_eq!(best.new_best_at(150), None, "written already");
    }
}
