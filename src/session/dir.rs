//! The session directory's layout, named once (DESIGN.md's contract):
//!
//! ```text
//! SESSION/
//!   config.toml            the config asked for (edited live)
//!   config.in-force.toml   the config the trainer runs with
//!   session.json           id, status, pid, device, losses, ...
//!   metrics.jsonl          one JSON line per record, append-only
//!   checkpoints/           step-NNNNNNNNNN.safetensors
//!   plots/                 exported figures
//!   trace/                 train.trace = true: the run for the replay
//!   output.log             a runner's (or the TUI's) stdout and stderr
//!   runner.sock            a detached runner's socket
//! ```

use std::path::{Path, PathBuf};

/// A session's folder, and where each of its files lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDir(PathBuf);

impl SessionDir {
    /// The layout of the session folder at `path`; nothing is created or checked.
    pub fn new(path: impl Into<PathBuf>) -> SessionDir {
        SessionDir(path.into())
    }

    /// The folder itself, as given.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The folder's name: the session id.
    pub fn id(&self) -> String {
        self.0
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `config.toml`: the config asked for, which the user edits live.
    pub fn config(&self) -> PathBuf {
        self.0.join("config.toml")
    }

    /// What a resume takes restart-only keys from: `config.toml` may hold
    /// an edit that was refused.
    pub fn config_in_force(&self) -> PathBuf {
        self.0.join("config.in-force.toml")
    }

    /// `session.json`: the session's [`SessionMeta`](super::SessionMeta).
    pub fn session_json(&self) -> PathBuf {
        self.0.join("session.json")
    }

    /// `metrics.jsonl`: the append-only log of [`MetricLine`](super::metrics::MetricLine)s.
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.jsonl")
    }

    /// `checkpoints/`: the newest few checkpoints, one safetensors file each.
    pub fn checkpoints(&self) -> PathBuf {
        self.0.join("checkpoints")
    }

    /// `plots/`: figures exported from the session.
    pub fn plots(&self) -> PathBuf {
        self.0.join("plots")
    }

    /// `trace/`: the run written down for the Python replay (`train.trace`).
    pub fn trace(&self) -> PathBuf {
        self.0.join("trace")
    }

    /// `output.log`: a runner's (or the TUI's) stdout and stderr.
    pub fn output_log(&self) -> PathBuf {
        self.0.join("output.log")
    }

    /// The runner's socket, by absolute path (clients in any working
    /// directory reach the same one).
    pub fn socket(&self) -> PathBuf {
        std::fs::canonicalize(&self.0)
            .unwrap_or_else(|_| self.0.clone())
            .join("runner.sock")
    }

    /// Whether the folder holds a session (its `session.json`).
    pub fn is_session(&self) -> bool {
        self.session_json().is_file()
    }
}

impl AsRef<Path> for SessionDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}
