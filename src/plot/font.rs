//! The one font every figure uses: DejaVu Sans (matplotlib's default face),
//! embedded from the `dejavu` crate. The SVG names it explicitly, the PNG and
//! PDF renderers load only these bytes, and layout measures text with the same
//! glyph metrics — so a figure looks the same on any machine, fonts installed
//! or not.

use resvg::usvg::fontdb;
use std::sync::{Arc, OnceLock};

/// The family name written into every SVG `font-family` attribute.
pub const FAMILY: &str = "DejaVu Sans";

/// The embedded TrueType bytes (DejaVu Sans Book, Bitstream Vera licence).
pub fn bytes() -> &'static [u8] {
    dejavu::sans::regular()
}

/// A font database holding only the embedded face, shared by the PNG and PDF
/// paths (no system fonts are ever loaded).
pub fn database() -> Arc<fontdb::Database> {
    static DB: OnceLock<Arc<fontdb::Database>> = OnceLock::new();
    DB.get_or_init(|| {
        let mut db = fontdb::Database::new();
        db.load_font_data(bytes().to_vec());
        db.set_sans_serif_family(FAMILY);
        Arc::new(db)
    })
    .clone()
}

/// Glyph metrics for layout, in points for a given font size in points.
pub struct Metrics {
    face: ttf_parser::Face<'static>,
    per_em: f64,
}

impl Metrics {
    /// The shared metrics of the embedded face.
    pub fn get() -> &'static Metrics {
        static METRICS: OnceLock<Metrics> = OnceLock::new();
        METRICS.get_or_init(|| {
            let face = ttf_parser::Face::parse(bytes(), 0).expect("the embedded font parses");
            let per_em = f64::from(face.units_per_em());
            Metrics { face, per_em }
        })
    }

    /// Advance width of `text` set at `size` points.
    pub fn width(&self, text: &str, size: f64) -> f64 {
        let fallback = self.face.glyph_index('?');
        let units: u32 = text
            .chars()
            .filter_map(|c| self.face.glyph_index(c).or(fallback))
            .map(|g| u32::from(self.face.glyph_hor_advance(g).unwrap_or(0)))
            .sum();
        f64::from(units) * size / self.per_em
    }

    /// Height of capital letters and digits above the baseline.
    pub fn cap_height(&self, size: f64) -> f64 {
        let cap = self.face.capital_height().unwrap_or(1493);
        f64::from(cap) * size / self.per_em
    }

    /// Distance from the baseline to the top of the tallest glyphs.
    pub fn ascent(&self, size: f64) -> f64 {
        f64::from(self.face.ascender()) * size / self.per_em
    }

    /// Distance from the baseline to the bottom of descenders (positive).
    pub fn descent(&self, size: f64) -> f64 {
        -f64::from(self.face.descender()) * size / self.per_em
    }

    /// Whether the face has a glyph for every character of `text`.
    pub fn covers(&self, text: &str) -> bool {
        text.chars()
            .all(|c| c.is_whitespace() || self.face.glyph_index(c).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_the_symbols_the_figures_use() {
        let m = Metrics::get();
        assert!(m.covers("∂M/∂lₖ −10⁻²³⁴⁵⁶⁷⁸⁹⁰¹ × ↑↓ μ·"), "missing glyphs");
        assert!(m.width("step", 10.0) > 10.0);
        assert!(m.cap_height(10.0) > 6.0 && m.cap_height(10.0) < 8.0);
    }
}
