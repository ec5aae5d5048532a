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

/// What the watch sees after one meta step's update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// The weight largest in magnitude, with its sign.
    pub largest: f64,
    /// Which loss holds it (0 is the primary).
    pub largest_at: usize,
    /// The primary's w.
    pub primary: f64,
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

/// Counts consecutive collapsed meta steps and keeps a snapshot of the
/// newest healthy one.
#[derive(Debug, Default)]
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
    /// The newest observation.
    last: Option<Weights>,
}

/// What one observation means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No episode completes here: healthy, still counting, or already reported.
    Fine,
    /// This observation completes a collapse episode (reported once).
    Collapsed {
        /// Which weights collapsed.
        kind: Collapse,
        /// The meta step a restore would go back to, if any was healthy.
        healthy_step: Option<u64>,
    },
}

impl CollapseGuard {
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
        let every_low = weights.magnitude() < COLLAPSE_WEIGHT;
        let primary_low = weights.primary < PRIMARY_FLOOR;
        self.primary_armed |= !primary_low;
        // Steps where every weight collapsed are that watch's business:
        // not counted, so the count cannot step past its report there.
        if !self.primary_armed && !every_low {
            self.unarmed_meta_steps += 1;
        }
        count(&mut self.every_streak, &mut self.every_out, every_low);
        count(
            &mut self.primary_streak,
            &mut self.primary_out,
            primary_low && self.primary_armed,
        );
        let healthy = !every_low && weights.primary >= HEALTHY_PRIMARY;
        self.healthy_run = if healthy { self.healthy_run + 1 } else { 0 };
        if self.healthy_run >= SETTLED_META_STEPS {
            if let Some(snapshot) = snapshot {
                self.healthy = Some((step, snapshot));
            }
        }
        let kind = if self.primary_streak == PRIMARY_COLLAPSE_META_STEPS {
            Collapse::Primary
        } else if self.every_streak == COLLAPSE_META_STEPS {
            Collapse::Every
        } else if !self.primary_armed
            && !every_low
            && self.unarmed_meta_steps == PRIMARY_NEVER_ROSE_META_STEPS
        {
            Collapse::PrimaryNeverRose
        } else {
            return Verdict::Fine;
        };
        Verdict::Collapsed {
            kind,
            healthy_step: self.healthy.as_ref().map(|(s, _)| *s),
        }
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
    /// collapse (said at the run's end): its length in meta steps and the
    /// newest weights.
    pub fn unreported_slide(&self) -> Option<(u32, Weights)> {
        let open =
            (SLIDE_AT_END_META_STEPS..PRIMARY_COLLAPSE_META_STEPS).contains(&self.primary_streak);
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
    /// steps) and the healthy
    /// snapshot (`{prefix}.healthy.{i}`), so a resumed run watches and
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
        ];
        let mut out = vec![(format!("{prefix}.counters"), Tensor::from_slice(&counters))];
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
        // before the settling counts five.
        let mut padded = [0.0; 8];
        anyhow::ensure!(
            matches!(values.len(), 4 | 5 | 8),
            "`{prefix}.counters` holds {} values, not 4, 5 or 8",
            values.len()
        );
        padded[..values.len()].copy_from_slice(&values);
        let [every, primary, armed, healthy_step, unarmed, every_out, primary_out, healthy_run] =
            padded;
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
        Ok(())
    }
}

