//! A small synthetic multi-task regression with a known structure, the
//! smallest real learning problem on which a loss combiner matters.
//!
//! A teacher maps inputs x to a latent z = tanh(A x). The losses:
//! - `primary`: predict y = u·z + noise from the primary head (heavy noise:
//!   few clean bits per sample, so it overfits alone);
//! - `helpful`: the same head on labels of the same teacher from a cleaner
//!   source (y' = u·z + small noise), plus V z from a second head: both teach
//!   the shared trunk and the head what the primary task needs;
//! - `harmful`: the primary head on corrupted labels (pure noise per
//!   sample): every unit of weight on it pulls the primary head away.
//!
//! The student is a two-layer tanh trunk with two heads.

use super::{Batch, Evaluation, Losses, Workload};
use crate::config::Config;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

const INPUTS: i64 = 16;
const LATENT: i64 = 4;
const AUX_OUTPUTS: i64 = 6;
const HIDDEN: i64 = 32;
const TRAIN_SAMPLES: i64 = 256;
const VAL_SAMPLES: i64 = 512;

/// The synthetic regression (see the module docs): its data and the student
/// model θ.
pub struct Synthetic {
    vs: nn::VarStore,
    /// Batch row indices, a block per device copy.
    row_cache: super::RowCache,
    trunk: nn::Sequential,
    primary_head: nn::Linear,
    helpful_head: nn::Linear,
    train: Split,
    val: Split,
    batch_size: i64,
    seed: u64,
}

/// Inputs and the three targets, sample dimension first.
struct Split {
    x: Tensor,
    primary: Tensor,
    helpful: Tensor,
    harmful: Tensor,
}

impl Split {
    fn generate(teacher: &Teacher, samples: i64, kind: Kind, device: Device) -> Split {
        let opts = (Kind::Double, Device::Cpu);
        let x = Tensor::randn([samples, INPUTS], opts);
        let z = x.matmul(&teacher.a.transpose(0, 1)).tanh();
        let clean = z.matmul(&teacher.u);
        let primary = &clean + Tensor::randn([samples], opts) * 1.0;
        let helpful = Tensor::cat(
            &[
                (clean + Tensor::randn([samples], opts) * 0.1).unsqueeze(1),
                z.matmul(&teacher.v.transpose(0, 1))
                    + Tensor::randn([samples, AUX_OUTPUTS], opts) * 0.05,
            ],
            1,
        );
        let harmful = Tensor::randn([samples], opts) * 1.5;
        let to = |t: Tensor| t.to_kind(kind).to_device(device);
        Split {
            x: to(x),
            primary: to(primary),
            helpful: to(helpful),
            harmful: to(harmful),
        }
    }

    fn rows(&self, index: &Tensor) -> Batch {
        vec![
            ("x".into(), self.x.index_select(0, index)),
            ("primary".into(), self.primary.index_select(0, index)),
            ("helpful".into(), self.helpful.index_select(0, index)),
            ("harmful".into(), self.harmful.index_select(0, index)),
        ]
    }

    fn all(&self) -> Batch {
        let index = Tensor::arange(self.x.size()[0], (Kind::Int64, self.x.device()));
        self.rows(&index)
    }
}

struct Teacher {
    a: Tensor,
    u: Tensor,
    v: Tensor,
}

impl Synthetic {
    /// Generates the data from `workload.seed` (on the CPU in f64, the same on
    /// every device) and builds the student on `device` in `kind`.
    pub fn new(config: &Config, device: Device, kind: Kind) -> Self {
        let seed = config.workload.seed;
        // Data: fixed by the seed, generated on the CPU in f64 so it is the
        // same on every device.
        tch::manual_seed(seed as i64);
        let opts = (Kind::Double, Device::Cpu);
        let teacher = Teacher {
            a: Tensor::randn([LATENT, INPUTS], opts) * 0.7,
            u: Tensor::randn([LATENT], opts),
            v: Tensor::randn([AUX_OUTPUTS, LATENT], opts),
        };
        let train = Split::generate(&teacher, TRAIN_SAMPLES, kind, device);
        let val = Split::generate(&teacher, VAL_SAMPLES, kind, device);

        tch::manual_seed(seed as i64 + 1);
        let mut vs = nn::VarStore::new(device);
        let root = vs.root();
        let trunk = nn::seq()
            .add(nn::linear(
                &root / "trunk1",
                INPUTS,
                HIDDEN,
                Default::default(),
            ))
            .add_fn(|t| t.tanh())
            .add(nn::linear(
                &root / "trunk2",
                HIDDEN,
                HIDDEN,
                Default::default(),
            ))
            .add_fn(|t| t.tanh());
        let primary_head = nn::linear(&root / "primary_head", HIDDEN, 1, Default::default());
        let helpful_head = nn::linear(
            &root / "helpful_head",
            HIDDEN,
            AUX_OUTPUTS,
            Default::default(),
        );
        vs.set_kind(kind);
        Synthetic {
            row_cache: Default::default(),
            vs,
            trunk,
            primary_head,
            helpful_head,
            train,
            val,
            batch_size: config.workload.batch_size as i64,
            seed,
        }
    }

    fn forward(&self, batch: &Batch) -> Result<Losses> {
        let get = |name: &str| -> Result<&Tensor> {
            match batch.iter().find(|(n, _)| n == name) {
                Some((_, t)) => Ok(t),
                None => bail!("batch lacks `{name}`"),
            }
        };
        let features = self.trunk.forward(get("x")?);
        let prediction = self.primary_head.forward(&features).squeeze_dim(1);
        let kind = prediction.kind();
        let mut out = BTreeMap::new();
        out.insert(
            "primary".into(),
            (&prediction - get("primary")?).square().mean(kind),
        );
        let helpful = get("helpful")?;
        let aux_prediction = Tensor::cat(
            &[
                prediction.unsqueeze(1),
                self.helpful_head.forward(&features),
            ],
            1,
        );
        out.insert(
            "helpful".into(),
            (aux_prediction - helpful).square().mean(kind),
        );
        out.insert(
            "harmful".into(),
            (&prediction - get("harmful")?).square().mean(kind),
        );
        Ok(out)
    }

    fn sample(&self, split: &Split, stream: u64, index: u64) -> Batch {
        split.rows(&self.row_cache.rows(
            self.seed,
            stream,
            index,
            split.x.size()[0],
            self.batch_size,
            split.x.device(),
        ))
    }
}

/// The synthetic workload's losses.
pub const LOSSES: [&str; 3] = ["primary", "helpful", "harmful"];

impl Workload for Synthetic {
    fn kind(&self) -> &'static str {
        "synthetic"
    }

    fn loss_names(&self) -> Vec<String> {
        LOSSES.iter().map(|s| s.to_string()).collect()
    }

    fn primary_metric(&self) -> (String, bool) {
        ("primary_mse".into(), false)
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

    fn evaluate(&self) -> Result<Evaluation> {
        let losses = tch::no_grad(|| self.forward(&self.val.all()))?;
        let losses: BTreeMap<String, f64> = losses
            .into_iter()
            .map(|(n, t)| (n, t.double_value(&[])))
            .collect();
        let metrics = [("primary_mse".to_string(), losses["primary"])].into();
        Ok(Evaluation { losses, metrics })
    }
}
