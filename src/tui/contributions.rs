//! The contributions pane: what the combiner learned (or, for baselines,
//! the weights it uses). Effective weights `w_k = ∂M/∂l_k` over time, bars
//! of the newest weights and of each loss's share of the combined gradient,
//! and MELTR's transform of one loss.

use super::chart::{self, PlotSeries};
use super::curves;
use super::fmt;
use super::frame::pane_block;
use super::state::{App, CurveId, Pane};
use crate::session::metrics::Named;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// Narrower than this, bars and transform stack instead of sitting side by side.
const SIDE_BY_SIDE_MIN: u16 = 60;
const EIGHTHS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];

/// Whether the combiner's weights are learned (MELTR, MLP, uncertainty) or fixed.
fn combiner_note(app: &App) -> Line<'static> {
    let kind = app.in_force.combiner.kind.as_str();
    let how = match kind {
        "meltr" | "mlp" | "uncertainty" => "learned",
        _ => "fixed",
    };
    Line::from(Span::styled(
        format!(" {kind}: {how} weights "),
        app.theme.dim(),
    ))
}

/// A bar of `|v| / max` of `width` cells in eighths. With `signed`, the
/// left half holds negative values, the right half positive ones.
pub fn bar(v: f64, max: f64, width: usize, signed: bool) -> String {
    if !v.is_finite() || max <= 0.0 || width == 0 {
        return " ".repeat(width);
    }
    let fill = |cells: usize, frac: f64| -> String {
        let eighths = ((frac.clamp(0.0, 1.0) * cells as f64) * 8.0).round() as usize;
        let mut s = "█".repeat(eighths / 8) + EIGHTHS[eighths % 8];
        let used = eighths / 8 + usize::from(!eighths.is_multiple_of(8));
        s.push_str(&" ".repeat(cells.saturating_sub(used)));
        s
    };
    if !signed {
        return fill(width, v / max);
    }
    let half = (width.saturating_sub(1)) / 2;
    let right = width.saturating_sub(1) - half;
    if v >= 0.0 {
        format!("{}│{}", " ".repeat(half), fill(right, v / max))
    } else {
        // Negative bars grow leftwards from the axis, in whole cells.
        let cells = ((-v / max).clamp(0.0, 1.0) * half as f64).round() as usize;
        format!(
            "{}{}│{}",
            " ".repeat(half - cells),
            "█".repeat(cells),
            " ".repeat(right)
        )
    }
}

/// A share as a percentage with one decimal: a share of -0.00001 is no
/// negative share, so no `-0.0%`.
fn percent_text(share: f64) -> String {
    let percent = format!("{:.1}", share * 100.0);
    let percent = percent
        .strip_prefix('-')
        .filter(|p| *p == "0.0")
        .unwrap_or(&percent);
    format!("{percent}%")
}

/// One section of bars: a heading, then `name value bar` per loss, or,
/// with `shares`, `name value share bar` (the weights and shares in one
/// section, where a short pane has no room for two).
fn bar_lines(
    app: &App,
    heading: String,
    values: &Named,
    percent: bool,
    shares: Option<&Named>,
    width: usize,
) -> Vec<Line<'static>> {
    let mut lines = vec![Line::from(Span::styled(heading, app.theme.accent()))];
    let names = &app.store.losses;
    let name_w = names
        .iter()
        .map(|n| fmt::width(n))
        .max()
        .unwrap_or(4)
        .min(12);
    let max = values
        .values()
        .filter(|v| v.is_finite())
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let signed = values.values().any(|v| *v < 0.0);
    let text = |v: f64| {
        if percent {
            percent_text(v)
        } else {
            fmt::signed(v)
        }
    };
    // One width for every value (`+3.149` and `-9.10e-4` alike), so the
    // bars start in one column.
    let value_w = names
        .iter()
        .filter_map(|n| values.get(n))
        .map(|&v| fmt::width(&text(v)))
        .max()
        .unwrap_or(0)
        .max(7);
    // The shares' column as wide as its widest (`-123.4%`), and a space.
    let share_w = shares.map_or(0, |shares| {
        1 + shares
            .values()
            .map(|&s| fmt::width(&percent_text(s)))
            .max()
            .unwrap_or(0)
    });
    for (i, name) in names.iter().enumerate() {
        let Some(&v) = values.get(name) else { continue };
        let mut value = format!("{:>value_w$}", text(v));
        if let Some(shares) = shares {
            let share = shares.get(name).map_or(String::new(), |&s| percent_text(s));
            value.push_str(&format!("{share:>share_w$}"));
        }
        let bar_w = width.saturating_sub(name_w + value_w + share_w + 2);
        let style = app
            .theme
            .series(curves::style_index(app, CurveId::Loss(i)))
            .style;
        lines.push(Line::from(vec![
            Span::raw(fmt::pad(&fmt::clip(name, name_w), name_w + 1)),
            Span::raw(value),
            Span::raw(" "),
            Span::styled(bar(v, max, bar_w, signed), style),
        ]));
    }
    lines
}

