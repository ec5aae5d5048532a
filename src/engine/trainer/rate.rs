//! The steps per second a run reports (the TUI's header and its ETA):
//! read over half-second windows of training time (pauses left out) and
//! averaged over about [`RATE_SECONDS`], so an evaluation or a checkpoint
//! inside one window does not swing it (walkthrough J1's header read 12.6,
//! 71.6, then 22.2 steps/s of a steady 53, and an ETA of 11 minutes for a
//! run of one).

/// The window a rate is read over, in seconds of training time.
const WINDOW_SECONDS: f64 = 0.5;
/// The average's time constant, in seconds of training time.
const RATE_SECONDS: f64 = 10.0;

/// The smoothed rate and the window being read.
#[derive(Debug, Default)]
pub(super) struct StepRate {
    /// Steps per second; 0 until the first window closes.
    pub(super) per_sec: f64,
    /// Where the open window began: training time, step.
    since: Option<(f64, u64)>,
}

impl StepRate {
    /// Starts a window at `now` (seconds of training time), `step`: at the
    /// start of a run or after a resume.
    pub(super) fn restart(&mut self, now: f64, step: u64) {
        self.since = Some((now, step));
    }

    /// The rate as of `now` at `step`: a window that has lasted
    /// [`WINDOW_SECONDS`] closes and joins the average.
    pub(super) fn tick(&mut self, now: f64, step: u64) -> f64 {
        let Some((from, from_step)) = self.since else {
            self.restart(now, step);
            return self.per_sec;
        };
        let elapsed = now - from;
        if elapsed >= WINDOW_SECONDS {
            let rate = step.saturating_sub(from_step) as f64 / elapsed;
            let weight = 1.0 - (-elapsed / RATE_SECONDS).exp();
            self.per_sec = match self.per_sec > 0.0 {
                true => self.per_sec + weight * (rate - self.per_sec),
                false => rate,
            };
            self.restart(now, step);
        }
        self.per_sec
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 50 steps/s with a 3 s evaluation every 10 s: the rate stays near
    /// the run's average (about 38/s) instead of swinging to a tenth of it
    /// and back (walkthrough J1).
    #[test]
    fn an_evaluation_in_one_window_does_not_swing_the_rate() {
        let mut rate = StepRate::default();
        let (mut now, mut step) = (0.0, 0u64);
        rate.restart(now, step);
        let mut seen = Vec::new();
        for second in 0..60 {
            if second % 10 == 9 {
                now += 3.0;
            }
            for _ in 0..50 {
                now += 0.02;
                step += 1;
                seen.push(rate.tick(now, step));
            }
        }
        let late = &seen[seen.len() / 2..];
        let (low, high) = late
            .iter()
            .fold((f64::MAX, 0.0f64), |(l, h), &r| (l.min(r), h.max(r)));
        assert!(low > 25.0 && high < 52.0, "rates from {low} to {high}");
        // A steady run reads its rate from the first window on.
        let mut steady = StepRate::default();
        steady.restart(0.0, 0);
        assert_eq!(steady.tick(0.25, 10), 0.0);
        assert!((steady.tick(0.5, 20) - 40.0).abs() < 1e-9);
    }
}
