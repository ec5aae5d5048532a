//! The header: session name, status, step / total, speed, ETA, device
//! (and the number of ranks of a data-parallel run), the primary metric, GPU use (when NVML is there), and red banners for a
//! refused config edit or a failed run.

use super::fmt;
use super::state::App;
use crate::session::Status;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

/// Banner lines shown at most, per banner.
const BANNER_LINES: usize = 2;

/// The banners to show: a refused config edit, a failed write, a failure.
fn banners(app: &App) -> Vec<String> {
    let mut out = Vec::new();
    // An ended run has no config in force, and nothing reads the file
    // until a resume, which checks it anew: the banner stayed on a
    // finished session after the file was fixed (a walkthrough). The
    // events pane keeps the refusal.
    if let Some(error) = app
        .store
        .config_error
        .as_ref()
        .filter(|_| !app.status.is_terminal())
    {
        out.push(format!(
            "config refused at step {}, last good config stays in force: {error}",
            app.store.config_error_step
        ));
    }
    // A pause with a reason is a write that failed (a user's pause has
    // none): `‖ paused` alone read as someone's `p` (walkthrough F).
    if let (Status::Paused, Some(reason)) = (app.status, &app.status_message) {
        out.push(format!("run {reason}"));
    }
    if app.status == Status::Failed {
        out.push(format!(
            "run {}: {}",
            app.status_word(),
            app.status_message.as_deref().unwrap_or("(no reason given)")
        ));
    }
    out
}

fn banner_lines(app: &App, width: u16) -> Vec<String> {
    let width = usize::from(width.max(1));
    banners(app)
        .iter()
        .flat_map(|b| {
            let mut lines = fmt::wrap(b, width);
            if lines.len() > BANNER_LINES {
                lines.truncate(BANNER_LINES);
                let last = lines.pop().unwrap_or_default();
                lines.push(fmt::clip(&(last + "…"), width));
            }
            lines
        })
        .collect()
}

/// Rows the header needs at this width.
pub fn height(app: &App, width: u16) -> u16 {
    2 + banner_lines(app, width).len() as u16
}

fn status_span(app: &App) -> Span<'static> {
    let (glyph, color) = match app.status {
        Status::Running => ("●", Color::Green),
        Status::Paused => ("‖", Color::Yellow),
        Status::Finished => ("✔", Color::Cyan),
        Status::Failed => ("✖", Color::Red),
        Status::Stopped => ("■", Color::Yellow),
    };
    let style = if app.theme.color {
        Style::new().fg(color)
    } else {
        Style::new()
    };
    Span::styled(
        format!("{glyph} {}", app.status_word()),
        style.add_modifier(Modifier::BOLD),
    )
}

pub fn render(frame: &mut Frame, area: Rect, app: &App) {
    let theme = app.theme;
    let sep = || Span::styled(" · ", theme.dim());
    let (step, total) = (app.step(), app.total_steps());
    let percent = if total > 0 {
        100.0 * step as f64 / total as f64
    } else {
        0.0
    };

    let mut first = vec![
        status_span(app),
        Span::raw("  "),
        Span::styled(app.meta.name.clone(), theme.accent()),
        sep(),
        Span::raw(format!(
            "step {}/{} ({percent:.0}%)",
            fmt::steps(step),
            fmt::steps(total)
        )),
    ];
    if let Some(p) = app.progress.filter(|_| app.status == Status::Running) {
        first.push(sep());
        first.push(Span::raw(format!("{} steps/s", fmt::rate(p.steps_per_sec))));
    }
    if let Some(eta) = app.eta_secs() {
        first.push(sep());
        first.push(Span::raw(format!("ETA {}", fmt::duration(eta))));
    }

    let mut second = vec![Span::raw(app.meta.device.clone())];
    if let Some(ranks) = app.meta.world_size.filter(|&n| n > 1) {
        // Data-parallel: the device is rank 0's.
        second.push(Span::raw(format!(" × {ranks} ranks")));
    }
    second.push(sep());
    let metric = &app.store.primary_metric;
    let arrow = if app.meta.higher_is_better {
        "↑"
    } else {
        "↓"
    };
    match app.store.metric() {
        Some((s, v)) => {
            second.push(Span::raw(format!("{metric}{arrow} ")));
            // As the sessions view and `ls` write it.
            second.push(Span::styled(
                crate::numfmt::column_value(v),
                theme.good().add_modifier(Modifier::BOLD),
            ));
            second.push(Span::styled(format!(" @{}", fmt::steps(s)), theme.dim()));
            if let Some((bs, bv)) = app.store.best_metric.filter(|(bs, _)| *bs != s) {
                second.push(Span::raw(format!(
                    " best {} @{}",
                    crate::numfmt::column_value(bv),
                    fmt::steps(bs)
                )));
            }
        }
        // No metric named yet (a runner still setting up): no direction.
        None if metric.is_empty() => second.push(Span::styled("no eval yet", theme.dim())),
        None => second.push(Span::styled(
            format!("{metric}{arrow} (no eval yet)"),
            theme.dim(),
        )),
    }
    if let Some(gpu) = app.gpu {
        second.push(sep());
        second.push(Span::raw(format!(
            "GPU {}% · {:.1}/{:.1} GiB",
            gpu.util_percent,
            gpu.mem_used as f64 / f64::from(1u32 << 30),
            gpu.mem_total as f64 / f64::from(1u32 << 30)
        )));
    }

    let mut lines = vec![Line::from(first), Line::from(second)];
    lines.extend(banner_lines(app, area.width).into_iter().map(|l| {
        Line::from(Span::styled(
            fmt::pad(&l, usize::from(area.width)),
            theme.banner(),
        ))
    }));
    frame.render_widget(Paragraph::new(lines), area);
}
