//! The generated clips: events, video features and captions.

use super::*;

/// Clips: frames `[N, T, D]`, caption tokens `[N, L]`, distractor labels `[N]`.
pub(super) struct Split {
    pub(super) frames: Tensor,
    pub(super) tokens: Tensor,
    pub(super) labels: Tensor,
    /// Each caption's token sum, `[N]`, kept on the host: a batch's mask
    /// seed comes from it without reading the device.
    pub(super) token_sums: Tensor,
}

impl Split {
    pub(super) fn len(&self) -> i64 {
        self.frames.size()[0]
    }

    /// The batch of rows `index` (on the split's device); `host_index`:
    /// the same rows on the host.
    pub(super) fn rows(&self, index: &Tensor, host_index: &Tensor) -> Batch {
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
pub(super) struct World {
    pub(super) objects: Tensor,
    pub(super) actions: Tensor,
    pub(super) camera: Tensor,
}

impl World {
    pub(super) fn new(seed: u64) -> World {
        tch::manual_seed(seed as i64 ^ 0x5eed);
        let opts = (Kind::Float, Device::Cpu);
        World {
            objects: Tensor::randn([OBJECTS, FEATURES], opts),
            actions: Tensor::randn([ACTIONS, FEATURES], opts) * 0.5,
            camera: Tensor::randn([FEATURES], opts) * 0.7,
        }
    }

    pub(super) fn generate(&self, domain: Domain, clips: i64, stream: u64, seed: u64) -> Split {
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

pub(super) fn to_device(split: Split, device: Device, kind: Kind) -> Split {
    Split {
        frames: split.frames.to_kind(kind).to_device(device),
        tokens: split.tokens.to_device(device),
        labels: split.labels.to_device(device),
        token_sums: split.token_sums,
    }
}
