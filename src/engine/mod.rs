//! The trainer and its interface. `spawn` runs a trainer on its own thread
//! and hands back the Command/Event channels; nothing here touches a terminal.
#![warn(missing_docs)]

pub mod auxiliary_rise;
pub mod checkpoint;
pub mod collapse;
pub mod control;
pub mod early_climb;
pub mod gradient_owner;
pub mod link;
pub mod loss_rise;
pub mod trace;
pub mod trainer;

use anyhow::{Context, Result};
use control::{Command, Event, Status};
use std::path::Path;
use std::sync::mpsc;

/// Capacity of the event channel; when a client falls behind, events are
/// dropped (never waited on) and the client re-reads `metrics.jsonl`.
pub const EVENT_BUFFER: usize = 4096;

/// A running trainer, as [`spawn`] hands it back: its channels and its thread.
pub struct EngineHandle {
    /// Commands to the trainer, applied at its next step boundary.
    pub commands: mpsc::Sender<Command>,
    /// Events from the trainer; at most [`EVENT_BUFFER`] wait here, and while it
    /// is full the trainer drops new ones rather than block.
    pub events: mpsc::Receiver<Event>,
    /// The trainer's thread; ends with the run's final status, or the error that
    /// failed it (already recorded in `session.json`).
    pub thread: std::thread::JoinHandle<Result<Status>>,
    /// The config in force, kept current by the trainer (a live config file
    /// is read relative to it).
    pub config: std::sync::Arc<std::sync::Mutex<crate::config::Config>>,
}

impl EngineHandle {
    /// Waits for the trainer to end; its final status.
    pub fn join(self) -> Result<Status> {
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the trainer thread panicked"))?
    }
}

/// What can be checked about a config before a session folder is made for
/// it: the device exists, the batch splits over the ranks of a
/// data-parallel run (`--nproc`, torchrun, srun), and the workload has the
/// losses it names (see [`crate::workload::preflight`]).
pub fn preflight(config: &crate::config::Config) -> Result<()> {
    trainer::resolve_device(&config.train.device)?;
    if let Some(at) = crate::dist::Rendezvous::from_env(config.train.collective_timeout())? {
        batch_splits(config.workload.batch_size, at.world_size)?;
    }
    crate::workload::preflight(config)
}

/// What [`check_builds`] found.
pub struct Checked {
    /// What the run would record about itself.
    pub meta: crate::session::SessionMeta,
    /// The setup's events, as a run's log would begin.
    pub said: Vec<(crate::session::metrics::Level, String)>,
    /// The first training batch's losses by name.
    pub first_losses: Vec<(String, f64)>,
    /// Their shares of the combined gradient under equal weights, by name
    /// (Err: why they could not be taken, e.g. a loss with no gradient).
    pub first_shares: std::result::Result<Vec<(String, f64)>, String>,
    /// Each loss's own gradient norm over the combined one's, there (empty
    /// when the shares were not taken).
    pub first_gradient_ratios: Vec<(String, f64)>,
    /// The losses whose own gradient is not finite on the first batch.
    pub non_finite_gradients: Vec<String>,
    /// The auxiliaries whose gradient there is nonzero on none of the
    /// parameters the primary's is.
    pub apart_from_primary: Vec<trainer::Apart>,
    /// The losses equal to the bit to another one on the first batch with
    /// the same gradient there: copies, said.
    pub copies: Vec<String>,
    /// The losses not finite on some of the training batches scanned, with
    /// those batches' steps.
    pub non_finite: Vec<(String, Vec<u64>)>,
    /// The losses exactly 0 on some of the training batches scanned, with
    /// those batches' steps (a masked loss with nothing to mask there).
    pub zero: Vec<(String, Vec<u64>)>,
    /// Each scanned batch's losses (the run's order), and a second batch's
    /// where one was scanned: what [`trainer::scaled_copy_hints`] reads.
    pub copy_readings: Vec<Vec<f64>>,
    /// With more than one batch scanned, one evaluation's non-finite
    /// validation losses and metrics.
    pub evaluation: Option<trainer::NonFiniteEvaluation>,
    /// The model's buffers a training forward moves, by name.
    pub moved_buffers: Vec<String>,
    /// The training batches an epoch, where the workload can tell.
    pub batches_per_epoch: Option<u64>,
    /// A loss the training forward's random draws move, with its value on
    /// the first batch under the inner step's draws and the meta step's.
    pub forward_draws: Option<(String, f64, f64)>,
}

/// Builds the run `config` asks for in a scratch session folder, as `run`
/// does before its first step (the workload with its model's forward on
/// the first training batch and the loss names, the validation data, the
/// combiner, the first-batch checks), then throws it away: `check`, and a
/// sweep's first member before any session exists. Returns what the run
/// would record about itself, what the setup said (its notes and
/// warnings, as a run's first events), and the first training batch's
/// losses.
pub fn check_builds(config: &crate::config::Config) -> Result<Checked> {
    check_scanning(config, 1)
}

