//! Who this process is in a data-parallel job and where the ranks meet,
//! from the variables the usual launchers set: torchrun's (`RANK`,
//! `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`) or SLURM's
//! under `srun` (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, the first
//! node of `SLURM_JOB_NODELIST` as the master).

use anyhow::{bail, Context, Result};
use std::collections::HashMap;
use std::time::Duration;

/// torchrun's default port, used under SLURM when `MASTER_PORT` is unset.
pub const DEFAULT_PORT: u16 = 29500;

/// Which launcher's variables described the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// `RANK` / `WORLD_SIZE` (torchrun, `meltr-tui run --nproc`).
    Torchrun,
    /// `SLURM_PROCID` / `SLURM_NTASKS` (srun).
    Slurm,
}

/// One rank's place in the job.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendezvous {
    pub rank: usize,
    pub world_size: usize,
    /// The rank among this node's processes (picks the GPU).
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
    /// For the rendezvous and every collective.
    pub timeout: Duration,
    pub launcher: Launcher,
}

impl Rendezvous {
    /// From this process's environment; `None` when no launcher set it
    /// (a single process). torchrun's variables win over SLURM's (torchrun
    /// may itself run under srun).
    pub fn from_env(timeout: Duration) -> Result<Option<Self>> {
        let vars: HashMap<String, String> = std::env::vars().collect();
        Self::from_vars(&vars, timeout)
    }

    /// As [`Rendezvous::from_env`], from the given variables.
    pub fn from_vars(vars: &HashMap<String, String>, timeout: Duration) -> Result<Option<Self>> {
        let get = |name: &str| vars.get(name).map(String::as_str);
        let number = |name: &str| -> Result<Option<usize>> {
            get(name)
                .map(|v| {
                    v.trim()
                        .parse::<usize>()
                        .with_context(|| format!("{name}={v:?} is not a whole number"))
                })
                .transpose()
        };
        let port = || -> Result<Option<u16>> {
            get("MASTER_PORT")
                .map(|v| {
                    v.trim()
                        .parse::<u16>()
                        .with_context(|| format!("MASTER_PORT={v:?} is not a port number"))
                })
                .transpose()
        };
        let (launcher, rank, world_size, local_rank, master_addr) = if let (
            Some(rank),
            Some(world),
        ) =
            (number("RANK")?, number("WORLD_SIZE")?)
        {
            let addr = get("MASTER_ADDR").unwrap_or("127.0.0.1").to_string();
            (
                Launcher::Torchrun,
                rank,
                world,
                number("LOCAL_RANK")?.unwrap_or(rank),
                addr,
            )
        } else if let (Some(rank), Some(world)) = (number("SLURM_PROCID")?, number("SLURM_NTASKS")?)
        {
            let addr = match get("MASTER_ADDR") {
                Some(addr) => addr.to_string(),
                None => {
                    let list = get("SLURM_JOB_NODELIST")
                            .or(get("SLURM_NODELIST"))
                            .context("SLURM_PROCID is set but neither MASTER_ADDR nor SLURM_JOB_NODELIST names the master")?;
                    first_node(list)?
                }
            };
            (
                Launcher::Slurm,
                rank,
                world,
                number("SLURM_LOCALID")?.unwrap_or(0),
                addr,
            )
        } else {
            return Ok(None);
        };
        if world_size == 0 || rank >= world_size {
            bail!("rank {rank} does not fit a world of {world_size} processes");
        }
        Ok(Some(Self {
            rank,
            world_size,
            local_rank,
            master_addr,
            master_port: port()?.unwrap_or(DEFAULT_PORT),
            timeout,
            launcher,
        }))
    }

    /// The variables that make a child process this rendezvous's `rank`
    /// (what `--nproc` sets for each local rank, as torchrun does).
    pub fn child_vars(&self, rank: usize) -> Vec<(&'static str, String)> {
        vec![
            ("RANK", rank.to_string()),
            ("WORLD_SIZE", self.world_size.to_string()),
            ("LOCAL_RANK", rank.to_string()),
            ("MASTER_ADDR", self.master_addr.clone()),
            ("MASTER_PORT", self.master_port.to_string()),
        ]
    }
}

impl Rendezvous {
    /// The device this rank trains on, for `train.device = spec` on a node
    /// with `cuda_devices` visible GPUs: `auto` and `cuda` take one GPU a
    /// local rank (`cuda:LOCAL_RANK`, as torchrun's convention) where the
    /// node shows several, and are left alone where it shows one (SLURM's
    /// `--gpus-per-task=1` gives each task its own `cuda:0`) or none; an
    /// explicit `cpu` or `cuda:N` is kept.
    pub fn device_for(&self, spec: &str, cuda_devices: usize) -> String {
        match spec {
            "auto" | "cuda" if cuda_devices > 1 => {
                format!("cuda:{}", self.local_rank % cuda_devices)
            }
            other => other.to_string(),
        }
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it;
/// another process may still take it before the rendezvous does).
pub fn free_local_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port for the ranks to meet at")?
        .port())
}

