//! The MELTR network (Meta Loss TRansformer): K loss values in, one combined
//! loss out.
//!
//! token_k = MLP(l_k) + E[k]  (MLP: 1 -> d_hidden -> ReLU -> d_model; E: one
//! learned row per loss), one post-norm transformer encoder layer, mean over
//! the K tokens, Linear(d_model -> 1, no bias).
//!
//! [`MeltrNet::forward`] is elementary ops only (attention as matmul +
//! softmax, layer norm written out): the meta step differentiates through
//! MELTR twice and forward over reverse, which fused kernels do not allow.
//! [`MeltrNet::forward_with`] takes the fused kernels a call site's
//! derivatives allow ([`Derivatives`]). No dropout: the meta step needs a
//! deterministic function.

use crate::nn::transformer::{init_linear_like_pytorch, Derivatives, EncoderLayer};
use tch::nn::{self, Module};
use tch::Tensor;

/// The shape of a MELTR network (`meltr.d_*`, `meltr.heads`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeltrSizes {
    /// K, the number of losses it combines (primary included).
    pub losses: i64,
    /// Width of each loss token and of the encoder layer.
    pub d_model: i64,
    /// Hidden width of the per-loss MLP that embeds a loss value.
    pub d_hidden: i64,
    /// Hidden width of the encoder layer's feed-forward block.
    pub d_ff: i64,
    /// Attention heads; must divide `d_model`.
    pub heads: i64,
}

/// The MELTR network (see the module docs); its parameters are φ.
#[derive(Debug)]
pub struct MeltrNet {
    sizes: MeltrSizes,
    loss_in: nn::Linear,
    loss_out: nn::Linear,
    loss_type: Tensor,
    encoder: EncoderLayer,
    head: nn::Linear,
    /// `meltr.init = "residual"`: the output is `Σl` plus the network's.
    residual: bool,
    /// `meltr.loss_scale` other than `raw`: `[K]` factors the network reads
    /// the losses at (`None`: the raw values).
    input_scale: Option<Tensor>,
}

impl MeltrNet {
    /// Creates the parameters under `path` with tch's default initialisation;
    /// panics unless `heads` divides `d_model`.
    pub fn new(path: &nn::Path, sizes: MeltrSizes) -> Self {
        assert!(
            sizes.d_model % sizes.heads == 0,
            "heads must divide d_model"
        );
        let d = sizes.d_model;
        Self {
            sizes,
            loss_in: nn::linear(path / "loss_in", 1, sizes.d_hidden, Default::default()),
            loss_out: nn::linear(path / "loss_out", sizes.d_hidden, d, Default::default()),
            loss_type: path.var(
                "loss_type",
                &[sizes.losses, d],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            ),
            encoder: EncoderLayer::new(path, d, sizes.heads, sizes.d_ff),
            head: nn::linear(
                path / "head",
                d,
                1,
                nn::LinearConfig {
                    bias: false,
                    ..Default::default()
                },
            ),
            residual: false,
            input_scale: None,
        }
    }

    /// The same network as a correction to `sum`: its output becomes
    /// `Σ_k l_k + head · pooled(l)` and its head starts at zero, so a run
    /// starts with every effective weight exactly 1 and the first meta
    /// steps move the head (the rest of φ gets gradient once the head is
    /// non-zero). The γ term `|Σl − M(l)|` is then the correction's size.
    pub fn residual_on_sum(mut self) -> Self {
        tch::no_grad(|| {
            let _ = self.head.ws.zero_();
        });
        self.residual = true;
        self
    }

    /// Re-draws every parameter as the public code's PyTorch module starts:
    /// `nn.Linear` (U(±1/√fan_in) weights and biases), `nn.Embedding` for
    /// the loss types (N(0, 1)), `nn.TransformerEncoderLayer` (see
    /// [`EncoderLayer::init_like_pytorch`]). tch's defaults differ (Kaiming
    /// bound ≈ 2.45x larger); `meltr.init = "random"` keeps them.
    pub fn init_like_pytorch(&self) {
        init_linear_like_pytorch(&self.loss_in);
        init_linear_like_pytorch(&self.loss_out);
        tch::no_grad(|| {
            let _ = self.loss_type.shallow_clone().normal_(0.0, 1.0);
        });
        self.encoder.init_like_pytorch();
        init_linear_like_pytorch(&self.head);
    }

