//! Detached runners: a session's trainer in its own process, immune to
//! terminal hang-ups, serving the engine's Command/Event protocol on
//! `runner.sock` in the session directory; and [`RemoteLink`], the client
//! side a TUI attaches with.
//!
//! - [`launch`] starts `meltr-tui __runner DIR` in a new process session
//!   (no controlling terminal, so a dropped SSH connection never reaches
//!   it), output to `output.log`, and waits until it serves.
//! - [`serve`] is that process: engine, config watcher, socket server.
//!   Clients get the status and config in force on connect, then every
//!   event; commands from any client go to the engine.
//! - [`RemoteLink`] keeps a client's view complete: `Line` events carry
//!   their index in `metrics.jsonl`, and whatever a slow client missed is
//!   re-read from the file.

use crate::config::{self, Config};
use crate::engine::{self, control::Command, control::Event, control::Status};
use crate::remote::{self, Incoming};
use crate::session::{self, SessionMeta};
use crate::tui::EngineLink;
use anyhow::{bail, Context, Result};
use std::cell::{Cell, RefCell};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The runner's socket, inside the session directory.
pub const SOCKET: &str = "runner.sock";

/// How long [`launch`] waits for a runner to serve (first use of the
/// video-text workload pretrains its foundation model first).
pub const START_TIMEOUT: Duration = Duration::from_secs(600);

pub fn socket_path(dir: &Path) -> PathBuf {
    absolute(dir).join(SOCKET)
}

fn absolute(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Whether a runner answers on the session's socket.
pub fn is_serving(dir: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket_path(dir)).is_ok()
}

