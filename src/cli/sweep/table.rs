//! `sweep ls`: the sweeps in a sessions folder, and one sweep's members.

use super::*;

/// The sweeps under `root` with their members' counts by state.
pub(super) fn ls_sweeps(root: &Path) -> Result<()> {
    let groups = sweep::list(root);
    if groups.is_empty() {
        say!("no sweeps in {}", root.display());
    }
    for group in groups {
        let plan = Plan::read(root, &group)?;
        let states = sweep::states(root, &plan);
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for s in &states {
            *counts.entry(s.label()).or_default() += 1;
        }
        let counts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        say!(
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
    let mut rows = vec![[
        "#".to_string(),
        "SETTINGS".into(),
        "SESSION".into(),
        "STATUS".into(),
        "STEP".into(),
        "PRIMARY METRIC".into(),
    ]];
    for (m, state) in plan.members.iter().zip(sweep::states(root, &plan)) {
        let (id, step, metric) = match &state {
            State::NotStarted => ("-".to_string(), "-".to_string(), "-".to_string()),
            State::Running { dir, meta } | State::Ended { dir, meta, .. } => {
                let run = crate::runs::Run::from_meta(dir, meta.clone());
                (
                    meta.id.clone(),
                    crate::runs::render::progress_text(&run),
                    crate::runs::render::metric_text(&run),
                )
            }
        };
        rows.push([
            m.index.to_string(),
            m.label(&keys),
            id,
            state.label().to_string(),
            step,
            metric,
        ]);
    }
    say_raw!("{}", aligned(&rows));
    Ok(())
}

/// The rows as text, each column as wide as its widest cell (so long
/// settings do not push the rest out of line); the first two and the last
/// two columns are right-aligned.
fn aligned(rows: &[[String; 6]]) -> String {
    let width = |c: usize| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
    let w: Vec<usize> = (0..6).map(width).collect();
    let mut text = String::new();
    for r in rows {
        text.push_str(&format!(
            "{:>w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:>w4$}  {:>w5$}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2],
            w3 = w[3],
            w4 = w[4],
            w5 = w[5]
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_settings_keep_the_columns_in_line() {
        let row = |settings: &str, id: &str| {
            [
                "0".to_string(),
                settings.to_string(),
                id.to_string(),
                "finished".to_string(),
                "300/300".to_string(),
                "rmse 0.4551".to_string(),
            ]
        };
        let text = super::aligned(&[
            row("SETTINGS", "SESSION"),
            row(
                "meltr.meta_lr=0.0003 combiner.kind=meltr workload.seed=0",
                "a-000",
            ),
            row("combiner.kind=sum workload.seed=1", "b-001"),
        ]);
        let session_column: Vec<usize> = text
            .lines()
            .zip(["SESSION", "a-000", "b-001"])
            .map(|(l, id)| l.find(id).unwrap())
            .collect();
        assert!(
            session_column.iter().all(|&c| c == session_column[0]),
            "{text}"
        );
    }
}
