//! `ls`: the runs table (see `runs`), with the status live runners report
//! themselves overlaid, filtered, sorted and printed as text, JSON or CSV.

use super::*;
use crate::runs::{self, filter::Filter, Run, SortBy};

/// How long `ls` waits for live runners to say their status.
pub(super) const LS_RUNNER_TIMEOUT: Duration = Duration::from_millis(800);

/// How `ls` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Output {
    Text,
    Json,
    Csv,
}

/// A live runner's own word beats session.json, which it may not have been
/// able to write (a full disk pauses it): asked all at once, and never
/// waited on for long (a stuck runner is shown from its files). Returns
/// the runners' messages, one line each.
fn overlay_live_status(runs: &mut [Run]) -> Vec<(PathBuf, String)> {
    let live: Vec<PathBuf> = runs
        .iter()
        .filter(|r| r.alive_pid.is_some())
        .map(|r| r.dir.clone())
        .collect();
    let said: std::collections::HashMap<PathBuf, crate::runner::Said> = live
        .iter()
        .cloned()
        .zip(crate::runner::ask_status(&live, LS_RUNNER_TIMEOUT))
        .filter_map(|(dir, said)| Some((dir, said?)))
        .collect();
    let mut notes = Vec::new();
    for run in runs.iter_mut() {
        if let Some((status, message)) = said.get(&run.dir) {
            if let Some(message) = message {
                notes.push((run.dir.clone(), format!("{}: {message}", run.meta.id)));
            }
            run.status = status.as_str().to_string();
        }
    }
    notes
}

/// A run whose primary weight fell below the floor and was not put back
/// (too late in the run for the collapse watch, or none to restore): its
/// metric in the listing is that run's (walkthrough K's seed lost 0.3 of
/// R² in its last 19 meta steps; only `table` said so).
fn unrestored_collapse_note(run: &Run) -> Option<String> {
    let last = *run.unrestored_collapses.last()?;
    // A fork's log begins with its parent's: a fall there was the
    // parent's (walkthrough B's fork at 1284 was told of step 680's).
    let fork = run.meta.fork_step.unwrap_or(0);
    let (parents, own): (Vec<u64>, Vec<u64>) = run
        .unrestored_collapses
        .iter()
        .partition(|&&step| step <= fork);
    let at = |steps: &[u64]| {
        let listed: Vec<String> = steps.iter().map(u64::to_string).collect();
        format!(
            "step{} {}",
            if steps.len() == 1 { "" } else { "s" },
            listed.join(", ")
        )
    };
    let said = match (parents.is_empty(), own.is_empty()) {
        (true, _) => format!("said at {}", at(&own)),
        (false, true) => format!(
            "said at {}, in its parent's log before the fork at step {fork}",
            at(&parents)
        ),
        (false, false) => format!(
            "said at {}; at {} in its parent's log before the fork at step {fork}",
            at(&own),
            at(&parents)
        ),
    };
    // Walkthrough Q read "fell below 0.1" beside a last weight of 15.74
    // as a contradiction: a weight that rose again says so.
    let floor = crate::engine::collapse::PRIMARY_FLOOR;
    let now = run.last_primary_weight.map_or(String::new(), |w| {
        let again = if w >= floor { ", above it again" } else { "" };
        format!(
            "; its last logged weight is {}{again}",
            crate::numfmt::readable(w)
        )
    });
    // Walkthroughs L and M: beside earlier restores, "nothing put back"
    // read as if no restore had ever happened.
    let earlier = match run.restores.iter().any(|&before| before < last) {
        true => " this time",
        false => "",
    };
    Some(format!(
        "{}: its primary's effective weight fell below {floor} and was not put back{earlier} ({said}){now}; \
         its events say when it began and why, and a fork from a checkpoint before then goes on from \
         before the fall",
        run.meta.id,
    ))
}

