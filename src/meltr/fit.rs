//! `meltr.init = "sum" | "primary"`: fitting a meta-trained combiner to a
//! linear combiner `Σ c_k l_k` around the first batch's losses, so that a run
//! starts with known effective weights `w_k = ∂M/∂l_k ≈ c_k`.
//!
//! For MELTR the fit solves for the head in closed form. The combined loss
//! is `M(l) = h · p(l)`, with `p` the pooled encoder output, so `M` and every
//! `w_k = h · ∂p/∂l_k` are linear in the head weight `h`: a ridge least
//! squares over a few loss vectors gives `h`. Gradient descent on all of
//! φ (what this replaced) cannot get there: `p` comes out of a layer norm, so
//! `|M| ≤ |h ⊙ γ| √d + |h · β|`; PyTorch's init has `|h| ≈ 0.6` (d = 256), so
//! matching `M ≈ c·l ≈ 13` forced every token onto the head's direction,
//! which makes `M` flat in `l` (`w ≈ 0`, the effective-weight term's gradient
//! gone), long before Adam could grow `h` the ~20–100x it needs.
//!
//! Other meta-trained combiners (the monotone MLP) keep an Adam fit.

use super::combiner::{effective_weights, Combiner};
use super::net::MeltrNet;
use crate::nn::autograd::grad;
use anyhow::{ensure, Result};
use tch::{Device, Kind, Tensor};

/// Loss vectors the fit uses: the given one and `FIT_SAMPLES - 1` spread
/// log-normally around it (each loss times `e^{FIT_SPREAD z}`).
const FIT_SAMPLES: usize = 16;
const FIT_SPREAD: f64 = 0.25;
/// How much the given loss vector's equations count against each spread
/// one's: the run starts there, and the reported error is measured there.
const POINT_WEIGHT: f64 = 10.0;
/// Ridge on the head, relative to the mean diagonal of the normal equations
/// (keeps `h` from growing without bound to chase the spread vectors).
const RIDGE: f64 = 1e-4;

/// The largest `|w_k − c_k|` a fit may leave before the trainer warns that
/// the run does not start from the linear combiner.
pub const FIT_TOLERANCE: f64 = 0.05;

/// Fits `combiner` to `Σ c_k l_k` (`target` = c) near `losses` before the
/// first step: MELTR's random init gives effective weights near 0 and of
/// random sign; from a linear start the run begins like that baseline and the
/// meta steps move away from it. MELTR: closed-form head (see the module
/// docs); other combiners: Adam on all parameters. Deterministic from
/// `seed` and the init. Returns the largest `|w_k − c_k|` at `losses`.
pub fn fit_to_linear(
    combiner: &dyn Combiner,
    losses: &Tensor,
    target: &[f64],
    seed: u64,
) -> Result<f64> {
    let losses = losses.detach();
    let (kind, device) = (losses.kind(), losses.device());
    let k = losses.numel();
    ensure!(
        target.len() == k,
        "{} target weights for {k} losses",
        target.len()
    );
    let target = Tensor::from_slice(target).to_kind(kind).to_device(device);
    let error = || -> Result<f64> {
        let weights = effective_weights(combiner, &losses)?;
        Ok((weights - &target).abs().max().double_value(&[]))
    };
    match combiner.meltr_net() {
        Some(net) => solve_head(net, &losses, &target, seed)?,
        None => {
            // The monotone MLP cannot put a weight at 0, so `primary` is
            // out of its reach, and its Adam fit was seen to end further off
            // than it started (0.59 → 0.89 on the synthetic workload in
            // session 10): keep whichever of the two is closer.
            let before = error()?;
            let start: Vec<Tensor> =
                tch::no_grad(|| combiner.params().iter().map(Tensor::copy).collect());
            fit_by_adam(combiner, &losses, &target, seed)?;
            if error()? > before {
                tch::no_grad(|| {
                    for (param, saved) in combiner.params().iter().zip(&start) {
                        param.shallow_clone().copy_(saved);
                    }
                });
            }
        }
    }
    error()
}

