//! Where a meta step's time goes: an opt-in clock that the hypergradient and
//! the trainer mark at each phase boundary (`meltr-tui bench` prints it).
//!
//! Disabled (the default), a mark does nothing. Enabled, each mark first
//! waits for the device to finish its queued work, so on CUDA a phase is
//! charged for its kernels and not only for launching them (which also
//! makes the step a little slower: time it with the clock disabled).

use std::time::{Duration, Instant};
use tch::Device;

/// Per-phase wall time of meta steps, or nothing when disabled (see the
/// module docs).
#[derive(Default)]
pub struct PhaseClock {
    /// `Some` when enabled: the device to synchronize at each mark.
    device: Option<Device>,
    last: Option<Instant>,
    /// Accumulated time per phase, in first-marked order.
    totals: Vec<(&'static str, Duration)>,
}

impl PhaseClock {
    /// A clock whose marks do nothing (the default).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// A clock that synchronizes `device` at each mark and records phase times.
    pub fn enabled(device: Device) -> Self {
        Self {
            device: Some(device),
            ..Self::default()
        }
    }

    /// Whether marks record anything.
    pub fn is_enabled(&self) -> bool {
        self.device.is_some()
    }

    /// Starts timing the first phase.
    pub fn start(&mut self) {
        if self.is_enabled() {
            self.synchronize();
            self.last = Some(Instant::now());
        }
    }

    /// Ends the phase named `phase` (time since the previous mark or
    /// `start`) and starts the next.
    pub fn mark(&mut self, phase: &'static str) {
        if !self.is_enabled() {
            return;
        }
        self.synchronize();
        let now = Instant::now();
        let spent = now - self.last.unwrap_or(now);
        self.last = Some(now);
        match self.totals.iter_mut().find(|(name, _)| *name == phase) {
            Some((_, total)) => *total += spent,
            None => self.totals.push((phase, spent)),
        }
    }

    /// The accumulated time per phase since the last `take`.
    pub fn take(&mut self) -> Vec<(&'static str, Duration)> {
        self.last = None;
        std::mem::take(&mut self.totals)
    }

    fn synchronize(&self) {
        if let Some(Device::Cuda(index)) = self.device {
            tch::Cuda::synchronize(index as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_clock_records_nothing() {
        let mut clock = PhaseClock::disabled();
        clock.start();
        clock.mark("a");
        assert!(clock.take().is_empty());
    }

    #[test]
    fn marks_accumulate_per_phase_in_first_marked_order() {
        let mut clock = PhaseClock::enabled(Device::Cpu);
        let nap = Duration::from_millis(20);
        for _ in 0..2 {
            clock.start();
            std::thread::sleep(nap);
            clock.mark("slow");
            clock.mark("instant");
        }
        let phases = clock.take();
        let names: Vec<&str> = phases.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["slow", "instant"]);
        assert!(phases[0].1 >= 2 * nap, "{phases:?}");
        assert!(phases[1].1 < nap, "{phases:?}");
        assert!(clock.take().is_empty(), "take resets");
    }
}
