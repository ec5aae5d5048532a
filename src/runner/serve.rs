//! The runner process: the engine, the config file watcher and the socket
//! server, until training ends.

use super::absolute;
use crate::config::{self, Config};
use crate::engine::{self, control::Command, control::Event, control::Status};
use crate::remote;
use crate::session::metrics::Record;
use crate::session::{SessionDir, SessionMeta};
use anyhow::Result;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The config a live edit is read against: the trainer's config in force
/// once it is built (kept current by it), the run's start config while it
/// is being built.
#[derive(Clone)]
pub struct InForce {
    /// The start config, with the edits queued while the trainer is built.
    start: Arc<Mutex<Config>>,
    trainer: Arc<std::sync::OnceLock<Arc<Mutex<Config>>>>,
}

impl InForce {
    /// The run's config as it starts.
    pub fn starting(start: Config) -> Self {
        Self {
            start: Arc::new(Mutex::new(start)),
            trainer: Arc::default(),
        }
    }

    /// An edit queued while the trainer is built: the next one is read
    /// over it, as over an applied one (a second partial file undid the
    /// keys of the first, a review).
    fn queued(&self, edit: &Config) {
        if self.trainer.get().is_none() {
            *self.start.lock().unwrap_or_else(|e| e.into_inner()) = edit.clone();
        }
    }

    /// From now on, the built trainer's config in force.
    pub fn built(&self, trainer: &Arc<Mutex<Config>>) {
        let _ = self.trainer.set(Arc::clone(trainer));
    }

