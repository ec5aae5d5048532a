//! Bring-your-own model: the example exporter's TorchScript model trained
//! through `meltr-tui run --headless`, every bad input refused with a
//! message that says what to fix, and resume restoring module buffers.

mod common;

use common::{
    bin, flag_data, flag_models, logged_train_steps, metrics_of, repo, run_python, run_with_limit,
    text,
};
use meltr_tui::session::{self, metrics::MetricLine, metrics::Record};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(300);

/// The example exported once per test binary (model, train and val data),
/// plus the fixture models that break the contract.
fn exported() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        run_python(&[
            repo("examples/torchscript/export_two_stream.py").as_os_str(),
            "--out".as_ref(),
            dir.as_os_str(),
            "--train".as_ref(),
            "256".as_ref(),
            "--val".as_ref(),
            "64".as_ref(),
        ]);
        run_python(&[
            repo("tests/fixtures/bad_models.py").as_os_str(),
            dir.join("bad").as_os_str(),
        ]);
        dir
    })
}

/// A config for the exported example in `dir`, with `overrides` appended to
/// the named sections.
fn config(dir: &Path, combiner: &str, steps: u64, model: &Path, extra_workload: &str) -> PathBuf {
    let data = exported();
    let body = format!(
        r#"[workload]
kind = "torchscript"
model = "{model}"
train = "{train}"
val = "{val}"
primary = "retrieval"
auxiliary = ["align", "mlm", "mfm"]
batch_size = 32
{extra_workload}

[train]
device = "cpu"
steps = {steps}
lr = 0.0005
eval_every = 10
checkpoint_every = 20
log_every = 5

[combiner]
kind = "{combiner}"

[meltr]
d_model = 32
d_hidden = 32
d_ff = 64
heads = 4
"#,
        model = model.display(),
        train = data.join("train.safetensors").display(),
        val = data.join("val.safetensors").display(),
    );
    let path = dir.join(format!("{combiner}-{steps}.toml"));
    std::fs::write(&path, body).unwrap();
    path
}

fn run(sessions: &Path, config: &Path, name: &str) -> std::process::Output {
    run_with_limit(
        bin()
            .arg("--sessions-dir")
            .arg(sessions)
            .args(["run", "--headless", "-n", name, "-c"])
            .arg(config),
        LIMIT,
    )
}

fn evals(lines: &[MetricLine], loss: &str) -> Vec<f64> {
    lines
        .iter()
        .filter_map(|l| match &l.record {
            Record::Eval { losses, .. } => losses.get(loss).copied(),
            _ => None,
        })
        .collect()
}

#[test]
fn the_example_trains_with_meltr_sum_and_primary() {
    let tmp = tempfile::tempdir().unwrap();
    let model = exported().join("model.pt");
    let mut report = Vec::new();
    for combiner in ["meltr", "sum", "primary"] {
        let cfg = config(tmp.path(), combiner, 60, &model, "");
        let out = run(tmp.path(), &cfg, combiner);
        assert!(out.status.success(), "{combiner}: {}", text(&out));
        let (dir, lines) = metrics_of(tmp.path(), combiner);
        for line in &lines {
            if let Record::Train { losses, total, .. } = &line.record {
                assert!(
                    total.is_finite(),
                    "{combiner} step {}: total {total}",
                    line.step
                );
                assert!(
                    losses.values().all(|v| v.is_finite()),
                    "{combiner} step {}",
                    line.step
                );
            }
        }
        // The example's fused attention has no second derivative: the
        // gradient shares fall back to one backward per loss, and say so.
        let shares_fallback = lines.iter().any(|l| {
            matches!(&l.record,
            Record::Event { message, .. } if message.contains("one backward pass per loss"))
        });
        assert!(shares_fallback, "{combiner}: no shares fallback event");
        // Shares come with the logged step at each multiple of
        // `train.shares_every` (50), the other train lines have none.
        for line in &lines {
            if let Record::Train { shares, .. } = &line.record {
                let sum: f64 = shares.values().sum();
                let expected = line.step % 50 == 0;
                assert!(
                    (!expected && shares.is_empty())
                        || (expected && shares.len() == 4 && (sum - 1.0).abs() < 1e-3),
                    "{combiner} step {}: shares {shares:?}",
                    line.step
                );
            }
        }
        let val = evals(&lines, "retrieval");
        assert_eq!(val.len(), 6, "{combiner}: evals at 10..=60");
        let (first, last) = (val[0], *val.last().unwrap());
        assert!(
            last < first,
            "{combiner}: validation retrieval loss did not fall: {val:?}"
        );
        let meta: session::SessionMeta =
            serde_json::from_str(&std::fs::read_to_string(dir.join("session.json")).unwrap())
                .unwrap();
        assert_eq!(meta.workload, "torchscript");
        assert_eq!(meta.primary_metric, "R@1");
        report.push(format!("{combiner}: val retrieval {first:.4} -> {last:.4}"));
    }
    eprintln!("{}", report.join("\n"));
}

/// Runs `config` and expects failure with `expected` in its output, and no
/// libtorch backtrace; returns the output.
fn refused(config: &Path, expected: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(tmp.path(), config, "bad");
    let all = text(&out);
    assert!(
        !out.status.success(),
        "expected failure, got success:\n{all}"
    );
    assert!(all.contains(expected), "expected `{expected}` in:\n{all}");
    // Whatever stops it before its first step is said to come from the file.
    let file = config.display().to_string();
    assert!(all.contains(&file), "expected `{file}` in:\n{all}");
    for backtrace in ["Exception raised from", "frame #", "libtorch_cpu.so"] {
        assert!(!all.contains(backtrace), "backtrace in the message:\n{all}");
    }
    // Refused before anything ran: no failed session folder is left, and
    // none was named as if it would be.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}\n{all}");
    let named = all
        .lines()
        .any(|l| l.starts_with("session ") && l.contains(" in "));
    assert!(!named, "a removed session folder was named:\n{all}");
    all
}

/// `run --detach` with a config its runner refuses at start: what it said.
fn refused_detached(config: &Path, sessions: &Path) -> String {
    let out = run_with_limit(
        bin()
            .args(["run", "--detach", "-c"])
            .arg(config)
            .arg("--sessions-dir")
            .arg(sessions),
        Duration::from_secs(120),
    );
    let all = text(&out);
    assert!(
        !out.status.success(),
        "expected failure, got success:\n{all}"
    );
    all
}

