//! Hot reload: watch a config file's *folder* (so editors that save by
//! writing a temp file and renaming it over the original still trigger),
//! debounce bursts of events, then parse the file relative to the config in
//! force (keys it leaves out keep their running values) and validate it.

use super::{Config, ConfigError};
use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// How long the file must be quiet before it is read; editors write in bursts.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// How long an empty file must stay empty before it is reported.
const EMPTY_GRACE: Duration = Duration::from_secs(1);

/// How long a file whose change cannot be undone must stay as it is
/// before it applies (see [`cannot_be_undone`]).
const SETTLE: Duration = Duration::from_secs(2);

/// Whether applying `edited` over `in_force` does what a later edit cannot
/// undo: fewer `train.steps` (the run may end at the next boundary) or
/// fewer `train.keep_checkpoints` (older checkpoints are deleted). Such a
/// change waits until the file has been quiet for [`SETTLE`]: a file
/// written in two pieces 0.3 s apart read `steps = 2` of `steps = 20000`
/// and ended a walkthrough's run.
fn cannot_be_undone(in_force: &Config, edited: &Config) -> bool {
    // 0 keeps every checkpoint: more than any number.
    let kept = |c: &Config| match c.train.keep_checkpoints {
        0 => usize::MAX,
        n => n,
    };
    edited.train.steps < in_force.train.steps || kept(edited) < kept(in_force)
}

/// A live edit's text read over the config in force. A file that sets no
/// key (emptied, or only comments) is refused: it changes nothing, and a
/// walkthrough saw an emptied file pass unreported (a comment-only one read
/// as "no value changed"), while the README says such a config is refused.
pub fn live_edit(in_force: &Config, text: &str) -> Result<Config, ConfigError> {
    if super::sets_no_keys(text) {
        return Err(ConfigError {
            file: None,
            line: None,
            key: None,
            message: "sets no keys (the file is empty, or holds only comments or empty tables): nothing changes, the config in force stays \
                      (config.in-force.toml holds it whole); a TUI edit writes the whole config back"
                .into(),
        });
    }
    Config::parse_over(in_force, text).map_err(|e| with_restart_only_keys(e, in_force, text))
}

/// A refused edit's error with the restart-only keys the file also
/// changes. The trainer refuses those only once the file is valid: a
/// walkthrough's edit with `gamma = -1` and a new `batch_size` heard of the
/// batch size only after fixing γ. Read as the trainer will read the file
/// once the keys found wrong are fixed (left out here), so a wrong value
/// is not also called a change.
fn with_restart_only_keys(mut error: ConfigError, in_force: &Config, text: &str) -> ConfigError {
    let Ok(mut table) = toml::from_str::<toml::Table>(text) else {
        return error;
    };
    let mut wrong = error.key.clone();
    let mut read = None;
    // A file with more wrong keys than this is refused for those first.
    for _ in 0..8 {
        let Some(key) = wrong.take() else { break };
        if !super::error::remove_dotted(&mut table, &key) {
            break;
        }
        let Ok(reduced) = toml::to_string(&table) else {
            break;
        };
        match Config::parse_over_first_problem(in_force, &reduced) {
            Ok(config) => read = Some(config),
            Err(next) if next.key.as_deref() != Some(key.as_str()) => wrong = next.key,
            Err(_) => {}
        }
    }
    let Some(read) = read else {
        return error;
    };
    let refused: Vec<String> = in_force
        .diff(&read)
        .iter()
        .filter_map(super::Change::refusal)
        .collect();
    error.also(&refused);
    error
}

/// Keeps the watch alive; dropping it stops watching.
pub struct ConfigWatch {
    _watcher: notify::RecommendedWatcher,
    _thread: std::thread::JoinHandle<()>,
}

