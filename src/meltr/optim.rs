//! AdamW and global grad-norm clipping over explicit gradient lists. Written
//! out (rather than tch's `nn::Optimizer`) so the state can be checkpointed
//! and resumed exactly, and gradients come from `run_backward`, not `.grad`.

use super::autograd::norm;
use tch::{Kind, Tensor};

pub struct AdamW {
    pub lr: f64,
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Number of updates taken (bias correction).
    pub step: i64,
    pub m: Vec<Tensor>,
    pub v: Vec<Tensor>,
}

impl AdamW {
    pub fn new(params: &[Tensor], lr: f64, weight_decay: f64) -> Self {
        let zeros = || tch::no_grad(|| params.iter().map(Tensor::zeros_like).collect::<Vec<_>>());
        Self {
            lr,
            weight_decay,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: 0,
            m: zeros(),
            v: zeros(),
        }
    }

    /// One decoupled-weight-decay Adam update of `params` along `grads`.
    pub fn step(&mut self, params: &[Tensor], grads: &[Tensor]) {
        self.step += 1;
        let bc1 = 1.0 - self.beta1.powi(self.step as i32);
        let bc2 = 1.0 - self.beta2.powi(self.step as i32);
        tch::no_grad(|| {
            for ((p, g), (m, v)) in params
                .iter()
                .zip(grads)
                .zip(self.m.iter_mut().zip(self.v.iter_mut()))
            {
                let _ = m
                    .g_mul_scalar_(self.beta1)
                    .g_add_(&(g * (1.0 - self.beta1)));
                let _ = v
                    .g_mul_scalar_(self.beta2)
                    .g_add_(&(g * g * (1.0 - self.beta2)));
                let update = (&*m / bc1) / ((&*v / bc2).sqrt() + self.eps);
                let mut p = p.shallow_clone();
                if self.weight_decay > 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - self.lr * self.weight_decay);
                }
                let _ = p.g_add_(&(update * -self.lr));
            }
        });
    }

    /// State tensors by name, for checkpoints.
    pub fn state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out = vec![(format!("{prefix}.step"), Tensor::from(self.step))];
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            out.push((format!("{prefix}.m.{i}"), m.shallow_clone()));
            out.push((format!("{prefix}.v.{i}"), v.shallow_clone()));
        }
        out
    }

    /// Restores from `state`'s names; missing entries are an error.
    pub fn load_state(
        &mut self,
        prefix: &str,
        lookup: &dyn Fn(&str) -> Option<Tensor>,
    ) -> anyhow::Result<()> {
        let get = |name: String| {
            lookup(&name).ok_or_else(|| anyhow::anyhow!("checkpoint lacks `{name}`"))
        };
        self.step = get(format!("{prefix}.step"))?.int64_value(&[]);
        tch::no_grad(|| -> anyhow::Result<()> {
            for (i, (m, v)) in self.m.iter_mut().zip(self.v.iter_mut()).enumerate() {
                m.copy_(&get(format!("{prefix}.m.{i}"))?);
                v.copy_(&get(format!("{prefix}.v.{i}"))?);
            }
            Ok(())
        })
    }
}

/// Scales `grads` in place so their global norm is at most `max_norm`.
/// Returns the norm before clipping (0-dim tensor; no host sync).
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> Tensor {
    let total = norm(grads);
    let scale = (Tensor::from(max_norm)
        .to_kind(Kind::Double)
        .to_device(total.device())
        / (&total.to_kind(Kind::Double) + 1e-12))
        .clamp_max(1.0)
        .to_kind(total.kind());
    tch::no_grad(|| {
        for g in grads.iter_mut() {
            let _ = g.g_mul_(&scale);
        }
    });
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adamw_first_step_moves_by_lr_against_gradient_sign() {
        let p = Tensor::from_slice(&[1.0f64, -2.0]).set_requires_grad(true);
        let mut opt = AdamW::new(&[p.shallow_clone()], 0.1, 0.0);
        opt.step(&[p.shallow_clone()], &[Tensor::from_slice(&[3.0f64, -0.5])]);
        let got: Vec<f64> = Vec::try_from(p.detach()).unwrap();
        // Adam's first step is lr·sign(g) (up to eps).
        assert!(
            (got[0] - 0.9).abs() < 1e-6 && (got[1] + 1.9).abs() < 1e-6,
            "{got:?}"
        );
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let mut g = vec![Tensor::from_slice(&[3.0f64]), Tensor::from_slice(&[4.0f64])];
        let before = clip_grad_norm(&mut g, 1.0).double_value(&[]);
        assert!((before - 5.0).abs() < 1e-12);
        let after = norm(&g).double_value(&[]);
        assert!((after - 1.0).abs() < 1e-9, "{after}");
        let mut small = vec![Tensor::from_slice(&[0.3f64])];
        let _ = clip_grad_norm(&mut small, 1.0);
        assert!((small[0].double_value(&[0]) - 0.3).abs() < 1e-12);
    }
}
