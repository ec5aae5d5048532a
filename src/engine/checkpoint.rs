//! Checkpoints: one safetensors file per checkpoint holding the model, the
//! combiner, both optimizers and the step, written atomically (temp file,
//! fsync, rename) so a kill at any moment leaves the previous one intact.

use crate::config::Config;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::Tensor;

/// The file name of the checkpoint for `step`: `step-NNNNNNNNNN.safetensors`,
/// zero-padded so that names sort by step.
pub fn file_name(step: u64) -> String {
    format!("step-{step:010}.safetensors")
}

/// The event that says the checkpoint of `step` was written (a fork's
/// history ends with it at its fork step).
pub fn checkpoint_written(step: u64) -> String {
    format!("checkpoint {} written", file_name(step))
}

/// The event of a checkpoint written because its step's evaluation scored
/// the best primary metric so far (`train.checkpoint_best`).
pub fn best_checkpoint_written(step: u64, metric: &str, value: f64) -> String {
    written_at_best(step, metric, value, "; kept until a better one")
}

/// The event of a periodic checkpoint whose step's evaluation scored the
/// best primary metric so far.
pub fn periodic_best_written(step: u64, metric: &str, value: f64) -> String {
    written_at_best(step, metric, value, "")
}

fn written_at_best(step: u64, metric: &str, value: f64, then: &str) -> String {
    format!(
        "{} ({metric} {}, the best evaluation so far{then})",
        checkpoint_written(step),
        // Zeros kept: `psnr 15.00`, not `psnr 15` (walkthrough N).
        crate::numfmt::column_value(value)
    )
}

/// Whether `message` is the event of `step`'s checkpoint write, of
/// either kind.
pub fn is_checkpoint_written(message: &str, step: u64) -> bool {
    let written = checkpoint_written(step);
    message == written
        || message
            .strip_prefix(&written)
            .is_some_and(|rest| rest.starts_with(" ("))
}

/// Which checkpoints a write keeps besides itself.
#[derive(Debug, Clone, Copy)]
pub struct Keep {
    /// The newest this many ordinary ones (0: every ordinary one; a
    /// best-only one still goes once a better one replaces it).
    pub newest: usize,
    /// The best-evaluated one's step.
    pub best: Option<u64>,
    /// This one is best-only (see [`mark_best_only`]).
    pub best_only: bool,
}

/// Writes `tensors` as the checkpoint for `step`, then deletes all but the
/// newest `keep.newest` ordinary ones (0: every ordinary one) and the best one,
/// and every best-only one but the best; returns its path. A failed delete
/// is no failed write (the next checkpoint tries it again).
pub fn write(dir: &Path, step: u64, tensors: &[(String, Tensor)], keep: Keep) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // A marker left from an earlier file of this step (set aside, deleted
    // by hand) must not make this one best-only.
    unmark_best_only(dir, step);
    let path = dir.join(file_name(step));
    let cpu: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.detach().to_device(tch::Device::Cpu).contiguous(),
            )
        })
        .collect();
    crate::session::atomic_replace(&path, |tmp| {
        Tensor::write_safetensors(&cpu, tmp).map_err(|e| {
            anyhow::anyhow!(
                "cannot write checkpoint {}: {}",
                tmp.display(),
                readable_os_error(&e.to_string())
            )
        })
    })?;
    // Marked before the pruning, which would count it as the newest
    // ordinary one. A failed marker leaves an ordinary checkpoint.
    if keep.best_only {
        let _ = mark_best_only(dir, step);
    }
    let _ = prune(dir, keep.newest, keep.best);
    Ok(path)
}

/// libtorch's safetensors writer reports an I/O error in Rust's debug form
/// (`IoError(Os { code: 28, kind: StorageFull, .. })`): the OS's words for
/// its code instead ("No space left on device (os error 28)").
fn readable_os_error(text: &str) -> String {
    let code = text
        .split_once("Os { code: ")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse::<i32>().ok());
    match code {
        Some(code) => std::io::Error::from_raw_os_error(code).to_string(),
        None => text.to_string(),
    }
}

/// Checkpoint files by step, oldest first (temp files are ignored).
pub fn list(dir: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<(u64, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((list_step(&e.path())?, e.path())))
        .collect();
    out.sort();
    out
}

/// The step of a checkpoint file's name (`step-N.safetensors`).
fn list_step(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("step-")?
        .strip_suffix(".safetensors")?
        .parse()
        .ok()
}

