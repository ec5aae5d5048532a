//! The `metrics.jsonl` line format: one JSON object per line, each with
//! `step`, `kind` and `time` (seconds since the session started), plus the
//! fields of its kind. Writer and tolerant reader live in `session::log`.
//!
//! Plain data (no tensors), shared by the engine, the TUI and the plots.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Values keyed by loss or metric name, in a stable order.
pub type Named = BTreeMap<String, f64>;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricLine {
    pub step: u64,
    pub time: f64,
    #[serde(flatten)]
    pub record: Record,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Info,
    Warn,
    Error,
}

/// A line's kind and its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    /// One logged training step (every `log_every` steps).
    Train {
        losses: Named,
        total: f64,
        /// Effective weights `w_k = ∂M/∂l_k` at the step's losses.
        weights: Named,
        lr: f64,
        /// Each loss's share of the combined gradient,
        /// `w_k ∇l_k · g / |g|²` with `g = Σ w_k ∇l_k` (sums to 1).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        shares: Named,
    },
    /// One meta (hypergradient) step.
    Meta {
        hypergrad_norm: f64,
        reg: f64,
        meta_lr: f64,
        aid_iterations: u32,
    },
    /// A validation pass.
    Eval { metrics: Named, losses: Named },
    /// MELTR's transform of each loss: the combined output as that loss
    /// sweeps a range with the others held at their current values.
    Transform { curves: BTreeMap<String, Curve> },
    /// A config change (`changed`: key -> [old, new]) or a refused edit (`error`).
    Config {
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        changed: BTreeMap<String, (serde_json::Value, serde_json::Value)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// Checkpoints, skipped non-finite steps, MELTR collapse, resume, ...
    Event { level: Level, message: String },
}

/// A sampled curve: `y[i]` is the combined loss at `x[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

impl MetricLine {
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

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("metric lines always serialise")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_line_has_contract_fields() {
        let line = MetricLine {
            step: 7,
            time: 1.5,
            record: Record::Train {
                losses: [("primary".to_string(), 0.5)].into(),
                total: 0.5,
                weights: [("primary".to_string(), 1.0)].into(),
                lr: 1e-3,
                shares: Named::new(),
            },
        };
        let v: serde_json::Value = serde_json::from_str(&line.to_json()).unwrap();
        assert_eq!(v["step"], 7);
        assert_eq!(v["kind"], "train");
        assert_eq!(v["time"], 1.5);
        assert_eq!(v["losses"]["primary"], 0.5);
        assert!(v.get("shares").is_none());
        let back: MetricLine = serde_json::from_str(&line.to_json()).unwrap();
        assert_eq!(back, line);
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
                record,
            };
            let back: MetricLine = serde_json::from_str(&line.to_json()).unwrap();
            assert_eq!(back, line);
        }
    }
}
