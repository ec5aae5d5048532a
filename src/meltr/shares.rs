//! Each loss's share of the combined gradient, the number the contributions
//! pane shows beside the effective weights (DESIGN: "Contribution").
//!
//! With `g_k = ∇_θ l_k`, effective weights `w = ∂M/∂l` and the combined
//! gradient `G = Σ_k w_k g_k`, loss k's share is `w_k (g_k · G) / |G|²`; the
//! shares sum to 1. The K dot products `g_k · G` are one Jacobian-vector
//! product of the loss vector along G, which the retained graph of the
//! step's forward gives by a double backward: `G(c) = ∇_θ (l · c)` is linear
//! in c, so `∇_c (G(c) · G) = (g_k · G)_k`. That is two passes over the
//! model whatever K, instead of one backward per loss (the fallback, for
//! models with ops that have no second derivative, e.g. fused attention).
//! No recomputed forward, so dropout and running statistics are untouched.
//! The first of the two passes is `G` itself, the combined loss's gradient
//! (the same ops on the same seed: bit for bit in every model tested), so a
//! logged step's update reuses it: logging costs the step one extra pass
//! over the model.

use crate::nn::autograd::{detach_all, dot, grad, grad_reaching};
use anyhow::Result;
use tch::Tensor;

/// The shares `[K]` and `|G|²` (0-dim), on the device (no host sync).
pub struct Shares {
    /// Each loss's share `w_k (g_k · G) / |G|²`, `[K]`; they sum to 1.
    pub shares: Tensor,
    /// `|G|²`, the combined gradient's squared norm (0-dim).
    pub squared_norm: Tensor,
    /// Each loss's own `|g_k|²`, `[K]`, where its gradient was taken alone
    /// ([`per_loss`]): a share near 0 may be a flat loss or one at right
    /// angles to the rest, which only this tells apart.
    pub squared_norms: Option<Tensor>,
    /// G itself (detached), when it came out of one backward through the
    /// model seeded with the effective weights: the combined loss's
    /// gradient by the same ops, so the step's update can use it instead
    /// of a backward of its own; with which parameters it reached (see
    /// [`grad_reaching`]).
    pub combined: Option<(Vec<Tensor>, Vec<bool>)>,
}

/// By a double backward through the retained graph of `losses` (kept).
pub fn by_double_backward(losses: &Tensor, weights: &Tensor, theta: &[Tensor]) -> Result<Shares> {
    let weights = weights.detach();
    let seed = weights.copy().set_requires_grad(true);
    let (combined, reached) =
        grad_reaching(&[&(losses * &seed).sum(losses.kind())], theta, true, true)?;
    let constant = detach_all(&combined);
    let along = grad(&[&dot(&combined, &constant)], &[seed], true, false)?;
    let squared_norm = dot(&constant, &constant);
    Ok(Shares {
        shares: &weights * &along[0] / &squared_norm,
        squared_norm,
        squared_norms: None,
        combined: Some((constant, reached)),
    })
}

/// By one backward per loss through the retained graph of `losses` (kept).
pub fn per_loss(losses: &Tensor, weights: &Tensor, theta: &[Tensor]) -> Result<Shares> {
    Ok(per_loss_with_gradients(losses, weights, theta)?.0)
}

/// [`per_loss`], and each loss's own gradient (`[K][P]`).
pub fn per_loss_with_gradients(
    losses: &Tensor,
    weights: &Tensor,
    theta: &[Tensor],
) -> Result<(Shares, Vec<Vec<Tensor>>)> {
    let weights = weights.detach();
    let per_loss: Vec<Vec<Tensor>> = (0..losses.size1()?)
        .map(|k| grad(&[&losses.get(k)], theta, true, false))
        .collect::<Result<_>>()?;
    let combined: Vec<Tensor> = (0..theta.len())
        .map(|i| {
            per_loss
                .iter()
                .enumerate()
                .map(|(k, g)| &g[i] * weights.get(k as i64))
                .reduce(|a, b| a + b)
                .expect("K >= 1")
        })
        .collect();
    let along = Tensor::stack(
        &per_loss
            .iter()
            .map(|g| dot(g, &combined))
            .collect::<Vec<_>>(),
        0,
    );
    let squared_norm = dot(&combined, &combined);
    let squared_norms = Tensor::stack(&per_loss.iter().map(|g| dot(g, g)).collect::<Vec<_>>(), 0);
    let shares = Shares {
        shares: &weights * along / &squared_norm,
        squared_norm,
        squared_norms: Some(squared_norms),
        // Summed in another order than a backward would: not bit for bit.
        combined: None,
    };
    Ok((shares, per_loss))
}

