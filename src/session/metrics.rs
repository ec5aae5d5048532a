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

/// The eval metric a name given to `table` or `compare` means: the bare
/// name, under the export's `eval/` or the model's own `metric/` output key
/// (walkthrough O3's `table --metric metric/codebook_usage` was refused,
/// where `workload.metric = "metric/acc"` is taken).
pub fn eval_metric_name(name: &str) -> &str {
    let model_output = crate::workload::torchscript::METRIC_PREFIX;
    name.strip_prefix(EVAL_PREFIX)
        .or_else(|| name.strip_prefix(model_output))
        .unwrap_or(name)
}

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

/// Logged steps a run's final weights are summarised over: one line's
/// weights move a lot from step to step (`final-weights.png` and `table
/// --metric weight/<loss>` take their median; the README's and the suite's
/// scripts keep their own mean of the last 10 lines, stated with their
/// tables).
pub const FINAL_WEIGHT_LINES: usize = 10;
/// ... or those of this many last steps when they are more: the ten lines
/// of the default `train.log_every` (10). A run logged every step had its
/// weights summed up over its last 10 steps, the same run at the default
/// interval over its last 100, and `table` gave the two different weights
/// (walkthrough G3: 5.28 and 5.48 for bit-identical training).
pub const FINAL_WEIGHT_STEPS: f64 = 100.0;
/// ... of those within this last fraction of the steps logged: with a
/// sparse log (`log_every` 25 in a 300-step run, a walkthrough) ten lines
/// reached back to step 75 and hid the run's end.
pub const FINAL_WEIGHT_SPAN: f64 = 0.1;

/// Each series' mean over its last [`FINAL_WEIGHT_LINES`] finite `(step,
/// value)` points (or those of its last [`FINAL_WEIGHT_STEPS`] steps, when
/// more) within the last [`FINAL_WEIGHT_SPAN`] of its steps, and the steps
/// those points span (`None` when no series has one).
pub fn final_means(series: &BTreeMap<String, Vec<(f64, f64)>>) -> Option<((f64, f64), Named)> {
    final_summaries(series, |values| {
        values.iter().sum::<f64>() / values.len() as f64
    })
}

/// The middle of `values` (the mean of the two middle ones for an even
/// count); `values` is not empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() % 2 {
        1 => sorted[mid],
        _ => (sorted[mid - 1] + sorted[mid]) / 2.0,
    }
}

/// [`final_means`] with `summarize` over each series' window of values.
fn final_summaries(
    series: &BTreeMap<String, Vec<(f64, f64)>>,
    summarize: impl Fn(&[f64]) -> f64,
) -> Option<((f64, f64), Named)> {
    let mut span: Option<(f64, f64)> = None;
    let mut means = Named::new();
    for (name, points) in series {
        let finite: Vec<&(f64, f64)> = points.iter().filter(|(_, w)| w.is_finite()).collect();
        let end = finite.last().map_or(0.0, |(end, _)| *end);
        // The last tenth of 400 steps is 361–400, not 360–400 (a
        // walkthrough's mean took in step 360, just before a collapse);
        // the last point counts whatever the span.
        let within = finite
            .partition_point(|(step, _)| *step <= end * (1.0 - FINAL_WEIGHT_SPAN))
            .min(finite.len().saturating_sub(1));
        let recent = finite.partition_point(|(step, _)| *step <= end - FINAL_WEIGHT_STEPS);
        let by_lines = finite.len().saturating_sub(FINAL_WEIGHT_LINES);
        let last = &finite[by_lines.min(recent).max(within)..];
        let (Some(first), Some(end)) = (last.first(), last.last()) else {
            continue;
        };
        let values: Vec<f64> = last.iter().map(|(_, w)| *w).collect();
        means.insert(name.clone(), summarize(&values));
        span = Some(span.map_or((first.0, end.0), |(a, b)| (a.min(first.0), b.max(end.0))));
    }
    span.map(|span| (span, means))
}

/// Each loss's effective weights without the lines where that loss was
/// exactly 0 (a masked loss's batch without it, where its weight trains
/// nothing): their final median is the weight the loss trains under, not a
/// mix of the two (walkthrough M's `weight/flag` read 0.065, 0.546 and
/// 0.061 on three lines in a row, its mean set by the batch order).
pub fn weights_where_present(
    weights: &BTreeMap<String, Vec<(f64, f64)>>,
    losses: &BTreeMap<String, Vec<(f64, f64)>>,
) -> BTreeMap<String, Vec<(f64, f64)>> {
    weights
        .iter()
        .map(|(name, points)| {
            let absent: std::collections::BTreeSet<u64> = losses
                .get(name)
                .into_iter()
                .flatten()
                .filter(|(_, l)| *l == 0.0)
                .map(|(step, _)| step.to_bits())
                .collect();
            let present = points
                .iter()
                .filter(|(step, _)| !absent.contains(&step.to_bits()))
                .copied()
                .collect();
            (name.clone(), present)
        })
        .collect()
}

/// The median over [`final_means`]' window of the weights
/// [`weights_where_present`] keeps: MELTR's weights can spike for a line or
/// two (a held-out CNN's primary weight read 0.5, 51 and 28 within 50
/// steps, and its window's mean, 16.6, was one spike, walkthrough X).
pub fn final_weight_medians(
    weights: &BTreeMap<String, Vec<(f64, f64)>>,
    losses: &BTreeMap<String, Vec<(f64, f64)>>,
) -> Option<((f64, f64), Named)> {
    final_summaries(&weights_where_present(weights, losses), median)
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
    /// `output.log` (walkthrough O could not `tail -f` its progress); the
    /// primary metric first when known (walkthrough O read `acc` before
    /// its primary `ppl`).
    pub fn eval_words(&self, primary_metric: Option<&str>) -> Option<String> {
        let first: Vec<String> = primary_metric.map(str::to_string).into_iter().collect();
        match &self.record {
            Record::Eval { metrics, .. } => Some(format!(
                "eval {:>6}  {}",
                self.step,
                crate::numfmt::named_values(metrics, &first)
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
                    // A refusal of the whole file says "refused: …" itself.
                    let error = error.strip_prefix("refused: ").unwrap_or(error);
                    rows.push((true, format!("config refused at step {step}: {error}")));
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
mod tests;
