//! Paper-quality figures from a session's metrics log.
//!
//! `export_session` writes the standard figures of one session (loss curves,
//! the primary validation metric, MELTR's effective weights over time, the
//! final weights, the transform curves) into `sessions/<id>/plots/`;
//! `compare` overlays one metric across sessions for an ablation figure.
//!
//! Pipeline: [`figures`] picks what to show, [`chart`] lays it out and writes
//! SVG (through the deterministic writer in [`svg`]), [`render`] turns that
//! same SVG into PNG and PDF. One embedded font ([`font`]) is used for layout,
//! rasterising and PDF text, so the three formats look identical on any
//! machine. Everything is rendered in memory first and written atomically
//! afterwards; on any failure the files of this call are removed.

pub mod bands;
pub mod chart;
pub mod data;
pub mod figures;
pub mod font;
pub mod labels;
pub mod legend;
pub mod loss_axis;
pub mod render;
pub mod scale;
pub mod series;
pub mod style;
pub mod svg;

pub use bands::Band;
pub use loss_axis::LossAxis;
pub use series::Smoothing;
pub use style::{slots_by_combiner, Style, Theme};

use crate::session::atomic_write;
use crate::session::SessionDir;
use anyhow::{bail, Context, Result};
use data::SessionData;
use figures::Prep;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// An output file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    Svg,
    Png,
    Pdf,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Svg, Format::Png, Format::Pdf];

    pub fn extension(self) -> &'static str {
        match self {
            Format::Svg => "svg",
            Format::Png => "png",
            Format::Pdf => "pdf",
        }
    }

    /// The format a file name asks for, by its extension.
    pub fn from_path(path: &Path) -> Result<Format> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        ext.parse().map_err(|_| {
            anyhow::anyhow!(
                "cannot tell the format of {}: use a .svg, .png or .pdf file name",
                path.display()
            )
        })
    }

    /// Parses a comma-separated list such as `svg,png,pdf` (duplicates dropped).
    pub fn parse_list(list: &str) -> Result<Vec<Format>, String> {
        let mut out: Vec<Format> = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let f = item.parse()?;
            if !out.contains(&f) {
                out.push(f);
            }
        }
        if out.is_empty() {
            return Err("no format given (expected e.g. svg,png,pdf)".into());
        }
        Ok(out)
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "svg" => Ok(Format::Svg),
            "png" => Ok(Format::Png),
            "pdf" => Ok(Format::Pdf),
            other => Err(format!(
                "unknown format '{other}' (expected svg, png or pdf)"
            )),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// Default EMA smoothing weight (TensorBoard's convention: 0 = none), the
/// most [`Smoothing::Auto`] gives.
pub const DEFAULT_EMA: f64 = 0.9;

/// What `export_session` writes, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportOptions {
    pub formats: Vec<Format>,
    /// Defaults to `<session>/plots`.
    pub out_dir: Option<PathBuf>,
    pub style: Style,
    /// The loss figure's y axis.
    pub loss_axis: LossAxis,
    /// EMA smoothing of the loss and weight curves; the raw curve is drawn
    /// faintly behind.
    pub ema: Smoothing,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            formats: Format::ALL.to_vec(),
            out_dir: None,
            style: Style::Paper,
            loss_axis: LossAxis::Auto,
            ema: Smoothing::Auto,
        }
    }
}

/// What an export wrote, and which figures had no data.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Exported {
    pub files: Vec<PathBuf>,
    /// Files of `files` that were there before, in a folder given as
    /// `out_dir` (in the session's own `plots/` a new export replaces the
    /// old one as a matter of course).
    pub replaced: Vec<PathBuf>,
    /// One line per figure left out, saying why (e.g. no eval lines yet),
    /// and hints on figures drawn (losses decades apart).
    pub skipped: Vec<String>,
}

/// A file's bytes, ready to be written.
struct Output {
    path: PathBuf,
    bytes: Vec<u8>,
}

