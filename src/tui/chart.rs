//! Line charts shared by the curves and contributions panes: decimated
//! points from a [`Track`], an optional log10 transform (ratatui has no log
//! axis, so values are transformed here and the labels say the real
//! values), bounds and labels.

use super::decimate::Track;
use super::fmt;
use super::theme::{SeriesStyle, Theme};
use ratatui::layout::Rect;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, Paragraph};
use ratatui::Frame;

/// One line on a chart.
pub struct PlotSeries {
    pub points: Vec<(f64, f64)>,
    pub style: SeriesStyle,
}

/// Charts narrower or shorter than this show a note instead.
const MIN_WIDTH: u16 = 16;
pub const MIN_HEIGHT: u16 = 4;

/// Points of channel `c` of `track` over steps `[x0, x1]`, decimated to
/// min/max columns for a chart `width` cells wide drawn with `marker` and,
/// with `log`, as log10 (values <= 0 dropped).
pub fn track_points(
    track: &Track,
    c: usize,
    x: (f64, f64),
    width: u16,
    marker: Marker,
    log: bool,
) -> Vec<(f64, f64)> {
    transform(
        track
            .decimate(c, x.0, x.1, columns_for(width, marker))
            .into_iter(),
        log,
    )
}

/// Applies the log10 transform when asked.
pub fn transform(points: impl Iterator<Item = (f64, f64)>, log: bool) -> Vec<(f64, f64)> {
    if log {
        points
            .filter(|(_, y)| *y > 0.0)
            .map(|(x, y)| (x, y.log10()))
            .collect()
    } else {
        points.filter(|(_, y)| y.is_finite()).collect()
    }
}

/// Decimation columns for a chart `width` cells wide drawn with `marker`:
/// braille has two dots a cell, the other markers one.
pub fn columns_for(width: u16, marker: Marker) -> usize {
    let per_cell = if marker == Marker::Braille { 2 } else { 1 };
    usize::from(width.max(1)) * per_cell
}

/// Y bounds of all points, padded 5% (a flat line gets a visible band);
/// values that are all ≥ 0 keep the axis from going below 0 (walkthrough
/// L read a loss axis starting at −0.015).
fn y_bounds(series: &[PlotSeries]) -> Option<(f64, f64)> {
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
        (lo.min(y), hi.max(y))
    });
    if lo > hi {
        return None;
    }
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1.0) * 0.05
    };
    let floor = if lo >= 0.0 { 0.0 } else { f64::NEG_INFINITY };
    Some(((lo - pad).max(floor), hi + pad))
}

/// `(lo, hi)` widened to multiples of a round step (1, 2 or 5 × 10^k)
/// whose midpoint is one too, so the three labels read `-5 · 40 · 85`
/// rather than `-5 · 40.809 · 86.617` (walkthrough O); kept as it is
/// where rounding would widen the range by more than a quarter.
fn rounded_bounds((lo, hi): (f64, f64)) -> (f64, f64) {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return (lo, hi);
    }
    let magnitude = 10f64.powf((span / 8.0).log10().floor());
    // The coarsest step that widens the range by a quarter at most.
    for factor in [50.0, 20.0, 10.0, 5.0, 2.0, 1.0] {
        let step = factor * magnitude;
        let low = (lo / step).floor() * step;
        let mut high = (hi / step).ceil() * step;
        if (((high - low) / step).round() as i64) % 2 == 1 {
            high += step;
        }
        if high - low <= 1.25 * span {
            // Zero stays the floor of a non-negative axis.
            return (if lo >= 0.0 { low.max(0.0) } else { low }, high);
        }
    }
    (lo, hi)
}

/// The y axis's labels for its three ticks: on a log axis to two
/// significant digits, unless that reads two alike (a narrow range:
/// 0.512 · 0.515 · 0.518).
fn y_tick_labels(ticks: [f64; 3], log: bool) -> Vec<String> {
    let rounded = ticks.map(two_significant);
    let distinct = rounded.windows(2).all(|w| w[0] != w[1]);
    distinct_labels(&if log && distinct { rounded } else { ticks })
}

/// `v` rounded to two significant digits.
fn two_significant(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powf(1.0 - v.abs().log10().floor());
    (v * scale).round() / scale
}

/// Axis labels for `values`: [`fmt::axis`]'s, or where two of those would
/// read the same (a narrow range far from zero read `-164 -165 -165`),
/// the fewest decimals that tell them apart.
pub fn distinct_labels(values: &[f64]) -> Vec<String> {
    let differ = |labels: &[String]| labels.windows(2).all(|w| w[0] != w[1]);
    let plain: Vec<String> = values.iter().map(|v| fmt::axis(*v)).collect();
    if differ(&plain) {
        return plain;
    }
    (1..=6)
        .map(|decimals| {
            values
                .iter()
                .map(|v| format!("{v:.decimals$}"))
                .collect::<Vec<_>>()
        })
        .find(|labels| differ(labels))
        .unwrap_or(plain)
}

