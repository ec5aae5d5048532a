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

pub const OBJECTS: i64 = 12;
pub const ACTIONS: i64 = 8;
pub const EVENTS: i64 = 3;
pub const FRAMES: i64 = 6;
pub const FEATURES: i64 = 32;
const BOS: i64 = 1;
const EOS: i64 = 2;
const MASK: i64 = 3;
const FIRST_WORD: i64 = 4;
pub const VOCAB: i64 = FIRST_WORD + OBJECTS + ACTIONS;
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

/// Every loss this workload produces.
pub const LOSSES: [&str; 6] = ["retrieval", "align", "mlm", "mfm", "caption", "distractor"];

/// Which split of the generated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    Pretrain,
    Downstream,
}

/// Clips: frames `[N, T, D]`, caption tokens `[N, L]`, distractor labels `[N]`.
struct Split {
    frames: Tensor,
    tokens: Tensor,
    labels: Tensor,
    /// Each caption's token sum, `[N]`, kept on the host: a batch's mask
    /// seed comes from it without reading the device.
    token_sums: Tensor,
}

impl Split {
    fn len(&self) -> i64 {
        self.frames.size()[0]
    }

    /// The batch of rows `index` (on the split's device); `host_index`:
    /// the same rows on the host.
    fn rows(&self, index: &Tensor, host_index: &Tensor) -> Batch {
        let token_sum = self.token_sums.index_select(0, host_index).sum(Kind::Int64);
        vec![
            ("frames".into(), self.frames.index_select(0, index)),
            ("tokens".into(), self.tokens.index_select(0, index)),
            ("labels".into(), self.labels.index_select(0, index)),
            (TOKEN_SUM.into(), token_sum),
        ]
    }
}

/// The generator of the world: feature vectors of objects and actions.
struct World {
    objects: Tensor,
    actions: Tensor,
    camera: Tensor,
}

impl World {
    fn new(seed: u64) -> World {
        tch::manual_seed(seed as i64 ^ 0x5eed);
        let opts = (Kind::Float, Device::Cpu);
        World {
            objects: Tensor::randn([OBJECTS, FEATURES], opts),
            actions: Tensor::randn([ACTIONS, FEATURES], opts) * 0.5,
            camera: Tensor::randn([FEATURES], opts) * 0.7,
        }
    }

    fn generate(&self, domain: Domain, clips: i64, stream: u64, seed: u64) -> Split {
        let mut rng = SplitMix::new(seed, stream);
        let opts = (Kind::Float, Device::Cpu);
        let mut objects = Vec::with_capacity((clips * EVENTS) as usize);
        let mut actions = Vec::with_capacity((clips * EVENTS) as usize);
        for _ in 0..clips * EVENTS {
            let object = match domain {
                Domain::Pretrain => rng.below(OBJECTS as u64) as i64,
                // Skewed: the later objects dominate downstream.
                Domain::Downstream => {
                    let a = rng.below(OBJECTS as u64) as i64;
                    let b = rng.below(OBJECTS as u64) as i64;
                    a.max(b)
                }
            };
            objects.push(object);
            actions.push(rng.below(ACTIONS as u64) as i64);
        }
        let objects = Tensor::from_slice(&objects).reshape([clips, EVENTS]);
        let actions = Tensor::from_slice(&actions).reshape([clips, EVENTS]);
        // Frame t shows event t * E / T.
        let per_event = FRAMES / EVENTS;
        let frame_objects = objects.repeat_interleave_self_int(per_event, Some(1), None::<i64>);
        let frame_actions = actions.repeat_interleave_self_int(per_event, Some(1), None::<i64>);
        let clean = self.objects.index_select(0, &frame_objects.flatten(0, -1))
            + self.actions.index_select(0, &frame_actions.flatten(0, -1));
        let clean = clean.reshape([clips, FRAMES, FEATURES]);
        tch::manual_seed((seed ^ stream.wrapping_mul(0x9E37)) as i64);
        let (noise, offset) = match domain {
            Domain::Pretrain => (1.0, Tensor::zeros([FEATURES], opts)),
            Domain::Downstream => (1.8, self.camera.shallow_clone()),
        };
        let frames = clean + Tensor::randn([clips, FRAMES, FEATURES], opts) * noise + offset;
        let words = Tensor::stack(&[&objects + FIRST_WORD, &actions + FIRST_WORD + OBJECTS], 2)
            .reshape([clips, 2 * EVENTS]);
        let tokens = Tensor::cat(
            &[
                Tensor::full([clips, 1], BOS, (Kind::Int64, Device::Cpu)),
                words,
                Tensor::full([clips, 1], EOS, (Kind::Int64, Device::Cpu)),
            ],
            1,
        );
        let labels: Vec<i64> = (0..clips)
            .map(|_| rng.below(DISTRACTOR_CLASSES as u64) as i64)
            .collect();
        Split {
            token_sums: tokens.sum_dim_intlist(1, false, Kind::Int64),
            frames,
            tokens,
            labels: Tensor::from_slice(&labels),
        }
    }
}

