//! Adam (with decoupled or coupled weight decay) and global grad-norm
//! clipping (`clip.rs`) over explicit gradient lists. Written out (rather than tch's
//! `nn::Optimizer`) so the state can be checkpointed and resumed exactly,
//! and gradients come from `run_backward`, not `.grad`. Both follow
//! PyTorch's formulas (`torch.optim.AdamW` / `torch.optim.Adam`,
//! `clip_grad_norm_`): the Python replay compares them step for step.
//!
//! The update runs ATen's fused kernel (`_fused_adamw_`, through
//! `csrc/fused_adam.cpp`: one pass over each parameter) where it applies,
//! and otherwise a dozen elementwise ops per bucket of parameters.

use crate::ffi::checked;
use std::ffi::c_char;
use tch::{Kind, Tensor};

extern "C" {
    fn meltr_fused_adam(
        params: *const *mut torch_sys::C_tensor,
        grads: *const *mut torch_sys::C_tensor,
        exp_avgs: *const *mut torch_sys::C_tensor,
        exp_avg_sqs: *const *mut torch_sys::C_tensor,
        count: i64,
        steps: *const *mut torch_sys::C_tensor,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        decoupled: i32,
        found_inf: *mut torch_sys::C_tensor,
        error: *mut *mut c_char,
    );
}

/// How [`AdamW`] computes an update; both give PyTorch's formulas, to
/// rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// ATen's fused Adam/AdamW kernel: each value read and written once
    /// (`cargo bench --bench adamw`). Used where every parameter, gradient
    /// and moment shares one device and a floating dtype.
    Fused,
    /// A dozen elementwise ops over each bucket: the reference the fused
    /// kernel is tested against, and the fallback.
    Buckets,
}

/// How weight decay enters the update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightDecay {
    /// `p ← p·(1 − lr·λ)` beside the Adam step (`torch.optim.AdamW`).
    Decoupled,
    /// `g ← g + λ·p` before the moments (`torch.optim.Adam`'s L2, the
    /// public MELTR code's meta optimizer).
    Coupled,
}

/// Adam over an explicit parameter list, PyTorch's formulas, with its whole
/// state (step count, moments) public for checkpoints.
pub struct AdamW {
    /// Learning rate; read at every update, so it may be changed between steps.
    pub lr: f64,
    /// Weight decay λ (0 for none); how it applies is `decay`.
    pub weight_decay: f64,
    /// Decoupled (AdamW, the default) or coupled (Adam's L2).
    pub decay: WeightDecay,
    /// Decay rate of the first-moment average (0.9).
    pub beta1: f64,
    /// Decay rate of the second-moment average (0.999).
    pub beta2: f64,
    /// Added to √v̂ in the denominator (1e-8).
    pub eps: f64,
    /// Number of updates taken (bias correction), a 0-dim f64 tensor on the
    /// parameters' device: a skipped update is decided there, without a
    /// host sync.
    pub step: Tensor,
    /// Per parameter, the updates it sat out because no gradient reached it
    /// (`[n]` f64, on the device): its own update count is `step − missed`,
    /// as PyTorch counts steps per parameter and skips one whose `.grad` is
    /// `None` ([`AdamW::step_reached`]).
    pub missed: Tensor,
    /// Whether any parameter has sat out an update (else every parameter's
    /// count is `step`, and the update takes the shared count).
    missed_any: bool,
    /// The moments per parameter: views into the buckets' buffers.
    pub m: Vec<Tensor>,
    /// The second moments (squared-gradient averages), laid out as `m`.
    pub v: Vec<Tensor>,
    /// The kernel updates run with ([`Kernel::Fused`] by default).
    pub kernel: Kernel,
    /// Why the fused kernel was given up in this run, if it was (the
    /// trainer logs it once).
    pub fused_failure: Option<String>,
    buckets: Vec<Bucket>,
}

/// Consecutive parameters whose moments live in one buffer each: an update
/// is a dozen elementwise ops over the whole bucket, not a dozen per
/// parameter (~1000 small ops, and on a GPU as many kernel launches, for
/// the video-text model's 85 tensors; `cargo bench --bench adamw`). Each
/// element sees the same operations in the same order, so the result is
/// the same, bit for bit, as updating parameter by parameter. Buckets hold
/// at most [`BUCKET_VALUES`] values (or one larger parameter), which bounds
/// the update's temporaries.
struct Bucket {
    /// Indices of its parameters.
    params: std::ops::Range<usize>,
    /// Element count of each.
    sizes: Vec<i64>,
    m: Tensor,
    v: Tensor,
}