/// Draws `series` over steps `x`; `log` means the y values are log10 and
/// the labels show 10^y. `empty` is said when there is nothing to draw.
pub fn render(
    frame: &mut Frame,
    area: Rect,
    series: &[PlotSeries],
    x: (f64, f64),
    log: bool,
    empty: &str,
    theme: Theme,
) {
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        frame.render_widget(
            Paragraph::new(Span::styled("(too small)", theme.dim())),
            area,
        );
        return;
    }
    let Some((y0, y1)) = y_bounds(series).map(|b| if log { b } else { rounded_bounds(b) }) else {
        frame.render_widget(
            Paragraph::new(Span::styled(empty.to_string(), theme.dim())),
            area,
        );
        return;
    };
    let (x0, x1) = if x.1 > x.0 { x } else { (x.0 - 0.5, x.0 + 0.5) };
    let real = |v: f64| if log { 10f64.powf(v) } else { v };
    let datasets = series
        .iter()
        .map(|s| {
            Dataset::default()
                .marker(s.style.marker)
                .style(s.style.style)
                .graph_type(if s.points.len() > 1 {
                    GraphType::Line
                } else {
                    GraphType::Scatter
                })
                .data(&s.points)
        })
        .collect();
    // A log axis keeps the data's bounds (a 1-2-5 grid in log space would
    // widen it by up to a decade each way); its labels say them to two
    // significant digits (walkthrough R read `45.065 · 5.43 · 0.654`).
    let mut y_labels: Vec<Line> = y_tick_labels([y0, (y0 + y1) / 2.0, y1].map(real), log)
        .into_iter()
        .map(Line::from)
        .collect();
    if area.height < 7 {
        y_labels.remove(1);
    }
    let chart = Chart::new(datasets)
        .legend_position(None)
        .x_axis(
            Axis::default()
                .bounds([x0, x1])
                .style(theme.dim())
                .labels([x0, (x0 + x1) / 2.0, x1].map(|v| Line::from(fmt::axis(v)))),
        )
        .y_axis(
            Axis::default()
                .bounds([y0, y1])
                .style(theme.dim())
                .labels(y_labels),
        );
    frame.render_widget(chart, area);
}

/// A legend entry: the series' glyph in its style, then its name.
/// At most this many lines of legend above a chart.
pub const LEGEND_MAX_LINES: usize = 3;

/// Legend entries (after `prefix` and a space) packed into lines of
/// `width` cells, two spaces apart, at most [`LEGEND_MAX_LINES`]; entries that do not fit then
/// are counted on the last line (`+N more`). One line was cut off at the
/// pane's edge without a word (walkthrough).
pub fn legend_lines(
    prefix: Option<Span<'static>>,
    entries: Vec<Vec<Span<'static>>>,
    width: usize,
    theme: Theme,
) -> Vec<Line<'static>> {
    type Entry = Vec<Span<'static>>;
    let entry_width = |e: &Entry| e.iter().map(Span::width).sum::<usize>();
    // A line's width: its entries two cells apart.
    let line_width = |line: &[Entry]| {
        line.iter().map(entry_width).sum::<usize>() + 2 * line.len().saturating_sub(1)
    };
    let prefix: Vec<Entry> = prefix.map(|p| vec![p]).into_iter().collect();
    let fixed = prefix.len();
    let mut lines: Vec<Vec<Entry>> = vec![prefix];
    let mut left = entries.into_iter();
    let mut more = 0;
    while let Some(entry) = left.next() {
        let line = lines.last_mut().expect("one line at least");
        let fits =
            line_width(line) + 2 * usize::from(!line.is_empty()) + entry_width(&entry) <= width;
        if fits || line.is_empty() {
            line.push(entry);
        } else if lines.len() < LEGEND_MAX_LINES {
            lines.push(vec![entry]);
        } else {
            more = 1 + left.len();
            break;
        }
    }
    if more > 0 {
        let count = |n: usize| format!("+{n} more");
        // The prefix (on the first line) stays.
        let keep = if lines.len() == 1 { fixed } else { 0 };
        let line = lines.last_mut().expect("one line at least");
        while line.len() > keep + 1 && line_width(line) + 2 + count(more).len() > width {
            line.pop();
            more += 1;
        }
        line.push(vec![Span::styled(count(more), theme.dim())]);
    }
    lines
        .into_iter()
        .enumerate()
        .map(|(n, line)| {
            let mut spans = Vec::new();
            for (i, entry) in line.into_iter().enumerate() {
                // The prefix is followed by one space, entries by two.
                match i {
                    0 => {}
                    1 if n == 0 && fixed == 1 => spans.push(Span::raw(" ")),
                    _ => spans.push(Span::raw("  ")),
                }
                spans.extend(entry);
            }
            Line::from(spans)
        })
        .collect()
}

