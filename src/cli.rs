//! The command line: argument definitions (clap) and what each subcommand does.

use crate::config::Config;
use crate::engine::{self, control::Command, control::Event, control::Status};
use crate::session::SessionDir;
use crate::session::{self, metrics::Record, SessionMeta};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The built-in default config, used when `meltr-tui` runs with no command.
pub const DEFAULT_CONFIG: &str = "configs/default.toml";

#[derive(Parser, Debug)]
#[command(
    name = "meltr-tui",
    version,
    about = "Fine-tune models with MELTR (Meta Loss Transformer) from a terminal",
    long_about = "Fine-tune models with MELTR (Meta Loss Transformer): a small transformer reads the model's loss \
values (one primary, the rest auxiliary) and outputs the loss the model trains on; every few steps MELTR itself \
is updated by a bilevel meta step (AID hypergradient). Sessions live in --sessions-dir, one folder each.\n\n\
With no command, opens a new session of configs/default.toml."
)]
pub struct Cli {
    /// Where sessions live.
    #[arg(
        long,
        global = true,
        env = "MELTR_SESSIONS",
        default_value = "sessions"
    )]
    pub sessions_dir: PathBuf,
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Start a new session from CONFIG in the TUI.
    New {
        #[arg(short, long)]
        config: PathBuf,
        #[arg(short, long)]
        name: Option<String>,
    },
    /// Start a new session from CONFIG.
    Run {
        #[arg(short, long)]
        config: PathBuf,
        /// Session name (default: the config file's stem).
        #[arg(short, long)]
        name: Option<String>,
        /// Override train.steps.
        #[arg(long)]
        steps: Option<u64>,
        /// No TUI: train in this process, printing one progress line per log
        /// interval. Exit status: 0 when done, 1 on failure (with the
        /// reason), 130 after Ctrl-C (SIGINT), 143 after SIGTERM (both stop
        /// after the current step, with a checkpoint).
        #[arg(long, conflicts_with = "detach")]
        headless: bool,
        /// With --headless: how long to keep retrying a write that fails
        /// (a full disk), with backoff, before stopping the run as failed.
        #[arg(
            long,
            value_name = "SECS",
            default_value_t = 600,
            requires = "headless"
        )]
        give_up_after: u64,
        /// Start a detached runner (its own process, immune to hang-ups) and
        /// return; `meltr-tui attach` opens the TUI on it.
        #[arg(long)]
        detach: bool,
    },
    /// Continue a session from its newest checkpoint.
    Resume {
        session: String,
        /// No TUI: train in this process (see `run --headless`).
        #[arg(long, conflicts_with = "detach")]
        headless: bool,
        /// With --headless: how long to keep retrying a write that fails
        /// (a full disk), with backoff, before stopping the run as failed.
        #[arg(
            long,
            value_name = "SECS",
            default_value_t = 600,
            requires = "headless"
        )]
        give_up_after: u64,
        /// Continue in a detached runner (see `run --detach`).
        #[arg(long)]
        detach: bool,
    },
    /// Open the TUI on a session (default: the newest): live when its runner
    /// is alive, else its history. `q` detaches; the run goes on.
    Attach { session: Option<String> },
    /// List sessions: id, status, step, primary metric, device.
    Ls,
    /// Write a session's figures (losses, primary metric, weights, final
    /// weights, transforms) into <session>/plots or --out.
    Export {
        session: String,
        /// Comma-separated: svg, png, pdf.
        #[arg(long, value_delimiter = ',', default_value = "svg,png,pdf")]
        format: Vec<crate::plot::Format>,
        #[arg(long)]
        out: Option<PathBuf>,
        /// paper (single column), paper-wide (double column) or slides.
        #[arg(long, default_value = "paper")]
        style: crate::plot::Style,
        /// Logarithmic y axis for the loss curves.
        #[arg(long)]
        log_scale: bool,
        /// EMA smoothing weight in [0, 1); 0 turns smoothing off.
        #[arg(long, default_value_t = crate::plot::DEFAULT_EMA)]
        ema: f64,
    },
    /// Overlay one metric of several sessions in one figure (format from -o's extension).
    Compare {
        #[arg(required = true, num_args = 1..)]
        sessions: Vec<String>,
        #[arg(short, long)]
        output: PathBuf,
        /// An eval metric or a training loss (default: the primary metric).
        #[arg(long)]
        metric: Option<String>,
        #[arg(long, default_value = "paper")]
        style: crate::plot::Style,
    },
    /// Pretrain the built-in video-text foundation model (the backbone that
    /// `workload.init_from = "foundation"` fine-tunes).
    Pretrain {
        #[arg(long, default_value_t = crate::workload::FOUNDATION_STEPS)]
        steps: u64,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where to write it (default: the cache the configs use).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Versions, CUDA devices and the terminal, to check an installation.
    Doctor,
    /// Time inner and meta steps (primary, sum, meltr; exact and factorized
    /// AID at J = 0, 1, 3), their peak memory, each meta step's phases, and
    /// training throughput, on the built-in model and optionally a
    /// TorchScript model; prints ratios.
    Bench {
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Inner steps per measurement round.
        #[arg(long, default_value_t = 12)]
        steps: u64,
        /// Meta steps per measurement round.
        #[arg(long, default_value_t = 4)]
        meta_steps: u64,
        /// Timed rounds per measurement, interleaved with the measurements it
        /// is compared with; the median round is reported.
        #[arg(long, default_value_t = 10)]
        rounds: u32,
        /// Folder with a TorchScript model.pt and train/val.safetensors (e.g.
        /// the example exporter's output with --attention matmul).
        #[arg(long)]
        torchscript: Option<PathBuf>,
        /// Also write the report to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The detached runner process itself (started by `run --detach`, `new`
    /// and the TUI; not for direct use).
    #[command(name = "__runner", hide = true)]
    Runner {
        dir: PathBuf,
        #[arg(long)]
        resume: bool,
    },
}

/// How a session's trainer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// In this process, printing progress lines; a failed write (full
    /// disk) is retried with backoff for `give_up_after`, then the run
    /// stops as failed.
    Headless { give_up_after: Duration },
    /// In a runner process; this one returns at once.
    Detached,
    /// In a runner process, with the TUI attached here.
    Tui,
}