pub(super) fn render_bars(frame: &mut Frame, area: Rect, app: &App) {
    let width = usize::from(area.width);
    let Some(train) = &app.store.train else {
        frame.render_widget(
            Paragraph::new(Span::styled("no training step yet", app.theme.dim())),
            area,
        );
        return;
    };
    let height = usize::from(area.height);
    let rows = app.store.losses.len() + 1;
    // Two sections where both fit, else the shares as a column of the
    // weights' rows (walkthrough M: at 80x24 the shares were dropped).
    let together = !train.shares.is_empty() && 2 * rows > height;
    let heading = match together {
        true => format!(
            "weight ∂M/∂l @{} · share @{}",
            fmt::steps(train.step),
            fmt::steps(train.shares_step)
        ),
        false => format!("weight ∂M/∂l @{}", fmt::steps(train.step)),
    };
    let shares_column = together.then_some(&train.shares);
    let mut lines = bar_lines(app, heading, &train.weights, false, shares_column, width);
    if lines.len() > height && height >= 2 {
        // The rows that do not fit are named on the last line, with their
        // values: a hidden loss may hold the weight the bars are scaled to.
        let rows: Vec<(&String, f64)> = app
            .store
            .losses
            .iter()
            .filter_map(|n| Some((n, *train.weights.get(n)?)))
            .collect();
        let shown = height - 2;
        lines.truncate(1 + shown);
        lines.push(hidden_rows_line(app, &rows[shown..], width));
    }
    if !train.shares.is_empty() && !together {
        let shares = bar_lines(
            app,
            format!("share of the gradient @{}", fmt::steps(train.shares_step)),
            &train.shares,
            true,
            None,
            width,
        );
        // All of the section or none of it: a heading over a cut list reads
        // as shares that are missing.
        if lines.len() + shares.len() <= usize::from(area.height) {
            lines.extend(shares);
        }
    }
    frame.render_widget(Paragraph::new(lines), area);
}

/// `+N more: name value, …` for rows a short pane cannot show, clipped to
/// `width`.
fn hidden_rows_line(app: &App, hidden: &[(&String, f64)], width: usize) -> Line<'static> {
    let listed: Vec<String> = hidden
        .iter()
        .map(|(name, v)| format!("{name} {}", fmt::signed(*v)))
        .collect();
    let text = format!("+{} more: {}", hidden.len(), listed.join(", "));
    Line::from(Span::styled(fmt::clip(&text, width), app.theme.dim()))
}

fn render_transform(frame: &mut Frame, area: Rect, app: &App) {
    let store = &app.store;
    let name = store
        .losses
        .get(app.transform_loss)
        .cloned()
        .unwrap_or_default();
    let [title, plot] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
    let Some((step, curve)) = store
        .transform
        .as_ref()
        .and_then(|(s, c)| Some((s, c.get(&name)?)))
    else {
        let text = format!("transform of {name}: none logged yet (t: next loss)");
        frame.render_widget(Paragraph::new(Span::styled(text, app.theme.dim())), area);
        return;
    };
    let text = format!("M as {name} sweeps @{} (t: next)", fmt::steps(*step));
    frame.render_widget(
        Paragraph::new(Span::styled(
            fmt::clip(&text, title.width.into()),
            app.theme.accent(),
        )),
        title,
    );
    let style = app
        .theme
        .series(curves::style_index(app, CurveId::Loss(app.transform_loss)));
    let points: Vec<(f64, f64)> =
        chart::transform(curve.x.iter().copied().zip(curve.y.iter().copied()), false);
    let xs = points.iter().map(|p| p.0);
    let x = xs
        .clone()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    let mut series = vec![PlotSeries { points, style }];
    // Where the loss is now: a vertical marker across the curve's range.
    if let Some(&now) = store.train.as_ref().and_then(|t| t.losses.get(&name)) {
        if now >= x.0 && now <= x.1 {
            let ys = series[0].points.iter().map(|p| p.1);
            let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
            let mut marker = app.theme.series(store.losses.len() + 1);
            marker.style = app.theme.dim();
            series.push(PlotSeries {
                points: vec![(now, lo), (now, hi)],
                style: marker,
            });
        }
    }
    chart::render(
        frame,
        plot,
        &series,
        x,
        false,
        "empty transform curve",
        app.theme,
    );
}

/// Before the weights chart's legend.
const WEIGHT_LEGEND_PREFIX: &str = "w = ∂M/∂l ";

/// The weights chart's legend entries, one per loss.
fn weight_legend_entries(app: &App) -> Vec<Vec<Span<'static>>> {
    app.store
        .losses
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let style = app.theme.series(curves::style_index(app, CurveId::Loss(i)));
            chart::legend_entry(name, style, true, app.theme)
        })
        .collect()
}

