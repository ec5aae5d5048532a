//! Data-parallel training over a c10d process group (issue 18): every rank
//! starts from rank 0's state, takes its own shard of every batch, and
//! averages θ's gradients (with the non-finite flag), the logged numbers
//! and φ's hypergradient over the ranks before using them, so θ and φ stay
//! identical everywhere. Rank 0 alone writes the session: the other ranks
//! emit no lines, evaluate nothing and write no checkpoints.

use super::*;
use crate::dist::{ProcessGroup, Rendezvous};

impl Trainer {
    /// Joins the group `at` describes (Gloo on the CPU, NCCL on CUDA) and
    /// takes rank 0's parameters, optimizer states and step, so a fresh
    /// run and a resumed one start alike on every rank.
    pub(super) fn join_group(&mut self, at: &Rendezvous) -> Result<()> {
        let batch_size = self.config.workload.batch_size;
        if !batch_size.is_multiple_of(at.world_size) {
            bail!(
                "workload.batch_size = {batch_size} does not split evenly over {} ranks",
                at.world_size
            );
        }
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
        group
            .broadcast(&state, 0)
            .context("taking rank 0's parameters")?;
        self.step = group.broadcast_f64(self.step as f64, 0)? as u64;
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
            Some(group) => group.all_reduce_mean(tensors).with_context(|| {
                format!(
                    "step {}: rank {} of {} could not average with the other ranks (one of them died, or did not answer within train.collective_timeout_s = {} s)",
                    self.step,
                    group.rank(),
                    group.world_size(),
                    group.timeout().as_secs()
                )
            }),
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
}