/// The first host of a SLURM node list: `node07`, `gpu[01-04,09]`,
/// `a[1-2],b3` give `node07`, `gpu01`, `a1`.
pub fn first_node(list: &str) -> Result<String> {
    let list = list.trim();
    let first = match list.find([',', '[']) {
        Some(i) if list.as_bytes()[i] == b',' => &list[..i],
        Some(i) => {
            let close = list[i..]
                .find(']')
                .with_context(|| format!("node list {list:?} has an unclosed '['"))?;
            let inside = &list[i + 1..i + close];
            let first_range = inside.split(',').next().unwrap_or_default();
            let start = first_range.split('-').next().unwrap_or_default();
            return if start.is_empty() {
                bail!("node list {list:?} has an empty range")
            } else {
                Ok(format!("{}{start}", &list[..i]))
            };
        }
        None => list,
    };
    if first.is_empty() {
        bail!("node list {list:?} names no node");
    }
    Ok(first.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn slurm_node_lists_give_their_first_host() {
        assert_eq!(first_node("node07").unwrap(), "node07");
        assert_eq!(first_node("gpu[01-04,09]").unwrap(), "gpu01");
        assert_eq!(first_node("a[1-2],b3").unwrap(), "a1");
        assert_eq!(first_node("c1,c2").unwrap(), "c1");
        assert_eq!(first_node("x-y[003]").unwrap(), "x-y003");
        assert!(first_node("gpu[01-").is_err());
        assert!(first_node("").is_err());
    }

    #[test]
    fn ranks_on_a_node_with_several_gpus_take_one_each() {
        let at = |local_rank| Rendezvous {
            rank: 4 + local_rank,
            world_size: 8,
            local_rank,
            master_addr: "gpu01".into(),
            master_port: DEFAULT_PORT,
            timeout: Duration::from_secs(5),
            launcher: Launcher::Slurm,
        };
        assert_eq!(at(3).device_for("auto", 4), "cuda:3");
        assert_eq!(at(3).device_for("cuda", 4), "cuda:3");
        assert_eq!(at(5).device_for("cuda", 4), "cuda:1");
        // One visible GPU a task (--gpus-per-task=1), or none, or explicit.
        assert_eq!(at(3).device_for("cuda", 1), "cuda");
        assert_eq!(at(3).device_for("auto", 0), "auto");
        assert_eq!(at(3).device_for("cpu", 4), "cpu");
        assert_eq!(at(3).device_for("cuda:2", 4), "cuda:2");
    }

    #[test]
    fn torchrun_and_slurm_variables_describe_the_rank() {
        let t = Duration::from_secs(5);
        assert_eq!(Rendezvous::from_vars(&vars(&[]), t).unwrap(), None);
        let torchrun = vars(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "10.0.0.2"),
            ("MASTER_PORT", "29555"),
            ("SLURM_PROCID", "3"),
            ("SLURM_NTASKS", "8"),
        ]);
        let r = Rendezvous::from_vars(&torchrun, t).unwrap().unwrap();
        assert_eq!(
            (
                r.launcher,
                r.rank,
                r.world_size,
                r.local_rank,
                r.master_addr.as_str(),
                r.master_port
            ),
            (Launcher::Torchrun, 1, 4, 1, "10.0.0.2", 29555)
        );
        let slurm = vars(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_JOB_NODELIST", "gpu[12-15]"),
        ]);
        let r = Rendezvous::from_vars(&slurm, t).unwrap().unwrap();
        assert_eq!(
            (
                r.launcher,
                r.rank,
                r.world_size,
                r.local_rank,
                r.master_addr.as_str(),
                r.master_port
            ),
            (Launcher::Slurm, 5, 8, 1, "gpu12", DEFAULT_PORT)
        );
        let err =
            Rendezvous::from_vars(&vars(&[("RANK", "4"), ("WORLD_SIZE", "4")]), t).unwrap_err();
        assert!(err.to_string().contains("rank 4"), "{err}");
        let err =
            Rendezvous::from_vars(&vars(&[("RANK", "x"), ("WORLD_SIZE", "4")]), t).unwrap_err();
        assert!(err.to_string().contains("RANK=\"x\""), "{err}");
    }
}