pub fn render(frame: &mut Frame, area: Rect, app: &App, focused: bool) {
    let block = pane_block(
        app.theme,
        Pane::Contributions,
        focused,
        Some(combiner_note(app)),
    );
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let store = &app.store;
    let bars_height = (store.losses.len() as u16 + 1)
        * if store.train.as_ref().is_some_and(|t| !t.shares.is_empty()) {
            2
        } else {
            1
        };
    let side = inner.width >= SIDE_BY_SIDE_MIN;
    let legend_rows = |width: u16| {
        let prefix = Span::styled(WEIGHT_LEGEND_PREFIX, app.theme.dim());
        chart::legend_lines(
            Some(prefix),
            weight_legend_entries(app),
            usize::from(width),
            app.theme,
        )
        .len() as u16
    };
    // The weights-over-time chart keeps room to be drawn (its legend and
    // the chart's least height) where the pane has it: at 80x24 six losses'
    // two bar sections took all but three rows, and it read "(too small)".
    let chart_least = legend_rows(inner.width) + chart::MIN_HEIGHT;
    let bottom_height = if side {
        let most = inner
            .height
            .saturating_sub(chart_least)
            .max(inner.height / 2);
        bars_height.max(inner.height / 2).min(most)
    } else {
        inner.height * 2 / 3
    };
    let [top, bottom] =
        Layout::vertical([Constraint::Min(0), Constraint::Length(bottom_height)]).areas(inner);

    // Effective weights over time, in the curves pane's window.
    let prefix = Span::styled(WEIGHT_LEGEND_PREFIX, app.theme.dim());
    let legend = chart::legend_lines(
        Some(prefix),
        weight_legend_entries(app),
        usize::from(top.width),
        app.theme,
    );
    let [legend_area, plot] =
        Layout::vertical([Constraint::Length(legend.len() as u16), Constraint::Min(0)]).areas(top);
    let mut series = Vec::new();
    let x = curves::x_range(app, &[&store.weight_track]);
    for i in 0..store.losses.len() {
        let style = app.theme.series(curves::style_index(app, CurveId::Loss(i)));
        if let Some(x) = x {
            let points =
                chart::track_points(&store.weight_track, i, x, plot.width, style.marker, false);
            series.push(PlotSeries { points, style });
        }
    }
    frame.render_widget(Paragraph::new(legend), legend_area);
    chart::render(
        frame,
        plot,
        &series,
        x.unwrap_or((0.0, 1.0)),
        false,
        "no weights logged yet",
        app.theme,
    );

    let (bars, transform) = if side {
        let [a, b] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .spacing(3)
            .areas(bottom);
        // A rule between the bars and the transform chart: the chart's
        // y-axis labels otherwise read as values of the bars' rows.
        let rule = Rect::new(a.right() + 1, bottom.y, 1, bottom.height);
        let lines = vec![Line::styled("┆", app.theme.dim()); usize::from(bottom.height)];
        frame.render_widget(Paragraph::new(lines), rule);
        (a, b)
    } else {
        let [a, b] = Layout::vertical([
            Constraint::Length(bars_height.min(bottom.height / 2)),
            Constraint::Min(0),
        ])
        .areas(bottom);
        (a, b)
    };
    render_bars(frame, bars, app);
    render_transform(frame, transform, app);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_share_that_rounds_to_zero_has_no_sign() {
        assert_eq!(percent_text(-1e-5), "0.0%");
        assert_eq!(percent_text(-0.05), "-5.0%");
        assert_eq!(percent_text(0.123), "12.3%");
    }
    use crate::tui::fixtures;

    /// `area +3.149 │` and `shape -9.10e-4 │`: a value wider than the
    /// column pushed its bar one character right (walkthrough, 80 columns).
    #[test]
    fn bars_start_in_one_column_whatever_the_values_width() {
        let app = App::new(
            fixtures::meta(1000),
            std::path::PathBuf::from("sessions/demo/config.toml"),
            fixtures::config(1000),
            fixtures::history(500),
            crate::tui::theme::Theme { color: false },
        );
        let values: Named = app
            .store
            .losses
            .iter()
            .zip([3.149, -9.1e-4, 0.5, -12.25, 1e-6])
            .map(|(n, v)| (n.clone(), v))
            .collect();
        let lines = bar_lines(&app, "weights".into(), &values, false, None, 60);
        let columns: Vec<usize> = lines[1..]
            .iter()
            .map(|l| {
                let text: String = l.spans.iter().map(|s| s.content.as_ref()).collect();
                text.chars().position(|c| c == '│').unwrap()
            })
            .collect();
        assert!(
            columns.len() >= 2 && columns.windows(2).all(|w| w[0] == w[1]),
            "{columns:?}"
        );
    }

    #[test]
    fn bars_scale_and_sign() {
        assert_eq!(bar(1.0, 1.0, 4, false), "████");
        assert_eq!(bar(0.5, 1.0, 4, false), "██  ");
        assert_eq!(bar(0.0625, 1.0, 2, false), "▏ ");
        assert_eq!(bar(1.0, 1.0, 5, true), "  │██");
        assert_eq!(bar(-1.0, 1.0, 5, true), "██│  ");
        assert_eq!(bar(f64::NAN, 1.0, 3, false), "   ");
    }
}
