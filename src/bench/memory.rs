//! Peak memory of a bench round (the resident set on the CPU, the caching
//! allocator's allocated bytes on CUDA) and the malloc settings that make
//! the CPU figure follow live memory.

use crate::device_memory;
use anyhow::Result;
use tch::Device;

/// How glibc's malloc (which libtorch's CPU tensors come from) serves
/// large blocks. Its default threshold is dynamic: it rises to the size of
/// each large block freed (up to 32 MiB), so a training loop soon takes its
/// tensors from the heap instead of fresh, page-faulting mappings. Setting
/// either value fixes both for the process, so the bench sets them
/// explicitly for each kind of round.
#[derive(Clone, Copy)]
pub(super) enum Allocator {
    /// As a run settles: large blocks stay in the heap (the dynamic
    /// threshold's ceiling, and twice that before the heap is trimmed).
    Timing,
    /// Blocks of 128 KiB and more straight from and back to the OS, so the
    /// resident peak follows live memory: with heap reuse, freed blocks of
    /// a few hundred KiB stayed resident and the peak of the same code
    /// varied by 20 MB between runs (fragmentation, not live memory).
    Memory,
}

impl Allocator {
    pub(super) fn apply(self) {
        let (mmap, trim) = match self {
            Allocator::Timing => (32 << 20, 64 << 20),
            Allocator::Memory => (128 << 10, 128 << 10),
        };
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, mmap);
            libc::mallopt(libc::M_TRIM_THRESHOLD, trim);
        }
    }
}

/// The transient peak memory of `f`, in bytes above the level at its
/// start: allocated memory on CUDA, the resident set on the CPU (where
/// freed memory is first returned to the OS, which costs the next
/// allocations page faults: so this is not a timed round).
pub(super) fn peak_memory(device: Device, f: impl FnOnce() -> Result<()>) -> Result<u64> {
    let resting = match device {
        Device::Cuda(index) => {
            device_memory::reset_peak(index)?;
            device_memory::peak_allocated(index)?
        }
        _ => {
            Allocator::Memory.apply();
            unsafe {
                libc::malloc_trim(0);
            }
            let _ = std::fs::write("/proc/self/clear_refs", "5");
            status_kb("VmRSS:").unwrap_or(0) * 1024
        }
    };
    let result = f();
    let peak = match device {
        Device::Cuda(index) => device_memory::peak_allocated(index)?,
        _ => {
            let peak = status_kb("VmHWM:").unwrap_or(0) * 1024;
            Allocator::Timing.apply();
            peak
        }
    };
    result?;
    Ok(peak.saturating_sub(resting))
}

fn status_kb(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}