#[test]
fn bad_models_and_data_are_refused_with_what_to_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = exported().join("bad");

    let not_script = tmp.path().join("not-a-module.pt");
    std::fs::write(&not_script, b"this is not a zip archive").unwrap();
    refused(
        &config(tmp.path(), "sum", 5, &not_script, ""),
        "is not a TorchScript module",
    );
    let saved = refused(
        &config(tmp.path(), "sum", 5, &bad.join("state_dict.pt"), ""),
        "is not a TorchScript module (save one with `torch.jit.script(model).save(path)`",
    );
    assert!(
        saved.contains("it is a `torch.save` archive") && !saved.contains("corrupted"),
        "{saved}"
    );
    refused(
        &config(tmp.path(), "sum", 5, &bad.join("returns_tensor.pt"), ""),
        "forward must return Dict[str, Tensor]",
    );
    let vector = config(tmp.path(), "meltr", 5, &bad.join("vector_loss.pt"), "");
    let per_row = "forward's `retrieval` has shape [32]; every value must be a 0-dim tensor (reduce it, e.g. with .mean())";
    refused(&vector, per_row);
    // The replay says it alike (it stopped in a traceback: walkthrough J).
    let out = std::process::Command::new(common::torch_python())
        .arg(common::repo("scripts/meltr_replay.py"))
        .arg("run")
        .arg(&vector)
        .args(["--steps", "2", "--seed", "0", "--out"])
        .arg(tmp.path().join("vector-replay.json"))
        .output()
        .unwrap();
    let said = text(&out);
    assert!(
        !out.status.success() && said.contains(per_row) && !said.contains("Traceback"),
        "{said}"
    );
    // One value in a shape needs no reduction: said so.
    refused(
        &config(tmp.path(), "sum", 5, &bad.join("one_element_loss.pt"), ""),
        "forward's `retrieval` has shape [1]; every value must be a 0-dim tensor (drop its dimensions, e.g. with .squeeze()",
    );
    // A loss without a gradient is refused when the config trains on it;
    // left out, it is logged only, and a misspelt name is said as one
    // (the constant loss's refusal came first).
    let constant = config(tmp.path(), "sum", 5, &bad.join("constant_loss.pt"), "");
    let aux_of = |config: &Path, list: &str| {
        let text = std::fs::read_to_string(config).unwrap();
        let stem = config.file_stem().unwrap().to_string_lossy();
        let path = tmp.path().join(format!("{stem}-{}.toml", list.len()));
        let all = r#"auxiliary = ["align", "mlm", "mfm"]"#;
        assert!(text.contains(all));
        std::fs::write(&path, text.replace(all, &format!("auxiliary = [{list}]"))).unwrap();
        path
    };
    let with_aux = |list: &str| aux_of(&constant, list);
    refused(
        &with_aux(r#""align""#),
        "loss `align` is not differentiable with respect to any parameter",
    );
    refused(
        &with_aux(r#""alignn""#),
        "workload.auxiliary lists \"alignn\" (did you mean \"align\"?), which is not a loss of this workload; it has: align, retrieval",
    );
    // A model with no metrics of its own is not said to have the wrong
    // primary as one (its stand-in metric is the primary's validation loss,
    // named as the configured primary).
    // The config at `path` with `primary` for the primary loss.
    let with_primary = |path: &Path, primary: &str| {
        let text = std::fs::read_to_string(path).unwrap();
        let replaced = text.replace(
            "primary = \"retrieval\"",
            &format!("primary = \"{primary}\""),
        );
        assert_ne!(replaced, text, "{}", path.display());
        std::fs::write(path, replaced).unwrap();
    };
    let typo = aux_of(&constant, "");
    with_primary(&typo, "retrievall");
    refused(
        &typo,
        "workload.primary = \"retrievall\" is not a loss of this workload (did you mean \"retrieval\"?); it has: align, retrieval",
    );
    let sessions = tmp.path().join("sessions");
    let out = run(&sessions, &with_aux(""), "untrained");
    assert!(out.status.success(), "{}", text(&out));
    let (dir, _) = common::metrics_of(&sessions, "untrained");
    let said = common::events_matching(&dir, |m| m.contains("the model also returns align"));
    assert_eq!(said.len(), 1, "{said:?}");
    let all = refused(
        &config(tmp.path(), "sum", 5, &bad.join("missing_input.pt"), ""),
        "forward failed",
    );
    // Every row fails alone too: the model's fault, so no row is blamed.
    assert!(
        !all.contains("on its own") && !all.contains("on their own"),
        "{all}"
    );
    // (A model returning only its primary: the config names no other.)
    let wrong_method = config(tmp.path(), "sum", 5, &bad.join("wrong_loss_method.pt"), "");
    refused(
        &aux_of(&wrong_method, ""),
        "the optional `loss` method must return forward's value",
    );
    // One that samples in eval mode too draws alike in both (walkthrough
    // L1's VAE was refused).
    let sampling = config(tmp.path(), "sum", 5, &bad.join("samples_in_eval.pt"), "");
    let out = run(
        &tmp.path().join("sampling"),
        &aux_of(&sampling, ""),
        "sampling",
    );
    assert!(out.status.success(), "{}", text(&out));

    // The example model, with a primary it does not have.
    let model = exported().join("model.pt");
    let cfg = config(tmp.path(), "sum", 5, &model, "");
    with_primary(&cfg, "caption");
    refused(
        &cfg,
        "workload.primary = \"caption\" is not a loss of this workload; it has: align, mfm, mlm, retrieval, scramble",
    );
    // Also from a detached runner (issue 19, item 14: the runner failed
    // after the session folder was made, and left it behind).
    let sessions = tmp.path().join("detached");
    let out = run_with_limit(
        bin()
            .arg("--sessions-dir")
            .arg(&sessions)
            .args(["run", "--detach", "-n", "bad", "-c"])
            .arg(&cfg),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", common::text(&out));
    assert!(
        common::text(&out).contains("\"caption\" is not a loss"),
        "{}",
        common::text(&out)
    );
    assert!(
        session::list(&sessions).is_empty(),
        "{}",
        common::text(&out)
    );

    // Data whose tensors disagree on the sample dimension.
    let ragged = tmp.path().join("ragged.safetensors");
    tch::Tensor::write_safetensors(
        &[
            (
                "video",
                tch::Tensor::zeros([10, 8, 32], (tch::Kind::Float, tch::Device::Cpu)),
            ),
            (
                "text",
                tch::Tensor::zeros([9, 8], (tch::Kind::Int64, tch::Device::Cpu)),
            ),
        ],
        &ragged,
    )
    .unwrap();
    let cfg = config(tmp.path(), "sum", 5, &model, "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let train = exported().join("train.safetensors").display().to_string();
    std::fs::write(&cfg, text.replace(&train, &ragged.display().to_string())).unwrap();
    refused(
        &cfg,
        "tensors disagree on the sample dimension (first dimension): `video` has 10 rows, `text` has 9",
    );

    // Validation data without a tensor the model reads: the missing
    // tensor is named as the data's fault, above TorchScript's KeyError.
    let val = exported().join("val.safetensors");
    let lacking = tmp.path().join("val-without-word-mask.safetensors");
    let kept: Vec<(String, tch::Tensor)> = tch::Tensor::read_safetensors(&val)
        .unwrap()
        .into_iter()
        .filter(|(name, _)| name != "word_mask")
        .collect();
    tch::Tensor::write_safetensors(&kept, &lacking).unwrap();
    let cfg = config(tmp.path(), "sum", 5, &model, "");
    let text = std::fs::read_to_string(&cfg).unwrap();
    let val = val.display().to_string();
    std::fs::write(&cfg, text.replace(&val, &lacking.display().to_string())).unwrap();
    let all = refused(
        &cfg,
        &format!(
            "workload.val ({}) has no tensor `word_mask`, which workload.train has",
            lacking.display()
        ),
    );
    assert!(all.contains("KeyError: word_mask"), "{all}");

    // A walkthrough's data errors in the other direction, and integer
    // labels of another width: each named by tensor and file.
    let train = exported().join("train.safetensors");
    let rewritten =
        |from: &Path, to: &str, map: &dyn Fn(&str, tch::Tensor) -> Option<tch::Tensor>| {
            let path = tmp.path().join(to);
            let kept: Vec<(String, tch::Tensor)> = tch::Tensor::read_safetensors(from)
                .unwrap()
                .into_iter()
                .filter_map(|(name, t)| map(&name, t).map(|t| (name, t)))
                .collect();
            tch::Tensor::write_safetensors(&kept, &path).unwrap();
            path
        };
    let with_data = |train_file: &Path, val_file: &Path| {
        let cfg = config(tmp.path(), "sum", 5, &model, "");
        let text = std::fs::read_to_string(&cfg).unwrap();
        let text = text
            .replace(
                &train.display().to_string(),
                &train_file.display().to_string(),
            )
            .replace(&val, &val_file.display().to_string());
        std::fs::write(&cfg, text).unwrap();
        cfg
    };
    let val_path = PathBuf::from(&val);
    let train_lacking = rewritten(&train, "train-without-word-mask.safetensors", &|name, t| {
        (name != "word_mask").then_some(t)
    });
    let all = refused(
        &with_data(&train_lacking, &val_path),
        &format!(
            "workload.train ({}) has no tensor `word_mask`, which workload.val has",
            train_lacking.display()
        ),
    );
    assert!(all.contains("KeyError: word_mask"), "{all}");
    let narrow = |name: &str, t: tch::Tensor| {
        Some(if name == "scramble" {
            t.to_kind(tch::Kind::Int)
        } else {
            t
        })
    };
    let train_i32 = rewritten(&train, "train-i32.safetensors", &narrow);
    refused(
        &with_data(&train_i32, &val_path),
        "tensor `scramble`: workload.train and workload.val disagree, Int values in workload.train",
    );
    let val_i32 = rewritten(&val_path, "val-i32.safetensors", &narrow);
    refused(
        &with_data(&train_i32, &val_i32),
        "`scramble` (Int) not Int64: class indices for `cross_entropy` and `nll_loss` must be Int64",
    );

    // A 1-row validation split under meltr.val_source = "val": the meta
    // step's validation forward in training mode (the example's BatchNorm)
    // fails, before step 1 (a walkthrough's failed at the first meta step).
    let one_row = rewritten(&val_path, "val-one-row.safetensors", &|_, t| {
        Some(t.narrow(0, 0, 1))
    });
    let meltr_on = |val_source: &str| {
        let cfg = config(tmp.path(), "meltr", 5, &model, "");
        let text = std::fs::read_to_string(&cfg).unwrap();
        let text = text.replace(&val, &one_row.display().to_string()).replace(
            "[meltr]\n",
            &format!("[meltr]\nval_source = \"{val_source}\"\n"),
        );
        std::fs::write(&cfg, text).unwrap();
        cfg
    };
    let all = refused(
        &meltr_on("val"),
        "meltr.val_source = \"val\": the meta step's validation forward (the model in training mode, \
         on a batch of the validation split) fails, tried before training",
    );
    assert!(
        all.contains("Expected more than 1 value per channel"),
        "{all}"
    );
    let out = run(tmp.path(), &meltr_on("recent"), "one-row-recent");
    assert!(out.status.success(), "{}", common::text(&out));
}

#[test]
fn resume_restores_parameters_and_buffers() {
    let tmp = tempfile::tempdir().unwrap();
    let model = exported().join("model.pt");
    // Shares at steps 15 and 30: on both sides of the resume.
    let with_shares = |path: PathBuf| {
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replace("log_every = 5", "log_every = 5\nshares_every = 15"),
        )
        .unwrap();
        path
    };
    // Uninterrupted: 40 steps.
    let cfg = with_shares(config(tmp.path(), "meltr", 40, &model, ""));
    assert!(run(tmp.path(), &cfg, "straight").status.success());
    // Interrupted at 20 (a checkpoint), then resumed to 40.
    let cfg20 = with_shares(config(tmp.path(), "meltr", 20, &model, ""));
    assert!(run(tmp.path(), &cfg20, "resumed").status.success());
    let dir = session::find(tmp.path(), "resumed").unwrap();
    let live = dir.join("config.toml");
    let text20 = std::fs::read_to_string(&live).unwrap();
    std::fs::write(&live, text20.replace("steps = 20", "steps = 40")).unwrap();
    let out = run_with_limit(
        bin()
            .arg("--sessions-dir")
            .arg(tmp.path())
            .args(["resume", "--headless"])
            .arg(&dir),
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out));

    let (_, a) = metrics_of(tmp.path(), "straight");
    let (_, b) = metrics_of(tmp.path(), "resumed");
    // The shares' fallback (the example's fused attention) is said once,
    // not again by the resume (which tries the double backward again).
    let fallbacks = |lines: &[MetricLine]| {
        lines
            .iter()
            .filter(|l| matches!(&l.record, Record::Event { message, .. } if message.contains("one backward pass per loss")))
            .count()
    };
    assert_eq!((fallbacks(&a), fallbacks(&b)), (1, 1));
    let shares_after_resume = b.iter().any(
        |l| matches!(&l.record, Record::Train { shares, .. } if l.step > 20 && !shares.is_empty()),
    );
    assert!(shares_after_resume, "no shares after the resume: {b:?}");
    // The validation pass runs the module in eval mode, where BatchNorm uses
    // its running statistics: equal evals at step 40 need restored buffers.
    let (ea, eb) = (evals(&a, "retrieval"), evals(&b, "retrieval"));
    assert_eq!(ea.len(), 4);
    assert_eq!(eb.len(), 4, "{b:?}");
    // Two runs of the same config can differ in the last bits (measured: a
    // shares value at step 5), and 20 steps amplified that to 2e-4 once
    // under a loaded test run; the bound leaves room for it.
    for (x, y) in ea.iter().zip(&eb) {
        assert!(
            (x - y).abs() <= 2e-3 * x.abs().max(1.0),
            "straight {ea:?} vs resumed {eb:?}"
        );
    }
}

/// A resume that cannot start (its validation data moved away) left a
/// finished session "failed" for good, with the resume's `--set` in its
/// config.toml; a fork that could not start left a failed folder (a
/// walkthrough).
#[test]
fn a_resume_or_fork_that_cannot_start_leaves_the_session_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let val = tmp.path().join("val.safetensors");
    std::fs::copy(exported().join("val.safetensors"), &val).unwrap();
    let cfg = config(tmp.path(), "sum", 20, &exported().join("model.pt"), "");
    let body = std::fs::read_to_string(&cfg).unwrap();
    let exported_val = exported().join("val.safetensors").display().to_string();
    std::fs::write(
        &cfg,
        body.replace(&exported_val, &val.display().to_string()),
    )
    .unwrap();
    let sessions = tmp.path().join("sessions");
    assert!(run(&sessions, &cfg, "moved").status.success());
    let dir = session::find(&sessions, "moved").unwrap();
    let config_before = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    let moved = tmp.path().join("elsewhere.safetensors");
    std::fs::rename(&val, &moved).unwrap();
    let cli = |args: &[&str]| {
        run_with_limit(bin().arg("--sessions-dir").arg(&sessions).args(args), LIMIT)
    };
    let out = cli(&["resume", "--headless", "moved", "--set", "train.steps=40"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("is as it was (finished, its config.toml unchanged)"),
        "{}",
        text(&out)
    );
    let meta = session::SessionMeta::read(&dir).unwrap();
    assert_eq!(meta.status, session::Status::Finished, "{:?}", meta.error);
    assert_eq!(
        std::fs::read_to_string(dir.join("config.toml")).unwrap(),
        config_before
    );
    let out = cli(&["fork", "--headless", "moved", "--set", "train.steps=40"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        session::list(&sessions).len(),
        1,
        "a failed fork's folder was left"
    );
    // With the file back, the resume trains on.
    std::fs::rename(&moved, &val).unwrap();
    let out = cli(&["resume", "--headless", "moved", "--set", "train.steps=40"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(logged_train_steps(&dir).last(), Some(&40));
}

/// `export --format model` writes the fine-tuned module: the newest
/// checkpoint's parameters, not the ones it started from.
#[test]
fn export_writes_the_trained_torchscript_module() {
    let tmp = tempfile::tempdir().unwrap();
    let model = exported().join("model.pt");
    let cfg = config(tmp.path(), "sum", 20, &model, "");
    assert!(run(tmp.path(), &cfg, "tuned").status.success());
    let dir = session::find(tmp.path(), "tuned").unwrap();
    let out_dir = tmp.path().join("out");
    let out = bin()
        .arg("--sessions-dir")
        .arg(tmp.path())
        .args(["export", "tuned", "--format", "model", "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let id = dir.file_name().unwrap().to_string_lossy().to_string();
    let written = out_dir.join(format!("{id}-step-20.pt"));
    assert!(
        text(&out).contains(&format!("wrote {}", written.display())),
        "{}",
        text(&out)
    );
    let params = |path: &Path| {
        tch::CModule::load(path)
            .unwrap()
            .named_parameters()
            .unwrap()
    };
    let checkpoint =
        tch::Tensor::read_safetensors(dir.join("checkpoints/step-0000000020.safetensors"))
            .unwrap()
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>();
    let (tuned, initial) = (params(&written), params(&model));
    assert_eq!(tuned.len(), initial.len());
    let mut moved = 0;
    for ((name, t), (_, t0)) in tuned.iter().zip(&initial) {
        let saved = &checkpoint[&format!("model.{}", name.replace('.', "_"))];
        assert!(t.equal(saved), "{name} is not the checkpoint's");
        moved += usize::from(!t.equal(t0));
    }
    assert!(moved > 0, "the exported module is the untrained one");
    // Buffers keep their dtypes: BatchNorm's `num_batches_tracked` is
    // int64 as the model had it (it came back float32, walkthrough G).
    let buffer_kinds = |path: &Path| {
        let module = tch::CModule::load(path).unwrap();
        let buffers = meltr_tui::workload::torchscript::named_buffers(&module).unwrap();
        let kinds: Vec<(String, tch::Kind)> =
            buffers.iter().map(|(n, t)| (n.clone(), t.kind())).collect();
        kinds
    };
    let initial_kinds = buffer_kinds(&model);
    assert!(
        initial_kinds.iter().any(|(_, k)| *k == tch::Kind::Int64),
        "the example has an integer buffer to check: {initial_kinds:?}"
    );
    assert_eq!(buffer_kinds(&written), initial_kinds);

    // --best: the one kept checkpoint written at an evaluation (step 20),
    // the metric named; --at a step without a checkpoint lists those kept.
    let export = |extra: &[&str]| {
        bin()
            .arg("--sessions-dir")
            .arg(tmp.path())
            .args(["export", "tuned", "--out"])
            .arg(&out_dir)
            .args(extra)
            .output()
            .unwrap()
    };
    std::fs::remove_file(&written).unwrap();
    let best = export(&["--format", "model", "--best"]);
    assert!(best.status.success(), "{}", text(&best));
    assert!(
        text(&best).contains("as trained to step 20; the ")
            && text(&best).contains("among the kept checkpoints' evaluations")
            && written.exists(),
        "{}",
        text(&best)
    );
    let at = export(&["--format", "model", "--at", "10"]);
    assert!(
        !at.status.success()
            && text(&at).contains("has no checkpoint at step 10; it has checkpoints at steps 20"),
        "{}",
        text(&at)
    );
    let figures = export(&["--best"]);
    assert!(
        !figures.status.success() && text(&figures).contains("add --format model"),
        "{}",
        text(&figures)
    );
    // As a fork at step 20, that checkpoint and its evaluation are its
    // parent's: none of its own has an evaluation (a review: `export
    // --best` took the parent's model where `table --best` read the fork's).
    let mut meta = session::SessionMeta::read(&dir).unwrap();
    meta.parent = Some("parent".into());
    meta.fork_step = Some(20);
    meta.write(&dir).unwrap();
    let fork = export(&["--format", "model", "--best"]);
    assert!(
        !fork.status.success()
            && text(&fork).contains("no kept checkpoint was written at an evaluation's step"),
        "{}",
        text(&fork)
    );
}

/// `check` builds the run without training: a misspelt auxiliary loss
/// of a TorchScript model (known only once it runs) is said with the
/// model's losses, and no session is left; a good config says what it
/// would train. A sweep's `--dry-run` checks its first member alike
/// (walkthrough H: it passed, then every member failed).
#[test]
fn check_and_a_sweeps_dry_run_build_the_model_before_any_session() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "meltr", 20, &exported().join("model.pt"), "");
    let cli = |args: &[&str]| {
        bin()
            .arg("--sessions-dir")
            .arg(tmp.path().join("sessions"))
            .args(args)
            .output()
            .unwrap()
    };
    let path = cfg.to_str().unwrap();
    let good = cli(&["check", "-c", path]);
    assert!(good.status.success(), "{}", text(&good));
    assert!(
        text(&good).contains("ok, a run would train the torchscript workload on cpu")
            && text(&good).contains("auxiliary      align, mlm, mfm")
            && text(&good).contains("combiner       meltr · 20 steps")
            && text(&good).contains("first batch    retrieval ")
            // One batch passed: said as such (walkthrough S's model made
            // NaN on one batch in six).
            // Of how many (walkthrough R2).
            && text(&good).contains("scanned        the first training batch of the ")
            && text(&good).contains(" an epoch and the first validation batch only: `--batches N`"),
        "{}",
        text(&good)
    );
    let misspelt = "workload.auxiliary=[\"align\",\"mlmm\"]";
    let bad = cli(&["check", "-c", path, "--set", misspelt]);
    assert!(
        !bad.status.success()
            && text(&bad).contains(
                "workload.auxiliary lists \"mlmm\" (did you mean \"mlm\"?), which is not a loss of this workload"
            ),
        "{}",
        text(&bad)
    );
    let sweep = cli(&[
        "sweep",
        "-c",
        path,
        "--set",
        "combiner.kind=meltr,sum",
        "--set",
        misspelt,
        "--dry-run",
    ]);
    assert!(
        !sweep.status.success()
            && text(&sweep).contains("the sweep's first member")
            && text(&sweep).contains("\"mlmm\" (did you mean \"mlm\"?), which is not a loss"),
        "{}",
        text(&sweep)
    );
    assert!(!tmp.path().join("sessions").exists(), "a session was made");
    // In the file, the key's line is named by a start through a runner too
    // (`run --detach`, the TUI's `run` and `new`), as by `check` (walkthrough
    // O1's TUI start named the file alone).
    let body = std::fs::read_to_string(&cfg).unwrap();
    let line = 1 + body
        .lines()
        .position(|l| l.starts_with("auxiliary = "))
        .expect("the config lists its auxiliaries");
    let body = body.replace("\"mlm\"", "\"mlmm\"");
    std::fs::write(&cfg, body).unwrap();
    let at = format!("{path}:{line}: ");
    for args in [&["check", "-c", path][..], &["run", "--detach", "-c", path]] {
        let bad = cli(args);
        assert!(
            !bad.status.success()
                && text(&bad).contains(&at)
                && text(&bad).contains("\"mlmm\" (did you mean \"mlm\"?)"),
            "{args:?}: {}",
            text(&bad)
        );
    }
}

/// `check` says each loss's share of the first batch's gradient under
/// equal weights (a loss's value understated its pull: walkthrough E's 8x
/// loss carried 70–100% of `sum`'s gradient): the shares a `sum` run logs
/// at its first step, on the same batch and θ.
#[test]
fn check_says_the_first_batchs_gradient_shares_as_a_sum_run_logs_them() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "sum", 1, &exported().join("model.pt"), "");
    let sessions = tmp.path().join("sessions");
    let checked = bin().arg("check").arg("-c").arg(&cfg).output().unwrap();
    assert!(checked.status.success(), "{}", text(&checked));
    let said = text(&checked);
    let line = said
        .lines()
        .find_map(|l| l.strip_prefix("  gradient       "))
        .unwrap_or_else(|| panic!("no gradient line:\n{said}"));
    let printed: Vec<(String, f64)> = line
        .split(" (shares")
        .next()
        .unwrap()
        .split(", ")
        .map(|part| {
            let (name, percent) = part.rsplit_once(' ').unwrap();
            let percent = percent.trim_end_matches('%').parse();
            (
                name.to_string(),
                percent.unwrap_or_else(|e| panic!("{part}: {e}\n{said}")),
            )
        })
        .collect();
    let names: Vec<&str> = printed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["retrieval", "align", "mlm", "mfm"], "{line}");
    // Under `primary` the auxiliaries train nothing: said, and no hint on
    // how they share the gradient (walkthrough Z3).
    let primary = bin()
        .arg("check")
        .arg("-c")
        .arg(&cfg)
        .args(["--set", "combiner.kind=primary"])
        .output()
        .unwrap();
    let said_primary = text(&primary);
    assert!(
        primary.status.success()
            && said_primary.contains(
                "hint: under combiner.kind = \"primary\" the auxiliaries (align, mlm, mfm) train nothing"
            )
            && said_primary.matches("hint: ").count() == 1,
        "{said_primary}"
    );
    let out = run_with_limit(
        bin()
            .arg("--sessions-dir")
            .arg(&sessions)
            .args([
                "run",
                "--headless",
                "-n",
                "first",
                "--set",
                "train.log_every=1",
            ])
            .args(["--set", "train.shares_every=1", "-c"])
            .arg(&cfg),
        LIMIT,
    );
    assert!(out.status.success(), "{}", text(&out));
    let (_, lines) = metrics_of(&sessions, "first");
    let logged = lines
        .iter()
        .find_map(|l| match &l.record {
            Record::Train { shares, .. } if l.step == 1 && !shares.is_empty() => {
                Some(shares.clone())
            }
            _ => None,
        })
        .expect("step 1's shares");
    for (name, percent) in &printed {
        let share = 100.0 * logged[name];
        assert!(
            (share - percent).abs() <= 0.051,
            "{name}: check {percent}%, run {share}%"
        );
    }
}

/// A safetensors dtype libtorch has no kind for (U16) is named with its
/// tensor; libtorch's own error named neither the tensor nor a fix.
#[test]
fn a_dtype_libtorch_cannot_read_is_named_with_its_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let val = flag_data(&tmp.path().join("val.safetensors"), 16, 4, &[]);
    let train = tmp.path().join("train.safetensors");
    let header = r#"{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"U16","shape":[2],"data_offsets":[8,12]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header.as_bytes());
    bytes.extend([0u8; 12]);
    std::fs::write(&train, bytes).unwrap();
    let cfg = flag_config(tmp.path(), "u16", "metrics.pt", &train, &val);
    refused(
        &cfg,
        &format!(
            "workload.train: {}: tensor `y` has dtype U16, which libtorch cannot read (it reads BOOL, U8,",
            train.display()
        ),
    );
}

