//! The command line: argument definitions (clap) and what each subcommand does.
//!
//! Long: every subcommand's arguments with their `--help` text in one
//! place; what each does lives in the submodules it dispatches to.

use crate::config::Config;
use crate::engine::{self, control::Command, control::Event, control::Status};
use crate::session::{self, metrics::Record, SessionDir, SessionMeta};
use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

mod arg_checks;
mod closed_pipe;
mod config_file;
mod doctor;
mod fork;
mod headless;
mod list;
mod live_runner;
mod paper;
mod ranks;
mod session_start;
mod sweep;

use crate::runs::filter::Where;
use config_file::load_config;
use headless::run_headless;
use list::ls;
use session_start::{attach, discard_unstarted, resume, start, Origin};

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
With no command, opens a new session of configs/default.toml in the TUI: the file in this folder if there is one, \
else the copy built into the binary (the built-in video-text workload, about a minute on a CPU)."
)]
pub struct Cli {
    /// Where sessions live.
    #[arg(
        long,
        global = true,
        env = "MELTR_SESSIONS",
        default_value = crate::session::DEFAULT_ROOT
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
    /// 130 after Ctrl-C (SIGINT), 143 after SIGTERM, 129 after SIGHUP (a
    /// dropped SSH connection; all three stop after the current step, with
    /// a checkpoint; `--detach` keeps training instead).
    #[arg(long, conflicts_with = "detach")]
    headless: bool,
    /// With --headless: how long to keep retrying a write that fails (a
    /// full disk), with backoff, before stopping the run as failed
    /// [default: 600]. A runner (the TUI's, --detach) pauses instead, for
    /// `attach` to resume.
    // Checked in `Mode::of`: `requires = "headless"` passes whatever the
    // command line, a flag being always set (to false by default), and
    // `--detach --give-up-after 5` was accepted and did nothing.
    #[arg(long, value_name = "SECS")]
    give_up_after: Option<u64>,
    /// Start (or continue in) a detached runner, its own process immune to
    /// hang-ups, and return once it trains (the built-in workload's first
    /// use pretrains its foundation model first, minutes: its progress is
    /// shown, and `attach` meanwhile says it is setting up); `meltr-tui
    /// attach` opens the TUI on it.
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
        /// Session name (default: the config file's stem).
        #[arg(short, long, value_parser = arg_checks::session_name)]
        name: Option<String>,
        /// Override train.steps.
        #[arg(long, allow_negative_numbers = true)]
        steps: Option<u64>,
        /// Set a config key (repeatable): KEY=VALUE, VALUE a TOML literal or
        /// a bare word (e.g. --set aid.iterations=3 --set combiner.kind=sum).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<crate::config::Override>,
        /// Put the session in this group (see `ls --group`, `table --group`;
        /// `none`: in no group, as with no --group).
        #[arg(long, value_parser = arg_checks::group_name)]
        group: Option<String>,
    },
    /// Start a new session from CONFIG: in the TUI (as `new`), or with
    /// --headless in this terminal, or with --detach in a runner of its own.
    Run {
        /// The run's config file (TOML; e.g. configs/default.toml).
        #[arg(short, long)]
        config: PathBuf,
        /// Session name (default: the config file's stem).
        #[arg(short, long, value_parser = arg_checks::session_name)]
        name: Option<String>,
        /// Override train.steps.
        #[arg(long, allow_negative_numbers = true)]
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
        /// Put the session in this group (see `ls --group`, `table --group`;
        /// `none`: in no group, as with no --group).
        #[arg(long, value_parser = arg_checks::group_name)]
        group: Option<String>,
        #[command(flatten)]
        how: HowToRun,
    },
    /// Continue a session from its newest checkpoint.
    Resume {
        /// The session (its id, a unique part of it, or its folder).
        session: String,
        /// Change a live key before continuing (repeatable): KEY=VALUE,
        /// written into the session's config.toml. Restart-only keys
        /// (workload, sizes, device, dtype, combiner kind, meltr.init, …)
        /// are refused.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<crate::config::Override>,
        /// Continue data-parallel in N processes on this machine, whatever
        /// the number of ranks the session trained with (see `run --nproc`).
        /// Needed for a session that trained on several ranks (MELTR's
        /// outcome depends on their number), unless under torchrun or srun.
        #[arg(long, value_name = "N")]
        nproc: Option<usize>,
        #[command(flatten)]
        how: HowToRun,
    },
    /// Start a new session from a session's checkpoint (θ, φ, both
    /// optimizers, data position): same group, recording its parent and
    /// fork step; `--set` changes live keys from there on.
    Fork {
        /// The session (its id, a unique part of it, or its folder).
        session: String,
        /// The checkpoint step to start from (default: the newest).
        #[arg(long, allow_negative_numbers = true)]
        at: Option<u64>,
        /// Name of the new session (default: `<parent name>-fork`, then `-fork-2`, … when taken).
        #[arg(short, long, value_parser = arg_checks::session_name)]
        name: Option<String>,
        /// The fork's group (default: the parent's; `none` for none, so an
        /// exploratory fork stays out of a sweep's table and figures).
        #[arg(long)]
        group: Option<String>,
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
    /// Open the TUI on a session (default: the newest running one, else the
    /// newest): live when its runner is alive, else its history. `q`
    /// detaches; the run goes on.
    Attach {
        /// The session: its id, a unique part of it, its name or its folder
        /// (default: the newest running one, else the newest).
        session: Option<String>,
    },
    /// Stop running sessions cleanly (a checkpoint first, as `q` then `s`
    /// in the TUI); `resume` continues them.
    Stop {
        /// The sessions (each its id, a unique part of it, or its folder).
        #[arg(required = true)]
        sessions: Vec<String>,
    },
    /// List sessions: id, status, step, primary metric, device, runner,
    /// group, and the config keys whose values differ between the listed
    /// sessions (a diff view; of a single one listed, those that differ in
    /// the sessions folder), and any a run changed while it trained (`*`).
    Ls {
        #[command(flatten)]
        select: Select,
        /// Order: id (oldest first), metric (final primary metric, best
        /// first, by each session's higher_is_better) or best (the best
        /// primary metric over the run).
        #[arg(long, value_enum, default_value = "id")]
        sort: crate::runs::SortBy,
        /// Print a JSON array, one object a session with every field and its
        /// whole config by dotted key.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV, one row a session, every config key a column.
        #[arg(long)]
        csv: bool,
    },
    /// The final (or best) eval metrics of groups of sessions as mean ± std
    /// with n: Markdown, CSV or LaTeX (booktabs). Sessions that differ only
    /// by workload.seed form one group, unless --group-by says otherwise.
    Table {
        /// Sessions (ids, parts of ids, or folders); default: every session
        /// that --group and --where select.
        sessions: Vec<String>,
        #[command(flatten)]
        select: Select,
        /// Group by the values of this key instead of by seed (repeatable).
        #[arg(long, value_name = "KEY")]
        group_by: Vec<String>,
        /// Each session's eval with its best primary metric, not its last.
        #[arg(long)]
        best: bool,
        /// Each session as it stood at this step: its eval there (or its last
        /// before it, in a note), with --best its best up to it; weights,
        /// shares and losses up to it. A session not there yet is an error.
        #[arg(long, value_name = "STEP", allow_negative_numbers = true)]
        at_step: Option<u64>,
        #[arg(long, value_enum, default_value = "md")]
        format: crate::runs::table::TableFormat,
        /// Eval metrics to show (repeatable; default: all, primary first;
        /// `recall@1` or `eval/recall@1`); also `eval_loss/<loss>` (a
        /// validation loss), `loss/<loss>`, `weight/<loss>` and
        /// `share/<loss>` (final training loss, effective weight, gradient share: the mean of the values logged in the last 10% of steps, the last 10 lines or those of the last 100 steps when more; the weight's median, as one line's weight can spike).
        #[arg(long = "metric", value_name = "NAME")]
        metrics: Vec<String>,
        /// Decimals (default: each mean ± std to two significant digits of
        /// its std, and at least two decimals (`69.67 ± 2.66`, `1.269 ±
        /// 0.011`); a single run at its column's coarsest, or four
        /// significant digits of the largest mean when no row has a std).
        #[arg(long, allow_negative_numbers = true)]
        digits: Option<usize>,
        /// Write the table to this file instead of the terminal (its
        /// folder made; "wrote FILE" on stderr).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Rename a value in a key's column, as `KEY=VALUE=TEXT` with KEY
        /// as the header names it (`--label 'kind=meltr=MELTR'`), or a
        /// column's header, a key's or a metric's, as `KEY=TEXT` (`--label
        /// kind=Method`, `--label 'R@1=Recall@1 (k=1)'`: a metric's TEXT may
        /// hold `=`, a key column's not); repeatable. In
        /// LaTeX, `$…$` in TEXT is kept as math (`'kind=meltr=MELTR
        /// ($\gamma=0.1$)'`), the rest escaped.
        #[arg(long, value_name = "KEY=VALUE=TEXT|KEY=TEXT")]
        label: Vec<String>,
    },
    /// Write a session's figures (losses, primary metric, weights, final
    /// weights, transforms) into <session>/plots or --out; or its log as a
    /// tidy CSV (<out>/<id>.csv) or TensorBoard event files
    /// (<out>/<id>/events.out.tfevents.*), or its fine-tuned TorchScript
    /// module (<out>/<id>-step-N.pt), by default in <session>/export.
    Export(paper::ExportArgs),
    /// Overlay one metric of several sessions in one figure (format from
    /// -o's extension). Sessions that differ only by workload.seed are drawn
    /// as one curve, their mean, with a band (± std, or min–max).
    Compare {
        /// Sessions (ids, parts of ids, or folders); default: every session
        /// that --group and --where select.
        sessions: Vec<String>,
        #[command(flatten)]
        select: Select,
        /// The figure file; its extension picks the format (svg, png, pdf).
        #[arg(short, long)]
        output: PathBuf,
        /// An eval metric or a training loss (default: the primary metric);
        /// also `loss/<loss>`, `weight/<loss>`, `share/<loss>` (weight, gradient share),
        /// `total` (the combined loss M(l)), `lr`, `meta/hypergrad_norm`, `meta/reg`.
        #[arg(long)]
        metric: Option<String>,
        /// paper (single column), paper-wide (double column) or slides.
        #[arg(long, default_value = "paper")]
        style: crate::plot::Style,
        /// Group by the values of this key instead of by seed (repeatable).
        #[arg(long, value_name = "KEY")]
        group_by: Vec<String>,
        /// The band around a group's mean: std (± one sample std, within the members' range), minmax or none.
        #[arg(long, value_enum, default_value = "std")]
        band: crate::plot::Band,
        /// A log y axis (values ≤ 0 are left out).
        #[arg(long)]
        log_scale: bool,
        /// Rename a group in the legend, as `LABEL=TEXT` with LABEL as the command prints it
        /// (`--label 'kind=meltr=MELTR'`; repeatable); of sessions drawn one by one, `NAME=TEXT`
        /// shows TEXT after a session's name in place of its settings.
        #[arg(long, value_name = "LABEL=TEXT")]
        label: Vec<String>,
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
    /// Check a config and its model without training: builds the run as
    /// `run` would before its first step (a TorchScript model's forward on
    /// the first training batch, its loss names, the data files, the
    /// device, the combiner) in a scratch folder, then says what the run
    /// would train, or what to fix.
    Check {
        /// The config file (TOML).
        #[arg(short, long)]
        config: PathBuf,
        /// Set a config key (repeatable), as `run --set` does.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<crate::config::Override>,
        /// Check every loss is finite on the first N training batches (forwards only), not only the
        /// first, and with N > 1 evaluate the validation split once: a loss NaN on some batches (a mean
        /// over no labelled rows), or a non-finite primary metric, fails the check.
        #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        batches: u64,
    },
    /// Time inner and meta steps (primary, sum, meltr; exact AID at J = 0,
    /// factorized at J = 0, 1, 3), peak memory, phases and throughput; prints ratios.
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
        /// Timed rounds per measurement, interleaved; the median is reported.
        #[arg(long, default_value_t = 10)]
        rounds: u32,
        /// Folder with model.pt and train/val.safetensors (e.g. the example
        /// exporter's output), run with the example's config; the first loss
        /// the model returns is the primary (--config chooses).
        #[arg(long)]
        torchscript: Option<PathBuf>,
        /// Also benchmark this run config's workload (e.g. your own model,
        /// its losses, batch size, dtype); --device applies.
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Skip the built-in video-text model (needs --torchscript or -c).
        #[arg(long)]
        no_builtin: bool,
        /// Also write the report to this file.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The detached runner process itself (by `run --detach`, `new`, the TUI; not for direct use).
    #[command(name = "__runner", hide = true)]
    Runner {
        dir: PathBuf,
        #[arg(long)]
        resume: bool,
    },
}

/// Which sessions a listing, table or comparison takes.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Select {
    /// Only sessions of this group (repeatable: of any of them, e.g. two
    /// sweeps in one table; `none`: those in no group).
    #[arg(long = "group", value_name = "G")]
    groups: Vec<String>,
    /// Only sessions where KEY=VALUE (repeatable: every key must hold; a
    /// key given twice, or KEY=V1,V2, holds for either value): a dotted
    /// config key (combiner.kind=meltr,sum; aid.iterations=1) or status,
    /// group, name, id, ranks (status=finished); VALUE `-` holds where the
    /// session lacks the key or never reads it, as listings show `-` and `–`
    /// (meltr.init=residual,- adds the sum and primary runs).
    #[arg(long = "where", value_name = "KEY=VALUE")]
    conditions: Vec<Where>,
}

