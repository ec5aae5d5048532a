//! The primary's training loss climbing back up: whatever drives it (MELTR's
//! weights turned against the model's own task, an inner learning rate too
//! large), the model is moving away from its task. A held-out LSTM's MELTR
//! run saw its primary training loss go from 0.8 to 14.5 over 150 steps
//! with all weights near 0 and nothing said until the run's last step (the
//! weight watches count meta steps; this reads the logged losses). Said
//! once per episode; a resumed run replays its logged lines into the watch.

use crate::session::metrics::{MetricLine, Named, Record};

/// An auxiliary's climb is the combiner's doing when its effective weight
/// is negative and at least this fraction of the primary's in magnitude:
/// a weight near 0 trains it next to nothing either way (walkthrough Z4's
/// total-variation term rose as the logits sharpened, under −0.003 beside
/// the primary's 2, and was said to be maximised).
pub const MAXIMISED_WEIGHT: f64 = 0.03;

/// Whether an auxiliary under `weight`, beside the primary's
/// `primary_weight`, is one the combiner has the model maximise. The bar
/// is taken from the primary's weight or the collapse watch's floor,
/// whichever is larger: with every weight near 0 (a collapse, which that
/// watch reports) it would be near 0 too (walkthrough M1's climbs under
/// −5.6e-5 were said so).
pub fn maximised(weight: f64, primary_weight: f64) -> bool {
    let scale = primary_weight
        .abs()
        .max(crate::engine::collapse::PRIMARY_FLOOR);
    primary_weight.is_finite() && weight < -MAXIMISED_WEIGHT * scale
}

/// The newest logged value's weight in the smoothed loss when it comes
/// [`SMOOTHING_STEPS`] after the one before (the default `log_every`);
/// lines closer together weigh less, further apart more, so the watch
/// averages over the same stretch of training at any `log_every`.
pub const SMOOTHING: f64 = 0.3;
/// See [`SMOOTHING`].
pub const SMOOTHING_STEPS: f64 = 10.0;
/// The smoothed loss above this multiple of its lowest so far ...
pub const RISE_FACTOR: f64 = 2.0;
/// ... having given back more than [`GIVEN_BACK`] of its fall from its first
/// value, on every logged line over at least this many training steps
/// (three lines at the default `log_every`) and on at least [`RISE_LINES`]
/// lines, is a climb ...
pub const RISE_STEPS: u64 = 20;
/// See [`RISE_STEPS`]: one line alone is not a climb.
pub const RISE_LINES: u32 = 2;
/// See [`RISE_STEPS`]: the part of the fall from the first value to the
/// lowest that a climb has given back. It was "above the first value": a
/// held-out regression's loss fell from 10.8 to 0.09, climbed to 28 in the
/// last 50 steps of its run, and was said nowhere (walkthrough G).
pub const GIVEN_BACK: f64 = 0.5;
/// ... said again only after it fell back below this multiple.
pub const REARM_FACTOR: f64 = 1.5;

/// A climb, as said.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rise {
    /// The smoothed loss now.
    pub now: f64,
    /// Its lowest ...
    pub lowest: f64,
    /// ... and the logged step of that.
    pub lowest_step: u64,
    /// The first value read ...
    pub first: f64,
    /// ... and its step: step 1's where that step logged no line (read
    /// with the first logged line), else the first logged line's.
    pub first_step: u64,
}

impl Rise {
    /// How far above its lowest the loss has climbed, and that lowest:
    /// "over 2 times its lowest, 0.09 at step 40", or for a lowest at 0
    /// or below "over 1.4 above its lowest, -1.4 at step 40".
    pub fn past_lowest(&self) -> String {
        let lowest = crate::numfmt::readable(self.lowest);
        let bar = match self.lowest > 0.0 {
            true => format!("{RISE_FACTOR} times its lowest"),
            false => format!(
                "{} above its lowest",
                crate::numfmt::readable((RISE_FACTOR - 1.0) * self.lowest.abs())
            ),
        };
        format!("over {bar}, {lowest} at step {}", self.lowest_step)
    }
}

/// Watches the primary's logged training loss.
#[derive(Debug, Default)]
pub struct LossRise {
    smoothed: Option<f64>,
    /// The step of the last line read.
    last_step: u64,
    first: f64,
    first_step: u64,
    lowest: Option<(u64, f64)>,
    /// The first step and the count of the lines in a row above.
    above: Option<(u64, u32)>,
    said: bool,
}

