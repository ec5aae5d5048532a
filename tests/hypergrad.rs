//! Ground truth for the AID hypergradient: closed forms on a quadratic inner
//! problem, finite differences of the mixed term, and agreement of the
//! `exact` and `factorized` modes on small nonlinear models.

mod common;

use common::relative_error;

use anyhow::Result;
use meltr_tui::meltr::combiner::{Combiner, Training};
use meltr_tui::meltr::hypergrad::{
    hypergradient, hypergradient_timed, neumann, AidMode, AidSettings, Hypergradient, JvpMethod,
    JvpRoutes, MetaProblem,
};
use meltr_tui::meltr::net::{MeltrNet, MeltrSizes};
use meltr_tui::nn::autograd::{self, grad};
use tch::{nn, Device, Kind, Tensor};

const F64: (Kind, Device) = (Kind::Double, Device::Cpu);

/// M_φ(l) = Σ φ_k l_k with learnable φ: the mixed derivative has a closed form.
struct LinearWeights {
    phi: Tensor,
    vs: nn::VarStore,
}

impl LinearWeights {
    fn new(phi: &[f64]) -> Self {
        let vs = nn::VarStore::new(Device::Cpu);
        let phi = Tensor::from_slice(phi).set_requires_grad(true);
        Self { phi, vs }
    }
}

impl Combiner for LinearWeights {
    fn kind(&self) -> &'static str {
        "test-linear"
    }
    fn combine(&self, losses: &Tensor) -> Tensor {
        (losses * &self.phi).sum(Kind::Double)
    }
    fn training(&self) -> Training {
        Training::Meta
    }
    fn params(&self) -> Vec<Tensor> {
        vec![self.phi.shallow_clone()]
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
}

struct TinyMeltr {
    net: MeltrNet,
    vs: nn::VarStore,
}

impl TinyMeltr {
    fn new(losses: i64, kind: Kind) -> Self {
        tch::manual_seed(7);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = MeltrNet::new(
            &vs.root(),
            MeltrSizes {
                losses,
                d_model: 8,
                d_hidden: 8,
                d_ff: 16,
                heads: 2,
            },
        );
        vs.set_kind(kind);
        Self { net, vs }
    }
}

impl Combiner for TinyMeltr {
    fn kind(&self) -> &'static str {
        "meltr"
    }
    fn combine(&self, losses: &Tensor) -> Tensor {
        self.net.forward(losses)
    }
    fn training(&self) -> Training {
        Training::Meta
    }
    fn params(&self) -> Vec<Tensor> {
        meltr_tui::nn::vars::sorted_variables(&self.vs)
    }
    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }
}

fn settings(mode: AidMode, iterations: u32, alpha: f64, gamma: f64) -> AidSettings {
    AidSettings {
        iterations,
        alpha,
        mode,
        gamma,
        gamma_direct: false,
        jvp: JvpMethod::Differences,
        max_growth: 10.0,
    }
}

fn flat(ts: &[Tensor]) -> Vec<f64> {
    ts.iter()
        .flat_map(|t| Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap())
        .collect()
}

/// Symmetric positive definite n×n with eigenvalues spread in [lo, hi].
fn spd(n: i64, lo: f64, hi: f64, seed: i64) -> Tensor {
    tch::manual_seed(seed);
    let (q, _) = Tensor::linalg_qr(&Tensor::randn([n, n], F64), "reduced");
    let eig = Tensor::linspace(lo, hi, n, F64);
    q.matmul(&eig.diag(0)).matmul(&q.transpose(0, 1))
}

/// Quadratic inner problem: l_k(θ) = ½(θ−c_k)ᵀA_k(θ−c_k), M = Σ φ_k l_k,
/// l_val(θ) = ½|θ − t|². The inner minimiser θ*(φ) = H⁻¹ Σ φ_k A_k c_k with
/// H = Σ φ_k A_k, so the implicit hypergradient has a closed form.
struct Quadratic {
    a: Vec<Tensor>,
    c: Vec<Tensor>,
    target: Tensor,
    phi: Vec<f64>,
}

impl Quadratic {
    fn new() -> Self {
        let n = 5;
        // Each A_k's spectrum in [0.4, 1.8] and Σφ = 1, so H's lies in (0, 2).
        let a = (0..3).map(|k| spd(n, 0.4, 1.8, 10 + k)).collect();
        tch::manual_seed(3);
        let c = (0..3).map(|_| Tensor::randn([n], F64)).collect();
        let target = Tensor::randn([n], F64);
        Self {
            a,
            c,
            target,
            phi: vec![0.5, 0.3, 0.2],
        }
    }

    fn hessian(&self) -> Tensor {
        self.a
            .iter()
            .zip(&self.phi)
            .map(|(a, p)| a * *p)
            .reduce(|x, y| x + y)
            .unwrap()
    }