impl Select {
    fn filter(&self) -> crate::runs::filter::Filter {
        crate::runs::filter::Filter {
            groups: self.groups.clone(),
            conditions: self.conditions.clone(),
        }
    }
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
    fn of(how: &HowToRun) -> Result<Mode> {
        if how.give_up_after.is_some() && !how.headless {
            bail!(
                "--give-up-after needs --headless: a runner (the TUI's, or --detach) pauses on a failed write \
                 instead of giving up; `meltr-tui attach` then shows why, and `p` resumes it"
            );
        }
        Ok(match (how.headless, how.detach) {
            (true, _) => Mode::Headless {
                give_up_after: Duration::from_secs(how.give_up_after.unwrap_or(600)),
            },
            (false, true) => Mode::Detached,
            (false, false) => Mode::Tui,
        })
    }

    /// Whether the run goes on in a runner process (with or without the TUI).
    fn detached(self) -> bool {
        !matches!(self, Mode::Headless { .. })
    }
}

pub fn dispatch(cli: Cli) -> Result<()> {
    let root = cli.sessions_dir;
    match cli.command {
        None => start(
            &root,
            Path::new(DEFAULT_CONFIG),
            None,
            None,
            &[],
            None,
            Mode::Tui,
        ),
        Some(Cmd::New {
            config,
            name,
            steps,
            set,
            group,
        }) => start(&root, &config, name, steps, &set, group, Mode::Tui),
        Some(Cmd::Run {
            config,
            name,
            steps,
            set,
            nproc,
            group,
            how,
        }) => {
            let mode = Mode::of(&how)?;
            if let Some(at) = ranks::follower()? {
                let config = config_file::configured(&config, steps, &set)?;
                return ranks::run_follower(&at, config);
            }
            let _ranks = match nproc {
                0 => bail!("--nproc must be at least 1"),
                1 => Vec::new(),
                n => ranks::check_then_launch(&config, steps, &set, (n, mode.detached()))?,
            };
            start(&root, &config, name, steps, &set, group, mode)
        }
        Some(Cmd::Resume {
            session,
            set,
            nproc,
            how,
        }) => live_runner::resume_command(&root, &session, &set, nproc, Mode::of(&how)?),
        Some(Cmd::Fork {
            session,
            at,
            name,
            group,
            set,
            how,
        }) => fork::fork(&root, &session, at, name, group, &set, Mode::of(&how)?),
        Some(Cmd::Sweep(args)) => sweep::sweep(&root, args),
        Some(Cmd::Attach { session }) => {
            let dir = match session {
                Some(query) => session::find(&root, &query)?,
                None => session::latest(&root)?,
            };
            attach(&dir)
        }
        Some(Cmd::Stop { sessions }) => live_runner::stop_command(&root, &sessions),
        Some(Cmd::Runner { dir, resume }) => match crate::runner::serve::serve(&dir, resume)? {
            Status::Failed => bail!("the run failed (see session.json)"),
            _ => Ok(()),
        },
        Some(Cmd::Ls {
            select,
            sort,
            json,
            csv,
        }) => {
            let output = match (json, csv) {
                (true, _) => list::Output::Json,
                (_, true) => list::Output::Csv,
                _ => list::Output::Text,
            };
            ls(&root, &select.filter(), sort, output)
        }
        Some(Cmd::Table {
            sessions,
            select,
            group_by,
            best,
            at_step,
            format,
            metrics,
            digits,
            output,
            label,
        }) => {
            let opts = crate::runs::table::TableOptions {
                format,
                best,
                at_step,
                metrics,
                digits,
                // Header renames come with the groups: `--label` is a header's or a cell's.
                ..Default::default()
            };
            paper::table(
                &root,
                &sessions,
                &select.filter(),
                (&group_by, &label),
                &opts,
                output.as_deref(),
            )
        }
        Some(Cmd::Export(args)) => paper::export_command(&root, args),
        Some(Cmd::Compare {
            sessions,
            select,
            output,
            metric,
            style,
            group_by,
            band,
            log_scale,
            label,
        }) => {
            let what = paper::CompareArgs {
                metric: metric.as_deref(),
                style,
                group_by: &group_by,
                band,
                log_scale,
                renames: &label,
            };
            paper::compare(&root, &sessions, &select.filter(), &output, &what)
        }
        Some(Cmd::Doctor) => doctor::doctor(),
        Some(Cmd::Check {
            config,
            set,
            batches,
        }) => doctor::check(&config, &set, batches),
        Some(Cmd::Bench {
            device,
            steps,
            meta_steps,
            rounds,
            torchscript,
            config,
            no_builtin,
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
                builtin: !no_builtin,
            })?;
            say_raw!("{report}");
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
                say!(
                    "pretrain step {step:>5}/{steps}  summed loss {loss:.4}  ({:.0} s)",
                    start.elapsed().as_secs_f64()
                );
            })?;
            say!("wrote {}", out.display());
            Ok(())
        }
    }
}
