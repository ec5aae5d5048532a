//! Bring your own model: a TorchScript module plus safetensors data.
//!
//! The contract (DESIGN.md, "Bring-your-own model"): `forward(batch:
//! Dict[str, Tensor]) -> Dict[str, Tensor]` returns 0-dim tensors; keys are
//! losses except `metric/*`, which are evaluation metrics averaged over
//! every validation row (`validation.rs`). Every tensor of a data file has
//! the sample dimension first; a batch is the same row slice of every
//! tensor, taken from a per-epoch permutation drawn from the seed (a pure
//! function of the step, so a resumed run sees the same data).
//!
//! Everything is checked when the workload is built, with messages that say
//! what to fix. The module's parameters are registered in a VarStore (same
//! tensors, so the engine's optimizer trains the module in place); its
//! buffers (e.g. BatchNorm statistics) are not parameters, so checkpoints
//! also carry the whole serialized module, and a resumed run loads it from
//! there.

use super::{Batch, Evaluation, Losses, SavedBuffers, Workload};
use crate::config::Config;
use crate::nn::rng::SplitMix;
use anyhow::{anyhow, bail, Context, Result};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use tch::{nn, CModule, Device, IValue, Kind, Tensor};

mod buffers;
pub use buffers::named_buffers;
mod data;
mod errors;
mod forward;
mod losses;
mod masking;
pub use masking::NOT_FINITE_ON_CLEAN_ROWS;
mod params;
mod validation;

use data::Split;
use errors::describe;
pub use errors::torch_message;
use params::{distinct_parameters, TiedName};

/// Checkpoint entry holding the serialized module (bytes as a u8 tensor).
pub const MODULE_ENTRY: &str = "__torchscript_module__";

/// Keys of `forward`'s result with this prefix are metrics, not losses.
pub const METRIC_PREFIX: &str = "metric/";

/// A user's TorchScript module and its safetensors train and validation
/// data, under the contract above.
pub struct TorchScript {
    vs: nn::VarStore,
    /// `RefCell` because switching train/eval mode needs `&mut`, and
    /// `Workload::evaluate` takes `&self`.
    module: RefCell<CModule>,
    train: Split,
    val: Split,
    batch_size: i64,
    /// Rows per evaluation batch (`workload.eval_batch_size`, else
    /// `batch_size`).
    eval_batch_size: i64,
    seed: u64,
    primary: String,
    /// `workload.auxiliary`: with the primary, the losses trained on (the
    /// model may return more; those are only logged).
    auxiliary: Vec<String>,
    loss_names: Vec<String>,
    metric_names: Vec<String>,
    /// The training permutation of the current epoch, on the device.
    epoch_order: RefCell<Option<(u64, Tensor)>>,
    /// Whether the module exports the optional `loss(batch, name)`.
    loss_method: bool,
    /// The model file, as errors name it (`workload.model PATH`).
    model_label: String,
    /// The data files, as errors name them.
    val_path: String,
    train_path: String,
    /// The loss names in the order `forward` returns them.
    returned_losses: Vec<String>,
    /// The `metric/*` outputs of the first training batch in training
    /// mode (the engine reads metrics in eval mode only).
    train_mode_metrics: Vec<String>,
    /// Parameters listed under more than one name (tied weights): each
    /// further name with the name it is trained under.
    shared: Vec<TiedName>,
    /// Said at the start: a `workload.batch_size` more than the training
    /// set has (a batch is then the whole set), data read in another
    /// precision.
    data_notes: Vec<String>,
    /// Non-finite values in the data files, by tensor and row.
    non_finite: masking::NonFiniteData,
    /// Parameters no trained loss reached on the first batch
    /// ([`Workload::unreached_parameters`]).
    unreached: Vec<Tensor>,
    /// Outputs `forward` returned in another floating-point kind than the
    /// run's, and that kind: cast, and said at the start (walkthrough L's
    /// f64 loss was cast unsaid).
    cast_outputs: RefCell<Vec<(String, Kind)>>,
    /// The run's floating-point kind. A loss the model returns in another
    /// (an f64 reduction, a half-precision head) is cast to it, so the loss
    /// vector and MELTR see one kind; its gradient flows back through the
    /// cast.
    kind: Kind,
    /// Why every call of the module runs with autograd on, where it must:
    /// its forward fails without it (`torch.autograd.grad` inside it: a
    /// PINN's residual, a gradient penalty) or its losses differ without it
    /// ([`TorchScript::detect_grad_in_forward`]).
    grad_in_forward: RefCell<Option<String>>,
}

