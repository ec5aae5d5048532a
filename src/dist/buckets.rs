//! θ's gradients averaged over the ranks in buckets, overlapped with the
//! backward (`csrc/grad_buckets.cpp`, as PyTorch DDP's reducer): hooks on
//! the parameter leaves copy each gradient into a flat bucket of at most
//! `train.bucket_mb` (in reverse parameter order, the backward's) and start
//! the bucket's asynchronous all-reduce once it is full, while the backward
//! computes the rest; [`GradBuckets::finish`] waits for them all. The hooks
//! only act between [`GradBuckets::arm`] and [`GradBuckets::finish`], so
//! other backward passes over θ (the meta step's, the gradient shares')
//! leave them idle.

use super::ProcessGroup;
use crate::ffi::checked;
use anyhow::{bail, Context, Result};
use std::ffi::{c_char, c_void};
use tch::Tensor;

extern "C" {
    fn meltr_buckets_new(
        group: *mut c_void,
        params: *const *mut torch_sys::C_tensor,
        count: i64,
        bucket_bytes: i64,
        error: *mut *mut c_char,
    ) -> *mut c_void;
    fn meltr_buckets_free(buckets: *mut c_void);
    fn meltr_buckets_count(buckets: *mut c_void) -> i64;
    fn meltr_buckets_arm(
        buckets: *mut c_void,
        bad: *mut torch_sys::C_tensor,
        error: *mut *mut c_char,
    );
    fn meltr_buckets_deliver(
        buckets: *mut c_void,
        grads: *const *mut torch_sys::C_tensor,
        count: i64,
        error: *mut *mut c_char,
    );
    fn meltr_buckets_finish(
        buckets: *mut c_void,
        out: *mut *mut torch_sys::C_tensor,
        count: i64,
        flag: *mut *mut torch_sys::C_tensor,
        in_backward: *mut i64,
        error: *mut *mut c_char,
    );
}

/// The averaged gradients of one backward.
pub struct Averaged {
    /// Views of the buckets, in parameter order (valid until the next
    /// [`GradBuckets::arm`], which replaces a bucket still referenced).
    pub grads: Vec<Tensor>,
    /// True (0-dim bool) only where every rank's flag said finite.
    pub finite: Tensor,
    /// Buckets whose all-reduce started during the backward (the rest
    /// started after it).
    pub started_in_backward: usize,
}

/// Gradient buckets over a fixed parameter list, with their hooks.
pub struct GradBuckets {
    raw: *mut c_void,
    params: usize,
    buckets: usize,
}

// SAFETY: used by the thread that owns the trainer; the C++ side guards its
// state with a mutex against the autograd engine's threads.
unsafe impl Send for GradBuckets {}

impl GradBuckets {
    /// Buckets of at most `bucket_bytes` over `params` (leaves that require
    /// grad) of `group`'s rank, with hooks on every parameter.
    pub fn new(group: &ProcessGroup, params: &[Tensor], bucket_bytes: usize) -> Result<Self> {
        let pointers: Vec<*mut torch_sys::C_tensor> =
            params.iter().map(|p| p.as_ptr() as *mut _).collect();
        let bytes = i64::try_from(bucket_bytes).unwrap_or(i64::MAX);
        // SAFETY: the pointers are live for the call; the shim keeps its own
        // references to the parameters.
        let raw = checked(|error| unsafe {
            meltr_buckets_new(
                group.raw,
                pointers.as_ptr(),
                pointers.len() as i64,
                bytes,
                error,
            )
        })
        .with_context(|| format!("laying out gradient buckets of {bucket_bytes} bytes"))?;
        let buckets = unsafe { meltr_buckets_count(raw) } as usize;
        Ok(Self {
            raw,
            params: params.len(),
            buckets,
        })
    }

    /// How many buckets the parameters fill.
    pub fn len(&self) -> usize {
        self.buckets
    }

    /// Never: a bucket list holds at least one bucket.
    pub fn is_empty(&self) -> bool {
        self.buckets == 0
    }

    /// Arms the hooks for the next backward; `finite` (0-dim bool, this
    /// rank's losses) is averaged along with the gradients.
    pub fn arm(&self, finite: &Tensor) -> Result<()> {
        let bad = finite.logical_not();
        checked(|error| unsafe { meltr_buckets_arm(self.raw, bad.as_ptr() as *mut _, error) })
    }

    /// Puts gradients computed without the hooks (the gradient shares'
    /// backward) into the armed buckets, in parameter order.
    pub fn deliver(&self, grads: &[Tensor]) -> Result<()> {
        let pointers: Vec<*mut torch_sys::C_tensor> =
            grads.iter().map(|g| g.as_ptr() as *mut _).collect();
        checked(|error| unsafe {
            meltr_buckets_deliver(self.raw, pointers.as_ptr(), pointers.len() as i64, error)
        })
    }

    /// Disarms the hooks, starts the buckets not yet started, waits for
    /// all (at most the group's timeout each) and returns the mean
    /// gradients.
    pub fn finish(&self) -> Result<Averaged> {
        let mut out: Vec<*mut torch_sys::C_tensor> = vec![std::ptr::null_mut(); self.params];
        let mut flag: *mut torch_sys::C_tensor = std::ptr::null_mut();
        let mut in_backward = 0i64;
        checked(|error| unsafe {
            meltr_buckets_finish(
                self.raw,
                out.as_mut_ptr(),
                out.len() as i64,
                &mut flag,
                &mut in_backward,
                error,
            )
        })?;
        if flag.is_null() || out.iter().any(|p| p.is_null()) {
            bail!("the gradient buckets returned no gradients");
        }
        // SAFETY: each pointer is a new tensor the shim handed over.
        let grads = out
            .into_iter()
            .map(|p| unsafe { Tensor::from_ptr(p) })
            .collect();
        let flag = unsafe { Tensor::from_ptr(flag) };
        Ok(Averaged {
            grads,
            finite: flag.eq(0.0).reshape(Vec::<i64>::new()),
            started_in_backward: in_backward as usize,
        })
    }
}

impl Drop for GradBuckets {
    fn drop(&mut self) {
        // SAFETY: `raw` came from meltr_buckets_new and is freed once.
        unsafe { meltr_buckets_free(self.raw) }
    }
}
