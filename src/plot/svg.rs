//! A tiny deterministic SVG writer: points as user units (72 per inch), numbers
//! with at most two decimals, fixed attribute order, no timestamps or random
//! ids — the same figure always serialises to the same bytes.

use super::font;
// Writing into a String cannot fail: `let _ = write!(…)` throughout.
use std::f64::consts::{PI, TAU};
use std::fmt::Write;

/// A colour as `#RRGGBB`.
pub type Color = &'static str;

/// How a path is stroked.
#[derive(Debug, Clone, PartialEq)]
pub struct Stroke {
    pub color: Color,
    /// Line width in points.
    pub width: f64,
    /// Dash lengths in points (on, off, on, off, ...); empty for solid.
    pub dash: Vec<f64>,
    pub opacity: f64,
}

impl Stroke {
    pub fn solid(color: Color, width: f64) -> Self {
        Self {
            color,
            width,
            dash: Vec::new(),
            opacity: 1.0,
        }
    }
}

/// Horizontal text alignment relative to the anchor point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    Start,
    Middle,
    End,
}

/// Marker shapes, told apart without colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Diamond,
    TriangleDown,
    Pentagon,
    Hexagon,
    Star,
}

/// The corners of a regular `n`-gon of circumradius `r` centred on `(x, y)`,
/// the first at `start` radians from straight up (clockwise, y down); with
/// `inner`, a star alternating between `r` and `inner`.
fn corners(x: f64, y: f64, n: usize, r: f64, start: f64, inner: Option<f64>) -> Vec<(f64, f64)> {
    let points = if inner.is_some() { 2 * n } else { n };
    (0..points)
        .map(|i| {
            let angle = start + TAU * i as f64 / points as f64;
            let radius = match inner {
                Some(inner) if i % 2 == 1 => inner,
                _ => r,
            };
            (x + radius * angle.sin(), y - radius * angle.cos())
        })
        .collect()
}

