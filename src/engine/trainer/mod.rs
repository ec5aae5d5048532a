//! The trainer: inner steps on the combined loss, AID meta steps on the
//! combiner, evaluations, checkpoints, NaN guards and the collapse watch.
//! Runs on its own thread; talks only through `Command`/`Event` and the
//! session directory. Building the data and the models seeds libtorch's
//! process-wide RNG, so a run is reproducible when it is the only engine in
//! its process (as every `meltr-tui` process is).

mod bench;
pub use bench::BenchTrainer;
pub use first_batch::{
    primary_gives_no_scale, scaled_copy_hints, Apart, FirstShares, NonFiniteEvaluation, Scanned,
};
mod checkpointing;
mod data_parallel;
mod device;
mod eval_finite;
mod first_batch;
mod gpu_log;
mod inner;
mod inner_words;
mod live;
mod lockstep;
#[cfg(test)]
mod lockstep_tests;
mod meta;
mod meta_buffers;
mod meta_words;
mod outbox;
mod rate;
mod restore;
#[cfg(test)]
mod restore_tests;
mod setup;
mod skip_words;
mod skips;
mod start_notes;
mod storage_words;

use super::checkpoint;
use super::collapse::{
    names_with_copies, shares_with_copies, Collapse, CollapseGuard, LossSince, Verdict, Weights,
    COLLAPSE_META_STEPS, COLLAPSE_WEIGHT, MOVED_LOSS_FACTOR, PRIMARY_COLLAPSE_META_STEPS,
    PRIMARY_FLOOR, PRIMARY_NEVER_ROSE_META_STEPS, RAW_LOSS_VALUES,
};
use super::control::{Command, Event, Status};
use super::trace::Tracer;
use crate::config::{
    CombinerKind, Config, Dtype, LossScale, MeltrInit, MetaOptimizer, OnCollapse, Pool, TrainBatch,
    ValSource,
};
use crate::meltr::combiner::{self, Combiner, Training};
use crate::meltr::hypergrad::{hypergradient_timed, AidSettings, JvpRoutes, MetaProblem};
use crate::meltr::phases::PhaseClock;
use crate::meltr::shares::{self, Shares};
use crate::nn::autograd::grad_reaching;
use crate::nn::optim::{clip_grad_norm, AdamW, WeightDecay};
use crate::nn::rng::{forward_seed, seeded, Forward};
use crate::session::log::{self, MetricsWriter};
use crate::session::metrics::{
    Curve, GpuStats, Level, MetricLine, Named, Record, CHECKPOINT_ASKED_EVENT,
};
use crate::session::{self, SessionDir, SessionMeta};
use crate::workload::{self, Batch, Workload};
use anyhow::{bail, Context, Result};
pub use device::{device_label, dtype, resolve_device};
use gpu_log::GpuSource;
use lockstep::Order;
use meta::meta_decay;
use outbox::PendingMeta;
use outbox::PendingStep;
pub use setup::{prepare_resume, restart_only_edits_left_out, session_config};
use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Batches the meta step's pool holds (as the public code).
const RECENT_BATCHES: usize = 10;
/// This many inner steps skipped in a row (non-finite losses or gradients)
/// fail the run: the parameters are no longer moving.
pub const MAX_SKIPPED_IN_A_ROW: u64 = 50;
/// Points on each transform curve.
const TRANSFORM_POINTS: usize = 41;

