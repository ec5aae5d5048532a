//! `sweep ls`: the sweeps in a sessions folder, and one sweep's members.

use super::*;

/// The sweeps under `root` with their members' counts by state.
pub(super) fn ls_sweeps(root: &Path) -> Result<()> {
    let groups = sweep::list(root);
    if groups.is_empty() {
        println!("no sweeps in {}", root.display());
    }
    for group in groups {
        let plan = Plan::read(root, &group)?;
        let states = sweep::states(root, &plan);
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for s in &states {
            *counts.entry(s.label()).or_default() += 1;
        }
        let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "{group:<32} {} members: {}",
            states.len(),
            counts.join(", ")
        );
    }
    Ok(())
}

/// The members of sweep `group`.
pub(super) fn ls_members(root: &Path, group: &str) -> Result<()> {
    let plan = Plan::read(root, group)?;
    let keys = plan.varying_keys();
    println!(
        "{:>3}  {:<44} {:<40} {:<8} {:>13} {:>18}",
        "#", "SETTINGS", "SESSION", "STATUS", "STEP", "PRIMARY METRIC"
    );
    for (m, state) in plan.members.iter().zip(sweep::states(root, &plan)) {
        let (id, step, metric) = match &state {
            State::NotStarted => ("-".to_string(), "-".to_string(), "-".to_string()),
            State::Running { dir, meta } | State::Ended { dir, meta, .. } => {
                let run = crate::runs::Run::from_meta(dir, meta.clone());
                (
                    meta.id.clone(),
                    format!("{}/{}", run.step, run.steps),
                    run.metric()
                        .map_or("-".into(), |v| format!("{} {v:.4}", meta.primary_metric)),
                )
            }
        };
        println!(
            "{:>3}  {:<44} {:<40} {:<8} {:>13} {:>18}",
            m.index,
            m.label(&keys),
            id,
            state.label(),
            step,
            metric
        );
    }
    Ok(())
}
