//! Copies of the primary loss, exact or scaled (an auxiliary that is a
//! fixed multiple of the primary at every meta step: the same gradient,
//! scaled): the watches that read the primary's weight or gradient share
//! count them with it.

use crate::session::metrics::Named;
use tch::Tensor;

/// Loss `index` has been `factor` times the primary's value at every
/// meta step read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrimaryCopy {
    /// Which loss (0 is the primary).
    pub index: usize,
    /// Its value over the primary's.
    pub factor: f64,
}

/// Two readings of a loss over the primary that differ by at most this
/// (relative) are one ratio: a multiple computed in f32 rounds to a few
/// ulps.
pub const RATIO_TOLERANCE: f64 = 1e-5;

/// Which auxiliary losses have been a fixed multiple of the primary at
/// every meta step so far (walkthrough P's `dup`, the primary's InfoNCE
/// computed a second time, and O's `half`, half the primary's cross
/// entropy, held the primary's weight; the watch read its own slot near 0
/// and called the run collapsed). Two readings alike make a copy; one
/// reading off rules the loss out for the run. A loss of exactly 0 (a
/// masked one) is no copy.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CopyTracker {
    /// Per loss (the primary's slot unused, 1): its ratio to the primary,
    /// NaN before any reading, infinite once ruled out.
    ratios: Vec<f64>,
    /// Readings alike so far.
    seen: Vec<f64>,
}

impl CopyTracker {
    /// Reads one meta step's losses (the primary first); returns the
    /// copies so far.
    pub fn observe(&mut self, losses: &[f64]) -> Vec<PrimaryCopy> {
        if self.ratios.len() != losses.len() {
            *self = Self::fresh(losses.len());
        }
        let primary = losses.first().copied().unwrap_or(f64::NAN);
        if primary != 0.0 && primary.is_finite() {
            for (k, loss) in losses.iter().enumerate().skip(1) {
                let ratio = loss / primary;
                let known = self.ratios[k];
                if known.is_infinite() {
                    continue;
                }
                if ratio == 0.0 || !ratio.is_finite() {
                    self.ratios[k] = f64::INFINITY;
                } else if known.is_nan() {
                    (self.ratios[k], self.seen[k]) = (ratio, 1.0);
                } else if (ratio - known).abs() <= RATIO_TOLERANCE * known.abs() {
                    self.seen[k] += 1.0;
                } else {
                    self.ratios[k] = f64::INFINITY;
                }
            }
        }
        self.copies()
    }

    /// The copies so far: losses read alike at least twice.
    pub fn copies(&self) -> Vec<PrimaryCopy> {
        (1..self.ratios.len())
            .filter(|&k| self.seen[k] >= 2.0 && self.ratios[k].is_finite())
            .map(|k| PrimaryCopy {
                index: k,
                factor: self.ratios[k],
            })
            .collect()
    }

    /// For a checkpoint: the ratios, then the counts (none before any
    /// reading).
    pub fn state(&self) -> Option<Tensor> {
        (!self.ratios.is_empty()).then(|| {
            let values: Vec<f64> = self.ratios.iter().chain(&self.seen).copied().collect();
            Tensor::from_slice(&values)
        })
    }

    /// A tracker of `losses` losses that has read nothing (the primary's
    /// own slot, unused, as 1× itself).
    fn fresh(losses: usize) -> Self {
        let mut ratios = vec![f64::NAN; losses];
        if let Some(primary) = ratios.first_mut() {
            *primary = 1.0;
        }
        Self {
            ratios,
            seen: vec![0.0; losses],
        }
    }

    /// The state of `losses` losses: [`Self::state`], or a fresh one's
    /// (what a rank joining a group sends before it takes rank 0's).
    pub fn state_of(&self, losses: usize) -> Tensor {
        match self.ratios.len() == losses {
            true => self.state().expect("losses are tracked"),
            false => Self::fresh(losses)
                .state()
                .unwrap_or_else(|| Tensor::from_slice::<f64>(&[])),
        }
    }

    /// Forgets what it read unless it tracks `losses` losses (a
    /// checkpoint's tracker of another loss list).
    pub fn fit(&mut self, losses: usize) {
        if !self.ratios.is_empty() && self.ratios.len() != losses {
            *self = Self::default();
        }
    }

    /// Restores [`Self::state`].
    pub fn load_state(&mut self, state: &Tensor) -> anyhow::Result<()> {
        let values = Vec::<f64>::try_from(state.to_kind(tch::Kind::Double).flatten(0, -1))?;
        anyhow::ensure!(
            values.len() % 2 == 0,
            "the primary's copies hold {} values, not 2 per loss",
            values.len()
        );
        let (ratios, seen) = values.split_at(values.len() / 2);
        *self = Self {
            ratios: ratios.to_vec(),
            seen: seen.to_vec(),
        };
        Ok(())
    }
}