/// The training loop and all its state: θ and its optimizer, the combiner
/// and its meta optimizer, the recent batches, the log and the guards. Built
/// by [`Trainer::new`], consumed by [`Trainer::run`].
pub struct Trainer {
    dir: SessionDir,
    config: Config,
    loss_names: Vec<String>,
    workload: Box<dyn Workload>,
    combiner: Box<dyn Combiner>,
    /// θ: the model's parameters.
    theta: Vec<Tensor>,
    /// θ plus combiner parameters trained jointly with the model.
    inner_params: Vec<Tensor>,
    /// Indices into `inner_params` of the parameters no trained loss
    /// reached on the first batch: with data-parallel ranks, each is put
    /// back after an update while its second moment is still all zero (no
    /// gradient has reached it), as PyTorch's optimizers skip a parameter
    /// whose `.grad` is `None` (a single process skips, step by step, every
    /// parameter its losses do not reach).
    unreached: Vec<usize>,
    inner: AdamW,
    meta: Option<AdamW>,
    step: u64,
    /// The meta step's pool: the last training batches by step, oldest
    /// first (before the current one's, with `meltr.pool = "previous"`).
    recent: VecDeque<(u64, Batch)>,
    /// Steps of the pool's window whose update was skipped (non-finite
    /// losses or gradient): a meta step draws neither of its batches from
    /// them (a batch with a NaN row would make its hypergradient NaN too).
    pool_skipped: BTreeSet<u64>,
    /// This step's batch until the step ends (then it joins `recent`).
    current_batch: Option<(u64, Batch)>,
    /// The losses of the last inner step (detached), for weights/transforms;
    /// each one not finite there, or a constant on its batch (a masked
    /// loss), keeps its value before.
    last_losses: Option<Tensor>,
    /// A fresh run's step-1 losses when it logs no line, read with the first
    /// logged line: the climb watches' first reading (walkthrough H4).
    unlogged_start: Option<(u64, Tensor)>,
    log: MetricsWriter,
    clock: Instant,
    /// Seconds added to `clock` for the log's `time`: the run's time before
    /// a resume, less the time spent paused.
    time_offset: f64,
    /// When a `Pause` command stopped stepping (not counted in `time`).
    paused_since: Option<Instant>,
    status: Status,
    /// Why meta steps are on hold (exact mode impossible here); a config change clears it.
    meta_blocked: Option<String>,
    meta_steps_done: u64,
    collapse: CollapseGuard,
    /// Says a start with the primary's weight negative (see `early_climb`).
    early_climb: super::early_climb::EarlyClimb,
    /// Says the primary's training loss climbing (see `loss_rise`).
    loss_rise: super::loss_rise::LossRise,
    /// Per auxiliary, in order: says it climbing under a negative weight.
    auxiliary_rise: Vec<super::auxiliary_rise::AuxiliaryRise>,
    /// Says an auxiliary owning the combined gradient (see `gradient_owner`).
    gradient_owner: super::gradient_owner::GradientOwner,
    /// γ in force: `meltr.gamma`, or [`meta::RESTORE_GAMMA_FACTOR`] times it
    /// once a collapse restore raised it (until an edit of the key).
    gamma: f64,
    /// A collapse asked for φ's restore, done before the next forward.
    restore_due: bool,
    /// A restore decided and not yet at its point (see `restore.rs`).
    queued_restore: Option<restore::QueuedRestore>,
    /// A restore's healthy step and the step it applies before, until the
    /// first meta step after it says where the primary's weight stands.
    restored: Option<(u64, u64)>,
    /// Skipped steps whose rows were run alone so far (see `outbox.rs`).
    alone_scans: u32,
    /// The losses' scales were compared (at the first train line).
    loss_scales_checked: bool,
    /// The last logging step's losses were not finite: this step logs.
    train_line_owed: bool,
    events: SyncSender<Event>,
    rate: rate::StepRate,
    /// Lines a failed write left out of `metrics.jsonl`, written first.
    unwritten: VecDeque<MetricLine>,
    /// A failed write (full disk, ...): training pauses until `Resume`
    /// succeeds in writing what is owed.
    storage_error: Option<String>,
    /// The last checkpoint attempt failed and is retried on `Resume`.
    checkpoint_owed: bool,
    /// A config edit applied since the last checkpoint: one asked for at
    /// its step is written again, holding it (see `write_checkpoint_of`).
    edited_since_checkpoint: bool,
    /// What the factorized meta step's JVPs fell back to so far.
    jvp_routes: JvpRoutes,
    /// The fallbacks from forward-mode AD logged (a route is logged again
    /// when it changes, e.g. from double backward to differences).
    jvp_fallback_reported: Vec<String>,
    /// The restart-only edits last refused (said in full once, then short).
    refused_edits: Vec<String>,
    /// Why gradient shares fell back to one backward per loss, if they did.
    shares_per_loss: Option<String>,
    /// The fallback was said (in this run, or before its resume).
    shares_fallback_said: bool,
    /// Times the meta step's phases when the bench enables it.
    phase_clock: PhaseClock,
    /// The step of the last checkpoint written (none twice for one step).
    checkpointed_at: Option<u64>,
    /// Inner steps since the last flush, their outcome still on the device.
    pending_steps: Vec<PendingStep>,
    /// Meta steps since the last flush.
    pending_meta: Vec<PendingMeta>,
    /// The previous meta step's Neumann series stopped early (an episode).
    neumann_stopped: bool,
    /// Episodes of a stopped Neumann series so far (said at the 1st, 2nd,
    /// 4th, 8th, …: one line each filled the events pane).
    neumann_episodes: u32,
    /// Meta steps with J > 0 since this process took the run up, and
    /// those whose series was cut short, for the summary at its end.
    neumann_tally: meta_words::NeumannTally,
    /// The last eval had non-finite losses and said so (said again only
    /// after a finite one).
    eval_non_finite_said: bool,
    /// Consecutive inner steps skipped as non-finite (as of the last flush).
    skip_streak: skips::SkipStreak,
    /// Consecutive meta steps skipped for a non-finite hypergradient.
    meta_skip_streak: skips::SkipStreak,
    /// Every skipped update of the run, for the summary at its end.
    skipped: skips::SkipTotals,
    /// The step of the newest eval line (from the log on resume).
    last_eval_step: Option<u64>,
    /// The best-evaluated checkpoint, kept past `train.keep_checkpoints`.
    best_evaluated: checkpointing::BestEvaluated,
    /// `train.trace`: the run's trace for the Python replay.
    tracer: Option<Tracer>,
    /// A copy of `config` that others read (the config file watcher).
    in_force: Arc<Mutex<Config>>,
    /// The data-parallel group this rank belongs to (see
    /// `data_parallel.rs`), once joined.
    group: Option<crate::dist::ProcessGroup>,
    /// θ's gradient buckets over `group`, overlapped with the backward
    /// (`train.bucket_mb` > 0).
    buckets: Option<crate::dist::GradBuckets>,
    /// Where the data-parallel inner steps' time went (rank 0 says at the
    /// end).
    dp_timing: data_parallel::Timing,
    /// The group to join when the run starts (from the launcher's
    /// variables), not yet joined.
    rendezvous: Option<crate::dist::Rendezvous>,
    /// Reads the GPU at logged steps (CUDA with NVML; see `gpu_log.rs`).
    gpu: GpuSource,
    /// Rank 0: what it last told the other ranks (see `lockstep.rs`).
    lockstep_sent: lockstep::Sent,
}

