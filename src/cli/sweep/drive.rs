//! Running a sweep: the local driver (at most N detached runners, the
//! rest queued), a member run here headless (a SLURM task), the driver in
//! the background, and stopping it all.

use super::table::ls_members;
use super::*;
use std::collections::BTreeSet;

/// Starts `sweep resume GROUP` as a background process in its own process
/// session (a closed terminal never reaches it), output to `driver.log`.
pub(super) fn detach_driver(root: &Path, plan: &Plan, parallel: usize) -> Result<()> {
    // Refused here, not only in the background driver's log (it said
    // "driven in the background" and exited 0, its driver gone at once).
    refuse_a_second_driver(root, plan)?;
    let log_path = sweep::folder(root, &plan.group).join("driver.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let exe = std::env::current_exe().context("cannot find the meltr-tui executable")?;
    let mut command = std::process::Command::new(exe);
    command
        .arg("--sessions-dir")
        .arg(root)
        .args([
            "sweep",
            "resume",
            &plan.group,
            "--parallel",
            &parallel.to_string(),
        ])
        .env(
            crate::session::provenance::COMMAND_ENV,
            serde_json::to_string(&std::env::args().collect::<Vec<_>>())?,
        )
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    crate::process::detach_from_terminal(&mut command);
    let child = command.spawn().context("cannot start the sweep driver")?;
    say!(
        "sweep `{}` driven in the background (pid {}); output in {}; watch with `{}`",
        plan.group,
        child.id(),
        log_path.display(),
        crate::session::command_for(&root.join(&plan.group), "sweep ls")
    );
    Ok(())
}

/// Drives the sweep on this machine until no member can start: at most
/// `parallel` runners at a time; members not started are started, and
/// members stopped, crashed or failed before this call are resumed, each
/// at most once per call. Ctrl-C (or `sweep stop`) ends the driver; runners
/// go on.
pub(super) fn drive(root: &Path, plan: &Plan, parallel: usize) -> Result<()> {
    refuse_a_second_driver(root, plan)?;
    let pid_file = sweep::folder(root, &plan.group).join("driver.pid");
    session::atomic_write(&pid_file, std::process::id().to_string().as_bytes())?;
    crate::process::stop_on_signals();
    let result = drive_loop(root, plan, parallel);
    let _ = std::fs::remove_file(&pid_file);
    result
}

fn drive_loop(root: &Path, plan: &Plan, parallel: usize) -> Result<()> {
    let keys = plan.varying_keys();
    let mut tried = BTreeSet::new();
    let mut last_label: Vec<&'static str> = Vec::new();
    // A sweep with every member finished has nothing to drive: its table
    // and "all finished" say so, without "at most N at a time" first
    // (walkthrough N).
    let all_finished = sweep::states(root, plan)
        .iter()
        .all(|s| s.label() == "finished");
    if !all_finished {
        say!(
            "sweep `{}`: {} members, at most {parallel} at a time (Ctrl-C stops starting more; runners go on)",
            plan.group,
            plan.members.len()
        );
    }
    loop {
        let states = sweep::states(root, plan);
        let labels: Vec<&'static str> = states.iter().map(State::label).collect();
        for (i, (state, label)) in states.iter().zip(&labels).enumerate() {
            let was = last_label.get(i).copied();
            // Starts are announced when made.
            let started = was == Some("queued") && *label == "running";
            if was.is_some_and(|was| was != *label) && !started {
                let member = &plan.members[i];
                let id = state
                    .dir()
                    .map(|d| SessionDir::new(d).id())
                    .unwrap_or_default();
                say!(
                    "  {:>3} {label:<8} {id}  {}",
                    member.index,
                    member.label(&keys)
                );
            }
        }
        last_label = labels;
        if crate::process::stop_requested() {
            match being_stopped(root, &plan.group) {
                true => say!("driver stopped by `meltr-tui sweep stop`, which stops the running members next"),
                false => say!("driver stopped: no more members start; running ones go on (`meltr-tui sweep resume {}` continues)", plan.group),
            }
            break;
        }
        let running = states
            .iter()
            .filter(|s| matches!(s, State::Running { .. }))
            .count();
        let startable: Vec<usize> = states
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                !tried.contains(i) && !s.is_finished() && !matches!(s, State::Running { .. })
            })
            .map(|(i, _)| i)
            .collect();
        if running == 0 && startable.is_empty() {
            break;
        }
        let free = parallel.saturating_sub(running);
        for i in startable.into_iter().take(free) {
            tried.insert(i);
            let member = &plan.members[i];
            let verb = if states[i].dir().is_some() {
                "resumed"
            } else {
                "started"
            };
            match start_member(root, plan, i, &states[i]) {
                Ok(id) => say!(
                    "  {:>3} {verb:<8} {id}  {}",
                    member.index,
                    member.label(&keys)
                ),
                Err(e) => say_err!("  {:>3} did not start: {e:#}", member.index),
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    summary(root, plan, &tried)
}

/// Starts member `i` in a detached runner: a new session from its config,
/// or its session resumed. Returns the session id.
fn start_member(root: &Path, plan: &Plan, i: usize, state: &State) -> Result<String> {
    let (dir, resume) = match state.dir() {
        Some(dir) => {
            SessionDir::new(dir).prepare_socket()?;
            let mut meta = SessionMeta::read(dir)?;
            meta.status = Status::Running;
            meta.claim();
            meta.error = None;
            meta.write(dir)?;
            (dir.to_path_buf(), true)
        }
        None => (new_member_session(root, plan, i)?, false),
    };
    if let Err(e) = crate::runner::launch::launch(&dir, resume) {
        // The session names this process until a runner takes it over,
        // then the runner: one that never got that far, or died or was
        // killed while starting, must not leave it `running`.
        let unrun = |m: &SessionMeta| m.pid == std::process::id() || !m.runner_alive();
        if SessionMeta::read(&dir).is_ok_and(|m| unrun(&m) && !m.status.is_terminal()) {
            let _ = session::update_status(&dir, Status::Failed, Some(format!("{e:#}")));
        }
        return Err(e);
    }
    Ok(SessionDir::new(&dir).id())
}

/// Member `i`'s new session folder, from its config in the sweep folder.
fn new_member_session(root: &Path, plan: &Plan, i: usize) -> Result<PathBuf> {
    let member = &plan.members[i];
    let path = sweep::member_config(root, &plan.group, member.index);
    let config = Config::load(&path).map_err(anyhow::Error::new)?;
    session::check_socket_room(root, &member.name)?;
    let origin = session::Origin {
        group: Some(plan.group.clone()),
        config_text: std::fs::read_to_string(&path).ok(),
        ..Default::default()
    };
    session::create_from(root, &member.name, &config, origin)
}

/// The members' table, then the outcome: an error when not all finished.
/// The members' table and the sweep's state; fails unless every member
/// finished. Members this call resumed or started that ended otherwise
/// are named with why (a failed member resumed read `0 resumed` and no
/// more, a walkthrough).
fn summary(root: &Path, plan: &Plan, tried: &BTreeSet<usize>) -> Result<()> {
    ls_members(root, &plan.group)?;
    let states = sweep::states(root, plan);
    let finished = states.iter().filter(|s| s.is_finished()).count();
    let running = states
        .iter()
        .filter(|s| matches!(s, State::Running { .. }))
        .count();
    if finished == states.len() {
        say!("sweep `{}`: all {finished} sessions finished", plan.group);
        return Ok(());
    }
    let mut ended = Vec::new();
    for (i, state) in states.iter().enumerate() {
        if let State::Ended { meta, .. } = state {
            if !state.is_finished() {
                ended.push(format!("{i} {}", state.label()));
                if let (true, Some(error)) = (tried.contains(&i), &meta.error) {
                    say_err!("  {i:>3} {}: {error}", state.label());
                }
            }
        }
    }
    let ended = match ended.is_empty() {
        true => String::new(),
        false => format!(", not finished: member {}", ended.join(", member ")),
    };
    // Ended by `sweep stop`, whose next move stops them (the driver's log
    // read "1 still running" of a stopped sweep).
    let running = match being_stopped(root, &plan.group) {
        true => format!("{running} being stopped by `meltr-tui sweep stop`"),
        false => format!("{running} still running"),
    };
    bail!(
        "sweep `{}`: {finished} of {} sessions finished, {running}{ended}; `meltr-tui sweep resume {}` continues the rest",
        plan.group,
        states.len(),
        plan.group
    )
}

/// Fails while another process drives the sweep.
pub(super) fn refuse_a_second_driver(root: &Path, plan: &Plan) -> Result<()> {
    let pid_file = sweep::folder(root, &plan.group).join("driver.pid");
    if let Some(pid) = driver_pid(&pid_file) {
        bail!(
            "sweep `{}` already has a driver (pid {pid}); `meltr-tui sweep stop {}` ends it",
            plan.group,
            plan.group
        );
    }
    Ok(())
}

/// The pid in a driver's pid file (or `sweep stop`'s marker), if that
/// process is alive and a `sweep` process.
fn driver_pid(pid_file: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let is_driver = String::from_utf8_lossy(&cmdline)
        .split('\0')
        .any(|a| a == "sweep");
    (session::pid_alive(pid) && is_driver).then_some(pid)
}

/// `sweep member GROUP INDEX`: member INDEX here, headless.
pub(super) fn member(
    root: &Path,
    group: &str,
    index: usize,
    give_up_after: Duration,
) -> Result<()> {
    let plan = Plan::read(root, group)?;
    if index >= plan.members.len() {
        bail!(
            "sweep `{group}` has members 0 to {}, not {index}",
            plan.members.len().saturating_sub(1)
        );
    }
    let mode = Mode::Headless { give_up_after };
    match sweep::states(root, &plan).swap_remove(index) {
        State::NotStarted => {
            let dir = new_member_session(root, &plan, index)?;
            let config =
                Config::load(&SessionDir::new(&dir).config()).map_err(anyhow::Error::new)?;
            super::session_start::drive(&dir, config, &super::session_start::Origin::New, mode)
        }
        State::Ended { meta, .. } if meta.status == Status::Finished => {
            say!(
                "member {index} of sweep `{group}` (session {}) is finished",
                meta.id
            );
            Ok(())
        }
        State::Running { meta, .. } => bail!(
            "member {index} of sweep `{group}` runs already (session {}, pid {})",
            meta.id,
            meta.pid
        ),
        State::Ended { meta, .. } => resume(root, &meta.id, &[], mode),
    }
}

/// Ends the driver, then asks every running member to stop (a clean stop:
/// checkpoint first) and waits for them; `scancel`s a SLURM sweep.
pub(super) fn stop(root: &Path, group: &str) -> Result<()> {
    let plan = Plan::read(root, group)?;
    let marker = stopping(root, group);
    // Best effort: only the driver's last words depend on it (a full disk
    // must not keep a sweep from stopping).
    if let Err(e) = session::atomic_write(&marker, std::process::id().to_string().as_bytes()) {
        say_err!("note: {e:#}");
    }
    let stopped = stop_driver_and_members(root, group, &plan);
    let _ = std::fs::remove_file(&marker);
    stopped?;
    ls_members(root, group)
}

/// Holds the pid of a `sweep stop` while it runs: the driver it ends says
/// that its running members are stopped next, not that they go on.
fn stopping(root: &Path, group: &str) -> PathBuf {
    sweep::folder(root, group).join("stopping")
}

/// Whether a `sweep stop` of `group` is under way: its pid in the marker
/// is a live `sweep` process (one killed mid-way leaves a stale file).
fn being_stopped(root: &Path, group: &str) -> bool {
    driver_pid(&stopping(root, group)).is_some()
}

fn stop_driver_and_members(root: &Path, group: &str, plan: &Plan) -> Result<()> {
    if let Some(pid) = driver_pid(&sweep::folder(root, group).join("driver.pid")) {
        // SAFETY: a signal to a process we checked is this sweep's driver.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        // Gone before the runners are asked: it could start another one.
        let deadline = Instant::now() + Duration::from_secs(10);
        while session::pid_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        say!("stopped the driver (pid {pid})");
    }
    if let Some(job) = &plan.slurm_job {
        match std::process::Command::new("scancel").arg(job).status() {
            Ok(status) if status.success() => say!("cancelled SLURM job {job}"),
            Ok(status) => say_err!("scancel {job} failed ({status})"),
            Err(e) => say_err!("cannot run scancel {job}: {e}"),
        }
    }
    let running: Vec<SessionMeta> = sweep::states(root, plan)
        .into_iter()
        .filter_map(|s| match s {
            State::Running { meta, .. } => Some(meta),
            _ => None,
        })
        .collect();
    let pids: Vec<u32> = running.iter().map(|m| m.pid).collect();
    crate::cli::live_runner::signal_and_wait(&pids, Duration::from_secs(60));
    say!("asked {} runner(s) to stop", running.len());
    Ok(())
}
