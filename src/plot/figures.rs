//! What each figure shows: which series, labels and scales. Pure functions
//! from [`SessionData`] to [`Chart`]s; drawing lives in `chart`, writing in
//! the module root.

use super::chart::{Bar, Body, Chart, Mark};
use super::data::{SeriesSource, SessionData};
use super::labels::{better, eval_axis_label, smoothing_note, train_axis_label};
use super::loss_axis::LossAxis;
use super::scale::{self, Kind};
use super::series::{
    decimate, ema, ema_of_logs, extent, interpolate, Emphasis, Line, Points, Smoothing,
};
use super::style::{look, SeriesLook};
use super::svg::Shape;
use std::collections::BTreeMap;

/// A chart and the file stem it is saved under.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub name: &'static str,
    pub chart: Chart,
}

/// How curves are prepared for drawing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prep {
    /// How training curves are smoothed.
    pub smoothing: Smoothing,
    /// Pixel columns to decimate to.
    pub columns: usize,
}

const STEP: &str = "training step";

/// All figures a session has data for, and a note for each it has not
/// (and for the loss axis `auto` chose or the one given hides a loss).
pub fn session_figures(
    data: &SessionData,
    prep: Prep,
    axis: LossAxis,
) -> (Vec<Figure>, Vec<String>) {
    let (log_scale, axis_note) = axis.choose(data);
    let (mut figures, mut skipped) = (Vec::new(), Vec::new());
    // A run whose every update was skipped has evals and no train line.
    match data.losses.is_empty() {
        true => skipped.push("losses: no train lines logged".to_string()),
        false => figures.push(losses(data, prep, log_scale)),
    }
    let mut add = |figure: Option<Figure>, why: String| match figure {
        Some(f) => figures.push(f),
        None => skipped.push(why),
    };
    // Every value NaN drew an empty figure, unsaid (walkthrough W).
    let name = &data.meta.primary_metric;
    let logged = data.metrics.get(name).is_some_and(|p| !p.is_empty());
    add(
        metric(data, prep),
        match logged {
            true => format!("metric: '{name}' is NaN or inf at every evaluation"),
            false => format!("metric: no '{name}' in any eval line"),
        },
    );
    add(
        weights(data, prep),
        "weights: no effective weights logged".into(),
    );
    add(
        final_weights(data),
        "final-weights: no effective weights logged".into(),
    );
    add(
        transforms(data),
        "transforms: no transform lines logged".into(),
    );
    skipped.extend(axis_note);
    (figures, skipped)
}

/// Raw curve faint behind its EMA of weight `ema_weight` (or just the raw curve
/// when not smoothing), both decimated over `[x_lo, x_hi]`; on a log axis
/// (`log_space`) the EMA averages logarithms, so one spike does not hold
/// the curve a decade above every raw point for hundreds of steps.
fn smoothed(
    label: String,
    points: &Points,
    look: SeriesLook,
    (prep, ema_weight, log_space): (Prep, f64, bool),
    (x_lo, x_hi): (f64, f64),
) -> Vec<Line> {
    let thin = |p: &Points| decimate(p, x_lo, x_hi, prep.columns);
    let main = |points| Line {
        label: Some(label.clone()),
        points,
        look: look.clone(),
        emphasis: Emphasis::Main,
    };
    if ema_weight <= 0.0 || points.len() < 3 {
        return vec![main(thin(points))];
    }
    let faint = Line {
        label: None,
        points: thin(points),
        look: look.clone(),
        emphasis: Emphasis::Faint,
    };
    let smooth = if log_space {
        ema_of_logs(points, ema_weight)
    } else {
        ema(points, ema_weight)
    };
    vec![faint, main(thin(&smooth))]
}

fn step_range<'a>(curves: impl Iterator<Item = &'a Points>) -> (f64, f64) {
    extent(curves.flat_map(|p| p.iter().map(|q| q.0))).unwrap_or((0.0, 1.0))
}