    /// Reads the losses at `scale` (`[K]`, any kind or device: taken to φ's;
    /// `None`: raw) from now on: MELTR's input is
    /// `scale ⊙ l` and the `Σl` it is compared with (and, residual, adds)
    /// becomes `Σ scale_k l_k`. Effective weights stay weights on `l`.
    pub fn set_input_scale(&mut self, scale: Option<Tensor>) {
        if let Some(scale) = &scale {
            assert_eq!(scale.size(), [self.sizes.losses], "one factor per loss");
        }
        let like = &self.head.ws;
        self.input_scale = scale.map(|s| s.detach().to_kind(like.kind()).to_device(like.device()));
    }

    /// The factors set by [`Self::set_input_scale`], if any.
    pub fn input_scale(&self) -> Option<&Tensor> {
        self.input_scale.as_ref()
    }

    /// The losses as the network reads them (rows `[S, K]` or one `[K]`).
    fn scaled(&self, losses: &Tensor) -> Tensor {
        match &self.input_scale {
            Some(scale) => losses * scale,
            None => losses.shallow_clone(),
        }
    }

    /// `Σl` at the scale the network reads the losses at: what the γ term
    /// compares MELTR's output with, and what `residual` adds to it.
    pub fn reference_sum(&self, losses: &Tensor) -> Tensor {
        self.scaled(losses).sum(losses.kind())
    }

    /// The sizes it was built with.
    pub fn sizes(&self) -> MeltrSizes {
        self.sizes
    }

    /// Combined loss (0-dim) from the loss vector `[K]`, differentiable to
    /// any order.
    pub fn forward(&self, losses: &Tensor) -> Tensor {
        self.forward_with(losses, Derivatives::Any)
    }

    /// [`Self::forward`] through the fused kernels `derivatives` allows
    /// (see [`Derivatives`]): the same function in fewer ops.
    pub fn forward_with(&self, losses: &Tensor, derivatives: Derivatives) -> Tensor {
        let pooled = self.pooled_rows_with(&losses.reshape([1, self.sizes.losses]), derivatives);
        let out = self.head.forward(&pooled).reshape(Vec::<i64>::new());
        if self.residual {
            out + self.reference_sum(losses)
        } else {
            out
        }
    }

    /// Combined losses `[S]` from `S` independent loss vectors `[S, K]`.
    pub fn forward_rows(&self, losses: &Tensor) -> Tensor {
        let out = self.head.forward(&self.pooled_rows(losses)).reshape([-1]);
        if self.residual {
            out + self.scaled(losses).sum_dim_intlist(1, false, losses.kind())
        } else {
            out
        }
    }

    /// What the head reads: the encoder's output averaged over the K tokens,
    /// `[S, d_model]` from `[S, K]`. The combined loss is
    /// `pooled · head_weight`, linear in the head.
    pub fn pooled_rows(&self, losses: &Tensor) -> Tensor {
        self.pooled_rows_with(losses, Derivatives::Any)
    }

    fn pooled_rows_with(&self, losses: &Tensor, derivatives: Derivatives) -> Tensor {
        let k = self.sizes.losses;
        let tokens = self.loss_out.forward(
            &self
                .loss_in
                .forward(&self.scaled(losses).reshape([-1, k, 1]))
                .relu(),
        ) + &self.loss_type;
        let x = self.encoder.forward_with(&tokens, None, derivatives);
        x.mean_dim(1, false, x.kind())
    }