    fn minimiser(&self) -> Tensor {
        let rhs = self
            .a
            .iter()
            .zip(&self.c)
            .zip(&self.phi)
            .map(|((a, c), p)| a.mv(c) * *p)
            .reduce(|x, y| x + y)
            .unwrap();
        Tensor::linalg_solve(&self.hessian(), &rhs, true)
    }

    fn losses(&self, theta: &Tensor) -> Tensor {
        let ls: Vec<Tensor> = self
            .a
            .iter()
            .zip(&self.c)
            .map(|(a, c)| {
                let d = theta - c;
                d.dot(&a.mv(&d)) * 0.5
            })
            .collect();
        Tensor::stack(&ls, 0)
    }

    fn val(&self, theta: &Tensor) -> Tensor {
        let d = theta - &self.target;
        d.dot(&d) * 0.5
    }

    /// d l_val(θ*(φ)) / dφ_k = −∇l_valᵀ H⁻¹ A_k (θ* − c_k).
    fn implicit_hypergradient(&self, theta: &Tensor) -> Vec<f64> {
        let h = self.hessian();
        let g = theta - &self.target;
        self.a
            .iter()
            .zip(&self.c)
            .map(|(a, c)| {
                let dtheta = -Tensor::linalg_solve(&h, &a.mv(&(theta - c)), true);
                g.dot(&dtheta).double_value(&[])
            })
            .collect()
    }

    fn aid(
        &self,
        theta: &Tensor,
        mode: AidMode,
        iterations: u32,
        alpha: f64,
        gamma: f64,
        gamma_direct: bool,
    ) -> Vec<f64> {
        let combiner = LinearWeights::new(&self.phi);
        let th = theta.shallow_clone();
        let train = || -> Result<Tensor> { Ok(self.losses(&th)) };
        let val = || -> Result<Tensor> { Ok(self.val(&th)) };
        let problem = MetaProblem {
            theta: std::slice::from_ref(theta),
            combiner: &combiner,
            train_losses: &train,
            val_primary: Some(&val),
            train_forward: None,
        };
        flat(
            &hypergradient(
                &problem,
                &AidSettings {
                    gamma_direct,
                    ..settings(mode, iterations, alpha, gamma)
                },
            )
            .unwrap()
            .grads,
        )
    }
}

#[test]
fn aid_converges_to_the_closed_form_implicit_gradient() {
    // The models draw from libtorch's process-wide RNG.
    let _serial = common::serial();
    let q = Quadratic::new();
    let theta = q.minimiser().set_requires_grad(true);
    let truth = q.implicit_hypergradient(&theta);
    for mode in [AidMode::Exact, AidMode::Factorized] {
        // Partial Neumann sums need not improve at every single J (J = 1
        // overshoots here), so the check uses a geometric ladder of J.
        let errors: Vec<f64> = [0u32, 3, 10, 30, 80]
            .iter()
            .map(|&j| relative_error(&q.aid(&theta, mode, j, 1.0, 0.0, false), &truth))
            .collect();
        // Once the series has converged the error sits at f64 rounding
        // (about 2e-11 here, varying with the CPU's summation order), where
        // "falls" is noise.
        const CONVERGED: f64 = 1e-9;
        for pair in errors.windows(2) {
            assert!(
                pair[1] < pair[0] || pair[0].max(pair[1]) < CONVERGED,
                "{mode:?}: error must fall with J until it reaches rounding: {errors:?}"
            );
        }
        assert!(
            errors[4] < 1e-4,
            "{mode:?}: error at J = 80 is {:e}",
            errors[4]
        );
    }
}

#[test]
fn neumann_series_times_alpha_approximates_the_inverse_hessian() {
    // The models draw from libtorch's process-wide RNG.
    let _serial = common::serial();
    let h = spd(6, 0.5, 3.0, 1);
    let g = Tensor::randn([6], F64);
    let exact = flat(&[Tensor::linalg_solve(&h, &g, true)]);
    let hvp = |v: &[Tensor]| -> Result<Vec<Tensor>> { Ok(vec![h.mv(&v[0])]) };
    let alpha = 0.3; // α·λ_max < 1
    let (p, stop) = neumann(
        &hvp,
        vec![g.shallow_clone()],
        &settings(AidMode::Exact, 200, alpha, 0.0),
    )
    .unwrap();
    assert_eq!(stop, None);
    let approx = flat(&[&p[0] * alpha]);
    assert!(
        relative_error(&approx, &exact) < 1e-8,
        "{:e}",
        relative_error(&approx, &exact)
    );
}