impl Mode {
    fn of(headless: bool, detach: bool, give_up_after: u64) -> Mode {
        match (headless, detach) {
            (true, _) => Mode::Headless {
                give_up_after: Duration::from_secs(give_up_after),
            },
            (false, true) => Mode::Detached,
            (false, false) => Mode::Tui,
        }
    }
}

pub fn dispatch(cli: Cli) -> Result<()> {
    let root = cli.sessions_dir;
    match cli.command {
        None => start(&root, Path::new(DEFAULT_CONFIG), None, None, Mode::Tui),
        Some(Cmd::New { config, name }) => start(&root, &config, name, None, Mode::Tui),
        Some(Cmd::Run {
            config,
            name,
            steps,
            headless,
            give_up_after,
            detach,
        }) => start(
            &root,
            &config,
            name,
            steps,
            Mode::of(headless, detach, give_up_after),
        ),
        Some(Cmd::Resume {
            session,
            headless,
            give_up_after,
            detach,
        }) => resume(&root, &session, Mode::of(headless, detach, give_up_after)),
        Some(Cmd::Attach { session }) => {
            let dir = match session {
                Some(query) => session::find(&root, &query)?,
                None => session::latest(&root)?,
            };
            attach(&dir)
        }
        Some(Cmd::Runner { dir, resume }) => match crate::runner::serve::serve(&dir, resume)? {
            Status::Failed => bail!("the run failed (see session.json)"),
            _ => Ok(()),
        },
        Some(Cmd::Ls) => ls(&root),
        Some(Cmd::Export {
            session,
            format,
            out,
            style,
            log_scale,
            ema,
        }) => {
            let dir = session::find(&root, &session)?;
            let opts = crate::plot::ExportOptions {
                formats: format,
                out_dir: out,
                style,
                log_scale,
                ema,
            };
            println!("{}", export(&dir, &opts)?);
            Ok(())
        }
        Some(Cmd::Compare {
            sessions,
            output,
            metric,
            style,
        }) => {
            let dirs = sessions
                .iter()
                .map(|s| session::find(&root, s))
                .collect::<Result<Vec<_>>>()?;
            let path = crate::plot::compare(&dirs, &output, metric.as_deref(), style)?;
            println!("wrote {}", path.display());
            Ok(())
        }
        Some(Cmd::Doctor) => doctor(),
        Some(Cmd::Bench {
            device,
            steps,
            meta_steps,
            rounds,
            torchscript,
            out,
        }) => {
            let report = crate::bench::run(&crate::bench::BenchOptions {
                device,
                steps,
                meta_steps,
                rounds,
                torchscript,
            })?;
            print!("{report}");
            if let Some(out) = out {
                std::fs::write(&out, &report)
                    .with_context(|| format!("cannot write {}", out.display()))?;
            }
            Ok(())
        }
        Some(Cmd::Pretrain { steps, seed, out }) => {
            let out = out.unwrap_or_else(crate::workload::video_text::default_foundation_path);
            tch::set_num_threads(1);
            let start = std::time::Instant::now();
            crate::workload::video_text::pretrain(steps, seed, &out, |step, loss| {
                println!(
                    "pretrain step {step:>5}/{steps}  summed loss {loss:.4}  ({:.0} s)",
                    start.elapsed().as_secs_f64()
                );
            })?;
            println!("wrote {}", out.display());
            Ok(())
        }
    }
}

