//! Colours and markers. Only the 16 base colours are used; with `NO_COLOR`
//! set no colour at all, and series are told apart by marker and label.

use crate::session::metrics::Level;
use ratatui::style::{Color, Modifier, Style};
use ratatui::symbols::Marker;
use ratatui::widgets::BorderType;

/// How to draw: with the 16 base colours, or with none (`NO_COLOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

/// How one series is drawn and named in a legend.
#[derive(Debug, Clone, Copy)]
pub struct SeriesStyle {
    pub style: Style,
    pub marker: Marker,
    /// The legend glyph that matches the marker.
    pub glyph: &'static str,
}

/// The twelve base colours other than black, white and the greys, the
/// plain six first: a model's twelve losses each get their own (with six,
/// the seventh loss was drawn in the primary's cyan).
const PALETTE: [Color; 12] = [
    Color::Cyan,
    Color::Yellow,
    Color::Magenta,
    Color::Green,
    Color::Blue,
    Color::Red,
    Color::LightCyan,
    Color::LightYellow,
    Color::LightMagenta,
    Color::LightGreen,
    Color::LightBlue,
    Color::LightRed,
];
/// Without colour, series differ by marker; the legend shows the glyph.
const MARKERS: [(Marker, &str); 4] = [
    (Marker::Braille, "⣿"),
    (Marker::Dot, "•"),
    (Marker::Bar, "▄"),
    (Marker::HalfBlock, "▀"),
];

impl Theme {
    /// Colour unless `NO_COLOR` is set to a non-empty value (no-color.org).
    pub fn from_env() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self { color: !no_color }
    }

    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::new().fg(color)
        } else {
            Style::new()
        }
    }

    /// Series `i`: a colour each with colour; a marker each without.
    pub fn series(self, i: usize) -> SeriesStyle {
        if self.color {
            SeriesStyle {
                style: self.fg(PALETTE[i % PALETTE.len()]),
                marker: Marker::Braille,
                glyph: "━",
            }
        } else {
            let (marker, glyph) = MARKERS[i % MARKERS.len()];
            SeriesStyle {
                style: Style::new(),
                marker,
                glyph,
            }
        }
    }

    pub fn level(self, level: Level) -> Style {
        match level {
            Level::Info => Style::new(),
            Level::Warn => self.fg(Color::Yellow).add_modifier(Modifier::BOLD),
            Level::Error => self.fg(Color::Red).add_modifier(Modifier::BOLD),
        }
    }

    /// A banner that must not be missed (a refused config edit).
    pub fn banner(self) -> Style {
        if self.color {
            Style::new()
                .fg(Color::White)
                .bg(Color::Red)
                .add_modifier(Modifier::BOLD)
        } else {
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD)
        }
    }

    pub fn accent(self) -> Style {
        self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
    }

    pub fn good(self) -> Style {
        self.fg(Color::Green)
    }

    pub fn dim(self) -> Style {
        if self.color {
            Style::new().fg(Color::DarkGray)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        }
    }

    /// The selected row of a list or table.
    pub fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    pub fn border(self, focused: bool) -> (Style, BorderType) {
        if focused {
            (
                self.fg(Color::Cyan).add_modifier(Modifier::BOLD),
                BorderType::Thick,
            )
        } else {
            (self.dim(), BorderType::Plain)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twelve_series_each_get_their_own_colour() {
        let theme = Theme { color: true };
        let colours: Vec<Option<Color>> = (0..12).map(|i| theme.series(i).style.fg).collect();
        for (i, c) in colours.iter().enumerate() {
            assert!(c.is_some(), "series {i} has no colour");
            assert!(
                !colours[..i].contains(c),
                "series {i} repeats an earlier series' {c:?}"
            );
        }
    }
}
