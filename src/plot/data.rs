//! A session's metrics log turned into the columns the figures draw:
//! per-loss training curves, effective weights, evaluation metrics and the
//! latest transform curves. Reading goes through `session::log`, so a torn
//! last line is tolerated exactly as everywhere else.

use super::chart::Mark;
use super::series::Points;
use crate::session::log::read_metrics;
use crate::session::metrics::{
    eval_values, restored_before, Curve, Record, EVAL_PREFIX, LOSS_PREFIX, RESTORE_EVENT,
    SHARE_PREFIX, WEIGHT_PREFIX,
};
use crate::session::SessionDir;
use crate::session::SessionMeta;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Named curves in a stable order (see [`SessionData::loss_order`]).
pub type Curves = BTreeMap<String, Points>;

/// Everything the figures need from one session directory.
#[derive(Debug, Clone)]
pub struct SessionData {
    pub dir: PathBuf,
    pub meta: SessionMeta,
    /// Training loss `name -> (step, value)`.
    pub losses: Curves,
    /// Effective weight `name -> (step, w)`.
    pub weights: Curves,
    /// Share of the combined gradient `name -> (step, share)`, at the
    /// steps that logged shares.
    pub shares: Curves,
    /// Evaluation metric `name -> (step, value)`, and mean validation loss
    /// as `eval_loss/<loss>`.
    pub metrics: Curves,
    /// The run's own series, by [`RUN_SERIES`] name: the combined loss and
    /// the learning rate of its train lines, its meta steps' hypergradient
    /// norm and regulariser.
    pub run: Curves,
    /// The newest transform curves and the step they were taken at.
    pub transform: Option<(u64, BTreeMap<String, Curve>)>,
    /// Where the run changed course: config edits (the keys) and collapse
    /// restores, by step.
    pub marks: Vec<Mark>,
    /// What tells this session apart in a comparison of single sessions
    /// (`gamma=0.3`), after its name in the legend.
    pub setting: Option<String>,
}

impl SessionData {
    /// Drops every point before step `x` (a fork's history, its parent's).
    pub fn keep_from(&mut self, x: f64) {
        for curves in self.all_curves() {
            for points in curves.values_mut() {
                points.retain(|p| p.0 >= x);
            }
        }
    }

    fn all_curves(&mut self) -> [&mut Curves; 5] {
        [
            &mut self.losses,
            &mut self.weights,
            &mut self.shares,
            &mut self.metrics,
            &mut self.run,
        ]
    }