/// A TorchScript module given as the training data read "HeaderTooLarge"
/// and nothing else (walkthrough P): the error says what the file is.
#[test]
fn a_module_given_as_data_is_said_to_be_one() {
    let tmp = tempfile::tempdir().unwrap();
    let val = flag_data(&tmp.path().join("val.safetensors"), 16, 4, &[]);
    let module = flag_models().join("metrics.pt");
    let cfg = flag_config(tmp.path(), "module_as_data", "metrics.pt", &module, &val);
    refused(
        &cfg,
        "(it is a zip archive: a TorchScript module, a torch.save file or a NumPy .npz? The data takes safetensors.torch.save_file(",
    );
}

fn flag_config(dir: &Path, name: &str, model: &str, train: &Path, val: &Path) -> PathBuf {
    let body = format!(
        "[workload]\nkind = \"torchscript\"\nmodel = \"{model}\"\ntrain = \"{train}\"\nval = \"{val}\"\n\
         primary = \"primary\"\nauxiliary = [\"aux\"]\nbatch_size = 8\n\n\
         [train]\ndevice = \"cpu\"\nsteps = 40\nlog_every = 1\neval_every = 5\ncheckpoint_every = 1000\n\n\
         [meltr]\nd_model = 16\nd_hidden = 16\nd_ff = 32\nheads = 2\n",
        model = flag_models().join(model).display(),
        train = train.display(),
        val = val.display(),
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, body).unwrap();
    path
}

/// Float class indices beside other whole-number float tensors: only the
/// tensors whose cast lets the forward through are named, the second
/// label too, whose `cross_entropy` the first one's error hides
/// (walkthrough G1's hint also named a 0/1 mask used as row weights).
#[test]
fn float_class_indices_are_named_alone_among_whole_number_floats() {
    let tmp = tempfile::tempdir().unwrap();
    let with_labels = |name: &str| {
        let path = tmp.path().join(format!("{name}.safetensors"));
        let mut tensors = tch::Tensor::read_safetensors(flag_data(&path, 32, 4, &[])).unwrap();
        let rows = tensors[0].1.size()[0];
        let label = tch::Tensor::arange(rows, (tch::Kind::Float, tch::Device::Cpu)).remainder(3);
        let keep = tch::Tensor::arange(rows, (tch::Kind::Float, tch::Device::Cpu)).remainder(2);
        tensors.push(("label2".to_string(), (&label + 1.0).remainder(3)));
        tensors.push(("label".to_string(), label));
        tensors.push(("keep".to_string(), keep));
        tch::Tensor::write_safetensors(&tensors, &path).unwrap();
        path
    };
    // `check` refuses the data: all it says, and its class-index hint.
    let checked = |name: &str, train: &Path, val: &Path| {
        let cfg = flag_config(tmp.path(), name, "float_labels.pt", train, val);
        let out = bin().arg("check").arg("-c").arg(&cfg).output().unwrap();
        let said = text(&out);
        assert!(!out.status.success(), "{said}");
        let hint = said
            .lines()
            .find(|l| l.contains("not Int64: class indices"))
            .unwrap_or_else(|| panic!("no class-index hint: {said}"))
            .to_string();
        (said, hint)
    };
    let (train, val) = (with_labels("train"), with_labels("val"));
    let (_, hint) = checked("float-labels", &train, &val);
    // `flag` and `keep` hold 0/1 floats too.
    assert!(
        hint.starts_with("`label` (Float), `label2` (Float) not Int64"),
        "{hint}"
    );
    // Labels marked -100 on the rows without one (cross entropy's ignore
    // index), `label2` stored right: `label` is named, and the rows that
    // use it are not listed as failing on their own (walkthrough G5's -1
    // labels were passed over for its mask, and its labelled rows listed).
    let with_sentinel = |name: &str| {
        let path = tmp.path().join(format!("{name}.safetensors"));
        let read = tch::Tensor::read_safetensors(&train).unwrap();
        // Rows of class 0 are those without a label here.
        let label = read.iter().find(|(n, _)| n == "label").unwrap().1.copy();
        let labelled = label.ne(0.0);
        let tensors: Vec<(String, tch::Tensor)> = read
            .into_iter()
            .map(|(n, t)| match n.as_str() {
                "label" => (n, t.where_self(&labelled, &t.full_like(-100.0))),
                "keep" => (n, labelled.to_kind(tch::Kind::Float)),
                "label2" => (n, t.to_kind(tch::Kind::Int64)),
                _ => (n, t),
            })
            .collect();
        tch::Tensor::write_safetensors(&tensors, &path).unwrap();
        path
    };
    let (train, val) = (with_sentinel("train-ignore"), with_sentinel("val-ignore"));
    let (said, hint) = checked("ignore-index", &train, &val);
    assert!(!said.contains("on their own"), "{said}");
    assert!(hint.starts_with("`label` (Float) not Int64"), "{hint}");
}

