//! Starting, resuming and attaching: config checks before any folder
//! exists, then the trainer headless, in a runner, or with the TUI.

use super::config_file::{config_text, configured};
use super::*;

pub(super) fn start(
    root: &Path,
    config_path: &Path,
    name: Option<String>,
    steps: Option<u64>,
    overrides: &[crate::config::Override],
    group: Option<String>,
    mode: Mode,
) -> Result<()> {
    let group = super::arg_checks::in_group(group);
    // Refuse what cannot start before a session folder exists: the config
    // (what the user most likely has to fix) first, then the terminal.
    let config = configured(config_path, steps, overrides)?;
    super::config_file::in_file(engine::preflight(&config), config_path, overrides)?;
    if mode == Mode::Tui {
        crate::tui::terminal::check_available("use `run --headless` or `run --detach`")?;
    }
    let named_by_user = name.is_some();
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
    let origin = session::Origin {
        group,
        config_text: Some(config_text(config_path)),
        ..Default::default()
    };
    let namesakes: Vec<String> = match named_by_user {
        true => session::list(root)
            .into_iter()
            .filter(|(_, m)| m.name == name)
            .map(|(_, m)| m.id)
            .collect(),
        false => Vec::new(),
    };
    let dir = session::create_from(root, &name, &config, origin)?;
    if !namesakes.is_empty() {
        // `export NAME` and `attach NAME` then match several sessions.
        say_err!(
            "note: `{name}` also names {}; give this session's id ({}) to commands that take one",
            namesakes.join(", "),
            dir.file_name().unwrap_or_default().to_string_lossy()
        );
    }
    match drive(&dir, config, &Origin::New, mode) {
        // What stops a run before its first step is in the user's file
        // (a Ctrl-C is not).
        Err(e)
            if e.downcast_ref::<NotStarted>().is_some()
                && !e.is::<crate::runner::launch::Interrupted>() =>
        {
            super::config_file::in_file(Err(e), config_path, overrides)
        }
        other => other,
    }
}

pub(super) fn resume(
    root: &Path,
    query: &str,
    overrides: &[crate::config::Override],
    mode: Mode,
) -> Result<()> {
    let dir = session::find(root, query)?;
    crate::config::refuse_restart_only(overrides, "resume")
        .map_err(|e| anyhow::anyhow!("--set: {e}"))?;
    let mut config = engine::trainer::session_config(&dir).map_err(anyhow::Error::new)?;
    // Checked before the `--set`s are written: a refused resume leaves the
    // session's config as it was.
    let wanted = config
        .with_overrides(overrides)
        .map_err(|e| anyhow::anyhow!("--set: {e}"))?;
    refuse_if_done(&dir, &wanted, config.train.steps)?;
    // A live runner first: without a terminal a resume of a running
    // session read "no terminal to draw on" (walkthrough T).
    super::live_runner::refuse_if_running(&dir, !overrides.is_empty())?;
    // After the arguments' checks (a walkthrough's refused `--set` read "no
    // terminal" first), before anything is written.
    if mode == Mode::Tui {
        crate::tui::terminal::check_available("use `resume --headless` or `resume --detach`")?;
    }
    // What a resume that fails before its first step puts back.
    let layout = SessionDir::new(&dir);
    let before = Before {
        meta: SessionMeta::read(&dir)?,
        config_text: std::fs::read_to_string(layout.config()).ok(),
        in_force_text: std::fs::read_to_string(layout.config_in_force()).ok(),
    };
    if !overrides.is_empty() {
        config = set_in_session(&dir, &config, overrides)?;
    }
    let origin = Origin::Resumed(Box::new(before));
    if !matches!(mode, Mode::Headless { .. }) {
        if let Err(e) = SessionDir::new(&dir).prepare_socket() {
            return Err(discard_unstarted(&dir, &origin, e));
        }
    }
    let mut meta = SessionMeta::read(&dir)?;
    meta.status = Status::Running;
    meta.claim();
    meta.error = None;
    meta.write(&dir)?;
    drive(&dir, config, &origin, mode)
}

