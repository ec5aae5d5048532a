//! `resume`, and what it does with a session whose runner is still alive:
//! a paused one is told to go on, any other is refused (attach instead);
//! and `stop`, which ends live runs cleanly.

use crate::engine::control::{Command, Status};
use crate::session::{self, SessionDir, SessionMeta};
use anyhow::{bail, Result};
use std::path::Path;
use std::time::Duration;

/// `meltr-tui resume`: a live paused runner is told to go on before any
/// rank starts (followers would wait for a rank 0 that only unpauses);
/// else a follower trains as one, or this process launches `nproc` − 1
/// ranks and resumes the session as rank 0 (without `--nproc`, a session
/// that trained on several ranks is refused: [`ranks_to_resume_on`]).
pub(super) fn resume_command(
    root: &Path,
    session: &str,
    set: &[crate::config::Override],
    nproc: Option<usize>,
    mode: super::Mode,
) -> Result<()> {
    let dir = session::find(root, session)?;
    if unpause_if_paused(&dir, set, nproc)? {
        return Ok(());
    }
    if let Some(at) = super::ranks::follower()? {
        return super::ranks::run_follower(&at, super::ranks::resumed_config(root, session)?);
    }
    let nproc = match nproc {
        Some(n) => n,
        None => ranks_to_resume_on(&dir, super::ranks::launched()?.is_some())?,
    };
    let _ranks = match nproc {
        0 => bail!("--nproc must be at least 1"),
        1 => Vec::new(),
        n => super::ranks::launch_local_ranks(n, mode.detached())?,
    };
    super::resume(root, session, set, mode)
}

/// The processes a plain `resume` (no `--nproc`) starts on this machine:
/// one, under a launcher (which starts the ranks) or for a session that
/// trained in one process. A session that trained on several ranks is
/// refused before anything starts: MELTR's outcome depends on their
/// number, a 2-rank run went on in one process with only a warning (a
/// walkthrough), and its ranks may have run on other nodes or GPUs, so
/// only the user knows how to start them again.
fn ranks_to_resume_on(dir: &Path, under_a_launcher: bool) -> Result<usize> {
    let meta = SessionMeta::read(dir)?;
    let last = meta.world_size.unwrap_or(1);
    if under_a_launcher || last < 2 {
        return Ok(1);
    }
    bail!(
        "session {} last trained on {last} ranks, and MELTR's outcome depends on their number: \
         `{}` continues it on {last} processes on this machine, `--nproc 1` in one; \
         a run launched by torchrun or srun resumes under the same launcher",
        meta.id,
        session::resume_command_for(dir)
    )
}

/// The runner's own word on its status, when one serves the session in
/// `dir`: session.json may be stale (a full disk).
pub(super) fn runner_status(dir: &Path) -> Option<crate::runner::Said> {
    let dirs = [dir.to_path_buf()];
    crate::runner::ask_status(&dirs, super::list::LS_RUNNER_TIMEOUT).swap_remove(0)
}

