//! Data-parallel training over a c10d process group (issue 18): every rank
//! starts from rank 0's state, takes its own shard of every batch, and
//! averages θ's gradients (with the non-finite flag), the logged numbers
//! and φ's hypergradient over the ranks before using them, so θ and φ stay
//! identical everywhere. θ's gradients go through buckets whose
//! all-reduces start during the backward (`train.bucket_mb`; see
//! `dist/buckets.rs`), or one all-reduce after it (`train.bucket_mb = 0`).
//! Rank 0 alone writes the session: the other ranks emit no lines,
//! evaluate nothing and write no checkpoints.

use super::*;
use crate::dist::{GradBuckets, ProcessGroup, Rendezvous};
use crate::engine::collapse::COPIES;
use std::time::Duration;

/// Where the data-parallel inner steps' time went: the backward (with the
/// buckets' all-reduces it started) and the wait for the all-reduces after
/// it.
#[derive(Debug, Default)]
pub(super) struct Timing {
    steps: u64,
    backward: Duration,
    wait: Duration,
    started_in_backward: usize,
    buckets: usize,
}

impl Timing {
    /// Buckets started during the backward, and all buckets, so far.
    pub(super) fn started(&self) -> (usize, usize) {
        (self.started_in_backward, self.buckets)
    }

    /// One inner step's backward, wait, and buckets started during the
    /// backward of all.
    fn add(&mut self, backward: Duration, wait: Duration, started: usize, buckets: usize) {
        self.steps += 1;
        self.backward += backward;
        self.wait += wait;
        self.started_in_backward += started;
        self.buckets += buckets;
    }
}

/// What the inner backward does besides θ's gradient of the combined loss.
pub(super) enum Extra {
    /// Nothing (an unlogged step, or a logged one whose weights are known).
    None,
    /// θ's part, already computed by the gradient shares' backward (with
    /// which parameters it reached): only inner-trained combiner
    /// parameters still need one.
    FromShares((Vec<Tensor>, Vec<bool>)),
    /// Also `∂total/∂losses` for this loss vector (the one the combiner
    /// consumed, not detached): the logged step's effective weights, from
    /// the same reverse pass instead of a backward of their own.
    Weights(Tensor),
}

/// The inner backward's results (see [`Trainer::averaged_backward`]).
pub(super) struct InnerGrads {
    /// The inner parameters' gradients, averaged over the ranks.
    pub grads: Vec<Tensor>,
    /// Which of them this rank's backward reached (see [`grad_reaching`]):
    /// with one process, the others' gradients are zeros; with ranks, the
    /// gradients are averaged and this is not used.
    pub reached: Vec<bool>,
    /// True only where every rank's losses and gradients were finite.
    pub finite: Tensor,
    /// For [`Extra::Weights`]: this rank's effective weights (not averaged:
    /// the logged values are averaged together).
    pub weights: Option<Tensor>,
}

impl Trainer {
    /// Joins the group `at` describes (Gloo on the CPU, NCCL on CUDA) and
    /// takes rank 0's parameters, optimizer states and step, so a fresh
    /// run and a resumed one start alike on every rank.
    pub(super) fn join_group(&mut self, at: &Rendezvous) -> Result<()> {
        crate::engine::batch_splits(self.config.workload.batch_size, at.world_size)?;
        let device = self.theta.first().map_or(Device::Cpu, Tensor::device);
        let group = match device {
            Device::Cuda(_) => ProcessGroup::nccl(at)?,
            _ => ProcessGroup::gloo(at)?,
        };
        let mut state: Vec<Tensor> = self
            .inner_params
            .iter()
            .map(Tensor::shallow_clone)
            .collect();
        state.extend(self.combiner.params());
        for optimizer in std::iter::once(&self.inner).chain(&self.meta) {
            state.push(optimizer.step.shallow_clone());
            state.extend(optimizer.m.iter().map(Tensor::shallow_clone));
            state.extend(optimizer.v.iter().map(Tensor::shallow_clone));
        }
        // MELTR's loss factors: rank 0's (measured at its start or kept by
        // its checkpoint), so that every rank combines the losses alike.
        let scale_slot = self.loss_scale_slot();
        state.extend(scale_slot.iter().map(Tensor::shallow_clone));
        group
            .broadcast(&state, 0)
            .context("taking rank 0's parameters")?;
        if let Some(slot) = &scale_slot {
            self.set_loss_scale_slot(slot);
        }
        self.step = group.broadcast_f64(self.step as f64, 0)? as u64;
        self.share_collapse_watch(&group)?;
        let bucket_mb = self.config.train.bucket_mb;
        if bucket_mb > 0.0 {
            let bytes = (bucket_mb * 1024.0 * 1024.0) as usize;
            self.buckets = Some(
                GradBuckets::new(&group, &self.inner_params, bytes.max(1))
                    .with_context(|| format!("train.bucket_mb = {bucket_mb}"))?,
            );
        }
        self.share_pool_skipped(&group)?;
        self.group = Some(group);
        // The meta step's pool holds this rank's shards of the last batches
        // (a resumed rank 0 refilled it with whole ones; a fresh rank that
        // joins a resumed run, whatever world size it trained with, had
        // none).
        let pool = self.recent_batches_before(self.step)?;
        self.recent = pool
            .into_iter()
            .map(|(step, batch)| Ok((step, self.shard(batch)?)))
            .collect::<Result<_>>()?;
        Ok(())
    }

