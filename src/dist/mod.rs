//! Data-parallel groups of processes on torch's own c10d (issue 18): who
//! the ranks are and where they meet ([`rendezvous`]: torchrun's variables
//! or SLURM's), and the collectives data-parallel training needs over a
//! c10d process group (`csrc/process_group.cpp`: a TCPStore rendezvous and
//! ProcessGroupGloo for CPU tensors; `csrc/process_group_nccl.cpp`:
//! ProcessGroupNCCL for CUDA tensors, built where libtorch has CUDA), each
//! bounded by the group's timeout; all-reduces can also start now and be
//! waited for later ([`PendingWork`]), and [`GradBuckets`] overlaps θ's
//! gradient averaging with the backward.

pub mod buckets;
pub mod rendezvous;

use crate::ffi::checked;
use anyhow::{Context, Result};
use std::ffi::{c_char, c_void, CString};
use tch::{Kind, Tensor};

pub use buckets::GradBuckets;
pub use rendezvous::Rendezvous;

extern "C" {
    fn meltr_pg_gloo_new(
        host: *const c_char,
        port: i32,
        rank: i32,
        world: i32,
        timeout_ms: i64,
        error: *mut *mut c_char,
    ) -> *mut c_void;
    #[cfg(meltr_nccl)]
    fn meltr_pg_nccl_new(
        host: *const c_char,
        port: i32,
        rank: i32,
        world: i32,
        timeout_ms: i64,
        error: *mut *mut c_char,
    ) -> *mut c_void;
    fn meltr_pg_free(group: *mut c_void);
    fn meltr_pg_all_reduce_sum(
        group: *mut c_void,
        tensor: *mut torch_sys::C_tensor,
        error: *mut *mut c_char,
    );
    fn meltr_pg_broadcast(
        group: *mut c_void,
        tensor: *mut torch_sys::C_tensor,
        root: i32,
        error: *mut *mut c_char,
    );
    fn meltr_pg_barrier(group: *mut c_void, error: *mut *mut c_char);
    fn meltr_pg_all_reduce_sum_start(
        group: *mut c_void,
        tensor: *mut torch_sys::C_tensor,
        error: *mut *mut c_char,
    ) -> *mut c_void;
    fn meltr_pg_work_wait(work: *mut c_void, error: *mut *mut c_char);
}

/// An all-reduce started by [`ProcessGroup::start_all_reduce_sum`]: its
/// tensor holds the sum once [`PendingWork::wait`] returns.
#[must_use = "wait for the all-reduce before reading its tensor"]
pub struct PendingWork {
    raw: *mut c_void,
}

impl PendingWork {
    /// Blocks until the all-reduce is done, at most the group's timeout.
    pub fn wait(mut self) -> Result<()> {
        let raw = std::mem::replace(&mut self.raw, std::ptr::null_mut());
        // SAFETY: `raw` came from meltr_pg_all_reduce_sum_start; the wait
        // frees it.
        checked(|error| unsafe { meltr_pg_work_wait(raw, error) })
    }
}

impl Drop for PendingWork {
    fn drop(&mut self) {
        if !self.raw.is_null() {
            // Not waited for: wait now (the tensor must not be reused while
            // Gloo or NCCL still writes it), and drop the outcome.
            let raw = std::mem::replace(&mut self.raw, std::ptr::null_mut());
            let _ = checked(|error| unsafe { meltr_pg_work_wait(raw, error) });
        }
    }
}

/// One rank's membership of a c10d process group.
pub struct ProcessGroup {
    raw: *mut c_void,
    rank: usize,
    world: usize,
    timeout: std::time::Duration,
}

