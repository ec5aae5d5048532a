//! Tests of a run's setup: start notes and resume notes.

use super::*;
use crate::session::metrics::MetricLine;

/// Fixed weights left in a config whose combiner ignores them are said
/// (a walkthrough's `meltr` run silently dropped them).
#[test]
fn fixed_weights_another_combiner_ignores_are_said() {
    let unused = |kind: CombinerKind, weights: &[(&str, f64)]| {
        let mut config = Config::default();
        config.combiner.kind = kind;
        config.combiner.weights = weights.iter().map(|&(k, w)| (k.to_string(), w)).collect();
        start_notes(&config, "synthetic", "m", true)
            .into_iter()
            .any(|(_, note)| note.starts_with("combiner.weights is set but"))
    };
    assert!(unused(CombinerKind::Meltr, &[("aux", 0.5)]));
    assert!(unused(CombinerKind::Sum, &[("aux", 0.5)]));
    assert!(!unused(CombinerKind::Weights, &[("aux", 0.5)]));
    assert!(!unused(CombinerKind::Meltr, &[]));
}

/// A crash before the first checkpoint was resumed from step 0 without
/// a word (walkthrough): the dropped steps are said.
#[test]
fn a_resume_without_a_checkpoint_says_it_starts_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let config = Config::default();
    assert_eq!(restart_note(&path, &config).unwrap(), None, "no log yet");
    let mut w = log::MetricsWriter::open(&path).unwrap();
    assert_eq!(restart_note(&path, &config).unwrap(), None, "empty log");
    for step in [10, 140] {
        w.append(&MetricLine {
            step,
            time: 0.0,
            wall: None,
            record: Record::Event {
                level: Level::Info,
                message: "x".into(),
            },
        })
        .unwrap();
    }
    let note = restart_note(&path, &config).unwrap().unwrap();
    assert!(
        note.contains("stopped at step 140") && note.contains("starts again from step 0"),
        "{note}"
    );
}

/// A `workload.metric_goal` against what the metric's name says (`error`
/// with "max") is a warning; one the name agrees with, or a name with no
/// direction, a note.
#[test]
fn a_metric_goal_against_the_metrics_name_is_warned() {
    let level = |metric: &str, goal: crate::config::MetricGoal| {
        let mut config = Config::default();
        config.workload.metric_goal = Some(goal);
        let higher = goal == crate::config::MetricGoal::Max;
        let notes = start_notes(&config, "torchscript", metric, higher);
        let (level, note) = notes
            .into_iter()
            .find(|(_, n)| n.starts_with("primary metric:"))
            .expect("the primary metric is said");
        (level, note)
    };
    let (against, said) = level("error", crate::config::MetricGoal::Max);
    assert_eq!(against, Level::Warn, "{said}");
    assert!(
        said.contains("though its name reads the other way"),
        "{said}"
    );
    assert_eq!(
        level("error", crate::config::MetricGoal::Min).0,
        Level::Info
    );
    assert_eq!(
        level("row_mean", crate::config::MetricGoal::Max).0,
        Level::Info
    );
}

/// A metric whose name reads neither way, with no `workload.metric_goal`,
/// is a warning that says how to set it; an error's name is read as one.
#[test]
fn a_metric_name_that_reads_neither_way_is_warned() {
    let said = |metric: &str| {
        let higher = !crate::workload::lower_is_better(metric);
        start_notes(&Config::default(), "torchscript", metric, higher)
            .into_iter()
            .find(|(_, n)| n.starts_with("primary metric:"))
            .expect("the primary metric is said")
    };
    let (level, note) = said("row_mean");
    assert_eq!(level, Level::Warn, "{note}");
    assert!(note.contains("workload.metric_goal = \"min\""), "{note}");
    let (level, note) = said("crps");
    assert_eq!(level, Level::Info, "{note}");
    assert!(note.contains("lower is better"), "{note}");
}

#[test]
fn the_start_counts_the_parameters_trained() {
    let theta = [
        Tensor::zeros([40, 32], tch::kind::FLOAT_CPU),
        Tensor::zeros([32], tch::kind::FLOAT_CPU),
    ];
    assert_eq!(
        super::start_notes::trained_parameters_note(&theta),
        "the model trains 1,312 parameters in 2 tensors"
    );
    assert!(super::start_notes::trained_parameters_note(&theta[1..]).ends_with("in 1 tensor"));
}

/// Options set away from the public code's defaults are named as a MELTR
/// run starts (walkthrough V2's three showed only in `ls`); none by default,
/// none for a combiner no meta step trains.
#[test]
fn a_run_says_where_its_meltr_departs_from_the_public_algorithm() {
    let departures = |config: &Config| -> Vec<String> {
        start_notes(config, "torchscript", "acc", true)
            .into_iter()
            .filter(|(_, note)| note.starts_with("MELTR departs from the public algorithm"))
            .map(|(_, note)| note)
            .collect()
    };
    let mut config = Config::default();
    config.combiner.kind = CombinerKind::Meltr;
    // The defaults that depart on purpose are said too (walkthrough Z2).
    let defaults = "meltr.first_meta = \"at-meta-every\", meltr.loss_scale = \"capped\", \
                    meltr.on_collapse = \"restore\" (this build's defaults)";
    let readme = "(README, \"The method\", says what each does and what it measured)";
    assert_eq!(
        departures(&config),
        vec![format!(
            "MELTR departs from the public algorithm in {defaults} {readme}"
        )]
    );
    config.meltr.train_batch = TrainBatch::Current;
    config.meltr.val_source = ValSource::TrainingBatch;
    config.aid.jvp = crate::config::JvpMethod::OneSided;
    config.meltr.max_loss_ratio = 20.0;
    config.meltr.on_collapse = crate::config::OnCollapse::Warn;
    let said = departures(&config);
    assert_eq!(
        said,
        vec![format!(
            "MELTR departs from the public algorithm in meltr.train_batch = \"current\", \
              meltr.val_source = \"train-batch\", aid.jvp = \"one-sided\" (finite differences), \
              meltr.loss_scale = \"capped\" (meltr.max_loss_ratio = 20) (set here) and \
              meltr.first_meta = \"at-meta-every\" (this build's defaults) {readme}"
        )]
    );
    // The public code's values throughout: nothing to say.
    let mut public = Config::default();
    public.combiner.kind = CombinerKind::Meltr;
    public.meltr.first_meta = crate::config::FirstMeta::AtStepOne;
    public.meltr.loss_scale = crate::config::LossScale::Raw;
    public.meltr.on_collapse = crate::config::OnCollapse::Warn;
    assert!(departures(&public).is_empty());
    config.combiner.kind = CombinerKind::Sum;
    assert!(departures(&config).is_empty());
}