fn prep(theme: &Theme, smoothing: Smoothing) -> Prep {
    Prep {
        smoothing,
        columns: theme.pixels().0 as usize,
    }
}

fn encode(svg: &str, format: Format, theme: &Theme) -> Result<Vec<u8>> {
    Ok(match format {
        Format::Svg => svg.as_bytes().to_vec(),
        Format::Png => render::png(svg, theme)?,
        Format::Pdf => render::pdf(svg)?,
    })
}

/// Writes the standard figures of the session in `session_dir`: files
/// `<figure>.<ext>` in `opts.out_dir` (default `<session_dir>/plots`).
/// Says that a session's figures show a run that has not finished (its
/// final weights and best metric read as a finished run's otherwise).
fn unfinished_note(session_dir: &Path) -> Option<String> {
    use crate::session::{SessionMeta, Status};
    let meta = SessionMeta::read(session_dir).ok()?;
    if meta.status == Status::Finished {
        return None;
    }
    let steps = meta.steps;
    let state = match meta.status {
        Status::Running | Status::Paused if !meta.runner_alive() => "crashed",
        status => status.as_str(),
    };
    let step = crate::runs::Run::from_meta(session_dir, meta).step;
    Some(format!(
        "the session has not finished ({state} at step {step} of {steps}): the figures show the run so far"
    ))
}

pub fn export_session(session_dir: &Path, opts: &ExportOptions) -> Result<Exported> {
    if opts.formats.is_empty() {
        bail!("no output format given (expected e.g. svg,png,pdf)");
    }
    if let Smoothing::Ema(weight) = opts.ema {
        if !(0.0..1.0).contains(&weight) {
            bail!("EMA smoothing weight must be in [0, 1), got {weight}");
        }
    }
    let data = SessionData::load(session_dir)?;
    let theme = opts.style.theme();
    let (figures, mut skipped) =
        figures::session_figures(&data, prep(&theme, opts.ema), opts.loss_axis);
    skipped.extend(unfinished_note(session_dir));
    let out_dir = opts
        .out_dir
        .clone()
        .unwrap_or_else(|| SessionDir::new(session_dir).plots());
    let mut outputs = Vec::new();
    for figure in &figures {
        let svg = figure.chart.to_svg(&theme);
        for &format in &opts.formats {
            let path = out_dir.join(format!("{}.{}", figure.name, format.extension()));
            outputs.push(Output {
                path,
                bytes: encode(&svg, format, &theme)?,
            });
        }
    }
    let replaced = match opts.out_dir {
        Some(_) => outputs
            .iter()
            .filter(|o| o.path.exists())
            .map(|o| o.path.clone())
            .collect(),
        None => Vec::new(),
    };
    let files = write_all(&out_dir, outputs)?;
    Ok(Exported {
        files,
        replaced,
        skipped,
    })
}

/// Overlays `metric` (default: the first session's primary metric; an eval
/// metric or a training loss) across sessions, legend from session names,
/// written to `out_file` in the format its extension names.
pub fn compare(
    session_dirs: &[PathBuf],
    out_file: &Path,
    metric: Option<&str>,
    style: Style,
) -> Result<PathBuf> {
    let slots: Vec<usize> = (0..session_dirs.len()).collect();
    compare_scaled(session_dirs, (&[], &slots), out_file, metric, style, false)
        .map(|(path, _)| path)
}

