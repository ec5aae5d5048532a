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
            echo_new_output(&log_path, echoed);
            let why = SessionMeta::read(&dir)
                .ok()
                .and_then(|m| m.error)
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

/// Prints what `path` gained since byte `from` to stderr; returns the new end.
fn echo_new_output(path: &Path, from: u64) -> u64 {
    let Ok(bytes) = std::fs::read(path) else {
        return from;
    };
    if (bytes.len() as u64) > from {
        eprint!("{}", String::from_utf8_lossy(&bytes[from as usize..]));
    }
    bytes.len() as u64
}