#[test]
fn a_diverging_neumann_series_is_dropped_for_its_first_term() {
    let _serial = common::serial();
    // α·λ = 3 on one eigenvector: (1 − α·λ)^j = (−2)^j, so ‖v_j‖/‖v_0‖
    // passes 10 at j = 4 for a start along that eigenvector.
    let h = Tensor::from_slice(&[3.0f64, 0.0, 0.0, 0.5]).reshape([2, 2]);
    let g = Tensor::from_slice(&[1.0f64, 0.0]);
    let hvp = |v: &[Tensor]| -> Result<Vec<Tensor>> { Ok(vec![h.mv(&v[0])]) };
    let (p, stop) = neumann(
        &hvp,
        vec![g.shallow_clone()],
        &settings(AidMode::Exact, 8, 1.0, 0.0),
    )
    .unwrap();
    let stop = stop.expect("the series diverges");
    assert_eq!(stop.diverged_at, 4, "{stop:?}");
    assert!((stop.growth - 16.0).abs() < 1e-12, "{stop:?}");
    // Along the eigenvector the term that grew lies on: curvature and
    // stretch 3, and α ≤ 2/3 keeps the term from growing.
    assert!((stop.curvature - 3.0).abs() < 1e-12, "{stop:?}");
    assert!((stop.stretch - 3.0).abs() < 1e-12, "{stop:?}");
    assert!((stop.alpha_kept().unwrap() - 2.0 / 3.0).abs() < 1e-12);
    // H⁻¹g/α = 1/3 along it. The partial sums before v_4 alternate in
    // sign as they grow (1, −1, 3, −5): p is v_0 alone, on H⁻¹g's side.
    assert_eq!(p[0].double_value(&[0]), 1.0);
    assert_eq!(p[0].double_value(&[1]), 0.0);
    // A bound it never reaches sums every term.
    let (_, stop) = neumann(
        &hvp,
        vec![g],
        &AidSettings {
            max_growth: 1e6,
            ..settings(AidMode::Exact, 8, 1.0, 0.0)
        },
    )
    .unwrap();
    assert_eq!(stop, None);
}

/// At the default `aid.max_growth`, a series that grows at all is
/// dropped: at J = 1 with α·λ = 4.8 (walkthroughs Q1 and Q3: a growth of
/// 3.8 per term, under the former bound of 10) v_0 + v_1 = −2.8·v_0 points
/// against H⁻¹g; along a direction inside (0, 2) the series is kept.
#[test]
fn at_the_default_bound_a_series_that_grows_at_all_is_dropped() {
    let _serial = common::serial();
    let default = meltr_tui::config::AidConfig::default().max_growth;
    let at = |lambda: f64| {
        let h = Tensor::from_slice(&[lambda]).reshape([1, 1]);
        let hvp = |v: &[Tensor]| -> Result<Vec<Tensor>> { Ok(vec![h.mv(&v[0])]) };
        let (p, stop) = neumann(
            &hvp,
            vec![Tensor::from_slice(&[1.0f64])],
            &AidSettings {
                max_growth: default,
                ..settings(AidMode::Exact, 1, 0.1, 0.0)
            },
        )
        .unwrap();
        (p[0].double_value(&[0]), stop)
    };
    let (p, stop) = at(48.0);
    assert!(stop.is_some(), "a growth of 3.8 is said");
    assert_eq!(p, 1.0, "v_0 alone, on H⁻¹g's side");
    // α·λ = 0.5: v_1 = 0.5·v_0, summed.
    let (p, stop) = at(5.0);
    assert_eq!(stop, None);
    assert!((p - 1.5).abs() < 1e-12, "{p}");
}

#[test]
fn j0_is_minus_the_mixed_derivative_times_the_primary_gradient() {
    // The models draw from libtorch's process-wide RNG.
    let _serial = common::serial();
    // Independently: ∂²L_aux/∂φ_k∂θ = A_k(θ − c_k); with γ > 0 the primary
    // gradient gains γ·s·Σ(1 − φ_k)∇l_k and the direct term is −γ·s·l_k,
    // s = sign(Σ l − M). The public code (default) drops the direct term.
    let q = Quadratic::new();
    tch::manual_seed(5);
    let theta = (q.minimiser() + Tensor::randn([5], F64) * 0.3).set_requires_grad(true);
    let gamma = 0.25;
    let losses = flat(&[q.losses(&theta).detach()]);
    let combined: f64 = losses.iter().zip(&q.phi).map(|(l, p)| l * p).sum();
    let s = (losses.iter().sum::<f64>() - combined).signum();
    let grads_l: Vec<Tensor> =
        q.a.iter()
            .zip(&q.c)
            .map(|(a, c)| a.mv(&(theta.detach() - c)))
            .collect();
    let mut g = theta.detach() - &q.target;
    for (gl, p) in grads_l.iter().zip(&q.phi) {
        g += gl * (gamma * s * (1.0 - p));
    }
    for gamma_direct in [false, true] {
        let direct = if gamma_direct { gamma * s } else { 0.0 };
        let expected: Vec<f64> = grads_l
            .iter()
            .zip(&losses)
            .map(|(gl, l)| -direct * l - gl.dot(&g).double_value(&[]))
            .collect();
        for mode in [AidMode::Exact, AidMode::Factorized] {
            let got = q.aid(&theta, mode, 0, 0.5, gamma, gamma_direct);
            assert!(
                relative_error(&got, &expected) < 1e-7,
                "{mode:?}, gamma_direct {gamma_direct}: {got:?} vs {expected:?}"
            );
        }
    }
}

