//! Marks: where a run changed course (a config edit, a collapse restore),
//! drawn as dashed vertical lines with their labels rotated along them.

use super::{fitted, Anchor, Chart, Frame, Metrics, Stroke, Svg, Theme, ZERO};

/// A vertical line at step `x`, with a short label.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// The step.
    pub x: f64,
    pub label: String,
}

/// More labels than this (after merging close marks) are left out: the
/// lines alone are drawn.
const MAX_MARK_LABELS: usize = 6;
/// A mark's label takes at most this fraction of the axes' height.
const MARK_LABEL_HEIGHT: f64 = 0.45;

/// The marks' label size.
fn mark_label_size(t: &Theme) -> f64 {
    t.tick_pt * 0.8
}

/// The marks' labels joined; where that does not fit in `room`, the keys
/// without their sections (`aid.iterations` → `iterations`: a truncated
/// `aid.iterations, m…` hid the second edit), shortened only past that.
fn mark_label(parts: &[&str], room: f64, size: f64, m: &Metrics) -> String {
    let full = parts.join(", ");
    if m.width(&full, size) <= room {
        return full;
    }
    let short: Vec<&str> = parts
        .iter()
        .flat_map(|part| part.split(", "))
        .map(|key| key.rsplit('.').next().unwrap_or(key))
        .collect();
    fitted(&short.join(", "), room, size, m)
}

impl Chart {
    /// The marks' labels, at the x (points) of the first mark of each run of
    /// marks closer than a label's height (one label, theirs joined),
    /// shortened to fit; none when there are too many.
    pub(super) fn mark_labels(&self, frame: &Frame, t: &Theme, m: &Metrics) -> Vec<(f64, String)> {
        let size = mark_label_size(t);
        let mut xs: Vec<(f64, &str)> = self
            .marks
            .iter()
            .filter(|mark| frame.x.contains(mark.x))
            .map(|mark| (frame.px(mark.x), mark.label.as_str()))
            .collect();
        xs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut labels: Vec<(f64, Vec<&str>)> = Vec::new();
        let mut last_px = f64::NEG_INFINITY;
        for (px, label) in xs {
            match labels.last_mut() {
                Some((_, parts)) if px - last_px < 1.3 * size => {
                    if !parts.contains(&label) {
                        parts.push(label);
                    }
                }
                _ => labels.push((px, vec![label])),
            }
            last_px = px;
        }
        if labels.len() > MAX_MARK_LABELS {
            return Vec::new();
        }
        let room = MARK_LABEL_HEIGHT * frame.area.h;
        labels
            .into_iter()
            .map(|(px, parts)| (px, mark_label(&parts, room, size, m)))
            .collect()
    }

    /// Points along the labels' span at the top of the axes, for the
    /// legend to keep clear of.
    pub(super) fn mark_label_points(
        &self,
        frame: &Frame,
        t: &Theme,
        m: &Metrics,
    ) -> Vec<(f64, f64)> {
        let area = frame.area;
        self.mark_labels(frame, t, m)
            .into_iter()
            .flat_map(|(px, _)| {
                (0..=8).map(move |i| (px, area.y + MARK_LABEL_HEIGHT * area.h * f64::from(i) / 8.0))
            })
            .collect()
    }

    /// The marks in view: a dashed grey line each over the axes' height,
    /// labels rotated along them at the top.
    pub(super) fn draw_marks(&self, svg: &mut Svg, frame: &Frame, t: &Theme, m: &Metrics) {
        let area = frame.area;
        let stroke = Stroke {
            color: ZERO,
            width: t.axis_pt,
            dash: vec![3.0 * t.axis_pt, 2.0 * t.axis_pt],
            opacity: 0.8,
        };
        for mark in self.marks.iter().filter(|mark| frame.x.contains(mark.x)) {
            let px = frame.px(mark.x);
            svg.line(px, area.y, px, area.y + area.h, &stroke);
        }
        let size = mark_label_size(t);
        for (px, label) in self.mark_labels(frame, t, m) {
            svg.text(
                px - 0.3 * size,
                area.y + 0.4 * size,
                &label,
                size,
                Anchor::End,
                -90.0,
            );
        }
    }
}