/// `check` said "ok" for a model whose primary loss was NaN on the first
/// batch (a mean over no labelled rows), and a run failed at step 50; a
/// loss NaN on some batches only is found with `--batches` (walkthrough O).
#[test]
fn check_fails_on_losses_that_are_not_finite_on_the_batches_it_scans() {
    let tmp = tempfile::tempdir().unwrap();
    let val = flag_data(&tmp.path().join("val.safetensors"), 32, 4, &[]);
    let check = |name: &str, flagged: &[i64], extra: &[&str]| {
        let train = flag_data(
            &tmp.path().join(format!("{name}.safetensors")),
            64,
            4,
            flagged,
        );
        let cfg = flag_config(tmp.path(), name, "nan_on_flag.pt", &train, &val);
        let out = bin()
            .arg("check")
            .arg("-c")
            .arg(&cfg)
            .args(extra)
            .output()
            .unwrap();
        (out.status.success(), text(&out))
    };
    let every_row: Vec<i64> = (0..64).collect();
    let (ok, said) = check("all", &every_row, &[]);
    assert!(
        !ok && said.contains("loss `primary` is not finite on the first training batch")
            && said.contains("`check --batches N` scans more batches")
            && said.contains("The model makes it (the data holds no NaN it leaves unmasked)")
            && !said.contains(": ok, a run would train"),
        "{said}"
    );
    // No share of a NaN gradient (walkthrough K: `primary NaN%`), and why.
    assert!(
        said.contains(
            "gradient       shares not taken: not every loss is finite on the first batch"
        ) && !said.contains("NaN%"),
        "{said}"
    );
    // NaN in the data the model does not mask: said to be the data's
    // (walkthrough K was told "where the data is finite, the model makes it").
    let nan_y = tmp.path().join("nan-y.safetensors");
    let mut tensors = tch::Tensor::read_safetensors(flag_data(&nan_y, 64, 4, &[])).unwrap();
    for (name, t) in tensors.iter_mut() {
        if name == "y" {
            let _ = t.fill_(f64::NAN);
        }
    }
    tch::Tensor::write_safetensors(&tensors, &nan_y).unwrap();
    let cfg = flag_config(tmp.path(), "nan-y", "nan_on_flag.pt", &nan_y, &val);
    let out = bin().arg("check").arg("-c").arg(&cfg).output().unwrap();
    let said = text(&out);
    assert!(
        !out.status.success()
            && said
                .contains("The training data holds NaN or inf (the warnings above name the rows)"),
        "{said}"
    );
    // NaN in the data, and a model whose losses are NaN on clean rows as
    // well: not blamed on the data (walkthrough S's model multiplied its
    // primary by NaN, and was told its masked labels did it).
    let both = tmp.path().join("both.safetensors");
    let mut tensors = tch::Tensor::read_safetensors(flag_data(&both, 64, 4, &every_row)).unwrap();
    for (name, t) in tensors.iter_mut() {
        if name == "y" {
            let _ = t.narrow(0, 0, 4).fill_(f64::NAN);
        }
    }
    tch::Tensor::write_safetensors(&tensors, &both).unwrap();
    let cfg = flag_config(tmp.path(), "both", "nan_on_flag.pt", &both, &val);
    let out = bin().arg("check").arg("-c").arg(&cfg).output().unwrap();
    let said = text(&out);
    assert!(
        !out.status.success()
            && said.contains("unless the model masks them, which cannot be told")
            && said.contains("The model makes it: its losses are not finite on a batch of rows whose data is finite")
            && !said.contains("The training data holds NaN or inf"),
        "{said}"
    );
    // NaN the model masks, on so many rows that a batch has none left
    // (walkthrough Q: told "masks them" and "does not mask them" at once).
    let sparse_y = tmp.path().join("sparse-y.safetensors");
    let mut tensors = tch::Tensor::read_safetensors(flag_data(&sparse_y, 64, 4, &[])).unwrap();
    for (name, t) in tensors.iter_mut() {
        if name == "y" {
            let _ = t.narrow(0, 0, 60).fill_(f64::NAN);
        }
    }
    tch::Tensor::write_safetensors(&tensors, &sparse_y).unwrap();
    let cfg = flag_config(tmp.path(), "sparse-y", "masks_nan.pt", &sparse_y, &val);
    let (ok, said) = check_batches(&cfg, 8);
    assert!(
        !ok && said.contains("the model masks them")
            && !said.contains("does not mask them")
            && said.contains("a batch whose rows are all masked")
            && said.contains("return `torch.zeros(())` when the batch selects nothing"),
        "{said}"
    );
    // Row 63 is in one batch of 8 per epoch (batch_size 8 of 64 rows).
    let (ok, said) = check("one", &[63], &["--batches", "8"]);
    let found = said
        .split_once("is not finite on 1 of 8 training batches (step ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(step, _)| step.parse::<u64>().unwrap());
    assert!(!ok && found.is_some(), "{said}");
    assert!(
        said.contains("a run skips the update of every such step"),
        "{said}"
    );
    let (first_only_ok, said) = check("one", &[63], &[]);
    assert_eq!(first_only_ok, found != Some(1), "{said}");
    let (ok, said) = check("clean", &[], &["--batches", "8"]);
    assert!(
        ok && said.contains("8 training batches scanned of the 8 an epoch: every loss finite on each")
            && !said.contains("the first training batch and the first validation batch only")
            && said.contains("validation     one evaluation: every loss and metric finite")
            // The untrained model's metrics (walkthrough N wanted its PSNR).
            && said.contains("; as the model starts, "),
        "{said}"
    );
    // NaN on the validation split only (walkthrough P: found by the run's
    // evaluation at step 50): `--batches` evaluates once.
    let train = flag_data(&tmp.path().join("clean.safetensors"), 64, 4, &[]);
    let flagged_val = flag_data(&tmp.path().join("flagged_val.safetensors"), 32, 4, &[5]);
    let cfg = flag_config(tmp.path(), "val", "nan_on_flag.pt", &train, &flagged_val);
    let (ok, said) = check_batches(&cfg, 2);
    assert!(
        !ok && said.contains("a run would train the torchscript workload on cpu, but not every value is finite (below)")
            && said.contains("one evaluation: loss `aux`, loss `primary`")
            && said.contains("is not finite on the validation split"),
        "{said}"
    );
}

/// `check --batches N -c CONFIG`: whether it passed, and what it said.
fn check_batches(config: &Path, batches: u64) -> (bool, String) {
    let out = bin()
        .args(["check", "--batches", &batches.to_string(), "-c"])
        .arg(config)
        .output()
        .unwrap();
    (out.status.success(), text(&out))
}

/// Issue 19, item 13: a TorchScript error at run time said neither which
/// batch nor which model file; val data were checked only at the first
/// evaluation.
#[test]
fn runtime_errors_name_the_batch_and_the_model_file_and_val_data_are_checked_up_front() {
    let tmp = tempfile::tempdir().unwrap();
    let sessions = tmp.path().join("sessions");
    let model = flag_models()
        .join("raises_on_flag.pt")
        .display()
        .to_string();
    let exception = "RuntimeError: a flagged row reached the model";
    let clean_train = flag_data(&tmp.path().join("train.safetensors"), 64, 4, &[]);
    let clean_val = flag_data(&tmp.path().join("val.safetensors"), 32, 4, &[]);

    // A training batch: row 40 is in one batch of the first epochs.
    let train = flag_data(&tmp.path().join("train40.safetensors"), 64, 4, &[40]);
    let cfg = flag_config(tmp.path(), "train", "raises_on_flag.pt", &train, &clean_val);
    let out = run(&sessions, &cfg, "train");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    for needle in [exception, model.as_str()] {
        assert!(all.contains(needle), "no `{needle}` in:\n{all}");
    }
    let step: u64 = all
        .split("the training batch of step ")
        .nth(1)
        .and_then(|rest| rest.split([' ', ':']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no training batch named in:\n{all}"));
    // ... and its rows, the flagged row 40 among them.
    let rows = all
        .split_once(&format!(
            "the training batch of step {step} (training rows ["
        ))
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(rows, _)| {
            rows.split(", ")
                .map(|r| r.parse::<i64>().unwrap())
                .collect::<Vec<_>>()
        })
        .unwrap_or_else(|| panic!("no rows named in:\n{all}"));
    assert!(rows.contains(&40), "{rows:?}");
    // The row that fails on its own is found, and the batch's tensors listed.
    assert!(
        all.contains("; of those, row 40 fails on its own: "),
        "{all}"
    );
    assert!(all.contains("the batch it was given: `"), "{all}");
    // `check --batches` names them too (it said only "training batch 26",
    // walkthrough A).
    let (ok, said) = check_batches(&cfg, step);
    assert!(
        !ok && said.contains(&format!(
            "the forward of training batch {step} (training rows ["
        )) && said.contains("; of those, row 40 fails on its own: "),
        "{said}"
    );
    let dir = session::find(&sessions, "train").unwrap();
    let logged = common::logged_train_steps(&dir);
    assert_eq!(
        logged,
        (1..step).collect::<Vec<_>>(),
        "it failed at step {step}"
    );
    let meta = session::SessionMeta::read(&dir).unwrap();
    assert!(meta
        .error
        .unwrap_or_default()
        .contains(&format!("step {step}")));

    // The model's outputs are checked on the data's first rows, 0–7.
    let train = flag_data(&tmp.path().join("train3.safetensors"), 64, 4, &[3, 5]);
    let cfg = flag_config(
        tmp.path(),
        "train3",
        "raises_on_flag.pt",
        &train,
        &clean_val,
    );
    refused(
        &cfg,
        "the training data's first 8 rows in file order (0–7, not the run's shuffled first batch), where the model's outputs are checked; \
         of those, rows [3, 5] fail on their own: ",
    );
    // Rows 3 and 5 fail alone too with a model that reads `extra` for
    // flagged rows, a tensor the training file lacks: the tensor is the
    // fault, named, and no row is blamed (walkthrough P).
    let val_extra = tmp.path().join("val_extra.safetensors");
    let mut tensors = tch::Tensor::read_safetensors(&clean_val).unwrap();
    tensors.push((
        "extra".into(),
        tch::Tensor::zeros([32], tch::kind::FLOAT_CPU),
    ));
    tch::Tensor::write_safetensors(&tensors, &val_extra).unwrap();
    let cfg = flag_config(
        tmp.path(),
        "extra",
        "reads_extra_on_flag.pt",
        &train,
        &val_extra,
    );
    let said = refused(&cfg, "has no tensor `extra`, which workload.val has");
    assert!(!said.contains("fail on their own"), "{said}");
    // Step 1's batch is shuffled: a row of it past the first eight was
    // reported with neither the batch nor the row, by `run` and `check`
    // (walkthrough I). Every row from 8 on is flagged here.
    let flagged: Vec<i64> = (8..64).collect();
    let train = flag_data(&tmp.path().join("train8.safetensors"), 64, 4, &flagged);
    let cfg = flag_config(
        tmp.path(),
        "train8",
        "raises_on_flag.pt",
        &train,
        &clean_val,
    );
    let (ok, said) = check_batches(&cfg, 1);
    assert!(
        !ok && said.contains("the forward of training batch 1 (training rows [")
            && said.contains(" fail on their own: "),
        "{said}"
    );

    // A validation batch at an evaluation: rows 16..24 are its third of four.
    let val = flag_data(&tmp.path().join("val20.safetensors"), 32, 4, &[20]);
    let cfg = flag_config(tmp.path(), "val", "raises_on_flag.pt", &clean_train, &val);
    let out = run(&sessions, &cfg, "val");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let batch = format!(
        "validation batch 3 of 4 (rows 16..24 of workload.val {})",
        val.display()
    );
    // The row, and the training so far kept (a walkthrough lost 50 steps
    // to a bad validation label): a checkpoint at the failed evaluation.
    let kept =
        "the evaluation at step 5 failed; the training up to step 5 is kept in its checkpoint";
    for needle in [
        batch.as_str(),
        exception,
        model.as_str(),
        kept,
        "; of those, row 20 fails on its own: ",
    ] {
        assert!(all.contains(needle), "no `{needle}` in:\n{all}");
    }
    let dir = session::find(&sessions, "val").unwrap();
    assert!(
        dir.join("checkpoints/step-0000000005.safetensors").exists(),
        "{all}"
    );
    // With the row fixed, `resume` goes on from there and owes step 5 its
    // evaluation.
    flag_data(&val, 32, 4, &[]);
    let mut cmd = bin();
    cmd.arg("--sessions-dir")
        .arg(&sessions)
        .args(["resume", "--headless"])
        .arg(&dir);
    let out = run_with_limit(&mut cmd, Duration::from_secs(120));
    assert!(out.status.success(), "{}", text(&out));
    let (_, lines) = metrics_of(&sessions, "val");
    let evals: Vec<u64> = lines
        .iter()
        .filter(|l| matches!(l.record, Record::Eval { .. }))
        .map(|l| l.step)
        .collect();
    assert_eq!(evals, (1..=8).map(|i| 5 * i).collect::<Vec<_>>());

    // Val data the model cannot take are refused before step 1, like
    // training data: a batch it fails on, and a shape unlike train's.
    let val = flag_data(&tmp.path().join("val2.safetensors"), 32, 4, &[2]);
    let cfg = flag_config(tmp.path(), "first", "raises_on_flag.pt", &clean_train, &val);
    let batch = format!(
        "workload.val: the first validation batch (rows 0..8 of {})",
        val.display()
    );
    let all = refused(&cfg, &batch);
    assert!(all.contains(exception), "{all}");
    // The same refusal from a detached runner: the model's exception (a
    // report of several lines) is said once.
    let all = refused_detached(&cfg, &tmp.path().join("detached"));
    assert_eq!(all.matches(exception).count(), 1, "{all}");
    assert_eq!(all.matches(&batch).count(), 1, "{all}");
    let val = flag_data(&tmp.path().join("wide.safetensors"), 32, 5, &[]);
    let cfg = flag_config(tmp.path(), "wide", "raises_on_flag.pt", &clean_train, &val);
    let all = refused(
        &cfg,
        &format!(
            "tensor `x`: workload.train and workload.val disagree, [4] per sample in workload.train ({}, shape [64, 4]), [5] in workload.val ({}, shape [32, 5])",
            clean_train.display(),
            val.display()
        ),
    );
    // Either file may be the wrong one: neither's line is named (it was
    // workload.val's, under a `--set workload.train=` of the wrong shape).
    assert!(
        all.contains(&format!("{}: the run did not start", cfg.display())),
        "{all}"
    );
}

/// NaN in the data (walkthrough): the run skipped the batches that drew
/// them, but nothing said where they were (the rows had to be intersected
/// by hand from the skip warnings), NaN in the val data went unsaid, and no
/// line counted the skips at the end. A later walkthrough's CNN: a skipped
/// step's forward still wrote NaN into BatchNorm's running statistics, and
/// every later evaluation printed a metric of NaN outputs, unsaid.
#[test]
fn non_finite_data_is_named_by_tensor_and_row_and_the_skips_are_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let sessions = tmp.path().join("sessions");
    let with_nan_in = |tensor: &str, name: &str, rows: i64, bad: &[i64]| -> PathBuf {
        let path = flag_data(&tmp.path().join(name), rows, 4, &[]);
        let tensors = tch::Tensor::read_safetensors(&path).unwrap();
        for (tensor_name, t) in &tensors {
            if tensor_name == tensor {
                for &row in bad {
                    let _ = t.get(row).fill_(f64::NAN);
                }
            }
        }
        tch::Tensor::write_safetensors(&tensors, &path).unwrap();
        path
    };
    let with_nan = |name: &str, rows: i64, bad: &[i64]| with_nan_in("y", name, rows, bad);
    let train = with_nan("train.safetensors", 64, &[10, 50]);
    let val = with_nan("val.safetensors", 32, &[3]);
    let cfg = flag_config(tmp.path(), "nan", "nan_on_flag.pt", &train, &val);
    let out = run(&sessions, &cfg, "nan");
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    for needle in [
        format!(
            "workload.train: {}: tensor `y` holds 2 non-finite values (NaN) in rows 10, 50",
            train.display()
        ),
        format!(
            "workload.val: {}: tensor `y` holds 1 non-finite value (NaN) in row 3",
            val.display()
        ),
    ] {
        assert!(all.contains(&needle), "no `{needle}` in:\n{all}");
    }
    // Warned about, as the model's outputs on those rows are NaN.
    use meltr_tui::session::metrics::Level;
    let said_of_y = |lines: &[MetricLine]| -> Vec<(Level, String)> {
        lines
            .iter()
            .filter_map(|l| match &l.record {
                Record::Event { level, message } if message.contains("tensor `y` holds") => {
                    Some((*level, message.clone()))
                }
                _ => None,
            })
            .collect()
    };
    let (_, lines) = metrics_of(&sessions, "nan");
    let said = said_of_y(&lines);
    assert!(
        said.len() == 2
            && said.iter().all(|(level, message)| *level == Level::Warn
                && message.ends_with("(the model does not mask them: a batch of the first of those rows gives non-finite values)")),
        "{said:?}"
    );
    // A model that masks them: said as a note, not warned about in every
    // log (walkthroughs I and K).
    let cfg = flag_config(tmp.path(), "masks", "masks_nan.pt", &train, &val);
    let out = run(&sessions, &cfg, "masks");
    assert!(out.status.success(), "{}", text(&out));
    let (masked_dir, lines) = metrics_of(&sessions, "masks");
    let said = said_of_y(&lines);
    assert!(
        said.len() == 2
            && said.iter().all(|(level, message)| *level == Level::Info
                && message.contains(": the model masks them (")),
        "{said:?}"
    );
    assert_eq!(count_in(&masked_dir, "; update skipped"), 0);
    // A finite loss over NaN rows with a NaN gradient (torch.where) is no
    // masking: every update that draws them is skipped (review).
    let cfg = flag_config(tmp.path(), "where", "where_nan.pt", &train, &val);
    let out = run(&sessions, &cfg, "where");
    assert!(out.status.success(), "{}", text(&out));
    let (_, lines) = metrics_of(&sessions, "where");
    let said = said_of_y(&lines);
    assert!(
        said.iter().any(|(level, message)| *level == Level::Warn
            && message.starts_with("workload.train: ")
            && message.contains("the model does not mask them")),
        "{said:?}"
    );
    let dir = session::find(&sessions, "nan").unwrap();
    let count = |what: &str| common::events_matching(&dir, |m| m.contains(what)).len();
    let (steps, metas) = (count("; update skipped"), count("meta update skipped"));
    // A meta step draws no batch whose update was skipped, so none of
    // them is lost to those rows (a walkthrough lost 8 of 20 meta updates
    // to one NaN row); the meta steps themselves ran.
    assert!(steps > 0 && metas == 0, "{all}");
    let (_, lines) = metrics_of(&sessions, "nan");
    let meta_lines = lines
        .iter()
        .filter(|l| matches!(l.record, Record::Meta { .. }))
        .count();
    assert!(meta_lines > 0, "{all}");
    // Each skip names the rows of its batch that hold the NaN (a
    // walkthrough had to find them among the batch's 32).
    // The first skip of each finding names it and lists its batch; later
    // ones point back to that step (walkthrough J1: 22 warnings of 64 rows
    // each for two NaN rows).
    let (mut first_of, mut repeats) = (std::collections::BTreeMap::new(), 0);
    for (step, message) in common::events_matching(&dir, |m| m.contains("; update skipped")) {
        if let Some(rest) = message
            .split("the same finding of the batch's rows as at step ")
            .nth(1)
        {
            let first: u64 = rest.split(';').next().unwrap().parse().unwrap();
            assert!(
                first_of.values().any(|&s| s == first) && !message.contains("training rows"),
                "step {step}: {message}"
            );
            repeats += 1;
            continue;
        }
        // And the tensor: a model may mask NaN labels in another one.
        let named = [
            "row 10 in `y`",
            "row 50 in `y`",
            "rows [10, 50] in `y`",
            "rows [50, 10] in `y`",
        ];
        let finding = named.iter().find(|n| message.contains(*n));
        assert!(
            finding.is_some()
                && message.contains("of the batch's rows, NaN or inf in workload.train: ")
                && message.contains("the batch: training rows"),
            "step {step}: {message}"
        );
        let earlier = first_of.insert(finding.unwrap().to_string(), step);
        assert_eq!(earlier, None, "step {step} said it again: {message}");
    }
    assert!(repeats > 0, "no skip repeated a finding: {first_of:?}");
    assert!(first_of.len() < steps, "{first_of:?} of {steps}");
    let summary = common::events_matching(&dir, |m| m.starts_with("in all, "));
    assert_eq!(summary.len(), 1, "{all}");
    let expected = format!("in all, {steps} step updates were skipped");
    assert!(
        summary[0].1.starts_with(&expected),
        "{expected:?}: {:?}",
        summary[0].1
    );
    // Every evaluation's losses are NaN (row 3 of the val data): said
    // once, not at each of the eight.
    let eval_warnings = |dir: &Path| {
        common::events_matching(dir, |m| {
            m.starts_with("evaluation at step ") && m.contains("non-finite")
        })
    };
    let said = eval_warnings(&dir);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].1.contains("every validation loss is non-finite"),
        "{said:?}"
    );

    // NaN images through BatchNorm: skipped steps leave its statistics
    // finite, so every evaluation is.
    let images = with_nan_in("x", "images.safetensors", 64, &[10, 50]);
    let clean_val = flag_data(&tmp.path().join("clean-val.safetensors"), 32, 4, &[]);
    let cfg = flag_config(tmp.path(), "bn", "conv_pool.pt", &images, &clean_val);
    let out = run(&sessions, &cfg, "bn");
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let (dir, lines) = metrics_of(&sessions, "bn");
    assert!(count_in(&dir, "; update skipped") > 0, "{all}");
    let losses = evals(&lines, "primary");
    assert_eq!(losses.len(), 8, "{lines:?}");
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert_eq!(eval_warnings(&dir), vec![], "{all}");
}

