//! MELTR's hypergradient over an LSTM, whose kernels lack forward mode
//! in different places per device: oneDNN's RNN layer on CPU, cuDNN's RNN
//! and the fused cell on CUDA (here, not beside the kernel switches, so
//! that `nn::math_kernels` does not import the hypergradient it serves).

use crate::nn::math_kernels::{fused_enabled, named_in, MathKernels, ALL, ONEDNN, SERIAL};
use anyhow::Result;

/// The LSTM of the tests below: `[K = 2]` losses of a one-layer LSTM
/// over 5 steps (primary: the output's mean square;
/// auxiliary: its distance from 0.5), and a validation loss on other
/// inputs.
struct Lstm {
    theta: Vec<tch::Tensor>,
    x: tch::Tensor,
    x_val: tch::Tensor,
    hidden: i64,
}

impl Lstm {
    fn new(device: tch::Device) -> Self {
        use tch::{Kind, Tensor};
        tch::manual_seed(3);
        let (input, hidden) = (4, 8);
        let options = (Kind::Float, device);
        let weight = |shape: &[i64]| (Tensor::randn(shape, options) * 0.3).set_requires_grad(true);
        let theta = vec![
            weight(&[4 * hidden, input]),
            weight(&[4 * hidden, hidden]),
            weight(&[4 * hidden]),
            weight(&[4 * hidden]),
        ];
        let x = Tensor::randn([5, 3, input], options);
        let x_val = Tensor::randn([5, 3, input], options);
        Self {
            theta,
            x,
            x_val,
            hidden,
        }
    }

    fn output(&self, x: &tch::Tensor) -> Result<tch::Tensor> {
        let zeros = tch::Tensor::zeros([1, 3, self.hidden], (x.kind(), x.device()));
        let params: Vec<&tch::Tensor> = self.theta.iter().collect();
        // Training mode (cuDNN's RNN has no backward in eval mode);
        // without dropout, the same function.
        let (out, _, _) = x.f_lstm(&[&zeros, &zeros], &params, true, 1, 0.0, true, false, false)?;
        Ok(out)
    }

    fn train_losses(&self) -> Result<tch::Tensor> {
        let out = self.output(&self.x)?;
        let primary = out.square().mean(tch::Kind::Float);
        let aux = (out - 0.5).abs().mean(tch::Kind::Float);
        Ok(tch::Tensor::stack(&[primary, aux], 0))
    }

    fn val_primary(&self) -> Result<tch::Tensor> {
        Ok(self.output(&self.x_val)?.square().mean(tch::Kind::Float))
    }
}

/// An LSTM's forward-mode JVP with the fused kernels off against its
/// gradient: oneDNN's RNN layer (CPU, f32) has no forward derivative,
/// the native cells have one.
#[test]
fn an_lstm_takes_forward_mode_with_the_fused_kernels_off() {
    use tch::Kind;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _draws = crate::nn::rng::global_draws();
    let lstm = Lstm::new(tch::Device::Cpu);
    let f = || -> Result<tch::Tensor> { Ok(lstm.output(&lstm.x)?.tanh().sum(Kind::Float)) };
    let p: Vec<tch::Tensor> = lstm.theta.iter().map(tch::Tensor::randn_like).collect();
    let fused = crate::meltr::forward_ad::jvp(&lstm.theta, &p, &f);
    let error = format!(
        "{:#}",
        fused.expect_err("oneDNN's layer has no forward mode")
    );
    assert_eq!(named_in(&error), ONEDNN, "{error}");
    let (_, tangent) = {
        let _plain = MathKernels::enter(ALL).unwrap();
        crate::meltr::forward_ad::jvp(&lstm.theta, &p, &f).unwrap()
    };
    let gradient = crate::nn::autograd::grad(&[&f().unwrap()], &lstm.theta, false, false).unwrap();
    let reference = crate::nn::autograd::dot(&gradient, &p);
    let (tangent, reference) = (tangent.double_value(&[]), reference.double_value(&[]));
    assert!(
        (tangent - reference).abs() <= 1e-4 * reference.abs().max(1.0),
        "{tangent} vs {reference}"
    );
    assert!(fused_enabled().unwrap());
}

