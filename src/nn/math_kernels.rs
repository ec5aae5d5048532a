//! Which kernels libtorch may pick, through the `csrc/math_kernels.cpp`
//! shim (tch exposes none of these settings). Some fused kernels have no
//! second derivatives and no forward-mode ones, while the plain kernels
//! computing the same function have both: `scaled_dot_product_attention`'s
//! fused backends (flash, memory-efficient, cuDNN) against its math path,
//! oneDNN's RNN layers (`nn.LSTM` in f32 on the CPU) and cuDNN's RNNs
//! against the native cells (on CUDA, libtorch's fused LSTM cell, which
//! has second derivatives but no forward-mode ones). The meta step turns
//! the fused kernels off, for its own passes only, where a second-order or
//! forward-mode pass through them failed: a stock
//! `nn.TransformerEncoderLayer` with dropout 0 takes flash attention on the
//! CPU, `nn.LSTM` takes oneDNN.

use crate::ffi::checked;
use anyhow::Result;
use std::ffi::c_char;

extern "C" {
    fn meltr_fused_enabled(error: *mut *mut c_char) -> i64;
    fn meltr_set_fused(mask: i64, error: *mut *mut c_char);
}

/// `scaled_dot_product_attention`'s fused backends, as bits of the shim's
/// mask (flash, memory-efficient, cuDNN attention, FA3, overrideable).
pub const ATTENTION: i64 = 1 | 2 | 4 | 8 | 16;
/// oneDNN (mkldnn): the CPU's fused RNN layers, convolutions.
pub const ONEDNN: i64 = 32;
/// cuDNN: the GPU's fused RNNs, convolutions, BatchNorm.
pub const CUDNN: i64 = 64;
/// Every family the shim can turn off.
pub const ALL: i64 = ATTENTION | ONEDNN | CUDNN;

/// The fused kernels a failed pass's error names (libtorch names the op:
/// `mkldnn_rnn_layer`, `_cudnn_rnn`, `_scaled_dot_product_flash_attention_
/// for_cpu`), so that only those are turned off (a model with attention
/// and convolutions keeps oneDNN's convolutions); all of them when it names
/// none.
pub fn named_in(error: &str) -> i64 {
    let error = error.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| error.contains(w));
    // SDPA's cuDNN backend is an attention kernel (its flag is SDPA's):
    // all of cuDNN stays on for the convolutions.
    if has(&["attention", "sdp", "flash"]) {
        return ATTENTION;
    }
    let named = [
        (ONEDNN, has(&["mkldnn", "onednn"])),
        (CUDNN, has(&["cudnn"])),
    ]
    .into_iter()
    .filter(|(_, named)| *named)
    .fold(0, |bits, (family, _)| bits | family);
    if named == 0 {
        ALL
    } else {
        named
    }
}

/// The families in `off`, in words (`scaled_dot_product_attention's,
/// oneDNN's`).
pub fn describe(off: i64) -> String {
    [
        (ATTENTION, "scaled_dot_product_attention's"),
        (ONEDNN, "oneDNN's"),
        (CUDNN, "cuDNN's"),
    ]
    .into_iter()
    .filter(|(family, _)| off & family != 0)
    .map(|(_, name)| name)
    .collect::<Vec<_>>()
    .join(", ")
}

/// While alive, libtorch runs its plain kernels instead of the fused ones
/// named when it was entered (attention's math path, the native RNN cells);
/// the fused kernels enabled before the first live guard come back when the
/// last one is dropped. The setting is process-wide (libtorch's global
/// context): guards on several threads share one count, so one thread's
/// drop never turns the kernels back on under another's products.
#[must_use = "the fused kernels come back when the guard is dropped"]
pub struct MathKernels(());

/// Live guards, and the fused kernels enabled before the first.
static GUARDS: std::sync::Mutex<(usize, i64)> = std::sync::Mutex::new((0, 0));

impl MathKernels {
    /// A guard turning the families in `off` off; none for 0.
    pub fn enter_if(off: i64) -> Result<Option<Self>> {
        (off != 0).then(|| Self::enter(off)).transpose()
    }