/// A live runner paused (from a TUI since detached) is told to go on: the
/// command line had no way to (walkthrough P). Returns whether it was.
pub(super) fn unpause_if_paused(
    dir: &Path,
    overrides: &[crate::config::Override],
    nproc: Option<usize>,
) -> Result<bool> {
    let meta = SessionMeta::read(dir)?;
    let said = || runner_status(dir);
    let runner_says = || said().map(|(status, _)| status);
    if !meta.runner_alive() || runner_says() != Some(Status::Paused) {
        return Ok(false);
    }
    let ranks =
        crate::dist::Rendezvous::from_env(Duration::from_secs(1))?.map_or(1, |at| at.world_size);
    if nproc.is_some_and(|n| n != 1) || ranks > 1 {
        bail!(
            "session {} is paused by its runner (pid {}), whose ranks go on with it: `{}` alone, \
             without --nproc or a launcher, lets it go on",
            meta.id,
            meta.pid,
            session::command_for(dir, "resume")
        );
    }
    if !overrides.is_empty() {
        // A restart-only key applies live nowhere (walkthrough Y was told
        // an edit of config.toml would apply `workload.batch_size`).
        if let Err(e) = crate::config::refuse_restart_only(overrides, "a paused run") {
            bail!(
                "session {} is paused by its runner (pid {}), not ended: {e}",
                meta.id,
                meta.pid
            );
        }
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
            // A pause for storage pauses again at once: its message says why.
            let why = said()
                .and_then(|(_, message)| message)
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            bail!(
                "session {} is paused by its runner (pid {}), which is paused still{why}",
                meta.id,
                meta.pid
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    say!(
        "session {} was paused; its runner (pid {}) goes on. Attach with: {}",
        meta.id,
        meta.pid,
        session::command_for(dir, "attach")
    );
    Ok(true)
}

/// Fails when another process runs the session in `dir`; `with_sets`:
/// the resume asked for `--set`s, which are not applied (walkthrough T was
/// not told).
pub(super) fn refuse_if_running(dir: &Path, with_sets: bool) -> Result<()> {
    let meta = SessionMeta::read(dir)?;
    if !meta.status.is_terminal() && meta.pid != std::process::id() && meta.runner_alive() {
        let sets = match with_sets {
            true => format!(
                "; the --set is not applied: edit {} (it reads live edits) or the TUI's hyperparameters",
                SessionDir::new(dir).config().display()
            ),
            false => String::new(),
        };
        bail!(
            "session {} is still running (pid {}); attach to it instead: {}{sets}",
            meta.id,
            meta.pid,
            session::command_for(dir, "attach")
        );
    }
    Ok(())
}

/// How long `stop` waits for a run to write its checkpoint and exit.
const STOP_WAIT: Duration = Duration::from_secs(120);

/// Whether `pid` runs this program (a recycled pid of a crashed run's, after
/// a reboot or on another host sharing the folder, is someone else's): a
/// program named like it, or this very executable under another name (a
/// copy named `final-bin` was told its live runner was "gone").
fn runs_this_program(pid: u32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let program = String::from_utf8_lossy(&cmdline)
        .split('\0')
        .next()
        .map(|argv0| argv0.rsplit('/').next().unwrap_or(argv0).to_string());
    let named =
        program.is_some_and(|name| name.starts_with("meltr-tui") || name.starts_with("meltr_tui"));
    let theirs = std::fs::read_link(format!("/proc/{pid}/exe"));
    let ours = std::env::current_exe();
    named || theirs.is_ok_and(|theirs| ours.is_ok_and(|ours| theirs == ours))
}

/// SIGTERM to each of `pids` (a clean stop: checkpoint first), then waits
/// up to `wait` for them all to exit; returns those still alive.
pub(super) fn signal_and_wait(pids: &[u32], wait: Duration) -> Vec<u32> {
    for &pid in pids {
        // SAFETY: a signal to a live process of this program that the
        // caller checked.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    }
    let deadline = std::time::Instant::now() + wait;
    while pids.iter().any(|&p| session::pid_alive(p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    pids.iter()
        .copied()
        .filter(|&p| session::pid_alive(p))
        .collect()
}

/// `meltr-tui stop SESSION...`: the clean stop of `q` then `s` in the TUI,
/// from the command line (a runner started by `run --detach` or a TUI's
/// fork could otherwise only be attached to or `kill`ed, walkthrough R).
/// Each live process (runner, headless run, rank 0 of a data-parallel
/// run, paused or not) gets SIGTERM, as in `sweep stop`, and is waited for:
/// it checkpoints, logs where it stopped, and exits.
pub(super) fn stop_command(root: &Path, sessions: &[String]) -> Result<()> {
    // (folder, session, lines its log had before the signal)
    let mut live: Vec<(std::path::PathBuf, SessionMeta, usize)> = Vec::new();
    for query in sessions {
        let dir = session::find(root, query)?;
        let meta = SessionMeta::read(&dir)?;
        // Named twice: one signal (a second one ends a run still being
        // built at once).
        if live.iter().any(|(_, m, _)| m.id == meta.id) {
            continue;
        }
        if meta.status.is_terminal() {
            bail!(
                "session {} is not running (it is {}); nothing to stop",
                meta.id,
                meta.status.as_str()
            );
        }
        if !meta.runner_alive() || !runs_this_program(meta.pid) {
            bail!(
                "session {} is not running here: its process (pid {}) is gone without a last word (crashed, or \
                 it runs on another machine that shares this folder); `{}` continues a crashed run from its \
                 newest checkpoint",
                meta.id,
                meta.pid,
                session::resume_command_for(&dir)
            );
        }
        let lines = metric_lines(&dir)?.len();
        live.push((dir, meta, lines));
    }
    let pids: Vec<u32> = live.iter().map(|(_, m, _)| m.pid).collect();
    let still = signal_and_wait(&pids, STOP_WAIT);
    for (dir, meta, before) in &live {
        if still.contains(&meta.pid) {
            say!(
                "session {}: asked to stop, its process (pid {}) is still writing its checkpoint after {} s \
                 (a long evaluation takes that long); `ls` shows when it has stopped",
                meta.id,
                meta.pid,
                STOP_WAIT.as_secs()
            );
            continue;
        }
        // The mark this stop wrote: a resumed run's log keeps earlier ones.
        let said = metric_lines(dir)?
            .into_iter()
            .skip(*before)
            .find(crate::session::log::is_stop_mark)
            .and_then(|l| match l.record {
                crate::session::metrics::Record::Event { message, .. } => Some(message),
                _ => None,
            });
        let now = SessionMeta::read(dir)?;
        match (said, now.status) {
            (Some(message), _) => say!("session {}: {message}", meta.id),
            // Stopped while it set up (no log yet): its session says why.
            (None, Status::Stopped) if now.error.is_some() => say!(
                "session {}: {}",
                meta.id,
                now.error.as_deref().unwrap_or_default()
            ),
            (None, Status::Finished) => {
                say!("session {}: it finished before it could stop", meta.id)
            }
            (None, Status::Failed) => say!(
                "session {}: it failed before it could stop (`ls` and its output.log say why)",
                meta.id
            ),
            (None, _) => say!(
                "session {}: its process exited without saying where it stopped (status {}); `{}` \
                 continues it from its newest checkpoint",
                meta.id,
                now.status.as_str(),
                session::resume_command_for(dir)
            ),
        }
    }
    Ok(())
}

/// The session's log lines; none before its first (a run still setting
/// up has no log yet: `stop` failed on it, walkthrough F).
fn metric_lines(dir: &Path) -> Result<Vec<crate::session::metrics::MetricLine>> {
    let path = session::SessionDir::new(dir).metrics();
    if !path.exists() {
        return Ok(Vec::new());
    }
    Ok(crate::session::log::read_metrics(&path)?.lines)
}
