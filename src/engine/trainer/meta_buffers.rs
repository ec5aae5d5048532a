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
//! forward; its evaluations start from the buffers as they are at the
//! first of them (after the validation forward), and the meta step leaves
//! them there. For a model whose output reads such a buffer that is not
//! the inner forward's function (the replay differentiates that forward's
//! own graph; walkthrough M1's hypergradients were 0.3 off): putting the
//! inner step's buffers back would be an in-place write into buffers the
//! exact mode's validation graph saved, safe in the factorized mode only.

use crate::workload::{SavedBuffers, Workload};
use anyhow::Result;
use std::cell::RefCell;

pub(super) struct TrainBatchBuffers {
    /// Whether the meta step reuses the inner step's forward.
    reused: bool,
    /// The buffers the first evaluation started from.
    before: RefCell<Option<SavedBuffers>>,
    /// The buffers as the meta step's own first forward left them.
    after: RefCell<Option<SavedBuffers>>,
}

impl TrainBatchBuffers {
    pub(super) fn new(reused: bool) -> Self {
        TrainBatchBuffers {
            reused,
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
        match before.as_ref() {
            Some(buffers) => buffers.restore(workload),
            None => {
                *before = Some(SavedBuffers::take(workload)?);
                Ok(())
            }
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
            (None, Some(buffers)) if self.reused => buffers.restore(workload),
            _ => Ok(()),
        }
    }
}