/// The hypergradient of MELTR over an LSTM in f32 under `aid.jvp =
/// "auto"` against exact mode's (double backward, which the native
/// cells have), at J = 0 and J = 2; returns why each fell back at J = 2.
fn lstm_hypergradient_auto_against_exact(device: tch::Device) -> (String, Option<String>) {
    use crate::meltr::hypergrad::{hypergradient, AidMode, AidSettings, JvpMethod};
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let _draws = crate::nn::rng::global_draws();
    let lstm = Lstm::new(device);
    let mut config = crate::config::Config::default();
    config.combiner.kind = crate::config::CombinerKind::Meltr;
    config.workload.auxiliary = vec!["aux".into()];
    let combiner = crate::meltr::combiner::build(&config, device, tch::Kind::Float);
    let train_losses = || lstm.train_losses();
    let val_primary = || lstm.val_primary();
    let problem = crate::meltr::hypergrad::MetaProblem {
        theta: &lstm.theta,
        combiner: combiner.as_ref(),
        train_losses: &train_losses,
        val_primary: Some(&val_primary),
        train_forward: None,
    };
    let mut why = (String::new(), None);
    for iterations in [0, 2] {
        let of = |mode| {
            let settings = AidSettings {
                iterations,
                alpha: 0.01,
                mode,
                gamma: 0.1,
                gamma_direct: false,
                jvp: JvpMethod::Auto,
                max_growth: 10.0,
            };
            let h = hypergradient(&problem, &settings).unwrap();
            let flat = tch::Tensor::cat(
                &h.grads.iter().map(|g| g.flatten(0, -1)).collect::<Vec<_>>(),
                0,
            )
            .to_kind(tch::Kind::Double)
            .to_device(tch::Device::Cpu);
            let why = (!h.fallback.is_empty()).then(|| h.fallback.join("; "));
            (flat, why)
        };
        let (auto, auto_why) = of(AidMode::Factorized);
        let (exact, exact_why) = of(AidMode::Exact);
        let norm = exact.norm().double_value(&[]);
        assert!(norm > 1e-6, "a hypergradient to compare: ‖h‖ = {norm:e}");
        let err = (&auto - &exact).norm().double_value(&[]) / norm;
        eprintln!("{device:?} J = {iterations}: auto vs exact {err:.2e}");
        // On CUDA the first-order passes go through cuDNN's RNN and
        // exact's through the native cells: 1.0e-4 apart on an H200
        // (cuDNN may run f32 RNNs in TF32, its `allow_tf32` default).
        let tolerance = if device.is_cuda() { 1e-3 } else { 1e-4 };
        assert!(
            err < tolerance,
            "{device:?} J = {iterations}: auto vs exact, f32: {err:e}"
        );
        let auto_why = auto_why.expect("some LSTM kernel lacks forward mode on every device");
        why = (auto_why, exact_why);
    }
    assert!(fused_enabled().unwrap());
    why
}

#[test]
fn an_lstm_hypergradient_takes_forward_mode_with_onednn_off() {
    let (why, exact_why) = lstm_hypergradient_auto_against_exact(tch::Device::Cpu);
    assert_eq!(
        exact_why, None,
        "double backward goes through oneDNN's layer"
    );
    assert!(
        why.contains("the loss JVP by forward mode with the fused kernels off")
            && why.contains("mkldnn_rnn_layer"),
        "{why}"
    );
}

/// On CUDA neither cuDNN's RNN nor the fused cell libtorch runs with
/// cuDNN off (`_thnn_fused_lstm_cell`) has a forward derivative (torch
/// 2.11, seen on an H200): the loss JVP takes one backward per loss.
#[test]
#[ignore = "needs a CUDA device (scripts/gpu-check.sh runs it)"]
fn an_lstm_hypergradient_takes_one_backward_per_loss_on_cuda() {
    let (why, exact_why) = lstm_hypergradient_auto_against_exact(tch::Device::Cuda(0));
    eprintln!("auto: {why}\nexact: {exact_why:?}");
    assert!(
        why.contains("one backward pass per loss") && why.contains("_thnn_fused_lstm_cell"),
        "{why}"
    );
}
