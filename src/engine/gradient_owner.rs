//! One auxiliary loss owning the combined gradient: the model then trains
//! on that loss alone, whatever the combiner's weights look like. A
//! held-out text model's x100 auxiliary had ≥ 99.5% of the gradient under
//! `sum`, `uncertainty` and MELTR alike for a whole run (MELTR reads the
//! losses on a common scale, but the gradient is the loss's own), and
//! `primary` beat them all; nothing said so. This reads the logged shares.
//! Said once per episode; a resumed run replays its logged lines.

use crate::engine::collapse::{shares_with_copies, PrimaryCopy};
use crate::session::metrics::{MetricLine, Named, Record};

/// An auxiliary's share of the combined gradient at or above this ...
pub const OWNED: f64 = 0.95;
/// ... on this many share lines in a row is said ...
pub const LINES: u32 = 3;
/// ... and said again only after its share fell below this.
pub const REARM: f64 = 0.8;

/// An auxiliary that owns the gradient, as said.
#[derive(Debug, Clone, PartialEq)]
pub struct Owner {
    /// The loss's name.
    pub loss: String,
    /// Its share now.
    pub share: f64,
    /// The primary's share now.
    pub primary_share: f64,
    /// The step of the first line of the streak.
    pub since: u64,
}

/// Watches the logged gradient shares for an auxiliary (any loss but the
/// primary) that owns the gradient.
#[derive(Debug, Default)]
pub struct GradientOwner {
    /// The auxiliary at or above [`OWNED`], since which step, for how many
    /// share lines in a row.
    streak: Option<(String, u64, u32)>,
    /// The auxiliary said, until its share falls below [`REARM`].
    said: Option<String>,
}

impl GradientOwner {
    /// The watch as the train lines of `lines` left it, for a resumed run:
    /// an owner they show counts as said. The lines log each loss's own
    /// share; they are read as the live watch read them, the share of each
    /// of `copies` (of the primary, as the checkpoint knows them) added to
    /// the primary's (`names`: the losses, primary first).
    pub fn replayed(lines: &[MetricLine], names: &[String], copies: &[PrimaryCopy]) -> Self {
        let mut watch = Self::default();
        for line in lines {
            if let Record::Train { shares, .. } = &line.record {
                let merged = shares_with_copies(shares, names, copies);
                let _ = watch.observe(line.step, &merged, &names[0]);
            }
        }
        watch
    }