/// Fails when the session finished and its `train.steps` (with the
/// resume's `--set`s) asks for no step beyond the one it reached: a resume
/// would only say "finished" again. A `--set train.steps` (was `before`)
/// at or below that step is refused whatever the status, as `fork` refuses
/// it (it marked a stopped run finished, "steps now 10", at step 352).
fn refuse_if_done(dir: &Path, config: &crate::config::Config, before: u64) -> Result<()> {
    let steps = config.train.steps;
    let meta = SessionMeta::read(dir)?;
    // The log's last step too: with its checkpoints deleted, a resume would
    // start over and cut the finished run's log.
    let checkpointed = crate::engine::checkpoint::list(&SessionDir::new(dir).checkpoints())
        .last()
        .map_or(0, |(step, _)| *step);
    let reached = checkpointed.max(crate::runs::Run::from_meta(dir, meta.clone()).step);
    // A resume goes on from the newest checkpoint.
    if steps != before && steps <= checkpointed {
        bail!(
            "--set train.steps={steps}: session {id} resumes from its checkpoint at step {checkpointed}, \
             so it would not train; set train.steps above {checkpointed} (e.g. --set train.steps={more})",
            id = meta.id,
            more = if before > checkpointed { before } else { 2 * checkpointed }
        );
    }
    if meta.status == Status::Finished && steps <= reached {
        // A sweep's member resumed is its group's row no more (walkthrough
        // S split its sweep's MELTR row so, unwarned).
        let more = reached.max(1) * 2;
        let member = match &meta.group {
            Some(group) => format!(
                " (it is in group `{group}`: resumed, it trains on under that group's settings and its row in \
                 `table --group {group}` reads train.steps {steps}→{more}@{reached}; a fork is a session of its own, in a \
                 row of its own)"
            ),
            None => String::new(),
        };
        bail!(
            "session {id} finished at step {reached} (train.steps = {steps}): nothing to resume. \
             To train it further, resume with more steps (`{resume} --set train.steps={more}`), \
             or fork it into a new session (`{fork} --set train.steps={more}`){member}",
            id = meta.id,
            resume = session::resume_command_for(dir),
            fork = session::command_for(dir, "fork"),
        );
    }
    Ok(())
}

/// Applies `overrides` (checked over `config`, the session's config) to
/// the session's `config.toml`, keeping the rest of the file; returns the
/// config it now asks for.
pub(super) fn set_in_session(
    dir: &Path,
    config: &Config,
    overrides: &[crate::config::Override],
) -> Result<Config> {
    let changed = config
        .with_overrides(overrides)
        .map_err(|e| anyhow::anyhow!("--set: {e}"))?;
    let path = SessionDir::new(dir).config();
    let text = crate::config::read_text(&path).map_err(anyhow::Error::new)?;
    let edited = crate::config::write_overrides(&text, &changed, overrides)
        .map_err(|e| anyhow::anyhow!("cannot edit {}: {e}", path.display()))?;
    session::atomic_write(&path, edited.as_bytes())?;
    engine::trainer::session_config(dir).map_err(anyhow::Error::new)
}

/// Where a session that is started comes from: what a start that fails
/// before its first step undoes.
pub(super) enum Origin {
    /// A new session (a sweep's member too).
    New,
    /// A fork: a new session seeded with its parent's checkpoint.
    Forked,
    /// A session resumed, as it was before.
    Resumed(Box<Before>),
}

impl Origin {
    /// Whether the run continues from a checkpoint.
    pub(super) fn resumes(&self) -> bool {
        !matches!(self, Origin::New)
    }
}

/// A resumed session's record and config files before the resume (the
/// config in force is recorded early in a run's setup, `--set`s included).
pub(super) struct Before {
    meta: SessionMeta,
    config_text: Option<String>,
    in_force_text: Option<String>,
}