    /// Reads `session.json` and `metrics.jsonl` of `dir`.
    pub fn load(dir: &Path) -> Result<SessionData> {
        if !dir.is_dir() {
            bail!("unknown session: {} is not a directory", dir.display());
        }
        if !SessionDir::new(dir).session_json().is_file() {
            bail!("unknown session: {} has no session.json", dir.display());
        }
        let meta = SessionMeta::read(dir)?;
        let path = SessionDir::new(dir).metrics();
        if !path.is_file() {
            bail!(
                "session '{}' has no metrics yet ({} does not exist)",
                meta.name,
                path.display()
            );
        }
        let read = read_metrics(&path)
            .with_context(|| format!("cannot read the metrics of session '{}'", meta.name))?;
        let mut data = SessionData {
            dir: dir.to_path_buf(),
            meta,
            losses: Curves::new(),
            weights: Curves::new(),
            shares: Curves::new(),
            metrics: Curves::new(),
            run: Curves::new(),
            transform: None,
            marks: Vec::new(),
            setting: None,
        };
        let push = |into: &mut Curves, step: f64, named: &BTreeMap<String, f64>| {
            for (name, &v) in named {
                into.entry(name.clone()).or_default().push((step, v));
            }
        };
        // A fork's curves start with its parent's: the step it forked at is
        // marked (walkthrough D's fork's figure drew its parent's better
        // evals beside "best" at a later step, nothing saying why).
        if let Some(at) = data.meta.fork_step {
            data.marks.push(Mark {
                x: at as f64,
                label: "fork".into(),
            });
        }
        // Each step's config edits: per key, its first old and last value.
        type Edit = (String, serde_json::Value, serde_json::Value);
        let mut edits_at: BTreeMap<u64, Vec<Edit>> = BTreeMap::new();
        for line in read.lines {
            let step = line.step as f64;
            match line.record {
                Record::Train {
                    losses,
                    weights,
                    shares,
                    total,
                    lr,
                    ..
                } => {
                    push(&mut data.losses, step, &losses);
                    push(&mut data.weights, step, &weights);
                    push(&mut data.shares, step, &shares);
                    push_run(&mut data.run, step, [(TOTAL, total), (LR, lr)]);
                }
                Record::Meta {
                    hypergrad_norm,
                    reg,
                    ..
                } => push_run(
                    &mut data.run,
                    step,
                    [(HYPERGRAD_NORM, hypergrad_norm), (REG, reg)],
                ),
                Record::Eval { metrics, losses } => {
                    push(&mut data.metrics, step, &eval_values(&metrics, &losses))
                }
                Record::Transform { curves } => data.transform = Some((line.step, curves)),
                Record::Config { changed, .. } => {
                    let edits = edits_at.entry(line.step).or_default();
                    for (key, (old, new)) in changed {
                        match edits.iter_mut().find(|(k, ..)| *k == key) {
                            Some(edit) => edit.2 = new,
                            None => edits.push((key, old, new)),
                        }
                    }
                }
                Record::Event { message, .. } => {
                    // A crash's lost steps, trained again from the
                    // checkpoint at this step: the curves are the second
                    // pass's (a walkthrough's figures did not say steps
                    // 401–450 ran twice).
                    if let Some(reached) = crate::session::log::trained_again_up_to(&message) {
                        data.marks.push(Mark {
                            x: step,
                            label: format!("resumed: {}–{reached} again", line.step + 1),
                        });
                    } else if message.contains(RESTORE_EVENT) {
                        // Said at the meta step that decided it; φ changes
                        // before the step it names.
                        let at = restored_before(&message).map_or(step, |s| s as f64);
                        data.marks.push(Mark {
                            x: at,
                            label: "restore".into(),
                        });
                    }
                }
            }
        }
        // Edits at one step apply together: one mark with each key's net
        // change (walkthrough J's `meta_lr 0.001→0.5→0.002`, the 0.5 undone
        // while paused, never trained); an edit undone at its step is none.
        // `aid.iterations 0→2`: the keys alone hid the values; OLD→NEW as
        // tables write an edited setting.
        for (step, edits) in edits_at {
            let label: Vec<String> = edits
                .iter()
                .filter(|(_, old, new)| old != new)
                .map(|(key, old, new)| {
                    format!("{key} {}{EDIT_ARROW}{}", mark_value(old), mark_value(new))
                })
                .collect();
            if !label.is_empty() {
                data.marks.push(Mark {
                    x: step as f64,
                    label: label.join(", "),
                });
            }
        }
        // In step order (stable: a fork's mark first at its step).
        data.marks.sort_by(|a, b| a.x.total_cmp(&b.x));
        // Evals alone still draw (walkthrough D's run that skipped every
        // update had evals and no train line, and its group's figure was
        // refused as "no training steps logged yet").
        if data.losses.is_empty() && data.metrics.is_empty() {
            let status = data.meta.status;
            bail!(
                "session '{}' ({}) has no train or eval line{} ({})",
                data.meta.name,
                status.as_str(),
                if status.is_terminal() { "" } else { " yet" },
                path.display()
            );
        }
        for curves in data.all_curves() {
            for points in curves.values_mut() {
                // Steps only go up within a run; a resume may repeat some.
                points.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
        }
        Ok(data)
    }

    /// Loss names in the session's order (primary first), then any others
    /// the log mentions, alphabetically. A loss's index here picks its colour
    /// in every figure.
    pub fn loss_order(&self) -> Vec<String> {
        let mut names = self.meta.losses.clone();
        for name in self.losses.keys().chain(self.weights.keys()) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }

    /// Legend text for a loss: its name, marked when it is the primary one
    /// (unless its name says so: "primary (primary)", a walkthrough).
    pub fn loss_label(&self, name: &str) -> String {
        if name == self.meta.primary && name != "primary" {
            format!("{name} (primary)")
        } else {
            name.to_string()
        }
    }

    /// A metric or loss series by name: an eval metric (or validation loss,
    /// `eval_loss/<loss>`) first, then a train loss. The error lists what
    /// the session has.
    pub fn series(&self, name: &str) -> Result<(SeriesSource, &Points)> {
        let metric = crate::session::metrics::eval_metric_name(name);
        if let Some(points) = self.metrics.get(metric) {
            return Ok((SeriesSource::Eval, points));
        }
        let per_loss = [
            (LOSS_PREFIX, &self.losses),
            (WEIGHT_PREFIX, &self.weights),
            (SHARE_PREFIX, &self.shares),
        ];
        let found = per_loss.iter().find_map(|(prefix, curves)| {
            name.strip_prefix(prefix).and_then(|loss| curves.get(loss))
        });
        if let Some(points) = found
            .or_else(|| self.losses.get(name))
            .or_else(|| self.run.get(name))
        {
            return Ok((SeriesSource::Train, points));
        }
        let list = |c: &Curves| {
            if c.is_empty() {
                "(none)".to_string()
            } else {
                c.keys().cloned().collect::<Vec<_>>().join(", ")
            }
        };
        if self.metrics.is_empty() && (self.meta.primary_metric == metric || name != metric) {
            // A run that failed before its first eval (walkthrough A: "it
            // has eval metrics: (none)" read as a misspelt metric).
            bail!(
                "session '{}' ({}) has no eval line, so no '{name}': leave it out, or let it evaluate",
                self.meta.name,
                self.meta.status.as_str()
            );
        }
        // `weight/retreival`: the name meant, first (walkthrough J).
        let names: Vec<String> = self
            .metrics
            .keys()
            .cloned()
            .chain(per_loss.iter().flat_map(|(prefix, curves)| {
                curves.keys().map(move |loss| format!("{prefix}{loss}"))
            }))
            .chain(self.run.keys().cloned())
            .collect();
        let meant = crate::config::name_meant(name, names.iter().map(String::as_str))
            .map(|n| format!(" (did you mean '{n}'?)"))
            .unwrap_or_default();
        bail!(
            "session '{}' has no metric or loss named '{name}'{meant}; it has eval metrics: {}; train losses: {} \
             (also as {EVAL_PREFIX}<metric> and {LOSS_PREFIX}<loss>, as the CSV export names them; {WEIGHT_PREFIX}<loss> and {SHARE_PREFIX}<loss> for their effective weights and gradient shares); run series: {}",
            self.meta.name,
            list(&self.metrics),
            list(&self.losses),
            list(&self.run)
        )
    }
}

/// The run series `compare --metric` draws besides metrics and losses:
/// the combined loss M(l) the model trained on, the inner learning rate,
/// and each meta step's hypergradient norm and regulariser |Σl − M(l)|.
pub const TOTAL: &str = "total";
pub const LR: &str = "lr";
pub const HYPERGRAD_NORM: &str = "meta/hypergrad_norm";
pub const REG: &str = "meta/reg";
pub const RUN_SERIES: [&str; 4] = [TOTAL, LR, HYPERGRAD_NORM, REG];

/// Whether a series is drawn as logged, never smoothed: a learning-rate
/// schedule has no noise, and its EMA lags it (two curves for one).
pub fn is_schedule(series: &str) -> bool {
    series == LR
}

/// Appends a value to each run series (a null in the log, read as NaN, is
/// a gap, as in the loss curves).
fn push_run<const N: usize>(into: &mut Curves, step: f64, values: [(&str, f64); N]) {
    for (name, v) in values {
        into.entry(name.to_string()).or_default().push((step, v));
    }
}

/// Where a named series comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesSource {
    Eval,
    Train,
}

