//! The built-in video-language workload: determinism, and fine-tuning from
//! the foundation checkpoint against training from scratch.

mod common;

use common::*;
use meltr_tui::config::Config;
use meltr_tui::session::metrics::Record;
use meltr_tui::workload::video_text;

fn video_config(steps: u64, init_from: Option<String>) -> Config {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/default.toml"))
            .unwrap();
    let mut c = Config::parse(&text).unwrap();
    c.workload.init_from = init_from;
    c.train.device = "cpu".into();
    c.train.steps = steps;
    c.train.eval_every = steps;
    c.train.checkpoint_every = steps;
    c.validate().unwrap();
    c
}

#[test]
fn the_same_seed_gives_the_same_first_20_losses() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let mut config = video_config(20, None);
    config.train.log_every = 1;
    let losses = |name: &str| -> Vec<Vec<f64>> {
        let (_, lines) = run_session(root.path(), name, config.clone());
        lines
            .iter()
            .filter_map(|l| match &l.record {
                Record::Train { losses, .. } => Some(losses.values().copied().collect()),
                _ => None,
            })
            .collect()
    };
    let a = losses("a");
    let b = losses("b");
    assert_eq!(a.len(), 20);
    assert_eq!(a[0].len(), 5, "retrieval + 4 auxiliaries");
    assert_eq!(a, b);
    let mut other = config.clone();
    other.workload.seed = 1;
    let (_, lines) = run_session(root.path(), "c", other);
    let c: Vec<f64> = lines
        .iter()
        .find_map(|l| match &l.record {
            Record::Train { losses, .. } => Some(losses.values().copied().collect()),
            _ => None,
        })
        .unwrap();
    assert_ne!(a[0], c, "another seed gives other data");
}

#[test]
fn fine_tuning_from_the_foundation_beats_training_from_scratch() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let foundation = root.path().join("foundation.safetensors");
    video_text::pretrain(300, 0, &foundation, |_, _| {}).unwrap();
    let steps = 100;
    let (_, tuned) = run_session(
        root.path(),
        "tuned",
        video_config(steps, Some(foundation.display().to_string())),
    );
    let (_, scratch) = run_session(root.path(), "scratch", video_config(steps, None));
    let tuned = last_eval(&tuned, "R@1");
    let scratch = last_eval(&scratch, "R@1");
    eprintln!("R@1 after {steps} steps: from foundation {tuned:.2}, from scratch {scratch:.2}");
    assert!(
        tuned > scratch + 5.0,
        "foundation {tuned} vs scratch {scratch}"
    );
}

/// The error that stops a session of `config` before its first step.
fn setup_error(root: &std::path::Path, name: &str, config: Config) -> String {
    let dir = meltr_tui::session::create(root, name, &config).unwrap();
    meltr_tui::engine::spawn(&dir, config, false)
        .err()
        .expect("must fail")
        .to_string()
}

#[test]
fn a_foundation_of_another_shape_is_refused_with_the_reason() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let bogus = root.path().join("bogus.safetensors");
    tch::Tensor::write_safetensors(
        &[(
            "frame_in.weight",
            tch::Tensor::zeros([2, 2], (tch::Kind::Float, tch::Device::Cpu)),
        )],
        &bogus,
    )
    .unwrap();
    let config = video_config(5, Some(bogus.display().to_string()));
    let err = setup_error(root.path(), "bogus", config);
    assert!(
        err.contains("not a video-text foundation checkpoint"),
        "{err}"
    );
}

/// `workload.metric` may name any metric the evaluation reports; MedR (a
/// rank) is lower-is-better by its name, and a name it lacks is refused.
#[test]
fn the_primary_metric_can_be_any_reported_one() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let mut config = video_config(2, None);
    config.workload.metric = Some("MedR".into());
    let (dir, lines) = run_session(root.path(), "medr", config);
    let meta = meltr_tui::session::SessionMeta::read(&dir).unwrap();
    assert_eq!(
        (meta.primary_metric.as_str(), meta.higher_is_better),
        ("MedR", false)
    );
    let reported: Vec<&String> = lines
        .iter()
        .rev()
        .find_map(|l| match &l.record {
            meltr_tui::session::metrics::Record::Eval { metrics, .. } => {
                Some(metrics.keys().collect())
            }
            _ => None,
        })
        .expect("an eval line");
    assert_eq!(reported, ["MedR", "R@1", "R@5", "caption_acc"]);
    let mut config = video_config(2, None);
    config.workload.metric = Some("R@10".into());
    let err = setup_error(root.path(), "r10", config);
    assert!(
        err.contains("it reports: R@1, R@5, MedR, caption_acc"),
        "{err}"
    );
}
