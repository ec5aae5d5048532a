//! The collapse watch. MELTR can collapse in two ways, both seen on the
//! auxiliary-learning suite with the public code's semantics: the primary's
//! effective weight falls to about zero (or below) and stays there, so the
//! model stops training its own task (`aux_suite.py` flags a final primary
//! weight below a tenth of its weight under `sum`); or every effective weight
//! does (its first layer's ReLUs die and its output stops depending on the
//! losses). The guard counts meta steps in either state, reports an episode
//! once, and (`meltr.on_collapse = "restore"`) keeps a copy of φ and its
//! optimizer's step count at the newest healthy meta step to put back.
//! One or two readings out of line (a spike of the weights in a collapse,
//! a dip in a healthy run) neither end a count nor make a restore point:
//! that takes [`SETTLED_META_STEPS`] in a row.
//! Long: the watch's rules, its state and the readings they share are read
//! together (its tests and the copies of the primary are modules apart).

use tch::Tensor;

/// Every |w_k| below this ...
pub const COLLAPSE_WEIGHT: f64 = 1e-3;
/// ... for this many consecutive meta steps is a collapse of every weight.
pub const COLLAPSE_META_STEPS: u32 = 25;
/// The primary's effective weight below this (a tenth of its weight under
/// `sum`; negative counts: the model would climb its own task loss) ...
pub const PRIMARY_FLOOR: f64 = 0.1;
/// ... for this many consecutive meta steps, once it has been above, is a
/// collapse of the primary. (PyTorch's default init starts MELTR near 0,
/// either sign, so the watch arms only when the primary first clears the
/// floor.)
pub const PRIMARY_COLLAPSE_META_STEPS: u32 = 25;
/// A primary whose weight has not cleared [`PRIMARY_FLOOR`] in the run's
/// first this many meta steps never rose: reported although the watch never
/// armed (an auxiliary loss thousands of times the primary's value did this
/// to the public algorithm as well, in a held-out walkthrough). On the
/// auxiliary-learning suite (6 tasks × 12 seeds) the primary cleared the
/// floor by meta step 33 at the latest.
pub const PRIMARY_NEVER_ROSE_META_STEPS: u32 = 60;
/// Why a far larger auxiliary loss can keep the primary's weight down (the
/// first train line's warning and the never-rose report say it alike).
pub const RAW_LOSS_VALUES: &str =
    "MELTR reads the raw loss values, as the public code does, so an \
     auxiliary loss far larger than the primary's can take the combined loss over";
/// A slide still under way when the run ends is said once it has lasted
/// this many meta steps (one low reading is noise).
pub const SLIDE_AT_END_META_STEPS: u32 = 3;
/// A meta step is healthy (a state a restore may go back to) when the
/// primary has at least half its weight under `sum`: the newest step just
/// above [`PRIMARY_FLOOR`] is usually the start of the slide, and restoring
/// there slid straight back on the suite's `few-labels` task.
pub const HEALTHY_PRIMARY: f64 = 0.5;
/// Readings in a row that settle a state: a collapse count ends only after
/// this many meta steps out of it, and a healthy meta step is a restore
/// point only as the latest of this many. (A held-out LSTM's collapse had
/// one meta step of large weights in it: it restarted the count, so the
/// report came at the run's last step, and it was the restore point.)
pub const SETTLED_META_STEPS: u32 = 3;
/// A negative primary weight whose task's training loss still fell by this
/// fraction over the collapse count (its average over meta steps, from the
/// count's first reading to its report) is carried, not climbed: another
/// loss holds the primary's gradient (walkthrough N's `10 × InfoNCE` copy
/// did; the watch said "climbs its own task's loss" and restored φ twice
/// while that loss fell from 4.7 to 0.9). On the auxiliary-learning suite
/// the restores after a negative primary weight saw its loss change by
/// −0.0% to +5.1% (`scripts/collapse_restores.py SESSIONS`).
pub const CARRIED_LOSS_FALL: f64 = 0.1;
/// A restore point is no longer one when the primary's training loss (its
/// average over meta steps) has since climbed past this multiple of its
/// value there: θ has moved on, and M, which weighs the losses of today,
/// does not give that φ's weights at them. On a held-out retrieval task
/// (walkthrough L, not in the repo) two restores came after climbs of 1.95×
/// and 1.97×, read the primary below 0.1 at once, and ended those seeds at
/// chance where `warn` recovered; on the auxiliary-learning suite the
/// restores saw 0.33× to 1.54× (12 seeds × 7 tasks). Set between the two.
pub const MOVED_LOSS_FACTOR: f64 = 1.75;
/// The weight of the newest reading in that average (an exponential one:
/// one batch's loss is noisy).
const LOSS_AVERAGE_WEIGHT: f64 = 0.2;

