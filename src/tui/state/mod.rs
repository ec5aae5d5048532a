//! The application state, free of I/O and terminals: what the engine said
//! (through [`App::on_event`]), what each pane is showing, and what a key
//! does ([`App::on_key`] returns an [`Action`] for the caller to carry out).
//! Edits are validated here with `Config::with_value` and
//! `restart_only_reason` before anything may be written.
//!
//! Long: the App struct and its event handling, one impl read together;
//! keys (`on_key`) and the sessions view (`sessions`) are submodules.

use super::input::Input;
use super::store::{EntryKind, Store};
use super::theme::Theme;
use super::Exit;
use crate::gpu::GpuSample;

mod on_key;
pub use on_key::NOT_LINKED;
mod sessions;
use crate::config::{restart_only_reason, Config};
use crate::engine::control::{Command, Event};
use crate::session::metrics::{Level, MetricLine, Record, CHECKPOINT_ASKED_EVENT};
use crate::session::{SessionMeta, Status};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
pub use sessions::{Overlaid, OverlayCurve, SessionsView, MIN_OVERLAID};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The four panes; number keys 1-4 follow this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Curves,
    Contributions,
    Hyper,
    Events,
}

impl Pane {
    pub const ALL: [Pane; 4] = [Pane::Curves, Pane::Contributions, Pane::Hyper, Pane::Events];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Curves => "Curves",
            Pane::Contributions => "Contributions",
            Pane::Hyper => "Hyperparameters",
            Pane::Events => "Events",
        }
    }

    pub fn index(self) -> usize {
        Pane::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }

    fn offset(self, by: isize) -> Pane {
        let n = Pane::ALL.len() as isize;
        Pane::ALL[(self.index() as isize + by).rem_euclid(n) as usize]
    }
}

/// A modal layer over the panes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlay {
    None,
    /// Every key binding; `scroll` rows scrolled down.
    Help {
        scroll: usize,
    },
    ConfirmQuit,
    /// One events-pane entry in full (`index` into the log), `scroll`
    /// rows scrolled down: an entry longer than the pane is cut there.
    Entry {
        index: usize,
        scroll: usize,
    },
}

/// Which steps the curves show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    Full,
    /// The last N steps.
    Last(u64),
}

/// Recent-window sizes `w` cycles through (those shorter than the run so far).
pub const WINDOWS: [u64; 4] = [100_000, 10_000, 1_000, 100];
/// EMA weights `s`/`S` step through.
pub const SMOOTHING: [Option<f64>; 6] = [
    None,
    Some(0.6),
    Some(0.8),
    Some(0.9),
    Some(0.95),
    Some(0.99),
];

/// A series the curves pane can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CurveId {
    /// Training loss `Store::losses[i]`.
    Loss(usize),
    /// The combined loss.
    Total,
    /// The primary validation metric.
    Metric,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CurvesView {
    /// The log axis as `l` last set it; see [`App::log_scale`].
    pub log: bool,
    /// Whether `l` was pressed: until then the loss pane's axis follows the
    /// losses' sizes ([`Store::losses_far_apart`]).
    pub log_chosen: bool,
    /// Index into [`SMOOTHING`].
    pub smoothing: usize,
    pub window: Window,
    pub hidden: BTreeSet<CurveId>,
    /// Selected entry of [`App::curve_ids`].
    pub cursor: usize,
}

/// The hyperparameter editor: a key being edited and the text typed.
#[derive(Debug, Clone, PartialEq)]
pub struct Editor {
    pub key: String,
    pub input: Input,
    /// Why the last Enter was refused.
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    pub step: u64,
    pub total: u64,
    pub steps_per_sec: f64,
}

/// A short message in the footer; expires after [`FLASH_FOR`].
#[derive(Debug, Clone, PartialEq)]
pub struct Flash {
    pub level: Level,
    pub text: String,
    since: Option<Instant>,
    /// The event that makes it stale before it expires, if any.
    until: Option<Until>,
}