/// Which ops [`SmallModel`]'s forward takes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Ops {
    /// Elementary ops: every derivative, forward over reverse included.
    Elementary,
    /// A fused attention kernel: neither forward derivatives nor a second
    /// derivative (the math path, with the fused kernels off, has both).
    FusedAttention,
    /// A pairwise distance (`cdist`): no second derivative on any path.
    Distance,
    /// The third loss a cross entropy (log-softmax and `nll_loss`): a second
    /// derivative, but `nll_loss`'s backward has no forward derivative.
    CrossEntropy,
}

/// A small nonlinear model: θ = (W1 [h×d], W2 [3×h]) on fixed data, three
/// losses (regression, a second target, an L1-ish smooth one or a cross
/// entropy).
struct SmallModel {
    x: Tensor,
    y: Tensor,
    theta: Vec<Tensor>,
    ops: Ops,
}

impl SmallModel {
    fn new(kind: Kind, ops: Ops) -> Self {
        tch::manual_seed(11);
        let (d, h, n) = (4, 8, 6);
        let opts = (kind, Device::Cpu);
        let x = Tensor::randn([n, d], opts);
        let y = Tensor::randn([n, 3], opts);
        let theta = vec![
            (Tensor::randn([h, d], opts) * 0.5).set_requires_grad(true),
            (Tensor::randn([3, h], opts) * 0.5).set_requires_grad(true),
        ];
        Self { x, y, theta, ops }
    }

    fn losses(&self) -> Tensor {
        self.try_losses().unwrap()
    }

    /// The losses, or libtorch's error (forward-mode AD through the fused
    /// attention kernel fails).
    fn try_losses(&self) -> Result<Tensor> {
        let mut hidden = self.x.matmul(&self.theta[0].transpose(0, 1)).tanh(); // [n, h]
        if self.ops == Ops::FusedAttention {
            // One self-attention over the n samples with libtorch's fused kernel.
            let q = hidden.unsqueeze(0).unsqueeze(0);
            hidden = Tensor::f_scaled_dot_product_attention(
                &q,
                &q,
                &q,
                None::<Tensor>,
                0.0,
                false,
                None,
                false,
            )?
            .squeeze_dim(0)
            .squeeze_dim(0);
        }
        if self.ops == Ops::Distance {
            let apart = Tensor::f_cdist(&hidden, &(&hidden + 1.0), 2.0, None)?;
            hidden = &hidden * apart.mean_dim(1, true, apart.kind());
        }
        let out = hidden.matmul(&self.theta[1].transpose(0, 1)); // [n, 3]
        let err = &out - &self.y;
        let k = err.kind();
        let third = match self.ops {
            Ops::CrossEntropy => out.cross_entropy_for_logits(&self.y.argmax(1, false)),
            _ => (err.select(1, 2).square() + 1.0).sqrt().mean(k),
        };
        Ok(Tensor::stack(
            &[
                err.select(1, 0).square().mean(k),
                err.select(1, 1).square().mean(k),
                third,
            ],
            0,
        ))
    }

    fn hypergrad(&self, combiner: &dyn Combiner, mode: AidMode, j: u32) -> Result<Vec<f64>> {
        Ok(self.hypergrad_from(combiner, mode, j, None)?.0)
    }

    /// The hypergradient under `settings` (and what it fell back to), with
    /// the JVP routes of earlier meta steps and the training losses'
    /// forward if given (as the trainer passes the inner step's); also how
    /// many training forwards it ran itself.
    fn hypergradient(
        &self,
        combiner: &dyn Combiner,
        settings: &AidSettings,
        routes: &JvpRoutes,
        train_forward: Option<&Tensor>,
    ) -> Result<(Hypergradient, usize)> {
        let forwards = std::cell::Cell::new(0);
        let train = || -> Result<Tensor> {
            forwards.set(forwards.get() + 1);
            self.try_losses()
        };
        let val = || -> Result<Tensor> { Ok(self.try_losses()?.get(0) * 1.1) };
        let problem = MetaProblem {
            theta: &self.theta,
            combiner,
            train_losses: &train,
            val_primary: Some(&val),
            train_forward,
        };
        let clock = &mut meltr_tui::meltr::phases::PhaseClock::disabled();
        let h = hypergradient_timed(&problem, settings, routes, clock)?;
        Ok((h, forwards.get()))
    }

