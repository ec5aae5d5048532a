//! The command line: argument definitions (clap) and what each subcommand does.

use crate::config::{self, Config};
use crate::engine::{self, control::Command, control::Event, control::Status};
use crate::session::{self, metrics::Record, SessionMeta};
use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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
        /// No TUI: print one progress line per log interval; exit 0 when done.
        #[arg(long)]
        headless: bool,
    },
    /// Continue a session from its newest checkpoint.
    Resume {
        session: String,
        #[arg(long)]
        headless: bool,
    },
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
}

pub fn dispatch(cli: Cli) -> Result<()> {
    let root = cli.sessions_dir;
    match cli.command {
        None => start(&root, Path::new(DEFAULT_CONFIG), None, None, false),
        Some(Cmd::New { config, name }) => start(&root, &config, name, None, false),
        Some(Cmd::Run {
            config,
            name,
            steps,
            headless,
        }) => start(&root, &config, name, steps, headless),
        Some(Cmd::Resume { session, headless }) => resume(&root, &session, headless),
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
    headless: bool,
) -> Result<()> {
    let mut config = load_config(config_path)?;
    if let Some(steps) = steps {
        config.train.steps = steps;
        config.validate().map_err(anyhow::Error::new)?;
    }
    let name = name.unwrap_or_else(|| {
        config_path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "run".into())
    });
    let dir = session::create(root, &name, &config)?;
    drive(&dir, config, false, headless)
}

fn resume(root: &Path, query: &str, headless: bool) -> Result<()> {
    let dir = session::find(root, query)?;
    let config_path = dir.join("config.toml");
    let config = Config::load(&config_path).map_err(anyhow::Error::new)?;
    let mut meta = SessionMeta::read(&dir)?;
    if meta.status == Status::Running
        && meta.pid != std::process::id()
        && session::pid_alive(meta.pid)
    {
        bail!(
            "session {} is still running (pid {}); attach to it instead",
            meta.id,
            meta.pid
        );
    }
    meta.status = Status::Running;
    meta.pid = std::process::id();
    meta.error = None;
    meta.write(&dir)?;
    drive(&dir, config, true, headless)
}

fn drive(dir: &Path, config: Config, resume: bool, headless: bool) -> Result<()> {
    if headless {
        run_headless(dir, config, resume)
    } else {
        run_tui(dir, config, resume)
    }
}

/// Forwards every settled edit of the session's `config.toml` to the engine:
/// a valid config to apply, or the error (file, line, key) to log.
fn watch_session_config(
    dir: &Path,
    commands: std::sync::mpsc::Sender<Command>,
) -> Result<config::watch::ConfigWatch> {
    config::watch::watch(&dir.join("config.toml"), move |change| {
        let command = match change {
            Ok(config) => Command::ApplyConfig {
                config: Box::new(config),
            },
            Err(error) => Command::ReportConfigError {
                error: error.to_string(),
            },
        };
        let _ = commands.send(command);
    })
}

/// The TUI on an in-process engine. Leaving the TUI stops the run cleanly
/// (checkpoint, status `stopped`); `resume` continues it.
fn run_tui(dir: &Path, config: Config, resume: bool) -> Result<()> {
    if resume {
        // Cut metrics newer than the checkpoint before reading the history,
        // so the TUI never shows steps that are about to be redone.
        engine::trainer::prepare_resume(dir)?;
    }
    let history = read_history(dir)?;
    let handle = engine::spawn(dir, config.clone(), resume)?;
    let _watch = watch_session_config(dir, handle.commands.clone())?;
    watch_for_hangup(dir, handle.commands.clone());
    let meta = SessionMeta::read(dir)?;
    let link = crate::tui::ChannelLink {
        commands: handle.commands.clone(),
        events: handle.events,
    };
    let export_dir = dir.to_path_buf();
    let export_figures: crate::tui::ExportFn =
        Box::new(move || export(&export_dir, &crate::plot::ExportOptions::default()));
    let exit = crate::tui::run(
        meta.clone(),
        dir.join("config.toml"),
        config,
        history,
        &link,
        Some(export_figures),
    );
    if !matches!(exit, Ok(crate::tui::Exit::Stopped)) {
        let _ = handle.commands.send(Command::Stop);
    }
    let status = handle
        .thread
        .join()
        .map_err(|_| anyhow::anyhow!("the trainer thread panicked"))??;
    exit?;
    // The terminal may be gone: printing must not fail the run.
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = writeln!(out, "session {}: {}", meta.id, status.as_str());
    if status == Status::Stopped {
        let _ = writeln!(out, "continue it with: meltr-tui resume {}", meta.id);
    }
    Ok(())
}

