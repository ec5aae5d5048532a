//! GPU utilisation and memory from NVML, loaded at run time with
//! libloading (`libnvidia-ml.so.1`), for the TUI's header and the trainer's
//! logged steps. Where the library, the driver or the device is missing,
//! [`Nvml::open`] gives `None` and the reading is simply left out. The
//! trainer reads through [`GpuProbe`], so tests can stand in for the GPU.

use crate::session::metrics::GpuStats;
use libloading::Library;
use std::ffi::{c_char, c_int, c_uint, c_void, CString};

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuSample {
    pub util_percent: u32,
    pub mem_used: u64,
    pub mem_total: u64,
}

type Device = *mut c_void;

#[repr(C)]
#[derive(Default)]
struct Utilization {
    gpu: c_uint,
    memory: c_uint,
}

#[repr(C)]
#[derive(Default)]
struct Memory {
    total: u64,
    free: u64,
    used: u64,
}

type InitFn = unsafe extern "C" fn() -> c_int;
type ShutdownFn = unsafe extern "C" fn() -> c_int;
type ByIndexFn = unsafe extern "C" fn(c_uint, *mut Device) -> c_int;
type ByUuidFn = unsafe extern "C" fn(*const c_char, *mut Device) -> c_int;
type UtilFn = unsafe extern "C" fn(Device, *mut Utilization) -> c_int;
type MemFn = unsafe extern "C" fn(Device, *mut Memory) -> c_int;

const SUCCESS: c_int = 0;

/// An initialised NVML handle on one device.
pub struct Nvml {
    device: Device,
    utilization: UtilFn,
    memory: MemFn,
    shutdown: ShutdownFn,
    /// Keeps the function pointers above valid.
    _lib: Library,
}

// SAFETY: NVML's API is thread-safe, and the handle is only a device id
// valid until `nvmlShutdown` (in `Drop`); the trainer is built on one
// thread and runs on another.
unsafe impl Send for Nvml {}

/// Where the trainer reads the GPU's numbers at a logged step.
pub trait GpuProbe: Send {
    /// A reading now, or `None` when there is none this time.
    fn sample(&mut self) -> Option<GpuStats>;
}

/// The real probe: NVML on the training device, plus the caching
/// allocator's peak on it.
pub struct CudaProbe {
    nvml: Nvml,
    index: usize,
}

impl CudaProbe {
    /// The probe for CUDA device `index` (`device` is its label, e.g.
    /// `cuda:0`), or `None` without NVML.
    pub fn open(device: &str, index: usize) -> Option<CudaProbe> {
        Some(CudaProbe {
            nvml: Nvml::open(device)?,
            index,
        })
    }
}

const MIB: f64 = (1u64 << 20) as f64;

impl GpuProbe for CudaProbe {
    fn sample(&mut self) -> Option<GpuStats> {
        let s = self.nvml.sample()?;
        Some(GpuStats {
            util: f64::from(s.util_percent),
            mem_used_mib: s.mem_used as f64 / MIB,
            mem_total_mib: s.mem_total as f64 / MIB,
            peak_allocated_mib: crate::device_memory::peak_allocated(self.index)
                .ok()
                .map(|bytes| bytes as f64 / MIB),
        })
    }
}

/// Which NVML device a `cuda`/`cuda:N ...` device string means, honouring
/// `CUDA_VISIBLE_DEVICES` (an index or a `GPU-...` UUID).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Index(u32),
    Uuid(String),
}

fn target(device: &str, visible: Option<&str>) -> Option<Target> {
    let rest = device.strip_prefix("cuda")?;
    let ordinal: usize = match rest.strip_prefix(':') {
        Some(r) => r
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()?,
        None if rest.is_empty() || rest.starts_with(' ') => 0,
        None => return None,
    };
    match visible.filter(|v| !v.trim().is_empty()) {
        None => Some(Target::Index(ordinal as u32)),
        Some(list) => {
            let entry = list.split(',').nth(ordinal)?.trim();
            match entry.parse() {
                Ok(i) => Some(Target::Index(i)),
                Err(_) => Some(Target::Uuid(entry.to_string())),
            }
        }
    }
}

