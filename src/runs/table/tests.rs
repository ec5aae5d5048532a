//! `meltr-tui table`'s rendering, on runs made in temporary folders.

use super::*;

/// The Markdown table of `groups` with the default options.
pub(super) fn markdown(groups: &[Group]) -> String {
    let options = TableOptions::default();
    render(groups, &options).unwrap()
}

/// A session of `config` under `root` whose `metrics.jsonl` is `log`, as
/// a run whose primary metric is `accuracy` (higher is better).
pub(super) fn accuracy_run(
    root: &std::path::Path,
    name: &str,
    config: &crate::config::Config,
    log: &str,
) -> Run {
    let dir = crate::session::create(root, name, config).unwrap();
    std::fs::write(dir.join("metrics.jsonl"), log).unwrap();
    let mut run = Run::load(&dir).unwrap();
    run.meta.primary_metric = "accuracy".into();
    run.meta.higher_is_better = true;
    run
}

/// The Markdown table of accuracy runs `(meltr.gamma, final accuracy)`,
/// grouped by γ.
fn by_gamma(runs_of: &[(f64, f64)]) -> String {
    let higher: Vec<(f64, f64, bool)> = runs_of.iter().map(|&(g, a)| (g, a, true)).collect();
    by_gamma_and_direction(&higher)
}

/// As [`by_gamma`], each run with its own `higher_is_better`.
fn by_gamma_and_direction(runs_of: &[(f64, f64, bool)]) -> String {
    let root = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (i, &(gamma, accuracy, higher)) in runs_of.iter().enumerate() {
        let mut config = crate::config::Config::default();
        config.meltr.gamma = gamma;
        let mut run = accuracy_run(root.path(), &format!("r{i}"), &config, "");
        run.final_eval = Some((10, [("accuracy".to_string(), accuracy)].into()));
        run.meta.higher_is_better = higher;
        runs.push(run);
    }
    let groups = super::super::groups::gather(
        &runs,
        &super::super::groups::GroupBy::Keys(vec!["meltr.gamma".into()]),
    )
    .unwrap();
    markdown(&groups)
}

/// One n=1 row (no std) switched the whole column from 2 decimals to 4.
#[test]
fn a_single_run_row_does_not_set_the_columns_decimals() {
    let text = by_gamma(&[(0.1, 85.0), (0.1, 85.6), (0.1, 84.9), (0.3, 86.0)]);
    assert!(text.contains("| 0.1 | 3 | 85.17 ± 0.38 |"), "{text}");
    assert!(text.contains("| 0.3 | 1 | **86.00** |"), "{text}");
}

/// Each cell's decimals follow its own std: one tight row read the
/// column's other means to five decimals (`0.66075 ± 0.52452`, walkthrough
/// G); a single run takes the column's coarsest.
#[test]
fn each_mean_shows_its_own_std_to_two_digits() {
    let text = by_gamma(&[
        (0.1, 0.2),
        (0.1, 1.2),
        (0.1, 0.58),
        (0.3, 0.7201),
        (0.3, 0.7202),
        (1.0, 0.1),
    ]);
    // (0.66 is within noise of the best, 0.72015: bold too.)
    assert!(text.contains("| 0.1 | 3 | **0.66 ± 0.50** |"), "{text}");
    assert!(
        text.contains("| 0.3 | 2 | **0.720150 ± 0.000071** |"),
        "{text}"
    );
    assert!(text.contains("| 1.0 | 1 | 0.10 |"), "{text}");
}

/// A table of single runs read `67.7000` (a walkthrough's n = 1 rows):
/// with no std to go by, four significant digits of the largest mean.
#[test]
fn a_column_of_single_runs_shows_four_significant_digits() {
    let text = by_gamma(&[(0.1, 67.7), (0.3, 8.25)]);
    assert!(text.contains("| 0.1 | 1 | **67.70** |"), "{text}");
    assert!(text.contains("| 0.3 | 1 | 8.25 |"), "{text}");
}

