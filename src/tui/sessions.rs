//! The sessions view on screen: the runs table of the sessions folder (id,
//! status, step, primary metric, lineage and the config keys that differ
//! between the sessions, as `ls` shows them) and, once asked for, the
//! marked sessions' primary training losses overlaid in one chart. Also
//! reads those curves ([`read_overlay`]) for the caller.

use super::chart::{self, PlotSeries};
use super::fmt;
use super::state::{App, Overlaid, OverlayCurve, SessionsView};
use crate::plot::data::SessionData;
use crate::runs::Run;
use anyhow::Result;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Paragraph, Row, Table, TableState};
use ratatui::Frame;
use std::path::PathBuf;

/// The fixed columns before the differing config keys.
const FIXED: [&str; 5] = ["", "ID", "STATUS", "STEP", "METRIC"];
/// The lineage column's header, shown when any session is a fork.
const FORKED: &str = "FORKED FROM";

/// Draws the view into `area` (where the panes would be).
pub fn render(frame: &mut Frame, area: Rect, app: &App, view: &SessionsView) {
    let marked = view.marked.len();
    let note = Line::from(Span::styled(
        format!(" {} sessions · {marked} marked ", view.runs.len()),
        app.theme.dim(),
    ));
    // (The overlay's word goes for room when the scroll keys are said.)
    let (scroll, overlay) = match keys_scroll(app, view, area.width.saturating_sub(2)) {
        true => ("←→ keys · ", "overlay"),
        false => ("", "overlay marked"),
    };
    let block = Block::bordered()
        .border_style(app.theme.accent())
        .title(Span::styled(" Sessions ", app.theme.accent()))
        .title(note.right_aligned())
        .title_bottom(format!(
            " ↑↓ select · {scroll}Space mark · o {overlay} · Enter attach · Esc back "
        ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if view.runs.is_empty() {
        let text = "no sessions in this folder";
        frame.render_widget(Paragraph::new(Span::styled(text, app.theme.dim())), inner);
        return;
    }
    let table_area = match &view.overlay {
        None => inner,
        Some(overlaid) => {
            let rows = (view.runs.len() as u16 + 1).min(inner.height / 2).max(2);
            let [table, curves] =
                Layout::vertical([Constraint::Length(rows), Constraint::Min(0)]).areas(inner);
            render_overlay(frame, curves, app, overlaid);
            table
        }
    };
    render_table(frame, table_area, app, view);
}

/// The lineage cell: `parent@step` for a fork.
fn lineage(run: &Run) -> String {
    match (&run.meta.parent, run.meta.fork_step) {
        (Some(parent), Some(at)) => format!("{parent}@{at}"),
        _ => "-".into(),
    }
}

/// The table's text: a header and one row per run; `short` puts session
/// names where ids would be (for narrow terminals).
fn cells(app: &App, view: &SessionsView, short: bool) -> (Vec<String>, Vec<Vec<String>>) {
    let current = app.session_dir();
    let with_forks = view.runs.iter().any(|r| r.meta.parent.is_some());
    let mut header: Vec<String> = FIXED.iter().map(|h| h.to_string()).collect();
    if short {
        header[1] = "NAME".into();
    }
    if with_forks {
        header.push(FORKED.into());
    }
    let shown_keys = view.differing.get(view.first_key..).unwrap_or_default();
    header.extend(shown_keys.iter().cloned());
    let name_of = |id: &str| {
        view.runs
            .iter()
            .find(|r| r.meta.id == id)
            .map_or(id.to_string(), |r| r.meta.name.clone())
    };
    let rows = view
        .runs
        .iter()
        .map(|r| {
            let mark = if view.marked.contains(&r.dir) {
                "●"
            } else {
                "○"
            };
            let attached = r.dir.file_name() == current.file_name();
            let id = if short { &r.meta.name } else { &r.meta.id };
            // The attached session's row as the header has it (live), not
            // as its files had it when the view was read.
            let live;
            let r = if attached {
                let mut now = r.clone();
                now.step = now.step.max(app.step());
                now.status = app.status.as_str().to_string();
                let on_disk = now.final_eval.as_ref().map_or(0, |e| e.0);
                if let Some((step, value)) = app.store.metric().filter(|(s, _)| *s >= on_disk) {
                    let named = [(app.store.primary_metric.clone(), value)];
                    now.final_eval = Some((step, named.into_iter().collect()));
                }
                live = now;
                &live
            } else {
                r
            };
            let mut row = vec![
                mark.to_string(),
                format!("{id}{}", if attached { " ◂" } else { "" }),
                r.status.clone(),
                crate::runs::render::progress_text(r),
                // As `ls` writes it, with the arrow of its direction.
                crate::runs::render::metric_text(r),
            ];
            if with_forks {
                row.push(match (&r.meta.parent, r.meta.fork_step) {
                    (Some(parent), Some(at)) if short => format!("{}@{at}", name_of(parent)),
                    _ => lineage(r),
                });
            }
            // As `ls` writes it: `–` where the combiner does not read the
            // key, `*` after a value changed while the run trained.
            row.extend(
                shown_keys
                    .iter()
                    .map(|k| crate::runs::render::config_cell(r, k)),
            );
            row
        })
        .collect();
    (header, rows)
}

/// The last column's count of the differing keys not shown: `left` of
/// the first shown (scrolled past with ←), `right` of the last (→).
fn hidden_keys(left: usize, right: usize) -> String {
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    match (left, right) {
        (0, right) => format!("+{right} key{}", plural(right)),
        (left, 0) => format!("←{left} key{}", plural(left)),
        (left, right) => format!("←{left} +{right} keys"),
    }
}

/// Whether the key columns do not all fit in `width` (or some are
/// scrolled past): ← and → then scroll them.
fn keys_scroll(app: &App, view: &SessionsView, width: u16) -> bool {
    let (header, rows) = cells(app, view, true);
    let needed: u16 = column_widths(&header, &rows).iter().map(|w| w + 1).sum();
    view.first_key > 0 || needed > width
}

/// Each column's width: its widest cell.
fn column_widths(header: &[String], rows: &[Vec<String>]) -> Vec<u16> {
    (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|row| fmt::width(&row[i]))
                .chain([fmt::width(&header[i])])
                .max()
                .unwrap_or(1) as u16
        })
        .collect()
}

