//! The textbook update the optimizer is checked against.

use tch::Tensor;

/// The textbook AdamW update, parameter by parameter (a dozen small ops per
/// parameter): the reference [`super::AdamW`] is tested and benchmarked against
/// (`cargo bench --bench adamw`). `moments`: (m, v) per parameter; `step`:
/// the update's number, from 1.
#[doc(hidden)]
pub fn per_parameter_step(
    params: &[Tensor],
    grads: &[Tensor],
    moments: &mut [(Tensor, Tensor)],
    step: f64,
    (lr, weight_decay): (f64, f64),
) {
    let (b1, b2, eps) = (0.9f64, 0.999f64, 1e-8);
    tch::no_grad(|| {
        for ((p, g), (m, v)) in params.iter().zip(grads).zip(moments.iter_mut()) {
            *m = &*m * b1 + g * (1.0 - b1);
            *v = &*v * b2 + g * g * (1.0 - b2);
            let m_hat = &*m / (1.0 - b1.powf(step));
            let v_hat = &*v / (1.0 - b2.powf(step));
            let new = p * (1.0 - lr * weight_decay) - m_hat / (v_hat.sqrt() + eps) * lr;
            p.shallow_clone().copy_(&new);
        }
    });
}
