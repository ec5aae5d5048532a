//! The module's parameters as PyTorch lists them: a tensor shared by
//! several modules (tied weights) once, under its first name.

use std::collections::HashMap;
use tch::Tensor;

/// The module's parameters with shared ones (tied weights, e.g. an output
/// layer using the input embedding's matrix) once, under their first name,
/// as PyTorch's `Module.parameters()` lists a tied parameter: libtorch's C++
/// listing names a shared tensor once per module holding it, and training
/// each name would apply the optimizer to one tensor twice per step and
/// count its gradient twice in the clipping norm and the hypergradient.
/// Shared means the same memory (pointer, shape, strides, dtype), so two
/// parameters built over one buffer count as one too.
///
/// Returns the distinct parameters and, for each further name of a shared
/// one, (that name, the name it is trained under).
pub(super) fn distinct_parameters(
    parameters: Vec<(String, Tensor)>,
) -> (Vec<(String, Tensor)>, Vec<TiedName>) {
    let mut first_name: HashMap<_, String> = HashMap::new();
    let mut distinct = Vec::new();
    let mut shared = Vec::new();
    for (name, tensor) in parameters {
        // Empty tensors may all have a null data pointer: never the same.
        if tensor.numel() > 0 {
            let memory = (
                tensor.data_ptr() as usize,
                tensor.size(),
                tensor.stride(),
                tensor.kind(),
            );
            if let Some(first) = first_name.get(&memory) {
                shared.push((name, first.clone()));
                continue;
            }
            first_name.insert(memory, name.clone());
        }
        distinct.push((name, tensor));
    }
    (distinct, shared)
}

/// A further name of a shared parameter, and the name it is trained under.
pub(super) type TiedName = (String, String);

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn a_shared_parameter_is_trained_once_under_its_first_name() {
        let _draws = crate::nn::rng::global_draws();
        let opts = (tch::Kind::Float, Device::Cpu);
        let embedding = Tensor::randn([5, 3], opts);
        let bias = Tensor::zeros([5], opts);
        // Same shape, separate storage: a parameter of its own.
        let look_alike = embedding.copy();
        let (empty_a, empty_b) = (Tensor::zeros([0], opts), Tensor::zeros([0], opts));
        let listed = vec![
            ("emb.weight".to_string(), embedding.shallow_clone()),
            ("out.weight".to_string(), embedding.shallow_clone()),
            ("out.bias".to_string(), bias),
            ("other.weight".to_string(), look_alike),
            ("empty_a".to_string(), empty_a),
            ("empty_b".to_string(), empty_b),
        ];
        let (distinct, shared) = distinct_parameters(listed);
        let names: Vec<String> = distinct.into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            shared,
            [("out.weight".to_string(), "emb.weight".to_string())]
        );
        assert_eq!(
            names,
            [
                "emb.weight",
                "out.bias",
                "other.weight",
                "empty_a",
                "empty_b"
            ]
        );
    }
}