/// Whether `value` is past `factor` times `reference`, read as a rise
/// above it of `factor − 1` times its size: the same test for a loss above
/// 0, and one that still means something for a loss that reaches 0 or
/// below (a Gaussian negative log-likelihood went from −1.4 to 233 unsaid,
/// walkthrough H1, where "twice the lowest" was read as no test at all).
/// The restore's moved-on test and the climb watch share it.
pub fn risen_past(value: f64, reference: f64, factor: f64) -> bool {
    value - reference > (factor - 1.0) * reference.abs()
}

/// What the watch sees after one meta step's update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// The weight largest in magnitude, with its sign.
    pub largest: f64,
    /// Which loss holds it (0 is the primary).
    pub largest_at: usize,
    /// The primary's w.
    pub primary: f64,
    /// The primary's training loss at that step (NaN when unknown).
    pub primary_loss: f64,
}

/// Which collapse an episode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Collapse {
    /// The primary's weight stayed under [`PRIMARY_FLOOR`].
    Primary,
    /// The primary's weight never cleared [`PRIMARY_FLOOR`] in the first
    /// [`PRIMARY_NEVER_ROSE_META_STEPS`] meta steps.
    PrimaryNeverRose,
    /// Every weight stayed under [`COLLAPSE_WEIGHT`].
    Every,
}

/// The primary's averaged training loss at the restore point and now, at
/// a collapse of the primary: past [`MOVED_LOSS_FACTOR`] times, φ is not
/// put back; below, the restore's event says how far it moved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossSince {
    /// At the healthy meta step ...
    pub then: f64,
    /// ... and now.
    pub now: f64,
}

impl LossSince {
    /// How many times its value then the loss is now.
    pub fn ratio(&self) -> f64 {
        self.now / self.then
    }

    /// Whether the model has moved on from the restore point: the loss
    /// climbed past [`MOVED_LOSS_FACTOR`] times its value there, read as a
    /// rise of `MOVED_LOSS_FACTOR − 1` times that value's size, so that a
    /// loss below 0 (a log-likelihood) reads the same way (walkthrough H1:
    /// a fall from −1 to −2 read as "2× its value there", and a climb from
    /// −1.4 to 233 as 0.34×).
    pub fn moved_on(&self) -> bool {
        risen_past(self.now, self.then, MOVED_LOSS_FACTOR)
    }

    /// The move in words: "now 1.09× its value there", or for a value
    /// there at 0 or below, "now 0.5, -1.4 there".
    pub fn words(&self) -> String {
        match self.then > 0.0 {
            true => format!("now {:.2}× its value there", self.ratio()),
            false => format!(
                "now {}, {} there",
                crate::numfmt::readable(self.now),
                crate::numfmt::readable(self.then)
            ),
        }
    }
}

/// A primary weight below zero for the whole count while its loss fell by
/// [`CARRIED_LOSS_FALL`] or more: no collapse; said once, nothing restored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Carried {
    /// The primary's averaged training loss at the count's first reading ...
    pub from: f64,
    /// ... and now.
    pub to: f64,
}

