//! The `metrics.jsonl` line format: one JSON object per line, each with
//! `step`, `kind`, `time` (seconds since the session started) and `wall`
//! (Unix time in seconds when it was written; absent in lines written
//! before it was recorded), plus the fields of its kind. Writer and tolerant reader live in `session::log`.
//!
//! Plain data (no tensors), shared by the engine, the TUI and the plots.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Values keyed by loss or metric name, in a stable order.
pub type Named = BTreeMap<String, f64>;

/// How tables, comparisons and exports name an eval line's mean validation
/// loss: `eval_loss/<loss>`.
pub const EVAL_LOSS_PREFIX: &str = "eval_loss/";

/// An eval line's metrics and its losses (as `eval_loss/<loss>`), by name.
pub fn eval_values(metrics: &Named, losses: &Named) -> Named {
    let mut out = metrics.clone();
    for (name, v) in losses {
        out.insert(format!("{EVAL_LOSS_PREFIX}{name}"), *v);
    }
    out
}

/// The export's name for an eval metric: `eval/<metric>` (`compare` takes
/// it too, and the bare name).
pub const EVAL_PREFIX: &str = "eval/";

/// How the event after a checkpoint asked for by hand begins (the TUI's
/// fork waits for it).
pub const CHECKPOINT_ASKED_EVENT: &str = "checkpoint of step ";

/// How a run's end says that a notable share of its steps was skipped
/// (`18% of the 60 steps trained nothing`): `table` notes such runs.
pub const TRAINED_NOTHING: &str = " steps trained nothing";

/// `(percent, steps)` of a run's end summary ([`TRAINED_NOTHING`]).
pub fn trained_nothing(message: &str) -> Option<(u64, u64)> {
    let (head, _) = message.split_once(TRAINED_NOTHING)?;
    let (percent, steps) = head.rsplit_once("% of the ")?;
    let percent = percent
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    Some((percent, steps.parse().ok()?))
}

/// How the event of a MELTR collapse begins (its outcome follows: a
/// restore, or why there was none).
pub const COLLAPSE_EVENT: &str = "MELTR collapse: ";

/// How the event of a run that ends in a collapse the watch had not yet
/// acted on begins.
pub const ENDS_COLLAPSED_EVENT: &str = "the run ends with the primary's effective weight";

/// How a collapse restore's event begins (figures mark the step it names).
pub const RESTORE_EVENT: &str = "φ restored from the meta step";

/// The step a collapse restore's event says φ changes before (`… before
/// step N, …`); `None` when `message` is not such an event.
pub fn restored_before(message: &str) -> Option<u64> {
    let (_, restore) = message.split_once(RESTORE_EVENT)?;
    let (_, rest) = restore.split_once(" before step ")?;
    rest.split([' ', ',']).next()?.parse().ok()
}
/// The export's (and `compare`'s) name for a training loss: `loss/<loss>`.
pub const LOSS_PREFIX: &str = "loss/";
/// How tables name a run's final effective weight of a loss: `weight/<loss>`.
pub const WEIGHT_PREFIX: &str = "weight/";
/// ... and its final share of the combined gradient: `share/<loss>` (the
/// export's name for the logged shares).
pub const SHARE_PREFIX: &str = "share/";

/// Logged steps a run's final weights are averaged over: one line's weights
/// move a lot from step to step (`final-weights.png` and `table --metric
/// weight/<loss>` use this mean; the README's and the suite's scripts keep
/// their own, the last 10 lines, stated with their tables).
pub const FINAL_WEIGHT_LINES: usize = 10;
/// ... of those within this last fraction of the steps logged: with a
/// sparse log (`log_every` 25 in a 300-step run, a walkthrough) ten lines
/// reached back to step 75 and hid the run's end.
pub const FINAL_WEIGHT_SPAN: f64 = 0.1;