    /// Takes rank 0's collapse watch (its counters and healthy snapshot)
    /// and the meta-learning rate and γ a restore left: a resumed rank 0
    /// has them from its checkpoint, the other ranks start fresh, and every
    /// rank must decide and restore alike from the same weights.
    fn share_collapse_watch(&mut self, group: &ProcessGroup) -> Result<()> {
        const PREFIX: &str = "collapse";
        let state = self.collapse.state(PREFIX);
        // The counters (a small host tensor, as `broadcast_f64` sends).
        let counters = state[0].1.shallow_clone();
        group
            .broadcast(std::slice::from_ref(&counters), 0)
            .context("taking rank 0's collapse watch")?;
        // The copies of the primary it has read (a fresh rank sends a
        // fresh tracker's, of the same size).
        let copies = self.collapse.copies.state_of(self.loss_names.len());
        group
            .broadcast(std::slice::from_ref(&copies), 0)
            .context("taking rank 0's copies of the primary")?;
        let mut taken = vec![
            (format!("{PREFIX}.counters"), counters.shallow_clone()),
            (format!("{PREFIX}.{COPIES}"), copies),
        ];
        // A healthy step (counters[3] ≥ 0): its snapshot, shaped like what
        // a restore puts back.
        if counters.double_value(&[3]) >= 0.0 {
            let healthy: Vec<Tensor> = state
                .iter()
                .filter(|(name, _)| name.contains(".healthy."))
                .map(|(_, t)| t.shallow_clone())
                .collect();
            let snapshot: Vec<Tensor> = match healthy.is_empty() {
                false => healthy,
                true => tch::no_grad(|| {
                    self.restorable_state()
                        .iter()
                        .map(Tensor::zeros_like)
                        .collect()
                }),
            };
            group
                .broadcast(&snapshot, 0)
                .context("taking rank 0's healthy snapshot")?;
            taken.extend(
                snapshot
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| (format!("{PREFIX}.healthy.{i}"), t)),
            );
        }
        let device = self.theta.first().map_or(Device::Cpu, Tensor::device);
        let lookup = |name: &str| {
            taken
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.shallow_clone())
        };
        self.collapse.load_state(PREFIX, &lookup, device)?;
        if let Some(meta) = self.meta.as_mut() {
            meta.lr = group.broadcast_f64(meta.lr, 0)?;
        }
        self.gamma = group.broadcast_f64(self.gamma, 0)?;
        // A restore rank 0's checkpoint had decided: read, or not applied
        // yet (NaN: none).
        let (from, before) = self
            .restored
            .map_or((f64::NAN, f64::NAN), |(f, b)| (f as f64, b as f64));
        let restored = [
            group.broadcast_f64(from, 0)?,
            group.broadcast_f64(before, 0)?,
        ];
        self.restored = restored
            .iter()
            .all(|v| v.is_finite())
            .then(|| (restored[0] as u64, restored[1] as u64));
        let mut queued = self.queued_restore_values().unwrap_or([f64::NAN; 4]);
        for value in &mut queued {
            *value = group.broadcast_f64(*value, 0)?;
        }
        self.queued_restore = super::restore::queued_restore_from(&queued);
        Ok(())
    }

    /// Takes rank 0's skipped steps in the pool's window (from its
    /// checkpoint): every rank's meta step then draws from the same batches.
    fn share_pool_skipped(&mut self, group: &ProcessGroup) -> Result<()> {
        let window: Vec<u64> = (0..RECENT_BATCHES as u64)
            .filter_map(|back| self.step.checked_sub(back))
            .collect();
        let flags: Vec<f64> = window
            .iter()
            .map(|s| f64::from(u8::from(self.pool_skipped.contains(s))))
            .collect();
        let flags = Tensor::from_slice(&flags);
        group
            .broadcast(std::slice::from_ref(&flags), 0)
            .context("taking rank 0's skipped steps")?;
        let flags = Vec::<f64>::try_from(&flags)?;
        self.pool_skipped = window
            .into_iter()
            .zip(flags)
            .filter(|(_, skipped)| *skipped != 0.0)
            .map(|(step, _)| step)
            .collect();
        Ok(())
    }

    /// Ranks other than 0: they train, but write nothing.
    pub(super) fn is_follower(&self) -> bool {
        self.group.as_ref().is_some_and(|g| g.rank() != 0)
    }

    /// This rank's rows of `batch` (every tensor whose first dimension is
    /// the batch's): the ranks' shards, in rank order, make the batch.
    pub(super) fn shard(&self, batch: Batch) -> Result<Batch> {
        let Some(group) = &self.group else {
            return Ok(batch);
        };
        let rows = batch
            .first()
            .and_then(|(_, t)| t.size().first().copied())
            .unwrap_or(0);
        let world = group.world_size() as i64;
        if rows % world != 0 {
            bail!("a batch of {rows} rows does not split evenly over {world} ranks");
        }
        let (len, start) = (rows / world, group.rank() as i64 * (rows / world));
        Ok(batch
            .into_iter()
            .map(|(name, t)| {
                let sharded = if t.dim() > 0 && t.size()[0] == rows {
                    t.narrow(0, start, len)
                } else {
                    t
                };
                (name, sharded)
            })
            .collect())
    }

    /// Replaces each tensor with its mean over the ranks (nothing without
    /// a group).
    pub(super) fn average_over_ranks(&self, tensors: &[Tensor]) -> Result<()> {
        match &self.group {
            Some(group) => group
                .all_reduce_mean(tensors)
                .with_context(|| self.collective_failure()),
            None => Ok(()),
        }
    }

    /// `finite` (0-dim bool) on every rank: true only where it is true on
    /// all of them, averaged along with `grads` in one all-reduce.
    pub(super) fn average_gradients(&self, grads: &[Tensor], finite: &Tensor) -> Result<Tensor> {
        if self.group.is_none() {
            return Ok(finite.shallow_clone());
        }
        let kind = grads.first().map_or(Kind::Float, Tensor::kind);
        let bad = finite.logical_not().to_kind(kind).reshape([1]);
        let mut all: Vec<Tensor> = grads.iter().map(Tensor::shallow_clone).collect();
        all.push(bad.shallow_clone());
        self.average_over_ranks(&all)?;
        Ok(bad.eq(0.0).reshape(Vec::<i64>::new()))
    }

    /// θ's (and inner-trained combiner parameters') gradient of `total`,
    /// averaged over the ranks, with `finite` true only where it is true on
    /// every rank, and what `extra` asks of the same backward (see
    /// [`Extra`]). With buckets, their all-reduces start during the
    /// backward; otherwise one all-reduce follows it.
    pub(super) fn averaged_backward(
        &mut self,
        total: &Tensor,
        extra: Extra,
        keep_graph: bool,
        finite: &Tensor,
    ) -> Result<InnerGrads> {
        let started = Instant::now();
        let Some(buckets) = self.buckets.take() else {
            let (grads, reached, weights) = self.inner_backward(total, extra, keep_graph)?;
            self.phase_clock.mark("backward");
            let backward = started.elapsed();
            let finite = self.average_gradients(&grads, finite)?;
            if self.group.is_some() {
                self.phase_clock.mark("all-reduce");
                self.dp_timing
                    .add(backward, started.elapsed() - backward, 0, 0);
            }
            return Ok(InnerGrads {
                grads,
                reached,
                finite,
                weights,
            });
        };
        let averaged = buckets.arm(finite).and_then(|()| {
            let (grads, reached, weights) = self.inner_backward(total, extra, keep_graph)?;
            // Gradients the hooks did not see (the shares' ones).
            buckets.deliver(&grads)?;
            self.phase_clock.mark("backward");
            let backward = started.elapsed();
            let averaged = buckets.finish()?;
            self.dp_timing.add(
                backward,
                started.elapsed() - backward,
                averaged.started_in_backward,
                buckets.len(),
            );
            Ok((averaged, reached, weights))
        });
        if averaged.is_err() {
            // Disarms the hooks (what is still pending is dropped).
            let _ = buckets.finish();
        }
        self.buckets = Some(buckets);
        let (averaged, reached, weights) = averaged.with_context(|| self.collective_failure())?;
        self.phase_clock.mark("all-reduce");
        Ok(InnerGrads {
            grads: averaged.grads,
            reached,
            finite: averaged.finite,
            weights,
        })
    }

    /// The inner step's backward (see [`Trainer::averaged_backward`]):
    /// the inner parameters' gradients, which of them it reached, and, for
    /// [`Extra::Weights`], this rank's effective weights.
    fn inner_backward(
        &self,
        total: &Tensor,
        extra: Extra,
        keep_graph: bool,
    ) -> Result<(Vec<Tensor>, Vec<bool>, Option<Tensor>)> {
        match extra {
            Extra::None => {
                let (grads, reached) =
                    grad_reaching(&[total], &self.inner_params, keep_graph, false)?;
                Ok((grads, reached, None))
            }
            // The combiner's own inner-trained parameters (if any) take a
            // backward through `total` alone.
            Extra::FromShares((mut theta_grads, mut reached)) => {
                let own = &self.inner_params[self.theta.len()..];
                let (own_grads, own_reached) = grad_reaching(&[total], own, keep_graph, false)?;
                theta_grads.extend(own_grads);
                reached.extend(own_reached);
                Ok((theta_grads, reached, None))
            }
            // One more input of the same reverse pass: autograd captures
            // the gradient flowing into the loss vector on its way to θ,
            // and θ's gradients are computed by the same ops as without it.
            Extra::Weights(losses) => {
                let mut inputs: Vec<Tensor> = self
                    .inner_params
                    .iter()
                    .map(Tensor::shallow_clone)
                    .collect();
                inputs.push(losses);
                let (mut grads, mut reached) = grad_reaching(&[total], &inputs, keep_graph, false)?;
                let weights = grads.pop();
                reached.pop();
                Ok((grads, reached, weights))
            }
        }
    }

    /// What a failed collective of this step means.
    fn collective_failure(&self) -> String {
        match &self.group {
            Some(group) => format!(
                "step {}: rank {} of {} could not average with the other ranks (one of them died, or did not answer within train.collective_timeout_s = {} s){}",
                self.step,
                group.rank(),
                group.world_size(),
                group.timeout().as_secs(),
                self.resume_words()
            ),
            None => format!("step {}", self.step),
        }
    }

    /// [`resume_hint`] for this rank: rank 0's only (a follower's folder
    /// is a scratch one, gone with it).
    pub(super) fn resume_words(&self) -> String {
        match &self.group {
            Some(group) if !self.is_follower() => {
                resume_hint(self.dir.path(), self.checkpointed_at, group.world_size())
            }
            _ => String::new(),
        }
    }

    /// Rank 0, at the end of a data-parallel run: one event with the mean
    /// backward time and wait for θ's all-reduces per inner step.
    pub(super) fn report_dp_timing(&mut self) {
        let t = std::mem::take(&mut self.dp_timing);
        if t.steps == 0 {
            return;
        }
        let per_step = |d: Duration| 1e3 * d.as_secs_f64() / t.steps as f64;
        let per_step_buckets = t.buckets as f64 / t.steps as f64;
        let buckets = match t.buckets {
            0 => "one all-reduce after it".to_string(),
            // One bucket is the whole gradient, ready only as the backward
            // ends: "1.0 of 1.0 started during it" read as overlap.
            _ if per_step_buckets <= 1.0 => {
                "the gradient fits one bucket, whose all-reduce starts as it ends: no overlap \
                 (a smaller train.bucket_mb splits it)"
                    .to_string()
            }
            _ => format!(
                "{:.1} of its {:.0} buckets' all-reduces started before it ended",
                t.started_in_backward as f64 / t.steps as f64,
                per_step_buckets
            ),
        };
        self.emit(Record::Event {
            level: Level::Info,
            message: format!(
                "θ's gradient averaging over {} inner steps: backward {:.2} ms a step ({buckets}), then {:.2} ms waiting for the all-reduce",
                t.steps,
                per_step(t.backward),
                per_step(t.wait),
            ),
        });
    }
}

/// How a data-parallel run that lost a rank goes on: the session is
/// `failed`, which `ls` gives no hint for (walkthrough S killed rank 1).
/// `world`: its number of ranks; `checkpointed_at`: its newest checkpoint.
pub(super) fn resume_hint(dir: &Path, checkpointed_at: Option<u64>, world: usize) -> String {
    let from = match checkpointed_at {
        Some(step) => format!("continues from its newest checkpoint (step {step})"),
        None => "starts it again from step 0 (no checkpoint was written yet)".to_string(),
    };
    format!(
        "; `{}` (or under the same launcher) {from} on {world} ranks",
        crate::session::resume_command_for(dir)
    )
}