/// What one update applies: where (`ok`), with which counts, to which
/// parameters.
struct Update<'a> {
    /// The step's skip flag (0-dim bool; none: taken).
    ok: Option<&'a Tensor>,
    /// The shared update count, this update included.
    count: &'a Tensor,
    /// Each parameter's own count (`[n]`), where some parameter has sat out
    /// an update.
    counts: Option<&'a Tensor>,
    /// The parameters a gradient reached (none: all of them).
    reached: Option<&'a [bool]>,
}

impl Update<'_> {
    /// Whether parameter `i` takes this update (where `ok` allows).
    fn takes(&self, i: usize) -> bool {
        self.reached.is_none_or(|reached| reached[i])
    }
}

/// A bucket's size limit: its temporaries (about five bucket-sized
/// tensors, two more where parameters count their own updates) stay near
/// 20 to 30 MB in f32.
const BUCKET_VALUES: i64 = 1 << 20;

impl AdamW {
    /// An optimizer for `params` (the order that `step` takes them in), with
    /// zero moments, PyTorch's default betas and eps, and decoupled decay.
    pub fn new(params: &[Tensor], lr: f64, weight_decay: f64) -> Self {
        let device = params.first().map_or(tch::Device::Cpu, Tensor::device);
        let mut buckets: Vec<Bucket> = Vec::new();
        for (i, p) in params.iter().enumerate() {
            let size = p.numel() as i64;
            match buckets.last_mut() {
                Some(b) if b.sizes.iter().sum::<i64>() + size <= BUCKET_VALUES => {
                    b.params.end = i + 1;
                    b.sizes.push(size);
                }
                _ => buckets.push(Bucket {
                    params: i..i + 1,
                    sizes: vec![size],
                    m: Tensor::new(),
                    v: Tensor::new(),
                }),
            }
        }
        let (mut m, mut v) = (Vec::new(), Vec::new());
        for b in &mut buckets {
            let total: i64 = b.sizes.iter().sum();
            let kind = params[b.params.start].kind();
            let zeros = || tch::no_grad(|| Tensor::zeros([total], (kind, device)));
            (b.m, b.v) = (zeros(), zeros());
            m.extend(per_parameter(&b.m, &b.sizes, &params[b.params.clone()]));
            v.extend(per_parameter(&b.v, &b.sizes, &params[b.params.clone()]));
        }
        Self {
            lr,
            weight_decay,
            decay: WeightDecay::Decoupled,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            step: Tensor::zeros([], (Kind::Double, device)),
            missed: Tensor::zeros([params.len() as i64], (Kind::Double, device)),
            missed_any: false,
            m,
            v,
            kernel: Kernel::Fused,
            fused_failure: None,
            buckets,
        }
    }

    /// The same optimizer computing its updates with `kernel`.
    pub fn with_kernel(mut self, kernel: Kernel) -> Self {
        self.kernel = kernel;
        self
    }

    /// The same optimizer with `decay` (decoupled by default).
    pub fn with_decay(mut self, decay: WeightDecay) -> Self {
        self.decay = decay;
        self
    }

    /// One Adam update of `params` along `grads`.
    pub fn step(&mut self, params: &[Tensor], grads: &[Tensor]) {
        self.step_if(params, grads, None);
    }

    /// Sets both moments to 0 (the step count stays): the next update
    /// starts its averages afresh.
    pub fn clear_moments(&mut self) {
        tch::no_grad(|| {
            for moment in self.m.iter().chain(&self.v) {
                let _ = moment.shallow_clone().zero_();
            }
        });
    }

    /// As [`AdamW::step`], applied only where the 0-dim bool `ok` is true
    /// (parameters, moments and the step count all stay as they were
    /// otherwise, even with non-finite gradients). Nothing waits on the
    /// device.
    pub fn step_if(&mut self, params: &[Tensor], grads: &[Tensor], ok: Option<&Tensor>) {
        self.update(params, grads, ok, None);
    }

    /// As [`AdamW::step_if`], for the parameters `reached` marks: the others
    /// (no gradient reached them; theirs in `grads` is ignored) keep their
    /// values, moments and update count, as PyTorch's optimizers skip a
    /// parameter whose `.grad` is `None`.
    pub fn step_reached(
        &mut self,
        params: &[Tensor],
        grads: &[Tensor],
        ok: Option<&Tensor>,
        reached: &[bool],
    ) {
        let missing = reached.iter().any(|r| !r);
        self.update(params, grads, ok, missing.then_some(reached));
    }

