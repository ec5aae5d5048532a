//! A pane's frame, shared by the panes and the view that lays them out,
//! and where a box over the panes goes.

use super::state::Pane;
use super::theme::Theme;
use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Block;

/// A `width` × `height` box centred in `area` (both cut to fit).
pub fn centred(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [rect] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    rect
}

/// A pane's frame: `N Title`, thick and accented when focused, and an
/// optional right-aligned note.
pub fn pane_block(
    theme: Theme,
    pane: Pane,
    focused: bool,
    note: Option<Line<'static>>,
) -> Block<'static> {
    let (style, border) = theme.border(focused);
    let title = format!(" {} {} ", pane.index() + 1, pane.title());
    let title = if focused {
        Span::styled(title, theme.accent())
    } else {
        Span::raw(title)
    };
    let mut block = Block::bordered()
        .border_type(border)
        .border_style(style)
        .title(title);
    if let Some(note) = note {
        block = block.title(note.right_aligned());
    }
    block
}
