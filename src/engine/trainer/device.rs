//! Where and in what precision a run computes: `train.device` resolved to
//! a libtorch device, its name in logs, and `train.dtype`'s tensor kind.

use super::*;

/// Resolves `train.device` to a libtorch device, or says why not.
pub fn resolve_device(spec: &str) -> Result<Device> {
    let cuda = tch::Cuda::device_count() as usize;
    match spec {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" if cuda > 0 => Ok(Device::Cuda(0)),
        "cuda" => bail!("train.device = \"cuda\" but libtorch sees no CUDA device (run `meltr-tui doctor`)"),
        other => match crate::config::parse_cuda_index(other) {
            Some(i) if i < cuda => Ok(Device::Cuda(i)),
            Some(i) => bail!("train.device = \"{other}\" but libtorch sees {cuda} CUDA device(s); cuda:{i} does not exist"),
            None => bail!("train.device = \"{other}\" is not a device"),
        },
    }
}

/// The short name of `device` in logs and `session.json`: `cuda:N` or `cpu`.
pub fn device_label(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

/// The tensor kind of `train.dtype`.
pub fn dtype(config: &Config) -> Kind {
    match config.train.dtype {
        Dtype::F64 => Kind::Double,
        Dtype::F32 => Kind::Float,
    }
}

impl Trainer {
    /// Whether the run computes on the CPU (host reads of device values
    /// cost no wait there).
    pub(super) fn on_cpu(&self) -> bool {
        self.theta.first().is_none_or(|t| t.device() == Device::Cpu)
    }
}