/// Calls `on_change` with the freshly validated config, or the error that
/// says which file, line and key is wrong, after each settled change of
/// `path`. The file is read over `in_force()` (see [`Config::parse_over`]):
/// a partial file changes only the keys it names.
pub fn watch(
    path: &Path,
    in_force: impl Fn() -> Config + Send + 'static,
    mut on_change: impl FnMut(Result<Config, ConfigError>) + Send + 'static,
) -> Result<ConfigWatch> {
    let path: PathBuf = path.to_path_buf();
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = path
        .file_name()
        .context("config path has no file name")?
        .to_os_string();
    let (tx, rx) = mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let touches_config = event
                .paths
                .iter()
                .any(|p| p.file_name() == Some(name.as_os_str()));
            let is_read = matches!(event.kind, notify::EventKind::Access(_));
            if touches_config && !is_read {
                let _ = tx.send(());
            }
        }
    })
    .context("cannot start the config file watcher")?;
    watcher
        .watch(&dir, RecursiveMode::NonRecursive)
        .with_context(|| format!("cannot watch {}", dir.display()))?;
    let mut last_bytes: Option<Vec<u8>> = std::fs::read(&path).ok();
    let thread = std::thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || {
            let mut woke = rx.recv().is_ok();
            while woke {
                // Debounce: wait until no event arrived for DEBOUNCE.
                while rx.recv_timeout(DEBOUNCE).is_ok() {}
                // Missing: mid-rename; the next event brings the new file.
                if let Ok(bytes) = std::fs::read(&path) {
                    // An empty file is usually an editor mid-write
                    // (truncate, then write): said only when it stays so.
                    if bytes.trim_ascii().is_empty() {
                        match rx.recv_timeout(EMPTY_GRACE) {
                            Ok(()) => continue,
                            Err(mpsc::RecvTimeoutError::Disconnected) => break,
                            Err(mpsc::RecvTimeoutError::Timeout) => {}
                        }
                    }
                    if last_bytes.as_ref() != Some(&bytes) {
                        let located = |mut e: ConfigError| {
                            e.file = Some(path.clone());
                            e
                        };
                        let before = in_force();
                        // A byte that is not UTF-8 is reported (with its
                        // line), not silently ignored.
                        let parsed = super::decode_text(bytes.clone())
                            .and_then(|text| live_edit(&before, &text))
                            .map_err(located);
                        if parsed.as_ref().is_ok_and(|c| cannot_be_undone(&before, c)) {
                            match rx.recv_timeout(SETTLE) {
                                // Still being written: read it again.
                                Ok(()) => continue,
                                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                                Err(mpsc::RecvTimeoutError::Timeout) => {}
                            }
                            if std::fs::read(&path).ok().as_ref() != Some(&bytes) {
                                continue;
                            }
                        }
                        last_bytes = Some(bytes);
                        on_change(parsed);
                    }
                }
                woke = rx.recv().is_ok();
            }
        })
        .context("cannot start the config watch thread")?;
    Ok(ConfigWatch {
        _watcher: watcher,
        _thread: thread,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn wait_for<T>(rx: &mpsc::Receiver<T>) -> T {
        rx.recv_timeout(Duration::from_secs(5))
            .expect("no config change reported within 5 s")
    }

    #[test]
    fn rename_on_save_and_invalid_edits_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, Config::default().to_toml_string()).unwrap();
        let (tx, rx) = mpsc::channel();
        let _watch = watch(&path, Config::default, move |r| tx.send(r).unwrap()).unwrap();

        // Editor-style save: write a temp file, rename it over the config.
        let mut changed = Config::default();
        changed.aid.iterations = 3;
        let tmp = dir.path().join(".config.toml.swp");
        std::fs::write(&tmp, changed.to_toml_string()).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        assert_eq!(wait_for(&rx).unwrap().aid.iterations, 3);

        // An invalid edit names file, line and key.
        let start = Instant::now();
        std::fs::write(&path, "[aid]\niterations = \"many\"\n").unwrap();
        let err = wait_for(&rx).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(err.key.as_deref(), Some("aid.iterations"));
        assert_eq!(err.line, Some(2));
        assert!(err.to_string().contains("config.toml:2"), "{err}");

        // A file that sets no key is refused, emptied too once it stays
        // so; an editor's truncate-then-write is read as its new text only.
        std::fs::write(&path, "# only a comment\n").unwrap();
        let err = wait_for(&rx).unwrap_err();
        assert!(err.to_string().contains("sets no keys"), "{err}");
        std::fs::write(&path, "").unwrap();
        let err = wait_for(&rx).unwrap_err();
        assert!(err.to_string().contains("sets no keys"), "{err}");
        std::fs::write(&path, "[aid]\niterations = 2\n").unwrap();
        assert_eq!(wait_for(&rx).unwrap().aid.iterations, 2);
        std::fs::write(&path, "").unwrap();
        std::thread::sleep(DEBOUNCE * 2);
        std::fs::write(&path, "[aid]\niterations = 1\n").unwrap();
        assert_eq!(wait_for(&rx).unwrap().aid.iterations, 1);
        assert!(
            rx.recv_timeout(EMPTY_GRACE * 2).is_err(),
            "one report of the truncate-then-write"
        );
    }

    /// A change that cannot be undone (fewer steps) applies only once the
    /// file has been quiet for SETTLE: a file written in two pieces read as
    /// its first piece ended a walkthrough's run. Other changes apply at
    /// once.
    #[test]
    fn a_change_that_cannot_be_undone_waits_for_the_file_to_settle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let mut running = Config::default();
        running.train.steps = 20_000;
        std::fs::write(&path, running.to_toml_string()).unwrap();
        let (tx, rx) = mpsc::channel();
        let in_force = running.clone();
        let _watch = watch(
            &path,
            move || in_force.clone(),
            move |r| tx.send(r).unwrap(),
        )
        .unwrap();
        let whole = running.to_toml_string();
        let cut = whole.find("steps = 20000").unwrap() + "steps = 2".len();
        let started = Instant::now();
        std::fs::write(&path, &whole[..cut]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(&path, format!("{whole}\n")).unwrap();
        let applied = wait_for(&rx).unwrap();
        assert_eq!(applied.train.steps, 20_000, "the first piece was applied");
        assert!(
            rx.recv_timeout(SETTLE + DEBOUNCE * 2).is_err(),
            "one report, of the whole file"
        );
        // Fewer steps, written whole, apply after SETTLE.
        let started_fewer = Instant::now();
        std::fs::write(&path, "[train]\nsteps = 500\n").unwrap();
        assert_eq!(wait_for(&rx).unwrap().train.steps, 500);
        assert!(
            started_fewer.elapsed() >= SETTLE,
            "{:?}",
            started_fewer.elapsed()
        );
        // Anything else at once.
        let other = Instant::now();
        std::fs::write(&path, "[aid]\niterations = 4\n").unwrap();
        assert_eq!(wait_for(&rx).unwrap().aid.iterations, 4);
        assert!(other.elapsed() < SETTLE, "{:?}", other.elapsed());
        assert!(started.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn fewer_steps_or_kept_checkpoints_cannot_be_undone() {
        let keeping = |steps: u64, kept: usize| {
            let mut c = Config::default();
            c.train.steps = steps;
            c.train.keep_checkpoints = kept;
            c
        };
        assert!(cannot_be_undone(&keeping(100, 3), &keeping(50, 3)));
        assert!(cannot_be_undone(&keeping(100, 3), &keeping(100, 2)));
        // 0 keeps them all: from 0 to 3 deletes, from 3 to 0 keeps.
        assert!(cannot_be_undone(&keeping(100, 0), &keeping(100, 3)));
        assert!(!cannot_be_undone(&keeping(100, 3), &keeping(100, 0)));
        assert!(!cannot_be_undone(&keeping(100, 3), &keeping(200, 5)));
    }

    /// Walkthrough O: an edit with a bad γ and a new batch size heard of
    /// the batch size only after fixing γ.
    #[test]
    fn a_refused_edit_also_names_its_restart_only_changes() {
        let running = Config::default();
        let text =
            "[workload]\nbatch_size = 64\nseed = 0\n[meltr]\ngamma = -1\nmax_loss_ratio = 50\n";
        assert_eq!(
            running.meltr.max_loss_ratio, 50.0,
            "an integer written for the same float is no change"
        );
        let err = live_edit(&running, text).unwrap_err().to_string();
        assert!(err.starts_with("line 5: key `meltr.gamma`"), "{err}");
        assert!(
            err.contains("; also `workload.batch_size` = 64 can only change at restart (the workload is built once"),
            "{err}"
        );
        assert!(
            !err.contains("workload.seed") && !err.contains("max_loss_ratio"),
            "{err}"
        );
        // A wrong key keeps its own range; an optional key set for the
        // first time is a change too.
        assert_eq!(running.workload.eval_batch_size, None);
        let err = live_edit(
            &running,
            "[train]\nsteps = -3\n[workload]\neval_batch_size = 100\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("expected a whole number ≥ 1, got -3"), "{err}");
        assert!(
            err.contains("; also `workload.eval_batch_size` = 100 can only change at restart"),
            "{err}"
        );
        // A wrong restart-only value is the error, not also a change; nor
        // is an unknown key that reads like one.
        for text in [
            "[workload]\nbatch_size = 0\n",
            "\"workload.batch_size\" = 64\n",
        ] {
            let err = live_edit(&running, text).unwrap_err().to_string();
            assert!(!err.contains("also"), "{err}");
        }
        // A valid file's restart-only keys are the trainer's to refuse.
        assert!(live_edit(&running, "[workload]\nbatch_size = 64\n").is_ok());
    }

    /// Issue 19, item 3: a partial file changes only the keys it names; the
    /// others keep the values in force, not the built-in defaults.
    #[test]
    fn a_partial_file_is_read_over_the_config_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let mut running = Config::default();
        running.train.steps = 20_000;
        running.train.lr = 0.005;
        running.combiner.kind = crate::config::CombinerKind::Weights;
        running.combiner.weights = [("primary", 1.0), ("helpful", 0.5), ("harmful", 0.0)]
            .map(|(k, w)| (k.to_string(), w))
            .into();
        std::fs::write(&path, running.to_toml_string()).unwrap();
        let in_force = std::sync::Arc::new(std::sync::Mutex::new(running.clone()));
        let (tx, rx) = mpsc::channel();
        let shared = std::sync::Arc::clone(&in_force);
        let _watch = watch(
            &path,
            move || shared.lock().unwrap().clone(),
            move |r| tx.send(r).unwrap(),
        )
        .unwrap();

        std::fs::write(&path, "[aid]\niterations = 1\n").unwrap();
        let got = wait_for(&rx).unwrap();
        let mut expected = running.clone();
        expected.aid.iterations = 1;
        assert_eq!(got, expected);

        // The next edit is read over the config in force now.
        *in_force.lock().unwrap() = got;
        std::fs::write(&path, "# by hand\n[train]\nlr = 0.002\n").unwrap();
        let got = wait_for(&rx).unwrap();
        expected.train.lr = 0.002;
        assert_eq!(got, expected);

        // Mistakes in a partial file still name their line and key, also
        // when the value is wrong only together with the config in force.
        std::fs::write(&path, "[train]\nlr = 0.002\nspeed = 3\n").unwrap();
        let err = wait_for(&rx).unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.to_string().contains("speed"), "{err}");
        std::fs::write(&path, "[combiner]\nweights = { nope = 1.0 }\n").unwrap();
        let err = wait_for(&rx).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("combiner.weights.nope"), "{err}");
        assert_eq!(err.line, Some(2), "{err}");
        std::fs::write(&path, "[train]\nthreads = 0\n").unwrap();
        let err = wait_for(&rx).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("train.threads"), "{err}");
        // A byte that is not UTF-8 (a Latin-1 save) names its line.
        std::fs::write(&path, b"[train]\n# r\xe9glage\nlr = 0.001\n").unwrap();
        let err = wait_for(&rx).unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(err.to_string().contains("config.toml:2: column 4"), "{err}");
    }
}
