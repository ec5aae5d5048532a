//! UniVL in miniature: encoders, cross encoder, caption decoder, losses.

use super::*;

/// The UniVL-style model.
pub struct Model {
    pub(super) frame_in: nn::Linear,
    pub(super) frame_pos: Tensor,
    pub(super) video_encoder: EncoderLayer,
    pub(super) video_proj: nn::Linear,
    pub(super) token_embed: nn::Embedding,
    pub(super) token_pos: Tensor,
    pub(super) text_encoder: EncoderLayer,
    pub(super) text_proj: nn::Linear,
    pub(super) modality: Tensor,
    pub(super) cross_encoder: EncoderLayer,
    pub(super) align_head: nn::Linear,
    pub(super) mlm_head: nn::Linear,
    pub(super) mfm_head: nn::Linear,
    pub(super) decoder: EncoderLayer,
    pub(super) caption_head: nn::Linear,
    pub(super) distractor_head: nn::Linear,
    pub(super) mask_frame: Tensor,
}

impl Model {
    pub(super) fn new(root: &nn::Path) -> Model {
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

    pub(super) fn video_tokens(&self, frames: &Tensor) -> Tensor {
        self.video_encoder
            .forward(&(self.frame_in.forward(frames) + &self.frame_pos), None)
    }

    pub(super) fn text_tokens(&self, tokens: &Tensor) -> Tensor {
        let n = tokens.size()[1];
        self.text_encoder.forward(
            &(self.token_embed.forward(tokens) + self.token_pos.narrow(0, 0, n)),
            None,
        )
    }

    /// L2-normalised retrieval embeddings.
    pub(super) fn embed(proj: &nn::Linear, tokens: &Tensor) -> Tensor {
        let pooled = proj.forward(&tokens.mean_dim(1, false, tokens.kind()));
        &pooled / (pooled.square().sum_dim_intlist(-1, true, pooled.kind()) + 1e-8).sqrt()
    }

    pub(super) fn cross(&self, video: &Tensor, text: &Tensor) -> Tensor {
        let joint = Tensor::cat(
            &[video + self.modality.get(0), text + self.modality.get(1)],
            1,
        );
        self.cross_encoder.forward(&joint, None)
    }

    pub(super) fn caption_logits(&self, video: &Tensor, tokens: &Tensor) -> Tensor {
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
    pub(super) fn retrieval_loss(&self, video: &Tensor, text: &Tensor) -> Tensor {
        let v = Self::embed(&self.video_proj, video);
        let t = Self::embed(&self.text_proj, text);
        let logits = t.matmul(&v.transpose(0, 1)) / TEMPERATURE;
        let target = Tensor::arange(logits.size()[0], (Kind::Int64, logits.device()));
        (cross_entropy(&logits, &target) + cross_entropy(&logits.transpose(0, 1), &target)) * 0.5
    }

    pub(super) fn losses(
        &self,
        frames: &Tensor,
        tokens: &Tensor,
        labels: &Tensor,
        mask_seed: u64,
    ) -> Losses {
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
