//! Sweeps: the cartesian product of a few config keys' values (and seeds),
//! one session per combination, all in one group.
//!
//! A sweep lives beside its sessions, in `SESSIONS/<group>.sweep/`:
//!
//! ```text
//! <group>.sweep/
//!   plan.json        the group, the axes, one entry per member (index,
//!                    session name, its key=value settings)
//!   configs/NNN.toml member NNN's whole config (base config + settings),
//!                    written before any member starts
//!   driver.pid       the local driver while it runs (`sweep stop` ends it)
//!   sbatch.sh        with --slurm: the array script (task i runs member i)
//!   slurm-*.out      with --slurm: each array task's output
//! ```
//!
//! A member's session is found by its group and name (`<group>-NNN`), not
//! recorded in the plan: a driver, `sweep member` on a cluster node and a
//! user's `resume` never write the same file. Everything here is plain
//! data and files; starting runners is the CLI's (`cli::sweep`).

mod repeats;
mod seeds;
pub mod slurm;

pub use seeds::{AddedMember, SEED_KEY};

use crate::config::{Config, Override};
use crate::session::{self, SessionMeta, Status};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One swept key and the values it takes, as typed (`aid.iterations`,
/// `["0", "1", "3"]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Axis {
    pub key: String,
    pub values: Vec<String>,
}

impl Axis {
    /// From one `--set KEY=V1,V2,...` (commas inside brackets or quotes
    /// belong to the value: `workload.auxiliary=["a","b"]` is one value).
    pub fn parse(arg: &str) -> Result<Axis> {
        let o: Override = arg
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--set: {e}"))?;
        let values = split_top_level(&o.value);
        if values.iter().any(String::is_empty) {
            bail!("--set {arg}: an empty value in the list (expected KEY=V1,V2,...)");
        }
        // Relative paths from here: members may run from anywhere.
        let values = values
            .iter()
            .map(|v| crate::config::anchor_path(&o.key, v))
            .collect();
        Ok(Axis { key: o.key, values })
    }
}

/// `text` split at commas outside brackets and quotes, each part trimmed.
fn split_top_level(text: &str) -> Vec<String> {
    let (mut parts, mut current, mut depth, mut quote) = (Vec::new(), String::new(), 0i32, None);
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(current.trim().to_string());
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current.trim().to_string());
    parts
}

/// One combination: its index, its session's name and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub index: usize,
    /// The session's name (`<group>-NNN`); with the group, it finds the session.
    pub name: String,
    /// `key=value` for every axis, in axis order.
    pub settings: Vec<(String, String)>,
}

impl Member {
    /// The settings as `--set` overrides.
    pub fn overrides(&self) -> Vec<Override> {
        self.settings
            .iter()
            .map(|(key, value)| Override {
                key: key.clone(),
                value: value.clone(),
            })
            .collect()
    }

