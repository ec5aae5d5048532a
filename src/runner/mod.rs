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

/// Whether a runner answers on the session's socket.
pub fn is_serving(dir: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(socket_path(dir)).is_ok()
}