/// The loss names for the watch's messages: the primary's as the sum its
/// weight is read from (`nce + dup`, `lm + 0.5×half`).
pub fn names_with_copies(names: &[String], copies: &[PrimaryCopy]) -> Vec<String> {
    let mut names = names.to_vec();
    for c in copies {
        let copy = match c.factor == 1.0 {
            true => names[c.index].clone(),
            false => format!("{}×{}", crate::numfmt::readable(c.factor), names[c.index]),
        };
        names[0] = format!("{} + {copy}", names[0]);
    }
    names
}

/// Gradient shares with each copy's share added to the primary's and the
/// copy left out: a copy holding most of the gradient is the primary's
/// task training (walkthrough P: "dup has 97.9% … the model trains away
/// from its own task").
pub fn shares_with_copies(shares: &Named, names: &[String], copies: &[PrimaryCopy]) -> Named {
    let mut merged = shares.clone();
    for c in copies {
        if let Some(share) = merged.remove(&names[c.index]) {
            *merged.entry(names[0].clone()).or_insert(0.0) += share;
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracked(readings: &[&[f64]]) -> Vec<PrimaryCopy> {
        let mut tracker = CopyTracker::default();
        readings.iter().map(|r| tracker.observe(r)).last().unwrap()
    }

    #[test]
    fn copies_are_losses_a_fixed_multiple_of_the_primary_at_every_reading() {
        let copy = |index, factor| PrimaryCopy { index, factor };
        // `dup` (the primary to the bit), `half`, a helper that is not.
        let readings: [&[f64]; 3] = [
            &[0.8297, 0.8297, 0.41485, 2.0],
            &[0.5, 0.5, 0.25, 2.0],
            &[0.4, 0.4, 0.2, 1.0],
        ];
        assert_eq!(tracked(&readings), [copy(1, 1.0), copy(2, 0.5)]);
        // One reading is no evidence yet.
        assert_eq!(tracked(&readings[..1]), []);
        // One reading off rules a loss out for good; a masked 0 too.
        assert_eq!(
            tracked(&[&[1.0, 2.0, 1.0], &[1.0, 2.1, 0.0], &[1.0, 2.0, 1.0]]),
            []
        );
        // A primary of 0 (or not finite) reads nothing.
        assert_eq!(
            tracked(&[&[1.0, 3.0], &[0.0, 1.0], &[f64::NAN, 1.0], &[2.0, 6.0]]),
            [copy(1, 3.0)]
        );
        // f32 rounding of a multiple is within the tolerance.
        let a = 0.7_f32;
        let b = 1.3_f32;
        assert_eq!(
            tracked(&[
                &[f64::from(a), f64::from(3.0 * a)],
                &[f64::from(b), f64::from(3.0 * b)]
            ])
            .len(),
            1
        );
    }

    #[test]
    fn a_tracker_resumes_from_its_state() {
        let mut tracker = CopyTracker::default();
        tracker.observe(&[1.0, 0.5, 3.0]);
        tracker.observe(&[2.0, 1.0, 3.0]);
        let mut resumed = CopyTracker::default();
        resumed.load_state(&tracker.state_of(3)).unwrap();
        assert_eq!(resumed.copies(), tracker.copies());
        let bits = |t: &CopyTracker| -> Vec<u64> {
            Vec::<f64>::try_from(t.state().unwrap())
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect()
        };
        assert_eq!(bits(&resumed), bits(&tracker));
        assert!(resumed
            .load_state(&Tensor::from_slice(&[1.0, 2.0, 3.0]))
            .is_err());
        assert_eq!(CopyTracker::default().state(), None);
        // Another loss list's tracker is forgotten.
        let mut other = tracker.clone();
        other.fit(4);
        assert_eq!(other, CopyTracker::default());
        let mut same = tracker.clone();
        same.fit(3);
        assert_eq!(same.copies(), tracker.copies());
        // A fresh tracker's state reads as one.
        let mut fresh = CopyTracker::default();
        fresh
            .load_state(&CopyTracker::default().state_of(3))
            .unwrap();
        assert_eq!(fresh.observe(&[1.0, 0.5, 3.0]), []);
    }

    #[test]
    fn messages_and_shares_count_copies_with_the_primary() {
        let names: Vec<String> = ["nce", "cap", "dup", "half"].map(String::from).to_vec();
        let dup = PrimaryCopy {
            index: 2,
            factor: 1.0,
        };
        let half = PrimaryCopy {
            index: 3,
            factor: 0.5,
        };
        assert_eq!(names_with_copies(&names, &[dup])[0], "nce + dup");
        assert_eq!(
            names_with_copies(&names, &[dup, half])[0],
            "nce + dup + 0.5×half"
        );
        assert_eq!(names_with_copies(&names, &[]), names);
        let shares: Named = [("nce", 0.01), ("cap", 0.011), ("dup", 0.979)]
            .map(|(n, s)| (n.to_string(), s))
            .into();
        let merged = shares_with_copies(&shares, &names, &[dup]);
        assert_eq!(merged.len(), 2);
        assert!((merged["nce"] - 0.989).abs() < 1e-12);
        assert_eq!(merged["cap"], 0.011);
    }
}
