//! The log's numbers as scalar series, one point per (step, series): the
//! shared view of the CSV and TensorBoard exports. Series are named like
//! TensorBoard tags: `loss/<name>`, `loss/total`, `weight/<name>`,
//! `share/<name>`, `lr`, `gpu/<field>` (CUDA runs), `meta/<field>`, `eval/<metric>`, `eval_loss/<name>`.

use crate::session::metrics::{
    MetricLine, Record, EVAL_LOSS_PREFIX, EVAL_PREFIX, LOSS_PREFIX, SHARE_PREFIX, WEIGHT_PREFIX,
};

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

/// Every scalar of `lines`, in file order (transform curves, config and
/// event lines carry no scalars).
pub fn points(lines: &[MetricLine]) -> Vec<Point> {
    let mut out = Vec::new();
    for line in lines {
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
            Record::Transform { .. } | Record::Config { .. } | Record::Event { .. } => {}
        }
    }
    out
}

/// The tidy CSV: header `step,wall,time,series,value`, one row a point;
/// `wall` empty where the log has none, non-finite values as `NaN`/`inf`.
pub fn csv(points: &[Point]) -> String {
    let mut out = String::from("step,wall,time,series,value\n");
    for p in points {
        let wall = p.wall.map_or(String::new(), |w| format!("{w:.6}"));
        let series = crate::runs::render::csv_field(&p.series);
        out.push_str(&format!(
            "{},{wall},{},{series},{}\n",
            p.step, p.time, p.value
        ));
    }
    out
}
