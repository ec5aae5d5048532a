//! A session's log in the formats other tools read: `csv`, one tidy table
//! (step, wall, time, series, value) for pandas or R, and `tensorboard`,
//! event files TensorBoard opens (and W&B's TensorBoard sync imports) with
//! every scalar series and the config as hyperparameters; and `model`, the
//! fine-tuned TorchScript module itself. `export`'s figure formats (svg,
//! png, pdf) stay in `plot`.

pub mod model;
pub mod proto;
pub mod record;
pub mod tensorboard;
pub mod tidy;

use crate::session::{atomic_write, SessionDir, SessionMeta};
use anyhow::{Context, Result};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// One thing `meltr-tui export --format` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// A figure format.
    Figure(crate::plot::Format),
    /// The tidy CSV table.
    Csv,
    /// TensorBoard event files.
    Tensorboard,
    /// The trained TorchScript module (a TorchScript workload's checkpoint:
    /// [`model::Pick`]).
    Model,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "tensorboard" | "tb" => Ok(Format::Tensorboard),
            "model" | "pt" | "torchscript" => Ok(Format::Model),
            other => other.parse().map(Format::Figure).map_err(|_| {
                format!(
                    "unknown format '{other}' (expected svg, png, pdf, csv, tensorboard or model)"
                )
            }),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Format::Figure(format) => format.fmt(f),
            Format::Csv => f.write_str("csv"),
            Format::Tensorboard => f.write_str("tensorboard"),
            Format::Model => f.write_str("model"),
        }
    }
}

/// The session's log, read for an export.
fn read_lines(session: &Path) -> Result<Vec<crate::session::metrics::MetricLine>> {
    let path = SessionDir::new(session).metrics();
    Ok(crate::session::log::read_metrics(&path)
        .with_context(|| format!("cannot export {}", session.display()))?
        .lines)
}

/// Writes `<out>/<session id>.csv` (see [`tidy::csv`]); returns its path.
pub fn write_csv(session: &Path, out: &Path) -> Result<PathBuf> {
    let lines = read_lines(session)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let id = SessionDir::new(session).id();
    let path = out.join(format!("{id}.csv"));
    // An f32 run's numbers at f32's precision (walkthrough L's CSVs read
    // 0.0020000000949949026).
    let dtype = crate::runs::keys::config_of(session).remove("train.dtype");
    let single = dtype.as_ref().map(crate::runs::keys::text).as_deref() != Some("f64");
    let csv = tidy::csv(&id, &tidy::points(&lines), single);
    atomic_write(&path, csv.as_bytes())?;
    Ok(path)
}

/// Writes the event file into `<out>/<session id>/` (so `tensorboard
/// --logdir OUT` names the run by its id), replacing event files an
/// earlier export left there; returns its path.
pub fn write_tensorboard(session: &Path, out: &Path) -> Result<PathBuf> {
    let meta = SessionMeta::read(session)?;
    let lines = read_lines(session)?;
    let config = crate::runs::keys::config_of(session);
    let run_dir = out.join(&meta.id);
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create {}", run_dir.display()))?;
    for entry in std::fs::read_dir(&run_dir)?.filter_map(|e| e.ok()) {
        if entry.file_name().to_string_lossy().contains("tfevents") {
            std::fs::remove_file(entry.path())
                .with_context(|| format!("cannot replace {}", entry.path().display()))?;
        }
    }
    let start = lines
        .first()
        .and_then(|l| l.wall.map(|w| w - l.time))
        .unwrap_or_else(crate::session::metrics::wall_now);
    let path = run_dir.join(tensorboard::file_name(start));
    atomic_write(&path, &tensorboard::event_file(&meta, &config, &lines))?;
    Ok(path)
}