/// A run whose trainer could not even be built (e.g. a TorchScript model
/// without the configured primary loss, found only once the module runs,
/// or a data file moved away since): a new session's or a fork's folder
/// holds nothing but the config, so it is removed rather than left behind
/// as a failed session; a resumed session gets back its status and its
/// config.toml without the resume's `--set`s (a walkthrough's finished run
/// read "failed" for good, and a sweep's resume then trained it further).
pub(super) fn discard_unstarted(
    dir: &Path,
    origin: &Origin,
    error: anyhow::Error,
) -> anyhow::Error {
    match origin {
        // A fork whose parent has since pruned the fork point holds its only
        // copy: kept, to be resumed once the cause is fixed.
        Origin::Forked if !fork_point_kept_by_parent(dir) => error.context(format!(
            "the fork did not start; its folder {} is kept, as its checkpoint is the only copy \
             left of its parent's: `{}` starts it once the cause is fixed",
            dir.display(),
            session::resume_command_for(dir)
        )),
        Origin::New | Origin::Forked => {
            // A headless start's output.log is open (see `say::echo_into`).
            crate::say::stop_echo();
            match std::fs::remove_dir_all(dir) {
                Ok(()) => error.context(NotStarted(dir.to_path_buf())),
                Err(_) => error,
            }
        }
        Origin::Resumed(before) => {
            let layout = SessionDir::new(dir);
            let files = [
                (layout.config(), &before.config_text),
                (layout.config_in_force(), &before.in_force_text),
            ];
            let put_back = before.meta.write(dir).and_then(|()| {
                files.iter().try_for_each(|(path, text)| match text {
                    Some(text) => session::atomic_write(path, text.as_bytes()),
                    None => Ok(()),
                })
            });
            // As `ls` says it: a run whose process is gone crashed.
            let status = crate::runs::Run::from_meta(dir, before.meta.clone()).status;
            match put_back {
                Ok(()) => error.context(format!(
                    "the resume did not start; session {} is as it was ({status}, its config.toml unchanged)",
                    before.meta.id,
                )),
                Err(e) => error.context(format!(
                    "the resume did not start, and session {} could not be put back as it was: {e:#}",
                    before.meta.id
                )),
            }
        }
    }
}

/// Whether the parent of the fork in `dir` still has the checkpoint it was
/// forked from.
fn fork_point_kept_by_parent(dir: &Path) -> bool {
    let Ok(meta) = SessionMeta::read(dir) else {
        return false;
    };
    let root = dir.parent().unwrap_or(Path::new("."));
    let (Some(parent), Some(at)) = (meta.parent, meta.fork_step) else {
        return false;
    };
    session::find(root, &parent).is_ok_and(|parent_dir| {
        crate::engine::checkpoint::list(&SessionDir::new(&parent_dir).checkpoints())
            .iter()
            .any(|(step, _)| *step == at)
    })
}

/// The context of a new session's error before its first step (see
/// [`discard_unstarted`]).
#[derive(Debug)]
struct NotStarted(PathBuf);

impl std::fmt::Display for NotStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "the run did not start; its new session folder {} was removed",
            self.0.display()
        )
    }
}

pub(super) fn drive(dir: &Path, config: Config, origin: &Origin, mode: Mode) -> Result<()> {
    let launch = || {
        // Ctrl-C while the runner starts stops it (see `Interrupted`).
        let trap = crate::process::Trap::interrupts();
        let launched = crate::runner::launch::launch(dir, origin.resumes());
        trap.release();
        launched.map_err(|e| {
            let interrupted = e.is::<crate::runner::launch::Interrupted>();
            if interrupted && matches!(origin, Origin::Resumed(_)) {
                // Stopped where it was (it may have trained a step): a
                // runner killed while loading left "running".
                let meta = SessionMeta::read(dir);
                if meta.is_ok_and(|m| m.status == Status::Running) {
                    let _ = session::update_status(dir, Status::Stopped, None);
                }
                e
            } else {
                // A new session or fork interrupted before it ran: gone.
                discard_unstarted(dir, origin, e)
            }
        })
    };
    match mode {
        Mode::Headless { give_up_after } => run_headless(dir, config, origin, give_up_after),
        Mode::Detached => {
            // Said here too: the runner logs it where no one is watching.
            let left_out = if matches!(origin, Origin::Resumed(_)) {
                engine::trainer::restart_only_edits_left_out(dir).unwrap_or_default()
            } else {
                Vec::new()
            };
            let pid = launch()?;
            let id = dir.file_name().unwrap_or_default().to_string_lossy();
            say!(
                "session {id} running detached (runner pid {pid}) in {}",
                dir.display()
            );
            if !left_out.is_empty() {
                say!(
                    "warning: restart-only edits in config.toml were not applied: {}; it resumes with the config it ran with. To train with them, start a new session",
                    left_out.join(", ")
                );
            }
            say!("watch it with: {}", session::command_for(dir, "attach"));
            Ok(())
        }
        Mode::Tui => {
            launch()?;
            attach(dir)
        }
    }
}

