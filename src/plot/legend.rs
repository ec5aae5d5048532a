//! The legend: framed inside the axes at whichever standard spot hides the
//! fewest data points (matplotlib's "best"), or — when every spot would hide
//! data — unframed in rows above the axes, as papers do for crowded plots.

use super::font::Metrics;
use super::series::{Emphasis, Line};
use super::style::Theme;
use super::svg::{Anchor, Stroke, Svg};

const FRAME: &str = "#CCCCCC";
/// Share of the drawn points a legend inside the axes may hide.
const TOLERATED: f64 = 0.002;

/// A rectangle in points, origin top left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rect {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl Rect {
    fn contains(&self, (px, py): (f64, f64)) -> bool {
        px >= self.x && px <= self.x + self.w && py >= self.y && py <= self.y + self.h
    }
}

/// Where the legend goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Placement {
    Inside {
        x: f64,
        y: f64,
    },
    /// Rows of entry indices above the axes.
    Above {
        rows: Vec<Vec<usize>>,
    },
}

/// A legend entry fitted in `room`: a short closing parenthesis (` (n=2)`)
/// is kept after the cut (walkthrough A's legend lost its group size to a
/// long label).
fn fitted_entry(text: &str, room: f64, em: f64, m: &Metrics) -> String {
    let suffix = text
        .rfind(" (")
        .filter(|_| text.ends_with(')') && m.width(text, em) > room)
        .map(|at| &text[at..])
        .filter(|tail| m.width(tail, em) <= room / 3.0);
    match suffix {
        Some(tail) => {
            let head = &text[..text.len() - tail.len()];
            format!("{}{tail}", fitted(head, room - m.width(tail, em), em, m))
        }
        None => fitted(text, room, em, m),
    }
}

/// `text`, or as much of it as fits in `room` points followed by `…`,
/// never cut where a number's magnitude would change (walkthrough R2's
/// mark read `train.steps 1500…` for an edit from 15000): only among the
/// digits after its point (`0.0010000…`).
pub(super) fn fitted(text: &str, room: f64, em: f64, m: &Metrics) -> String {
    if m.width(text, em) <= room {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    (0..chars.len())
        .rev()
        .filter(|&at| !inside_a_number(&chars, at))
        .map(|at| format!("{}…", chars[..at].iter().collect::<String>().trim_end()))
        .find(|cut| m.width(cut, em) <= room)
        .unwrap_or_else(|| "…".to_string())
}

/// Whether a cut before `chars[at]` falls inside a number where what is
/// left reads as another magnitude (`1500|0`, `1|.5`, `1.5|e-3`); among
/// the digits after its point (`0.00|1`) it reads as the number cut short.
fn inside_a_number(chars: &[char], at: usize) -> bool {
    let separator = |c: &char| c.is_whitespace() || ",;:=()[]→–@".contains(*c);
    if at == 0 || at >= chars.len() || separator(&chars[at - 1]) || separator(&chars[at]) {
        return false;
    }
    let start = chars[..at].iter().rposition(separator).map_or(0, |i| i + 1);
    let end = chars[at..]
        .iter()
        .position(separator)
        .map_or(chars.len(), |i| at + i);
    let token: String = chars[start..end].iter().collect();
    let fraction =
        chars[start..at].contains(&'.') && chars[at..end].iter().all(char::is_ascii_digit);
    token.parse::<f64>().is_ok_and(f64::is_finite) && !fraction
}

/// `text` fitted in `room` keeping what tells it from `others` (labels
/// whose shortened forms came out the same): the part after their common
/// beginning stays, and the beginning is cut in the middle (`kind=meltr,
/// meta_lr=0.001→…→0.01@400`). A walkthrough's many-times-edited runs had
/// legends that all read alike once cut at the end.
fn fitted_apart(text: &str, others: &[&str], room: f64, em: f64, m: &Metrics) -> String {
    let chars: Vec<char> = text.chars().collect();
    let common = others
        .iter()
        .map(|o| {
            chars
                .iter()
                .zip(o.chars())
                .take_while(|(a, b)| **a == *b)
                .count()
        })
        .min()
        .unwrap_or(0);
    // The kept tail starts where the setting the texts part in starts (so
    // it reads whole), else at that setting's value, else at its last edit,
    // else where they part.
    let after_last = |separators: &[char]| {
        chars[..common]
            .iter()
            .rposition(|c| separators.contains(c))
            .map_or(0, |at| at + 1)
    };
    let starts = [
        after_last(&[' ', ',']),
        after_last(&[' ', ',', '=']),
        after_last(&[' ', ',', '=', '→']),
        common,
    ];
    for tail_from in starts {
        let tail: String = chars[tail_from..].iter().collect();
        for head_len in (0..tail_from).rev() {
            let head: String = chars[..head_len].iter().collect();
            let cut = format!("{}…{tail}", head.trim_end());
            if m.width(&cut, em) <= room {
                return cut;
            }
        }
    }
    fitted(
        &format!("…{}", chars[common..].iter().collect::<String>()),
        room,
        em,
        m,
    )
}

/// The labelled lines of a chart and their measured sizes.
pub struct Legend<'a> {
    entries: Vec<&'a Line>,
    /// The labels as drawn: shortened with `…` where one would not fit in
    /// the figure's width.
    labels: Vec<String>,
    text_w: Vec<f64>,
    em: f64,
}