/// Exports a session's figures; returns a summary for the user.
fn export(dir: &Path, opts: &crate::plot::ExportOptions) -> Result<String> {
    let done = crate::plot::export_session(dir, opts)?;
    let folder = done
        .files
        .first()
        .and_then(|f| f.parent())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut summary = format!("wrote {} files to {folder}", done.files.len());
    for note in &done.skipped {
        summary.push_str(&format!("; {note}"));
    }
    Ok(summary)
}

/// The default config, built into the binary so `meltr-tui` works from any
/// folder (a `configs/default.toml` in the working folder takes precedence).
const EMBEDDED_DEFAULT: &str = include_str!("../configs/default.toml");

fn load_config(path: &Path) -> Result<Config> {
    if !path.exists() {
        if path == Path::new(DEFAULT_CONFIG) {
            return Config::parse(EMBEDDED_DEFAULT).map_err(anyhow::Error::new);
        }
        bail!("config file {} does not exist", path.display());
    }
    let mut config = Config::load(path).map_err(anyhow::Error::new)?;
    // Paths inside the config are relative to its file; the session's copy
    // lives elsewhere, so make them absolute.
    for p in [
        &mut config.workload.model,
        &mut config.workload.train,
        &mut config.workload.val,
    ]
    .into_iter()
    .flatten()
    {
        let resolved = Config::resolve_path(path, p);
        *p = std::fs::canonicalize(&resolved)
            .unwrap_or(resolved)
            .display()
            .to_string();
    }
    Ok(config)
}

fn start(
    root: &Path,
    config_path: &Path,
    name: Option<String>,
    steps: Option<u64>,
    mode: Mode,
) -> Result<()> {
    // Refuse what cannot start before a session folder exists: the config
    // (what the user most likely has to fix) first, then the terminal.
    let mut config = load_config(config_path)?;
    if let Some(steps) = steps {
        config.train.steps = steps;
        config.validate().map_err(anyhow::Error::new)?;
    }
    engine::preflight(&config)?;
    if mode == Mode::Tui {
        crate::tui::terminal::check_available()?;
    }
    let name = name.unwrap_or_else(|| {
        config_path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "run".into())
    });
    if !matches!(mode, Mode::Headless { .. }) {
        // A runner serves a socket: it must have a place (issue 19, item 10).
        session::check_socket_room(root, &name)?;
    }
    let dir = session::create(root, &name, &config)?;
    drive(&dir, config, false, mode)
}

fn resume(root: &Path, query: &str, mode: Mode) -> Result<()> {
    if mode == Mode::Tui {
        crate::tui::terminal::check_available()?;
    }
    let dir = session::find(root, query)?;
    let config = engine::trainer::session_config(&dir).map_err(anyhow::Error::new)?;
    if !matches!(mode, Mode::Headless { .. }) {
        SessionDir::new(&dir).prepare_socket()?;
    }
    let mut meta = SessionMeta::read(&dir)?;
    if !meta.status.is_terminal() && meta.pid != std::process::id() && session::pid_alive(meta.pid)
    {
        bail!(
            "session {} is still running (pid {}); attach to it instead: meltr-tui attach {}",
            meta.id,
            meta.pid,
            meta.id
        );
    }
    meta.status = Status::Running;
    meta.pid = std::process::id();
    meta.error = None;
    meta.write(&dir)?;
    drive(&dir, config, true, mode)
}

/// A new session whose trainer could not even be built (e.g. a TorchScript
/// model without the configured primary loss, found only once the module
/// runs): its folder holds nothing but the config, so it is removed rather
/// than left behind as a failed session. A resumed session is kept.
fn discard_unstarted(dir: &Path, resume: bool, error: anyhow::Error) -> anyhow::Error {
    if resume {
        return error;
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => error.context(format!(
            "the run did not start; its new session folder {} was removed",
            dir.display()
        )),
        Err(_) => error,
    }
}

