//! The engine's only interface to the outside: `Command`s in, `Event`s out.
//! Every client (the TUI, `attach`, the runner's socket) speaks nothing else.

use crate::config::Config;
use crate::session::metrics::MetricLine;
pub use crate::session::Status;
use serde::{Deserialize, Serialize};

/// What a client asks the engine to do; applied at the next step boundary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Stop stepping (status `paused`) until `Resume`.
    Pause,
    /// Go on after a pause; one for a failed write first retries what is owed
    /// (metrics lines, a checkpoint) and stays paused if that fails again.
    Resume,
    /// A validated config to apply; restart-only changes are refused with a
    /// `config` error line.
    ApplyConfig {
        /// The new config, already validated against the one in force.
        config: Box<Config>,
    },
    /// A config edit that failed validation (from the file watcher): logged
    /// as a `config` error line; the config in force stays.
    ReportConfigError {
        /// The validation error, as shown to the user.
        error: String,
    },
    /// Write a checkpoint now (kept past `train.keep_checkpoints`).
    Checkpoint,
    /// Write a checkpoint now for a fork to start from (the TUI's `f`): it
    /// is not kept past `train.keep_checkpoints`, the fork copies it.
    CheckpointForFork,
    /// Stop after the current step, writing a final checkpoint.
    Stop,
}

/// What the engine tells its clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A line that was also appended to `metrics.jsonl`, as its line `seq`
    /// (0-based): a client that missed lines re-reads them from the file.
    Line {
        /// The line as written to the file.
        line: MetricLine,
        /// Its 0-based index in `metrics.jsonl`; a gap tells the client it
        /// missed lines.
        seq: u64,
    },
    /// Progress after every step (high rate: clients may drop these).
    Progress {
        /// Inner steps done.
        step: u64,
        /// `train.steps` in force: the step the run finishes at.
        total_steps: u64,
        /// Inner steps per second, measured over the last half second or more.
        steps_per_sec: f64,
    },
    /// The run's status changed; `message` says why for failures.
    Status {
        /// The new status.
        status: Status,
        /// Why, for `failed` (and for a pause after a failed write); else none.
        message: Option<String>,
    },
    /// The config now in force (after start and after every applied change).
    ConfigInForce {
        /// The whole config, restart-only keys included.
        config: Box<Config>,
    },
}
