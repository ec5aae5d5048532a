//! The one validation every way a config enters goes through: ranges,
//! relations between keys, and the limits of this machine.

use super::*;

impl Config {
    /// Checks every value's range and the relations between values. Every
    /// way a config enters (file, live file, TUI, socket, `--steps`) goes
    /// through it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Integers a config file can hold (TOML's are i64): a larger one
        // (from a command over the socket) could not be written back.
        for (key, value) in [
            ("workload.batch_size", self.workload.batch_size as u64),
            ("workload.seed", self.workload.seed),
            ("train.threads", self.train.threads as u64),
            ("train.steps", self.train.steps),
            ("train.eval_every", self.train.eval_every),
            ("train.checkpoint_every", self.train.checkpoint_every),
            ("train.log_every", self.train.log_every),
            ("train.shares_every", self.train.shares_every),
            (
                "train.collective_timeout_s",
                self.train.collective_timeout_s,
            ),
            ("meltr.meta_every", self.meltr.meta_every),
        ] {
            if value > i64::MAX as u64 {
                return Err(ConfigError::at_key(
                    key,
                    format!("expected at most {}, got {value}", i64::MAX),
                ));
            }
        }
        let w = &self.workload;
        if w.primary.is_empty() {
            return Err(ConfigError::at_key(
                "workload.primary",
                "must name the primary loss",
            ));
        }
        if w.auxiliary.iter().any(|a| a == &w.primary) {
            return Err(ConfigError::at_key(
                "workload.auxiliary",
                format!(
                    "`{}` is the primary loss; list only auxiliary losses here",
                    w.primary
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for a in &w.auxiliary {
            if !seen.insert(a) {
                return Err(ConfigError::at_key(
                    "workload.auxiliary",
                    format!("`{a}` is listed twice"),
                ));
            }
        }
        count_from_one("workload.batch_size", w.batch_size as i128)?;
        if let Some(rows) = w.eval_batch_size {
            count_from_one("workload.eval_batch_size", rows as i128)?;
        }
        if w.kind == WorkloadKind::TorchScript {
            for (key, value) in [
                ("workload.model", &w.model),
                ("workload.train", &w.train),
                ("workload.val", &w.val),
            ] {
                if value.is_none() {
                    return Err(ConfigError::at_key(key, "required when workload.kind = \"torchscript\" (a path relative to the config file)"));
                }
            }
        }

        if self.train.trace && w.kind != WorkloadKind::TorchScript {
            return Err(ConfigError::at_key(
                "train.trace",
                "the trace replays batches as rows of stored data: it needs workload.kind = \"torchscript\"",
            ));
        }

        if w.init_from.is_some() && w.kind != WorkloadKind::VideoText {
            return Err(ConfigError::at_key(
                "workload.init_from",
                "only the video-text workload starts from a foundation checkpoint",
            ));
        }

        let t = &self.train;
        if !(t.device == "auto"
            || t.device == "cpu"
            || t.device == "cuda"
            || parse_cuda_index(&t.device).is_some())
        {
            return Err(ConfigError::at_key(
                "train.device",
                format!(
                    "expected \"auto\", \"cpu\", \"cuda\" or \"cuda:N\", got \"{}\"",
                    t.device
                ),
            ));
        }
        let most = max_threads();
        if !(1..=most).contains(&t.threads) {
            return Err(ConfigError::at_key(
                "train.threads",
                format!(
                    "expected a whole number from 1 to {most} (4 per core this machine has), got {}",
                    t.threads
                ),
            ));
        }
        count_from_one("train.steps", t.steps as i128)?;
        positive("train.lr", t.lr)?;
        non_negative("train.weight_decay", t.weight_decay)?;
        positive("train.grad_clip", t.grad_clip)?;
        count_from_one("train.eval_every", t.eval_every as i128)?;
        count_from_one("train.checkpoint_every", t.checkpoint_every as i128)?;
        count_from_one("train.log_every", t.log_every as i128)?;
        count_from_one("train.shares_every", t.shares_every as i128)?;
        if !(1..=MAX_COLLECTIVE_TIMEOUT_S).contains(&t.collective_timeout_s) {
            return Err(ConfigError::at_key(
                "train.collective_timeout_s",
                format!(
                    "expected 1 to {MAX_COLLECTIVE_TIMEOUT_S} seconds (a day at most), got {}",
                    t.collective_timeout_s
                ),
            ));
        }
        if !(0.0..=MAX_BUCKET_MB).contains(&t.bucket_mb) {
            return Err(ConfigError::at_key(
                "train.bucket_mb",
                format!(
                    "expected 0 (one all-reduce after the backward) to {MAX_BUCKET_MB} MiB, got {}",
                    t.bucket_mb
                ),
            ));
        }

        let c = &self.combiner;
        for (name, weight) in &c.weights {
            let key = format!("combiner.weights.{name}");
            if !weight.is_finite() {
                return Err(ConfigError::at_key(&key, "must be a finite number"));
            }
            if name != &w.primary && !w.auxiliary.contains(name) {
                return Err(ConfigError::at_key(
                    &key,
                    format!("`{name}` is neither the primary loss nor an auxiliary one"),
                ));
            }
        }
        // A loss left out took weight 0 without a word (walkthrough M
        // expected 1, or an error): each loss says its weight.
        let names = self.loss_names();
        if c.kind == CombinerKind::Weights && c.weights.is_empty() {
            let ones: Vec<String> = names.iter().map(|n| format!("{n} = 1.0")).collect();
            return Err(ConfigError::at_key(
                "combiner.weights",
                format!(
                    "combiner.kind = \"weights\" needs a table of fixed weights, one for every loss \
                     (0 leaves a loss out), e.g. {{ {} }}",
                    ones.join(", ")
                ),
            ));
        }
        let unweighted: Vec<&String> = names
            .iter()
            .filter(|n| !c.weights.contains_key(*n))
            .collect();
        if c.kind == CombinerKind::Weights && !unweighted.is_empty() {
            let table: Vec<String> = names
                .iter()
                .map(|n| {
                    format!(
                        "{n} = {}",
                        c.weights.get(n).map_or("0.0".into(), |w| format!("{w:?}"))
                    )
                })
                .collect();
            return Err(ConfigError::at_key(
                "combiner.weights",
                format!(
                    "combiner.kind = \"weights\" needs a weight for every loss, and {} {} none; \
                     0 leaves a loss out of the combined loss, e.g. {{ {} }}",
                    unweighted
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if unweighted.len() == 1 { "has" } else { "have" },
                    table.join(", ")
                ),
            ));
        }

        let m = &self.meltr;
        count_from_one("meltr.d_model", m.d_model as i128)?;
        count_from_one("meltr.d_hidden", m.d_hidden as i128)?;
        count_from_one("meltr.d_ff", m.d_ff as i128)?;
        count_from_one("meltr.heads", m.heads as i128)?;
        // A size libtorch cannot allocate panicked in tch's VarStore, with a
        // backtrace (a walkthrough's d_model = 4000000).
        for (key, value, max) in [
            ("meltr.d_model", m.d_model, MAX_WIDTH),
            ("meltr.d_hidden", m.d_hidden, MAX_WIDTH),
            ("meltr.d_ff", m.d_ff, 4 * MAX_WIDTH),
        ] {
            if value > max {
                return Err(ConfigError::at_key(
                    key,
                    format!(
                        "expected at most {max} (MELTR is a small transformer over the K loss \
                         values: d_model 256, d_hidden 128, d_ff 512 by default), got {value}"
                    ),
                ));
            }
        }
        if m.d_model % m.heads != 0 {
            return Err(ConfigError::at_key(
                "meltr.heads",
                format!("must divide meltr.d_model ({}), got {}", m.d_model, m.heads),
            ));
        }
        positive("meltr.meta_lr", m.meta_lr)?;
        non_negative("meltr.meta_weight_decay", m.meta_weight_decay)?;
        count_from_one("meltr.meta_every", m.meta_every as i128)?;
        positive("meltr.meta_grad_clip", m.meta_grad_clip)?;
        non_negative("meltr.gamma", m.gamma)?;
        if !(m.max_loss_ratio.is_finite() && m.max_loss_ratio >= 1.0) {
            return Err(ConfigError::at_key(
                "meltr.max_loss_ratio",
                format!("expected a number >= 1, got {}", m.max_loss_ratio),
            ));
        }

        let a = &self.aid;
        if a.iterations > 100 {
            return Err(ConfigError::at_key(
                "aid.iterations",
                format!("expected 0 to 100, got {}", a.iterations),
            ));
        }
        if !(a.alpha > 0.0 && a.alpha <= 1.0) {
            return Err(ConfigError::at_key(
                "aid.alpha",
                format!("expected 0 < alpha <= 1, got {}", a.alpha),
            ));
        }
        if !(a.max_growth.is_finite() && a.max_growth >= 1.0) {
            return Err(ConfigError::at_key(
                "aid.max_growth",
                format!("expected a number >= 1, got {}", a.max_growth),
            ));
        }
        Ok(())
    }
}

/// The largest `train.bucket_mb`, in MiB (a bucket as large as a big model).
const MAX_BUCKET_MB: f64 = 4096.0;

/// The longest `train.collective_timeout_s`: a day (a rank that hangs
/// longer is not coming back).
pub const MAX_COLLECTIVE_TIMEOUT_S: u64 = 24 * 3600;

/// The most `train.threads` a config may ask for: 4 per core of this
/// machine (more only contend; thousands stall the first step for minutes).
pub fn max_threads() -> usize {
    4 * std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `cuda:N` -> N.
pub fn parse_cuda_index(device: &str) -> Option<usize> {
    device.strip_prefix("cuda:").and_then(|n| n.parse().ok())
}

fn positive(key: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(ConfigError::at_key(
            key,
            format!("expected a finite number > 0, got {value}"),
        ))
    }
}

fn non_negative(key: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::at_key(
            key,
            format!("expected a finite number >= 0, got {value}"),
        ))
    }
}

/// MELTR's widest layer allowed (`d_ff`: four times this).
const MAX_WIDTH: i64 = 8192;

/// The counts that start at 1 (a batch of no rows, a run of no steps):
/// their type error says so too ("≥ 1" for -5 as for 0, not the type's
/// "≥ 0"; walkthroughs I and J).
pub(super) const COUNTS_FROM_ONE: [&str; 12] = [
    "workload.batch_size",
    "workload.eval_batch_size",
    "train.steps",
    "train.eval_every",
    "train.checkpoint_every",
    "train.log_every",
    "train.shares_every",
    "meltr.d_model",
    "meltr.d_hidden",
    "meltr.d_ff",
    "meltr.heads",
    "meltr.meta_every",
];

/// The wording of a whole number's range, for `key` (a negative value's
/// type error says the range its validation would: review).
pub(super) fn whole_number_range(key: Option<&str>) -> String {
    match key {
        Some("train.threads") => format!(
            "a whole number from 1 to {} (4 per core this machine has)",
            max_threads()
        ),
        Some("train.collective_timeout_s") => {
            format!("a whole number of seconds from 1 to {MAX_COLLECTIVE_TIMEOUT_S}")
        }
        Some(key) if COUNTS_FROM_ONE.contains(&key) => "a whole number ≥ 1".to_string(),
        _ => "a whole number ≥ 0".to_string(),
    }
}

fn count_from_one(key: &str, value: i128) -> Result<(), ConfigError> {
    debug_assert!(COUNTS_FROM_ONE.contains(&key), "{key}");
    if value >= 1 {
        return Ok(());
    }
    Err(ConfigError::at_key(
        key,
        format!("expected {}, got {value}", whole_number_range(Some(key))),
    ))
}