/// `rows` loss-vector factors `[rows, k]`, each `e^{FIT_SPREAD z}` with z
/// standard normal (Box–Muller over a SplitMix stream from `seed`).
fn spread_factors(seed: u64, rows: usize, k: usize, kind: Kind, device: Device) -> Tensor {
    let mut rng = crate::nn::rng::SplitMix::new(seed, 0x004c_494e);
    let mut uniform = || ((rng.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let noise: Vec<f64> = (0..rows * k)
        .map(|_| {
            let (u, v) = (uniform(), uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        })
        .collect();
    (Tensor::from_slice(&noise).to_kind(kind).to_device(device) * FIT_SPREAD)
        .exp()
        .reshape([rows as i64, k as i64])
}

/// Sets MELTR's head to the ridge least-squares solution of
/// `h · p(l_s) = c · l_s` (relative) and `h · ∂p/∂l_{s,k} = c_k` over the
/// given loss vector (row 0, weighted `POINT_WEIGHT`) and spread ones.
fn solve_head(net: &MeltrNet, losses: &Tensor, target: &Tensor, seed: u64) -> Result<()> {
    let (kind, device) = (losses.kind(), losses.device());
    let k = losses.numel() as i64;
    let s = FIT_SAMPLES as i64;
    let spread = spread_factors(seed, FIT_SAMPLES - 1, k as usize, kind, device) * losses;
    let rows = Tensor::cat(&[losses.reshape([1, k]), spread], 0).set_requires_grad(true);
    let pooled = net.pooled_rows(&rows); // [S, d]
    let d = pooled.size()[1];
    // Jacobian rows ∂p/∂l_{s,j} by double backward: the gradient of
    // probe · p with respect to l is linear in the probe, and its gradient
    // with respect to the probe is the Jacobian column.
    let probe = pooled.zeros_like().set_requires_grad(true);
    let pulled = grad(
        &[&(&pooled * &probe).sum(kind)],
        std::slice::from_ref(&rows),
        true,
        true,
    )?
    .remove(0); // [S, K]
    let mut columns = Vec::with_capacity(k as usize);
    for j in 0..k {
        let column = pulled.select(1, j).sum(kind);
        columns.push(grad(&[&column], std::slice::from_ref(&probe), true, false)?.remove(0));
    }
    let jacobian = Tensor::stack(&columns, 1).reshape([s * k, d]); // row s*K + j
    let linear = rows.detach().matmul(target); // [S]
    ensure!(
        linear.min().double_value(&[]) > 0.0,
        "meltr.init fit: the target combination of the first losses is not positive ({})",
        linear.min().double_value(&[])
    );
    let to_double = |t: Tensor| t.detach().to_kind(Kind::Double).to_device(Device::Cpu);
    let design = to_double(Tensor::cat(
        &[pooled.detach() / linear.unsqueeze(1), jacobian],
        0,
    ));
    let wanted = to_double(Tensor::cat(
        &[Tensor::ones([s], (kind, device)), target.repeat([s])],
        0,
    ));
    // Row weights: the given loss vector's 1 + K rows count POINT_WEIGHT.
    let mut row_weights = vec![1.0; (s * (1 + k)) as usize];
    row_weights[0] = POINT_WEIGHT;
    for j in 0..k as usize {
        row_weights[s as usize + j] = POINT_WEIGHT;
    }
    let row_weights = Tensor::from_slice(&row_weights);
    let design = design * row_weights.unsqueeze(1);
    let wanted = wanted * row_weights;
    let gram = design.transpose(0, 1).matmul(&design);
    let ridge = RIDGE * gram.diagonal(0, 0, 1).mean(Kind::Double).double_value(&[]);
    let eye = Tensor::eye(d, (Kind::Double, Device::Cpu));
    let rhs = design.transpose(0, 1).matmul(&wanted.unsqueeze(1));
    let head = Tensor::f_linalg_solve(&(gram + eye * ridge.max(1e-12)), &rhs, true)?;
    ensure!(
        head.isfinite().all().int64_value(&[]) == 1,
        "meltr.init fit: the head's least squares has no finite solution"
    );
    let weight = net.head_weight();
    tch::no_grad(|| {
        weight.shallow_clone().copy_(
            &head
                .reshape([1, d])
                .to_kind(weight.kind())
                .to_device(weight.device()),
        );
    });
    Ok(())
}

/// Adam steps and rate of the fit for combiners other than MELTR.
const ADAM_STEPS: usize = 600;
const ADAM_LR: f64 = 5e-3;

/// Adam on the mean of `Σ_k (w_k − c_k)² + ((M(l) − c·l) / c·l)²` over
/// spread loss vectors, with a cosine-decayed rate.
fn fit_by_adam(combiner: &dyn Combiner, losses: &Tensor, target: &Tensor, seed: u64) -> Result<()> {
    let params = combiner.params();
    let (kind, device) = (losses.kind(), losses.device());
    let k = losses.numel();
    let spread = spread_factors(seed, ADAM_STEPS * FIT_SAMPLES, k, kind, device);
    let mut adam = crate::nn::optim::AdamW::new(&params, ADAM_LR, 0.0);
    for step in 0..ADAM_STEPS {
        adam.lr =
            ADAM_LR * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / ADAM_STEPS as f64).cos());
        let rows = (spread.narrow(0, (step * FIT_SAMPLES) as i64, FIT_SAMPLES as i64) * losses)
            .set_requires_grad(true);
        let combined = combiner.combine_rows(&rows);
        // Rows are independent, so the gradient of their sum holds each
        // row's effective weights.
        let total = combined.sum(kind);
        let weights = grad(&[&total], std::slice::from_ref(&rows), true, true)?.remove(0);
        let linear = rows.matmul(target);
        let gap = (weights - target).square().sum(kind) / FIT_SAMPLES as f64
            + ((combined - &linear) / linear).square().mean(kind);
        let grads = grad(&[&gap], &params, false, false)?;
        adam.step(&params, &grads);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CombinerKind, Config};
    use crate::meltr::combiner::build;

    /// MELTR at its default size over `k` losses, PyTorch's init from
    /// `seed`.
    fn meltr(k: usize, seed: i64) -> Box<dyn Combiner> {
        let _draws = crate::nn::rng::global_draws();
        tch::manual_seed(seed);
        let mut config = Config::default();
        config.combiner.kind = CombinerKind::Meltr;
        config.workload.auxiliary = (1..k).map(|i| format!("aux{i}")).collect();
        build(&config, Device::Cpu, Kind::Float)
    }

    /// configs/synthetic.toml with `workload.seed` and its first training
    /// batch's losses (f32). Holds libtorch's generator while building: tests
    /// on other threads draw from it too, and a draw slipped in between gave
    /// CI other losses than a run of this test alone.
    fn synthetic_first_losses(workload_seed: u64) -> (Config, Tensor) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/synthetic.toml");
        let mut config = Config::load(&path).unwrap();
        config.workload.seed = workload_seed;
        let _draws = crate::nn::rng::global_draws();
        let workload = crate::workload::build(&config, Device::Cpu, Kind::Float, None).unwrap();
        let losses = tch::no_grad(|| {
            let first = workload.train_batch(1).unwrap();
            crate::workload::select(&workload.losses(&first).unwrap(), &config.loss_names())
                .unwrap()
        });
        (config, losses.to_kind(Kind::Float))
    }

    fn largest_error(combiner: &dyn Combiner, losses: &Tensor, target: &[f64]) -> f64 {
        let w = effective_weights(combiner, losses).unwrap();
        (w - Tensor::from_slice(target).to_kind(Kind::Float))
            .abs()
            .max()
            .double_value(&[])
    }

    /// Fits `sum` and `primary` from two inits; checks the error, the
    /// returned error and the combined value.
    fn fits_both_targets(losses: &[f32], tolerance: f64) {
        let k = losses.len();
        let l = Tensor::from_slice(losses);
        let sum = vec![1.0; k];
        let mut primary = vec![0.0; k];
        primary[0] = 1.0;
        for (name, target) in [("sum", &sum), ("primary", &primary)] {
            for seed in [0, 1] {
                let combiner = meltr(k, seed);
                let before = largest_error(combiner.as_ref(), &l, target);
                let start = std::time::Instant::now();
                let after = fit_to_linear(combiner.as_ref(), &l, target, 7).unwrap();
                eprintln!(
                    "{losses:?} {name} seed {seed}: largest |w_k - c_k| {before:.3} -> {after:.4} in {:.2?}",
                    start.elapsed()
                );
                assert!(before > 0.5, "the init is already linear? {before}");
                assert!(after <= tolerance, "{name}: {after}");
                let measured = largest_error(combiner.as_ref(), &l, target);
                assert!((after - measured).abs() < 1e-6, "{after} vs {measured}");
                let linear: f64 = losses
                    .iter()
                    .zip(target.iter())
                    .map(|(l, c)| *l as f64 * c)
                    .sum();
                let combined = combiner.combine(&l).double_value(&[]);
                assert!(
                    (combined - linear).abs() < 0.05 * linear,
                    "{name}: M(l) = {combined}, c·l = {linear}"
                );
            }
        }
    }

    #[test]
    fn fit_reaches_the_linear_weights_on_losses_of_very_different_scales() {
        // Two orders of magnitude between losses: measured 0.02–0.04 on
        // inits that depend on which tests share libtorch's global RNG at
        // the time; above FIT_TOLERANCE the trainer warns.
        fits_both_targets(&[1.2, 3.5, 80.0, 0.7], 2.0 * FIT_TOLERANCE);
    }

    #[test]
    fn fit_reaches_the_linear_weights_on_the_synthetic_workloads_first_losses() {
        // The losses the trainer fits around: the synthetic workload's first
        // training batch (configs/synthetic.toml).
        let (_, losses) = synthetic_first_losses(0);
        let values: Vec<f32> = Vec::try_from(&losses).unwrap();
        assert_eq!(values.len(), 3);
        fits_both_targets(&values, FIT_TOLERANCE);
    }

    #[test]
    fn fit_reaches_the_linear_weights_when_one_loss_is_fifty_times_the_others() {
        // The auxiliary-learning suite's shape: one loss 50x the others.
        fits_both_targets(&[1.1, 52.0, 0.9, 1.3], FIT_TOLERANCE);
    }

    #[test]
    fn the_same_seed_fits_the_same_head() {
        let l = Tensor::from_slice(&[1.2f32, 3.5, 80.0, 0.7]);
        // The same starting φ (copied: other tests draw from libtorch's
        // global RNG concurrently), fitted twice with one seed.
        let (first, second) = (meltr(4, 3), meltr(4, 3));
        tch::no_grad(|| {
            for (a, b) in first.params().iter().zip(&second.params()) {
                b.shallow_clone().copy_(a);
            }
        });
        fit_to_linear(first.as_ref(), &l, &[1.0; 4], 9).unwrap();
        fit_to_linear(second.as_ref(), &l, &[1.0; 4], 9).unwrap();
        for (a, b) in first.params().iter().zip(&second.params()) {
            assert_eq!(a, b);
        }
    }

    #[test]
    fn the_monotone_mlp_fits_sum_and_never_ends_further_from_primary() {
        // Over the first losses of three workload seeds and two inits.
        // `sum`: measured a 5–14x smaller largest error (0.31–0.40 → 0.03–0.08
        // over workload seeds 0–7), so at least 3x here. `primary` (a weight
        // at 0, out of a monotone MLP's reach): Adam got closer on 2 of those
        // 8 loss vectors (0.71 → 0.65, 0.84 → 0.26) and further on the rest,
        // where the fit keeps the start, so the property is "never further".
        for workload_seed in 0..3 {
            let (mut config, l) = synthetic_first_losses(workload_seed);
            config.combiner.kind = CombinerKind::Mlp;
            let k = l.numel();
            let mut primary = vec![0.0; k];
            primary[0] = 1.0;
            for (target, shrink) in [(vec![1.0; k], 3.0), (primary, 1.0)] {
                for seed in 0..2 {
                    let combiner = {
                        let _draws = crate::nn::rng::global_draws();
                        tch::manual_seed(seed);
                        build(&config, Device::Cpu, Kind::Float)
                    };
                    let before = largest_error(combiner.as_ref(), &l, &target);
                    let after = fit_to_linear(combiner.as_ref(), &l, &target, 7).unwrap();
                    eprintln!(
                        "mlp {target:?} workload seed {workload_seed} seed {seed}: \
                         largest |w_k - c_k| {before:.3} -> {after:.3}"
                    );
                    assert!(
                        after * shrink <= before,
                        "{target:?}: {before} -> {after}, wanted at least {shrink}x smaller"
                    );
                    let measured = largest_error(combiner.as_ref(), &l, &target);
                    assert!((after - measured).abs() < 1e-6, "{after} vs {measured}");
                }
            }
        }
    }
}
