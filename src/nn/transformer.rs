//! A post-norm transformer encoder layer with attention written as matmul +
//! softmax and layer norm written out. MELTR is differentiated twice (the
//! meta step), and fused attention kernels have no double backward; the
//! meta step's Hessian-vector products run forward-mode AD over a backward
//! pass, and libtorch's fused layer-norm backward has no forward derivative.
//! So a forward that may be differentiated that way uses no fused kernels
//! ([`Derivatives::Any`]). One differentiated by reverse mode only, twice
//! at most (the factorized meta step's MELTR term), can take the fused
//! layer norm and softmax, whose backwards have backwards
//! ([`Derivatives::Reverse`]); one differentiated once (an inner step,
//! effective weights) the fused attention too ([`Derivatives::FirstOrder`]).
//! The same function in fewer ops, which is most of its cost when the
//! layer is as small as MELTR's.

use tch::nn::{self, Module};
use tch::Tensor;

/// One post-norm encoder layer as PyTorch's `nn.TransformerEncoderLayer`
/// (ReLU, no dropout), from unfused ops (see the module docs).
#[derive(Debug)]
pub struct EncoderLayer {
    heads: i64,
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    attn_out: nn::Linear,
    norm1: LayerNorm,
    ff_in: nn::Linear,
    ff_out: nn::Linear,
    norm2: LayerNorm,
}

/// Layer norm over the last dimension from elementary ops (parameters named
/// `weight` and `bias`, as tch's `nn::layer_norm` names them).
#[derive(Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    const EPS: f64 = 1e-5;

    /// Weight 1 and bias 0 over a last dimension of `size`, under `path`.
    pub fn new(path: nn::Path, size: i64) -> Self {
        Self {
            weight: path.var("weight", &[size], nn::Init::Const(1.0)),
            bias: path.var("bias", &[size], nn::Init::Const(0.0)),
        }
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        let centered = x - x.mean_dim(-1, true, kind);
        let variance = centered.square().mean_dim(-1, true, kind);
        centered / (variance + Self::EPS).sqrt() * &self.weight + &self.bias
    }
}

impl LayerNorm {
    /// The same function through libtorch's fused kernel (one op; reverse
    /// mode to any order, no forward derivative of its backward).
    fn forward_fused(&self, x: &Tensor) -> Tensor {
        let d = self.weight.size()[0];
        x.layer_norm([d], Some(&self.weight), Some(&self.bias), Self::EPS, false)
    }

    fn forward_with(&self, x: &Tensor, derivatives: Derivatives) -> Tensor {
        match derivatives {
            Derivatives::Any => self.forward(x),
            Derivatives::Reverse | Derivatives::FirstOrder => self.forward_fused(x),
        }
    }
}

/// How a forward will be differentiated, which decides whether it may use
/// fused kernels (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Derivatives {
    /// Any order, forward mode over a backward included: elementary ops.
    Any,
    /// Reverse mode only, a backward of the backward included: fused layer
    /// norm and softmax.
    Reverse,
    /// One backward at most: fused layer norm and attention.
    FirstOrder,
}

impl EncoderLayer {
    /// Creates the layer's parameters under `path` with tch's default
    /// initialisation; panics unless `heads` divides `d_model`.
    pub fn new(path: &nn::Path, d_model: i64, heads: i64, d_ff: i64) -> Self {
        assert!(d_model % heads == 0, "heads must divide d_model");
        Self {
            heads,
            query: nn::linear(path / "query", d_model, d_model, Default::default()),
            key: nn::linear(path / "key", d_model, d_model, Default::default()),
            value: nn::linear(path / "value", d_model, d_model, Default::default()),
            attn_out: nn::linear(path / "attn_out", d_model, d_model, Default::default()),
            norm1: LayerNorm::new(path / "norm1", d_model),
            ff_in: nn::linear(path / "ff_in", d_model, d_ff, Default::default()),
            ff_out: nn::linear(path / "ff_out", d_ff, d_model, Default::default()),
            norm2: LayerNorm::new(path / "norm2", d_model),
        }
    }

