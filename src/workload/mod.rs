//! Where losses come from. A workload owns the model θ and the data; the
//! engine asks it for batches and for named losses, and never looks inside.
#![warn(missing_docs)]

mod metric_direction;
pub mod synthetic;
pub mod torchscript;
pub mod video_text;

pub use metric_direction::{lower_is_better, score_direction, NAME_READS_NEITHER_WAY};

use crate::config::{Config, MetricGoal, WorkloadConfig, WorkloadKind};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

/// Named tensors, sample dimension first (the TorchScript contract's batch).
pub type Batch = Vec<(String, Tensor)>;

/// Named 0-dim loss tensors from one forward pass.
pub type Losses = BTreeMap<String, Tensor>;

/// A validation pass: mean losses and metrics over the validation split.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    /// Each loss's mean over the validation split, by name.
    pub losses: BTreeMap<String, f64>,
    /// The workload's metrics over the validation split (accuracy, recall, ...),
    /// by name.
    pub metrics: BTreeMap<String, f64>,
}

/// Building a workload leaves libtorch's RNG seeded from `workload.seed`:
/// the combiner, built next, draws its initialization from it.
pub trait Workload: Send {
    /// The workload kind as in the config (`synthetic`, ...).
    fn kind(&self) -> &'static str;
    /// Every loss the model produces.
    fn loss_names(&self) -> Vec<String>;
    /// The metric the header and `ls` show unless `workload.metric` says
    /// otherwise, and whether higher is better.
    fn primary_metric(&self) -> (String, bool);
    /// Every metric an evaluation reports (what `workload.metric` may name).
    fn metric_names(&self) -> Vec<String> {
        vec![self.primary_metric().0]
    }
    /// The metrics the model itself reports: [`Self::metric_names`] less
    /// any stand-in for a model that reports none (a TorchScript model's
    /// primary validation loss, named as the configured primary).
    fn reported_metrics(&self) -> Vec<String> {
        self.metric_names()
    }
    /// The VarStore holding θ.
    fn var_store(&self) -> &tch::nn::VarStore;
    /// θ, in a stable (name) order.
    fn parameters(&self) -> Vec<Tensor> {
        crate::nn::vars::sorted_variables(self.var_store())
    }
    /// The training batch for `step` (a pure function of seed and step, so a
    /// resumed run sees the same data).
    fn train_batch(&self, step: u64) -> Result<Batch>;
    /// How many training batches an epoch holds, where the data is stored
    /// (`check` says how many of them it scanned).
    fn batches_per_epoch(&self) -> Option<u64> {
        None
    }
    /// The training rows batch `step` holds, for workloads whose batches
    /// are row slices of stored data (the trace the Python replay reads).
    fn batch_rows(&self, _step: u64) -> Option<Vec<i64>> {
        None
    }
    /// Of the training rows of step `step`'s batch, those that hold NaN or
    /// ±inf in the data, by data tensor (for a skipped step's warning);
    /// `None` where the workload cannot tell.
    fn non_finite_rows(&self, _step: u64) -> Option<Vec<(String, Vec<i64>)>> {
        None
    }
    /// Why the training data's NaN or inf are no cause of a non-finite
    /// loss on a batch holding them, where the run's start found one (the
    /// model masks them, or makes NaN on clean rows as well).
    fn train_nan_not_the_cause(&self) -> Option<&'static str> {
        None
    }
    /// Of the training rows of step `step`'s batch, those whose forward
    /// fails when run alone (a label out of range, say), for a failed step's
    /// error; `None` where the workload cannot tell.
    fn rows_failing_alone(&self, _step: u64) -> Option<Vec<i64>> {
        None
    }
    /// Of the training rows of step `step`'s batch but those in
    /// `leave_out`, the ones that make one of `losses` non-finite when run
    /// alone, for a skipped step's warning when the data is clean (or its
    /// NaN rows, left out, are no cause); `None` where the workload cannot
    /// tell.
    fn rows_non_finite_alone(
        &self,
        _step: u64,
        _losses: &[String],
        _leave_out: &[i64],
    ) -> Option<Vec<i64>> {
        None
    }
    /// A held-out batch (for `meltr.val_source = "val"`).
    fn val_batch(&self, index: u64) -> Result<Batch>;
    /// One forward pass: every loss, differentiable w.r.t. θ.
    fn losses(&self, batch: &Batch) -> Result<Losses>;
    /// The loss `name` alone, the same value as `losses(batch)[name]`. A
    /// workload may compute it without the others: the meta step's
    /// validation forward needs only the primary.
    fn loss(&self, batch: &Batch, name: &str) -> Result<Tensor> {
        take_loss(self.losses(batch)?, name)
    }
    /// The full validation pass.
    fn evaluate(&self) -> Result<Evaluation>;
    /// What a run should know about how the model was taken in (e.g. tied
    /// weights trained under one name), said once at its start.
    fn notes(&self) -> Vec<String> {
        Vec::new()
    }
    /// Parameters no trained loss reached on the first batch (a head the
    /// forward never uses), sharing the model's storage: named at the start;
    /// with data-parallel ranks the trainer leaves each as it is until a
    /// gradient reaches it, as PyTorch's optimizers skip a parameter whose
    /// `.grad` is `None` (a single process skips any unreached parameter at
    /// each step).
    fn unreached_parameters(&self) -> Vec<Tensor> {
        Vec::new()
    }
    /// What in the data will likely go wrong (non-finite values), said
    /// once at the start as warnings.
    fn data_warnings(&self) -> Vec<String> {
        Vec::new()
    }
    /// The model's buffers (BatchNorm's running statistics, counters), by
    /// name, sharing its storage: a training-mode forward may move them.
    /// The built-in workloads have none.
    fn buffers(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(Vec::new())
    }
    /// Everything to checkpoint (parameters and buffers), by name.
    fn state(&self) -> Vec<(String, Tensor)> {
        crate::nn::vars::named_state(self.var_store(), "")
    }
    /// Restores `state`; a missing or mis-shaped entry is an error.
    fn load_state(&mut self, lookup: &dyn Fn(&str) -> Option<Tensor>) -> Result<()> {
        crate::nn::vars::load_into(self.var_store(), "", lookup)
    }
}

