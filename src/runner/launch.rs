//! Starting a runner process and waiting until it serves.

use super::{absolute, is_serving, START_TIMEOUT};
use crate::session::SessionDir;
use crate::session::SessionMeta;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::{Duration, Instant};

/// Starts a runner process for the session in `dir` (continuing from its
/// newest checkpoint with `resume`) and waits until it serves. Its output
/// goes to `output.log`, which is echoed here while waiting (e.g. the
/// foundation model's pretraining progress). Returns the runner's pid.
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
        if is_serving(&dir) {
            // What it said before serving (e.g. where its socket went).
            echo_new_output(&log_path, echoed);
            // Reap the child when it ends, so it never lingers as a zombie.
            std::thread::spawn(move || child.wait());
            return Ok(pid);
        }
        if let Some(exit) = child.try_wait()? {
            let error = SessionMeta::read(&dir).ok().and_then(|m| m.error);
            echo_new_output(&log_path, echoed);
            // Its error lines, but the one the refusal below says.
            echo_errors(&log_path, start_len, error.as_deref());
            let why = error
                .unwrap_or_else(|| format!("it exited with {exit}; see {}", log_path.display()));
            bail!("the runner did not start: {why}");
        }
        if started.elapsed() > START_TIMEOUT {
            let _ = child.kill();
            bail!(
                "the runner (pid {pid}) did not serve within {} s; see {}",
                START_TIMEOUT.as_secs(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How the process's own error lines start (`main`'s report): held back
/// while it starts, as a runner that fails to start says why in its
/// session and the launcher says it once.
const ERROR_LINE: &str = "error: ";

/// Prints the whole lines `path` gained since byte `from` to stderr, but
/// error lines; returns where the next line starts.
fn echo_new_output(path: &Path, from: u64) -> u64 {
    echo_lines(path, from, |line| !line.starts_with(ERROR_LINE))
}

/// Prints the error lines `path` gained since byte `from`, but those that
/// contain `said`.
fn echo_errors(path: &Path, from: u64, said: Option<&str>) {
    echo_lines(path, from, |line| {
        line.starts_with(ERROR_LINE) && !said.is_some_and(|said| line.contains(said))
    });
}

/// Prints the whole lines after byte `from` that `show` picks; a line still
/// being written waits for the next call. Returns where the next line starts.
fn echo_lines(path: &Path, from: u64, show: impl Fn(&str) -> bool) -> u64 {
    let Ok(bytes) = std::fs::read(path) else {
        return from;
    };
    let new = bytes.get(from as usize..).unwrap_or_default();
    let Some(end) = new.iter().rposition(|&b| b == b'\n') else {
        return from;
    };
    let text = String::from_utf8_lossy(&new[..=end]);
    for line in text.split_inclusive('\n').filter(|line| show(line)) {
        eprint!("{line}");
    }
    from + end as u64 + 1
}