pub fn legend_entry(
    name: &str,
    style: SeriesStyle,
    shown: bool,
    theme: Theme,
) -> Vec<Span<'static>> {
    if shown {
        vec![
            Span::styled(style.glyph, style.style),
            Span::raw(format!(" {name}")),
        ]
    } else {
        vec![Span::styled(format!("· {name}"), theme.dim())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(lines: &[Line]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    fn entries(names: &[&str]) -> Vec<Vec<Span<'static>>> {
        names
            .iter()
            .map(|n| vec![Span::raw(n.to_string())])
            .collect()
    }

    #[test]
    fn non_negative_values_keep_the_axis_at_or_above_zero() {
        let series = |ys: &[f64]| PlotSeries {
            points: ys.iter().enumerate().map(|(i, &y)| (i as f64, y)).collect(),
            style: SeriesStyle {
                style: ratatui::style::Style::default(),
                marker: Marker::Braille,
                glyph: "•",
            },
        };
        let (lo, hi) = y_bounds(&[series(&[0.01, 5.0])]).unwrap();
        assert_eq!(lo, 0.0, "a loss axis went to −0.015 (walkthrough L)");
        assert!(hi > 5.0);
        let (lo, _) = y_bounds(&[series(&[-0.1, 1.0])]).unwrap();
        assert!(lo < -0.1, "negative values keep their margin");
    }

    #[test]
    fn log_labels_have_two_significant_digits() {
        // Walkthrough R's log axis: 45.065 · 5.43 · 0.654.
        assert_eq!(
            y_tick_labels([45.065, 5.43, 0.654], true),
            ["45", "5.4", "0.65"]
        );
        // ... unless two would read alike: then as many as tell them apart.
        assert_eq!(
            y_tick_labels([0.512, 0.515, 0.518], true),
            ["0.512", "0.515", "0.518"]
        );
        assert_eq!(two_significant(0.0123), 0.012);
        assert_eq!(two_significant(1234.0), 1200.0);
    }

    #[test]
    fn linear_bounds_round_to_a_step_their_midpoint_shares() {
        // Walkthrough O's weights axis: -5 · 40.809 · 86.617.
        let (lo, hi) = rounded_bounds((-5.0, 86.617));
        let labels = distinct_labels(&[lo, (lo + hi) / 2.0, hi]);
        assert_eq!(labels, ["-10", "40", "90"]);
        let (lo, hi) = rounded_bounds((0.0, 0.7315));
        assert_eq!(
            distinct_labels(&[lo, (lo + hi) / 2.0, hi]),
            ["0", "0.4", "0.8"]
        );
        // A narrow range far from zero keeps its resolution.
        let (lo, hi) = rounded_bounds((164.2, 165.03));
        assert!(
            lo <= 164.2 && hi >= 165.03 && hi - lo <= 1.5 * 0.83,
            "{lo} {hi}"
        );
        assert_eq!(rounded_bounds((3.0, 3.0)), (3.0, 3.0));
    }

    #[test]
    fn a_legend_wraps_and_counts_what_does_not_fit() {
        let theme = Theme { color: false };
        let names = ["alpha", "beta", "gamma", "delta", "epsilon"];
        let one = legend_lines(None, entries(&names), 80, theme);
        assert_eq!(texts(&one), ["alpha  beta  gamma  delta  epsilon"]);
        let prefix = || Some(Span::raw("w ="));
        let wrapped = legend_lines(prefix(), entries(&names), 18, theme);
        assert_eq!(
            texts(&wrapped),
            ["w = alpha  beta", "gamma  delta", "epsilon"]
        );
        // Three lines at most; the rest counted, every name accounted for.
        let many: Vec<String> = (0..12).map(|i| format!("loss{i:02}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let cut = legend_lines(prefix(), entries(&many), 20, theme);
        let text = texts(&cut);
        assert_eq!(text.len(), LEGEND_MAX_LINES);
        assert!(text.iter().all(|l| l.chars().count() <= 20), "{text:?}");
        let last = text.last().unwrap();
        let shown = text.join(" ").matches("loss").count();
        let more: usize = last
            .split("+")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no count in {text:?}"));
        assert_eq!(shown + more, many.len(), "{text:?}");
        assert!(text[0].starts_with("w ="), "{text:?}");
    }

    #[test]
    fn labels_get_the_decimals_that_tell_them_apart() {
        assert_eq!(distinct_labels(&[0.0, 0.5, 1.0]), ["0", "0.5", "1"]);
        assert_eq!(
            distinct_labels(&[-164.2, -164.6, -165.0]),
            ["-164.2", "-164.6", "-165.0"]
        );
        assert_eq!(
            distinct_labels(&[3.2101, 3.2105, 3.2109]),
            ["3.2101", "3.2105", "3.2109"]
        );
    }
}
