//! The log's numbers as scalar series, one point per (step, series): the
//! shared view of the CSV and TensorBoard exports. Series are named like
//! TensorBoard tags: `loss/<name>`, `loss/total`, `weight/<name>`,
//! `share/<name>`, `lr`, `gpu/<field>` (CUDA runs), `meta/<field>`, `eval/<metric>`, `eval_loss/<name>`,
//! and `config/<key>` for each numeric key changed while the run trained
//! (its value from the first line, then at each change: a live edit of J
//! was invisible in the CSV).

use crate::session::metrics::{
    MetricLine, Record, EVAL_LOSS_PREFIX, EVAL_PREFIX, LOSS_PREFIX, SHARE_PREFIX, WEIGHT_PREFIX,
};

/// The series of a config key changed while the run trained.
pub const CONFIG_PREFIX: &str = "config/";

/// One value of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub step: u64,
    /// Unix seconds the line was written (absent in old logs).
    pub wall: Option<f64>,
    /// Seconds since the session started.
    pub time: f64,
    pub series: String,
    pub value: f64,
}

/// A config value as a number: numbers, and booleans as 0 and 1.
fn config_number(value: &serde_json::Value) -> Option<f64> {
    value
        .as_f64()
        .or_else(|| value.as_bool().map(|b| f64::from(u8::from(b))))
}

/// Every scalar of `lines`, in file order (transform curves and events
/// carry none; a changed numeric key's first value comes first, at the
/// first line's step: [`initial_config_points`]).
pub fn points(lines: &[MetricLine]) -> Vec<Point> {
    let mut out = initial_config_points(lines);
    for line in lines {
        out.extend(line_points(line));
    }
    out
}

/// The value each numeric key changed in `lines` had before its first
/// change, at the first line's step.
pub fn initial_config_points(lines: &[MetricLine]) -> Vec<Point> {
    let mut out = Vec::new();
    let mut first_values: Vec<(String, f64)> = Vec::new();
    for line in lines {
        if let Record::Config { changed, .. } = &line.record {
            for (key, (old, _)) in changed {
                let seen = first_values.iter().any(|(k, _)| k == key);
                if let (false, Some(old)) = (seen, config_number(old)) {
                    first_values.push((key.clone(), old));
                }
            }
        }
    }
    if let Some(first) = lines.first() {
        for (key, value) in first_values {
            out.push(Point {
                step: first.step,
                wall: first.wall,
                time: first.time,
                series: format!("{CONFIG_PREFIX}{key}"),
                value,
            });
        }
    }
    out
}

/// The scalars of one line (a config line's: its new values).
pub fn line_points(line: &MetricLine) -> Vec<Point> {
    let mut out = Vec::new();
    {
        let mut push = |series: String, value: f64| {
            out.push(Point {
                step: line.step,
                wall: line.wall,
                time: line.time,
                series,
                value,
            })
        };
        match &line.record {
            Record::Train {
                losses,
                total,
                weights,
                lr,
                shares,
                gpu,
            } => {
                for (name, v) in losses {
                    push(format!("{LOSS_PREFIX}{name}"), *v);
                }
                push(format!("{LOSS_PREFIX}total"), *total);
                for (name, v) in weights {
                    push(format!("{WEIGHT_PREFIX}{name}"), *v);
                }
                for (name, v) in shares {
                    push(format!("{SHARE_PREFIX}{name}"), *v);
                }
                push("lr".into(), *lr);
                for (series, v) in gpu.iter().flat_map(|g| g.series()) {
                    push(series.into(), v);
                }
            }
            Record::Meta {
                hypergrad_norm,
                reg,
                meta_lr,
                aid_iterations,
                gamma,
            } => {
                push("meta/hypergrad_norm".into(), *hypergrad_norm);
                push("meta/reg".into(), *reg);
                push("meta/meta_lr".into(), *meta_lr);
                push("meta/aid_iterations".into(), f64::from(*aid_iterations));
                if let Some(gamma) = gamma {
                    push("meta/gamma".into(), *gamma);
                }
            }
            Record::Eval { metrics, losses } => {
                for (name, v) in metrics {
                    push(format!("{EVAL_PREFIX}{name}"), *v);
                }
                for (name, v) in losses {
                    push(format!("{EVAL_LOSS_PREFIX}{name}"), *v);
                }
            }
            Record::Config { changed, .. } => {
                for (key, (_, new)) in changed {
                    if let Some(value) = config_number(new) {
                        push(format!("{CONFIG_PREFIX}{key}"), value);
                    }
                }
            }
            Record::Transform { .. } | Record::Event { .. } => {}
        }
    }
    out
}

/// The tidy CSV: header `session,step,wall,time,series,value`, one row a
/// point; `session` the session's id on every row (so several runs'
/// files concatenate into one table: walkthrough N added it by hand),
/// `wall` empty where the log has none, non-finite values as `NaN`/`inf`.
/// `single`: the run computed in f32, so its values that are f32s (not
/// its f64 settings, the learning rate) are written at f32's precision.
pub fn csv(session: &str, points: &[Point], single: bool) -> String {
    let session = crate::runs::render::csv_field(session);
    let mut out = String::from("session,step,wall,time,series,value\n");
    for p in points {
        let wall = p.wall.map_or(String::new(), |w| format!("{w:.6}"));
        let series = crate::runs::render::csv_field(&p.series);
        out.push_str(&format!(
            "{session},{},{wall},{},{series},{}\n",
            p.step,
            p.time,
            crate::numfmt::full_precision(p.value, single && crate::numfmt::is_single(p.value))
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(step: u64, record: Record) -> MetricLine {
        MetricLine {
            step,
            time: step as f64,
            wall: None,
            record,
        }
    }

    fn config(changes: &[(&str, serde_json::Value, serde_json::Value)]) -> Record {
        Record::Config {
            changed: changes
                .iter()
                .map(|(k, old, new)| (k.to_string(), (old.clone(), new.clone())))
                .collect(),
            error: None,
        }
    }

    /// A live edit of J (0 → 2 → 1) was invisible in the CSV (a walkthrough).
    #[test]
    fn numeric_config_changes_are_a_series_from_the_first_line() {
        let event = Record::Event {
            level: crate::session::metrics::Level::Info,
            message: "start".into(),
        };
        let lines = vec![
            line(0, event),
            line(20, config(&[("aid.iterations", 0.into(), 2.into())])),
            line(
                30,
                config(&[("aid.mode", "exact".into(), "factorized".into())]),
            ),
            line(40, config(&[("aid.iterations", 2.into(), 1.into())])),
            line(50, config(&[("train.trace", false.into(), true.into())])),
        ];
        let series = |name: &str| -> Vec<(u64, f64)> {
            points(&lines)
                .into_iter()
                .filter(|p| p.series == name)
                .map(|p| (p.step, p.value))
                .collect()
        };
        assert_eq!(
            series("config/aid.iterations"),
            [(0, 0.0), (20, 2.0), (40, 1.0)]
        );
        assert_eq!(series("config/train.trace"), [(0, 0.0), (50, 1.0)]);
        assert!(
            series("config/aid.mode").is_empty(),
            "words are not numbers"
        );
        // Line by line (TensorBoard's way) a config line gives its new values
        // only: the export wrote the old one at every change's step.
        let by_line: Vec<(String, u64, f64)> = lines[1..2]
            .iter()
            .flat_map(line_points)
            .map(|p| (p.series, p.step, p.value))
            .collect();
        assert_eq!(by_line, [("config/aid.iterations".to_string(), 20, 2.0)]);
    }
}