    fn update(
        &mut self,
        params: &[Tensor],
        grads: &[Tensor],
        ok: Option<&Tensor>,
        reached: Option<&[bool]>,
    ) {
        let count = self.advanced_count(ok);
        // Each parameter's own count, where some parameter has sat out an
        // update (else the shared one, as before any did).
        let counts =
            (self.missed_any || reached.is_some()).then(|| tch::no_grad(|| &count - &self.missed));
        let update = Update {
            ok,
            count: &count,
            counts: counts.as_ref(),
            reached,
        };
        let mut fused = false;
        if self.kernel == Kernel::Fused && fusable(params.iter().chain(grads).chain(&self.m)) {
            match self.fused_step(params, grads, &update) {
                Ok(()) => fused = true,
                // The kernel checks its arguments before it writes: the
                // tensors are as they were, and the buckets take over.
                Err(e) => {
                    self.kernel = Kernel::Buckets;
                    self.fused_failure = Some(format!("{e:#}"));
                }
            }
        }
        if !fused {
            self.bucket_step(params, grads, &update);
        }
        tch::no_grad(|| {
            self.step.copy_(&count);
            if let Some(reached) = reached {
                // On the device, slot by slot: a copy from the host would
                // wait for the queued backward on CUDA.
                let taken = ok.map(|ok| ok.to_kind(Kind::Double));
                for i in (0..reached.len()).filter(|&i| !reached[i]) {
                    let mut slot = self.missed.get(i as i64);
                    let _ = match &taken {
                        Some(taken) => slot.g_add_(taken),
                        None => slot.g_add_scalar_(1.0),
                    };
                }
                self.missed_any = true;
            }
        });
    }

    /// The step count after this update: one more, or (where `ok` is
    /// false) the same.
    fn advanced_count(&self, ok: Option<&Tensor>) -> Tensor {
        tch::no_grad(|| match ok {
            Some(ok) => &self.step + ok.to_kind(Kind::Double),
            None => &self.step + 1.0,
        })
    }

    /// One update by ATen's fused kernel; where `ok` is false it changes
    /// nothing, and it leaves out the parameters `reached` does not mark.
    fn fused_step(
        &self,
        params: &[Tensor],
        grads: &[Tensor],
        update: &Update,
    ) -> anyhow::Result<()> {
        let taken: Vec<usize> = (0..params.len()).filter(|&i| update.takes(i)).collect();
        if taken.is_empty() {
            return Ok(());
        }
        // The kernel walks each tensor's memory in order, so parameter,
        // gradient and moments must share one layout: the moments are
        // contiguous, so a non-contiguous parameter (a transposed weight)
        // is updated in a contiguous copy that is written back after.
        let grads: Vec<Tensor> = taken.iter().map(|&i| grads[i].contiguous()).collect();
        let params: Vec<&Tensor> = taken.iter().map(|&i| &params[i]).collect();
        let staged: Vec<Tensor> = tch::no_grad(|| {
            params
                .iter()
                .map(|p| {
                    if p.is_contiguous() {
                        p.shallow_clone()
                    } else {
                        p.contiguous()
                    }
                })
                .collect()
        });
        let pointers = |tensors: &[Tensor]| -> Vec<*mut torch_sys::C_tensor> {
            tensors.iter().map(|t| t.as_ptr() as *mut _).collect()
        };
        let moment_pointers = |moments: &[Tensor]| -> Vec<*mut torch_sys::C_tensor> {
            taken
                .iter()
                .map(|&i| moments[i].as_ptr() as *mut _)
                .collect()
        };
        let (p, g) = (pointers(&staged), pointers(&grads));
        let (m, v) = (moment_pointers(&self.m), moment_pointers(&self.v));
        // The kernels want float step counts and skip flags.
        let steps: Vec<Tensor> = match update.counts {
            Some(counts) => {
                let counts = counts.to_kind(Kind::Float);
                taken.iter().map(|&i| counts.get(i as i64)).collect()
            }
            None => vec![update.count.to_kind(Kind::Float)],
        };
        let step_pointers: Vec<*mut torch_sys::C_tensor> = (0..params.len())
            .map(|i| steps[i.min(steps.len() - 1)].as_ptr() as *mut _)
            .collect();
        let skip = update.ok.map(|ok| ok.logical_not().to_kind(Kind::Float));
        let skip_pointer = skip
            .as_ref()
            .map_or(std::ptr::null_mut(), |s| s.as_ptr() as *mut _);
        let decoupled = i32::from(self.decay == WeightDecay::Decoupled);
        checked(|error| {
            // SAFETY: every pointer is a live tch tensor held for the call;
            // the lists are `params.len()` long.
            unsafe {
                meltr_fused_adam(
                    p.as_ptr(),
                    g.as_ptr(),
                    m.as_ptr(),
                    v.as_ptr(),
                    params.len() as i64,
                    step_pointers.as_ptr(),
                    self.lr,
                    self.beta1,
                    self.beta2,
                    self.weight_decay,
                    self.eps,
                    decoupled,
                    skip_pointer,
                    error,
                )
            }
        })?;
        tch::no_grad(|| {
            for (param, copy) in params.iter().zip(&staged) {
                if !param.is_contiguous() {
                    param.shallow_clone().copy_(copy);
                }
            }
        });
        Ok(())
    }

