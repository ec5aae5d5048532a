//! The engine as a client sees it: commands out, events in, whether the
//! engine runs in another process (a detached runner's socket, see
//! `runner::link`) or not at all.

use super::control::{Command, Event};

/// A client's connection to an engine.
pub trait EngineLink {
    /// Hands `command` to the engine; one that has gone away drops it unanswered.
    fn send(&self, command: Command);
    /// Non-blocking: every event that arrived since the last call.
    fn poll(&self) -> Vec<Event>;
    /// Whether the run goes on when the client leaves (a detached runner).
    fn detachable(&self) -> bool {
        false
    }
    /// Whether commands reach a run (none do through [`NoEngine`]).
    fn takes_commands(&self) -> bool {
        true
    }
}

/// A link to nothing: a client of a session no runner serves (finished,
/// stopped or crashed), showing its history.
pub struct NoEngine;

impl EngineLink for NoEngine {
    fn send(&self, _: Command) {}
    fn takes_commands(&self) -> bool {
        false
    }
    fn poll(&self) -> Vec<Event> {
        Vec::new()
    }
}
