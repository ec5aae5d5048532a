//! The AID hypergradient of the primary loss with respect to the combiner's
//! parameters φ.
//!
//! `L_pri = l_primary(θ; B_v) + γ·|Σ_k l_k(θ; B_t) − M_φ(l(θ; B_t))|`
//! `dL_pri/dφ ≈ − (∂²L_aux/∂φ∂θ)·p`, with `p ≈ H⁻¹ ∇_θ L_pri`,
//! `H = ∇²_θ L_aux(B_t)`, by the Neumann series
//! `v_0 = p_0 = ∇_θ L_pri; v_{j+1} = v_j − α·H v_j; p = Σ_{j=0..J} v_j`.
//!
//! As in the public MELTR code (mlvlab/MELTR, `MELTRgrad`), the γ term
//! reaches φ only through `∇_θ L_pri`: φ's gradients are overwritten by
//! the implicit term. `gamma_direct` adds the total derivative's direct
//! part `γ·∂|Σl − M|/∂φ` (an option: it made MELTR collapse on a held-out
//! task).
//!
//! The public MELTR code has J = 0 only (p = ∇_θ L_pri); the series for
//! J > 0 is AuxiLearn's convention: `p` sums it without the leading α, so
//! for J → ∞, `p → H⁻¹g / α`: exact at α = 1 (when H's eigenvalues lie in
//! (0, 2)); for other α the scale folds into the meta learning rate. A
//! series whose terms grow past `max_growth` times the first stops there
//! (see [`neumann`]).
//!
//! Two ways to get the mixed term:
//! - `Exact`: differentiate `∇_θ L_aux · p` w.r.t. φ through the model
//!   (double backward), as the public code does.
//! - `Factorized`: MELTR sees θ only through the loss values, so
//!   `(∂²L_aux/∂φ∂θ)·p = Σ_k (∂w_k/∂φ)·(∇_θ l_k · p)` with `w = ∂M/∂l`. The K
//!   numbers `∇_θ l_k · p` are one Jacobian-vector product of the loss
//!   vector along p, and the Neumann HVPs are JVPs of first-order gradients;
//!   only MELTR is differentiated twice, and no second-order graph of the
//!   model is kept. The JVPs are exact by forward-mode AD
//!   ([`super::forward_ad`]; forward-over-reverse for the HVPs). For models
//!   whose ops lack forward derivatives `JvpMethod::Auto` falls back, for
//!   the HVPs, to reverse over reverse (exact where the ops have second
//!   derivatives, as the stock `cross_entropy`'s `nll_loss` does; one
//!   gradient with its second-order graph serves the whole series, as in
//!   `Exact`); where that fails too, to the same with the fused kernels off
//!   (`scaled_dot_product_attention`'s, oneDNN's and cuDNN's RNNs have
//!   neither derivative; the plain kernels have both,
//!   [`crate::nn::math_kernels`]); then to central differences. The
//!   loss JVP likewise: forward mode, with the fused kernels off, then one
//!   backward pass per loss (exact), then differences; and `Exact` retries
//!   once with them off.
//!
//! Long: both modes, the factorized mode's fallback routes and the Neumann
//! series work on one `MetaProblem` and share its error handling (which
//! failure is a missing derivative, which a fault); apart, each part would
//! need the others' private route and error types.

use super::combiner::{effective_weights_graph, Combiner, Derivatives};
use super::phases::PhaseClock;
use crate::nn::autograd::{self, grad};
use crate::nn::math_kernels::ALL as ALL_FUSED;
use anyhow::{anyhow, Result};
use std::cell::RefCell;
use tch::{Kind, Tensor};

pub use crate::config::{AidMode, JvpMethod};

/// The meta step's knobs, from `aid.*` and `meltr.gamma*`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AidSettings {
    /// Neumann terms J after v_0 (`aid.iterations`); 0 takes p = ∇_θ L_pri.
    pub iterations: u32,
    /// The Neumann step α in `v_{j+1} = v_j − α·H v_j` (`aid.alpha`, in (0, 1]).
    pub alpha: f64,
    /// How the mixed term is computed.
    pub mode: AidMode,
    /// γ, the weight of the regulariser `|Σ_k l_k − M(l)|` in `L_pri`.
    pub gamma: f64,
    /// Adds the γ term's direct φ-gradient (not in the public code).
    pub gamma_direct: bool,
    /// How the factorized mode gets its JVPs.
    pub jvp: JvpMethod,
    /// The Neumann series stops when `‖v_j‖ > max_growth·‖v_0‖`.
    pub max_growth: f64,
}

/// One meta step's bilevel problem, as closures over the current θ.
pub struct MetaProblem<'a> {
    /// Model parameters θ (leaves that require grad).
    pub theta: &'a [Tensor],
    /// The combiner whose parameters φ get the hypergradient.
    pub combiner: &'a dyn Combiner,
    /// `l(θ; B_t)`, `[K]`, primary first. Must be a deterministic function
    /// of θ (the factorized mode evaluates it at shifted θ).
    pub train_losses: &'a dyn Fn() -> Result<Tensor>,
    /// `l_primary(θ; B_v)`, 0-dim; `None`: the training batch's own
    /// primary, from the training forward (`meltr.val_source =
    /// "train-batch"`, B_v = B_t).
    pub val_primary: Option<&'a dyn Fn() -> Result<Tensor>>,
    /// `l(θ; B_t)` already computed at this θ with its graph (the inner
    /// step's forward): the γ term (and, in `Exact`, the training gradient)
    /// backpropagates through it instead of a fresh forward (not where the
    /// fused kernels it went through must be off).
    pub train_forward: Option<&'a Tensor>,
}

