//! Global grad-norm clipping over explicit gradient lists, as
//! `torch.nn.utils.clip_grad_norm_`: foreach norms through the C++ shim
//! (`csrc/clip.cpp`), or op by op where those do not apply.

use crate::ffi::checked;
use crate::nn::autograd::norm;
use std::ffi::c_char;
use tch::{Kind, Tensor};

extern "C" {
    fn meltr_clip_grad_norm(
        grads: *const *mut torch_sys::C_tensor,
        count: i64,
        max_norm: f64,
        error: *mut *mut c_char,
    ) -> *mut torch_sys::C_tensor;
}

/// Scales `grads` in place so their global norm is at most `max_norm`.
/// Returns the norm before clipping (0-dim tensor; no host sync). As
/// `torch.nn.utils.clip_grad_norm_`: foreach norms and one foreach multiply
/// (`csrc/clip.cpp`), or, where those do not apply (gradients on several
/// devices or of several dtypes), the same formula op by op.
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> Tensor {
    if !grads.is_empty() {
        let pointers: Vec<*mut torch_sys::C_tensor> =
            grads.iter().map(|g| g.as_ptr() as *mut _).collect();
        // SAFETY: the pointers are live tch tensors held for the call; the
        // shim returns a new tensor that `from_ptr` takes ownership of.
        let total = checked(|error| unsafe {
            meltr_clip_grad_norm(pointers.as_ptr(), grads.len() as i64, max_norm, error)
        });
        if let Ok(raw) = total {
            if !raw.is_null() {
                return unsafe { Tensor::from_ptr(raw) };
            }
        }
    }
    op_by_op_clip_grad_norm(grads, max_norm)
}

/// [`clip_grad_norm`] by elementwise ops: the fallback, and the reference
/// it is tested against.
#[doc(hidden)]
pub fn op_by_op_clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> Tensor {
    let total = norm(grads);
    // Scalar arithmetic on the device tensor: no host-to-device copy.
    // `max_norm / (norm + 1e-6)`, as torch.nn.utils.clip_grad_norm_.
    let scale = ((&total.to_kind(Kind::Double) + 1e-6).reciprocal() * max_norm)
        .clamp_max(1.0)
        .to_kind(total.kind());
    tch::no_grad(|| {
        for g in grads.iter_mut() {
            let _ = g.g_mul_(&scale);
        }
    });
    total
}