/// The TUI on the session in `dir`: live through its runner's socket when
/// one serves, else its history. Leaving detaches; the run goes on. The
/// sessions view may switch it to another session of the same folder.
pub(super) fn attach(dir: &Path) -> Result<()> {
    let id = crate::session::SessionDir::new(dir).id();
    crate::tui::terminal::check_available(&format!(
        "`ls` shows session {id}'s state, `tail -f {}` follows it, and `export {id}` writes its \
         figures and CSV",
        crate::session::SessionDir::new(dir).output_log().display()
    ))?;
    crate::process::exit_on_hangup();
    let mut dir = dir.to_path_buf();
    loop {
        match attach_once(&dir)? {
            crate::tui::Exit::Attach(next) => dir = next,
            _ => return Ok(()),
        }
    }
}

/// One TUI on the session in `dir`, until the user leaves it or picks
/// another session (returned as `Exit::Attach`).
fn attach_once(dir: &Path) -> Result<crate::tui::Exit> {
    let serving = crate::runner::is_serving(dir);
    let mut meta = SessionMeta::read(dir)?;
    let live_headless = !serving && !meta.status.is_terminal() && meta.runner_alive();
    let (link, history): (Box<dyn crate::engine::link::EngineLink>, _) = if serving {
        let (link, history) = crate::runner::link::RemoteLink::attach(dir)?;
        (Box::new(link), history)
    } else if live_headless {
        // A run with no socket (headless): followed through its files.
        let (link, history) = crate::runner::tail::LogTail::attach(dir)?;
        (Box::new(link), history)
    } else {
        (Box::new(crate::engine::link::NoEngine), read_history(dir)?)
    };
    if !serving && !meta.status.is_terminal() && !meta.runner_alive() {
        // Its runner died without a word (kill -9, a reboot): crashed, as
        // `ls` says, not "running".
        meta.status = Status::Failed;
        meta.error = Some(crate::runner::link::runner_gone(dir, &meta));
    }
    let (config, refused) = attach_config(dir)?;
    let mut history = history;
    if let Some(error) = refused {
        refused_in_history(&mut history, error);
    }
    let export_dir = dir.to_path_buf();
    let fork_dir = dir.to_path_buf();
    let hooks = crate::tui::Hooks {
        export: Some(Box::new(move || {
            super::paper::export(&export_dir, &crate::plot::ExportOptions::default())
        })),
        fork: Some(Box::new(move |edited| fork_from_tui(&fork_dir, edited))),
    };
    let exit = crate::tui::run(
        meta.clone(),
        &SessionDir::new(dir),
        config,
        history,
        link.as_ref(),
        hooks,
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
        let _ = writeln!(out, "{}", stopped_words(dir, &meta.id, status));
    } else if exit == crate::tui::Exit::Attach(dir.to_path_buf()) {
        // Attaching again to a new runner of this session: nothing to say.
    } else if crate::runner::is_serving(dir) {
        let verb = match &exit {
            crate::tui::Exit::Attach(_) => "left",
            _ => "detached from",
        };
        let paused = exit != crate::tui::Exit::Unpaused
            && super::live_runner::runner_status(dir).is_some_and(|(s, _)| s == Status::Paused);
        let state = if paused {
            // The plain command: a live runner's ranks go on with it, and
            // `--nproc` is refused there.
            format!(
                "it stays paused (`{}`, or p in the TUI, lets it go on)",
                session::command_for(dir, "resume")
            )
        } else {
            "it goes on".to_string()
        };
        let _ = writeln!(
            out,
            "{verb} session {}; {state}. Attach again with: {}",
            meta.id,
            session::command_for(dir, "attach")
        );
    }
    Ok(exit)
}

/// `f` in the TUI: forks the session in `dir` from its newest checkpoint
/// with the keys `edited` changes (as `meltr-tui fork --set` would), and
/// starts the fork in a detached runner.
fn fork_from_tui(dir: &Path, edited: &Config) -> Result<crate::tui::state::ForkReport> {
    let root = dir.parent().unwrap_or(Path::new("."));
    let (step, overrides) = crate::fork::overrides_toward(dir, edited)?;
    // From a TUI already drawing: its terminal is there.
    let needs = crate::fork::Needs {
        socket: true,
        terminal: false,
    };
    let forked = crate::fork::create(root, dir, step, None, None, &overrides, needs)?;
    record_fork_command(&forked, &overrides)
        .and_then(|()| crate::runner::launch::launch(&forked.dir, true))
        .map_err(|e| discard_unstarted(&forked.dir, &Origin::Forked, e))?;
    Ok(crate::tui::state::ForkReport {
        id: forked.id,
        dir: forked.dir,
        step: forked.step,
        changes: overrides.iter().map(ToString::to_string).collect(),
    })
}

