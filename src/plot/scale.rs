//! Axis scales: data limits with matplotlib-like margins, "nice" tick
//! positions for linear and logarithmic axes, and tick label text (U+2212
//! minus signs, `k`/`M` for large step counts, `10⁻²` on log decades).

/// How values map onto an axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Linear,
    Log,
}

/// An axis' value range and mapping.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub kind: Kind,
    pub lo: f64,
    pub hi: f64,
}

/// Tick positions (data units) and the labels of the major ones.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ticks {
    pub major: Vec<(f64, String)>,
    pub minor: Vec<f64>,
}

/// Fraction of the axis span added on each side, as matplotlib does.
const MARGIN: f64 = 0.05;

impl Scale {
    /// A scale covering `[min, max]` plus margins. Log scales need `min > 0`.
    pub fn fit(kind: Kind, min: f64, max: f64) -> Scale {
        match kind {
            Kind::Linear => {
                let (min, max) = widen(min, max);
                let pad = (max - min) * MARGIN;
                Scale {
                    kind,
                    lo: min - pad,
                    hi: max + pad,
                }
            }
            Kind::Log => {
                let (a, b) = widen(min.log10(), max.log10());
                let pad = (b - a) * MARGIN;
                Scale {
                    kind,
                    lo: 10f64.powf(a - pad),
                    hi: 10f64.powf(b + pad),
                }
            }
        }
    }

    /// Exact limits, no margins.
    pub fn exact(kind: Kind, lo: f64, hi: f64) -> Scale {
        Scale { kind, lo, hi }
    }

    /// Position of `v` as a fraction of the axis (0 at `lo`, 1 at `hi`).
    pub fn frac(&self, v: f64) -> f64 {
        match self.kind {
            Kind::Linear => (v - self.lo) / (self.hi - self.lo),
            Kind::Log => (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10()),
        }
    }

    pub fn contains(&self, v: f64) -> bool {
        let eps = (self.hi - self.lo).abs() * 1e-9;
        v >= self.lo - eps && v <= self.hi + eps
    }

    /// Ticks for an axis that has room for about `target` labels.
    pub fn ticks(&self, target: usize) -> Ticks {
        match self.kind {
            Kind::Linear => linear_ticks(self.lo, self.hi, target),
            Kind::Log => self.log_ticks(target),
        }
    }

    fn log_ticks(&self, target: usize) -> Ticks {
        let (d0, d1) = (
            self.lo.log10().floor() as i32,
            self.hi.log10().ceil() as i32,
        );
        let decades: Vec<i32> = (d0..=d1)
            .filter(|&k| self.contains(10f64.powi(k)))
            .collect();
        let mantissas = |set: &[u32]| -> Vec<f64> {
            (d0..=d1)
                .flat_map(|k| set.iter().map(move |&m| f64::from(m) * 10f64.powi(k)))
                .filter(|&v| self.contains(v))
                .collect()
        };
        // Two decades' powers alone leave a reader guessing between them
        // (walkthrough K: 10⁰ and 10¹ on an axis from 0.6 to 30): mantissas
        // first, while they fit.
        if decades.len() == 2 {
            let major = mantissas(&[1, 2, 5]);
            if major.len() <= target + 2 {
                let labels = plain_labels(&major);
                return Ticks {
                    major: major.into_iter().zip(labels).collect(),
                    minor: mantissas(&[3, 4, 6, 7, 8, 9]),
                };
            }
        }
        if decades.len() >= 2 {
            let every = decades.len().div_ceil(target.max(2)).max(1);
            let major: Vec<(f64, String)> = decades
                .iter()
                .filter(|k| k.rem_euclid(every as i32) == 0)
                .map(|&k| (10f64.powi(k), power_of_ten(k)))
                .collect();
            let minor = if every == 1 {
                mantissas(&[2, 3, 4, 5, 6, 7, 8, 9])
            } else {
                Vec::new()
            };
            return Ticks { major, minor };
        }
        // Within a decade or two: the sparsest mantissas that still label
        // three values (two left a reader guessing between 0.2 and 0.5).
        const SETS: [&[u32]; 2] = [&[1, 2, 5], &[1, 2, 3, 5]];
        for set in SETS {
            let major = mantissas(set);
            if major.len() >= 3 {
                let rest: Vec<u32> = (2..=9).filter(|m| !set.contains(m)).collect();
                let labels = plain_labels(&major);
                return Ticks {
                    major: major.into_iter().zip(labels).collect(),
                    minor: mantissas(&rest),
                };
            }
        }
        // Less than a factor of ~2.5: linear steps read best.
        linear_ticks(self.lo, self.hi, target)
    }
}