/// What one meta step computes: the hypergradient and what the trainer logs
/// about it.
pub struct Hypergradient {
    /// `dL_pri/dφ`, one tensor per combiner parameter.
    pub grads: Vec<Tensor>,
    /// The γ regulariser's value `|Σ l − M(l)|` on B_t (0-dim).
    pub reg: Tensor,
    /// What the meta step took instead of its first routes (factorized:
    /// forward-mode AD, one part for the Hessian-vector products and one
    /// for the loss JVP; exact: double backward with the fused kernels
    /// on), and why.
    pub fallback: Vec<String>,
    /// Where the Neumann series stopped early because it diverged.
    pub neumann_stop: Option<NeumannStop>,
    /// Where the chosen route departs from the public algorithm's
    /// hypergradient (said once per run, as a warning).
    pub departure: Option<String>,
    /// The losses the step was taken on, detached, `[1 + K]`: the
    /// validation primary, then `l(θ; B_t)` (what a non-finite
    /// hypergradient's warning names).
    pub losses: Tensor,
}

/// A Neumann series cut short: `v_j` grew past the bound, and `p` is
/// `v_0` alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NeumannStop {
    /// `j`: the first term that grew past the bound.
    pub diverged_at: u32,
    /// `‖v_j‖ / ‖v_0‖`.
    pub growth: f64,
    /// `⟨v, Hv⟩ / ‖v‖²` along `v = v_{j−1}`, the term that grew: H's mean
    /// curvature there. At most 0, `v_j = v − α·Hv` is longer than `v`
    /// at every α > 0.
    pub curvature: f64,
    /// `‖Hv‖ / ‖v‖` along the same `v`: at most H's largest |eigenvalue|.
    pub stretch: f64,
}

impl NeumannStop {
    /// The largest α at which the term that grew would not have:
    /// `‖v − α·Hv‖ ≤ ‖v‖` exactly when `α ≤ 2⟨v, Hv⟩/‖Hv‖²`. None where
    /// no α > 0 keeps it (curvature at most 0) or the products are not
    /// finite. At least 2/λ_max for a positive definite H, and 2/λ itself
    /// along an eigenvector.
    pub fn alpha_kept(&self) -> Option<f64> {
        let kept = 2.0 * self.curvature / (self.stretch * self.stretch);
        (self.curvature > 0.0 && kept.is_finite()).then_some(kept)
    }

    /// Whether H curves down (or is flat) along the term that grew, read
    /// from finite products: no α > 0 keeps that term from growing.
    pub fn curves_down(&self) -> bool {
        self.curvature <= 0.0 && self.stretch.is_finite()
    }
}

/// Computes the AID hypergradient for the combiner's parameters.
pub fn hypergradient(problem: &MetaProblem, settings: &AidSettings) -> Result<Hypergradient> {
    hypergradient_timed(
        problem,
        settings,
        &JvpRoutes::default(),
        &mut PhaseClock::disabled(),
    )
}

/// [`hypergradient`], marking each phase on `clock` (names as the bench
/// prints them), with the JVP routes earlier meta steps found in `routes`.
pub fn hypergradient_timed(
    problem: &MetaProblem,
    settings: &AidSettings,
    routes: &JvpRoutes,
    clock: &mut PhaseClock,
) -> Result<Hypergradient> {
    let phi = problem.combiner.params();
    let theta = problem.theta;
    let with_phi: Vec<Tensor> = theta
        .iter()
        .chain(&phi)
        .map(Tensor::shallow_clone)
        .collect();

    let fallback;
    let neumann_stop;
    let (grads, reg, losses) = match settings.mode {
        AidMode::Exact => {
            let off = routes.off_if(routes.exact.borrow().is_some());
            let (grads, reg, stop, losses) = match exact(problem, settings, clock, off) {
                Ok(done) => done,
                Err(Exact::SecondOrder(e)) if off == 0 => {
                    // Once per run: the second attempt runs the step's
                    // forwards again (BatchNorm statistics move twice).
                    let named = routes.turn_off_named_in(&e);
                    let mut retried = exact(problem, settings, clock, named);
                    if matches!(retried, Err(Exact::SecondOrder(_))) && named != ALL_FUSED {
                        // Each error names only the first op in the way:
                        // another family may stand behind it.
                        routes.fused_off.set(ALL_FUSED);
                        retried = exact(problem, settings, clock, ALL_FUSED);
                    }
                    let done = retried.map_err(|again| match again {
                        Exact::SecondOrder(again) => exact_unavailable(anyhow!(
                            "{}; with the fused kernels off: {}",
                            brief(&e),
                            Reasons::same_or(&e, &again)
                        )),
                        Exact::Other(again) => again.context(format!(
                            "the exact meta step retried with the fused kernels off (after: {})",
                            brief(&e)
                        )),
                    })?;
                    *routes.exact.borrow_mut() = Some(brief(&e));
                    done
                }
                Err(failed) => return Err(failed.into_error()),
            };
            fallback = routes
                .exact
                .borrow()
                .iter()
                .map(|why| {
                    format!(
                        "the second derivatives through the model {}: {why}",
                        kernels_off(routes.fused_off.get())
                    )
                })
                .collect();
            neumann_stop = stop;
            (grads, reg, losses)
        }
        AidMode::Factorized => {
            // One batch's graph alive at a time (peak memory near an inner
            // step's): the validation loss's gradient first, then the γ
            // term's through the training batch.
            let separate_val = match problem.val_primary {
                Some(val_primary) => {
                    let val = val_primary()?;
                    clock.mark("val fwd");
                    let g_val = grad(&[&val], theta, false, false)?;
                    clock.mark("val bwd");
                    // Its value only: the graph goes now.
                    let value = val.detach();
                    drop(val);
                    Some((value, g_val))
                }
                None => None,
            };
            let (losses, combined, reg) = train_terms(problem, Derivatives::FirstOrder, true)?;
            clock.mark("train fwd");
            // B_v = B_t: the primary's gradient joins the γ term's backward.
            let objective = match &separate_val {
                Some(_) => &reg * settings.gamma,
                None => losses.get(0) + &reg * settings.gamma,
            };
            let inputs = if settings.gamma_direct {
                &with_phi[..]
            } else {
                theta
            };
            // Where earlier meta steps found that the products take double
            // backward, they start from this forward (its graph kept).
            let products_reuse_forward = settings.iterations > 0
                && settings.jvp == JvpMethod::Auto
                && routes.hvp_route() == Some(HvpRoute::DoubleBackward);
            let mut g = grad(&[&objective], inputs, products_reuse_forward, false)?;
            clock.mark("γ bwd");
            let direct = settings.gamma_direct.then(|| g.split_off(theta.len()));
            let at_losses = losses.detach();
            let (val, g) = match separate_val {
                Some((val, g_val)) => (val, g.iter().zip(&g_val).map(|(a, b)| a + b).collect()),
                None => (at_losses.get(0), g),
            };
            let jvps = Jvps {
                problem,
                method: settings.jvp,
                routes,
                products_forward: RefCell::new(
                    products_reuse_forward.then(|| losses.shallow_clone()),
                ),
                aux_grad: RefCell::new(None),
            };
            drop((losses, combined, objective));
            jvps.check_forward_mode(&g);
            let (p, stop) = neumann(&|v| jvps.hvp(v), g, settings)?;
            jvps.end_products();
            neumann_stop = stop;
            clock.mark("Neumann HVPs");
            let jvp = jvps.loss_jvp(&p, &at_losses)?;
            clock.mark("loss JVP");
            fallback = jvps.fallback();
            let weights = effective_weights_graph(problem.combiner, &at_losses)?;
            let mixed = grad(
                &[&(weights * jvp).sum(at_losses.kind())],
                &phi,
                false,
                false,
            )?;
            clock.mark("MELTR 2nd order");
            let losses = step_losses(&val, &at_losses);
            (subtract(direct, mixed), reg, losses)
        }
    };
    Ok(Hypergradient {
        grads,
        reg: reg.detach(),
        fallback,
        neumann_stop,
        departure: routes.departure.take(),
        losses,
    })
}