// SAFETY: the c10d group is used by one thread at a time (methods take
// `&self` but the trainer owns the group); c10d's backends are thread-safe.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Joins the Gloo group described by `at` (CPU tensors): waits until
    /// every rank has arrived, or fails after the timeout.
    pub fn gloo(at: &Rendezvous) -> Result<Self> {
        Self::join(at, "Gloo", meltr_pg_gloo_new)
    }

    /// Joins the NCCL group described by `at` (CUDA tensors on this
    /// process's device).
    #[cfg(meltr_nccl)]
    pub fn nccl(at: &Rendezvous) -> Result<Self> {
        Self::join(at, "NCCL", meltr_pg_nccl_new)
    }

    /// Without CUDA in libtorch there is no NCCL group.
    #[cfg(not(meltr_nccl))]
    pub fn nccl(_at: &Rendezvous) -> Result<Self> {
        anyhow::bail!("this build's libtorch has no CUDA, so no NCCL process group")
    }

    fn join(
        at: &Rendezvous,
        backend: &str,
        new: unsafe extern "C" fn(
            *const c_char,
            i32,
            i32,
            i32,
            i64,
            *mut *mut c_char,
        ) -> *mut c_void,
    ) -> Result<Self> {
        let host = CString::new(at.master_addr.as_str())
            .with_context(|| format!("MASTER_ADDR {:?} holds a NUL byte", at.master_addr))?;
        let timeout_ms = i64::try_from(at.timeout.as_millis()).unwrap_or(i64::MAX);
        // SAFETY: `host` outlives the call; the shim copies what it keeps.
        let raw = checked(|error| unsafe {
            new(
                host.as_ptr(),
                i32::from(at.master_port),
                at.rank as i32,
                at.world_size as i32,
                timeout_ms,
                error,
            )
        })
        .with_context(|| {
            format!(
                "rank {} of {} could not join the {backend} group at {}:{} within {:?}",
                at.rank, at.world_size, at.master_addr, at.master_port, at.timeout
            )
        })?;
        Ok(Self {
            raw,
            rank: at.rank,
            world: at.world_size,
            timeout: at.timeout,
        })
    }

    /// This process's rank, from 0.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.world
    }

    /// How long the rendezvous and every collective wait for the others.
    pub fn timeout(&self) -> std::time::Duration {
        self.timeout
    }

    /// Replaces every tensor with its mean over the ranks, in one
    /// all-reduce of one flat buffer per dtype run (the tensors of a
    /// gradient list, as DDP's buckets).
    pub fn all_reduce_mean(&self, tensors: &[Tensor]) -> Result<()> {
        let Some(first) = tensors.first() else {
            return Ok(());
        };
        tch::no_grad(|| -> Result<()> {
            for run in tensors.chunk_by(|a, b| a.kind() == b.kind()) {
                let mut flat =
                    Tensor::cat(&run.iter().map(|t| t.reshape(-1)).collect::<Vec<_>>(), 0);
                self.all_reduce_sum(&flat)?;
                let _ = flat.g_div_scalar_(self.world as f64);
                let sizes: Vec<i64> = run.iter().map(|t| t.numel() as i64).collect();
                for (t, part) in run.iter().zip(flat.split_with_sizes(&sizes, 0)) {
                    t.shallow_clone().copy_(&part.view(t.size().as_slice()));
                }
            }
            Ok(())
        })
        .with_context(|| {
            format!(
                "averaging {} tensors ({:?}, ...) over the ranks",
                tensors.len(),
                first.kind()
            )
        })
    }

    /// Sums `tensor` (contiguous) over the ranks, in place.
    pub fn all_reduce_sum(&self, tensor: &Tensor) -> Result<()> {
        checked(|error| unsafe {
            meltr_pg_all_reduce_sum(self.raw, tensor.as_ptr() as *mut _, error)
        })
    }

    /// Starts summing `tensor` (contiguous) over the ranks, in place, and
    /// returns at once; the sum is there after [`PendingWork::wait`].
    pub fn start_all_reduce_sum(&self, tensor: &Tensor) -> Result<PendingWork> {
        let raw = checked(|error| unsafe {
            meltr_pg_all_reduce_sum_start(self.raw, tensor.as_ptr() as *mut _, error)
        })?;
        Ok(PendingWork { raw })
    }

    /// Overwrites every tensor with rank `root`'s.
    pub fn broadcast(&self, tensors: &[Tensor], root: usize) -> Result<()> {
        tch::no_grad(|| {
            for t in tensors {
                let contiguous = t.contiguous();
                checked(|error| unsafe {
                    meltr_pg_broadcast(self.raw, contiguous.as_ptr() as *mut _, root as i32, error)
                })?;
                if contiguous.data_ptr() != t.data_ptr() {
                    t.shallow_clone().copy_(&contiguous);
                }
            }
            Ok(())
        })
    }

    /// Returns once every rank has called it.
    pub fn barrier(&self) -> Result<()> {
        checked(|error| unsafe { meltr_pg_barrier(self.raw, error) })
    }

    /// Rank `root`'s `value` on every rank (a host number, e.g. a step).
    pub fn broadcast_f64(&self, value: f64, root: usize) -> Result<f64> {
        let t = Tensor::from_slice(&[value]).to_kind(Kind::Double);
        self.broadcast(std::slice::from_ref(&t), root)?;
        Ok(t.double_value(&[0]))
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: `raw` came from meltr_pg_gloo_new and is freed once.
        unsafe { meltr_pg_free(self.raw) }
    }
}

#[cfg(test)]
mod tests;