fn drive(dir: &Path, config: Config, resume: bool, mode: Mode) -> Result<()> {
    let launch = || {
        crate::runner::launch::launch(dir, resume).map_err(|e| discard_unstarted(dir, resume, e))
    };
    match mode {
        Mode::Headless { give_up_after } => run_headless(dir, config, resume, give_up_after),
        Mode::Detached => {
            let pid = launch()?;
            let id = dir.file_name().unwrap_or_default().to_string_lossy();
            println!(
                "session {id} running detached (runner pid {pid}) in {}",
                dir.display()
            );
            println!("watch it with: meltr-tui attach {id}");
            Ok(())
        }
        Mode::Tui => {
            launch()?;
            attach(dir)
        }
    }
}

/// The TUI on the session in `dir`: live through its runner's socket when
/// one serves, else its history. Leaving detaches; the run goes on.
fn attach(dir: &Path) -> Result<()> {
    crate::tui::terminal::check_available()?;
    let (link, history): (Box<dyn crate::engine::link::EngineLink>, _) =
        if crate::runner::is_serving(dir) {
            let (link, history) = crate::runner::link::RemoteLink::attach(dir)?;
            (Box::new(link), history)
        } else {
            (Box::new(crate::engine::link::NoEngine), read_history(dir)?)
        };
    let meta = SessionMeta::read(dir)?;
    let config = engine::trainer::session_config(dir).map_err(anyhow::Error::new)?;
    exit_on_hangup();
    let export_dir = dir.to_path_buf();
    let export_figures: crate::tui::ExportFn =
        Box::new(move || export(&export_dir, &crate::plot::ExportOptions::default()));
    let exit = crate::tui::run(
        meta.clone(),
        &SessionDir::new(dir),
        config,
        history,
        link.as_ref(),
        Some(export_figures),
    )?;
    // The terminal may be gone: printing must not fail.
    use std::io::Write;
    let mut out = std::io::stdout();
    if exit == crate::tui::Exit::Stopped {
        // The runner checkpoints, then ends.
        let mut status = meta.status;
        for _ in 0..600 {
            status = SessionMeta::read(dir).map_or(Status::Stopped, |m| m.status);
            if status.is_terminal() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = writeln!(out, "session {}: {}", meta.id, status.as_str());
        let _ = writeln!(out, "continue it with: meltr-tui resume {}", meta.id);
    } else if crate::runner::is_serving(dir) {
        let _ = writeln!(
            out,
            "detached from session {}; it goes on. Attach again with: meltr-tui attach {}",
            meta.id, meta.id
        );
    }
    Ok(())
}

/// A dropped SSH connection leaves the TUI on a dead terminal (crossterm
/// then spins instead of failing): this watchdog ends the process when the
/// terminal hangs up. Only the viewer goes; a runner is a separate process.
fn exit_on_hangup() {
    if unsafe { libc::isatty(0) } != 1 {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("hangup-watch".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(250));
            let mut tty = libc::pollfd {
                fd: 0,
                events: 0,
                revents: 0,
            };
            let hung_up = unsafe { libc::poll(&mut tty, 1, 0) } > 0
                && tty.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0;
            if hung_up {
                std::process::exit(0);
            }
        });
}

fn read_history(dir: &Path) -> Result<Vec<session::metrics::MetricLine>> {
    let path = SessionDir::new(dir).metrics();
    if !path.exists() {
        return Ok(Vec::new());
    }
    Ok(session::log::read_metrics(&path)?.lines)
}

/// Runs the engine, following its events with one progress line per log
/// interval. Ctrl-C stops cleanly (checkpoint, status `stopped`).
/// Retrying writes after the trainer paused because one failed (headless
/// runs have no one to press resume).
struct StorageRetry {
    since: Instant,
    next: Instant,
    delay: Duration,
    reason: String,
}

impl StorageRetry {
    const FIRST_DELAY: Duration = Duration::from_secs(1);
    const MAX_DELAY: Duration = Duration::from_secs(60);
}

