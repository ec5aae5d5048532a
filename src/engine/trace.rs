//! `train.trace`: a run written down so that `scripts/meltr_replay.py trace`
//! can replay it step for step in PyTorch, the public algorithm's ground
//! truth, and compare. In the session folder, `trace/` holds:
//! - `init.safetensors`: `theta.<name>` (the model's parameters, named as
//!   the workload's VarStore names them) and `phi.<name>` (the combiner's);
//! - `steps.jsonl`: per step `{"step", "rows", "meta"}`: the training rows
//!   of its batch and, on meta steps, `{"train_step", "val_step"}`, the
//!   steps whose batches the meta step drew (`val_step` null for
//!   `meltr.val_source = "val"`, `train_step`'s for `"train-batch"`);
//! - `state-<step>.safetensors`: θ and φ after the step (after its meta
//!   step), `losses` (the inner forward's loss vector), and on meta steps
//!   `hyper.<name>` (the hypergradient before clipping) and `reg`; and the
//!   model's buffers as `buffer.<name>` (BatchNorm statistics);
//! - `loss-scale.safetensors`: `loss_scale`, the factors MELTR reads the
//!   losses at (`meltr.loss_scale` other than `raw`), measured before step 1.

use crate::meltr::combiner::Combiner;
use crate::nn::vars::sorted_named_variables;
use crate::session::SessionDir;
use crate::workload::Workload;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Writes `train.trace`'s files (see the module docs) as the run goes.
pub struct Tracer {
    dir: PathBuf,
    steps: std::fs::File,
    theta_names: Vec<String>,
    phi_names: Vec<String>,
    /// This step's inner losses and meta step, until the step is written.
    losses: Option<Tensor>,
    meta: Option<MetaTrace>,
}

struct MetaTrace {
    train_step: u64,
    val_step: Option<u64>,
    hyper: Vec<Tensor>,
    reg: Tensor,
}

impl Tracer {
    /// Opens `dir/trace/`; at step 0 writes the initial state.
    pub fn open(
        dir: &Path,
        step: u64,
        workload: &dyn Workload,
        combiner: &dyn Combiner,
    ) -> Result<Tracer> {
        if workload.batch_rows(1).is_none() {
            bail!(
                "train.trace needs a workload whose batches are rows of stored data (torchscript); `{}` has none",
                workload.kind()
            );
        }
        let dir = SessionDir::new(dir).trace();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let theta_names = trainable_names(workload.var_store());
        let phi_names = trainable_names(combiner.var_store());
        let steps = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("steps.jsonl"))
            .with_context(|| format!("cannot open {}", dir.join("steps.jsonl").display()))?;
        let tracer = Tracer {
            dir,
            steps,
            theta_names,
            phi_names,
            losses: None,
            meta: None,
        };
        if step == 0 {
            let params = crate::nn::vars::sorted_variables(workload.var_store());
            let tensors = tracer.named_state(&params, combiner);
            tracer.write_tensors("init.safetensors", &tensors)?;
        }
        Ok(tracer)
    }

    /// The inner forward's loss vector of the current step.
    pub fn inner_losses(&mut self, losses: &Tensor) {
        self.losses = Some(losses.detach().copy());
    }

    /// The current step's meta step: its picks and hypergradient (before
    /// clipping).
    pub fn meta(&mut self, train_step: u64, val_step: Option<u64>, hyper: &[Tensor], reg: &Tensor) {
        self.meta = Some(MetaTrace {
            train_step,
            val_step,
            hyper: hyper.iter().map(|g| g.detach().copy()).collect(),
            reg: reg.detach().copy(),
        });
    }

    /// Writes step `step` (θ: the model's parameters in name order;
    /// `buffers`: the model's, by name).
    pub fn step(
        &mut self,
        step: u64,
        rows: Option<Vec<i64>>,
        theta: &[Tensor],
        combiner: &dyn Combiner,
        buffers: Vec<(String, Tensor)>,
    ) -> Result<()> {
        let mut tensors = self.named_state(theta, combiner);
        tensors.extend(buffers.into_iter().map(|(n, t)| (format!("buffer.{n}"), t)));
        if let Some(losses) = self.losses.take() {
            tensors.push(("losses".into(), losses));
        }
        let meta = self.meta.take();
        if let Some(m) = &meta {
            for (name, g) in self.phi_names.iter().zip(&m.hyper) {
                tensors.push((format!("hyper.{name}"), g.shallow_clone()));
            }
            tensors.push(("reg".into(), m.reg.shallow_clone()));
        }
        self.write_tensors(&format!("state-{step}.safetensors"), &tensors)?;
        let line = serde_json::json!({
            "step": step,
            "rows": rows,
            "meta": meta.as_ref().map(|m| serde_json::json!({
                "train_step": m.train_step,
                "val_step": m.val_step,
            })),
        });
        writeln!(self.steps, "{line}").context("cannot append to trace/steps.jsonl")
    }

    /// Writes the factors MELTR reads the losses at (measured before the
    /// first step).
    pub fn loss_scale(&self, scale: &Tensor) -> Result<()> {
        self.write_tensors(
            "loss-scale.safetensors",
            &[("loss_scale".to_string(), scale.shallow_clone())],
        )
    }

    fn named_state(&self, theta: &[Tensor], combiner: &dyn Combiner) -> Vec<(String, Tensor)> {
        let theta = self
            .theta_names
            .iter()
            .zip(theta)
            .map(|(n, t)| (format!("theta.{n}"), t.detach()));
        let phi = self
            .phi_names
            .iter()
            .zip(combiner.params())
            .map(|(n, t)| (format!("phi.{n}"), t.detach()));
        theta.chain(phi).collect()
    }

    fn write_tensors(&self, file: &str, tensors: &[(String, Tensor)]) -> Result<()> {
        let path = self.dir.join(file);
        let cpu: Vec<(String, Tensor)> = tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.to_device(tch::Device::Cpu).contiguous()))
            .collect();
        Tensor::write_safetensors(&cpu, &path)
            .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Trainable variable names in the order of
/// [`crate::nn::vars::sorted_variables`].
fn trainable_names(vs: &tch::nn::VarStore) -> Vec<String> {
    sorted_named_variables(vs)
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}
