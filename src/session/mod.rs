//! The session directory contract: `config.toml`, `session.json`,
//! `metrics.jsonl`, `checkpoints/`, `plots/`; atomic writes; listing.
#![warn(missing_docs)]

pub mod command_line;
pub mod dir;
pub mod inputs;
mod liveness;
pub mod log;
pub mod metrics;
pub mod provenance;
mod run_facts;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

pub use command_line::{command_for, resume_command_for, DEFAULT_ROOT};
pub use dir::SessionDir;
pub use liveness::{pid_alive, process_started};
pub use provenance::Provenance;
pub use run_facts::record_run_facts;

/// Replaces `path` so that a crash leaves either the old file or the new
/// one, never a mix: `write` fills a temp file in the same folder
/// (`.NAME.tmp-PID`, see [`remove_orphan_temps`]), which is fsynced, renamed
/// over `path`, and the folder fsynced. On error the temp file is removed.
pub fn atomic_replace(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .context("atomic_replace: path has no file name")?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> Result<()> {
        write(&tmp)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("cannot sync {}", tmp.display()))?;
        std::fs::rename(&tmp, path)
            .with_context(|| format!("cannot move {} into place", path.display()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// [`atomic_replace`] with `bytes`.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_replace(path, |tmp| {
        std::fs::File::create(tmp)
            .and_then(|mut f| f.write_all(bytes))
            .with_context(|| format!("cannot write {}", tmp.display()))
    })
}

/// Removes the temp files that [`atomic_write`] and checkpoint writes leave
/// behind when their writer is killed mid-write (`.NAME.tmp-PID`, PID no
/// longer alive); a live writer's temp file stays. Returns what it removed.
pub fn remove_orphan_temps(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().to_string();
        let pid = name
            .strip_prefix('.')
            .and_then(|rest| rest.rsplit_once(".tmp-"))
            .filter(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|(_, pid)| pid.parse::<u32>().ok());
        let Some(pid) = pid else { continue };
        if pid == std::process::id() || pid_alive(pid) {
            continue;
        }
        if std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed.sort();
    removed
}

/// Run status, as in `session.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// A trainer is running it (or was, until its process died unannounced).
    Running,
    /// Held by a `Pause` command or a failed write; `Resume` goes on.
    Paused,
    /// Reached `train.steps` and wrote its final checkpoint.
    Finished,
    /// Ended by an error, which `error` holds.
    Failed,
    /// Ended early by a `Stop` command, after a final checkpoint.
    Stopped,
}

impl Status {
    /// Its name in `session.json` and in listings (`"running"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Finished => "finished",
            Status::Failed => "failed",
            Status::Stopped => "stopped",
        }
    }

    /// True once the run will not advance any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Finished | Status::Failed | Status::Stopped)
    }
}

/// `session.json`: who and what a session is. Rewritten atomically whenever
/// its status changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionMeta {
    /// The folder's name: `YYYYmmdd-HHMMSS-<name>`, unique in the sessions folder.
    pub id: String,
    /// The name the user gave at creation.
    pub name: String,
    /// RFC 3339.
    pub created: String,
    /// Where the run stands.
    pub status: Status,
    /// The process that runs (or last ran) the trainer; with a non-terminal
    /// status and a dead pid, the run crashed.
    pub pid: u32,
    /// When that process started (clock ticks since boot, as /proc reads
    /// it): a pid the system gave to another process since no longer reads
    /// as the runner (see [`SessionMeta::runner_alive`]). Absent where
    /// /proc is not, and in sessions made before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_started: Option<u64>,
    /// `cpu` or `cuda:N (device name)`.
    pub device: String,
    /// The libtorch version the trainer runs on (empty until it has started).
    pub libtorch: String,
    /// The workload's kind (`workload.kind`).
    pub workload: String,
    /// Loss names, primary first.
    pub losses: Vec<String>,
    /// The primary loss's name: the one MELTR's meta step optimises on validation.
    pub primary: String,
    /// The validation metric the header and `ls` show (a key of `eval.metrics`).
    pub primary_metric: String,
    /// Whether larger values of `primary_metric` are better (accuracy, recall)
    /// rather than smaller (a loss).
    pub higher_is_better: bool,
    /// Total steps the run is configured for.
    pub steps: u64,
    /// Why the run failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The group the session belongs to (an ablation, a sweep's name; a
    /// fork joins its parent's group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A fork's parent: the id of the session it started from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// A fork's start: the step of the parent's checkpoint it continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_step: Option<u64>,
    /// The number of ranks that train the run data-parallel (its last
    /// start: a resume may use another number); absent for one process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub world_size: Option<usize>,
    /// The numbers of ranks of earlier starts, oldest first, each time a
    /// resume changed it: a run trained partly on 2 ranks and partly on 1
    /// read `ranks` 1 and pooled with one-rank runs (walkthrough S).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_world_sizes: Vec<usize>,
    /// What made the session: meltr-tui version, host, command line, git
    /// commit (each optional; absent in sessions made before they were
    /// recorded).
    #[serde(flatten)]
    pub provenance: Provenance,
}

