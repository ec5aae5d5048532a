//! Series preparation before drawing: exponential smoothing (the shared
//! debiased EMA, [`crate::smoothing`]) and min/max decimation per pixel column, which keeps every
//! visible extreme of a 10⁶-point curve with a few thousand points.

use super::style::SeriesLook;

/// How prominently a line is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emphasis {
    /// Full width, the series' dash pattern.
    Main,
    /// Thin, solid and translucent: the raw curve behind its smoothed one.
    Faint,
    /// Like `Main`, with a marker at every point while there are few.
    WithMarkers,
    /// Larger markers only (highlighted points).
    MarkersOnly,
    /// A translucent filled area (a band around a mean): `points` go along
    /// the upper edge and back along the lower one, a closed outline.
    Band,
}

/// A data series; unlabelled ones stay out of the legend.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub label: Option<String>,
    pub points: Points,
    pub look: SeriesLook,
    pub emphasis: Emphasis,
}

/// A curve as `(x, y)` pairs, `x` non-decreasing.
pub type Points = Vec<(f64, f64)>;

/// The curve smoothed by [`crate::smoothing::Ema`] with weight `weight`
/// (`weight <= 0` returns the input).
pub fn ema(points: &[(f64, f64)], weight: f64) -> Points {
    if weight <= 0.0 {
        return points.to_vec();
    }
    let mut ema = crate::smoothing::Ema::new(weight);
    points.iter().map(|&(x, y)| (x, ema.next(y))).collect()
}

/// [`ema`] of the logarithms, for a log axis: a geometric mean that one
/// spike moves by its factor, not its size. A curve with values at 0 or
/// below (a log-likelihood) has no logarithm there: it is smoothed as it
/// is, and the log axis leaves out what falls at 0 or below (smoothing
/// the logarithms of the rest drew a plateau at 0.2 where the loss was
/// −0.5, and cut a group's mean at its last value above 0, walkthrough H1).
pub fn ema_of_logs(points: &[(f64, f64)], weight: f64) -> Points {
    if points.iter().any(|p| p.1 <= 0.0) {
        return ema(points, weight);
    }
    let positive: Points = points
        .iter()
        .filter(|p| p.1 > 0.0)
        .map(|&(x, y)| (x, y.ln()))
        .collect();
    ema(&positive, weight)
        .into_iter()
        .map(|(x, y)| (x, y.exp()))
        .collect()
}

/// How a figure smooths its training curves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Smoothing {
    /// [`super::DEFAULT_EMA`], lowered for short curves so that the EMA's
    /// time constant, 1/(1 − w) points, stays within a twentieth of the
    /// longest curve: with 0.9 a 30-point curve would lag its last 10
    /// points. Curves of 200 points or more get 0.9; 20 or fewer, none.
    Auto,
    /// This EMA weight in `[0, 1)` (0 = none) whatever the curves' length.
    Ema(f64),
}

impl Smoothing {
    /// The EMA weight for a figure whose longest smoothed curve has
    /// `points` points (`Auto` rounded down to two decimals, so the figure's
    /// note names the weight used).
    pub fn weight(self, points: usize) -> f64 {
        match self {
            Smoothing::Ema(weight) => weight,
            Smoothing::Auto => {
                let cap = 1.0 - 20.0 / points.max(1) as f64;
                ((cap * 100.0).floor() / 100.0).clamp(0.0, super::DEFAULT_EMA)
            }
        }
    }

    /// The EMA weight for a figure of these curves: the longest sets it.
    pub fn weight_for<'a>(self, curves: impl Iterator<Item = &'a Points>) -> f64 {
        self.weight(curves.map(Vec::len).max().unwrap_or(0))
    }
}

impl std::str::FromStr for Smoothing {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(Smoothing::Auto);
        }
        match s.parse::<f64>() {
            Ok(w) if (0.0..1.0).contains(&w) => Ok(Smoothing::Ema(w)),
            _ => Err(format!(
                "expected `auto` or an EMA weight in [0, 1) (0 turns smoothing off), got `{s}`"
            )),
        }
    }
}

/// Keeps, for each of `columns` equal slices of `[x_lo, x_hi]`, the first,
/// lowest, highest and last point (in their original order). Drawn at that
/// many columns the result looks exactly like the full curve.
pub fn decimate(points: &[(f64, f64)], x_lo: f64, x_hi: f64, columns: usize) -> Points {
    if points.len() <= 4 * columns.max(1) || x_hi <= x_lo {
        return points.to_vec();
    }
    let width = (x_hi - x_lo) / columns as f64;
    let column = |x: f64| (((x - x_lo) / width).floor().max(0.0) as usize).min(columns - 1);
    let mut out = Vec::with_capacity(4 * columns);
    let mut start = 0;
    while start < points.len() {
        let col = column(points[start].0);
        let mut end = start + 1;
        while end < points.len() && column(points[end].0) == col {
            end += 1;
        }
        let slice = &points[start..end];
        let (mut lo, mut hi) = (0, 0);
        for (i, p) in slice.iter().enumerate() {
            if p.1 < slice[lo].1 {
                lo = i;
            }
            if p.1 > slice[hi].1 {
                hi = i;
            }
        }
        let mut keep = [0, lo, hi, slice.len() - 1];
        keep.sort_unstable();
        let mut last = usize::MAX;
        for i in keep {
            if i != last {
                out.push(slice[i]);
                last = i;
            }
        }
        start = end;
    }
    out
}