fn count_in(dir: &Path, what: &str) -> usize {
    common::events_matching(dir, |m| m.contains(what)).len()
}

/// Floating-point data stored in another precision than the run's is read
/// in the run's (walkthrough: a model that computed a loss in float64 from
/// an F64 target failed at step 1 with "Found dtype Float but expected
/// Double", nothing saying the data had been cast): the start says so.
#[test]
fn data_read_in_another_precision_is_said_at_the_start() {
    let tmp = tempfile::tempdir().unwrap();
    let sessions = tmp.path().join("sessions");
    let train = flag_data(&tmp.path().join("train.safetensors"), 64, 4, &[]);
    let mut tensors = tch::Tensor::read_safetensors(&train).unwrap();
    for (name, t) in tensors.iter_mut() {
        if name == "x" {
            *t = t.to_kind(tch::Kind::Double);
        }
    }
    tch::Tensor::write_safetensors(&tensors, &train).unwrap();
    let val = flag_data(&tmp.path().join("val.safetensors"), 32, 4, &[]);
    let cfg = flag_config(tmp.path(), "f64", "nan_on_flag.pt", &train, &val);
    let out = run(&sessions, &cfg, "f64");
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let needle = format!(
        "workload.train: {}: `x` (Double) is read as Float (train.dtype)",
        train.display()
    );
    assert!(all.contains(&needle), "no `{needle}` in:\n{all}");
    assert!(!all.contains("workload.val: "), "{all}");
}