/// A copy of a workload's buffers, put back after forwards that a PyTorch
/// loop of the public algorithm does not run (load-time checks, the
/// factorized meta step's further evaluations of its training batch), so
/// that BatchNorm statistics move exactly as they would there; and after a
/// skipped update's forwards, so that NaN rows leave them as they were.
pub struct SavedBuffers(Vec<Tensor>);

impl SavedBuffers {
    /// Copies the workload's buffers as they are now.
    pub fn take(workload: &dyn Workload) -> Result<Self> {
        let buffers = workload.buffers()?;
        Ok(SavedBuffers(tch::no_grad(|| {
            buffers.iter().map(|(_, t)| t.copy()).collect()
        })))
    }

    /// Writes the copies back into the workload's buffers.
    pub fn restore(&self, workload: &dyn Workload) -> Result<()> {
        self.restore_unless(workload, None)
    }

    /// Writes back only the copies whose values the buffers no longer hold:
    /// a buffer no forward moves (a mask, a positional table) is left
    /// untouched, so graphs that saved it stay valid (an in-place write,
    /// even of equal values, invalidates them). One host sync per buffer.
    pub fn restore_changed(&self, workload: &dyn Workload) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let live = self.live(workload)?;
        tch::no_grad(|| {
            for ((_, buffer), saved) in live.iter().zip(&self.0) {
                if !buffer.equal(saved) {
                    buffer.shallow_clone().copy_(saved);
                }
            }
        });
        Ok(())
    }

    /// The names of the buffers whose values differ from the copies now.
    pub fn changed(&self, workload: &dyn Workload) -> Result<Vec<String>> {
        let live = self.live(workload)?;
        Ok(live
            .into_iter()
            .zip(&self.0)
            .filter(|((_, buffer), saved)| !buffer.equal(saved))
            .map(|((name, _), _)| name)
            .collect())
    }

    /// The workload's buffers, as many as were saved.
    fn live(&self, workload: &dyn Workload) -> Result<Vec<(String, Tensor)>> {
        let live = workload.buffers()?;
        anyhow::ensure!(
            live.len() == self.0.len(),
            "the model has {} buffers, {} were saved",
            live.len(),
            self.0.len()
        );
        Ok(live)
    }

    /// Writes the copies back unless `kept` (a boolean scalar on the
    /// buffers' device) is true, without a host sync: a skipped update's
    /// forward leaves BatchNorm's statistics as they were, as it leaves θ.
    pub fn restore_unless(&self, workload: &dyn Workload, kept: Option<&Tensor>) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let live = self.live(workload)?;
        tch::no_grad(|| {
            for ((name, buffer), saved) in live.iter().zip(&self.0) {
                let value = match kept {
                    Some(kept) => buffer
                        .f_where_self(kept, saved)
                        .with_context(|| format!("cannot put buffer `{name}` back"))?,
                    None => saved.shallow_clone(),
                };
                buffer.shallow_clone().copy_(&value);
            }
            Ok(())
        })
    }
}

