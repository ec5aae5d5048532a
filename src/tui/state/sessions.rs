//! The sessions view's state and keys: every session of the sessions
//! folder as a row of the runs table (`crate::runs`), a cursor, marks, and
//! the marked sessions' loss curves overlaid. Reading the folder and the
//! curves is the caller's (see [`Action::ListSessions`] and
//! [`Action::OverlayCurves`]); this is pure.

use super::*;
use crate::runs::Run;

/// One session's curve in the overlay chart.
#[derive(Debug, Clone, PartialEq)]
pub struct OverlayCurve {
    pub label: String,
    /// `(step, value)`, steps non-decreasing.
    pub points: Vec<(f64, f64)>,
}

/// The marked sessions' curves, and what they show.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlaid {
    /// What the curves are (e.g. `training loss primary`).
    pub what: String,
    pub curves: Vec<OverlayCurve>,
}

/// The sessions view, shown instead of the panes while open.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionsView {
    /// The runs table's rows, oldest first.
    pub runs: Vec<Run>,
    /// The config keys whose values differ between the rows, the one with
    /// the most values first (a narrow terminal keeps the first that fit:
    /// walkthrough R's 80 columns kept `aid.alpha` and `train.steps`, which
    /// one session had changed, and hid `combiner.kind`, which told a
    /// sweep's twelve rows apart).
    pub differing: Vec<String>,
    /// The first differing key shown (← and → scroll the key columns on a
    /// terminal too narrow for them all).
    pub first_key: usize,
    /// Selected row.
    pub cursor: usize,
    /// Marked rows, by session folder.
    pub marked: BTreeSet<PathBuf>,
    /// The marked sessions' curves, once asked for.
    pub overlay: Option<Overlaid>,
}

impl SessionsView {
    /// The view over `runs`, the cursor on the session in `current` (the
    /// attached one) when it is listed.
    pub fn new(runs: Vec<Run>, current: &Path) -> SessionsView {
        let differing = most_values_first(&runs);
        let cursor = runs
            .iter()
            .position(|r| r.dir.file_name() == current.file_name())
            .unwrap_or(0);
        SessionsView {
            runs,
            differing,
            cursor,
            ..Default::default()
        }
    }

    /// The marked sessions' folders, in row order.
    pub fn marked_dirs(&self) -> Vec<PathBuf> {
        self.runs
            .iter()
            .filter(|r| self.marked.contains(&r.dir))
            .map(|r| r.dir.clone())
            .collect()
    }
}

/// The keys whose values differ between `runs`, the one with the most
/// values first; among keys with as many, one a run changed while it
/// trained (starred) first (walkthrough Z's 120 columns hid them behind
/// `+6 keys`); else in key order.
fn most_values_first(runs: &[Run]) -> Vec<String> {
    let differing = crate::runs::keys::differing(runs);
    let mut differing = crate::runs::keys::with_edited(differing, runs);
    let edited = |key: &String| runs.iter().any(|r| r.edited.contains_key(key));
    // A key a run changed and then set back has taken two values at least
    // (one alone would sort it behind every differing key).
    let values = |key: &String| -> usize {
        let each: BTreeSet<Option<String>> = runs
            .iter()
            .map(|r| r.config.get(key).map(crate::runs::keys::text))
            .collect();
        match edited(key) {
            true => each.len().max(2),
            false => each.len(),
        }
    };
    differing.sort_by_key(|key| (std::cmp::Reverse(values(key)), !edited(key)));
    differing
}

/// What the overlay needs at least.
pub const MIN_OVERLAID: usize = 2;

impl App {
    /// Opens the sessions view over `runs` (read by the caller).
    pub fn show_sessions(&mut self, runs: anyhow::Result<Vec<Run>>) {
        match runs {
            Ok(runs) => {
                let current = self.session_dir();
                self.sessions = Some(SessionsView::new(runs, &current));
            }
            Err(e) => self.notify(Level::Error, format!("cannot list sessions: {e:#}")),
        }
    }

