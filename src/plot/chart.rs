//! One set of axes drawn to SVG the way a careful matplotlib script would:
//! all four spines, outward ticks, a faint grid, labelled axes, a legend
//! that avoids the data (see `legend`), and a "tight" layout computed from
//! the embedded font's real glyph widths.

use super::font::Metrics;
use super::legend::{fitted, Legend, Rect};
use super::scale::{self, Kind, Scale, Ticks};
use super::series::extent;
use super::series::{Emphasis, Line};
use super::style::{SeriesLook, Theme};
use super::svg::{Anchor, Stroke, Svg};
pub use marks::Mark;

/// One bar of a categorical bar chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub category: String,
    pub value: f64,
    pub look: SeriesLook,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Lines(Vec<Line>),
    Bars(Vec<Bar>),
}

/// A figure with one set of axes.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub x_label: String,
    pub y_label: String,
    pub y_kind: Kind,
    /// No margins on the x axis (for step axes).
    pub tight_x: bool,
    /// A reference line at y = 0 when it is in view.
    pub zero_line: bool,
    pub body: Body,
    /// Steps where the run changed course (a config edit, a collapse
    /// restore): a dashed vertical line each, labelled while few.
    pub marks: Vec<Mark>,
}

const GRID: &str = "#E6E6E6";
const ZERO: &str = "#8C8C8C";
/// Lines with more points than this get no markers.
const MAX_MARKERS: usize = 150;

impl Line {
    pub fn stroke(&self, t: &Theme) -> Stroke {
        match self.emphasis {
            Emphasis::Faint => Stroke {
                color: self.look.color,
                width: t.line_pt * 0.6,
                dash: Vec::new(),
                opacity: 0.3,
            },
            _ => Stroke {
                color: self.look.color,
                width: t.line_pt,
                dash: self.look.dash.iter().map(|d| d * t.line_pt).collect(),
                opacity: 1.0,
            },
        }
    }

    pub fn has_markers(&self) -> bool {
        match self.emphasis {
            Emphasis::WithMarkers => self.points.len() <= MAX_MARKERS,
            Emphasis::MarkersOnly => true,
            _ => false,
        }
    }

    pub fn marker_size(&self, t: &Theme) -> f64 {
        if self.emphasis == Emphasis::MarkersOnly {
            t.marker_pt * 1.6
        } else {
            t.marker_pt
        }
    }
}

/// The axes' rectangle and data-to-point mapping.
struct Frame {
    area: Rect,
    x: Scale,
    y: Scale,
}

impl Frame {
    fn px(&self, x: f64) -> f64 {
        self.area.x + self.x.frac(x) * self.area.w
    }

    fn py(&self, y: f64) -> f64 {
        self.area.y + (1.0 - self.y.frac(y)) * self.area.h
    }

    fn to_pt(&self, (x, y): (f64, f64)) -> Option<(f64, f64)> {
        let visible = x.is_finite() && y.is_finite() && (self.y.kind == Kind::Linear || y > 0.0);
        visible.then(|| (self.px(x), self.py(y)))
    }
}

/// Everything decided before drawing.
struct Layout {
    frame: Frame,
    x_ticks: Ticks,
    y_ticks: Ticks,
    /// Category labels slanted to fit.
    slanted: bool,
}

/// Spacing around the axes, in points.
struct Spacing {
    pad: f64,
    tick_len: f64,
    tick_pad: f64,
    label_pad: f64,
}

impl Spacing {
    fn of(t: &Theme) -> Self {
        Self {
            pad: 0.6 * t.tick_pt,
            tick_len: 0.5 * t.tick_pt,
            tick_pad: 0.5 * t.tick_pt,
            label_pad: 0.5 * t.tick_pt,
        }
    }
}