/// Runs whose model or data file changed since they started, one note per
/// file and change: their numbers came from the file as it was (a
/// re-exported model or regenerated data otherwise goes unsaid until a
/// resume).
fn changed_inputs(shown: &[Run]) -> Vec<String> {
    let mut by_change: std::collections::BTreeMap<session::inputs::Changed, Vec<&str>> =
        Default::default();
    for run in shown {
        for change in session::inputs::changed_since_start(&run.dir) {
            by_change.entry(change).or_default().push(&run.meta.id);
        }
    }
    by_change
        .into_iter()
        .map(|(change, ids)| {
            const NAMED: usize = 4;
            let mut named = ids
                .iter()
                .take(NAMED)
                .copied()
                .collect::<Vec<_>>()
                .join(", ");
            if ids.len() > NAMED {
                named.push_str(&format!(" and {} more", ids.len() - NAMED));
            }
            let resume = if change.key == "workload.model" {
                "a resume goes on with the module saved in its checkpoint"
            } else {
                "a resume reads the file as it is now"
            };
            let how = if change.what == session::inputs::GONE {
                "was removed".to_string()
            } else {
                format!("changed ({})", change.what)
            };
            format!(
                "{} {} {how} since {named} started: they began on the file as it was; {resume}",
                change.key, change.path
            )
        })
        .collect()
}

pub(super) fn ls(root: &Path, filter: &Filter, sort: SortBy, output: Output) -> Result<()> {
    if root.exists() && !root.is_dir() {
        bail!(
            "{} is not a directory: --sessions-dir (or $MELTR_SESSIONS) names the folder sessions live in",
            root.display()
        );
    }
    let mut all = runs::all(root);
    let notes = overlay_live_status(&mut all);
    // One run left by --where has nothing to differ from; it shows the
    // columns that tell the directory's runs apart instead (walkthrough Z:
    // a single row showed no config at all, and no star).
    // (A session whose config does not read would differ in every key.)
    let differing_in_all = runs::keys::differing(all.iter().filter(|r| !r.config.is_empty()));
    let mut shown = match output {
        Output::Text => filter.apply(all)?,
        Output::Json | Output::Csv => filter.apply_any_value(all)?,
    };
    runs::sort(&mut shown, sort);
    // What a runner says, of the sessions listed only (walkthrough F's
    // `ls --group` noted a session of another group).
    let mut notes: Vec<String> = notes
        .into_iter()
        .filter(|(dir, _)| shown.iter().any(|r| r.dir == *dir))
        .map(|(_, note)| note)
        .collect();
    notes.extend(
        session::unreadable(root)
            .into_iter()
            .map(|(dir, error)| format!("{} is not listed: {error}", dir.display())),
    );
    // A refused edit leaves config.toml saying what the run does not do
    // (walkthrough K: batch_size 64 in the file while 32 ran, unsaid).
    notes.extend(
        shown
            .iter()
            .filter(|r| r.alive_pid.is_some())
            .filter_map(|r| {
                let (step, error) = r.refused_edit.as_ref()?;
                let first = error.lines().next().unwrap_or_default();
                // A refusal beside applied keys (its record says which): the edit
                // was taken in part (walkthrough D read "was refused" of a γ edit
                // that applied).
                let how = match first.contains("; applied: ") {
                    true => "was refused in part",
                    false => "was refused",
                };
                Some(format!(
            "{}: its config.toml edit at step {step} {how}, so the file is not what runs: {first}",
            r.meta.id
        ))
            }),
    );
    // A corrupt line listed the session at step 0 with no metric, unsaid.
    notes.extend(shown.iter().filter_map(|r| {
        let error = r.log_error.as_ref()?;
        Some(format!(
            "{}: its log does not read, so its step and metric are not shown: {error}",
            r.meta.id
        ))
    }));
    notes.extend(changed_inputs(&shown));
    notes.extend(shown.iter().filter_map(unrestored_collapse_note));
    match output {
        // Scripts read stdout; the notes go to stderr.
        Output::Json | Output::Csv => {
            match output {
                Output::Json => say_raw!("{}", runs::render::json(&shown)),
                _ => say_raw!("{}", runs::render::csv(&shown)),
            }
            for note in notes {
                say_err!("note: {note}");
            }
        }
        Output::Text => {
            if shown.is_empty() {
                let selected = if *filter == Filter::default() {
                    String::new()
                } else {
                    " that match".to_string()
                };
                say!("no sessions{selected} in {}", root.display());
                // A session whose record does not read is still said.
                for note in notes {
                    say!("{note}");
                }
                return Ok(());
            }
            let differing = match shown.len() {
                1 => differing_in_all,
                _ => runs::keys::differing(&shown),
            };
            let differing = runs::keys::with_edited(differing, &shown);
            let with_best = sort == SortBy::Best;
            say_raw!("{}", runs::render::text(&shown, &differing, with_best));
            if !notes.is_empty() {
                say!();
                for note in notes {
                    say!("{note}");
                }
            }
            if let Some(metrics) = runs::mixed_metrics(&shown).filter(|_| sort != SortBy::Id) {
                say!("\nthe sessions report different metrics ({metrics}): sorted within each");
            }
            let crashed: Vec<&runs::Run> = shown.iter().filter(|r| r.status == "crashed").collect();
            if !crashed.is_empty() {
                say!();
            }
            for run in crashed {
                say!("{}", crashed_note(run));
            }
        }
    }
    Ok(())
}