/// Each series' mean over its last [`FINAL_WEIGHT_LINES`] finite `(step,
/// value)` points within the last [`FINAL_WEIGHT_SPAN`] of its steps, and
/// the steps those points span (`None` when no series has one).
pub fn final_means(series: &BTreeMap<String, Vec<(f64, f64)>>) -> Option<((f64, f64), Named)> {
    let mut span: Option<(f64, f64)> = None;
    let mut means = Named::new();
    for (name, points) in series {
        let finite: Vec<&(f64, f64)> = points.iter().filter(|(_, w)| w.is_finite()).collect();
        let from = finite
            .last()
            .map_or(0.0, |(end, _)| end * (1.0 - FINAL_WEIGHT_SPAN));
        // The last tenth of 400 steps is 361–400, not 360–400 (a
        // walkthrough's mean took in step 360, just before a collapse);
        // the last point counts whatever the span.
        let within = finite
            .partition_point(|(step, _)| *step <= from)
            .min(finite.len().saturating_sub(1));
        let last = &finite[(finite.len().saturating_sub(FINAL_WEIGHT_LINES)).max(within)..];
        let (Some(first), Some(end)) = (last.first(), last.last()) else {
            continue;
        };
        means.insert(
            name.clone(),
            last.iter().map(|(_, w)| w).sum::<f64>() / last.len() as f64,
        );
        span = Some(span.map_or((first.0, end.0), |(a, b)| (a.min(first.0), b.max(end.0))));
    }
    span.map(|span| (span, means))
}

/// JSON has no NaN or ±inf: serde_json writes them as `null`, and these
/// read `null` back as NaN, so a diverged run's log stays readable (its
/// curves show gaps, `ls` and `export` still work).
mod nullable {
    use serde::{Deserialize, Deserializer};
    use std::collections::BTreeMap;

    pub fn number<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }

    pub fn named<'de, D: Deserializer<'de>>(d: D) -> Result<super::Named, D::Error> {
        let raw = BTreeMap::<String, Option<f64>>::deserialize(d)?;
        Ok(raw
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or(f64::NAN)))
            .collect())
    }

    pub fn numbers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let raw = Vec::<Option<f64>>::deserialize(d)?;
        Ok(raw.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
    }
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricLine {
    /// Inner steps done when the line was written (0 before the first).
    pub step: u64,
    /// Seconds since the session started, not counting time between a stop and
    /// a resume.
    pub time: f64,
    /// Wall-clock time the line was written: seconds since the Unix epoch
    /// (UTC), as other tools (TensorBoard, pandas) expect. `None` in logs
    /// written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall: Option<f64>,
    /// The line's kind and its fields (flattened into the same JSON object).
    #[serde(flatten)]
    pub record: Record,
}

/// Severity of an `event` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Worth knowing; nothing is wrong (a checkpoint written, a resume).
    Info,
    /// Something went wrong and was handled (a step skipped, a collapse).
    Warn,
    /// Something failed and stays failed until the user acts (meta steps on hold
    /// until the config changes).
    Error,
}

/// A line's kind and its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    /// One logged training step (every `log_every` steps).
    Train {
        /// The step's losses on its training batch, by name.
        #[serde(deserialize_with = "nullable::named")]
        losses: Named,
        /// The combined loss `M(l)` the model was trained on.
        #[serde(deserialize_with = "nullable::number")]
        total: f64,
        /// Effective weights `w_k = ∂M/∂l_k` at the step's losses.
        #[serde(deserialize_with = "nullable::named")]
        weights: Named,
        /// The inner optimizer's learning rate at this step.
        #[serde(deserialize_with = "nullable::number")]
        lr: f64,
        /// Each loss's share of the combined gradient,
        /// `w_k ∇l_k · g / |g|²` with `g = Σ w_k ∇l_k` (sums to 1).
        #[serde(
            default,
            skip_serializing_if = "BTreeMap::is_empty",
            deserialize_with = "nullable::named"
        )]
        shares: Named,
        /// The training GPU at this step (CUDA runs with NVML only; absent
        /// on CPU and in logs written before it was recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gpu: Option<GpuStats>,
    },
    /// One meta (hypergradient) step.
    Meta {
        /// Global norm of the hypergradient `dL_pri/dφ`, before clipping.
        #[serde(deserialize_with = "nullable::number")]
        hypergrad_norm: f64,
        /// The γ regulariser `|Σ_k l_k − M(l)|` on the meta step's training batch.
        #[serde(deserialize_with = "nullable::number")]
        reg: f64,
        /// The meta optimizer's learning rate at this step.
        #[serde(deserialize_with = "nullable::number")]
        meta_lr: f64,
        /// Neumann iterations the hypergradient was computed with: `aid.iterations`,
        /// or fewer where the series diverged and stopped early.
        aid_iterations: u32,
        /// γ in force at this step: `meltr.gamma`, or more after a collapse
        /// restore raised it (absent in logs written before it was recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gamma: Option<f64>,
    },
    /// A validation pass.
    Eval {
        /// Validation metrics (`eval.metrics`), by name.
        #[serde(deserialize_with = "nullable::named")]
        metrics: Named,
        /// Mean validation losses, by name.
        #[serde(deserialize_with = "nullable::named")]
        losses: Named,
    },
    /// MELTR's transform of each loss: the combined output as that loss
    /// sweeps a range with the others held at their current values.
    Transform {
        /// One curve per loss, by loss name.
        curves: BTreeMap<String, Curve>,
    },
    /// A config change (`changed`: key -> [old, new]) or a refused edit (`error`).
    Config {
        /// Each changed key's old and new value; always written, `{}` when
        /// a valid file changed nothing (a bad edit undone), so every config
        /// line has `changed`, `error` or both.
        #[serde(default)]
        changed: BTreeMap<String, (serde_json::Value, serde_json::Value)>,
        /// Why an edit was refused (validation failed, or a restart-only key).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Checkpoints, skipped non-finite steps, MELTR collapse, resume, ...
    Event {
        /// Severity: `info`, `warn` or `error`.
        level: Level,
        /// What happened, as shown to the user.
        message: String,
    },
}

