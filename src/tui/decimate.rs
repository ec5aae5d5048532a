//! Min/max decimation whose cost does not grow with the length of a run.
//!
//! A [`Track`] holds the x positions (steps) shared by several channels (one
//! per loss, say) and, per channel, a [`Pyramid`]: the raw values plus
//! successive levels of pairwise (min, max), appended in O(log n).
//!
//! Decimating to `w` columns picks the pyramid level whose blocks are about
//! a quarter of a column, snaps the column edges to whole blocks (an error
//! of at most an eighth of a column, less than a braille dot) and scans
//! that level: about `4w` nodes, read in order, whatever the run's length.
//! Column edges are found by galloping from where uniform steps would put
//! them. Every sample falls in exactly one column, so a one-step spike is
//! never lost. Short runs (at most 4 samples a column) are drawn raw.
//!
//! Non-finite values (NaN, ±inf) are stored but ignored by min/max, so a
//! skipped step never flattens a chart.

use crate::smoothing::Ema;

/// Raw values plus a min/max pyramid over them.
#[derive(Debug, Clone, Default)]
pub struct Pyramid {
    raw: Vec<f64>,
    /// `levels[k][i]` covers raw indices `i * 2^(k+1) .. (i + 1) * 2^(k+1)`.
    levels: Vec<Vec<(f64, f64)>>,
}

const EMPTY: (f64, f64) = (f64::INFINITY, f64::NEG_INFINITY);

fn merge(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    (a.0.min(b.0), a.1.max(b.1))
}

fn leaf(y: f64) -> (f64, f64) {
    if y.is_finite() {
        (y, y)
    } else {
        EMPTY
    }
}

impl Pyramid {
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    pub fn raw(&self) -> &[f64] {
        &self.raw
    }

    /// Appends one value, updating one node per level: O(log n).
    pub fn push(&mut self, y: f64) {
        let index = self.raw.len();
        self.raw.push(y);
        let value = leaf(y);
        let mut k = 0;
        // Level k is needed once more than 2^k values exist.
        while (1usize << k) < self.raw.len() {
            if k == self.levels.len() {
                // A new top level starts as the old top node (all earlier values).
                let below = if k == 0 {
                    leaf(self.raw[0])
                } else {
                    self.levels[k - 1][0]
                };
                self.levels.push(vec![below]);
            }
            let row = &mut self.levels[k];
            let parent = index >> (k + 1);
            if parent == row.len() {
                row.push(value);
            } else {
                row[parent] = merge(row[parent], value);
            }
            k += 1;
        }
    }

    /// (min, max) of the finite values in `start..end`; `None` when there are none.
    pub fn min_max(&self, start: usize, end: usize) -> Option<(f64, f64)> {
        let end = end.min(self.raw.len());
        if start >= end {
            return None;
        }
        let mut acc = EMPTY;
        let (mut lo, mut hi) = (start, end);
        // Peel unaligned raw values at both ends, then climb.
        if lo % 2 == 1 {
            acc = merge(acc, leaf(self.raw[lo]));
            lo += 1;
        }
        if hi % 2 == 1 && hi > lo {
            acc = merge(acc, leaf(self.raw[hi - 1]));
            hi -= 1;
        }
        let (mut lo, mut hi) = (lo / 2, hi / 2);
        for row in &self.levels {
            if lo >= hi {
                break;
            }
            if lo % 2 == 1 {
                acc = merge(acc, row[lo]);
                lo += 1;
            }
            if hi % 2 == 1 && hi > lo {
                acc = merge(acc, row[hi - 1]);
                hi -= 1;
            }
            lo /= 2;
            hi /= 2;
        }
        (acc.0 <= acc.1).then_some(acc)
    }

    /// Node `i` of the blocks of `2^e` raw values (`e = 0`: the raw value).
    fn node(&self, e: usize, i: usize) -> (f64, f64) {
        if e == 0 {
            leaf(self.raw[i])
        } else {
            self.levels[e - 1][i]
        }
    }
}

