//! Every config key that picks one of a few named options, as an enum:
//! serde reads and writes the names (an unknown one is an error naming
//! the key and the allowed names), and code matches on variants, so the
//! list of options lives here and nowhere else.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Declares a config choice: the enum, its TOML names, `ALL` and `as_str`.
macro_rules! choice {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every option, in the order the docs list them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name a config file uses.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            /// From the name a config file uses; the error lists the names.
            fn from_str(text: &str) -> Result<Self, String> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == text)
                    .ok_or_else(|| {
                        let names: Vec<&str> = $name::ALL.iter().map(|v| v.as_str()).collect();
                        crate::config::text::expected_one_of(&names, text)
                    })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(self.as_str())
            }
        }
    };
}

choice! {
    /// `workload.kind`.
    WorkloadKind {
        /// A small synthetic multi-task problem (seconds on a CPU).
        Synthetic = "synthetic",
        /// The built-in UniVL-style video-language model.
        VideoText = "video-text",
        /// The user's own TorchScript module.
        TorchScript = "torchscript",
    }
}

choice! {
    /// `workload.metric_goal`: which way the primary metric improves.
    MetricGoal {
        /// Higher is better (accuracy, recall, R²).
        Max = "max",
        /// Lower is better (an error, a distance, a loss).
        Min = "min",
    }
}

choice! {
    /// `train.dtype`.
    Dtype {
        F32 = "f32",
        F64 = "f64",
    }
}

choice! {
    /// `train.lr_schedule`.
    LrSchedule {
        Constant = "constant",
        /// From `lr` at step 1 down to 0 at `steps`.
        Cosine = "cosine",
    }
}

choice! {
    /// `combiner.kind`.
    CombinerKind {
        Primary = "primary",
        Sum = "sum",
        /// Fixed weights from `combiner.weights`.
        Weights = "weights",
        /// Kendall et al.'s learned homoscedastic uncertainty weights.
        Uncertainty = "uncertainty",
        /// A small MLP over the losses, meta-trained like MELTR.
        Mlp = "mlp",
        Meltr = "meltr",
    }
}

impl CombinerKind {
    /// Whether meta steps train it (it reads `meltr.*` and `aid.*`).
    pub fn meta_trained(self) -> bool {
        matches!(self, CombinerKind::Mlp | CombinerKind::Meltr)
    }
}

choice! {
    /// `meltr.val_source`: where the meta step's validation batch comes from.
    ValSource {
        /// A random pick among the recent training batches.
        Recent = "recent",
        /// The workload's held-out split (its forward in training mode:
        /// BatchNorm's running statistics then see the evaluation rows).
        Val = "val",
        /// The meta step's training batch itself: its primary loss from the
        /// same forward (a forward and a backward fewer; each auxiliary is
        /// then judged against the primary on the same rows).
        TrainingBatch = "train-batch",
    }
}

choice! {
    /// `meltr.train_batch`: the meta step's training batch.
    TrainBatch {
        /// A random pick among the recent batches (the public code).
        Recent = "recent",
        /// This step's batch, before its update, reusing its forward.
        Current = "current",
    }
}

choice! {
    /// `meltr.init`.
    MeltrInit {
        /// PyTorch's default initialisation (the public code).
        Pytorch = "pytorch",
        /// tch's default initialisation.
        Random = "random",
        /// `pytorch`, then fitted to the `sum` combiner.
        Sum = "sum",
        /// `pytorch`, then fitted to the `primary` combiner.
        Primary = "primary",
        /// `pytorch` with a zero head, and `Σl` added to the output: MELTR
        /// starts as the `sum` combiner and learns a correction to it.
        Residual = "residual",
    }
}

choice! {
    /// `meltr.meta_optimizer`.
    MetaOptimizer {
        /// torch.optim.Adam, L2 added to the gradient (the public code).
        Adam = "adam",
        /// Decoupled weight decay.
        AdamW = "adamw",
    }
}

choice! {
    /// `meltr.pool`: the batches a meta step draws from.
    Pool {
        /// The 10 batches before the current one (the public code).
        Previous = "previous",
        /// The last 10 including the current one.
        WithCurrent = "with-current",
    }
}

choice! {
    /// `meltr.first_meta`: where the meta steps fall.
    FirstMeta {
        /// Steps `meta_every`, `2·meta_every`, … (the first one finds a
        /// pool of `meta_every − 1` batches before it).
        AtMetaEvery = "at-meta-every",
        /// Steps 1, `1 + meta_every`, … (the public code: its 0-based step
        /// counter is a multiple of `meta_every`; the first meta step draws
        /// step 1's own batch, the pool being empty).
        AtStepOne = "at-step-1",
    }
}

choice! {
    /// `meltr.loss_scale`: the scale MELTR reads each loss at.
    LossScale {
        /// The loss values as the model returns them (the public code).
        Raw = "raw",
        /// Each loss times |l_primary| / |l_k| on the first training batch.
        Primary = "primary",
        /// A loss more than `meltr.max_loss_ratio` times the primary's on
        /// the first training batch read at that ratio; the rest raw.
        Capped = "capped",
    }
}

choice! {
    /// `meltr.on_collapse`: what a detected collapse does.
    OnCollapse {
        /// An event.
        Warn = "warn",
        /// Also puts φ and its optimizer back to the last healthy meta step.
        Restore = "restore",
    }
}

choice! {
    /// `aid.mode`: how the hypergradient's second-order terms are taken.
    AidMode {
        /// Double backward through the model's gradient (needs second
        /// derivatives of every op).
        Exact = "exact",
        /// Jacobian-vector products of the model's losses; first
        /// derivatives only.
        Factorized = "factorized",
    }
}

choice! {
    /// `aid.jvp`: the factorized mode's Jacobian-vector products.
    JvpMethod {
        /// Forward-mode AD; for ops without forward derivatives the
        /// Hessian-vector products fall back to double backward, then the
        /// same with the fused kernels off (attention, oneDNN, cuDNN), then
        /// (ops without second derivatives on any path) finite differences;
        /// the loss JVP to forward mode with them off, then one backward
        /// pass per loss.
        Auto = "auto",
        Forward = "forward",
        /// Central differences: two forwards per product.
        Differences = "differences",
        /// The loss JVP by a one-sided difference from the training
        /// forward's own losses, `(l(θ+εp) − l(θ))/ε`: one forward (error
        /// O(ε), ε ≈ √ machine epsilon; the shifted forward starts from the
        /// buffers the first one left, exact for BatchNorm); the
        /// Hessian-vector products by central differences.
        OneSided = "one-sided",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_toml() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Holder {
            pool: Pool,
        }
        for &pool in Pool::ALL {
            let text = toml::to_string(&Holder { pool }).unwrap();
            assert_eq!(text.trim(), format!("pool = \"{pool}\""));
            assert_eq!(toml::from_str::<Holder>(&text).unwrap(), Holder { pool });
        }
        assert_eq!("with-current".parse::<Pool>(), Ok(Pool::WithCurrent));
        // Display honours width, as a &str would (tables line up).
        assert_eq!(format!("{:<10}|", Pool::Previous), "previous  |");
        assert_eq!(
            "newest".parse::<Pool>(),
            Err("expected one of \"previous\", \"with-current\", got \"newest\"".into())
        );
        let error = toml::from_str::<Holder>("pool = \"newest\"").unwrap_err();
        assert!(
            error.message().contains("previous") && error.message().contains("with-current"),
            "{error}"
        );
    }
}