fn render_table(frame: &mut Frame, area: Rect, app: &App, view: &SessionsView) {
    let (mut header, mut rows) = cells(app, view, false);
    let mut widths = column_widths(&header, &rows);
    let needed = |widths: &[u16]| widths.iter().map(|w| w + 1).sum::<u16>();
    if needed(&widths) > area.width {
        (header, rows) = cells(app, view, true);
        widths = column_widths(&header, &rows);
    }
    // Still too wide: differing keys go before the fixed columns would be
    // squeezed, and a last column counts them (`+2 keys`). Each key is kept
    // where it fits, in order, so a wide one does not take the narrower
    // ones after it along (walkthrough P: `+9 keys` beside 45 empty columns).
    let fixed = FIXED.len() + usize::from(header.get(FIXED.len()).is_some_and(|h| h == FORKED));
    let left = view.first_key.min(view.differing.len());
    let marker = |hidden: usize| hidden_keys(left, hidden);
    if needed(&widths) > area.width && widths.len() > fixed {
        let reserve = marker(widths.len() - fixed).chars().count() as u16 + 1;
        let mut used = needed(&widths[..fixed]) + reserve;
        let keep: Vec<bool> = widths
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let fits = i < fixed || used + w < area.width;
                if fits && i >= fixed {
                    used += w + 1;
                }
                fits
            })
            .collect();
        let kept = |cells: Vec<String>| -> Vec<String> {
            cells
                .into_iter()
                .zip(&keep)
                .filter(|(_, k)| **k)
                .map(|(c, _)| c)
                .collect()
        };
        let hidden = keep.iter().filter(|k| !**k).count();
        widths = widths
            .into_iter()
            .zip(&keep)
            .filter(|(_, k)| **k)
            .map(|(w, _)| w)
            .collect();
        header = kept(header);
        rows = rows.into_iter().map(kept).collect();
        header.push(marker(hidden));
        widths.push(marker(hidden).chars().count() as u16);
        for row in &mut rows {
            row.push(String::new());
        }
    } else if left > 0 {
        // Scrolled: the keys left of the first shown are counted too.
        header.push(marker(0));
        widths.push(marker(0).chars().count() as u16);
        for row in &mut rows {
            row.push(String::new());
        }
    }
    let rows = rows.into_iter().enumerate().map(|(i, row)| {
        let style = if view.marked.contains(&view.runs[i].dir) {
            app.theme.accent()
        } else {
            ratatui::style::Style::new()
        };
        Row::new(row.into_iter().map(Cell::from)).style(style)
    });
    let table = Table::new(rows, widths.into_iter().map(Constraint::Length))
        .header(Row::new(header.into_iter().map(Cell::from)).style(app.theme.dim()))
        .row_highlight_style(app.theme.selected());
    let mut state = TableState::default().with_selected(Some(view.cursor));
    frame.render_stateful_widget(table, area, &mut state);
}