/// One reading of a collapse count: a low reading extends `streak`; a
/// streak ends after [`SETTLED_META_STEPS`] readings in a row out of it.
fn count(streak: &mut u32, out: &mut u32, low: bool) {
    if low {
        *streak += 1;
        *out = 0;
    } else if *streak > 0 {
        *out += 1;
        if *out >= SETTLED_META_STEPS {
            *streak = 0;
            *out = 0;
        }
    }
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
        }
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
            return "every weight shrank with it and the primary's is still the largest (the combined loss still \
             favours the model's own task, at a smaller scale: the inner steps shrink until Adam's \
             second-moment average catches up)"
                .to_string();
        }
        let largest = format!(
            "the weight largest in magnitude is {}'s, {:+.3}",
            names.get(self.largest_at).map_or("?", String::as_str),
            self.largest
        );
        if self.primary < 0.0 && self.largest_at == 0 {
            "the weight is negative and the largest in magnitude, so the model climbs its own task's loss"
                .to_string()
        } else if self.primary < 0.0 {
            format!("the weight is negative, so the model climbs its own task's loss ({largest})")
        } else {
            format!("the model is hardly training its own task ({largest})")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every weight at `w` (the primary too).
    fn flat(w: f64) -> Weights {
        Weights::of(&[w, w])
    }

    /// The primary at `primary`, an auxiliary at 1.
    fn primary_at(primary: f64) -> Weights {
        Weights::of(&[primary, 1.0])
    }

    fn reports(guard: &mut CollapseGuard, weights: &[Weights]) -> Vec<Collapse> {
        weights
            .iter()
            .filter_map(|w| match guard.observe(0, *w, None) {
                Verdict::Collapsed { kind, .. } => Some(kind),
                Verdict::Fine => None,
            })
            .collect()
    }

    #[test]
    fn every_weight_collapsing_is_reported_once_per_episode_and_rearmed_on_recovery() {
        let mut guard = CollapseGuard::default();
        // Never armed for the primary (it starts below the floor): only the
        // collapse of every weight counts, after its own streak.
        let tiny = vec![flat(1e-5); COLLAPSE_META_STEPS as usize * 3];
        assert_eq!(
            reports(&mut guard, &tiny),
            vec![Collapse::Every],
            "one warning for a long collapse"
        );
        assert_eq!(reports(&mut guard, &[flat(0.5)]), vec![]);
        // Armed now: the primary's streak (no longer than the other) reports
        // first; the every-weight one too if it is longer.
        let expected = if PRIMARY_COLLAPSE_META_STEPS < COLLAPSE_META_STEPS {
            vec![Collapse::Primary, Collapse::Every]
        } else {
            vec![Collapse::Primary]
        };
        assert_eq!(reports(&mut guard, &tiny), expected);
    }

    #[test]
    fn the_primary_collapses_after_its_streak_below_the_floor_once_it_was_above() {
        let mut guard = CollapseGuard::default();
        let low = vec![primary_at(0.05); PRIMARY_COLLAPSE_META_STEPS as usize * 2];
        // PyTorch's init starts the primary near 0: not a collapse (until it
        // never rises, below).
        let start = vec![primary_at(0.05); PRIMARY_NEVER_ROSE_META_STEPS as usize - 1];
        assert_eq!(reports(&mut guard, &start), vec![]);
        assert_eq!(reports(&mut guard, &[primary_at(1.5)]), vec![]);
        let short = &low[..PRIMARY_COLLAPSE_META_STEPS as usize - 1];
        assert_eq!(reports(&mut guard, short), vec![], "too short");
        assert_eq!(
            reports(&mut guard, &[primary_at(0.2)]),
            vec![],
            "above the floor again"
        );
        // A negative weight is below the floor too.
        let negative = vec![primary_at(-0.3); PRIMARY_COLLAPSE_META_STEPS as usize * 2];
        assert_eq!(
            reports(&mut guard, &negative),
            vec![Collapse::Primary],
            "once per episode"
        );
    }

    #[test]
    fn a_primary_that_never_rises_is_reported_once_though_the_watch_never_armed() {
        let mut guard = CollapseGuard::default();
        let early = PRIMARY_NEVER_ROSE_META_STEPS as usize - 1;
        // Below the floor from the start, and negative at the end.
        let mut low = vec![primary_at(0.05); early];
        low.extend(vec![
            primary_at(-0.4);
            3 * PRIMARY_NEVER_ROSE_META_STEPS as usize
        ]);
        assert_eq!(reports(&mut guard, &low[..early]), vec![], "too early");
        assert_eq!(
            reports(&mut guard, &low[early..]),
            vec![Collapse::PrimaryNeverRose],
            "once, at its step"
        );
        // A primary that rose in time is the armed watch's business.
        let mut guard = CollapseGuard::default();
        let mut rose = vec![primary_at(0.05); early];
        rose.push(primary_at(0.6));
        rose.extend(vec![
            primary_at(0.3);
            2 * PRIMARY_NEVER_ROSE_META_STEPS as usize
        ]);
        assert_eq!(reports(&mut guard, &rose), vec![]);
        // The count survives a checkpoint: a resumed run reports at the
        // same meta step as an uninterrupted one.
        let mut guard = CollapseGuard::default();
        reports(&mut guard, &low[..early]);
        let saved: std::collections::HashMap<String, Tensor> =
            guard.state("c").into_iter().collect();
        let mut read = CollapseGuard::default();
        read.load_state("c", &|n| saved.get(n).map(Tensor::copy), tch::Device::Cpu)
            .unwrap();
        assert_eq!(
            reports(&mut read, &low[early..early + 1]),
            vec![Collapse::PrimaryNeverRose]
        );
    }

    #[test]
    fn a_slide_too_short_to_report_is_there_for_the_runs_end() {
        let mut guard = CollapseGuard::default();
        reports(&mut guard, &[primary_at(0.05), primary_at(0.05)]);
        assert_eq!(
            guard.unreported_slide(),
            None,
            "not armed: the init's weight"
        );
        reports(
            &mut guard,
            &[primary_at(1.5), primary_at(0.04), primary_at(0.03)],
        );
        assert_eq!(
            guard.unreported_slide(),
            None,
            "two low readings may be noise"
        );
        reports(&mut guard, &[primary_at(0.02)]);
        assert_eq!(guard.unreported_slide(), Some((3, primary_at(0.02))));
        let rest = vec![primary_at(0.03); PRIMARY_COLLAPSE_META_STEPS as usize - 3];
        assert_eq!(reports(&mut guard, &rest), vec![Collapse::Primary]);
        assert_eq!(guard.unreported_slide(), None, "reported already");
    }

    #[test]
    fn restore_puts_back_the_newest_healthy_state() {
        let mut guard = CollapseGuard::default();
        let phi = Tensor::from_slice(&[1.0f64, 2.0]);
        // Nothing healthy yet: a collapse has nothing to restore.
        let verdicts: Vec<Verdict> = (0..COLLAPSE_META_STEPS)
            .map(|s| guard.observe(s as u64, flat(1e-6), None))
            .collect();
        assert_eq!(
            verdicts.last(),
            Some(&Verdict::Collapsed {
                kind: Collapse::Every,
                healthy_step: None
            })
        );
        assert_eq!(guard.restore(std::slice::from_ref(&phi)), None);
        // Healthy from step 24 to 33 (the newest counts); at 36 the
        // primary is above the floor but under the healthy bar.
        let readings = [
            (24, 0.8),
            (27, 0.9),
            (30, 0.7),
            (33, HEALTHY_PRIMARY),
            (36, 0.3),
        ];
        for (step, primary) in readings {
            let _ = tch::no_grad(|| phi.shallow_clone().fill_(step as f64));
            guard.observe(step, primary_at(primary), Some(vec![phi.copy()]));
        }
        let _ = tch::no_grad(|| phi.shallow_clone().fill_(-7.0));
        let last = (0..PRIMARY_COLLAPSE_META_STEPS)
            .map(|i| guard.observe(39 + 3 * i as u64, primary_at(0.01), Some(vec![phi.copy()])))
            .last();
        assert_eq!(
            last,
            Some(Verdict::Collapsed {
                kind: Collapse::Primary,
                healthy_step: Some(33)
            })
        );
        assert_eq!(guard.restore(std::slice::from_ref(&phi)), Some(33));
        assert_eq!(Vec::<f64>::try_from(&phi).unwrap(), vec![33.0, 33.0]);
        // Re-armed: the next collapse needs a full streak again.
        assert_eq!(reports(&mut guard, &[primary_at(0.01); 3]), vec![]);
    }

    /// A held-out LSTM's collapse: one meta step of large weights in it
    /// restarted the count (the report came at the run's last step) and was
    /// the restore point.
    #[test]
    fn a_lone_reading_out_of_line_neither_ends_a_count_nor_makes_a_restore_point() {
        let mut guard = CollapseGuard::default();
        let phi = Tensor::from_slice(&[0.0f64]);
        let mut observe = |step: u64, primary: f64| {
            let _ = tch::no_grad(|| phi.shallow_clone().fill_(step as f64));
            guard.observe(step, primary_at(primary), Some(vec![phi.copy()]))
        };
        for step in 1..=5 {
            assert_eq!(observe(step, 1.2), Verdict::Fine);
        }
        let mut step = 6;
        // Low, with a spike (two readings) in the middle.
        let half = PRIMARY_COLLAPSE_META_STEPS / 2;
        for primary in (0..half)
            .map(|_| 0.01)
            .chain([1.5, 1.4])
            .chain((half..PRIMARY_COLLAPSE_META_STEPS - 1).map(|_| -0.2))
        {
            assert_eq!(observe(step, primary), Verdict::Fine, "step {step}");
            step += 1;
        }
        assert_eq!(
            observe(step, -0.2),
            Verdict::Collapsed {
                kind: Collapse::Primary,
                healthy_step: Some(5)
            },
            "the spike neither restarted the count nor became the restore point"
        );
        // Three readings out of it end a streak: the next needs a full count.
        let mut guard = CollapseGuard::default();
        let settle = vec![primary_at(1.0); SETTLED_META_STEPS as usize];
        let mut readings = vec![primary_at(1.0)];
        readings.extend(vec![
            primary_at(0.01);
            PRIMARY_COLLAPSE_META_STEPS as usize - 1
        ]);
        readings.extend(settle);
        readings.extend(vec![
            primary_at(0.01);
            PRIMARY_COLLAPSE_META_STEPS as usize - 1
        ]);
        assert_eq!(reports(&mut guard, &readings), vec![]);
        assert_eq!(
            reports(&mut guard, &[primary_at(0.01)]),
            vec![Collapse::Primary]
        );
    }

    #[test]
    fn the_saved_state_reads_back_into_the_same_watch() {
        use std::collections::HashMap;
        let mut guard = CollapseGuard::default();
        let phi = Tensor::from_slice(&[1.5f64, -2.0]);
        for step in [6, 9, 12] {
            guard.observe(step, primary_at(0.9), Some(vec![phi.copy()]));
        }
        for (step, primary) in [(15, 0.01), (18, 0.01), (21, 0.7)] {
            guard.observe(step, primary_at(primary), Some(vec![phi.copy()]));
        }
        let saved: HashMap<String, Tensor> = guard.state("c").into_iter().collect();
        let mut read = CollapseGuard::default();
        read.load_state("c", &|n| saved.get(n).map(Tensor::copy), tch::Device::Cpu)
            .unwrap();
        assert_eq!(
            (
                read.every_streak,
                read.primary_streak,
                read.primary_out,
                read.healthy_run,
                read.primary_armed
            ),
            (0, 2, 1, 1, true)
        );
        let (step, snapshot) = read.healthy.as_ref().unwrap();
        assert_eq!((*step, snapshot.len()), (12, 1));
        assert!(snapshot[0].equal(&phi));
        // Counters from before the never-rose count (four values) read too.
        let old = Tensor::from_slice(&[0.0f64, 2.0, 1.0, -1.0]);
        read.load_state(
            "c",
            &|n| (n == "c.counters").then(|| old.copy()),
            tch::Device::Cpu,
        )
        .unwrap();
        assert_eq!(
            (
                read.primary_streak,
                read.primary_armed,
                read.unarmed_meta_steps
            ),
            (2, true, 0)
        );
        // Without a saved watch (an older checkpoint): a fresh one.
        read.load_state("c", &|_| None, tch::Device::Cpu).unwrap();
        assert!(read.healthy.is_none() && !read.primary_armed);
    }

    /// A NaN weight must not read as a small (collapsed) or healthy one:
    /// the trainer skips observations whose `largest` is not finite.
    #[test]
    fn a_nan_weight_makes_the_largest_not_finite() {
        assert!(Weights::of(&[1.0, f64::NAN, 0.5]).largest.is_nan());
        assert!(Weights::of(&[f64::NAN, 0.2]).largest.is_nan());
        assert_eq!(Weights::of(&[0.3, -2.0, 1.0]).largest_at, 1);
    }

    #[test]
    fn a_primary_that_never_rose_is_read_as_small_not_shrunk() {
        let names: Vec<String> = ["cls", "big"].map(String::from).into();
        let small = Weights::of(&[0.05, 0.01]).never_rose_reading(&names);
        assert!(
            small.contains("stays small") && !small.contains("shrank"),
            "{small}"
        );
        let taken = Weights::of(&[-0.2, 0.3]).never_rose_reading(&names);
        assert!(taken.contains("big's, +0.300"), "{taken}");
    }

    #[test]
    fn a_primary_collapse_says_whether_every_weight_shrank_with_it() {
        let names: Vec<String> = ["cls", "count_x200", "random"].map(String::from).into();
        let shrank = Weights::of(&[0.02, 0.01, -0.015]);
        assert!(shrank
            .primary_collapse_reading(&names)
            .contains("still the largest"));
        let dropped = Weights::of(&[0.02, 0.4, -0.9]);
        let reading = dropped.primary_collapse_reading(&names);
        assert!(
            reading.contains("hardly training its own task"),
            "{reading}"
        );
        assert!(
            reading.contains("the weight largest in magnitude is random's, -0.900"),
            "names the loss, keeps the sign and says it is by magnitude: {reading}"
        );
        // A negative primary climbs its own loss, even as the largest.
        let climbing = Weights::of(&[-0.2, 0.12, 0.3]);
        let reading = climbing.primary_collapse_reading(&names);
        assert!(
            reading.contains("negative") && reading.contains("random's, +0.300"),
            "{reading}"
        );
        let reading = Weights::of(&[-0.63, 0.12, 0.3]).primary_collapse_reading(&names);
        assert!(
            reading.contains("negative and the largest in magnitude"),
            "{reading}"
        );
    }
}