/// Suffix given to a checkpoint that does not read back, so that it no
/// longer counts as one (kept for inspection; safe to delete).
pub const UNREADABLE_SUFFIX: &str = ".unreadable";

/// Renames an unreadable checkpoint out of the way (`...safetensors` ->
/// `...safetensors.unreadable`); returns the new path.
pub fn set_aside(path: &Path) -> Result<PathBuf> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(UNREADABLE_SUFFIX);
    let aside = path.with_file_name(name);
    std::fs::rename(path, &aside)
        .with_context(|| format!("cannot move {} aside", path.display()))?;
    if let Some(step) = list_step(path) {
        unmark_best_only(path.parent().unwrap_or(Path::new(".")), step);
    }
    Ok(aside)
}

/// The empty file beside a checkpoint that marks it `kind` (`pinned`,
/// `best-only`).
fn marker(dir: &Path, step: u64, kind: &str) -> PathBuf {
    dir.join(format!("step-{step:010}.{kind}"))
}

/// Writes a [`marker`].
fn mark(dir: &Path, step: u64, kind: &str) -> Result<()> {
    let marker = marker(dir, step, kind);
    std::fs::write(&marker, b"").with_context(|| format!("cannot write {}", marker.display()))
}

const PINNED: &str = "pinned";
const BEST_ONLY: &str = "best-only";

/// Marks the checkpoint of `step` in `dir` as asked for by hand (the TUI's
/// `c`): pruning keeps it, whatever `train.keep_checkpoints` (a
/// walkthrough's was deleted three checkpoints later).
pub fn pin(dir: &Path, step: u64) -> Result<()> {
    mark(dir, step, PINNED)
}

/// Marks the checkpoint of `step` as written for its evaluation's best
/// score, between the periodic ones: it takes none of
/// `train.keep_checkpoints`' slots (a walkthrough's periodic checkpoints,
/// which forks start from, were pruned by such files) and is deleted once
/// a better evaluation's checkpoint replaces it.
fn mark_best_only(dir: &Path, step: u64) -> Result<()> {
    mark(dir, step, BEST_ONLY)
}

/// Makes a best-only checkpoint an ordinary one (a stop or a checkpoint
/// asked for by hand at its step), pruned as the periodic ones are.
pub fn unmark_best_only(dir: &Path, step: u64) {
    let _ = std::fs::remove_file(marker(dir, step, BEST_ONLY));
}