    /// `key=value key=value` of the settings whose key is in `keys` (all
    /// of them when `keys` is empty: a sweep of one combination).
    pub fn label(&self, keys: &[&str]) -> String {
        self.settings
            .iter()
            .filter(|(k, _)| keys.is_empty() || keys.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `plan.json`: what a sweep is, written once when it is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub group: String,
    /// The base config file it was made from, for the record.
    pub config: PathBuf,
    pub axes: Vec<Axis>,
    /// `--steps`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    /// Runners at a time on this machine (`--parallel`).
    pub parallel: usize,
    pub members: Vec<Member>,
    /// RFC 3339.
    pub created: String,
    /// The SLURM job the sweep was submitted as, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm_job: Option<String>,
}

impl Plan {
    /// Every combination of the axes' values, the first axis outermost.
    pub fn new(group: &str, config: &Path, axes: Vec<Axis>, steps: Option<u64>) -> Result<Plan> {
        check_group_name(group)?;
        let mut seen = std::collections::BTreeSet::new();
        for axis in &axes {
            if !seen.insert(axis.key.as_str()) {
                bail!(
                    "key `{}` is swept twice (give its values in one --set, comma-separated)",
                    axis.key
                );
            }
            // Numbers by value: `0.003` and `3e-3` are one learning rate.
            let mut values = std::collections::BTreeMap::new();
            for value in &axis.values {
                // Whole numbers exactly (seeds past 2^53 are not one f64).
                let trimmed = value.trim();
                let read = match (trimmed.parse::<i128>(), trimmed.parse::<f64>()) {
                    (Ok(whole), _) => whole.to_string(),
                    (_, Ok(number)) => number.to_string(),
                    _ => value.clone(),
                };
                if let Some(first) = values.insert(read, value) {
                    let twice = match first == value {
                        true => format!("the value `{value}` twice"),
                        false => format!("`{first}` and `{value}`, one value"),
                    };
                    bail!(
                        "key `{}` lists {twice}: its runs would repeat each other",
                        axis.key
                    );
                }
            }
        }
        let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
        for axis in &axes {
            combos = combos
                .into_iter()
                .flat_map(|combo| {
                    axis.values.iter().map(move |v| {
                        let mut next = combo.clone();
                        next.push((axis.key.clone(), v.clone()));
                        next
                    })
                })
                .collect();
        }
        let width = combos.len().saturating_sub(1).to_string().len().max(3);
        let members = combos
            .into_iter()
            .enumerate()
            .map(|(index, settings)| Member {
                index,
                name: format!("{group}-{index:0width$}"),
                settings,
            })
            .collect();
        Ok(Plan {
            group: group.to_string(),
            config: config.to_path_buf(),
            axes,
            steps,
            parallel: 1,
            members,
            created: chrono::Local::now().to_rfc3339(),
            slurm_job: None,
        })
    }

    /// The keys that take more than one value (what tells members apart).
    pub fn varying_keys(&self) -> Vec<&str> {
        self.axes
            .iter()
            .filter(|a| a.values.len() > 1)
            .map(|a| a.key.as_str())
            .collect()
    }

    /// Each member's config: `base` with `steps` and its settings, checked
    /// as a config file is (the first bad one is an error naming the member
    /// and the key).
    pub fn member_configs(&self, base: &Config) -> Result<Vec<Config>> {
        let mut base = base.clone();
        if let Some(steps) = self.steps {
            base.train.steps = steps;
            base.validate().map_err(anyhow::Error::new)?;
        }
        self.members
            .iter()
            .map(|m| {
                base.with_overrides(&m.overrides()).map_err(|e| {
                    anyhow::anyhow!(
                        "combination {} ({}): {e}",
                        m.index,
                        m.label(&self.varying_keys())
                    )
                })
            })
            .collect()
    }

    /// Writes the sweep's folder under `root`: `plan.json` and every
    /// member's config, written over `base_text` (the base config file's
    /// text: its comments stay, see [`crate::config::edit::keep_comments`]).
    /// Refuses a group whose folder exists.
    pub fn create(&self, root: &Path, configs: &[Config], base_text: &str) -> Result<()> {
        self.refuse_existing(root)?;
        let folder = folder(root, &self.group);
        let configs_dir = folder.join("configs");
        std::fs::create_dir_all(&configs_dir)
            .with_context(|| format!("cannot create {}", configs_dir.display()))?;
        for (member, config) in self.members.iter().zip(configs) {
            session::atomic_write(
                &member_config(root, &self.group, member.index),
                crate::config::edit::keep_comments(&config.to_toml_string(), base_text).as_bytes(),
            )?;
        }
        self.write(root)
    }

    /// Fails when a sweep of this name exists under `root`.
    pub fn refuse_existing(&self, root: &Path) -> Result<()> {
        let folder = folder(root, &self.group);
        if folder.exists() {
            bail!(
                "sweep `{}` exists ({}); continue it with `meltr-tui sweep resume {}` or pick another --name",
                self.group,
                folder.display(),
                self.group
            );
        }
        Ok(())
    }

    /// (Re)writes `plan.json`.
    pub fn write(&self, root: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).context("cannot write the sweep plan")?;
        session::atomic_write(
            &folder(root, &self.group).join("plan.json"),
            text.as_bytes(),
        )
    }

    /// Reads the plan of sweep `group` under `root`.
    pub fn read(root: &Path, group: &str) -> Result<Plan> {
        let path = folder(root, group).join("plan.json");
        if !path.exists() {
            let known = list(root);
            bail!(
                "no sweep `{group}` in {}{}",
                root.display(),
                if known.is_empty() {
                    String::new()
                } else {
                    format!("; sweeps there: {}", known.join(", "))
                }
            );
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a sweep plan", path.display()))
    }
}

/// A group name must make a file name and a SLURM job name.
fn check_group_name(group: &str) -> Result<()> {
    if group.is_empty()
        || !group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || group.starts_with('.')
    {
        bail!("sweep name `{group}`: use letters, digits, `-`, `_` and `.` only (not first)");
    }
    if group == "none" {
        bail!("sweep name `none`: `none` means no group (as in `fork --group none`); name it otherwise");
    }
    Ok(())
}

/// `SESSIONS/<group>.sweep/`.
pub fn folder(root: &Path, group: &str) -> PathBuf {
    root.join(format!("{group}.sweep"))
}

/// Member `index`'s config file.
pub fn member_config(root: &Path, group: &str, index: usize) -> PathBuf {
    folder(root, group)
        .join("configs")
        .join(format!("{index:03}.toml"))
}

/// The sweeps under `root`, by name.
pub fn list(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("plan.json").is_file())
        .filter_map(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_suffix(".sweep")
                .map(String::from)
        })
        .collect();
    out.sort();
    out
}