    /// As `hypergrad`, with the training losses' forward if given; also
    /// returns how many training forwards the hypergradient ran itself.
    fn hypergrad_from(
        &self,
        combiner: &dyn Combiner,
        mode: AidMode,
        j: u32,
        train_forward: Option<&Tensor>,
    ) -> Result<(Vec<f64>, usize)> {
        let settings = settings(mode, j, 0.1, 0.1);
        let (h, forwards) =
            self.hypergradient(combiner, &settings, &JvpRoutes::default(), train_forward)?;
        Ok((flat(&h.grads), forwards))
    }
}

#[test]
fn factorized_agrees_with_exact_in_f64_and_f32() {
    // The models draw from libtorch's process-wide RNG.
    let _serial = common::serial();
    for (kind, tolerance) in [(Kind::Double, 1e-6), (Kind::Float, 1e-2)] {
        let model = SmallModel::new(kind, Ops::Elementary);
        let meltr = TinyMeltr::new(3, kind);
        for j in [0, 2] {
            let exact = model.hypergrad(&meltr, AidMode::Exact, j).unwrap();
            let factorized = model.hypergrad(&meltr, AidMode::Factorized, j).unwrap();
            let err = relative_error(&factorized, &exact);
            assert!(
                err <= tolerance,
                "{kind:?} J={j}: relative error {err:e} > {tolerance:e}"
            );
            assert!(
                exact.iter().any(|v| v.abs() > 1e-8),
                "hypergradient is trivially zero"
            );
        }
    }
}

#[test]
fn a_reused_training_forward_gives_the_same_hypergradient_with_one_forward_fewer() {
    // The models draw from libtorch's process-wide RNG.
    let _serial = common::serial();
    let model = SmallModel::new(Kind::Double, Ops::Elementary);
    let meltr = TinyMeltr::new(3, Kind::Double);
    for mode in [AidMode::Exact, AidMode::Factorized] {
        for j in [0, 2] {
            let (fresh, fresh_forwards) = model.hypergrad_from(&meltr, mode, j, None).unwrap();
            // The inner step's forward, its graph kept through the inner
            // backward as the trainer does.
            let forward = model.losses();
            let inner = meltr.combine(&forward);
            grad(&[&inner], &model.theta, true, false).unwrap();
            let (reused, reused_forwards) = model
                .hypergrad_from(&meltr, mode, j, Some(&forward))
                .unwrap();
            let err = relative_error(&reused, &fresh);
            assert!(err <= 1e-12, "{mode:?} J={j}: relative error {err:e}");
            assert_eq!(
                reused_forwards + 1,
                fresh_forwards,
                "{mode:?} J={j}: the given forward was not used"
            );
        }
    }
}

#[test]
fn mixed_term_matches_finite_differences_on_tiny_meltr() {
    // The models draw from libtorch's process-wide RNG.
    let _serial = common::serial();
    // With γ = 0 and J = 0 the hypergradient is −∂/∂φ (∇_θ M_φ(l(θ)) · g),
    // g = ∇_θ l_val. Check it entry by entry by central differences in φ.
    let model = SmallModel::new(Kind::Double, Ops::Elementary);
    let meltr = TinyMeltr::new(3, Kind::Double);
    let g = grad(
        &[&(model.losses().get(0) * 1.1)],
        &model.theta,
        false,
        false,
    )
    .unwrap();
    let directional = || -> f64 {
        let m = meltr.combine(&model.losses());
        let gm = grad(&[&m], &model.theta, false, false).unwrap();
        autograd::dot(&gm, &g).double_value(&[])
    };
    let train = || -> Result<Tensor> { Ok(model.losses()) };
    let val = || -> Result<Tensor> { Ok(model.losses().get(0) * 1.1) };
    let problem = MetaProblem {
        theta: &model.theta,
        combiner: &meltr,
        train_losses: &train,
        val_primary: Some(&val),
        train_forward: None,
    };
    for mode in [AidMode::Exact, AidMode::Factorized] {
        let hyper = hypergradient(&problem, &settings(mode, 0, 0.1, 0.0))
            .unwrap()
            .grads;
        let mut checked = 0;
        for (param, hg) in meltr.params().iter().zip(&hyper) {
            let flat_param = param.view(-1);
            let flat_hg = hg.view(-1);
            for idx in 0..flat_param.size()[0].min(3) {
                let eps = 1e-6;
                let mut entry = flat_param.get(idx);
                let _ = tch::no_grad(|| entry.g_add_scalar_(eps));
                let plus = directional();
                let _ = tch::no_grad(|| entry.g_add_scalar_(-2.0 * eps));
                let minus = directional();
                let _ = tch::no_grad(|| entry.g_add_scalar_(eps));
                let fd = -(plus - minus) / (2.0 * eps);
                let ad = flat_hg.double_value(&[idx]);
                assert!(
                    (fd - ad).abs() <= 1e-5 * (1.0 + fd.abs()),
                    "{mode:?}: fd {fd} vs aid {ad}"
                );
                checked += 1;
            }
        }
        assert!(checked > 20);
    }
}