/// Per-loss training curves in one loss-coloured set of lines per loss,
/// smoothed with EMA weight `ema_weight`.
fn per_loss(
    data: &SessionData,
    curves: &super::data::Curves,
    prep: Prep,
    (ema_weight, log_space): (f64, bool),
) -> Vec<Line> {
    let range = step_range(curves.values());
    // Draw faint curves first so no smoothed curve hides under another's noise.
    let (mut faint, mut main): (Vec<Line>, Vec<Line>) = (Vec::new(), Vec::new());
    for (i, name) in data.loss_order().iter().enumerate() {
        if let Some(points) = curves.get(name) {
            let smoothing = (prep, ema_weight, log_space);
            for line in smoothed(data.loss_label(name), points, look(i), smoothing, range) {
                if line.emphasis == Emphasis::Faint {
                    faint.push(line)
                } else {
                    main.push(line)
                }
            }
        }
    }
    faint.extend(main);
    faint
}

pub fn losses(data: &SessionData, prep: Prep, log_scale: bool) -> Figure {
    let ema_weight = prep.smoothing.weight_for(data.losses.values());
    Figure {
        name: "losses",
        chart: Chart {
            x_label: STEP.into(),
            y_label: format!("training loss{}", smoothing_note(ema_weight)),
            y_kind: if log_scale { Kind::Log } else { Kind::Linear },
            tight_x: true,
            zero_line: false,
            marks: data.marks.clone(),
            body: Body::Lines(per_loss(data, &data.losses, prep, (ema_weight, log_scale))),
        },
    }
}

/// An eval metric over steps, markers while sparse, decimated when dense.
fn eval_line(label: String, points: &Points, look: SeriesLook, columns: usize) -> Line {
    let (lo, hi) = step_range(std::iter::once(points));
    Line {
        label: Some(label),
        points: decimate(points, lo, hi, columns),
        look,
        emphasis: Emphasis::WithMarkers,
    }
}

pub fn metric(data: &SessionData, prep: Prep) -> Option<Figure> {
    let name = &data.meta.primary_metric;
    let points = data
        .metrics
        .get(name)
        .filter(|p| p.iter().any(|q| q.1.is_finite()))?;
    let higher = data.meta.higher_is_better;
    let pick = |a: &&(f64, f64), b: &&(f64, f64)| {
        if higher {
            a.1.total_cmp(&b.1)
        } else {
            b.1.total_cmp(&a.1)
        }
    };
    // Earliest step among equals: max_by keeps the last maximum, so search
    // reversed. A fork's after its fork step, as `ls` and `table` read it.
    let own = |x: f64| data.meta.owns(x as u64);
    let best = points
        .iter()
        .rev()
        .filter(|p| own(p.0) && p.1.is_finite())
        .max_by(pick);
    let best_line = best.map(|&best| Line {
        // Four digits, as `ls` and the TUI give it: three read 48.97 as
        // "best 49" on an axis up to 49 (walkthrough C).
        label: Some(format!(
            "best{} {} (step {})",
            if data.meta.fork_step.is_some() {
                " since the fork"
            } else {
                ""
            },
            crate::numfmt::readable(best.1),
            scale::step(best.0)
        )),
        points: vec![best],
        look: SeriesLook {
            color: "#000000",
            dash: &[],
            shape: Shape::Diamond,
        },
        emphasis: Emphasis::MarkersOnly,
    });
    Some(Figure {
        name: "metric",
        chart: Chart {
            x_label: STEP.into(),
            y_label: format!("validation {name} {}", better(higher)),
            y_kind: super::loss_axis::metric_axis(points, higher),
            tight_x: false,
            zero_line: false,
            marks: data.marks.clone(),
            body: Body::Lines(
                std::iter::once(eval_line(name.clone(), points, look(0), prep.columns))
                    .chain(best_line)
                    .collect(),
            ),
        },
    })
}

