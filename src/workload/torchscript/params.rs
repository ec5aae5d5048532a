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

/// Which parameters the module froze (`requires_grad = False`: a
/// pretrained backbone kept as it is), said at the start since nothing
/// else shows it: `2 of 14 parameter tensors are frozen (1,424 of 2,859
/// values: backbone.c1.weight, backbone.c1.bias) and not trained`.
pub(super) fn frozen_note(parameters: &[(String, Tensor)]) -> Option<String> {
    let frozen: Vec<&(String, Tensor)> = parameters
        .iter()
        .filter(|(_, t)| !t.requires_grad())
        .collect();
    listed_note(parameters, &frozen).map(|(count, total, listed)| {
        format!(
            "{count} of {total} parameter tensors are frozen (requires_grad = False; {listed}) \
             and not trained"
        )
    })
}

/// The parameters no trained loss reaches (a head the forward never uses):
/// PyTorch's optimizers skip a parameter whose `.grad` stays `None`, so its
/// weight decay never shrinks it either; the run leaves them as the module
/// has them too, until a gradient reaches them, said at the start (see
/// `AdamW::step_reached`). `reached` lists, for each of
/// `parameters`, whether the trained losses' gradient reaches it.
pub(super) fn unreached_note(parameters: &[(String, Tensor)], reached: &[bool]) -> Option<String> {
    let unreached: Vec<&(String, Tensor)> = parameters
        .iter()
        .zip(reached)
        .filter(|(_, reached)| !**reached)
        .map(|(p, _)| p)
        .collect();
    listed_note(parameters, &unreached).map(|(count, total, listed)| {
        format!(
            "{count} of the {total} trainable parameter tensors get no gradient from the \
             trained losses on the first batch ({listed}): each stays as it is until a gradient \
             reaches it (PyTorch's optimizers skip a parameter whose .grad is None, so weight \
             decay does not shrink it)"
        )
    })
}

/// How many of `parameters` are `selected`, of how many, and `1,424 of
/// 2,859 values: a, b`; `None` when none is selected.
fn listed_note(
    parameters: &[(String, Tensor)],
    selected: &[&(String, Tensor)],
) -> Option<(usize, usize, String)> {
    if selected.is_empty() {
        return None;
    }
    let values = |list: &mut dyn Iterator<Item = &Tensor>| -> u64 {
        list.map(Tensor::numel).map(|n| n as u64).sum()
    };
    let selected_values = values(&mut selected.iter().map(|(_, t)| t));
    let all_values = values(&mut parameters.iter().map(|(_, t)| t));
    const LISTED: usize = 6;
    let mut names: Vec<&str> = selected
        .iter()
        .take(LISTED)
        .map(|(n, _)| n.as_str())
        .collect();
    let more = selected.len().saturating_sub(LISTED);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    if selected.len() == parameters.len() {
        names.clear();
    }
    let listed = if names.is_empty() {
        String::new()
    } else {
        format!(": {}{more}", names.join(", "))
    };
    Some((
        selected.len(),
        parameters.len(),
        format!(
            "{} of {} values{listed}",
            crate::numfmt::thousands(selected_values),
            crate::numfmt::thousands(all_values),
        ),
    ))
}

/// A further name of a shared parameter, and the name it is trained under.
pub(super) type TiedName = (String, String);

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn frozen_parameters_are_counted_and_named() {
        let opts = (tch::Kind::Float, Device::Cpu);
        let trained = Tensor::zeros([2, 3], opts).set_requires_grad(true);
        let frozen = |n: i64| Tensor::zeros([n], opts);
        let mut listed = vec![("head.weight".to_string(), trained)];
        assert_eq!(frozen_note(&listed), None);
        listed.push(("backbone.weight".to_string(), frozen(1000)));
        listed.push(("backbone.bias".to_string(), frozen(424)));
        assert_eq!(
            frozen_note(&listed).unwrap(),
            "2 of 3 parameter tensors are frozen (requires_grad = False; 1,424 of 1,430 values: backbone.weight, backbone.bias) and not trained"
        );
        for i in 0..7 {
            listed.push((format!("layer{i}"), frozen(1)));
        }
        assert!(frozen_note(&listed).unwrap().contains(
            "backbone.weight, backbone.bias, layer0, layer1, layer2, layer3 and 3 more)"
        ));
    }

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
