//! The built-in video-language workload: a small UniVL-style model to
//! fine-tune, on procedurally generated clips and captions (no download).
//!
//! Data. Each clip is a sequence of events (object, action). Its video is T
//! frames of D-dimensional features (each event fills T/E frames with the
//! object's and the action's feature vectors plus noise); its caption is
//! `BOS o1 a1 o2 a2 ... EOS`. Text and video come from the same events, so
//! they can be retrieved from each other. The pretraining split draws
//! objects uniformly with mild noise; the downstream split (train and val)
//! is shifted: objects follow a skewed mixture, frames are noisier and carry
//! a fixed "camera" offset, as in real fine-tuning.
//!
//! Model (UniVL in miniature): a video encoder and a text encoder (one
//! transformer layer each, mean-pooled and projected for retrieval), a cross
//! encoder over [video; text] and a caption decoder (prefix-LM over video
//! then caption).
//!
//! Losses, named as in UniVL: `retrieval` (symmetric InfoNCE), `align`
//! (video-text matching against shuffled negatives), `mlm` (masked tokens),
//! `mfm` (masked frame features, regression), `caption` (next-token
//! cross-entropy), and `distractor`: random per-clip labels predicted from
//! the shared video encoding, harmful by construction.
//!
//! Files: [`data`] (the generated clips), [`model`] (the network and its
//! losses), [`foundation`] (the pretrained checkpoint every session starts
//! from, cached), this file (the workload the trainer drives).

mod data;
pub mod foundation;
mod model;

use data::{to_device, Split, World};
pub use foundation::{default_foundation_path, foundation_path, pretrain, PretrainingStopped};
pub use model::Model;

use super::{self as workload, Batch, Evaluation, Losses, Workload};
use crate::config::Config;
use crate::nn::cross_entropy;
use crate::nn::rng::SplitMix;
use crate::nn::transformer::{causal_mask, EncoderLayer};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// Distinct objects in the generated world.
pub const OBJECTS: i64 = 12;
/// Distinct actions in the generated world.
pub const ACTIONS: i64 = 8;
/// Events (object, action) per clip.
pub const EVENTS: i64 = 3;
/// Video frames per clip (`FRAMES / EVENTS` per event).
pub const FRAMES: i64 = 6;
/// Features per video frame.
pub const FEATURES: i64 = 32;
const BOS: i64 = 1;
const EOS: i64 = 2;
const MASK: i64 = 3;
const FIRST_WORD: i64 = 4;
/// Token vocabulary: the special tokens below `FIRST_WORD`, then one word per
/// object and one per action.
pub const VOCAB: i64 = FIRST_WORD + OBJECTS + ACTIONS;
/// Tokens per caption: BOS, an object and an action per event, EOS.
pub const CAPTION: i64 = 2 * EVENTS + 2;
const RETRIEVAL: &str = "retrieval";
/// The batch entry holding its captions' token sum (0-dim, on the host).
const TOKEN_SUM: &str = "token_sum";
const D_MODEL: i64 = 64;
const HEADS: i64 = 4;
const D_FF: i64 = 128;
const DISTRACTOR_CLASSES: i64 = 32;
const TEMPERATURE: f64 = 0.1;
const MASK_RATE: f64 = 0.15;

const PRETRAIN_CLIPS: i64 = 4096;
const TRAIN_CLIPS: i64 = 320;
const VAL_CLIPS: i64 = 256;
/// The world (object and action features) is the same for pretraining and
/// every downstream seed, as a foundation model's world would be.
const FOUNDATION_WORLD_SEED: u64 = 2023;

/// Every loss this workload produces.
pub const LOSSES: [&str; 6] = ["retrieval", "align", "mlm", "mfm", "caption", "distractor"];

/// What an evaluation reports: text-to-video recall at 1 and 5 (%), the
/// median rank of the true clip, next-token caption accuracy (%).
pub const METRICS: [&str; 4] = ["R@1", "R@5", "MedR", "caption_acc"];

/// Which split of the generated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// The foundation model's pretraining data: objects uniform, mild noise.
    Pretrain,
    /// The fine-tuning data (train and val): skewed objects, noisier frames and
    /// a fixed camera offset.
    Downstream,
}