impl Chart {
    /// Renders the chart at the theme's size as an SVG document.
    pub fn to_svg(&self, t: &Theme) -> String {
        let m = Metrics::get();
        let lines: &[Line] = match &self.body {
            Body::Lines(lines) => lines,
            Body::Bars(_) => &[],
        };
        let legend = Legend::new(lines, t, m);
        let mut layout = self.layout(t, m, 0.0);
        let mut placement = None;
        if let Some(legend) = &legend {
            let drawn: Vec<(f64, f64)> = lines
                .iter()
                .flat_map(|l| l.points.iter().filter_map(|&p| layout.frame.to_pt(p)))
                .collect();
            // The marks' labels too: the legend must not hide them.
            let labels = self.mark_label_points(&layout.frame, t, m);
            placement = legend.inside(layout.frame.area, &drawn, &labels);
            if placement.is_none() {
                // Above the axes the legend may use the figure's whole width.
                let above = legend.above(t.width_in * 72.0 - 2.0 * t.tick_pt);
                layout = self.layout(t, m, legend.above_height(&above));
                placement = Some(above);
            }
        }

        let mut svg = Svg::new(t.width_in, t.height_in);
        let Layout { frame, .. } = &layout;
        let area = frame.area;
        svg.clip_rect("axes", area.x, area.y, area.w, area.h);
        self.draw_grid(&mut svg, &layout, t);
        svg.begin_clipped("axes");
        if self.zero_line && frame.y.kind == Kind::Linear && frame.y.contains(0.0) {
            let py = frame.py(0.0);
            svg.line(
                area.x,
                py,
                area.x + area.w,
                py,
                &Stroke::solid(ZERO, t.axis_pt),
            );
        }
        match &self.body {
            // Single-point marks (a fork point, the best value) after every
            // path, so no other run's line covers them.
            Body::Lines(lines) => {
                let (marks, paths): (Vec<&Line>, Vec<&Line>) = lines
                    .iter()
                    .partition(|l| l.emphasis == Emphasis::MarkersOnly);
                for line in paths.into_iter().chain(marks) {
                    draw_line(&mut svg, frame, line, t)
                }
            }
            Body::Bars(bars) => draw_bars(&mut svg, frame, bars, t, m),
        }
        self.draw_marks(&mut svg, frame, t, m);
        svg.end_group();
        self.draw_axes(&mut svg, &layout, t, m);
        if let (Some(legend), Some(placement)) = (&legend, &placement) {
            legend.draw(&mut svg, placement, area, t.width_in * 72.0, t, m);
        }
        svg.finish()
    }

    /// Places the axes, leaving `top_extra` points above them (for a legend).
    fn layout(&self, t: &Theme, m: &Metrics, top_extra: f64) -> Layout {
        let (w, h) = (t.width_in * 72.0, t.height_in * 72.0);
        let s = Spacing::of(t);
        let (x_scale, y_scale, categories) = self.scales();
        let label_h = m.ascent(t.label_pt) + m.descent(t.label_pt);

        // Tick choice needs the axes' size only roughly; estimate it.
        let est_w = w - 12.0 * t.tick_pt;
        let est_h = h - 6.0 * t.tick_pt - top_extra;
        let y_ticks = y_ticks_at_least_three(&y_scale, (est_h / (3.5 * t.tick_pt)) as usize);
        let y_tick_w = y_ticks
            .major
            .iter()
            .map(|(_, l)| m.width(l, t.tick_pt))
            .fold(0.0, f64::max);
        let x_ticks = match &categories {
            Some(names) => Ticks {
                major: names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (i as f64, n.clone()))
                    .collect(),
                minor: Vec::new(),
            },
            None => fit_x_ticks(&x_scale, est_w, t.tick_pt, m),
        };
        let slanted = categories.is_some() && crowded(&x_ticks, &x_scale, est_w, t.tick_pt, m);
        let x_tick_h = if slanted {
            let widest = x_ticks
                .major
                .iter()
                .map(|(_, l)| m.width(l, t.tick_pt))
                .fold(0.0, f64::max);
            widest * 0.5 + m.cap_height(t.tick_pt)
        } else {
            m.ascent(t.tick_pt) + m.descent(t.tick_pt) * 0.5
        };