/// Counts consecutive collapsed meta steps and keeps a snapshot of the
/// newest healthy one.
#[derive(Debug)]
pub struct CollapseGuard {
    every_streak: u32,
    primary_streak: u32,
    /// Meta steps in a row out of the counted state since each streak's
    /// last low reading ([`SETTLED_META_STEPS`] of them end the streak).
    every_out: u32,
    primary_out: u32,
    /// Healthy meta steps in a row.
    healthy_run: u32,
    /// The primary has cleared [`PRIMARY_FLOOR`] at least once.
    primary_armed: bool,
    /// Meta steps seen before the primary first cleared the floor (those
    /// with every weight collapsed left out).
    unarmed_meta_steps: u32,
    /// The newest healthy meta step and copies of the state it had.
    healthy: Option<(u64, Vec<Tensor>)>,
    /// The primary's loss average at that step (NaN: unknown).
    healthy_loss: f64,
    /// The healthy meta step of a restore whose φ read below
    /// [`PRIMARY_FLOOR`] at once: never put back again (see
    /// [`Self::restore_did_not_help`]).
    spent: Option<u64>,
    /// The newest observation.
    last: Option<Weights>,
    /// The primary's training loss averaged over meta steps
    /// ([`LOSS_AVERAGE_WEIGHT`]), and its value when the primary's count
    /// began (NaN: none yet).
    loss_average: f64,
    loss_at_count_start: f64,
    /// The auxiliaries that are multiples of the primary.
    pub copies: CopyTracker,
}

/// What one observation means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// No episode completes here: healthy, still counting, or already reported.
    Fine,
    /// This observation completes a collapse episode (reported once).
    Collapsed {
        /// Which weights collapsed.
        kind: Collapse,
        /// The meta step a restore would go back to, if any was healthy.
        healthy_step: Option<u64>,
        /// Whether a restore to it already failed to lift the primary's
        /// weight ([`CollapseGuard::restore_did_not_help`]).
        spent: bool,
        /// The primary's loss then and now, for its collapse with a
        /// restore point ([`LossSince`]).
        loss_since: Option<LossSince>,
    },
    /// The primary's count completes, but its loss fell: [`Carried`].
    Carried(Carried),
}

impl Default for CollapseGuard {
    fn default() -> Self {
        Self {
            every_streak: 0,
            primary_streak: 0,
            every_out: 0,
            primary_out: 0,
            healthy_run: 0,
            primary_armed: false,
            unarmed_meta_steps: 0,
            healthy: None,
            healthy_loss: f64::NAN,
            spent: None,
            last: None,
            loss_average: f64::NAN,
            loss_at_count_start: f64::NAN,
            copies: CopyTracker::default(),
        }
    }
}

impl CollapseGuard {
    /// The primary's training loss (its average over meta steps) from the
    /// primary count's first reading to now, where it fell by
    /// [`CARRIED_LOSS_FALL`] or more. Under a small positive weight that is
    /// still a collapse (on the suite's regression task such restores
    /// lifted R², seed 1 from −2.00 to 0.41), but not "hardly training".
    pub fn loss_fell_over_count(&self) -> Option<Carried> {
        // A fall by a tenth of the start's size, whatever its sign (a fall
        // from −1 read as a rise to −0.9 and vice versa, walkthrough H1).
        let start = self.loss_at_count_start;
        let fell = start - self.loss_average > CARRIED_LOSS_FALL * start.abs();
        fell.then_some(Carried {
            from: self.loss_at_count_start,
            to: self.loss_average,
        })
    }

