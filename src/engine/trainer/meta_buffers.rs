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
//! buffers it left. A reused inner forward (`meltr.train_batch =
//! "current"`) was that first one: it started from the inner step's
//! buffers.

use crate::workload::{SavedBuffers, Workload};
use anyhow::Result;
use std::cell::RefCell;

pub(super) struct TrainBatchBuffers<'a> {
    /// The buffers the reused inner forward started from.
    inner: Option<&'a SavedBuffers>,
    /// The buffers the meta step's own first forward started from.
    before: RefCell<Option<SavedBuffers>>,
    /// The buffers as the first forward left them.
    after: RefCell<Option<SavedBuffers>>,
}

impl<'a> TrainBatchBuffers<'a> {
    pub(super) fn new(inner: Option<&'a SavedBuffers>) -> Self {
        TrainBatchBuffers {
            inner,
            before: RefCell::new(None),
            after: RefCell::new(None),
        }
    }

    /// Before a forward of the training batch. (Put back before a forward,
    /// not after one: an in-place write, even of the same values, would
    /// invalidate the graphs that saved them, such as the validation
    /// forward's in exact mode.)
    pub(super) fn before_forward(&self, workload: &dyn Workload) -> Result<()> {
        let mut after = self.after.borrow_mut();
        match (after.is_some(), self.inner) {
            // The buffers now, after the inner and validation forwards, are
            // where the meta step leaves them.
            (false, Some(inner)) => {
                *after = Some(SavedBuffers::take(workload)?);
                inner.restore(workload)
            }
            (false, None) => {
                *self.before.borrow_mut() = Some(SavedBuffers::take(workload)?);
                Ok(())
            }
            (true, Some(inner)) => inner.restore(workload),
            (true, None) => self
                .before
                .borrow()
                .as_ref()
                .expect("taken at the first forward")
                .restore(workload),
        }
    }

    /// After a forward of the training batch: the first one's buffers are
    /// where the meta step leaves them.
    pub(super) fn after_forward(&self, workload: &dyn Workload) -> Result<()> {
        let mut after = self.after.borrow_mut();
        if after.is_none() {
            *after = Some(SavedBuffers::take(workload)?);
        }
        Ok(())
    }

    /// At the meta step's end: the buffers as its first forward left them.
    pub(super) fn leave(&self, workload: &dyn Workload) -> Result<()> {
        match self.after.borrow().as_ref() {
            Some(buffers) => buffers.restore(workload),
            None => Ok(()),
        }
    }
}
