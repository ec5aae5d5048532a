//! When the meta steps fall (`meltr.meta_every`, `meltr.first_meta`).

use super::{FirstMeta, MeltrConfig};

impl MeltrConfig {
    /// Whether training step `step` (1-based) has a meta step.
    pub fn meta_step_at(&self, step: u64) -> bool {
        match self.first_meta {
            FirstMeta::AtMetaEvery => step.is_multiple_of(self.meta_every),
            FirstMeta::AtStepOne => step >= 1 && (step - 1).is_multiple_of(self.meta_every),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_steps_fall_at_multiples_or_from_step_one() {
        let mut meltr = MeltrConfig::default();
        let at = |m: &MeltrConfig| (1..=10).filter(|&s| m.meta_step_at(s)).collect::<Vec<_>>();
        assert_eq!(at(&meltr), [3, 6, 9]);
        meltr.first_meta = FirstMeta::AtStepOne;
        assert_eq!(at(&meltr), [1, 4, 7, 10]);
        meltr.meta_every = 1;
        assert_eq!(at(&meltr).len(), 10);
    }
}
