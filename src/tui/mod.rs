//! The terminal UI: a ratatui app that watches a run and steers it.
//!
//! It never touches tensors: it speaks to the engine only through
//! an [`EngineLink`](crate::engine::link::EngineLink) (`Command`s out, `Event`s in). Hyperparameter edits are
//! written to the session's `config.toml`; the config file watcher takes
//! them from there like any other edit.
//!
//! - [`state`]: the pure app state (events in, keys -> [`Action`]s)
//! - [`store`]: series and logs derived from metric lines
//! - [`decimate`]: min/max pyramids, so drawing cost is independent of run length
//! - [`view`] lays out [`header`], [`curves`], [`contributions`], [`hyper`],
//!   [`events`] and the [`help`] overlay, or the [`sessions`] view instead
//!   of the panes; [`chart`] draws their plots
//! - [`terminal`]: raw mode, alternate screen, restoring on exit/panic/signal
//! - [`fmt`], [`theme`], [`input`]: number formats, colours (16 or none), the
//!   editor's text field; [`fixtures`]: a synthetic run for tests and benches

pub mod chart;
pub mod contributions;
pub mod curves;
pub mod decimate;
pub mod events;
#[doc(hidden)]
pub mod fixtures;
pub mod fmt;
pub mod frame;
pub mod header;
pub mod help;
pub mod hyper;
pub mod input;
pub mod keys;
pub mod sessions;
pub mod state;
pub mod store;
pub mod terminal;
pub mod theme;
pub mod view;

#[cfg(test)]
mod tests;

use crate::config::{Config, ConfigError};
use crate::engine::control::Command;
use crate::engine::link::EngineLink;
use crate::session::metrics::{Level, MetricLine};
use crate::session::{atomic_write, SessionDir, SessionMeta};
use anyhow::Result;
use ratatui::crossterm::event::{self as term_event, Event as TermEvent};
use state::{Action, App, ForkReport};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How the user left the TUI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Quit (confirmed); the run was left as it was (going on, or ended).
    Left,
    /// Quit after asking the engine to stop (`Command::Stop` was sent).
    Stopped,
    /// Quit after asking a paused runner to go on (`Command::Resume` was
    /// sent): detaching from a paused run otherwise leaves it paused.
    Unpaused,
    /// Ctrl-C, SIGINT, SIGTERM or SIGHUP: no confirmation was asked and
    /// nothing was sent; the caller decides what happens to the run.
    Interrupted,
    /// Leave this session (as with `Left`) for the one in this folder,
    /// chosen in the sessions view: the caller attaches the TUI to it.
    Attach(PathBuf),
}

/// Makes the figures; its `Ok` text (e.g. the folder written) is shown.
pub type ExportFn = Box<dyn Fn() -> Result<String>>;
/// Forks the attached session from its newest checkpoint with the given
/// config (the edited one) and starts the fork.
pub type ForkFn = Box<dyn Fn(&Config) -> Result<ForkReport>>;
/// What [`ForkFn`] holds, borrowed.
pub type Forker<'a> = dyn Fn(&Config) -> Result<ForkReport> + 'a;

/// What the TUI may ask of its caller besides the engine: each key that
/// needs one says it is unavailable without it.
#[derive(Default)]
pub struct Hooks {
    /// Called on `e`.
    pub export: Option<ExportFn>,
    /// Called on `f`.
    pub fork: Option<ForkFn>,
}

/// What [`perform_with`] may use to carry out an action.
#[derive(Default, Clone, Copy)]
pub struct Ctx<'a> {
    pub export: Option<&'a dyn Fn() -> Result<String>>,
    pub fork: Option<&'a Forker<'a>>,
    /// The folder the sessions view lists.
    pub sessions_root: Option<&'a Path>,
}

/// At most this many redraws per second, after input.
pub const MAX_FPS: u32 = 30;
/// Redraws for new data alone come at most this often (training data
/// arrives every step; the eye needs no more, the GPU box keeps its CPU).
const DATA_FRAME: Duration = Duration::from_millis(100);
/// Longest wait for input before looking at the engine again.
const INPUT_POLL: Duration = Duration::from_millis(25);
/// How often the GPU is read.
const GPU_EVERY: Duration = Duration::from_secs(1);
/// How often an open sessions view (and its overlay) reads the sessions
/// folder again.
const SESSIONS_EVERY: Duration = Duration::from_secs(3);