/// When the terminal hangs up (a dropped SSH connection), the input loop
/// can no longer be relied on to notice: stop the in-process run cleanly
/// (checkpoint, status `stopped`) from this watchdog and leave.
fn watch_for_hangup(dir: &Path, commands: std::sync::mpsc::Sender<Command>) {
    if unsafe { libc::isatty(0) } != 1 {
        return;
    }
    let dir = dir.to_path_buf();
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
            if !hung_up {
                continue;
            }
            unsafe {
                libc::signal(libc::SIGHUP, libc::SIG_IGN);
                libc::signal(libc::SIGPIPE, libc::SIG_IGN);
            }
            let _ = commands.send(Command::Stop);
            for _ in 0..600 {
                if SessionMeta::read(&dir)
                    .map(|m| m.status.is_terminal())
                    .unwrap_or(true)
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            std::process::exit(0);
        });
}

fn read_history(dir: &Path) -> Result<Vec<session::metrics::MetricLine>> {
    let path = dir.join("metrics.jsonl");
    if !path.exists() {
        return Ok(Vec::new());
    }
    Ok(session::log::read_metrics(&path)?.lines)
}

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Runs the engine, following its events with one progress line per log
/// interval. Ctrl-C stops cleanly (checkpoint, status `stopped`).
fn run_headless(dir: &Path, config: Config, resume: bool) -> Result<()> {
    let meta = SessionMeta::read(dir)?;
    println!("session {} in {}", meta.id, dir.display());
    let handle = engine::spawn(dir, config, resume)?;
    let _watch = watch_session_config(dir, handle.commands.clone())?;
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        );
        libc::signal(
            libc::SIGTERM,
            on_interrupt as *const () as libc::sighandler_t,
        );
    }
    let mut stop_sent = false;
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) && !stop_sent {
            eprintln!("interrupted: stopping after this step (checkpoint first)");
            let _ = handle.commands.send(Command::Stop);
            stop_sent = true;
        }
        match handle.events.recv_timeout(Duration::from_millis(100)) {
            Ok(Event::Line { line }) => print_line(&line),
            Ok(_) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = handle
        .thread
        .join()
        .map_err(|_| anyhow::anyhow!("the trainer thread panicked"))??;
    println!("session {}: {}", meta.id, status.as_str());
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
    let Ok(read) = session::log::read_metrics(&dir.join("metrics.jsonl")) else {
        return (0, None);
    };
    let step = read.lines.last().map_or(0, |l| l.step);
    let metric = read.lines.iter().rev().find_map(|l| match &l.record {
        Record::Eval { metrics, .. } => metrics.get(&meta.primary_metric).copied(),
        _ => None,
    });
    (step, metric)
}

fn ls(root: &Path) -> Result<()> {
    let sessions = session::list(root);
    if sessions.is_empty() {
        println!("no sessions in {}", root.display());
        return Ok(());
    }
    println!(
        "{:<40} {:<9} {:>13} {:>18} {:<8}",
        "ID", "STATUS", "STEP", "PRIMARY METRIC", "DEVICE"
    );
    let mut crashed = false;
    for (dir, meta) in sessions {
        let (step, metric) = progress_of(&dir, &meta);
        let status = if meta.status == Status::Running && !session::pid_alive(meta.pid) {
            crashed = true;
            "crashed".to_string()
        } else {
            meta.status.as_str().to_string()
        };
        let metric = metric.map_or("-".into(), |m| format!("{} {m:.4}", meta.primary_metric));
        println!(
            "{:<40} {:<9} {:>13} {:>18} {:<8}",
            meta.id,
            status,
            format!("{step}/{}", meta.steps),
            metric,
            meta.device
        );
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
        assert_eq!(embedded.workload.kind, "video-text");
        let on_disk =
            Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG)).unwrap();
        assert_eq!(embedded, on_disk);
        let err = load_config(Path::new("configs/nope.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("configs/nope.toml does not exist"), "{err}");
    }
}
