//! More seeds for a sweep that exists (`sweep resume GROUP --seeds`): each
//! combination of the other axes runs again at every new seed, as members
//! numbered after the existing ones, whose sessions stay where they are.

use super::{Axis, Member, Plan};
use anyhow::{bail, Result};

/// The key a seed axis sweeps.
pub const SEED_KEY: &str = "workload.seed";

/// A member added by [`Plan::add_seeds`], and the existing member whose
/// config it copies with only the seed changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedMember {
    pub member: Member,
    pub template: usize,
    pub seed: u64,
}

impl Plan {
    /// Adds `seeds` to the sweep: for every combination of the other axes
    /// (the first member of each is the template), one member per new seed,
    /// numbered after the existing members. A sweep made without seeds gains
    /// a seed axis whose first value, `current`, is the seed every member
    /// ran with. A seed the sweep already runs is refused.
    pub fn add_seeds(&mut self, seeds: &[u64], current: u64) -> Result<Vec<AddedMember>> {
        if seeds.is_empty() {
            return Ok(Vec::new());
        }
        if !self.axes.iter().any(|a| a.key == SEED_KEY) {
            self.axes.push(Axis {
                key: SEED_KEY.into(),
                values: vec![current.to_string()],
            });
            for member in &mut self.members {
                member.settings.push((SEED_KEY.into(), current.to_string()));
            }
        }
        let axis = self
            .axes
            .iter_mut()
            .find(|a| a.key == SEED_KEY)
            .expect("added above");
        for (at, seed) in seeds.iter().enumerate() {
            // By value: a sweep made with `--set workload.seed=01` runs 1.
            let taken = axis
                .values
                .iter()
                .any(|v| v.trim().parse::<u64>().is_ok_and(|v| v == *seed));
            if taken || seeds[..at].contains(seed) {
                bail!(
                    "sweep `{}` already runs seed {seed} (its seeds: {}); give only new ones",
                    self.group,
                    axis.values.join(", ")
                );
            }
        }
        axis.values.extend(seeds.iter().map(u64::to_string));

        let without_seed = |m: &Member| -> Vec<(String, String)> {
            m.settings
                .iter()
                .filter(|(k, _)| k != SEED_KEY)
                .cloned()
                .collect()
        };
        let mut templates: Vec<&Member> = Vec::new();
        for member in &self.members {
            if templates
                .iter()
                .all(|t| without_seed(t) != without_seed(member))
            {
                templates.push(member);
            }
        }
        let total = self.members.len() + templates.len() * seeds.len();
        let width = total.saturating_sub(1).to_string().len().max(3);
        let mut added = Vec::new();
        for template in templates {
            for &seed in seeds {
                let index = self.members.len() + added.len();
                let settings = template
                    .settings
                    .iter()
                    .map(|(k, v)| {
                        let value = if k == SEED_KEY {
                            seed.to_string()
                        } else {
                            v.clone()
                        };
                        (k.clone(), value)
                    })
                    .collect();
                added.push(AddedMember {
                    member: Member {
                        index,
                        name: format!("{}-{index:0width$}", self.group),
                        settings,
                    },
                    template: template.index,
                    seed,
                });
            }
        }
        self.members.extend(added.iter().map(|a| a.member.clone()));
        Ok(added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn plan(axes: &[&str]) -> Plan {
        let axes = axes.iter().map(|a| Axis::parse(a).unwrap()).collect();
        Plan::new("g", Path::new("c.toml"), axes, None).unwrap()
    }

    #[test]
    fn new_seeds_run_every_combination_again_after_the_existing_members() {
        let mut p = plan(&["combiner.kind=meltr,sum", "workload.seed=0,01"]);
        let added = p.add_seeds(&[2, 3], 0).unwrap();
        let rows: Vec<(usize, &str, usize, String)> = added
            .iter()
            .map(|a| {
                (
                    a.member.index,
                    a.member.name.as_str(),
                    a.template,
                    a.member.label(&[]),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (4, "g-004", 0, "combiner.kind=meltr workload.seed=2".into()),
                (5, "g-005", 0, "combiner.kind=meltr workload.seed=3".into()),
                (6, "g-006", 2, "combiner.kind=sum workload.seed=2".into()),
                (7, "g-007", 2, "combiner.kind=sum workload.seed=3".into()),
            ]
        );
        assert_eq!(p.members.len(), 8);
        assert_eq!(
            p.members[3].name, "g-003",
            "existing members keep their names"
        );
        assert_eq!(p.axes[1].values, ["0", "01", "2", "3"]);
        let err = p.add_seeds(&[4, 1], 0).unwrap_err().to_string();
        assert!(
            err.contains("already runs seed 1 (its seeds: 0, 01, 2, 3)"),
            "{err}"
        );
        assert!(p.add_seeds(&[5, 5], 0).is_err(), "a seed given twice");
    }

    #[test]
    fn a_sweep_made_without_seeds_gains_a_seed_axis_at_the_seed_it_ran() {
        let mut p = plan(&["aid.iterations=0,1"]);
        let added = p.add_seeds(&[7], 3).unwrap();
        assert_eq!(p.axes[1].key, SEED_KEY);
        assert_eq!(p.axes[1].values, ["3", "7"]);
        assert_eq!(
            p.members[0].label(&[]),
            "aid.iterations=0 workload.seed=3",
            "the existing members are labelled by the seed they ran"
        );
        assert_eq!(
            added
                .iter()
                .map(|a| a.member.label(&[]))
                .collect::<Vec<_>>(),
            [
                "aid.iterations=0 workload.seed=7",
                "aid.iterations=1 workload.seed=7"
            ]
        );
        assert_eq!(p.varying_keys(), ["aid.iterations", SEED_KEY]);
        assert!(p.add_seeds(&[3], 3).is_err(), "the seed it ran is taken");
    }

    #[test]
    fn names_widen_only_for_the_new_members_past_a_thousand() {
        let values: Vec<String> = (0..999).map(|s| s.to_string()).collect();
        let mut p = plan(&[&format!("workload.seed={}", values.join(","))]);
        let added = p.add_seeds(&[5000, 5001], 0).unwrap();
        assert_eq!(p.members[998].name, "g-998");
        assert_eq!(added[0].member.name, "g-0999");
        assert_eq!(added[1].member.name, "g-1000");
    }
}