impl Nvml {
    /// NVML on the device named by the session's device string, or `None`
    /// (not CUDA, no library, no driver, no such device).
    pub fn open(device: &str) -> Option<Nvml> {
        let target = target(
            device,
            std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref(),
        )?;
        // SAFETY: the symbols are NVML's documented C API with these
        // signatures; `_lib` outlives every pointer taken from it.
        unsafe {
            let lib = Library::new("libnvidia-ml.so.1").ok()?;
            let init: InitFn = *lib.get::<InitFn>(b"nvmlInit_v2\0").ok()?;
            let shutdown: ShutdownFn = *lib.get::<ShutdownFn>(b"nvmlShutdown\0").ok()?;
            let utilization: UtilFn =
                *lib.get::<UtilFn>(b"nvmlDeviceGetUtilizationRates\0").ok()?;
            let memory: MemFn = *lib.get::<MemFn>(b"nvmlDeviceGetMemoryInfo\0").ok()?;
            if init() != SUCCESS {
                return None;
            }
            let mut handle: Device = std::ptr::null_mut();
            let found = match &target {
                Target::Index(i) => {
                    let by_index = lib
                        .get::<ByIndexFn>(b"nvmlDeviceGetHandleByIndex_v2\0")
                        .ok();
                    by_index.is_some_and(|f| f(*i, &mut handle) == SUCCESS)
                }
                Target::Uuid(uuid) => {
                    let by_uuid = lib.get::<ByUuidFn>(b"nvmlDeviceGetHandleByUUID\0").ok();
                    let c = CString::new(uuid.as_str()).ok();
                    matches!((by_uuid, c), (Some(f), Some(c)) if f(c.as_ptr(), &mut handle) == SUCCESS)
                }
            };
            if !found {
                shutdown();
                return None;
            }
            Some(Nvml {
                device: handle,
                utilization,
                memory,
                shutdown,
                _lib: lib,
            })
        }
    }

    /// A fresh reading, or `None` when NVML answers with an error.
    pub fn sample(&self) -> Option<GpuSample> {
        let mut u = Utilization::default();
        let mut m = Memory::default();
        // SAFETY: valid device handle from `open`, out-pointers to live structs.
        let ok = unsafe {
            (self.utilization)(self.device, &mut u) == SUCCESS
                && (self.memory)(self.device, &mut m) == SUCCESS
        };
        ok.then_some(GpuSample {
            util_percent: u.gpu,
            mem_used: m.used,
            mem_total: m.total,
        })
    }
}

impl Drop for Nvml {
    fn drop(&mut self) {
        // SAFETY: NVML was initialised in `open`.
        unsafe {
            (self.shutdown)();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_strings_map_to_nvml_devices() {
        assert_eq!(target("cpu", None), None);
        assert_eq!(target("cuda", None), Some(Target::Index(0)));
        assert_eq!(target("cuda:1 (NVIDIA H100)", None), Some(Target::Index(1)));
        assert_eq!(
            target("cuda:1 (NVIDIA H100)", Some("3,5")),
            Some(Target::Index(5))
        );
        assert_eq!(
            target("cuda:0", Some("GPU-abc")),
            Some(Target::Uuid("GPU-abc".into()))
        );
        assert_eq!(target("cuda:2", Some("0,1")), None);
        assert_eq!(target("cudax", None), None);
    }

    #[test]
    fn open_never_panics() {
        // Without a GPU this is None; with one, a reading has a total.
        if let Some(nvml) = Nvml::open("cuda:0") {
            let s = nvml.sample().expect("NVML reads the device it opened");
            assert!(s.mem_total > 0 && s.util_percent <= 100);
        }
        assert!(Nvml::open("cpu").is_none());
    }
}