/// Fused attention: both modes turn the fused kernels off for what needs
/// derivatives they lack, say so, and agree.
#[test]
fn fused_attention_takes_the_math_path_in_both_modes() {
    // The models draw from libtorch's process-wide RNG.
    let _serial = common::serial();
    let model = SmallModel::new(Kind::Float, Ops::FusedAttention);
    let meltr = TinyMeltr::new(3, Kind::Float);
    let routes = || JvpRoutes::default();
    let of = |mode| {
        let settings = AidSettings {
            jvp: JvpMethod::Auto,
            ..settings(mode, 1, 0.1, 0.1)
        };
        model
            .hypergradient(&meltr, &settings, &routes(), None)
            .unwrap()
            .0
    };
    let (exact, factorized) = (of(AidMode::Exact), of(AidMode::Factorized));
    let said = |h: &meltr_tui::meltr::hypergrad::Hypergradient| h.fallback.join("; ");
    assert!(
        said(&exact).contains("fused kernels off")
            && said(&factorized).contains("fused kernels off"),
        "{} / {}",
        said(&exact),
        said(&factorized)
    );
    let err = relative_error(&flat(&factorized.grads), &flat(&exact.grads));
    assert!(err <= 1e-5, "factorized vs exact on the math path: {err:e}");
    assert!(meltr_tui::nn::math_kernels::fused_enabled().unwrap());
    // A run's later meta steps: the routes found before, the inner step's
    // forward (through the fused kernels) given; the products do not start
    // from it, and the routes that failed are not tried again.
    let routes = JvpRoutes::default();
    let auto = AidSettings {
        jvp: JvpMethod::Auto,
        ..settings(AidMode::Factorized, 1, 0.1, 0.1)
    };
    let step = || {
        let inner = model.losses();
        model
            .hypergradient(&meltr, &auto, &routes, Some(&inner))
            .unwrap()
    };
    let (first, _) = step();
    let (again, forwards) = step();
    assert_eq!(flat(&again.grads), flat(&first.grads));
    let err = relative_error(&flat(&again.grads), &flat(&exact.grads));
    assert!(err <= 1e-5, "later meta step vs exact: {err:e}");
    // The products' own forward on the math path, and the loss JVP's.
    assert_eq!(forwards, 2);

    // A few bilevel rounds: inner AdamW steps on M(l), meta steps on φ.
    let mut inner = meltr_tui::nn::optim::AdamW::new(&model.theta, 1e-2, 0.0);
    let phi = meltr.params();
    let mut outer = meltr_tui::nn::optim::AdamW::new(&phi, 1e-3, 0.0);
    let first = model.losses().get(0).double_value(&[]);
    for step in 0..30 {
        let combined = meltr.combine(&model.losses());
        let g = grad(&[&combined], &model.theta, false, false).unwrap();
        inner.step(&model.theta, &g);
        if step % 3 == 2 {
            let hyper = {
                // Errors, not panics: the one comparison of forward mode
                // with reverse mode meets the fused kernel's missing
                // forward derivative, and goes on without it.
                let train = || -> Result<Tensor> { model.try_losses() };
                let val = || -> Result<Tensor> { Ok(model.try_losses()?.get(0)) };
                let problem = MetaProblem {
                    theta: &model.theta,
                    combiner: &meltr,
                    train_losses: &train,
                    val_primary: Some(&val),
                    train_forward: None,
                };
                hypergradient(&problem, &settings(AidMode::Factorized, 1, 0.1, 0.1))
                    .unwrap()
                    .grads
            };
            assert!(autograd::all_finite(&hyper));
            outer.step(&phi, &hyper);
        }
    }
    let last = model.losses().get(0).double_value(&[]);
    assert!(
        last.is_finite() && last < first,
        "primary loss {first} -> {last}"
    );
}

