//! The hyperparameters pane: the live config as a table (restart-only keys
//! marked, keys written but not yet in force marked pending), the editor
//! line with its validation error, and the refused-edit banner.

use super::fmt;
use super::frame::pane_block;
use super::state::{App, Pane};
use crate::config::restart_only_reason;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

const BANNER_LINES: usize = 3;

fn banner(app: &App, width: usize) -> Vec<Line<'static>> {
    // (None on an ended run: see `header::banners`.)
    let Some(error) = app
        .store
        .config_error
        .as_ref()
        .filter(|_| !app.status.is_terminal())
    else {
        return Vec::new();
    };
    let mut lines = fmt::wrap(&format!("config refused: {error}"), width);
    if lines.len() > BANNER_LINES {
        // Cut, and said so (a walkthrough's banner ended mid-sentence):
        // the events pane holds it whole.
        const MORE: &str = " (in full: 4 Events)";
        let rest = lines.split_off(BANNER_LINES - 1).join(" ");
        let room = width.saturating_sub(fmt::width(MORE));
        lines.push(format!("{}{MORE}", fmt::clip(&rest, room)));
    }
    lines
        .into_iter()
        .map(|l| Line::from(Span::styled(fmt::pad(&l, width), app.theme.banner())))
        .collect()
}

/// The editor line: `key = text` with the cursor cell reversed, then the error.
fn editor_lines(app: &App, width: usize) -> Vec<Line<'static>> {
    let Some(editor) = &app.editor else {
        return Vec::new();
    };
    let text: Vec<char> = editor.input.text().chars().collect();
    let at = editor.input.cursor();
    let before: String = text[..at].iter().collect();
    let under: String = text.get(at).map_or(" ".to_string(), |c| c.to_string());
    let after: String = text
        .get(at + 1..)
        .map_or(String::new(), |r| r.iter().collect());
    let mut lines = vec![Line::from(vec![
        Span::styled(format!("{} = ", editor.key), app.theme.accent()),
        Span::raw(before),
        Span::styled(under, app.theme.selected()),
        Span::raw(after),
    ])];
    match &editor.error {
        Some(e) => lines.extend(
            fmt::wrap(e, width)
                .into_iter()
                .take(2)
                .map(|l| Line::styled(l, app.theme.banner())),
        ),
        None => lines.push(Line::styled(
            "Enter writes config.toml · Ctrl-F forks with it instead · Esc cancels",
            app.theme.dim(),
        )),
    }
    lines
}

pub(super) fn status_lines(app: &App, width: usize) -> Vec<Line<'static>> {
    let aid = &app.config.aid;
    let mut first = format!("J {} · α {} · {}", aid.iterations, aid.alpha, aid.mode);
    if let Some(m) = &app.store.meta {
        first.push_str(&format!(
            " · meta @{}: |∇φ| {}",
            fmt::steps(m.step),
            fmt::num(m.hypergrad_norm),
        ));
        // The Neumann terms that step summed, when not the J configured: a
        // diverging series stopped early, or J edited since (walkthrough Y
        // read "J 2 … with J 0" as a contradiction).
        if m.aid_iterations != aid.iterations {
            // Cut short only below the J in force (an edit not yet in force,
            // such as one to a finished run, is the row's "pending"; it read
            // "cut: diverged", walkthrough Z3).
            let edited = app.store.edited_at.get("aid.iterations").copied();
            let why = match edited {
                Some(at) if at >= m.step => "J edited since",
                _ if m.aid_iterations < app.in_force.aid.iterations => "cut: diverged",
                _ => "",
            };
            first.push_str(&format!(" with J {}", m.aid_iterations));
            if !why.is_empty() {
                first.push_str(&format!(" ({why})"));
            }
        }
    }
    // Wrapped, not cut (walkthrough V read `|∇φ| 0.0148 wi` at 120x40).
    let mut lines: Vec<Line<'static>> = fmt::wrap(&first, width.max(1))
        .into_iter()
        .map(Line::from)
        .collect();
    lines.push(Line::styled(
        "Enter edit · ] [ J ±1 · } { α ×2 ÷2",
        app.theme.dim(),
    ));
    lines
}