    fn now(&self) -> Config {
        match self.trainer.get() {
            Some(config) => config.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            None => self.start.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}

/// Forwards every settled edit of the session's `config.toml` to the
/// engine: a valid config to apply, or the error (file, line, key) to log.
/// The file is read relative to the config in force: keys it leaves out
/// keep their running values. Edits made while the trainer is being built
/// wait in `commands` for its first step (a walkthrough's γ edit during the
/// foundation model's pretraining was lost, and `ls` showed it as in force).
pub fn watch_config(
    dir: &Path,
    commands: std::sync::mpsc::Sender<Command>,
    in_force: InForce,
) -> Result<config::watch::ConfigWatch> {
    let queue = in_force.clone();
    let base = move || in_force.now();
    let mut last_error = None;
    config::watch::watch(&SessionDir::new(dir).config(), base, move |change| {
        let command = match change {
            Ok(config) => {
                last_error = None;
                queue.queued(&config);
                Command::ApplyConfig {
                    config: Box::new(config),
                }
            }
            Err(error) => Command::ReportConfigError {
                error: said_again(&mut last_error, error.to_string()),
            },
        };
        let _ = commands.send(command);
    })
}

/// A refused edit's error, marked when the file was saved again with the
/// same fault: the same line twice read as the first refusal shown again
/// (walkthrough M), not as a verdict on the new save.
fn said_again(last: &mut Option<String>, error: String) -> String {
    let again = last.as_deref() == Some(error.as_str());
    *last = Some(error.clone());
    match again {
        true => format!("{error} (saved again, still refused)"),
        false => error,
    }
}

/// How what a viewer that attaches while the trainer is built is told
/// begins.
pub const SETTING_UP: &str = "setting up: loading the model and data";

/// What it is told: the video-text workload's first use pretrains for
/// minutes; another's does not (walkthrough Z2's TUI said a TorchScript
/// model's would).
pub fn setting_up(pretrains: bool) -> String {
    match pretrains {
        false => format!("{SETTING_UP} (output.log shows its progress)"),
        true => format!(
            "{SETTING_UP} (the built-in video-text workload's first use pretrains its foundation model, \
             minutes; output.log shows its progress)"
        ),
    }
}

/// What a client is told when it connects: the latest status and config.
#[derive(Default)]
struct Greeting {
    status: Option<Event>,
    config: Option<Event>,
}

/// The runner process: trains the session in `dir` and serves its socket
/// until training ends. SIGTERM and SIGINT stop cleanly (checkpoint first);
/// SIGHUP is ignored.
pub fn serve(dir: &Path, resume: bool) -> Result<Status> {
    let dir = absolute(dir);
    crate::process::ignore_hangups();
    crate::process::stop_on_signals();
    // The launcher's pid stands in the session until a runner takes it:
    // taken at once, not once the model and data are loaded, so `ls` does
    // not name the launcher (walkthrough R's `ls` named a sweep's driver as
    // a member's runner while it loaded).
    if let Ok(mut meta) = SessionMeta::read(&dir) {
        meta.claim();
        meta.write(&dir)?;
    }
    let config = engine::trainer::session_config(&dir).map_err(anyhow::Error::new)?;
    // Where the socket goes is settled before the trainer starts: a socket
    // with no place fails the start (saying why), never a running trainer.
    let socket = SessionDir::new(&dir).prepare_socket().inspect_err(|e| {
        let _ = crate::session::update_status(&dir, Status::Failed, Some(format!("{e:#}")));
    })?;
    if SessionDir::new(&dir).socket_elsewhere() {
        say!(
            "the session folder's path is too long for a Unix socket ({} bytes at most): \
             serving on {}",
            crate::session::dir::max_socket_path(),
            socket.display()
        );
    }
    // The socket and the config watch come up while the trainer is built:
    // a viewer that attaches then (the foundation model's first pretraining
    // takes minutes) is served, and an edit or a checkpoint asked for waits
    // for the first step (both were lost, and the viewer froze, walkthrough
    // D). The launcher waits for the serving line, printed once it is built.
    let torchscript = config.workload.kind == crate::config::WorkloadKind::TorchScript;
    let starting_config_kind = config.workload.kind;
    let in_force = InForce::starting(config.clone());
    let mut starting = engine::begin(&dir, config, resume)?;
    let _watch = watch_config(&dir, starting.commands.clone(), in_force.clone())?;
    let greeting = Arc::new(Mutex::new(Greeting {
        status: Some(Event::Status {
            status: Status::Running,
            message: Some(setting_up(
                starting_config_kind == crate::config::WorkloadKind::VideoText,
            )),
        }),
        config: None,
    }));
    let server = {
        let greeting = Arc::clone(&greeting);
        remote::Server::<Command>::bind(&socket, move || {
            let g = greeting.lock().unwrap_or_else(|e| e.into_inner());
            [&g.config, &g.status]
                .into_iter()
                .flatten()
                .filter_map(|event| remote::event_line(event, None).ok())
                .collect()
        })?
    };
    let mut stop_sent = false;
    while !starting.is_built(Duration::from_millis(20)) {
        if crate::process::stop_requested() && !stop_sent {
            let _ = starting.commands.send(Command::Stop);
            stop_sent = true;
        }
        while let Ok(command) = server.commands().try_recv() {
            // A viewer's stop (q, s) is a stop request, as SIGTERM is: it
            // ends a pretraining under way too.
            if matches!(command, Command::Stop) {
                // SAFETY: a signal to this process, whose handler records it.
                unsafe { libc::kill(libc::getpid(), libc::SIGTERM) };
            }
            let _ = starting.commands.send(command);
        }
    }
    let handle = match starting.wait() {
        Ok(handle) => handle,
        // Stopped while it set up: a stop, resumable, not a failure.
        Err(e)
            if e.chain()
                .any(|c| c.is::<crate::workload::video_text::PretrainingStopped>()) =>
        {
            crate::session::update_status(&dir, Status::Stopped, Some(format!("{e:#}")))?;
            say!("{e:#}");
            return Ok(Status::Stopped);
        }
        Err(e) => return Err(e),
    };
    in_force.built(&handle.config);
    say!("{}", super::SERVING_LINE);
    let mut storage = super::storage_retry::StorageRetry::default();
    loop {
        if crate::process::stop_requested() && !stop_sent {
            let _ = handle.commands.send(Command::Stop);
            stop_sent = true;
        }
        while let Ok(command) = server.commands().try_recv() {
            // A user's pause ends the tries: one sent before the trainer
            // answers the pause would resume the run.
            if matches!(command, Command::Pause) {
                storage.user_paused();
            }
            let _ = handle.commands.send(command);
        }
        if storage.try_due() {
            let _ = handle.commands.send(Command::Resume);
        }
        match handle.events.recv_timeout(Duration::from_millis(20)) {
            Ok(event) => {
                // A failed write pauses the run: said in `output.log`, and
                // retried with backoff (nobody may be there to press `p`).
                if let Some(said) = storage.on_event(&event) {
                    say!("{}", said.words("until it succeeds"));
                }
                {
                    let mut g = greeting.lock().unwrap_or_else(|e| e.into_inner());
                    match &event {
                        Event::Status { .. } => g.status = Some(event.clone()),
                        Event::ConfigInForce { .. } => g.config = Some(event.clone()),
                        _ => {}
                    }
                }
                // `output.log`: what a detached run's owner reads without
                // a viewer (a refused edit was seen only in the TUI).
                if let Event::Line { line, .. } = &event {
                    for (_, text) in line.notices() {
                        say!("{text}");
                    }
                    if matches!(line.record, Record::Eval { .. }) {
                        let primary = SessionMeta::read(&dir).map(|m| m.primary_metric).ok();
                        if let Some(words) = line.eval_words(primary.as_deref()) {
                            say!("{words}");
                        }
                    }
                }
                if let Ok(line) = remote::event_line(&event, None) {
                    // Oversized lines cannot be framed; clients re-read the log.
                    let _ = server.broadcast(line);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = handle.join()?;
    // The last words of `output.log`, as a headless run's (walkthrough K's
    // `tail -f` of a finished run ended on its last checkpoint line).
    say!(
        "session {}: {}",
        SessionDir::new(&dir).id(),
        status.as_str()
    );
    if let Some(note) = crate::runs::best::best_before_the_end(&dir, torchscript) {
        say!("{note}");
    }
    // Let attached clients read the final status before the socket closes.
    std::thread::sleep(Duration::from_millis(300));
    server.shutdown();
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::said_again;

    #[test]
    fn a_save_refused_the_same_way_again_says_so() {
        let mut last = None;
        let bad = "config.toml:4: key `meltr.gamma`: expected a finite number >= 0, got -1";
        assert_eq!(said_again(&mut last, bad.into()), bad);
        assert_eq!(
            said_again(&mut last, bad.into()),
            format!("{bad} (saved again, still refused)")
        );
        // Another fault is news; the first one after it is too.
        assert_eq!(said_again(&mut last, "line 2: x".into()), "line 2: x");
        assert_eq!(said_again(&mut last, bad.into()), bad);
    }
}