/// Two rows with the best mean as printed are both bold (a walkthrough
/// saw only the first of two 67.9s marked).
#[test]
fn tied_best_means_are_all_bold() {
    let root = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (kind, accuracy) in [("meltr", 67.9), ("sum", 67.900_000_1), ("primary", 57.7)] {
        let mut config = crate::config::Config::default();
        config.combiner.kind = kind.parse().unwrap();
        let mut run = accuracy_run(root.path(), kind, &config, "");
        run.final_eval = Some((10, [("accuracy".to_string(), accuracy)].into()));
        runs.push(run);
    }
    let groups =
        super::super::groups::gather(&runs, &super::super::groups::GroupBy::Seeds).unwrap();
    let text = markdown(&groups);
    assert!(text.contains("| meltr | 1 | **67.90** |"), "{text}");
    assert!(text.contains("| sum | 1 | **67.90** |"), "{text}");
    assert!(text.contains("| primary | 1 | 57.70 |"), "{text}");
    // When every row ties, none is the best.
    let two =
        super::super::groups::gather(&runs[..2], &super::super::groups::GroupBy::Seeds).unwrap();
    assert!(!markdown(&two).contains("**"), "{}", markdown(&two));
}

/// A fork's row read like a second group with the same settings.
#[test]
fn a_forks_row_says_what_it_was_forked_from() {
    let root = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (name, kind) in [("m0", "meltr"), ("s0", "sum"), ("m0-fork", "meltr")] {
        let mut config = crate::config::Config::default();
        config.combiner.kind = kind.parse().unwrap();
        let dir = crate::session::create(root.path(), name, &config).unwrap();
        let mut run = Run::load(&dir).unwrap();
        run.meta.primary_metric = "accuracy".into();
        run.final_eval = Some((10, [("accuracy".to_string(), 80.0)].into_iter().collect()));
        runs.push(run);
    }
    runs[2].meta.parent = Some(runs[0].meta.id.clone());
    runs[2].meta.fork_step = Some(200);
    let groups =
        super::super::groups::gather(&runs, &super::super::groups::GroupBy::Seeds).unwrap();
    let text = markdown(&groups);
    assert!(
        text.starts_with("| combiner.kind | forked from | n |"),
        "{text}"
    );
    assert!(text.contains("| meltr | - | 1 |"), "{text}");
    assert!(text.contains("| meltr | m0@200 | 1 |"), "{text}");
    // Beside its own parent run, with the difference (a walkthrough's fork
    // was bold above its parent's group and below its parent).
    runs[2].final_eval = Some((10, [("accuracy".to_string(), 77.5)].into_iter().collect()));
    let groups =
        super::super::groups::gather(&runs, &super::super::groups::GroupBy::Seeds).unwrap();
    let text = markdown(&groups);
    assert!(
        text.contains("each fork beside its own parent run on accuracy: m0-fork 77.50, its parent m0 80.00 (-2.50)"),
        "{text}"
    );
    // A parent whose name another run has too is named by its id (four
    // sessions named `cnn` left "cnn@200" to guess: a walkthrough).
    runs[1].meta.name = "m0".into();
    let groups =
        super::super::groups::gather(&runs, &super::super::groups::GroupBy::Seeds).unwrap();
    let text = markdown(&groups);
    assert!(
        text.contains(&format!("| meltr | {}@200 | 1 |", runs[0].meta.id)),
        "{text}"
    );
}

/// `table --metric eval_loss/cls_ce` said the session had no such
/// metric, though its eval lines hold the validation losses (and the
/// CSV export names them so); without --metric they stay out.
#[test]
fn validation_losses_are_columns_when_asked_for() {
    use crate::session::log::MetricsWriter;
    use crate::session::metrics::MetricLine;
    let root = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (name, kind, loss) in [("m", "meltr", 0.5), ("s", "sum", 0.7)] {
        let mut config = crate::config::Config::default();
        config.combiner.kind = kind.parse().unwrap();
        let dir = crate::session::create(root.path(), name, &config).unwrap();
        let mut w = MetricsWriter::open(&dir.join("metrics.jsonl")).unwrap();
        w.append(&MetricLine {
            step: 10,
            time: 1.0,
            wall: None,
            record: crate::session::metrics::Record::Eval {
                metrics: [("accuracy".to_string(), 80.0)].into(),
                losses: [("cls".to_string(), loss), ("aux".to_string(), 1.0 - loss)].into(),
            },
        })
        .unwrap();
        let mut run = Run::load(&dir).unwrap();
        run.meta.primary_metric = "accuracy".into();
        run.meta.higher_is_better = true;
        run.meta.primary = "cls".into();
        runs.push(run);
    }
    let groups =
        super::super::groups::gather(&runs, &super::super::groups::GroupBy::Seeds).unwrap();
    assert!(!markdown(&groups).contains("eval_loss"));
    let options = TableOptions {
        metrics: vec!["eval_loss/cls".into(), "eval_loss/aux".into()],
        ..Default::default()
    };
    let text = render(&groups, &options).unwrap();
    // The primary's loss is lower-is-better; an auxiliary's has no best (a
    // harmful auxiliary's lower loss is no better run).
    assert!(
        text.contains("| eval_loss/cls ↓ | eval_loss/aux |"),
        "{text}"
    );
    assert!(
        text.contains("| meltr | 1 | **0.5000** | 0.5000 |"),
        "{text}"
    );
    assert!(text.contains("| sum | 1 | 0.7000 | 0.3000 |"), "{text}");
}