impl SessionMeta {
    /// Records this process as the session's runner.
    pub fn claim(&mut self) {
        self.pid = std::process::id();
        self.pid_started = process_started(self.pid);
    }

    /// The first step whose lines are the session's own: a fork's log up
    /// to its fork step is its parent's, the evaluation at that step
    /// included (made before any change the fork brought).
    pub fn first_own_step(&self) -> u64 {
        self.fork_step.map_or(0, |at| at + 1)
    }

    /// Whether the line logged at `step` is the session's own (see
    /// [`Self::first_own_step`]).
    pub fn owns(&self, step: u64) -> bool {
        step >= self.first_own_step()
    }

    /// Whether the process that runs the session is alive: its pid exists
    /// and, where its start time was recorded, is the same process (after
    /// a crash the system may give the pid to another one: a walkthrough's
    /// dead run read `running` and could not be resumed).
    pub fn runner_alive(&self) -> bool {
        pid_alive(self.pid)
            && match (self.pid_started, process_started(self.pid)) {
                (Some(recorded), Some(now)) => recorded == now,
                _ => true,
            }
    }

    /// Reads and parses `dir/session.json`.
    pub fn read(dir: &Path) -> Result<SessionMeta> {
        let path = SessionDir::new(dir).session_json();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid session.json", path.display()))
    }

    /// Writes it as `dir/session.json`, atomically (see [`atomic_replace`]).
    pub fn write(&self, dir: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("session meta always serialises");
        atomic_write(&SessionDir::new(dir).session_json(), text.as_bytes())
    }
}

/// Sets `status` (and the failure message) in `dir/session.json`.
pub fn update_status(dir: &Path, status: Status, error: Option<String>) -> Result<()> {
    let mut meta = SessionMeta::read(dir)?;
    meta.status = status;
    meta.error = error;
    meta.write(dir)
}

/// Puts the session in `dir` into `group` (or none).
pub fn set_group(dir: &Path, group: Option<&str>) -> Result<()> {
    let mut meta = SessionMeta::read(dir)?;
    meta.group = group.map(str::to_string);
    meta.write(dir)
}

/// Where a new session comes from: its group, for a fork its parent and
/// the step it continues from, and the text its config was written from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// [`SessionMeta::group`].
    pub group: Option<String>,
    /// [`SessionMeta::parent`].
    pub parent: Option<String>,
    /// [`SessionMeta::fork_step`].
    pub fork_step: Option<u64>,
    /// The config file the session's config comes from (the user's `-c`
    /// file, a parent's `config.toml`): its comments are kept in the
    /// session's `config.toml` ([`crate::config::edit::keep_comments`]).
    pub config_text: Option<String>,
}