/// An op without a second derivative on any path: `exact` fails, saying why
/// and what to set; `factorized` trains.
#[test]
fn without_second_derivatives_exact_fails_clearly_and_factorized_takes_differences() {
    // The models draw from libtorch's process-wide RNG.
    let _serial = common::serial();
    let model = SmallModel::new(Kind::Float, Ops::Distance);
    let meltr = TinyMeltr::new(3, Kind::Float);
    let err = model
        .hypergrad(&meltr, AidMode::Exact, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("aid.mode = \"factorized\""), "{err}");
    assert!(
        err.contains("derivative for '_cdist_backward'"),
        "the libtorch reason is kept: {err}"
    );
    assert!(
        !err.contains("frame #"),
        "no C++ backtrace in the message: {err}"
    );
    // Its hypergradient by differences is finite.
    let (hyper, _) = model
        .hypergradient(
            &meltr,
            &settings(AidMode::Factorized, 1, 0.1, 0.1),
            &JvpRoutes::default(),
            None,
        )
        .unwrap();
    assert!(autograd::all_finite(&hyper.grads));
}

/// `cdist` has no forward derivative on any path: `auto`'s loss JVP takes
/// one backward pass per loss (exact) instead of finite differences, and
/// agrees with differences in f64 to their truncation error (at J = 0 the
/// loss JVP is the only product).
#[test]
fn without_forward_derivatives_the_loss_jvp_takes_one_backward_per_loss() {
    let _serial = common::serial();
    let model = SmallModel::new(Kind::Double, Ops::Distance);
    let meltr = TinyMeltr::new(3, Kind::Double);
    let with = |jvp| {
        let settings = AidSettings {
            jvp,
            ..settings(AidMode::Factorized, 0, 0.1, 0.1)
        };
        model
            .hypergradient(&meltr, &settings, &JvpRoutes::default(), None)
            .unwrap()
            .0
    };
    let auto = with(JvpMethod::Auto);
    let why = auto.fallback.join("; ");
    assert!(!why.is_empty(), "cdist has no forward derivative");
    assert!(
        why.contains("the loss JVP by one backward pass per loss")
            && why.contains("forward mode failed ("),
        "{why}"
    );
    let differences = with(JvpMethod::Differences);
    let err = relative_error(&flat(&auto.grads), &flat(&differences.grads));
    eprintln!("f64, J = 0: one backward per loss vs differences {err:e}");
    assert!(err < 1e-6, "{err:e}");
    assert!(
        flat(&auto.grads).iter().any(|v| v.abs() > 1e-9),
        "hypergradient is trivially zero"
    );
}

/// A cross entropy (no forward-over-reverse through `nll_loss`'s backward)
/// at J > 0: `auto` takes the Hessian-vector products by double backward,
/// exact, where differences are not (in f32 they are off by their step's
/// truncation and rounding error); later meta steps go there directly.
#[test]
fn auto_takes_double_backward_where_forward_over_reverse_is_missing() {
    // The models draw from libtorch's process-wide RNG.
    let _serial = common::serial();
    let model = SmallModel::new(Kind::Float, Ops::CrossEntropy);
    let meltr = TinyMeltr::new(3, Kind::Float);
    let with = |mode, jvp, routes: &JvpRoutes| {
        let settings = AidSettings {
            jvp,
            ..settings(mode, 2, 0.1, 0.1)
        };
        model.hypergradient(&meltr, &settings, routes, None)
    };
    let fresh = || JvpRoutes::default();
    let exact = flat(
        &with(AidMode::Exact, JvpMethod::Auto, &fresh())
            .unwrap()
            .0
            .grads,
    );
    let routes = JvpRoutes::default();
    let (auto, first_forwards) = with(AidMode::Factorized, JvpMethod::Auto, &routes).unwrap();
    let why = auto.fallback.join("; ");
    assert!(!why.is_empty(), "auto should say what it fell back to");
    assert!(
        why.contains("double backward, as aid.mode = \"exact\" does")
            && why.contains("forward over reverse failed"),
        "{why}"
    );
    let (differences, _) = with(AidMode::Factorized, JvpMethod::Differences, &fresh()).unwrap();
    let (auto_err, differences_err) = (
        relative_error(&flat(&auto.grads), &exact),
        relative_error(&flat(&differences.grads), &exact),
    );
    eprintln!("f32, J = 2, against exact: auto {auto_err:e}, differences {differences_err:e}");
    // Measured: 0 (the same products as exact mode's), differences 1.7e-5.
    assert!(auto_err <= 1e-6, "auto: {auto_err:e}");
    assert!(
        exact.iter().any(|v| v.abs() > 1e-6),
        "hypergradient is trivially zero"
    );
    // Training forwards at J = 2: the γ term's, the run's one comparison
    // of forward with reverse mode (a forward-mode JVP and a forward with
    // its graph), forward over reverse's failed attempt, one for both
    // double-backward products (their gradient and its graph are kept
    // across the series), the loss JVP's.
    assert_eq!(first_forwards, 6);
    // The next meta step skips the attempt that failed and starts the
    // products from the γ term's forward: the same hypergradient, and it
    // still says what it takes.
    let (again, forwards) = with(AidMode::Factorized, JvpMethod::Auto, &routes).unwrap();
    assert_eq!(forwards, 2);
    assert_eq!(flat(&again.grads), flat(&auto.grads));
    assert_eq!(again.fallback, auto.fallback);
    // Asked for forward mode alone, it says what `auto` would do.
    let err = format!(
        "{:#}",
        with(AidMode::Factorized, JvpMethod::Forward, &fresh())
            .err()
            .unwrap()
    );
    assert!(err.contains("falls back to double backward"), "{err}");
}