/// A walkthrough: "which loss does MELTR weigh least, over seeds" had
/// no command; `weight/<loss>` columns give each run's final weight
/// (the mean of its last 10 logged), with neither arrow nor bold.
#[test]
fn final_weights_are_columns_when_asked_for() {
    let root = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (seed, harmful, share) in [(0, 0.2, 0.75), (1, 0.4, 0.65)] {
        let mut config = crate::config::Config::default();
        config.workload.seed = seed;
        // 15 lines: the first 5 (weight 9) fall outside the last 10.
        let mut log: String = (1..=15u64)
            .map(|step| {
                let w = if step <= 5 { 9.0 } else { harmful };
                format!(
                    r#"{{"step":{step},"time":1.0,"kind":"train","losses":{{"primary":1.0,"harmful":1.0}},"total":2.0,"weights":{{"primary":1.5,"harmful":{w}}},"shares":{{"harmful":{share}}},"lr":0.001}}"#
                ) + "\n"
            })
            .collect();
        log.push_str(
            r#"{"step":15,"time":1.0,"kind":"eval","metrics":{"accuracy":80.0},"losses":{}}"#,
        );
        runs.push(accuracy_run(root.path(), "m", &config, &(log + "\n")));
    }
    let groups =
        super::super::groups::gather(&runs, &super::super::groups::GroupBy::Seeds).unwrap();
    let options = TableOptions {
        metrics: vec![
            "accuracy".into(),
            "weight/harmful".into(),
            "share/harmful".into(),
        ],
        digits: Some(2),
        ..Default::default()
    };
    let text = render(&groups, &options).unwrap();
    assert!(
        text.contains("| accuracy ↑ | weight/harmful | share/harmful |"),
        "{text}"
    );
    assert!(
        text.contains("| 2 | 80.00 ± 0.00 | 0.30 ± 0.14 | 0.70 ± 0.07 |"),
        "{text}"
    );
    assert!(text.contains("share/<loss>: the loss's share"), "{text}");
    assert!(
        text.contains(
            "combined gradient, mean of each run's values logged in its last 10% of steps (the last 10, or those of the last 100 steps when more)"
        ),
        "{text}"
    );
    assert!(text.contains("\nfinal eval; weight/<loss>"), "{text}");
    assert!(!text.contains("one logged value"), "{text}");
    // Weights alone come from training lines: no "final eval" (walkthrough M).
    let weights_only = TableOptions {
        metrics: vec!["weight/harmful".into()],
        ..options.clone()
    };
    let text = render(&groups, &weights_only).unwrap();
    assert!(
        text.contains("\nweight/<loss>: the effective weight")
            && text.contains("exactly 0), median of each run's values"),
        "{text}"
    );
    assert!(!text.contains("final eval"), "{text}");
    // Nothing is bold in a column with no better direction: not said.
    assert!(!text.contains("bold:"), "{text}");
    // `eval/<metric>` as the CSV export names it; `loss/<loss>`, the final
    // training loss, averaged as the weights are (walkthrough N).
    let as_exported = TableOptions {
        metrics: vec!["eval/accuracy".into(), "loss/harmful".into()],
        ..options.clone()
    };
    let text = render(&groups, &as_exported).unwrap();
    assert!(
        text.contains("| accuracy ↑ | loss/harmful |")
            && text.contains("| 80.00 ± 0.00 | 1.00 ± 0.00 |"),
        "{text}"
    );
    assert!(
        text.contains("loss/<loss>: the training loss, mean of each run's values"),
        "{text}"
    );
    let missing = |metric: &str| {
        let options = TableOptions {
            metrics: vec![metric.into()],
            ..options.clone()
        };
        render(&groups, &options).unwrap_err().to_string()
    };
    let error = missing("weight/mlm");
    assert!(
        error.contains(
            "has no loss `mlm` with logged effective weights; it has: weight/harmful, weight/primary"
        ),
        "{error}"
    );
    let error = missing("share/primary");
    assert!(
        error.contains("has no loss `primary` with logged gradient shares; it has: share/harmful"),
        "{error}"
    );
}

