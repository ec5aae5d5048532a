//! An auxiliary loss climbing while the combiner has the model maximise it.
//! Whether it does is read from the effective weights averaged over the
//! climb (every logged line since the loss's smoothed lowest), not from the
//! line that confirms it: walkthrough P1's relation loss climbed from 0.06
//! to 0.48 over 240 steps under weights of +0.1 to +0.3, and was said to be
//! maximised at the one line where its weight dipped to −0.83.

use super::loss_rise::{logged_losses, maximised, LossRise, Rise};
use crate::session::metrics::MetricLine;

/// One auxiliary's climb watch.
#[derive(Debug, Default)]
pub struct AuxiliaryRise {
    rise: LossRise,
    /// The sums of the auxiliary's and the primary's weights over the
    /// logged lines since the lowest (its own line included), and their
    /// count: a new lowest is always the line being read, so the stretch
    /// restarts there and needs no history.
    since_lowest: (f64, f64, f64),
}

/// A climb, with the auxiliary's and the primary's effective weights
/// averaged over it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuxiliaryClimb {
    /// The auxiliary's smoothed loss climbing.
    pub rise: Rise,
    /// Its effective weight, averaged over the lines since its lowest.
    pub weight: f64,
    /// The primary's, averaged over the same lines.
    pub primary_weight: f64,
}

impl AuxiliaryRise {
    /// The first loss read, once there is one.
    pub fn first(&self) -> Option<f64> {
        self.rise.first()
    }

    /// One logged line: the auxiliary's training loss, its effective weight
    /// and the primary's. A climb is said when the weights averaged since
    /// its lowest have the model [`maximised`] it.
    pub fn observe(
        &mut self,
        step: u64,
        loss: f64,
        weight: f64,
        primary_weight: f64,
    ) -> Option<AuxiliaryClimb> {
        let line = match weight.is_finite() && primary_weight.is_finite() {
            true => (weight, primary_weight, 1.0),
            false => (0.0, 0.0, 0.0),
        };
        // A lowest set at this line is no climb, so the stretch from the
        // lowest before it bounds the weights whenever one is said.
        let (w, p, n) = self.since_lowest;
        let (w, p, n) = (w + line.0, p + line.1, n + line.2);
        self.since_lowest = (w, p, n);
        let (weight, primary_weight) = (w / n, p / n);
        let sayable = maximised(weight, primary_weight);
        let rise = self.rise.observe_if(step, loss, sayable);
        if self.rise.lowest_step() == Some(step) {
            self.since_lowest = line;
        }
        rise.map(|rise| AuxiliaryClimb {
            rise,
            weight,
            primary_weight,
        })
    }

    /// A loss read where no weight is known (a step that logged no line):
    /// it says nothing.
    pub fn observe_unweighted(&mut self, step: u64, loss: f64) {
        let _ = self.rise.observe_if(step, loss, false);
    }