/// Steps shared by several channels of values (NaN where a channel has no
/// value at that step).
#[derive(Debug, Clone, Default)]
pub struct Track {
    xs: Vec<f64>,
    channels: Vec<Pyramid>,
    smoothing: Option<Smoothing>,
}

/// An EMA copy of every channel, extended as samples arrive.
#[derive(Debug, Clone)]
struct Smoothing {
    weight: f64,
    channels: Vec<Pyramid>,
    state: Vec<Ema>,
}

impl Track {
    pub fn new(channels: usize) -> Self {
        Self {
            xs: Vec::new(),
            channels: vec![Pyramid::default(); channels],
            smoothing: None,
        }
    }

    pub fn len(&self) -> usize {
        self.xs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.xs.is_empty()
    }

    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    pub fn xs(&self) -> &[f64] {
        &self.xs
    }

    pub fn channel(&self, c: usize) -> &Pyramid {
        &self.channels[c]
    }

    /// Adds a channel, NaN-filled for the samples already recorded.
    pub fn add_channel(&mut self) -> usize {
        let mut p = Pyramid::default();
        for _ in 0..self.xs.len() {
            p.push(f64::NAN);
        }
        self.channels.push(p);
        let weight = self.smoothing.as_ref().map(|s| s.weight);
        self.set_smoothing(weight);
        self.channels.len() - 1
    }

    /// Keeps an EMA copy of every channel (`None`: no smoothing). Changing
    /// the weight rebuilds the copy once, O(n); appends then extend it in O(1).
    pub fn set_smoothing(&mut self, weight: Option<f64>) {
        self.smoothing = weight.map(|weight| {
            let mut state = vec![Ema::new(weight); self.channels.len()];
            let channels = self
                .channels
                .iter()
                .zip(&mut state)
                .map(|(p, ema)| {
                    let mut out = Pyramid::default();
                    for &y in p.raw() {
                        out.push(ema.next(y));
                    }
                    out
                })
                .collect();
            Smoothing {
                weight,
                channels,
                state,
            }
        });
    }

    pub fn smoothing(&self) -> Option<f64> {
        self.smoothing.as_ref().map(|s| s.weight)
    }

    /// Appends one sample; `values[c]` is channel c's value (missing = NaN).
    /// Steps must not decrease; a step equal to the last one (a resumed run
    /// writing the same step again) is appended like any other.
    pub fn push(&mut self, x: f64, values: &[f64]) {
        self.xs.push(x);
        for (c, p) in self.channels.iter_mut().enumerate() {
            p.push(values.get(c).copied().unwrap_or(f64::NAN));
        }
        if let Some(s) = &mut self.smoothing {
            for (c, (p, ema)) in s.channels.iter_mut().zip(&mut s.state).enumerate() {
                p.push(ema.next(values.get(c).copied().unwrap_or(f64::NAN)));
            }
        }
    }

    /// First and last x, if any.
    pub fn x_range(&self) -> Option<(f64, f64)> {
        Some((*self.xs.first()?, *self.xs.last()?))
    }

    /// Index bounds of `columns` equal-width columns over `[x0, x1]`:
    /// column i holds indices `bounds[i]..bounds[i + 1]`; the last column
    /// includes `x1`. Each edge is found by galloping from its position
    /// under uniform steps: O(columns) when steps are uniform.
    pub fn column_bounds(&self, x0: f64, x1: f64, columns: usize) -> Vec<usize> {
        let columns = columns.max(1);
        let lo = self.xs.partition_point(|&x| x < x0);
        let hi = self.xs.partition_point(|&x| x <= x1);
        let width = (x1 - x0) / columns as f64;
        let mut bounds = Vec::with_capacity(columns + 1);
        bounds.push(lo);
        for i in 1..columns {
            let prev = *bounds.last().unwrap_or(&lo);
            let guess = lo + (hi - lo) * i / columns;
            bounds.push(seek(&self.xs, x0 + width * i as f64, prev, hi, guess));
        }
        bounds.push(hi);
        bounds
    }

