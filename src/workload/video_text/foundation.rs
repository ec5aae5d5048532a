//! The foundation checkpoint: pretrained once on the pretraining split,
//! cached, and loaded by every video-text session (`init_from`).

use super::*;

/// Where `workload.init_from` points: `"foundation"` is the built-in
/// foundation checkpoint in the cache; anything else is a path relative to
/// the config file.
pub fn foundation_path(init_from: &str, config_dir: Option<&Path>) -> PathBuf {
    if init_from == "foundation" {
        default_foundation_path()
    } else {
        let p = Path::new(init_from);
        match config_dir {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }
}

/// `$MELTR_CACHE` (default `~/.cache/meltr-tui`)/`foundation-video-text-v2.safetensors`.
pub fn default_foundation_path() -> PathBuf {
    cache_dir(
        std::env::var_os("MELTR_CACHE"),
        std::env::var_os("XDG_CACHE_HOME"),
        std::env::var_os("HOME"),
    )
    .join("foundation-video-text-v2.safetensors")
}

/// meltr-tui's cache folder, by the rule `scripts/setup.sh` follows:
/// `$MELTR_CACHE`, else `$XDG_CACHE_HOME/meltr-tui`, else
/// `$HOME/.cache/meltr-tui`.
fn cache_dir(
    meltr_cache: Option<std::ffi::OsString>,
    xdg_cache_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> PathBuf {
    if let Some(dir) = meltr_cache.filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let base = match xdg_cache_home.filter(|d| !d.is_empty()) {
        Some(xdg) => PathBuf::from(xdg),
        None => home
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."))
            .join(".cache"),
    };
    base.join("meltr-tui")
}

/// The foundation model's pretraining ended by a stop signal, before
/// `step` (nothing is cached: the next start pretrains again).
#[derive(Debug)]
pub struct PretrainingStopped {
    /// The pretraining step it stopped before.
    pub step: u64,
}

impl std::fmt::Display for PretrainingStopped {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "stopped during the foundation model's first pretraining (before its step {}); nothing was \
             trained or cached, and the next start pretrains again",
            self.step
        )
    }
}

impl std::error::Error for PretrainingStopped {}

/// Pretrains the backbone on the pretraining split with the summed losses
/// (distractor excluded) and writes it to `out` atomically. `progress` is
/// called every 100 steps with (step, summed loss).
pub fn pretrain(
    steps: u64,
    seed: u64,
    out: &Path,
    mut progress: impl FnMut(u64, f64),
) -> Result<()> {
    let device = Device::Cpu;
    let world = World::new(FOUNDATION_WORLD_SEED);
    let pretrain = world.generate(Domain::Pretrain, PRETRAIN_CLIPS, 1, FOUNDATION_WORLD_SEED);
    let val = world.generate(Domain::Pretrain, 64, 2, FOUNDATION_WORLD_SEED);
    let w = VideoText::with_data(device, Kind::Float, seed, pretrain, val, 64);
    let params = w.parameters();
    let mut opt = crate::nn::optim::AdamW::new(&params, 2e-3, 0.0);
    for step in 1..=steps {
        // A stop asked for (SIGTERM, Ctrl-C, `meltr-tui stop`) ends it at
        // once: it waited minutes for the pretraining's end (walkthrough F).
        if crate::process::stop_requested() {
            return Err(anyhow::Error::new(PretrainingStopped { step }));
        }
        let losses = w.forward(&w.sample(&w.train, 0, step))?;
        let total = LOSSES
            .iter()
            .filter(|n| **n != "distractor")
            .map(|n| &losses[*n])
            .fold(Tensor::from(0.0f32), |a, b| a + b);
        let mut grads = crate::nn::autograd::grad(&[&total], &params, false, false)?;
        let _ = crate::nn::optim::clip_grad_norm(&mut grads, 1.0);
        opt.step(&params, &grads);
        if step % 100 == 0 || step == steps {
            progress(step, total.double_value(&[]));
        }
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tensors: Vec<(String, Tensor)> = w
        .state()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("distractor_head."))
        .collect();
    let tmp = out.with_extension(format!("tmp-{}", std::process::id()));
    Tensor::write_safetensors(&tensors, &tmp)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, out)
        .with_context(|| format!("cannot move {} into place", out.display()))?;
    Ok(())
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    #[test]
    fn the_cache_folder_follows_setups_rule() {
        let os = |s: &str| Some(std::ffi::OsString::from(s));
        assert_eq!(cache_dir(os("/m"), os("/x"), os("/h")), PathBuf::from("/m"));
        assert_eq!(
            cache_dir(None, os("/x"), os("/h")),
            PathBuf::from("/x/meltr-tui")
        );
        assert_eq!(
            cache_dir(os(""), None, os("/h")),
            PathBuf::from("/h/.cache/meltr-tui")
        );
    }
}