/// Runs the TUI until the user quits; returns how.
///
/// - `meta`: the session (`session.json`) in `session`, whose `config.toml`
///   edits are written to; `config`: the config in force; `history`: the
///   lines already in `metrics.jsonl`.
/// - While the TUI runs, the process's stdout and stderr are appended to
///   the session's `output.log`.
/// - `hooks`: export and fork callbacks (see [`Hooks`]); the sessions view
///   lists the folder `session` lies in.
pub fn run(
    meta: SessionMeta,
    session: &SessionDir,
    config: Config,
    history: Vec<MetricLine>,
    link: &dyn EngineLink,
    hooks: Hooks,
) -> Result<Exit> {
    let output_log = session.output_log();
    let mut app = App::new(
        meta,
        session.config(),
        config,
        history,
        theme::Theme::from_env(),
    );
    app.can_export = hooks.export.is_some();
    app.can_fork = hooks.fork.is_some();
    app.detachable = link.detachable();
    app.takes_commands = link.takes_commands();
    let ctx = Ctx {
        export: hooks.export.as_deref(),
        fork: hooks.fork.as_deref(),
        sessions_root: session.path().parent(),
    };
    let gpu = crate::gpu::Nvml::open(&app.meta.device);
    let mut tui = terminal::Tui::enter(&output_log)?;
    let input_frame = Duration::from_secs(1) / MAX_FPS;
    let mut last_draw: Option<Instant> = None;
    let mut last_gpu: Option<Instant> = None;
    let mut sessions_reread = SessionsReread::default();
    let mut new_runner = NewRunner::default();
    // What changed since the last frame: new data, or the user's input.
    let (mut data_dirty, mut input_dirty) = (true, false);
    loop {
        if terminal::interrupted() {
            return Ok(Exit::Interrupted);
        }
        for event in link.poll() {
            app.on_event(event);
            data_dirty = true;
        }
        if let Some(edited) = app.fork_ready.take() {
            app.notify(Level::Info, "forking…");
            tui.terminal.draw(|f| view::draw(f, &app))?;
            perform_with(&mut app, Action::Fork(edited), link, ctx);
        }
        let now = Instant::now();
        if let Some(nvml) = &gpu {
            if last_gpu.is_none_or(|t| now.duration_since(t) >= GPU_EVERY) {
                app.gpu = nvml.sample();
                last_gpu = Some(now);
                data_dirty = true;
            }
        }
        data_dirty |= sessions_reread.poll(&mut app, ctx.sessions_root, now);
        if new_runner.poll(&app, session.path(), now) {
            // A new runner serves this session (it crashed or ended, and
            // was resumed), or its run facts came: attach again, to its
            // live stream and history.
            return Ok(Exit::Attach(session.path().to_path_buf()));
        }
        let had_flash = app.flash.is_some();
        app.tick(now);
        data_dirty |= had_flash != app.flash.is_some();

        let interval = if input_dirty { input_frame } else { DATA_FRAME };
        let since = last_draw.map(|t| now.duration_since(t));
        let dirty = data_dirty || input_dirty;
        if dirty && since.is_none_or(|s| s >= interval) {
            tui.terminal.draw(|f| view::draw(f, &app))?;
            last_draw = Some(now);
            (data_dirty, input_dirty) = (false, false);
        }
        // Wait for input, but no longer than until the next frame is due.
        let wait = match since {
            Some(s) if dirty && s < interval => (interval - s).min(INPUT_POLL),
            _ => INPUT_POLL,
        };
        if !term_event::poll(wait)? {
            continue;
        }
        // Handle every pending input now; draw once afterwards.
        loop {
            match term_event::read()? {
                TermEvent::Key(key) => {
                    let action = app.on_key(key);
                    if let Action::Export | Action::Fork(_) = action {
                        // Say "exporting" before the callback blocks the loop.
                        tui.terminal.draw(|f| view::draw(f, &app))?;
                    }
                    if let Some(exit) = perform_with(&mut app, action, link, ctx) {
                        return Ok(exit);
                    }
                }
                TermEvent::Resize(..) => tui.terminal.autoresize()?,
                _ => {}
            }
            input_dirty = true;
            if !term_event::poll(Duration::ZERO)? {
                break;
            }
        }
    }
}