fn render_overlay(frame: &mut Frame, area: Rect, app: &App, overlaid: &Overlaid) {
    let entries = overlaid
        .curves
        .iter()
        .enumerate()
        .map(|(i, curve)| chart::legend_entry(&curve.label, app.theme.series(i), true, app.theme))
        .collect();
    let prefix = Span::styled(format!("{} ·", overlaid.what), app.theme.dim());
    let legend = chart::legend_lines(Some(prefix), entries, usize::from(area.width), app.theme);
    let [legend_area, chart_area] =
        Layout::vertical([Constraint::Length(legend.len() as u16), Constraint::Min(0)]).areas(area);
    frame.render_widget(Paragraph::new(legend), legend_area);
    let xs = overlaid
        .curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.0));
    let x = crate::plot::series::extent(xs).unwrap_or((0.0, 1.0));
    let series: Vec<PlotSeries> = overlaid
        .curves
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let style = app.theme.series(i);
            let columns = chart::columns_for(chart_area.width, style.marker);
            let points = crate::plot::series::decimate(&c.points, x.0, x.1, columns);
            PlotSeries {
                points: chart::transform(points.into_iter(), false),
                style,
            }
        })
        .collect();
    chart::render(
        frame,
        chart_area,
        &series,
        x,
        false,
        "no training steps logged yet",
        app.theme,
    );
}

/// The primary training loss of each session in `dirs`, labelled by name
/// (with the id when two share a name; a fork says where it comes from).
pub fn read_overlay(dirs: &[PathBuf]) -> Result<Overlaid> {
    let sessions = dirs
        .iter()
        .map(|d| SessionData::load(d))
        .collect::<Result<Vec<_>>>()?;
    let primaries: std::collections::BTreeSet<&str> =
        sessions.iter().map(|s| s.meta.primary.as_str()).collect();
    let what = match primaries.iter().next() {
        Some(p) if primaries.len() == 1 => format!("training loss {p}"),
        _ => "primary training loss".to_string(),
    };
    let curves = sessions
        .iter()
        .zip(crate::plot::figures::legend_names(&sessions))
        .map(|(s, mut label)| {
            if let Some(at) = s.meta.fork_step {
                label.push_str(&format!(" (fork @{at})"));
            }
            OverlayCurve {
                label,
                points: s.losses.get(&s.meta.primary).cloned().unwrap_or_default(),
            }
        })
        .collect();
    Ok(Overlaid { what, curves })
}