    /// Turns the fused kernels of the families in `off` off.
    pub fn enter(off: i64) -> Result<Self> {
        let mut guards = GUARDS.lock().unwrap_or_else(|e| e.into_inner());
        let now = checked(|e| unsafe { meltr_fused_enabled(e) })?;
        checked(|e| unsafe { meltr_set_fused(now & !off, e) })?;
        if guards.0 == 0 {
            guards.1 = now;
        }
        guards.0 += 1;
        Ok(Self(()))
    }
}

impl Drop for MathKernels {
    fn drop(&mut self) {
        let mut guards = GUARDS.lock().unwrap_or_else(|e| e.into_inner());
        guards.0 -= 1;
        if guards.0 == 0 {
            // Setting flags does not fail in practice; a failure here
            // leaves the math path on, slower but the same function.
            let previous = guards.1;
            let _ = checked(|e| unsafe { meltr_set_fused(previous, e) });
        }
    }
}

/// Whether every fused kernel family has its kernels enabled now, as
/// libtorch starts (tests).
pub fn fused_enabled() -> Result<bool> {
    let on = checked(|e| unsafe { meltr_fused_enabled(e) })?;
    Ok([ATTENTION, ONEDNN, CUDNN]
        .iter()
        .all(|family| on & family != 0))
}

/// Whether any kernel of the families in `family` is enabled now (tests).
pub fn any_enabled(family: i64) -> Result<bool> {
    Ok(checked(|e| unsafe { meltr_fused_enabled(e) })? & family != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels are one process-wide setting: these tests take turns.
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn the_guard_turns_the_fused_kernels_off_and_back_on() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        assert!(fused_enabled().unwrap(), "libtorch enables them by default");
        {
            let _outer = MathKernels::enter(ALL).unwrap();
            assert!(!fused_enabled().unwrap());
            {
                let _inner = MathKernels::enter(ALL).unwrap();
                assert!(!fused_enabled().unwrap());
            }
            assert!(!fused_enabled().unwrap(), "the outer guard is alive");
        }
        assert!(fused_enabled().unwrap());
        // Dropped out of order (two threads' products): on after the last.
        let a = MathKernels::enter(ALL).unwrap();
        let b = std::thread::spawn(|| MathKernels::enter(ALL))
            .join()
            .unwrap()
            .unwrap();
        drop(a);
        assert!(!fused_enabled().unwrap(), "b still needs the math path");
        drop(b);
        assert!(fused_enabled().unwrap());
        // One family only: the others stay on.
        {
            let _attention = MathKernels::enter(ATTENTION).unwrap();
            assert!(!any_enabled(ATTENTION).unwrap());
            assert!(any_enabled(ONEDNN).unwrap() && any_enabled(CUDNN).unwrap());
        }
        assert!(fused_enabled().unwrap());
    }

    #[test]
    fn an_error_names_the_families_to_turn_off() {
        let lstm = "Trying to use forward AD with mkldnn_rnn_layer that does not support it";
        assert_eq!(named_in(lstm), ONEDNN);
        let flash = "derivative for aten::_scaled_dot_product_flash_attention_for_cpu_backward is not implemented";
        assert_eq!(named_in(flash), ATTENTION);
        assert_eq!(named_in("_cudnn_rnn_backward is not implemented"), CUDNN);
        let cudnn_attention = "_scaled_dot_product_cudnn_attention_backward is not implemented";
        assert_eq!(named_in(cudnn_attention), ATTENTION);
        assert_eq!(named_in("some other op"), ALL);
        assert_eq!(
            describe(ATTENTION | CUDNN),
            "scaled_dot_product_attention's, cuDNN's"
        );
    }

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
            let weight =
                |shape: &[i64]| (Tensor::randn(shape, options) * 0.3).set_requires_grad(true);
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
            let (out, _, _) =
                x.f_lstm(&[&zeros, &zeros], &params, true, 1, 0.0, true, false, false)?;
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
        let gradient =
            crate::nn::autograd::grad(&[&f().unwrap()], &lstm.theta, false, false).unwrap();
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
            val_primary: &val_primary,
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
                (flat, h.fallback)
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
}