/// Between an edited key's old and new values in a mark's label
/// (`aid.iterations 0→2`).
pub const EDIT_ARROW: char = '→';

/// A config value as a mark shows it: strings without their quotes.
fn mark_value(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::log::MetricsWriter;
    use crate::session::metrics::MetricLine;

    /// `compare --metric eval_loss/cls` found no such series (walkthrough).
    #[test]
    fn a_validation_loss_is_a_series_by_its_export_name() {
        let root = tempfile::tempdir().unwrap();
        let dir =
            crate::session::create(root.path(), "r", &crate::config::Config::default()).unwrap();
        let mut w = MetricsWriter::open(&dir.join("metrics.jsonl")).unwrap();
        let line = |step: u64, record: Record| MetricLine {
            step,
            time: 0.0,
            wall: None,
            record,
        };
        w.append(&line(
            1,
            Record::Train {
                losses: [("cls".to_string(), 1.0)].into(),
                total: 1.0,
                weights: [("cls".to_string(), 1.0)].into(),
                lr: 1e-3,
                shares: [("cls".to_string(), 0.25)].into(),
                gpu: None,
            },
        ))
        .unwrap();
        for (step, loss) in [(5, 0.9), (10, 0.6)] {
            w.append(&line(
                step,
                Record::Eval {
                    metrics: [("accuracy".to_string(), 50.0)].into(),
                    losses: [("cls".to_string(), loss)].into(),
                },
            ))
            .unwrap();
        }
        let mut data = SessionData::load(&dir).unwrap();
        // The primary is marked in legends, unless its name says it.
        data.meta.primary = "cls".into();
        assert_eq!(data.loss_label("cls"), "cls (primary)");
        assert_eq!(data.loss_label("aux"), "aux");
        data.meta.primary = "primary".into();
        assert_eq!(data.loss_label("primary"), "primary");
        data.meta.primary = "cls".into();
        let (source, points) = data.series("eval_loss/cls").unwrap();
        assert_eq!(source, SeriesSource::Eval);
        assert_eq!(points, &vec![(5.0, 0.9), (10.0, 0.6)]);
        // A metric by the CSV export's name too (a walkthrough's
        // `--metric eval/accuracy` was refused).
        for name in ["accuracy", "eval/accuracy"] {
            let (source, points) = data.series(name).unwrap();
            assert_eq!(source, SeriesSource::Eval);
            assert_eq!(points, &vec![(5.0, 50.0), (10.0, 50.0)], "{name}");
        }
        let err = data.series("eval_loss/nope").unwrap_err().to_string();
        assert!(
            err.contains("eval metrics: accuracy, eval_loss/cls;"),
            "{err}"
        );
        // The export's names for the per-step series (a walkthrough's
        // `--metric loss/cls` and `weight/cls` were refused).
        for (name, value) in [
            ("cls", 1.0),
            ("loss/cls", 1.0),
            ("weight/cls", 1.0),
            ("share/cls", 0.25),
        ] {
            let (source, points) = data.series(name).unwrap();
            assert_eq!(
                (source, points),
                (SeriesSource::Train, &vec![(1.0, value)]),
                "{name}"
            );
        }
        let err = data.series("weight/nope").unwrap_err().to_string();
        assert!(err.contains("weight/<loss> and share/<loss>"), "{err}");
        assert!(!err.contains("did you mean"), "{err}");
        let err = data.series("wieght/cls").unwrap_err().to_string();
        assert!(
            err.contains("named 'wieght/cls' (did you mean 'weight/cls'?)"),
            "{err}"
        );
        // The run's own series: the combined loss and learning rate of
        // train lines, the hypergradient norm and regulariser of meta lines.
        w.append(&line(
            3,
            Record::Meta {
                hypergrad_norm: 2.5,
                reg: 0.75,
                meta_lr: 1e-3,
                aid_iterations: 0,
                gamma: Some(0.1),
            },
        ))
        .unwrap();
        let data = SessionData::load(&dir).unwrap();
        for (name, point) in [
            ("total", (1.0, 1.0)),
            ("lr", (1.0, 1e-3)),
            ("meta/hypergrad_norm", (3.0, 2.5)),
            ("meta/reg", (3.0, 0.75)),
        ] {
            let (source, points) = data.series(name).unwrap();
            assert_eq!(
                (source, points),
                (SeriesSource::Train, &vec![point]),
                "{name}"
            );
        }
        let err = data.series("meta/nope").unwrap_err().to_string();
        assert!(
            err.contains("run series: lr, meta/hypergrad_norm, meta/reg, total"),
            "{err}"
        );
        assert!(is_schedule("lr") && !is_schedule("total"));

        // Config edits and collapse restores are marks: the keys at the
        // edit's step, a restore at the step it names.
        w.append(&line(
            12,
            Record::Config {
                changed: [("aid.alpha".to_string(), (0.1.into(), 0.02.into()))].into(),
                error: None,
            },
        ))
        .unwrap();
        w.append(&line(
            14,
            Record::Event {
                level: crate::session::metrics::Level::Warn,
                message: format!("MELTR collapse: …; {RESTORE_EVENT} at step 3 before step 16, its optimizer's moments cleared"),
            },
        ))
        .unwrap();
        let marks = SessionData::load(&dir).unwrap().marks;
        let marks: Vec<(f64, &str)> = marks.iter().map(|m| (m.x, m.label.as_str())).collect();
        assert_eq!(marks, [(12.0, "aid.alpha 0.1→0.02"), (16.0, "restore")]);
        // A fork's step is marked, first at its step.
        let mut meta = crate::session::SessionMeta::read(&dir).unwrap();
        meta.fork_step = Some(12);
        meta.write(&dir).unwrap();
        let marks = SessionData::load(&dir).unwrap().marks;
        let marks: Vec<(f64, &str)> = marks.iter().map(|m| (m.x, m.label.as_str())).collect();
        assert_eq!(
            marks,
            [
                (12.0, "fork"),
                (12.0, "aid.alpha 0.1→0.02"),
                (16.0, "restore")
            ]
        );
        // Edits at one step are one mark of their net changes: a value set
        // and replaced there never trained, one undone there is no edit
        // (walkthrough J: `meta_lr 0.001→0.5→0.002`, the 0.5 undone while
        // paused).
        let edit = |key: &str, old: f64, new: f64| Record::Config {
            changed: [(key.to_string(), (old.into(), new.into()))].into(),
            error: None,
        };
        for record in [
            edit("meltr.meta_lr", 0.001, 0.5),
            edit("meltr.gamma", 0.1, 0.3),
            edit("meltr.meta_lr", 0.5, 0.002),
            edit("meltr.gamma", 0.3, 0.1),
            edit("aid.alpha", 0.5, 0.5),
        ] {
            w.append(&line(20, record)).unwrap();
        }
        for record in [edit("aid.alpha", 0.02, 0.3), edit("aid.alpha", 0.3, 0.02)] {
            w.append(&line(22, record)).unwrap();
        }
        let marks = SessionData::load(&dir).unwrap().marks;
        let marks: Vec<(f64, &str)> = marks.iter().map(|m| (m.x, m.label.as_str())).collect();
        assert_eq!(marks[3..], [(20.0, "meltr.meta_lr 0.001→0.002")]);
        // A resume after a crash, which trains the lost steps again, is
        // marked at its checkpoint's step (a walkthrough's figures hid it).
        let message = format!(
            "the log's 7 lines after step 24, up to step 31, {} from its newest readable checkpoint",
            crate::session::log::TRAINED_AGAIN
        );
        w.append(&line(
            24,
            Record::Event {
                level: crate::session::metrics::Level::Warn,
                message,
            },
        ))
        .unwrap();
        let marks = SessionData::load(&dir).unwrap().marks;
        let last = marks.last().unwrap();
        assert_eq!(
            (last.x, last.label.as_str()),
            (24.0, "resumed: 25–31 again")
        );
    }
}