/// The validation primary and the training losses in one detached vector,
/// at the training losses' precision.
fn step_losses(val: &Tensor, train: &Tensor) -> Tensor {
    let train = train.detach();
    Tensor::cat(&[val.detach().to_kind(train.kind()).reshape([1]), train], 0)
}

/// `|Σ l − M(l)|` (Σ at MELTR's loss scale) on the training batch, with the
/// graph (from the inner step's forward when there is one and `reuse`);
/// MELTR's part differentiated as the mode does: reverse mode only, the
/// factorized mode's once. The losses, M(l) and the regulariser.
fn train_terms(
    problem: &MetaProblem,
    derivatives: Derivatives,
    reuse: bool,
) -> Result<(Tensor, Tensor, Tensor)> {
    let losses = match problem.train_forward.filter(|_| reuse) {
        Some(losses) => losses.shallow_clone(),
        None => (problem.train_losses)()?,
    };
    let combined = problem.combiner.combine_with(&losses, derivatives);
    let reg = (problem.combiner.reference_sum(&losses) - &combined).abs();
    Ok((losses, combined, reg))
}

/// How an exact meta step failed.
enum Exact {
    /// A second derivative through the model: libtorch lacks one.
    SecondOrder(anyhow::Error),
    Other(anyhow::Error),
}

impl Exact {
    fn into_error(self) -> anyhow::Error {
        match self {
            Exact::SecondOrder(e) => exact_unavailable(e),
            Exact::Other(e) => e,
        }
    }
}

/// What the exact mode's meta step computes: the hypergradient, the
/// regulariser, where the Neumann series stopped, and the step's losses
/// (as [`Hypergradient::losses`]).
type ExactStep = (Vec<Tensor>, Tensor, Option<NeumannStop>, Tensor);

/// The exact mode's meta step; with `off` (fused kernel families), every
/// pass with the fused kernels off and a training forward of its own.
fn exact(
    problem: &MetaProblem,
    settings: &AidSettings,
    clock: &mut PhaseClock,
    off: i64,
) -> std::result::Result<ExactStep, Exact> {
    let _math = crate::nn::math_kernels::MathKernels::enter_if(off).map_err(Exact::Other)?;
    let phi = problem.combiner.params();
    let theta = problem.theta;
    // The validation forward first, as the public code runs them (the
    // order BatchNorm statistics see the batches in).
    let val = match problem.val_primary {
        Some(val_primary) => {
            let val = val_primary().map_err(Exact::Other)?;
            clock.mark("val fwd");
            Some(val)
        }
        None => None,
    };
    let (losses, combined, reg) =
        train_terms(problem, Derivatives::Reverse, off == 0).map_err(Exact::Other)?;
    clock.mark("train fwd");
    let val = val.unwrap_or_else(|| losses.get(0));
    let losses = step_losses(&val, &losses);
    let primary_loss = val + &reg * settings.gamma;
    let grad_aux = grad(&[&combined], theta, true, true).map_err(Exact::SecondOrder)?;
    clock.mark("train bwd (graph)");
    let mut inputs: Vec<Tensor> = theta.iter().map(Tensor::shallow_clone).collect();
    if settings.gamma_direct {
        inputs.extend(phi.iter().map(Tensor::shallow_clone));
    }
    let mut g = grad(&[&primary_loss], &inputs, true, false).map_err(Exact::Other)?;
    clock.mark("val+γ bwd");
    let direct = settings.gamma_direct.then(|| g.split_off(theta.len()));
    // The products' errors are libtorch's second derivatives (marked so
    // through the cell: `neumann` takes an anyhow closure).
    let second_order_failed = std::cell::Cell::new(false);
    let hvp = |v: &[Tensor]| -> Result<Vec<Tensor>> {
        grad(&[&autograd::dot(&grad_aux, v)], theta, true, false)
            .inspect_err(|_| second_order_failed.set(true))
    };
    let (p, stop) = neumann(&hvp, g, settings).map_err(|e| {
        if second_order_failed.get() {
            Exact::SecondOrder(e)
        } else {
            Exact::Other(e)
        }
    })?;
    clock.mark("Neumann HVPs");
    let mixed =
        grad(&[&autograd::dot(&grad_aux, &p)], &phi, false, false).map_err(Exact::SecondOrder)?;
    clock.mark("mixed 2nd bwd");
    Ok((subtract(direct, mixed), reg, stop, losses))
}

