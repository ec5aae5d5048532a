//! Figure presets (physical size, resolution, type sizes) and the series
//! look: the Okabe–Ito colour-blind-safe palette, each colour paired with a
//! dash pattern and a marker so series stay distinct in greyscale too.

use super::svg::{Color, Shape};
use std::fmt;
use std::str::FromStr;

/// A figure preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Style {
    /// One column of a two-column paper: 3.5 in wide, 300 dpi, 8 pt text.
    #[default]
    Paper,
    /// Full text width of a two-column paper: 7 in wide, 300 dpi, 8 pt text.
    PaperWide,
    /// A slide: 8 x 4.5 in (16:9), 200 dpi, 16 pt text.
    Slides,
}

/// Sizes a figure is drawn with, all in points except where noted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Theme {
    pub width_in: f64,
    pub height_in: f64,
    /// Pixels per inch of the PNG.
    pub dpi: u32,
    /// Axis labels.
    pub label_pt: f64,
    /// Tick labels and legend entries.
    pub tick_pt: f64,
    /// Data lines.
    pub line_pt: f64,
    /// Spines and ticks.
    pub axis_pt: f64,
    /// Marker width.
    pub marker_pt: f64,
}

impl Style {
    pub const NAMES: &'static str = "paper, paper-wide, slides";

    pub fn theme(self) -> Theme {
        match self {
            Style::Paper => Theme {
                width_in: 3.5,
                height_in: 2.5,
                dpi: 300,
                label_pt: 8.0,
                tick_pt: 7.0,
                line_pt: 1.2,
                axis_pt: 0.6,
                marker_pt: 3.6,
            },
            Style::PaperWide => Theme {
                width_in: 7.0,
                height_in: 2.6,
                ..Style::Paper.theme()
            },
            Style::Slides => Theme {
                width_in: 8.0,
                height_in: 4.5,
                dpi: 200,
                label_pt: 16.0,
                tick_pt: 14.0,
                line_pt: 2.4,
                axis_pt: 1.0,
                marker_pt: 7.0,
            },
        }
    }
}

impl Theme {
    /// PNG size in pixels.
    pub fn pixels(&self) -> (u32, u32) {
        let px = |inches: f64| (inches * f64::from(self.dpi)).round() as u32;
        (px(self.width_in), px(self.height_in))
    }
}

impl FromStr for Style {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "paper" | "single" | "paper-single" => Ok(Style::Paper),
            "paper-wide" | "wide" | "double" | "paper-double" => Ok(Style::PaperWide),
            "slides" | "slide" => Ok(Style::Slides),
            other => Err(format!(
                "unknown style '{other}' (expected one of: {})",
                Style::NAMES
            )),
        }
    }
}

impl fmt::Display for Style {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Style::Paper => "paper",
            Style::PaperWide => "paper-wide",
            Style::Slides => "slides",
        })
    }
}

/// Okabe & Ito (2008), ordered so the first few are the most distinct on white.
const PALETTE: [Color; 8] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442",
];

/// Dash patterns in multiples of the line width (matplotlib's
/// proportions for the first four), as many as colours: lines carry no
/// markers, and with four a model's fifth loss was drawn solid like its
/// primary (a walkthrough's greyscale print told them apart by nothing).
const DASHES: [&[f64]; 8] = [
    &[],
    &[3.7, 1.6],
    &[6.4, 1.6, 1.0, 1.6],
    &[1.0, 1.65],
    &[10.0, 3.0],
    &[6.4, 1.6, 1.0, 1.6, 1.0, 1.6],
    &[2.0, 4.0],
    &[1.0, 4.0],
];

/// As many shapes as colours, so the first eight series differ in greyscale.
const SHAPES: [Shape; 8] = [
    Shape::Circle,
    Shape::Square,
    Shape::Triangle,
    Shape::Diamond,
    Shape::TriangleDown,
    Shape::Pentagon,
    Shape::Hexagon,
    Shape::Star,
];

/// The look of the `i`-th series of a figure.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesLook {
    pub color: Color,
    /// Dash pattern in multiples of the line width; empty for solid.
    pub dash: &'static [f64],
    pub shape: Shape,
}