    /// Re-draws the parameters as PyTorch initialises
    /// `nn.TransformerEncoderLayer`: the attention's packed in-projection
    /// (query, key and value rows together, fan_in d, fan_out 3d) Xavier
    /// uniform with zero biases, its out-projection U(±1/√d) with a zero
    /// bias, the feed-forward layers as `nn.Linear` (weight and bias
    /// U(±1/√fan_in)), layer norms 1 and 0 (as built).
    pub fn init_like_pytorch(&self) {
        let d = self.query.ws.size()[1] as f64;
        let xavier = (6.0 / (d + 3.0 * d)).sqrt();
        for projection in [&self.query, &self.key, &self.value] {
            uniform(&projection.ws, xavier);
            if let Some(bias) = &projection.bs {
                zero(bias);
            }
        }
        init_linear_like_pytorch(&self.attn_out);
        if let Some(bias) = &self.attn_out.bs {
            zero(bias);
        }
        init_linear_like_pytorch(&self.ff_in);
        init_linear_like_pytorch(&self.ff_out);
    }

    /// `x`: `[batch, tokens, d_model]`. `mask`: optional additive mask
    /// broadcastable to `[batch, heads, tokens, tokens]` (0 = attend,
    /// -inf = blocked). Differentiable to any order.
    pub fn forward(&self, x: &Tensor, mask: Option<&Tensor>) -> Tensor {
        self.forward_with(x, mask, Derivatives::Any)
    }

    /// [`Self::forward`], with fused kernels where `derivatives` allows.
    pub fn forward_with(
        &self,
        x: &Tensor,
        mask: Option<&Tensor>,
        derivatives: Derivatives,
    ) -> Tensor {
        let (b, n, d) = x.size3().expect("[batch, tokens, d_model]");
        let h = self.heads;
        let dh = d / h;
        let split = |t: Tensor| t.reshape([b, n, h, dh]).transpose(1, 2); // [b, h, n, dh]
        let q = split(self.query.forward(x));
        let k = split(self.key.forward(x));
        let v = split(self.value.forward(x));
        let scores = || {
            let scores = q.matmul(&k.transpose(2, 3)) / (dh as f64).sqrt();
            match mask {
                Some(mask) => scores + mask,
                None => scores,
            }
        };
        let attended = match derivatives {
            Derivatives::Any => super::softmax(&scores()).matmul(&v),
            Derivatives::Reverse => scores().softmax(-1, x.kind()).matmul(&v),
            Derivatives::FirstOrder => {
                Tensor::scaled_dot_product_attention(&q, &k, &v, mask, 0.0, false, None, false)
            }
        }
        .transpose(1, 2)
        .reshape([b, n, d]);
        let x = self
            .norm1
            .forward_with(&(x + self.attn_out.forward(&attended)), derivatives);
        self.norm2.forward_with(
            &(&x + self.ff_out.forward(&self.ff_in.forward(&x).relu())),
            derivatives,
        )
    }
}

/// Re-draws a linear layer as PyTorch's `nn.Linear` initialises it: weight
/// (Kaiming uniform with a = √5) and bias both U(±1/√fan_in).
pub fn init_linear_like_pytorch(linear: &nn::Linear) {
    let bound = 1.0 / (linear.ws.size()[1] as f64).sqrt();
    uniform(&linear.ws, bound);
    if let Some(bias) = &linear.bs {
        uniform(bias, bound);
    }
}

/// Fills `t` from U(−bound, bound) in place (outside autograd).
pub fn uniform(t: &Tensor, bound: f64) {
    tch::no_grad(|| {
        let _ = t.shallow_clone().uniform_(-bound, bound);
    });
}

fn zero(t: &Tensor) {
    tch::no_grad(|| {
        let _ = t.shallow_clone().zero_();
    });
}

/// Additive causal mask `[n, n]`: position i attends to j <= i.
pub fn causal_mask(n: i64, options: (tch::Kind, tch::Device)) -> Tensor {
    let blocked = Tensor::ones([n, n], options).triu(1);
    blocked * -1e9
}
