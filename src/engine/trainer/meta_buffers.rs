//! Which model buffers each evaluation of a meta step's training batch
//! starts from, and where the meta step leaves them.
//!
//! A PyTorch loop of the public algorithm runs the training batch's forward
//! once, and what follows the meta step starts from the buffers as that one
//! left them. Later evaluations of it (the factorized mode's JVPs and
//! finite differences) start from the buffers that forward started from,
//! so that each computes the same function: a model whose output reads a
//! buffer its forward updates (walkthrough L3's running input mean) gave
//! factorized hypergradients 7e-3 off the replay's exact ones from the
//! buffers it left.
//!
//! A reused inner forward (`meltr.train_batch = "current"`) was that first
//! forward. In the factorized mode its evaluations start from the buffers
//! the inner forward started from (walkthrough M1's hypergradients were 0.3
//! off the replay's from the buffers they found), and the meta step leaves
//! the buffers as the first evaluation found them (moved by the inner and
//! validation forwards, as in the replay); only buffers whose values differ
//! are written then, since the reused forward's graph saved the buffers no
//! forward moves. The exact mode differentiates the reused graph itself;
//! its retry with the fused kernels off evaluates from the buffers it finds
//! (the retried validation graph saved them, so they cannot be put back).

use crate::workload::{SavedBuffers, Workload};
use anyhow::Result;
use std::cell::RefCell;

pub(super) struct TrainBatchBuffers<'a> {
    /// Whether the meta step reuses the inner step's forward.
    reused: bool,
    /// The buffers the reused inner forward started from, where its
    /// evaluations start from them.
    inner_start: Option<&'a SavedBuffers>,
    /// The buffers the first evaluation started from (a fresh forward), or
    /// found (a reused one).
    before: RefCell<Option<SavedBuffers>>,
    /// The buffers as the meta step's own first forward left them.
    after: RefCell<Option<SavedBuffers>>,
}

impl<'a> TrainBatchBuffers<'a> {
    /// `inner_start`: the buffers a reused inner forward started from,
    /// where evaluations start from them.
    pub(super) fn new(reused: bool, inner_start: Option<&'a SavedBuffers>) -> Self {
        TrainBatchBuffers {
            reused,
            inner_start,
            before: RefCell::new(None),
            after: RefCell::new(None),
        }
    }

    /// Before an evaluation of the training batch. (Put back before a
    /// forward, not after one: an in-place write, even of the same values,
    /// would invalidate the graphs that saved them, such as the validation
    /// forward's in exact mode.)
    pub(super) fn before_forward(&self, workload: &dyn Workload) -> Result<()> {
        let mut before = self.before.borrow_mut();
        let first = before.is_none();
        if first {
            *before = Some(SavedBuffers::take(workload)?);
        }
        match (self.inner_start, before.as_ref()) {
            (Some(start), _) => start.restore_changed(workload),
            (None, Some(buffers)) if !first => buffers.restore(workload),
            _ => Ok(()),
        }
    }

    /// After an evaluation of the training batch: the meta step's own first
    /// forward leaves the buffers where the meta step does.
    pub(super) fn after_forward(&self, workload: &dyn Workload) -> Result<()> {
        let mut after = self.after.borrow_mut();
        if !self.reused && after.is_none() {
            *after = Some(SavedBuffers::take(workload)?);
        }
        Ok(())
    }

    /// At the meta step's end: the buffers as its first forward left them,
    /// or, after a reused inner forward, as its evaluations found them.
    pub(super) fn leave(&self, workload: &dyn Workload) -> Result<()> {
        match (self.after.borrow().as_ref(), self.before.borrow().as_ref()) {
            (Some(buffers), _) => buffers.restore(workload),
            (None, Some(buffers)) if self.inner_start.is_some() => {
                buffers.restore_changed(workload)
            }
            (None, Some(buffers)) if self.reused => buffers.restore(workload),
            _ => Ok(()),
        }
    }
}