/// [`compare`], on a log y axis with `log_scale` (values ≤ 0 left out, and
/// said in the notes returned). `settings` follow the names in the legend;
/// `slots` are the sessions' looks ([`style::slots_by_combiner`]).
fn compare_scaled(
    session_dirs: &[PathBuf],
    (settings, slots): (&[Option<String>], &[usize]),
    out_file: &Path,
    metric: Option<&str>,
    style: Style,
    log_scale: bool,
) -> Result<(PathBuf, Vec<String>)> {
    if session_dirs.is_empty() {
        bail!("compare needs at least one session");
    }
    let format = Format::from_path(out_file)?;
    let mut sessions = session_dirs
        .iter()
        .map(|d| SessionData::load(d))
        .collect::<Result<Vec<_>>>()?;
    for (session, setting) in sessions.iter_mut().zip(settings) {
        session.setting.clone_from(setting);
    }
    let metric = metric_to_compare(sessions.iter(), metric)?;
    let theme = style.theme();
    let chart = figures::compare(&sessions, &metric, prep(&theme, Smoothing::Auto), slots)?;
    let notes = match log_scale {
        true => values_off_log_axis(sessions.iter(), &metric)?,
        false => Vec::new(),
    };
    let chart = with_log_scale(chart, log_scale);
    let path = write_figure(out_file, encode(&chart.to_svg(&theme), format, &theme)?)?;
    Ok((path, notes))
}

/// A note for each session whose `metric` has values a log axis cannot
/// draw (≤ 0, or not finite): they were left out of the figure unsaid.
fn values_off_log_axis<'a>(
    sessions: impl Iterator<Item = &'a SessionData>,
    metric: &str,
) -> Result<Vec<String>> {
    let mut notes = Vec::new();
    for s in sessions {
        let (_, points) = s.series(metric)?;
        let left_out = points.iter().filter(|p| !scale::on_log_axis(p.1)).count();
        if left_out > 0 {
            notes.push(format!(
                "note: the log axis leaves out {left_out} of {}'s {} `{metric}` values (≤ 0 or not finite: no logarithm)",
                s.meta.name,
                points.len()
            ));
        }
    }
    Ok(notes)
}

/// The metric a comparison draws: `metric`, else the sessions' primary
/// metric when they share one (sessions of two workloads failed on the
/// second's "has no metric or loss named 'accuracy'").
fn metric_to_compare<'a>(
    sessions: impl Iterator<Item = &'a SessionData>,
    metric: Option<&str>,
) -> Result<String> {
    if let Some(metric) = metric {
        return Ok(metric.to_string());
    }
    crate::runs::shared_primary_metric(
        sessions.map(|s| (s.meta.primary_metric.as_str(), s.meta.name.as_str())),
        "compare one kind at a time",
    )?
    .context("compare needs at least one session")
}

/// Sessions drawn as one curve (their mean, with a band).
#[derive(Debug, Clone, PartialEq)]
pub struct CurveGroup {
    /// The legend label (None: the first session's name).
    pub label: Option<String>,
    /// For a group of one session drawn under its name: what tells it
    /// apart (`gamma=0.3`), after the name.
    pub setting: Option<String>,
    pub dirs: Vec<PathBuf>,
    /// Its look ([`style::look`]'s `i`).
    pub slot: usize,
}

