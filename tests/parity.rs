//! Step-for-step parity with the public MELTR algorithm: the engine writes
//! a trace of a run (`train.trace`), `scripts/meltr_replay.py trace` replays
//! it in PyTorch (the public code's semantics, written independently) on the
//! same TorchScript model and data, and compares losses, θ, φ, the
//! hypergradient and the γ regulariser after every step. f64, 30 inner and
//! 10 meta steps, both AID modes (`factorized` against the replay's exact
//! double backward), J = 0 and J = 2, on the example two-stream model and on
//! a task of the auxiliary-learning suite; and on variants of the example
//! that real models are like: dropout, a tied weight with frozen
//! parameters, PyTorch's stock (fused) attention with BatchNorm; and a
//! masked auxiliary loss that is a constant on some batches.

mod common;

use common::{
    export_two_stream, flag_data, flag_models, logged_loss, repo, run_python, run_session, serial,
    torch_python,
};
use meltr_tui::config::{Config, TrainBatch};
use meltr_tui::session::metrics::{Level, MetricLine, Record};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The largest relative error the replay may show on any step.
const TOLERANCE: f64 = 1e-6;

/// The example's primary loss and the auxiliaries the tests combine.
const EXAMPLE_LOSSES: (&str, &[&str]) = ("retrieval", &["align", "mlm", "mfm", "scramble"]);

/// The example two-stream model, 128 training and 32 validation samples,
/// exported with the exporter's `options`.
fn small_example(options: &[&str]) -> PathBuf {
    let mut args = vec!["--train", "128", "--val", "32"];
    args.extend_from_slice(options);
    export_two_stream(&args)
}

/// The example two-stream model with matmul attention (double backward
/// and forward-mode AD through every op), exported once.
fn two_stream() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| small_example(&["--attention", "matmul"]))
}

/// The same with dropout 0.1 in every encoder layer: randomness inside
/// forward, which the replay reproduces from the engine's forward seeds.
fn two_stream_with_dropout() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| small_example(&["--attention", "matmul", "--dropout", "0.1"]))
}

/// The suite's `mixed` task (helpful, harmful and badly scaled auxiliaries).
fn suite_task() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        run_python(&[
            repo("scripts/aux_suite.py").as_os_str(),
            "build".as_ref(),
            "--out".as_ref(),
            dir.as_os_str(),
        ]);
        dir.join("mixed")
    })
}

/// A short f64 trace run of the model in `dir` (its data next to it).
fn traced_config(dir: &Path, losses: (&str, &[&str]), mode: &str, iterations: u32) -> Config {
    let (primary, auxiliary) = losses;
    let path = |file: &str| dir.join(file).display().to_string();
    let mut c = Config::default();
    c.workload.kind = meltr_tui::config::WorkloadKind::TorchScript;
    c.workload.model = Some(path("model.pt"));
    c.workload.train = Some(path("train.safetensors"));
    c.workload.val = Some(path("val.safetensors"));
    c.workload.primary = primary.into();
    c.workload.auxiliary = auxiliary.iter().map(|s| s.to_string()).collect();
    c.workload.batch_size = 16;
    c.train.device = "cpu".into();
    c.train.dtype = meltr_tui::config::Dtype::F64;
    c.train.steps = 30;
    c.train.lr = 3e-3;
    c.train.eval_every = 30;
    c.train.checkpoint_every = 30;
    c.train.log_every = 5;
    c.train.trace = true;
    // A smaller MELTR than the public 256 wide keeps the replay quick; the
    // algorithm is the same at any width.
    (c.meltr.d_model, c.meltr.d_hidden, c.meltr.d_ff) = (64, 32, 128);
    c.aid.mode = mode.parse().unwrap();
    c.aid.jvp = meltr_tui::config::JvpMethod::Forward;
    c.aid.iterations = iterations;
    c.aid.alpha = 0.05;
    c.validate().unwrap();
    c
}

/// [`traced_config`] of the suite task in `dir`, J = 0, its losses read
/// from its `task.toml`.
fn suite_traced(dir: &Path, mode: &str) -> Config {
    let toml = std::fs::read_to_string(dir.join("task.toml")).unwrap();
    let task = Config::parse(&toml).unwrap();
    let auxiliary: Vec<&str> = task.workload.auxiliary.iter().map(String::as_str).collect();
    traced_config(dir, (&task.workload.primary, &auxiliary), mode, 0)
}