    /// The head's weight `[1, d_model]` (a parameter: assign to it only
    /// outside autograd).
    pub fn head_weight(&self) -> &Tensor {
        &self.head.ws
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::autograd::grad;
    use tch::{Device, Kind};

    fn tiny(kind: Kind) -> (nn::VarStore, MeltrNet) {
        tiny_on(kind, Device::Cpu)
    }

    fn tiny_on(kind: Kind, device: Device) -> (nn::VarStore, MeltrNet) {
        let _draws = crate::nn::rng::global_draws();
        tch::manual_seed(0);
        let mut vs = nn::VarStore::new(device);
        let net = MeltrNet::new(
            &vs.root(),
            MeltrSizes {
                losses: 3,
                d_model: 8,
                d_hidden: 6,
                d_ff: 16,
                heads: 2,
            },
        );
        vs.set_kind(kind);
        (vs, net)
    }

    #[test]
    fn output_is_scalar_and_grads_reach_every_parameter() {
        let (vs, net) = tiny(Kind::Double);
        let losses = Tensor::from_slice(&[0.7f64, 1.3, 2.1]);
        let out = net.forward(&losses);
        assert_eq!(out.size(), Vec::<i64>::new());
        let params = vs.trainable_variables();
        let grads = grad(&[&out], &params, false, false).unwrap();
        for (p, g) in params.iter().zip(&grads) {
            assert_eq!(p.size(), g.size());
            // Every parameter tensor receives some non-zero gradient.
            assert!(
                g.abs().sum(Kind::Double).double_value(&[]) > 0.0,
                "zero grad for a parameter of shape {:?}",
                p.size()
            );
        }
    }

    #[test]
    fn residual_starts_as_sum_and_learns_through_its_head_first() {
        let (vs, net) = tiny(Kind::Double);
        net.init_like_pytorch();
        let net = net.residual_on_sum();
        let l = Tensor::from_slice(&[0.7f64, 1.3, 2.1]).set_requires_grad(true);
        let out = net.forward_with(&l, Derivatives::FirstOrder);
        let sum = l.sum(Kind::Double).double_value(&[]);
        assert_eq!(out.double_value(&[]), sum, "M(l) = Σl at the start");
        let names: Vec<String> = vs.variables().into_keys().collect();
        let mut inputs: Vec<Tensor> = names
            .iter()
            .map(|n| vs.variables()[n].shallow_clone())
            .collect();
        inputs.push(l.shallow_clone());
        let grads = grad(&[&out], &inputs, false, false).unwrap();
        let w = grads.last().unwrap();
        assert_eq!(
            Vec::<f64>::try_from(w).unwrap(),
            vec![1.0; 3],
            "every weight 1"
        );
        // Only the (zero) head moves M at first: every other parameter's
        // gradient goes through it.
        for (name, g) in names.iter().zip(&grads) {
            let size = g.abs().max().double_value(&[]);
            if name == "head.weight" {
                assert!(size > 0.0, "{name}");
            } else {
                assert_eq!(size, 0.0, "{name}");
            }
        }
        // Once the head is not zero, M is Σl plus the network's output,
        // row by row as well.
        tch::no_grad(|| {
            let _ = net.head_weight().shallow_clone().fill_(0.3);
        });
        let rows = Tensor::from_slice(&[0.7f64, 1.3, 2.1, 3.0, 0.2, 0.5]).reshape([2, 3]);
        let by_rows = net.forward_rows(&rows);
        for r in 0..2 {
            let one = net.forward(&rows.get(r));
            let network = net
                .pooled_rows(&rows.get(r).reshape([1, 3]))
                .matmul(&net.head_weight().tr())
                .double_value(&[0, 0]);
            assert!((one.double_value(&[]) - by_rows.double_value(&[r])).abs() < 1e-12);
            let sum = rows.get(r).sum(Kind::Double).double_value(&[]);
            assert!(
                (one.double_value(&[]) - sum - network).abs() < 1e-12,
                "row {r}"
            );
        }
    }

    #[test]
    fn an_input_scale_is_the_same_network_on_scaled_losses() {
        let (_vs, net) = tiny(Kind::Double);
        net.init_like_pytorch();
        let mut net = net.residual_on_sum();
        tch::no_grad(|| {
            let _ = net.head_weight().shallow_clone().fill_(0.3);
        });
        let l = Tensor::from_slice(&[0.7f64, 130.0, 0.021]).set_requires_grad(true);
        let scale = Tensor::from_slice(&[1.0f64, 0.01, 50.0]);
        let at_scaled = (&l * &scale).detach().set_requires_grad(true);
        let plain = net.forward(&at_scaled);
        let plain_weights = grad(&[&plain], &[at_scaled.shallow_clone()], false, false).unwrap();
        net.set_input_scale(Some(scale.shallow_clone()));
        for derivatives in [Derivatives::Any, Derivatives::FirstOrder] {
            let out = net.forward_with(&l, derivatives);
            let weights = grad(&[&out], &[l.shallow_clone()], false, false).unwrap();
            assert!((out.double_value(&[]) - plain.double_value(&[])).abs() < 1e-12);
            let expected = &plain_weights[0] * &scale;
            let off = (&weights[0] - expected).abs().max().double_value(&[]);
            assert!(off < 1e-12, "{derivatives:?}: weights off by {off}");
        }
        let rows = net.forward_rows(&l.detach().reshape([1, 3]));
        assert!((rows.double_value(&[0]) - plain.double_value(&[])).abs() < 1e-12);
        let sum = net.reference_sum(&l).double_value(&[]);
        assert!((sum - (0.7 + 1.3 + 1.05)).abs() < 1e-12, "{sum}");
    }

    #[test]
    fn pytorch_init_draws_within_pytorchs_bounds() {
        let (vs, net) = tiny(Kind::Double);
        net.init_like_pytorch();
        let vars = vs.variables();
        let largest = |name: &str| vars[name].abs().max().double_value(&[]);
        // (name, bound): U(±1/√fan_in) for nn.Linear; Xavier over the
        // packed [3d, d] in-projection, √(6 / 4d); zero attention biases.
        let d = 8.0f64;
        for (name, bound) in [
            ("loss_in.weight", 1.0),
            ("loss_in.bias", 1.0),
            ("loss_out.weight", 1.0 / 6f64.sqrt()),
            ("ff_in.weight", 1.0 / d.sqrt()),
            ("ff_out.weight", 1.0 / 16f64.sqrt()),
            ("head.weight", 1.0 / d.sqrt()),
            ("query.weight", (6.0 / (4.0 * d)).sqrt()),
            ("value.weight", (6.0 / (4.0 * d)).sqrt()),
            ("attn_out.weight", 1.0 / d.sqrt()),
        ] {
            let got = largest(name);
            assert!(
                got <= bound && got > 0.3 * bound,
                "{name}: {got} vs {bound}"
            );
        }
        for name in ["query.bias", "key.bias", "value.bias", "attn_out.bias"] {
            assert_eq!(largest(name), 0.0, "{name}");
        }
        // The loss-type embedding is N(0, 1): 24 draws, std well above 0.02.
        let std = vars["loss_type"].std(true).double_value(&[]);
        assert!(std > 0.5 && std < 1.6, "{std}");
    }

    /// The default sizes (d_model 256, 8 heads), as the inner step runs them.
    fn default_sized_on(kind: Kind, device: Device) -> (nn::VarStore, MeltrNet) {
        let _draws = crate::nn::rng::global_draws();
        tch::manual_seed(1);
        let mut vs = nn::VarStore::new(device);
        let net = MeltrNet::new(
            &vs.root(),
            MeltrSizes {
                losses: 4,
                d_model: 256,
                d_hidden: 128,
                d_ff: 512,
                heads: 8,
            },
        );
        net.init_like_pytorch();
        vs.set_kind(kind);
        (vs, net)
    }

    /// `M`, then `∇_φ M` and `w = ∂M/∂l`; with `second`, also
    /// `∇_φ (w · u)` (the factorized meta step's MELTR term).
    fn derivatives_of(
        net: &MeltrNet,
        params: &[Tensor],
        l: &Tensor,
        derivatives: Derivatives,
        second: bool,
    ) -> Vec<Tensor> {
        let l = l.detach().set_requires_grad(true);
        let out = net.forward_with(&l, derivatives);
        let mut inputs: Vec<Tensor> = params.iter().map(Tensor::shallow_clone).collect();
        inputs.push(l);
        let mut all = grad(&[&out], &inputs, second, second).unwrap();
        if second {
            let w = all.last().unwrap();
            let u = Tensor::linspace(-1.0, 2.0, w.numel() as i64, (w.kind(), w.device()));
            let mixed = grad(&[&(w * u).sum(w.kind())], params, false, false).unwrap();
            all.extend(mixed);
        }
        all.insert(0, out);
        all.iter().map(Tensor::detach).collect()
    }

    #[test]
    fn the_fused_forwards_are_the_same_function_with_the_same_derivatives() {
        fused_forwards_match_elementary_ops_on(Device::Cpu);
    }

    /// On CUDA the fused kernels are other kernels again (SDPA picks a
    /// fused attention kernel there).
    #[test]
    #[ignore = "needs a CUDA device (scripts/gpu-check.sh runs it)"]
    fn the_fused_forwards_are_the_same_function_with_the_same_derivatives_on_cuda() {
        fused_forwards_match_elementary_ops_on(Device::Cuda(0));
    }

    fn fused_forwards_match_elementary_ops_on(device: Device) {
        // (kind, relative tolerance): f64 checks the math, f32 what runs.
        for (kind, tolerance) in [(Kind::Double, 1e-9), (Kind::Float, 2e-5)] {
            for (vs, net) in [tiny_on(kind, device), default_sized_on(kind, device)] {
                let params = vs.trainable_variables();
                for losses in [[0.7, 1.3, 2.1, 0.4], [3.0, 0.01, 0.5, 9.0]] {
                    let k = net.sizes().losses as usize;
                    let l = Tensor::from_slice(&losses[..k])
                        .to_kind(kind)
                        .to_device(device);
                    for (fused, second) in [
                        (Derivatives::FirstOrder, false),
                        (Derivatives::Reverse, true),
                    ] {
                        let got = derivatives_of(&net, &params, &l, fused, second);
                        let want = derivatives_of(&net, &params, &l, Derivatives::Any, second);
                        // Relative to each tensor, plus a floor at the largest
                        // one's rounding: the key bias's gradient is 0 in exact
                        // arithmetic (it shifts every score of a query alike),
                        // so both sides hold only rounding noise there.
                        let largest = want
                            .iter()
                            .map(|t| t.abs().max().double_value(&[]))
                            .fold(0.0, f64::max);
                        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                            let off = (a - b).abs().max().double_value(&[]);
                            let allowed = tolerance * b.abs().max().double_value(&[])
                                + tolerance * 0.05 * largest;
                            assert!(
                                off <= allowed,
                                "{kind:?} {fused:?}, tensor {i} (M, ∇_φ M, w, then ∇_φ(w·u)): off by {off:.2e}, allowed {allowed:.2e}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn second_derivative_matches_finite_differences() {
        // d/dφ (∂M/∂l · u) by autograd vs a central difference in one φ entry.
        let (vs, net) = tiny(Kind::Double);
        let target = vs.variables()["loss_in.weight"].shallow_clone(); // [d_hidden, 1]
        let l0 = Tensor::from_slice(&[0.7f64, 1.3, 2.1]);
        let u = Tensor::from_slice(&[0.3f64, -1.0, 0.5]);
        let directional = |create: bool| {
            let l = l0.detach().set_requires_grad(true);
            let w = grad(&[&net.forward(&l)], &[l], true, create)
                .unwrap()
                .remove(0);
            (w * &u).sum(Kind::Double)
        };
        let analytic = grad(
            &[&directional(true)],
            std::slice::from_ref(&target),
            false,
            false,
        )
        .unwrap();
        let eps = 1e-6;
        for idx in 0..3i64 {
            let mut entry = target.get(idx).get(0);
            let _ = tch::no_grad(|| entry.g_add_scalar_(eps));
            let plus = directional(false).double_value(&[]);
            let _ = tch::no_grad(|| entry.g_add_scalar_(-2.0 * eps));
            let minus = directional(false).double_value(&[]);
            let _ = tch::no_grad(|| entry.g_add_scalar_(eps));
            let fd = (plus - minus) / (2.0 * eps);
            let ad = analytic[0].double_value(&[idx, 0]);
            assert!(
                (fd - ad).abs() <= 1e-6 * (1.0 + ad.abs()),
                "idx {idx}: fd {fd} vs autograd {ad}"
            );
        }
    }
}