fn to_device(split: Split, device: Device, kind: Kind) -> Split {
    Split {
        frames: split.frames.to_kind(kind).to_device(device),
        tokens: split.tokens.to_device(device),
        labels: split.labels.to_device(device),
        token_sums: split.token_sums,
    }
}

/// The UniVL-style model.
pub struct Model {
    frame_in: nn::Linear,
    frame_pos: Tensor,
    video_encoder: EncoderLayer,
    video_proj: nn::Linear,
    token_embed: nn::Embedding,
    token_pos: Tensor,
    text_encoder: EncoderLayer,
    text_proj: nn::Linear,
    modality: Tensor,
    cross_encoder: EncoderLayer,
    align_head: nn::Linear,
    mlm_head: nn::Linear,
    mfm_head: nn::Linear,
    decoder: EncoderLayer,
    caption_head: nn::Linear,
    distractor_head: nn::Linear,
    mask_frame: Tensor,
}

impl Model {
    fn new(root: &nn::Path) -> Model {
        let lin = |name: &str, i, o| nn::linear(root / name, i, o, Default::default());
        let small = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        Model {
            frame_in: lin("frame_in", FEATURES, D_MODEL),
            frame_pos: root.var("frame_pos", &[FRAMES, D_MODEL], small),
            video_encoder: EncoderLayer::new(&(root / "video_encoder"), D_MODEL, HEADS, D_FF),
            video_proj: lin("video_proj", D_MODEL, D_MODEL),
            token_embed: nn::embedding(root / "token_embed", VOCAB, D_MODEL, Default::default()),
            token_pos: root.var("token_pos", &[CAPTION, D_MODEL], small),
            text_encoder: EncoderLayer::new(&(root / "text_encoder"), D_MODEL, HEADS, D_FF),
            text_proj: lin("text_proj", D_MODEL, D_MODEL),
            modality: root.var("modality", &[2, D_MODEL], small),
            cross_encoder: EncoderLayer::new(&(root / "cross_encoder"), D_MODEL, HEADS, D_FF),
            align_head: lin("align_head", D_MODEL, 1),
            mlm_head: lin("mlm_head", D_MODEL, VOCAB),
            mfm_head: lin("mfm_head", D_MODEL, FEATURES),
            decoder: EncoderLayer::new(&(root / "decoder"), D_MODEL, HEADS, D_FF),
            caption_head: lin("caption_head", D_MODEL, VOCAB),
            distractor_head: lin("distractor_head", D_MODEL, DISTRACTOR_CLASSES),
            mask_frame: root.var("mask_frame", &[FEATURES], small),
        }
    }

    fn video_tokens(&self, frames: &Tensor) -> Tensor {
        self.video_encoder
            .forward(&(self.frame_in.forward(frames) + &self.frame_pos), None)
    }

    fn text_tokens(&self, tokens: &Tensor) -> Tensor {
        let n = tokens.size()[1];
        self.text_encoder.forward(
            &(self.token_embed.forward(tokens) + self.token_pos.narrow(0, 0, n)),
            None,
        )
    }

    /// L2-normalised retrieval embeddings.
    fn embed(proj: &nn::Linear, tokens: &Tensor) -> Tensor {
        let pooled = proj.forward(&tokens.mean_dim(1, false, tokens.kind()));
        &pooled / (pooled.square().sum_dim_intlist(-1, true, pooled.kind()) + 1e-8).sqrt()
    }

    fn cross(&self, video: &Tensor, text: &Tensor) -> Tensor {
        let joint = Tensor::cat(
            &[video + self.modality.get(0), text + self.modality.get(1)],
            1,
        );
        self.cross_encoder.forward(&joint, None)
    }

    fn caption_logits(&self, video: &Tensor, tokens: &Tensor) -> Tensor {
        let input = tokens.narrow(1, 0, CAPTION - 1);
        let text = self.token_embed.forward(&input) + self.token_pos.narrow(0, 0, CAPTION - 1);
        let joint = Tensor::cat(&[video.shallow_clone(), text], 1);
        let n = FRAMES + CAPTION - 1;
        // Prefix-LM: video attends to video; caption to video and earlier words.
        let opts = (joint.kind(), joint.device());
        let mask = causal_mask(n, opts);
        let _ = mask.narrow(0, 0, FRAMES).narrow(1, 0, FRAMES).zero_();
        let _ = mask
            .narrow(0, FRAMES, CAPTION - 1)
            .narrow(1, 0, FRAMES)
            .zero_();
        let out = self.decoder.forward(&joint, Some(&mask));
        self.caption_head
            .forward(&out.narrow(1, FRAMES, CAPTION - 1))
    }

    /// Symmetric InfoNCE over the batch, from the encoded clips and captions.
    fn retrieval_loss(&self, video: &Tensor, text: &Tensor) -> Tensor {
        let v = Self::embed(&self.video_proj, video);
        let t = Self::embed(&self.text_proj, text);
        let logits = t.matmul(&v.transpose(0, 1)) / TEMPERATURE;
        let target = Tensor::arange(logits.size()[0], (Kind::Int64, logits.device()));
        (cross_entropy(&logits, &target) + cross_entropy(&logits.transpose(0, 1), &target)) * 0.5
    }

