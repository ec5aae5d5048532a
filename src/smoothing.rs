//! The one exponential moving average every curve uses, in the TUI and in
//! exported figures alike: TensorBoard's debiased EMA,
//! `s = w·s + (1 − w)·y` divided by `1 − wⁿ`, so the start is not pulled
//! towards zero and both views draw the same smoothed curve.

/// A running debiased EMA with smoothing weight `w` in `[0, 1)` (clamped
/// to 0.9999; 0 returns the samples unchanged). A non-finite sample gives
/// NaN (a gap) and leaves the average as it was.
#[derive(Debug, Clone, Copy)]
pub struct Ema {
    weight: f64,
    accumulated: f64,
    /// `wⁿ` after n finite samples.
    decay: f64,
}

impl Ema {
    pub fn new(weight: f64) -> Self {
        Self {
            weight: weight.clamp(0.0, 0.9999),
            accumulated: 0.0,
            decay: 1.0,
        }
    }

    /// The smoothed value after sample `y`.
    pub fn next(&mut self, y: f64) -> f64 {
        if !y.is_finite() {
            return f64::NAN;
        }
        self.accumulated = self.weight * self.accumulated + (1.0 - self.weight) * y;
        self.decay *= self.weight;
        self.accumulated / (1.0 - self.decay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debiased_from_the_first_sample_and_nan_is_a_gap() {
        let mut ema = Ema::new(0.5);
        assert_eq!(ema.next(1.0), 1.0);
        // (0.25·1 + 0.5·3) / (1 − 0.25)
        assert!((ema.next(3.0) - 7.0 / 3.0).abs() < 1e-12);
        assert!(ema.next(f64::NAN).is_nan());
        // (0.5·1.75 + 0.5·3) / (1 − 0.125)
        assert!((ema.next(3.0) - 19.0 / 7.0).abs() < 1e-12);
        // A constant stays constant; weight 0 is the identity.
        let mut flat = Ema::new(0.9);
        assert!((0..5).all(|_| (flat.next(2.0) - 2.0).abs() < 1e-12));
        let mut none = Ema::new(0.0);
        assert_eq!(none.next(5.0), 5.0);
        assert_eq!(none.next(-1.0), -1.0);
    }
}