#[derive(Debug, serde::Deserialize)]
struct Report {
    steps: u64,
    meta_steps: u64,
    /// Per compared group; null where the run had nothing to compare
    /// (no buffers, no meta step).
    max_rel: std::collections::BTreeMap<String, Option<f64>>,
    /// Where the trace left the public algorithm's schedule (a meta step
    /// off it, a pick outside the pool).
    #[serde(default)]
    notes: Vec<String>,
    /// The replay's own verdict against its default bound (1e-6 in f64).
    passed: Option<bool>,
}

/// `meltr_replay.py trace` of the session in `dir`, its report at `report`.
fn trace_replay(dir: &Path, report: &Path) -> std::process::Output {
    std::process::Command::new(torch_python())
        .arg(repo("scripts/meltr_replay.py"))
        .arg("trace")
        .arg(dir)
        .arg("--report")
        .arg(report)
        .output()
        .unwrap()
}

/// Runs the engine with a trace and replays it: the replay's exit, its
/// report, the run's log and whether the trace holds the model's buffers.
fn run_and_replay(
    name: &str,
    config: Config,
) -> (std::process::Output, Report, Vec<MetricLine>, bool) {
    let root = tempfile::tempdir().unwrap();
    let (dir, lines) = run_session(root.path(), name, config);
    let report = dir.join("trace/parity.json");
    let out = trace_replay(&dir, &report);
    let said = || {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let report = std::fs::read_to_string(&report)
        .unwrap_or_else(|e| panic!("replay of {name} wrote no report ({e}):\n{}", said()));
    // The safetensors header names every tensor of the first step's state.
    let state = std::fs::read(dir.join("trace/state-1.safetensors")).unwrap();
    let traced_buffers = state.windows(8).any(|w| w == b"\"buffer.");
    (
        out,
        serde_json::from_str(&report).unwrap(),
        lines,
        traced_buffers,
    )
}

/// Runs the engine with a trace, replays it, returns the replay's report,
/// the run's log and whether the trace holds the model's buffers.
fn replay(name: &str, config: Config) -> (Report, Vec<MetricLine>, bool) {
    let (out, report, lines, traced_buffers) = run_and_replay(name, config);
    assert!(
        out.status.success(),
        "replay of {name} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (report, lines, traced_buffers)
}

/// The run of `config` (30 steps, 10 meta steps) agrees with its replay on
/// every compared quantity; returns the run's log.
fn assert_replays(name: &str, config: Config) -> Vec<MetricLine> {
    let (report, lines, traced_buffers) = replay(name, config);
    assert_close(name, &report, traced_buffers);
    lines
}

/// The replay's report says 30 steps, 10 meta steps, every compared
/// quantity within the tolerance.
fn assert_close(name: &str, report: &Report, traced_buffers: bool) {
    eprintln!("{name}: {report:?}");
    assert_eq!((report.steps, report.meta_steps), (30, 10), "{name}");
    assert_eq!(report.passed, Some(true), "{name}: the replay's verdict");
    for key in ["losses", "theta", "phi", "hyper", "reg", "buffers"] {
        let Some(err) = report.max_rel[key] else {
            // Only a model without buffers has a group with nothing in it.
            assert!(
                key == "buffers" && !traced_buffers,
                "{name}: `{key}` was never compared"
            );
            continue;
        };
        assert!(
            err <= TOLERANCE,
            "{name}: `{key}` differs from the PyTorch replay by {err:e} (relative) > {TOLERANCE:e}"
        );
    }
}

fn check_parity(model: &str, dir: &Path, losses: (&str, &[&str])) {
    let _serial = serial();
    for mode in ["exact", "factorized"] {
        for iterations in [0, 2] {
            let name = format!("{model}-{mode}-j{iterations}");
            assert_replays(&name, traced_config(dir, losses, mode, iterations));
        }
    }
}

#[test]
fn the_engine_replays_the_public_algorithm_on_the_two_stream_example() {
    check_parity("two-stream", two_stream(), EXAMPLE_LOSSES);
}

/// Dropout draws its masks from libtorch's generator, which the engine seeds
/// before every forward from (seed, step, which forward) and the replay
/// seeds the same way: without that the first step's losses already differ
/// (4e-2 relative on a GRU model with dropout 0.1).
#[test]
fn a_model_with_dropout_replays_mask_for_mask() {
    let _serial = serial();
    let losses = EXAMPLE_LOSSES;
    let cases = [
        ("exact", 0, "recent"),
        ("factorized", 0, "recent"),
        ("factorized", 2, "recent"),
        // The meta step reuses the inner step's forward, masks included.
        ("exact", 0, "current"),
        ("factorized", 0, "current"),
    ];
    for (mode, iterations, train_batch) in cases {
        let mut config = traced_config(two_stream_with_dropout(), losses, mode, iterations);
        config.meltr.train_batch = train_batch.parse().unwrap();
        // Not the default seed: the seed must reach the replay too.
        config.workload.seed = 5;
        assert_replays(
            &format!("dropout-{mode}-j{iterations}-{train_batch}"),
            config,
        );
    }
}

/// `meltr.val_source = "train-batch"` (the validation primary from the
/// training forward) replays, masks included, with the training forward
/// fresh or reused, and with `aid.jvp = "one-sided"` (its difference is
/// within the tolerance in f64: 1.4e-8 relative in `tests/hypergrad.rs`).
#[test]
fn validation_on_the_training_batch_replays() {
    let _serial = serial();
    let cases = [
        ("exact", "recent", "auto"),
        ("factorized", "current", "one-sided"),
    ];
    for (mode, train_batch, jvp) in cases {
        let mut config = traced_config(two_stream_with_dropout(), EXAMPLE_LOSSES, mode, 0);
        config.meltr.train_batch = train_batch.parse().unwrap();
        config.meltr.val_source = meltr_tui::config::ValSource::TrainingBatch;
        config.aid.jvp = jvp.parse().unwrap();
        config.workload.seed = 5;
        let name = format!("train-batch-val-{mode}-{train_batch}-{jvp}");
        let (report, _, traced_buffers) = replay(&name, config);
        assert_close(&name, &report, traced_buffers);
        // Every meta step's trace says it validated on the batch it trained
        // on (the replay notes any other pick).
        assert!(
            !report.notes.iter().any(|n| n.contains("val batch")),
            "{name}: {:?}",
            report.notes
        );
    }
}

/// A tied weight (the MLM head uses the text embedding's matrix) and frozen
/// parameters (the position embeddings, `requires_grad = False`), as
/// fine-tuning models often have: trained once and not at all, as PyTorch
/// does. libtorch's C++ parameter listing names a tied tensor twice; trained
/// under both names its optimizer ran twice per step (and the replay refused
/// the trace: "parameters the model does not have").
#[test]
fn tied_and_frozen_parameters_replay() {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        small_example(&[
            "--attention",
            "matmul",
            "--tie-embeddings",
            "--freeze-positions",
        ])
    });
    // The fixture does tie: libtorch lists the one tensor under both names.
    let module = tch::CModule::load(dir.join("model.pt")).unwrap();
    let listed = module.named_parameters().unwrap();
    let pointer = |name: &str| {
        let (_, t) = listed.iter().find(|(n, _)| n == name).unwrap();
        t.data_ptr()
    };
    assert_eq!(pointer("text_emb.weight"), pointer("mlm_head.weight"));
    let _serial = serial();
    let losses = EXAMPLE_LOSSES;
    for (mode, iterations) in [("exact", 0), ("factorized", 2)] {
        let config = traced_config(dir, losses, mode, iterations);
        let lines = assert_replays(&format!("tied-{mode}-j{iterations}"), config);
        let said = lines.iter().any(|l| {
            matches!(&l.record, Record::Event { message, .. }
                if message.contains("tied parameters (mlm_head.weight is text_emb.weight)"))
        });
        assert!(said, "the run does not say which parameters are tied");
    }
}