/// Only the primary metric had an arrow and a bold best (walkthrough:
/// a paper table needed hand edits).
#[test]
fn every_metric_column_gets_its_direction_and_best() {
    let root = tempfile::tempdir().unwrap();
    let mut runs = Vec::new();
    for (name, kind, r2, mse) in [("m", "meltr", 0.9, 0.3), ("s", "sum", 0.8, 0.2)] {
        let mut config = crate::config::Config::default();
        config.combiner.kind = kind.parse().unwrap();
        let dir = crate::session::create(root.path(), name, &config).unwrap();
        let mut run = Run::load(&dir).unwrap();
        run.meta.primary_metric = "r2".into();
        run.meta.higher_is_better = true;
        let metrics = [("r2".to_string(), r2), ("val_mse".to_string(), mse)];
        run.final_eval = Some((10, metrics.into_iter().collect()));
        runs.push(run);
    }
    let groups =
        super::super::groups::gather(&runs, &super::super::groups::GroupBy::Seeds).unwrap();
    let text = markdown(&groups);
    assert!(
        text.starts_with("| combiner.kind | n | r2 ↑ | val_mse ↓ |"),
        "{text}"
    );
    assert!(
        text.contains("| meltr | 1 | **0.9000** | 0.3000 |"),
        "{text}"
    );
    assert!(text.contains("| sum | 1 | 0.8000 | **0.2000** |"), "{text}");
}

/// A group of two workloads failed on the second's metric ("session … has
/// no metric `primary_mse`"): said as different primary metrics, by
/// session, unless a metric is named.
#[test]
fn runs_of_different_workloads_are_said_to_be_so() {
    let root = tempfile::tempdir().unwrap();
    let config = crate::config::Config::default();
    let mut runs = Vec::new();
    for (name, metric) in [("a", "accuracy"), ("b", "primary_mse")] {
        let mut run = accuracy_run(root.path(), name, &config, "");
        run.meta.primary_metric = metric.into();
        run.final_eval = Some((
            10,
            [(metric.to_string(), 1.0), ("shared".to_string(), 2.0)].into(),
        ));
        runs.push(run);
    }
    let groups =
        super::super::groups::gather(&runs, &super::super::groups::GroupBy::Keys(vec![])).unwrap();
    let error = render(&groups, &TableOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("these sessions have different primary metrics")
            && error.contains(&format!("`accuracy` (1 session: {})", runs[0].meta.id))
            && error.contains(&format!("`primary_mse` (1 session: {})", runs[1].meta.id)),
        "{error}"
    );
    let named = TableOptions {
        metrics: vec!["shared".into()],
        ..Default::default()
    };
    assert!(render(&groups, &named).unwrap().contains("shared"));
}

/// A corrupt line in the middle of a log listed the run at step 0 and
/// `table` said it had "no eval line (it is at step 0)" (a walkthrough).
#[test]
fn a_log_that_does_not_read_is_named_with_its_line() {
    let root = tempfile::tempdir().unwrap();
    let config = crate::config::Config::default();
    let eval = r#"{"step":20,"time":1.0,"kind":"eval","metrics":{"accuracy":0.5},"losses":{}}"#;
    let run = accuracy_run(
        root.path(),
        "corrupt",
        &config,
        &format!("{eval}\nnot json\n{eval}\n"),
    );
    let error = run.log_error.clone().expect("the log does not read");
    assert!(error.contains("metrics.jsonl:2"), "{error}");
    let message = chosen(&run, false).unwrap_err().to_string();
    assert!(
        message.contains("log does not read") && message.contains("metrics.jsonl:2"),
        "{message}"
    );
    // A log that reads has no error.
    let fine = accuracy_run(root.path(), "fine", &config, &format!("{eval}\n"));
    assert!(fine.log_error.is_none());
    assert!(chosen(&fine, false).is_ok());
}

