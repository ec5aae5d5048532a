//! The command line: argument definitions (clap) and what each subcommand does.

use crate::config::Config;
use crate::engine::{self, control::Command, control::Event, control::Status};
use crate::session::SessionDir;
use crate::session::{self, metrics::Record, SessionMeta};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod fork;
mod headless;
mod list;
mod ranks;
mod session_start;
mod sweep;

use headless::run_headless;
use list::ls;
use session_start::{attach, discard_unstarted, load_config, resume, start};

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

/// Where a started or resumed session trains (default: a detached runner,
/// with the TUI attached here).
#[derive(clap::Args, Debug)]
pub struct HowToRun {
    /// No TUI: train in this process, printing one progress line per log
    /// interval. Exit status: 0 when done, 1 on failure (with the reason),
    /// 130 after Ctrl-C (SIGINT), 143 after SIGTERM (both stop after the
    /// current step, with a checkpoint).
    #[arg(long, conflicts_with = "detach")]
    headless: bool,
    /// With --headless: how long to keep retrying a write that fails (a
    /// full disk), with backoff, before stopping the run as failed.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 600,
        requires = "headless"
    )]
    give_up_after: u64,
    /// Start (or continue in) a detached runner, its own process immune to
    /// hang-ups, and return; `meltr-tui attach` opens the TUI on it.
    #[arg(long)]
    detach: bool,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Start a new session from CONFIG in the TUI.
    New {
        /// The run's config file (TOML; e.g. configs/default.toml).
        #[arg(short, long)]
        config: PathBuf,
        #[arg(short, long)]
        name: Option<String>,
        /// Set a config key (repeatable): KEY=VALUE, VALUE a TOML literal or
        /// a bare word (e.g. --set aid.iterations=3 --set combiner.kind=sum).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<crate::config::Override>,
    },
    /// Start a new session from CONFIG.
    Run {
        /// The run's config file (TOML; e.g. configs/default.toml).
        #[arg(short, long)]
        config: PathBuf,
        /// Session name (default: the config file's stem).
        #[arg(short, long)]
        name: Option<String>,
        /// Override train.steps.
        #[arg(long)]
        steps: Option<u64>,
        /// Set a config key (repeatable): KEY=VALUE, VALUE a TOML literal or
        /// a bare word (e.g. --set aid.iterations=3 --set combiner.kind=sum);
        /// checked as the file is, recorded in the session's config.toml.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<crate::config::Override>,
        /// Train data-parallel in N processes on this machine (Gloo on the
        /// CPU, NCCL on GPUs): each takes 1/N of every batch
        /// (workload.batch_size must divide by N); this process is rank 0
        /// and alone writes the session. Under torchrun or srun, leave it
        /// out: their variables (RANK/WORLD_SIZE, SLURM_PROCID/SLURM_NTASKS)
        /// make each process one rank.
        #[arg(long, value_name = "N", default_value_t = 1)]
        nproc: usize,
        #[command(flatten)]
        how: HowToRun,
    },
    /// Continue a session from its newest checkpoint.
    Resume {
        session: String,
        /// Change a live key before continuing (repeatable): KEY=VALUE,
        /// written into the session's config.toml. Restart-only keys
        /// (workload, sizes, device, combiner kind) are refused.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<crate::config::Override>,
        #[command(flatten)]
        how: HowToRun,
    },
    /// Start a new session from a session's checkpoint (θ, φ, both
    /// optimizers, data position): same group, recording its parent and
    /// fork step; `--set` changes live keys from there on.
    Fork {
        session: String,
        /// The checkpoint step to start from (default: the newest).
        #[arg(long)]
        at: Option<u64>,
        /// Name of the new session (default: the parent's name).
        #[arg(short, long)]
        name: Option<String>,
        /// Change a live key (repeatable): KEY=VALUE.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<crate::config::Override>,
        #[command(flatten)]
        how: HowToRun,
    },
    /// A sweep: one session per combination of the --set values (and
    /// --seeds), all in one group, at most --parallel runners at a time
    /// here or a SLURM job array (--slurm); `sweep resume|stop|ls GROUP`.
    Sweep(sweep::SweepArgs),
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
        /// Also benchmark the workload of this run config (e.g. your own
        /// TorchScript model, with its loss names, batch size and dtype);
        /// its intervals are replaced by the bench's, --device applies.
        #[arg(short, long)]
        config: Option<PathBuf>,
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
    fn of(how: &HowToRun) -> Mode {
        match (how.headless, how.detach) {
            (true, _) => Mode::Headless {
                give_up_after: Duration::from_secs(how.give_up_after),
            },
            (false, true) => Mode::Detached,
            (false, false) => Mode::Tui,
        }
    }
}

pub fn dispatch(cli: Cli) -> Result<()> {
    let root = cli.sessions_dir;
    match cli.command {
        None => start(&root, Path::new(DEFAULT_CONFIG), None, None, &[], Mode::Tui),
        Some(Cmd::New { config, name, set }) => start(&root, &config, name, None, &set, Mode::Tui),
        Some(Cmd::Run {
            config,
            name,
            steps,
            set,
            nproc,
            how,
        }) => {
            if let Some(at) = ranks::follower()? {
                return ranks::run_follower(&at, &config, steps, &set);
            }
            let _ranks = match nproc {
                0 => bail!("--nproc must be at least 1"),
                1 => Vec::new(),
                n => ranks::launch_local_ranks(n)?,
            };
            start(&root, &config, name, steps, &set, Mode::of(&how))
        }
        Some(Cmd::Resume { session, set, how }) => resume(&root, &session, &set, Mode::of(&how)),
        Some(Cmd::Fork {
            session,
            at,
            name,
            set,
            how,
        }) => fork::fork(&root, &session, at, name, &set, Mode::of(&how)),
        Some(Cmd::Sweep(args)) => sweep::sweep(&root, args),
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
            config,
            out,
        }) => {
            let config = config
                .map(|path| -> Result<(String, Config)> {
                    let config = load_config(&path)?;
                    Ok((
                        format!("{} ({})", path.display(), config.workload.kind),
                        config,
                    ))
                })
                .transpose()?;
            let report = crate::bench::run(&crate::bench::BenchOptions {
                device,
                steps,
                meta_steps,
                rounds,
                torchscript,
                config,
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
    use super::session_start::EMBEDDED_DEFAULT;
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
