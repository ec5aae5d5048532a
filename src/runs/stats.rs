//! Summaries of a few runs' numbers: mean, sample standard deviation
//! (n − 1, as papers report over seeds), min and max; and how many decimals
//! a mean ± std needs.

/// A spread below this fraction of the mean is rounding (an f32 has 24
/// bits, about 6e-8), not a difference between runs.
const FLOAT_NOISE: f64 = 1e-6;

/// Mean, spread and count of some values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (divides by n − 1); 0 for one value.
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// Every value is an f32's (the log's numbers from an f32 run): CSVs
    /// write them at f32's precision, `0.002`, not `0.0020000000949949026`.
    pub single_precision: bool,
}

impl Summary {
    /// The summary of `values` (NaN stays NaN: a diverged run is not
    /// hidden); None for no values.
    pub fn of(values: &[f64]) -> Option<Summary> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        // f64::min passes a NaN over: NaN runs left min and max at ±inf, or
        // over the other runs only, beside a NaN mean (walkthrough D).
        let nan = values.iter().any(|v| v.is_nan());
        let min = match nan {
            true => f64::NAN,
            false => values.iter().copied().fold(f64::INFINITY, f64::min),
        };
        let max = match nan {
            true => f64::NAN,
            false => values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        };
        // Equal values have no spread: the mean's rounding (three runs at
        // 99.6 give a std of 1.7e-14) would show as `± 0.000000`, and so
        // would values equal but for f32 rounding in the log (a primary-only
        // run's gradient share, 1 and 0.99999994).
        let std = if nan {
            f64::NAN
        } else if n > 1 && max - min > FLOAT_NOISE * mean.abs() {
            let ss: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
            (ss / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Summary {
            n,
            mean,
            std,
            min,
            max,
            single_precision: values.iter().all(|&v| crate::numfmt::is_single(v)),
        })
    }

    /// Whether `other`'s mean is within one standard error of the
    /// difference of this mean (√(s²/n + s'²/n')): the two are not told
    /// apart by their seeds. A single run has no spread of its own: it
    /// takes `single_run_std` (the seed spread its neighbours show; 0 for
    /// none).
    pub fn within_noise_of(&self, other: &Summary, single_run_std: f64) -> bool {
        let variance = |s: &Summary| match s.n {
            0 => 0.0,
            1 => single_run_std * single_run_std,
            n => s.std * s.std / n as f64,
        };
        (self.mean - other.mean).abs() <= (variance(self) + variance(other)).sqrt()
    }

    /// Decimals that show the std to two significant digits (at least 2,
    /// at most 6); none when there is no spread to go by.
    pub fn decimals(&self) -> Option<usize> {
        if self.n < 2 || !(self.std.is_finite() && self.std > 0.0) {
            return None;
        }
        let magnitude = self.std.log10().floor() as i32;
        Some((1 - magnitude).clamp(2, 6) as usize)
    }
}

/// Decimals that show `value` to four significant digits (at least 2, at
/// most 6): a column of single runs, which has no std to go by, reads
/// `67.70` and `0.9037`, not `67.7000`.
pub fn significant_decimals(value: f64) -> usize {
    if !(value.is_finite() && value != 0.0) {
        return 2;
    }
    let magnitude = value.abs().log10().floor() as i32;
    (3 - magnitude).clamp(2, 6) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values that are all f32s (an f32 run's log) are written at f32's
    /// precision; one f64 among them, at f64's.
    #[test]
    fn a_summary_knows_whether_its_values_are_f32s() {
        let logged = [0.072f32, 0.002, 0.074].map(f64::from);
        assert!(Summary::of(&logged).unwrap().single_precision);
        assert!(!Summary::of(&[0.1 + 0.2, 0.5]).unwrap().single_precision);
    }

    #[test]
    fn equal_values_have_no_spread() {
        let s = Summary::of(&[99.6, 99.6, 99.6]).unwrap();
        assert_eq!(s.std, 0.0);
        assert_eq!(s.decimals(), None);
        let f32_rounded = Summary::of(&[1.0, f64::from(0.99999994f32), 1.0]).unwrap();
        assert_eq!(f32_rounded.std, 0.0);
        let tiny_but_real = Summary::of(&[1e-3, 1.001e-3]).unwrap();
        assert!(tiny_but_real.std > 0.0);
        assert!(Summary::of(&[1.0, f64::NAN]).unwrap().std.is_nan());
    }

    #[test]
    fn sample_std_and_decimals() {
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert_eq!(s.mean, 2.5);
        assert!((s.std - (5.0f64 / 3.0).sqrt()).abs() < 1e-15);
        assert_eq!((s.min, s.max, s.n), (1.0, 4.0, 4));
        assert_eq!(s.decimals(), Some(2));
        let tight = Summary::of(&[0.871, 0.873, 0.895]).unwrap();
        assert_eq!(tight.decimals(), Some(3));
        let one = Summary::of(&[0.5]).unwrap();
        assert_eq!((one.std, one.decimals()), (0.0, None));
        assert!(Summary::of(&[]).is_none());
        assert_eq!(significant_decimals(67.7), 2);
        assert_eq!(significant_decimals(0.9037), 4);
        assert_eq!(significant_decimals(-0.0123), 5);
        assert_eq!(significant_decimals(1234.0), 2);
        assert_eq!(significant_decimals(1e-9), 6);
        assert_eq!(significant_decimals(f64::NAN), 2);
        assert!(Summary::of(&[1.0, f64::NAN]).unwrap().mean.is_nan());
        // Min and max too, as the mean (they read +inf and -inf, or the
        // other runs' alone, walkthrough D).
        for values in [&[f64::NAN, f64::NAN][..], &[1.0, f64::NAN, 2.0]] {
            let s = Summary::of(values).unwrap();
            assert!(s.min.is_nan() && s.max.is_nan(), "{s:?}");
        }
    }
}
