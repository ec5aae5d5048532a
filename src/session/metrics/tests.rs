//! Tests of the metrics log's lines and the final means.

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
    assert_eq!(means["dense"], 0.95, "the last 100 steps' lines");
    assert_eq!(means["fallen"], 0.0, "steps 370-400, after step 360");
    assert_eq!(span, (275.0, 1000.0));
    // One run logged every step and every 10 steps: the same window.
    let every = |interval: usize| {
        let points: Vec<(f64, f64)> = (1..=600)
            .step_by(interval)
            .map(|step| (step as f64 + interval as f64 - 1.0, step as f64))
            .collect();
        final_means(&BTreeMap::from([("w".to_string(), points)])).unwrap()
    };
    let ((from_1, to_1), _) = every(1);
    let ((from_10, to_10), _) = every(10);
    assert_eq!((to_1, to_10), (600.0, 600.0));
    assert!(
        from_1 <= from_10 && from_10 - from_1 < 10.0,
        "{from_1} {from_10}"
    );
    let single = BTreeMap::from([("single".to_string(), vec![(0.0, 0.25)])]);
    let (span, means) = final_means(&single).unwrap();
    assert_eq!(
        (span, means["single"]),
        ((0.0, 0.0), 0.25),
        "a lone point is its own end"
    );
}

/// One line's spike sets a mean but not the final weight (walkthrough X's
/// primary read 0.5, 51 and 28 within 50 steps; its mean read 16.6).
#[test]
fn final_weights_are_the_median_of_the_window() {
    // Every 10 steps to 1000: the window is the last ten lines, 910-1000.
    let steps = (1..=100).map(|i| 10.0 * i as f64);
    let spiky: Vec<(f64, f64)> = steps
        .clone()
        .map(|s| (s, if s == 950.0 || s == 980.0 { 51.0 } else { 0.5 }))
        .collect();
    let rising: Vec<(f64, f64)> = steps.clone().map(|s| (s, s / 1000.0)).collect();
    let losses: BTreeMap<String, Vec<(f64, f64)>> = ["spiky", "rising"]
        .map(|name| (name.to_string(), steps.clone().map(|s| (s, 1.0)).collect()))
        .into();
    let weights = BTreeMap::from([
        ("spiky".to_string(), spiky.clone()),
        ("rising".to_string(), rising.clone()),
    ]);
    let (span, medians) = final_weight_medians(&weights, &losses).unwrap();
    assert_eq!(span, (910.0, 1000.0));
    assert_eq!(medians["spiky"], 0.5, "two spikes of ten");
    assert!((medians["rising"] - 0.955).abs() < 1e-12, "{medians:?}");
    let (_, means) = final_means(&weights).unwrap();
    assert!((means["spiky"] - 10.6).abs() < 1e-12, "{means:?}");
    assert_eq!(median(&[4.0, 1.0, 2.0, 100.0]), 3.0);
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

/// Walkthrough M's masked `flag`: its weight on the lines where it was 0
/// (its batch had none of it) trained nothing, and moved the final mean
/// with the batch order. Those lines are left out; a loss never 0 keeps
/// every line.
#[test]
fn final_weights_leave_out_the_lines_where_the_loss_was_zero() {
    let steps = [370.0, 380.0, 390.0, 400.0];
    let flag_losses = [0.0, 1.4, 0.0, 1.5];
    let flag_weights = [0.065, 0.546, 0.061, 0.552];
    let weights = BTreeMap::from([
        (
            "flag".to_string(),
            steps.iter().copied().zip(flag_weights).collect::<Vec<_>>(),
        ),
        ("cls".to_string(), steps.iter().map(|&s| (s, 0.3)).collect()),
    ]);
    let losses = BTreeMap::from([
        (
            "flag".to_string(),
            steps.iter().copied().zip(flag_losses).collect::<Vec<_>>(),
        ),
        ("cls".to_string(), steps.iter().map(|&s| (s, 1.1)).collect()),
    ]);
    let (_, means) = final_means(&weights_where_present(&weights, &losses)).unwrap();
    assert!((means["flag"] - 0.549).abs() < 1e-12, "{means:?}");
    assert!((means["cls"] - 0.3).abs() < 1e-12, "{means:?}");
}

/// `table` and `compare` take an eval metric by its bare name, under the
/// export's `eval/`, or under the model's own `metric/` output key
/// (walkthrough O3's `table --metric metric/codebook_usage` was refused).
#[test]
fn an_eval_metric_is_named_bare_or_under_either_prefix() {
    for name in ["acc", "eval/acc", "metric/acc"] {
        assert_eq!(eval_metric_name(name), "acc", "{name}");
    }
    assert_eq!(eval_metric_name("weight/acc"), "weight/acc");
}