/// The training GPU at a logged step: NVML's utilisation and device memory
/// (all processes), and the peak of this process's caching allocator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GpuStats {
    /// Percent of the last sample period in which a kernel ran (0-100).
    #[serde(deserialize_with = "nullable::number")]
    pub util: f64,
    /// Device memory in use, MiB.
    #[serde(deserialize_with = "nullable::number")]
    pub mem_used_mib: f64,
    /// Device memory in all, MiB.
    #[serde(deserialize_with = "nullable::number")]
    pub mem_total_mib: f64,
    /// Peak bytes libtorch's caching allocator held for tensors since the
    /// process started, MiB (absent when it could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_allocated_mib: Option<f64>,
}

impl GpuStats {
    /// Each value with its series name under `gpu/` (as exported).
    pub fn series(&self) -> Vec<(&'static str, f64)> {
        let mut out = vec![
            ("gpu/util", self.util),
            ("gpu/mem_used_mib", self.mem_used_mib),
            ("gpu/mem_total_mib", self.mem_total_mib),
        ];
        if let Some(peak) = self.peak_allocated_mib {
            out.push(("gpu/peak_allocated_mib", peak));
        }
        out
    }
}

/// A sampled curve: `y[i]` is the combined loss at `x[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// The swept loss values, from 0 to twice the current one.
    #[serde(deserialize_with = "nullable::numbers")]
    pub x: Vec<f64>,
    /// The combined loss at each `x`.
    #[serde(deserialize_with = "nullable::numbers")]
    pub y: Vec<f64>,
}