/// The exported model's parameters, by name.
fn exported_parameters(dir: &Path) -> std::collections::HashMap<String, tch::Tensor> {
    tch::CModule::load(dir.join("model.pt"))
        .unwrap()
        .named_parameters()
        .unwrap()
        .into_iter()
        .collect()
}

/// A 30-step session's last checkpoint, by name.
fn checkpoint_at_30(session: &Path) -> std::collections::HashMap<String, tch::Tensor> {
    tch::Tensor::read_safetensors(session.join("checkpoints/step-0000000030.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

/// A head no loss uses (walkthrough J): PyTorch's AdamW skips a parameter
/// whose `.grad` stays `None`, so weight decay leaves it as exported; the
/// engine took zeros for its gradient and decayed it. The run says which
/// parameters it leaves alone, the replay agrees step for step, and the
/// head comes out of the run as it went in.
#[test]
fn a_head_no_loss_uses_is_left_as_pytorch_leaves_it() {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| small_example(&["--attention", "matmul", "--unused-head"]));
    let _serial = serial();
    let initial = exported_parameters(dir);
    for (mode, iterations) in [("exact", 0), ("factorized", 2)] {
        let mut config = traced_config(dir, EXAMPLE_LOSSES, mode, iterations);
        config.train.weight_decay = 0.1;
        let root = tempfile::tempdir().unwrap();
        let name = format!("unused-{mode}-j{iterations}");
        let (session, lines) = run_session(root.path(), &name, config.clone());
        let checkpoint = checkpoint_at_30(&session);
        for part in ["weight", "bias"] {
            let trained = &checkpoint[&format!("model.probe_head_{part}")];
            let exported = initial[&format!("probe_head.{part}")].to_kind(trained.kind());
            assert!(trained.equal(&exported), "{name}: probe_head.{part} moved");
        }
        // The text encoder is trained (and decayed) all the same.
        let moved = &checkpoint["model.align_head_weight"];
        let exported = initial["align_head.weight"].to_kind(moved.kind());
        assert!(
            !moved.equal(&exported),
            "{name}: align_head.weight did not train"
        );
        let said = lines.iter().any(|l| {
            matches!(&l.record, Record::Event { message, .. }
                if message.contains("2 of ") && message.contains("probe_head.weight, probe_head.bias): each stays as it is until a gradient reaches it"))
        });
        assert!(
            said,
            "{name}: the run does not say which parameters it leaves out"
        );
        assert_replays(&name, config);
    }
}

/// A head one loss uses on some batches only (`--sometimes-head`: on about
/// three in eight): PyTorch's `backward` leaves its `.grad` at `None` on the
/// others, and AdamW skips it there (no weight decay, no moment decay) and
/// counts its steps without them. The engine had given it a zero gradient
/// and taken every update; the replay agrees step for step now, at weight
/// decay 0.1, and the head trains. The same export has parameters `g.w_x`
/// and `g_w.x`, whose names read alike once dots become underscores: the
/// engine's trace names the second `g_w_x__<parameters before it>`, and
/// the replay had refused
/// it ("parameters the model does not have") (walkthrough O).
#[test]
fn a_head_some_batches_miss_sits_those_updates_out() {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        small_example(&[
            "--attention",
            "matmul",
            "--sometimes-head",
            "--colliding-names",
        ])
    });
    let _serial = serial();
    let exported = exported_parameters(dir)
        .remove("sometimes_head.weight")
        .expect("the export has sometimes_head");
    for (mode, iterations) in [("exact", 0), ("factorized", 2)] {
        let mut config = traced_config(dir, EXAMPLE_LOSSES, mode, iterations);
        config.train.weight_decay = 0.1;
        let root = tempfile::tempdir().unwrap();
        let name = format!("sometimes-{mode}-j{iterations}");
        let (session, _) = run_session(root.path(), &name, config.clone());
        let checkpoint = checkpoint_at_30(&session);
        let trained = &checkpoint["model.sometimes_head_weight"];
        assert!(
            !trained.equal(&exported.to_kind(trained.kind())),
            "{name}: sometimes_head did not train"
        );
        // Both exported as zeros; the second named `g_w_x__<parameters
        // before it>`, as tch's VarStore names a name already taken.
        let colliding: Vec<&String> = checkpoint
            .keys()
            .filter(|k| k.starts_with("model.g_w_x"))
            .collect();
        assert_eq!(colliding.len(), 2, "{name}: {colliding:?}");
        for key in colliding {
            let moved = checkpoint[key]
                .abs()
                .sum(tch::Kind::Double)
                .double_value(&[]);
            assert!(moved > 0.0, "{name}: {key} did not train");
        }
        assert_replays(&name, config);
    }
}

