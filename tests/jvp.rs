//! The factorized hypergradient's Jacobian-vector products — forward-mode
//! AD and central differences — against the `exact` path (double backward
//! through the model), in f64, on the built-in video-text model and on the
//! TorchScript example with matmul attention, for J = 0 and J = 2. And the
//! fallback: the example with fused attention (no forward derivative, no
//! second derivative) takes the math path under `aid.jvp = "auto"` and
//! says why. And the single-loss
//! forward the meta step's validation batch uses: the same value and
//! gradient as the full forward's. And the gradient shares' double
//! backward (a JVP of the loss vector through the retained graph) against
//! one backward per loss.

mod common;

use common::{relative_error, repo, serial};
use meltr_tui::config::Config;
use meltr_tui::meltr::combiner;
use meltr_tui::meltr::hypergrad::{hypergradient, AidMode, AidSettings, JvpMethod, MetaProblem};
use meltr_tui::meltr::shares;
use meltr_tui::workload::{self, Workload};
use std::path::{Path, PathBuf};
use tch::{Device, Kind};

fn small_meltr(config: &mut Config) {
    config.combiner.kind = meltr_tui::config::CombinerKind::Meltr;
    config.meltr.d_model = 16;
    config.meltr.d_hidden = 16;
    config.meltr.d_ff = 32;
    config.meltr.heads = 2;
    config.train.device = "cpu".into();
    config.train.dtype = meltr_tui::config::Dtype::F64;
}

fn video_text_config() -> Config {
    let text = std::fs::read_to_string(repo("configs/default.toml")).unwrap();
    let mut c = Config::parse(&text).unwrap();
    c.workload.init_from = None;
    c.workload.batch_size = 8;
    small_meltr(&mut c);
    c.validate().unwrap();
    c
}

fn torchscript_config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.workload.kind = meltr_tui::config::WorkloadKind::TorchScript;
    c.workload.model = Some(dir.join("model.pt").display().to_string());
    c.workload.train = Some(dir.join("train.safetensors").display().to_string());
    c.workload.val = Some(dir.join("val.safetensors").display().to_string());
    c.workload.primary = "retrieval".into();
    c.workload.auxiliary = vec!["align".into(), "mlm".into(), "mfm".into()];
    c.workload.batch_size = 8;
    small_meltr(&mut c);
    c.validate().unwrap();
    c
}

fn export(attention: &str) -> PathBuf {
    common::export_two_stream(&["--attention", attention, "--train", "32", "--val", "16"])
}

/// The hypergradient of the config's combiner at the workload's current θ,
/// flattened, with the fallback reason if any.
fn hypergrad_of(
    workload: &dyn Workload,
    combiner: &dyn combiner::Combiner,
    config: &Config,
    mode: AidMode,
    jvp: JvpMethod,
    iterations: u32,
) -> (Vec<f64>, Option<String>) {
    let names = config.loss_names();
    let train = workload.train_batch(1).unwrap();
    let val = workload.val_batch(0).unwrap();
    let train_losses = || {
        tch::manual_seed(11);
        workload::select(&workload.losses(&train)?, &names)
    };
    // As the trainer does: the primary alone (the workloads' shortcut).
    let val_primary = || {
        tch::manual_seed(12);
        workload.loss(&val, &config.workload.primary)
    };
    let theta = workload.parameters();
    let problem = MetaProblem {
        theta: &theta,
        combiner,
        train_losses: &train_losses,
        val_primary: Some(&val_primary),
        train_forward: None,
    };
    let settings = AidSettings {
        iterations,
        // Small enough that the Neumann series of these models converges.
        alpha: 0.01,
        mode,
        gamma: 0.1,
        gamma_direct: false,
        jvp,
        max_growth: 10.0,
    };
    let h = hypergradient(&problem, &settings).unwrap();
    let flat = h
        .grads
        .iter()
        .flat_map(|g| Vec::<f64>::try_from(g.flatten(0, -1)).unwrap())
        .collect();
    (
        flat,
        (!h.fallback.is_empty()).then(|| h.fallback.join("; ")),
    )
}

/// Forward-mode and differences against exact, J = 0 and 2.
fn agree_with_exact(name: &str, workload: &dyn Workload, config: &Config) {
    let combiner = combiner::build(config, Device::Cpu, Kind::Double);
    for j in [0, 2] {
        let (exact, _) = hypergrad_of(
            workload,
            combiner.as_ref(),
            config,
            AidMode::Exact,
            JvpMethod::Auto,
            j,
        );
        let (forward, why) = hypergrad_of(
            workload,
            combiner.as_ref(),
            config,
            AidMode::Factorized,
            JvpMethod::Forward,
            j,
        );
        assert_eq!(why, None);
        let (differences, _) = hypergrad_of(
            workload,
            combiner.as_ref(),
            config,
            AidMode::Factorized,
            JvpMethod::Differences,
            j,
        );
        let (ef, ed) = (
            relative_error(&forward, &exact),
            relative_error(&differences, &exact),
        );
        eprintln!("{name} J={j}: forward-mode {ef:.2e}, differences {ed:.2e} (relative to exact)");
        assert!(ef <= 1e-6, "{name} J={j}: forward-mode vs exact {ef:e}");
        assert!(ed <= 1e-6, "{name} J={j}: differences vs exact {ed:e}");
    }
}