/// What ends a footer message early: it announced something the screen
/// shows once it happens (a walkthrough saw "pause requested" beside the
/// header's "paused").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// The run's status changes (pause, resume).
    StatusChanges,
    /// The runner sends its config in force (an edit written, applied).
    ConfigApplied,
}

/// What the fork callback made.
#[derive(Debug, Clone, PartialEq)]
pub struct ForkReport {
    /// The new session's id and folder.
    pub id: String,
    pub dir: PathBuf,
    /// The checkpoint step it starts from.
    pub step: u64,
    /// Its `--set`s (`key=value`), the edits that differ from the parent.
    pub changes: Vec<String>,
}

pub const FLASH_FOR: Duration = Duration::from_secs(6);

/// What the caller must do after a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    None,
    Send(Command),
    /// Set `key` to `value` in the session's `config.toml`, in place
    /// (atomically; the rest of the file as the user wrote it); the file
    /// watcher takes it from there. `config`: the config with the edit (the
    /// whole file when there is none); `summary` names what changed.
    WriteConfig {
        key: String,
        value: toml::Value,
        config: Box<Config>,
        summary: String,
    },
    /// Call the export callback.
    Export,
    /// Read the sessions folder and open the sessions view
    /// ([`App::show_sessions`]).
    ListSessions,
    /// Read these sessions' curves for the overlay ([`App::show_overlay`]).
    OverlayCurves(Vec<PathBuf>),
    /// Fork the attached session from its newest checkpoint with
    /// [`App::config`] (the edited config), or with the given config (an
    /// editor value tried on the fork only, not written here), and start
    /// the fork ([`App::forked`]).
    Fork(Option<Box<Config>>),
    /// Leave the TUI; with `Exit::Stopped` the caller sends `Command::Stop` first.
    Quit(Exit),
}

pub struct App {
    pub meta: SessionMeta,
    pub config_path: PathBuf,
    /// What edits start from: the config in force, or the one this TUI wrote last.
    pub config: Config,
    /// The config the engine last reported in force.
    pub in_force: Config,
    pub store: Store,
    pub status: Status,
    /// Why the run failed or stopped, when the engine said.
    pub status_message: Option<String>,
    pub progress: Option<Progress>,
    pub focus: Pane,
    pub overlay: Overlay,
    /// How far the entry box can scroll at its last drawing (its wrapped
    /// lines less those shown): ↓ stops there.
    pub entry_scroll_max: std::cell::Cell<usize>,
    /// The help overlay's largest scroll at its drawn height (set as it
    /// is drawn): it scrolled on past its last line (walkthrough V).
    pub help_scroll_max: std::cell::Cell<usize>,
    pub curves: CurvesView,
    /// Index into `store.losses` of the loss whose transform is shown.
    pub transform_loss: usize,
    /// Selected row of the hyperparameter table.
    pub hyper_cursor: usize,
    pub editor: Option<Editor>,
    /// Event-log entries scrolled up from the newest (0 follows new entries).
    pub events_scroll: usize,
    /// How far the events pane can scroll at its last drawing (to where the
    /// oldest entry is at its top and the pane still full), with the log's
    /// length then (none before the first drawing: as far as the oldest
    /// entry).
    pub events_scroll_max: std::cell::Cell<Option<(usize, usize)>>,
    pub flash: Option<Flash>,
    pub gpu: Option<GpuSample>,
    pub theme: Theme,
    /// Whether an export callback was given.
    pub can_export: bool,
    /// Whether the run lives in a runner process that goes on when the TUI
    /// leaves (else leaving stops it).
    pub detachable: bool,
    /// Whether a fork callback was given.
    pub can_fork: bool,
    /// A fork asked for on a live run, waiting for the checkpoint of its
    /// current step (with the edited config of Ctrl-F, if any).
    pub fork_waiting: Option<Option<Box<Config>>>,
    /// Whether commands reach the run (false for a run viewed from its
    /// files, e.g. a headless one: no socket).
    pub takes_commands: bool,
    /// That fork, once its checkpoint is written: the loop performs it.
    pub fork_ready: Option<Option<Box<Config>>>,
    /// The sessions view, while open (it replaces the panes).
    pub sessions: Option<SessionsView>,
}