/// PyTorch's stock attention (`nn.TransformerEncoderLayer`, its fused
/// scaled-dot-product kernels) and BatchNorm, as the example ships: the
/// replay takes the public algorithm's double backward on the math path
/// (the fused kernels have no second derivative), and so does the engine's
/// factorized mode (no forward derivative either; `auto` turns the fused
/// kernels off for the meta step's products). Before the replay chose the
/// math path it refused the model.
#[test]
fn stock_attention_replays_through_the_math_path() {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| small_example(&[]));
    let _serial = serial();
    let losses = EXAMPLE_LOSSES;
    // BatchNorm's running statistics are compared too; with
    // `meltr.train_batch = "current"` the meta step reuses the inner forward
    // (the replay too), and its evaluations leave the statistics alone.
    let (recent, current) = (TrainBatch::Recent, TrainBatch::Current);
    // Exact mode retries its first meta step with the fused kernels off:
    // the validation forward runs twice, BatchNorm's statistics move once.
    let runs = [
        ("factorized", 0, recent),
        ("factorized", 2, recent),
        ("factorized", 0, current),
        ("exact", 0, current),
    ];
    for (mode, iterations, train_batch) in runs {
        let mut config = traced_config(dir, losses, mode, iterations);
        config.aid.jvp = meltr_tui::config::JvpMethod::Auto;
        config.meltr.train_batch = train_batch;
        let name = format!("stock-attention-{mode}-j{iterations}-{train_batch:?}");
        let lines = assert_replays(&name, config);
        let fell_back = lines.iter().any(|l| {
            matches!(&l.record, Record::Event { message, .. }
                if message.contains("the fused kernels off"))
        });
        assert!(fell_back, "fused attention should take the math path");
    }
}