    /// Channel `c` (its EMA copy when smoothing is on) over steps
    /// `[x0, x1]` as the points of a line `columns` wide: the samples
    /// themselves when there are at most 4 a column, else each column's
    /// min and max at its centre, ordered to keep the line continuous.
    pub fn decimate(&self, c: usize, x0: f64, x1: f64, columns: usize) -> Vec<(f64, f64)> {
        let p = match &self.smoothing {
            Some(s) => &s.channels[c],
            None => &self.channels[c],
        };
        let columns = columns.max(1);
        let bounds = self.column_bounds(x0, x1, columns);
        let (lo, hi) = (bounds[0], bounds[columns]);
        if hi - lo <= 4 * columns {
            return (lo..hi)
                .filter(|&i| p.raw[i].is_finite())
                .map(|i| (self.xs[i], p.raw[i]))
                .collect();
        }
        // Blocks of 2^e samples, about a quarter of a column each.
        let per_column = (hi - lo) / columns;
        let e = ((per_column / 4).max(1).ilog2() as usize).min(p.levels.len());
        // Column edges snapped to the nearest block; the last one rounded up.
        let snap = |b: usize, last: bool| {
            if last {
                b.div_ceil(1 << e)
            } else {
                (b + (1 << e) / 2) >> e
            }
        };
        let width = (x1 - x0) / columns as f64;
        let mut out = Vec::with_capacity(2 * columns);
        let mut last_y: Option<f64> = None;
        let mut start = lo >> e;
        for (i, w) in bounds.windows(2).enumerate() {
            let end = snap(w[1], i + 1 == columns);
            let (min, max) = (start..end).fold(EMPTY, |acc, n| merge(acc, p.node(e, n)));
            start = end.max(start);
            if min > max {
                continue;
            }
            let x = x0 + width * (i as f64 + 0.5);
            let near_min = last_y.is_none_or(|y| (y - min).abs() <= (y - max).abs());
            let (a, b) = if near_min { (min, max) } else { (max, min) };
            out.push((x, a));
            if b != a {
                out.push((x, b));
            }
            last_y = Some(b);
        }
        out
    }
}