/// Deletes all but the newest `keep` ordinary checkpoints (best-only ones
/// not counted; 0 keeps every one) and every best-only one, sparing
/// `also_keep`'s and pinned ones.
fn prune(dir: &Path, keep: usize, also_keep: Option<u64>) -> Result<()> {
    let spared = |step: u64| Some(step) == also_keep || marker(dir, step, PINNED).exists();
    let (best_only, ordinary): (Vec<_>, Vec<_>) = list(dir)
        .into_iter()
        .partition(|(step, _)| marker(dir, *step, BEST_ONLY).exists());
    let older = match keep {
        0 => &[][..],
        keep => &ordinary[..ordinary.len().saturating_sub(keep)],
    };
    for (step, path) in best_only.iter().chain(older) {
        if spared(*step) {
            continue;
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot delete old checkpoint {}", path.display()))?;
        unmark_best_only(dir, *step);
    }
    Ok(())
}

/// The name of the config in force at the checkpoint's step, stored as
/// TOML bytes: a resume logs how the config it runs with differs (a
/// `--set`, or a live edit the crash rolled back), and a fork starts from
/// it.
pub const CONFIG_IN_FORCE: &str = "config.toml";

/// Copies the checkpoint at `from` to `to` with `config` as its config in
/// force: a fork's first checkpoint is its parent's with the fork's config,
/// so a fork of the fork at that step starts from the fork's settings, not
/// the parent's (the copy had carried the parent's).
pub fn copy_with_config(from: &Path, to: &Path, config: &Config) -> Result<()> {
    let mut tensors = Tensor::read_safetensors(from)
        .map_err(|e| anyhow::anyhow!("cannot read checkpoint {}: {e}", from.display()))?;
    tensors.retain(|(name, _)| name != CONFIG_IN_FORCE);
    tensors.push((
        CONFIG_IN_FORCE.to_string(),
        Tensor::from_slice(config.to_toml_string().as_bytes()),
    ));
    crate::session::atomic_replace(to, |tmp| {
        Tensor::write_safetensors(&tensors, tmp).map_err(|e| {
            anyhow::anyhow!(
                "cannot write checkpoint {}: {}",
                tmp.display(),
                readable_os_error(&e.to_string())
            )
        })
    })
}

/// A loaded checkpoint, looked up by tensor name.
pub struct Loaded {
    /// The step the checkpoint was written at (from its file name).
    pub step: u64,
    /// Where it was read from.
    pub path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl Loaded {
    /// Reads the checkpoint file at `path`, labelled as `step`'s; fails on a file
    /// that is missing, cut short or not safetensors.
    pub fn read(path: &Path, step: u64) -> Result<Loaded> {
        let tensors = Tensor::read_safetensors(path)
            .map_err(|e| anyhow::anyhow!("cannot read checkpoint {}: {e}", path.display()))?
            .into_iter()
            .collect();
        Ok(Loaded {
            step,
            path: path.to_path_buf(),
            tensors,
        })
    }

    /// The newest checkpoint in `dir` that reads back, if any, and the
    /// newer ones that did not (path, why), newest first. A checkpoint cut
    /// short (a crash mid-copy, a full disk, a hand edit) must not strand a
    /// session whose older checkpoints are intact.
    pub fn newest_readable(dir: &Path) -> (Option<Loaded>, Vec<(PathBuf, String)>) {
        let mut unreadable = Vec::new();
        for (step, path) in list(dir).into_iter().rev() {
            match Loaded::read(&path, step) {
                Ok(loaded) => return (Some(loaded), unreadable),
                Err(e) => unreadable.push((path, format!("{e:#}"))),
            }
        }
        (None, unreadable)
    }

    /// A shallow copy of the tensor stored as `name`, if the checkpoint has one.
    pub fn get(&self, name: &str) -> Option<Tensor> {
        self.tensors.get(name).map(Tensor::shallow_clone)
    }

    /// The config in force when the checkpoint was written; `None` for a
    /// checkpoint written before checkpoints carried it, or one whose
    /// config no longer parses.
    pub fn config(&self) -> Option<Config> {
        let bytes = Vec::<u8>::try_from(self.get(CONFIG_IN_FORCE)?).ok()?;
        Config::parse(&String::from_utf8(bytes).ok()?).ok()
    }

    /// Entries whose names start with `prefix`, prefix removed.
    pub fn lookup<'a>(&'a self, prefix: &'a str) -> impl Fn(&str) -> Option<Tensor> + 'a {
        move |name| self.get(&format!("{prefix}{name}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps the newest `newest` and `best`'s.
    pub(super) fn keep(newest: usize, best: Option<u64>) -> Keep {
        Keep {
            newest,
            best,
            best_only: false,
        }
    }

    #[test]
    fn keeps_newest_three_and_ignores_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        for step in 1..=5 {
            write(
                dir.path(),
                step,
                &[("x".into(), Tensor::from(step as f64))],
                keep(3, None),
            )
            .unwrap();
        }
        std::fs::write(
            dir.path().join(".step-0000000006.safetensors.tmp-1"),
            b"partial",
        )
        .unwrap();
        let steps: Vec<u64> = list(dir.path()).into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, vec![3, 4, 5]);
        let (newest, unreadable) = Loaded::newest_readable(dir.path());
        let newest = newest.unwrap();
        assert!(unreadable.is_empty());
        assert_eq!(newest.step, 5);
        assert_eq!(newest.get("x").unwrap().double_value(&[]), 5.0);
    }

    /// `train.keep_checkpoints`: 0 keeps every one (a walkthrough could not
    /// fork a finished 1500-step run at step 300).
    #[test]
    fn keeps_as_many_as_asked_or_all() {
        for (keep, expected) in [
            (0, vec![1, 2, 3, 4, 5]),
            (1, vec![5]),
            (4, vec![2, 3, 4, 5]),
        ] {
            let dir = tempfile::tempdir().unwrap();
            for step in 1..=5 {
                let x = [("x".to_string(), Tensor::from(step as f64))];
                write(dir.path(), step, &x, super::tests::keep(keep, None)).unwrap();
            }
            let steps: Vec<u64> = list(dir.path()).into_iter().map(|(s, _)| s).collect();
            assert_eq!(steps, expected, "keep {keep}");
        }
        // The best-evaluated checkpoint (step 2) outlives the newest two.
        let dir = tempfile::tempdir().unwrap();
        for step in 1..=5 {
            let x = [("x".to_string(), Tensor::from(step as f64))];
            write(dir.path(), step, &x, keep(2, Some(2).filter(|_| step >= 2))).unwrap();
        }
        let steps: Vec<u64> = list(dir.path()).into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, vec![2, 4, 5]);
        // One asked for by hand (step 1, pinned) outlives them all.
        let dir = tempfile::tempdir().unwrap();
        for step in 1..=5 {
            let x = [("x".to_string(), Tensor::from(step as f64))];
            write(dir.path(), step, &x, keep(2, None)).unwrap();
            if step == 1 {
                pin(dir.path(), 1).unwrap();
            }
        }
        let steps: Vec<u64> = list(dir.path()).into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, vec![1, 4, 5]);
    }

    /// A best-only checkpoint takes no periodic one's slot and goes once a
    /// better one replaces it; an ordinary best stays past the newest N.
    #[test]
    fn a_best_only_checkpoint_is_kept_apart_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let x = [("x".to_string(), Tensor::from(1.0))];
        let steps = |dir: &Path| -> Vec<u64> { list(dir).into_iter().map(|(s, _)| s).collect() };
        for (step, best, best_only) in [
            (10, None, false),
            (15, Some(15), true),
            (20, Some(15), false),
            (25, Some(25), true),
            (30, Some(25), false),
        ] {
            let keep = Keep {
                best_only,
                ..keep(2, best)
            };
            write(dir.path(), step, &x, keep).unwrap();
        }
        assert_eq!(steps(dir.path()), vec![20, 25, 30]);
        assert!(!marker(dir.path(), 15, BEST_ONLY).exists());
        // An ordinary checkpoint at 40 is the best: 25 goes, and 20.
        write(dir.path(), 40, &x, keep(2, Some(40))).unwrap();
        assert_eq!(steps(dir.path()), vec![30, 40]);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 2, "no marker is left: {left:?}");
        // A marker left behind (its file set aside or deleted by hand)
        // does not make a later ordinary checkpoint of its step best-only.
        mark_best_only(dir.path(), 50).unwrap();
        write(dir.path(), 50, &x, keep(2, Some(50))).unwrap();
        write(dir.path(), 60, &x, keep(2, None)).unwrap();
        assert_eq!(steps(dir.path()), vec![50, 60]);
        // Keeping every checkpoint keeps every ordinary one; a best-only one
        // still goes when a better one replaces it.
        let all = tempfile::tempdir().unwrap();
        for (step, best_only) in [(10, false), (15, true), (20, false), (25, true)] {
            let keep = Keep {
                best_only,
                ..keep(0, Some(step))
            };
            write(all.path(), step, &x, keep).unwrap();
        }
        assert_eq!(steps(all.path()), vec![10, 20, 25]);
        // The event of either kind of write is one a fork's history ends at.
        assert!(is_checkpoint_written(&checkpoint_written(40), 40));
        assert!(is_checkpoint_written(
            &best_checkpoint_written(40, "acc", 0.5),
            40
        ));
        assert!(is_checkpoint_written(
            &periodic_best_written(40, "acc", 0.5),
            40
        ));
        assert!(!is_checkpoint_written(&checkpoint_written(400), 40));
    }

    #[test]
    fn an_os_error_in_debug_form_reads_as_the_os_says() {
        let debug =
            r#"IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })"#;
        assert_eq!(
            readable_os_error(debug),
            std::io::Error::from_raw_os_error(28).to_string()
        );
        assert_eq!(readable_os_error("shape mismatch"), "shape mismatch");
    }

    #[test]
    fn newest_readable_skips_truncated_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        for step in 1..=3 {
            write(
                dir.path(),
                step,
                &[("x".into(), Tensor::from(step as f64))],
                keep(3, None),
            )
            .unwrap();
        }
        let newest = dir.path().join(file_name(3));
        let bytes = std::fs::read(&newest).unwrap();
        std::fs::write(&newest, &bytes[..bytes.len() - 4]).unwrap();
        let (loaded, unreadable) = Loaded::newest_readable(dir.path());
        assert_eq!(loaded.unwrap().step, 2);
        assert_eq!(unreadable.len(), 1);
        assert_eq!(unreadable[0].0, newest);
        let aside = set_aside(&newest).unwrap();
        assert!(aside.exists() && !newest.exists());
        let steps: Vec<u64> = list(dir.path()).into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, vec![1, 2]);
    }
}