/// What the factorized mode's JVPs fell back to under `JvpMethod::Auto`,
/// and whether exact mode needs the fused kernels off:
/// kept by the trainer across meta steps, so that each one does not try
/// (and pay for) what failed before. The model's ops are the same at every
/// step.
#[derive(Debug, Default)]
pub struct JvpRoutes {
    /// Set once the Hessian-vector products fell back: what they take from
    /// then on, and why.
    hvp: RefCell<Option<(HvpRoute, String)>>,
    /// Set once the loss-vector JVP fell back: what it takes from then on,
    /// and why.
    loss_jvp: RefCell<Option<(LossJvpRoute, String)>>,
    /// Set once the exact mode's second derivatives needed the fused
    /// kernels off: why.
    exact: RefCell<Option<String>>,
    /// The fused kernel families the routes that need them off turn off
    /// (those the failures named: [`crate::nn::math_kernels::named_in`]).
    fused_off: std::cell::Cell<i64>,
    /// Whether forward mode was compared with reverse mode on this model
    /// ([`Jvps::check_forward_mode`]), and whether they differed.
    forward_checked: std::cell::Cell<bool>,
    forward_departs: std::cell::Cell<bool>,
    /// Under a route the config chose (`aid.jvp` other than `auto`), which
    /// is kept, what the check found: waiting to be said.
    departure: RefCell<Option<String>>,
}

impl JvpRoutes {
    /// Adds the fused kernel families `error` names to those turned off;
    /// all of them now.
    fn turn_off_named_in(&self, error: &anyhow::Error) -> i64 {
        let named = crate::nn::math_kernels::named_in(&format!("{error:#}"));
        self.fused_off.set(self.fused_off.get() | named);
        self.fused_off.get()
    }

    /// The families to turn off on `route`, a math-kernel one or not.
    fn off_if(&self, math_kernels: bool) -> i64 {
        if math_kernels {
            self.fused_off.get()
        } else {
            0
        }
    }

    fn hvp_route(&self) -> Option<HvpRoute> {
        self.hvp.borrow().as_ref().map(|(route, _)| *route)
    }

    fn loss_jvp_route(&self) -> Option<LossJvpRoute> {
        self.loss_jvp.borrow().as_ref().map(|(route, _)| *route)
    }
}

/// Records that a product takes `route` from now on, adding `why` to the
/// reasons so far.
fn fall_back<R>(slot: &RefCell<Option<(R, String)>>, route: R, why: String) {
    let mut fallback = slot.borrow_mut();
    let why = match fallback.take() {
        Some((_, before)) => format!("{before}; {why}"),
        None => why,
    };
    *fallback = Some((route, why));
}

/// The reasons one product's routes failed for, in turn: a retry that
/// fails with the error before says so instead of repeating it.
#[derive(Default)]
struct Reasons {
    last: Option<String>,
}

impl Reasons {
    /// `again`'s reason, or `the same` when it is `first`'s.
    fn same_or(first: &anyhow::Error, again: &anyhow::Error) -> String {
        let again = brief(again);
        if again == brief(first) {
            "the same".to_string()
        } else {
            again
        }
    }

    /// `failed (why)`, or `failed (the same)`.
    fn failed(&mut self, failed: &str, error: &anyhow::Error) -> String {
        let why = brief(error);
        let shown = if self.last.as_deref() == Some(why.as_str()) {
            "the same"
        } else {
            why.as_str()
        };
        let said = format!("{failed} ({shown})");
        self.last = Some(why);
        said
    }
}

/// A libtorch error in one line: its context chain up to the first line
/// break (TorchScript appends a traceback, libtorch a plea to file an issue).
/// libtorch's usual words for an op without a forward-mode derivative
/// become just that (a walkthrough's transformer logged the whole context
/// chain, the model's path and a RuntimeError at step 3 of every run, for
/// a fallback that is exact).
fn brief(error: &anyhow::Error) -> String {
    let line = crate::nn::autograd::first_line(&format!("{error:#}"));
    match no_forward_derivative(&line) {
        Some(op) => format!("{NO_FORWARD_DERIVATIVE} {op}"),
        None => line,
    }
}

/// How [`brief`] names an op libtorch has no forward derivative for.
const NO_FORWARD_DERIVATIVE: &str = "libtorch has no forward-mode derivative for";

/// The op in libtorch's "Trying to use forward AD with OP that does not
/// support it".
fn no_forward_derivative(libtorch: &str) -> Option<&str> {
    let after = libtorch.split_once("Trying to use forward AD with ")?.1;
    Some(after.split_once(" that does not support it")?.0)
}

/// Why forward over reverse failed, from libtorch's words: a missing
/// forward derivative is the usual cause, but not the only one (a plain
/// MLP with LayerNorm and GELU failed with "ZeroTensors are immutable").
fn forward_over_reverse_failure(libtorch: &str) -> String {
    if let Some(op) = libtorch.strip_prefix(NO_FORWARD_DERIVATIVE) {
        // Forward over reverse runs the model's forward and its backward
        // with tangents: the op's name says which (walkthrough O3's
        // `_euclidean_dist`, a forward op, was placed in the backward).
        let pass = match op.contains("backward") || op.contains("Backward") {
            true => "backward",
            false => "forward",
        };
        return format!(
            "forward over reverse failed: {libtorch} (in this model's {pass}), a limitation of libtorch rather than a fault of the model"
        );
    }
    let lower = libtorch.to_lowercase();
    let cause = if lower.contains("forward ad") || lower.contains("not implemented") {
        "libtorch has no forward derivative for an op in this model's backward"
    } else {
        "libtorch's forward-mode AD cannot run this model's backward"
    };
    format!(
        "forward over reverse failed: {cause}, a limitation of libtorch rather than a fault of the model (libtorch: {libtorch})"
    )
}