impl Trainer {
    /// An event line from whoever starts the run (before its first step).
    pub(crate) fn note(&mut self, level: Level, message: String) {
        self.emit(Record::Event { level, message });
    }

    /// The step the run starts from (its checkpoint's on a resume).
    pub(crate) fn start_step(&self) -> u64 {
        self.step
    }

    /// Joins this data-parallel group when the run starts.
    pub fn set_rendezvous(&mut self, at: crate::dist::Rendezvous) {
        self.rendezvous = Some(at);
    }

    /// Trains until `train.steps` (live-editable) or a Stop command.
    pub fn run(mut self, commands: Receiver<Command>) -> Result<Status> {
        if let Some(at) = self.rendezvous.take() {
            self.join_group(&at)?;
        }
        let result = self.run_loop(&commands);
        if result.is_err() {
            // The log ends at the failing step (not at the last logged
            // one), so `ls` and the curves show where the run stopped.
            self.emit(Record::Event {
                level: Level::Error,
                message: crate::session::log::RUN_FAILED.into(),
            });
        }
        result
    }

    /// The run: steps, commands (from rank 0 on every rank), the end.
    fn run_loop(&mut self, commands: &Receiver<Command>) -> Result<Status> {
        // OpenMP's thread count is per calling thread: set it on this one.
        tch::set_num_threads(self.config.train.threads as i32);
        self.send(Event::ConfigInForce {
            config: Box::new(self.config.clone()),
        });
        self.set_status(Status::Running, None);
        self.rate.restart(self.time(), self.step);
        let started_at = self.step;
        // A run resumed from the checkpoint a failed evaluation wrote owes
        // that evaluation (its eval series would have a hole there).
        let eval_step = self.step.is_multiple_of(self.config.train.eval_every)
            || self.step == self.config.train.steps;
        if self.step > 0 && eval_step && self.last_eval_step != Some(self.step) {
            self.evaluate()?;
        }
        loop {
            // Rank 0 decides for every rank (see `lockstep.rs`).
            let order = match self.handle_commands(commands)? {
                false => Order::Stop,
                true if self.storage_error.is_some() => Order::Wait,
                true => Order::Train,
            };
            match self.lockstep(order)? {
                Order::Stop => {
                    // A stopped run may go on: it has not failed yet.
                    let _trained_nothing = self.report_open_streaks()?;
                    self.write_checkpoint()?;
                    // The log says where the run stopped (a signal, `q`,
                    // `sweep stop`), once its checkpoint is written; one
                    // that could not be (a full disk) is not "here".
                    let from = match (self.checkpoint_owed, self.checkpointed_at) {
                        (false, _) => "its checkpoint here".to_string(),
                        (true, Some(at)) => format!(
                            "its checkpoint at step {at} (the one here could not be written)"
                        ),
                        (true, None) => {
                            "step 0 (no checkpoint of this run could be written)".to_string()
                        }
                    };
                    self.emit(Record::Event {
                        level: Level::Info,
                        message: format!(
                            "{}{} of {}; `{}` continues from {from}",
                            crate::session::log::STOPPED_AT,
                            self.step,
                            self.config.train.steps,
                            crate::session::resume_command_for(self.dir.path())
                        ),
                    });
                    self.set_status(Status::Stopped, None);
                    return Ok(Status::Stopped);
                }
                Order::Wait => {
                    if self.storage_error.is_some() {
                        self.pause_for_storage();
                    }
                    continue;
                }
                // Another rank's share of rank 0's asked checkpoint.
                Order::Checkpoint { keep } => {
                    self.write_checkpoint_asked(keep)?;
                    continue;
                }
                Order::Train => {}
            }
            if self.step >= self.config.train.steps {
                // Training reaches the end with an eval at its last step;
                // without one, or past the end it trained to here (an eval
                // step may be the one reached), `train.steps` was lowered
                // to or below the step reached.
                let evaluated = self.last_eval_step == Some(self.step);
                let passed = self.step > self.config.train.steps && self.step > started_at;
                if self.step > 0 && (!evaluated || passed) {
                    self.end_early()?;
                }
                // Every rank is done: rank 0 needs the others no more (it
                // may still wait out a failed checkpoint write).
                self.leave_group_when_done();
                if let Some(why) = self.report_open_streaks()? {
                    bail!("{why}");
                }
                self.report_climb_at_the_end();
                self.write_checkpoint()?;
                if self.storage_error.is_some() {
                    continue;
                }
                self.set_status(Status::Finished, None);
                return Ok(Status::Finished);
            }
            self.train_step()?;
            let steps_per_sec = self.rate.tick(self.time(), self.step);
            self.send(Event::Progress {
                step: self.step,
                total_steps: self.config.train.steps,
                steps_per_sec,
            });
        }
    }