#[test]
fn the_engine_replays_the_public_algorithm_on_a_suite_task() {
    let dir = suite_task();
    let toml = std::fs::read_to_string(dir.join("task.toml")).unwrap();
    let task = Config::parse(&toml).unwrap();
    let auxiliary: Vec<&str> = task.workload.auxiliary.iter().map(String::as_str).collect();
    check_parity("suite-mixed", dir, (&task.workload.primary, &auxiliary));
}

/// `meltr.init = "residual"` (an engine option: MELTR as a correction to
/// `sum`, its head starting at zero) replayed with the same output form.
#[test]
fn the_residual_option_replays_on_a_suite_task() {
    let _serial = serial();
    for mode in ["exact", "factorized"] {
        let mut config = suite_traced(suite_task(), mode);
        config.meltr.init = meltr_tui::config::MeltrInit::Residual;
        assert_replays(&format!("residual-{mode}"), config);
    }
}

/// The default `meltr.loss_scale = "capped"` where it changes a loss (the
/// suite's far-scale task: an auxiliary over 1000x the primary's value, read
/// at 50x) replays with the factors the engine measured.
#[test]
fn a_capped_loss_replays_on_the_far_scale_task() {
    let _serial = serial();
    let dir = suite_task().parent().unwrap().join("far-scale");
    for mode in ["exact", "factorized"] {
        let config = suite_traced(&dir, mode);
        assert_eq!(
            config.meltr.loss_scale,
            meltr_tui::config::LossScale::Capped
        );
        let lines = assert_replays(&format!("capped-{mode}"), config);
        let capped = lines.iter().any(|l| {
            matches!(&l.record, Record::Event { message, .. }
                if message.contains("MELTR reads helpful_x2000"))
        });
        assert!(capped, "{mode}: the x2000 loss should be read at 50x");
    }
}

/// `meltr.first_meta = "at-step-1"` (the public code's schedule: meta steps
/// at steps 1, 4, 7, …, the first drawing step 1's own batch) replays.
#[test]
fn the_public_meta_schedule_replays_on_a_suite_task() {
    let _serial = serial();
    for mode in ["exact", "factorized"] {
        let mut config = suite_traced(suite_task(), mode);
        config.meltr.first_meta = meltr_tui::config::FirstMeta::AtStepOne;
        let name = format!("first-meta-{mode}");
        let (report, lines, traced_buffers) = replay(&name, config);
        assert_close(&name, &report, traced_buffers);
        // The replay's own schedule agrees with the trace's meta steps.
        assert!(
            !report.notes.iter().any(|n| n.contains("meta step")),
            "{:?}",
            report.notes
        );
        let meta_steps: Vec<u64> = lines
            .iter()
            .filter(|l| matches!(l.record, Record::Meta { .. }))
            .map(|l| l.step)
            .collect();
        assert_eq!(meta_steps[..3], [1, 4, 7], "{mode}");
    }
}

#[test]
fn a_tampered_trace_is_caught() {
    // The comparison can fail: one changed φ entry in one state file shows.
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let config = traced_config(two_stream(), EXAMPLE_LOSSES, "exact", 0);
    let config = Config {
        train: meltr_tui::config::TrainConfig {
            steps: 6,
            ..config.train.clone()
        },
        ..config
    };
    let (dir, _) = run_session(root.path(), "tampered", config);
    let state = dir.join("trace/state-4.safetensors");
    let mut tensors = tch::Tensor::read_safetensors(&state).unwrap();
    let (_, phi) = tensors
        .iter_mut()
        .find(|(n, _)| n == "phi.head.weight")
        .unwrap();
    let _ = tch::no_grad(|| phi.g_mul_scalar_(1.01));
    tch::Tensor::write_safetensors(&tensors, &state).unwrap();
    let report = dir.join("trace/parity.json");
    let out = trace_replay(&dir, &report);
    // The replay says so in its last line and its exit status (1: outside
    // the bound; 2 would be a replay that could not run).
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout.trim_end().lines().last().is_some_and(|l| {
            l.starts_with("parity: FAILED: ") && l.contains("phi") && l.contains("step 4")
        }),
        "{stdout}"
    );
    let report: Report = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(
        report.max_rel["phi"].is_some_and(|e| e > 1e-6),
        "{report:?}"
    );
}

