//! Hot reload: watch a config file's *folder* (so editors that save by
//! writing a temp file and renaming it over the original still trigger),
//! debounce bursts of events, then parse and validate the file.

use super::{Config, ConfigError};
use anyhow::{Context, Result};
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// How long the file must be quiet before it is read; editors write in bursts.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// Keeps the watch alive; dropping it stops watching.
pub struct ConfigWatch {
    _watcher: notify::RecommendedWatcher,
    _thread: std::thread::JoinHandle<()>,
}

/// Calls `on_change` with the freshly validated config, or the error that
/// says which file, line and key is wrong, after each settled change of `path`.
pub fn watch(
    path: &Path,
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
    let mut last_text: Option<String> = std::fs::read_to_string(&path).ok();
    let thread = std::thread::Builder::new()
        .name("config-watch".into())
        .spawn(move || {
            while rx.recv().is_ok() {
                // Debounce: wait until no event arrived for DEBOUNCE.
                while rx.recv_timeout(DEBOUNCE).is_ok() {}
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue; // mid-rename; the next event brings the new file
                };
                // An empty file is an editor mid-write (truncate, then
                // write): an empty config would mean "all defaults".
                if text.trim().is_empty() || last_text.as_deref() == Some(text.as_str()) {
                    continue;
                }
                last_text = Some(text.clone());
                let parsed = Config::parse(&text).map_err(|mut e| {
                    e.file = Some(path.clone());
                    e
                });
                on_change(parsed);
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
        let _watch = watch(&path, move |r| tx.send(r).unwrap()).unwrap();

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
    }
}