    /// One meta step's effective weights after its update, with the state
    /// it left (`snapshot`: copies of φ and the meta optimizer's step count,
    /// taken at that step) when restoring is on.
    pub fn observe(
        &mut self,
        step: u64,
        weights: Weights,
        snapshot: Option<Vec<Tensor>>,
    ) -> Verdict {
        self.last = Some(weights);
        self.loss_average = match (
            self.loss_average.is_finite(),
            weights.primary_loss.is_finite(),
        ) {
            (true, true) => {
                LOSS_AVERAGE_WEIGHT * weights.primary_loss
                    + (1.0 - LOSS_AVERAGE_WEIGHT) * self.loss_average
            }
            (_, true) => weights.primary_loss,
            (_, false) => f64::NAN,
        };
        let every_low = weights.magnitude() < COLLAPSE_WEIGHT;
        let primary_low = weights.primary < PRIMARY_FLOOR;
        self.primary_armed |= !primary_low;
        // Steps where every weight collapsed are that watch's business:
        // not counted, so the count cannot step past its report there.
        if !self.primary_armed && !every_low {
            self.unarmed_meta_steps += 1;
        }
        let every_reached = count(
            &mut self.every_streak,
            &mut self.every_out,
            every_low,
            COLLAPSE_META_STEPS,
        );
        let primary_reached = count(
            &mut self.primary_streak,
            &mut self.primary_out,
            primary_low && self.primary_armed,
            PRIMARY_COLLAPSE_META_STEPS,
        );
        if self.primary_streak == 1 && self.primary_out == 0 {
            self.loss_at_count_start = self.loss_average;
        }
        let healthy = !every_low && weights.primary >= HEALTHY_PRIMARY;
        self.healthy_run = if healthy { self.healthy_run + 1 } else { 0 };
        if self.healthy_run >= SETTLED_META_STEPS {
            if let Some(snapshot) = snapshot {
                self.healthy = Some((step, snapshot));
                self.healthy_loss = self.loss_average;
            }
        }
        let kind = if primary_reached {
            Collapse::Primary
        } else if every_reached {
            Collapse::Every
        } else if !self.primary_armed
            && !every_low
            && self.unarmed_meta_steps == PRIMARY_NEVER_ROSE_META_STEPS
        {
            Collapse::PrimaryNeverRose
        } else {
            return Verdict::Fine;
        };
        // The claim "the model climbs its own task's loss" checked against
        // that loss (NaN compares false: the watch decides as before).
        if kind == Collapse::Primary && weights.primary < 0.0 {
            if let Some(carried) = self.loss_fell_over_count() {
                return Verdict::Carried(carried);
            }
        }
        let healthy_step = self.healthy.as_ref().map(|(s, _)| *s);
        // Only the primary's collapse: with every weight dead, nothing but
        // a restore brings MELTR back. (NaN compares false: unknown.)
        let loss_since = (kind == Collapse::Primary
            && healthy_step.is_some()
            && self.healthy_loss > 0.0
            && self.loss_average.is_finite())
        .then_some(LossSince {
            then: self.healthy_loss,
            now: self.loss_average,
        });
        Verdict::Collapsed {
            kind,
            healthy_step,
            spent: healthy_step.is_some() && healthy_step == self.spent,
            loss_since,
        }
    }

    /// The first meta step after a restore to `healthy_step`'s φ read the
    /// primary below [`PRIMARY_FLOOR`]: M weighs today's losses, not those
    /// that state saw, so putting it back again cannot help (a held-out
    /// retrieval model's run was put back to one φ ten times, its
    /// meta-learning rate halved each time, and stayed at chance, where
    /// the same run with `warn` recovered). A newer healthy meta step may
    /// still be restored to.
    pub fn restore_did_not_help(&mut self, healthy_step: u64) {
        self.spent = Some(healthy_step);
    }

    /// Pretends the primary's loss was `factor` times lower at the healthy
    /// meta step (a climb since, for the trainer's tests).
    #[cfg(test)]
    pub(crate) fn lower_healthy_loss(&mut self, factor: f64) {
        self.healthy_loss /= factor;
    }

    /// Copies the healthy state into `targets` (the same tensors, in the
    /// snapshot's order) and re-arms the watch; the healthy step, or `None`
    /// (nothing changed) when no meta step was healthy yet.
    pub fn restore(&mut self, targets: &[Tensor]) -> Option<u64> {
        let (step, saved) = self.healthy.as_ref()?;
        tch::no_grad(|| {
            for (target, saved) in targets.iter().zip(saved) {
                target.shallow_clone().copy_(saved);
            }
        });
        self.every_streak = 0;
        self.primary_streak = 0;
        self.every_out = 0;
        self.primary_out = 0;
        Some(*step)
    }

    /// A slide of the primary's weight below [`PRIMARY_FLOOR`] for at least
    /// [`SLIDE_AT_END_META_STEPS`] but too short to be reported as a
    /// collapse (said at the run's end) and still under way (its newest
    /// reading low): its length in meta steps and the newest weights.
    pub fn unreported_slide(&self) -> Option<(u32, Weights)> {
        let open = self.primary_out == 0
            && (SLIDE_AT_END_META_STEPS..PRIMARY_COLLAPSE_META_STEPS)
                .contains(&self.primary_streak);
        open.then_some(())
            .and(self.last)
            .map(|w| (self.primary_streak, w))
    }

    /// Whether the primary has cleared [`PRIMARY_FLOOR`] (the watch of its
    /// collapse is on).
    pub fn armed(&self) -> bool {
        self.primary_armed
    }

