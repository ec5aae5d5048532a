//! The whole screen: header, the panes (a 2x2 grid on large terminals, one
//! pane with a tab bar on small ones), footer and overlays. Pure: it reads
//! the [`App`] and draws; no state changes.

use super::state::{App, Overlay, Pane};
use super::{contributions, curves, events, fmt, header, help, hyper, sessions};
use crate::session::metrics::Level;
use crate::session::Status;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Tabs};
use ratatui::Frame;

/// At or above this size all four panes are shown at once.
pub const GRID_MIN: (u16, u16) = (120, 32);
/// Below this size only a note is drawn.
pub const TINY: (u16, u16) = (24, 8);

/// Whether `area` is large enough for the 2x2 grid.
pub fn is_grid(area: Rect) -> bool {
    area.width >= GRID_MIN.0 && area.height >= GRID_MIN.1
}

pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    if area.width < TINY.0 || area.height < TINY.1 {
        let note = format!("{}x{}: too small", area.width, area.height);
        frame.render_widget(Paragraph::new(fmt::clip(&note, area.width.into())), area);
        return;
    }
    let grid = is_grid(area);
    let header_height = header::height(app, area.width);
    let [head, tabs, body, foot] = Layout::vertical([
        Constraint::Length(header_height),
        Constraint::Length(if grid { 0 } else { 1 }),
        Constraint::Min(1),
        Constraint::Length(footer_height(app, area.width)),
    ])
    .areas(area);
    header::render(frame, head, app);
    if let Some(view) = &app.sessions {
        sessions::render(frame, tabs.union(body), app, view);
    } else if grid {
        let [top, bottom] =
            Layout::vertical([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(body);
        let [a, b] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(top);
        let [c, d] = Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)])
            .areas(bottom);
        for (pane, rect) in Pane::ALL.into_iter().zip([a, b, c, d]) {
            render_pane(frame, rect, app, pane);
        }
    } else {
        render_tabs(frame, tabs, app);
        render_pane(frame, body, app, app.focus);
    }
    render_footer(frame, foot, app);
    match app.overlay {
        Overlay::Help { scroll } => help::render(frame, body, app, scroll),
        Overlay::ConfirmQuit => help::render_confirm_quit(frame, body, app),
        Overlay::Entry { index, scroll } => events::render_entry(frame, body, app, index, scroll),
        Overlay::None => {}
    }
}

/// Draws one pane into `area`, focused or not.
pub fn render_pane(frame: &mut Frame, area: Rect, app: &App, pane: Pane) {
    let focused = app.focus == pane;
    match pane {
        Pane::Curves => curves::render(frame, area, app, focused),
        Pane::Contributions => contributions::render(frame, area, app, focused),
        Pane::Hyper => hyper::render(frame, area, app, focused),
        Pane::Events => events::render(frame, area, app, focused),
    }
}

fn render_tabs(frame: &mut Frame, area: Rect, app: &App) {
    let titles = Pane::ALL.map(|p| format!("{} {}", p.index() + 1, p.title()));
    let tabs = Tabs::new(titles)
        .select(app.focus.index())
        .highlight_style(app.theme.selected())
        .divider("│");
    frame.render_widget(tabs, area);
}

/// Lines a flash message may take at the bottom: where the point of a long
/// one (why an edit was refused, what to do) comes last, one line cut it.
const FLASH_LINES: usize = 3;

/// A flash message wrapped at word boundaries into at most [`FLASH_LINES`]
/// lines, the last cut with `…` when there is more.
fn flash_lines(text: &str, width: usize) -> Vec<String> {
    let mut lines = fmt::wrap(text, width);
    if lines.len() > FLASH_LINES {
        let rest = lines.split_off(FLASH_LINES - 1).join(" ");
        lines.push(fmt::clip(&rest, width));
    }
    lines
}

/// The footer's height: one line, or as many as the flash needs.
fn footer_height(app: &App, width: u16) -> u16 {
    let needed = app
        .flash
        .as_ref()
        .map_or(1, |f| flash_lines(&f.text, usize::from(width)).len());
    needed.clamp(1, FLASH_LINES) as u16
}

fn render_footer(frame: &mut Frame, area: Rect, app: &App) {
    let width = usize::from(area.width);
    let line = match &app.flash {
        Some(flash) => {
            let style = match flash.level {
                Level::Info => app.theme.accent(),
                level => app.theme.level(level),
            };
            let lines: Vec<Line> = flash_lines(&flash.text, width)
                .into_iter()
                .map(|l| Line::from(Span::styled(l, style)))
                .collect();
            frame.render_widget(Paragraph::new(lines), area);
            return;
        }
        None => {
            let text = if app.editor.is_some() {
                // Keys type into the editor: only its own are said.
                "Enter write · Ctrl-F fork with it · Esc cancel · ←→ move · Ctrl-U clear"
                    .to_string()
            } else if app.overlay == Overlay::ConfirmQuit {
                // The panes' keys do nothing here (walkthrough X read them
                // under the box).
                quit_footer(app)
            } else {
                let hint = if app.sessions.is_some() {
                    "Space mark · o overlay · Enter attach · Esc back"
                } else {
                    footer_hint(app.focus)
                };
                // Help and quit first: a narrow terminal clips the rest.
                format!(
                    "? help · q quit · {hint} · Tab pane · p pause · c ckpt · e export · r sessions · f fork"
                )
            };
            Line::from(Span::styled(fmt::clip(&text, width), app.theme.dim()))
        }
    };
    frame.render_widget(Paragraph::new(line), area);
}

/// The quit box's keys, as it lists them, and what any other key does.
fn quit_footer(app: &App) -> String {
    let mut keys = vec!["y (or q)"];
    if app.status == Status::Paused && app.detachable {
        keys.push("r");
    }
    if !app.status.is_terminal() {
        keys.push("s");
    }
    format!(
        "{} as the box says · any other key: back to the TUI",
        keys.join(" · ")
    )
}

/// The focused pane's most useful keys (all keys are in the help overlay).
fn footer_hint(pane: Pane) -> &'static str {
    match pane {
        Pane::Curves => "l log · s/S smooth · w window · ↑↓ Space series",
        Pane::Contributions => "t/T transform loss",
        Pane::Hyper => "↑↓ select · Enter edit · ][ J · }{ α",
        Pane::Events => "↑↓ PgUp PgDn scroll · Enter whole entry · End follow",
    }
}