fn run_headless(dir: &Path, config: Config, resume: bool, give_up_after: Duration) -> Result<()> {
    let meta = SessionMeta::read(dir)?;
    println!("session {} in {}", meta.id, dir.display());
    let handle =
        engine::spawn(dir, config, resume).map_err(|e| discard_unstarted(dir, resume, e))?;
    let _watch = crate::runner::serve::watch_config(
        dir,
        handle.commands.clone(),
        std::sync::Arc::clone(&handle.config),
    )?;
    crate::process::stop_on_signals();
    let mut stop_sent = false;
    let mut storage: Option<StorageRetry> = None;
    let mut gave_up: Option<String> = None;
    loop {
        if crate::process::stop_requested() && !stop_sent {
            eprintln!("interrupted: stopping after this step (checkpoint first)");
            let _ = handle.commands.send(Command::Stop);
            stop_sent = true;
        }
        match handle.events.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Line { line, .. }) => print_line(&line),
            // Headless runs pause only when a write failed.
            Ok(Event::Status {
                status: Status::Paused,
                message: Some(message),
            }) => match &mut storage {
                Some(retry) => retry.reason = message,
                None => {
                    eprintln!(
                        "{message}\nretrying with backoff for up to {} s (--give-up-after)",
                        give_up_after.as_secs()
                    );
                    let now = Instant::now();
                    storage = Some(StorageRetry {
                        since: now,
                        next: now + StorageRetry::FIRST_DELAY,
                        delay: StorageRetry::FIRST_DELAY,
                        reason: message,
                    });
                }
            },
            Ok(Event::Status {
                status: Status::Running,
                ..
            }) => {
                if let Some(retry) = storage.take() {
                    eprintln!(
                        "the write succeeded after {:.0} s: training goes on",
                        retry.since.elapsed().as_secs_f64()
                    );
                }
            }
            Ok(_) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if let Some(retry) = &mut storage {
            if gave_up.is_none() && retry.since.elapsed() >= give_up_after {
                let reason = format!(
                    "gave up after {} s of failed writes: {}",
                    give_up_after.as_secs(),
                    retry.reason
                );
                eprintln!("{reason}");
                let _ = handle.commands.send(Command::Stop);
                gave_up = Some(reason);
            } else if gave_up.is_none() && Instant::now() >= retry.next {
                let _ = handle.commands.send(Command::Resume);
                retry.delay = (retry.delay * 2).min(StorageRetry::MAX_DELAY);
                retry.next = Instant::now() + retry.delay;
            }
        }
    }
    let status = handle.join()?;
    if let Some(reason) = gave_up {
        // Best effort: the disk that failed may refuse this write too.
        let _ = session::update_status(dir, Status::Failed, Some(reason.clone()));
        println!("session {}: failed", meta.id);
        bail!("{reason}");
    }
    println!("session {}: {}", meta.id, status.as_str());
    if let (Status::Stopped, Some(signal)) = (status, crate::process::stop_signal()) {
        // A run ended by a signal exits as the shell expects (a finished
        // run exits 0).
        std::process::exit(crate::process::exit_code(signal));
    }
    Ok(())
}

fn fmt_named(values: &session::metrics::Named) -> String {
    values
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join("  ")
}

fn print_line(line: &session::metrics::MetricLine) {
    match &line.record {
        Record::Train {
            losses,
            total,
            weights,
            ..
        } => {
            println!(
                "step {:>6}  {}  total {total:.4}  | w: {}",
                line.step,
                fmt_named(losses),
                fmt_named(weights)
            )
        }
        Record::Eval { metrics, .. } => println!("eval {:>6}  {}", line.step, fmt_named(metrics)),
        Record::Config { changed, error } => {
            for (key, (old, new)) in changed {
                println!("config {:>4}  {key}: {old} -> {new}", line.step);
            }
            if let Some(error) = error {
                eprintln!("config error at step {}: {error}", line.step);
            }
        }
        Record::Event { level, message } => match level {
            session::metrics::Level::Info => println!("event {:>5}  {message}", line.step),
            _ => eprintln!("{:?} at step {}: {message}", level, line.step),
        },
        Record::Meta { .. } | Record::Transform { .. } => {}
    }
}

/// The last step and primary metric recorded in a session's metrics.
fn progress_of(dir: &Path, meta: &SessionMeta) -> (u64, Option<f64>) {
    let Ok(read) = session::log::read_metrics(&SessionDir::new(dir).metrics()) else {
        return (0, None);
    };
    let step = read.lines.last().map_or(0, |l| l.step);
    let metric = read.lines.iter().rev().find_map(|l| match &l.record {
        Record::Eval { metrics, .. } => metrics.get(&meta.primary_metric).copied(),
        _ => None,
    });
    (step, metric)
}

/// How long `ls` waits for live runners to say their status.
const LS_RUNNER_TIMEOUT: Duration = Duration::from_millis(800);