impl App {
    /// The run's status in words; a run whose runner died is "crashed", as
    /// `ls` says.
    pub fn status_word(&self) -> &'static str {
        let runner_gone = self
            .status_message
            .as_deref()
            .is_some_and(|m| m.starts_with(crate::runner::link::RUNNER_GONE));
        // A runner greets a viewer with this while its trainer is built.
        let setting_up = self
            .status_message
            .as_deref()
            .is_some_and(|m| m.starts_with(crate::runner::serve::SETTING_UP));
        match self.status {
            Status::Failed if runner_gone => "crashed",
            Status::Running if setting_up => "setting up",
            status => status.as_str(),
        }
    }

    pub fn new(
        meta: SessionMeta,
        config_path: PathBuf,
        config: Config,
        history: impl IntoIterator<Item = MetricLine>,
        theme: Theme,
    ) -> Self {
        let mut store = Store::new(&meta.losses, &meta.primary_metric, meta.higher_is_better);
        // A fork's own evaluations come after its fork step, as `ls` and
        // `table` read them.
        store.best_from = meta.first_own_step();
        for line in history {
            store.ingest(&line);
        }
        store.decide_loss_axis();
        Self {
            status: meta.status,
            status_message: meta.error.clone(),
            meta,
            config_path,
            in_force: config.clone(),
            config,
            store,
            progress: None,
            focus: Pane::Curves,
            overlay: Overlay::None,
            entry_scroll_max: std::cell::Cell::new(0),
            help_scroll_max: std::cell::Cell::new(crate::tui::keys::KEYS.len()),
            curves: CurvesView {
                log: false,
                log_chosen: false,
                smoothing: 0,
                window: Window::Full,
                hidden: [CurveId::Total].into(),
                cursor: 0,
            },
            transform_loss: 0,
            hyper_cursor: 0,
            editor: None,
            events_scroll: 0,
            events_scroll_max: std::cell::Cell::new(None),
            flash: None,
            gpu: None,
            theme,
            can_export: false,
            detachable: false,
            can_fork: false,
            fork_waiting: None,
            takes_commands: true,
            fork_ready: None,
            sessions: None,
        }
    }

    // ---- what the engine says -------------------------------------------------

    pub fn on_event(&mut self, event: Event) {
        let entries = self.store.log.len();
        self.apply(event);
        // A scrolled-back events pane stays on the entries it shows.
        if self.events_scroll > 0 {
            self.events_scroll += self.store.log.len() - entries;
        }
    }

    /// A waiting fork becomes ready (its checkpoint is written, or the run
    /// ended and it forks from the newest).
    fn fork_may_go(&mut self) {
        if let Some(edited) = self.fork_waiting.take() {
            self.fork_ready = Some(edited);
        }
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Line { line, .. } => {
                // The checkpoint a waiting fork asked for is written (or
                // could not be pinned: it is there all the same).
                let checkpointed = matches!(&line.record,
                    Record::Event { message, .. } if message.starts_with(CHECKPOINT_ASKED_EVENT));
                if checkpointed {
                    self.fork_may_go();
                }
                self.store.ingest(&line)
            }
            Event::Progress {
                step,
                total_steps,
                steps_per_sec,
            } => {
                self.progress = Some(Progress {
                    step,
                    total: total_steps,
                    steps_per_sec,
                });
            }
            Event::Status { status, message } => {
                // A runner greets each TUI that attaches with its status: the
                // same status again, unexplained, is no event (walkthrough N's
                // Events pane read "status run running").
                let news = status != self.status || message.is_some();
                // A run that ends before its checkpoint came forks from its
                // newest one.
                if status.is_terminal() {
                    self.fork_may_go();
                    self.store.decide_loss_axis();
                }
                // Paused with a reason (a checkpoint that could not be
                // written): the fork is dropped, said, not left to go off
                // at a later checkpoint.
                if let (Status::Paused, Some(why)) = (status, &message) {
                    if self.fork_waiting.take().is_some() {
                        self.store.push_entry(
                            self.step(),
                            Level::Warn,
                            EntryKind::Status,
                            format!("fork not made: {why}"),
                        );
                    }
                }
                self.status = status;
                let level = match status {
                    Status::Failed => Level::Error,
                    Status::Stopped => Level::Warn,
                    _ => Level::Info,
                };
                self.status_message = message;
                // In the header's word (the events pane read "run failed"
                // under a header's "crashed": walkthrough Y).
                // A message opening with the word says it once (walkthrough
                // K2: "run setting up: setting up: loading the model …").
                let word = self.status_word();
                let text = match &self.status_message {
                    Some(m) if m.starts_with(&format!("{word}: ")) => format!("run {m}"),
                    Some(m) => format!("run {word}: {m}"),
                    None => format!("run {word}"),
                };
                if news {
                    let step = self.step();
                    self.store.push_entry(step, level, EntryKind::Status, text);
                }
                // The header shows the new state: "pause requested" is done
                // (it stayed beside it, a walkthrough).
                self.clear_flash(Until::StatusChanges);
            }
            Event::ConfigInForce { config } => {
                // Applied: "wrote … applies it within a second" is done (it
                // stayed past a later edit from the shell, a walkthrough).
                self.clear_flash(Until::ConfigApplied);
                // The config error stays until the log says the file reads
                // again: a runner greets every TUI that attaches with its
                // config in force, bad file or not.
                self.in_force = *config;
                self.config = self.in_force.clone();
                // The header's step/steps at once: a paused run sends no
                // progress (walkthrough Y read 294/500 after steps → 600).
                if let Some(progress) = &mut self.progress {
                    progress.total = self.in_force.train.steps;
                }
            }
        }
    }

    /// Expires the footer message.
    pub fn tick(&mut self, now: Instant) {
        if let Some(flash) = &mut self.flash {
            match flash.since {
                None => flash.since = Some(now),
                Some(since) if now.duration_since(since) >= FLASH_FOR => self.flash = None,
                Some(_) => {}
            }
        }
    }

    /// Drops the footer message that `event` makes stale.
    fn clear_flash(&mut self, event: Until) {
        if self.flash.as_ref().is_some_and(|f| f.until == Some(event)) {
            self.flash = None;
        }
    }

    pub fn notify(&mut self, level: Level, text: impl Into<String>) {
        self.notify_until(level, text, None);
    }

    /// [`Self::notify`], ended early by `until`.
    pub fn notify_until(&mut self, level: Level, text: impl Into<String>, until: Option<Until>) {
        self.flash = Some(Flash {
            level,
            text: text.into(),
            since: None,
            until,
        });
    }

    /// Records a config this TUI wrote to `config.toml`.
    pub fn wrote_config(&mut self, config: Config, summary: &str) {
        let config_steps = config.train.steps;
        let lowered = config_steps < self.config.train.steps;
        self.config = config;
        let text = if self.status.is_terminal() {
            let more = if config_steps <= self.step() {
                format!(
                    "raise train.steps above {}, then resume or fork (f)",
                    self.step()
                )
            } else {
                "resume or fork (f) to train with it".to_string()
            };
            format!("wrote {summary} to config.toml; the run has ended: {more}")
        } else if lowered && config_steps <= self.step() {
            format!(
                "wrote {summary} to config.toml: train.steps {config_steps} is not above the step reached, \
                 so the run ends at its next step boundary (evaluated and checkpointed; \
                 raise train.steps and resume to go on)"
            )
        } else {
            format!("wrote {summary} to config.toml; the run applies it at a step boundary within a second")
        };
        self.store
            .push_entry(self.step(), Level::Info, EntryKind::Tui, text.clone());
        self.notify_until(Level::Info, text, Some(Until::ConfigApplied));
    }

    /// Records why an edit was not written to `config.toml` (in the events
    /// pane and the status line).
    pub fn config_not_written(&mut self, why: String) {
        let text = format!("cannot write the config: {why}");
        self.store
            .push_entry(self.step(), Level::Error, EntryKind::Tui, text.clone());
        // Until an edit applies (it stayed on after one, walkthrough B).
        self.notify_until(Level::Error, text, Some(Until::ConfigApplied));
    }

    /// Records the export callback's answer.
    pub fn exported(&mut self, result: anyhow::Result<String>) {
        let (level, text) = match result {
            Ok(m) => (Level::Info, format!("exported: {m}")),
            Err(e) => (Level::Error, format!("export failed: {e:#}")),
        };
        self.store
            .push_entry(self.step(), level, EntryKind::Tui, text.clone());
        self.notify(level, text);
    }

    /// Records the fork callback's answer: the new session's id (or why
    /// there is none) in the status line and the events pane.
    pub fn forked(&mut self, result: anyhow::Result<ForkReport>) {
        let (level, text) = match result {
            Ok(f) => {
                let with = if f.changes.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", f.changes.join(", "))
                };
                // Beside a run that has ended, nothing shares the machine
                // (walkthrough B read "beside this run" of a finished one).
                let beside = match self.status.is_terminal() {
                    true => "",
                    false => " beside this run, sharing the machine",
                };
                (
                    Level::Info,
                    format!(
                        "forked at step {}{with} into session {} (running): its own runner trains it to train.steps{beside}; \
                         r lists it, Enter attaches, `{}` ends it",
                        f.step,
                        f.id,
                        crate::session::command_for(&f.dir, "stop")
                    ),
                )
            }
            Err(e) => (Level::Error, format!("fork failed: {e:#}")),
        };
        self.store
            .push_entry(self.step(), level, EntryKind::Tui, text.clone());
        self.notify(level, text);
    }

    // ---- derived values -------------------------------------------------------

    /// The newest step known, from progress or the log.
    pub fn step(&self) -> u64 {
        self.progress
            .map_or(0, |p| p.step)
            .max(self.store.last_step)
    }

    /// The run's last step: `train.steps`, or the step a finished run
    /// reached (a live edit lowering train.steps ends it there: the header
    /// read "finished · step 501/600 (84%)", walkthrough B).
    pub fn total_steps(&self) -> u64 {
        if self.status == Status::Finished {
            return self.step();
        }
        self.progress.map_or(self.in_force.train.steps, |p| p.total)
    }

    /// Seconds left at the current speed, while running.
    pub fn eta_secs(&self) -> Option<f64> {
        let p = self.progress?;
        (self.status == Status::Running && p.steps_per_sec > 0.0)
            .then(|| self.total_steps().saturating_sub(self.step()) as f64 / p.steps_per_sec)
    }

    /// The series the curves pane can show, in legend order.
    pub fn curve_ids(&self) -> Vec<CurveId> {
        (0..self.store.losses.len())
            .map(CurveId::Loss)
            .chain([CurveId::Total, CurveId::Metric])
            .collect()
    }

    pub fn curve_name(&self, id: CurveId) -> String {
        match id {
            CurveId::Loss(i) => self.store.losses[i].clone(),
            CurveId::Total => "combined".into(),
            CurveId::Metric => format!("val {}", self.store.primary_metric),
        }
    }

    pub fn smoothing(&self) -> Option<f64> {
        SMOOTHING[self.curves.smoothing]
    }

    /// Whether the curves are drawn on a log axis: as `l` set it, else
    /// when the losses' sizes are decades apart (as `export` chooses).
    pub fn log_scale(&self) -> bool {
        if self.curves.log_chosen {
            self.curves.log
        } else {
            self.store.losses_far_apart
        }
    }

    /// The hyperparameter table: every key of the config edits start from.
    pub fn hyper_rows(&self) -> Vec<(String, toml::Value)> {
        self.config.flatten().into_iter().collect()
    }

    // ---- keys -----------------------------------------------------------------
}

/// Why `key` cannot change here, and where it can: neither a resume nor a
/// fork takes a restart-only edit (this said "restart the run", and the
/// resume then refused it), only a new session.
fn restart_only_message(key: &str, reason: &str) -> String {
    format!(
        "`{key}` is restart-only ({reason}): this session keeps its value, resumed or forked; \
         to train with another, start a new session (`meltr-tui run -c CONFIG --set {key}=...`)"
    )
}
