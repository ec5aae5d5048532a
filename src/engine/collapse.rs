//! The collapse watch. Without the γ term MELTR can collapse: its first
//! layer's ReLUs die, its output stops depending on the losses, every
//! effective weight goes to 0 and the model stops learning. The guard counts
//! meta steps whose largest |w_k| is tiny, reports an episode once, and
//! (`meltr.on_collapse = "restore"`) keeps a copy of φ and its optimizer's
//! state at the newest healthy meta step to put back.

use tch::Tensor;

/// Every |w_k| below this ...
pub const COLLAPSE_WEIGHT: f64 = 1e-3;
/// ... for this many consecutive meta steps is a collapse.
pub const COLLAPSE_META_STEPS: u32 = 25;

/// Counts consecutive meta steps whose largest |w_k| is under
/// [`COLLAPSE_WEIGHT`] and keeps a snapshot of the newest healthy one.
#[derive(Debug, Default)]
pub struct CollapseGuard {
    streak: u32,
    /// The newest healthy meta step and copies of the state it had.
    healthy: Option<(u64, Vec<Tensor>)>,
}

/// What one observation means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No episode completes here: healthy, still counting, or already reported.
    Fine,
    /// This observation completes a collapse episode (reported once).
    Collapsed {
        /// The meta step a restore would go back to, if any was healthy.
        healthy_step: Option<u64>,
    },
}

impl CollapseGuard {
    /// One meta step's largest |effective weight| after its update, with
    /// the state it left (`snapshot`: copies of φ and the meta optimizer's
    /// state, taken at that step) when restoring is on.
    pub fn observe(
        &mut self,
        step: u64,
        largest_weight: f64,
        snapshot: Option<Vec<Tensor>>,
    ) -> Verdict {
        if largest_weight < COLLAPSE_WEIGHT {
            self.streak += 1;
            return if self.streak == COLLAPSE_META_STEPS {
                Verdict::Collapsed {
                    healthy_step: self.healthy.as_ref().map(|(s, _)| *s),
                }
            } else {
                Verdict::Fine
            };
        }
        self.streak = 0;
        if let Some(snapshot) = snapshot {
            self.healthy = Some((step, snapshot));
        }
        Verdict::Fine
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
        self.streak = 0;
        Some(*step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reports(guard: &mut CollapseGuard, weights: &[f64]) -> usize {
        weights
            .iter()
            .filter(|w| guard.observe(0, **w, None) != Verdict::Fine)
            .count()
    }

    #[test]
    fn collapse_is_reported_once_per_episode_and_rearmed_on_recovery() {
        let mut guard = CollapseGuard::default();
        let tiny = vec![1e-5; COLLAPSE_META_STEPS as usize * 3];
        assert_eq!(
            reports(&mut guard, &tiny),
            1,
            "one warning for a long collapse"
        );
        assert_eq!(reports(&mut guard, &[0.5]), 0);
        let short = &tiny[..COLLAPSE_META_STEPS as usize - 1];
        assert_eq!(reports(&mut guard, short), 0, "too short");
        assert_eq!(reports(&mut guard, &[0.5]), 0);
        assert_eq!(
            reports(&mut guard, &tiny),
            1,
            "a new episode after recovery"
        );
    }

    #[test]
    fn restore_puts_back_the_newest_healthy_state() {
        let mut guard = CollapseGuard::default();
        let phi = Tensor::from_slice(&[1.0f64, 2.0]);
        // Nothing healthy yet: a collapse has nothing to restore.
        let verdicts: Vec<Verdict> = (0..COLLAPSE_META_STEPS)
            .map(|s| guard.observe(s as u64, 1e-6, None))
            .collect();
        assert_eq!(
            verdicts.last(),
            Some(&Verdict::Collapsed { healthy_step: None })
        );
        assert_eq!(guard.restore(std::slice::from_ref(&phi)), None);
        // Healthy at steps 30 and 33 (the newest counts), then collapsed.
        for step in [30, 33] {
            let _ = tch::no_grad(|| phi.shallow_clone().fill_(step as f64));
            guard.observe(step, 0.4, Some(vec![phi.copy()]));
        }
        let _ = tch::no_grad(|| phi.shallow_clone().fill_(-7.0));
        let last = (0..COLLAPSE_META_STEPS)
            .map(|i| guard.observe(36 + 3 * i as u64, 1e-6, Some(vec![phi.copy()])))
            .last();
        assert_eq!(
            last,
            Some(Verdict::Collapsed {
                healthy_step: Some(33)
            })
        );
        assert_eq!(guard.restore(std::slice::from_ref(&phi)), Some(33));
        assert_eq!(Vec::<f64>::try_from(&phi).unwrap(), vec![33.0, 33.0]);
        // Re-armed: the next collapse needs a full streak again.
        assert_eq!(reports(&mut guard, &[1e-6; 3]), 0);
    }
}