#[test]
fn video_text_jvps_agree_with_exact() {
    let _serial = serial();
    let config = video_text_config();
    let workload = workload::build(&config, Device::Cpu, Kind::Double, None).unwrap();
    agree_with_exact("video-text", workload.as_ref(), &config);
}

#[test]
fn torchscript_matmul_attention_jvps_agree_with_exact() {
    let _serial = serial();
    let config = torchscript_config(&export("matmul"));
    let workload = workload::build(&config, Device::Cpu, Kind::Double, None).unwrap();
    agree_with_exact("torchscript (matmul attention)", workload.as_ref(), &config);
}

/// Fused attention (flash on the CPU) has neither forward-mode nor second
/// derivatives; `auto` turns the fused kernels off for the meta step's
/// products (the math path has both), so factorized and exact stay exact,
/// and the kernels are back on afterwards.
#[test]
fn fused_attention_takes_the_math_path_and_says_why() {
    let _serial = serial();
    let config = torchscript_config(&export("sdpa"));
    let workload = workload::build(&config, Device::Cpu, Kind::Double, None).unwrap();
    let combiner = combiner::build(&config, Device::Cpu, Kind::Double);
    let of = |mode, jvp| hypergrad_of(workload.as_ref(), combiner.as_ref(), &config, mode, jvp, 2);
    let (auto, why) = of(AidMode::Factorized, JvpMethod::Auto);
    let why = why.expect("forward-mode AD through fused attention should be unavailable");
    eprintln!("fallback reason: {why}");
    assert!(
        why.contains("Hessian-vector products by double backward with the fused kernels off")
            && why.contains("the loss JVP by forward mode with the fused kernels off")
            && why.contains("double backward failed (")
            && why.contains("forward mode failed (libtorch has no forward-mode derivative for _scaled_dot_product"),
        "{why}"
    );
    // One line per reason: no traceback, no plea to file an issue.
    assert!(!why.contains('\n') && !why.contains("Please file"), "{why}");
    let (exact, exact_why) = of(AidMode::Exact, JvpMethod::Auto);
    let exact_why = exact_why.expect("exact needs the math path too");
    assert!(
        exact_why
            .starts_with("the second derivatives through the model with the fused kernels off"),
        "{exact_why}"
    );
    let err = relative_error(&auto, &exact);
    eprintln!("auto (math attention) vs exact: {err:.2e}");
    assert!(err < 1e-9, "auto vs exact on the math path: {err:e}");
    let (differences, _) = of(AidMode::Factorized, JvpMethod::Differences);
    let err = relative_error(&differences, &exact);
    assert!(err < 1e-6, "differences vs exact: {err:e}");
    assert!(meltr_tui::nn::math_kernels::fused_enabled().unwrap());
}

/// `nn.LSTM` in f32 takes oneDNN's RNN layer on the CPU (f64 does not),
/// which has no forward derivative: `auto` runs the loss JVP's forward mode
/// with the fused kernels off (the native cells have one) instead of
/// falling back to finite differences (a walkthrough's f32 LSTM, 1e-3 off),
/// and agrees with exact mode's double backward (which oneDNN's layer has)
/// to f32's precision, at J = 0 and J = 2.
#[test]
fn an_lstm_in_f32_takes_forward_mode_through_the_native_cells() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap().keep();
    std::fs::copy(common::flag_models().join("lstm.pt"), dir.join("model.pt")).unwrap();
    common::flag_data(&dir.join("train.safetensors"), 64, 4, &[]);
    common::flag_data(&dir.join("val.safetensors"), 32, 4, &[]);
    let mut config = torchscript_config(&dir);
    config.workload.primary = "primary".into();
    config.workload.auxiliary = vec!["aux".into()];
    config.train.dtype = meltr_tui::config::Dtype::F32;
    config.validate().unwrap();
    let workload = workload::build(&config, Device::Cpu, Kind::Float, None).unwrap();
    let combiner = combiner::build(&config, Device::Cpu, Kind::Float);
    for iterations in [0, 2] {
        let of = |mode, jvp| {
            hypergrad_of(
                workload.as_ref(),
                combiner.as_ref(),
                &config,
                mode,
                jvp,
                iterations,
            )
        };
        let (auto, why) = of(AidMode::Factorized, JvpMethod::Auto);
        let why = why.expect("oneDNN's LSTM layer has no forward derivative");
        eprintln!("J = {iterations}: {why}");
        assert!(
            why.contains("the loss JVP by forward mode with the fused kernels off")
                && why.contains("mkldnn_rnn_layer"),
            "{why}"
        );
        let (exact, exact_why) = of(AidMode::Exact, JvpMethod::Auto);
        assert_eq!(
            exact_why, None,
            "double backward goes through oneDNN's layer"
        );
        let norm = exact.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!(norm > 1e-6, "a hypergradient to compare: ‖h‖ = {norm:e}");
        let err = relative_error(&auto, &exact);
        let (differences, _) = of(AidMode::Factorized, JvpMethod::Differences);
        eprintln!(
            "J = {iterations}: auto vs exact {err:.2e}, differences vs exact {:.2e}",
            relative_error(&differences, &exact)
        );
        assert!(err < 1e-4, "auto vs exact, f32: {err:e}");
    }
    assert!(meltr_tui::nn::math_kernels::fused_enabled().unwrap());
}

