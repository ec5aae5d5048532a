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

/// The kernels are one process-wide setting: tests that set them or read
/// them take turns (also [`crate::meltr::hypergrad`]'s LSTM tests).
#[cfg(test)]
pub(crate) static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[cfg(test)]
mod tests {
    use super::*;

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
}