/// Gives a degenerate range some width.
fn widen(min: f64, max: f64) -> (f64, f64) {
    if max > min {
        (min, max)
    } else if min == 0.0 {
        (-1.0, 1.0)
    } else {
        let d = min.abs() * 0.1;
        (min - d, max + d)
    }
}

/// The nice step (1, 2, 2.5 or 5 times a power of ten) for about `target` intervals.
fn nice_step(span: f64, target: usize) -> f64 {
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw * 0.999)
        .unwrap_or(10.0 * mag)
}

fn linear_ticks(lo: f64, hi: f64, target: usize) -> Ticks {
    let step = nice_step(hi - lo, target);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    let values: Vec<f64> = (first..=last).map(|i| i as f64 * step).collect();
    let labels = plain_labels(&values);
    Ticks {
        major: values.into_iter().zip(labels).collect(),
        minor: Vec::new(),
    }
}

/// Labels for evenly meaningful values: the fewest decimals that tell them
/// apart, `k`/`M` for large round numbers, a `×10ⁿ` form for tiny ones.
pub fn plain_labels(values: &[f64]) -> Vec<String> {
    let biggest = values.iter().fold(0f64, |m, v| m.max(v.abs()));
    let all_int = values
        .iter()
        .all(|v| (v - v.round()).abs() < 1e-9 * biggest.max(1.0));
    if biggest >= 1e4 && all_int {
        return values.iter().map(|&v| compact(v)).collect();
    }
    if biggest > 0.0 && biggest < 1e-3 {
        return values.iter().map(|&v| scientific(v)).collect();
    }
    let decimals = (0..=6)
        .find(|&d| {
            values.iter().all(|&v| {
                let s = format!("{:.*}", d, v);
                (s.parse::<f64>().unwrap_or(f64::NAN) - v).abs() <= 1e-9 * biggest.max(1e-12)
            })
        })
        .unwrap_or(6);
    values
        .iter()
        .map(|&v| minus(format!("{:.*}", decimals, v)))
        .collect()
}

/// A value for reading in text (legends, notes): 3 significant digits.
pub fn short(v: f64) -> String {
    three_significant(v, crate::numfmt::fixed)
}

/// [`short`] with its trailing zeros kept, for values read side by side
/// (bar labels: a walkthrough's `7` beside `0.586`).
pub fn short_padded(v: f64) -> String {
    three_significant(v, crate::numfmt::padded)
}

fn three_significant(v: f64, with_decimals: fn(f64, usize) -> String) -> String {
    if v == 0.0 || !v.is_finite() {
        return minus(format!("{v}"));
    }
    let mag = v.abs().log10().floor() as i32;
    if !(-3..5).contains(&mag) {
        return scientific_sig(v, 3);
    }
    let decimals = (2 - mag).max(0) as usize;
    minus(with_decimals(v, decimals))
}

/// `12000` -> `12k`, `1500000` -> `1.5M`.
pub fn compact(v: f64) -> String {
    minus(crate::numfmt::compact(v, 3))
}

/// Whether a log axis can draw `v` (positive and finite).
pub fn on_log_axis(v: f64) -> bool {
    v > 0.0 && v.is_finite()
}

/// A training step in a label's text, whole (`1,000`, not the ticks'
/// `1k`: a walkthrough's final-weights figure read "910–1k").
pub fn step(v: f64) -> String {
    crate::numfmt::thousands(v.max(0.0).round() as u64)
}

fn scientific(v: f64) -> String {
    scientific_sig(v, 2)
}

fn scientific_sig(v: f64, sig: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let (m, exp) = crate::numfmt::mantissa_exponent(v, sig);
    if m == "1" {
        return power_of_ten(exp);
    }
    minus(format!("{m}×{}", power_of_ten(exp)))
}

