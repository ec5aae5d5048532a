//! Forking a session: a new session folder that continues another one from
//! one of its checkpoints (θ, φ, both optimizers; the data position and
//! every random draw follow from the step), with live keys changed. Shared
//! by `meltr-tui fork` and the TUI's `f`; starting the fork's trainer is
//! the caller's business.
//!
//! The fork's folder gets a copy of the checkpoint and of the parent's
//! metrics up to its step (so its curves start where the parent's were),
//! then it is resumed like any session: from that step on it trains as the
//! parent would have, but for the changed keys.

use crate::config::{Config, Override};
use crate::engine::{self, checkpoint};
use crate::session::metrics::{Level, MetricLine, Record};
use crate::session::{self, SessionDir, SessionMeta};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// A fork made by [`create`], not yet started.
#[derive(Debug, Clone)]
pub struct Forked {
    /// The new session's folder.
    pub dir: PathBuf,
    /// Its id.
    pub id: String,
    /// The parent's id.
    pub parent: String,
    /// The checkpoint step it starts from.
    pub step: u64,
    /// The config it runs with (the parent's at the fork step, with the
    /// overrides).
    pub config: Config,
    /// The parent's group, where the fork joined it by default (no
    /// `--group`).
    pub joined_group: Option<String>,
    /// Its settings that differ from its parent's at the checkpoint, as the
    /// log's config lines read them (`meltr.gamma: 0.3 -> 1`).
    pub changes: Vec<String>,
}

/// What a fork will run with, checked before its folder is made.
#[derive(Debug, Clone, Copy)]
pub struct Needs {
    /// Room for a runner's socket (everything but a headless run has one).
    pub socket: bool,
    /// A terminal to draw on (a TUI started for the fork).
    pub terminal: bool,
}

/// Makes a fork of the session in `parent_dir` under `root`: from its
/// checkpoint at step `at` (default: the newest), named `name` (default:
/// `<parent name>-fork`), with `overrides` (live keys only) applied to the
/// config in force at that checkpoint (see [`config_at`]). `needs`: what
/// the fork will run with, checked after the request and before a folder
/// is made. `group`: the fork's group, `Some(None)` for none (default:
/// the parent's; an exploratory fork of a sweep's member otherwise joins
/// the sweep's table and figures). On any error no folder is left behind.
pub fn create(
    root: &Path,
    parent_dir: &Path,
    at: Option<u64>,
    name: Option<String>,
    group: Option<Option<String>>,
    overrides: &[Override],
    needs: Needs,
) -> Result<Forked> {
    let parent = SessionMeta::read(parent_dir)?;
    crate::config::refuse_restart_only(overrides, "fork")
        .map_err(|e| anyhow::anyhow!("--set: {e}"))?;
    let (step, checkpoint_path) = pick_checkpoint(parent_dir, &parent.id, at)?;
    let at_checkpoint = config_at(
        parent_dir,
        &checkpoint::Loaded::read(&checkpoint_path, step)?,
    )?;
    let config = at_checkpoint
        .clone()
        .with_overrides(overrides)
        .map_err(|e| anyhow::anyhow!("--set: {e}"))?;
    if config.train.trace {
        bail!(
            "session {} writes a trace (train.trace = true), which starts with the run: a fork \
             cannot continue it",
            parent.id
        );
    }
    if config.train.steps <= step {
        bail!(
            "the fork would not train: it starts at step {step} and train.steps is {}; \
             set train.steps above {step} (e.g. --set train.steps={}, or in the TUI's editor)",
            config.train.steps,
            step + config.train.steps.max(1)
        );
    }
    engine::preflight(&config)?;
    let name = name.unwrap_or_else(|| unused_name(root, &format!("{}-fork", parent.name)));
    if needs.socket {
        session::check_socket_room(root, &name)?;
    }
    if needs.terminal {
        crate::tui::terminal::check_available("use `fork --headless` or `fork --detach`")?;
    }
    let joined_group = group.is_none().then(|| parent.group.clone()).flatten();
    let origin = session::Origin {
        group: group.unwrap_or_else(|| parent.group.clone()),
        parent: Some(parent.id.clone()),
        fork_step: Some(step),
        // The parent's comments (its config.toml as its user wrote it).
        config_text: std::fs::read_to_string(SessionDir::new(parent_dir).config()).ok(),
    };
    let dir = session::create_from(root, &name, &config, origin)?;
    let seeded = seed(
        &dir,
        parent_dir,
        &parent.id,
        (step, &checkpoint_path, &at_checkpoint),
        (&config, overrides),
    );
    if let Err(e) = seeded {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e.context(format!("cannot fork {} at step {step}", parent.id)));
    }
    let changes = change_words(&crate::config::changed_values(&at_checkpoint.diff(&config)));
    Ok(Forked {
        id: SessionDir::new(&dir).id(),
        dir,
        parent: parent.id,
        step,
        config,
        joined_group,
        changes,
    })
}