    fn losses(&self, frames: &Tensor, tokens: &Tensor, labels: &Tensor, mask_seed: u64) -> Losses {
        let b = frames.size()[0];
        let kind = frames.kind();
        let device = frames.device();
        let video = self.video_tokens(frames);
        let text = self.text_tokens(tokens);
        let mut out = BTreeMap::new();
        out.insert(RETRIEVAL.to_string(), self.retrieval_loss(&video, &text));

        // Video-text matching: true pairs vs captions of other clips.
        let shifted = text.roll([1], [0]);
        let pair_scores = self
            .align_head
            .forward(&self.cross(&video, &text).mean_dim(1, false, kind))
            .squeeze_dim(1);
        let neg_scores = self
            .align_head
            .forward(&self.cross(&video, &shifted).mean_dim(1, false, kind))
            .squeeze_dim(1);
        let scores = Tensor::cat(&[pair_scores, neg_scores], 0);
        let truth = Tensor::cat(
            &[
                Tensor::ones([b], (kind, device)),
                Tensor::zeros([b], (kind, device)),
            ],
            0,
        );
        out.insert(
            "align".to_string(),
            scores.binary_cross_entropy_with_logits::<Tensor>(
                &truth,
                None,
                None,
                tch::Reduction::Mean,
            ),
        );

        // Masked tokens and masked frames, one cross-encoder pass. Masks are a
        // pure function of (seed, batch) so a batch's losses are deterministic.
        let mut rng = SplitMix::new(mask_seed, 0x6d61736b);
        let token_mask: Vec<bool> = (0..b * CAPTION)
            .map(|i| {
                let position = i % CAPTION;
                position != 0
                    && position != CAPTION - 1
                    && (rng.next_u64() % 1000) < (MASK_RATE * 1000.0) as u64
            })
            .collect();
        let token_mask = Tensor::from_slice(&token_mask)
            .reshape([b, CAPTION])
            .to_device(device);
        // At least one masked word per batch keeps the loss defined.
        let _ = token_mask.get(0).get(1).fill_(1);
        let frame_mask: Vec<bool> = (0..b * FRAMES)
            .map(|_| (rng.next_u64() % 1000) < (MASK_RATE * 1000.0) as u64)
            .collect();
        let frame_mask = Tensor::from_slice(&frame_mask)
            .reshape([b, FRAMES])
            .to_device(device);
        let _ = frame_mask.get(0).get(0).fill_(1);
        let masked_tokens =
            tokens.where_self(&token_mask.logical_not(), &Tensor::full_like(tokens, MASK));
        let masked_frames = frames.where_self(
            &frame_mask.logical_not().unsqueeze(-1),
            &self.mask_frame.expand_as(frames),
        );
        let joint = self.cross(
            &self.video_tokens(&masked_frames),
            &self.text_tokens(&masked_tokens),
        );
        let text_out = joint.narrow(1, FRAMES, CAPTION);
        let mlm_logits = self.mlm_head.forward(
            &text_out
                .masked_select(&token_mask.unsqueeze(-1))
                .reshape([-1, D_MODEL]),
        );
        out.insert(
            "mlm".to_string(),
            cross_entropy(&mlm_logits, &tokens.masked_select(&token_mask)),
        );
        let video_out = joint.narrow(1, 0, FRAMES);
        let predicted = self.mfm_head.forward(
            &video_out
                .masked_select(&frame_mask.unsqueeze(-1))
                .reshape([-1, D_MODEL]),
        );
        let original = frames
            .masked_select(&frame_mask.unsqueeze(-1))
            .reshape([-1, FEATURES]);
        out.insert(
            "mfm".to_string(),
            (predicted - original).square().mean(kind),
        );

        // Captioning: next-token cross-entropy.
        let caption = self.caption_logits(&video, tokens);
        let next = tokens.narrow(1, 1, CAPTION - 1);
        out.insert(
            "caption".to_string(),
            cross_entropy(&caption.reshape([-1, VOCAB]), &next.reshape([-1])),
        );

        // The distractor: memorise random per-clip labels from the video.
        let pooled = video.mean_dim(1, false, kind);
        out.insert(
            "distractor".to_string(),
            cross_entropy(&self.distractor_head.forward(&pooled), labels),
        );
        out
    }
}

pub struct VideoText {
    vs: nn::VarStore,
    /// Batch row indices, a block per device copy.
    row_cache: super::RowCache,
    model: Model,
    train: Split,
    val: Split,
    batch_size: i64,
    seed: u64,
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
                .map(|(k, t)| (k, t.double_value(&[])))
                .collect();
            let metrics = [
                ("R@1".to_string(), at(1)),
                ("R@5".to_string(), at(5)),
                ("MedR".to_string(), median),
                ("caption_acc".to_string(), accuracy),
            ]
            .into();
            Ok(Evaluation { losses, metrics })
        })
    }
}

/// The world (object and action features) is the same for pretraining and
/// every downstream seed, as a foundation model's world would be.
const FOUNDATION_WORLD_SEED: u64 = 2023;

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