/// A masked auxiliary loss (computed over flagged rows, a constant 0 on a
/// batch with none) was refused when the first batch had nothing flagged,
/// and later when the first 8 had none (data sorted with the flagged rows
/// last): the check now looks through the whole training set, and only a
/// loss without a gradient on every row is refused.
#[test]
fn a_loss_constant_on_some_batches_trains_and_one_constant_on_all_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let sessions = tmp.path().join("sessions");
    let val = flag_data(&tmp.path().join("val.safetensors"), 32, 4, &[3]);
    // Batch size 8: row 20 is in the third batch of rows, rows 0..16 have none.
    let train = flag_data(&tmp.path().join("train.safetensors"), 64, 4, &[20, 45]);
    let cfg = flag_config(tmp.path(), "masked", "aux_on_flagged_rows.pt", &train, &val);
    let out = run(&sessions, &cfg, "masked");
    assert!(out.status.success(), "{}", text(&out));
    // `check --batches` counts the batches where it is 0: some of the
    // eight, not all (walkthrough L).
    let (ok, said) = check_batches(&cfg, 8);
    let zero_on = said
        .split_once("aux is exactly 0 on ")
        .and_then(|(_, rest)| rest.split_once(" of the 8 batches scanned"))
        .map(|(count, _)| count.parse::<u64>().unwrap());
    assert!(
        ok && zero_on.is_some_and(|k| k > 0 && k < 8) && !said.contains("primary is exactly 0"),
        "{said}"
    );
    // Sorted data: the only flagged row is the last, past twelve full
    // batches (the check's last window is rows 92..100).
    let sorted = flag_data(&tmp.path().join("sorted.safetensors"), 100, 4, &[99]);
    let cfg = flag_config(
        tmp.path(),
        "sorted",
        "aux_on_flagged_rows.pt",
        &sorted,
        &val,
    );
    let out = run(&sessions, &cfg, "sorted");
    assert!(out.status.success(), "{}", text(&out));
    let (_, lines) = metrics_of(&sessions, "masked");
    let aux = common::logged_loss(&lines, "aux");
    assert_eq!(aux.len(), 40, "{aux:?}");
    assert!(aux.iter().all(|a| a.is_finite()), "{aux:?}");
    let constant = aux.iter().filter(|&&a| a == 0.0).count();
    assert!(constant > 0 && constant < aux.len(), "{aux:?}");
    // MELTR's transform of `aux` at the run's end spans its last value
    // that was not 0, not 0 to 2e-6 (walkthrough M's flat `flag` curve).
    let span = lines.iter().rev().find_map(|l| match &l.record {
        Record::Transform { curves } => curves.get("aux").and_then(|c| c.x.last().copied()),
        _ => None,
    });
    assert!(span.is_some_and(|x| x > 1e-3), "{span:?}");

    let none = flag_data(&tmp.path().join("none.safetensors"), 64, 4, &[]);
    let cfg = flag_config(tmp.path(), "never", "aux_on_flagged_rows.pt", &none, &val);
    let why = "loss `aux` is not differentiable with respect to any parameter on any row of workload.train (64 rows, in batches of 8)";
    refused(&cfg, why);
    // And what to do instead (walkthrough J: a detached entropy).
    refused(
        &cfg,
        "to log it, return it as `metric/aux` (a metric), or leave it out of workload.auxiliary",
    );

    // A detached runner that cannot start: its reason is said once (the
    // launcher echoed the runner's own error line as well).
    let all = refused_detached(&cfg, &tmp.path().join("detached"));
    assert_eq!(all.matches(why).count(), 1, "{all}");
}

/// Losses in another floating-point kind than the run's (the primary in
/// f64, an auxiliary in bf16, in an f32 run) panicked MELTR's first layer
/// ("mat1 and mat2 must have the same dtype"); they are cast to the run's
/// kind, in both AID modes.
#[test]
fn losses_in_other_float_kinds_are_cast_to_the_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let sessions = tmp.path().join("sessions");
    let train = flag_data(&tmp.path().join("train.safetensors"), 64, 4, &[]);
    let val = flag_data(&tmp.path().join("val.safetensors"), 32, 4, &[]);
    for mode in ["exact", "factorized"] {
        let cfg = flag_config(tmp.path(), mode, "mixed_kinds.pt", &train, &val);
        let body = std::fs::read_to_string(&cfg).unwrap();
        let body = body.replace("[meltr]", &format!("[aid]\nmode = \"{mode}\"\n\n[meltr]"));
        std::fs::write(&cfg, body).unwrap();
        let out = run(&sessions, &cfg, mode);
        assert!(out.status.success(), "{mode}: {}", text(&out));
        let (_, lines) = metrics_of(&sessions, mode);
        let weights: Vec<f64> = lines
            .iter()
            .filter_map(|line| match &line.record {
                Record::Train { weights, .. } => weights.get("primary").copied(),
                _ => None,
            })
            .collect();
        assert_eq!(weights.len(), 40, "{mode}");
        assert!(weights.iter().all(|w| w.is_finite()), "{mode}: {weights:?}");
        // The start says which outputs were cast (walkthrough L's f64 loss
        // went unsaid, though the README promised it).
        let said = lines.iter().any(|l| {
            matches!(&l.record, Record::Event { message, .. }
                if message.contains("`primary` as Double")
                    && message.contains("`aux` as BFloat16")
                    && message.contains(": cast to Float, the run's train.dtype"))
        });
        assert!(said, "{mode}: {}", text(&out));
    }
}

/// A sparse embedding (`nn.Embedding(sparse=True)`) panicked the optimizer
/// ("contiguous" of a sparse gradient); its gradients are taken dense, so it
/// trains as its `sparse=False` twin (same initial parameters), in both AID
/// modes.
#[test]
fn a_sparse_embedding_trains_as_its_dense_twin() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    run_python(&[
        repo("tests/fixtures/sparse_models.py").as_os_str(),
        models.as_os_str(),
    ]);
    let sessions = tmp.path().join("sessions");
    for mode in ["factorized", "exact"] {
        let mut losses = Vec::new();
        for model in ["sparse", "dense"] {
            let name = format!("{model}-{mode}");
            let body = format!(
                "[workload]\nkind = \"torchscript\"\nmodel = \"{model}.pt\"\ntrain = \"train.safetensors\"\n\
                 val = \"val.safetensors\"\nprimary = \"primary\"\nauxiliary = [\"first_token\"]\nbatch_size = 16\n\n\
                 [train]\ndevice = \"cpu\"\nsteps = 20\nlog_every = 1\neval_every = 20\ncheckpoint_every = 1000\n\n\
                 [aid]\nmode = \"{mode}\"\n\n[meltr]\nd_model = 16\nd_hidden = 16\nd_ff = 32\nheads = 2\nmeta_every = 2\n"
            );
            let cfg = models.join(format!("{name}.toml"));
            std::fs::write(&cfg, body).unwrap();
            let out = run(&sessions, &cfg, &name);
            assert!(out.status.success(), "{name}: {}", text(&out));
            let (_, lines) = metrics_of(&sessions, &name);
            let primary = common::logged_loss(&lines, "primary");
            assert_eq!(primary.len(), 20, "{name}");
            losses.push(primary);
        }
        let (sparse, dense) = (&losses[0], &losses[1]);
        for (step, (a, b)) in sparse.iter().zip(dense).enumerate() {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs(),
                "{mode}, step {}: sparse {a} vs dense {b}",
                step + 1
            );
        }
    }
}

/// Issue 16: `bench --torchscript DIR` measured only models whose losses
/// are named like the example's (and failed after benchmarking the
/// built-in model). `bench --config` takes any run config, so a user's own
/// model (here losses `primary` and `aux`) is measured with its own names,
/// batch size and dtype; `--torchscript DIR` takes the names from the
/// model; `--no-builtin` skips the built-in model.
#[test]
fn bench_measures_a_model_with_its_own_loss_names() {
    let tmp = tempfile::tempdir().unwrap();
    let train = flag_data(&tmp.path().join("train.safetensors"), 64, 4, &[]);
    let val = flag_data(&tmp.path().join("val.safetensors"), 32, 4, &[]);
    let cfg = flag_config(tmp.path(), "mine", "nan_on_flag.pt", &train, &val);
    // The folder layout `--torchscript` reads: model.pt and the two splits.
    let folder = tmp.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    std::fs::copy(
        flag_models().join("nan_on_flag.pt"),
        folder.join("model.pt"),
    )
    .unwrap();
    std::fs::copy(&train, folder.join("train.safetensors")).unwrap();
    std::fs::copy(&val, folder.join("val.safetensors")).unwrap();
    let bench = |config: &Path| {
        run_with_limit(
            bin()
                .args([
                    "bench",
                    "--steps",
                    "2",
                    "--meta-steps",
                    "1",
                    "--rounds",
                    "1",
                    "--no-builtin",
                ])
                .arg("--config")
                .arg(config)
                .arg("--torchscript")
                .arg(&folder)
                .arg("--sessions-dir")
                .arg(tmp.path().join("sessions")),
            Duration::from_secs(300),
        )
    };
    let out = bench(&cfg);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    let sections: Vec<&str> = report.split("\n## ").skip(1).collect();
    let titles: Vec<&str> = sections.iter().filter_map(|s| s.lines().next()).collect();
    assert_eq!(
        titles,
        [
            format!(
                "torchscript {} (primary `primary`, auxiliary `aux`; the example config's settings, \
                 batch 32: -c CONFIG times the model with yours)",
                folder.display()
            ),
            format!("{} (torchscript)", cfg.display())
        ],
        "no built-in section; the folder's model with its own loss names"
    );
    for (section, row) in sections.iter().flat_map(|s| {
        [
            "  sum ",
            "  meltr logged ",
            "factorized           J=0 ",
            "meltr, meta_every 3 ",
        ]
        .map(|row| (s, row))
    }) {
        let label = row.trim_start();
        let line = section
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no row {row:?} in:\n{section}"));
        let timed: Vec<f64> = line[line.find(label).unwrap_or(0) + label.len()..]
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(
            timed.first().is_some_and(|&ms| ms > 0.0),
            "row {row:?} has no positive time: {line}"
        );
    }
    // The folder's model is the config's own: timed once, with the
    // config's settings (walkthrough S got it twice).
    let model = folder.join("model.pt");
    let same = flag_config(tmp.path(), "same", model.to_str().unwrap(), &train, &val);
    let out = bench(&same);
    assert!(out.status.success(), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    let titles: Vec<&str> = report
        .split("\n## ")
        .skip(1)
        .filter_map(|s| s.lines().next())
        .collect();
    assert_eq!(titles, [format!("{} (torchscript)", same.display())]);
    assert!(
        text(&out).contains("is the -c config's model: timed once"),
        "{}",
        text(&out)
    );
}

/// `check` says a loss in a fixed ratio to another on the batches it
/// reads (walkthroughs G2 and G6: `0.3 ×` the primary and `3 ×` an
/// auxiliary went unsaid): one batch scanned reads a second for it, and
/// `--batches 4` reads the four.
#[test]
fn check_says_scaled_copies_of_a_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let train = flag_data(&tmp.path().join("train.safetensors"), 64, 4, &[]);
    let val = flag_data(&tmp.path().join("val.safetensors"), 16, 4, &[]);
    let cfg = flag_config(tmp.path(), "copies", "scaled_copies.pt", &train, &val);
    let body = std::fs::read_to_string(&cfg).unwrap().replace(
        "auxiliary = [\"aux\"]",
        "auxiliary = [\"half\", \"aux\", \"aux3\"]",
    );
    std::fs::write(&cfg, body).unwrap();
    for (batches, read) in [("1", 2), ("4", 4)] {
        let out = bin()
            .args(["check", "--batches", batches, "-c"])
            .arg(&cfg)
            .output()
            .unwrap();
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        let half =
            format!("hint: half has been 0.3x primary on each of the {read} training batches read");
        let aux3 =
            format!("hint: aux3 has been 3x aux on each of the {read} training batches read");
        assert!(
            said.contains(&half)
                && said.contains("a scaled copy of the primary")
                && said.contains(&aux3)
                && said.contains("trains at weight 4 (1 + 3)"),
            "{said}"
        );
        assert_eq!(said.matches("has been").count(), 2, "{said}");
    }
}

/// `flag_data`'s 64 rows of 4 at `path`, its `y` then changed by `change`.
fn flag_data_with_y(path: &Path, change: impl Fn(&tch::Tensor)) -> PathBuf {
    flag_data_changed(path, &[], "y", change)
}

/// [`flag_data`] of 64 rows, `flagged` flagged, `change` applied to
/// tensor `name`.
fn flag_data_changed(
    path: &Path,
    flagged: &[i64],
    name: &str,
    change: impl Fn(&tch::Tensor),
) -> PathBuf {
    let tensors = tch::Tensor::read_safetensors(flag_data(path, 64, 4, flagged)).unwrap();
    for (tensor, t) in &tensors {
        if tensor == name {
            change(t);
        }
    }
    tch::Tensor::write_safetensors(&tensors, path).unwrap();
    path.to_path_buf()
}