/// `loss(batch, primary)` against `losses(batch)[primary]`: value and
/// gradient with respect to θ, in f64.
fn assert_primary_alone_matches(name: &str, workload: &dyn Workload, config: &Config) {
    let batch = workload.val_batch(0).unwrap();
    let theta = workload.parameters();
    let primary = &config.workload.primary;
    let value_and_grad = |loss: tch::Tensor| {
        let grads = meltr_tui::nn::autograd::grad(&[&loss], &theta, false, false).unwrap();
        let flat: Vec<f64> = grads
            .iter()
            .flat_map(|g| Vec::<f64>::try_from(g.flatten(0, -1)).unwrap())
            .collect();
        (loss.double_value(&[]), flat)
    };
    tch::manual_seed(3);
    let (alone, alone_grad) = value_and_grad(workload.loss(&batch, primary).unwrap());
    tch::manual_seed(3);
    let full = workload.losses(&batch).unwrap().remove(primary).unwrap();
    let (full, full_grad) = value_and_grad(full);
    let grad_error = relative_error(&alone_grad, &full_grad);
    eprintln!("{name}: primary alone {alone} vs full forward {full}; gradient {grad_error:.1e}");
    assert!(
        (alone - full).abs() <= 1e-12 * full.abs(),
        "{name}: {alone} vs {full}"
    );
    assert!(
        grad_error <= 1e-12,
        "{name}: gradient differs by {grad_error:e}"
    );
}

/// Runs `check` on the video-text model and on the TorchScript example
/// exported with `attention`, both in f64.
fn on_both_models(attention: &str, check: fn(&str, &dyn Workload, &Config)) {
    let config = video_text_config();
    let workload = workload::build(&config, Device::Cpu, Kind::Double, None).unwrap();
    check("video-text", workload.as_ref(), &config);
    let config = torchscript_config(&export(attention));
    let workload = workload::build(&config, Device::Cpu, Kind::Double, None).unwrap();
    check(
        &format!("torchscript ({attention} attention)"),
        workload.as_ref(),
        &config,
    );
}

#[test]
fn the_primary_alone_matches_the_full_forward() {
    let _serial = serial();
    on_both_models("sdpa", assert_primary_alone_matches);
}

/// The shares of one training batch by both methods, with the double
/// backward's result or error.
fn shares_of(workload: &dyn Workload, config: &Config) -> (anyhow::Result<Vec<f64>>, Vec<f64>) {
    let combiner = combiner::build(config, Device::Cpu, Kind::Double);
    let batch = workload.train_batch(1).unwrap();
    let losses = workload::select(&workload.losses(&batch).unwrap(), &config.loss_names()).unwrap();
    let weights = combiner::effective_weights(combiner.as_ref(), &losses).unwrap();
    let theta = workload.parameters();
    let values = |s: shares::Shares| Vec::<f64>::try_from(&s.shares).unwrap();
    let double = shares::by_double_backward(&losses, &weights, &theta).map(values);
    let per_loss = values(shares::per_loss(&losses, &weights, &theta).unwrap());
    (double, per_loss)
}

fn assert_shares_agree(name: &str, workload: &dyn Workload, config: &Config) {
    let (double, per_loss) = shares_of(workload, config);
    let double = double.unwrap();
    let err = relative_error(&double, &per_loss);
    eprintln!("{name}: shares {double:?}, double backward vs per loss {err:.1e}");
    assert!(err <= 1e-10, "{name}: {double:?} vs {per_loss:?}");
    let sum: f64 = double.iter().sum();
    assert!((sum - 1.0).abs() < 1e-10, "{name}: shares sum to {sum}");
}

#[test]
fn gradient_shares_by_double_backward_match_one_backward_per_loss() {
    let _serial = serial();
    on_both_models("matmul", assert_shares_agree);
}

#[test]
fn fused_attention_shares_need_the_per_loss_fallback() {
    let _serial = serial();
    let config = torchscript_config(&export("sdpa"));
    let workload = workload::build(&config, Device::Cpu, Kind::Double, None).unwrap();
    let (double, per_loss) = shares_of(workload.as_ref(), &config);
    let err = double.expect_err("fused attention should have no double backward");
    eprintln!("double backward through fused attention: {err:#}");
    let sum: f64 = per_loss.iter().sum();
    assert!((sum - 1.0).abs() < 1e-10, "per-loss shares sum to {sum}");
}