/// The video-language workload: the generated downstream clips and the
/// UniVL-style model θ (from a foundation checkpoint with `workload.init_from`).
pub struct VideoText {
    vs: nn::VarStore,
    /// Batch row indices, a block per device copy.
    row_cache: super::RowCache,
    model: Model,
    train: Split,
    val: Split,
    batch_size: i64,
    seed: u64,
    /// The losses an evaluation reports (the config's; all when empty): the
    /// default session's eval lines carried the `distractor` loss, which
    /// its run never used (walkthrough B).
    reported: Vec<String>,
}

fn get<'a>(batch: &'a Batch, name: &str) -> Result<&'a Tensor> {
    batch
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .with_context(|| format!("batch lacks `{name}`"))
}

impl VideoText {
    /// The downstream workload; with `workload.init_from`, the backbone
    /// starts from that foundation checkpoint.
    pub fn new(
        config: &Config,
        config_dir: Option<&Path>,
        device: Device,
        kind: Kind,
    ) -> Result<Self> {
        let seed = config.workload.seed;
        let world = World::new(FOUNDATION_WORLD_SEED);
        let train = to_device(
            world.generate(Domain::Downstream, TRAIN_CLIPS, 10, seed),
            device,
            kind,
        );
        let val = to_device(
            world.generate(Domain::Downstream, VAL_CLIPS, 11, FOUNDATION_WORLD_SEED),
            device,
            kind,
        );
        let mut workload = Self::with_data(
            device,
            kind,
            seed,
            train,
            val,
            config.workload.batch_size as i64,
        );
        workload.reported = std::iter::once(&config.workload.primary)
            .chain(&config.workload.auxiliary)
            .cloned()
            .collect();
        if let Some(init) = &config.workload.init_from {
            let path = foundation_path(init, config_dir);
            if !path.exists() {
                bail!(
                    "workload.init_from: {} does not exist (create it with `meltr-tui pretrain`)",
                    path.display()
                );
            }
            workload.load_file(&path)?;
        }
        Ok(workload)
    }

    fn with_data(
        device: Device,
        kind: Kind,
        seed: u64,
        train: Split,
        val: Split,
        batch_size: i64,
    ) -> Self {
        tch::manual_seed(seed as i64 + 1);
        let mut vs = nn::VarStore::new(device);
        let model = Model::new(&vs.root());
        vs.set_kind(kind);
        VideoText {
            row_cache: Default::default(),
            vs,
            model,
            train,
            val,
            batch_size,
            seed,
            reported: Vec::new(),
        }
    }

    /// Loads backbone weights from a safetensors file (all heads included).
    pub fn load_file(&mut self, path: &Path) -> Result<()> {
        let tensors: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?
            .into_iter()
            .collect();
        // The distractor head is not part of the foundation (never pretrained).
        let current = self.vs.variables();
        let lookup = |n: &str| match tensors.get(n) {
            Some(t) => Some(t.shallow_clone()),
            None if n.starts_with("distractor_head.") => current.get(n).map(|t| t.detach().copy()),
            None => None,
        };
        crate::nn::vars::load_into(&self.vs, "", &lookup).with_context(|| {
            format!(
                "{} is not a video-text foundation checkpoint",
                path.display()
            )
        })
    }

    fn forward(&self, batch: &Batch) -> Result<Losses> {
        // Mask seed from the batch's content keeps masks identical across the
        // repeated evaluations of one batch in the meta step. The token sum
        // is a host tensor: reading it does not wait for the device.
        let token_sum = get(batch, TOKEN_SUM)?;
        debug_assert_eq!(token_sum.device(), Device::Cpu);
        let mask_seed =
            self.seed ^ (token_sum.int64_value(&[]) as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
        Ok(self.model.losses(
            get(batch, "frames")?,
            get(batch, "tokens")?,
            get(batch, "labels")?,
            mask_seed,
        ))
    }

    fn sample(&self, split: &Split, stream: u64, index: u64) -> Batch {
        let device = split.frames.device();
        let (len, size) = (split.len(), self.batch_size);
        let host = workload::batch_rows(self.seed, stream, index, len, size, Device::Cpu);
        let rows = match device {
            Device::Cpu => host.shallow_clone(),
            _ => self
                .row_cache
                .rows(self.seed, stream, index, len, size, device),
        };
        split.rows(&rows, &host)
    }
}

impl Workload for VideoText {
    fn kind(&self) -> &'static str {
        "video-text"
    }