/// The factorized mode's JVPs by the configured method.
struct Jvps<'a, 'p> {
    problem: &'a MetaProblem<'p>,
    method: JvpMethod,
    routes: &'a JvpRoutes,
    /// The training losses with their graph, for the double-backward
    /// products to start from instead of a fresh forward.
    products_forward: RefCell<Option<Tensor>>,
    /// This meta step's `∇_θ L_aux` with its second-order graph, once the
    /// products take double backward: one forward and backward serve all J
    /// of them (as in exact mode).
    aux_grad: RefCell<Option<Vec<Tensor>>>,
}

/// How the Hessian-vector products are computed after forward over reverse
/// failed, in the order `Auto` tries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HvpRoute {
    /// Reverse over reverse: exact.
    DoubleBackward,
    /// Reverse over reverse with the fused kernels off (the plain ones
    /// have second derivatives): exact.
    DoubleBackwardMathKernels,
    /// Central differences of gradients.
    Differences,
}

/// How the loss JVP is computed after forward mode failed, in the order
/// `Auto` tries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LossJvpRoute {
    /// Forward mode with the fused kernels off: exact.
    ForwardMathKernels,
    /// One backward pass per loss through one forward: exact with first
    /// derivatives alone (K backward passes).
    Backward,
    /// Central differences of the losses.
    Differences,
}

/// What turning the fused kernel families `off` off means, for the
/// fallback notes.
fn kernels_off(off: i64) -> String {
    format!(
        "with the fused kernels off for it ({}: the plain kernels have the derivatives they lack; the inner steps keep them)",
        crate::nn::math_kernels::describe(off)
    )
}

impl<'a, 'p> Jvps<'a, 'p> {
    /// What was used instead of forward-mode AD, and why: for the
    /// products, then for the loss JVP (each said once when it changes).
    fn fallback(&self) -> Vec<String> {
        let hvp = self
            .routes
            .hvp
            .borrow()
            .clone()
            .map(|(route, why)| match route {
                HvpRoute::DoubleBackward => {
                    format!(
                        "Hessian-vector products by double backward, as aid.mode = \"exact\" does \
                         (so at aid.iterations > 0 the factorized mode saves little on this model): {why}"
                    )
                }
                HvpRoute::DoubleBackwardMathKernels => format!(
                    "Hessian-vector products by double backward {}: {why}",
                    kernels_off(self.routes.fused_off.get())
                ),
                HvpRoute::Differences => {
                    format!(
                        "Hessian-vector products by finite differences of gradients (inexact where the model has kinks, e.g. ReLU, between the two points; aid.iterations = 0 needs none): {why}"
                    )
                }
            });
        let jvp = self
            .routes
            .loss_jvp
            .borrow()
            .clone()
            .map(|(route, why)| match route {
                LossJvpRoute::ForwardMathKernels => format!(
                    "the loss JVP by forward mode {}: {why}",
                    kernels_off(self.routes.fused_off.get())
                ),
                LossJvpRoute::Backward => {
                    format!("the loss JVP by one backward pass per loss (exact, from first derivatives): {why}")
                }
                LossJvpRoute::Differences => {
                    format!("the loss JVP by finite differences: {why}")
                }
            });
        hvp.into_iter().chain(jvp).collect()
    }

    /// `H v` with `H = ∇²_θ L_aux(B_t)`: forward over reverse; under
    /// `Auto`, once that failed, reverse over reverse and, once that
    /// failed too, differences.
    fn hvp(&self, v: &[Tensor]) -> Result<Vec<Tensor>> {
        let problem = self.problem;
        let forward_over_reverse = || {
            // The tangent of the gradient is H v.
            let aux_grad = || -> Result<Vec<Tensor>> {
                let combined = problem.combiner.combine(&(problem.train_losses)()?);
                grad(&[&combined], problem.theta, false, false)
            };
            super::forward_ad::jvp_many(problem.theta, v, &aux_grad)
        };
        match self.method {
            JvpMethod::Forward => forward_over_reverse().map_err(forward_failed),
            JvpMethod::Differences | JvpMethod::OneSided => hvp_by_differences(problem, v),
            JvpMethod::Auto => {
                let slot = &self.routes.hvp;
                // Said when products are first taken (none at J = 0).
                if self.routes.forward_departs.get() && self.routes.hvp_route().is_none() {
                    let why = "forward-mode AD differs from reverse mode on this model (the loss JVP's route says how)";
                    fall_back(slot, HvpRoute::DoubleBackward, why.to_string());
                }
                if self.routes.hvp_route().is_none() {
                    match forward_over_reverse() {
                        Ok(hv) => return Ok(hv),
                        Err(e) => fall_back(
                            slot,
                            HvpRoute::DoubleBackward,
                            forward_over_reverse_failure(&brief(&e)),
                        ),
                    }
                }
                let tries = [
                    (
                        HvpRoute::DoubleBackward,
                        HvpRoute::DoubleBackwardMathKernels,
                        "double backward failed",
                    ),
                    (
                        HvpRoute::DoubleBackwardMathKernels,
                        HvpRoute::Differences,
                        "with the fused kernels off too",
                    ),
                ];
                let mut said = Reasons::default();
                for (route, next, failed) in tries {
                    if self.routes.hvp_route() == Some(route) {
                        let math_kernels = route == HvpRoute::DoubleBackwardMathKernels;
                        match self.hvp_by_double_backward(v, self.routes.off_if(math_kernels)) {
                            Ok(hv) => return Ok(hv),
                            Err(e) => {
                                if next == HvpRoute::DoubleBackwardMathKernels {
                                    self.routes.turn_off_named_in(&e);
                                } else if self.routes.fused_off.get() != ALL_FUSED {
                                    // Each error names only the first op in
                                    // the way: every family off before
                                    // giving up on double backward.
                                    self.aux_grad.take();
                                    self.routes.fused_off.set(ALL_FUSED);
                                    if let Ok(hv) = self.hvp_by_double_backward(v, ALL_FUSED) {
                                        return Ok(hv);
                                    }
                                }
                                // Its gradient's graph is not reused by the next route.
                                self.aux_grad.take();
                                fall_back(slot, next, said.failed(failed, &e));
                            }
                        }
                    }
                }
                hvp_by_differences(problem, v)
            }
        }
    }