/// The parent's newest checkpoint step (`None` without one) and the
/// overrides that turn the config a fork from it starts with (see
/// [`config_at`]) into `wanted`, for the live keys: what the TUI's editor
/// shows becomes the fork's `--set`, for a fork at that step (a running
/// parent may write a newer checkpoint meanwhile). Restart-only keys are
/// not compared (a fork keeps them).
pub fn overrides_toward(
    parent_dir: &Path,
    wanted: &Config,
) -> Result<(Option<u64>, Vec<Override>)> {
    let newest = checkpoint::list(&SessionDir::new(parent_dir).checkpoints()).pop();
    let parent = match &newest {
        Some((step, path)) => config_at(parent_dir, &checkpoint::Loaded::read(path, *step)?)?,
        None => parent_config(parent_dir)?,
    }
    .flatten();
    let overrides = wanted
        .flatten()
        .into_iter()
        .filter(|(key, value)| {
            crate::config::restart_only_reason(key).is_none() && parent.get(key) != Some(value)
        })
        .map(|(key, value)| Override {
            key,
            value: value.to_string(),
        })
        .collect();
    Ok((newest.map(|(step, _)| step), overrides))
}

/// The checkpoint at step `at` (default: the newest) of the session in
/// `dir`: its step and file. A step with no checkpoint is an error that
/// lists the steps there are.
pub fn pick_checkpoint(dir: &Path, id: &str, at: Option<u64>) -> Result<(u64, PathBuf)> {
    let all = checkpoint::list(&SessionDir::new(dir).checkpoints());
    let Some(newest) = all.last() else {
        bail!(
            "session {id} has no checkpoint to fork from (one is written every \
             train.checkpoint_every steps and when a run stops)"
        );
    };
    let Some(at) = at else {
        return Ok(newest.clone());
    };
    match all.iter().find(|(s, _)| *s == at) {
        Some(found) => Ok(found.clone()),
        None => {
            let steps: Vec<String> = all.iter().map(|(s, _)| s.to_string()).collect();
            bail!(
                "session {id} has no checkpoint at step {at}; it has checkpoints at steps {} \
                 (--at takes one of them: a run keeps its newest train.keep_checkpoints (3 by \
                 default), plus its current best-evaluated one and any asked for by hand, so an earlier fork point is forked while the run is there, e.g. `f` in \
                 the TUI, or kept with a larger train.keep_checkpoints, 0 for all)",
                steps.join(", "),
            )
        }
    }
}

/// The config a fork from `checkpoint` of the session in `dir` starts with:
/// the one in force when the checkpoint was written (live edits and
/// `resume --set`s after it do not leak into the fork, so a fork with no
/// `--set` continues exactly as the parent did), else, for a checkpoint
/// that does not carry it, the parent's latest (see [`parent_config`]).
pub fn config_at(dir: &Path, checkpoint: &checkpoint::Loaded) -> Result<Config> {
    match checkpoint.config() {
        Some(config) => Ok(config),
        None => parent_config(dir),
    }
}

/// The config the parent runs with: its config in force, else what its
/// `config.toml` asks for.
fn parent_config(dir: &Path) -> Result<Config> {
    let layout = SessionDir::new(dir);
    Config::load(&layout.config_in_force())
        .or_else(|_| engine::trainer::session_config(dir))
        .map_err(anyhow::Error::new)
}