/// The loss `name` out of a forward's losses.
pub fn take_loss(mut losses: Losses, name: &str) -> Result<Tensor> {
    match losses.remove(name) {
        Some(loss) => Ok(loss),
        None => Err(missing_loss(name, &losses)),
    }
}

/// A loss the forward did not return: what it returned instead, and the
/// rule a masked loss breaks when it returns nothing on a batch without
/// what it masks (walkthrough Q's run failed at step 3 with the name only).
fn missing_loss(name: &str, returned: &Losses) -> anyhow::Error {
    let returned: Vec<String> = returned
        .keys()
        .filter(|k| !k.starts_with(torchscript::METRIC_PREFIX))
        .map(|k| format!("`{k}`"))
        .collect();
    anyhow::anyhow!(
        "the model returned no loss named `{name}` (it returned {}): every loss must be returned \
         on every batch; a masked loss returns `torch.zeros(())` on a batch without what it masks",
        if returned.is_empty() {
            "none".to_string()
        } else {
            returned.join(", ")
        }
    )
}

/// How a loss of `numel` values in a shape becomes the 0-dim tensor a
/// model's forward must return: one value ([1], [1, 1]) needs no
/// reduction (a held-out walkthrough was told to take its `.mean()`).
fn to_scalar(numel: usize) -> &'static str {
    match numel {
        1 => "drop its dimensions, e.g. with .squeeze() or .reshape(())",
        _ => "reduce it, e.g. with .mean()",
    }
}

/// Builds the configured workload on `device` in `kind`. `saved_module`:
/// a TorchScript workload's module as a resumed run's checkpoint holds it
/// (with its buffers), under [`saved_module_key`].
pub fn build(
    config: &Config,
    device: Device,
    kind: Kind,
    saved_module: Option<&Tensor>,
) -> Result<Box<dyn Workload>> {
    let workload: Box<dyn Workload> = match config.workload.kind {
        WorkloadKind::Synthetic => Box::new(synthetic::Synthetic::new(config, device, kind)),
        WorkloadKind::VideoText => {
            if config.workload.init_from.as_deref() == Some("foundation") {
                ensure_foundation()?;
            }
            Box::new(video_text::VideoText::new(config, None, device, kind)?)
        }
        WorkloadKind::TorchScript => Box::new(torchscript::TorchScript::new(
            config,
            device,
            kind,
            saved_module,
        )?),
    };
    check_loss_names(config, &workload.loss_names(), &workload.reported_metrics())?;
    Ok(workload)
}

/// Where a checkpoint keeps a TorchScript workload's module.
pub fn saved_module_key() -> String {
    format!("model.{}", torchscript::MODULE_ENTRY)
}

/// Checks what can be checked without building the workload, so that a
/// config that cannot start is refused before its session folder exists:
/// the loss names of the built-in workloads, and that a TorchScript
/// workload's files exist (its loss names come from its module).
pub fn preflight(config: &Config) -> Result<()> {
    let known: Option<&[&str]> = match config.workload.kind {
        WorkloadKind::Synthetic => Some(&synthetic::LOSSES),
        WorkloadKind::VideoText => Some(&video_text::LOSSES),
        WorkloadKind::TorchScript => None,
    };
    if let Some(names) = known {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        check_loss_names(config, &names, &[])?;
    }
    if config.workload.kind == WorkloadKind::TorchScript {
        for (key, path) in [
            ("workload.model", &config.workload.model),
            ("workload.train", &config.workload.train),
            ("workload.val", &config.workload.val),
        ] {
            if let Some(path) = path {
                if !std::path::Path::new(path).exists() {
                    bail!("{key}: {path} does not exist");
                }
            }
        }
    }
    Ok(())
}

/// Steps of the built-in foundation pretraining.
pub const FOUNDATION_STEPS: u64 = 1500;

