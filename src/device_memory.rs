//! Peak memory of the CUDA caching allocator (the bench's memory column on
//! a GPU), read through the `csrc/device_memory.cpp` shim: tch exposes no
//! allocator statistics.

use crate::ffi::checked;
use anyhow::Result;

extern "C" {
    fn meltr_device_peak_allocated(index: i64, error: *mut *mut std::ffi::c_char) -> i64;
    fn meltr_device_reset_peak(index: i64, error: *mut *mut std::ffi::c_char);
}

/// Starts a new peak on CUDA device `index` (the bytes allocated now).
pub fn reset_peak(index: usize) -> Result<()> {
    checked(|e| unsafe { meltr_device_reset_peak(index as i64, e) })
}

/// Bytes allocated at the peak on CUDA device `index` since [`reset_peak`].
pub fn peak_allocated(index: usize) -> Result<u64> {
    let bytes = checked(|e| unsafe { meltr_device_peak_allocated(index as i64, e) })?;
    Ok(bytes.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    /// Runs on the GPU machine only: `cargo test -- --ignored device_memory`.
    #[test]
    #[ignore = "needs a CUDA device"]
    fn the_peak_covers_a_freed_allocation() {
        let device = Device::Cuda(0);
        let _resident = Tensor::zeros([1 << 20], (Kind::Float, device));
        reset_peak(0).unwrap();
        let start = peak_allocated(0).unwrap();
        drop(Tensor::zeros([16 << 20], (Kind::Float, device))); // 64 MiB
        let peak = peak_allocated(0).unwrap();
        assert!(peak >= start + (64 << 20), "start {start}, peak {peak}");
        reset_peak(0).unwrap();
        assert!(peak_allocated(0).unwrap() < start + (64 << 20));
    }

    #[test]
    fn the_calls_fail_exactly_when_there_is_no_cuda_device() {
        let available = tch::Cuda::is_available();
        assert_eq!(reset_peak(0).is_ok(), available);
        assert_eq!(peak_allocated(0).is_ok(), available);
    }
}