    /// `train.steps` was lowered to or below the step reached: the run
    /// ends here, says so, and evaluates this step unless it was.
    fn end_early(&mut self) -> Result<()> {
        self.emit(Record::Event {
            level: Level::Info,
            message: format!(
                "train.steps = {} is not above the step reached: the run ends at step {}",
                self.config.train.steps, self.step
            ),
        });
        if self.last_eval_step == Some(self.step) {
            Ok(())
        } else {
            self.evaluate()
        }
    }

    /// Pauses after a failed write, saying why; `Resume` retries.
    fn pause_for_storage(&mut self) {
        self.paused_since.get_or_insert_with(Instant::now);
        let error = self.storage_error.clone().unwrap_or_default();
        self.set_status(
            Status::Paused,
            Some(format!(
                "paused: {error} (files are intact; {}: resuming retries the write, as a detached or headless run does on its own)",
                storage_words::storage_remedy(&error)
            )),
        );
    }

    /// `Resume`: after a storage error, first writes what is owed; stays
    /// paused if that fails again.
    pub(super) fn resume(&mut self) -> Result<()> {
        if self.storage_error.take().is_some() {
            if self.flush_lines() && self.checkpoint_owed {
                self.write_checkpoint()?;
            }
            if self.storage_error.is_some() {
                self.pause_for_storage();
                return Ok(());
            }
        }
        if let Some(since) = self.paused_since.take() {
            let paused = since.elapsed().as_secs_f64();
            // `time()` subtracted the pause while it lasted; now for good.
            self.time_offset -= paused;
            self.emit(Record::Event {
                level: Level::Info,
                message: format!(
                    "resumed after {} paused (not counted in the log's time)",
                    crate::tui::fmt::duration(paused)
                ),
            });
        }
        self.set_status(Status::Running, None);
        Ok(())
    }

    /// `Pause`: stops stepping until `Resume`; the log's `time` stops too.
    fn pause(&mut self) {
        if self.status != Status::Paused {
            self.paused_since = Some(Instant::now());
            self.emit(Record::Event {
                level: Level::Info,
                message: format!("paused at step {}", self.step),
            });
        }
        self.set_status(Status::Paused, None);
    }