/// Pretrains the built-in video-text foundation checkpoint if it is not
/// cached yet, with progress on stderr (the TUI is not open yet).
pub fn ensure_foundation() -> Result<()> {
    let path = video_text::default_foundation_path();
    if path.exists() {
        return Ok(());
    }
    say_err!(
        "pretraining the video-text foundation model (first use; cached at {})",
        path.display()
    );
    let start = std::time::Instant::now();
    video_text::pretrain(FOUNDATION_STEPS, 0, &path, |step, loss| {
        say_err!(
            "  pretrain step {step:>5}/{FOUNDATION_STEPS}  summed loss {loss:.4}  ({:.0} s)",
            start.elapsed().as_secs_f64()
        );
    })?;
    say_err!(
        "foundation model ready in {:.0} s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Every configured loss must be one the workload produces. A name that
/// comes from the built-in defaults (a config without `workload.primary` or
/// `workload.auxiliary` gets the synthetic workload's) is said to be one,
/// with the keys to set for this model; one of the model's `metrics` is
/// said to be a metric (a walkthrough set `workload.primary = "accuracy"`).
pub fn check_loss_names(config: &Config, available: &[String], metrics: &[String]) -> Result<()> {
    let list = available.join(", ");
    let metric = |name: &str| {
        // As the model returns it too (walkthrough J listed `metric/acc`).
        let bare = name
            .strip_prefix(torchscript::METRIC_PREFIX)
            .unwrap_or(name);
        if metrics.iter().any(|m| m == bare) {
            format!(" (`{name}` is one of the model's evaluation metrics, which workload.metric picks from; losses are what training combines)")
        } else {
            String::new()
        }
    };
    // The loss meant, first (walkthrough R's mistyped primary was listed
    // among the losses, unpointed).
    let meant = |name: &str| {
        crate::config::name_meant(name, available.iter().map(String::as_str))
            .map_or(String::new(), |n| format!(" (did you mean \"{n}\"?)"))
    };
    let defaults = crate::config::WorkloadConfig::default();
    let w = &config.workload;
    if !available.contains(&w.primary) {
        let origin = if w.primary == defaults.primary {
            " (the built-in default: does the config set workload.primary?)"
        } else {
            ""
        };
        bail!(
            "workload.primary = \"{}\"{origin} is not a loss of this workload{}{}; it has: {list}",
            w.primary,
            meant(&w.primary),
            metric(&w.primary)
        );
    }
    // Every missing name at once (walkthrough B's model lacked two, and
    // the error named the first).
    let missing: Vec<String> = w
        .auxiliary
        .iter()
        .filter(|aux| !available.contains(aux))
        .map(|aux| format!("\"{aux}\"{}{}", meant(aux), metric(aux)))
        .collect();
    if !missing.is_empty() {
        let origin = if w.auxiliary == defaults.auxiliary {
            " (the built-in default list: does the config set workload.auxiliary?)"
        } else {
            ""
        };
        let others: Vec<String> = available
            .iter()
            .filter(|n| **n != w.primary)
            .map(|n| format!("\"{n}\""))
            .collect();
        let (named, verb) = match missing.as_slice() {
            [one] => (one.clone(), "which is not a loss"),
            [first @ .., last] => (
                format!("{} and {last}", first.join(", ")),
                "which are not losses",
            ),
            [] => unreachable!("checked above"),
        };
        bail!(
            "workload.auxiliary lists {named}{origin}, {verb} of this workload; it has: {list}. \
             To combine all its other losses: workload.auxiliary = [{}]",
            others.join(", ")
        );
    }
    Ok(())
}

/// The primary metric and whether higher is better: `workload.metric` and
/// `workload.metric_goal` where the config sets them, else the workload's
/// own choice. A metric the workload does not report is an error that
/// lists the ones it does.
pub fn primary_metric(workload: &dyn Workload, w: &WorkloadConfig) -> Result<(String, bool)> {
    let (default, default_higher) = workload.primary_metric();
    let name = match &w.metric {
        None => default.clone(),
        Some(name) => {
            // As the model names it (`metric/r2`) or as the log does (`r2`).
            let name = name
                .strip_prefix(crate::workload::torchscript::METRIC_PREFIX)
                .unwrap_or(name);
            let name = &name.to_string();
            let reported = workload.metric_names();
            if !reported.contains(name) {
                // (Walkthrough Z2's `R2` for `r2` had no suggestion.)
                let meant = crate::config::name_meant(name, reported.iter().map(String::as_str))
                    .map_or(String::new(), |n| format!(" (did you mean \"{n}\"?)"));
                bail!(
                    "workload.metric = \"{name}\" is not a metric this workload reports{meant}; it reports: {} \
                     (a TorchScript model's `metric/...` outputs in eval mode, without the prefix)",
                    reported.join(", ")
                );
            }
            name.clone()
        }
    };
    let higher_is_better = match w.metric_goal {
        Some(goal) => goal == MetricGoal::Max,
        None if name == default => default_higher,
        None => !lower_is_better(&name),
    };
    Ok((name, higher_is_better))
}

/// Stacks the configured losses into `[K]`, primary first.
pub fn select(losses: &Losses, order: &[String]) -> Result<Tensor> {
    let picked: Result<Vec<&Tensor>> = order
        .iter()
        .map(|name| losses.get(name).ok_or_else(|| missing_loss(name, losses)))
        .collect();
    Ok(Tensor::stack(&picked?, 0))
}

/// Rows as `[3, 17, ...]`, the first [`ROWS_LISTED`] of a larger batch
/// followed by how many there are.
pub fn listed_rows(rows: &[i64]) -> String {
    if rows.len() <= ROWS_LISTED {
        return format!("{rows:?}");
    }
    let shown: Vec<String> = rows[..ROWS_LISTED].iter().map(i64::to_string).collect();
    format!("[{}, … ({} rows)]", shown.join(", "), rows.len())
}

/// How many of a batch's rows an error or warning lists.
const ROWS_LISTED: usize = 64;

/// What a failed batch's error adds about the rows that fail on their own
/// ([`Workload::rows_failing_alone`]).
pub fn failing_alone_note(rows: &[i64]) -> String {
    match rows {
        [row] => format!("; of those, row {row} fails on its own"),
        _ => format!("; of those, rows {} fail on their own", listed_rows(rows)),
    }
}

/// Row indices of batch `index` from a split of `samples` rows: drawn with
/// replacement by a generator seeded with (seed, stream, index), so a batch
/// is a pure function of its index (resumed runs see the same data).
pub fn batch_rows(
    seed: u64,
    stream: u64,
    index: u64,
    samples: i64,
    batch_size: i64,
    device: Device,
) -> Tensor {
    let mut rng = crate::nn::rng::SplitMix::new(seed, stream.wrapping_add(index.wrapping_mul(2)));
    let rows: Vec<i64> = (0..batch_size)
        .map(|_| rng.below(samples as u64) as i64)
        .collect();
    Tensor::from_slice(&rows).to_device(device)
}

/// Batches of row indices per host-to-device copy (see [`RowCache`]).
pub const ROW_BLOCK: u64 = 256;

/// Row indices for [`batch_rows`] on a GPU, made a block of [`ROW_BLOCK`]
/// batches at a time: a copy from pageable host memory to the device waits
/// for the device, so one per step would be a host sync on the hot path.
/// Holds the newest block of each stream.
#[derive(Default)]
pub struct RowCache(std::cell::RefCell<std::collections::HashMap<u64, (u64, Tensor)>>);

impl RowCache {
    /// The same indices as [`batch_rows`] (bit for bit), from the cache.
    pub fn rows(
        &self,
        seed: u64,
        stream: u64,
        index: u64,
        samples: i64,
        batch_size: i64,
        device: Device,
    ) -> Tensor {
        if device == Device::Cpu {
            return batch_rows(seed, stream, index, samples, batch_size, device);
        }
        let block = index / ROW_BLOCK;
        let mut cache = self.0.borrow_mut();
        let entry = cache
            .entry(stream)
            .or_insert_with(|| (u64::MAX, Tensor::new()));
        if entry.0 != block {
            *entry = (
                block,
                rows_of_block(seed, stream, block, samples, batch_size).to_device(device),
            );
        }
        entry.1.get((index % ROW_BLOCK) as i64)
    }
}

/// `[ROW_BLOCK, batch_size]`: the rows of batches `block·ROW_BLOCK ..`.
fn rows_of_block(seed: u64, stream: u64, block: u64, samples: i64, batch_size: i64) -> Tensor {
    let host: Vec<Tensor> = (block * ROW_BLOCK..(block + 1) * ROW_BLOCK)
        .map(|i| batch_rows(seed, stream, i, samples, batch_size, Device::Cpu))
        .collect();
    Tensor::stack(&host, 0)
}

#[cfg(test)]
mod tests;