pub fn weights(data: &SessionData, prep: Prep) -> Option<Figure> {
    if data.weights.is_empty() {
        return None;
    }
    let ema_weight = prep.smoothing.weight_for(data.weights.values());
    Some(Figure {
        name: "weights",
        chart: Chart {
            x_label: STEP.into(),
            y_label: format!("effective weight ∂M/∂lₖ{}", smoothing_note(ema_weight)),
            y_kind: Kind::Linear,
            tight_x: true,
            zero_line: true,
            marks: data.marks.clone(),
            body: Body::Lines(per_loss(data, &data.weights, prep, (ema_weight, false))),
        },
    })
}

/// Each loss's effective weight, the median of its last
/// [`FINAL_WEIGHT_LINES`](crate::session::metrics::FINAL_WEIGHT_LINES)
/// (or last 100 steps') finite logged values where it was not exactly 0,
/// and the steps they span.
pub fn final_weight_medians(data: &SessionData) -> Option<((f64, f64), BTreeMap<String, f64>)> {
    crate::session::metrics::final_weight_medians(&data.weights, &data.losses)
}

pub fn final_weights(data: &SessionData) -> Option<Figure> {
    let ((from, to), weights) = final_weight_medians(data)?;
    let bars: Vec<Bar> = data
        .loss_order()
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            weights.get(name).map(|&value| Bar {
                // Marked as in the other figures' legends (walkthrough A).
                category: data.loss_label(name),
                value,
                look: look(i),
            })
        })
        .collect();
    if bars.is_empty() {
        return None;
    }
    let mut when = if from == to {
        format!("weights at step {}", scale::step(to))
    } else {
        format!(
            "median of the last logged steps, {}–{}",
            scale::step(from),
            scale::step(to)
        )
    };
    // A summary across a collapse restore mixes two φs (a walkthrough's bars
    // read 0.77 for a weight that was 4–10 for most of the run).
    // (In fewer words, to fit the axis; the weights figure marks its step.)
    let restored = data
        .marks
        .iter()
        .any(|m| m.label == "restore" && m.x > from && m.x <= to);
    if restored {
        when = format!(
            "median over steps {}–{}, across a φ restore",
            scale::step(from),
            scale::step(to)
        );
    }
    Some(Figure {
        name: "final-weights",
        chart: Chart {
            x_label: format!("loss ({when})"),
            y_label: "effective weight ∂M/∂lₖ".into(),
            y_kind: Kind::Linear,
            tight_x: false,
            zero_line: true,
            marks: Vec::new(),
            body: Body::Bars(bars),
        },
    })
}

pub fn transforms(data: &SessionData) -> Option<Figure> {
    let (step, curves) = data.transform.as_ref()?;
    let mut lines = Vec::new();
    let mut marks = Vec::new();
    for (i, name) in data.loss_order().iter().enumerate() {
        let Some(curve) = curves.get(name) else {
            continue;
        };
        // Each loss on its own scale, as a multiple of its value at the
        // step (the curve spans 0..2 of it, a value below 0 too): losses
        // of different sizes (0.03 and 5) would otherwise crowd the small
        // one into x = 0.
        let scale = curve
            .x
            .last()
            .copied()
            .filter(|&x| x != 0.0 && x.is_finite())
            .map(|x| x / 2.0);
        let Some(scale) = scale else {
            continue;
        };
        let mut points: Points = curve
            .x
            .iter()
            .map(|x| x / scale)
            .zip(curve.y.iter().copied())
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Where the run sat on this curve at the step: x = 1 by
        // construction (a later train line's loss would put it elsewhere).
        if let Some(y) = interpolate(&points, 1.0).map(|y| (1.0, y)) {
            marks.push(Line {
                label: None,
                points: vec![y],
                look: look(i),
                emphasis: Emphasis::MarkersOnly,
            });
        }
        // A masked loss that was exactly 0 at the step is swept around the
        // last value it had with a gradient, which the trainer holds for
        // MELTR (walkthrough P's `conc` read as if 0 were its value).
        let logged = data
            .losses
            .get(name)
            .and_then(|p| p.iter().rev().find(|(x, _)| *x == *step as f64))
            .map(|&(_, loss)| loss);
        let label = match logged {
            Some(0.0) => format!(
                "{} (0 at the step; held at {})",
                data.loss_label(name),
                crate::numfmt::readable(scale)
            ),
            _ => data.loss_label(name),
        };
        lines.push(Line {
            label: Some(label),
            points,
            look: look(i),
            emphasis: Emphasis::Main,
        });
    }
    if lines.is_empty() {
        return None;
    }
    lines.extend(marks);
    Some(Figure {
        name: "transforms",
        chart: Chart {
            x_label: format!(
                "lₖ as a multiple of its value at step {} (others fixed)",
                scale::step(*step as f64)
            ),
            y_label: "combined loss M(l)".into(),
            y_kind: Kind::Linear,
            tight_x: false,
            zero_line: false,
            marks: Vec::new(),
            body: Body::Lines(lines),
        },
    })
}

