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
    /// The combined loss (0-dim) from the loss vector `[K]` (primary first).
    fn combine(&self, losses: &Tensor) -> Tensor;
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
    /// Applies live config changes that concern it (fixed weights).
    fn apply_config(&mut self, _config: &Config) {}
}

/// Effective weights `w_k = ∂M/∂l_k` at `losses` (detached; `[K]`).
pub fn effective_weights(combiner: &dyn Combiner, losses: &Tensor) -> Result<Tensor> {
    let l = losses.detach().set_requires_grad(true);
    let out = combiner.combine(&l);
    Ok(grad(&[&out], &[l], false, false)?.remove(0))
}

/// Effective weights as a differentiable function of the combiner's
/// parameters (`create_graph`): used by the factorized mixed derivative.
pub fn effective_weights_graph(combiner: &dyn Combiner, losses: &Tensor) -> Result<Tensor> {
    let l = losses.detach().set_requires_grad(true);
    let out = combiner.combine(&l);
    Ok(grad(&[&out], &[l], true, true)?.remove(0))
}

/// Adam steps and loss vectors per step of [`fit_to_linear`].
const FIT_STEPS: usize = 600;
const FIT_SAMPLES: usize = 16;
const FIT_LR: f64 = 5e-3;
const FIT_SPREAD: f64 = 0.25;

/// `meltr.init = "sum" | "primary"`: fits a meta-trained combiner to the
/// linear combination `Σ c_k l_k` near `losses` before the first step.
/// MELTR's random init (the public code's) gives effective weights of random sign, and a
/// negative weight on the primary makes the model climb its own task loss
/// until the meta steps correct it; from a linear start the run begins like
/// that baseline and the meta steps move away from it. Adam on the mean of
/// `Σ_k (w_k − c_k)² / K + ((M(l) − c·l) / c·l)²` over loss vectors spread
/// log-normally around `losses` (each loss times `e^{z/2}`, z standard
/// normal, drawn from `seed`). Returns the largest `|w_k − c_k|` at
/// `losses` after the fit.
pub fn fit_to_linear(
    combiner: &dyn Combiner,
    losses: &Tensor,
    target: &[f64],
    seed: u64,
) -> Result<f64> {
    let params = combiner.params();
    let losses = losses.detach();
    let (kind, device) = (losses.kind(), losses.device());
    let k = losses.numel();
    anyhow::ensure!(
        target.len() == k,
        "{} target weights for {k} losses",
        target.len()
    );
    let target = Tensor::from_slice(target).to_kind(kind).to_device(device);
    let mut rng = crate::nn::rng::SplitMix::new(seed, 0x004c_494e);
    let mut uniform = || ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let noise: Vec<f64> = (0..FIT_STEPS * FIT_SAMPLES * k)
        .map(|_| {
            // Box–Muller from two uniforms in (0, 1].
            let (u, v) = (uniform(), uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        })
        .collect();
    let spread = (Tensor::from_slice(&noise).to_kind(kind).to_device(device) * FIT_SPREAD)
        .exp()
        .reshape([(FIT_STEPS * FIT_SAMPLES) as i64, k as i64]);
    let mut adam = crate::nn::optim::AdamW::new(&params, FIT_LR, 0.0);
    for step in 0..FIT_STEPS {
        // Cosine decay: large steps find the fit, small ones settle it.
        adam.lr =
            FIT_LR * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / FIT_STEPS as f64).cos());
        let rows = (spread.narrow(0, (step * FIT_SAMPLES) as i64, FIT_SAMPLES as i64) * &losses)
            .set_requires_grad(true);
        let combined = combiner.combine_rows(&rows);
        // Rows are independent, so the gradient of their sum holds each
        // row's effective weights.
        let total = combined.sum(kind);
        let weights = grad(&[&total], std::slice::from_ref(&rows), true, true)?.remove(0);
        let linear = rows.matmul(&target);
        let gap = (weights - &target).square().sum(kind) / FIT_SAMPLES as f64
            + ((combined - &linear) / linear).square().mean(kind);
        let grads = grad(&[&gap], &params, false, false)?;
        adam.step(&params, &grads);
    }
    let weights = effective_weights(combiner, &losses)?;
    Ok((weights - target).abs().max().double_value(&[]))
}