    /// One logged line's shares (empty when not computed at this step);
    /// an owner the first time its streak reaches [`LINES`].
    pub fn observe(&mut self, step: u64, shares: &Named, primary: &str) -> Option<Owner> {
        if shares.is_empty() {
            return None;
        }
        if let Some(said) = &self.said {
            if shares.get(said).is_none_or(|&s| s < REARM) {
                self.said = None;
            }
        }
        let largest = shares
            .iter()
            .filter(|(name, share)| name.as_str() != primary && share.is_finite())
            .max_by(|a, b| a.1.total_cmp(b.1));
        let Some((loss, &share)) = largest.filter(|(_, &share)| share >= OWNED) else {
            self.streak = None;
            return None;
        };
        let (since, lines) = match &self.streak {
            Some((name, since, lines)) if name == loss => (*since, lines + 1),
            _ => (step, 1),
        };
        self.streak = Some((loss.clone(), since, lines));
        if lines < LINES || self.said.is_some() {
            return None;
        }
        self.said = Some(loss.clone());
        Some(Owner {
            loss: loss.clone(),
            share,
            primary_share: shares.get(primary).copied().unwrap_or(0.0),
            since,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(primary: f64, big: f64) -> Named {
        [
            ("cls".to_string(), primary),
            ("len100".to_string(), big),
            ("mlm".to_string(), 1.0 - primary - big),
        ]
        .into()
    }

    /// The steps at which a run of lines `(primary share, len100 share)`,
    /// one each 10 steps, is said.
    fn said(watch: &mut GradientOwner, run: &[(f64, f64)]) -> Vec<u64> {
        run.iter()
            .enumerate()
            .filter_map(|(i, &(p, b))| {
                let step = 10 * i as u64;
                watch.observe(step, &shares(p, b), "cls").map(|_| step)
            })
            .collect()
    }

    #[test]
    fn an_auxiliary_owning_three_share_lines_is_said_once_per_episode() {
        let mut watch = GradientOwner::default();
        // Walkthrough E's len100: 99.6% from the start.
        let owned = [(0.003, 0.996); 6];
        assert_eq!(said(&mut watch, &owned), vec![20]);
        // Down to 90% (not below the re-arm bound) and back: not again.
        assert!(said(
            &mut watch,
            &[(0.05, 0.9), (0.003, 0.996), (0.003, 0.996), (0.003, 0.996)]
        )
        .is_empty());
        // Below 80%, then three lines back up: a second episode.
        let again = [(0.3, 0.6), (0.01, 0.97), (0.01, 0.97), (0.01, 0.97)];
        assert_eq!(said(&mut watch, &again), vec![30]);
    }

    #[test]
    fn a_broken_streak_a_dominant_primary_and_missing_shares_are_not_said() {
        let mut watch = GradientOwner::default();
        let broken = [
            (0.0, 0.96),
            (0.0, 0.96),
            (0.1, 0.9),
            (0.0, 0.96),
            (0.0, 0.96),
        ];
        assert!(said(&mut watch, &broken).is_empty());
        // The primary owning the gradient is the combiner's choice.
        assert!(said(&mut watch, &[(0.99, 0.01); 5]).is_empty());
        // Lines without shares (off the shares' schedule) are skipped, not
        // a break; a NaN share is never the owner.
        let mut watch = GradientOwner::default();
        for step in 0..2 {
            assert!(watch.observe(step, &shares(0.0, 0.97), "cls").is_none());
            assert!(watch.observe(step, &Named::new(), "cls").is_none());
        }
        let owner = watch.observe(5, &shares(0.01, 0.97), "cls").unwrap();
        assert_eq!(owner.loss, "len100");
        assert_eq!(owner.since, 0);
        assert!((owner.primary_share - 0.01).abs() < 1e-12);
        let mut nan = GradientOwner::default();
        assert!(said(&mut nan, &[(0.0, f64::NAN); 5]).is_empty());
    }

    /// A resumed run's watch: an owner said before the resume is not said
    /// again, a streak under way is said on time.
    #[test]
    fn a_resumed_watch_replays_the_logged_lines() {
        let logged = |run: &[(f64, f64)]| -> Vec<MetricLine> {
            run.iter()
                .enumerate()
                .map(|(i, &(p, b))| MetricLine {
                    step: 10 * i as u64,
                    time: 0.0,
                    wall: None,
                    record: Record::Train {
                        losses: Default::default(),
                        total: 1.0,
                        weights: Default::default(),
                        lr: 1e-3,
                        shares: shares(p, b),
                        gpu: None,
                    },
                })
                .collect()
        };
        let owned = [(0.003, 0.996); 4];
        let names = ["cls", "len100"].map(String::from);
        let mut resumed = GradientOwner::replayed(&logged(&owned), &names, &[]);
        assert!(resumed.observe(40, &shares(0.003, 0.996), "cls").is_none());
        let mut midway = GradientOwner::replayed(&logged(&owned[..2]), &names, &[]);
        assert!(midway.observe(20, &shares(0.003, 0.996), "cls").is_some());
        // Replayed as the live watch read them: `len100` a copy of the
        // primary, its share the primary's, no streak under way.
        let copy = PrimaryCopy {
            index: 1,
            factor: 100.0,
        };
        let mut merged = GradientOwner::replayed(&logged(&owned[..2]), &names, &[copy]);
        assert!(merged.observe(20, &shares(0.003, 0.996), "cls").is_none());
    }
}
