//! Marks: where a run changed course (a config edit, a collapse restore),
//! drawn as dashed vertical lines with their labels rotated along them.

use super::{fitted, scale, Anchor, Chart, Frame, Metrics, Stroke, Svg, Theme, ZERO};
use crate::plot::data::EDIT_ARROW;

/// A vertical line at step `x`, with a short label.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// The step.
    pub x: f64,
    pub label: String,
}

/// At most this many labels: past it the closest neighbouring runs of
/// marks share one (with their span), so every line keeps a label (seven
/// edits over a run drew seven bare lines, nothing saying what changed).
const MAX_MARK_LABELS: usize = 6;
/// Marks of one label further apart than this (in label heights) are
/// drawn as separate lines: the label then says their steps.
const APART: f64 = 0.3;
/// A span's baseline right of its run's first line (in label heights).
const SPAN_OFFSET: f64 = 1.05;
/// A mark's label takes at most this fraction of the axes' height.
const MARK_LABEL_HEIGHT: f64 = 0.45;

/// Whether a label's first column, left of its line at `px`, would cross
/// the left spine at `left`: it goes right of its line instead.
fn label_right_of(px: f64, left: f64, size: f64) -> bool {
    px - (0.3 + 0.8) * size < left
}

/// At most this many columns of one label, side by side left of its line.
const MAX_COLUMNS: usize = 4;

/// The marks' label size.
fn mark_label_size(t: &Theme) -> f64 {
    t.tick_pt * 0.8
}

/// A second column of a label sits this far left of the first (in label
/// heights).
const COLUMN_STEP: f64 = 1.1;

/// The edits joined (`aid.iterations 0→2→1, restore`) in one column; where
/// that does not fit in `room`, split over up to `columns` columns, whole
/// (a resume's `aid.iterations 1→0, train.steps 4000→1000` read
/// `iterations 1→0, ste…`, walkthroughs T and U; four edits at one step
/// read `iterations 0→1,…` beside free room, walkthrough J); else the
/// keys without their sections (`aid.iterations` → `iterations`: a
/// truncated `aid.iterations, m…` hid the second edit), shortened only
/// past that.
fn keys_label(parts: &[String], room: f64, size: f64, columns: usize, m: &Metrics) -> Vec<String> {
    let fits = |text: &String| m.width(text, size) <= room;
    let full = parts.join(", ");
    if fits(&full) {
        return vec![full];
    }
    let short: Vec<String> = parts
        .iter()
        .map(|part| {
            let (key, values) = key_and_values(part);
            // `steps 600→900` beside a fork's mark read as a range of
            // steps (walkthrough M): that key keeps its section.
            let key = match key.rsplit('.').next() {
                Some("steps") | None => key,
                Some(last) => last,
            };
            match values {
                "" => key.to_string(),
                values => format!("{key} {values}"),
            }
        })
        .collect();
    for forms in [parts, &short[..]] {
        // Each column as full as it goes, in order; whole edits only.
        let mut split: Vec<String> = Vec::new();
        let mut column: Vec<&str> = Vec::new();
        for part in forms {
            column.push(part);
            if column.len() > 1 && !fits(&column.join(", ")) {
                column.pop();
                split.push(column.join(", "));
                column = vec![part];
            }
        }
        split.push(column.join(", "));
        if split.len() <= columns.max(1) && split.iter().all(fits) {
            return split;
        }
    }
    // An edit too long for a column alone (`meta_lr 0.001→0.002` in a short
    // figure): one column each, shortened, where there are enough; the
    // others were hidden behind the first's `…` (walkthrough J).
    if short.len() > 1 && short.len() <= columns {
        return short.iter().map(|p| fitted(p, room, size, m)).collect();
    }
    // One long edit (a resume's `resumed: 2301–2390 retrained`, walkthrough
    // A): broken between words over the columns there is room for, before
    // it is cut.
    let joined = short.join(", ");
    let mut split: Vec<String> = Vec::new();
    for word in joined.split(' ') {
        match split.last_mut() {
            Some(column) if fits(&format!("{column} {word}")) => {
                column.push(' ');
                column.push_str(word);
            }
            _ => split.push(word.to_string()),
        }
    }
    if split.len() > 1 && split.len() <= columns && split.iter().all(fits) {
        return split;
    }
    vec![fitted(&joined, room, size, m)]
}

/// `("aid.iterations", "0→2")` of an edit; `(part, "")` of `restore`.
fn key_and_values(part: &str) -> (&str, &str) {
    part.split_once(' ').unwrap_or((part, ""))
}

