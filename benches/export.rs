//! Export time for a 10⁶-step session (`cargo bench --bench export`).
//! Writes a synthetic session with three losses, logged every step (the
//! worst case: 10⁶ train lines) and every 10 steps (the default), then times
//! reading it and exporting every figure in SVG, PNG and PDF.
//!
//! `cargo test --all-targets` runs this too (without `--bench`): then it
//! does the same on 10⁴ steps as a quick smoke test.

use meltr_tui::plot::data::SessionData;
use meltr_tui::plot::{compare, export_session, ExportOptions, Style};
use meltr_tui::session::log::MetricsWriter;
use meltr_tui::session::metrics::{Curve, MetricLine, Named, Record};
use meltr_tui::session::{SessionMeta, Status};
use std::path::Path;
use std::time::Instant;

const LOSSES: [&str; 3] = ["retrieval", "caption", "align"];

fn named(values: [f64; 3]) -> Named {
    LOSSES.iter().map(|s| s.to_string()).zip(values).collect()
}

fn write_session(dir: &Path, steps: u64, log_every: u64) {
    std::fs::create_dir_all(dir).unwrap();
    SessionMeta {
        id: "bench".into(),
        name: format!("bench (log every {log_every})"),
        created: "2026-01-01T00:00:00Z".into(),
        status: Status::Finished,
        pid: 1,
        pid_started: None,
        device: "cpu".into(),
        libtorch: "-".into(),
        workload: "video-text".into(),
        losses: LOSSES.iter().map(|s| s.to_string()).collect(),
        primary: "retrieval".into(),
        primary_metric: "R@1".into(),
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
    .write(dir)
    .unwrap();
    let mut w = MetricsWriter::open(&dir.join("metrics.jsonl")).unwrap();
    for step in (0..=steps).step_by(log_every as usize) {
        let s = step as f64 / steps as f64;
        let jitter = ((step.wrapping_mul(2654435761) % 1000) as f64 / 1000.0 - 0.5) * 0.2;
        let losses = named([
            2.0 * (-4.0 * s).exp() + 0.3 + jitter,
            3.0 * (-2.0 * s).exp() + 0.8 + jitter,
            0.5 + jitter,
        ]);
        let weights = named([0.8 + 0.2 * s, 0.4 - 0.2 * s, 0.1 * (1.0 - s)]);
        let record = Record::Train {
            losses,
            total: 1.0,
            weights,
            lr: 1e-4,
            shares: Named::new(),
            gpu: None,
        };
        w.append(&MetricLine {
            step,
            time: step as f64 * 0.01,
            wall: None,
            record,
        })
        .unwrap();
        if step % 500 == 0 {
            let metrics: Named = [("R@1".to_string(), 40.0 * (1.0 - (-5.0 * s).exp()))].into();
            w.append(&MetricLine {
                step,
                time: 0.0,
                wall: None,
                record: Record::Eval {
                    metrics,
                    losses: Named::new(),
                },
            })
            .unwrap();
        }
    }
    let x: Vec<f64> = (0..50).map(|i| i as f64 * 0.1).collect();
    let curves = LOSSES.iter().map(|n| {
        (
            n.to_string(),
            Curve {
                x: x.clone(),
                y: x.iter().map(|v| v.sqrt()).collect(),
            },
        )
    });
    w.append(&MetricLine {
        step: steps,
        time: 0.0,
        wall: None,
        record: Record::Transform {
            curves: curves.collect(),
        },
    })
    .unwrap();
}

fn main() {
    let steps: u64 = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        10_000
    };
    let root = tempfile::tempdir().unwrap();
    for log_every in [1, 10] {
        let dir = root.path().join(format!("every-{log_every}"));
        let t = Instant::now();
        write_session(&dir, steps, log_every);
        let mb = std::fs::metadata(dir.join("metrics.jsonl")).unwrap().len() as f64 / 1e6;
        println!(
            "log_every={log_every}: wrote {} train lines ({mb:.0} MB) in {:.2}s",
            steps / log_every + 1,
            t.elapsed().as_secs_f64()
        );

        let t = Instant::now();
        SessionData::load(&dir).unwrap();
        println!(
            "  read metrics:                     {:.2}s",
            t.elapsed().as_secs_f64()
        );

        for style in [Style::Paper, Style::Slides] {
            let t = Instant::now();
            let files = export_session(
                &dir,
                &ExportOptions {
                    style,
                    ..Default::default()
                },
            )
            .unwrap()
            .files;
            println!(
                "  export {style:<6} ({} files, svg+png+pdf): {:.2}s",
                files.len(),
                t.elapsed().as_secs_f64()
            );
        }
        let t = Instant::now();
        compare(
            &[dir.clone(), dir.clone()],
            &root.path().join("compare.png"),
            Some("retrieval"),
            Style::Paper,
        )
        .unwrap();
        println!(
            "  compare 2 sessions (train loss, png): {:.2}s",
            t.elapsed().as_secs_f64()
        );
    }
}