    /// `H v = ∇_θ (∇_θ L_aux · v)`, reverse over reverse: MELTR
    /// differentiated twice in reverse mode. The gradient and its graph are
    /// built at the first product and kept until [`Self::end_products`];
    /// with fused kernel families `off`, from a forward of their own with
    /// those off.
    fn hvp_by_double_backward(&self, v: &[Tensor], off: i64) -> Result<Vec<Tensor>> {
        let problem = self.problem;
        let _math = crate::nn::math_kernels::MathKernels::enter_if(off)?;
        let mut aux_grad = self.aux_grad.borrow_mut();
        let aux_grad = match aux_grad.as_mut() {
            Some(aux_grad) => aux_grad,
            None => {
                let reused = self.products_forward.take().filter(|_| off == 0);
                let losses = match reused {
                    Some(losses) => losses,
                    None => (problem.train_losses)()?,
                };
                let combined = problem.combiner.combine_with(&losses, Derivatives::Reverse);
                aux_grad.insert(grad(&[&combined], problem.theta, true, true)?)
            }
        };
        grad(&[&autograd::dot(aux_grad, v)], problem.theta, true, false)
    }

    /// Frees the products' graphs once the Neumann series is summed.
    fn end_products(&self) {
        self.products_forward.take();
        self.aux_grad.take();
    }

    /// Forward mode carries tangents through the model's `no_grad` code
    /// (PyTorch's forward AD ignores the grad mode), where the public
    /// algorithm's reverse mode sees constants: an EMA teacher updated in
    /// the forward (walkthrough N3: hypergradients 1.5e-3 off at the first
    /// meta step, 2e-2 later), soft targets taken under `no_grad`. Once per
    /// run the loss JVP along `v` is taken both ways; where they differ,
    /// under `auto` the products take reverse mode from then on (one
    /// backward pass per loss, and double backward). A route the config
    /// chose is kept and the departure said: finite differences evaluate
    /// the model at shifted θ, its `no_grad` code included, and depart as
    /// forward mode does. A failure either way is left to the routes.
    fn check_forward_mode(&self, v: &[Tensor]) {
        if self.routes.forward_checked.replace(true) || self.routes.loss_jvp_route().is_some() {
            return;
        }
        let (Ok(forward), Ok(backward)) = (
            self.forward_jvp(v, false),
            loss_jvp_by_backward(self.problem, v),
        ) else {
            return;
        };
        let Some(departure) = forward_mode_departure(&forward, &backward) else {
            return;
        };
        if self.method != JvpMethod::Auto {
            let how = match self.method {
                JvpMethod::Forward => "forward-mode AD",
                _ => "finite differences",
            };
            *self.routes.departure.borrow_mut() = Some(format!(
                "aid.jvp = \"{}\" departs from the public algorithm on this model: forward-mode AD differs \
                 from reverse mode by {departure:.1e} relative at the first meta step, so the model's forward \
                 computes from θ under no_grad (an EMA teacher updated in the forward, targets taken under \
                 no_grad), which {how} differentiates and the public algorithm's reverse mode does not. \
                 aid.jvp = \"auto\" takes reverse mode on such a model",
                self.method
            ));
            return;
        }
        let why = format!(
            "forward-mode AD differs from reverse mode on this model ({departure:.1e} relative, at the first \
             meta step): its forward computes from θ under no_grad (an EMA teacher updated in the forward, \
             targets taken under no_grad), which forward mode differentiates and the public algorithm's \
             reverse mode does not"
        );
        self.routes.forward_departs.set(true);
        fall_back(&self.routes.loss_jvp, LossJvpRoute::Backward, why);
    }

    /// The loss JVP along `p` by forward mode, the fused kernels off when
    /// `math_kernels`.
    fn forward_jvp(&self, p: &[Tensor], math_kernels: bool) -> Result<Tensor> {
        let problem = self.problem;
        let off = self.routes.off_if(math_kernels);
        let _math = crate::nn::math_kernels::MathKernels::enter_if(off)?;
        let losses = || tch::no_grad(|| (problem.train_losses)());
        Ok(super::forward_ad::jvp(problem.theta, p, &losses)?.1)
    }

    /// `∇_θ l_k · p` for every k, `at` being `l(θ)`: forward mode; under
    /// `Auto`, once that failed, forward mode with the fused kernels off,
    /// then one backward per loss, then differences.
    fn loss_jvp(&self, p: &[Tensor], at: &Tensor) -> Result<Tensor> {
        let problem = self.problem;
        let forward = |math_kernels: bool| self.forward_jvp(p, math_kernels);
        if self.method == JvpMethod::Forward {
            return forward(false).map_err(forward_failed);
        }
        if self.method == JvpMethod::Differences {
            return loss_jvp_by_differences(problem, p);
        }
        if self.method == JvpMethod::OneSided {
            return loss_jvp_one_sided(problem, p, at);
        }
        // Each route in turn from the one earlier meta steps found.
        let tries = [
            (
                None,
                LossJvpRoute::ForwardMathKernels,
                "forward mode failed",
            ),
            (
                Some(LossJvpRoute::ForwardMathKernels),
                LossJvpRoute::Backward,
                "with the fused kernels off too",
            ),
            (
                Some(LossJvpRoute::Backward),
                LossJvpRoute::Differences,
                "one backward pass per loss failed",
            ),
        ];
        let mut said = Reasons::default();
        for (route, next, failed) in tries {
            if self.routes.loss_jvp_route() == route {
                let jvp = match route {
                    Some(LossJvpRoute::Backward) => loss_jvp_by_backward(problem, p),
                    _ => forward(route.is_some()),
                };
                match jvp {
                    Ok(jvp) => return Ok(jvp),
                    Err(e) => {
                        if next == LossJvpRoute::ForwardMathKernels {
                            self.routes.turn_off_named_in(&e);
                        }
                        fall_back(&self.routes.loss_jvp, next, said.failed(failed, &e))
                    }
                }
            }
        }
        loss_jvp_by_differences(problem, p)
    }
}