/// Adds a mark's edits (`key old→new`, comma-separated, or `restore`) to a
/// label's parts: a key edited again within the run of marks gets its new
/// value appended (`aid.iterations 0→2→1`), not a second entry.
fn add_edits(parts: &mut Vec<String>, label: &str) {
    for edit in label.split(", ") {
        let (key, values) = key_and_values(edit);
        let new = values.rsplit(EDIT_ARROW).next().unwrap_or(values);
        let same_key = parts.iter_mut().find(|p| key_and_values(p).0 == key);
        match same_key {
            Some(part) if !new.is_empty() && !part.ends_with(&format!("{EDIT_ARROW}{new}")) => {
                part.push(EDIT_ARROW);
                part.push_str(new);
            }
            Some(_) => {}
            None => parts.push(edit.to_string()),
        }
    }
}

/// A part's chain one edit at a time (`key 0→2→1` → `key 0→2`, `key
/// 2→1`), for [`add_edits`] to append to another run's chain of the key.
fn edit_steps(part: &str) -> Vec<String> {
    let (key, values) = key_and_values(part);
    let values: Vec<&str> = values.split(EDIT_ARROW).collect();
    if values.len() < 2 {
        return vec![part.to_string()];
    }
    values
        .windows(2)
        .map(|pair| format!("{key} {}{EDIT_ARROW}{}", pair[0], pair[1]))
        .collect()
}

/// One label of a run of close marks, left of its first line; marks drawn
/// apart also get their steps' span (`@186–250`) right of it, over the
/// lines it covers: a walkthrough's `meta_lr, gamma, m…` on the first of
/// three lines read as three changes at its step.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct MarkLabel {
    /// The first mark's x (points).
    px: f64,
    /// One column, or more where one would cut it and there is room left
    /// of it (each further left), or right of it (each further right).
    keys: Vec<String>,
    span: Option<String>,
    /// Its keys drawn right of the line, not left: a line by the left
    /// spine (a fork at step 39 of 400) had its label over the spine and
    /// the tick labels (walkthrough J).
    right: bool,
}

impl MarkLabel {
    /// The baselines of its key columns and of its span, in points.
    fn columns(&self, size: f64) -> (Vec<f64>, Option<f64>) {
        let right = SPAN_OFFSET * size;
        let keys = (0..self.keys.len())
            .map(|i| match self.right {
                true => self.px + right + COLUMN_STEP * i as f64 * size,
                false => self.px - (0.3 + COLUMN_STEP * i as f64) * size,
            })
            .collect();
        let beside = if self.right { COLUMN_STEP * size } else { 0.0 };
        (keys, self.span.as_ref().map(|_| self.px + right + beside))
    }
}

