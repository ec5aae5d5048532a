//! `sweep`: making a sweep (plan and member configs, see [`crate::sweep`]),
//! driving it on this machine (at most N detached runners at a time, the
//! rest queued), submitting it to SLURM, and resuming, stopping and
//! listing it as a whole.

use super::list::{progress_of, steps_in_force};
use super::session_start::load_config;
use super::*;
use crate::sweep::{self, slurm, Axis, Plan, State};
use std::collections::BTreeSet;

/// `meltr-tui sweep`: make and run a sweep, or act on one.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SweepArgs {
    #[command(subcommand)]
    action: Option<SweepAction>,
    /// The base config file.
    #[arg(short, long, required = true)]
    config: Option<PathBuf>,
    /// A swept key and its values (repeatable): KEY=V1,V2,... (one value:
    /// the same for every member). One session per combination.
    #[arg(long = "set", value_name = "KEY=V1,V2")]
    set: Vec<String>,
    /// Seeds (workload.seed), comma-separated: one more axis.
    #[arg(long, value_delimiter = ',', value_name = "S1,S2")]
    seeds: Vec<u64>,
    /// Runners at a time on this machine (with --slurm: tasks at a time).
    #[arg(long)]
    parallel: Option<usize>,
    /// The group's name (default: the config's name and the time).
    #[arg(short, long)]
    name: Option<String>,
    /// Override train.steps for every member.
    #[arg(long)]
    steps: Option<u64>,
    /// List the combinations (with --slurm: print the script); write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Run the driver in the background, immune to hang-ups (its output
    /// goes to SESSIONS/GROUP.sweep/driver.log), and return.
    #[arg(long, conflicts_with_all = ["slurm", "dry_run"])]
    detach: bool,
    /// Submit to SLURM as a job array (sbatch), one member per task.
    #[arg(long)]
    slurm: bool,
    /// An extra #SBATCH option for the script (repeatable), e.g. --sbatch=--gres=gpu:1.
    #[arg(
        long = "sbatch",
        value_name = "OPTION",
        requires = "slurm",
        allow_hyphen_values = true
    )]
    sbatch: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum SweepAction {
    /// Continue a sweep: resume its stopped, crashed or failed members and
    /// start those not started yet (at most --parallel at a time).
    Resume {
        group: String,
        /// Default: the sweep's own.
        #[arg(long)]
        parallel: Option<usize>,
        /// Submit what is left to SLURM instead.
        #[arg(long)]
        slurm: bool,
        /// Run the driver in the background (output: GROUP.sweep/driver.log).
        #[arg(long, conflicts_with = "slurm")]
        detach: bool,
        #[arg(
            long = "sbatch",
            value_name = "OPTION",
            requires = "slurm",
            allow_hyphen_values = true
        )]
        sbatch: Vec<String>,
    },
    /// Stop a sweep: its driver (no more starts) and every member's runner
    /// (each checkpoints first); `scancel` for a SLURM sweep.
    Stop { group: String },
    /// The members of a sweep (or, without GROUP, the sweeps): settings,
    /// session, status, step, primary metric.
    Ls { group: Option<String> },
    /// Run one member here, headless (what each SLURM array task runs):
    /// start its session, or resume it if it has one, or nothing if done.
    Member {
        group: String,
        index: usize,
        #[arg(long, value_name = "SECS", default_value_t = 600)]
        give_up_after: u64,
    },
}

pub(super) fn sweep(root: &Path, args: SweepArgs) -> Result<()> {
    match args.action {
        Some(SweepAction::Resume {
            group,
            parallel,
            slurm,
            detach,
            sbatch,
        }) => {
            let plan = Plan::read(root, &group)?;
            if slurm {
                return submit(root, plan, parallel.unwrap_or(0), &sbatch, false, true);
            }
            let parallel = parallel.unwrap_or(plan.parallel).max(1);
            if detach {
                return detach_driver(root, &plan, parallel);
            }
            drive(root, &plan, parallel)
        }
        Some(SweepAction::Stop { group }) => stop(root, &group),
        Some(SweepAction::Ls { group }) => match group {
            Some(group) => ls_members(root, &group),
            None => ls_sweeps(root),
        },
        Some(SweepAction::Member {
            group,
            index,
            give_up_after,
        }) => member(root, &group, index, Duration::from_secs(give_up_after)),
        None => create(root, args),
    }
}

