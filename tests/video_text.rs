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
    let dir = meltr_tui::session::create(root.path(), "bogus", &config).unwrap();
    let err = meltr_tui::engine::spawn(&dir, config, false)
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        err.contains("not a video-text foundation checkpoint"),
        "{err}"
    );
}

/// `configs/distractor.toml` as shipped (400 steps, seed 0), on the CPU,
/// with `combiner.kind` = `meltr` and `sum`: MELTR ends with the lowest
/// effective weight on the harmful `distractor` (mean over the last 10
/// train lines, steps 310–400) and an R@1 at least that of `sum`. The two
/// runs are separate processes (libtorch's RNG is process-wide), side by
/// side.
#[test]
fn meltr_weighs_the_distractor_least_and_matches_sum() {
    let _serial = serial();
    meltr_tui::workload::ensure_foundation().unwrap();
    let root = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(repo("configs/distractor.toml")).unwrap();
    let mut children = Vec::new();
    for kind in ["meltr", "sum"] {
        let mut config = Config::parse(&shipped).unwrap();
        config.combiner.kind = kind.into();
        config.train.device = "cpu".into();
        let path = root.path().join(format!("{kind}.toml"));
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
        let child = bin()
            .arg("--sessions-dir")
            .arg(root.path())
            .args(["run", "--headless", "-n", kind, "-c"])
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        children.push((kind, child));
    }
    for (kind, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (_, meltr) = metrics_of(root.path(), "meltr");
    let (_, sum) = metrics_of(root.path(), "sum");
    let weight = |loss: &str| late_weight(&meltr, loss, 10);
    let distractor = weight("distractor");
    let others: Vec<(&str, f64)> = ["align", "mlm", "mfm", "caption"]
        .into_iter()
        .map(|loss| (loss, weight(loss)))
        .collect();
    let (meltr_r1, sum_r1) = (last_eval(&meltr, "R@1"), last_eval(&sum, "R@1"));
    eprintln!(
        "late effective weights: distractor {distractor:.3}, {others:?}, retrieval {:.3}; R@1 meltr {meltr_r1:.2}, sum {sum_r1:.2}",
        weight("retrieval")
    );
    for (loss, w) in &others {
        assert!(
            distractor < *w,
            "distractor {distractor:.3} is not below {loss} {w:.3}"
        );
    }
    assert!(meltr_r1 >= sum_r1, "R@1: meltr {meltr_r1} < sum {sum_r1}");
}