impl LossRise {
    /// The first value read, once there is one.
    pub fn first(&self) -> Option<f64> {
        self.smoothed.map(|_| self.first)
    }

    /// The step of the smoothed loss's lowest so far.
    pub fn lowest_step(&self) -> Option<u64> {
        self.lowest.map(|(step, _)| step)
    }

    /// The watch as the train lines of `lines` left it (`primary`'s loss),
    /// for a resumed run: a climb they hold counts as said.
    pub fn replayed(lines: &[MetricLine], primary: &str) -> Self {
        Self::replayed_if(lines, primary, |_| true)
    }

    /// As [`Self::replayed`] for loss `name`, a climb sayable at a line
    /// where `sayable(its effective weights)` (see [`Self::observe_if`]).
    pub fn replayed_if(lines: &[MetricLine], name: &str, sayable: impl Fn(&Named) -> bool) -> Self {
        let mut watch = Self::default();
        for (step, loss, weights) in logged_losses(lines, name) {
            let _ = watch.observe_if(step, loss, sayable(weights));
        }
        watch
    }

    /// One logged line's primary training loss; a climb the first time it
    /// settles, read by [`crate::engine::collapse::risen_past`] (a loss at
    /// 0 or below included). A value of exactly 0 is not read: a masked
    /// loss's batch without it (walkthrough M's `flag`, 0 on 7 batches in
    /// 20, read as a climb from those zeros, with the weight of a batch
    /// that had none).
    pub fn observe(&mut self, step: u64, loss: f64) -> Option<Rise> {
        self.observe_if(step, loss, true)
    }

    /// As [`Self::observe`], a climb said only while `sayable` (an
    /// auxiliary's under a negative weight): one not said then is said at
    /// the first line that is.
    pub fn observe_if(&mut self, step: u64, loss: f64, sayable: bool) -> Option<Rise> {
        if !loss.is_finite() || loss == 0.0 {
            return None;
        }
        let smoothed = match self.smoothed {
            None => {
                (self.first, self.first_step) = (loss, step);
                loss
            }
            Some(s) => {
                let gap = step.saturating_sub(self.last_step).max(1) as f64;
                let weight = 1.0 - (1.0 - SMOOTHING).powf(gap / SMOOTHING_STEPS);
                s + weight * (loss - s)
            }
        };
        self.smoothed = Some(smoothed);
        self.last_step = step;
        if self.lowest.is_none_or(|(_, low)| smoothed < low) {
            self.lowest = Some((step, smoothed));
        }
        let (lowest_step, lowest) = self.lowest?;
        let risen = crate::engine::collapse::risen_past(smoothed, lowest, RISE_FACTOR)
            && smoothed - lowest > GIVEN_BACK * (self.first - lowest);
        self.above = match (risen, self.above) {
            (false, _) => None,
            (true, None) => Some((step, 1)),
            (true, Some((since, lines))) => Some((since, lines + 1)),
        };
        if !crate::engine::collapse::risen_past(smoothed, lowest, REARM_FACTOR) {
            self.said = false;
        }
        let held = self.above.is_some_and(|(since, lines)| {
            lines >= RISE_LINES && step.saturating_sub(since) >= RISE_STEPS
        });
        if held && !self.said && sayable {
            self.said = true;
            return Some(Rise {
                now: smoothed,
                lowest,
                lowest_step,
                first: self.first,
                first_step: self.first_step,
            });
        }
        None
    }

    /// At the run's end: a climb under way at its last line, too short yet
    /// to be said (walkthrough O's primary went from 2.41 to 8.04 in its
    /// last 100 steps, and the run ended at a perplexity of 2219, unsaid;
    /// the same climb, run on, was said 20 steps later), with the step it
    /// began at.
    pub fn climbing_at_the_end(&self) -> Option<(Rise, u64)> {
        // One line alone is no climb here either.
        let (since, _) = self.above.filter(|&(_, lines)| lines >= RISE_LINES)?;
        let (lowest_step, lowest) = self.lowest?;
        (!self.said).then(|| {
            let rise = Rise {
                now: self.smoothed.unwrap_or(f64::NAN),
                lowest,
                lowest_step,
                first: self.first,
                first_step: self.first_step,
            };
            (rise, since)
        })
    }
}

