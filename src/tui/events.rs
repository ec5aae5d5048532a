//! The events pane: config changes and refusals, errors, skipped
//! non-finite steps, checkpoints, evals, status changes and what this TUI
//! did, newest at the bottom. Drawing reads only the entries that fit;
//! Enter shows the bottom one whole in a box over the panes.

use super::fmt;
use super::frame::pane_block;
use super::state::{App, Pane};
use super::store::Entry;
use crate::session::metrics::Level;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

/// Width of the `step kind ` prefix.
const PREFIX: usize = 17;

pub fn render(frame: &mut Frame, area: Rect, app: &App, focused: bool) {
    let log = &app.store.log;
    // The pane's inside, within its border.
    let (width, height) = (
        usize::from(area.width.saturating_sub(2)),
        usize::from(area.height.saturating_sub(2)),
    );
    let text_w = width.saturating_sub(PREFIX).max(8);
    let scroll_max = scroll_max(log, text_w, height);
    app.events_scroll_max.set(Some((scroll_max, log.len())));
    let scroll = app.events_scroll.min(scroll_max);
    let note = if scroll > 0 {
        format!(" {} newer below · End follows ", scroll)
    } else {
        format!(" {} entries ", log.len())
    };
    let block = pane_block(
        app.theme,
        Pane::Events,
        focused,
        Some(Line::styled(note, app.theme.dim())),
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if height == 0 || width == 0 {
        return;
    }
    if log.is_empty() {
        frame.render_widget(
            Paragraph::new(Span::styled("no events yet", app.theme.dim())),
            inner,
        );
        return;
    }
    // At the top (Home) the oldest entry is shown whole, entries below it
    // filling the pane; elsewhere the pane fills up from the newest shown
    // entry, whole at the bottom.
    let from_top = scroll > 0 && scroll == scroll_max;
    let shown: Box<dyn Iterator<Item = &Entry>> = if from_top {
        Box::new(log.iter())
    } else {
        Box::new(log[..log.len() - scroll].iter().rev())
    };
    let mut lines: Vec<Line> = Vec::with_capacity(height);
    for entry in shown {
        if lines.len() >= height {
            break;
        }
        let style = app.theme.level(entry.level);
        let mut wrapped = fmt::wrap(&entry.text, text_w);
        let room = height - lines.len();
        if wrapped.len() > room {
            // Keep the start of a long entry that only partly fits, marked
            // as cut (scrolling shows the rest).
            wrapped.truncate(room);
            if let Some(last) = wrapped.last_mut() {
                *last = fmt::clip(&format!("{last} …"), text_w);
            }
        }
        let mut block: Vec<Line> = wrapped
            .into_iter()
            .enumerate()
            .map(|(i, text)| {
                let prefix = if i == 0 {
                    let mark = if entry.level == Level::Info { ' ' } else { '!' };
                    format!(
                        "{:>8} {mark}{:<6} ",
                        fmt::steps(entry.step),
                        entry.kind.label()
                    )
                } else {
                    " ".repeat(PREFIX)
                };
                Line::from(vec![
                    Span::styled(prefix, app.theme.dim()),
                    Span::styled(text, style),
                ])
            })
            .collect();
        if !from_top {
            block.reverse();
        }
        lines.extend(block);
    }
    if !from_top {
        lines.reverse();
    }
    frame.render_widget(Paragraph::new(lines), inner);
}

/// How many entries the pane can scroll up from the newest: until the
/// oldest entry is at its top with the pane still full (0 when they all fit).
fn scroll_max(log: &[Entry], text_w: usize, height: usize) -> usize {
    let mut rows = 0;
    for (i, entry) in log.iter().enumerate() {
        rows += fmt::wrap(&entry.text, text_w).len();
        if rows >= height {
            return log.len() - 1 - i;
        }
    }
    0
}

/// The log's entry `index` whole, in a centred box (`scroll` rows down,
/// kept within the entry).
pub fn render_entry(frame: &mut Frame, area: Rect, app: &App, index: usize, scroll: usize) {
    let Some(entry) = app.store.log.get(index) else {
        return;
    };
    let width = area.width.min(100);
    let lines = fmt::wrap(&entry.text, usize::from(width.saturating_sub(2)));
    let height = area.height.min(lines.len() as u16 + 2);
    let rect = super::frame::centred(area, width, height);
    let shown = usize::from(height.saturating_sub(2));
    app.entry_scroll_max.set(lines.len().saturating_sub(shown));
    let scroll = scroll.min(lines.len().saturating_sub(shown));
    let more = lines.len() - scroll > shown;
    let bottom = match (scroll > 0, more) {
        (false, false) => " any key closes ",
        (true, false) => " ↑ scroll · any other key closes ",
        (false, true) => " ↓ more · any other key closes ",
        (true, true) => " ↑↓ scroll · any other key closes ",
    };
    let style = app.theme.level(entry.level);
    let text: Vec<Line> = lines
        .into_iter()
        .skip(scroll)
        .map(|line| Line::styled(line, style))
        .collect();
    let block = Block::bordered()
        .title(format!(
            " step {} · {} ",
            fmt::steps(entry.step),
            entry.kind.label()
        ))
        .title_bottom(bottom);
    frame.render_widget(Clear, rect);
    frame.render_widget(Paragraph::new(text).block(block), rect);
}
