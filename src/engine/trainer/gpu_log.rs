//! The GPU's numbers on logged train steps: a [`GpuProbe`] opened once per
//! run on a CUDA device (NVML plus the caching allocator), read at every
//! `train.log_every` step into the train line's `gpu` field. On CPU, or
//! without NVML, there is no probe and no field (without NVML on CUDA, the
//! first logged step says why, once).

use super::*;
use crate::gpu::{CudaProbe, GpuProbe};

/// Where a run's GPU readings come from.
pub(super) enum GpuSource {
    /// CPU, or NVML missing and already said.
    Nothing,
    Probe(Box<dyn GpuProbe>),
    /// CUDA without NVML: this is said at the first logged step (written
    /// then, not at setup, so only rank 0 of a data-parallel group says it).
    Missing(String),
}

impl GpuSource {
    /// The source for the training device, opened once per run.
    pub(super) fn open(device: Device) -> GpuSource {
        match device {
            Device::Cuda(index) => match CudaProbe::open(&device_label(device), index) {
                Some(probe) => GpuSource::Probe(Box::new(probe)),
                None => GpuSource::Missing("GPU utilisation and memory are not logged: NVML (libnvidia-ml.so.1) could not be opened for this device".into()),
            },
            _ => GpuSource::Nothing,
        }
    }
}

impl Trainer {
    /// Reads the GPU through `probe` at each logged step from now on,
    /// instead of NVML (tests, or an embedding program with its own
    /// reading).
    pub fn set_gpu_probe(&mut self, probe: Box<dyn GpuProbe>) {
        self.gpu = GpuSource::Probe(probe);
    }

    /// The reading for this logged step's train line, if any.
    pub(super) fn read_gpu(&mut self) -> Option<GpuStats> {
        match &mut self.gpu {
            GpuSource::Probe(probe) => probe.sample(),
            GpuSource::Nothing => None,
            GpuSource::Missing(_) => {
                if let GpuSource::Missing(message) =
                    std::mem::replace(&mut self.gpu, GpuSource::Nothing)
                {
                    self.emit(Record::Event {
                        level: Level::Info,
                        message,
                    });
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::log::read_metrics;

    /// Counts its readings; the n-th reading has `util = n`.
    struct FakeProbe(u32);

    impl GpuProbe for FakeProbe {
        fn sample(&mut self) -> Option<GpuStats> {
            self.0 += 1;
            Some(GpuStats {
                util: f64::from(self.0),
                mem_used_mib: 100.0 * f64::from(self.0),
                mem_total_mib: 8192.0,
                peak_allocated_mib: None,
            })
        }
    }

    fn config(device: &str, steps: u64, log_every: u64) -> Config {
        // Compiled in: the GPU machine runs this binary away from the repo.
        let mut config = Config::parse(include_str!("../../../configs/synthetic.toml")).unwrap();
        config.train.device = device.into();
        config.train.steps = steps;
        config.train.log_every = log_every;
        config
    }

    /// Runs `config` in a new session folder (with `probe` when given) and
    /// returns the train lines' steps and GPU readings.
    fn train_lines(
        config: Config,
        probe: Option<Box<dyn GpuProbe>>,
    ) -> Vec<(u64, Option<GpuStats>)> {
        let dir = tempfile::tempdir().unwrap();
        let (events, _keep) = std::sync::mpsc::sync_channel(1024);
        let (mut trainer, _) = Trainer::new(dir.path(), config, false, events).unwrap();
        if let Some(probe) = probe {
            trainer.set_gpu_probe(probe);
        }
        let (_commands, rx) = std::sync::mpsc::channel();
        assert_eq!(trainer.run(rx).unwrap(), Status::Finished);
        read_metrics(&SessionDir::new(dir.path()).metrics())
            .unwrap()
            .lines
            .into_iter()
            .filter_map(|line| match line.record {
                Record::Train { gpu, .. } => Some((line.step, gpu)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_probe_is_read_on_exactly_the_logged_steps() {
        let lines = train_lines(config("cpu", 12, 4), Some(Box::new(FakeProbe(0))));
        let steps: Vec<u64> = lines.iter().map(|(s, _)| *s).collect();
        assert_eq!(steps, [4, 8, 12]);
        // One reading per logged step, in order: none taken in between.
        let utils: Vec<Option<f64>> = lines.iter().map(|(_, g)| g.map(|g| g.util)).collect();
        assert_eq!(utils, [Some(1.0), Some(2.0), Some(3.0)]);
        assert_eq!(lines[2].1.map(|g| g.mem_used_mib), Some(300.0));
    }

    #[test]
    fn a_cpu_run_logs_no_gpu_field() {
        let lines = train_lines(config("cpu", 4, 2), None);
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|(_, gpu)| gpu.is_none()), "{lines:?}");
        assert!(matches!(GpuSource::open(Device::Cpu), GpuSource::Nothing));
    }

    #[test]
    #[ignore = "needs a CUDA GPU; run by scripts/gpu-check.sh"]
    fn logged_steps_carry_nvml_utilisation_and_memory_on_cuda() {
        let lines = train_lines(config("cuda", 5, 1), None);
        assert_eq!(lines.len(), 5, "{lines:?}");
        for (step, gpu) in lines {
            let gpu = gpu.unwrap_or_else(|| panic!("step {step} has no gpu field"));
            assert!((0.0..=100.0).contains(&gpu.util), "step {step}: {gpu:?}");
            assert!(gpu.mem_total_mib > 0.0, "step {step}: {gpu:?}");
            assert!(
                gpu.mem_used_mib > 0.0 && gpu.mem_used_mib <= gpu.mem_total_mib,
                "step {step}: {gpu:?}"
            );
            let peak = gpu
                .peak_allocated_mib
                .unwrap_or_else(|| panic!("step {step}: no allocator peak"));
            assert!(
                peak > 0.0 && peak <= gpu.mem_total_mib,
                "step {step}: {gpu:?}"
            );
        }
    }
}
