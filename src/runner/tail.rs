//! A viewer's link to a run that serves no socket: a headless run (in a
//! terminal, a batch job, a data-parallel rank 0). It follows the run
//! through its files: new `metrics.jsonl` lines, `session.json`'s status
//! and `config.in-force.toml`. The run takes no command from it but a
//! stop, sent as the SIGTERM `meltr-tui stop` sends. (A viewer of a
//! headless run showed the history it attached to, frozen, and said
//! "pause requested" to a run that never heard it.)

use crate::config::Config;
use crate::engine::control::{Command, Event, Status};
use crate::engine::link::EngineLink;
use crate::session::{self, SessionDir, SessionMeta};
use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// How often the files are read.
const EVERY: Duration = Duration::from_millis(250);

/// A link that follows the session in `dir` through its files.
pub struct LogTail {
    dir: PathBuf,
    /// Lines read so far and the byte they end at (the log is
    /// append-only while the run writes it).
    read_up_to: Cell<(u64, u64)>,
    /// The status as last said, and its pid.
    meta: RefCell<SessionMeta>,
    /// `config.in-force.toml`'s modification time when last read.
    config_modified: Cell<Option<SystemTime>>,
    last_read: Cell<Option<Instant>>,
    /// Whether the run's end (or its process's death) was said.
    ended: Cell<bool>,
}

impl LogTail {
    /// Follows the session in `dir` from its log's first line; returns the
    /// link and the lines read (the viewer's history).
    pub fn attach(dir: &Path) -> anyhow::Result<(LogTail, Vec<session::metrics::MetricLine>)> {
        let meta = SessionMeta::read(dir)?;
        let (history, end) = super::link::history(dir)?;
        let tail = LogTail {
            dir: dir.to_path_buf(),
            read_up_to: Cell::new((history.len() as u64, end)),
            meta: RefCell::new(meta),
            config_modified: Cell::new(modified(&SessionDir::new(dir).config_in_force())),
            last_read: Cell::new(None),
            ended: Cell::new(false),
        };
        Ok((tail, history))
    }

    fn new_lines(&self, out: &mut Vec<Event>) {
        let appended = super::link::appended_lines(&self.dir, &self.read_up_to);
        out.extend(
            appended
                .into_iter()
                .map(|(seq, line)| Event::Line { line, seq }),
        );
    }

    fn new_config(&self, out: &mut Vec<Event>) {
        let path = SessionDir::new(&self.dir).config_in_force();
        let now = modified(&path);
        if now.is_some() && now != self.config_modified.get() {
            self.config_modified.set(now);
            if let Ok(config) = Config::load(&path) {
                out.push(Event::ConfigInForce {
                    config: Box::new(config),
                });
            }
        }
    }

    fn new_status(&self, out: &mut Vec<Event>) {
        let Ok(now) = SessionMeta::read(&self.dir) else {
            return;
        };
        let (was, error) = (self.meta.borrow().status, now.error.clone());
        if now.status.is_terminal() {
            self.ended.set(true);
            out.push(Event::Status {
                status: now.status,
                message: error,
            });
        } else if !now.runner_alive() {
            self.ended.set(true);
            out.push(Event::Status {
                status: Status::Failed,
                message: Some(super::link::runner_gone(&self.dir, &now)),
            });
        } else if now.status != was {
            out.push(Event::Status {
                status: now.status,
                message: None,
            });
        }
        *self.meta.borrow_mut() = now;
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl EngineLink for LogTail {
    /// A stop is the SIGTERM `meltr-tui stop` sends (the run checkpoints,
    /// then ends); other commands do not reach a run without a socket.
    fn send(&self, command: Command) {
        let meta = self.meta.borrow();
        if matches!(command, Command::Stop) && !self.ended.get() && meta.runner_alive() {
            // SAFETY: a signal to the session's live process, checked by
            // pid and start time.
            unsafe { libc::kill(meta.pid as libc::pid_t, libc::SIGTERM) };
        }
    }

    fn detachable(&self) -> bool {
        true
    }

    fn takes_commands(&self) -> bool {
        false
    }

    fn poll(&self) -> Vec<Event> {
        let mut out = Vec::new();
        let now = Instant::now();
        if self.ended.get() || self.last_read.get().is_some_and(|t| now - t < EVERY) {
            return out;
        }
        self.last_read.set(Some(now));
        self.new_lines(&mut out);
        self.new_config(&mut out);
        self.new_status(&mut out);
        // The lines written before an end, after it was read.
        if self.ended.get() {
            let mut rest = Vec::new();
            self.new_lines(&mut rest);
            let at = out.len().saturating_sub(1);
            out.splice(at..at, rest);
        }
        out
    }
}
