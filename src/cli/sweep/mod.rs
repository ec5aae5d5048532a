//! `sweep`: making a sweep (plan and member configs, see [`crate::sweep`]),
//! driving it on this machine (at most N detached runners at a time, the
//! rest queued), submitting it to SLURM, and resuming, stopping and
//! listing it as a whole.

use super::config_file::load_config;
use super::*;
use crate::sweep::{self, slurm, Axis, Plan, State};

mod drive;
mod table;

use drive::{detach_driver, drive, member, stop};
use table::{ls_members, ls_sweeps};

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
    #[arg(long, value_parser = at_least_one)]
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
        #[arg(long, value_parser = at_least_one)]
        parallel: Option<usize>,
        /// Add these seeds (comma-separated): every combination of the other
        /// keys runs again at each, as new members after the existing ones.
        #[arg(long, value_delimiter = ',', value_name = "S1,S2")]
        seeds: Vec<u64>,
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
            seeds,
            slurm,
            detach,
            sbatch,
        }) => {
            let mut plan = Plan::read(root, &group)?;
            if !seeds.is_empty() {
                add_seeds(root, &mut plan, &seeds)?;
            }
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
        if axes.iter().any(|a| a.key == sweep::SEED_KEY) {
            bail!("seeds given twice: by --seeds and by --set workload.seed=...");
        }
        axes.push(Axis {
            key: sweep::SEED_KEY.into(),
            values: args.seeds.iter().map(ToString::to_string).collect(),
        });
    }
    let group = args.name.unwrap_or_else(|| {
        let stem = config_path
            .file_stem()
            .map_or("sweep".into(), |s| s.to_string_lossy().to_string());
        format!("{stem}-{}", chrono::Local::now().format("%Y%m%d-%H%M%S"))
    });
    let base_text = super::config_file::config_text(&config_path);
    let config_abs = std::fs::canonicalize(&config_path).unwrap_or(config_path);
    let mut plan = Plan::new(&group, &config_abs, axes, args.steps)?;
    plan.parallel = args.parallel.unwrap_or(1).max(1);
    let configs = plan.member_configs(&base)?;
    let (plan, configs, repeats) = plan.without_repeats(configs);
    if let Some(first) = configs.first() {
        // A TorchScript model's loss names and data show only once it runs
        // (walkthrough H: a misspelt loss passed --dry-run, then failed in
        // every member); the built-ins' are known without building them.
        if first.workload.kind == crate::config::WorkloadKind::TorchScript {
            engine::check_builds(first)
                .with_context(|| format!("{}, the sweep's first member", plan.config.display()))?;
        } else {
            engine::preflight(first)?;
        }
    }
    plan.refuse_existing(root)?;
    for note in repeats {
        say_err!("note: {note}");
    }
    if args.dry_run && !args.slurm {
        print_combinations(&plan);
        say!("(dry run: nothing written, nothing started)");
        return Ok(());
    }
    if !args.dry_run {
        plan.create(root, &configs, &base_text)?;
        say!(
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
/// `sweep resume --seeds`: writes the new members' configs (each an
/// existing member's, seed changed, comments kept), then the plan, which
/// makes them members. Refused while a local driver runs: it would not
/// start them, and a second driver is refused anyway.
fn add_seeds(root: &Path, plan: &mut Plan, seeds: &[u64]) -> Result<()> {
    drive::refuse_a_second_driver(root, plan)?;
    let group = plan.group.clone();
    let config_of = |index: usize| -> Result<(Config, String)> {
        let path = sweep::member_config(root, &group, index);
        Ok((load_config(&path)?, super::config_file::config_text(&path)))
    };
    let (first, _) = config_of(0)?;
    let added = plan.add_seeds(seeds, first.workload.seed)?;
    for new in &added {
        let (template, text) = config_of(new.template)?;
        let config = template
            .with_overrides(&[crate::config::Override {
                key: sweep::SEED_KEY.into(),
                value: new.seed.to_string(),
            }])
            .map_err(anyhow::Error::new)?;
        session::atomic_write(
            &sweep::member_config(root, &plan.group, new.member.index),
            crate::config::edit::keep_comments(&config.to_toml_string(), &text).as_bytes(),
        )?;
    }
    plan.write(root)?;
    let combinations = added.len() / seeds.len();
    say!(
        "sweep `{}`: {} members added (seed{} {} for each of {combinations} combination{}); {} in all",
        plan.group,
        added.len(),
        if seeds.len() == 1 { "" } else { "s" },
        seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
        if combinations == 1 { "" } else { "s" },
        plan.members.len()
    );
    Ok(())
}

/// `--parallel`: a count of at least one (0 silently meant 1).
fn at_least_one(text: &str) -> std::result::Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("0 runners would start nothing; at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a count of runners (1, 2, …)")),
    }
}

/// `--parallel` as a SLURM throttle: only when given.
fn plan_parallel(parallel: &Option<usize>) -> usize {
    parallel.unwrap_or(0)
}

fn print_combinations(plan: &Plan) {
    let n = plan.members.len();
    say!(
        "sweep `{}`: {n} combination{} of {}",
        plan.group,
        if n == 1 { "" } else { "s" },
        plan.config.display()
    );
    for m in &plan.members {
        say!(
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
        say!(
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
        say_raw!("{script}");
        say_err!("(dry run: nothing written, nothing submitted)");
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
    say_raw!("{answer}");
    plan.slurm_job = slurm::job_id(&answer);
    plan.write(root)?;
    say!(
        "sweep `{}`: {} array tasks submitted; follow with `{}`",
        plan.group,
        indices.len(),
        crate::session::command_for(&root.join(&plan.group), "sweep ls")
    );
    Ok(())
}