impl TorchScript {
    /// Loads the module and data named by the config (paths already
    /// absolute) onto `device` in `kind`; `saved_module` (a checkpoint's
    /// serialized module) replaces `workload.model` when resuming.
    pub fn new(
        config: &Config,
        device: Device,
        kind: Kind,
        saved_module: Option<&Tensor>,
    ) -> Result<TorchScript> {
        let w = &config.workload;
        let model_path = w.model.as_deref().context("workload.model is required")?;
        let model_label = match saved_module {
            Some(_) => format!("workload.model {model_path} (the copy saved in the checkpoint)"),
            None => format!("workload.model {model_path}"),
        };
        let mut module = match saved_module {
            Some(bytes) => {
                let bytes = Vec::<u8>::try_from(bytes)?;
                CModule::load_data_on_device(&mut std::io::Cursor::new(bytes), device).map_err(
                    |e| {
                        anyhow!(
                            "the checkpoint's TorchScript module does not load: {}",
                            torch_message(&e)
                        )
                    },
                )?
            }
            None => load_module(model_path, device)?,
        };
        buffers::move_and_cast(&mut module, device, kind)?;
        module.set_train();
        let vs = nn::VarStore::new(device);
        let parameters = module.named_parameters().map_err(|e| {
            anyhow!(
                "workload.model: {model_path}: cannot list parameters: {}",
                torch_message(&e)
            )
        })?;
        if parameters.is_empty() {
            bail!("workload.model: {model_path} has no parameters to train");
        }
        let (parameters, shared) = distinct_parameters(parameters);
        let frozen = params::frozen_note(&parameters);
        for (name, tensor) in parameters {
            // Same tensor as the module's: training the VarStore trains the module.
            let trainable = tensor.requires_grad();
            let _ = vs.root().add(&name.replace('.', "_"), tensor, trainable);
        }
        let train_path = w.train.as_deref().context("workload.train is required")?;
        let train = Split::load("workload.train", train_path, device, kind)?;
        let val_path = w.val.as_deref().context("workload.val is required")?;
        let val = Split::load("workload.val", val_path, device, kind)?;
        val.check_like("workload.val", val_path, &train, train_path)?;
        let whole_set_batches = (w.batch_size as i64 > train.samples).then(|| {
            format!(
                "workload.batch_size = {} is more than the {} samples of workload.train {train_path}: \
                 every training batch is the whole set ({} rows)",
                w.batch_size, train.samples, train.samples
            )
        });
        let data_notes = [
            frozen.map(|note| format!("workload.model {model_path}: {note}")),
            whole_set_batches,
            train.cast_note("workload.train", train_path, kind),
            val.cast_note("workload.val", val_path, kind),
        ];
        let mut workload = TorchScript {
            data_notes: data_notes.into_iter().flatten().collect(),
            non_finite: masking::NonFiniteData::default(),
            unreached: Vec::new(),
            cast_outputs: RefCell::new(Vec::new()),
            vs,
            module: RefCell::new(module),
            batch_size: (w.batch_size as i64).min(train.samples),
            eval_batch_size: w
                .eval_batch_size
                .map_or((w.batch_size as i64).min(train.samples), |rows| rows as i64),
            train,
            val,
            seed: w.seed,
            primary: w.primary.clone(),
            auxiliary: w.auxiliary.clone(),
            loss_names: Vec::new(),
            returned_losses: Vec::new(),
            train_mode_metrics: Vec::new(),
            metric_names: Vec::new(),
            epoch_order: RefCell::new(None),
            loss_method: false,
            model_label,
            val_path: val_path.to_string(),
            train_path: train_path.to_string(),
            shared,
            kind,
            grad_in_forward: RefCell::new(None),
        };
        // The checks' training-mode forwards must not move BatchNorm
        // statistics: a PyTorch loop starts from the exported ones.
        let exported = SavedBuffers::take(&workload)?;
        workload.inspect_outputs(model_path)?;
        if let Some(note) = workload.find_unreached()? {
            workload
                .data_notes
                .push(format!("workload.model {model_path}: {note}"));
        }
        workload.detect_grad_in_forward()?;
        workload.check_val_batches()?;
        workload.non_finite = workload.scan_non_finite();
        exported.restore(&workload)?;
        // The combiner's initialization draws from libtorch's RNG next.
        tch::manual_seed(w.seed as i64);
        Ok(workload)
    }