/// Series `i < 8` gets colour, dash and marker `i`. Later series cycle
/// through the other seven colours, never the first: series 0 is a
/// figure's primary loss or MELTR, and a model's ninth loss was drawn in
/// the primary's blue (a walkthrough could not find the primary). Each
/// time the colours come round again, dashes and markers shift by one, so
/// the first 32 series all look different.
pub fn look(i: usize) -> SeriesLook {
    let n = PALETTE.len();
    let (colour, style) = match i.checked_sub(n) {
        None => (i, i),
        Some(later) => {
            let colour = 1 + later % (n - 1);
            (colour, (colour + later / (n - 1) + 1) % n)
        }
    };
    SeriesLook {
        color: PALETTE[colour],
        dash: DASHES[style],
        shape: SHAPES[style],
    }
}

/// The series slot (`look`'s `i`) each combiner kind keeps in every
/// comparison, so MELTR is the same colour and dash in all of a paper's
/// figures whichever other methods a figure leaves out.
const COMBINER_SLOTS: [(&str, usize); 6] = [
    ("meltr", 0),
    ("sum", 1),
    ("primary", 2),
    ("uncertainty", 3),
    ("mlp", 4),
    ("weights", 5),
];

/// The slot of each of a comparison's curves, given the combiner kind each
/// one trained with (None: mixed, or unknown). A curve whose kind no other
/// curve shares keeps its kind's slot; the rest take the lowest free slots,
/// in order. Without kinds this is `0, 1, 2, …`.
pub fn slots_by_combiner(kinds: &[Option<&str>]) -> Vec<usize> {
    let fixed = |k: &Option<&str>| -> Option<usize> {
        let kind = (*k)?;
        let unique = kinds.iter().filter(|o| **o == Some(kind)).count() == 1;
        let (_, slot) = COMBINER_SLOTS.iter().find(|(name, _)| *name == kind)?;
        unique.then_some(*slot)
    };
    let mut taken: Vec<usize> = kinds.iter().filter_map(fixed).collect();
    let mut next = 0;
    kinds
        .iter()
        .map(|k| {
            fixed(k).unwrap_or_else(|| {
                while taken.contains(&next) {
                    next += 1;
                }
                taken.push(next);
                next
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_combiner_keeps_its_slot_whichever_others_are_drawn() {
        let all = slots_by_combiner(&[Some("sum"), Some("meltr"), Some("primary")]);
        assert_eq!(all, [1, 0, 2]);
        let two = slots_by_combiner(&[Some("primary"), Some("meltr")]);
        assert_eq!(two, [2, 0]);
        // Two curves of one kind (a γ grid): neither claims the kind's slot.
        let grid = slots_by_combiner(&[Some("meltr"), Some("meltr"), Some("sum")]);
        assert_eq!(grid, [0, 2, 1]);
        let unknown = slots_by_combiner(&[None, Some("sum"), None]);
        assert_eq!(unknown, [0, 1, 2]);
        assert_eq!(slots_by_combiner(&[None, None]), [0, 1]);
    }

    #[test]
    fn presets_and_names() {
        assert_eq!(Style::Paper.theme().pixels(), (1050, 750));
        assert_eq!(Style::Slides.theme().pixels(), (1600, 900));
        assert_eq!("paper-wide".parse::<Style>(), Ok(Style::PaperWide));
        assert!("poster"
            .parse::<Style>()
            .unwrap_err()
            .contains("paper, paper-wide, slides"));
    }

    #[test]
    fn the_first_32_series_all_look_different() {
        for i in 0..32 {
            for j in 0..i {
                assert_ne!(look(i), look(j), "series {i} looks like series {j}");
            }
        }
    }

    #[test]
    fn only_the_first_series_is_drawn_in_the_first_colour() {
        for i in 1..64 {
            assert_ne!(look(i).color, look(0).color, "series {i}");
        }
    }

    #[test]
    fn neighbours_differ_in_colour_and_dash_past_the_palette() {
        for i in 0..63 {
            assert_ne!(look(i).color, look(i + 1).color, "series {i}");
            assert_ne!(look(i).dash, look(i + 1).dash, "series {i}");
        }
    }

    /// In greyscale, and on lines drawn without markers.
    #[test]
    fn the_first_eight_series_differ_without_colour_or_marker() {
        for i in 0..8 {
            for j in 0..i {
                assert_ne!(look(i).dash, look(j).dash, "series {i} and {j}");
            }
        }
    }

    #[test]
    fn neighbouring_series_differ_in_colour_and_dash() {
        for i in 0..8 {
            assert_ne!(look(i).color, look(i + 1).color);
            assert_ne!(look(i).dash, look(i + 1).dash);
        }
    }
}