impl Chart {
    /// The marks' labels, one per run of marks closer than a label's height
    /// (theirs joined), shortened to fit; at most [`MAX_MARK_LABELS`].
    pub(super) fn mark_labels(&self, frame: &Frame, t: &Theme, m: &Metrics) -> Vec<MarkLabel> {
        let size = mark_label_size(t);
        let mut in_view: Vec<&Mark> = self
            .marks
            .iter()
            .filter(|mark| frame.x.contains(mark.x))
            .collect();
        in_view.sort_by(|a, b| a.x.total_cmp(&b.x));
        // (the first and last mark's x in points and step, the edits)
        type Run = ((f64, f64), (f64, f64), Vec<String>);
        let mut runs: Vec<Run> = Vec::new();
        for mark in in_view {
            let (px, label) = (frame.px(mark.x), mark.label.as_str());
            match runs.last_mut() {
                // Close to the last line, or to a span's column, or to a
                // label drawn right of its line by the left spine (review:
                // the next label, left of its line, fell on it).
                Some(((first, last), steps, parts))
                    if px - *last < 1.3 * size
                        || (*last - *first >= APART * size && px - *first < 2.2 * size)
                        || (label_right_of(*first, frame.area.x, size)
                            && px - *first < 2.4 * size) =>
                {
                    add_edits(parts, label);
                    *last = px;
                    steps.1 = mark.x;
                }
                _ => {
                    let mut parts = Vec::new();
                    add_edits(&mut parts, label);
                    runs.push(((px, px), (mark.x, mark.x), parts));
                }
            }
        }
        while runs.len() > MAX_MARK_LABELS {
            // The two neighbours with the least room between them.
            let at = (1..runs.len())
                .min_by(|&a, &b| {
                    let gap = |i: usize| runs[i].0 .0 - runs[i - 1].0 .1;
                    gap(a).total_cmp(&gap(b))
                })
                .expect("more than one run");
            let ((_, last), (_, to), parts) = runs.remove(at);
            let (lines, steps, into) = &mut runs[at - 1];
            lines.1 = last;
            steps.1 = to;
            for part in parts {
                for edit in edit_steps(&part) {
                    add_edits(into, &edit);
                }
            }
        }
        let room = MARK_LABEL_HEIGHT * frame.area.h;
        // Where the next label's glyphs start (its first column left of its
        // line), or the axes' right edge.
        let next_firsts: Vec<f64> = runs
            .iter()
            .skip(1)
            .map(|((first, _), _, _)| first - (0.3 + 0.8 + 0.3) * size)
            .chain([frame.area.x + frame.area.w])
            .collect();
        let column_count = |free: f64| {
            (1 + (free / (COLUMN_STEP * size)).floor().max(0.0) as usize).min(MAX_COLUMNS)
        };
        let cut = |keys: &[String]| keys.iter().any(|k| k.ends_with('…'));
        // Right of the previous label's last column (its span's, if any).
        let mut right_of_previous = frame.area.x;
        runs.into_iter()
            .zip(next_firsts)
            .map(|(((first, last), steps, parts), next)| {
                let apart = last - first >= APART * size;
                // The first column's glyphs reach this far left, a second's
                // further.
                let by_spine = label_right_of(first, frame.area.x, size);
                // Columns whose glyphs stay right of the previous label.
                let free = first - (0.3 + 0.8) * size - (right_of_previous + 0.3 * size);
                let columns = match by_spine {
                    true => 1,
                    false => column_count(free),
                };
                let mut keys = keys_label(&parts, room, size, columns, m);
                let mut right = by_spine;
                // Cut on the left with more room right of its line, before
                // the next label (walkthrough H's `iterations 0→1, g…` at
                // step 111 of 1500): its columns go right, one beside the
                // other. Not beside a span, which is drawn there.
                // Measured from the end of the first right column's glyphs.
                let free_right = next - (first + (SPAN_OFFSET + 0.2) * size);
                if !apart && cut(&keys) && column_count(free_right) > columns.max(1) {
                    let beside = keys_label(&parts, room, size, column_count(free_right), m);
                    if !cut(&beside) || by_spine {
                        (keys, right) = (beside, true);
                    }
                }
                // Its span, and a label right of its line, are drawn right
                // of its first line.
                let columns_right = usize::from(apart) + if right { keys.len() } else { 0 };
                right_of_previous = match columns_right {
                    0 => last,
                    n => {
                        last.max(first + (SPAN_OFFSET + 0.2 + COLUMN_STEP * (n - 1) as f64) * size)
                    }
                };
                MarkLabel {
                    px: first,
                    keys,
                    span: apart
                        .then(|| format!("@{}–{}", scale::step(steps.0), scale::step(steps.1))),
                    right,
                }
            })
            .collect()
    }

    /// Points along the labels' columns at the top of the axes, as far
    /// down as each column's text reaches, for the legend to keep clear of
    /// (a short label such as "fork" keeps only the top clear).
    pub(super) fn mark_label_points(
        &self,
        frame: &Frame,
        t: &Theme,
        m: &Metrics,
    ) -> Vec<(f64, f64)> {
        let area = frame.area;
        let size = mark_label_size(t);
        self.mark_labels(frame, t, m)
            .into_iter()
            .flat_map(|label| {
                let (keys, span) = label.columns(size);
                let texts: Vec<String> = label.keys.iter().cloned().chain(label.span).collect();
                keys.into_iter().chain(span).zip(texts).collect::<Vec<_>>()
            })
            .flat_map(|(px, text)| {
                // Its length down from the top, a little beyond; across,
                // from its baseline to its glyphs' tops left of it (walkthrough
                // A's legend box covered "restore" while clearing its baseline).
                let reach = (m.width(&text, size) + size).min(MARK_LABEL_HEIGHT * area.h);
                (0..=8).flat_map(move |i| {
                    let y = area.y + reach * f64::from(i) / 8.0;
                    [(px, y), (px - 0.8 * size, y)]
                })
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
        // Rotated text reads upwards, its glyphs left of its baseline.
        for label in self.mark_labels(frame, t, m) {
            let (key_columns, span_column) = label.columns(size);
            let keys = key_columns.into_iter().zip(label.keys);
            let span = span_column.zip(label.span);
            for (x, text) in keys.chain(span) {
                svg.text_on_data(x, area.y + 0.4 * size, &text, size, Anchor::End, -90.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walkthrough A's `resumed: 2301–239…` was cut with room for a second
    /// column beside it: a long edit breaks between words first.
    #[test]
    fn a_long_edit_breaks_between_words_before_it_is_cut() {
        let m = Metrics::get();
        let size = 7.0;
        let label = "resumed: 2301–2390 retrained".to_string();
        let room = m.width("resumed: 2301–2390", size) + 0.5;
        let parts = std::slice::from_ref(&label);
        assert_eq!(
            keys_label(parts, room, size, 2, m),
            ["resumed: 2301–2390", "retrained"]
        );
        let one = keys_label(parts, room, size, 1, m);
        assert!(one.len() == 1 && one[0].ends_with('…'), "{one:?}");
    }
}