/// The meta steps' picks of a 30-step traced run with a meta step at every
/// step, as (step, train_step, val_step).
fn meta_picks(pool: &str) -> Vec<(u64, u64, u64)> {
    let root = tempfile::tempdir().unwrap();
    let mut config = traced_config(two_stream(), EXAMPLE_LOSSES, "factorized", 0);
    config.meltr.meta_every = 1;
    config.meltr.pool = pool.parse().unwrap();
    let (dir, _) = run_session(root.path(), pool, config);
    std::fs::read_to_string(dir.join("trace/steps.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let meta = &v["meta"];
            (
                v["step"].as_u64().unwrap(),
                meta["train_step"].as_u64().unwrap(),
                meta["val_step"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_meta_pool_is_the_ten_batches_before_the_current_one() {
    let _serial = serial();
    let previous = meta_picks("previous");
    assert_eq!(previous.len(), 30);
    for &(step, train, val) in &previous {
        // Step 1 has no earlier batch: its own, as the public code does.
        let range = if step == 1 {
            1..=1
        } else {
            step.saturating_sub(10).max(1)..=step - 1
        };
        assert!(
            range.contains(&train) && range.contains(&val),
            "{step}: {train}, {val}"
        );
    }
    // The option: the last ten including the current one, which then
    // does get picked.
    let with_current = meta_picks("with-current");
    for &(step, train, val) in &with_current {
        let range = step.saturating_sub(9).max(1)..=step;
        assert!(
            range.contains(&train) && range.contains(&val),
            "{step}: {train}, {val}"
        );
    }
    assert!(with_current
        .iter()
        .any(|&(s, t, v)| s > 1 && (t == s || v == s)));
}

/// A folder with one of `tests/fixtures/flag_models.py`'s models as
/// `model.pt`, 128 training and 32 validation rows, the listed ones flagged.
fn flag_model_task(model: &str, flagged_train: &[i64], flagged_val: &[i64]) -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::copy(flag_models().join(model), dir.join("model.pt")).unwrap();
    flag_data(&dir.join("train.safetensors"), 128, 4, flagged_train);
    flag_data(&dir.join("val.safetensors"), 32, 4, flagged_val);
    dir
}

/// A masked auxiliary (over flagged rows, `zeros(())` on a batch with none,
/// as a masked-token loss on a batch with nothing masked): it gives no
/// gradient on those steps, in the inner step and in the meta step's
/// Jacobian-vector products, as in PyTorch.
#[test]
fn a_loss_constant_on_some_batches_replays() {
    // Four flagged rows in 128: about 60% of the batches of 16 have none.
    let dir = flag_model_task("aux_on_flagged_rows.pt", &[5, 37, 70, 101], &[3, 20]);
    let _serial = serial();
    for (mode, iterations) in [("exact", 0), ("factorized", 2)] {
        let config = traced_config(&dir, ("primary", &["aux"]), mode, iterations);
        let lines = assert_replays(&format!("masked-{mode}-j{iterations}"), config);
        let aux = logged_loss(&lines, "aux");
        assert!(
            aux.contains(&0.0) && aux.iter().any(|&a| a > 0.0),
            "the run should have batches with and without flagged rows: {aux:?}"
        );
    }
}

/// A model whose output reads a buffer its forward updates (a running mean
/// of the inputs, walkthrough L3): the factorized meta step's later
/// evaluations of the training batch start from the buffers its first
/// forward started from, so its JVPs differentiate that forward's function
/// (they were 7e-3 off the replay's hypergradient from the buffers it left).
/// Under `meltr.train_batch = "current"` they start from the buffers the
/// reused inner forward started from (0.3 off from those they found,
/// walkthrough M1), and the exact mode reuses that forward's graph as is.
#[test]
fn a_model_reading_a_buffer_its_forward_updates_replays_factorized() {
    let dir = flag_model_task("running_mean.pt", &[], &[]);
    let _serial = serial();
    let (recent, current) = (TrainBatch::Recent, TrainBatch::Current);
    let runs = [
        ("factorized", 0, recent),
        ("factorized", 2, recent),
        ("factorized", 0, current),
        ("factorized", 2, current),
        ("exact", 0, current),
    ];
    for (mode, iterations, train_batch) in runs {
        let mut config = traced_config(&dir, ("primary", &["aux"]), mode, iterations);
        config.meltr.train_batch = train_batch;
        let name = format!("running-mean-{mode}-j{iterations}-{train_batch:?}");
        assert_replays(&name, config);
    }
}

/// A model that differentiates inside its forward (a gradient penalty by
/// `torch.autograd.grad`, as a PINN's residual; walkthrough N1) fails
/// without autograd, and one that reads the grad mode computes another
/// function without it: each runs every forward with autograd on, says so
/// at the start, and replays. (Before, the first was refused at load, and
/// the second's factorized JVPs, taken without autograd, were 3e-2 off
/// at the first meta step.)
#[test]
fn a_model_differentiating_inside_its_forward_replays() {
    let _serial = serial();
    let cases = [
        ("input_gradient.pt", "its forward fails with autograd off"),
        ("reads_grad_mode.pt", "its losses differ with autograd off"),
    ];
    for (model, said) in cases {
        let dir = flag_model_task(model, &[], &[]);
        for (mode, iterations) in [("factorized", 0), ("factorized", 2), ("exact", 0)] {
            let config = traced_config(&dir, ("primary", &["aux"]), mode, iterations);
            let lines = assert_replays(&format!("{model}-{mode}-j{iterations}"), config);
            let noted = lines.iter().any(|l| {
                matches!(&l.record, Record::Event { message, .. }
                    if message.contains(said) && message.contains("runs with autograd on"))
            });
            assert!(noted, "{model}: the start should say `{said}`");
        }
    }
}

/// A model that computes from θ under `no_grad` (an EMA teacher in buffers,
/// updated in the forward, and its features as targets; walkthrough N3):
/// forward-mode AD carries tangents through that code, the public
/// algorithm's reverse mode does not. The first factorized meta step finds
/// the two apart and says so, and the products take reverse mode from then
/// on; a model without such code keeps forward mode, unsaid.
#[test]
fn a_model_computing_from_theta_under_no_grad_replays_factorized() {
    let _serial = serial();
    let said = |lines: &[MetricLine]| {
        lines.iter().any(|l| {
            matches!(&l.record, Record::Event { message, .. }
                if message.contains("forward-mode AD differs from reverse mode"))
        })
    };
    let dir = flag_model_task("ema_teacher.pt", &[], &[]);
    for iterations in [0, 2] {
        let mut config = traced_config(&dir, ("primary", &["aux"]), "factorized", iterations);
        config.aid.jvp = meltr_tui::config::JvpMethod::Auto;
        let lines = assert_replays(&format!("ema-teacher-j{iterations}"), config);
        assert!(said(&lines), "the run should say forward mode was left");
    }
    let dir = flag_model_task("running_mean.pt", &[], &[]);
    let mut config = traced_config(&dir, ("primary", &["aux"]), "factorized", 2);
    config.aid.jvp = meltr_tui::config::JvpMethod::Auto;
    let lines = assert_replays("running-mean-auto-j2", config);
    assert!(
        !said(&lines),
        "a model without no_grad code keeps forward mode"
    );
}

/// A route the config chose is kept on such a model, and its departure
/// from the public algorithm said: `aid.jvp = "one-sided"` differences
/// the EMA teacher's forward at shifted θ, as forward mode does (the
/// replay finds it off), and says so; on a model without no_grad code it
/// replays and says nothing.
#[test]
fn a_chosen_jvp_route_that_departs_on_no_grad_code_is_said() {
    let _serial = serial();
    let warned = |lines: &[MetricLine]| {
        lines.iter().any(|l| {
            matches!(&l.record, Record::Event { level: Level::Warn, message }
                if message.starts_with("aid.jvp = \"one-sided\" departs from the public algorithm"))
        })
    };
    let one_sided = |model: &str| {
        let dir = flag_model_task(model, &[], &[]);
        let mut config = traced_config(&dir, ("primary", &["aux"]), "factorized", 0);
        config.aid.jvp = meltr_tui::config::JvpMethod::OneSided;
        let (out, report, lines, _) = run_and_replay(&format!("{model}-one-sided"), config);
        // The replay exits 1 where it finds the run off.
        assert_eq!(out.status.success(), report.passed == Some(true));
        (report, lines)
    };
    let (report, lines) = one_sided("ema_teacher.pt");
    assert_eq!(report.passed, Some(false), "{report:?}");
    assert!(warned(&lines), "the departure should be said");
    let (report, lines) = one_sided("running_mean.pt");
    assert_eq!(report.passed, Some(true), "{report:?}");
    assert!(!warned(&lines), "nothing departs on this model");
}

/// A session run without a trace is said to be one, with how to trace a
/// run (walkthrough O1 was told its f32 precision, then "not found:
/// …/trace/init.safetensors").
#[test]
fn a_session_without_a_trace_is_said_to_have_none() {
    let dir = flag_model_task("running_mean.pt", &[], &[]);
    let mut config = traced_config(&dir, ("primary", &["aux"]), "factorized", 0);
    (config.train.trace, config.train.steps) = (false, 3);
    let root = tempfile::tempdir().unwrap();
    let (session, _) = run_session(root.path(), "untraced", config);
    let out = trace_replay(&session, &session.join("parity.json"));
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("has no trace: it ran without train.trace = true")
            && !said.contains("not found"),
        "{said}"
    );
}

/// A held-out shape of model: Conv2d, BatchNorm2d, max pooling, Dropout2d
/// and a label-smoothed stock cross entropy, factorized at J = 2: dropout
/// masks drawn alike, running statistics moved alike, and the Hessian-vector
/// products by double backward from one gradient per meta step (from the
/// second meta step on, built on the γ term's training forward).
#[test]
fn a_convolutional_model_with_channel_dropout_replays() {
    replays_by_double_backward("conv_pool.pt", "conv-pool-j2");
}

/// A classifier with the stock `F.cross_entropy` at J = 2 in the factorized
/// mode: `nll_loss`'s backward has no forward derivative, so `aid.jvp =
/// "auto"` takes the Neumann series' Hessian-vector products by double
/// backward (before: finite differences), and the run says so.
#[test]
fn a_stock_cross_entropy_replays_with_double_backward_products() {
    replays_by_double_backward("stock_cross_entropy.pt", "stock-cross-entropy-j2");
}

/// Runs a flag model (primary `primary`, auxiliary `aux`) factorized at
/// J = 2 under `aid.jvp = "auto"`, checks it against the replay, and checks
/// that the run logged its Hessian-vector products by double backward.
fn replays_by_double_backward(model: &str, name: &str) {
    let dir = flag_model_task(model, &[], &[]);
    let _serial = serial();
    let mut config = traced_config(&dir, ("primary", &["aux"]), "factorized", 2);
    config.aid.jvp = meltr_tui::config::JvpMethod::Auto;
    let lines = assert_replays(name, config);
    let said = lines.iter().find_map(|l| match &l.record {
        Record::Event { message, .. } if message.starts_with("the meta step takes") => {
            Some(message)
        }
        _ => None,
    });
    eprintln!("{name} logged: {said:?}");
    assert!(
        said.is_some_and(|m| m
            .contains("Hessian-vector products by double backward, as aid.mode = \"exact\" does")),
        "{name}: the run should log the double-backward fallback"
    );
}

/// A model without second derivatives (`F.ctc_loss`, walkthrough H4): at
/// J = 0 the engine's factorized meta step takes its loss JVPs one backward
/// pass per loss and the replay its mixed term loss by loss, and the two
/// agree; at J = 2 the replay, which differentiates exactly, refuses and
/// says what works.
#[test]
fn a_model_without_second_derivatives_replays_at_j0() {
    let dir = flag_model_task("ctc.pt", &[], &[]);
    let _serial = serial();
    let mut config = traced_config(&dir, ("primary", &["aux"]), "factorized", 0);
    config.aid.jvp = meltr_tui::config::JvpMethod::Auto;
    let (report, _, traced_buffers) = replay("ctc-j0", config);
    assert_close("ctc-j0", &report, traced_buffers);
    assert!(
        report.notes.iter().any(|n| n.contains("loss by loss")),
        "the report should say how it took the mixed term: {:?}",
        report.notes
    );

    let root = tempfile::tempdir().unwrap();
    let mut config = traced_config(&dir, ("primary", &["aux"]), "factorized", 2);
    config.aid.jvp = meltr_tui::config::JvpMethod::Auto;
    let (session, _) = run_session(root.path(), "ctc-j2", config);
    let out = trace_replay(&session, &session.join("trace/parity.json"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        stderr.contains("no second derivatives") && stderr.contains("aid.iterations = 0"),
        "{stderr}"
    );
}

/// The replay's own numerical checks (`meltr_replay.py --self-test`): its
/// hand-written layer against PyTorch's, its hypergradient against
/// explicit matrices, the Neumann series against a direct solve, the
/// engine's pinned forward seeds, the trace round trip, and a relative
/// error that matches equal infinities (a causal mask's −inf buffer read
/// 1e300 at every step, walkthrough H2).
#[test]
fn the_replays_self_test_passes() {
    run_python(&[
        repo("scripts/meltr_replay.py").as_os_str(),
        "--self-test".as_ref(),
    ]);
}