    /// The losses the config trains on: the primary, then the auxiliaries.
    fn trained_losses(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.primary).chain(&self.auxiliary)
    }

    /// The loss names in the order `forward` returns them (a model's own
    /// order usually puts its main task first).
    pub fn losses_in_returned_order(&self) -> &[String] {
        &self.returned_losses
    }

    /// Runs `forward` on the first training batch and checks the result
    /// against the contract; records the loss and metric names.
    fn inspect_outputs(&mut self, model_path: &str) -> Result<()> {
        let batch = self.train.slice(0, self.batch_size);
        let (size, last) = (self.batch_size, self.batch_size.saturating_sub(1));
        // Not the run's first batch: its batches are shuffled.
        let first_batch = move || {
            format!("the training data's first {size} rows in file order (0–{last}, not the run's shuffled first batch), where the model's outputs are checked")
        };
        let in_order = self.forward_in_order(&batch).map_err(|error| {
            let alone = self
                .rows_failing_alone_of(&(0..size).collect::<Vec<_>>())
                .map_or(String::new(), |rows| super::failing_alone_note(&rows));
            let error = self.name_tensors_lacking(error, validation::Lacking::Train);
            error.context(format!("{}{alone}", first_batch()))
        })?;
        self.returned_losses = in_order
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| !name.starts_with(METRIC_PREFIX))
            .collect();
        let outputs: BTreeMap<String, Tensor> = in_order.into_iter().collect();
        self.train_mode_metrics = outputs
            .keys()
            .filter_map(|name| name.strip_prefix(METRIC_PREFIX))
            .map(str::to_string)
            .collect();
        let losses: Vec<_> = outputs
            .iter()
            .filter(|(name, _)| !name.starts_with(METRIC_PREFIX))
            .collect();
        if losses.is_empty() {
            bail!("workload.model: {model_path}: forward returned only metrics; it must return at least one loss (a key without the `{METRIC_PREFIX}` prefix)");
        }
        for (name, loss) in &losses {
            if !loss.is_floating_point() {
                bail!("workload.model: {model_path}: loss `{name}` is a {:?} tensor; losses must be floating point", loss.kind());
            }
        }
        self.loss_names = losses.iter().map(|(n, _)| n.to_string()).collect();
        let trained: Vec<&String> = self.trained_losses().collect();
        if trained.iter().any(|name| !self.loss_names.contains(name)) {
            return Ok(()); // workload::build names the missing loss
        }
        // Only the losses the config trains on need a gradient: a model may
        // return others to be logged (a constant baseline, say).
        let constant: Vec<String> = losses
            .iter()
            .filter(|(name, loss)| trained.contains(name) && !loss.requires_grad())
            .map(|(name, _)| name.to_string())
            .collect();
        self.check_some_batch_differentiates(model_path, constant)?;
        // In eval mode: the check must not move running statistics.
        self.module.borrow_mut().set_eval();
        let checked = self.check_loss_method(&batch);
        self.module.borrow_mut().set_train();
        self.loss_method = checked.with_context(first_batch)?;
        Ok(())
    }

    /// Whether the module exports `loss(batch, name)`; when it does, its
    /// primary loss must match `forward`'s (else the meta step would
    /// optimize something else than the model reports).
    fn check_loss_method(&self, batch: &Batch) -> Result<bool> {
        let name = &self.primary;
        // Both calls from one seed: a model that samples in eval mode (a
        // VAE's reparameterisation, walkthrough L1) draws alike in each.
        // (Under the caller's hold on the global draws; the end of
        // `TorchScript::new` seeds the generator again.)
        let seed = crate::nn::rng::forward_seed(self.seed, 0, crate::nn::rng::Forward::Inner);
        tch::manual_seed(seed);
        let value = match self.call_loss(batch, name) {
            Err(e) if e.to_string().contains(MISSING_LOSS_METHOD) => return Ok(false),
            other => other?,
        };
        tch::manual_seed(seed);
        let Some(expected) = self.forward(batch)?.remove(name) else {
            bail!("{}: forward returned no `{name}`", self.model_label);
        };
        let (got, want) = (value.double_value(&[]), expected.double_value(&[]));
        if !value.requires_grad() {
            bail!("{}: loss(batch, \"{name}\") is not differentiable with respect to any parameter (it does not require grad)", self.model_label);
        }
        if (got - want).abs() > 1e-5 * (1.0 + want.abs()) {
            bail!("{}: loss(batch, \"{name}\") = {got} but forward(batch)[\"{name}\"] = {want}; the optional `loss` method must return forward's value", self.model_label);
        }
        Ok(true)
    }

    /// The module's `loss(batch, name)` method.
    fn call_loss(&self, batch: &Batch, name: &str) -> Result<Tensor> {
        plain_interpreter();
        let output = self
            .call_module(|| {
                self.module.borrow().method_is(
                    LOSS_METHOD,
                    &[batch_ivalue(batch), IValue::String(name.to_string())],
                )
            })
            .map_err(|e| {
                anyhow!(
                    "{}: loss(batch, \"{name}\") failed: {}",
                    self.model_label,
                    torch_message(&e)
                )
            })?;
        match output {
            IValue::Tensor(t) if t.dim() == 0 => Ok(self.in_run_kind(t)),
            other => bail!(
                "loss(batch, \"{name}\") must return a 0-dim tensor; it returned {}",
                describe(&other)
            ),
        }
    }

    /// Full training batches an epoch (the rows left over are not drawn
    /// that epoch).
    fn per_epoch(&self) -> u64 {
        (self.train.samples / self.batch_size).max(1) as u64
    }

    /// Row indices of training batch `step`: consecutive slices of a
    /// per-epoch permutation (batches never straddle epochs).
    fn train_rows(&self, step: u64) -> Tensor {
        let n = self.train.samples;
        let per_epoch = self.per_epoch();
        let (epoch, position) = (step / per_epoch, (step % per_epoch) as i64);
        let mut cached = self.epoch_order.borrow_mut();
        if cached.as_ref().map(|(e, _)| *e) != Some(epoch) {
            let mut rng = SplitMix::new(self.seed, 0x7453_u64.wrapping_add(epoch));
            let mut order: Vec<i64> = (0..n).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let device = self.train.tensors[0].1.device();
            *cached = Some((epoch, Tensor::from_slice(&order).to_device(device)));
        }
        let order = &cached.as_ref().expect("set above").1;
        order.narrow(0, position * self.batch_size, self.batch_size)
    }
}

