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
    Pause,
    Resume,
    /// A validated config to apply; restart-only changes are refused with a
    /// `config` error line.
    ApplyConfig {
        config: Box<Config>,
    },
    /// A config edit that failed validation (from the file watcher): logged
    /// as a `config` error line; the config in force stays.
    ReportConfigError {
        error: String,
    },
    /// Write a checkpoint now.
    Checkpoint,
    /// Stop after the current step, writing a final checkpoint.
    Stop,
}

/// What the engine tells its clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A line that was also appended to `metrics.jsonl`, as its line `seq`
    /// (0-based): a client that missed lines re-reads them from the file.
    Line { line: MetricLine, seq: u64 },
    /// Progress after every step (high rate: clients may drop these).
    Progress {
        step: u64,
        total_steps: u64,
        steps_per_sec: f64,
    },
    /// The run's status changed; `message` says why for failures.
    Status {
        status: Status,
        message: Option<String>,
    },
    /// The config now in force (after start and after every applied change).
    ConfigInForce { config: Box<Config> },
}
