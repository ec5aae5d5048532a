//! The trainer as `meltr-tui bench` drives it: a narrow handle that steps a
//! trainer on a throwaway session and times its phases, so the trainer's
//! own methods stay private.

use super::*;

/// A trainer driven step by step, outside the run loop.
pub struct BenchTrainer(Trainer);

impl BenchTrainer {
    /// A trainer on a new session in `dir` (nobody listens to its events).
    pub fn new(dir: &Path, config: Config) -> Result<BenchTrainer> {
        let (events, _) = std::sync::mpsc::sync_channel(1);
        Ok(BenchTrainer(Trainer::new(dir, config, false, events)?.0))
    }

    /// As [`BenchTrainer::new`], its events sent to `events`.
    pub fn with_events(
        dir: &Path,
        config: Config,
        events: SyncSender<Event>,
    ) -> Result<BenchTrainer> {
        Ok(BenchTrainer(Trainer::new(dir, config, false, events)?.0))
    }

    /// The run loop as [`Trainer::run`] drives it (after
    /// [`BenchTrainer::join_group`]), on `commands`, to its end.
    pub fn run(&mut self, commands: &Receiver<Command>) -> Result<Status> {
        self.0.run_loop(commands)
    }

    /// The config in force.
    pub fn config(&self) -> Config {
        self.0.config.clone()
    }

    /// Steps done.
    pub fn steps_done(&self) -> u64 {
        self.0.step
    }

    /// One training step as a run takes it (inner step, and the meta step,
    /// eval and checkpoint when due).
    pub fn step(&mut self) -> Result<()> {
        self.0.train_step()
    }

    /// Joins a data-parallel group now (a run joins when it starts).
    pub fn join_group(&mut self, at: &crate::dist::Rendezvous) -> Result<()> {
        self.0.join_group(at)
    }

    /// Data-parallel with gradient buckets: the buckets whose all-reduce
    /// started during the backward, and all buckets, summed over the inner
    /// steps so far (None without buckets).
    pub fn buckets_started_in_backward(&self) -> Option<(usize, usize)> {
        self.0.buckets.as_ref()?;
        Some(self.0.dp_timing.started())
    }

    /// θ and then φ (the combiner's parameters), detached copies.
    pub fn parameters(&self) -> Vec<Tensor> {
        self.0
            .theta
            .iter()
            .chain(&self.0.combiner.params())
            .map(|t| t.detach().copy())
            .collect()
    }

    /// The factors MELTR reads the losses at (`meltr.loss_scale`), if any.
    pub fn loss_scale(&self) -> Option<Vec<f64>> {
        let scale = self.0.combiner.meltr_net()?.input_scale()?;
        Vec::<f64>::try_from(scale.to_kind(tch::Kind::Double)).ok()
    }

    /// What a collapse restore decides from and leaves: the watch's state
    /// (as checkpoints hold it), the meta-learning rate and γ in force.
    pub fn collapse_watch(&self) -> (Vec<(String, Tensor)>, Option<f64>, f64) {
        let t = &self.0;
        let state = t.collapse.state("collapse");
        (state, t.meta.as_ref().map(|m| m.lr), t.gamma)
    }

    /// One meta step on the recent batches.
    pub fn meta_step(&mut self) -> Result<()> {
        self.0.meta_step(None)?;
        match &self.0.meta_blocked {
            Some(e) => bail!("{e}"),
            None => Ok(()),
        }
    }

    /// Takes the gradient shares one backward per loss (the fallback), to
    /// compare with the double backward.
    pub fn shares_per_loss(&mut self) {
        self.0.shares_per_loss = Some("bench".into());
    }

    /// Runs MELTR through its elementary ops everywhere (no fused layer
    /// norm, softmax or attention), to measure what the fused kernels save.
    pub fn elementary_combiner_ops(&mut self) {
        self.0.combiner.allow_fused_kernels(false);
    }

    /// Starts timing each meta step's phases (synchronizing the device at
    /// every phase boundary).
    pub fn time_phases(&mut self) {
        let device = self.0.theta.first().map_or(Device::Cpu, Tensor::device);
        self.0.phase_clock = PhaseClock::enabled(device);
    }

    /// Time per meta-step phase since the last call.
    pub fn take_phases(&mut self) -> Vec<(&'static str, std::time::Duration)> {
        self.0.phase_clock.take()
    }

    /// Waits until the device has done all queued work (timing boundary).
    pub fn sync(&mut self) -> Result<()> {
        self.0.flush_pending()?;
        if let Some(p) = self.0.theta.first() {
            let _ = p.detach().sum(Kind::Double).double_value(&[]);
        }
        Ok(())
    }
}
