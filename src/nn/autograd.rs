//! Small helpers over `Tensor::f_run_backward` for working with parameter
//! lists as flat vectors: gradients that never come back undefined, dot
//! products, norms and axpy updates.

use anyhow::{anyhow, Result};
use tch::Tensor;

/// `d(Σ outputs)/d inputs`, without touching `.grad`. An input the outputs do
/// not depend on gets zeros. `create_graph` keeps the result differentiable.
/// Sparse gradients (`nn.Embedding(sparse=True)`) come back dense: the
/// optimizer and the meta step's vector algebra take dense tensors, and the
/// update is then that of `sparse=False` (PyTorch's AdamW refuses sparse
/// gradients).
pub fn grad(
    outputs: &[&Tensor],
    inputs: &[Tensor],
    keep_graph: bool,
    create_graph: bool,
) -> Result<Vec<Tensor>> {
    grad_reaching(outputs, inputs, keep_graph, create_graph).map(|(grads, _)| grads)
}

/// [`grad`], and which inputs the outputs reach: false where no path of
/// the graph leads to the input (its gradient the zeros filled in;
/// PyTorch's `backward` leaves such a `.grad` at `None`, and its
/// optimizers then skip the parameter).
pub fn grad_reaching(
    outputs: &[&Tensor],
    inputs: &[Tensor],
    keep_graph: bool,
    create_graph: bool,
) -> Result<(Vec<Tensor>, Vec<bool>)> {
    if inputs.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let roots: Vec<&Tensor> = outputs
        .iter()
        .copied()
        .filter(|t| t.requires_grad())
        .collect();
    if roots.is_empty() {
        let zeros = inputs.iter().map(Tensor::zeros_like).collect();
        return Ok((zeros, vec![false; inputs.len()]));
    }
    let grads = Tensor::f_run_backward(&roots, inputs, keep_graph, create_graph)
        .map_err(|e| anyhow!("{}", first_line(&e.to_string())))?;
    let reached = grads.iter().map(Tensor::defined).collect();
    let grads = grads
        .into_iter()
        .zip(inputs)
        .map(|(g, x)| {
            if !g.defined() {
                Tensor::zeros_like(x)
            } else if g.is_sparse() {
                g.to_dense(None, false)
            } else {
                g
            }
        })
        .collect();
    Ok((grads, reached))
}

/// The first line of a libtorch error, without the C++ backtrace.
pub fn first_line(message: &str) -> String {
    let text = message
        .trim_start_matches("Torch(\"")
        .trim_start_matches("Internal torch error: ");
    text.lines()
        .next()
        .unwrap_or(text)
        .trim_end_matches("\")")
        .to_string()
}

/// `Σ_i <a_i, b_i>` as a 0-dim tensor (differentiable if the inputs are).
pub fn dot(a: &[Tensor], b: &[Tensor]) -> Tensor {
    debug_assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x * y).sum(x.kind()))
        .reduce(|s, t| s + t)
        .unwrap_or_else(|| Tensor::from(0.0))
}

/// Euclidean norm of a parameter list, as a 0-dim tensor (no host sync).
pub fn norm(a: &[Tensor]) -> Tensor {
    dot(a, a).sqrt()
}

/// Detached copies (sharing storage) of every tensor in `a`.
pub fn detach_all(a: &[Tensor]) -> Vec<Tensor> {
    a.iter().map(Tensor::detach).collect()
}

/// `a + s·b` elementwise over the lists.
pub fn axpy(a: &[Tensor], s: f64, b: &[Tensor]) -> Vec<Tensor> {
    a.iter().zip(b).map(|(x, y)| x + y * s).collect()
}

/// Sets every parameter to `values` in place, outside autograd.
pub fn assign(params: &[Tensor], values: &[Tensor]) {
    tch::no_grad(|| {
        for (p, v) in params.iter().zip(values) {
            let mut p = p.shallow_clone();
            p.copy_(v);
        }
    });
}

/// Moves every parameter by `s·direction` in place, outside autograd.
pub fn shift(params: &[Tensor], s: f64, direction: &[Tensor]) {
    tch::no_grad(|| {
        for (p, d) in params.iter().zip(direction) {
            let mut p = p.shallow_clone();
            let _ = p.g_add_(&(d * s));
        }
    });
}

/// Copies of the parameters' current values (to restore after a shift).
pub fn snapshot(params: &[Tensor]) -> Vec<Tensor> {
    tch::no_grad(|| params.iter().map(|p| p.detach().copy()).collect())
}

/// True when every element of every tensor is finite (one host sync).
pub fn all_finite(a: &[Tensor]) -> bool {
    a.iter().all(|t| t.isfinite().all().int64_value(&[]) != 0)
}