    /// How many tensors the healthy snapshot holds, if there is one.
    pub fn snapshot_len(&self) -> Option<usize> {
        self.healthy.as_ref().map(|(_, saved)| saved.len())
    }

    /// The watch's state by name, for checkpoints: its counters (`{prefix}.counters`:
    /// the two streaks, armed, the healthy step or -1, the unarmed meta
    /// steps, the settling counts, the loss average and its start, the spent
    /// healthy step or -1, the loss average at the healthy step) and the
    /// healthy snapshot (`{prefix}.healthy.{i}`), so a resumed run watches and
    /// restores as the uninterrupted one would.
    pub fn state(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let healthy_step = self.healthy.as_ref().map_or(-1.0, |(s, _)| *s as f64);
        let counters = [
            f64::from(self.every_streak),
            f64::from(self.primary_streak),
            f64::from(u8::from(self.primary_armed)),
            healthy_step,
            f64::from(self.unarmed_meta_steps),
            f64::from(self.every_out),
            f64::from(self.primary_out),
            f64::from(self.healthy_run),
            self.loss_average,
            self.loss_at_count_start,
            self.spent.map_or(-1.0, |s| s as f64),
            self.healthy_loss,
        ];
        let mut out = vec![(format!("{prefix}.counters"), Tensor::from_slice(&counters))];
        if let Some(copies) = self.copies.state() {
            out.push((format!("{prefix}.{COPIES}"), copies));
        }
        if let Some((_, saved)) = &self.healthy {
            for (i, t) in saved.iter().enumerate() {
                out.push((format!("{prefix}.healthy.{i}"), t.shallow_clone()));
            }
        }
        out
    }

    /// Restores [`Self::state`]; `device` is where the snapshot lives (φ's
    /// device). A checkpoint from before the watch was saved leaves a fresh
    /// watch.
    pub fn load_state(
        &mut self,
        prefix: &str,
        lookup: &dyn Fn(&str) -> Option<Tensor>,
        device: tch::Device,
    ) -> anyhow::Result<()> {
        let Some(counters) = lookup(&format!("{prefix}.counters")) else {
            *self = Self::default();
            return Ok(());
        };
        let values = Vec::<f64>::try_from(counters.to_kind(tch::Kind::Double).flatten(0, -1))?;
        // Checkpoints from before the unarmed count hold four values, from
        // before the settling counts five, before the loss average eight,
        // before the spent restore ten, before the healthy step's loss 11.
        let mut padded = [
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            0.0,
            f64::NAN,
            f64::NAN,
            -1.0,
            f64::NAN,
        ];
        anyhow::ensure!(
            matches!(values.len(), 4 | 5 | 8 | 10 | 11 | 12),
            "`{prefix}.counters` holds {} values, not 4, 5, 8, 10, 11 or 12",
            values.len()
        );
        padded[..values.len()].copy_from_slice(&values);
        let [every, primary, armed, healthy_step, unarmed, every_out, primary_out, healthy_run, average, at_start, spent, healthy_loss] =
            padded;
        self.spent = (spent >= 0.0).then_some(spent as u64);
        self.healthy_loss = healthy_loss;
        self.loss_average = average;
        self.loss_at_count_start = at_start;
        self.every_out = every_out as u32;
        self.primary_out = primary_out as u32;
        self.healthy_run = healthy_run as u32;
        self.every_streak = every as u32;
        self.primary_streak = primary as u32;
        self.primary_armed = armed != 0.0;
        self.unarmed_meta_steps = unarmed as u32;
        self.healthy = None;
        if healthy_step >= 0.0 {
            let saved: Vec<Tensor> = (0..)
                .map_while(|i| lookup(&format!("{prefix}.healthy.{i}")))
                .map(|t| t.to_device(device))
                .collect();
            anyhow::ensure!(
                !saved.is_empty(),
                "`{prefix}.counters` names a healthy step but the checkpoint holds no snapshot"
            );
            self.healthy = Some((healthy_step as u64, saved));
        }
        // (Checkpoints from before copies were tracked: a fresh tracker.)
        self.copies = CopyTracker::default();
        if let Some(copies) = lookup(&format!("{prefix}.{COPIES}")) {
            self.copies.load_state(&copies)?;
        }
        Ok(())
    }
}

