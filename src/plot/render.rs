//! The SVG is the one source of truth; PNG and PDF are made from it: parsed
//! once by usvg against a font database holding only the embedded font, then
//! rasterised by resvg or converted by svg2pdf (text kept as real,
//! selectable text in that same font).

use super::font;
use super::style::Theme;
use anyhow::{anyhow, Context, Result};
use resvg::{tiny_skia, usvg};

/// Parses an SVG we wrote. User units are points, so 72 "dpi" maps them 1:1.
fn parse(svg: &str) -> Result<usvg::Tree> {
    let options = usvg::Options {
        dpi: 72.0,
        font_family: font::FAMILY.to_string(),
        fontdb: font::database(),
        ..usvg::Options::default()
    };
    usvg::Tree::from_str(svg, &options).context("internal error: the figure's SVG does not parse")
}

/// Rasterises at the theme's DPI; the PNG records that DPI (pHYs) so it
/// lands at the right physical size in a document.
pub fn png(svg: &str, theme: &Theme) -> Result<Vec<u8>> {
    let tree = parse(svg)?;
    let (w, h) = theme.pixels();
    let mut pixmap =
        tiny_skia::Pixmap::new(w, h).ok_or_else(|| anyhow!("cannot allocate a {w}x{h} image"))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    let sx = w as f32 / tree.size().width();
    let sy = h as f32 / tree.size().height();
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(sx, sy),
        &mut pixmap.as_mut(),
    );

    // Opaque white background: premultiplied RGBA equals straight RGBA; drop alpha.
    let rgb: Vec<u8> = pixmap
        .data()
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let per_metre = (f64::from(theme.dpi) / 0.0254).round() as u32;
        encoder.set_pixel_dims(Some(png::PixelDimensions {
            xppu: per_metre,
            yppu: per_metre,
            unit: png::Unit::Meter,
        }));
        let mut writer = encoder.write_header().context("cannot encode PNG")?;
        writer.write_image_data(&rgb).context("cannot encode PNG")?;
    }
    Ok(out)
}

/// Converts to a one-page PDF of the figure's physical size.
pub fn pdf(svg: &str) -> Result<Vec<u8>> {
    let tree = parse(svg)?;
    let options = svg2pdf::ConversionOptions {
        embed_text: true,
        ..Default::default()
    };
    svg2pdf::to_pdf(&tree, options, svg2pdf::PageOptions { dpi: 72.0 })
        .map_err(|e| anyhow!("cannot convert the figure to PDF: {e}"))
}
