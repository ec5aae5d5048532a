//! Small building blocks shared by MELTR, the built-in workloads and the
//! trainer: autograd helpers, the optimizer and clipping, VarStore
//! helpers, a portable seeded generator, and a transformer encoder.
#![warn(missing_docs)]

pub mod autograd;
pub mod math_kernels;
pub mod optim;
pub mod rng;
pub mod transformer;
pub mod vars;

/// Mean cross-entropy of `logits` (`[N, C]`) against class indices, in the
/// logits' own dtype (tch's `cross_entropy_for_logits` always computes in
/// f32, which would cap an f64 model's precision), from elementary ops so
/// that forward-mode AD runs through its backward pass.
pub fn cross_entropy(logits: &tch::Tensor, targets: &tch::Tensor) -> tch::Tensor {
    let log_probs = logits - logits.logsumexp([-1], true);
    -log_probs
        .gather(-1, &targets.unsqueeze(-1), false)
        .mean(logits.kind())
}

/// Softmax over the last dimension from elementary ops (libtorch's fused
/// softmax backward has no forward derivative, which the meta step's
/// forward-over-reverse Hessian-vector products need).
pub fn softmax(x: &tch::Tensor) -> tch::Tensor {
    let shifted = x - x.amax([-1], true).detach();
    let e = shifted.exp();
    &e / e.sum_dim_intlist(&[-1i64][..], true, x.kind())
}
