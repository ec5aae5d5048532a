//! The trainer and its interface. `spawn` runs a trainer on its own thread
//! and hands back the Command/Event channels; nothing here touches a terminal.
#![warn(missing_docs)]

pub mod checkpoint;
pub mod collapse;
pub mod control;
pub mod link;
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
/// it: the device exists, and the workload has the losses it names (see
/// [`crate::workload::preflight`]).
pub fn preflight(config: &crate::config::Config) -> Result<()> {
    trainer::resolve_device(&config.train.device)?;
    crate::workload::preflight(config)
}

/// Builds the trainer for the session in `dir` (restoring the newest
/// checkpoint with `resume`) and starts it on a new thread. Setup errors
/// (bad workload, unreadable checkpoint, no CUDA) are returned here and
/// recorded in `session.json` with status `failed`.
pub fn spawn(dir: &Path, mut config: crate::config::Config, resume: bool) -> Result<EngineHandle> {
    // Under torchrun or srun (several ranks), the run trains data-parallel,
    // every collective bounded by `train.collective_timeout_s`, one GPU a
    // local rank.
    let rendezvous = crate::dist::Rendezvous::from_env(config.train.collective_timeout())?
        .filter(|at| at.world_size > 1);
    if let Some(at) = &rendezvous {
        config.train.device =
            at.device_for(&config.train.device, tch::Cuda::device_count() as usize);
    }
    start(dir, |events| {
        let (mut trainer, mut meta) = trainer::Trainer::new(dir, config, resume, events)?;
        if let Some(at) = rendezvous {
            meta.world_size = Some(at.world_size);
            trainer.set_rendezvous(at);
        }
        Ok((trainer, meta))
    })
}

/// As [`spawn`], training a workload built by the caller (fault-injection
/// tests, embedding the engine in other programs).
pub fn spawn_with_workload(
    dir: &Path,
    config: crate::config::Config,
    workload: Box<dyn crate::workload::Workload>,
    resume: bool,
) -> Result<EngineHandle> {
    start(dir, |events| {
        trainer::Trainer::with_workload(dir, config, workload, resume, events)
    })
}

type Built = Result<(trainer::Trainer, crate::session::SessionMeta)>;

fn start(dir: &Path, build: impl FnOnce(mpsc::SyncSender<Event>) -> Built) -> Result<EngineHandle> {
    let (command_tx, command_rx) = mpsc::channel();
    let (event_tx, event_rx) = mpsc::sync_channel(EVENT_BUFFER);
    let built = build(event_tx.clone())
        .and_then(|(trainer, meta)| crate::session::record_run_facts(dir, &meta).map(|()| trainer));
    let trainer = match built {
        Ok(trainer) => trainer,
        Err(e) => {
            let _ = crate::session::update_status(dir, Status::Failed, Some(format!("{e:#}")));
            return Err(e);
        }
    };
    let config = trainer.config_in_force();
    let dir = dir.to_path_buf();
    let thread = std::thread::Builder::new()
        .name("trainer".into())
        .spawn(move || {
            let result = trainer.run(command_rx);
            if let Err(e) = &result {
                let message = format!("{e:#}");
                let _ = crate::session::update_status(&dir, Status::Failed, Some(message.clone()));
                let _ = event_tx.try_send(Event::Status {
                    status: Status::Failed,
                    message: Some(message),
                });
            }
            result
        })
        .context("cannot start the trainer thread")?;
    Ok(EngineHandle {
        commands: command_tx,
        events: event_rx,
        thread,
        config,
    })
}