/// Runs TorchScript on the plain interpreter on this thread. The JIT's
/// optimized graphs run their own autodiff, which drops forward-mode
/// tangents (the factorized meta step's JVPs came out wrong by ~1e-3); the
/// interpreter runs each aten op with its forward derivative. The setting is
/// per thread, and the trainer runs on its own thread, so every call sets it
/// (a thread-local store: free).
fn plain_interpreter() {
    tch::jit::set_graph_executor_optimize(false);
}

/// The optional method computing one loss alone (see the README's
/// TorchScript contract).
const LOSS_METHOD: &str = "loss";
/// What libtorch says when a module lacks a method.
const MISSING_LOSS_METHOD: &str = "Method 'loss' is not defined";

/// A batch as the module's `Dict[str, Tensor]` argument.
fn batch_ivalue(batch: &Batch) -> IValue {
    IValue::GenericDict(
        batch
            .iter()
            .map(|(name, t)| {
                (
                    IValue::String(name.clone()),
                    IValue::Tensor(t.shallow_clone()),
                )
            })
            .collect(),
    )
}

/// Loads `path` as TorchScript, saying what is wrong when it is not.
fn load_module(path: &str, device: Device) -> Result<CModule> {
    if !Path::new(path).exists() {
        bail!("workload.model: {path} does not exist");
    }
    CModule::load_on_device(path, device).map_err(|e| {
        let message = torch_message(&e);
        // libtorch's own words for a `torch.save` archive blame corruption.
        let why = if message.contains("constants.pkl") && message.contains("not found") {
            "it is a `torch.save` archive (a state_dict or a pickled model: weights without TorchScript code)".to_string()
        } else {
            message
        };
        anyhow!(
            "workload.model: {path} is not a TorchScript module (save one with `torch.jit.script(model).save(path)`, using PyTorch {}): {why}",
            crate::libtorch_version(),
        )
    })
}

impl Workload for TorchScript {
    fn unreached_parameters(&self) -> Vec<Tensor> {
        self.unreached.iter().map(Tensor::shallow_clone).collect()
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = self.data_notes.clone();
        notes.extend(self.cast_note());
        notes.extend(self.grad_in_forward_note());
        notes.extend(self.non_finite.notes.iter().cloned());
        notes.extend(self.untrained_losses_note());
        notes.extend(self.metrics_in_training_mode_note());
        notes.extend(self.batch_averaged_metrics_note());
        if self.shared.is_empty() {
            return notes;
        }
        let pairs: Vec<String> = self
            .shared
            .iter()
            .map(|(name, trained_as)| format!("{name} is {trained_as}"))
            .collect();
        notes.push(format!(
            "{}: tied parameters ({}) are one tensor, trained once per step under the first name, as PyTorch's parameters() lists them",
            self.model_label,
            pairs.join(", ")
        ));
        notes
    }

