//! The trainer: inner steps on the combined loss, AID meta steps on the
//! combiner, evaluations, checkpoints, NaN guards and the collapse watch.
//! Runs on its own thread; talks only through `Command`/`Event` and the
//! session directory. Building the data and the models seeds libtorch's
//! process-wide RNG, so a run is reproducible when it is the only engine in
//! its process (as every `meltr-tui` process is).

use super::checkpoint;
use super::collapse::{CollapseGuard, Verdict, COLLAPSE_META_STEPS, COLLAPSE_WEIGHT};
use super::control::{Command, Event, Status};
use super::trace::Tracer;
use crate::config::Config;
use crate::meltr::autograd::grad;
use crate::meltr::combiner::{self, Combiner, Training};
use crate::meltr::hypergrad::{hypergradient_timed, AidMode, AidSettings, JvpMethod, MetaProblem};
use crate::meltr::optim::{clip_grad_norm, AdamW, WeightDecay};
use crate::meltr::phases::PhaseClock;
use crate::meltr::shares::{self, Shares};
use crate::session::log::{self, MetricsWriter};
use crate::session::metrics::{Curve, Level, MetricLine, Named, Record};
use crate::session::{self, SessionMeta};
use crate::workload::{self, Batch, Workload};
use anyhow::{bail, Context, Result};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Batches the meta step's pool holds (as the public code).
const RECENT_BATCHES: usize = 10;
/// This many inner steps skipped in a row (non-finite losses or gradients)
/// fail the run: the parameters are no longer moving.
const MAX_SKIPPED_IN_A_ROW: u64 = 50;
/// Points on each transform curve.
const TRANSFORM_POINTS: usize = 41;

pub struct Trainer {
    dir: PathBuf,
    config: Config,
    loss_names: Vec<String>,
    workload: Box<dyn Workload>,
    combiner: Box<dyn Combiner>,
    /// θ: the model's parameters.
    theta: Vec<Tensor>,
    /// θ plus combiner parameters trained jointly with the model.
    inner_params: Vec<Tensor>,
    inner: AdamW,
    meta: Option<AdamW>,
    step: u64,
    /// The meta step's pool: the last training batches by step, oldest
    /// first (before the current one's, with `meltr.pool = "previous"`).
    recent: VecDeque<(u64, Batch)>,
    /// This step's batch until the step ends (then it joins `recent`).
    current_batch: Option<(u64, Batch)>,
    /// The losses of the last inner step (detached), for weights/transforms.
    last_losses: Option<Tensor>,
    log: MetricsWriter,
    clock: Instant,
    time_offset: f64,
    status: Status,
    /// Why meta steps are on hold (e.g. exact mode impossible on this model);
    /// cleared by the next config change.
    meta_blocked: Option<String>,
    meta_steps_done: u64,
    collapse: CollapseGuard,
    events: SyncSender<Event>,
    steps_per_sec: f64,
    /// Lines not yet in `metrics.jsonl` because a write failed; written, in
    /// order, before any newer line.
    unwritten: VecDeque<MetricLine>,
    /// A failed write (full disk, ...): training pauses until `Resume`
    /// succeeds in writing what is owed.
    storage_error: Option<String>,
    /// The last checkpoint attempt failed and is retried on `Resume`.
    checkpoint_owed: bool,
    /// Whether the fallback from forward-mode AD was logged already.
    jvp_fallback_reported: bool,
    /// Why gradient shares fell back to one backward per loss, once they
    /// have.
    shares_per_loss: Option<String>,
    /// Times the meta step's phases when the bench enables it.
    phase_clock: PhaseClock,
    /// The step of the last checkpoint written (none twice for one step).
    checkpointed_at: Option<u64>,
    /// Inner steps since the last flush, their outcome still on the device.
    pending_steps: Vec<PendingStep>,
    /// Meta steps since the last flush.
    pending_meta: Vec<PendingMeta>,
    /// Whether the previous meta step's Neumann series stopped early (one
    /// event per episode).
    neumann_stopped: bool,
    /// Consecutive inner steps skipped as non-finite (as of the last flush).
    skipped_in_a_row: u64,
    /// `train.trace`: the run's trace for the Python replay.
    tracer: Option<Tracer>,
    /// A copy of `config` that others read (the config file watcher).
    in_force: Arc<Mutex<Config>>,
}

/// An inner step whose outcome the host has not read yet.
struct PendingStep {
    step: u64,
    /// Whether the update was applied (0-dim bool).
    ok: Tensor,
    losses_finite: Tensor,
    losses: Tensor,
}

/// A meta step whose numbers the host has not read yet.
struct PendingMeta {
    step: u64,
    norm: Tensor,
    reg: Tensor,
    meta_lr: f64,
    aid_iterations: u32,
    /// The largest |effective weight| after the update (collapse watch).
    largest_weight: Option<Tensor>,
    /// Copies of φ and the meta optimizer's state after the update
    /// (`meltr.on_collapse = "restore"`).
    snapshot: Option<Vec<Tensor>>,
}

/// Resolves `train.device` to a libtorch device, or says why not.
pub fn resolve_device(spec: &str) -> Result<Device> {
    let cuda = tch::Cuda::device_count() as usize;
    match spec {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" if cuda > 0 => Ok(Device::Cuda(0)),
        "cuda" => bail!("train.device = \"cuda\" but libtorch sees no CUDA device (run `meltr-tui doctor`)"),
        other => match crate::config::parse_cuda_index(other) {
            Some(i) if i < cuda => Ok(Device::Cuda(i)),
            Some(i) => bail!("train.device = \"{other}\" but libtorch sees {cuda} CUDA device(s); cuda:{i} does not exist"),
            None => bail!("train.device = \"{other}\" is not a device"),
        },
    }
}