/// A column of zeros from f32 weights (`-0.0`) read `-0.0000 ± 0.0000`
/// (walkthrough K: `share/recon` of the `primary` combiner).
#[test]
fn a_negative_zero_mean_reads_as_zero() {
    let text = by_gamma(&[(0.1, -0.0), (0.1, -0.0), (0.3, 0.5), (0.3, 0.6)]);
    assert!(text.contains("| 0.1 | 2 | 0.000 ± 0.000 |"), "{text}");
    assert!(!text.contains("-0.0"), "{text}");
}

/// A group with a seed whose primary metric was never finite was refused
/// whole by `table --best` ("has no eval line with a finite accuracy"),
/// while the plain table showed it as NaN.
#[test]
fn best_reads_a_never_finite_run_at_its_last_eval() {
    let root = tempfile::tempdir().unwrap();
    let config = crate::config::Config::default();
    let runs: Vec<Run> = [80.0, f64::NAN]
        .iter()
        .enumerate()
        .map(|(seed, &accuracy)| {
            let mut run = accuracy_run(root.path(), &format!("s{seed}"), &config, "");
            let eval: Eval = (10, [("accuracy".to_string(), accuracy)].into());
            run.best_eval = accuracy.is_finite().then(|| eval.clone());
            run.final_eval = Some(eval);
            run
        })
        .collect();
    let groups =
        super::super::groups::gather(&runs, &super::super::groups::GroupBy::Keys(vec![])).unwrap();
    let best = TableOptions {
        best: true,
        ..Default::default()
    };
    let text = render(&groups, &best).unwrap();
    assert!(text.contains("| 2 | NaN"), "{text}");
    assert!(
        text.contains(&format!(
            "({} had no finite accuracy at any eval read here: its last eval)",
            runs[1].meta.id
        )),
        "{text}"
    );
    // A run with no eval at all is still refused.
    let mut unevaluated = runs;
    unevaluated[1].final_eval = None;
    let groups =
        super::super::groups::gather(&unevaluated, &super::super::groups::GroupBy::Keys(vec![]))
            .unwrap();
    assert!(render(&groups, &best).is_err());
}

/// Bold marked noise: 30.10 ± 9.48 over 29.90 ± 1.41 (n=2 each), pasted
/// into a paper as a claim (a walkthrough). Means within one standard
/// error of their difference tie; a gap past it is still the best.
#[test]
fn means_within_noise_of_the_best_tie() {
    let bold = |groups: &[(f64, &[f64])]| {
        let mut runs_of = Vec::new();
        for &(gamma, values) in groups {
            runs_of.extend(values.iter().map(|&v| (gamma, v)));
        }
        by_gamma(&runs_of)
    };
    let noisy = bold(&[(0.1, &[36.8, 23.4]), (0.3, &[30.9, 28.9])]);
    assert!(!noisy.contains("**"), "{noisy}");
    assert!(noisy.contains("bold: a column's best mean"), "{noisy}");
    // Nothing bold is said so (walkthrough N read "bold: …" over none).
    assert!(
        noisy.contains(", none here: in each ranked column every mean is within it"),
        "{noisy}"
    );
    let lone = bold(&[(0.1, &[36.8])]); // ranks nothing (walkthrough L2)
    assert!(!lone.contains("bold") && !lone.contains("none"), "{lone}");
    let apart = bold(&[(0.1, &[36.8, 36.4]), (0.3, &[30.9, 28.9])]);
    assert!(apart.contains("| 0.1 | 2 | **36.60 ± 0.28** |"), "{apart}");
    assert!(apart.contains("| 0.3 | 2 | 29.90 ± 1.41 |"), "{apart}");
    assert!(!apart.contains("none here"), "{apart}");
}

/// A share near 1e-7 read `0.000000 ± 0.000000` (walkthrough K's
/// `share/recon`): digits that would all be zero give way to an exponent.
#[test]
fn a_mean_too_small_for_six_decimals_shows_an_exponent() {
    let text = by_gamma(&[(0.1, 3e-7), (0.1, 1e-7), (0.3, 0.5), (0.3, 0.6)]);
    assert!(text.contains("| 0.1 | 2 | 2.0e-7 ± 1.4e-7 |"), "{text}");
    // A true zero stays one.
    let text = by_gamma(&[(0.1, 0.0), (0.1, 0.0), (0.3, 0.5), (0.3, 0.6)]);
    assert!(text.contains("| 0.1 | 2 | 0.000 ± 0.000 |"), "{text}");
    // Fewer decimals follow the std: a small mean beside a large std
    // reads 0.00 (the review).
    let text = by_gamma(&[(0.1, 0.3), (0.1, -0.296), (0.3, 0.5), (0.3, 0.6)]);
    assert!(text.contains("| 0.1 | 2 | 0.00 ± 0.42 |"), "{text}");
    assert!(!text.contains("e-3"), "{text}");
    assert_eq!(super::latex_exponent("2.0e-7"), "2.0\\times10^{-7}");
    assert_eq!(super::latex_exponent("0.720150"), "0.720150");
}