/// Fills the new session folder `dir`: the parent's checkpoint at `step`
/// (carrying `config`, the fork's own), its metrics up to that step (as
/// written; see [`history_at`]), and an event saying where the fork comes
/// from.
fn seed(
    dir: &Path,
    parent_dir: &Path,
    parent_id: &str,
    (step, checkpoint_path, at_checkpoint): (u64, &Path, &Config),
    (config, overrides): (&Config, &[Override]),
) -> Result<()> {
    let layout = SessionDir::new(dir);
    let target = layout.checkpoints().join(checkpoint::file_name(step));
    checkpoint::copy_with_config(checkpoint_path, &target, config).with_context(|| {
        format!(
            "cannot copy {} to {}",
            checkpoint_path.display(),
            target.display()
        )
    })?;
    // The input files as the parent found them: a fork continues its
    // training, so a change since is a change since the parent's start.
    let inputs = crate::session::inputs::FILE;
    if parent_dir.join(inputs).exists() {
        std::fs::copy(parent_dir.join(inputs), dir.join(inputs))
            .with_context(|| format!("cannot copy {}", parent_dir.join(inputs).display()))?;
    }
    let parent_metrics = SessionDir::new(parent_dir).metrics();
    let (kept, _) = if parent_metrics.exists() {
        session::log::lines_up_to(&parent_metrics, step)?
    } else {
        (String::new(), 0)
    };
    let mut text = history_at(&kept, step, at_checkpoint);
    let time = session::log::read_metrics(&parent_metrics)
        .ok()
        .and_then(|read| {
            read.lines
                .iter()
                .rev()
                .find(|l| l.step <= step)
                .map(|l| l.time)
        })
        .unwrap_or(0.0);
    let changes: Vec<String> = overrides.iter().map(ToString::to_string).collect();
    let line = MetricLine {
        step,
        time,
        wall: Some(crate::session::metrics::wall_now()),
        record: Record::Event {
            level: Level::Info,
            message: if changes.is_empty() {
                format!("{FORKED_FROM}{parent_id} at step {step}")
            } else {
                format!(
                    "{FORKED_FROM}{parent_id} at step {step} with {}",
                    changes.join(", ")
                )
            },
        },
    };
    text.push_str(&line.to_json());
    text.push('\n');
    // The fork's changes as a config line after its fork line, as a resume
    // logs its own: its figures mark them OLD→NEW. (Its checkpoint carries
    // its config, so its first start finds nothing changed: walkthrough S's
    // fork figure read "fork" alone.)
    let changes = at_checkpoint.diff(config);
    if !changes.is_empty() {
        let line = MetricLine {
            record: Record::Config {
                changed: crate::config::changed_values(&changes),
                error: None,
            },
            ..line
        };
        text.push_str(&line.to_json());
        text.push('\n');
    }
    session::atomic_write(&layout.metrics(), text.as_bytes())
}

/// `base`, or `base-2`, `base-3`, … where a session has that name: two
/// default-named forks of one run shared a name, and notes naming one
/// could not say which (walkthrough D).
fn unused_name(root: &Path, base: &str) -> String {
    let taken: Vec<String> = session::list(root)
        .into_iter()
        .map(|(_, m)| m.name)
        .collect();
    std::iter::once(base.to_string())
        .chain((2..).map(|i| format!("{base}-{i}")))
        .find(|name| !taken.contains(name))
        .expect("an unbounded sequence has a free name")
}

/// How a fork's first line begins (its parent's id follows).
const FORKED_FROM: &str = "forked from session ";

/// A config line's changes in words, as the fork command and the fork's
/// first start say them: `meltr.gamma: 0.1 -> 0.5`.
fn change_words(
    changed: &std::collections::BTreeMap<String, (serde_json::Value, serde_json::Value)>,
) -> Vec<String> {
    changed
        .iter()
        .map(|(key, (old, new))| format!("{key}: {old} -> {new}"))
        .collect()
}

/// The fork's own changes at its fork `step`, as the config line after its
/// "forked from" line holds them (`meltr.gamma: 0.1 -> 0.5`): its first
/// start says them, so a detached fork's output.log does too.
pub fn own_changes(dir: &Path, step: u64) -> Vec<String> {
    let Ok(read) = session::log::read_metrics(&SessionDir::new(dir).metrics()) else {
        return Vec::new();
    };
    // Its own line: the last at that step (an ancestor's comes before).
    let forked = |l: &MetricLine| {
        l.step == step
            && matches!(&l.record, Record::Event { message, .. } if message.starts_with(FORKED_FROM))
    };
    let Some(at) = read.lines.iter().rposition(forked) else {
        return Vec::new();
    };
    read.lines[at + 1..]
        .iter()
        .take_while(|l| l.step == step)
        .find_map(|l| match &l.record {
            Record::Config {
                changed,
                error: None,
            } => Some(change_words(changed)),
            _ => None,
        })
        .unwrap_or_default()
}

