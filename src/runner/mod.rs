//! Detached runners: a session's trainer in its own process, immune to
//! terminal hang-ups, serving the engine's Command/Event protocol on
//! `runner.sock` in the session directory.
//!
//! - [`launch`](launch::launch) starts `meltr-tui __runner DIR` in a new
//!   process session (no controlling terminal, so a dropped SSH connection
//!   never reaches it), output to `output.log`, and waits until it serves.
//! - [`serve`](serve::serve) is that process: engine, config watcher,
//!   socket server. Clients get the status and config in force on connect,
//!   then every event; commands from any client go to the engine.
//! - [`RemoteLink`](link::RemoteLink) is the client side a TUI attaches
//!   with; it keeps the client's view complete: `Line` events carry their
//!   index in `metrics.jsonl`, and whatever a slow client missed is re-read
//!   from the file.

pub mod launch;
pub mod link;
pub mod serve;
pub mod storage_retry;
pub mod tail;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long [`launch`] waits for a runner to serve (first use of the
/// video-text workload pretrains its foundation model first).
pub const START_TIMEOUT: Duration = Duration::from_secs(600);

/// The runner's socket of the session in `dir`.
pub fn socket_path(dir: &Path) -> PathBuf {
    crate::session::SessionDir::new(dir).socket()
}

fn absolute(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// The line a runner writes to `output.log` once it serves; the run's
/// config changes, refused edits and events follow it there (the launcher
/// echoes only what comes before).
pub const SERVING_LINE: &str =
    "runner serving: the run's config changes, refused edits and events follow";

/// Whether a runner answers on the session's socket.
pub fn is_serving(dir: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket_path(dir)).is_ok()
}

/// A runner's own word on its status: the latest `Status` event, which it
/// sends first thing to every client that connects.
pub type Said = (crate::session::Status, Option<String>);

/// Asks the runners of the sessions in `dirs`, all at once, for their
/// status ([`Said`], in the order of `dirs`). A session with no runner
/// serving, or one that does not answer within `within` (stuck, or never
/// accepting), gives `None`: this never waits longer than `within`.
pub fn ask_status(dirs: &[PathBuf], within: Duration) -> Vec<Option<Said>> {
    let deadline = std::time::Instant::now() + within;
    let (tx, rx) = std::sync::mpsc::channel();
    for (i, dir) in dirs.iter().enumerate() {
        let (tx, dir) = (tx.clone(), dir.clone());
        // A thread each: even `connect` can block (a full backlog). One
        // still waiting at the deadline is left behind, and ends with the
        // process or when its runner answers.
        let _ = std::thread::Builder::new()
            .name("ask-status".into())
            .spawn(move || {
                let _ = tx.send((i, greeting_status(&dir, deadline)));
            });
    }
    drop(tx);
    let mut said = vec![None; dirs.len()];
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, answer)) => said[i] = answer,
            // Every runner answered, or the time is up.
            Err(_) => break,
        }
    }
    said
}

/// The `Status` event of the greeting of the runner of `dir`, if it sends
/// one before `deadline`.
fn greeting_status(dir: &Path, deadline: std::time::Instant) -> Option<Said> {
    use crate::engine::control::Event;
    use crate::remote::Incoming;
    let client = crate::remote::Client::<Event>::connect(&socket_path(dir)).ok()?;
    while std::time::Instant::now() < deadline {
        // Read before draining: lines that came before a hang-up are kept.
        let connected = client.is_connected();
        for incoming in client.try_recv_all() {
            match incoming {
                Incoming::Event {
                    event: Event::Status { status, message },
                    ..
                } => return Some((status, message)),
                Incoming::Event {
                    event: Event::ConfigInForce { .. },
                    ..
                } => {}
                // Past the greeting, which held no status.
                Incoming::Event { .. } => return None,
                _ => {}
            }
        }
        if !connected {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}
