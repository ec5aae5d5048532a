//! Which kernels `scaled_dot_product_attention` may pick, through the
//! `csrc/attention.cpp` shim (tch exposes none of libtorch's SDPA
//! settings). Its fused kernels (flash, memory-efficient, cuDNN) have no
//! second derivatives and no forward-mode ones; its math path has both.
//! The meta step turns the fused kernels off, for its own passes only,
//! where a second-order or forward-mode pass through them failed: a stock
//! `nn.TransformerEncoderLayer` with dropout 0 takes flash attention on the
//! CPU.

use crate::ffi::checked;
use anyhow::Result;
use std::ffi::c_char;

extern "C" {
    fn meltr_sdp_fused_enabled(error: *mut *mut c_char) -> i64;
    fn meltr_sdp_set_fused(mask: i64, error: *mut *mut c_char);
}

/// While alive, `scaled_dot_product_attention` runs its math path; the
/// fused kernels enabled before the first live guard come back when the
/// last one is dropped. The setting is process-wide (libtorch's global
/// context): guards on several threads share one count, so one thread's
/// drop never turns the kernels back on under another's products.
#[must_use = "the fused kernels come back when the guard is dropped"]
pub struct MathAttention(());

/// Live guards, and the fused kernels enabled before the first.
static GUARDS: std::sync::Mutex<(usize, i64)> = std::sync::Mutex::new((0, 0));

impl MathAttention {
    /// A guard when `math` is asked for, none otherwise.
    pub fn enter_if(math: bool) -> Result<Option<Self>> {
        math.then(Self::enter).transpose()
    }

    /// Turns every fused SDPA kernel off.
    pub fn enter() -> Result<Self> {
        let mut guards = GUARDS.lock().unwrap_or_else(|e| e.into_inner());
        if guards.0 == 0 {
            let previous = checked(|e| unsafe { meltr_sdp_fused_enabled(e) })?;
            checked(|e| unsafe { meltr_sdp_set_fused(0, e) })?;
            guards.1 = previous;
        }
        guards.0 += 1;
        Ok(Self(()))
    }
}

impl Drop for MathAttention {
    fn drop(&mut self) {
        let mut guards = GUARDS.lock().unwrap_or_else(|e| e.into_inner());
        guards.0 -= 1;
        if guards.0 == 0 {
            // Setting flags does not fail in practice; a failure here
            // leaves the math path on, slower but the same function.
            let previous = guards.1;
            let _ = checked(|e| unsafe { meltr_sdp_set_fused(previous, e) });
        }
    }
}

/// Whether any fused SDPA kernel is enabled now (tests).
pub fn fused_enabled() -> Result<bool> {
    Ok(checked(|e| unsafe { meltr_sdp_fused_enabled(e) })? != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guard_turns_the_fused_kernels_off_and_back_on() {
        assert!(fused_enabled().unwrap(), "libtorch enables them by default");
        {
            let _outer = MathAttention::enter().unwrap();
            assert!(!fused_enabled().unwrap());
            {
                let _inner = MathAttention::enter().unwrap();
                assert!(!fused_enabled().unwrap());
            }
            assert!(!fused_enabled().unwrap(), "the outer guard is alive");
        }
        assert!(fused_enabled().unwrap());
        // Dropped out of order (two threads' products): on after the last.
        let a = MathAttention::enter().unwrap();
        let b = std::thread::spawn(MathAttention::enter)
            .join()
            .unwrap()
            .unwrap();
        drop(a);
        assert!(!fused_enabled().unwrap(), "b still needs the math path");
        drop(b);
        assert!(fused_enabled().unwrap());
    }
}