/// Loss `name` on each train line of `lines` that logged it: the step, its
/// value and the line's effective weights (what a resumed watch replays).
pub(super) fn logged_losses<'a>(
    lines: &'a [MetricLine],
    name: &'a str,
) -> impl Iterator<Item = (u64, f64, &'a Named)> + 'a {
    lines.iter().filter_map(move |line| match &line.record {
        Record::Train {
            losses, weights, ..
        } => losses.get(name).map(|&loss| (line.step, loss, weights)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bar for an auxiliary said to be maximised: 3% of the primary's
    /// weight, of at least the collapse floor's (walkthroughs Z4 and M1).
    #[test]
    fn maximised_takes_a_bar_from_the_primarys_weight() {
        assert!(maximised(-0.07, 2.0) && !maximised(-0.05, 2.0));
        assert!(
            maximised(-0.07, -2.0),
            "the size of a negative primary weight"
        );
        // With the primary's weight near 0: the floor's bar, 0.003.
        assert!(!maximised(-5.6e-5, 1e-4) && !maximised(-1e-12, 0.0));
        assert!(maximised(-0.004, 0.0));
        assert!(!maximised(f64::NAN, 1.0) && !maximised(-1.0, f64::NAN));
    }

    fn said(watch: &mut LossRise, losses: &[f64]) -> Vec<u64> {
        losses
            .iter()
            .enumerate()
            .filter_map(|(i, &l)| watch.observe(10 * i as u64, l).map(|_| 10 * i as u64))
            .collect()
    }

    /// A loss that goes below 0 (a Gaussian negative log-likelihood,
    /// walkthrough H1: −1.4 to 233, unsaid) is watched as one above 0
    /// is: a climb of the lowest's size above it, having given back half
    /// its fall, is said; a further fall, or a rise of less, is not.
    #[test]
    fn a_loss_below_zero_climbing_is_said() {
        let mut watch = LossRise::default();
        let mut losses = vec![1.2, 0.4, -0.6, -1.4, -1.4, -1.4, -1.4, -1.4];
        losses.extend([40.0; 6]);
        let steps = said(&mut watch, &losses);
        assert_eq!(steps.len(), 1, "{steps:?}");
        let mut watch = LossRise::default();
        let negative = [-1.0, -2.0, -3.0, 5.0, 6.0, 7.0, 8.0];
        assert_eq!(said(&mut watch, &negative), [50]);
        let mut falling = LossRise::default();
        let down: Vec<f64> = (0..30).map(|i| 1.0 - 0.2 * i as f64).collect();
        assert!(said(&mut falling, &down).is_empty());
        // Smoothed, a loss that settles at −1.4 and then at −0.4: a climb
        // of 1.0, under the lowest's size, is none.
        let mut small = LossRise::default();
        let mut losses = vec![0.0001, -1.4, -1.4, -1.4, -1.4, -1.4, -1.4];
        losses.extend([-0.4; 20]);
        assert!(said(&mut small, &losses).is_empty());
        let rise = Rise {
            now: 40.0,
            lowest: -1.4,
            lowest_step: 40,
            first: 1.2,
            first_step: 10,
        };
        assert_eq!(
            rise.past_lowest(),
            "over 1.4 above its lowest, -1.4 at step 40"
        );
        let rise = Rise {
            lowest: 0.09,
            ..rise
        };
        assert_eq!(
            rise.past_lowest(),
            "over 2 times its lowest, 0.09 at step 40"
        );
    }

    #[test]
    fn a_climb_too_short_to_say_is_there_at_the_end() {
        let mut watch = LossRise::default();
        let steps = said(&mut watch, &[1.4, 1.0, 0.8, 0.8, 0.8, 6.0]);
        assert!(steps.is_empty(), "{steps:?}");
        assert_eq!(watch.climbing_at_the_end(), None, "one line is no climb");
        assert_eq!(watch.observe(60, 6.0), None);
        let (rise, since) = watch
            .climbing_at_the_end()
            .expect("climbing at its last line");
        assert_eq!((since, rise.lowest_step), (50, 40));
        // Said, or back down: nothing left to say at the end.
        let later: Vec<u64> = [70, 80, 90]
            .into_iter()
            .filter(|&step| watch.observe(step, 6.0).is_some())
            .collect();
        assert_eq!(later.len(), 1, "{later:?}");
        assert_eq!(watch.climbing_at_the_end(), None);
        let mut fell = LossRise::default();
        let _ = said(&mut fell, &[1.4, 1.0, 0.8, 0.8]);
        assert_eq!(fell.climbing_at_the_end(), None);
    }

    #[test]
    fn a_climb_above_twice_the_lowest_and_the_start_is_said_once_per_episode() {
        let mut watch = LossRise::default();
        // Falls from 1.4 to 0.8, then climbs as the LSTM's did.
        let mut losses = vec![1.4, 1.2, 1.0, 0.9, 0.8, 0.8, 0.8];
        losses.extend([1.4, 3.2, 5.1, 4.5, 4.7, 4.4, 7.7, 10.6]);
        let steps = said(&mut watch, &losses);
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert!(steps[0] <= 110, "said late: {steps:?}");
        // Back down, then up again: a second episode.
        let mut again = vec![0.5; 12];
        again.extend([4.0; 6]);
        assert_eq!(said(&mut watch, &again).len(), 1);
    }

    /// Walkthrough M's masked auxiliary: exactly 0 on the batches without
    /// its token (logged lines 3 to 8 here), about 1.2 to 1.5 on the
    /// others. Its zeros are no lowest to climb from.
    #[test]
    fn a_masked_losss_zeros_are_not_read_as_its_lowest() {
        let mut losses = vec![1.4, 1.3, 1.35];
        losses.extend([0.0; 6]);
        losses.extend((0..20).map(|i| {
            if i % 3 == 0 {
                0.0
            } else {
                1.2 + 0.015 * f64::from(i)
            }
        }));
        assert_eq!(said(&mut LossRise::default(), &losses), Vec::<u64>::new());
        // Its real climb is still said.
        losses.extend([3.5; 8]);
        assert_eq!(said(&mut LossRise::default(), &losses).len(), 1);
    }

    /// Walkthrough G's run (from step 0 here): the loss fell from 10.8 to
    /// 0.09, then climbed to 28 in its last 50 steps; smoothed, it passed
    /// its first value too late for the old rule (above the first value)
    /// to say anything before the run's end.
    #[test]
    fn a_late_climb_far_above_the_lowest_is_said_below_the_start() {
        let mut watch = LossRise::default();
        let mut losses: Vec<f64> = (0..95)
            .map(|i| 10.8 * (-f64::from(i) / 15.0).exp() + 0.09)
            .collect();
        losses.extend([0.47, 5.59, 16.8, 28.1, 26.5]);
        let steps = said(&mut watch, &losses);
        assert_eq!(steps, [990], "{steps:?}");
    }

    /// Train lines with the primary's loss `losses[i]` at step 10·i.
    fn logged(losses: &[f64]) -> Vec<MetricLine> {
        losses
            .iter()
            .enumerate()
            .map(|(i, &loss)| MetricLine {
                step: 10 * i as u64,
                time: 0.0,
                wall: None,
                record: Record::Train {
                    losses: [("main".to_string(), loss), ("aux".to_string(), 1.0)].into(),
                    total: loss,
                    weights: Default::default(),
                    lr: 1e-3,
                    shares: Default::default(),
                    gpu: None,
                },
            })
            .collect()
    }

    /// A resumed run's watch is the uninterrupted one's: a climb said
    /// before the resume is not said again, one under way is said on time.
    #[test]
    fn a_resumed_watch_replays_the_logged_lines() {
        let climb = [1.4, 1.0, 0.8, 0.8, 3.2, 5.1, 4.5, 4.7, 7.7];
        let mut straight = LossRise::default();
        let said = said(&mut straight, &climb);
        assert_eq!(said.len(), 1, "{said:?}");
        // Resumed after the climb was said: the rest of it is not said.
        let mut resumed = LossRise::replayed(&logged(&climb), "main");
        assert_eq!(resumed.observe(90, 8.0), None);
        // Resumed in the middle of it: said at the same line as straight.
        let cut = said[0] as usize / 10;
        let mut resumed = LossRise::replayed(&logged(&climb[..cut]), "main");
        assert!(resumed.observe(said[0], climb[cut]).is_some());
        // Another loss's name reads that loss (a constant 1.0 here: no climb).
        let mut other = LossRise::replayed(&logged(&climb), "aux");
        assert_eq!(other.smoothed, Some(1.0));
        assert!(other.observe(0, 1.0).is_none());
    }

    /// A climb confirmed while it may not be said (an auxiliary under a
    /// positive weight) is said at the first line where it may, live and
    /// after a resume alike (it was used up unsaid).
    #[test]
    fn a_climb_not_sayable_yet_is_said_once_it_is() {
        let climb = [1.4, 1.0, 0.8, 0.8, 3.2, 5.1, 4.5, 4.7, 7.7, 8.0, 8.5];
        // Sayable (a negative weight) from the 9th line only.
        let weight = |i: usize| if i >= 8 { -0.05 } else { 0.2 };
        let mut live = LossRise::default();
        let said: Vec<usize> = (0..climb.len())
            .filter(|&i| {
                live.observe_if(10 * i as u64, climb[i], weight(i) < 0.0)
                    .is_some()
            })
            .collect();
        assert_eq!(said, vec![8]);
        let lines: Vec<MetricLine> = logged(&climb[..8])
            .into_iter()
            .map(|mut line| {
                if let Record::Train { weights, .. } = &mut line.record {
                    weights.insert("main".into(), 0.2);
                }
                line
            })
            .collect();
        let mut resumed = LossRise::replayed_if(&lines, "main", |w| w["main"] < 0.0);
        assert!(resumed.observe_if(80, climb[8], true).is_some());
    }

    /// The first step at which a watch reading `loss(step)` every `every`
    /// steps says a climb.
    fn said_at_every(every: u64, loss: impl Fn(u64) -> f64) -> Option<u64> {
        let mut watch = LossRise::default();
        (0..=400)
            .step_by(every as usize)
            .find(|&step| watch.observe(step, loss(step)).is_some())
    }

    /// The same run logged every step, every 10 or every 50: a climb is
    /// said within a log interval of the same step, and a burst of bad
    /// batches read line by line is not one (the smoothing and the span a
    /// climb must hold are counted in steps, not lines).
    #[test]
    fn a_climb_is_said_at_the_same_step_at_any_log_every() {
        // Falls from 1.4 to 0.8 over 100 steps, holds, climbs from step
        // 200 to 8.0 at step 400.
        let climb = |step: u64| {
            let s = step as f64;
            if s < 100.0 {
                1.4 - 0.6 * s / 100.0
            } else if s < 200.0 {
                0.8
            } else {
                0.8 + 7.2 * (s - 200.0) / 200.0
            }
        };
        let steps: Vec<u64> = [1, 10, 50]
            .iter()
            .map(|&every| said_at_every(every, climb).expect("said"))
            .collect();
        let (first, last) = (steps.iter().min().unwrap(), steps.iter().max().unwrap());
        assert!(
            last - first <= 50,
            "said at {steps:?} (log_every 1, 10, 50)"
        );
        assert!(*first > 200, "said before the climb: {steps:?}");
        // Three bad batches in a row, read at every step, in a flat run.
        let burst = |step: u64| if (150..153).contains(&step) { 3.0 } else { 1.0 };
        assert_eq!(said_at_every(1, burst), None);
    }

    #[test]
    fn noise_overfitting_and_non_finite_losses_are_not_climbs() {
        let mut watch = LossRise::default();
        // Noisy but falling: one bad batch is smoothed away.
        let noisy = [2.0, 1.5, 1.2, 3.0, 1.0, 0.9, 1.1, 0.8, 2.5, 0.7, 0.7];
        assert_eq!(said(&mut watch, &noisy), Vec::<u64>::new());
        // Twice the lowest but less than half of the fall given back: not
        // said.
        let mut watch = LossRise::default();
        let back = [
            8.0, 4.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.5, 2.6, 2.7, 2.8, 2.9, 3.0,
        ];
        assert_eq!(said(&mut watch, &back), Vec::<u64>::new());
        assert_eq!(
            said(&mut watch, &[f64::NAN, f64::INFINITY]),
            Vec::<u64>::new()
        );
    }
}