    /// One update by elementwise ops over each bucket.
    fn bucket_step(&mut self, params: &[Tensor], grads: &[Tensor], update: &Update) {
        tch::no_grad(|| {
            let correction = |count: &Tensor, beta: f64| -((count * beta.ln()).exp()) + 1.0;
            let flat = |tensors: &[Tensor]| {
                Tensor::cat(
                    &tensors.iter().map(|t| t.reshape(-1)).collect::<Vec<_>>(),
                    0,
                )
            };
            let device = self.step.device();
            for b in &mut self.buckets {
                let range = b.params.clone();
                // The bias corrections and where the update is taken: 0-dim,
                // or, where parameters count their own updates, per element
                // (built on the device, in the moments' kind, as the 0-dim
                // ones enter the ops).
                let (bc1, bc2, taken) = match update.counts {
                    None => (
                        correction(update.count, self.beta1),
                        correction(update.count, self.beta2),
                        update.ok.map(Tensor::shallow_clone),
                    ),
                    Some(counts) => {
                        let spread = |per_parameter: &Tensor| {
                            let parts: Vec<Tensor> = range
                                .clone()
                                .zip(&b.sizes)
                                .map(|(i, &n)| per_parameter.get(i as i64).expand([n], false))
                                .collect();
                            Tensor::cat(&parts, 0)
                        };
                        let marks: Vec<Tensor> = range
                            .clone()
                            .zip(&b.sizes)
                            .map(|(i, &n)| match update.takes(i) {
                                true => Tensor::ones([n], (Kind::Bool, device)),
                                false => Tensor::zeros([n], (Kind::Bool, device)),
                            })
                            .collect();
                        let mut taken = Tensor::cat(&marks, 0);
                        if let Some(ok) = update.ok {
                            taken = taken.logical_and(ok);
                        }
                        let kind = b.m.kind();
                        (
                            spread(&correction(counts, self.beta1).to_kind(kind)),
                            spread(&correction(counts, self.beta2).to_kind(kind)),
                            Some(taken),
                        )
                    }
                };
                let params = &params[range.clone()];
                let mut g = flat(&grads[range]);
                let coupled = self.decay == WeightDecay::Coupled && self.weight_decay != 0.0;
                if coupled {
                    let _ = g.g_add_(&(flat(params) * self.weight_decay));
                }
                // The textbook expressions, in place where that keeps each
                // element's operations (a + b and b + a round alike).
                let mut m_new = &b.m * self.beta1;
                let _ = m_new.g_add_(&(&g * (1.0 - self.beta1)));
                let mut v_new = &b.v * self.beta2;
                let _ = v_new.g_add_(&(&g * &g * (1.0 - self.beta2)));
                drop(g);
                let mut update_value = &m_new / &bc1;
                let _ = update_value.g_div_(&((&v_new / &bc2).sqrt() + self.eps));
                // `target` takes `new` where `taken` (everywhere without it).
                let keep = |target: &Tensor, new: &Tensor, taken: Option<&Tensor>| match taken {
                    Some(taken) => target.shallow_clone().copy_(&new.where_self(taken, target)),
                    None => target.shallow_clone().copy_(new),
                };
                keep(&b.m, &m_new, taken.as_ref());
                keep(&b.v, &v_new, taken.as_ref());
                drop((m_new, v_new));
                let _ = update_value.g_mul_scalar_(self.lr);
                let mut p_new = flat(params);
                if self.decay == WeightDecay::Decoupled {
                    let _ = p_new.g_mul_scalar_(1.0 - self.lr * self.weight_decay);
                }
                let _ = p_new.g_sub_(&update_value);
                drop(update_value);
                let news = per_parameter(&p_new, &b.sizes, params);
                // A per-element mask splits as the parameters do.
                let masks: Vec<Option<Tensor>> = match &taken {
                    Some(taken) if taken.dim() > 0 => per_parameter(taken, &b.sizes, params)
                        .into_iter()
                        .map(Some)
                        .collect(),
                    _ => params
                        .iter()
                        .map(|_| taken.as_ref().map(Tensor::shallow_clone))
                        .collect(),
                };
                for ((param, new), mask) in params.iter().zip(news).zip(masks) {
                    keep(param, &new, mask.as_ref());
                }
            }
        });
    }