/// Which θ tensors each gradient of `per_loss` is nonzero on, `[K, P]`
/// booleans. (Nonzero, not reached: the loss vector's stack carries every
/// loss's backward to each parameter, with zeros.)
pub fn nonzero_on(per_loss: &[Vec<Tensor>]) -> Tensor {
    let rows: Vec<Tensor> = per_loss
        .iter()
        .map(|g| {
            let each: Vec<Tensor> = g.iter().map(|t| t.square().sum(t.kind())).collect();
            Tensor::stack(&each, 0).gt(0.0)
        })
        .collect();
    Tensor::stack(&rows, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// θ ∈ R⁶; `l_k = Σ tanh(A_k θ) + ½ θᵀ B_k θ`, so
    /// `g_k = A_kᵀ (1 − tanh²(A_k θ)) + B_k θ` in closed form.
    struct Problem {
        theta: Tensor,
        a: Vec<Tensor>,
        b: Vec<Tensor>,
    }

    fn problem(k: usize) -> Problem {
        let _draws = crate::nn::rng::global_draws();
        tch::manual_seed(7);
        let opts = (Kind::Double, Device::Cpu);
        let theta = Tensor::randn([6], opts).set_requires_grad(true);
        let a = (0..k).map(|_| Tensor::randn([4, 6], opts)).collect();
        let b = (0..k)
            .map(|_| {
                let m = Tensor::randn([6, 6], opts);
                &m + m.transpose(0, 1)
            })
            .collect();
        Problem { theta, a, b }
    }

    impl Problem {
        fn losses(&self) -> Tensor {
            let parts: Vec<Tensor> = self
                .a
                .iter()
                .zip(&self.b)
                .map(|(a, b)| {
                    a.mv(&self.theta).tanh().sum(Kind::Double)
                        + self.theta.dot(&b.mv(&self.theta)) * 0.5
                })
                .collect();
            Tensor::stack(&parts, 0)
        }

        fn closed_form(&self, weights: &[f64]) -> Vec<f64> {
            let theta = self.theta.detach();
            let g: Vec<Tensor> = self
                .a
                .iter()
                .zip(&self.b)
                .map(|(a, b)| {
                    let t = a.mv(&theta).tanh();
                    a.transpose(0, 1).mv(&(1.0 - &t * &t)) + b.mv(&theta)
                })
                .collect();
            let combined = g
                .iter()
                .zip(weights)
                .map(|(g, w)| g * *w)
                .reduce(|a, b| a + b)
                .unwrap();
            let squared = combined.dot(&combined).double_value(&[]);
            g.iter()
                .zip(weights)
                .map(|(g, w)| w * g.dot(&combined).double_value(&[]) / squared)
                .collect()
        }
    }

    fn values(shares: &Shares) -> Vec<f64> {
        Vec::try_from(&shares.shares).unwrap()
    }

    #[test]
    fn both_methods_match_the_closed_form() {
        let p = problem(4);
        let weights = [1.0, 0.5, -0.25, 2.0];
        let expected = p.closed_form(&weights);
        let w = Tensor::from_slice(&weights);
        let losses = p.losses();
        let theta = [p.theta.shallow_clone()];
        for (name, got) in [
            ("double backward", by_double_backward(&losses, &w, &theta)),
            ("per loss", per_loss(&losses, &w, &theta)),
        ] {
            let got = values(&got.unwrap());
            for (g, e) in got.iter().zip(&expected) {
                assert!(
                    (g - e).abs() <= 1e-12 * e.abs().max(1.0),
                    "{name}: {got:?} vs {expected:?}"
                );
            }
            let sum: f64 = got.iter().sum();
            assert!((sum - 1.0).abs() < 1e-12, "{name}: shares sum to {sum}");
        }
    }

    #[test]
    fn the_combined_gradient_is_the_combined_losss_bit_for_bit() {
        for kind in [Kind::Float, Kind::Double] {
            let p = problem(4);
            let theta = [p.theta.to_kind(kind).detach().set_requires_grad(true)];
            let p = Problem {
                theta: theta[0].shallow_clone(),
                a: p.a.iter().map(|a| a.to_kind(kind)).collect(),
                b: p.b.iter().map(|b| b.to_kind(kind)).collect(),
            };
            // A nonlinear combiner: log Σ exp(l_k).
            let combine = |l: &Tensor| l.logsumexp([0], false);
            let losses = p.losses();
            let leaf = losses.detach().set_requires_grad(true);
            let weights = grad(&[&combine(&leaf)], &[leaf], false, false).unwrap();
            let shares = by_double_backward(&losses, &weights[0], &theta).unwrap();
            let direct = grad(&[&combine(&losses)], &theta, false, false).unwrap();
            assert!(
                shares.combined.unwrap().0[0].equal(&direct[0]),
                "{kind:?}: not the combined loss's gradient bit for bit"
            );
        }
    }

    #[test]
    fn the_graph_survives_for_the_update() {
        let p = problem(3);
        let w = Tensor::from_slice(&[1.0, 1.0, 1.0]);
        let losses = p.losses();
        let theta = [p.theta.shallow_clone()];
        by_double_backward(&losses, &w, &theta).unwrap();
        let g = grad(&[&losses.sum(Kind::Double)], &theta, false, false);
        assert!(g.is_ok(), "{:?}", g.err());
    }
}