        let left = s.pad + label_h + s.label_pad + y_tick_w + s.tick_pad + s.tick_len;
        // A slanted label ends at its tick and leans left by cos 30° of its
        // width: the first ones may need more room than the y axis leaves
        // (walkthrough E's "mse (primary)" was cut at the figure's edge).
        let lean = |label: &str| m.width(label, t.tick_pt) * 30f64.to_radians().cos();
        let left = match slanted {
            true => (0..2).fold(left, |left, _| {
                let axes_w = w - left - s.pad;
                x_ticks
                    .major
                    .iter()
                    .map(|(v, l)| s.pad + lean(l) - x_scale.frac(*v) * axes_w)
                    .fold(left, f64::max)
            }),
            false => left,
        };
        let bottom = s.pad + label_h + s.label_pad + x_tick_h + s.tick_pad + s.tick_len;
        let top = s.pad + m.cap_height(t.tick_pt) * 0.5 + top_extra;
        let overhang = x_ticks
            .major
            .last()
            .filter(|(v, _)| !slanted && x_scale.frac(*v) > 0.9)
            .map_or(0.0, |(_, l)| m.width(l, t.tick_pt) / 2.0);
        let area = Rect {
            x: left,
            y: top,
            w: w - left - s.pad - overhang,
            h: h - top - bottom,
        };
        Layout {
            frame: Frame {
                area,
                x: x_scale,
                y: y_scale,
            },
            x_ticks,
            y_ticks,
            slanted,
        }
    }

    fn draw_grid(&self, svg: &mut Svg, layout: &Layout, t: &Theme) {
        let Layout {
            frame,
            x_ticks,
            y_ticks,
            ..
        } = layout;
        let a = frame.area;
        let grid = Stroke::solid(GRID, t.axis_pt * 0.8);
        if matches!(self.body, Body::Lines(_)) {
            for (v, _) in &x_ticks.major {
                svg.line(frame.px(*v), a.y, frame.px(*v), a.y + a.h, &grid);
            }
        }
        for (v, _) in &y_ticks.major {
            svg.line(a.x, frame.py(*v), a.x + a.w, frame.py(*v), &grid);
        }
    }

    /// Spines, ticks, tick labels and axis labels.
    fn draw_axes(&self, svg: &mut Svg, layout: &Layout, t: &Theme, m: &Metrics) {
        let Layout {
            frame,
            x_ticks,
            y_ticks,
            slanted,
        } = layout;
        let (a, s) = (frame.area, Spacing::of(t));
        let spine = Stroke::solid("#000000", t.axis_pt);
        svg.rect((a.x, a.y, a.w, a.h), "none", Some(&spine));
        let minor = Stroke {
            width: t.axis_pt * 0.75,
            ..spine.clone()
        };
        let base = a.y + a.h;
        for (v, label) in &x_ticks.major {
            let px = frame.px(*v);
            svg.line(px, base, px, base + s.tick_len, &spine);
            let ty = base + s.tick_len + s.tick_pad;
            if *slanted {
                svg.text(
                    px,
                    ty + m.cap_height(t.tick_pt),
                    label,
                    t.tick_pt,
                    Anchor::End,
                    -30.0,
                );
            } else {
                svg.text(
                    px,
                    ty + m.ascent(t.tick_pt) * 0.95,
                    label,
                    t.tick_pt,
                    Anchor::Middle,
                    0.0,
                );
            }
        }
        for v in &x_ticks.minor {
            svg.line(
                frame.px(*v),
                base,
                frame.px(*v),
                base + s.tick_len * 0.6,
                &minor,
            );
        }
        for (v, label) in &y_ticks.major {
            let py = frame.py(*v);
            svg.line(a.x - s.tick_len, py, a.x, py, &spine);
            let baseline = py + m.cap_height(t.tick_pt) / 2.0;
            svg.text(
                a.x - s.tick_len - s.tick_pad,
                baseline,
                label,
                t.tick_pt,
                Anchor::End,
                0.0,
            );
        }
        for v in &y_ticks.minor {
            svg.line(
                a.x - s.tick_len * 0.6,
                frame.py(*v),
                a.x,
                frame.py(*v),
                &minor,
            );
        }
        let h = t.height_in * 72.0;
        // Centred under the axes, but inside the figure: wide y tick labels
        // push the axes right, and a long label ran off the right edge
        // (walkthrough O's transforms figure read "(others fixed"). One
        // wider than the figure is set smaller, then shortened with `…`.
        let width = t.width_in * 72.0;
        let (label, pt) = fitted_label(&self.x_label, width - 2.0 * s.pad, t.label_pt, m);
        let half = m.width(&label, pt) / 2.0;
        let x_mid = (a.x + a.w / 2.0)
            .min(width - s.pad - half)
            .max(s.pad + half);
        svg.text(
            x_mid,
            h - s.pad - m.descent(pt),
            &label,
            pt,
            Anchor::Middle,
            0.0,
        );
        // Centred on the axes; a label longer than they are tall (a legend
        // above took their height) starts at their top and runs down into
        // the free corner below, not up into the legend. One longer than
        // the figure is tall (slides are short) is set smaller, down to
        // three quarters, and then shortened with `…`.
        let (label, pt) = fitted_label(&self.y_label, h - 2.0 * s.pad, t.label_pt, m);
        let long = m.width(&label, pt);
        let y_mid = if long > a.h {
            (a.y + long / 2.0).min(h - s.pad - long / 2.0)
        } else {
            a.y + a.h / 2.0
        };
        svg.text(
            s.pad + m.ascent(pt),
            y_mid,
            &label,
            pt,
            Anchor::Middle,
            -90.0,
        );
    }

    /// The axis scales, plus category names for bar charts.
    fn scales(&self) -> (Scale, Scale, Option<Vec<String>>) {
        match &self.body {
            Body::Bars(bars) => {
                let n = bars.len().max(1) as f64;
                let x = Scale::exact(Kind::Linear, -0.6, n - 0.4);
                let (lo, hi) = extent(bars.iter().map(|b| b.value)).unwrap_or((0.0, 1.0));
                let (lo, hi) = (lo.min(0.0), hi.max(0.0));
                let fit = Scale::fit(Kind::Linear, lo, hi);
                // Bars stand on zero; leave room beyond their ends for value labels.
                let room = (fit.hi - fit.lo) * 0.08;
                let y_lo = if lo < 0.0 { fit.lo - room } else { 0.0 };
                let y_hi = if hi > 0.0 { fit.hi + room } else { 0.0 };
                (
                    x,
                    Scale::exact(Kind::Linear, y_lo, y_hi),
                    Some(bars.iter().map(|b| b.category.clone()).collect()),
                )
            }
            Body::Lines(lines) => {
                let log = self.y_kind == Kind::Log
                    && lines
                        .iter()
                        .flat_map(|l| &l.points)
                        .any(|p| p.1 > 0.0 && p.1.is_finite());
                let y_kind = if log { Kind::Log } else { Kind::Linear };
                let usable =
                    |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite() && (!log || p.1 > 0.0);
                let points = || lines.iter().flat_map(|l| l.points.iter()).filter(usable);
                let (x0, x1) = extent(points().map(|p| p.0)).unwrap_or((0.0, 1.0));
                let (y0, y1) = extent(points().map(|p| p.1)).unwrap_or((0.0, 1.0));
                let x = if self.tight_x && x1 > x0 {
                    Scale::exact(Kind::Linear, x0, x1)
                } else {
                    Scale::fit(Kind::Linear, x0, x1)
                };
                (x, Scale::fit(y_kind, y0, y1), None)
            }
        }
    }
}