pub fn device_label(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

pub fn dtype(config: &Config) -> Kind {
    if config.train.dtype == "f64" {
        Kind::Double
    } else {
        Kind::Float
    }
}

impl Trainer {
    /// Builds the workload and combiner; with `resume`, restores the newest
    /// checkpoint that reads back and cuts `metrics.jsonl` back to it (see
    /// [`resume_point`]).
    pub fn new(
        dir: &Path,
        mut config: Config,
        resume: bool,
        events: SyncSender<Event>,
    ) -> Result<(Trainer, SessionMeta)> {
        let point = if resume {
            Some(resume_point(dir, &mut config)?)
        } else {
            None
        };
        let device = resolve_device(&config.train.device)?;
        let checkpoint = point.as_ref().and_then(|p| p.checkpoint.as_ref());
        let workload = workload::build(&config, device, dtype(&config), checkpoint)?;
        Self::assemble(dir, config, workload, point, events)
    }

    /// As [`Trainer::new`], with a workload built by the caller (tests use
    /// this to inject faults).
    pub fn with_workload(
        dir: &Path,
        mut config: Config,
        workload: Box<dyn Workload>,
        resume: bool,
        events: SyncSender<Event>,
    ) -> Result<(Trainer, SessionMeta)> {
        let point = if resume {
            Some(resume_point(dir, &mut config)?)
        } else {
            None
        };
        Self::assemble(dir, config, workload, point, events)
    }

    fn assemble(
        dir: &Path,
        config: Config,
        workload: Box<dyn Workload>,
        resume: Option<ResumePoint>,
        events: SyncSender<Event>,
    ) -> Result<(Trainer, SessionMeta)> {
        // Every way in (file, command, embedding) meets the same rules.
        config.validate().map_err(anyhow::Error::new)?;
        tch::set_num_threads(config.train.threads as i32);
        let device = resolve_device(&config.train.device)?;
        let kind = dtype(&config);
        let combiner = combiner::build(&config, device, kind);
        let theta = workload.parameters();
        let mut inner_params: Vec<Tensor> = theta.iter().map(Tensor::shallow_clone).collect();
        if combiner.training() == Training::Inner {
            inner_params.extend(combiner.params());
        }
        let inner = AdamW::new(&inner_params, config.train.lr, config.train.weight_decay);
        let meta = (combiner.training() == Training::Meta).then(|| {
            AdamW::new(
                &combiner.params(),
                config.meltr.meta_lr,
                config.meltr.meta_weight_decay,
            )
            .with_decay(meta_decay(&config))
        });
        let metrics_path = dir.join("metrics.jsonl");

        let mut parts = (workload, combiner, inner, meta);
        let (mut step, mut time_offset, mut resumed_from) = (0, 0.0, None);
        let mut notes = Vec::new();
        if let Some(point) = resume {
            notes = point.notes;
            // Cut the log back to the checkpoint actually used.
            step = point.checkpoint.as_ref().map_or(0, |c| c.step);
            prepare_resume(dir, step)?;
            if let Some(ckpt) = point.checkpoint {
                restore(&ckpt, &mut parts)?;
                resumed_from = Some(ckpt.path);
            }
            if metrics_path.exists() {
                time_offset = log::read_metrics(&metrics_path)?
                    .lines
                    .last()
                    .map_or(0.0, |l| l.time);
            }
        }
        let (workload, combiner, inner, meta) = parts;
        let (primary_metric, higher_is_better) = workload.primary_metric();
        let device = theta.first().map(Tensor::device).unwrap_or(Device::Cpu);
        let meta_info = SessionMeta {
            id: dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            name: String::new(),
            created: String::new(),
            status: Status::Running,
            pid: std::process::id(),
            device: device_label(device),
            libtorch: crate::libtorch_version().to_string(),
            workload: workload.kind().to_string(),
            losses: config.loss_names(),
            primary: config.workload.primary.clone(),
            primary_metric,
            higher_is_better,
            steps: config.train.steps,
            error: None,
        };
        let mut recent = VecDeque::new();
        for s in step.saturating_sub(RECENT_BATCHES as u64 - 1).max(1)..=step {
            recent.push_back((s, workload.train_batch(s)?));
        }
        let tracer = if config.train.trace {
            Some(Tracer::open(
                dir,
                step,
                workload.as_ref(),
                combiner.as_ref(),
            )?)
        } else {
            None
        };
        let log = MetricsWriter::open(&dir.join("metrics.jsonl"))?;
        let in_force = config.clone();
        let mut trainer = Trainer {
            dir: dir.to_path_buf(),
            loss_names: config.loss_names(),
            config,
            workload,
            combiner,
            theta,
            inner_params,
            inner,
            meta,
            step,
            recent,
            current_batch: None,
            last_losses: None,
            log,
            clock: Instant::now(),
            time_offset,
            status: Status::Running,
            meta_blocked: None,
            meta_steps_done: 0,
            collapse: CollapseGuard::default(),
            events,
            steps_per_sec: 0.0,
            unwritten: VecDeque::new(),
            storage_error: None,
            checkpoint_owed: false,
            jvp_fallback_reported: false,
            shares_per_loss: None,
            phase_clock: PhaseClock::disabled(),
            checkpointed_at: resumed_from.as_ref().map(|_| step),
            pending_steps: Vec::new(),
            pending_meta: Vec::new(),
            neumann_stopped: false,
            skipped_in_a_row: 0,
            tracer,
            in_force: Arc::new(Mutex::new(in_force)),
        };
        for (level, message) in notes {
            trainer.emit(Record::Event { level, message })?;
        }
        if let Some(path) = resumed_from {
            trainer.emit(Record::Event {
                level: Level::Info,
                message: format!("resumed from checkpoint {} at step {step}", path.display()),
            })?;
        }
        trainer.record_config_in_force();
        if step == 0
            && matches!(trainer.config.meltr.init.as_str(), "sum" | "primary")
            && trainer.combiner.training() == Training::Meta
        {
            trainer.start_combiner_linear()?;
        }
        Ok((trainer, meta_info))
    }

    /// Trains until `train.steps` (live-editable) or a Stop command.
    pub fn run(mut self, commands: Receiver<Command>) -> Result<Status> {
        // OpenMP's thread count is per calling thread: set it on this one.
        tch::set_num_threads(self.config.train.threads as i32);
        self.send(Event::ConfigInForce {
            config: Box::new(self.config.clone()),
        });
        self.set_status(Status::Running, None);
        let mut window = (Instant::now(), self.step);
        loop {
            if !self.handle_commands(&commands)? {
                self.write_checkpoint()?;
                self.set_status(Status::Stopped, None);
                return Ok(Status::Stopped);
            }
            if self.storage_error.is_some() {
                self.pause_for_storage();
                continue;
            }
            if self.step >= self.config.train.steps {
                self.write_checkpoint()?;
                if self.storage_error.is_some() {
                    continue;
                }
                self.set_status(Status::Finished, None);
                return Ok(Status::Finished);
            }
            self.train_step()?;
            let elapsed = window.0.elapsed().as_secs_f64();
            if elapsed >= 0.5 {
                self.steps_per_sec = (self.step - window.1) as f64 / elapsed;
                window = (Instant::now(), self.step);
            }
            self.send(Event::Progress {
                step: self.step,
                total_steps: self.config.train.steps,
                steps_per_sec: self.steps_per_sec,
            });
        }
    }

    /// Pauses after a failed write, saying why; `Resume` retries.
    fn pause_for_storage(&mut self) {
        let error = self.storage_error.clone().unwrap_or_default();
        self.set_status(
            Status::Paused,
            Some(format!(
                "paused: {error} (files are intact; free space, then resume to retry the write)"
            )),
        );
    }

    /// `Resume`: after a storage error, first writes what is owed; stays
    /// paused if that fails again.
    fn resume(&mut self) -> Result<()> {
        if self.storage_error.take().is_some() {
            if self.flush_lines() && self.checkpoint_owed {
                self.write_checkpoint()?;
            }
            if self.storage_error.is_some() {
                self.pause_for_storage();
                return Ok(());
            }
        }
        self.set_status(Status::Running, None);
        Ok(())
    }

    /// Applies pending commands; blocks while paused. False means stop.
    fn handle_commands(&mut self, commands: &Receiver<Command>) -> Result<bool> {
        loop {
            let command = if self.status == Status::Paused {
                match commands.recv() {
                    Ok(c) => c,
                    Err(_) => return Ok(false),
                }
            } else {
                match commands.try_recv() {
                    Ok(c) => c,
                    Err(TryRecvError::Empty) => return Ok(true),
                    // Every client is gone (e.g. the process is exiting): keep training.
                    Err(TryRecvError::Disconnected) => return Ok(true),
                }
            };
            match command {
                Command::Pause => self.set_status(Status::Paused, None),
                Command::Resume => self.resume()?,
                Command::ApplyConfig { config } => self.apply_config(*config)?,
                Command::ReportConfigError { error } => self.emit(Record::Config {
                    changed: Default::default(),
                    error: Some(error),
                })?,
                Command::Checkpoint => self.write_checkpoint()?,
                Command::Stop => return Ok(false),
            }
        }
    }

    /// `meltr.init = "sum" | "primary"`: fits the combiner to that linear
    /// combiner around the first batch's losses (see
    /// [`combiner::fit_to_linear`]).
    fn start_combiner_linear(&mut self) -> Result<()> {
        let losses = tch::no_grad(|| -> Result<Tensor> {
            let first = self.workload.train_batch(1)?;
            workload::select(&self.workload.losses(&first)?, &self.loss_names)
        })?;
        let init = self.config.meltr.init.clone();
        let target: Vec<f64> = (0..self.loss_names.len())
            .map(|k| if init == "sum" || k == 0 { 1.0 } else { 0.0 })
            .collect();
        let error = combiner::fit_to_linear(
            self.combiner.as_ref(),
            &losses,
            &target,
            self.config.workload.seed,
        )?;
        self.emit(Record::Event {
            level: Level::Info,
            message: format!(
                "meltr.init = \"{init}\": MELTR fitted to the `{init}` combiner around the first batch's losses (largest effective-weight error {error:.3})"
            ),
        })
    }

    fn train_step(&mut self) -> Result<()> {
        self.step += 1;
        self.inner.lr = self.config.train.lr_at(self.step);
        let batch = self.workload.train_batch(self.step)?;
        let named = self
            .workload
            .losses(&batch)
            .with_context(|| format!("the training batch of step {}", self.step))?;
        let losses = workload::select(&named, &self.loss_names)?;
        let total = self.combiner.combine(&losses);
        let log_now = self.step.is_multiple_of(self.config.train.log_every);

        // Non-finite losses or gradients skip the update on the device; the
        // host learns which steps were skipped at the next flush (no
        // per-step host sync).
        let losses_finite = total.isfinite().logical_and(&losses.isfinite().all());
        // Weights and shares at the losses this update uses (before the
        // step changes any inner-trained combiner parameters).
        let mut logged = if log_now {
            self.flush_pending()?;
            let weights = combiner::effective_weights(self.combiner.as_ref(), &losses)?;
            let shares = self.gradient_shares(&losses, &weights)?;
            Some((weights, shares))
        } else {
            None
        };
        // `meltr.train_batch = "current"`: the meta step runs before this
        // update, on this batch, and reuses this forward (its graph kept
        // through the inner backward).
        let reuse_forward = self.meta_due() && self.config.meltr.train_batch == "current";
        let mut grads = match logged.as_mut().and_then(|(_, s)| s.combined.take()) {
            // The shares' backward gave θ's gradient; the combiner's own
            // inner-trained parameters (if any) take a backward through it
            // alone.
            Some(mut theta_grads) => {
                let own = &self.inner_params[self.theta.len()..];
                theta_grads.extend(grad(&[&total], own, reuse_forward, false)?);
                theta_grads
            }
            None => grad(&[&total], &self.inner_params, reuse_forward, false)?,
        };
        let norm = clip_grad_norm(&mut grads, self.config.train.grad_clip);
        let ok = losses_finite.logical_and(&norm.isfinite());
        self.current_batch = Some((self.step, batch));
        if reuse_forward {
            self.meta_step(Some(&losses))?;
        }
        self.inner.step_if(&self.inner_params, &grads, Some(&ok));
        let losses = losses.detach();
        if let Some(tracer) = &mut self.tracer {
            tracer.inner_losses(&losses);
        }
        self.last_losses = Some(match &self.last_losses {
            Some(previous) => losses.where_self(&losses_finite, previous),
            None => losses.shallow_clone(),
        });
        self.pending_steps.push(PendingStep {
            step: self.step,
            ok,
            losses_finite,
            losses: losses.shallow_clone(),
        });

        if let Some((weights, shares)) = logged {
            let values = Self::host_values(&Tensor::cat(
                &[
                    losses.to_kind(Kind::Double),
                    weights.to_kind(Kind::Double),
                    total.detach().to_kind(Kind::Double).reshape([1]),
                    shares.squared_norm.to_kind(Kind::Double).reshape([1]),
                    shares.shares.to_kind(Kind::Double),
                ],
                0,
            ));
            let k = self.loss_names.len();
            let pick = |range: std::ops::Range<usize>| -> Named {
                self.loss_names
                    .iter()
                    .cloned()
                    .zip(values[range].iter().copied())
                    .collect()
            };
            // A zero or non-finite combined gradient has no shares.
            let squared_norm = values[2 * k + 1];
            let shares = if squared_norm > 0.0 && squared_norm.is_finite() {
                pick(2 * k + 2..3 * k + 2)
            } else {
                Named::new()
            };
            // A skipped (non-finite) step has no train line; its event
            // comes with the next flush.
            if values[..=2 * k]
                .iter()
                .chain(shares.values())
                .any(|v| !v.is_finite())
            {
                return self.finish_step(reuse_forward);
            }
            self.emit(Record::Train {
                losses: pick(0..k),
                total: values[2 * k],
                weights: pick(k..2 * k),
                lr: self.inner.lr,
                shares,
            })?;
        }
        self.finish_step(reuse_forward)
    }

    /// Whether this step has a meta step.
    fn meta_due(&self) -> bool {
        self.meta.is_some()
            && self.step.is_multiple_of(self.config.meltr.meta_every)
            && self.meta_blocked.is_none()
    }

    /// The rest of a step: meta step (unless `meta_done`), the step's
    /// batch into the pool, the trace, eval and checkpoint when due.
    fn finish_step(&mut self, meta_done: bool) -> Result<()> {
        if !meta_done && self.meta_due() {
            self.meta_step(None)?;
        }
        if let Some(current) = self.current_batch.take() {
            self.recent.push_back(current);
            while self.recent.len() > RECENT_BATCHES {
                self.recent.pop_front();
            }
        }
        if let Some(tracer) = &mut self.tracer {
            let rows = self.workload.batch_rows(self.step);
            tracer.step(self.step, rows, &self.theta, self.combiner.as_ref())?;
        }
        if self.step.is_multiple_of(self.config.train.eval_every)
            || self.step == self.config.train.steps
        {
            self.evaluate()?;
        }
        if self.step.is_multiple_of(self.config.train.checkpoint_every) {
            self.write_checkpoint()?;
        }
        Ok(())
    }

    /// One training step as a run takes it (inner step, and the meta step,
    /// eval and checkpoint when due), for `meltr-tui bench`.
    #[doc(hidden)]
    pub fn bench_step(&mut self) -> Result<()> {
        self.train_step()
    }

    /// One meta step on the recent batches, for `meltr-tui bench`.
    #[doc(hidden)]
    pub fn bench_meta_step(&mut self) -> Result<()> {
        self.meta_step(None)?;
        if let Some(e) = &self.meta_blocked {
            anyhow::bail!("{e}");
        }
        Ok(())
    }

    /// Takes the gradient shares one backward per loss (the fallback), to
    /// compare with the double backward in `meltr-tui bench`.
    #[doc(hidden)]
    pub fn bench_shares_per_loss(&mut self) {
        self.shares_per_loss = Some("bench".into());
    }

    /// Starts timing each meta step's phases (synchronizing the device at
    /// every phase boundary), for `meltr-tui bench`.
    #[doc(hidden)]
    pub fn bench_time_phases(&mut self) {
        let device = self.theta.first().map_or(Device::Cpu, Tensor::device);
        self.phase_clock = PhaseClock::enabled(device);
    }

    /// Time per meta-step phase since the last call.
    #[doc(hidden)]
    pub fn bench_take_phases(&mut self) -> Vec<(&'static str, std::time::Duration)> {
        self.phase_clock.take()
    }

    /// Waits until the device has done all queued work (timing boundary).
    #[doc(hidden)]
    pub fn bench_sync(&mut self) -> Result<()> {
        self.flush_pending()?;
        if let Some(p) = self.theta.first() {
            let _ = p.detach().sum(Kind::Double).double_value(&[]);
        }
        Ok(())
    }

    /// Each loss's share of the combined gradient (see [`shares`]), by a
    /// double backward unless one has failed in this run (a model without
    /// second derivatives, or out of memory).
    fn gradient_shares(&mut self, losses: &Tensor, weights: &Tensor) -> Result<Shares> {
        if self.shares_per_loss.is_none() {
            match shares::by_double_backward(losses, weights, &self.theta) {
                Ok(shares) => return Ok(shares),
                Err(e) => {
                    self.shares_per_loss = Some(format!("{e:#}"));
                    self.emit(Record::Event {
                        level: Level::Info,
                        message: format!("gradient shares take one backward pass per loss from now on: their double backward failed ({e:#})"),
                    })?;
                }
            }
        }
        shares::per_loss(losses, weights, &self.theta)
    }

    /// One meta step. `current_forward`: the loss vector of this step's
    /// batch at the current θ, with its graph (the inner step's forward,
    /// `meltr.train_batch = "current"`); that batch is then the training
    /// batch and the meta step reuses that forward.
    fn meta_step(&mut self, current_forward: Option<&Tensor>) -> Result<()> {
        let pool = meta_pool(
            &self.recent,
            self.current_batch.as_ref(),
            self.config.meltr.pool == "with-current",
        );
        let n = pool.len() as u64;
        if n == 0 {
            return Ok(());
        }
        self.phase_clock.start();
        let mut rng = workload::SplitMix::new(self.config.workload.seed, 0x4d45_5441 ^ self.step);
        // Drawn either way, so the validation pick is the same in both modes.
        let random_pick = rng.below(n) as usize;
        let (train_step, train_batch) = match current_forward {
            Some(_) => {
                let (step, batch) = self.current_batch.as_ref().expect("the inner step set it");
                (*step, batch)
            }
            None => (pool[random_pick].0, &pool[random_pick].1),
        };
        let held_out;
        let (val_step, val_batch) = if self.config.meltr.val_source == "val" {
            held_out = self.workload.val_batch(self.step)?;
            (None, &held_out)
        } else {
            let (step, batch) = pool[rng.below(n) as usize];
            (Some(*step), batch)
        };
        // Same seed before every forward: any randomness in the model (e.g.
        // dropout) is identical across the finite-difference evaluations.
        let forward_seed = (self.config.workload.seed ^ self.step) as i64;
        let workload = self.workload.as_ref();
        let names = &self.loss_names;
        let primary = &self.config.workload.primary;
        let meta_at = self.step;
        let train_losses = || -> Result<Tensor> {
            tch::manual_seed(forward_seed);
            let losses = workload.losses(train_batch).with_context(|| {
                format!("the meta step's training batch (that of step {train_step})")
            })?;
            workload::select(&losses, names)
        };
        let val_primary = || -> Result<Tensor> {
            tch::manual_seed(forward_seed + 1);
            workload
                .loss(val_batch, primary)
                .with_context(|| match val_step {
                    Some(s) => {
                        format!("the meta step's validation batch (the training batch of step {s})")
                    }
                    None => {
                        format!("the meta step's held-out validation batch (for step {meta_at})")
                    }
                })
        };
        let aid = self.config.aid.clone();
        let settings = AidSettings {
            iterations: aid.iterations,
            alpha: aid.alpha,
            mode: AidMode::parse(&aid.mode).expect("validated"),
            gamma: self.config.meltr.gamma,
            gamma_direct: self.config.meltr.gamma_direct,
            jvp: JvpMethod::parse(&aid.jvp).expect("validated"),
            max_growth: aid.max_growth,
        };
        let problem = MetaProblem {
            theta: &self.theta,
            combiner: self.combiner.as_ref(),
            train_losses: &train_losses,
            val_primary: &val_primary,
            train_forward: current_forward,
        };
        let result = hypergradient_timed(&problem, &settings, &mut self.phase_clock);
        let mut hyper = match result {
            Ok(h) => h,
            Err(e) if self.meta_steps_done == 0 => {
                return Err(e.context("the first meta step failed"))
            }
            Err(e) => {
                let message = format!("meta step at step {} failed: {e:#}; meta steps paused until the config changes", self.step);
                self.meta_blocked = Some(message.clone());
                return self.emit(Record::Event {
                    level: Level::Error,
                    message,
                });
            }
        };
        let stopped = hyper.neumann_stop;
        if let Some(stop) = stopped.filter(|_| !self.neumann_stopped) {
            self.emit(Record::Event {
                level: Level::Warn,
                message: format!(
                    "step {}: the Neumann series diverges (‖v_{}‖ = {:.3e}·‖v_0‖ > aid.max_growth = {}); it stops at {} term(s) while this lasts. Lower aid.alpha (now {}) or aid.iterations",
                    self.step, stop.terms, stop.growth, aid.max_growth, stop.terms, aid.alpha
                ),
            })?;
        }
        self.neumann_stopped = stopped.is_some();
        if let Some(tracer) = &mut self.tracer {
            tracer.meta(train_step, val_step, &hyper.grads, &hyper.reg);
        }
        if let Some(why) = hyper.fallback.take() {
            if !self.jvp_fallback_reported {
                self.jvp_fallback_reported = true;
                self.emit(Record::Event {
                    level: Level::Info,
                    message: format!("forward-mode AD is not available for this model ({why}); the meta step uses finite differences"),
                })?;
            }
        }
        // A non-finite hypergradient skips the meta update on the device.
        let norm = clip_grad_norm(&mut hyper.grads, self.config.meltr.meta_grad_clip);
        let ok = norm.isfinite();
        let phi = self.combiner.params();
        let meta = self
            .meta
            .as_mut()
            .expect("meta combiners have a meta optimizer");
        meta.step_if(&phi, &hyper.grads, Some(&ok));
        let meta_lr = meta.lr;
        self.meta_steps_done += 1;
        let largest_weight = match &self.last_losses {
            Some(losses) => Some(
                combiner::effective_weights(self.combiner.as_ref(), losses)?
                    .abs()
                    .max(),
            ),
            None => None,
        };
        let snapshot = (self.config.meltr.on_collapse == "restore").then(|| self.meta_snapshot());
        self.phase_clock.mark("update");
        self.pending_meta.push(PendingMeta {
            step: self.step,
            norm,
            reg: hyper.reg,
            meta_lr,
            aid_iterations: aid.iterations,
            largest_weight,
            snapshot,
        });
        Ok(())
    }

    /// Writes what the device decided since the last flush — skipped
    /// steps, meta lines, collapse warnings — with one device-to-host copy.
    /// Called at log steps, before evals and checkpoints, and at the end.
    fn flush_pending(&mut self) -> Result<()> {
        if self.pending_steps.is_empty() && self.pending_meta.is_empty() {
            return Ok(());
        }
        let steps = std::mem::take(&mut self.pending_steps);
        let metas = std::mem::take(&mut self.pending_meta);
        let mut scalars: Vec<Tensor> = Vec::new();
        for s in &steps {
            scalars.push(s.ok.to_kind(Kind::Double));
            scalars.push(s.losses_finite.to_kind(Kind::Double));
        }
        for m in &metas {
            scalars.push(m.norm.to_kind(Kind::Double));
            scalars.push(m.reg.to_kind(Kind::Double));
            scalars.push(match &m.largest_weight {
                Some(w) => w.to_kind(Kind::Double),
                None => Tensor::from(f64::NAN).to_device(m.norm.device()),
            });
        }
        let host = Self::host_values(&Tensor::stack(&scalars, 0));
        let (step_flags, meta_values) = host.split_at(2 * steps.len());
        let mut metas = metas.iter().zip(meta_values.chunks(3)).peekable();
        for (s, flags) in steps.iter().zip(step_flags.chunks(2)) {
            // Meta lines of earlier steps first: the file stays in step order.
            while let Some((m, values)) = metas.next_if(|(m, _)| m.step < s.step) {
                self.write_meta(m, values)?;
            }
            if flags[0] == 0.0 {
                let message = if flags[1] == 0.0 {
                    format!(
                        "step {}: non-finite loss {:?}; update skipped",
                        s.step,
                        self.named_values(&s.losses)
                    )
                } else {
                    format!("step {}: non-finite gradient; update skipped", s.step)
                };
                self.emit_at(
                    s.step,
                    Record::Event {
                        level: Level::Warn,
                        message,
                    },
                )?;
                self.skipped_in_a_row += 1;
            } else {
                self.skipped_in_a_row = 0;
            }
        }
        if self.skipped_in_a_row >= MAX_SKIPPED_IN_A_ROW {
            for (m, values) in metas {
                self.write_meta(m, values)?;
            }
            bail!(
                "the last {} steps were all skipped (non-finite losses or gradients; see the events): the run cannot recover. \
                 Lower train.lr (now {}) or train.grad_clip (now {}), then start again",
                self.skipped_in_a_row,
                self.config.train.lr,
                self.config.train.grad_clip
            );
        }
        for (m, values) in metas {
            self.write_meta(m, values)?;
        }
        Ok(())
    }

    /// A meta step's line (or its skip), and the collapse watch.
    fn write_meta(&mut self, m: &PendingMeta, values: &[f64]) -> Result<()> {
        let (norm, reg, largest) = (values[0], values[1], values[2]);
        if !norm.is_finite() {
            return self.emit_at(
                m.step,
                Record::Event {
                    level: Level::Warn,
                    message: format!(
                        "step {}: non-finite hypergradient; meta update skipped",
                        m.step
                    ),
                },
            );
        }
        self.emit_at(
            m.step,
            Record::Meta {
                hypergrad_norm: norm,
                reg,
                meta_lr: m.meta_lr,
                aid_iterations: m.aid_iterations,
            },
        )?;
        if !largest.is_finite() {
            return Ok(());
        }
        let verdict = self.collapse.observe(
            m.step,
            largest,
            m.snapshot
                .as_ref()
                .map(|s| s.iter().map(Tensor::shallow_clone).collect()),
        );
        if let Verdict::Collapsed { healthy_step } = verdict {
            let restore = self.config.meltr.on_collapse == "restore";
            let outcome = match (healthy_step, restore) {
                (Some(_), true) => {
                    let state = self.meta_state();
                    let from = self.collapse.restore(&state).unwrap_or_default();
                    format!("φ and its optimizer restored from the meta step at step {from} (meltr.on_collapse = \"restore\")")
                }
                (None, true) => "no healthy meta step to restore from yet".to_string(),
                (_, false) => "the model is no longer learning; meltr.on_collapse = \"restore\" would put φ back to the last healthy meta step".to_string(),
            };
            self.emit_at(m.step, Record::Event {
                level: Level::Warn,
                message: format!(
                    "MELTR collapse: every effective weight has stayed below {COLLAPSE_WEIGHT} for {COLLAPSE_META_STEPS} meta steps (largest {largest:.2e}); \
                     {outcome}. Raise meltr.gamma (now {}) or lower meltr.meta_lr",
                    self.config.meltr.gamma
                ),
            })?;
        }
        Ok(())
    }

    /// Copies of φ and the meta optimizer's state, in [`Self::meta_state`]'s
    /// order (device copies; no host sync).
    fn meta_snapshot(&self) -> Vec<Tensor> {
        tch::no_grad(|| self.meta_state().iter().map(Tensor::copy).collect())
    }

    /// φ, then the meta optimizer's step count and moments (shallow).
    fn meta_state(&self) -> Vec<Tensor> {
        let mut state = self.combiner.params();
        if let Some(meta) = &self.meta {
            state.extend(meta.state("meta").into_iter().map(|(_, t)| t));
        }
        state
    }

    fn evaluate(&mut self) -> Result<()> {
        self.flush_pending()?;
        let eval = self.workload.evaluate()?;
        self.emit(Record::Eval {
            metrics: eval.metrics,
            losses: eval.losses,
        })?;
        if let Some(losses) = &self.last_losses {
            let curves = (0..self.loss_names.len())
                .map(|k| {
                    let (x, y) = combiner::transform_curve(
                        self.combiner.as_ref(),
                        losses,
                        k as i64,
                        TRANSFORM_POINTS,
                    );
                    (self.loss_names[k].clone(), Curve { x, y })
                })
                .collect();
            self.emit(Record::Transform { curves })?;
        }
        Ok(())
    }

    /// Applies a validated config at a step boundary. Live keys take effect
    /// now; restart-only keys keep their running values and the refusal is
    /// logged with the reason.
    fn apply_config(&mut self, requested: Config) -> Result<()> {
        // Commands come from the socket too: the same rules as a file.
        if let Err(e) = requested.validate() {
            return self.emit(Record::Config {
                changed: Default::default(),
                error: Some(format!("refused: {e}; the config in force stays")),
            });
        }
        let old = self.config.clone();
        let refused: Vec<String> = old
            .diff(&requested)
            .into_iter()
            .filter_map(|c| {
                c.restart_only.map(|why| {
                    format!(
                        "`{}` can only change at restart ({why}); {} stays in force",
                        c.key, c.old
                    )
                })
            })
            .collect();
        let effective = requested.keeping_restart_only_of(&old);
        let changes = old.diff(&effective);
        if !changes.is_empty() {
            tch::set_num_threads(effective.train.threads as i32);
            self.inner.lr = effective.train.lr_at(self.step.max(1));
            self.inner.weight_decay = effective.train.weight_decay;
            if let Some(meta) = self.meta.as_mut() {
                meta.lr = effective.meltr.meta_lr;
                meta.weight_decay = effective.meltr.meta_weight_decay;
                meta.decay = meta_decay(&effective);
            }
            self.combiner.apply_config(&effective);
            self.meta_blocked = None;
            self.config = effective;
            self.record_config_in_force();
            let changed = changes
                .iter()
                .map(|c| (c.key.clone(), (to_json(&c.old), to_json(&c.new))))
                .collect();
            self.emit(Record::Config {
                changed,
                error: None,
            })?;
            self.send(Event::ConfigInForce {
                config: Box::new(self.config.clone()),
            });
        }
        if changes.is_empty() && refused.is_empty() {
            // A valid file equal to the config in force (e.g. a bad edit
            // undone): say so, which clears any earlier config error.
            self.emit(Record::Config {
                changed: Default::default(),
                error: None,
            })?;
            self.send(Event::ConfigInForce {
                config: Box::new(self.config.clone()),
            });
        }
        if !refused.is_empty() {
            self.emit(Record::Config {
                changed: Default::default(),
                error: Some(refused.join("; ")),
            })?;
        }
        Ok(())
    }

    /// Publishes the config in force: to the file watcher (a partial live
    /// file is read relative to it) and to `config.in-force.toml` (what a
    /// resume restores restart-only keys from). A failed write is reported;
    /// the previous record stays intact.
    fn record_config_in_force(&mut self) {
        *self.in_force.lock().unwrap_or_else(|e| e.into_inner()) = self.config.clone();
        let path = self.dir.join(CONFIG_IN_FORCE);
        if let Err(e) = session::atomic_write(&path, self.config.to_toml_string().as_bytes()) {
            let _ = self.emit(Record::Event {
                level: Level::Warn,
                message: format!("cannot record the config in force: {e:#}"),
            });
        }
    }

    /// The config in force, kept current as changes apply.
    pub fn config_in_force(&self) -> Arc<Mutex<Config>> {
        Arc::clone(&self.in_force)
    }

    /// Writes a checkpoint now (and makes the metrics durable up to it).
    pub fn write_checkpoint(&mut self) -> Result<()> {
        self.flush_pending()?;
        if self.checkpointed_at == Some(self.step) && !self.checkpoint_owed {
            return Ok(());
        }
        let mut tensors = Vec::new();
        for (name, t) in self.workload.state() {
            tensors.push((format!("model.{name}"), t));
        }
        tensors.extend(workload::named_state(
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
            .and_then(|()| checkpoint::write(&self.dir.join("checkpoints"), self.step, &tensors));
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
        })
    }

    /// One device-to-host copy of a vector.
    fn host_values(values: &Tensor) -> Vec<f64> {
        Vec::try_from(values.detach().to_kind(Kind::Double).to_device(Device::Cpu))
            .unwrap_or_default()
    }

    fn named_values(&self, values: &Tensor) -> Named {
        let host: Vec<f64> =
            Vec::try_from(values.detach().to_kind(Kind::Double).to_device(Device::Cpu))
                .unwrap_or_default();
        self.loss_names.iter().cloned().zip(host).collect()
    }

    fn time(&self) -> f64 {
        self.time_offset + self.clock.elapsed().as_secs_f64()
    }

    /// Appends a line to `metrics.jsonl` and tells the clients. A failed
    /// write keeps the line for later and records the storage error.
    fn emit(&mut self, record: Record) -> Result<()> {
        self.emit_at(self.step, record)
    }

    /// As [`Trainer::emit`], for a line about an earlier step.
    fn emit_at(&mut self, step: u64, record: Record) -> Result<()> {
        let line = MetricLine {
            step,
            time: self.time(),
            record,
        };
        self.unwritten.push_back(line);
        self.flush_lines();
        Ok(())
    }

    /// Writes owed lines in order; false (with the error recorded) when a
    /// write fails.
    fn flush_lines(&mut self) -> bool {
        while let Some(line) = self.unwritten.front() {
            match self.log.append(line) {
                Ok(seq) => {
                    let line = self.unwritten.pop_front().expect("front exists");
                    self.send(Event::Line { line, seq });
                }
                Err(e) => {
                    self.storage_error.get_or_insert(format!("{e:#}"));
                    return false;
                }
            }
        }
        true
    }

    /// Never blocks: a full channel drops the event (everything that matters
    /// is in `metrics.jsonl`, which a client can re-read).
    fn send(&self, event: Event) {
        let _ = self.events.try_send(event);
    }

    fn set_status(&mut self, status: Status, message: Option<String>) {
        self.status = status;
        let _ = crate::session::update_status(&self.dir, status, message.clone());
        self.send(Event::Status { status, message });
    }
}

/// The batches a meta step draws from, oldest first: the last
/// [`RECENT_BATCHES`] before this step's (`meltr.pool = "previous"`, the
/// public code), or the last ones including it (`with_current`). An empty
/// pool (a meta step at step 1) holds this step's batch, as the public
/// code's first meta step uses its current batch.
fn meta_pool<'a>(
    recent: &'a VecDeque<(u64, Batch)>,
    current: Option<&'a (u64, Batch)>,
    with_current: bool,
) -> Vec<&'a (u64, Batch)> {
    let mut pool: Vec<&(u64, Batch)> = recent.iter().collect();
    if let Some(current) = current {
        if with_current || pool.is_empty() {
            pool.push(current);
            if pool.len() > RECENT_BATCHES {
                pool.remove(0);
            }
        }
    }
    pool
}