/// [`create`], recording `origin` in `session.json` and keeping its config
/// text's comments in `config.toml`.
pub fn create_from(
    root: &Path,
    name: &str,
    config: &crate::config::Config,
    origin: Origin,
) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(root)
        .with_context(|| format!("cannot create sessions folder {}", root.display()))?;
    let id = new_id(root, name);
    let dir = root.join(&id);
    let layout = SessionDir::new(&dir);
    for sub in [layout.checkpoints(), layout.plots()] {
        std::fs::create_dir_all(&sub)
            .with_context(|| format!("cannot create {}", sub.display()))?;
    }
    let mut text = config.to_toml_string();
    if let Some(source) = &origin.config_text {
        text = crate::config::edit::keep_comments(&text, source);
    }
    atomic_write(&layout.config(), text.as_bytes())?;
    let meta = SessionMeta {
        id,
        name: name.to_string(),
        created: chrono::Local::now().to_rfc3339(),
        status: Status::Running,
        pid: std::process::id(),
        pid_started: process_started(std::process::id()),
        device: config.train.device.clone(),
        libtorch: String::new(),
        workload: config.workload.kind.to_string(),
        losses: config.loss_names(),
        primary: config.workload.primary.clone(),
        primary_metric: String::new(),
        higher_is_better: false,
        steps: config.train.steps,
        error: None,
        group: origin.group,
        parent: origin.parent,
        fork_step: origin.fork_step,
        world_size: None,
        earlier_world_sizes: Vec::new(),
        provenance: Provenance::of_this_process(),
    };
    meta.write(&dir)?;
    Ok(dir)
}