/// The parent's log `kept` (its lines up to `step`) as it stood at its
/// checkpoint of `step`, whose config is `at_checkpoint`: at that step, up
/// to its stop mark or a later start from it, and without an edit the
/// checkpoint does not hold (one applied at the step boundary after a
/// periodic checkpoint is logged at its step). A walkthrough's fork
/// inherited a resume's `aid.alpha 0.2→0.05` at the fork step, in its
/// figures and tables. An earlier stop's mark is left out too: the fork
/// did not stop there. Where the log says when that checkpoint was
/// written, nothing after it is the fork's (walkthrough J: a parent paused
/// after its checkpoint, its edits there refused or warned about, gave the
/// fork a warning about a meta_lr of 0.5 it never ran with).
fn history_at(kept: &str, step: u64, at_checkpoint: &Config) -> String {
    let parsed = |l: &str| serde_json::from_str::<MetricLine>(l).ok();
    let in_force = serde_json::to_value(at_checkpoint).unwrap_or_default();
    let held = |line: &MetricLine| match &line.record {
        Record::Config { changed, .. } if line.step == step => {
            changed.iter().all(|(key, (_, new))| {
                let value = key.split('.').try_fold(&in_force, |v, part| v.get(part));
                value.is_some_and(|v| {
                    v == new || v.as_f64().is_some_and(|v| Some(v) == new.as_f64())
                })
            })
        }
        _ => true,
    };
    let mut lines: Vec<&str> = kept
        .lines()
        .take_while(|l| {
            parsed(l)
                .is_none_or(|line| line.step < step || !session::log::is_after_checkpoint(&line))
        })
        .collect();
    // An event's message, where `l` is one logged at the fork step.
    let event_at_step = |l: &str| match parsed(l) {
        Some(MetricLine {
            step: at,
            record: Record::Event { message, .. },
            ..
        }) if at == step => Some(message),
        _ => None,
    };
    let last_write = lines.iter().rposition(|l| {
        event_at_step(l).is_some_and(|m| checkpoint::is_checkpoint_written(&m, step))
    });
    // A fork forked at its own fork step, before it wrote a checkpoint of
    // its own, has its parent's write before its own start: its start and
    // changes stay (review: a fork of such a fork lost its ancestor).
    let forked_after = |at: usize| {
        lines[at..]
            .iter()
            .any(|l| event_at_step(l).is_some_and(|m| m.starts_with(FORKED_FROM)))
    };
    if let Some(at) = last_write.filter(|&at| !forked_after(at)) {
        lines.truncate(at + 1);
    }
    lines
        .into_iter()
        .filter(|l| parsed(l).is_none_or(|line| !session::log::is_stop_mark(&line) && held(&line)))
        .flat_map(|l| [l, "\n"])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(step: u64, record: Record) -> String {
        let line = MetricLine {
            step,
            time: step as f64,
            wall: None,
            record,
        };
        format!("{}\n", line.to_json())
    }

    fn event(step: u64, message: &str) -> String {
        line(
            step,
            Record::Event {
                level: Level::Info,
                message: message.into(),
            },
        )
    }

    fn edit(step: u64, key: &str, old: f64, new: f64) -> String {
        line(
            step,
            Record::Config {
                changed: [(key.to_string(), (old.into(), new.into()))].into(),
                error: None,
            },
        )
    }

    #[test]
    fn a_default_fork_name_is_not_taken_twice() {
        let root = tempfile::tempdir().unwrap();
        let config = Config::default();
        assert_eq!(unused_name(root.path(), "a-fork"), "a-fork");
        session::create(root.path(), "a-fork", &config).unwrap();
        assert_eq!(unused_name(root.path(), "a-fork"), "a-fork-2");
        session::create(root.path(), "a-fork-2", &config).unwrap();
        assert_eq!(unused_name(root.path(), "a-fork"), "a-fork-3");
    }

    /// A walkthrough's fork at step 801 of a parent stopped there, then
    /// resumed with `--set aid.alpha=0.05` and stopped at once, inherited
    /// the resume's notes and its `aid.alpha 0.2→0.05` at 801: its figures
    /// and tables showed a value it never ran with. The fork's history is
    /// the checkpoint's; earlier stops and resumes stay in it, their stop
    /// marks out.
    #[test]
    fn a_fork_keeps_the_parent_log_as_it_stood_at_the_checkpoint() {
        let root = tempfile::tempdir().unwrap();
        let (parent, fork) = (root.path().join("parent"), root.path().join("fork"));
        std::fs::create_dir_all(SessionDir::new(&fork).checkpoints()).unwrap();
        std::fs::create_dir_all(&parent).unwrap();
        let stop = |step| event(step, &format!("{}{step}", session::log::STOPPED_AT));
        let resumed = |step| {
            event(
                step,
                &format!("{}x at step {step}", session::log::RESUMED_FROM),
            )
        };
        let history = [
            event(500, "train 500"),
            stop(500),
            resumed(500),
            edit(500, "aid.alpha", 0.1, 0.2),
            event(801, "train 801"),
        ]
        .concat();
        let after = [
            stop(801),
            event(801, "restart-only edits in config.toml were not applied"),
            resumed(801),
            edit(801, "aid.alpha", 0.2, 0.05),
            stop(801),
        ]
        .concat();
        std::fs::write(
            SessionDir::new(&parent).metrics(),
            format!("{history}{after}"),
        )
        .unwrap();
        let checkpoint = root.path().join("step.safetensors");
        let theta = [("theta".to_string(), tch::Tensor::from_slice(&[1.0f32]))];
        tch::Tensor::write_safetensors(&theta, &checkpoint).unwrap();
        let mut at_checkpoint = Config::default();
        at_checkpoint.aid.alpha = 0.2;
        seed(
            &fork,
            &parent,
            "parent",
            (801, &checkpoint, &at_checkpoint),
            (&at_checkpoint, &[]),
        )
        .unwrap();
        let text = std::fs::read_to_string(SessionDir::new(&fork).metrics()).unwrap();
        let (inherited, own) = text.trim_end().rsplit_once('\n').unwrap();
        assert_eq!(
            format!("{inherited}\n"),
            history.replace(&stop(500), ""),
            "{text}"
        );
        assert!(
            own.contains("forked from session parent at step 801"),
            "{text}"
        );
        // An edit logged at the step: one applied at the boundary after a
        // periodic checkpoint (the log as cut to its step) is not the
        // checkpoint's; one applied before a stop's checkpoint (which holds
        // it) is.
        let periodic = [history.clone(), edit(801, "aid.alpha", 0.2, 0.05)].concat();
        assert_eq!(
            history_at(&periodic, 801, &at_checkpoint),
            history.replace(&stop(500), "")
        );
        let before_stop = [
            history.clone(),
            edit(801, "aid.alpha", 0.05, 0.2),
            stop(801),
        ]
        .concat();
        assert_eq!(
            history_at(&before_stop, 801, &at_checkpoint),
            [
                history.replace(&stop(500), ""),
                edit(801, "aid.alpha", 0.05, 0.2)
            ]
            .concat()
        );
        // A run paused after its periodic checkpoint: what it logged at the
        // step after writing it (a warning, a refused edit, the end of the
        // pause) is not the fork's.
        let written = [
            history.clone(),
            edit(801, "aid.alpha", 0.05, 0.2),
            event(801, &checkpoint::checkpoint_written(801)),
        ]
        .concat();
        let paused = [
            written.clone(),
            event(801, "paused at step 801"),
            event(801, "meltr.meta_lr = 0.5 is 500x the public code's"),
            line(
                801,
                Record::Config {
                    changed: Default::default(),
                    error: Some("config.toml:43: key `meltr.gamma`: …".into()),
                },
            ),
            event(801, "resumed after 43s paused"),
        ]
        .concat();
        assert_eq!(
            history_at(&paused, 801, &at_checkpoint),
            written.replace(&stop(500), "")
        );
        // A fork of a fork at its fork step, before it wrote a checkpoint
        // of its own: the parent's write precedes its start, which stays.
        let forked = [
            written.clone(),
            event(801, "forked from session grand at step 801"),
        ]
        .concat();
        assert_eq!(
            history_at(&forked, 801, &at_checkpoint),
            forked.replace(&stop(500), "")
        );
    }
}
