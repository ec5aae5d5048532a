//! The per-session figures' series and labels.

use super::*;
use crate::session::metrics::Curve;

/// Losses of different sizes (0.03 and 5) shared one x axis, the small
/// one's curve crowded into x = 0; each is now drawn over 0..2 of its
/// own value at the step, the run's point at 1: the point of the step the
/// curves were taken at, not of a later logged line (a walkthrough's
/// running session put it at 0.73, step 2470's loss over step 2450's).
#[test]
fn transform_curves_of_losses_of_different_sizes_share_the_x_range() {
    let root = tempfile::tempdir().unwrap();
    let mut config = crate::config::Config::default();
    config.workload.primary = "big".into();
    config.workload.auxiliary = vec!["small".into(), "nll".into()];
    let dir = crate::session::create(root.path(), "t", &config).unwrap();
    let metrics = crate::session::SessionDir::new(&dir).metrics();
    std::fs::write(
        &metrics,
        "{\"step\":50,\"time\":0.1,\"kind\":\"train\",\"losses\":{\"big\":4.0,\"small\":0.02},\
         \"total\":4.02,\"weights\":{\"big\":1.0,\"small\":1.0},\"lr\":0.001}\n",
    )
    .unwrap();
    let mut data = SessionData::load(&dir).unwrap();
    let curve = |current: f64| Curve {
        x: (0..=4).map(|i| current * i as f64 / 2.0).collect(),
        y: (0..=4).map(|i| i as f64).collect(),
    };
    data.transform = Some((
        40,
        [
            ("big".to_string(), curve(5.0)),
            ("small".to_string(), curve(0.03)),
            // A loss below 0 is swept from 0 down to twice its value
            // (walkthrough H1's negative log-likelihood was left out).
            ("nll".to_string(), curve(-1.4)),
        ]
        .into_iter()
        .collect(),
    ));
    let figure = transforms(&data).unwrap();
    let Body::Lines(lines) = figure.chart.body else {
        panic!("transforms draws lines");
    };
    for line in &lines {
        let xs: Vec<f64> = line.points.iter().map(|p| p.0).collect();
        match &line.label {
            Some(_) => assert!(
                xs.iter()
                    .zip([0.0, 0.5, 1.0, 1.5, 2.0])
                    .all(|(x, want)| (x - want).abs() < 1e-12),
                "{:?}: {xs:?}",
                line.label
            ),
            None => assert_eq!(xs, [1.0], "the run's point"),
        }
    }
    assert_eq!(lines.len(), 6, "three curves and their points");
    let labels = |data: &SessionData| -> Vec<String> {
        let Body::Lines(lines) = transforms(data).unwrap().chart.body else {
            panic!("transforms draws lines");
        };
        lines.into_iter().filter_map(|l| l.label).collect()
    };
    assert_eq!(labels(&data), ["big (primary)", "small", "nll"]);
    // `small` exactly 0 at the curves' step (a masked loss's batch without
    // it): its curve is about the value the trainer held, said so
    // (walkthrough P's `conc`).
    std::fs::write(
        &metrics,
        "{\"step\":40,\"time\":0.1,\"kind\":\"train\",\"losses\":{\"big\":4.0,\"small\":0.0},\
         \"total\":4.0,\"weights\":{\"big\":1.0,\"small\":1.0},\"lr\":0.001}\n",
    )
    .unwrap();
    let transform = data.transform.take();
    let mut data = SessionData::load(&dir).unwrap();
    data.transform = transform;
    assert_eq!(
        labels(&data),
        [
            "big (primary)",
            "small (0 at the step; held at 0.03)",
            "nll"
        ]
    );
}

/// The final weights' window says a collapse restore inside it; the
/// primary's bar reads as the legends read it.
#[test]
fn final_weights_say_a_restore_in_their_window() {
    let root = tempfile::tempdir().unwrap();
    let config = crate::config::Config::default();
    let primary = config.workload.primary.clone();
    let dir = crate::session::create(root.path(), "r", &config).unwrap();
    let lines: String = (1..=100)
        .map(|step| {
            format!(
                "{{\"step\":{step},\"time\":0.1,\"kind\":\"train\",\"losses\":{{\"{primary}\":1.0,\"aux\":2.0}},\
                 \"total\":1.0,\"weights\":{{\"{primary}\":1.0,\"aux\":0.5}},\"lr\":0.001}}\n"
            )
        })
        .collect();
    std::fs::write(crate::session::SessionDir::new(&dir).metrics(), lines).unwrap();
    let mut data = SessionData::load(&dir).unwrap();
    let Body::Bars(bars) = final_weights(&data).unwrap().chart.body else {
        panic!("final weights draws bars");
    };
    let categories: Vec<&str> = bars.iter().map(|b| b.category.as_str()).collect();
    // The default primary is named `primary`: not marked twice.
    assert_eq!(primary, "primary");
    assert_eq!(categories, ["primary", "aux"]);
    let label = |data: &SessionData| final_weights(data).unwrap().chart.x_label;
    assert_eq!(
        label(&data),
        "loss (median of the last logged steps, 91–100)"
    );
    for (x, label) in [(80.0, "restore"), (95.0, "aid.alpha"), (96.0, "restore")] {
        data.marks.push(crate::plot::chart::Mark {
            x,
            label: label.into(),
        });
    }
    assert_eq!(
        label(&data),
        "loss (median over steps 91–100, across a φ restore)"
    );
}