/// The steps a session runs to: `train.steps` of the config in force (a
/// live edit changes it), else what `session.json` was created with.
fn steps_in_force(dir: &Path, meta: &SessionMeta) -> u64 {
    Config::load(&SessionDir::new(dir).config_in_force()).map_or(meta.steps, |c| c.train.steps)
}

fn ls(root: &Path) -> Result<()> {
    if root.exists() && !root.is_dir() {
        bail!(
            "{} is not a directory: --sessions-dir (or $MELTR_SESSIONS) names the folder sessions live in",
            root.display()
        );
    }
    let sessions = session::list(root);
    if sessions.is_empty() {
        println!("no sessions in {}", root.display());
        return Ok(());
    }
    println!(
        "{:<40} {:<9} {:>13} {:>18} {:<8} {:<12}",
        "ID", "STATUS", "STEP", "PRIMARY METRIC", "DEVICE", "RUNNER"
    );
    // A live runner's own word beats session.json, which it may not have
    // been able to write (a full disk pauses it): asked all at once, and
    // never waited on for long (a stuck runner is shown from its files).
    let live: Vec<PathBuf> = sessions
        .iter()
        .filter(|(_, meta)| !meta.status.is_terminal() && session::pid_alive(meta.pid))
        .map(|(dir, _)| dir.clone())
        .collect();
    let said: std::collections::HashMap<PathBuf, crate::runner::Said> = live
        .iter()
        .cloned()
        .zip(crate::runner::ask_status(&live, LS_RUNNER_TIMEOUT))
        .filter_map(|(dir, said)| Some((dir, said?)))
        .collect();
    let mut notes = Vec::new();
    let mut crashed = false;
    for (dir, meta) in sessions {
        let (step, metric) = progress_of(&dir, &meta);
        let alive = !meta.status.is_terminal() && session::pid_alive(meta.pid);
        let status = if let Some((status, message)) = said.get(&dir) {
            if let Some(message) = message {
                notes.push(format!("{}: {message}", meta.id));
            }
            status.as_str().to_string()
        } else if !meta.status.is_terminal() && !alive {
            crashed = true;
            "crashed".to_string()
        } else {
            meta.status.as_str().to_string()
        };
        let runner = if alive {
            format!("alive pid {}", meta.pid)
        } else {
            "-".into()
        };
        let metric = metric.map_or("-".into(), |m| format!("{} {m:.4}", meta.primary_metric));
        println!(
            "{:<40} {:<9} {:>13} {:>18} {:<8} {:<12}",
            meta.id,
            status,
            format!("{step}/{}", steps_in_force(&dir, &meta)),
            metric,
            meta.device,
            runner
        );
    }
    if !notes.is_empty() {
        println!();
        for note in notes {
            println!("{note}");
        }
    }
    if crashed {
        println!(
            "\na crashed session continues from its newest checkpoint with `meltr-tui resume ID`"
        );
    }
    Ok(())
}

fn doctor() -> Result<()> {
    println!("meltr-tui {}", env!("CARGO_PKG_VERSION"));
    println!("libtorch   {}", crate::libtorch_version());
    println!(
        "  from     {}",
        option_env!("MELTR_LIBTORCH_LIB").unwrap_or("(unknown)")
    );
    let cuda = tch::Cuda::is_available();
    let count = tch::Cuda::device_count();
    println!(
        "CUDA       {}",
        if cuda {
            format!("available, {count} device(s)")
        } else {
            "not available".into()
        }
    );
    for i in 0..count {
        println!("  cuda:{i}");
    }
    println!(
        "cuDNN      {}",
        if tch::Cuda::cudnn_is_available() {
            "available"
        } else {
            "not available"
        }
    );
    println!("threads    {}", tch::get_num_threads());
    let term = std::env::var("TERM").unwrap_or_else(|_| "(unset)".into());
    println!(
        "terminal   TERM={term}  NO_COLOR={}",
        std::env::var("NO_COLOR").map(|_| "set").unwrap_or("unset")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_config_is_the_repository_default() {
        let embedded = Config::parse(EMBEDDED_DEFAULT).unwrap();
        assert_eq!(
            embedded.workload.kind,
            crate::config::WorkloadKind::VideoText
        );
        let on_disk =
            Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG)).unwrap();
        assert_eq!(embedded, on_disk);
        let err = load_config(Path::new("configs/nope.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("configs/nope.toml does not exist"), "{err}");
    }
}