/// Makes the plan (checking every member's config), then lists it, submits
/// it or drives it.
fn create(root: &Path, args: SweepArgs) -> Result<()> {
    let config_path = args.config.context("--config is required")?;
    let base = load_config(&config_path)?;
    let mut axes = args
        .set
        .iter()
        .map(|arg| Axis::parse(arg))
        .collect::<Result<Vec<_>>>()?;
    if !args.seeds.is_empty() {
        if axes.iter().any(|a| a.key == "workload.seed") {
            bail!("seeds given twice: by --seeds and by --set workload.seed=...");
        }
        axes.push(Axis {
            key: "workload.seed".into(),
            values: args.seeds.iter().map(ToString::to_string).collect(),
        });
    }
    let group = args.name.unwrap_or_else(|| {
        let stem = config_path
            .file_stem()
            .map_or("sweep".into(), |s| s.to_string_lossy().to_string());
        format!("{stem}-{}", chrono::Local::now().format("%Y%m%d-%H%M%S"))
    });
    let config_abs = std::fs::canonicalize(&config_path).unwrap_or(config_path);
    let mut plan = Plan::new(&group, &config_abs, axes, args.steps)?;
    plan.parallel = args.parallel.unwrap_or(1).max(1);
    let configs = plan.member_configs(&base)?;
    if let Some(first) = configs.first() {
        engine::preflight(first)?;
    }
    if args.dry_run && !args.slurm {
        print_combinations(&plan);
        println!("(dry run: nothing written, nothing started)");
        return Ok(());
    }
    if !args.dry_run {
        plan.create(root, &configs)?;
        println!(
            "sweep `{}`: {} sessions, plan in {}",
            plan.group,
            plan.members.len(),
            sweep::folder(root, &plan.group).display()
        );
    }
    if args.slurm {
        return submit(
            root,
            plan,
            plan_parallel(&args.parallel),
            &args.sbatch,
            args.dry_run,
            false,
        );
    }
    if args.detach {
        return detach_driver(root, &plan, plan.parallel);
    }
    drive(root, &plan, plan.parallel)
}

/// Starts `sweep resume GROUP` as a background process in its own process
/// session (a closed terminal never reaches it), output to `driver.log`.
fn detach_driver(root: &Path, plan: &Plan, parallel: usize) -> Result<()> {
    use std::os::unix::process::CommandExt;
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
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; the new session has no
    // controlling terminal, so its hang-up never reaches the driver.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().context("cannot start the sweep driver")?;
    println!(
        "sweep `{}` driven in the background (pid {}); output in {}; watch with `meltr-tui sweep ls {}`",
        plan.group,
        child.id(),
        log_path.display(),
        plan.group
    );
    Ok(())
}

/// `--parallel` as a SLURM throttle: only when given.
fn plan_parallel(parallel: &Option<usize>) -> usize {
    parallel.unwrap_or(0)
}

fn print_combinations(plan: &Plan) {
    println!(
        "sweep `{}`: {} combinations of {}",
        plan.group,
        plan.members.len(),
        plan.config.display()
    );
    for m in &plan.members {
        println!(
            "  {:>3}  {:<16} {}",
            m.index,
            m.name,
            m.label(&plan.varying_keys())
        );
    }
}

/// Writes the array script for the members not finished yet and submits it
/// with `sbatch` (or prints it, for a dry run). `throttle` 0: none.
fn submit(
    root: &Path,
    mut plan: Plan,
    throttle: usize,
    options: &[String],
    dry_run: bool,
    resuming: bool,
) -> Result<()> {
    let sessions = std::path::absolute(root).context("cannot make the sessions folder absolute")?;
    let exe = std::env::current_exe().context("cannot find the meltr-tui executable")?;
    let workdir = std::env::current_dir().context("cannot read the working folder")?;
    let states = sweep::states(root, &plan);
    let indices: Vec<usize> = plan
        .members
        .iter()
        .zip(&states)
        .filter(|(_, s)| !resuming || !(s.is_finished() || matches!(s, State::Running { .. })))
        .map(|(m, _)| m.index)
        .collect();
    if indices.is_empty() {
        println!(
            "sweep `{}`: every member is finished or running; nothing to submit",
            plan.group
        );
        return Ok(());
    }
    let script = slurm::script(
        &plan,
        &slurm::Job {
            exe: &exe,
            sessions: &sessions,
            workdir: &workdir,
            indices: &indices,
            throttle: (throttle > 0).then_some(throttle),
            options,
        },
    );
    if dry_run {
        print!("{script}");
        eprintln!("(dry run: nothing written, nothing submitted)");
        return Ok(());
    }
    let path = sweep::folder(root, &plan.group).join("sbatch.sh");
    session::atomic_write(&path, script.as_bytes())?;
    let out = std::process::Command::new("sbatch")
        .arg(&path)
        .output()
        .with_context(|| {
            format!(
                "cannot run sbatch (is SLURM installed here?); the script is {}",
                path.display()
            )
        })?;
    let answer = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "sbatch {} failed ({}): {}{}",
            path.display(),
            out.status,
            answer,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    print!("{answer}");
    plan.slurm_job = slurm::job_id(&answer);
    plan.write(root)?;
    println!(
        "sweep `{}`: {} array tasks submitted; follow with `meltr-tui sweep ls {}`",
        plan.group,
        indices.len(),
        plan.group
    );
    Ok(())
}

