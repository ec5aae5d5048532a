//! Starting a runner process and waiting until it serves.

use super::{absolute, START_TIMEOUT};
use crate::session::SessionDir;
use crate::session::SessionMeta;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// A launch given up on a signal (Ctrl-C) while the runner started: the
/// runner was asked to stop, and waited for. (It went on training, hidden,
/// when the launching process died of the Ctrl-C: a walkthrough.)
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "interrupted while the runner started; the runner was stopped"
        )
    }
}

impl std::error::Error for Interrupted {}

/// How long a runner asked to stop while starting gets before it is killed
/// (it may be reading a large data file).
const STOP_WAIT: Duration = Duration::from_secs(20);

/// Starts a runner process for the session in `dir` (continuing from its
/// newest checkpoint with `resume`) and waits until it serves. Its output
/// goes to `output.log`, which is echoed here while waiting (e.g. the
/// foundation model's pretraining progress). Returns the runner's pid. A
/// signal caught by a [`crate::process::Trap`] while waiting stops the
/// runner ([`Interrupted`]).
pub fn launch(dir: &Path, resume: bool) -> Result<u32> {
    let dir = absolute(dir);
    let log_path = SessionDir::new(&dir).output_log();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let start_len = log.metadata().map(|m| m.len()).unwrap_or(0);
    let exe = std::env::current_exe().context("cannot find the meltr-tui executable")?;
    let mut command = std::process::Command::new(exe);
    command.arg("__runner").arg(&dir);
    if resume {
        command.arg("--resume");
    }
    command
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    crate::process::detach_from_terminal(&mut command);
    let mut child = command.spawn().context("cannot start the runner process")?;
    let pid = child.id();
    let started = Instant::now();
    let mut echoed = start_len;
    loop {
        echoed = echo_new_output(&log_path, echoed);
        // Its socket serves viewers while the trainer is built; started
        // is when it says so, built (a setup error is this launch's).
        if says_serving(&log_path, start_len) {
            // What it said before serving (e.g. where its socket went).
            echo_rest(&log_path, echoed, None);
            // Reap the child when it ends, so it never lingers as a zombie.
            std::thread::spawn(move || child.wait());
            return Ok(pid);
        }
        if let Some(exit) = child.try_wait()? {
            let error = SessionMeta::read(&dir).ok().and_then(|m| m.error);
            // Its report, unless it is what the refusal below says.
            echo_rest(&log_path, echoed, error.as_deref());
            let why = error
                .unwrap_or_else(|| format!("it exited with {exit}; see {}", log_path.display()));
            // The runner's own error as the root cause: a config key it
            // names is located in the file, as a headless run's is
            // (walkthrough O1's TUI start read no line number).
            return Err(anyhow::anyhow!(why).context("the runner did not start"));
        }
        if crate::process::Trap::sprung() {
            // SAFETY: a signal to the child we started, not yet reaped.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            let asked = Instant::now();
            while child.try_wait()?.is_none() {
                if asked.elapsed() > STOP_WAIT {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            return Err(anyhow::Error::new(Interrupted));
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            // Reaped, so a caller reading the session sees its runner gone
            // (a sweep marks such a member failed).
            let _ = child.wait();
            bail!(
                "the runner (pid {pid}) did not serve within {} s; see {}",
                START_TIMEOUT.as_secs(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the runner's output since byte `from` of `path` holds its
/// serving line.
fn says_serving(path: &Path, from: u64) -> bool {
    std::fs::read(path).is_ok_and(|bytes| {
        let said = String::from_utf8_lossy(bytes.get(from as usize..).unwrap_or_default());
        said.contains(super::SERVING_LINE)
    })
}

/// How the process's own error report starts (`main`'s, the last thing it
/// writes, possibly over several lines): held back while it starts, as a
/// runner that fails to start says why in its session and the launcher
/// says it once.
const ERROR_REPORT: &str = "error: ";

/// Prints the whole lines `path` gained since byte `from` to stderr, up to
/// an error report; returns where the next line to print starts (a line
/// still being written, or the report, waits).
fn echo_new_output(path: &Path, from: u64) -> u64 {
    let Ok(bytes) = std::fs::read(path) else {
        return from;
    };
    let mut at = from as usize;
    for line in bytes
        .get(at..)
        .unwrap_or_default()
        .split_inclusive(|&b| b == b'\n')
    {
        let whole = line.last() == Some(&b'\n');
        if !whole
            || line.starts_with(ERROR_REPORT.as_bytes())
            || line.starts_with(super::SERVING_LINE.as_bytes())
        {
            break;
        }
        say_err_raw!("{}", String::from_utf8_lossy(line));
        at += line.len();
    }
    at as u64
}

/// Prints everything after byte `from`, once the process has served or
/// ended, unless it is only the report of `said`.
fn echo_rest(path: &Path, from: u64, said: Option<&str>) {
    let Ok(bytes) = std::fs::read(path) else {
        return;
    };
    let rest = String::from_utf8_lossy(bytes.get(from as usize..).unwrap_or_default());
    // The run's own notices follow the serving line: a viewer shows them,
    // and a fork made from a TUI echoed them into its parent's output.log.
    let rest = &rest[..rest.find(super::SERVING_LINE).unwrap_or(rest.len())];
    let only_said = said.is_some_and(|said| rest.trim_end() == format!("{ERROR_REPORT}{said}"));
    if !rest.is_empty() && !only_said {
        say_err_raw!("{rest}");
        if !rest.ends_with('\n') {
            say_err!();
        }
    }
}