/// `meltr.meta_optimizer`: Adam with L2 (`adam`, the public code) or
/// decoupled decay (`adamw`).
fn meta_decay(config: &Config) -> WeightDecay {
    if config.meltr.meta_optimizer == "adamw" {
        WeightDecay::Decoupled
    } else {
        WeightDecay::Coupled
    }
}

fn to_json(value: &toml::Value) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

type Parts = (Box<dyn Workload>, Box<dyn Combiner>, AdamW, Option<AdamW>);

fn restore(ckpt: &checkpoint::Loaded, (workload, combiner, inner, meta): &mut Parts) -> Result<()> {
    let context = || {
        format!(
            "checkpoint {} does not match this config",
            ckpt.path.display()
        )
    };
    workload
        .load_state(&ckpt.lookup("model."))
        .with_context(context)?;
    workload::load_into(combiner.var_store(), "combiner.", &|n| ckpt.get(n))
        .with_context(context)?;
    inner
        .load_state("inner", &|n| ckpt.get(n))
        .with_context(context)?;
    if let Some(meta) = meta {
        meta.load_state("meta", &|n| ckpt.get(n))
            .with_context(context)?;
    }
    Ok(())
}

/// Makes a session ready to resume from the checkpoint at `step` (0: none):
/// cuts `metrics.jsonl` back to it (everything after it will be redone).
/// Idempotent.
pub fn prepare_resume(dir: &Path, step: u64) -> Result<()> {
    let metrics = dir.join("metrics.jsonl");
    if metrics.exists() {
        log::truncate_after(&metrics, step)?;
    }
    Ok(())
}