    /// Applies pending commands; blocks while paused. False means stop.
    fn handle_commands(&mut self, commands: &Receiver<Command>) -> Result<bool> {
        // Checkpoints asked for in one drain are written after it, holding
        // the edits queued with them (see `write_checkpoints_asked`).
        let mut checkpoints: Vec<bool> = Vec::new();
        loop {
            // A pause waits for the next command: those asked are written first.
            if self.status == Status::Paused {
                self.write_checkpoints_asked(std::mem::take(&mut checkpoints))?;
            }
            let command = if self.status == Status::Paused {
                let waited = match self.heartbeat() {
                    Some(every) => commands.recv_timeout(every),
                    None => commands.recv().map_err(|_| RecvTimeoutError::Disconnected),
                };
                match waited {
                    Ok(c) => c,
                    Err(RecvTimeoutError::Timeout) => {
                        // The other ranks wait with rank 0.
                        self.lockstep(Order::Wait)?;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => return Ok(false),
                }
            } else {
                match commands.try_recv() {
                    Ok(c) => c,
                    // Drained; or every client is gone (e.g. the process is
                    // exiting): keep training.
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                        self.write_checkpoints_asked(checkpoints)?;
                        return Ok(true);
                    }
                }
            };
            match command {
                Command::Pause => self.pause(),
                Command::Resume => self.resume()?,
                Command::ApplyConfig { config } => self.apply_config(*config)?,
                Command::ReportConfigError { error } => self.report_config_error(error)?,
                Command::Checkpoint => checkpoints.push(true),
                Command::CheckpointForFork => checkpoints.push(false),
                Command::Stop => {
                    // Asked for by hand before the stop: kept (pinned).
                    self.write_checkpoints_asked(checkpoints)?;
                    return Ok(false);
                }
            }
        }
    }

    /// Whether this step has a meta step.
    pub(super) fn meta_due(&self) -> bool {
        self.meta.is_some()
            && self.config.meltr.meta_step_at(self.step)
            && self.meta_blocked.is_none()
    }

    /// The rest of a step: meta step (unless `meta_done`), the step's
    /// batch into the pool, the trace, eval and checkpoint when due.
    pub(super) fn finish_step(&mut self, meta_done: bool) -> Result<()> {
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
            let buffers = self.workload.buffers()?;
            tracer.step(
                self.step,
                rows,
                &self.theta,
                self.combiner.as_ref(),
                buffers,
            )?;
        }
        if self.step.is_multiple_of(self.config.train.eval_every)
            || self.step == self.config.train.steps
        {
            self.evaluate()?;
        }
        if self.step.is_multiple_of(self.config.train.checkpoint_every) {
            self.write_checkpoint()?;
        } else {
            self.write_best_checkpoint()?;
        }
        Ok(())
    }

    /// A failed evaluation (a bad validation row, a model that fails in
    /// eval mode) leaves θ as trained: a checkpoint keeps it, so the run
    /// resumes from here once the data or model is fixed.
    fn keep_the_training_of(&mut self, error: anyhow::Error) -> anyhow::Error {
        let step = self.step;
        let text = format!("{error:#}");
        // After a device-side assert (an out-of-range label on CUDA) every
        // later CUDA call fails, and tch panics on some: no checkpoint.
        if text.contains("device-side assert") || text.contains("CUDA error") {
            return error.context(format!(
                "the evaluation at step {step} failed, on the device (no checkpoint could be written after it)"
            ));
        }
        let written =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.write_checkpoint()));
        let kept = match written {
            Ok(Ok(())) if self.checkpointed_at == Some(step) => format!(
                "the training up to step {step} is kept in its checkpoint: fix the validation data or the model, then `{}`",
                crate::session::resume_command_for(self.dir.path())
            ),
            Ok(Ok(())) => format!(
                "and its checkpoint could not be written either: {}",
                self.storage_error.clone().unwrap_or_default()
            ),
            Ok(Err(e)) => format!("and its checkpoint failed too: {e:#}"),
            Err(_) => "and writing its checkpoint failed too".to_string(),
        };
        error.context(format!("the evaluation at step {step} failed; {kept}"))
    }

    fn evaluate(&mut self) -> Result<()> {
        self.last_eval_step = Some(self.step);
        // Every rank flushes here: the flush is where collapse restores are
        // decided, and the ranks must decide at the same steps.
        self.flush_pending()?;
        if self.is_follower() {
            return Ok(());
        }
        let eval = match self.workload.evaluate() {
            Ok(eval) => eval,
            Err(error) => return Err(self.keep_the_training_of(error)),
        };
        self.check_eval_is_finite(&eval);
        self.best_evaluated.evaluated(self.step, &eval.metrics);
        self.emit(Record::Eval {
            metrics: eval.metrics,
            losses: eval.losses,
        });
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
            self.emit(Record::Transform { curves });
        }
        Ok(())
    }
}
