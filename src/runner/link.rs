//! The client side of a runner's socket.

use super::socket_path;
use crate::engine::control::{Command, Event, Status};
use crate::engine::link::EngineLink;
use crate::remote::{self, Incoming};
use crate::session::SessionDir;
use crate::session::{self, SessionMeta};
use anyhow::Result;
use std::cell::Cell;
use std::path::{Path, PathBuf};

/// How the status message of a run whose runner died (`kill -9`, a reboot)
/// starts: the TUI calls such a run "crashed", as `ls` does.
pub const RUNNER_GONE: &str = "the runner is gone";

/// What the TUI says of a run (in `dir`) whose runner died.
pub fn runner_gone(dir: &Path, meta: &SessionMeta) -> String {
    format!(
        "{RUNNER_GONE} (pid {}); `{}` continues from the newest checkpoint",
        meta.pid,
        session::resume_command_for(dir)
    )
}

/// The lines of the session's log in `dir` after `read_up_to` (lines and
/// bytes read so far: the file is append-only while a run writes it), each
/// with its index in the log; moves `read_up_to` past them. None when the
/// file does not read.
pub(super) fn appended_lines(
    dir: &Path,
    read_up_to: &Cell<(u64, u64)>,
) -> Vec<(u64, session::metrics::MetricLine)> {
    let (first, offset) = read_up_to.get();
    let Ok((lines, end)) = session::log::read_metrics_from(&SessionDir::new(dir).metrics(), offset)
    else {
        return Vec::new();
    };
    read_up_to.set((first + lines.len() as u64, end));
    (first..).zip(lines).collect()
}

/// The session's log from its first line, and the byte it ends at (none
/// yet before a run's first line).
pub(super) fn history(dir: &Path) -> Result<(Vec<session::metrics::MetricLine>, u64)> {
    let path = SessionDir::new(dir).metrics();
    match path.exists() {
        true => session::log::read_metrics_from(&path, 0),
        false => Ok((Vec::new(), 0)),
    }
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
        })
    }

    /// Connects, then reads the history: lines written in between arrive
    /// live and are told apart by their index. Returns the link and the
    /// history for the TUI.
    pub fn attach(dir: &Path) -> Result<(RemoteLink, Vec<session::metrics::MetricLine>)> {
        let link = RemoteLink::connect(dir)?;
        let (history, end) = history(dir)?;
        link.next_line.set(history.len() as u64);
        link.read_up_to.set((history.len() as u64, end));
        Ok((link, history))
    }

    /// Delivers the log's lines from `next_line` on (after a gap).
    fn resync(&self, out: &mut Vec<Event>) {
        for (seq, line) in appended_lines(&self.dir, &self.read_up_to) {
            if seq >= self.next_line.get() {
                out.push(Event::Line { line, seq });
                self.next_line.set(seq + 1);
            }
        }
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
        let mut out = Vec::new();
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
                        message: Some(runner_gone(&self.dir, &meta)),
                    }
                };
                out.push(event);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::log::MetricsWriter;
    use crate::session::metrics::{Level, MetricLine, Record};
    use std::time::Duration;

    fn line(step: u64) -> MetricLine {
        MetricLine {
            step,
            time: step as f64,
            wall: None,
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
        let mut log = MetricsWriter::open(&SessionDir::new(dir.path()).metrics()).unwrap();
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