    /// Replaces the open sessions view's rows with `runs` (read again by
    /// the caller) and its overlay, when shown, with `overlay` (the marked
    /// folders' curves read again): the other sessions move on too. The
    /// cursor stays on its session, the marks on theirs; a failed read of
    /// the curves keeps those shown.
    pub fn refresh_sessions(&mut self, runs: Vec<Run>, overlay: Option<anyhow::Result<Overlaid>>) {
        let Some(view) = self.sessions.as_mut() else {
            return;
        };
        let at = view.runs.get(view.cursor).map(|r| r.dir.clone());
        // Ordered as when it opened (walkthrough V's columns reordered at
        // the first refresh).
        view.differing = most_values_first(&runs);
        view.first_key = view.first_key.min(view.differing.len().saturating_sub(1));
        view.cursor = at
            .and_then(|dir| runs.iter().position(|r| r.dir == dir))
            .unwrap_or(view.cursor)
            .min(runs.len().saturating_sub(1));
        view.runs = runs;
        if let (Some(shown), Some(Ok(fresh))) = (view.overlay.as_mut(), overlay) {
            *shown = fresh;
        }
    }

    /// Shows the curves the caller read for the marked sessions.
    pub fn show_overlay(&mut self, overlaid: anyhow::Result<Overlaid>) {
        match (overlaid, &mut self.sessions) {
            (Ok(o), Some(view)) => view.overlay = Some(o),
            (Ok(_), None) => {}
            (Err(e), _) => self.notify(Level::Error, format!("cannot overlay curves: {e:#}")),
        }
    }

    /// The attached session's folder (where its `config.toml` lies).
    pub fn session_dir(&self) -> PathBuf {
        self.config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Keys of the sessions view; `None` for keys it leaves to the global
    /// bindings (`?`, `q`, `p`, …).
    pub(super) fn sessions_key(&mut self, key: KeyEvent) -> Option<Action> {
        let view = self.sessions.as_mut()?;
        let last = view.runs.len().saturating_sub(1);
        match key.code {
            KeyCode::Esc if view.overlay.is_some() => view.overlay = None,
            KeyCode::Esc | KeyCode::Char('r') => self.sessions = None,
            KeyCode::Char('1'..='4') | KeyCode::Tab | KeyCode::BackTab => {
                // Back to the panes, and on to the one asked for.
                self.sessions = None;
                return None;
            }
            KeyCode::Up | KeyCode::Char('k') => view.cursor = view.cursor.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => view.cursor = (view.cursor + 1).min(last),
            KeyCode::Left => view.first_key = view.first_key.saturating_sub(1),
            KeyCode::Right => {
                view.first_key = (view.first_key + 1).min(view.differing.len().saturating_sub(1))
            }
            KeyCode::Home => view.cursor = 0,
            KeyCode::End => view.cursor = last,
            KeyCode::Char(' ') => {
                let dir = view.runs.get(view.cursor)?.dir.clone();
                if !view.marked.remove(&dir) {
                    view.marked.insert(dir);
                }
                view.cursor = (view.cursor + 1).min(last);
            }
            KeyCode::Char('o') => {
                let dirs = view.marked_dirs();
                if dirs.len() < MIN_OVERLAID {
                    self.notify(
                        Level::Warn,
                        format!(
                            "mark {MIN_OVERLAID} or more sessions with Space to overlay their curves \
                             ({} marked)",
                            dirs.len()
                        ),
                    );
                    return Some(Action::None);
                }
                return Some(Action::OverlayCurves(dirs));
            }
            KeyCode::Enter => {
                let dir = view.runs.get(view.cursor)?.dir.clone();
                if dir.file_name() == self.session_dir().file_name() {
                    self.sessions = None;
                    self.notify(Level::Info, "already attached to this session");
                    return Some(Action::None);
                }
                return Some(Action::Quit(Exit::Attach(dir)));
            }
            _ => return None,
        }
        Some(Action::None)
    }
}
