//! Which kernels libtorch may pick, through the `csrc/math_kernels.cpp`
//! shim (tch exposes none of these settings). Some fused kernels have no
//! second derivatives and no forward-mode ones, while the plain kernels
//! computing the same function have both: `scaled_dot_product_attention`'s
//! fused backends (flash, memory-efficient, cuDNN) against its math path,
//! oneDNN's RNN layers (`nn.LSTM` in f32 on the CPU) and cuDNN's RNNs
//! against the native cells. The meta step turns the fused kernels off,
//! for its own passes only, where a second-order or forward-mode pass
//! through them failed: a stock `nn.TransformerEncoderLayer` with dropout 0
//! takes flash attention on the CPU, `nn.LSTM` takes oneDNN.

use crate::ffi::checked;
use anyhow::Result;
use std::ffi::c_char;

extern "C" {
    fn meltr_fused_enabled(error: *mut *mut c_char) -> i64;
    fn meltr_set_fused(mask: i64, error: *mut *mut c_char);
}

/// While alive, libtorch runs its plain kernels (attention's math path,
/// native RNN cells, no oneDNN or cuDNN); the fused kernels enabled before the first live guard come back when the
/// last one is dropped. The setting is process-wide (libtorch's global
/// context): guards on several threads share one count, so one thread's
/// drop never turns the kernels back on under another's products.
#[must_use = "the fused kernels come back when the guard is dropped"]
pub struct MathKernels(());

/// Live guards, and the fused kernels enabled before the first.
static GUARDS: std::sync::Mutex<(usize, i64)> = std::sync::Mutex::new((0, 0));

impl MathKernels {
    /// A guard when `math` is asked for, none otherwise.
    pub fn enter_if(math: bool) -> Result<Option<Self>> {
        math.then(Self::enter).transpose()
    }

    /// Turns every fused kernel off.
    pub fn enter() -> Result<Self> {
        let mut guards = GUARDS.lock().unwrap_or_else(|e| e.into_inner());
        if guards.0 == 0 {
            let previous = checked(|e| unsafe { meltr_fused_enabled(e) })?;
            checked(|e| unsafe { meltr_set_fused(0, e) })?;
            guards.1 = previous;
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

/// Whether any fused kernel is enabled now (tests).
pub fn fused_enabled() -> Result<bool> {
    Ok(checked(|e| unsafe { meltr_fused_enabled(e) })? != 0)
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
            let _outer = MathKernels::enter().unwrap();
            assert!(!fused_enabled().unwrap());
            {
                let _inner = MathKernels::enter().unwrap();
                assert!(!fused_enabled().unwrap());
            }
            assert!(!fused_enabled().unwrap(), "the outer guard is alive");
        }
        assert!(fused_enabled().unwrap());
        // Dropped out of order (two threads' products): on after the last.
        let a = MathKernels::enter().unwrap();
        let b = std::thread::spawn(MathKernels::enter)
            .join()
            .unwrap()
            .unwrap();
        drop(a);
        assert!(!fused_enabled().unwrap(), "b still needs the math path");
        drop(b);
        assert!(fused_enabled().unwrap());
    }

    /// An LSTM's forward-mode JVP with the fused kernels off against its
    /// gradient: oneDNN's RNN layer (CPU, f32) and cuDNN's (GPU) have no
    /// forward derivative; the native cells do.
    fn lstm_takes_forward_mode_with_the_fused_kernels_off(device: tch::Device) {
        use tch::{Kind, Tensor};
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let _draws = crate::nn::rng::global_draws();
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
        let zeros = Tensor::zeros([1, 3, hidden], options);
        let f = || -> Result<Tensor> {
            let params: Vec<&Tensor> = theta.iter().collect();
            let (out, _, _) = x.f_lstm(
                &[&zeros, &zeros],
                &params,
                true,
                1,
                0.0,
                false,
                false,
                false,
            )?;
            Ok(out.tanh().sum(Kind::Float))
        };
        let p: Vec<Tensor> = theta.iter().map(Tensor::randn_like).collect();
        let fused = crate::meltr::forward_ad::jvp(&theta, &p, &f);
        eprintln!(
            "{device:?} forward mode with the fused kernels on: {}",
            match &fused {
                Ok(_) => "ok".to_string(),
                Err(e) => crate::nn::autograd::first_line(&format!("{e:#}")),
            }
        );
        let (_, tangent) = {
            let _plain = MathKernels::enter().unwrap();
            crate::meltr::forward_ad::jvp(&theta, &p, &f).unwrap()
        };
        let gradient = crate::nn::autograd::grad(&[&f().unwrap()], &theta, false, false).unwrap();
        let reference = crate::nn::autograd::dot(&gradient, &p);
        let (tangent, reference) = (tangent.double_value(&[]), reference.double_value(&[]));
        assert!(
            (tangent - reference).abs() <= 1e-4 * reference.abs().max(1.0),
            "{tangent} vs {reference}"
        );
        assert!(fused_enabled().unwrap());
    }

    #[test]
    fn an_lstm_takes_forward_mode_with_the_fused_kernels_off() {
        lstm_takes_forward_mode_with_the_fused_kernels_off(tch::Device::Cpu);
    }

    #[test]
    #[ignore = "needs a CUDA device (scripts/gpu-check.sh runs it)"]
    fn an_lstm_takes_forward_mode_with_cudnn_off_on_cuda() {
        lstm_takes_forward_mode_with_the_fused_kernels_off(tch::Device::Cuda(0));
    }
}