/// A finite loss with a NaN gradient on the first batch (`torch.where`
/// over NaN targets, walkthrough J2): `check` fails naming the losses and
/// the fix, and a run that trains no step says it is not the learning rate.
#[test]
fn a_nan_gradient_under_finite_losses_fails_check_and_names_the_backward() {
    let tmp = tempfile::tempdir().unwrap();
    // Every other row: each batch of 8 draws some.
    let train = flag_data_with_y(&tmp.path().join("train.safetensors"), |y| {
        let _ = y.slice(0, 0, 64, 2).fill_(f64::NAN);
    });
    let val = flag_data(&tmp.path().join("val.safetensors"), 16, 4, &[]);
    let cfg = flag_config(tmp.path(), "where", "where_nan.pt", &train, &val);
    let out = bin().arg("check").arg("-c").arg(&cfg).output().unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("gradient       not finite on the first batch: primary's, aux's (below)")
            && said.contains(
                "error: the gradient of `primary`, `aux` is not finite on the first training batch"
            )
            && said.contains("Losses `primary`, `aux` are finite while their gradients are not")
            && said.contains("torch.nan_to_num"),
        "{said}"
    );
    // A NaN loss's NaN reaches another loss's gradient through the layers
    // they share (here tanh's backward, 0 × NaN on the NaN rows the masked
    // loss leaves out): that loss is not named, the NaN loss is
    // (walkthrough K1).
    let odd: Vec<i64> = (1..64).step_by(2).collect();
    let nan_x = flag_data_changed(&tmp.path().join("nan-x.safetensors"), &odd, "x", |x| {
        let _ = x.slice(0, 0, 64, 2).fill_(f64::NAN);
    });
    let masked = flag_config(tmp.path(), "masked", "aux_on_flagged_rows.pt", &nan_x, &val);
    let out = bin().arg("check").arg("-c").arg(&masked).output().unwrap();
    let said = text(&out);
    assert!(
        !out.status.success()
            && said.contains("first batch    primary NaN, aux ")
            && said.contains(
                "gradient       shares not taken: not every loss is finite on the first batch"
            )
            && !said.contains("aux's")
            && !said.contains("are finite while their gradients are not"),
        "{said}"
    );
    // NaN in one row the first batch does not draw: a run trains, skipping
    // the updates that draw it, and `check` opens saying it has warnings
    // (walkthrough J1 read "ok" above them).
    let one_row = flag_data_with_y(&tmp.path().join("one-row.safetensors"), |y| {
        let _ = y.get(63).fill_(f64::NAN);
    });
    let warned = flag_config(tmp.path(), "one-row", "where_nan.pt", &one_row, &val);
    let out = bin().arg("check").arg("-c").arg(&warned).output().unwrap();
    let said = text(&out);
    assert!(
        out.status.success()
            && said.contains(
                "ok, a run would train the torchscript workload on cpu, with warnings (below)"
            )
            && said.contains("warning: workload.train: "),
        "{said}"
    );
    let body = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("steps = 40", "steps = 60");
    std::fs::write(&cfg, body).unwrap();
    let out = bin()
        .args(["run", "--headless", "--sessions-dir"])
        .arg(tmp.path().join("sessions"))
        .arg("-c")
        .arg(&cfg)
        .output()
        .unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("every loss was finite and the gradient was not, from the run's first step")
            && !said.contains("lower train.lr")
            && !said.contains("Lower train.lr"),
        "{said}"
    );
}

/// A sparse embedding's gradient is taken dense, and `check` and a run's
/// start say so (walkthrough L2: silent).
#[test]
fn a_sparse_gradient_is_said_to_be_taken_dense() {
    let tmp = tempfile::tempdir().unwrap();
    let train = flag_data(&tmp.path().join("train.safetensors"), 64, 4, &[]);
    let val = flag_data(&tmp.path().join("val.safetensors"), 16, 4, &[]);
    let cfg = flag_config(tmp.path(), "sparse", "sparse_embedding.pt", &train, &val);
    let out = bin().arg("check").arg("-c").arg(&cfg).output().unwrap();
    let said = text(&out);
    assert!(
        out.status.success()
            && said.contains("note: workload.model: the gradient of emb.weight comes sparse")
            && said.contains("trains as with sparse=False"),
        "{said}"
    );
}