/// A fork's best is from its fork step on, as `ls` and `table` read it
/// (walkthrough B: its figure said its parent's best, before the fork).
#[test]
fn a_forks_metric_figure_marks_its_own_best() {
    let root = tempfile::tempdir().unwrap();
    let config = crate::config::Config::default();
    let dir = crate::session::create(root.path(), "f", &config).unwrap();
    let train = "{\"step\":1,\"time\":0.1,\"kind\":\"train\",\"losses\":{\"a\":1.0},\"total\":1.0,\"weights\":{\"a\":1.0},\"lr\":0.001}\n";
    std::fs::write(crate::session::SessionDir::new(&dir).metrics(), train).unwrap();
    let mut data = SessionData::load(&dir).unwrap();
    let name = data.meta.primary_metric.clone();
    data.meta.higher_is_better = true;
    data.metrics.insert(
        name,
        vec![(100.0, 0.9), (200.0, 0.5), (300.0, 48.97 / 81.0)],
    );
    let prep = || Prep {
        smoothing: crate::plot::series::Smoothing::Auto,
        columns: 800,
    };
    let best = |data: &SessionData| {
        let figure = metric(data, prep()).unwrap();
        let Body::Lines(lines) = figure.chart.body else {
            panic!("the metric figure draws lines");
        };
        lines
            .iter()
            .filter_map(|l| l.label.clone())
            .find(|l| l.starts_with("best"))
    };
    assert_eq!(best(&data).as_deref(), Some("best 0.9 (step 100)"));
    data.meta.fork_step = Some(150);
    assert_eq!(
        best(&data).as_deref(),
        Some("best since the fork 0.6046 (step 300)")
    );
    // No eval of its own yet: the curve, without a best.
    data.meta.fork_step = Some(400);
    assert_eq!(best(&data), None);
}

/// A run that skipped every update had evals and no train line, and its
/// group's figure was refused as "no training steps logged yet"
/// (walkthrough D): evals alone load and draw their metric.
#[test]
fn a_session_with_evals_and_no_train_line_draws_its_metric() {
    let root = tempfile::tempdir().unwrap();
    let config = crate::config::Config::default();
    let dir = crate::session::create(root.path(), "e", &config).unwrap();
    let metrics = crate::session::SessionDir::new(&dir).metrics();
    std::fs::write(&metrics, "").unwrap();
    let refused = SessionData::load(&dir).err().unwrap().to_string();
    assert!(
        refused.contains("has no train or eval line yet"),
        "{refused}"
    );
    let metric_name = crate::session::SessionMeta::read(&dir)
        .unwrap()
        .primary_metric;
    let eval = format!(
        "{{\"step\":50,\"time\":0.1,\"kind\":\"eval\",\"metrics\":{{\"{metric_name}\":0.5}},\"losses\":{{}}}}\n"
    );
    std::fs::write(&metrics, &eval).unwrap();
    let data = SessionData::load(&dir).unwrap();
    let prep = Prep {
        smoothing: crate::plot::series::Smoothing::Auto,
        columns: 800,
    };
    assert!(metric(&data, prep).is_some());
    // No empty losses figure: it is said as skipped.
    let (figures, skipped) = session_figures(&data, prep, LossAxis::Auto);
    assert!(figures.iter().all(|f| f.name != "losses"));
    assert!(
        skipped.contains(&"losses: no train lines logged".to_string()),
        "{skipped:?}"
    );
    // A metric NaN at every evaluation (null in the log) draws no empty
    // figure, unsaid (walkthrough W's blank metric.png): it is skipped.
    let nan = eval.replace("0.5", "null");
    std::fs::write(
        &metrics,
        format!("{nan}{}", nan.replace("\"step\":50", "\"step\":100")),
    )
    .unwrap();
    let data = SessionData::load(&dir).unwrap();
    assert!(metric(&data, prep).is_none());
    let (_, skipped) = session_figures(&data, prep, LossAxis::Auto);
    assert!(
        skipped.contains(&format!(
            "metric: '{metric_name}' is NaN or inf at every evaluation"
        )),
        "{skipped:?}"
    );
}

/// Walkthrough O's perplexity peaked at 600,000: lower-is-better metrics
/// spanning more than two decades get a log axis; scores stay linear.
#[test]
fn a_metric_spanning_decades_is_drawn_on_a_log_axis_when_lower_is_better() {
    let ppl: Points = vec![
        (50.0, 229.4),
        (100.0, 600_000.0),
        (150.0, 20.0),
        (500.0, 7.1),
    ];
    assert_eq!(super::super::loss_axis::metric_axis(&ppl, false), Kind::Log);
    assert_eq!(
        super::super::loss_axis::metric_axis(&ppl, true),
        Kind::Linear
    );
    let near: Points = vec![(50.0, 12.0), (100.0, 9.0), (500.0, 7.1)];
    assert_eq!(
        super::super::loss_axis::metric_axis(&near, false),
        Kind::Linear
    );
    let with_zero: Points = vec![(50.0, 0.0), (100.0, 900.0)];
    assert_eq!(
        super::super::loss_axis::metric_axis(&with_zero, false),
        Kind::Linear
    );
}