    /// The watch as the train lines of `lines` left it, for a resumed run:
    /// a climb they hold counts as said.
    pub fn replayed(lines: &[MetricLine], name: &str, primary: &str) -> Self {
        let mut watch = Self::default();
        for (step, loss, weights) in logged_losses(lines, name) {
            let weight = |n: &str| weights.get(n).copied().unwrap_or(f64::NAN);
            let _ = watch.observe(step, loss, weight(name), weight(primary));
        }
        watch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::metrics::{Named, Record};

    /// Walkthrough P1's seed 0, logged every 10 steps: the loss falls to
    /// its lowest, then climbs over 24 lines under positive weights; one
    /// line's weight dips far below 0 as the climb is confirmed.
    fn dip_under_a_climb() -> Vec<(f64, f64, f64)> {
        let mut lines = vec![(0.104, 0.3, 0.7), (0.083, 0.4, 1.0), (0.063, 0.2, 1.0)];
        lines.extend((0..24).map(|i| (0.07 + 0.018 * f64::from(i), 0.15, 1.5)));
        lines.push((0.48, -0.83, 9.8));
        lines.extend([(0.54, 0.2, 1.3), (0.55, 0.7, 2.0)]);
        lines
    }

    fn said(watch: &mut AuxiliaryRise, lines: &[(f64, f64, f64)]) -> Vec<(u64, AuxiliaryClimb)> {
        lines
            .iter()
            .enumerate()
            .filter_map(|(i, &(loss, w, p))| {
                let step = 10 * i as u64;
                watch.observe(step, loss, w, p).map(|climb| (step, climb))
            })
            .collect()
    }

    #[test]
    fn one_negative_weight_under_a_climb_is_no_maximising() {
        let lines = dip_under_a_climb();
        assert!(said(&mut AuxiliaryRise::default(), &lines).is_empty());
        // Each line's own weight would have said it, at the dip.
        let mut by_line = LossRise::default();
        let said_by_line: Vec<usize> = (0..lines.len())
            .filter(|&i| {
                let (loss, w, p) = lines[i];
                by_line
                    .observe_if(10 * i as u64, loss, maximised(w, p))
                    .is_some()
            })
            .collect();
        assert_eq!(said_by_line, [27]);
    }

    /// The same climb under weights negative throughout is said, with the
    /// weights averaged over it.
    #[test]
    fn a_climb_under_negative_weights_is_said_with_their_mean() {
        let mut lines = dip_under_a_climb();
        for line in &mut lines[3..] {
            line.1 = -0.2;
            line.2 = 2.0;
        }
        let climbs = said(&mut AuxiliaryRise::default(), &lines);
        assert_eq!(climbs.len(), 1, "{climbs:?}");
        let (_, climb) = climbs[0];
        assert!(climb.rise.now > 2.0 * climb.rise.lowest);
        // The stretch from the lowest (at line 2, weight +0.2) holds one
        // positive line beside the negative ones.
        assert!(
            climb.weight < -0.15 && climb.weight > -0.2,
            "{}",
            climb.weight
        );
        assert!((climb.primary_weight - 2.0).abs() < 0.1);
    }

    /// A resumed run reads the logged lines' weights as the live watch
    /// did: said at the same line, or not again.
    #[test]
    fn a_resumed_watch_averages_the_logged_weights() {
        let mut lines = dip_under_a_climb();
        for line in &mut lines[3..] {
            line.1 = -0.2;
        }
        let live = said(&mut AuxiliaryRise::default(), &lines);
        let at = live[0].0 as usize / 10;
        let logged = |upto: usize| -> Vec<MetricLine> {
            lines[..upto]
                .iter()
                .enumerate()
                .map(|(i, &(loss, w, p))| MetricLine {
                    step: 10 * i as u64,
                    time: 0.0,
                    wall: None,
                    record: Record::Train {
                        losses: [("aux".to_string(), loss)].into(),
                        total: loss,
                        weights: [("aux".to_string(), w), ("main".to_string(), p)].into(),
                        lr: 1e-3,
                        shares: Named::new(),
                        gpu: None,
                    },
                })
                .collect()
        };
        let mut resumed = AuxiliaryRise::replayed(&logged(at), "aux", "main");
        let (loss, w, p) = lines[at];
        assert_eq!(resumed.observe(10 * at as u64, loss, w, p), Some(live[0].1));
        let mut after = AuxiliaryRise::replayed(&logged(at + 1), "aux", "main");
        let (loss, w, p) = lines[at + 1];
        assert_eq!(after.observe(10 * (at + 1) as u64, loss, w, p), None);
        // A line without the primary's weight is read for its loss.
        let mut missing = logged(1);
        if let Record::Train { weights, .. } = &mut missing[0].record {
            weights.remove("main");
        }
        let watch = AuxiliaryRise::replayed(&missing, "aux", "main");
        assert_eq!(watch.first(), Some(lines[0].0));
    }
}