/// A lone run (n = 1) was the only bold row over groups of three seeds it
/// is within a seed's spread of (walkthroughs M and N); it takes the
/// widest spread its column shows. One far above that spread stays the
/// best alone.
#[test]
fn a_single_run_is_not_the_best_alone_within_a_seeds_spread() {
    let close = by_gamma(&[
        (0.1, 51.56),
        (0.3, 50.59),
        (0.3, 50.59),
        (0.3, 48.83),
        (0.5, 50.59),
        (0.5, 52.34),
        (0.5, 46.68),
    ]);
    // Every row within noise of the best: no best.
    assert!(close.contains("| 0.1 | 1 | 51.56 |"), "{close}");
    assert!(!close.contains("**"), "{close}");
    let far = by_gamma(&[(0.1, 60.0), (0.3, 50.0), (0.3, 50.2), (0.3, 49.8)]);
    assert!(far.contains("| 0.1 | 1 | **60.00** |"), "{far}");
    assert!(far.contains("| 0.3 | 3 | 50.00 ± 0.20 |"), "{far}");
}

/// A lone run's spread is the median of its column's groups', not the
/// widest: one group's blown-up seed (std 49.5 here; walkthrough I2's was
/// 31) made a lone run far outside the best's spread tie with it.
#[test]
fn a_single_run_takes_the_typical_spread_not_a_blown_up_one() {
    let text = by_gamma(&[
        (0.1, 60.0),
        (0.1, 60.8),
        (0.1, 59.2),
        (0.3, 58.0),
        (0.3, 58.3),
        (0.3, 57.7),
        (0.5, 90.0),
        (0.5, 20.0),
        (0.7, 58.1),
    ]);
    assert!(text.contains("| 0.1 | 3 | **60.00 ± 0.80** |"), "{text}");
    assert!(text.contains("| 0.7 | 1 | 58.10 |"), "{text}");
    // The blown-up group itself is within its own noise of the best.
    assert!(text.contains("| 0.5 | 2 | **55.00 ± 49.50** |"), "{text}");
}

/// Runs of one metric that disagree on its direction (one said "min", the
/// other guessed "higher": walkthrough N's `nrmse ↑` bolded the worse
/// value): no arrow, no bold, and the caption says why.
#[test]
fn runs_that_disagree_on_the_metrics_direction_rank_nothing() {
    let text = by_gamma_and_direction(&[(0.1, 1.278, true), (0.3, 1.097, false)]);
    assert!(
        !text.contains("**") && !text.contains('↑') && !text.contains('↓'),
        "{text}"
    );
    assert!(
        text.contains("`accuracy`: no arrow and no bold, its runs disagree on which way is better"),
        "{text}"
    );
}

/// Metric columns after the primary in natural order: `r1 r5 r10`, not
/// `r1 r10 r5` (walkthrough P).
#[test]
fn metric_columns_count_their_numbers() {
    let root = tempfile::tempdir().unwrap();
    let config = crate::config::Config::default();
    let mut run = accuracy_run(root.path(), "retrieval", &config, "");
    run.meta.primary_metric = "mdr".into();
    run.final_eval = Some((
        10,
        [("mdr", 3.0), ("r10", 60.0), ("r1", 20.0), ("r5", 45.0)]
            .map(|(m, v)| (m.to_string(), v))
            .into(),
    ));
    let runs = vec![run];
    let groups =
        super::super::groups::gather(&runs, &super::super::groups::GroupBy::Keys(vec![])).unwrap();
    let text = render(&groups, &TableOptions::default()).unwrap();
    let header = text.lines().next().unwrap();
    let at = |m: &str| {
        header
            .find(&format!("| {m} "))
            .unwrap_or_else(|| panic!("{header}"))
    };
    assert!(
        at("mdr") < at("r1") && at("r1") < at("r5") && at("r5") < at("r10"),
        "{header}"
    );
}