/// Starts a runner process for the session in `dir` (continuing from its
/// newest checkpoint with `resume`) and waits until it serves. Its output
/// goes to `output.log`, which is echoed here while waiting (e.g. the
/// foundation model's pretraining progress). Returns the runner's pid.
pub fn launch(dir: &Path, resume: bool) -> Result<u32> {
    let dir = absolute(dir);
    let log_path = dir.join("output.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let start_len = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().context("cannot find the meltr-tui executable")?;
    let mut command = std::process::Command::new(exe);
    command.arg("__runner").arg(&dir);
    if resume {
        command.arg("--resume");
    }
    command
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; a new session has no
    // controlling terminal, so the terminal's hang-up never reaches it.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().context("cannot start the runner process")?;
    let pid = child.id();
    let started = Instant::now();
    let mut echoed = start_len;
    loop {
        echoed = echo_new_output(&log_path, echoed);
        if is_serving(&dir) {
            // Reap the child when it ends, so it never lingers as a zombie.
            std::thread::spawn(move || child.wait());
            return Ok(pid);
        }
        if let Some(exit) = child.try_wait()? {
            echo_new_output(&log_path, echoed);
            let why = SessionMeta::read(&dir)
                .ok()
                .and_then(|m| m.error)
                .unwrap_or_else(|| format!("it exited with {exit}; see {}", log_path.display()));
            bail!("the runner did not start: {why}");
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            bail!(
                "the runner (pid {pid}) did not serve within {} s; see {}",
                START_TIMEOUT.as_secs(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Prints what `path` gained since byte `from` to stderr; returns the new end.
fn echo_new_output(path: &Path, from: u64) -> u64 {
    let Ok(bytes) = std::fs::read(path) else {
        return from;
    };
    if (bytes.len() as u64) > from {
        eprint!("{}", String::from_utf8_lossy(&bytes[from as usize..]));
    }
    bytes.len() as u64
}

/// Forwards every settled edit of the session's `config.toml` to the
/// engine: a valid config to apply, or the error (file, line, key) to log.
/// The file is read relative to the config in force (`in_force`, kept
/// current by the engine): keys it leaves out keep their running values.
pub fn watch_config(
    dir: &Path,
    commands: std::sync::mpsc::Sender<Command>,
    in_force: Arc<Mutex<Config>>,
) -> Result<config::watch::ConfigWatch> {
    let base = move || in_force.lock().unwrap_or_else(|e| e.into_inner()).clone();
    config::watch::watch(&dir.join("config.toml"), base, move |change| {
        let command = match change {
            Ok(config) => Command::ApplyConfig {
                config: Box::new(config),
            },
            Err(error) => Command::ReportConfigError {
                error: error.to_string(),
            },
        };
        let _ = commands.send(command);
    })
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
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    engine::stop_on_signals();
    let config = engine::trainer::session_config(&dir).map_err(anyhow::Error::new)?;
    let handle = engine::spawn(&dir, config, resume)?;
    let _watch = watch_config(&dir, handle.commands.clone(), Arc::clone(&handle.config))?;
    let greeting = Arc::new(Mutex::new(Greeting::default()));
    let server = {
        let greeting = Arc::clone(&greeting);
        remote::Server::<Command>::bind(&socket_path(&dir), move || {
            let g = greeting.lock().unwrap_or_else(|e| e.into_inner());
            [&g.config, &g.status]
                .into_iter()
                .flatten()
                .filter_map(|event| remote::event_line(event, None).ok())
                .collect()
        })?
    };
    let mut stop_sent = false;
    loop {
        if engine::stop_requested() && !stop_sent {
            let _ = handle.commands.send(Command::Stop);
            stop_sent = true;
        }
        while let Ok(command) = server.commands().try_recv() {
            let _ = handle.commands.send(command);
        }
        match handle.events.recv_timeout(Duration::from_millis(20)) {
            Ok(event) => {
                {
                    let mut g = greeting.lock().unwrap_or_else(|e| e.into_inner());
                    match &event {
                        Event::Status { .. } => g.status = Some(event.clone()),
                        Event::ConfigInForce { .. } => g.config = Some(event.clone()),
                        _ => {}
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
    // Let attached clients read the final status before the socket closes.
    std::thread::sleep(Duration::from_millis(300));
    server.shutdown();
    Ok(status)
}

/// An [`EngineLink`] to a runner over its socket. Lines the client missed
/// (it was slow, or they were written while it connected) are re-read from
/// `metrics.jsonl`, so the TUI's history has no gaps and no duplicates.
pub struct RemoteLink {
    client: remote::Client<Event>,
    dir: PathBuf,
    /// Index in `metrics.jsonl` of the next line the TUI needs.
    next_line: Cell<u64>,
    /// How far the file has been read: (complete lines, bytes). A re-sync
    /// reads only what was appended since (the file is append-only while a
    /// runner serves it), so a lag never re-reads a long run's whole log on
    /// the UI thread.
    read_up_to: Cell<(u64, u64)>,
    /// Whether the runner's disappearance was already reported.
    gone_reported: Cell<bool>,
    /// Whether the runner sent its final status (finished, stopped,
    /// failed) itself: then its disappearance needs no report of its own.
    end_received: Cell<bool>,
    pending: RefCell<Vec<Event>>,
}

impl RemoteLink {
    /// Connects to the runner of the session in `dir`.
    pub fn connect(dir: &Path) -> Result<RemoteLink> {
        let client = remote::Client::connect(&socket_path(dir))?;
        Ok(RemoteLink {
            client,
            dir: dir.to_path_buf(),
            next_line: Cell::new(0),
            read_up_to: Cell::new((0, 0)),
            gone_reported: Cell::new(false),
            end_received: Cell::new(false),
            pending: RefCell::new(Vec::new()),
        })
    }

    /// Connects, then reads the history: lines written in between arrive
    /// live and are told apart by their index. Returns the link and the
    /// history for the TUI.
    pub fn attach(dir: &Path) -> Result<(RemoteLink, Vec<session::metrics::MetricLine>)> {
        let link = RemoteLink::connect(dir)?;
        let path = dir.join("metrics.jsonl");
        let (history, end) = if path.exists() {
            session::log::read_metrics_from(&path, 0)?
        } else {
            (Vec::new(), 0)
        };
        link.next_line.set(history.len() as u64);
        link.read_up_to.set((history.len() as u64, end));
        Ok((link, history))
    }

    /// Delivers the log's lines from `next_line` on (after a gap).
    fn resync(&self, out: &mut Vec<Event>) {
        let (mut seq, offset) = self.read_up_to.get();
        let Ok((lines, end)) =
            session::log::read_metrics_from(&self.dir.join("metrics.jsonl"), offset)
        else {
            return;
        };
        for line in lines {
            if seq >= self.next_line.get() {
                out.push(Event::Line { line, seq });
                self.next_line.set(seq + 1);
            }
            seq += 1;
        }
        self.read_up_to.set((seq, end));
    }

    fn accept(&self, event: Event, out: &mut Vec<Event>) {
        match event {
            Event::Line { seq, .. } if seq < self.next_line.get() => {}
            Event::Line { seq, line } => {
                if seq > self.next_line.get() {
                    self.resync(out);
                }
                if seq == self.next_line.get() {
                    out.push(Event::Line { line, seq });
                    self.next_line.set(seq + 1);
                }
            }
            other => {
                if let Event::Status { status, .. } = &other {
                    self.end_received.set(status.is_terminal());
                }
                out.push(other)
            }
        }
    }
}

impl EngineLink for RemoteLink {
    fn send(&self, command: Command) {
        // A runner that has gone away has nothing left to obey.
        let _ = self.client.send(&command);
    }

    fn detachable(&self) -> bool {
        true
    }

    fn poll(&self) -> Vec<Event> {
        let mut out = std::mem::take(&mut *self.pending.borrow_mut());
        for incoming in self.client.try_recv_all() {
            match incoming {
                Incoming::Event { event, .. } => self.accept(event, &mut out),
                Incoming::Lagged { .. } => self.resync(&mut out),
                Incoming::Error { .. } | Incoming::Undecodable { .. } => {}
            }
        }
        if !self.client.is_connected() && !self.gone_reported.get() {
            self.gone_reported.set(true);
            // Lines written after the last event that arrived.
            self.resync(&mut out);
            if self.end_received.get() {
                return out;
            }
            if let Ok(meta) = SessionMeta::read(&self.dir) {
                let event = if meta.status.is_terminal() {
                    Event::Status {
                        status: meta.status,
                        message: meta.error,
                    }
                } else {
                    Event::Status {
                        status: Status::Failed,
                        message: Some(format!(
                            "the runner (pid {}) is gone; `meltr-tui resume {}` continues from the newest checkpoint",
                            meta.pid, meta.id
                        )),
                    }
                };
                out.push(event);
            }
        }
        out
    }
}

/// An [`EngineLink`] to nothing: the TUI on a session no runner serves
/// (finished, stopped or crashed), showing its history.
pub struct NoEngine;

impl EngineLink for NoEngine {
    fn send(&self, _: Command) {}
    fn poll(&self) -> Vec<Event> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::log::MetricsWriter;
    use crate::session::metrics::{Level, MetricLine, Record};

    fn line(step: u64) -> MetricLine {
        MetricLine {
            step,
            time: step as f64,
            record: Record::Event {
                level: Level::Info,
                message: format!("s{step}"),
            },
        }
    }

    fn seqs(events: &[Event]) -> Vec<u64> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Line { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_gap_in_live_lines_is_filled_from_the_log_without_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsWriter::open(&dir.path().join("metrics.jsonl")).unwrap();
        for step in 0..3 {
            log.append(&line(step)).unwrap();
        }
        let server = remote::Server::<Command>::bind(&socket_path(dir.path()), Vec::new).unwrap();
        let (link, history) = RemoteLink::attach(dir.path()).unwrap();
        assert_eq!(history.len(), 3);
        // Lines 3..=5 are written; the viewer sees only line 5 live.
        for step in 3..6 {
            log.append(&line(step)).unwrap();
        }
        let live = |step: u64| {
            remote::event_line(
                &Event::Line {
                    line: line(step),
                    seq: step,
                },
                None,
            )
            .unwrap()
        };
        let mut got = Vec::new();
        let start = std::time::Instant::now();
        while got.len() < 3 && start.elapsed() < Duration::from_secs(10) {
            if server.clients() == 1 && got.is_empty() {
                server.broadcast(live(5)).unwrap();
            }
            got.extend(link.poll());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(seqs(&got), vec![3, 4, 5]);
        // A repeat of a line already delivered is dropped.
        server.broadcast(live(4)).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(seqs(&link.poll()), Vec::<u64>::new());
    }
}