fn forward_failed(error: anyhow::Error) -> anyhow::Error {
    error.context(
        "forward-mode AD failed (aid.jvp = \"forward\"); \"auto\" falls back to double backward, the fused kernels off, one backward pass per loss, or finite differences",
    )
}

/// `direct − mixed`, or `−mixed` without a direct term.
fn subtract(direct: Option<Vec<Tensor>>, mixed: Vec<Tensor>) -> Vec<Tensor> {
    match direct {
        Some(direct) => direct.iter().zip(&mixed).map(|(d, m)| d - m).collect(),
        None => mixed.iter().map(|m| -m).collect(),
    }
}

/// `p = Σ_{j=0..J} v_j`, `v_{j+1} = v_j − α·H v_j`, `v_0 = g`. When α·H has
/// eigenvalues outside (0, 2) the terms grow geometrically; at the first
/// term with `‖v_j‖ > max_growth·‖v_0‖` (one host read per iteration, only
/// when J > 0) the series is dropped for `v_0` alone, J = 0's `p`, and the
/// stop says where. Not the partial sum before `v_j`: along an
/// eigendirection with α·λ > 2 the terms alternate in sign as they grow,
/// and an odd number of iterations points `p` against `H⁻¹g` there
/// (`1 + (1 − αλ) < 0`). Summed so, walkthrough O2's LoRA classifier at
/// J = 2 ended 2 of 6 seeds at 8.9% and 20.1% (the public series, not cut,
/// and `v_0` alone: none).
pub fn neumann(
    hvp: &dyn Fn(&[Tensor]) -> Result<Vec<Tensor>>,
    g: Vec<Tensor>,
    settings: &AidSettings,
) -> Result<(Vec<Tensor>, Option<NeumannStop>)> {
    let mut v = autograd::detach_all(&g);
    let mut p = autograd::detach_all(&g);
    if settings.iterations == 0 {
        return Ok((p, None));
    }
    let first = autograd::norm(&v).double_value(&[]);
    for j in 1..=settings.iterations {
        let hv = hvp(&v)?;
        let next = autograd::axpy(&v, -settings.alpha, &hv);
        let growth = autograd::norm(&next).double_value(&[]) / first;
        // NaN (an overflowing series) counts as diverged.
        let diverged = growth.is_nan() || growth > settings.max_growth;
        if first > 0.0 && diverged {
            // Two host reads more, only where the series stops: what the
            // warning advises from.
            let squared = autograd::dot(&v, &v).double_value(&[]);
            let stop = NeumannStop {
                diverged_at: j,
                growth,
                curvature: autograd::dot(&v, &hv).double_value(&[]) / squared,
                stretch: autograd::norm(&hv).double_value(&[]) / squared.sqrt(),
            };
            return Ok((autograd::detach_all(&g), Some(stop)));
        }
        v = next;
        p = autograd::axpy(&p, 1.0, &v);
    }
    Ok((p, None))
}

fn exact_unavailable(error: anyhow::Error) -> anyhow::Error {
    anyhow!(
        "aid.mode = \"exact\" needs a second derivative through the model, and libtorch has none for one of its ops: {error}. \
         Set aid.mode = \"factorized\", which needs only first derivatives of the model"
    )
}

/// How a finite difference is taken.
#[derive(Clone, Copy)]
enum Difference {
    /// `(f(θ+εv) − f(θ−εv)) / 2ε`: error O(ε²).
    Central,
    /// `(f(θ+εv) − f(θ)) / ε`: error O(ε).
    OneSided,
}

/// Finite-difference step for a direction `v`: the displacement `ε·v` has
/// norm `h·(1 + rms(θ))`, with `h` the step that balances truncation and
/// rounding error for θ's dtype: `∛(machine epsilon)` central, `√` one-sided.
fn step_size(theta: &[Tensor], v: &[Tensor], difference: Difference) -> Option<f64> {
    let kind = theta.first()?.kind();
    let epsilon = if kind == Kind::Double {
        f64::EPSILON
    } else {
        f32::EPSILON as f64
    };
    let h = match difference {
        Difference::Central => epsilon.cbrt(),
        Difference::OneSided => epsilon.sqrt(),
    };
    let count: i64 = theta.iter().map(Tensor::numel).map(|n| n as i64).sum();
    let theta_rms = autograd::norm(theta).double_value(&[]) / (count.max(1) as f64).sqrt();
    let v_norm = autograd::norm(v).double_value(&[]);
    (v_norm > 0.0 && v_norm.is_finite()).then(|| h * (1.0 + theta_rms) / v_norm)
}

/// Evaluates `f` at `θ + s·v` for each s of `shifts` and restores θ
/// exactly after each (from one copy: `θ + s·v − s·v` need not round back
/// to θ).
fn at_shifted<T>(
    theta: &[Tensor],
    v: &[Tensor],
    shifts: &[f64],
    f: &dyn Fn() -> Result<T>,
) -> Result<Vec<T>> {
    let saved = autograd::snapshot(theta);
    let values: Vec<Result<T>> = shifts
        .iter()
        .map(|&s| {
            autograd::shift(theta, s, v);
            let value = f();
            autograd::assign(theta, &saved);
            value
        })
        .collect();
    values.into_iter().collect()
}

/// [`at_shifted`] at `θ ± εv`.
fn at_plus_minus<T>(
    theta: &[Tensor],
    v: &[Tensor],
    eps: f64,
    f: &dyn Fn() -> Result<T>,
) -> Result<(T, T)> {
    let mut values = at_shifted(theta, v, &[eps, -eps], f)?;
    let minus = values.pop().expect("two shifts");
    let plus = values.pop().expect("two shifts");
    Ok((plus, minus))
}