    fn loss_names(&self) -> Vec<String> {
        LOSSES.iter().map(|s| s.to_string()).collect()
    }

    fn primary_metric(&self) -> (String, bool) {
        ("R@1".into(), true)
    }

    fn metric_names(&self) -> Vec<String> {
        METRICS.iter().map(|s| s.to_string()).collect()
    }

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn train_batch(&self, step: u64) -> Result<Batch> {
        Ok(self.sample(&self.train, 0, step))
    }

    fn val_batch(&self, index: u64) -> Result<Batch> {
        Ok(self.sample(&self.val, 1, index))
    }

    fn losses(&self, batch: &Batch) -> Result<Losses> {
        self.forward(batch)
    }

    /// The retrieval loss needs only the two single-stream encoders (no
    /// cross encoder, no decoder): about a quarter of a full forward.
    fn loss(&self, batch: &Batch, name: &str) -> Result<Tensor> {
        if name != RETRIEVAL {
            return workload::take_loss(self.losses(batch)?, name);
        }
        let m = &self.model;
        let video = m.video_tokens(get(batch, "frames")?);
        let text = m.text_tokens(get(batch, "tokens")?);
        Ok(m.retrieval_loss(&video, &text))
    }

    fn evaluate(&self) -> Result<Evaluation> {
        tch::no_grad(|| {
            let m = &self.model;
            let kind = self.val.frames.kind();
            let video = m.video_tokens(&self.val.frames);
            let text = m.text_tokens(&self.val.tokens);
            let v = Model::embed(&m.video_proj, &video);
            let t = Model::embed(&m.text_proj, &text);
            // Text-to-video: rank of the true clip among all val clips.
            let sims = t.matmul(&v.transpose(0, 1));
            let truth = sims.diagonal(0, 0, 1).unsqueeze(1);
            let ranks: Vec<i64> = Vec::try_from(
                sims.gt_tensor(&truth)
                    .sum_dim_intlist(1, false, Kind::Int64)
                    + 1,
            )?;
            let n = ranks.len() as f64;
            let at = |k: i64| ranks.iter().filter(|&&r| r <= k).count() as f64 / n * 100.0;
            let mut sorted = ranks.clone();
            sorted.sort_unstable();
            let median = sorted[sorted.len() / 2] as f64;
            let logits = m.caption_logits(&video, &self.val.tokens);
            let next = self.val.tokens.narrow(1, 1, CAPTION - 1);
            let accuracy = logits
                .argmax(-1, false)
                .eq_tensor(&next)
                .to_kind(kind)
                .mean(kind)
                .double_value(&[])
                * 100.0;
            let all = |device| Tensor::arange(self.val.len(), (Kind::Int64, device));
            let losses = self.forward(
                &self
                    .val
                    .rows(&all(self.val.frames.device()), &all(Device::Cpu)),
            )?;
            let losses = losses
                .into_iter()
                .filter(|(k, _)| self.reported.is_empty() || self.reported.contains(k))
                .map(|(k, t)| (k, t.double_value(&[])))
                .collect();
            let metrics = METRICS
                .iter()
                .map(|s| s.to_string())
                .zip([at(1), at(5), median, accuracy])
                .collect();
            Ok(Evaluation { losses, metrics })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An evaluation reports the config's losses only: the default
    /// session's eval lines carried `distractor`, a loss it never used
    /// (walkthrough B).
    #[test]
    fn an_evaluation_reports_the_configured_losses() {
        let mut config = Config::default();
        config.workload.init_from = None;
        config.workload.primary = "retrieval".into();
        config.workload.auxiliary = ["align", "mfm"].map(String::from).to_vec();
        let workload = VideoText::new(&config, None, Device::Cpu, Kind::Float).unwrap();
        let evaluation = workload.evaluate().unwrap();
        let reported: Vec<&str> = evaluation.losses.keys().map(String::as_str).collect();
        assert_eq!(reported, ["align", "mfm", "retrieval"]);
    }
}