/// Now as seconds since the Unix epoch (a `wall` value).
pub fn wall_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl MetricLine {
    /// The line's `kind` field: `"train"`, `"meta"`, `"eval"`, `"transform"`,
    /// `"config"` or `"event"`.
    pub fn kind(&self) -> &'static str {
        match self.record {
            Record::Train { .. } => "train",
            Record::Meta { .. } => "meta",
            Record::Eval { .. } => "eval",
            Record::Transform { .. } => "transform",
            Record::Config { .. } => "config",
            Record::Event { .. } => "event",
        }
    }

    /// The line as one JSON object, without the newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("metric lines always serialise")
    }

    /// An eval line as a console prints it (`eval    250  accuracy
    /// 61.0000  …`): the headless run's terminal, and a detached runner's
    /// `output.log` (walkthrough O could not `tail -f` its progress).
    pub fn eval_words(&self) -> Option<String> {
        match &self.record {
            Record::Eval { metrics, .. } => Some(format!(
                "eval {:>6}  {}",
                self.step,
                crate::numfmt::named_values(metrics, &[])
            )),
            _ => None,
        }
    }

    /// What a console shows of a config or event line, as `(is a problem,
    /// text)` rows: each changed key, a refused edit, an event. Per-step
    /// records give none (each console prints those its own way).
    pub fn notices(&self) -> Vec<(bool, String)> {
        let step = self.step;
        match &self.record {
            Record::Config { changed, error } => {
                let mut rows: Vec<(bool, String)> = changed
                    .iter()
                    .map(|(key, (old, new))| {
                        (false, format!("config {step:>4}  {key}: {old} -> {new}"))
                    })
                    .collect();
                if changed.is_empty() && error.is_none() {
                    rows.push((false, format!("config {step:>4}  read; no value changed")));
                }
                if let Some(error) = error {
                    rows.push((true, format!("config error at step {step}: {error}")));
                }
                rows
            }
            // Aligned with `step` lines.
            Record::Event { level, message } => vec![match level {
                Level::Info => (false, format!("event {step:>5}  {message}")),
                Level::Warn => (true, format!("warn {step:>6}  {message}")),
                Level::Error => (true, format!("error {step:>5}  {message}")),
            }],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ten lines of a sparse log reached back over most of the run.
    #[test]
    fn final_means_take_the_last_lines_within_the_runs_end() {
        let sparse: Vec<(f64, f64)> = (1..=12)
            .map(|i| (25.0 * i as f64, if i <= 10 { 1.0 } else { 0.1 }))
            .collect();
        let dense: Vec<(f64, f64)> = (1..=1000)
            .map(|step| (step as f64, if step <= 990 { 1.0 } else { 0.5 }))
            .collect();
        // Every 10 steps to 400, the primary falling at 370 (walkthrough T).
        let fallen: Vec<(f64, f64)> = (1..=40)
            .map(|i| (10.0 * i as f64, if i < 37 { 1.0 } else { 0.0 }))
            .collect();
        let series = BTreeMap::from([
            ("sparse".to_string(), sparse),
            ("dense".to_string(), dense),
            ("fallen".to_string(), fallen),
        ]);
        let (span, means) = final_means(&series).unwrap();
        assert_eq!(means["sparse"], 0.1, "steps 275 and 300 only");
        assert_eq!(means["dense"], 0.5, "the last 10 lines");
        assert_eq!(means["fallen"], 0.0, "steps 370-400, after step 360");
        assert_eq!(span, (275.0, 1000.0));
        let single = BTreeMap::from([("single".to_string(), vec![(0.0, 0.25)])]);
        let (span, means) = final_means(&single).unwrap();
        assert_eq!(
            (span, means["single"]),
            ((0.0, 0.0), 0.25),
            "a lone point is its own end"
        );
    }

    #[test]
    fn train_line_has_contract_fields() {
        let line = MetricLine {
            step: 7,
            time: 1.5,
            wall: Some(1_790_000_000.25),
            record: Record::Train {
                losses: [("primary".to_string(), 0.5)].into(),
                total: 0.5,
                weights: [("primary".to_string(), 1.0)].into(),
                lr: 1e-3,
                shares: Named::new(),
                gpu: None,
            },
        };
        let v: serde_json::Value = serde_json::from_str(&line.to_json()).unwrap();
        assert_eq!(v["step"], 7);
        assert_eq!(v["kind"], "train");
        assert_eq!(v["time"], 1.5);
        assert_eq!(v["wall"], 1_790_000_000.25);
        assert_eq!(v["losses"]["primary"], 0.5);
        assert!(v.get("shares").is_none());
        assert!(v.get("gpu").is_none());
        let back: MetricLine = serde_json::from_str(&line.to_json()).unwrap();
        assert_eq!(back, line);
    }

    #[test]
    fn non_finite_values_are_written_as_null_and_read_back_as_nan() {
        let nan_of = |line: &MetricLine| -> Vec<bool> {
            match &line.record {
                Record::Eval { metrics, losses } => metrics
                    .values()
                    .chain(losses.values())
                    .map(|v| v.is_nan())
                    .collect(),
                Record::Meta {
                    hypergrad_norm,
                    reg,
                    ..
                } => {
                    vec![hypergrad_norm.is_nan(), reg.is_nan()]
                }
                Record::Transform { curves } => curves["a"].y.iter().map(|v| v.is_nan()).collect(),
                _ => unreachable!(),
            }
        };
        for record in [
            Record::Eval {
                metrics: [("acc".to_string(), f64::NAN)].into(),
                losses: [
                    ("primary".to_string(), f64::INFINITY),
                    ("aux".to_string(), 0.5),
                ]
                .into(),
            },
            Record::Meta {
                hypergrad_norm: f64::NEG_INFINITY,
                reg: 0.25,
                meta_lr: 1e-3,
                aid_iterations: 0,
                gamma: Some(0.1),
            },
            Record::Transform {
                curves: [(
                    "a".to_string(),
                    Curve {
                        x: vec![0.0, 1.0],
                        y: vec![f64::NAN, 2.0],
                    },
                )]
                .into(),
            },
        ] {
            let line = MetricLine {
                step: 3,
                time: 0.0,
                wall: None,
                record,
            };
            let json = line.to_json();
            assert!(json.contains("null"), "{json}");
            let back: MetricLine =
                serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
            // Every non-finite value reads back as NaN, finite ones exactly.
            match (&line.record, &back.record) {
                (Record::Eval { losses: a, .. }, Record::Eval { losses: b, .. }) => {
                    assert!(b["primary"].is_nan());
                    assert_eq!(a["aux"], b["aux"]);
                    assert!(nan_of(&back)[0], "{back:?}");
                }
                (Record::Meta { .. }, Record::Meta { reg, .. }) => {
                    assert_eq!(nan_of(&back), vec![true, false]);
                    assert_eq!(*reg, 0.25);
                }
                (Record::Transform { .. }, Record::Transform { curves }) => {
                    assert!(curves["a"].y[0].is_nan());
                    assert_eq!(curves["a"].y[1], 2.0);
                }
                _ => panic!("kind changed: {back:?}"),
            }
        }
    }

    #[test]
    fn gpu_stats_roundtrip_and_old_train_lines_read_without_them() {
        let old = r#"{"step":2,"time":0.5,"kind":"train","losses":{"a":1.0},"total":1.0,"weights":{"a":1.0},"lr":0.001}"#;
        let line: MetricLine = serde_json::from_str(old).unwrap();
        assert!(
            matches!(line.record, Record::Train { gpu: None, .. }),
            "{line:?}"
        );
        assert_eq!(line.to_json(), old);

        let with = r#"{"step":2,"time":0.5,"kind":"train","losses":{"a":1.0},"total":1.0,"weights":{"a":1.0},"lr":0.001,"gpu":{"util":37.0,"mem_used_mib":2048.5,"mem_total_mib":81559.0,"peak_allocated_mib":512.25}}"#;
        let line: MetricLine = serde_json::from_str(with).unwrap();
        let Record::Train { gpu: Some(gpu), .. } = &line.record else {
            panic!("no gpu stats in {line:?}");
        };
        assert_eq!(gpu.util, 37.0);
        assert_eq!(gpu.mem_total_mib, 81559.0);
        assert_eq!(gpu.peak_allocated_mib, Some(512.25));
        assert_eq!(
            gpu.series()
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>(),
            [
                "gpu/util",
                "gpu/mem_used_mib",
                "gpu/mem_total_mib",
                "gpu/peak_allocated_mib"
            ]
        );
        assert_eq!(line.to_json(), with);
    }

    #[test]
    fn a_line_without_wall_reads_and_writes_without_it() {
        let old = r#"{"step":4,"time":2.5,"kind":"event","level":"info","message":"m"}"#;
        let line: MetricLine = serde_json::from_str(old).unwrap();
        assert_eq!(line.wall, None);
        assert_eq!(line.to_json(), old);
        let now = wall_now();
        assert!(now > 1.7e9, "{now}");
    }

    #[test]
    fn config_and_event_lines_roundtrip() {
        for record in [
            Record::Config {
                changed: [("aid.iterations".to_string(), (0.into(), 3.into()))].into(),
                error: None,
            },
            Record::Config {
                changed: BTreeMap::new(),
                error: Some("bad".into()),
            },
            Record::Event {
                level: Level::Warn,
                message: "collapse".into(),
            },
        ] {
            let line = MetricLine {
                step: 1,
                time: 0.0,
                wall: None,
                record,
            };
            let back: MetricLine = serde_json::from_str(&line.to_json()).unwrap();
            assert_eq!(back, line);
        }
        // A valid edit that changed nothing still says `changed`.
        let nothing = MetricLine {
            step: 1,
            time: 0.0,
            wall: None,
            record: Record::Config {
                changed: BTreeMap::new(),
                error: None,
            },
        };
        assert!(
            nothing
                .to_json()
                .ends_with(r#""kind":"config","changed":{}}"#),
            "{}",
            nothing.to_json()
        );
    }
}
