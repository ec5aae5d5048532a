//! What `resume` does with a session whose runner is still alive: a
//! paused one is told to go on, any other is refused (attach instead).

use crate::engine::control::{Command, Status};
use crate::session::{self, SessionMeta};
use anyhow::{bail, Result};
use std::path::Path;
use std::time::Duration;

/// A live runner paused (from a TUI since detached) is told to go on: the
/// command line had no way to (walkthrough P). Returns whether it was.
pub(super) fn unpause_if_paused(dir: &Path, overrides: &[crate::config::Override]) -> Result<bool> {
    let meta = SessionMeta::read(dir)?;
    // The runner's own word: session.json may be stale (a full disk).
    let runner_says = || {
        let dirs = [dir.to_path_buf()];
        crate::runner::ask_status(&dirs, super::list::LS_RUNNER_TIMEOUT)[0]
            .as_ref()
            .map(|(status, _)| *status)
    };
    if !session::pid_alive(meta.pid) || runner_says() != Some(Status::Paused) {
        return Ok(false);
    }
    if !overrides.is_empty() {
        bail!(
            "session {} is paused by its runner (pid {}), not ended: `{}` without --set lets it go on, \
             and an edit of its config.toml applies live",
            meta.id,
            meta.pid,
            session::command_for(dir, "resume")
        );
    }
    let link = crate::runner::link::RemoteLink::connect(dir)?;
    crate::engine::link::EngineLink::send(&link, Command::Resume);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while runner_says() == Some(Status::Paused) {
        if std::time::Instant::now() > deadline {
            bail!(
                "session {} is paused by its runner (pid {}), which did not take the resume within 5 s",
                meta.id,
                meta.pid
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "session {} was paused; its runner (pid {}) goes on. Attach with: {}",
        meta.id,
        meta.pid,
        session::command_for(dir, "attach")
    );
    Ok(true)
}

/// Fails when another process runs the session in `dir`.
pub(super) fn refuse_if_running(dir: &Path) -> Result<()> {
    let meta = SessionMeta::read(dir)?;
    if !meta.status.is_terminal() && meta.pid != std::process::id() && session::pid_alive(meta.pid)
    {
        bail!(
            "session {} is still running (pid {}); attach to it instead: {}",
            meta.id,
            meta.pid,
            session::command_for(dir, "attach")
        );
    }
    Ok(())
}