/// Legend names for sessions: their names, made unique with the id if needed.
pub(crate) fn legend_names(sessions: &[SessionData]) -> Vec<String> {
    sessions
        .iter()
        .map(|s| {
            let twins = sessions
                .iter()
                .filter(|o| o.meta.name == s.meta.name)
                .count();
            if twins > 1 {
                format!("{} ({})", s.meta.name, s.meta.id)
            } else {
                s.meta.name.clone()
            }
        })
        .collect()
}

/// For each session, the session it was forked from when that one is in
/// the figure too (its index) and the fork step.
pub fn fork_points(sessions: &[SessionData]) -> Vec<Option<(usize, u64)>> {
    sessions
        .iter()
        .map(|s| {
            let parent = s.meta.parent.as_deref()?;
            let at = s.meta.fork_step?;
            let p = sessions.iter().position(|o| o.meta.id == parent)?;
            Some((p, at))
        })
        .collect()
}

/// How many forks away from a session not forked from one in the figure.
fn fork_depth(forks: &[Option<(usize, u64)>], mut i: usize) -> usize {
    let mut depth = 0;
    while let Some((p, _)) = forks[i] {
        depth += 1;
        i = p;
        if depth > forks.len() {
            break; // a cycle cannot come from real sessions; stop anyway
        }
    }
    depth
}

/// How a fork's step is labelled, where sessions are drawn one by one or
/// as groups.
pub fn fork_label(parent: &str, at: u64) -> String {
    format!("fork of {parent} at step {}", scale::step(at as f64))
}

/// The fork's lines start at its fork step (before it they are its
/// parent's, drawn already) from the point of the parent's main line there,
/// where a marker in the fork's colour, labelled with the parent, shows
/// the branches parting. Without a parent's point at that step (it logged
/// nothing around it: no eval before it) the fork's lines start at their
/// own first point, and the fork step is the returned vertical mark: a
/// marker at the fork's first value, drawn at the fork step, showed a
/// value measured at neither (walkthrough J).
fn start_at_fork(
    lines: &mut Vec<Line>,
    at: u64,
    parent: (&str, &[Line]),
    look: SeriesLook,
) -> Option<Mark> {
    let x = at as f64;
    let label = fork_label(parent.0, at);
    for line in lines.iter_mut() {
        line.points.retain(|p| p.0 >= x);
    }
    let main_of = |ls: &[Line]| {
        ls.iter()
            .position(|l| l.emphasis != Emphasis::Faint && l.emphasis != Emphasis::MarkersOnly)
    };
    let from_parent = main_of(parent.1).and_then(|m| interpolate(&parent.1[m].points, x));
    let m = main_of(lines)?;
    let Some(y) = from_parent else {
        return Some(Mark { x, label });
    };
    if lines[m].points.first().is_none_or(|p| p.0 > x) {
        lines[m].points.insert(0, (x, y));
    }
    lines.push(Line {
        label: Some(label),
        points: vec![(x, y)],
        look: SeriesLook {
            shape: Shape::Triangle,
            ..look
        },
        emphasis: Emphasis::MarkersOnly,
    });
    None
}

