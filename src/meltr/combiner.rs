//! Combiners: how the K loss values become the one loss the model trains on.
//! MELTR and the baselines sit behind one interface so the trainer, the meta
//! step and the contributions pane treat them alike.
//!
//! | kind          | combined loss                          | trained by      |
//! |---------------|----------------------------------------|-----------------|
//! | `primary`     | l_1                                    | -               |
//! | `sum`         | Σ l_k                                  | -               |
//! | `weights`     | Σ c_k l_k (config)                     | - (live edits)  |
//! | `uncertainty` | Σ exp(-s_k) l_k + s_k (Kendall et al.) | inner optimizer |
//! | `mlp`         | v·softplus(W l + b), W, v > 0          | AID meta step   |
//! | `meltr`       | MELTR network                          | AID meta step   |

use super::net::{MeltrNet, MeltrSizes};
use crate::config::{CombinerKind, Config, MeltrInit};
use crate::nn::autograd::grad;
pub use crate::nn::transformer::Derivatives;
use crate::nn::vars::sorted_variables;
use anyhow::Result;
use tch::nn;
use tch::{Device, Kind, Tensor};

/// Which optimizer trains a combiner's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Training {
    /// Not trained: weights fixed by the kind or the config (`weights` follows
    /// live edits).
    Fixed,
    /// Jointly with the model, on the combined loss.
    Inner,
    /// By the bilevel meta step (AID hypergradient).
    Meta,
}

/// A way to turn the loss vector into one loss: MELTR or a baseline (see the
/// table above). `Send` so that it can live on the trainer's thread.
pub trait Combiner: Send {
    /// The `combiner.kind` it implements (`"meltr"`, `"sum"`, ...).
    fn kind(&self) -> &'static str;
    /// The combined loss (0-dim) from the loss vector `[K]` (primary first),
    /// differentiable to any order.
    fn combine(&self, losses: &Tensor) -> Tensor;
    /// [`Combiner::combine`] for a graph that is differentiated only as
    /// `derivatives` says (the inner step's backward, effective weights,
    /// the factorized meta step): the same function, through fused kernels
    /// where the combiner has them.
    fn combine_with(&self, losses: &Tensor, _derivatives: Derivatives) -> Tensor {
        self.combine(losses)
    }
    /// Whether [`Combiner::combine_with`] may take fused kernels (on from
    /// the start; `meltr-tui bench` turns them off to measure what they save).
    fn allow_fused_kernels(&mut self, _allow: bool) {}
    /// Combined losses `[S]` of `S` independent loss vectors `[S, K]`.
    fn combine_rows(&self, losses: &Tensor) -> Tensor {
        let rows: Vec<Tensor> = (0..losses.size()[0])
            .map(|s| self.combine(&losses.get(s)))
            .collect();
        Tensor::stack(&rows, 0)
    }
    /// Which optimizer, if any, trains [`Combiner::params`].
    fn training(&self) -> Training;
    /// The parameters of this combiner (empty for fixed ones).
    fn params(&self) -> Vec<Tensor>;
    /// Its VarStore, for checkpoints.
    fn var_store(&self) -> &nn::VarStore;
    /// The MELTR network behind it, when it is MELTR (the linear fit solves
    /// for its head).
    fn meltr_net(&self) -> Option<&MeltrNet> {
        None
    }
    /// [`Combiner::meltr_net`], to set what is measured at the start
    /// (`meltr.loss_scale`).
    fn meltr_net_mut(&mut self) -> Option<&mut MeltrNet> {
        None
    }
    /// `Σl` as the γ term `|Σl − M(l)|` reads it: the plain sum, or
    /// MELTR's at the scale it reads the losses at.
    fn reference_sum(&self, losses: &Tensor) -> Tensor {
        losses.sum(losses.kind())
    }
    /// Applies live config changes that concern it (fixed weights).
    fn apply_config(&mut self, _config: &Config) {}
}

/// Effective weights `w_k = ∂M/∂l_k` at `losses` (detached; `[K]`).
pub fn effective_weights(combiner: &dyn Combiner, losses: &Tensor) -> Result<Tensor> {
    let l = losses.detach().set_requires_grad(true);
    let out = combiner.combine_with(&l, Derivatives::FirstOrder);
    Ok(grad(&[&out], &[l], false, false)?.remove(0))
}

/// Effective weights as a differentiable function of the combiner's
/// parameters (`create_graph`): used by the factorized mixed derivative,
/// one more backward (reverse mode only).
pub fn effective_weights_graph(combiner: &dyn Combiner, losses: &Tensor) -> Result<Tensor> {
    let l = losses.detach().set_requires_grad(true);
    let out = combiner.combine_with(&l, Derivatives::Reverse);
    Ok(grad(&[&out], &[l], true, true)?.remove(0))
}