/// Watches a session shown as ended (crashed, stopped, finished, failed)
/// for a new runner: a viewer left open across a crash stayed on
/// "crashed" after a `resume --detach` elsewhere, its sessions view calling
/// the live run failed (walkthrough O). Also a live session viewed before
/// its run facts were recorded (losses, primary metric and its direction,
/// while its runner set up): walkthrough F's viewer read "↓ (no eval yet)"
/// for R@1 to the end of the run.
#[derive(Default)]
struct NewRunner {
    last: Option<Instant>,
}

/// How often an ended session's `session.json` is read for a new runner.
const NEW_RUNNER_EVERY: Duration = Duration::from_secs(1);

impl NewRunner {
    /// True when a runner other than the one the TUI opened on runs the
    /// session in `dir` and serves its socket, or when the run facts the
    /// TUI opened without are recorded.
    fn poll(&mut self, app: &App, dir: &Path, now: Instant) -> bool {
        let live = !app.status.is_terminal();
        // A live run viewed through its files (a runner caught before it
        // bound its socket) is attached to once it serves.
        let unlinked = live && !app.takes_commands;
        let facts_pending = live && app.meta.libtorch.is_empty();
        // Not while the user edits a value, browses the sessions, waits for
        // a fork's checkpoint or answers a dialog: the new attach would
        // drop what they are doing (it waits for them).
        if !(app.status.is_terminal() || unlinked || facts_pending)
            || app.editor.is_some()
            || app.sessions.is_some()
            || app.fork_waiting.is_some()
            || app.overlay != state::Overlay::None
            || self
                .last
                .is_some_and(|t| now.duration_since(t) < NEW_RUNNER_EVERY)
        {
            return false;
        }
        self.last = Some(now);
        // session.json first (a file read); the socket only for a new pid
        // (connecting is a client the runner greets).
        SessionMeta::read(dir).is_ok_and(|disk| {
            let recorded = facts_pending && !disk.libtorch.is_empty();
            let new_runner = !disk.status.is_terminal()
                && (disk.pid != app.meta.pid || unlinked)
                && disk.runner_alive()
                && crate::runner::is_serving(dir);
            recorded || new_runner
        })
    }
}

/// Reads the sessions folder again for an open sessions view, every
/// [`SESSIONS_EVERY`], on a thread of its own: listing every session reads
/// their logs, which must not stall the keys.
#[derive(Default)]
struct SessionsReread {
    /// When the view was listed or last re-read; `None` while it is closed.
    since: Option<Instant>,
    /// The read under way: the runs, and the overlay's curves when shown.
    pending: Option<std::sync::mpsc::Receiver<Reread>>,
}

/// What a re-read of the sessions folder found.
type Reread = (Vec<crate::runs::Run>, Option<Result<state::Overlaid>>);

impl SessionsReread {
    /// Starts a read when one is due, hands a finished one to `app`; true
    /// when the view changed.
    fn poll(&mut self, app: &mut App, root: Option<&Path>, now: Instant) -> bool {
        let (Some(view), Some(root)) = (&app.sessions, root) else {
            *self = Self::default();
            return false;
        };
        if let Some(pending) = &self.pending {
            return match pending.try_recv() {
                Ok((runs, overlay)) => {
                    self.pending = None;
                    app.refresh_sessions(runs, overlay);
                    true
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => false,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    self.pending = None;
                    false
                }
            };
        }
        match self.since {
            None => self.since = Some(now),
            Some(t) if now.duration_since(t) >= SESSIONS_EVERY => {
                self.since = Some(now);
                let root = root.to_path_buf();
                let marked = view.overlay.is_some().then(|| view.marked_dirs());
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    let overlay = marked.map(|dirs| sessions::read_overlay(&dirs));
                    let _ = tx.send((crate::runs::all(&root), overlay));
                });
                self.pending = Some(rx);
            }
            Some(_) => {}
        }
        false
    }
}

