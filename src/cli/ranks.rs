//! Several ranks of one run: `run --nproc N` starts N − 1 more processes of
//! this binary on this machine (as torchrun would: `RANK`, `WORLD_SIZE`,
//! `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`) and becomes rank 0 itself;
//! and a process that a launcher (torchrun, srun, `--nproc`) made a rank
//! other than 0 trains as a follower, in a throwaway session folder, so
//! that rank 0 alone writes the session.

use super::*;
use crate::dist::Rendezvous;

/// The launcher's rendezvous, if any. Its timeout is a placeholder: the
/// engine joins with `train.collective_timeout_s` of the run's config.
pub(super) fn launched() -> Result<Option<Rendezvous>> {
    Rendezvous::from_env(crate::config::TrainConfig::default().collective_timeout())
}

/// Whether this process is a rank other than 0 of a data-parallel run.
pub(super) fn follower() -> Result<Option<Rendezvous>> {
    Ok(launched()?.filter(|at| at.world_size > 1 && at.rank > 0))
}

/// Trains as rank `at.rank` of the run `config` describes: headless, its
/// session folder in a temporary directory removed at the end; progress
/// lines are left to rank 0, which also decides when to stop (a SIGINT or
/// SIGTERM here waits for rank 0's order, which the same signal usually
/// brings) and sends its config in force, live changes included.
pub(super) fn run_follower(at: &Rendezvous, config: Config) -> Result<()> {
    crate::process::stop_on_signals();
    let scratch =
        std::env::temp_dir().join(format!("meltr-tui-rank{}-{}", at.rank, std::process::id()));
    std::fs::create_dir_all(&scratch).with_context(|| {
        format!(
            "a scratch folder for rank {}: {}",
            at.rank,
            scratch.display()
        )
    })?;
    let result = (|| {
        let dir = session::create(&scratch, &format!("rank{}", at.rank), &config)?;
        let handle = engine::spawn(&dir, config, false)?;
        handle
            .thread
            .join()
            .map_err(|_| anyhow::anyhow!("the trainer panicked"))?
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    let status = result.with_context(|| format!("rank {} of {}", at.rank, at.world_size))?;
    match status {
        Status::Finished | Status::Stopped => Ok(()),
        other => bail!(
            "rank {} of {} ended {}",
            at.rank,
            at.world_size,
            other.as_str()
        ),
    }
}

/// A follower's config for `resume SESSION`: the session's (rank 0 sends
/// its own, `--set` included, before the first step).
pub(super) fn resumed_config(root: &Path, query: &str) -> Result<Config> {
    let dir = session::find(root, query)?;
    engine::trainer::session_config(&dir).map_err(anyhow::Error::new)
}

/// `run --nproc N`: refuses, before any rank starts, a config that cannot
/// train on N ranks (which `start` would refuse on rank 0 only after the
/// others were started and left waiting), then launches them.
pub(super) fn check_then_launch(
    config_path: &Path,
    steps: Option<u64>,
    overrides: &[crate::config::Override],
    (nproc, detached): (usize, bool),
) -> Result<Vec<std::process::Child>> {
    let config = config_file::configured(config_path, steps, overrides)?;
    let checked = engine::batch_splits(config.workload.batch_size, nproc)
        .and_then(|()| engine::preflight(&config));
    config_file::in_file(checked, config_path, overrides)?;
    launch_local_ranks(nproc, detached)
}

/// `--nproc N`: makes this process rank 0 of N on 127.0.0.1 and starts
/// ranks 1..N as headless copies of this command (`--nproc` taken out).
/// Returns the children (their progress lines are dropped). Their errors
/// go to this process's stderr, or, beside a `detached` rank 0 (a runner,
/// with or without the TUI), to `rank-K.log` files in the temporary
/// folder, the ranks in their own process sessions as the runner is: a
/// dropped SSH connection would have ended them, and their inherited
/// stderr held a caller's `$(… 2>&1)` open until the run ended (a
/// walkthrough).
pub(super) fn launch_local_ranks(nproc: usize, detached: bool) -> Result<Vec<std::process::Child>> {
    if launched()?.is_some() {
        bail!("--nproc starts its own ranks: do not combine it with torchrun's or SLURM's variables (RANK, SLURM_PROCID)");
    }
    let port = crate::dist::rendezvous::free_local_port()?;
    let at = Rendezvous {
        rank: 0,
        world_size: nproc,
        local_rank: 0,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        timeout: crate::config::TrainConfig::default().collective_timeout(),
        launcher: crate::dist::rendezvous::Launcher::Torchrun,
    };
    let args = child_args(std::env::args().skip(1).collect());
    let exe = std::env::current_exe().context("this program's path")?;
    let mut children = Vec::new();
    for rank in 1..nproc {
        let mut command = std::process::Command::new(&exe);
        command
            .args(&args)
            .envs(at.child_vars(rank))
            .stdout(std::process::Stdio::null());
        if detached {
            let log = std::env::temp_dir().join(format!("meltr-tui-port{port}-rank-{rank}.log"));
            let file = std::fs::File::create(&log)
                .with_context(|| format!("rank {rank}'s log {}", log.display()))?;
            command.stdin(std::process::Stdio::null()).stderr(file);
            crate::process::detach_from_terminal(&mut command);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting rank {rank} ({})", exe.display()))?;
        children.push(child);
    }
    // This process (and the runner it may start) is rank 0.
    for (name, value) in at.child_vars(0) {
        std::env::set_var(name, value);
    }
    Ok(children)
}

/// This command's arguments for a follower: without `--nproc N`,
/// `--detach` or `--headless`, then `--headless`.
fn child_args(args: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip_value = false;
    for arg in args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        match arg.as_str() {
            "--nproc" => skip_value = true,
            "--detach" | "--headless" => {}
            a if a.starts_with("--nproc=") => {}
            _ => out.push(arg),
        }
    }
    out.push("--headless".into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_run_the_same_command_headless_without_nproc() {
        let args = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(
            child_args(args("run -c a.toml --nproc 2 --detach --set x=1")),
            args("run -c a.toml --set x=1 --headless")
        );
        assert_eq!(
            child_args(args("run --nproc=4 -c a.toml --headless")),
            args("run -c a.toml --headless")
        );
    }
}