/// MELTR's transform of loss `k`: the combined output at `points` values of
/// loss `k` from 0 to twice its value (below 0 for a loss below 0: a
/// negative log-likelihood was swept over [0, 2e-6], walkthrough H1), the
/// other losses held at `losses`. Returns (x, y).
pub fn transform_curve(
    combiner: &dyn Combiner,
    losses: &Tensor,
    k: i64,
    points: usize,
) -> (Vec<f64>, Vec<f64>) {
    tch::no_grad(|| {
        let value = losses.double_value(&[k]);
        // (A NaN, which fails the comparison, gets the small sweep too.)
        let current = match value.abs() >= 1e-6 {
            true => value,
            false => 1e-6,
        };
        let xs: Vec<f64> = (0..points)
            .map(|i| 2.0 * current * i as f64 / (points - 1).max(1) as f64)
            .collect();
        let ys = xs
            .iter()
            .map(|&x| {
                let l = losses.detach().copy();
                let _ = l.get(k).fill_(x);
                combiner
                    .combine_with(&l, Derivatives::FirstOrder)
                    .double_value(&[])
            })
            .collect();
        (xs, ys)
    })
}

/// Builds the combiner named by `config.combiner.kind` on `device`.
pub fn build(config: &Config, device: Device, kind: Kind) -> Box<dyn Combiner> {
    let names = config.loss_names();
    let mut vs = nn::VarStore::new(device);
    let root = vs.root();
    let k = names.len() as i64;
    let combiner: Box<dyn Combiner> = match config.combiner.kind {
        CombinerKind::Primary => {
            let mut fixed = vec![0.0; names.len()];
            fixed[0] = 1.0;
            Box::new(Linear::fixed("primary", &fixed, vs))
        }
        CombinerKind::Sum => Box::new(Linear::fixed("sum", &vec![1.0; names.len()], vs)),
        CombinerKind::Weights => {
            let fixed = fixed_weights(config);
            Box::new(Linear::fixed("weights", &fixed, vs))
        }
        CombinerKind::Uncertainty => {
            let log_var = root.zeros("log_var", &[k]);
            vs.set_kind(kind);
            Box::new(Uncertainty { log_var, vs })
        }
        CombinerKind::Mlp => {
            let hidden = 16;
            // Raw parameters pass through softplus to stay positive (monotone
            // in every loss). Initialised near Σ l_k: W ≈ 1/hidden, v ≈ 1.
            let w_raw = root.var(
                "w_raw",
                &[hidden, k],
                nn::Init::Const(softplus_inv(1.0 / hidden as f64)),
            );
            let bias = root.var("bias", &[hidden], nn::Init::Const(0.0));
            let v_raw = root.var("v_raw", &[hidden], nn::Init::Const(softplus_inv(1.0)));
            // Small noise so the hidden units differ.
            tch::no_grad(|| {
                let _ = w_raw.shallow_clone().g_add_(&(w_raw.randn_like() * 0.05));
            });
            vs.set_kind(kind);
            Box::new(MonotoneMlp {
                w_raw,
                bias,
                v_raw,
                vs,
            })
        }
        CombinerKind::Meltr => {
            let m = &config.meltr;
            let net = MeltrNet::new(
                &root,
                MeltrSizes {
                    losses: k,
                    d_model: m.d_model,
                    d_hidden: m.d_hidden,
                    d_ff: m.d_ff,
                    heads: m.heads,
                },
            );
            // Every init but tch's own starts from PyTorch's (`sum` and
            // `primary` then fit from there).
            if m.init != MeltrInit::Random {
                net.init_like_pytorch();
            }
            let net = if m.init == MeltrInit::Residual {
                net.residual_on_sum()
            } else {
                net
            };
            vs.set_kind(kind);
            Box::new(Meltr {
                net,
                vs,
                fused: true,
            })
        }
    };
    combiner
}

fn fixed_weights(config: &Config) -> Vec<f64> {
    config
        .loss_names()
        .iter()
        .map(|n| config.combiner.weights.get(n).copied().unwrap_or(0.0))
        .collect()
}

fn softplus_inv(y: f64) -> f64 {
    (y.exp() - 1.0).ln()
}

/// Fixed linear combiners: `primary`, `sum`, `weights`.
struct Linear {
    kind: &'static str,
    weights: Tensor,
    vs: nn::VarStore,
}

impl Linear {
    fn fixed(kind: &'static str, weights: &[f64], vs: nn::VarStore) -> Self {
        let weights = Tensor::from_slice(weights).to_device(vs.device());
        Self { kind, weights, vs }
    }
}