/// `(min, max)` of the finite values of `values`, if any.
pub fn extent(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold(None, |acc, v| match acc {
            None => Some((v, v)),
            Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
        })
}

/// Linear interpolation of `y` at `x` on a curve sorted by `x`.
pub fn interpolate(curve: &[(f64, f64)], x: f64) -> Option<f64> {
    let i = curve.partition_point(|p| p.0 < x);
    match (i.checked_sub(1).and_then(|j| curve.get(j)), curve.get(i)) {
        (_, Some(&(x1, y1))) if x1 == x => Some(y1),
        (Some(&(x0, y0)), Some(&(x1, y1))) => Some(y0 + (y1 - y0) * (x - x0) / (x1 - x0)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plot::DEFAULT_EMA;

    #[test]
    fn an_ema_of_logs_is_moved_by_a_spikes_factor_not_its_size() {
        // 1, then a 1000x spike, then 1 again for 20 points.
        let mut pts: Points = vec![(0.0, 1.0), (1.0, 1000.0)];
        pts.extend((2..22).map(|x| (x as f64, 1.0)));
        let (linear, logs) = (ema(&pts, 0.9), ema_of_logs(&pts, 0.9));
        let end = |p: &Points| p.last().unwrap().1;
        // The linear EMA stays far above every raw point after it; the log
        // one is back within 20% of them.
        assert!(end(&linear) > 5.0, "{}", end(&linear));
        assert!(end(&logs) < 1.2, "{}", end(&logs));
        // A curve that reaches 0 or below is smoothed as it is, every
        // point kept (walkthrough H1's log-likelihood).
        let negative = vec![(0.0, -1.0), (1.0, 2.0), (2.0, -0.5)];
        assert_eq!(ema_of_logs(&negative, 0.5), ema(&negative, 0.5));
    }

    #[test]
    fn ema_is_debiased_and_zero_weight_is_identity() {
        let pts: Points = (0..5).map(|i| (i as f64, 2.0)).collect();
        for (_, y) in ema(&pts, 0.9) {
            assert!((y - 2.0).abs() < 1e-12);
        }
        assert_eq!(ema(&pts, 0.0), pts);
    }

    /// A walkthrough's 30-point curve lagged its last 10 points under 0.9.
    #[test]
    fn auto_smoothing_keeps_the_time_constant_within_a_twentieth_of_the_curve() {
        let auto = Smoothing::Auto;
        assert_eq!(auto.weight(30), 0.33);
        assert_eq!(auto.weight(100), 0.8);
        assert_eq!(auto.weight(200), DEFAULT_EMA);
        assert_eq!(auto.weight(100_000), DEFAULT_EMA);
        assert_eq!(
            (auto.weight(20), auto.weight(3), auto.weight(0)),
            (0.0, 0.0, 0.0)
        );
        for n in 21..400 {
            let w = auto.weight(n);
            assert!(1.0 / (1.0 - w) <= n as f64 / 20.0 + 1e-9, "{n}: {w}");
        }
        assert_eq!(Smoothing::Ema(0.95).weight(30), 0.95);
        let curves: [Points; 2] = [vec![(0.0, 1.0); 30], vec![(0.0, 1.0); 100]];
        assert_eq!(auto.weight_for(curves.iter()), 0.8);
    }

    #[test]
    fn smoothing_parses_auto_or_a_weight_in_the_unit_interval() {
        assert_eq!("auto".parse(), Ok(Smoothing::Auto));
        assert_eq!("0.5".parse(), Ok(Smoothing::Ema(0.5)));
        assert_eq!("0".parse(), Ok(Smoothing::Ema(0.0)));
        for bad in ["1", "-0.1", "nan", "fast"] {
            let err = bad.parse::<Smoothing>().unwrap_err();
            assert!(err.contains(&format!("got `{bad}`")), "{err}");
        }
    }

    #[test]
    fn decimation_keeps_extremes_and_order() {
        let pts: Points = (0..1_000_000u64)
            .map(|i| (i as f64, ((i * 7919) % 1000) as f64))
            .collect();
        let d = decimate(&pts, 0.0, 999_999.0, 500);
        assert!(d.len() <= 2000, "{}", d.len());
        assert!(d.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(
            extent(d.iter().map(|p| p.1)),
            extent(pts.iter().map(|p| p.1))
        );
        assert_eq!(d.first(), pts.first());
        assert_eq!(d.last(), pts.last());
    }

    #[test]
    fn interpolation() {
        let c = vec![(0.0, 0.0), (1.0, 2.0), (2.0, 3.0)];
        assert_eq!(interpolate(&c, 0.5), Some(1.0));
        assert_eq!(interpolate(&c, 2.0), Some(3.0));
        assert_eq!(interpolate(&c, 3.0), None);
    }
}