/// The first index in `lo..hi` whose x is at least `edge` (`xs` sorted),
/// galloping out from `guess`: O(log distance).
fn seek(xs: &[f64], edge: f64, lo: usize, hi: usize, guess: usize) -> usize {
    let g = guess.clamp(lo, hi);
    let (mut left, mut right);
    let mut step = 1;
    if g == hi || xs[g] >= edge {
        // The answer is at most g: gallop left.
        right = g;
        left = right.saturating_sub(step).max(lo);
        while left > lo && xs[left] >= edge {
            right = left;
            step *= 2;
            left = right.saturating_sub(step).max(lo);
        }
    } else {
        // The answer is past g: gallop right.
        left = g + 1;
        right = (left + step).min(hi);
        while right < hi && xs[right] < edge {
            left = right + 1;
            step *= 2;
            right = (left + step).min(hi);
        }
    }
    left + xs[left..right].partition_point(|&x| x < edge)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute(raw: &[f64], a: usize, b: usize) -> Option<(f64, f64)> {
        let v: Vec<f64> = raw[a..b]
            .iter()
            .copied()
            .filter(|y| y.is_finite())
            .collect();
        if v.is_empty() {
            return None;
        }
        Some((
            v.iter().copied().fold(f64::INFINITY, f64::min),
            v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        ))
    }

    #[test]
    fn range_min_max_matches_brute_force() {
        let mut p = Pyramid::default();
        let mut seed = 12345u64;
        for n in 0..300 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let y = if n % 37 == 5 {
                f64::NAN
            } else {
                ((seed >> 33) % 1000) as f64 - 500.0
            };
            p.push(y);
            let len = p.len();
            for a in [0, 1, len / 3, len.saturating_sub(2)] {
                for b in [a, a + 1, len / 2, len - 1, len] {
                    if a <= b && b <= len {
                        assert_eq!(p.min_max(a, b), brute(p.raw(), a, b), "n={len} a={a} b={b}");
                    }
                }
            }
        }
        // Every range on a small pyramid.
        let raw = p.raw().to_vec();
        for a in 0..64 {
            for b in a..64 {
                assert_eq!(p.min_max(a, b), brute(&raw, a, b), "a={a} b={b}");
            }
        }
    }

    #[test]
    fn column_bounds_match_binary_search() {
        let mut t = Track::new(0);
        // Uneven steps: dense, then a gap, then sparse.
        let steps: Vec<f64> = (0..500)
            .map(f64::from)
            .chain((0..100).map(|i| 1000.0 + 7.0 * f64::from(i)))
            .collect();
        for &x in &steps {
            t.push(x, &[]);
        }
        for (x0, x1, cols) in [
            (0.0, 1693.0, 37),
            (100.0, 1200.0, 5),
            (-5.0, 2000.0, 300),
            (450.0, 1010.0, 64),
        ] {
            let w = (x1 - x0) / cols as f64;
            let expected: Vec<usize> = (0..=cols)
                .map(|i| {
                    if i == cols {
                        steps.partition_point(|&x| x <= x1)
                    } else {
                        steps.partition_point(|&x| x < x0 + w * i as f64)
                    }
                })
                .collect();
            assert_eq!(t.column_bounds(x0, x1, cols), expected, "{x0} {x1} {cols}");
        }
    }

    #[test]
    fn a_spike_survives_decimation() {
        let mut t = Track::new(1);
        for s in 0..100_000 {
            let y = if s == 77_777 {
                50.0
            } else {
                1.0 + (s % 3) as f64 * 0.1
            };
            t.push(s as f64, &[y]);
        }
        let points = t.decimate(0, 0.0, 99_999.0, 40);
        assert!(points.len() <= 80);
        assert_eq!(points.iter().filter(|p| p.1 == 50.0).count(), 1);
        let ys = points.iter().map(|p| p.1);
        assert_eq!(ys.clone().fold(f64::INFINITY, f64::min), 1.0);
        // A window: only samples inside it count.
        let points = t.decimate(0, 0.0, 50_000.0, 40);
        assert!(points.iter().all(|p| p.1 < 2.0 && p.0 <= 50_000.0));
        // Few samples: drawn as they are.
        let raw = t.decimate(0, 10.0, 19.0, 40);
        assert_eq!(raw.len(), 10);
        assert_eq!(raw[0], (10.0, 1.1));
    }

    #[test]
    fn smoothing_follows_appends_and_skips_nan() {
        let mut t = Track::new(1);
        t.push(1.0, &[1.0]);
        t.push(2.0, &[3.0]);
        t.set_smoothing(Some(0.5));
        t.push(3.0, &[f64::NAN]);
        t.push(4.0, &[3.0]);
        // The shared debiased EMA (crate::smoothing), as the export draws.
        let smoothed = t.decimate(0, 1.0, 4.0, 3);
        let expected = [(1.0, 1.0), (2.0, 7.0 / 3.0), (4.0, 19.0 / 7.0)];
        assert_eq!(smoothed.len(), 3);
        for ((x, y), (ex, ey)) in smoothed.iter().zip(expected) {
            assert_eq!(*x, ex);
            assert!((y - ey).abs() < 1e-12, "{smoothed:?}");
        }
        t.set_smoothing(None);
        assert_eq!(
            t.decimate(0, 1.0, 4.0, 3),
            vec![(1.0, 1.0), (2.0, 3.0), (4.0, 3.0)]
        );
    }
}
