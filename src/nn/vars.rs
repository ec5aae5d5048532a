//! VarStore helpers: variables in a stable order, and checkpoint entries
//! out of and back into a VarStore.

use anyhow::{bail, Result};
use tch::{nn, Tensor};

/// A VarStore's trainable variables in name order (stable across runs, so
/// optimizer state lines up on resume; `trainable_variables` is unordered).
pub fn sorted_variables(vs: &nn::VarStore) -> Vec<Tensor> {
    sorted_named_variables(vs)
        .into_iter()
        .map(|(_, t)| t)
        .collect()
}

/// [`sorted_variables`] with their names.
pub fn sorted_named_variables(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// A VarStore's variables as checkpoint entries, names prefixed.
pub fn named_state(vs: &tch::nn::VarStore, prefix: &str) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(n, t)| (format!("{prefix}{n}"), t))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Loads named tensors into a VarStore's variables (checkpoint restore).
pub fn load_into(
    vs: &tch::nn::VarStore,
    prefix: &str,
    lookup: &dyn Fn(&str) -> Option<Tensor>,
) -> Result<()> {
    let vars = vs.variables();
    tch::no_grad(|| -> Result<()> {
        for (name, var) in vars {
            let key = format!("{prefix}{name}");
            let Some(value) = lookup(&key) else {
                bail!("checkpoint lacks `{key}`")
            };
            if value.size() != var.size() {
                bail!(
                    "checkpoint `{key}` has shape {:?}, the model expects {:?}",
                    value.size(),
                    var.size()
                );
            }
            var.shallow_clone().copy_(&value);
        }
        Ok(())
    })
}