impl<'a> Legend<'a> {
    pub fn new(lines: &'a [Line], t: &Theme, m: &Metrics) -> Option<Self> {
        let entries: Vec<&Line> = lines.iter().filter(|l| l.label.is_some()).collect();
        if entries.is_empty() {
            return None;
        }
        let em = t.tick_pt;
        // Room for a label: the figure's width less the margins, the
        // handle and its padding (see `above`).
        let room = t.width_in * 72.0 - 2.0 * em - 2.8 * em;
        let texts: Vec<&str> = entries
            .iter()
            .map(|l| l.label.as_deref().unwrap_or(""))
            .collect();
        let mut labels: Vec<String> = texts.iter().map(|t| fitted_entry(t, room, em, m)).collect();
        // Labels that differ only past the cut are cut in the middle
        // instead. Alike as read: a group size and the punctuation before
        // the `…` do not tell two settings apart (walkthrough M's
        // `meta_lr=0.001,… (n=3)` and `meta_lr=0.001… (n=1)`).
        let read = |label: &str| -> String {
            let body = match label.rfind(" (") {
                Some(at) if label.ends_with(')') => &label[..at],
                _ => label,
            };
            body.trim_end_matches(['…', ',', ';', ' ']).to_string()
        };
        // Only labels that were cut (twins told apart by a session id in
        // parentheses, `baseline (20240101-abc)`, read alike uncut).
        let readings: Vec<Option<String>> = labels
            .iter()
            .zip(&texts)
            .map(|(label, text)| (label != text).then(|| read(label)))
            .collect();
        let cut_alike: Vec<Vec<&str>> = (0..texts.len())
            .map(|i| {
                (0..texts.len())
                    .filter(|&j| {
                        j != i
                            && readings[i].is_some()
                            && readings[j] == readings[i]
                            && texts[j] != texts[i]
                    })
                    .map(|j| texts[j])
                    .collect()
            })
            .collect();
        for (i, others) in cut_alike.iter().enumerate() {
            if !others.is_empty() {
                labels[i] = fitted_apart(texts[i], others, room, em, m);
            }
        }
        let text_w = labels.iter().map(|l| m.width(l, em)).collect();
        Some(Legend {
            entries,
            labels,
            text_w,
            em,
        })
    }

    fn border(&self) -> f64 {
        0.4 * self.em
    }
    fn handle(&self) -> f64 {
        2.0 * self.em
    }
    fn text_pad(&self) -> f64 {
        0.8 * self.em
    }
    fn spacing(&self) -> f64 {
        0.5 * self.em
    }
    fn column_gap(&self) -> f64 {
        1.5 * self.em
    }

    fn entry_w(&self, i: usize) -> f64 {
        self.handle() + self.text_pad() + self.text_w[i]
    }

    /// Size of the framed box.
    fn boxed(&self) -> (f64, f64) {
        let n = self.entries.len() as f64;
        let widest = (0..self.entries.len())
            .map(|i| self.entry_w(i))
            .fold(0.0, f64::max);
        (
            2.0 * self.border() + widest,
            2.0 * self.border() + n * self.em + (n - 1.0) * self.spacing(),
        )
    }

    /// The best spot inside `area`, if it hides (almost) no points of
    /// `drawn` and none of `kept_clear` (the marks' labels: walkthrough T's
    /// legend covered a label, a few points among thousands).
    pub fn inside(
        &self,
        area: Rect,
        drawn: &[(f64, f64)],
        kept_clear: &[(f64, f64)],
    ) -> Option<Placement> {
        let (w, h) = self.boxed();
        let spots = self.spots(area);
        let cost = |&(x, y): &(f64, f64)| {
            drawn
                .iter()
                .filter(|p| Rect { x, y, w, h }.contains(**p))
                .count()
        };
        let clear =
            |&(x, y): &(f64, f64)| !kept_clear.iter().any(|p| Rect { x, y, w, h }.contains(*p));
        let (x, y) = spots.iter().copied().filter(clear).min_by_key(cost)?;
        let fits = w <= area.w && h <= area.h;
        (fits && cost(&(x, y)) as f64 <= TOLERATED * drawn.len() as f64)
            .then_some(Placement::Inside { x, y })
    }

