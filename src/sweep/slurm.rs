//! A sweep as a SLURM job array: the `sbatch` script (array task i runs
//! member i, exactly one session, headless), and reading the job id from
//! `sbatch`'s answer.

use super::Plan;
use std::fmt::Write;
use std::path::Path;

/// What the script needs besides the plan.
pub struct Job<'a> {
    /// The `meltr-tui` binary the tasks run (compute nodes must see it).
    pub exe: &'a Path,
    /// The sessions folder, absolute (compute nodes must see it).
    pub sessions: &'a Path,
    /// The folder the tasks start in (relative paths in configs).
    pub workdir: &'a Path,
    /// Members to run (all of them, or those a resume still owes).
    pub indices: &'a [usize],
    /// At most this many tasks at once (`--array=...%N`), if given.
    pub throttle: Option<usize>,
    /// Extra `#SBATCH` options (`--gres=gpu:1`, `--time=2:00:00`).
    pub options: &'a [String],
}

/// `0-3` for a contiguous run from its first index, else `1,3,4`.
pub fn array_spec(indices: &[usize]) -> String {
    let contiguous = indices.windows(2).all(|w| w[1] == w[0] + 1);
    match (indices.first(), indices.last()) {
        (Some(first), Some(last)) if contiguous && indices.len() > 1 => format!("{first}-{last}"),
        _ => indices
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// Quotes `text` for a POSIX shell.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The array script: one task per member index, each running
/// `meltr-tui sweep member GROUP $SLURM_ARRAY_TASK_ID` (the member's
/// session from its config in the sweep folder, headless; a requeued task
/// resumes that session instead of starting another).
pub fn script(plan: &Plan, job: &Job) -> String {
    let folder = super::folder(job.sessions, &plan.group);
    let mut array = array_spec(job.indices);
    if let Some(n) = job.throttle {
        let _ = write!(array, "%{n}");
    }
    let mut s = String::from("#!/bin/bash\n");
    let _ = writeln!(s, "#SBATCH --job-name=meltr-{}", plan.group);
    let _ = writeln!(s, "#SBATCH --array={array}");
    let _ = writeln!(s, "#SBATCH --ntasks=1");
    let _ = writeln!(s, "#SBATCH --output={}/slurm-%A_%a.out", folder.display());
    for option in job.options {
        let _ = writeln!(s, "#SBATCH {option}");
    }
    let _ = writeln!(
        s,
        "#\n# meltr-tui sweep `{}`: {} members; array task i runs member i only\n# (its config: {}/configs/NNN.toml).",
        plan.group,
        plan.members.len(),
        folder.display()
    );
    let keys = plan.varying_keys();
    for m in plan
        .members
        .iter()
        .filter(|m| job.indices.contains(&m.index))
    {
        let _ = writeln!(s, "#   {:>3}  {}", m.index, m.label(&keys));
    }
    let _ = writeln!(s, "set -euo pipefail");
    let _ = writeln!(s, "cd {}", quote(&job.workdir.display().to_string()));
    let _ = writeln!(
        s,
        "exec {} --sessions-dir {} sweep member {} \"$SLURM_ARRAY_TASK_ID\"",
        quote(&job.exe.display().to_string()),
        quote(&job.sessions.display().to_string()),
        quote(&plan.group)
    );
    s
}

/// The job id in `sbatch`'s answer (`Submitted batch job 1234`).
pub fn job_id(answer: &str) -> Option<String> {
    answer
        .split_whitespace()
        .last()
        .filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_specs_and_job_ids() {
        assert_eq!(array_spec(&[0, 1, 2, 3]), "0-3");
        assert_eq!(array_spec(&[1, 3]), "1,3");
        assert_eq!(array_spec(&[2]), "2");
        assert_eq!(job_id("Submitted batch job 4242\n"), Some("4242".into()));
        assert_eq!(job_id("sbatch: error: invalid partition"), None);
        assert_eq!(quote("a'b"), r"'a'\''b'");
    }
}
