//! Where a bench step's time goes: each phase's share, what no phase
//! covered, and the whole, in one line that sums.

use crate::engine::trainer::BenchTrainer;
use anyhow::Result;
use std::time::Instant;

/// Runs `step` `steps` times with its phases timed; the line gives each
/// phase's ms per step, then what no phase covered and the whole, so that
/// the line sums to the step's time.
pub(super) fn phased(
    t: &mut BenchTrainer,
    steps: u64,
    mut step: impl FnMut(&mut BenchTrainer) -> Result<()>,
) -> Result<String> {
    t.sync()?;
    t.time_phases();
    let start = Instant::now();
    for _ in 0..steps {
        step(t)?;
    }
    t.sync()?;
    let whole = start.elapsed();
    Ok(phase_line(&t.take_phases(), whole, steps))
}

/// `phase ms · phase ms … · other ms = total ms`, per step of `steps`.
fn phase_line(
    phases: &[(&'static str, std::time::Duration)],
    whole: std::time::Duration,
    steps: u64,
) -> String {
    let per = |d: std::time::Duration| d.as_secs_f64() * 1e3 / steps.max(1) as f64;
    let timed: std::time::Duration = phases.iter().map(|(_, d)| *d).sum();
    let mut parts: Vec<String> = phases
        .iter()
        .map(|(phase, total)| format!("{phase} {:.2}", per(*total)))
        .collect();
    parts.push(format!(
        "other {:.2} = {:.2}",
        per(whole.saturating_sub(timed)),
        per(whole)
    ));
    parts.join(" · ")
}
