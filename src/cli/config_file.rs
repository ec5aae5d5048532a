//! The config a command starts from: the file (or the built-in default),
//! its paths made absolute, `--steps` and `--set` applied and checked, and
//! how an error names where the config came from.

use super::DEFAULT_CONFIG;
use crate::config::Config;
use anyhow::{bail, Result};
use std::path::Path;

/// The default config, built into the binary so `meltr-tui` works from any
/// folder (a `configs/default.toml` in the working folder takes precedence).
pub(super) const EMBEDDED_DEFAULT: &str = include_str!("../../configs/default.toml");

pub(super) fn load_config(path: &Path) -> Result<Config> {
    if !path.exists() {
        if path == Path::new(DEFAULT_CONFIG) {
            return Config::parse(EMBEDDED_DEFAULT).map_err(anyhow::Error::new);
        }
        bail!("config file {} does not exist", path.display());
    }
    let mut config = Config::load(path).map_err(anyhow::Error::new)?;
    // Paths inside the config are relative to its file; the session's copy
    // lives elsewhere, so make them absolute.
    for p in [
        &mut config.workload.model,
        &mut config.workload.train,
        &mut config.workload.val,
    ]
    .into_iter()
    .flatten()
    {
        let resolved = Config::resolve_path(path, p);
        *p = std::fs::canonicalize(&resolved)
            .unwrap_or(resolved)
            .display()
            .to_string();
    }
    Ok(config)
}

/// The text of the config file at `path` (the built-in default's when it
/// is the default path and missing), for its comments.
pub(super) fn config_text(path: &Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(_) if path == Path::new(DEFAULT_CONFIG) => EMBEDDED_DEFAULT.to_string(),
        Err(_) => String::new(),
    }
}

/// Where a config comes from, to prefix an error it causes: the file, and
/// the `--set`s over it.
pub(super) fn from_file(config_path: &Path, overrides: &[crate::config::Override]) -> String {
    let sets: Vec<String> = overrides.iter().map(|o| format!("--set {o}")).collect();
    match sets.is_empty() {
        true => config_path.display().to_string(),
        false => format!("{} with {}", config_path.display(), sets.join(" ")),
    }
}

/// The config at `config_path` with `--steps` and `--set` applied, all
/// checked as the file is.
pub(super) fn configured(
    config_path: &Path,
    steps: Option<u64>,
    overrides: &[crate::config::Override],
) -> Result<Config> {
    let mut config = load_config(config_path)?;
    if let Some(steps) = steps {
        config.train.steps = steps;
        config.validate().map_err(anyhow::Error::new)?;
    }
    let mut config = config
        .with_overrides(overrides)
        .map_err(|e| anyhow::anyhow!("--set: {e}"))?;
    // A path given with --set is the shell's: relative to the current
    // directory (a walkthrough expected the config file's folder and got
    // only "does not exist"), so say which rule applied.
    for (key, path) in [
        ("workload.model", &mut config.workload.model),
        ("workload.train", &mut config.workload.train),
        ("workload.val", &mut config.workload.val),
    ] {
        let Some(set) = overrides.iter().find(|o| o.key == key) else {
            continue;
        };
        let Some(given) = path.as_mut() else { continue };
        let absolute = std::path::absolute(&*given)
            .unwrap_or_else(|_| std::path::PathBuf::from(given.as_str()));
        if !absolute.exists() {
            bail!(
                "--set {set}: {} does not exist (a --set path is relative to the current directory, \
                 {}; paths in the config file are relative to the file's folder)",
                absolute.display(),
                std::env::current_dir().unwrap_or_default().display()
            );
        }
        *given = absolute.display().to_string();
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::DEFAULT_CONFIG;

    #[test]
    fn the_embedded_default_config_is_the_repository_default() {
        let embedded = Config::parse(EMBEDDED_DEFAULT).unwrap();
        assert_eq!(
            embedded.workload.kind,
            crate::config::WorkloadKind::VideoText
        );
        let on_disk =
            Config::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG)).unwrap();
        assert_eq!(embedded, on_disk);
        let err = load_config(Path::new("configs/nope.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("configs/nope.toml does not exist"), "{err}");
    }

    /// A `--set` path is the shell's, relative to the current directory
    /// (cargo runs tests in the crate's folder), and a missing one says so.
    #[test]
    fn a_set_path_is_relative_to_the_current_directory_and_says_so() {
        let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let file = crate_dir.join(DEFAULT_CONFIG);
        let missing: crate::config::Override = "workload.model=no/such/model.pt".parse().unwrap();
        let err = configured(&file, None, &[missing]).unwrap_err().to_string();
        assert!(
            err.contains("--set workload.model=no/such/model.pt")
                && err.contains("relative to the current directory"),
            "{err}"
        );
        let here: crate::config::Override = "workload.train=Cargo.toml".parse().unwrap();
        let config = configured(&file, None, &[here]).unwrap();
        assert_eq!(
            config.workload.train.map(std::path::PathBuf::from),
            Some(crate_dir.join("Cargo.toml"))
        );
    }
}