    /// State tensors by name, for checkpoints.
    pub fn state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut out = vec![
            (format!("{prefix}.step"), self.step.shallow_clone()),
            (format!("{prefix}.missed"), self.missed.shallow_clone()),
        ];
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            out.push((format!("{prefix}.m.{i}"), m.shallow_clone()));
            out.push((format!("{prefix}.v.{i}"), v.shallow_clone()));
        }
        out
    }

    /// Restores from `state`'s names; missing entries are an error (but
    /// `missed`, which older checkpoints lack).
    pub fn load_state(
        &mut self,
        prefix: &str,
        lookup: &dyn Fn(&str) -> Option<Tensor>,
    ) -> anyhow::Result<()> {
        let get = |name: String| {
            lookup(&name).ok_or_else(|| anyhow::anyhow!("checkpoint lacks `{name}`"))
        };
        let step = get(format!("{prefix}.step"))?;
        tch::no_grad(|| -> anyhow::Result<()> {
            self.step
                .copy_(&step.to_kind(Kind::Double).reshape(Vec::<i64>::new()));
            // Moments are stored by position: a checkpoint of another
            // parameter listing (another model, or one written before tied
            // weights were listed once) must not be spread over this one's.
            let same_shape = |name: String, into: &Tensor| -> anyhow::Result<Tensor> {
                let saved = get(name.clone())?;
                anyhow::ensure!(
                    saved.size() == into.size(),
                    "checkpoint's `{name}` has shape {:?} where this run's parameter has {:?}: \
                     the checkpoint lists other parameters",
                    saved.size(),
                    into.size()
                );
                Ok(saved)
            };
            for (i, (m, v)) in self.m.iter_mut().zip(self.v.iter_mut()).enumerate() {
                let saved_m = same_shape(format!("{prefix}.m.{i}"), m)?;
                let saved_v = same_shape(format!("{prefix}.v.{i}"), v)?;
                m.copy_(&saved_m);
                v.copy_(&saved_v);
            }
            let extra = format!("{prefix}.m.{}", self.m.len());
            anyhow::ensure!(
                lookup(&extra).is_none(),
                "the checkpoint holds optimizer moments for more parameters than this run has \
                 (`{extra}`): it lists other parameters"
            );
            // Absent from checkpoints written before parameters counted
            // their own updates: a parameter no gradient had reached then
            // (all-zero second moment) sat out every update.
            let never_reached: Vec<Tensor> = self.v.iter().map(|v| v.eq(0.0).all()).collect();
            if !never_reached.is_empty() {
                self.missed
                    .copy_(&(Tensor::stack(&never_reached, 0).to_kind(Kind::Double) * &self.step));
            }
            if let Some(missed) = lookup(&format!("{prefix}.missed")) {
                anyhow::ensure!(
                    missed.size() == self.missed.size(),
                    "checkpoint's `{prefix}.missed` counts {:?} parameters where this run has {}: \
                     the checkpoint lists other parameters",
                    missed.size(),
                    self.m.len()
                );
                self.missed.copy_(&missed.to_kind(Kind::Double));
            }
            self.missed_any = self.missed.sum(Kind::Double).double_value(&[]) > 0.0;
            Ok(())
        })
    }
}

/// Whether ATen's fused kernel takes these tensors: one device (CPU or
/// CUDA) and one floating dtype.
fn fusable<'a>(mut tensors: impl Iterator<Item = &'a Tensor>) -> bool {
    let Some(first) = tensors.next() else {
        return false;
    };
    let (device, kind) = (first.device(), first.kind());
    let supported_device = matches!(device, tch::Device::Cpu | tch::Device::Cuda(_));
    let supported_kind = matches!(
        kind,
        Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
    );
    supported_device && supported_kind && tensors.all(|t| t.device() == device && t.kind() == kind)
}

/// `flat` split into one view per parameter, each in its parameter's shape.
fn per_parameter(flat: &Tensor, sizes: &[i64], params: &[Tensor]) -> Vec<Tensor> {
    if params.is_empty() {
        return Vec::new();
    }
    flat.split_with_sizes(sizes, 0)
        .iter()
        .zip(params)
        .map(|(part, p)| part.view(p.size().as_slice()))
        .collect()
}

mod clip;
mod reference;
pub use clip::{clip_grad_norm, op_by_op_clip_grad_norm};
pub use reference::per_parameter_step;

#[cfg(test)]
mod tests;
