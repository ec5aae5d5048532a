//! The loss curves pane: every training loss (and, on request, the combined
//! loss) above, the primary validation metric below; log scale, EMA
//! smoothing, full or recent window, series chosen from the legend.

use super::chart::{self, PlotSeries};
use super::decimate::Track;
use super::fmt;
use super::frame::pane_block;
use super::state::{App, CurveId, Pane, Window};
use super::store::Store;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// Below this inner height the metric chart is left out (the header shows it).
const METRIC_MIN_HEIGHT: u16 = 14;

/// Steps shown under the app's window setting, over the given tracks.
pub fn x_range(app: &App, tracks: &[&Track]) -> Option<(f64, f64)> {
    let ranges = tracks.iter().filter_map(|t| t.x_range());
    let (lo, hi) = ranges.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (a, b)| {
        (lo.min(a), hi.max(b))
    });
    if lo > hi {
        return None;
    }
    Some(match app.curves.window {
        Window::Full => (lo, hi),
        Window::Last(n) => ((hi - n as f64).max(lo), hi),
    })
}

/// The style index of a series: losses first, then combined, then metric,
/// so a loss has the same colour or marker in every pane.
pub fn style_index(app: &App, id: CurveId) -> usize {
    match id {
        CurveId::Loss(i) => i,
        CurveId::Total => app.store.losses.len(),
        CurveId::Metric => app.store.losses.len() + 1,
    }
}

fn settings_note(app: &App) -> Line<'static> {
    let scale = match (app.log_scale(), app.curves.log_chosen) {
        (false, _) => "lin",
        (true, true) => "log",
        // Chosen from the losses' sizes.
        (true, false) => "log (auto)",
    };
    let smooth = app
        .smoothing()
        .map_or("raw".to_string(), |w| format!("EMA {w}"));
    let window = match app.curves.window {
        Window::Full => "full".to_string(),
        Window::Last(n) => format!("last {}", fmt::steps(n)),
    };
    Line::from(Span::styled(
        format!(" {scale} · {smooth} · {window} "),
        app.theme.dim(),
    ))
}

fn legend(app: &App, focused: bool, width: u16) -> Vec<Line<'static>> {
    let mut entries = Vec::new();
    for (i, id) in app.curve_ids().into_iter().enumerate() {
        let shown = !app.curves.hidden.contains(&id);
        let mut entry = chart::legend_entry(
            &app.curve_name(id),
            app.theme.series(style_index(app, id)),
            shown,
            app.theme,
        );
        if focused && i == app.curves.cursor {
            entry = entry
                .into_iter()
                .map(|s| s.patch_style(app.theme.selected()))
                .collect();
        }
        entries.push(entry);
    }
    chart::legend_lines(None, entries, usize::from(width), app.theme)
}

/// On a log scale, the shown loss-pane series with values ≤ 0 in the
/// window (MELTR's combined loss can be negative), which the chart cannot
/// draw: said rather than left as gaps.
fn not_drawn_on_log_scale(app: &App, x: (f64, f64)) -> Option<String> {
    if !app.log_scale() {
        return None;
    }
    let store = &app.store;
    let names: Vec<String> = app
        .curve_ids()
        .into_iter()
        .filter(|id| !app.curves.hidden.contains(id))
        .filter(|id| {
            loss_pane_track(store, *id).is_some_and(|(track, channel)| {
                track
                    .decimate(channel, x.0, x.1, NON_POSITIVE_PROBE_COLUMNS)
                    .iter()
                    .any(|(_, y)| *y <= 0.0)
            })
        })
        .map(|id| app.curve_name(id))
        .collect();
    (!names.is_empty()).then(|| {
        format!(
            "log scale: values ≤ 0 of {} not drawn (l: linear)",
            names.join(", ")
        )
    })
}

/// The track and channel of a series drawn in the losses chart (the metric
/// has its own chart below).
fn loss_pane_track(store: &Store, id: CurveId) -> Option<(&Track, usize)> {
    match id {
        CurveId::Loss(c) => Some((&store.loss_track, c)),
        CurveId::Total => Some((&store.total_track, 0)),
        CurveId::Metric => None,
    }
}

/// Decimation columns when looking for values ≤ 0 (min/max per column
/// keeps every minimum).
const NON_POSITIVE_PROBE_COLUMNS: usize = 256;

pub fn render(frame: &mut Frame, area: Rect, app: &App, focused: bool) {
    let block = pane_block(app.theme, Pane::Curves, focused, Some(settings_note(app)));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let store = &app.store;
    let metric_shown =
        !app.curves.hidden.contains(&CurveId::Metric) && !store.metric_track.is_empty();
    let metric_height = if metric_shown && inner.height >= METRIC_MIN_HEIGHT {
        inner.height / 3
    } else {
        0
    };
    let mut legend_lines = legend(app, focused, inner.width);
    let x = x_range(app, &[&store.loss_track, &store.metric_track]);
    if let Some(note) = x.and_then(|x| not_drawn_on_log_scale(app, x)) {
        legend_lines.extend(
            fmt::wrap(&note, usize::from(inner.width))
                .into_iter()
                .map(|l| Line::styled(l, app.theme.dim())),
        );
    }
    let [legend_area, losses_area, metric_area] = Layout::vertical([
        Constraint::Length(legend_lines.len() as u16),
        Constraint::Min(0),
        Constraint::Length(metric_height),
    ])
    .areas(inner);
    frame.render_widget(Paragraph::new(legend_lines), legend_area);

    let Some(x) = x else {
        chart::render(
            frame,
            losses_area,
            &[],
            (0.0, 1.0),
            false,
            "waiting for the first logged step…",
            app.theme,
        );
        return;
    };
    let log = app.log_scale();
    // The metric's chart stays linear: an accuracy or R² is read on its own
    // scale (a log axis gave an accuracy ticks above 1, a walkthrough).
    let plot = |track: &Track, channel: usize, id: CurveId, width: u16, log: bool| {
        let style = app.theme.series(style_index(app, id));
        PlotSeries {
            points: chart::track_points(track, channel, x, width, style.marker, log),
            style,
        }
    };
    let width = losses_area.width;
    let series: Vec<PlotSeries> = app
        .curve_ids()
        .into_iter()
        .filter(|id| !app.curves.hidden.contains(id))
        .filter_map(|id| {
            loss_pane_track(store, id).map(|(track, c)| plot(track, c, id, width, log))
        })
        .collect();
    chart::render(
        frame,
        losses_area,
        &series,
        x,
        log,
        "no series selected (Space toggles)",
        app.theme,
    );

    if metric_height > 0 {
        let [title, plot_area] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(metric_area);
        let metric = plot(
            &store.metric_track,
            0,
            CurveId::Metric,
            plot_area.width,
            false,
        );
        let mut spans = chart::legend_entry(
            &app.curve_name(CurveId::Metric),
            metric.style,
            true,
            app.theme,
        );
        if let Some((_, v)) = store.metric() {
            spans.push(Span::raw(format!(" {}", fmt::num(v))));
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), title);
        chart::render(
            frame,
            plot_area,
            &[metric],
            x,
            false,
            "no eval yet",
            app.theme,
        );
    }
}