/// MELTR's transform of loss `k`: the combined output at `points` values of
/// loss `k`, the other losses held at `losses`. Returns (x, y).
pub fn transform_curve(
    combiner: &dyn Combiner,
    losses: &Tensor,
    k: i64,
    points: usize,
) -> (Vec<f64>, Vec<f64>) {
    tch::no_grad(|| {
        let current = losses.double_value(&[k]).max(1e-6);
        let xs: Vec<f64> = (0..points)
            .map(|i| 2.0 * current * i as f64 / (points - 1).max(1) as f64)
            .collect();
        let ys = xs
            .iter()
            .map(|&x| {
                let l = losses.detach().copy();
                let _ = l.get(k).fill_(x);
                combiner.combine(&l).double_value(&[])
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
            vs.set_kind(kind);
            Box::new(Meltr { net, vs })
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
}

impl Combiner for Meltr {
    fn kind(&self) -> &'static str {
        "meltr"
    }
    fn combine(&self, losses: &Tensor) -> Tensor {
        self.net.forward(losses)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_meltr() -> Box<dyn Combiner> {
        let mut config = Config::default();
        config.combiner.kind = crate::config::CombinerKind::Meltr;
        config.workload.auxiliary = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        (config.meltr.d_model, config.meltr.d_hidden) = (32, 16);
        (config.meltr.d_ff, config.meltr.heads) = (64, 4);
        build(&config, Device::Cpu, Kind::Float)
    }

    fn largest_error(combiner: &dyn Combiner, losses: &Tensor, target: &[f64]) -> f64 {
        let w = effective_weights(combiner, losses).unwrap();
        (w - Tensor::from_slice(target))
            .abs()
            .max()
            .double_value(&[])
    }

    #[test]
    fn fitting_to_a_linear_combiner_sets_the_effective_weights() {
        // Loss values of the video-text workload's first step, spanning
        // two orders of magnitude.
        let losses = Tensor::from_slice(&[0.7f32, 0.05, 1.5, 6.8, 1.2, 3.4]);
        let primary = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        for seed in [1, 2] {
            // A fresh random init each time.
            let meltr = small_meltr();
            let before = largest_error(meltr.as_ref(), &losses, &primary);
            let after = fit_to_linear(meltr.as_ref(), &losses, &primary, seed).unwrap();
            eprintln!("primary: largest |w_k - c_k| {before:.3} at init, {after:.3} after the fit");
            assert!((after - largest_error(meltr.as_ref(), &losses, &primary)).abs() < 1e-6);
            assert!(after < 0.25, "{after}");
            let combined = meltr.combine(&losses).double_value(&[]);
            assert!((combined - 0.7).abs() < 0.1, "M(l) = {combined}, l_1 = 0.7");
        }

        // The sum: every weight moves toward 1 (the fit can stall with one
        // loss short of it, which the trainer reports in its event line).
        let meltr = small_meltr();
        let init = crate::nn::autograd::snapshot(&meltr.params());
        let before = largest_error(meltr.as_ref(), &losses, &[1.0; 6]);
        let after = fit_to_linear(meltr.as_ref(), &losses, &[1.0; 6], 7).unwrap();
        eprintln!("sum: largest |w_k - 1| {before:.3} at init, {after:.3} after the fit");
        assert!(after < 0.5 * before, "{before} -> {after}");

        // The same seed fits the same parameters from the same init.
        let fitted = crate::nn::autograd::snapshot(&meltr.params());
        crate::nn::autograd::assign(&meltr.params(), &init);
        fit_to_linear(meltr.as_ref(), &losses, &[1.0; 6], 7).unwrap();
        for (a, b) in meltr.params().iter().zip(&fitted) {
            assert_eq!(a, b);
        }
    }
}
