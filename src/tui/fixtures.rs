//! A deterministic, synthetic session (losses `primary`, `helpful`,
//! `harmful`; metric `accuracy`) for the snapshot tests and the draw
//! benchmark. Lines are generated lazily so 10^6 steps need no big vector.

use crate::config::Config;
use crate::session::metrics::{Curve, Level, MetricLine, Named, Record};
use crate::session::{SessionMeta, Status};
use std::collections::BTreeMap;

pub const LOSSES: [&str; 3] = ["primary", "helpful", "harmful"];

/// The session the fixture history belongs to.
pub fn meta(steps: u64) -> SessionMeta {
    SessionMeta {
        id: "20260101-120000-demo".into(),
        name: "demo".into(),
        created: "2026-01-01T12:00:00Z".into(),
        status: Status::Running,
        pid: 4242,
        pid_started: None,
        device: "cuda:0 (NVIDIA H100 80GB HBM3)".into(),
        libtorch: "2.11.0".into(),
        workload: "synthetic".into(),
        losses: LOSSES.iter().map(|s| s.to_string()).collect(),
        primary: "primary".into(),
        primary_metric: "accuracy".into(),
        higher_is_better: true,
        steps,
        error: None,
        group: None,
        parent: None,
        fork_step: None,
        world_size: None,
        earlier_world_sizes: Vec::new(),
        provenance: Default::default(),
    }
}

/// The config in force at the end of the fixture history (J = 3 from 40%,
/// lr = 5e-4 from 70%).
pub fn config(steps: u64) -> Config {
    let mut c = Config::default();
    c.train.steps = steps;
    c.aid.iterations = 3;
    c.train.lr = 5e-4;
    c
}

/// Deterministic noise in [-1, 1).
fn noise(step: u64, salt: u64) -> f64 {
    let mut x = step.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 31;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 29;
    (x >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

fn named(values: [f64; 3]) -> Named {
    LOSSES
        .iter()
        .zip(values)
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// Losses at `step` on a run of `total` steps (time scaled to the run).
fn losses(step: u64, total: u64) -> [f64; 3] {
    let t = step as f64 / total as f64;
    let mut primary = 2.0 * (-3.0 * t).exp() + 0.3 + 0.05 * noise(step, 1);
    if step == total * 21 / 25 {
        primary = 5.0; // a spike that decimation must keep visible
    }
    let helpful = 1.5 * (-4.0 * t).exp() + 0.2 + 0.04 * noise(step, 2);
    let harmful = 1.0 + 0.2 * (t * 25.0).sin() + 0.05 * noise(step, 3);
    [primary, helpful, harmful]
}

fn weights(step: u64, total: u64) -> [f64; 3] {
    let t = step as f64 / total as f64;
    [1.0 - 0.1 * t, 0.2 + 0.4 * t, 0.5 * (1.0 - t) - 0.05 * t]
}

fn line(step: u64, record: Record) -> MetricLine {
    MetricLine {
        step,
        time: step as f64 * 0.05,
        wall: None,
        record,
    }
}

/// Every line of a run of `total` steps, in log order: a train line per step,
/// meta every 3 steps, eval every total/10, a transform every total/5, a
/// config change at 40%, a refused edit at 60% (fixed at 70%), checkpoints
/// at 40% and 80% and a skipped non-finite step at ~51%.
pub fn lines(total: u64) -> impl Iterator<Item = MetricLine> {
    let total = total.max(10);
    (1..=total).flat_map(move |step| {
        let mut out = Vec::new();
        if step == total * 257 / 500 {
            out.push(line(
                step,
                Record::Event {
                    level: Level::Warn,
                    message: "skipped step: non-finite loss `harmful`".into(),
                },
            ));
        } else {
            let l = losses(step, total);
            let w = weights(step, total);
            let contrib: Vec<f64> = (0..3).map(|k| (w[k] * l[k]).abs()).collect();
            let sum: f64 = contrib.iter().sum();
            out.push(line(
                step,
                Record::Train {
                    losses: named(l),
                    total: (0..3).map(|k| w[k] * l[k]).sum(),
                    weights: named(w),
                    lr: 1e-3,
                    shares: named([contrib[0] / sum, contrib[1] / sum, contrib[2] / sum]),
                    gpu: None,
                },
            ));
        }
        if step % 3 == 0 {
            out.push(line(
                step,
                Record::Meta {
                    hypergrad_norm: 0.05 + 0.01 * noise(step, 4),
                    reg: 0.01,
                    meta_lr: 1e-3,
                    aid_iterations: if step >= total * 2 / 5 { 3 } else { 0 },
                    gamma: Some(0.1),
                },
            ));
        }
        if step % (total / 10) == 0 {
            let t = step as f64 / total as f64;
            let accuracy = 0.3 + 0.5 * (1.0 - (-3.0 * t).exp());
            out.push(line(
                step,
                Record::Eval {
                    metrics: [("accuracy".to_string(), accuracy)].into(),
                    losses: named(losses(step, total)),
                },
            ));
        }
        if step % (total / 5) == 0 {
            let w = weights(step, total);
            let curves: BTreeMap<String, Curve> = LOSSES
                .iter()
                .enumerate()
                .map(|(k, name)| {
                    let x: Vec<f64> = (0..=30).map(|i| i as f64 * 0.1).collect();
                    let y = x
                        .iter()
                        .map(|&x| w[k] * x + 0.15 * x * x * (k as f64 - 1.0) + 0.4)
                        .collect();
                    (name.to_string(), Curve { x, y })
                })
                .collect();
            out.push(line(step, Record::Transform { curves }));
        }
        if step == total * 2 / 5 {
            out.push(line(
                step,
                Record::Config {
                    changed: [("aid.iterations".to_string(), (0.into(), 3.into()))].into(),
                    error: None,
                },
            ));
        }
        if step == total * 2 / 5 || step == total * 4 / 5 {
            out.push(line(
                step,
                Record::Event {
                    level: Level::Info,
                    message: format!("checkpoint written at step {step}"),
                },
            ));
        }
        if step == total * 3 / 5 {
            out.push(line(
                step,
                Record::Config {
                    changed: BTreeMap::new(),
                    error: Some(CONFIG_ERROR.into()),
                },
            ));
        }
        if step == total * 7 / 10 {
            out.push(line(
                step,
                Record::Config {
                    changed: [("train.lr".to_string(), (0.001.into(), 0.0005.into()))].into(),
                    error: None,
                },
            ));
        }
        out
    })
}

/// The refused edit in the fixture history.
pub const CONFIG_ERROR: &str =
    "sessions/demo/config.toml:14: key `aid.alpha`: expected 0 < alpha <= 1, got 3";

/// The whole fixture history (the snapshot tests use 500 steps).
pub fn history(total: u64) -> Vec<MetricLine> {
    lines(total).collect()
}