/// Formats a coordinate: two decimals at most, no trailing zeros, no `-0`.
pub fn num(v: f64) -> String {
    crate::numfmt::fixed(v, 2)
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

fn stroke_attrs(s: &Stroke) -> String {
    let mut a = format!(
        r#"fill="none" stroke="{}" stroke-width="{}""#,
        s.color,
        num(s.width)
    );
    if !s.dash.is_empty() {
        let dash: Vec<String> = s.dash.iter().map(|d| num(*d)).collect();
        let _ = write!(
            a,
            r#" stroke-dasharray="{}" stroke-linecap="butt""#,
            dash.join(" ")
        );
    } else {
        a.push_str(r#" stroke-linecap="round""#);
    }
    a.push_str(r#" stroke-linejoin="round""#);
    if s.opacity < 1.0 {
        let _ = write!(a, r#" stroke-opacity="{}""#, num(s.opacity));
    }
    a
}

/// An SVG document being written, `width` x `height` points.
pub struct Svg {
    buf: String,
}

impl Svg {
    /// Starts a document of the given size in inches; user units are points.
    pub fn new(width_in: f64, height_in: f64) -> Self {
        let (w, h) = (width_in * 72.0, height_in * 72.0);
        let mut buf = String::new();
        buf.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            buf,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{}in" height="{}in" viewBox="0 0 {} {}" font-family="{}">"#,
            num(width_in),
            num(height_in),
            num(w),
            num(h),
            font::FAMILY
        );
        let _ = writeln!(
            buf,
            r##"<rect x="0" y="0" width="{}" height="{}" fill="#FFFFFF"/>"##,
            num(w),
            num(h)
        );
        Self { buf }
    }

    /// Declares a rectangular clip region named `id`.
    pub fn clip_rect(&mut self, id: &str, x: f64, y: f64, w: f64, h: f64) {
        let _ = writeln!(
            self.buf,
            r#"<clipPath id="{id}"><rect x="{}" y="{}" width="{}" height="{}"/></clipPath>"#,
            num(x),
            num(y),
            num(w),
            num(h)
        );
    }

    /// Opens a group clipped to a region declared with [`Svg::clip_rect`].
    pub fn begin_clipped(&mut self, id: &str) {
        let _ = writeln!(self.buf, r#"<g clip-path="url(#{id})">"#);
    }

    pub fn end_group(&mut self) {
        self.buf.push_str("</g>\n");
    }

    /// A rectangle `(x, y, width, height)`, filled (`"none"` for no fill)
    /// and optionally outlined.
    pub fn rect(
        &mut self,
        (x, y, w, h): (f64, f64, f64, f64),
        fill: Color,
        outline: Option<&Stroke>,
    ) {
        let _ = write!(
            self.buf,
            r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{fill}""#,
            num(x),
            num(y),
            num(w),
            num(h)
        );
        if let Some(s) = outline {
            let _ = write!(
                self.buf,
                r#" stroke="{}" stroke-width="{}""#,
                s.color,
                num(s.width)
            );
        }
        self.buf.push_str("/>\n");
    }

    /// A white, translucent, outlined rectangle with rounded corners of
    /// radius `r` (legend frames).
    pub fn rounded_rect(
        &mut self,
        (x, y, w, h): (f64, f64, f64, f64),
        r: f64,
        fill_opacity: f64,
        outline: &Stroke,
    ) {
        let _ = writeln!(
            self.buf,
            r##"<rect x="{}" y="{}" width="{}" height="{}" rx="{}" fill="#FFFFFF" fill-opacity="{}" stroke="{}" stroke-width="{}"/>"##,
            num(x),
            num(y),
            num(w),
            num(h),
            num(r),
            num(fill_opacity),
            outline.color,
            num(outline.width)
        );
    }

    /// `<path d="M x y L x y …` through `points`, the element left open
    /// for its attributes.
    fn path_start(&mut self, points: &[(f64, f64)]) {
        self.buf.push_str("<path d=\"");
        for (i, (x, y)) in points.iter().enumerate() {
            let cmd = if i == 0 { 'M' } else { 'L' };
            if i > 0 {
                self.buf.push(' ');
            }
            let _ = write!(self.buf, "{cmd}{} {}", num(*x), num(*y));
        }
    }

    /// An open polyline through `points`; nothing for fewer than two.
    pub fn polyline(&mut self, points: &[(f64, f64)], stroke: &Stroke) {
        if points.len() < 2 {
            return;
        }
        self.path_start(points);
        let _ = writeln!(self.buf, "\" {}/>", stroke_attrs(stroke));
    }

    /// A closed, filled, unstroked polygon; nothing for fewer than three points.
    pub fn polygon(&mut self, points: &[(f64, f64)], fill: Color, opacity: f64) {
        if points.len() < 3 {
            return;
        }
        self.path_start(points);
        let _ = writeln!(
            self.buf,
            "Z\" fill=\"{fill}\" fill-opacity=\"{}\" stroke=\"none\"/>",
            num(opacity)
        );
    }

    /// A straight segment.
    pub fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &Stroke) {
        self.polyline(&[(x1, y1), (x2, y2)], stroke);
    }

    /// A filled marker of `size` points (its width) centred on `(x, y)`.
    pub fn marker(&mut self, shape: Shape, x: f64, y: f64, size: f64, color: Color) {
        let r = size / 2.0;
        let edge = r * 0.35;
        let (stroke, sw) = ("#FFFFFF", num(edge.max(0.3)));
        let _ = match shape {
            Shape::Circle => writeln!(
                self.buf,
                r#"<circle cx="{}" cy="{}" r="{}" fill="{color}" stroke="{stroke}" stroke-width="{sw}"/>"#,
                num(x),
                num(y),
                num(r)
            ),
            Shape::Square => {
                let s = r * 0.9;
                writeln!(
                    self.buf,
                    r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{color}" stroke="{stroke}" stroke-width="{sw}"/>"#,
                    num(x - s),
                    num(y - s),
                    num(2.0 * s),
                    num(2.0 * s)
                )
            }
            Shape::Triangle => writeln!(
                self.buf,
                r#"<path d="M{} {} L{} {} L{} {} Z" fill="{color}" stroke="{stroke}" stroke-width="{sw}" stroke-linejoin="round"/>"#,
                num(x),
                num(y - r * 1.1),
                num(x + r),
                num(y + r * 0.7),
                num(x - r),
                num(y + r * 0.7)
            ),
            Shape::Diamond => writeln!(
                self.buf,
                r#"<path d="M{} {} L{} {} L{} {} L{} {} Z" fill="{color}" stroke="{stroke}" stroke-width="{sw}" stroke-linejoin="round"/>"#,
                num(x),
                num(y - r * 1.15),
                num(x + r * 0.85),
                num(y),
                num(x),
                num(y + r * 1.15),
                num(x - r * 0.85),
                num(y)
            ),
            Shape::TriangleDown => {
                self.outlined(&corners(x, y, 3, r * 1.1, PI, None), color, stroke, &sw)
            }
            Shape::Pentagon => {
                self.outlined(&corners(x, y, 5, r * 1.05, 0.0, None), color, stroke, &sw)
            }
            Shape::Hexagon => self.outlined(&corners(x, y, 6, r, 0.0, None), color, stroke, &sw),
            Shape::Star => self.outlined(
                &corners(x, y, 5, r * 1.3, 0.0, Some(r * 0.6)),
                color,
                stroke,
                &sw,
            ),
        };
    }

    /// A filled polygon with a round-joined outline, for markers.
    fn outlined(
        &mut self,
        points: &[(f64, f64)],
        color: Color,
        stroke: &str,
        width: &str,
    ) -> std::fmt::Result {
        self.path_start(points);
        writeln!(
            self.buf,
            "Z\" fill=\"{color}\" stroke=\"{stroke}\" stroke-width=\"{width}\" stroke-linejoin=\"round\"/>"
        )
    }

    /// Text with its baseline at `y`, rotated by `rotate` degrees about the anchor.
    pub fn text(&mut self, x: f64, y: f64, text: &str, size: f64, anchor: Anchor, rotate: f64) {
        self.text_with(x, y, text, size, (anchor, rotate), false);
    }

    /// [`Svg::text`] on a white halo, for text drawn over curves (a
    /// mark's label crossing a loss curve did not read).
    pub fn text_on_data(
        &mut self,
        x: f64,
        y: f64,
        text: &str,
        size: f64,
        anchor: Anchor,
        rotate: f64,
    ) {
        self.text_with(x, y, text, size, (anchor, rotate), true);
    }

    fn text_with(
        &mut self,
        x: f64,
        y: f64,
        text: &str,
        size: f64,
        (anchor, rotate): (Anchor, f64),
        halo: bool,
    ) {
        let anchor = match anchor {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        };
        let _ = write!(
            self.buf,
            r##"<text x="{}" y="{}" font-size="{}" text-anchor="{anchor}" fill="#000000""##,
            num(x),
            num(y),
            num(size)
        );
        if halo {
            let _ = write!(
                self.buf,
                r##" stroke="#FFFFFF" stroke-width="{}" stroke-opacity="0.85" stroke-linejoin="round" paint-order="stroke""##,
                num(size * 0.3)
            );
        }
        if rotate != 0.0 {
            let _ = write!(
                self.buf,
                r#" transform="rotate({} {} {})""#,
                num(rotate),
                num(x),
                num(y)
            );
        }
        let _ = writeln!(self.buf, ">{}</text>", escape(text));
    }

    /// Closes the document and returns its text.
    pub fn finish(mut self) -> String {
        self.buf.push_str("</svg>\n");
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short_and_stable() {
        assert_eq!(num(1.0), "1");
        assert_eq!(num(1.5), "1.5");
        assert_eq!(num(1.239), "1.24");
        assert_eq!(num(-0.001), "0");
        assert_eq!(num(250.0), "250");
    }

    #[test]
    fn text_is_escaped() {
        let mut svg = Svg::new(1.0, 1.0);
        svg.text(1.0, 2.0, "a<b & \"c\"", 8.0, Anchor::Start, 0.0);
        let s = svg.finish();
        assert!(s.contains("a&lt;b &amp; &quot;c&quot;"), "{s}");
    }
}