impl Combiner for Linear {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn combine(&self, losses: &Tensor) -> Tensor {
        (losses * self.weights.to_kind(losses.kind())).sum(losses.kind())
    }
    fn training(&self) -> Training {
        Training::Fixed
    }
    fn params(&self) -> Vec<Tensor> {
        Vec::new()
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn apply_config(&mut self, config: &Config) {
        if self.kind == "weights" {
            self.weights = Tensor::from_slice(&fixed_weights(config)).to_device(self.vs.device());
        }
    }
}

/// Kendall et al.'s homoscedastic-uncertainty weighting.
struct Uncertainty {
    log_var: Tensor,
    vs: nn::VarStore,
}

impl Combiner for Uncertainty {
    fn kind(&self) -> &'static str {
        "uncertainty"
    }
    fn combine(&self, losses: &Tensor) -> Tensor {
        ((-&self.log_var).exp() * losses + &self.log_var).sum(losses.kind())
    }
    fn training(&self) -> Training {
        Training::Inner
    }
    fn params(&self) -> Vec<Tensor> {
        vec![self.log_var.shallow_clone()]
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
}

/// A small nonlinear combiner, monotone in every loss (AuxiLearn-style),
/// trained by the same AID meta step as MELTR.
struct MonotoneMlp {
    w_raw: Tensor,
    bias: Tensor,
    v_raw: Tensor,
    vs: nn::VarStore,
}

impl Combiner for MonotoneMlp {
    fn kind(&self) -> &'static str {
        "mlp"
    }
    fn combine(&self, losses: &Tensor) -> Tensor {
        let hidden = (self.w_raw.softplus().matmul(losses) + &self.bias).softplus();
        (self.v_raw.softplus() * hidden).sum(losses.kind())
    }
    fn training(&self) -> Training {
        Training::Meta
    }
    fn params(&self) -> Vec<Tensor> {
        vec![
            self.w_raw.shallow_clone(),
            self.bias.shallow_clone(),
            self.v_raw.shallow_clone(),
        ]
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
}

struct Meltr {
    net: MeltrNet,
    vs: nn::VarStore,
    fused: bool,
}

impl Combiner for Meltr {
    fn kind(&self) -> &'static str {
        "meltr"
    }
    fn combine(&self, losses: &Tensor) -> Tensor {
        self.net.forward(losses)
    }
    fn combine_with(&self, losses: &Tensor, derivatives: Derivatives) -> Tensor {
        let derivatives = if self.fused {
            derivatives
        } else {
            Derivatives::Any
        };
        self.net.forward_with(losses, derivatives)
    }
    fn allow_fused_kernels(&mut self, allow: bool) {
        self.fused = allow;
    }
    fn combine_rows(&self, losses: &Tensor) -> Tensor {
        self.net.forward_rows(losses)
    }
    fn training(&self) -> Training {
        Training::Meta
    }
    fn params(&self) -> Vec<Tensor> {
        sorted_variables(&self.vs)
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
    fn meltr_net(&self) -> Option<&MeltrNet> {
        Some(&self.net)
    }
    fn meltr_net_mut(&mut self) -> Option<&mut MeltrNet> {
        Some(&mut self.net)
    }
    fn reference_sum(&self, losses: &Tensor) -> Tensor {
        self.net.reference_sum(losses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweep spans 0 to twice a loss's value on its side of 0, the
    /// loss's value in the middle (walkthrough H1's negative
    /// log-likelihood was swept over [0, 2e-6]).
    #[test]
    fn a_transform_sweeps_a_loss_below_zero_around_its_value() {
        let sum = Linear::fixed("sum", &[1.0, 1.0], nn::VarStore::new(Device::Cpu));
        let losses = Tensor::from_slice(&[2.0f32, -1.4]);
        let (x, y) = transform_curve(&sum, &losses, 1, 5);
        let expected = [0.0, -0.7, -1.4, -2.1, -2.8];
        for (got, want) in x
            .iter()
            .zip(expected)
            .chain(y.iter().zip(expected.map(|x| 2.0 + x)))
        {
            assert!((got - want).abs() < 1e-6, "{x:?} {y:?}");
        }
        let (x, _) = transform_curve(&sum, &losses, 0, 3);
        assert_eq!(x, [0.0, 2.0, 4.0]);
        let (x, _) = transform_curve(&sum, &Tensor::from_slice(&[2.0f32, 0.0]), 1, 3);
        assert_eq!(x, [0.0, 1e-6, 2e-6], "a loss at 0: a sweep of its own");
        let (x, _) = transform_curve(&sum, &Tensor::from_slice(&[2.0f32, f32::NAN]), 1, 3);
        assert_eq!(x, [0.0, 1e-6, 2e-6], "a NaN loss: the same");
    }
}
