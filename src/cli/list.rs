//! `ls`: the sessions table (status from live runners themselves, steps
//! from the config in force).

use super::*;

/// Runs the engine, following its events with one progress line per log
/// interval. Ctrl-C stops cleanly (checkpoint, status `stopped`).
/// The last step and primary metric recorded in a session's metrics.
pub(super) fn progress_of(dir: &Path, meta: &SessionMeta) -> (u64, Option<f64>) {
    let Ok(read) = session::log::read_metrics(&SessionDir::new(dir).metrics()) else {
        return (0, None);
    };
    let step = read.lines.last().map_or(0, |l| l.step);
    let metric = read.lines.iter().rev().find_map(|l| match &l.record {
        Record::Eval { metrics, .. } => metrics.get(&meta.primary_metric).copied(),
        _ => None,
    });
    (step, metric)
}

/// How long `ls` waits for live runners to say their status.
pub(super) const LS_RUNNER_TIMEOUT: Duration = Duration::from_millis(800);

/// The steps a session runs to: `train.steps` of the config in force (a
/// live edit changes it), else what `session.json` was created with.
pub(super) fn steps_in_force(dir: &Path, meta: &SessionMeta) -> u64 {
    Config::load(&SessionDir::new(dir).config_in_force()).map_or(meta.steps, |c| c.train.steps)
}

pub(super) fn ls(root: &Path) -> Result<()> {
    if root.exists() && !root.is_dir() {
        bail!(
            "{} is not a directory: --sessions-dir (or $MELTR_SESSIONS) names the folder sessions live in",
            root.display()
        );
    }
    let sessions = session::list(root);
    if sessions.is_empty() {
        println!("no sessions in {}", root.display());
        return Ok(());
    }
    // Lineage, when some session is a fork: `parent@step`.
    let forks = sessions.iter().any(|(_, m)| m.parent.is_some());
    println!(
        "{:<40} {:<9} {:>13} {:>18} {:<8} {:<12}{}",
        "ID",
        "STATUS",
        "STEP",
        "PRIMARY METRIC",
        "DEVICE",
        "RUNNER",
        if forks { " FORKED FROM" } else { "" }
    );
    // A live runner's own word beats session.json, which it may not have
    // been able to write (a full disk pauses it): asked all at once, and
    // never waited on for long (a stuck runner is shown from its files).
    let live: Vec<PathBuf> = sessions
        .iter()
        .filter(|(_, meta)| !meta.status.is_terminal() && session::pid_alive(meta.pid))
        .map(|(dir, _)| dir.clone())
        .collect();
    let said: std::collections::HashMap<PathBuf, crate::runner::Said> = live
        .iter()
        .cloned()
        .zip(crate::runner::ask_status(&live, LS_RUNNER_TIMEOUT))
        .filter_map(|(dir, said)| Some((dir, said?)))
        .collect();
    let mut notes = Vec::new();
    let mut crashed = false;
    for (dir, meta) in sessions {
        let (step, metric) = progress_of(&dir, &meta);
        let alive = !meta.status.is_terminal() && session::pid_alive(meta.pid);
        let status = if let Some((status, message)) = said.get(&dir) {
            if let Some(message) = message {
                notes.push(format!("{}: {message}", meta.id));
            }
            status.as_str().to_string()
        } else if !meta.status.is_terminal() && !alive {
            crashed = true;
            "crashed".to_string()
        } else {
            meta.status.as_str().to_string()
        };
        let runner = if alive {
            format!("alive pid {}", meta.pid)
        } else {
            "-".into()
        };
        let metric = metric.map_or("-".into(), |m| format!("{} {m:.4}", meta.primary_metric));
        let lineage = match (&meta.parent, meta.fork_step) {
            (Some(parent), Some(at)) => format!(" {parent}@{at}"),
            _ if forks => " -".into(),
            _ => String::new(),
        };
        println!(
            "{:<40} {:<9} {:>13} {:>18} {:<8} {:<12}{lineage}",
            meta.id,
            status,
            format!("{step}/{}", steps_in_force(&dir, &meta)),
            metric,
            meta.device,
            runner
        );
    }
    if !notes.is_empty() {
        println!();
        for note in notes {
            println!("{note}");
        }
    }
    if crashed {
        println!(
            "\na crashed session continues from its newest checkpoint with `meltr-tui resume ID`"
        );
    }
    Ok(())
}
