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

/// `result`'s error prefixed with where the config came from
/// ([`from_file`]); an error about a key the file writes (and no `--set`
/// overrides), as a model's loss names found wrong, names its line too,
/// as the config's own checks do (walkthrough M: `workload.auxiliary lists
/// "freq_tinny"` had no line).
pub(super) fn in_file<T>(
    result: Result<T>,
    config_path: &Path,
    overrides: &[crate::config::Override],
) -> Result<T> {
    result.map_err(|e| {
        let cause = e.root_cause().to_string();
        let key = cause.split([' ', ':']).next().unwrap_or_default();
        let line = (key.contains('.') && !overrides.iter().any(|o| o.key == key))
            .then(|| crate::config::locate_key(&config_text(config_path), key))
            .flatten();
        e.context(described(config_path, line, overrides))
    })
}

/// Where a config comes from, to prefix an error it causes: the file, and
/// the `--set`s over it.
pub(super) fn from_file(config_path: &Path, overrides: &[crate::config::Override]) -> String {
    described(config_path, None, overrides)
}

/// `FILE[:LINE][ with --set K=V …]`.
fn described(
    config_path: &Path,
    line: Option<usize>,
    overrides: &[crate::config::Override],
) -> String {
    let at = line.map_or(String::new(), |l| format!(":{l}"));
    let sets: Vec<String> = overrides.iter().map(|o| format!("--set {o}")).collect();
    match sets.is_empty() {
        true => format!("{}{at}", config_path.display()),
        false => format!("{}{at} with {}", config_path.display(), sets.join(" ")),
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

    /// A build error about a key the file writes names its line; one the
    /// `--set` wrote does not (walkthrough M).
    #[test]
    fn a_build_error_about_a_written_key_names_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("run.toml");
        std::fs::write(
            &file,
            "[workload]\nprimary = \"cls\"\nauxiliary = [\"rott\"]\n",
        )
        .unwrap();
        let failed =
            || -> Result<()> { bail!("workload.auxiliary lists \"rott\", which is not a loss") };
        let err = in_file(failed(), &file, &[]).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!(
                "{}:3: workload.auxiliary lists \"rott\", which is not a loss",
                file.display()
            )
        );
        let set: crate::config::Override = "workload.auxiliary=[\"rott\"]".parse().unwrap();
        let err = in_file(failed(), &file, &[set]).unwrap_err();
        assert!(
            format!("{err:#}").starts_with(&format!("{} with --set", file.display())),
            "{err:#}"
        );
        let other = || -> Result<()> { bail!("the model does not load") };
        let err = in_file(other(), &file, &[]).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!("{}: the model does not load", file.display())
        );
    }
}