/// One reading of a collapse count: a low reading extends `streak`; a
/// streak ends after [`SETTLED_META_STEPS`] readings in a row out of it.
/// Whether this reading brought the streak to `report_at` (a reading out
/// of line leaves a reported streak where it is: not a second report).
fn count(streak: &mut u32, out: &mut u32, low: bool, report_at: u32) -> bool {
    if low {
        *streak += 1;
        *out = 0;
        return *streak == report_at;
    }
    if *streak > 0 {
        *out += 1;
        if *out >= SETTLED_META_STEPS {
            *streak = 0;
            *out = 0;
        }
    }
    false
}

impl Weights {
    /// The weights of one meta step, primary first.
    pub fn of(weights: &[f64]) -> Self {
        let (largest_at, largest) =
            weights
                .iter()
                .copied()
                .enumerate()
                .fold((0, 0.0f64), |best, (k, w)| {
                    if w.abs() > best.1.abs() || w.is_nan() {
                        (k, w)
                    } else {
                        best
                    }
                });
        Self {
            largest,
            largest_at,
            primary: weights.first().copied().unwrap_or(f64::NAN),
            primary_loss: f64::NAN,
        }
    }

    /// As [`Self::of`], with the losses in `copies` (copies of the
    /// primary, [`CopyTracker`]) counted with the primary: their
    /// weights, times their factors, add to its weight, and none of them
    /// is the largest on its own. A model's loss computed twice trains the primary's task twice.
    pub fn with_copies(weights: &[f64], copies: &[PrimaryCopy]) -> Self {
        let mut merged = weights.to_vec();
        for c in copies {
            merged[0] += c.factor * weights[c.index];
            merged[c.index] = 0.0;
        }
        Self::of(&merged)
    }

    /// The largest |w_k|.
    pub fn magnitude(&self) -> f64 {
        self.largest.abs()
    }

    /// [`Self::primary_collapse_reading`] for a primary that never rose:
    /// there, a positive primary that is the largest weight means every
    /// weight stayed small (none shrank).
    pub fn never_rose_reading(&self, names: &[String]) -> String {
        if self.primary > 0.0 && self.largest_at == 0 {
            "every weight stays small, the primary's the largest".to_string()
        } else {
            self.primary_collapse_reading(names)
        }
    }

    /// What a low primary weight means for the run, in words (`names`: the
    /// losses, primary first): the model drops its own task (or climbs it,
    /// below zero), or (the primary still the largest weight) every weight
    /// shrank with it, as in the suite's runs that end so.
    pub fn primary_collapse_reading(&self, names: &[String]) -> String {
        if self.primary > 0.0 && self.largest_at == 0 {
            // Not harmless for that (walkthrough G5 read it so, beside a
            // restore): a scale that keeps sliding trains nothing.
            return "every weight shrank with it and the primary's is still the largest (the combined loss still \
             favours the model's own task, but at a smaller scale: the inner steps shrink until Adam's \
             second-moment average catches up, and a scale that keeps sliding ends with every weight near 0, \
             where the model no longer learns)"
                .to_string();
        }
        let largest = format!(
            "the weight largest in magnitude is {}'s, {}",
            names.get(self.largest_at).map_or("?", String::as_str),
            crate::numfmt::readable(self.largest)
        );
        if self.primary < 0.0 && self.largest_at == 0 {
            "the weight is negative and the largest in magnitude, so the model climbs its own task's loss"
                .to_string()
        } else if self.primary < 0.0 && self.magnitude() < PRIMARY_FLOOR {
            // Not "climbs its own task's loss": walkthrough G6's primary
            // loss fell while every weight sat within ±0.07.
            format!(
                "every weight is near 0 ({largest}) and the primary's is negative: the inner steps, whose \
                 size Adam keeps, follow the other losses, and the primary's own gradient pushes its loss up"
            )
        } else if self.primary < 0.0 {
            format!("the weight is negative, so the model climbs its own task's loss ({largest})")
        } else {
            format!("the model is hardly training its own task ({largest})")
        }
    }
}

/// The name of [`CopyTracker`]'s state after the watch's prefix.
pub const COPIES: &str = "copies";

mod copies;
pub use copies::{
    names_with_copies, shares_with_copies, CopyTracker, PrimaryCopy, RATIO_TOLERANCE,
};

#[cfg(test)]
mod tests;
