//! The runs table as text (aligned columns for people, with the config keys
//! that differ between the rows), JSON (an array of objects with every
//! field and the whole config) and CSV (one row a run, every config key a
//! column), the last two for scripts and pandas.

use super::{keys, Run};
use crate::numfmt::column_value;
use std::collections::BTreeSet;

/// The fixed columns of the text table and their minimum widths (negative:
/// right-aligned).
const COLUMNS: [(&str, i32); 6] = [
    ("ID", 40),
    ("STATUS", 9),
    ("STEP", -13),
    ("PRIMARY METRIC", -18),
    ("DEVICE", 8),
    ("RUNNER", 12),
];

/// Where BEST goes: after PRIMARY METRIC.
const BEST_AT: usize = 4;

/// `accuracy↑ 81.25`: the arrow as the TUI's header and `table` show it,
/// the value to four significant digits (four decimals read `acc↑
/// 51.0000`, walkthrough Q), trailing zeros kept for the column's sake;
/// `sweep ls` and the TUI's sessions view too.
pub fn metric_text(run: &Run) -> String {
    let arrow = if run.meta.higher_is_better {
        '↑'
    } else {
        '↓'
    };
    run.metric().map_or("-".into(), |m| {
        format!("{}{arrow} {}", run.meta.primary_metric, column_value(m))
    })
}

/// `0.812 @1350`: the best primary metric and its step (written as steps
/// are everywhere else; walkthrough N read `@1,200`).
fn best_text(run: &Run) -> String {
    match (run.best_metric(), &run.best_eval) {
        (Some(m), Some((step, _))) => format!("{} @{step}", column_value(m)),
        _ => "-".into(),
    }
}

fn runner_text(run: &Run) -> String {
    run.alive_pid
        .map_or("-".into(), |pid| format!("alive pid {pid}"))
}

/// A fork's lineage: `parent@step`.
fn lineage_text(run: &Run) -> String {
    match (&run.meta.parent, run.meta.fork_step) {
        (Some(parent), Some(at)) => format!("{parent}@{at}"),
        _ => "-".into(),
    }
}

/// `step/steps`; a run that went past the steps now configured (lowered by
/// a live edit after it had gone further) says so instead of `603/100`.
pub fn progress_text(run: &Run) -> String {
    if run.step > run.steps {
        format!("{} (steps now {})", run.step, run.steps)
    } else {
        format!("{}/{}", run.step, run.steps)
    }
}

/// The device, with the ranks when several trained the run (`cpu ×2`,
/// `cpu ×2→1` after a resume on one): MELTR's outcome depends on them, and
/// `ls` did not say which sessions a plain one-process resume would change
/// (walkthrough Y).
fn device_text(r: &Run) -> String {
    let ranks = r.meta.ranks();
    match ranks.as_str() {
        "1" => r.meta.device.clone(),
        _ => format!("{} ×{ranks}", r.meta.device),
    }
}

/// A config value as `ls` shows it, `*` after it when the run changed it
/// while it trained (`ls` read `aid.iterations 1` for a run that trained
/// 294 of its 600 steps at 0: walkthroughs X and Y).
pub fn config_cell(r: &Run, key: &str) -> String {
    if keys::unread_by(r, key) {
        return "–".into();
    }
    let value = r.config.get(key).map_or("-".into(), keys::text);
    match r.edited.contains_key(key) {
        true => format!("{value}*"),
        false => value,
    }
}