/// `meltr.val_source = "train-batch"`: the validation primary is the
/// training forward's own (no forward of its own), and the hypergradient is
/// the one a separate validation forward of that batch's primary gives, in
/// both modes, with the training forward fresh or reused.
#[test]
fn validation_on_the_training_batch_reads_its_primary_from_the_training_forward() {
    let _serial = common::serial();
    let model = SmallModel::new(Kind::Double, Ops::Elementary);
    let meltr = TinyMeltr::new(3, Kind::Double);
    let val_forwards = std::cell::Cell::new(0);
    let separate = || -> Result<Tensor> {
        val_forwards.set(val_forwards.get() + 1);
        Ok(model.losses().get(0))
    };
    let train = || model.try_losses();
    for mode in [AidMode::Exact, AidMode::Factorized] {
        for reuse in [false, true] {
            let settings = AidSettings {
                jvp: JvpMethod::Forward,
                ..settings(mode, 1, 0.1, 0.1)
            };
            let of = |val_primary: Option<&dyn Fn() -> Result<Tensor>>| {
                // (A reused forward's graph serves one meta step.)
                let forward = reuse.then(|| model.losses());
                let problem = MetaProblem {
                    theta: &model.theta,
                    combiner: &meltr,
                    train_losses: &train,
                    val_primary,
                    train_forward: forward.as_ref(),
                };
                hypergradient(&problem, &settings).unwrap()
            };
            val_forwards.set(0);
            let from_training = of(None);
            assert_eq!(val_forwards.get(), 0, "{mode:?}: a validation forward ran");
            let separately = of(Some(&separate));
            assert_eq!(val_forwards.get(), 1);
            let err = relative_error(&flat(&from_training.grads), &flat(&separately.grads));
            assert!(err < 1e-10, "{mode:?}, reuse {reuse}: {err:e}");
            assert!(
                flat(&from_training.grads).iter().any(|v| v.abs() > 1e-9),
                "hypergradient is trivially zero"
            );
            // The logged losses: the validation primary is the training one.
            let losses = flat(&[from_training.losses]);
            assert_eq!(losses[0], losses[1], "{mode:?}: {losses:?}");
        }
    }
}

/// `aid.jvp = "one-sided"`: the loss JVP by one forward from the training
/// forward's losses agrees with forward-mode AD to its truncation error (at
/// J = 0 it is the only product), and differs from it (it is a difference).
#[test]
fn the_one_sided_loss_jvp_agrees_with_forward_mode_to_its_truncation_error() {
    let _serial = common::serial();
    // (Measured: 1.4e-8 in f64, 6.4e-4 in f32; central 6.7e-12 and 1.8e-5.)
    for (kind, tolerance) in [(Kind::Double, 1e-6), (Kind::Float, 5e-3)] {
        let model = SmallModel::new(kind, Ops::Elementary);
        let meltr = TinyMeltr::new(3, kind);
        let with = |jvp| {
            let settings = AidSettings {
                jvp,
                ..settings(AidMode::Factorized, 0, 0.1, 0.1)
            };
            // A run's first meta step also compares forward with reverse
            // mode once (a forward-mode pass and a forward for the
            // per-loss backward passes); the counts are a later step's.
            let routes = JvpRoutes::default();
            let (_, first) = model
                .hypergradient(&meltr, &settings, &routes, None)
                .unwrap();
            let (h, forwards) = model
                .hypergradient(&meltr, &settings, &routes, None)
                .unwrap();
            assert_eq!(first, forwards + 2, "{jvp:?}");
            (flat(&h.grads), forwards)
        };
        let (forward, _) = with(JvpMethod::Forward);
        let (central, central_forwards) = with(JvpMethod::Differences);
        let (one_sided, one_sided_forwards) = with(JvpMethod::OneSided);
        // One training forward for the γ term, then one shifted forward
        // (central differences take two).
        assert_eq!((one_sided_forwards, central_forwards), (2, 3));
        let err = relative_error(&one_sided, &forward);
        let central_err = relative_error(&central, &forward);
        eprintln!("{kind:?}, J = 0: one-sided {err:e}, central {central_err:e}");
        assert!(err < tolerance, "{kind:?}: {err:e}");
        assert!(err > 0.0, "{kind:?}: one-sided equals forward mode exactly");
        assert!(forward.iter().any(|v| v.abs() > 1e-9), "trivially zero");
    }
}