/// Ticks for a y axis with room for about `room` labels (3 to 7), and at
/// least three where a denser round step gives them: a short axis (under
/// a tall legend, or on a slide) with two labels is hard to read off.
fn y_ticks_at_least_three(scale: &Scale, room: usize) -> Ticks {
    let mut target = room.clamp(3, 7);
    let mut ticks = scale.ticks(target);
    while ticks.major.len() < 3 && target < 10 {
        target += 1;
        ticks = scale.ticks(target);
    }
    ticks
}

/// As many x ticks as fit without their labels crowding each other.
fn fit_x_ticks(scale: &Scale, axes_w: f64, size: f64, m: &Metrics) -> Ticks {
    let mut target = ((axes_w / (4.0 * size)) as usize).clamp(3, 10);
    loop {
        let ticks = scale.ticks(target);
        if target <= 2 || !crowded(&ticks, scale, axes_w, size, m) {
            return ticks;
        }
        target -= 1;
    }
}

/// Whether neighbouring x tick labels would come closer than one em.
fn crowded(ticks: &Ticks, scale: &Scale, axes_w: f64, size: f64, m: &Metrics) -> bool {
    ticks.major.windows(2).any(|p| {
        let gap = (scale.frac(p[1].0) - scale.frac(p[0].0)) * axes_w;
        gap < (m.width(&p[0].1, size) + m.width(&p[1].1, size)) / 2.0 + size
    })
}