/// Aligned columns: the fixed ones (with BEST, the best primary metric and
/// its step, after the final one when `with_best`: a listing sorted by it
/// showed only the final value), GROUP when any run has one, FORKED FROM
/// when any run is a fork, then one column per config key in `differing`.
pub fn text(runs: &[Run], differing: &[String], with_best: bool) -> String {
    let mut header: Vec<(String, i32)> = COLUMNS.iter().map(|(h, w)| (h.to_string(), *w)).collect();
    if with_best {
        header.insert(BEST_AT, ("BEST".into(), -6));
    }
    let with_group = runs.iter().any(|r| r.meta.group.is_some());
    if with_group {
        header.push(("GROUP".into(), 5));
    }
    let with_forks = runs.iter().any(|r| r.meta.parent.is_some());
    if with_forks {
        header.push(("FORKED FROM".into(), 11));
    }
    header.extend(differing.iter().map(|k| (k.clone(), 1)));
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let mut row = vec![
                r.meta.id.clone(),
                r.status.clone(),
                progress_text(r),
                metric_text(r),
                device_text(r),
                runner_text(r),
            ];
            if with_best {
                row.insert(BEST_AT, best_text(r));
            }
            if with_group {
                row.push(r.meta.group.clone().unwrap_or_else(|| "-".into()));
            }
            if with_forks {
                row.push(lineage_text(r));
            }
            row.extend(differing.iter().map(|k| config_cell(r, k)));
            row
        })
        .collect();
    let rows = past_shared_folders(rows, header.len() - differing.len());
    let widths: Vec<usize> = header
        .iter()
        .enumerate()
        .map(|(i, (h, min))| {
            rows.iter()
                .map(|row| row[i].chars().count())
                .chain([h.chars().count(), min.unsigned_abs() as usize])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| -> String {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let w = widths[i];
            if i > 0 {
                out.push(' ');
            }
            if header[i].1 < 0 {
                out.push_str(&format!("{cell:>w$}"));
            } else {
                out.push_str(&format!("{cell:<w$}"));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|(h, _)| h.as_str()).collect());
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    if runs
        .iter()
        .any(|r| differing.iter().any(|k| r.edited.contains_key(k)))
    {
        out.push_str(
            "* changed while the run trained: its value now; `table` writes each change as OLD→NEW@STEP\n",
        );
    }
    out
}

/// The config columns (from `first`) whose cells are all paths sharing
/// leading folders, as `…/` and what follows (an `ls` of the suite's
/// sessions read the same 33 characters of folders in every model, train
/// and val cell).
fn past_shared_folders(mut rows: Vec<Vec<String>>, first: usize) -> Vec<Vec<String>> {
    let columns = rows.first().map_or(0, Vec::len);
    for at in first..columns {
        let cells: Vec<&str> = rows.iter().map(|row| row[at].as_str()).collect();
        if let Some(cut) = keys::shared_folders(&cells) {
            for row in rows.iter_mut() {
                row[at] = keys::past_shared_folders(&row[at], cut);
            }
        }
    }
    rows
}

/// A number for JSON (non-finite: null).
fn number(v: Option<f64>) -> serde_json::Value {
    v.filter(|v| v.is_finite())
        .map_or(serde_json::Value::Null, serde_json::Value::from)
}

/// One object per run: every field of the text table, the best metric and
/// its step, and the whole config by dotted key.
pub fn json(runs: &[Run]) -> String {
    let rows: Vec<serde_json::Value> = runs
        .iter()
        .map(|r| {
            let config: serde_json::Map<String, serde_json::Value> = r
                .config
                .iter()
                .map(|(k, v)| {
                    let v = serde_json::to_value(v).unwrap_or(serde_json::Value::Null);
                    (k.clone(), v)
                })
                .collect();
            serde_json::json!({
                "id": r.meta.id,
                "name": r.meta.name,
                "group": r.meta.group,
                "status": r.status,
                "step": r.step,
                "steps": r.steps,
                "primary_metric": r.meta.primary_metric,
                "higher_is_better": r.meta.higher_is_better,
                "metric": number(r.metric()),
                "best_metric": number(r.best_metric()),
                "best_step": r.best_eval.as_ref().map(|e| e.0),
                "device": r.meta.device,
                "ranks": r.meta.ranks(),
                // A fork told apart from a seed of its parent (walkthrough D).
                "parent": r.meta.parent,
                "fork_step": r.meta.fork_step,
                "runner_pid": r.alive_pid,
                "created": r.meta.created,
                "dir": r.dir.display().to_string(),
                "config": config,
            })
        })
        .collect();
    serde_json::to_string_pretty(&rows).unwrap_or_default() + "\n"
}

/// A CSV field, quoted when it must be.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A config value in a CSV field: a list or table as JSON, which a
/// script reads back (`[rotation, shuffled]` was neither TOML nor JSON: a
/// walkthrough), anything else as listings write it.
fn csv_value(value: &toml::Value) -> String {
    match value {
        toml::Value::Array(_) | toml::Value::Table(_) => {
            serde_json::to_string(value).unwrap_or_else(|_| keys::text(value))
        }
        other => keys::text(other),
    }
}

/// One row per run: the fixed fields, then every config key (the union
/// over the runs, sorted; empty where a run lacks it).
pub fn csv(runs: &[Run]) -> String {
    let config_keys: BTreeSet<&String> = runs.iter().flat_map(|r| r.config.keys()).collect();
    let mut header: Vec<String> = [
        "id",
        "name",
        "group",
        "status",
        "step",
        "steps",
        "primary_metric",
        "higher_is_better",
        "metric",
        "best_metric",
        "best_step",
        "device",
        "ranks",
        "runner_pid",
        "created",
        "parent",
        "fork_step",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(config_keys.iter().map(|k| k.to_string()));
    let mut out = header
        .iter()
        .map(|h| csv_field(h))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    for r in runs {
        let single = r.value("train.dtype").as_deref() != Some("f64");
        let num = |v: Option<f64>| {
            v.map_or(String::new(), |v| {
                crate::numfmt::full_precision(v, single && crate::numfmt::is_single(v))
            })
        };
        let mut row = vec![
            r.meta.id.clone(),
            r.meta.name.clone(),
            r.meta.group.clone().unwrap_or_default(),
            r.status.clone(),
            r.step.to_string(),
            r.steps.to_string(),
            r.meta.primary_metric.clone(),
            r.meta.higher_is_better.to_string(),
            num(r.metric()),
            num(r.best_metric()),
            r.best_eval
                .as_ref()
                .map_or(String::new(), |e| e.0.to_string()),
            r.meta.device.clone(),
            r.meta.ranks(),
            r.alive_pid.map_or(String::new(), |p| p.to_string()),
            r.meta.created.clone(),
            r.meta.parent.clone().unwrap_or_default(),
            r.meta.fork_step.map_or(String::new(), |s| s.to_string()),
        ];
        row.extend(
            config_keys
                .iter()
                .map(|k| r.config.get(*k).map_or(String::new(), csv_value)),
        );
        out.push_str(
            &row.iter()
                .map(|c| csv_field(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_past_the_configured_steps_is_not_a_fraction() {
        let root = tempfile::tempdir().unwrap();
        let dir = crate::session::create(root.path(), "lowered", &crate::config::Config::default())
            .unwrap();
        let mut run = Run::from_meta(&dir, crate::session::SessionMeta::read(&dir).unwrap());
        run.step = 40;
        run.steps = 100;
        assert_eq!(progress_text(&run), "40/100");
        run.step = 603;
        assert_eq!(progress_text(&run), "603 (steps now 100)");
    }
}