/// Where `resume` takes a crashed run up: its newest checkpoint, whose
/// steps after it are trained again (walkthrough D read `ls`'s 4700 as
/// where a resume would go on; it went on from 4600).
fn crashed_note(run: &runs::Run) -> String {
    let resume = session::resume_command_for(&run.dir);
    let newest = crate::engine::checkpoint::list(&session::SessionDir::new(&run.dir).checkpoints())
        .into_iter()
        .map(|(step, _)| step)
        .filter(|&step| step <= run.step)
        .max();
    match newest {
        Some(at) if at < run.step => format!(
            "{} crashed at step {}: `{resume}` continues from its checkpoint of step {at} (steps {}–{} are trained again)",
            run.meta.id,
            run.step,
            at + 1,
            run.step
        ),
        Some(at) => format!(
            "{} crashed at step {}: `{resume}` continues from its checkpoint of step {at}",
            run.meta.id, run.step
        ),
        None => format!(
            "{} crashed at step {} with no checkpoint: `{resume}` starts it again from step 0",
            run.meta.id, run.step
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walkthrough K: `ls` listed a run that ended collapsed with its
    /// metric alone.
    #[test]
    fn a_run_that_fell_with_nothing_put_back_is_noted() {
        use crate::session::metrics::{Level, MetricLine, Record, ENDS_COLLAPSED_EVENT};
        let root = tempfile::tempdir().unwrap();
        let dir = session::create(root.path(), "fell", &crate::config::Config::default()).unwrap();
        let clean = Run::load(&dir).unwrap();
        assert_eq!(unrestored_collapse_note(&clean), None);
        let mut log = crate::session::log::MetricsWriter::open(&dir.join("metrics.jsonl")).unwrap();
        log.append(&MetricLine {
            step: 400,
            time: 0.0,
            wall: None,
            record: Record::Event {
                level: Level::Warn,
                message: format!(
                    "{ENDS_COLLAPSED_EVENT} (primary) below 0.1 for its last 19 meta steps"
                ),
            },
        })
        .unwrap();
        let mut run = Run::load(&dir).unwrap();
        let note = unrestored_collapse_note(&run).unwrap();
        assert!(
            note.contains("fell below 0.1 and was not put back (said at step 400)"),
            "{note}"
        );
        // Beside an earlier restore (walkthroughs L and M read "nothing put
        // back" as if none had happened).
        run.restores = vec![200];
        let note = unrestored_collapse_note(&run).unwrap();
        assert!(
            note.contains("was not put back this time (said at step 400)"),
            "{note}"
        );
        run.last_primary_weight = Some(15.74);
        let note = unrestored_collapse_note(&run).unwrap();
        assert!(
            note.contains("its last logged weight is 15.74, above it again"),
            "{note}"
        );
        run.last_primary_weight = Some(0.02);
        let note = unrestored_collapse_note(&run).unwrap();
        assert!(note.contains("its last logged weight is 0.02;"), "{note}");
        // A fork after the fall was told of its parent's as its own
        // (walkthrough B).
        run.meta.fork_step = Some(1284);
        let note = unrestored_collapse_note(&run).unwrap();
        assert!(
            note.contains("(said at step 400, in its parent's log before the fork at step 1284)"),
            "{note}"
        );
        run.meta.fork_step = Some(300);
        let note = unrestored_collapse_note(&run).unwrap();
        assert!(!note.contains("parent"), "{note}");
        // Falls on both sides of the fork: each said as whose it was.
        run.unrestored_collapses = vec![400, 1500];
        run.meta.fork_step = Some(1284);
        let note = unrestored_collapse_note(&run).unwrap();
        assert!(
            note.contains(
                "(said at step 1500; at step 400 in its parent's log before the fork at step 1284)"
            ),
            "{note}"
        );
    }
}