/// Where a member stands.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// No session yet.
    NotStarted,
    /// A live process runs it.
    Running { dir: PathBuf, meta: SessionMeta },
    /// Ended (finished, stopped or failed), or crashed: its status says it
    /// runs but its process is gone.
    Ended {
        dir: PathBuf,
        meta: SessionMeta,
        crashed: bool,
    },
}

impl State {
    /// `not started`, `running`, `finished`, `stopped`, `failed`, `crashed`.
    pub fn label(&self) -> &'static str {
        match self {
            State::NotStarted => "queued",
            State::Running { .. } => "running",
            State::Ended { crashed: true, .. } => "crashed",
            State::Ended { meta, .. } => meta.status.as_str(),
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self, State::Ended { meta, .. } if meta.status == Status::Finished)
    }

    /// The session folder, once there is one.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            State::NotStarted => None,
            State::Running { dir, .. } | State::Ended { dir, .. } => Some(dir),
        }
    }
}

/// Each member's state, from the sessions under `root` (one listing).
pub fn states(root: &Path, plan: &Plan) -> Vec<State> {
    let sessions: Vec<(PathBuf, SessionMeta)> = session::list(root)
        .into_iter()
        .filter(|(_, m)| m.group.as_deref() == Some(plan.group.as_str()))
        .collect();
    plan.members
        .iter()
        .map(|member| {
            // The newest, should a member have been started twice.
            let Some((dir, meta)) = sessions.iter().rev().find(|(_, m)| m.name == member.name)
            else {
                return State::NotStarted;
            };
            let (dir, meta) = (dir.clone(), meta.clone());
            if meta.status.is_terminal() {
                State::Ended {
                    dir,
                    meta,
                    crashed: false,
                }
            } else if meta.runner_alive() {
                State::Running { dir, meta }
            } else {
                State::Ended {
                    dir,
                    meta,
                    crashed: true,
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_product_runs_first_axis_outermost_and_lists_split_at_top_level_commas() {
        let axes = vec![
            Axis::parse("aid.iterations=0,1,3").unwrap(),
            Axis::parse("combiner.kind=meltr, sum").unwrap(),
            Axis::parse("workload.auxiliary=[\"helpful\",\"harmful\"],[\"helpful\"]").unwrap(),
        ];
        assert_eq!(axes[1].values, vec!["meltr", "sum"]);
        assert_eq!(
            axes[2].values,
            vec!["[\"helpful\",\"harmful\"]", "[\"helpful\"]"]
        );
        let plan = Plan::new("abl", Path::new("c.toml"), axes, Some(20)).unwrap();
        assert_eq!(plan.members.len(), 12);
        assert_eq!(plan.members[0].name, "abl-000");
        let labels: Vec<String> = plan.members[..3]
            .iter()
            .map(|m| m.label(&["aid.iterations", "combiner.kind"]))
            .collect();
        assert_eq!(
            labels,
            ["aid.iterations=0 combiner.kind=meltr"; 2]
                .into_iter()
                .map(String::from)
                .chain(["aid.iterations=0 combiner.kind=sum".to_string()])
                .collect::<Vec<_>>()
        );
        assert_eq!(
            plan.members[11].label(&["aid.iterations"]),
            "aid.iterations=3"
        );
        let configs = plan.member_configs(&Config::default()).unwrap();
        assert_eq!(configs[11].aid.iterations, 3);
        assert_eq!(configs[11].workload.auxiliary, vec!["helpful".to_string()]);
        assert!(configs.iter().all(|c| c.train.steps == 20));
    }

    #[test]
    fn relative_model_paths_are_anchored_where_the_sweep_is_made() {
        let cwd = std::env::current_dir().unwrap();
        let axis = Axis::parse("workload.model=a/m.pt,\"/abs/m.pt\"").unwrap();
        let expected = toml::Value::String(cwd.join("a/m.pt").display().to_string());
        assert_eq!(axis.values, [expected.to_string(), "\"/abs/m.pt\"".into()]);
    }

    #[test]
    fn bad_sweeps_are_refused_before_anything_is_written() {
        assert!(Axis::parse("aid.iterations=0,,1").is_err());
        assert!(Plan::new("a b", Path::new("c"), vec![], None).is_err());
        let twice = vec![
            Axis::parse("aid.alpha=0.1").unwrap(),
            Axis::parse("aid.alpha=0.2").unwrap(),
        ];
        assert!(Plan::new("g", Path::new("c"), twice, None)
            .unwrap_err()
            .to_string()
            .contains("swept twice"));
        let ablation = Plan::new(
            "g",
            Path::new("c"),
            vec![
                Axis::parse("meltr.meta_lr=0.0003,0.001").unwrap(),
                Axis::parse("combiner.kind=meltr,sum").unwrap(),
                Axis::parse("workload.seed=0,1").unwrap(),
            ],
            None,
        )
        .unwrap();
        let configs = ablation.member_configs(&Config::default()).unwrap();
        let (kept, kept_configs, notes) = ablation.without_repeats(configs);
        assert_eq!(
            notes,
            [
                "combiner.kind=sum workload.seed=0 would run the same for meltr.meta_lr = 0.0003, 0.001, which only the meta-trained combiners (meltr, mlp) read: it runs once, as meltr.meta_lr=0.0003",
                "combiner.kind=sum workload.seed=1 would run the same for meltr.meta_lr = 0.0003, 0.001, which only the meta-trained combiners (meltr, mlp) read: it runs once, as meltr.meta_lr=0.0003",
            ]
        );
        // Walkthrough L's sweep ran each `sum` run once per meta_lr: 8
        // members are 6, numbered again, each with its own config.
        let labels: Vec<String> = kept.members.iter().map(|m| m.label(&[])).collect();
        assert_eq!(kept.members.len(), 6, "{labels:?}");
        assert_eq!(kept_configs.len(), 6);
        for (at, member) in kept.members.iter().enumerate() {
            assert_eq!(member.index, at);
            assert_eq!(member.name, format!("g-{at:03}"));
            assert_eq!(
                kept_configs[at].combiner.kind.as_str(),
                member.settings[1].1,
                "{labels:?}"
            );
        }
        assert!(!labels.contains(&"meltr.meta_lr=0.001 combiner.kind=sum workload.seed=0".into()));
        let mlp = Plan::new(
            "g",
            Path::new("c"),
            vec![
                Axis::parse("meltr.meta_lr=0.0003,0.001").unwrap(),
                Axis::parse("combiner.kind=mlp").unwrap(),
            ],
            None,
        )
        .unwrap();
        let configs = mlp.member_configs(&Config::default()).unwrap();
        let (mlp, _, notes) = mlp.without_repeats(configs);
        assert!(notes.is_empty(), "mlp is meta-trained too");
        assert_eq!(mlp.members.len(), 2);
        // No axis at all: one member, labelled by nothing.
        let bare = Plan::new("g", Path::new("c"), Vec::new(), None).unwrap();
        assert_eq!(bare.members.len(), 1);
        assert_eq!(bare.members[0].label(&bare.varying_keys()), "");
        let repeated = vec![Axis::parse("workload.seed=0,1,0").unwrap()];
        assert!(Plan::new("g", Path::new("c"), repeated, None)
            .unwrap_err()
            .to_string()
            .contains("key `workload.seed` lists the value `0` twice"));
        // Numbers by value (walkthrough N's `train.lr=0.003,3e-3`).
        let same_number = vec![Axis::parse("train.lr=0.003,3e-3").unwrap()];
        let refused = Plan::new("g", Path::new("c"), same_number, None)
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("key `train.lr` lists `0.003` and `3e-3`, one value"),
            "{refused}"
        );
        let single = Plan::new(
            "g",
            Path::new("c"),
            vec![Axis::parse("aid.alpha=x").unwrap()],
            None,
        )
        .unwrap();
        assert!(single
            .member_configs(&Config::default())
            .unwrap_err()
            .to_string()
            .contains("combination 0 (aid.alpha=x)"));
        let plan = Plan::new(
            "g",
            Path::new("c"),
            vec![Axis::parse("aid.iterations=1,x").unwrap()],
            None,
        )
        .unwrap();
        let err = plan
            .member_configs(&Config::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("combination 1 (aid.iterations=x)")
                && err.contains("key `aid.iterations`"),
            "{err}"
        );
    }
}
