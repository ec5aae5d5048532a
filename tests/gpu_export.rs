//! Issue 17 item 6, the reading side: the `gpu` field of train lines (as a
//! CUDA run writes it) reads back, a log mixing lines with and without it
//! (an older session, or NVML going away) still reads, and `export --format
//! csv` and `--format tensorboard` carry the `gpu/...` series, read back
//! here and by the `tensorboard` package. No GPU needed: the field is
//! written into a CPU session's log the way the trainer writes it.

mod common;

use common::{bin, repo, run_session, run_with_limit, small_config, text, torch_python};
use meltr_tui::session::log::read_metrics;
use meltr_tui::session::metrics::Record;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const SERIES: [&str; 4] = [
    "util",
    "mem_used_mib",
    "mem_total_mib",
    "peak_allocated_mib",
];

/// A finished CPU session whose train lines, except the first, carry a
/// `gpu` field with values that differ per step; returns its folder and
/// the expected (step, series) -> value.
fn session_with_gpu_lines(root: &Path) -> (std::path::PathBuf, BTreeMap<(u64, String), f64>) {
    let (dir, _) = run_session(root, "gpu", small_config("meltr", 40));
    let path = dir.join("metrics.jsonl");
    let mut expected = BTreeMap::new();
    let mut first_train = true;
    let rewritten: Vec<String> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut line: Value = serde_json::from_str(l).unwrap();
            if line["kind"] == "train" {
                if first_train {
                    first_train = false;
                } else {
                    let step = line["step"].as_u64().unwrap();
                    let s = step as f64;
                    let gpu = [s / 2.0, 1000.0 + s, 81559.0, 500.0 + s / 4.0];
                    for (name, v) in SERIES.iter().zip(gpu) {
                        expected.insert((step, format!("gpu/{name}")), v);
                    }
                    line["gpu"] =
                        json!(SERIES.iter().copied().zip(gpu).collect::<BTreeMap<_, _>>());
                }
            }
            line.to_string()
        })
        .collect();
    std::fs::write(&path, rewritten.join("\n") + "\n").unwrap();
    assert!(expected.len() >= 4 * 3, "{expected:?}");
    (dir, expected)
}

fn export(dir: &Path, format: &str, out: &Path) {
    let result = run_with_limit(
        bin()
            .arg("export")
            .arg(dir)
            .args(["--format", format, "--out"])
            .arg(out),
        Duration::from_secs(60),
    );
    assert!(result.status.success(), "{}", text(&result));
}

#[test]
fn gpu_fields_read_back_and_lines_without_them_still_parse() {
    let root = tempfile::tempdir().unwrap();
    let (dir, expected) = session_with_gpu_lines(root.path());
    let lines = read_metrics(&dir.join("metrics.jsonl")).unwrap().lines;
    let gpus: Vec<(u64, Option<f64>)> = lines
        .iter()
        .filter_map(|l| match &l.record {
            Record::Train { gpu, .. } => Some((l.step, gpu.map(|g| g.mem_used_mib))),
            _ => None,
        })
        .collect();
    assert_eq!(gpus.len(), 4, "{gpus:?}");
    assert_eq!(gpus[0], (10, None), "the first line has no gpu field");
    for (step, used) in &gpus[1..] {
        assert_eq!(
            *used,
            Some(expected[&(*step, "gpu/mem_used_mib".to_string())])
        );
    }
}

#[test]
fn export_csv_and_tensorboard_carry_the_gpu_series() {
    let root = tempfile::tempdir().unwrap();
    let (dir, expected) = session_with_gpu_lines(root.path());
    let id = dir.file_name().unwrap().to_str().unwrap().to_string();

    let out = tempfile::tempdir().unwrap();
    export(&dir, "csv", out.path());
    let csv = std::fs::read_to_string(out.path().join(format!("{id}.csv"))).unwrap();
    let got: BTreeMap<(u64, String), f64> = csv
        .lines()
        .skip(1)
        .map(|row| row.split(',').collect::<Vec<_>>())
        .filter(|r| r[4].starts_with("gpu/"))
        .map(|r| {
            // session, step, wall, time, series, value
            assert_eq!(r[0], id);
            (
                (r[1].parse().unwrap(), r[4].to_string()),
                r[5].parse().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);

    export(&dir, "tensorboard", out.path());
    let read = std::process::Command::new(torch_python())
        .arg(repo("tests/fixtures/read_tensorboard.py"))
        .arg(out.path().join(&id))
        .output()
        .unwrap();
    assert!(read.status.success(), "{}", text(&read));
    let tb: Value = serde_json::from_slice(&read.stdout).unwrap();
    let mut from_tb = BTreeMap::new();
    for (tag, points) in tb["scalars"].as_object().unwrap() {
        if tag.starts_with("gpu/") {
            for p in points.as_array().unwrap() {
                from_tb.insert(
                    (p[0].as_u64().unwrap(), tag.clone()),
                    p[2].as_f64().unwrap(),
                );
            }
        }
    }
    assert_eq!(from_tb.len(), expected.len(), "{from_tb:?}");
    for (key, value) in &expected {
        // Scalars are float32 in event files.
        assert_eq!(from_tb[key] as f32, *value as f32, "{key:?}");
    }
}