    /// The box's top-left corners inside `area` it may take, in
    /// matplotlib's order of preference for "best".
    fn spots(&self, area: Rect) -> [(f64, f64); 8] {
        let (w, h) = self.boxed();
        let inset = 0.5 * self.em;
        let (l, r) = (area.x + inset, area.x + area.w - inset - w);
        let (tp, b) = (area.y + inset, area.y + area.h - inset - h);
        let (cx, cy) = (area.x + (area.w - w) / 2.0, area.y + (area.h - h) / 2.0);
        [
            (r, tp),
            (l, tp),
            (l, b),
            (r, b),
            (r, cy),
            (l, cy),
            (cx, b),
            (cx, tp),
        ]
    }

    /// Entries in a grid of as many columns as fit in `width` (at least
    /// one), filled row by row, so that the columns line up.
    pub fn above(&self, width: f64) -> Placement {
        let n = self.entries.len();
        let grid = |columns: usize| -> Vec<Vec<usize>> {
            (0..n)
                .collect::<Vec<_>>()
                .chunks(columns)
                .map(<[usize]>::to_vec)
                .collect()
        };
        let columns = (1..=n)
            .rev()
            .find(|&c| self.grid_width(&grid(c)) <= width)
            .unwrap_or(1);
        Placement::Above {
            rows: grid(columns),
        }
    }

    /// Each grid column's width: its widest entry.
    fn column_widths(&self, rows: &[Vec<usize>]) -> Vec<f64> {
        let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
        (0..columns)
            .map(|c| {
                rows.iter()
                    .filter_map(|row| row.get(c))
                    .map(|&i| self.entry_w(i))
                    .fold(0.0, f64::max)
            })
            .collect()
    }

    fn grid_width(&self, rows: &[Vec<usize>]) -> f64 {
        let widths = self.column_widths(rows);
        widths.iter().sum::<f64>() + self.column_gap() * widths.len().saturating_sub(1) as f64
    }

    /// Height a placement above the axes takes, including its gap.
    pub fn above_height(&self, placement: &Placement) -> f64 {
        match placement {
            Placement::Above { rows } => {
                let n = rows.len() as f64;
                n * self.em + (n - 1.0) * self.spacing() + self.em * 0.6
            }
            Placement::Inside { .. } => 0.0,
        }
    }

    /// Draws the legend; `figure_w` bounds a grid above the axes, which is
    /// centred over them where it fits and kept inside the figure otherwise.
    pub fn draw(
        &self,
        svg: &mut Svg,
        placement: &Placement,
        area: Rect,
        figure_w: f64,
        t: &Theme,
        m: &Metrics,
    ) {
        match placement {
            Placement::Inside { x, y } => {
                let (w, h) = self.boxed();
                svg.rounded_rect(
                    (*x, *y, w, h),
                    0.2 * self.em,
                    0.85,
                    &Stroke::solid(FRAME, t.axis_pt * 0.8),
                );
                for i in 0..self.entries.len() {
                    let mid =
                        y + self.border() + i as f64 * (self.em + self.spacing()) + self.em / 2.0;
                    self.draw_entry(svg, i, x + self.border(), mid, t, m);
                }
            }
            Placement::Above { rows } => {
                let top = area.y - self.above_height(placement);
                let widths = self.column_widths(rows);
                let grid_w = self.grid_width(rows);
                let centred = area.x + (area.w - grid_w) / 2.0;
                let left = centred.min(figure_w - self.em - grid_w).max(self.em);
                for (r, row) in rows.iter().enumerate() {
                    let mid = top + r as f64 * (self.em + self.spacing()) + self.em / 2.0;
                    let mut x = left;
                    for (&i, w) in row.iter().zip(&widths) {
                        self.draw_entry(svg, i, x, mid, t, m);
                        x += w + self.column_gap();
                    }
                }
            }
        }
    }

    /// Handle (line sample and/or marker) then label, starting at `x`.
    fn draw_entry(&self, svg: &mut Svg, i: usize, x: f64, mid: f64, t: &Theme, m: &Metrics) {
        let line = self.entries[i];
        let (h0, h1) = (x, x + self.handle());
        if line.emphasis != Emphasis::MarkersOnly {
            svg.line(h0, mid, h1, mid, &line.stroke(t));
        }
        if line.has_markers() {
            svg.marker(
                line.look.shape,
                (h0 + h1) / 2.0,
                mid,
                line.marker_size(t),
                line.look.color,
            );
        }
        let label = &self.labels[i];
        svg.text(
            h1 + self.text_pad(),
            mid + m.cap_height(self.em) / 2.0,
            label,
            self.em,
            Anchor::Start,
            0.0,
        );
    }
}

#[cfg(test)]
mod tests;