/// One metric (eval metric or train loss, already checked to exist in
/// every session) across sessions. A fork whose parent is drawn too starts
/// at its fork step, with the fork point marked and `parent → fork` as its
/// legend label. Session `i` is drawn with `look(slots[i])`.
pub fn compare(
    sessions: &[SessionData],
    metric: &str,
    prep: Prep,
    slots: &[usize],
) -> anyhow::Result<Chart> {
    let mut series = Vec::new();
    for s in sessions {
        series.push(s.series(metric)?);
    }
    let range = step_range(series.iter().map(|(_, p)| *p));
    let ema_weight = match super::data::is_schedule(metric) {
        true => 0.0,
        false => prep.smoothing.weight_for(series.iter().map(|(_, p)| *p)),
    };
    let names = legend_names(sessions);
    let forks = fork_points(sessions);
    let mut per_session: Vec<Vec<Line>> = series
        .iter()
        .enumerate()
        .map(|(i, (source, points))| {
            let name = match forks[i] {
                Some((p, _)) => format!("{} → {}", names[p], names[i]),
                None => names[i].clone(),
            };
            let name = match &sessions[i].setting {
                Some(setting) => format!("{name} ({setting})"),
                None => name,
            };
            match source {
                SeriesSource::Eval => vec![eval_line(name, points, look(slots[i]), prep.columns)],
                SeriesSource::Train => smoothed(
                    name,
                    points,
                    look(slots[i]),
                    (prep, ema_weight, false),
                    range,
                ),
            }
        })
        .collect();
    // Parents before their forks, so a fork of a fork joins its trimmed parent.
    let mut order: Vec<usize> = (0..sessions.len()).collect();
    order.sort_by_key(|&i| fork_depth(&forks, i));
    let mut marks: Vec<Mark> = Vec::new();
    for &i in &order {
        if let Some((p, at)) = forks[i] {
            let parent = per_session[p].clone();
            let mark = start_at_fork(
                &mut per_session[i],
                at,
                (&names[p], &parent),
                look(slots[i]),
            );
            // Forks of one parent at one step: one mark.
            marks.extend(mark.filter(|m| !marks.iter().any(|o| o.label == m.label)));
        }
    }
    let mut faint = Vec::new();
    let mut main = Vec::new();
    let mut marked: Vec<String> = Vec::new();
    // Drawn in that order too: a fork over its parent, whatever order the
    // sessions came in (a walkthrough's parent hid its fork's line).
    let drawn: Vec<Line> = order
        .iter()
        .flat_map(|&i| std::mem::take(&mut per_session[i]))
        .collect();
    for mut line in drawn {
        // Forks of one parent at one step: one legend entry for their marks.
        if line.emphasis == Emphasis::MarkersOnly {
            if let Some(label) = &line.label {
                if marked.contains(label) {
                    line.label = None;
                } else {
                    marked.push(label.clone());
                }
            }
        }
        if line.emphasis == Emphasis::Faint {
            faint.push(line)
        } else {
            main.push(line)
        }
    }
    faint.extend(main);
    let y_label = match series[0].0 {
        SeriesSource::Eval => eval_axis_label(&sessions[0].meta, metric),
        SeriesSource::Train => train_axis_label(metric, ema_weight),
    };
    Ok(Chart {
        x_label: STEP.into(),
        y_label,
        y_kind: Kind::Linear,
        tight_x: series.iter().all(|(s, _)| *s == SeriesSource::Train),
        zero_line: false,
        marks,
        body: Body::Lines(faint),
    })
}

#[cfg(test)]
mod tests;