/// Drives the sweep on this machine until no member can start: at most
/// `parallel` runners at a time; members not started are started, and
/// members stopped, crashed or failed before this call are resumed, each
/// at most once per call. Ctrl-C (or `sweep stop`) ends the driver; runners
/// go on.
fn drive(root: &Path, plan: &Plan, parallel: usize) -> Result<()> {
    let pid_file = sweep::folder(root, &plan.group).join("driver.pid");
    if let Some(pid) = driver_pid(&pid_file) {
        bail!(
            "sweep `{}` already has a driver (pid {pid}); `meltr-tui sweep stop {}` ends it",
            plan.group,
            plan.group
        );
    }
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
    println!(
        "sweep `{}`: {} members, at most {parallel} at a time (Ctrl-C stops starting more; runners go on)",
        plan.group,
        plan.members.len()
    );
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
                println!(
                    "  {:>3} {label:<8} {id}  {}",
                    member.index,
                    member.label(&keys)
                );
            }
        }
        last_label = labels;
        if crate::process::stop_requested() {
            println!("driver stopped: no more members start; running ones go on (`meltr-tui sweep resume {}` continues)", plan.group);
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
                Ok(id) => println!(
                    "  {:>3} {verb:<8} {id}  {}",
                    member.index,
                    member.label(&keys)
                ),
                Err(e) => eprintln!("  {:>3} did not start: {e:#}", member.index),
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    summary(root, plan)
}

/// Starts member `i` in a detached runner: a new session from its config,
/// or its session resumed. Returns the session id.
fn start_member(root: &Path, plan: &Plan, i: usize, state: &State) -> Result<String> {
    let (dir, resume) = match state.dir() {
        Some(dir) => {
            SessionDir::new(dir).prepare_socket()?;
            let mut meta = SessionMeta::read(dir)?;
            meta.status = Status::Running;
            meta.pid = std::process::id();
            meta.error = None;
            meta.write(dir)?;
            (dir.to_path_buf(), true)
        }
        None => (new_member_session(root, plan, i)?, false),
    };
    if let Err(e) = crate::runner::launch::launch(&dir, resume) {
        // The session names this process until a runner takes it over: a
        // runner that never got that far must not leave it `running`.
        if SessionMeta::read(&dir)
            .is_ok_and(|m| m.pid == std::process::id() && !m.status.is_terminal())
        {
            let _ = session::update_status(&dir, Status::Failed, Some(format!("{e:#}")));
        }
        return Err(e);
    }
    Ok(SessionDir::new(&dir).id())
}

/// Member `i`'s new session folder, from its config in the sweep folder.
fn new_member_session(root: &Path, plan: &Plan, i: usize) -> Result<PathBuf> {
    let member = &plan.members[i];
    let config = Config::load(&sweep::member_config(root, &plan.group, member.index))
        .map_err(anyhow::Error::new)?;
    session::check_socket_room(root, &member.name)?;
    let origin = session::Origin {
        group: Some(plan.group.clone()),
        ..Default::default()
    };
    session::create_from(root, &member.name, &config, origin)
}