/// `H v ≈ (∇_θ L_aux(θ+εv) − ∇_θ L_aux(θ−εv)) / 2ε`.
fn hvp_by_differences(problem: &MetaProblem, v: &[Tensor]) -> Result<Vec<Tensor>> {
    let Some(eps) = step_size(problem.theta, v, Difference::Central) else {
        return Ok(v.iter().map(Tensor::zeros_like).collect());
    };
    let aux_grad = || -> Result<Vec<Tensor>> {
        let combined = problem
            .combiner
            .combine_with(&(problem.train_losses)()?, Derivatives::FirstOrder);
        grad(&[&combined], problem.theta, false, false)
    };
    let (plus, minus) = at_plus_minus(problem.theta, v, eps, &aux_grad)?;
    Ok(plus
        .iter()
        .zip(&minus)
        .map(|(a, b)| (a - b) / (2.0 * eps))
        .collect())
}

/// `∇_θ l_k · p` for every k by one backward pass per loss through one
/// forward: exact wherever the model has first derivatives (what forward
/// mode lacks on some ops on every path, e.g. libtorch's CUDA LSTM cells
/// without cuDNN, `cdist`), at K backward passes.
fn loss_jvp_by_backward(problem: &MetaProblem, p: &[Tensor]) -> Result<Tensor> {
    let losses = (problem.train_losses)()?;
    let k = losses.size1()?;
    let jvps = (0..k)
        .map(|i| -> Result<Tensor> {
            let gradient = grad(&[&losses.get(i)], problem.theta, i + 1 < k, false)?;
            Ok(autograd::dot(&gradient, p).detach())
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::stack(&jvps, 0).to_kind(losses.kind()))
}

/// How far the loss JVP by forward mode departs from reverse mode's, the
/// largest of the losses' relative differences, when beyond rounding (1e-7
/// in f64, 1e-3 in f32; a loss whose JVP is under 1e-3 of the largest
/// counts relative to that).
fn forward_mode_departure(forward: &Tensor, backward: &Tensor) -> Option<f64> {
    let tolerance = match forward.kind() {
        tch::Kind::Double => 1e-7,
        _ => 1e-3,
    };
    let values = |t: &Tensor| Vec::<f64>::try_from(t.to_kind(tch::Kind::Double)).ok();
    let (forward, backward) = (values(forward)?, values(backward)?);
    let scale = forward
        .iter()
        .chain(&backward)
        .map(|v| v.abs())
        .fold(0.0, f64::max);
    let departure = forward
        .iter()
        .zip(&backward)
        .map(|(f, b)| (f - b).abs() / f.abs().max(b.abs()).max(1e-3 * scale))
        .fold(0.0, f64::max);
    (scale > 0.0 && departure > tolerance).then_some(departure)
}

/// `∇_θ l_k · p` for every k, `≈ (l(θ+εp) − l(θ−εp)) / 2ε`.
fn loss_jvp_by_differences(problem: &MetaProblem, p: &[Tensor]) -> Result<Tensor> {
    let eval = || tch::no_grad(|| (problem.train_losses)());
    let Some(eps) = step_size(problem.theta, p, Difference::Central) else {
        return Ok(eval()?.zeros_like());
    };
    let (plus, minus) = at_plus_minus(problem.theta, p, eps, &eval)?;
    Ok((plus - minus) / (2.0 * eps))
}

/// `∇_θ l_k · p` for every k, `≈ (l(θ+εp) − l(θ)) / ε`, with `at` = `l(θ)`
/// from the training forward (the same batch and seed; the shifted forward
/// starts from the buffers that forward started from: `train_losses` puts
/// them back, so a model whose output reads a buffer its forward updates
/// is evaluated alike at both points; see `engine::trainer::meta_buffers`).
fn loss_jvp_one_sided(problem: &MetaProblem, p: &[Tensor], at: &Tensor) -> Result<Tensor> {
    let Some(eps) = step_size(problem.theta, p, Difference::OneSided) else {
        return Ok(at.zeros_like());
    };
    let eval = || tch::no_grad(|| (problem.train_losses)());
    let plus = at_shifted(problem.theta, p, &[eps], &eval)?.remove(0);
    Ok((plus - at) / eps)
}

#[cfg(test)]
mod lstm_tests;

#[cfg(test)]
mod tests {
    #[test]
    fn a_forward_over_reverse_failure_is_explained_by_what_libtorch_said() {
        let missing = super::forward_over_reverse_failure(
            "Trying to use forward AD with _foo that does not support it",
        );
        assert!(
            missing.contains("no forward derivative for an op"),
            "{missing}"
        );
        let error = anyhow::anyhow!(
            "Trying to use forward AD with _scaled_dot_product_flash_attention_for_cpu that does \
             not support it because it has not been implemented yet."
        )
        .context("workload.model /tmp/m.pt: forward failed: RuntimeError");
        let brief = super::brief(&error);
        assert_eq!(
            brief,
            "libtorch has no forward-mode derivative for _scaled_dot_product_flash_attention_for_cpu"
        );
        assert_eq!(
            super::forward_over_reverse_failure(&brief),
            "forward over reverse failed: libtorch has no forward-mode derivative for \
             _scaled_dot_product_flash_attention_for_cpu (in this model's forward), a limitation \
             of libtorch rather than a fault of the model"
        );
        let in_backward = super::forward_over_reverse_failure(&format!(
            "{} nll_loss_backward",
            super::NO_FORWARD_DERIVATIVE
        ));
        assert!(
            in_backward.contains("nll_loss_backward (in this model's backward)"),
            "{in_backward}"
        );
        let other = super::forward_over_reverse_failure("ZeroTensors are immutable");
        assert!(
            other.contains("forward-mode AD cannot run this model's backward")
                && other.ends_with("(libtorch: ZeroTensors are immutable)"),
            "{other}"
        );
    }
}
