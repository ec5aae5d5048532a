//! The start of a run under MELTR's default initialisation (the public
//! code's): every effective weight near 0, either sign. While the primary's
//! is negative, the inner step (Adam: nearly scale-free) climbs the model's
//! own task loss. A held-out walkthrough saw this in 7 of 8 runs for their
//! first 10–90 steps, the validation accuracy below chance at step 50, and
//! nothing said it: the collapse watch arms only once the primary's weight
//! has cleared its floor. This watch says it once, and once when it ends
//! (the weight positive for a few meta steps in a row).

use super::collapse::{PRIMARY_FLOOR, SETTLED_META_STEPS};

/// The primary's weight negative for this many meta steps in a row, before
/// the collapse watch armed, is said (one negative reading is the
/// noise of a start near 0).
pub const EARLY_CLIMB_META_STEPS: u32 = 5;

/// What the watch has to say after a meta step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClimbNote {
    /// The primary's weight has been negative for a while.
    Climbing {
        /// The training step of the first negative reading.
        since: u64,
        /// Meta steps negative in a row so far.
        meta_steps: u32,
    },
    /// It is positive again after a reported climb, for
    /// [`SETTLED_META_STEPS`] meta steps in a row.
    Ended {
        /// The training step the climb began.
        since: u64,
    },
}

/// Watches the primary's weight from the run's start until it has cleared
/// the collapse watch's floor for [`SETTLED_META_STEPS`] meta steps in a row
/// (a negative weight is that watch's to report from then on; one reading
/// over it, which arms that watch, is no rise: a held-out model's spike
/// armed it, and the primary's weight then stayed negative for 40 steps,
/// unsaid), the watch found armed at its first reading (a resumed run), or
/// a reported climb ends.
#[derive(Debug, Default)]
pub struct EarlyClimb {
    /// Whether a meta step has been read.
    started: bool,
    /// Readings at or over the floor in a row.
    cleared: u32,
    streak: u32,
    /// The training step of the streak's first meta step.
    since: Option<u64>,
    said: bool,
    /// Positive readings in a row since a said climb's last negative one.
    positive: u32,
    over: bool,
}

impl EarlyClimb {
    /// One meta step's primary weight (`step`: its training step), and
    /// whether the collapse watch was armed before it.
    pub fn observe(&mut self, step: u64, primary: f64, armed: bool) -> Option<ClimbNote> {
        self.over |= armed && !self.started;
        self.started = true;
        self.cleared = if primary >= PRIMARY_FLOOR {
            self.cleared + 1
        } else {
            0
        };
        self.over |= self.cleared >= SETTLED_META_STEPS && !self.said;
        if self.over || primary.is_nan() {
            return None;
        }
        if primary < 0.0 {
            let since = *self.since.get_or_insert(step);
            self.streak += 1;
            self.positive = 0;
            if self.streak == EARLY_CLIMB_META_STEPS && !self.said {
                self.said = true;
                return Some(ClimbNote::Climbing {
                    since,
                    meta_steps: self.streak,
                });
            }
            return None;
        }
        if self.said {
            // Ended once settled: a walkthrough's one positive meta step
            // was said as the end of a climb that went on 27 more steps.
            self.positive += 1;
            if self.positive < SETTLED_META_STEPS {
                return None;
            }
            self.over = true;
            return self.since.take().map(|since| ClimbNote::Ended { since });
        }
        self.streak = 0;
        self.since = None;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The notes over these meta steps' primary weights, taken every third
    /// step; the collapse watch arms at the first weight ≥ 0.1, as it does.
    fn notes(weights: &[f64]) -> Vec<(u64, ClimbNote)> {
        let mut watch = EarlyClimb::default();
        let mut armed = false;
        (1..)
            .map(|i| 3 * i)
            .zip(weights)
            .filter_map(|(step, &w)| {
                let note = watch.observe(step, w, armed).map(|n| (step, n));
                armed |= w >= crate::engine::collapse::PRIMARY_FLOOR;
                note
            })
            .collect()
    }

    #[test]
    fn a_negative_start_is_said_after_five_meta_steps_and_its_end_once() {
        // One positive meta step inside the climb does not end it; three
        // in a row do, said at the third.
        let climb = [
            -1e-4, -2e-4, -3e-4, -1e-4, -5e-4, -0.01, 0.02, -0.01, 0.5, 0.4, 0.3, -2.0,
        ];
        assert_eq!(
            notes(&climb),
            vec![
                (
                    15,
                    ClimbNote::Climbing {
                        since: 3,
                        meta_steps: 5
                    }
                ),
                (33, ClimbNote::Ended { since: 3 }),
            ]
        );
    }

    #[test]
    fn one_reading_over_the_floor_is_no_rise() {
        // It arms the collapse watch, whose count a later reading over the
        // floor restarts: the climb after it is said here.
        let spike = [-1e-3, 0.4, -0.05, -0.1, -0.1, -0.2, -0.1, 0.15, -0.1];
        assert_eq!(
            notes(&spike),
            vec![(
                21,
                ClimbNote::Climbing {
                    since: 9,
                    meta_steps: 5
                }
            )]
        );
        // A resumed run whose watch was armed says nothing.
        let mut watch = EarlyClimb::default();
        assert!((1..=9).all(|i| watch.observe(3 * i, -0.1, true).is_none()));
    }

    #[test]
    fn short_dips_and_a_primary_that_rose_first_are_not_said() {
        // Four negative readings, then positive: noise of a start near 0.
        assert_eq!(notes(&[-1e-4, -1e-4, -1e-4, -1e-4, 1e-4, -1e-4]), vec![]);
        // Once the primary has cleared the floor for three meta steps, a
        // negative weight is the collapse watch's to report.
        assert_eq!(
            notes(&[0.2, 0.3, 0.2, -0.1, -0.1, -0.1, -0.1, -0.1, -0.1]),
            vec![]
        );
        // A streak after a small positive reading still counts from its start.
        let late = [0.01, -1e-4, -1e-4, -1e-4, -1e-4, -1e-4];
        assert_eq!(
            notes(&late),
            vec![(
                18,
                ClimbNote::Climbing {
                    since: 6,
                    meta_steps: 5
                }
            )]
        );
    }
}