/// Opacity of a band's fill.
const BAND_OPACITY: f64 = 0.2;

/// Draws a line, broken where values are missing (or not positive on a log
/// axis); a band as one filled area over its visible points.
fn draw_line(svg: &mut Svg, frame: &Frame, line: &Line, t: &Theme) {
    if line.emphasis == Emphasis::Band {
        let outline: Vec<(f64, f64)> = line.points.iter().filter_map(|&p| frame.to_pt(p)).collect();
        svg.polygon(&outline, line.look.color, BAND_OPACITY);
        return;
    }
    let stroke = line.stroke(t);
    let with_path = line.emphasis != Emphasis::MarkersOnly;
    let mut run: Vec<(f64, f64)> = Vec::new();
    let mut all = Vec::new();
    for &p in &line.points {
        match frame.to_pt(p) {
            Some(q) => {
                run.push(q);
                all.push(q);
            }
            None if with_path => {
                svg.polyline(&run, &stroke);
                run.clear();
            }
            None => {}
        }
    }
    if with_path {
        svg.polyline(&run, &stroke);
    }
    if line.has_markers() {
        for &(x, y) in &all {
            svg.marker(line.look.shape, x, y, line.marker_size(t), line.look.color);
        }
    }
}

/// The smallest the bars' value labels get, as a fraction of the ticks'.
const SMALLEST_VALUE_LABEL: f64 = 0.6;

/// Bars from zero, outlined, each with its value at its end, in a size
/// whose widest value fits the space between two bars (walkthrough L's
/// twelve bars read "0.2010.1950.103" where three labels ran together).
fn draw_bars(svg: &mut Svg, frame: &Frame, bars: &[Bar], t: &Theme, m: &Metrics) {
    let pitch = frame.area.w / (frame.x.hi - frame.x.lo);
    let width = 0.6 * pitch;
    let zero = frame.py(0.0);
    let widest = bars
        .iter()
        .map(|bar| m.width(&scale::short_padded(bar.value), t.tick_pt))
        .fold(0.0f64, f64::max);
    let size = match widest > 0.9 * pitch {
        true => (t.tick_pt * 0.9 * pitch / widest).max(SMALLEST_VALUE_LABEL * t.tick_pt),
        false => t.tick_pt,
    };
    let edge = Stroke::solid("#000000", t.axis_pt * 0.6);
    for (i, bar) in bars.iter().enumerate() {
        let cx = frame.px(i as f64);
        let end = frame.py(bar.value);
        let body = (cx - width / 2.0, end.min(zero), width, (zero - end).abs());
        svg.rect(body, bar.look.color, Some(&edge));
        let gap = 0.3 * t.tick_pt;
        let baseline = if bar.value >= 0.0 {
            end - gap
        } else {
            end + gap + m.cap_height(size)
        };
        svg.text(
            cx,
            baseline,
            &scale::short_padded(bar.value),
            size,
            Anchor::Middle,
            0.0,
        );
    }
}

mod marks;

/// An axis label in `room` points: at `pt`, or set smaller (down to
/// three quarters of it) where it is longer, then shortened with `…`.
fn fitted_label(text: &str, room: f64, pt: f64, m: &Metrics) -> (String, f64) {
    let natural = m.width(text, pt);
    let pt = if natural > room {
        (pt * room / natural).max(0.75 * pt)
    } else {
        pt
    };
    // Set smaller to exactly `room`, the width may round a hair above.
    (fitted(text, room * (1.0 + 1e-9), pt, m), pt)
}

#[cfg(test)]
mod tests;