/// Like [`compare`], with each group of sessions drawn as its mean and a
/// `band`; groups of one session without a label are drawn exactly as
/// [`compare`] draws them. Returns the file written and notes on what the
/// figure leaves out (a group's mean cut at its shortest run, values a log
/// axis cannot draw).
pub fn compare_groups(
    groups: &[CurveGroup],
    out_file: &Path,
    metric: Option<&str>,
    style: Style,
    band: Band,
    log_scale: bool,
) -> Result<(PathBuf, Vec<String>)> {
    if groups
        .iter()
        .all(|g| g.label.is_none() && g.dirs.len() == 1)
    {
        let dirs: Vec<PathBuf> = groups.iter().map(|g| g.dirs[0].clone()).collect();
        let settings: Vec<Option<String>> = groups.iter().map(|g| g.setting.clone()).collect();
        let slots: Vec<usize> = groups.iter().map(|g| g.slot).collect();
        return compare_scaled(
            &dirs,
            (&settings, &slots),
            out_file,
            metric,
            style,
            log_scale,
        );
    }
    let format = Format::from_path(out_file)?;
    let mut loaded = groups
        .iter()
        .map(|g| {
            g.dirs
                .iter()
                .map(|d| SessionData::load(d))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    // A fork whose parent is drawn in another group starts at its fork
    // step: before it, its log is its parent's, already in the figure. (In
    // the parent's own group, trimming would cut the group's mean too.)
    // Its fork step is marked, as where sessions are drawn one by one (a
    // walkthrough's grouped figure drew a fork from step 200 unmarked).
    let drawn: Vec<(usize, String, String)> = loaded
        .iter()
        .enumerate()
        .flat_map(|(g, sessions)| {
            sessions
                .iter()
                .map(move |s| (g, s.meta.id.clone(), s.meta.name.clone()))
        })
        .collect();
    let mut fork_marks: Vec<chart::Mark> = Vec::new();
    for (g, sessions) in loaded.iter_mut().enumerate() {
        for s in sessions {
            if let (Some(parent), Some(at)) = (&s.meta.parent, s.meta.fork_step) {
                if let Some((_, _, name)) = drawn.iter().find(|(h, id, _)| *h != g && id == parent)
                {
                    s.keep_from(at as f64);
                    let label = figures::fork_label(name, at);
                    if !fork_marks.iter().any(|m| m.label == label) {
                        fork_marks.push(chart::Mark {
                            x: at as f64,
                            label,
                        });
                    }
                }
            }
        }
    }
    let metric = metric_to_compare(loaded.iter().flatten(), metric)?;
    let grouped: Vec<bands::Grouped> = groups
        .iter()
        .zip(&loaded)
        .map(|(g, sessions)| bands::Grouped {
            label: g.label.clone().unwrap_or_else(|| {
                sessions
                    .first()
                    .map(|s| s.meta.name.clone())
                    .unwrap_or_default()
            }),
            sessions: sessions.iter().collect(),
            slot: g.slot,
        })
        .collect();
    let theme = style.theme();
    let prep = prep(&theme, Smoothing::Auto);
    let (mut chart, notes) = bands::compare(&grouped, &metric, prep, (band, log_scale))?;
    fork_marks.sort_by(|a, b| a.x.total_cmp(&b.x));
    chart.marks = fork_marks;
    let chart = with_log_scale(chart, log_scale);
    let path = write_figure(out_file, encode(&chart.to_svg(&theme), format, &theme)?)?;
    Ok((path, notes))
}

fn with_log_scale(mut chart: chart::Chart, log_scale: bool) -> chart::Chart {
    if log_scale {
        chart.y_kind = scale::Kind::Log;
    }
    chart
}

/// Creates `dir` if needed and writes every output atomically. If any write
/// fails, the files already written by this call (and a folder it created)
/// are removed, so a failed export leaves nothing behind.
fn write_all(dir: &Path, outputs: Vec<Output>) -> Result<Vec<PathBuf>> {
    let created = create_dirs(dir)
        .with_context(|| format!("cannot create output directory {}", dir.display()))?;
    let mut written = Vec::new();
    for out in outputs {
        if let Err(e) = atomic_write(&out.path, &out.bytes) {
            for path in &written {
                let _ = std::fs::remove_file(path);
            }
            remove_dirs(&created);
            return Err(e.context(format!("cannot write figures to {}", dir.display())));
        }
        written.push(out.path);
    }
    Ok(written)
}

/// `create_dir_all` that returns the folders it made, outermost first, and
/// makes none if it fails.
fn create_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    if let Err(e) = std::fs::create_dir_all(dir) {
        remove_dirs(&missing);
        return Err(e);
    }
    Ok(missing)
}

/// Removes folders made by `create_dirs`, innermost first, if still empty.
fn remove_dirs(created: &[PathBuf]) {
    for d in created.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
}

/// Writes one figure to `out_file` (its folder made if needed) and returns
/// the path written.
fn write_figure(out_file: &Path, bytes: Vec<u8>) -> Result<PathBuf> {
    let dir = match out_file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut files = write_all(
        &dir,
        vec![Output {
            path: out_file.to_path_buf(),
            bytes,
        }],
    )?;
    Ok(files.remove(0))
}