pub fn render(frame: &mut Frame, area: Rect, app: &App, focused: bool) {
    let block = pane_block(app.theme, Pane::Hyper, focused, None);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let width = usize::from(inner.width);
    let banner = banner(app, width);
    let foot = if app.editor.is_some() {
        editor_lines(app, width)
    } else {
        status_lines(app, width)
    };
    let [banner_area, table_area, foot_area] = Layout::vertical([
        Constraint::Length(banner.len() as u16),
        Constraint::Min(0),
        Constraint::Length(foot.len() as u16),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(banner), banner_area);
    frame.render_widget(Paragraph::new(foot), foot_area);

    let rows = app.hyper_rows();
    let in_force = app.in_force.flatten();
    let height = usize::from(table_area.height);
    if height == 0 || rows.is_empty() {
        return;
    }
    let cursor = app.hyper_cursor.min(rows.len() - 1);
    let offset = (cursor + 1).saturating_sub(height);
    let key_w = rows
        .iter()
        .map(|(k, _)| fmt::width(k))
        .max()
        .unwrap_or(10)
        .min(width / 2);
    let note_w = 8;
    let value_w = width.saturating_sub(key_w + note_w + 2);
    let lines: Vec<Line> = rows
        .iter()
        .enumerate()
        .skip(offset)
        .take(height)
        .map(|(i, (key, value))| {
            let engine = in_force
                .get(key)
                .filter(|configured| *configured == value)
                .and_then(|configured| engine_value(app, key, configured));
            let (note, note_style) = if in_force.get(key) != Some(value) {
                (
                    "pending",
                    app.theme.level(crate::session::metrics::Level::Warn),
                )
            } else if engine.is_some() {
                (
                    "restore",
                    app.theme.level(crate::session::metrics::Level::Warn),
                )
            } else if restart_only_reason(key).is_some() {
                ("restart", app.theme.dim())
            } else {
                ("", Style::new())
            };
            let row_style = if focused && i == cursor {
                app.theme.selected()
            } else {
                Style::new()
            };
            let key_style = if restart_only_reason(key).is_some() {
                app.theme.dim()
            } else {
                Style::new()
            };
            Line::from(vec![
                Span::styled(fmt::pad(&fmt::clip(key, key_w), key_w + 1), key_style),
                Span::raw(fmt::pad(
                    &fmt::clip(
                        &match engine {
                            Some(now) => format!("{value} → {} now", crate::numfmt::readable(now)),
                            None => value.to_string(),
                        },
                        value_w,
                    ),
                    value_w + 1,
                )),
                Span::styled(format!("{note:<note_w$}"), note_style),
            ])
            .style(row_style)
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), table_area);
}

/// The value the engine runs `key` at, where a collapse restore moved it
/// off the config in force (`meltr.meta_lr` halved, `meltr.gamma`
/// raised): from the newest meta line, when it is newer than the key's last
/// edit (an edit sets the value again). Callers ask only for keys without
/// a pending edit.
fn engine_value(app: &App, key: &str, configured: &toml::Value) -> Option<f64> {
    let meta = app.store.meta.as_ref()?;
    let now = match key {
        "meltr.meta_lr" => meta.meta_lr,
        "meltr.gamma" => meta.gamma?,
        _ => return None,
    };
    let configured = configured
        .as_float()
        .or_else(|| configured.as_integer().map(|i| i as f64))?;
    let edited = app.store.edited_at.get(key).copied().unwrap_or(0);
    let moved = (now - configured).abs() > 1e-9 * configured.abs().max(1e-12);
    (meta.step > edited && moved).then_some(now)
}