/// The session's record of the config in force, rewritten (atomically) at
/// start and whenever a change applies. Restart-only keys come from it on
/// resume: `config.toml` may hold an edit that was refused.
pub const CONFIG_IN_FORCE: &str = "config.in-force.toml";

/// The config a session's `config.toml` asks for, read over the config last
/// in force (`config.in-force.toml`, when there is one) as a live edit is:
/// keys a partial file leaves out keep the values they ran with, never a
/// built-in default. What `resume`, the runner and `attach` start from.
pub fn session_config(dir: &Path) -> Result<Config, crate::config::ConfigError> {
    let path = dir.join("config.toml");
    let Ok(in_force) = Config::load(&dir.join(CONFIG_IN_FORCE)) else {
        return Config::load(&path);
    };
    let text = crate::config::read_text(&path)?;
    Config::parse_over(&in_force, &text).map_err(|mut e| {
        e.file = Some(path);
        e
    })
}

/// A path's last component, for messages.
fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// What resuming found before the trainer exists: the checkpoint to restore,
/// and what to tell the user once the log is cut back to it.
struct ResumePoint {
    checkpoint: Option<checkpoint::Loaded>,
    notes: Vec<(Level, String)>,
}

/// Gets a session ready to resume: removes temp files of writers that died
/// mid-write, sets restart-only keys of `config` back to what was in force
/// (`config.in-force.toml`), and finds the newest checkpoint that reads
/// back, moving newer unreadable ones aside.
fn resume_point(dir: &Path, config: &mut Config) -> Result<ResumePoint> {
    let mut notes = Vec::new();
    let checkpoints = dir.join("checkpoints");
    let mut removed = session::remove_orphan_temps(&checkpoints);
    removed.extend(session::remove_orphan_temps(dir));
    if !removed.is_empty() {
        let names: Vec<String> = removed.iter().map(|p| file_name(p)).collect();
        notes.push((
            Level::Info,
            format!(
                "removed {} temp file(s) of a writer that died mid-write: {}",
                names.len(),
                names.join(", ")
            ),
        ));
    }

    let in_force_path = dir.join(CONFIG_IN_FORCE);
    if in_force_path.exists() {
        match Config::load(&in_force_path) {
            Ok(in_force) => {
                let kept = config.clone().keeping_restart_only_of(&in_force);
                let not_applied: Vec<String> = config
                    .diff(&kept)
                    .iter()
                    .map(|c| format!("`{}` = {} (in force: {})", c.key, c.old, c.new))
                    .collect();
                if !not_applied.is_empty() {
                    kept.validate().map_err(|e| {
                        anyhow::anyhow!(
                            "config.toml holds restart-only edits that cannot apply to this session ({}), \
                             and with the values in force ({CONFIG_IN_FORCE}) it is invalid: {e}",
                            not_applied.join(", ")
                        )
                    })?;
                    notes.push((
                        Level::Warn,
                        format!(
                            "restart-only edits in config.toml were not applied: {}; the session resumes with \
                             the config it ran with ({CONFIG_IN_FORCE}). To train with them, start a new session",
                            not_applied.join(", ")
                        ),
                    ));
                }
                *config = kept;
            }
            Err(e) => notes.push((
                Level::Warn,
                format!("cannot read the config in force ({e}); restart-only keys come from config.toml"),
            )),
        }
    }

    let (checkpoint, unreadable) = checkpoint::Loaded::newest_readable(&checkpoints);
    for (path, why) in unreadable {
        let name = file_name(&path);
        let moved = match checkpoint::set_aside(&path) {
            Ok(aside) => format!("moved aside to {}", file_name(&aside)),
            Err(e) => format!("{e:#}"),
        };
        notes.push((
            Level::Warn,
            format!("skipped checkpoint {name}, which does not read back ({why}); {moved}"),
        ));
    }
    Ok(ResumePoint { checkpoint, notes })
}
