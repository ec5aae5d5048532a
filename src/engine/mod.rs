//! The trainer and its interface. `spawn` runs a trainer on its own thread
//! and hands back the Command/Event channels; nothing here touches a terminal.

pub mod checkpoint;
pub mod control;
pub mod trainer;

use anyhow::{Context, Result};
use control::{Command, Event, Status};
use std::path::Path;
use std::sync::mpsc;

/// Capacity of the event channel; when a client falls behind, events are
/// dropped (never waited on) and the client re-reads `metrics.jsonl`.
pub const EVENT_BUFFER: usize = 4096;

pub struct EngineHandle {
    pub commands: mpsc::Sender<Command>,
    pub events: mpsc::Receiver<Event>,
    pub thread: std::thread::JoinHandle<Result<Status>>,
}

/// Starts training the session in `dir` on a new thread. Setup errors (bad
/// workload, missing checkpoint, no CUDA) come back from `thread.join()`,
/// and are also written to `session.json` with status `failed`.
pub fn spawn(dir: &Path, config: crate::config::Config, resume: bool) -> Result<EngineHandle> {
    let (command_tx, command_rx) = mpsc::channel();
    let (event_tx, event_rx) = mpsc::sync_channel(EVENT_BUFFER);
    let dir = dir.to_path_buf();
    let thread = std::thread::Builder::new()
        .name("trainer".into())
        .spawn(move || {
            let result = (|| {
                let (trainer, meta) =
                    trainer::Trainer::new(&dir, config, resume, event_tx.clone())?;
                crate::session::record_run_facts(&dir, &meta)?;
                trainer.run(command_rx)
            })();
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
    })
}