/// `10⁻²` with Unicode superscripts (the embedded font has them).
pub fn power_of_ten(k: i32) -> String {
    const SUP: [char; 10] = ['⁰', '¹', '²', '³', '⁴', '⁵', '⁶', '⁷', '⁸', '⁹'];
    let mut s = String::from("10");
    if k < 0 {
        s.push('⁻');
    }
    for d in k.unsigned_abs().to_string().bytes() {
        s.push(SUP[(d - b'0') as usize]);
    }
    s
}

/// Typographic minus sign, as matplotlib uses.
fn minus(s: String) -> String {
    match s.strip_prefix('-') {
        // "-0.0" is just zero.
        Some(rest) if rest.trim_start_matches(['0', '.']).is_empty() => rest.to_string(),
        Some(rest) => format!("\u{2212}{rest}"),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(t: &Ticks) -> Vec<&str> {
        t.major.iter().map(|(_, l)| l.as_str()).collect()
    }

    #[test]
    fn linear_ticks_are_round() {
        let t = Scale::exact(Kind::Linear, 0.0, 1.0).ticks(5);
        assert_eq!(labels(&t), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
        let t = Scale::exact(Kind::Linear, -0.05, 1_000_000.0).ticks(5);
        assert_eq!(labels(&t), ["0", "200k", "400k", "600k", "800k", "1M"]);
        let t = Scale::exact(Kind::Linear, -1.2, 0.3).ticks(4);
        assert_eq!(labels(&t), ["\u{2212}1.0", "\u{2212}0.5", "0.0"]);
    }

    #[test]
    fn log_ticks_label_decades() {
        let t = Scale::exact(Kind::Log, 0.004, 3.0).ticks(5);
        assert_eq!(labels(&t), ["10⁻²", "10⁻¹", "10⁰"]);
        assert!(t.minor.contains(&0.005) && t.minor.contains(&2.0));
        let t = Scale::exact(Kind::Log, 0.15, 0.9).ticks(5);
        assert_eq!(labels(&t), ["0.2", "0.3", "0.5"]);
        let t = Scale::exact(Kind::Log, 0.15, 2.2).ticks(5);
        assert_eq!(labels(&t), ["0.2", "0.5", "1.0", "2.0"]);
        // Two decades: their powers and the mantissas between.
        let t = Scale::exact(Kind::Log, 0.6, 30.0).ticks(5);
        assert_eq!(labels(&t), ["1", "2", "5", "10", "20"]);
        // A factor of 2: linear steps.
        let t = Scale::exact(Kind::Log, 0.4, 0.8).ticks(5);
        assert_eq!(labels(&t), ["0.4", "0.5", "0.6", "0.7", "0.8"]);
    }

    #[test]
    fn text_values() {
        assert_eq!(short(0.51234), "0.512");
        assert_eq!(short(7.0), "7");
        assert_eq!(short_padded(7.0), "7.00");
        assert_eq!(short_padded(-0.5), "\u{2212}0.500");
        assert_eq!(short_padded(1234.0), "1234");
        assert_eq!(short(-12.345), "\u{2212}12.3");
        assert_eq!(short(0.00001234), "1.23×10⁻⁵");
        assert_eq!(compact(12000.0), "12k");
        assert_eq!(compact(1_500_000.0), "1.5M");
        assert_eq!(compact(950.0), "950");
    }

    #[test]
    fn fit_adds_margins_and_handles_flat_data() {
        let s = Scale::fit(Kind::Linear, 0.0, 10.0);
        assert!((s.lo + 0.5).abs() < 1e-12 && (s.hi - 10.5).abs() < 1e-12);
        let s = Scale::fit(Kind::Linear, 2.0, 2.0);
        assert!(s.lo < 2.0 && s.hi > 2.0);
        let s = Scale::fit(Kind::Log, 0.01, 1.0);
        assert!(s.lo < 0.01 && s.hi > 1.0);
    }

    /// Steps in a label's text are whole, not the ticks' compact form
    /// (a figure read "910–1k").
    #[test]
    fn steps_in_text_are_whole() {
        assert_eq!(step(1000.0), "1,000");
        assert_eq!(step(910.0), "910");
        assert_eq!(step(12345.0), "12,345");
        assert_eq!(compact(1000.0), "1k");
    }
}