    fn data_warnings(&self) -> Vec<String> {
        self.non_finite.warnings.clone()
    }

    fn kind(&self) -> &'static str {
        "torchscript"
    }

    fn loss_names(&self) -> Vec<String> {
        self.loss_names.clone()
    }

    /// The first metric the model reports in eval mode, else the primary
    /// loss on validation (lower is better).
    fn primary_metric(&self) -> (String, bool) {
        match self.metric_names.first() {
            Some(name) => (name.clone(), !super::lower_is_better(name)),
            None => (self.primary.clone(), false),
        }
    }

    fn metric_names(&self) -> Vec<String> {
        if self.metric_names.is_empty() {
            vec![self.primary.clone()]
        } else {
            self.metric_names.clone()
        }
    }

    fn reported_metrics(&self) -> Vec<String> {
        self.metric_names.clone()
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn train_batch(&self, step: u64) -> Result<Batch> {
        Ok(self.train.rows(&self.train_rows(step)))
    }

    fn batches_per_epoch(&self) -> Option<u64> {
        Some(self.per_epoch())
    }

    fn batch_rows(&self, step: u64) -> Option<Vec<i64>> {
        Vec::try_from(self.train_rows(step).to_device(Device::Cpu)).ok()
    }

    fn non_finite_rows(&self, step: u64) -> Option<Vec<(String, Vec<i64>)>> {
        Some(self.train.non_finite_of(&self.batch_rows(step)?))
    }

    fn train_nan_not_the_cause(&self) -> Option<&'static str> {
        self.non_finite.train_not_the_cause
    }

    fn rows_failing_alone(&self, step: u64) -> Option<Vec<i64>> {
        self.rows_failing_alone_of(&self.batch_rows(step)?)
    }

    fn rows_non_finite_alone(
        &self,
        step: u64,
        losses: &[String],
        leave_out: &[i64],
    ) -> Option<Vec<i64>> {
        let mut rows = self.batch_rows(step)?;
        rows.retain(|r| !leave_out.contains(r));
        self.rows_non_finite_alone_of(&rows, losses)
    }

    fn val_batch(&self, index: u64) -> Result<Batch> {
        let batches = (self.val.samples / self.batch_size).max(1) as u64;
        let len = self.batch_size.min(self.val.samples);
        Ok(self.val.slice((index % batches) as i64 * len, len))
    }

    fn losses(&self, batch: &Batch) -> Result<Losses> {
        let mut outputs = self.forward(batch)?;
        outputs.retain(|name, _| !name.starts_with(METRIC_PREFIX));
        Ok(outputs)
    }

    fn loss(&self, batch: &Batch, name: &str) -> Result<Tensor> {
        if self.loss_method {
            return self.call_loss(batch, name);
        }
        super::take_loss(self.losses(batch)?, name)
    }

    fn evaluate(&self) -> Result<Evaluation> {
        self.evaluate_split()
    }

    fn buffers(&self) -> Result<Vec<(String, Tensor)>> {
        buffers::named_buffers(&self.module.borrow())
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = crate::nn::vars::named_state(&self.vs, "");
        match serialize(&self.module.borrow()) {
            Ok(bytes) => state.push((MODULE_ENTRY.to_string(), Tensor::from_slice(&bytes))),
            // Parameters are still saved; the resume loads buffers from model.pt.
            Err(e) => say_err!("warning: cannot serialize the TorchScript module: {e:#}"),
        }
        state
    }
}

/// The module (parameters and buffers) as TorchScript archive bytes.
fn serialize(module: &CModule) -> Result<Vec<u8>> {
    let tmp = std::env::temp_dir().join(format!(
        "meltr-module-{}-{:?}.pt",
        std::process::id(),
        std::thread::current().id()
    ));
    let result = module
        .save(&tmp)
        .map_err(|e| anyhow!("{}", torch_message(&e)))
        .and_then(|()| std::fs::read(&tmp).context("cannot read the saved module back"));
    let _ = std::fs::remove_file(&tmp);
    result
}