/// The members' table, then the outcome: an error when not all finished.
fn summary(root: &Path, plan: &Plan) -> Result<()> {
    ls_members(root, &plan.group)?;
    let states = sweep::states(root, plan);
    let finished = states.iter().filter(|s| s.is_finished()).count();
    let running = states
        .iter()
        .filter(|s| matches!(s, State::Running { .. }))
        .count();
    if finished == states.len() {
        println!("sweep `{}`: all {finished} sessions finished", plan.group);
        return Ok(());
    }
    bail!(
        "sweep `{}`: {finished} of {} sessions finished, {running} still running; `meltr-tui sweep resume {}` continues the rest",
        plan.group,
        states.len(),
        plan.group
    )
}

/// The pid in a driver's pid file, if that process is alive and a sweep driver.
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
fn member(root: &Path, group: &str, index: usize, give_up_after: Duration) -> Result<()> {
    let plan = Plan::read(root, group)?;
    if index >= plan.members.len() {
        bail!(
            "sweep `{group}` has members 0..={}, not {index}",
            plan.members.len().saturating_sub(1)
        );
    }
    let mode = Mode::Headless { give_up_after };
    match sweep::states(root, &plan).swap_remove(index) {
        State::NotStarted => {
            let dir = new_member_session(root, &plan, index)?;
            let config =
                Config::load(&SessionDir::new(&dir).config()).map_err(anyhow::Error::new)?;
            super::session_start::drive(&dir, config, false, mode)
        }
        State::Ended { meta, .. } if meta.status == Status::Finished => {
            println!(
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
fn stop(root: &Path, group: &str) -> Result<()> {
    let plan = Plan::read(root, group)?;
    if let Some(pid) = driver_pid(&sweep::folder(root, group).join("driver.pid")) {
        // SAFETY: a signal to a process we checked is this sweep's driver.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        // Gone before the runners are asked: it could start another one.
        let deadline = Instant::now() + Duration::from_secs(10);
        while session::pid_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("stopped the driver (pid {pid})");
    }
    if let Some(job) = &plan.slurm_job {
        match std::process::Command::new("scancel").arg(job).status() {
            Ok(status) if status.success() => println!("cancelled SLURM job {job}"),
            Ok(status) => eprintln!("scancel {job} failed ({status})"),
            Err(e) => eprintln!("cannot run scancel {job}: {e}"),
        }
    }
    let running: Vec<SessionMeta> = sweep::states(root, &plan)
        .into_iter()
        .filter_map(|s| match s {
            State::Running { meta, .. } => Some(meta),
            _ => None,
        })
        .collect();
    for meta in &running {
        // SAFETY: the pid of a live runner of this sweep's session.
        unsafe { libc::kill(meta.pid as libc::pid_t, libc::SIGTERM) };
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while running.iter().any(|m| session::pid_alive(m.pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("asked {} runner(s) to stop", running.len());
    ls_members(root, group)
}

/// The sweeps under `root` with their members' counts by state.
fn ls_sweeps(root: &Path) -> Result<()> {
    let groups = sweep::list(root);
    if groups.is_empty() {
        println!("no sweeps in {}", root.display());
    }
    for group in groups {
        let plan = Plan::read(root, &group)?;
        let states = sweep::states(root, &plan);
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for s in &states {
            *counts.entry(s.label()).or_default() += 1;
        }
        let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "{group:<32} {} members: {}",
            states.len(),
            counts.join(", ")
        );
    }
    Ok(())
}

/// The members of sweep `group`.
fn ls_members(root: &Path, group: &str) -> Result<()> {
    let plan = Plan::read(root, group)?;
    let keys = plan.varying_keys();
    println!(
        "{:>3}  {:<44} {:<40} {:<8} {:>13} {:>18}",
        "#", "SETTINGS", "SESSION", "STATUS", "STEP", "PRIMARY METRIC"
    );
    for (m, state) in plan.members.iter().zip(sweep::states(root, &plan)) {
        let (id, step, metric) = match &state {
            State::NotStarted => ("-".to_string(), "-".to_string(), "-".to_string()),
            State::Running { dir, meta } | State::Ended { dir, meta, .. } => {
                let (step, metric) = progress_of(dir, meta);
                (
                    meta.id.clone(),
                    format!("{step}/{}", steps_in_force(dir, meta)),
                    metric.map_or("-".into(), |v| format!("{} {v:.4}", meta.primary_metric)),
                )
            }
        };
        println!(
            "{:>3}  {:<44} {:<40} {:<8} {:>13} {:>18}",
            m.index,
            m.label(&keys),
            id,
            state.label(),
            step,
            metric
        );
    }
    Ok(())
}
