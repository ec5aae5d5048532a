//! Forward-mode AD through libtorch's dual numbers (tch exposes no way to
//! enter a dual level; `csrc/forward_ad.cpp` is the small shim that does).
//!
//! Tangents are set on the model's parameters in place, so any model code —
//! Rust or TorchScript — computes Jacobian-vector products without being
//! rewritten: `J·v` of a function of θ is the tangent of its output.
//! libtorch supports one dual level at a time per process, so levels are
//! serialized by a process-wide lock.

use crate::ffi::checked;
use anyhow::Result;
use std::ffi::c_char;
use std::sync::{Mutex, MutexGuard};
use tch::Tensor;

extern "C" {
    fn meltr_fwad_enter(error: *mut *mut c_char) -> i64;
    fn meltr_fwad_exit(level: u64, error: *mut *mut c_char);
    fn meltr_fwad_set_tangent(
        tensor: *mut torch_sys::C_tensor,
        tangent: *mut torch_sys::C_tensor,
        level: u64,
        error: *mut *mut c_char,
    );
    fn meltr_fwad_tangent(
        tensor: *mut torch_sys::C_tensor,
        level: u64,
        error: *mut *mut c_char,
    ) -> *mut torch_sys::C_tensor;
}

static LEVEL_LOCK: Mutex<()> = Mutex::new(());

/// An entered dual level; leaving it (on drop) drops every tangent set at it.
pub struct DualLevel {
    level: u64,
    _exclusive: MutexGuard<'static, ()>,
}

impl DualLevel {
    /// Enters a new dual level, first waiting for any other to be left (one at a
    /// time per process).
    pub fn enter() -> Result<DualLevel> {
        let guard = LEVEL_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let level = checked(|e| unsafe { meltr_fwad_enter(e) })?;
        Ok(DualLevel {
            level: level as u64,
            _exclusive: guard,
        })
    }

    /// Makes `tensor` dual with `tangent` (same shape), in place.
    pub fn set_tangent(&self, tensor: &Tensor, tangent: &Tensor) -> Result<()> {
        let tangent = tangent.detach().to_kind(tensor.kind());
        checked(|e| unsafe {
            meltr_fwad_set_tangent(
                tensor.as_ptr() as *mut _,
                tangent.as_ptr() as *mut _,
                self.level,
                e,
            )
        })
    }

    /// The tangent of `tensor` (zeros when it does not depend on any dual input).
    pub fn tangent(&self, tensor: &Tensor) -> Result<Tensor> {
        let raw =
            checked(|e| unsafe { meltr_fwad_tangent(tensor.as_ptr() as *mut _, self.level, e) })?;
        Ok(if raw.is_null() {
            tensor.detach().zeros_like()
        } else {
            // SAFETY: the shim hands over a new heap `at::Tensor`.
            unsafe { Tensor::from_ptr(raw) }
        })
    }
}

impl Drop for DualLevel {
    fn drop(&mut self) {
        let _ = checked(|e| unsafe { meltr_fwad_exit(self.level, e) });
    }
}

/// `(f(θ), J_f(θ)·v)`: `f` evaluated once with θ dual along `v`.
pub fn jvp(
    theta: &[Tensor],
    v: &[Tensor],
    f: &dyn Fn() -> Result<Tensor>,
) -> Result<(Tensor, Tensor)> {
    let level = DualLevel::enter()?;
    for (t, d) in theta.iter().zip(v) {
        level.set_tangent(t, d)?;
    }
    let value = f()?;
    let tangent = level.tangent(&value)?;
    Ok((value.detach(), tangent.detach()))
}

/// `J_g(θ)·v` for a list-valued `g` (e.g. a gradient: forward-over-reverse
/// gives a Hessian-vector product).
pub fn jvp_many(
    theta: &[Tensor],
    v: &[Tensor],
    g: &dyn Fn() -> Result<Vec<Tensor>>,
) -> Result<Vec<Tensor>> {
    let level = DualLevel::enter()?;
    for (t, d) in theta.iter().zip(v) {
        level.set_tangent(t, d)?;
    }
    g()?.iter()
        .map(|out| level.tangent(out).map(|t| t.detach()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::autograd::grad;
    use tch::{Device, Kind};

    fn opts() -> (Kind, Device) {
        (Kind::Double, Device::Cpu)
    }

    #[test]
    fn jvp_of_a_closed_form() {
        // f(x) = Σ sin(x)·x², J·v = Σ (cos(x)·x² + 2x·sin(x))·v
        let x = Tensor::from_slice(&[0.3f64, -1.2, 2.0]).set_requires_grad(true);
        let v = Tensor::from_slice(&[1.0f64, 0.5, -2.0]);
        let f = || Ok((x.sin() * x.square()).sum(Kind::Double));
        let (value, tangent) = jvp(std::slice::from_ref(&x), std::slice::from_ref(&v), &f).unwrap();
        let xd = x.detach();
        let slope: Tensor = xd.cos() * xd.square() + (&xd * xd.sin()) * 2.0;
        let expected = (slope * &v).sum(Kind::Double);
        assert!((tangent - expected).abs().double_value(&[]) < 1e-12);
        assert!((value - f().unwrap().detach()).abs().double_value(&[]) < 1e-15);
        // The level is gone: no tangent lingers on x.
        let level = DualLevel::enter().unwrap();
        assert_eq!(
            level
                .tangent(&x)
                .unwrap()
                .abs()
                .sum(Kind::Double)
                .double_value(&[]),
            0.0
        );
    }

    #[test]
    fn forward_over_reverse_is_the_hessian_vector_product() {
        let _draws = crate::nn::rng::global_draws();
        let a = Tensor::randn([4, 4], opts());
        let x = Tensor::randn([4], opts()).set_requires_grad(true);
        let v = Tensor::randn([4], opts());
        // L = Σ tanh(A x)²: compare with the double-backward HVP.
        let loss = || (a.matmul(&x)).tanh().square().sum(Kind::Double);
        let g = || grad(&[&loss()], std::slice::from_ref(&x), false, false);
        let hv = jvp_many(std::slice::from_ref(&x), std::slice::from_ref(&v), &g).unwrap();
        let g1 = grad(&[&loss()], std::slice::from_ref(&x), true, true).unwrap();
        let exact = grad(
            &[&(&g1[0] * &v).sum(Kind::Double)],
            std::slice::from_ref(&x),
            false,
            false,
        )
        .unwrap();
        let err = (&hv[0] - &exact[0]).abs().max().double_value(&[]);
        assert!(
            err < 1e-12,
            "forward-over-reverse vs double backward: {err}"
        );
    }
}
