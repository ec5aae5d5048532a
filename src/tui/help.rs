//! The help overlay (every key binding, from the one table
//! [`KEYS`](super::keys::KEYS)) and the quit confirmation.

use super::keys::KEYS;
use super::state::App;
use crate::session::Status;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use ratatui::Frame;

const KEYS_WIDTH: usize = 20;

/// The centred help box.
pub fn render(frame: &mut Frame, area: Rect, app: &App, scroll: usize) {
    let theme = app.theme;
    let rect = super::frame::centred(area, 80, KEYS.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    // Scrolled no further than shows the last line at the bottom.
    let shown = usize::from(rect.height.saturating_sub(2));
    app.help_scroll_max.set(KEYS.len().saturating_sub(shown));
    let scroll = scroll.min(app.help_scroll_max.get());
    let lines: Vec<Line> = KEYS
        .iter()
        .skip(scroll)
        .map(|(context, keys, what)| {
            Line::from(vec![
                Span::styled(format!("{context:<8}"), theme.dim()),
                Span::styled(format!("{keys:<KEYS_WIDTH$}"), theme.accent()),
                Span::raw(*what),
            ])
        })
        .collect();
    let block = Block::bordered()
        .title(" Keys ")
        .title_bottom(" ↑↓ scroll · any other key closes ");
    frame.render_widget(Paragraph::new(lines).block(block), rect);
}

/// The quit confirmation box.
pub fn render_confirm_quit(frame: &mut Frame, area: Rect, app: &App) {
    let running = !app.status.is_terminal();
    let mut lines = vec![Line::from("Quit the TUI?")];
    if app.status == Status::Paused && app.detachable {
        lines.push(Line::from(vec![
            Span::styled(" y ", app.theme.accent()),
            Span::raw("detach (run stays paused)"),
        ]));
        lines.push(Line::from(vec![
            Span::styled(" r ", app.theme.accent()),
            Span::raw("let it go on, then detach"),
        ]));
        lines.push(Line::from(vec![
            Span::styled(" s ", app.theme.accent()),
            Span::raw("stop the run, then quit"),
        ]));
    } else if running && app.detachable {
        lines.push(Line::from(vec![
            Span::styled(" y ", app.theme.accent()),
            Span::raw("detach (run goes on)"),
        ]));
        lines.push(Line::from(vec![
            Span::styled(" s ", app.theme.accent()),
            Span::raw("stop the run, then quit"),
        ]));
    } else if running {
        lines.push(Line::from(vec![
            Span::styled(" y ", app.theme.accent()),
            Span::raw("quit (run stops; resumable)"),
        ]));
        lines.push(Line::from(vec![
            Span::styled(" s ", app.theme.accent()),
            Span::raw("stop the run, then quit"),
        ]));
    } else {
        lines.push(Line::from(vec![
            Span::styled(" y ", app.theme.accent()),
            Span::raw("quit"),
        ]));
    }
    lines.push(Line::from(vec![
        Span::styled(" n ", app.theme.accent()),
        Span::raw("stay"),
    ]));
    let rect = super::frame::centred(area, 34, lines.len() as u16 + 2);
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Quit ")),
        rect,
    );
}