/// A fresh session id: `YYYYmmdd-HHMMSS-<name>`, made unique in `root`.
fn new_id(root: &Path, name: &str) -> String {
    let base = format!(
        "{}-{}",
        chrono::Local::now().format("%Y%m%d-%H%M%S"),
        slug(name)
    );
    let mut id = base.clone();
    let mut n = 2;
    while root.join(&id).exists() {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// `name` as a folder name's part: letters (any script) and digits, `-` and
/// `_`; other runs of characters one `-`; at most 60 characters (and 120
/// bytes); `session`
/// for none (`-n "."` made an id ending in `-`, `régla` became `r-gla`).
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_alphanumeric() || c == '_' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    // At most 60 characters and 120 bytes (a file name holds 255 bytes).
    let mut kept = String::new();
    for c in out.trim_matches('-').chars().take(60) {
        if kept.len() + c.len_utf8() > 120 {
            break;
        }
        kept.push(c);
    }
    let out = kept;
    match out.trim_end_matches('-') {
        "" => "session".to_string(),
        kept => kept.to_string(),
    }
}

/// Checks, before a session named `name` is created under `root`, that its
/// runner will have a place for its socket (see [`SessionDir::socket`]):
/// where the path in the folder would be too long, the fallback folder must
/// be usable. (Should the id [`create`] picks turn out longer, after a
/// clash, a runner that finds no place fails its start the same way.)
pub fn check_socket_room(root: &Path, name: &str) -> Result<()> {
    let root = std::fs::canonicalize(root)
        .or_else(|_| std::path::absolute(root))
        .unwrap_or_else(|_| root.to_path_buf());
    let dir = root.join(new_id(&root, name));
    SessionDir::new(dir).prepare_socket().map(|_| ())
}

/// Creates `root/<id>/` with `config.toml`, `session.json`, `checkpoints/`
/// and `plots/`. Returns the session directory.
pub fn create(
    root: &Path,
    name: &str,
    config: &crate::config::Config,
) -> Result<std::path::PathBuf> {
    create_from(root, name, config, Origin::default())
}

/// The paths in `root` (none when it does not read).
fn entries(root: &Path) -> impl Iterator<Item = std::path::PathBuf> {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
}

/// Every session under `root` (folders with a readable `session.json`),
/// oldest first by id.
pub fn list(root: &Path) -> Vec<(std::path::PathBuf, SessionMeta)> {
    let mut out: Vec<(std::path::PathBuf, SessionMeta)> = entries(root)
        .filter_map(|p| SessionMeta::read(&p).ok().map(|m| (p, m)))
        .collect();
    out.sort_by(|a, b| a.1.id.cmp(&b.1.id));
    out
}

/// Folders of `root` whose `session.json` is there and does not read (cut
/// short, edited by hand), with why: [`list`] leaves them out, and they
/// vanished unsaid from `ls` and from lookups by id (a walkthrough).
pub fn unreadable(root: &Path) -> Vec<(std::path::PathBuf, String)> {
    let mut out: Vec<(std::path::PathBuf, String)> = entries(root)
        .filter(|p| SessionDir::new(p).session_json().is_file())
        .filter_map(|p| {
            let error = SessionMeta::read(&p).err()?;
            Some((p, format!("{error:#}")))
        })
        .collect();
    out.sort();
    out
}

/// Finds a session by path, exact id, or a unique part of its id.
pub fn find(root: &Path, query: &str) -> Result<std::path::PathBuf> {
    let as_path = Path::new(query);
    if SessionDir::new(as_path).is_session() {
        return Ok(as_path.to_path_buf());
    }
    let all = list(root);
    if let Some((dir, _)) = all.iter().find(|(_, m)| m.id == query) {
        return Ok(dir.clone());
    }
    // A session's exact name wins over ids that merely contain it
    // (`probe` is not `evalprobe`).
    let named: Vec<&(std::path::PathBuf, SessionMeta)> =
        all.iter().filter(|(_, m)| m.name == query).collect();
    let matches: Vec<&(std::path::PathBuf, SessionMeta)> = if named.is_empty() {
        all.iter().filter(|(_, m)| m.id.contains(query)).collect()
    } else {
        named
    };
    match matches.as_slice() {
        [(dir, _)] => Ok(dir.clone()),
        // A path, not an id: say what is wrong with the folder itself.
        [] if query.contains(std::path::MAIN_SEPARATOR) || query.starts_with('.') => {
            if !as_path.exists() {
                anyhow::bail!("no session at {query}: no such folder")
            }
            anyhow::bail!(
                "{query} is not a session folder (it has no session.json); sessions live in {}",
                root.display()
            )
        }
        [] => {
            let broken = unreadable(root);
            let named_here = broken.iter().find(|(dir, _)| {
                dir.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(query))
            });
            if let Some((_, error)) = named_here {
                anyhow::bail!("session `{query}` does not read: {error}")
            }
            let ids: Vec<&str> = all
                .iter()
                .rev()
                .take(10)
                .map(|(_, m)| m.id.as_str())
                .collect();
            if ids.is_empty() {
                anyhow::bail!(
                    "no session `{query}`: {} holds no sessions (sessions elsewhere: --sessions-dir DIR or MELTR_SESSIONS=DIR)",
                    root.display()
                )
            }
            anyhow::bail!(
                "no session `{query}` in {}; newest: {}{}",
                root.display(),
                ids.join(", "),
                group_hint(&all, query)
            )
        }
        many => {
            let ids: Vec<&str> = many.iter().map(|(_, m)| m.id.as_str()).collect();
            anyhow::bail!(
                "`{query}` matches several sessions: {}; give more of the id{}",
                ids.join(", "),
                group_hint(&all, query)
            )
        }
    }
}

/// Where `query` names a group, not a session (walkthrough J's `table gsw`
/// for its sweep): the commands that take one.
fn group_hint(all: &[(std::path::PathBuf, SessionMeta)], query: &str) -> String {
    match all.iter().any(|(_, m)| m.group.as_deref() == Some(query)) {
        true => format!(
            "; `{query}` is a group: ls, table and compare take --group {query} (and `sweep ls {query}`)"
        ),
        false => String::new(),
    }
}

/// The session `attach` opens when none is named: the newest one whose
/// runner is alive, else the newest (walkthrough M, back after a dropped
/// connection, was shown a finished fork made after the run it left).
pub fn latest(root: &Path) -> Result<std::path::PathBuf> {
    let sessions = list(root);
    let live = |m: &SessionMeta| !m.status.is_terminal() && m.runner_alive();
    let newest_live = sessions.iter().rev().find(|(_, m)| live(m));
    newest_live
        .or(sessions.last())
        .map(|(dir, _)| dir.clone())
        .with_context(|| format!("no sessions in {}", root.display()))
}

#[cfg(test)]
mod tests;