/// [`check_builds`], the losses checked finite on the first `batches`
/// training batches.
pub fn check_scanning(config: &crate::config::Config, batches: u64) -> Result<Checked> {
    preflight(config)?;
    let scratch = std::env::temp_dir().join(format!("meltr-tui-check-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;
    // The events the setup sends (notes) wait here; none is read.
    let (events, _kept) = std::sync::mpsc::sync_channel(4096);
    let built = trainer::Trainer::new(&scratch, config.clone(), false, events).and_then(
        |(trainer, meta)| {
            let first_losses = trainer.first_batch_values()?;
            let moved_buffers = trainer.buffers_a_forward_moves()?;
            let batches_per_epoch = trainer.batches_per_epoch();
            let forward_draws = trainer.forward_draws()?;
            let first_shares = trainer.first_batch_shares().map_err(|e| format!("{e:#}"));
            let non_finite_gradients = first_shares
                .as_ref()
                .map_or(Vec::new(), |s| s.non_finite_gradients.clone());
            let apart_from_primary = first_shares
                .as_ref()
                .map_or(Vec::new(), |s| s.apart_from_primary.clone());
            let first_gradient_ratios = first_shares.as_ref().map_or(Vec::new(), |shares| {
                shares
                    .by_loss
                    .iter()
                    .map(|(n, _, ratio)| (n.clone(), *ratio))
                    .collect()
            });
            let first_shares = first_shares.map(|shares| {
                shares
                    .by_loss
                    .into_iter()
                    .map(|(n, share, _)| (n, share))
                    .collect()
            });
            let trainer::Scanned {
                non_finite,
                zero,
                readings,
            } = trainer.scan_batches(&first_losses, batches)?;
            let copy_readings = trainer.copy_readings(readings);
            let copies = {
                let _draws = crate::nn::rng::global_draws();
                trainer.copied_loss_hints()?
            };
            let evaluation = match batches {
                0 | 1 => None,
                _ => Some(trainer.non_finite_evaluation()?),
            };
            drop(trainer);
            let log = crate::session::SessionDir::new(&scratch).metrics();
            let said = crate::session::log::read_metrics(&log)
                .map(|read| read.lines)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|line| match line.record {
                    crate::session::metrics::Record::Event { level, message } => {
                        Some((level, message))
                    }
                    _ => None,
                })
                .collect();
            Ok(Checked {
                meta,
                said,
                first_losses,
                first_shares,
                first_gradient_ratios,
                non_finite_gradients,
                apart_from_primary,
                copies,
                non_finite,
                zero,
                copy_readings,
                evaluation,
                moved_buffers,
                batches_per_epoch,
                forward_draws,
            })
        },
    );
    let _ = std::fs::remove_dir_all(&scratch);
    built
}

/// Fails unless a batch of `batch_size` rows splits evenly over `ranks`.
pub fn batch_splits(batch_size: usize, ranks: usize) -> Result<()> {
    if !batch_size.is_multiple_of(ranks) {
        anyhow::bail!(
            "workload.batch_size = {batch_size} does not split evenly over {ranks} ranks"
        );
    }
    Ok(())
}

/// Builds the trainer for the session in `dir` (restoring the newest
/// checkpoint with `resume`) and starts it on a new thread. Setup errors
/// (bad workload, unreadable checkpoint, no CUDA) are returned here and
/// recorded in `session.json` with status `failed`.
pub fn spawn(dir: &Path, config: crate::config::Config, resume: bool) -> Result<EngineHandle> {
    begin(dir, config, resume)?.wait()
}

/// As [`spawn`], returning while the trainer is still being built (the
/// video-text workload's first use pretrains its foundation model for
/// minutes): a runner serves its viewers and watches its config file
/// meanwhile, and what they ask waits for the first step.
pub fn begin(dir: &Path, mut config: crate::config::Config, resume: bool) -> Result<Starting> {
    // Under torchrun or srun (several ranks), the run trains data-parallel,
    // every collective bounded by `train.collective_timeout_s`, one GPU a
    // local rank.
    let rendezvous = crate::dist::Rendezvous::from_env(config.train.collective_timeout())?
        .filter(|at| at.world_size > 1);
    if let Some(at) = &rendezvous {
        config.train.device =
            at.device_for(&config.train.device, tch::Cuda::device_count() as usize);
    }
    let at = dir.to_path_buf();
    begin_with(dir, move |events| {
        #[cfg(debug_assertions)]
        slow_setup_for_tests();
        let (mut trainer, mut meta) = trainer::Trainer::new(&at, config, resume, events)?;
        if let Some(at) = rendezvous {
            meta.world_size = Some(at.world_size);
            trainer.set_rendezvous(at);
        }
        Ok((trainer, meta))
    })
}

/// Debug builds only: `MELTR_TEST_SLOW_SETUP_MS` milliseconds of setup
/// before the trainer is built, standing in for the foundation model's
/// minutes of first pretraining in the runner's tests.
#[cfg(debug_assertions)]
fn slow_setup_for_tests() {
    if let Some(ms) = std::env::var("MELTR_TEST_SLOW_SETUP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// As [`spawn`], training a workload built by the caller (fault-injection
/// tests, embedding the engine in other programs).
pub fn spawn_with_workload(
    dir: &Path,
    config: crate::config::Config,
    workload: Box<dyn crate::workload::Workload>,
    resume: bool,
) -> Result<EngineHandle> {
    let at = dir.to_path_buf();
    begin_with(dir, move |events| {
        trainer::Trainer::with_workload(&at, config, workload, resume, events)
    })?
    .wait()
}

type Built = Result<(trainer::Trainer, crate::session::SessionMeta)>;

/// Builds the trainer and runs it, both on the trainer's thread: every
/// libtorch CPU kernel of a run then starts its OpenMP parallel regions
/// from that one thread. A second thread that has run any (the caller's,
/// had it built the trainer) keeps a second pool of OpenMP workers alive,
/// and with more workers than cores libgomp stops spinning between
/// parallel regions and puts its workers to sleep after each one: a
/// `sum` step of the wide MLP took 1.2x as long (see BENCHMARKS.md).
fn begin_with(
    dir: &Path,
    build: impl FnOnce(mpsc::SyncSender<Event>) -> Built + Send + 'static,
) -> Result<Starting> {
    let (command_tx, command_rx) = mpsc::channel();
    let (event_tx, event_rx) = mpsc::sync_channel(EVENT_BUFFER);
    let (built_tx, built_rx) = mpsc::channel();
    let session = dir.to_path_buf();
    let thread = std::thread::Builder::new()
        .name("trainer".into())
        .spawn(move || {
            let built = build(event_tx.clone()).and_then(|(mut trainer, meta)| {
                let resumed_at = trainer.start_step();
                if let Some(note) = crate::session::record_run_facts(&session, &meta, resumed_at)? {
                    trainer.note(crate::session::metrics::Level::Warn, note);
                }
                Ok(trainer)
            });
            let trainer = match built {
                Ok(trainer) => {
                    let _ = built_tx.send(Ok(trainer.config_in_force()));
                    trainer
                }
                Err(e) => {
                    let _ = crate::session::update_status(
                        &session,
                        Status::Failed,
                        Some(format!("{e:#}")),
                    );
                    let _ = built_tx.send(Err(e));
                    return Err(anyhow::anyhow!("the trainer was not built"));
                }
            };
            let result = trainer.run(command_rx);
            if let Err(e) = &result {
                let message = format!("{e:#}");
                let _ =
                    crate::session::update_status(&session, Status::Failed, Some(message.clone()));
                let _ = event_tx.try_send(Event::Status {
                    status: Status::Failed,
                    message: Some(message),
                });
            }
            result
        })
        .context("cannot start the trainer thread")?;
    Ok(Starting {
        commands: command_tx,
        events: event_rx,
        thread,
        built: built_rx,
        outcome: None,
        dir: dir.to_path_buf(),
    })
}

/// What the trainer's thread says once it is built: the config in force,
/// or why it could not be built.
type BuiltConfig = Result<std::sync::Arc<std::sync::Mutex<crate::config::Config>>>;

/// A trainer being built on its thread (see [`begin`]): commands sent now
/// wait for its first step boundary, its events wait in their channel.
pub struct Starting {
    /// Commands to the trainer, applied from its first step boundary on.
    pub commands: mpsc::Sender<Command>,
    events: mpsc::Receiver<Event>,
    thread: std::thread::JoinHandle<Result<Status>>,
    built: mpsc::Receiver<BuiltConfig>,
    /// The build's outcome, once [`Self::is_built`] has seen it (`None`
    /// inside: the thread ended without a word).
    outcome: Option<Option<BuiltConfig>>,
    dir: std::path::PathBuf,
}

impl Starting {
    /// Waits up to `timeout` for the build to end (built or failed).
    pub fn is_built(&mut self, timeout: std::time::Duration) -> bool {
        if self.outcome.is_none() {
            match self.built.recv_timeout(timeout) {
                Ok(built) => self.outcome = Some(Some(built)),
                Err(mpsc::RecvTimeoutError::Disconnected) => self.outcome = Some(None),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        self.outcome.is_some()
    }

    /// Waits for the build: the running trainer's handle, or the setup's
    /// error (recorded in `session.json` with status `failed`).
    pub fn wait(mut self) -> Result<EngineHandle> {
        let outcome = match self.outcome.take() {
            Some(outcome) => outcome,
            None => self.built.recv().ok(),
        };
        let config = match outcome {
            Some(Ok(config)) => config,
            Some(Err(e)) => {
                let _ = self.thread.join();
                return Err(e);
            }
            None => {
                // The thread ended without a word: it panicked while building.
                let _ = self.thread.join();
                let message = "the trainer thread panicked while setting up the run";
                let _ =
                    crate::session::update_status(&self.dir, Status::Failed, Some(message.into()));
                anyhow::bail!(message);
            }
        };
        Ok(EngineHandle {
            commands: self.commands,
            events: self.events,
            thread: self.thread,
            config,
        })
    }
}