/// An auxiliary on a head of its own, sharing no parameter with the
/// primary, is said by `check` (walkthrough L3: unsaid, its learned weight
/// read as a judgement of it); one sharing the body is not.
#[test]
fn an_auxiliary_apart_from_the_primary_is_said() {
    let tmp = tempfile::tempdir().unwrap();
    let train = flag_data(&tmp.path().join("train.safetensors"), 64, 4, &[]);
    let val = flag_data(&tmp.path().join("val.safetensors"), 16, 4, &[]);
    let said_of = |model: &str, combiner: &str| {
        let cfg = flag_config(tmp.path(), model, model, &train, &val);
        let out = bin()
            .arg("check")
            .arg("-c")
            .arg(&cfg)
            .arg("--set")
            .arg(format!("combiner.kind={combiner}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    let apart =
        "aux's gradient on the first batch is nonzero on none of the parameters the primary's is";
    let meta_step = "MELTR's meta step sees no effect of it";
    let said = said_of("own_head.pt", "meltr");
    assert!(said.contains(apart) && said.contains(meta_step), "{said}");
    // Under `sum` nothing meta-learns: the hint keeps to the model.
    let said = said_of("own_head.pt", "sum");
    assert!(said.contains(apart) && !said.contains(meta_step), "{said}");
    let said = said_of("running_mean.pt", "meltr");
    assert!(
        !said.contains("nonzero on none of the parameters"),
        "{said}"
    );
}

/// A model that counts its training forwards in a buffer (walkthrough Q3's
/// VAE read its KL warm-up from one): `check` says, under MELTR, how often
/// a run moves it, and a run's count bears it out; under `sum` it moves
/// once a step and nothing is said.
#[test]
fn a_buffer_the_meta_steps_forwards_move_is_said_with_its_count() {
    let tmp = tempfile::tempdir().unwrap();
    let train = flag_data(&tmp.path().join("train.safetensors"), 64, 4, &[]);
    let val = flag_data(&tmp.path().join("val.safetensors"), 16, 4, &[]);
    let cfg = flag_config_with(
        tmp.path(),
        "counter",
        "step_counter.pt",
        (&train, &val),
        "metric = \"counted\"\n",
    );
    let sessions = tmp.path().join("sessions");
    for (kind, extra, moves) in [
        // 13 meta steps at steps 3, 6, …, 39; 14 at 1, 4, …, 40.
        ("meltr", "meltr.first_meta=at-meta-every", 66),
        ("meltr", "meltr.first_meta=at-step-1", 68),
        ("meltr", "meltr.train_batch=current", 53),
        ("sum", "train.lr=1e-3", 40),
    ] {
        let set = [format!("combiner.kind={kind}"), extra.to_string()];
        let args = |cmd: &mut std::process::Command| {
            for s in &set {
                cmd.args(["--set", s]);
            }
        };
        let mut check = bin();
        check.arg("check").arg("-c").arg(&cfg);
        args(&mut check);
        let out = check.output().unwrap();
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        let note = format!("over 40 steps it moves {moves} times, not 40");
        assert_eq!(
            said.contains(&note),
            kind == "meltr",
            "{kind} {extra}: {said}"
        );
        let name = format!("{kind}-{}", extra.replace(['.', '='], "-"));
        let mut run = bin();
        run.arg("--sessions-dir").arg(&sessions);
        run.args(["run", "--headless", "-n", &name, "-c"]).arg(&cfg);
        args(&mut run);
        let out = run_with_limit(&mut run, LIMIT);
        assert!(out.status.success(), "{}", text(&out));
        let (_, lines) = metrics_of(&sessions, &name);
        assert_eq!(
            common::last_eval(&lines, "counted"),
            f64::from(moves),
            "{kind} {extra}"
        );
    }
}

/// A VQ bottleneck's codebook loss (walkthrough O3): its gradient shares
/// no parameter with the primary's, yet the codes it trains feed the
/// primary's forward behind a stop-gradient, so it is not said to be on a
/// head of its own that can neither help nor hurt; and the commitment
/// loss, equal to it to the bit but training another layer, is no copy.
#[test]
fn a_codebook_loss_behind_a_stop_gradient_is_told_from_an_own_head() {
    let tmp = tempfile::tempdir().unwrap();
    let train = flag_data(&tmp.path().join("train.safetensors"), 64, 4, &[]);
    let val = flag_data(&tmp.path().join("val.safetensors"), 16, 4, &[]);
    let cfg = flag_config(tmp.path(), "vq", "straight_through.pt", &train, &val);
    let body = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("auxiliary = [\"aux\"]", "auxiliary = [\"aux\", \"commit\"]");
    std::fs::write(&cfg, body).unwrap();
    let out = bin().arg("check").arg("-c").arg(&cfg).output().unwrap();
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(
            "aux's gradient on the first batch is nonzero on none of the parameters the primary's is, \
             yet the parameters it trains move the primary's value"
        ),
        "{said}"
    );
    assert!(!said.contains("a head of its own"), "{said}");
    assert!(!said.contains("to the bit"), "no copy: {said}");
}

/// A masked primary that is exactly 0 on the first batch (no flagged row
/// there) sets the loss scale from the first batch where it is not
/// (walkthrough P2: its 10%-labelled primary was read as a log-likelihood,
/// and every loss raw).
#[test]
fn a_masked_primary_zero_on_the_first_batch_scales_from_a_later_one() {
    let tmp = tempfile::tempdir().unwrap();
    let train = flag_data(&tmp.path().join("train.safetensors"), 64, 4, &[37]);
    let val = flag_data(&tmp.path().join("val.safetensors"), 16, 4, &[3]);
    let cfg = flag_config(tmp.path(), "masked", "masked_primary.pt", &train, &val);
    let mut later = 0;
    for seed in 0..3 {
        let out = bin()
            .args(["check", "-c"])
            .arg(&cfg)
            .args(["--set", &format!("workload.seed={seed}")])
            .output()
            .unwrap();
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        assert!(!said.contains("a log-likelihood?"), "{said}");
        // The auxiliary, 1000x the regression, is read at 50x the primary
        // wherever it was measured.
        assert!(said.contains("MELTR reads aux ("), "{said}");
        if said.contains("the first whose primary is not exactly 0") {
            later += 1;
        }
    }
    assert!(later > 0, "the flagged row was in every seed's first batch");
}

/// One inf among NaN the model masks (walkthrough J2): the warning counts
/// each kind, names the inf rows, and says the model masks the NaN but
/// not the inf (it said "does not mask them" of all 951).
#[test]
fn an_inf_among_masked_nan_is_named_on_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let train = flag_data_with_y(&tmp.path().join("train.safetensors"), |y| {
        for row in [5, 20] {
            let _ = y.get(row).fill_(f64::NAN);
        }
        let _ = y.get(40).fill_(f64::INFINITY);
    });
    let val = flag_data(&tmp.path().join("val.safetensors"), 16, 4, &[]);
    let said_of = |model: &str| {
        let cfg = flag_config(tmp.path(), model, model, &train, &val);
        let out = bin().arg("check").arg("-c").arg(&cfg).output().unwrap();
        text(&out)
    };
    let said = said_of("masks_nan_not_inf.pt");
    assert!(
        said.contains("tensor `y` holds 3 non-finite values (2 NaN, 1 inf in row 40) in rows 5, 20, 40")
            && said.contains("(the model masks the NaN but not the inf: a batch with row 40 gives non-finite values)"),
        "{said}"
    );
    // A model that masks both (torch.isfinite): a note that it masks them.
    let said = said_of("masks_nan.pt");
    assert!(
        said.contains("note: workload.train: ") && said.contains(": the model masks them ("),
        "{said}"
    );
}

/// `flag_config` with `extra` lines in its `[workload]` table.
fn flag_config_with(
    dir: &Path,
    name: &str,
    model: &str,
    data: (&Path, &Path),
    extra: &str,
) -> PathBuf {
    let path = flag_config(dir, name, model, data.0, data.1);
    let body = std::fs::read_to_string(&path).unwrap();
    let body = body.replacen("batch_size = 8\n", &format!("batch_size = 8\n{extra}"), 1);
    std::fs::write(&path, body).unwrap();
    path
}

/// The primary metric is the model's first in eval mode (`mse`, which it
/// reports only there), lower is better by its name; `workload.metric` and
/// `workload.metric_goal` choose another, and a name the model lacks is
/// refused with the ones it has. Evaluation scores every validation row,
/// the ones left after the full batches too (it used to drop them), and a
/// batch size above the training set's size is said, not done silently.
#[test]
fn the_primary_metric_is_configurable_and_evaluation_scores_every_row() {
    let tmp = tempfile::tempdir().unwrap();
    let sessions = tmp.path().join("sessions");
    let train = flag_data(&tmp.path().join("train.safetensors"), 64, 4, &[]);
    // 100 rows in batches of 8: twelve full ones and 4 rows more. `flag`
    // holds each row's number, so the mean over all rows is 49.5 (47.5 over
    // the first 96).
    let val = tmp.path().join("val.safetensors");
    {
        use tch::{Device, Kind, Tensor};
        let x = Tensor::randn([100, 4], (Kind::Float, Device::Cpu));
        let y = x.sum_dim_intlist(&[1i64][..], false, Kind::Float).sin();
        let rows = Tensor::arange(100, (Kind::Float, Device::Cpu));
        Tensor::write_safetensors(&[("x", x), ("y", y), ("flag", rows)], &val).unwrap();
    }
    let data = (train.as_path(), val.as_path());

    // A model whose metrics come in training mode only: the fallback to
    // the validation loss is said (walkthrough N's was silent).
    let train_only = flag_config_with(tmp.path(), "train-only", "train_metrics.pt", data, "");
    let checked = bin()
        .arg("check")
        .arg("-c")
        .arg(&train_only)
        .output()
        .unwrap();
    assert!(
        text(&checked).contains(
            "the model returns metric/mse in training mode but no metric in eval mode, where evaluations read them, \
             so the primary metric is the validation loss `primary`"
        ),
        "{}",
        text(&checked)
    );
    let cfg = flag_config_with(tmp.path(), "default", "metrics.pt", data, "");
    // `check` says which metrics a batched evaluation only approximates (a
    // walkthrough's R² averaged over batches read 0.344, the split's 0.408).
    let checked = bin().arg("check").arg("-c").arg(&cfg).output().unwrap();
    assert!(
        text(&checked).contains(
            "note: metrics are means over 13 evaluation batches of up to 8 rows, weighted by rows; \
             row_max: named like a metric that is not a mean over rows (a ranking's AUC, R², F1): if it is \
             not, a mean over batches is not its value over the whole split \
             (workload.eval_batch_size = 100 evaluates it in one batch)"
        ),
        "{}",
        text(&checked)
    );
    let out = run(&sessions, &cfg, "default");
    assert!(out.status.success(), "{}", text(&out));
    let (dir, lines) = metrics_of(&sessions, "default");
    let meta = session::SessionMeta::read(&dir).unwrap();
    assert_eq!(
        (meta.primary_metric.as_str(), meta.higher_is_better),
        ("mse", false)
    );
    assert_eq!(common::last_eval(&lines, "row_mean"), 49.5);

    let extra = "metric = \"row_mean\"\nmetric_goal = \"min\"\n";
    let cfg = flag_config_with(tmp.path(), "chosen", "metrics.pt", data, extra);
    let out = run(&sessions, &cfg, "chosen");
    assert!(out.status.success(), "{}", text(&out));
    let (dir, _) = metrics_of(&sessions, "chosen");
    let meta = session::SessionMeta::read(&dir).unwrap();
    assert_eq!(
        (meta.primary_metric.as_str(), meta.higher_is_better),
        ("row_mean", false)
    );
    // Named as the model returns it, prefix and all (it was refused).
    let extra = "metric = \"metric/row_mean\"\nmetric_goal = \"min\"\n";
    let cfg = flag_config_with(tmp.path(), "prefixed", "metrics.pt", data, extra);
    let checked = bin().arg("check").arg("-c").arg(&cfg).output().unwrap();
    assert!(
        text(&checked).contains("metric         row_mean (lower is better)"),
        "{}",
        text(&checked)
    );

    let cfg = flag_config_with(
        tmp.path(),
        "typo",
        "metrics.pt",
        data,
        "metric = \"msee\"\n",
    );
    refused(
        &cfg,
        "workload.metric = \"msee\" is not a metric this workload reports (did you mean \"mse\"?); it reports: mse, row_mean, row_max",
    );

    // A metric that is no mean of per-batch values is exact with one
    // evaluation batch of every row: row_max is 99 then; the mean of the
    // batches' maxima (7, 15, …, 95, 99) is less.
    let (_, lines) = metrics_of(&sessions, "default");
    assert!(common::last_eval(&lines, "row_max") < 99.0);
    let cfg = flag_config_with(
        tmp.path(),
        "whole-eval",
        "metrics.pt",
        data,
        "eval_batch_size = 100\n",
    );
    let out = run(&sessions, &cfg, "whole-eval");
    assert!(out.status.success(), "{}", text(&out));
    let (_, lines) = metrics_of(&sessions, "whole-eval");
    assert_eq!(common::last_eval(&lines, "row_max"), 99.0);
    assert_eq!(common::last_eval(&lines, "row_mean"), 49.5);
    // The replay of the public algorithm evaluates as the engine does (a
    // walkthrough's replay averaged R² over training-sized batches).
    // Batches of 8: the rows' mean of the batches' maxima, 52.92.
    for (config, row_max) in [(&cfg, 99.0), (&tmp.path().join("default.toml"), 52.92)] {
        let summary = tmp.path().join("replay.json");
        let out = std::process::Command::new(common::torch_python())
            .arg(common::repo("scripts/meltr_replay.py"))
            .arg("run")
            .arg(config)
            .args(["--seed", "0", "--steps", "3", "--out"])
            .arg(&summary)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
        let metric = |name: &str| report["metrics"][name].as_f64().unwrap();
        assert!(
            (metric("row_max") - row_max).abs() < 1e-9 && metric("row_mean") == 49.5,
            "{config:?}: {report}"
        );
    }

    let extra = "batch_size = 1000\n";
    let cfg = flag_config(tmp.path(), "whole", "metrics.pt", &train, &val);
    let body = std::fs::read_to_string(&cfg)
        .unwrap()
        .replacen("batch_size = 8\n", extra, 1);
    std::fs::write(&cfg, body).unwrap();
    let out = run(&sessions, &cfg, "whole");
    assert!(out.status.success(), "{}", text(&out));
    let (_, lines) = metrics_of(&sessions, "whole");
    let said = lines.iter().any(|l| {
        matches!(&l.record, Record::Event { message, .. }
            if message.contains("workload.batch_size = 1000 is more than the 64 samples of workload.train"))
    });
    assert!(said, "{}", text(&out));
    assert_eq!(common::last_eval(&lines, "row_mean"), 49.5);
}

/// `ls` says which sessions ran on a model or data file that changed (or
/// went) since they started: their numbers came from the file as it was.
/// A re-exported model or regenerated data went unsaid until a resume.
#[test]
fn ls_says_which_sessions_ran_on_inputs_that_changed_since() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model.pt");
    std::fs::copy(flag_models().join("metrics.pt"), &model).unwrap();
    let train = flag_data(&tmp.path().join("train.safetensors"), 64, 4, &[]);
    let val = flag_data(&tmp.path().join("val.safetensors"), 32, 4, &[]);
    let cfg = flag_config(
        tmp.path(),
        "inputs",
        &model.display().to_string(),
        &train,
        &val,
    );
    let sessions = tmp.path().join("sessions");
    for name in ["first", "second"] {
        let out = bin()
            .arg("--sessions-dir")
            .arg(&sessions)
            .args(["run", "--headless", "-n", name, "-c"])
            .arg(&cfg)
            .args(["--set", "train.steps=3"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    let ls = || {
        text(
            &bin()
                .arg("--sessions-dir")
                .arg(&sessions)
                .arg("ls")
                .output()
                .unwrap(),
        )
    };
    let said = ls();
    assert!(!said.contains(" since "), "{said}");
    let mut ids: Vec<String> = std::fs::read_dir(&sessions)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    ids.sort();
    flag_data(&train, 128, 4, &[]);
    std::fs::remove_file(&model).unwrap();
    let said = ls();
    let line = |key: &str| {
        said.lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("no {key} note in:\n{said}"))
            .to_string()
    };
    let train_line = line("workload.train");
    let grown = std::fs::metadata(&train).unwrap().len();
    assert!(
        train_line.contains(&format!("{} changed (", train.display()))
            && train_line.contains(&format!(
                " → {grown} bytes) since {}, {} started",
                ids[0], ids[1]
            ))
            && train_line.ends_with("a resume reads the file as it is now"),
        "{said}"
    );
    let model_line = line("workload.model");
    assert!(
        model_line.contains(&format!("{} was removed since", model.display()))
            && model_line.ends_with("a resume goes on with the module saved in its checkpoint"),
        "{said}"
    );
    assert!(!said.contains("workload.val"), "{said}");
}

/// A validation batch larger than the rows checked one by one (256) is
/// tried in chunks first: `check` named no row of a held-out model's
/// 500-row first validation batch (walkthrough V2).
#[test]
fn a_large_validation_batch_still_names_the_row_that_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let train = flag_data(&tmp.path().join("train.safetensors"), 64, 4, &[]);
    let val = flag_data(&tmp.path().join("val.safetensors"), 600, 4, &[300]);
    let cfg = flag_config_with(
        tmp.path(),
        "large",
        "raises_on_flag.pt",
        (&train, &val),
        "eval_batch_size = 600\n",
    );
    let out = bin().arg("check").arg("-c").arg(&cfg).output().unwrap();
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("the first validation batch (rows 0..600 of")
            && said.contains("; of those, row 300 fails on its own: "),
        "{said}"
    );
}

/// A meta step whose products fall back to double backward (a stock cross
/// entropy: no forward over reverse through `nll_loss`'s backward) and
/// whose series then diverges says the route first, then the divergence
/// (walkthrough R2's pane read the divergence before the fallback that
/// took its products).
#[test]
fn a_fallback_route_is_said_before_the_divergence_it_took() {
    let tmp = tempfile::tempdir().unwrap();
    let train = flag_data(&tmp.path().join("train.safetensors"), 64, 4, &[]);
    let val = flag_data(&tmp.path().join("val.safetensors"), 16, 4, &[]);
    let cfg = flag_config_with(
        tmp.path(),
        "diverging",
        "stock_cross_entropy.pt",
        (&train, &val),
        "",
    );
    let sessions = tmp.path().join("sessions");
    let mut run = bin();
    run.arg("--sessions-dir").arg(&sessions);
    run.args(["run", "--headless", "-n", "diverging", "--steps", "6", "-c"])
        .arg(&cfg);
    // α at its largest: the series grows (along negative curvature, or
    // past 2/λ).
    for set in ["aid.iterations=1", "aid.alpha=1", "aid.jvp=auto"] {
        run.args(["--set", set]);
    }
    let out = run_with_limit(&mut run, LIMIT);
    assert!(out.status.success(), "{}", text(&out));
    let (_, lines) = metrics_of(&sessions, "diverging");
    let first = |what: &str| {
        lines.iter().position(
            |l| matches!(&l.record, Record::Event { message, .. } if message.contains(what)),
        )
    };
    let route = first("Hessian-vector products by double backward").expect("the fallback");
    let diverged = first("the Neumann series diverges").expect("the divergence");
    assert!(
        route < diverged,
        "route at line {route}, divergence at {diverged}"
    );
}

/// A model whose training forward draws random numbers (Dropout2d) is
/// said so under MELTR, whose meta steps forward their batches with draws
/// of their own; a model that draws none, or a run whose meta steps
/// forward nothing of their own, is not (walkthrough R2 wished it said).
#[test]
fn check_says_a_training_forward_that_draws_random_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let train = flag_data(&tmp.path().join("train.safetensors"), 64, 4, &[]);
    let val = flag_data(&tmp.path().join("val.safetensors"), 16, 4, &[]);
    let said = |model: &str, sets: &[&str]| {
        let cfg = flag_config(tmp.path(), "draws", model, &train, &val);
        let mut check = bin();
        check.arg("check").arg("-c").arg(&cfg);
        for set in sets {
            check.args(["--set", set]);
        }
        let out = check.output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    let note = "the model's training forward draws random numbers (dropout, noise: ";
    let dropout = said("conv_pool.pt", &["combiner.kind=meltr"]);
    assert!(
        dropout.contains(note)
            && dropout.contains(
                "forward its training batch and its validation batch with draws of their own"
            ),
        "{dropout}"
    );
    let reused = ["meltr.train_batch=current", "meltr.val_source=train-batch"];
    assert!(!said("conv_pool.pt", &reused).contains(note));
    assert!(!said("conv_pool.pt", &["combiner.kind=sum"]).contains(note));
    assert!(!said("stock_cross_entropy.pt", &[]).contains(note));
}