/// Carries out an [`Action`] with only an export callback; `Some` when the
/// TUI must exit.
pub fn perform(
    app: &mut App,
    action: Action,
    link: &dyn EngineLink,
    export: Option<&dyn Fn() -> Result<String>>,
) -> Option<Exit> {
    let ctx = Ctx {
        export,
        ..Ctx::default()
    };
    perform_with(app, action, link, ctx)
}

/// Carries out an [`Action`]; `Some` when the TUI must exit.
pub fn perform_with(
    app: &mut App,
    action: Action,
    link: &dyn EngineLink,
    ctx: Ctx,
) -> Option<Exit> {
    let export = ctx.export;
    match action {
        Action::None => {}
        Action::Send(command) => link.send(command),
        Action::WriteConfig {
            key,
            value,
            config,
            summary,
        } => match write_config(&app.config_path, &app.in_force, &key, &value, &config) {
            Ok(written) => app.wrote_config(written, &summary),
            Err(e) => app.config_not_written(format!("{e:#}")),
        },
        Action::Export => match export {
            Some(f) => app.exported(f()),
            None => app.notify(Level::Warn, "export is not available here"),
        },
        Action::ListSessions => app.show_sessions(match ctx.sessions_root {
            Some(root) => Ok(crate::runs::all(root)),
            None => Err(anyhow::anyhow!("no sessions folder is known here")),
        }),
        Action::OverlayCurves(dirs) => app.show_overlay(sessions::read_overlay(&dirs)),
        Action::Fork(edited) => match ctx.fork {
            Some(f) => {
                let result = f(edited.as_deref().unwrap_or(&app.config));
                app.forked(result)
            }
            None => app.notify(Level::Warn, "fork is not available here"),
        },
        Action::Quit(exit) => {
            match exit {
                Exit::Stopped => link.send(Command::Stop),
                Exit::Unpaused => link.send(Command::Resume),
                _ => {}
            }
            return Some(exit);
        }
    }
    None
}

/// Sets `key` to `value` in the config file at `path`, editing the TOML
/// document in place (comments, order and formatting stay; see
/// [`crate::config::edit`]) and replacing the file atomically. A file that
/// is not a valid config read over `in_force` (a pending hand edit with a
/// mistake) is left byte for byte as it is, and the error says where and
/// what is wrong. A missing file, or one that sets no key, is written
/// whole from `whole` (its comments kept). Returns
/// the config the file now asks for, restart-only keys as in force.
pub fn write_config(
    path: &Path,
    in_force: &Config,
    key: &str,
    value: &toml::Value,
    whole: &Config,
) -> Result<Config> {
    let bytes = match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            atomic_write(path, whole.to_toml_string().as_bytes())?;
            return Ok(whole.clone());
        }
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        Ok(bytes) => bytes,
    };
    let located = |mut e: ConfigError| {
        e.file = Some(path.to_path_buf());
        anyhow::anyhow!(
            "{e} (the file holds an edit that is not valid, so it was left as it is: fix or undo that edit first)"
        )
    };
    let text = crate::config::decode_text(bytes).map_err(located)?;
    if crate::config::sets_no_keys(&text) {
        // Emptied (or only comments): the whole config goes back, the
        // comments kept; one key alone would leave the session's file
        // holding that key only (walkthrough B).
        // Its comments only: an empty `[aid]` kept above the whole config
        // would define that table twice.
        let comments: Vec<&str> = text
            .lines()
            .filter(|l| l.trim_start().starts_with('#'))
            .collect();
        let notes = match comments.is_empty() {
            true => String::new(),
            false => format!("{}\n\n", comments.join("\n")),
        };
        let full = format!("{notes}{}", whole.to_toml_string());
        atomic_write(path, full.as_bytes())?;
        return Ok(whole.clone().keeping_restart_only_of(in_force));
    }
    Config::parse_over(in_force, &text).map_err(located)?;
    let edited = crate::config::edit::set_value(&text, key, value).map_err(located)?;
    let config = Config::parse_over(in_force, &edited).map_err(located)?;
    atomic_write(path, edited.as_bytes())?;
    Ok(config.keeping_restart_only_of(in_force))
}