/// A TUI fork's `command` in `session.json`: the `meltr-tui fork` line
/// that makes the same fork, rather than the command line of the TUI's
/// process (which made the parent).
fn record_fork_command(
    forked: &crate::fork::Forked,
    overrides: &[crate::config::Override],
) -> Result<()> {
    let program = std::env::args()
        .next()
        .unwrap_or_else(|| "meltr-tui".into());
    let root = forked.dir.parent().unwrap_or(Path::new("."));
    let mut command = vec![
        program,
        "--sessions-dir".into(),
        root.display().to_string(),
        "fork".into(),
        forked.parent.clone(),
        "--at".into(),
        forked.step.to_string(),
        "--detach".into(),
    ];
    for o in overrides {
        command.extend(["--set".into(), o.to_string()]);
    }
    let mut meta = SessionMeta::read(&forked.dir)?;
    meta.provenance.command = Some(command);
    meta.write(&forked.dir)
}

pub(super) fn read_history(dir: &Path) -> Result<Vec<session::metrics::MetricLine>> {
    let path = SessionDir::new(dir).metrics();
    if !path.exists() {
        return Ok(Vec::new());
    }
    Ok(session::log::read_metrics(&path)?.lines)
}

/// The config the TUI opens on: `config.toml` read over the config in
/// force, its restart-only keys at their values in force (a refused edit
/// stays in the file; the hyperparameter pane showed it as the run's).
/// A `config.toml` that does not read opens on the config in force, with
/// why it does not read: the user attaches to fix it (the run goes on
/// with its last good config).
fn attach_config(dir: &Path) -> Result<(Config, Option<String>)> {
    let in_force = Config::load(&SessionDir::new(dir).config_in_force());
    match (engine::trainer::session_config(dir), in_force) {
        (Ok(config), Ok(in_force)) => Ok((config.keeping_restart_only_of(&in_force), None)),
        (Ok(config), Err(_)) => Ok((config, None)),
        (Err(error), Ok(in_force)) => Ok((in_force, Some(error.to_string()))),
        (Err(error), Err(_)) => Err(error.into()),
    }
}

/// Makes the TUI show `error` (the config file does not read) as the
/// runner does, unless the log's last config line already says so.
fn refused_in_history(history: &mut Vec<session::metrics::MetricLine>, error: String) {
    use session::metrics::{MetricLine, Record};
    let said = history.iter().rev().find_map(|line| match &line.record {
        Record::Config { error, .. } => Some(error.is_some()),
        _ => None,
    });
    if said == Some(true) {
        return;
    }
    let last = history.last();
    history.push(MetricLine {
        step: last.map_or(0, |l| l.step),
        time: last.map_or(0.0, |l| l.time),
        wall: None,
        record: Record::Config {
            changed: Default::default(),
            error: Some(error),
        },
    });
}

/// What the TUI says once a stop from it has ended the run: the run's own
/// mark (`stopped at step 140 of 400; `… resume …` continues from step
/// 100`), as `meltr-tui stop` prints it (walkthrough W: the TUI said only
/// "stopped"); the status and the resume command where the log has none.
fn stopped_words(dir: &Path, id: &str, status: Status) -> String {
    let mark = match status {
        Status::Stopped => session::log::read_metrics(&SessionDir::new(dir).metrics())
            .ok()
            .and_then(|log| log.lines.into_iter().rev().find(session::log::is_stop_mark))
            .and_then(|line| match line.record {
                crate::session::metrics::Record::Event { message, .. } => Some(message),
                _ => None,
            }),
        _ => None,
    };
    match mark {
        Some(message) => format!("session {id}: {message}"),
        None => format!(
            "session {id}: {}\ncontinue it with: {}",
            status.as_str(),
            session::resume_command_for(dir)
        ),
    }
}

#[cfg(test)]
mod tests;
