//! The run configuration: TOML schema, defaults, validation with precise
//! errors (file, line, key, what was expected), and the live-vs-restart diff
//! used when a config is edited while a run goes on.
//!
//! Long: the schema's structs, each field with its doc and default, read
//! as one reference; parsing, validation and edits live in the submodules.
//!
//! Everything here is plain data; no tensors, no terminal.

pub mod choices;
pub mod edit;
mod error;
mod overrides;
mod restart;
mod schedule;
mod text;
mod validate;
pub mod watch;

pub use error::ConfigError;
pub use overrides::{anchor_path, literal, refuse_restart_only, write_overrides, Override};
pub use restart::{changed_values, restart_only_reason, Change, RESTART_ONLY};
use text::line_of_offset;
pub use text::{
    decode_text, edit_distance, locate_key, name_meant, nearest_spelling, read_text, sets_no_keys,
};
pub use validate::{max_threads, parse_cuda_index, MAX_COLLECTIVE_TIMEOUT_S};

pub use choices::{
    AidMode, CombinerKind, Dtype, FirstMeta, JvpMethod, LossScale, LrSchedule, MeltrInit,
    MetaOptimizer, MetricGoal, OnCollapse, Pool, TrainBatch, ValSource, WorkloadKind,
};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A whole run configuration, one struct per TOML section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub workload: WorkloadConfig,
    pub train: TrainConfig,
    pub combiner: CombinerConfig,
    pub meltr: MeltrConfig,
    pub aid: AidConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadConfig {
    pub kind: WorkloadKind,
    pub primary: String,
    pub auxiliary: Vec<String>,
    pub batch_size: usize,
    pub seed: u64,
    /// TorchScript module (relative to the config file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Training data, safetensors (relative to the config file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train: Option<String>,
    /// Validation data, safetensors (relative to the config file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val: Option<String>,
    /// video-text: start from a foundation checkpoint: `"foundation"` (the
    /// built-in one, pretrained on first use and cached) or a path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_from: Option<String>,
    /// The evaluation metric that the header, `ls`, `table`, `compare` and
    /// the figures go by (a name the workload reports, without `metric/`).
    /// Unset: the workload's own choice (a TorchScript model's first metric).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// Whether that metric is better higher (`max`) or lower (`min`). Unset:
    /// from its name (lower for losses, errors, ranks, mse, mae, nll, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric_goal: Option<MetricGoal>,
    /// Rows per evaluation batch (TorchScript workloads). Unset:
    /// `batch_size`. Metrics are row-weighted means of per-batch values,
    /// so one that is no mean (R², macro-F1) is exact only when one batch
    /// holds the whole validation split: set this to its row count or more.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval_batch_size: Option<usize>,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            kind: WorkloadKind::Synthetic,
            primary: "primary".into(),
            auxiliary: vec!["helpful".into(), "harmful".into()],
            batch_size: 32,
            seed: 0,
            model: None,
            train: None,
            val: None,
            init_from: None,
            metric: None,
            metric_goal: None,
            eval_batch_size: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// `auto` | `cpu` | `cuda` | `cuda:N`.
    pub device: String,
    pub dtype: Dtype,
    /// CPU threads for libtorch's ops. Small models are fastest on 1 (more
    /// threads only contend); raise it for large models trained on the CPU.
    pub threads: usize,
    pub steps: u64,
    pub lr: f64,
    pub lr_schedule: LrSchedule,
    pub weight_decay: f64,
    pub grad_clip: f64,
    pub eval_every: u64,
    pub checkpoint_every: u64,
    /// How many checkpoints a run keeps, the newest (0: every one), and
    /// the best-evaluated one besides (`export --best`). Older ones are
    /// deleted as new ones land; forks start only from kept ones.
    pub keep_checkpoints: usize,
    /// A checkpoint also at each evaluation that scores the best primary
    /// metric so far (one at a time, apart from `keep_checkpoints`), so
    /// that `export --best` has the best model even between periodic
    /// checkpoints. On by default; set it to false for models whose
    /// checkpoints are costly to write.
    pub checkpoint_best: bool,
    pub log_every: u64,
    /// Each loss's share of the combined gradient costs a second backward
    /// pass; it is computed at the logged step that reaches each multiple
    /// of this many steps (every logged step when it is at most
    /// `log_every`). Losses and effective weights are logged every
    /// `log_every` steps regardless.
    pub shares_every: u64,
    /// Writes `trace/` in the session folder (initial θ and φ, each step's
    /// batch rows and meta-step picks, the state after every step) for
    /// `scripts/meltr_replay.py trace`, the step-for-step parity check
    /// against PyTorch. TorchScript workloads; large: for short runs.
    pub trace: bool,
    /// Data-parallel runs (several ranks): seconds a rank waits for the
    /// others, at the rendezvous and at every collective, before the run
    /// fails with the step and the reason (a rank that died or hangs).
    /// Restart-only: the process group is made with it.
    pub collective_timeout_s: u64,
    /// Data-parallel runs: θ's gradients are averaged in buckets of at
    /// most this many MiB, each all-reduced while the backward computes the
    /// rest; 0 averages them in one all-reduce after the backward.
    /// Restart-only: the buckets are laid out when the ranks join.
    pub bucket_mb: f64,
}

impl TrainConfig {
    /// Whether the logged step `step` computes gradient shares: a multiple
    /// of `shares_every` lies within the `log_every` steps it ends.
    pub fn shares_at(&self, step: u64) -> bool {
        let every = self.shares_every.max(1);
        step / every > step.saturating_sub(self.log_every) / every
    }

    /// `collective_timeout_s` as a duration.
    pub fn collective_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.collective_timeout_s)
    }

    /// The inner learning rate at `step` (1-based) under `lr_schedule`.
    pub fn lr_at(&self, step: u64) -> f64 {
        match self.lr_schedule {
            LrSchedule::Cosine => {
                let progress = (step.saturating_sub(1) as f64 / self.steps.max(1) as f64).min(1.0);
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            LrSchedule::Constant => self.lr,
        }
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            device: "auto".into(),
            dtype: Dtype::F32,
            threads: 1,
            steps: 600,
            lr: 1e-3,
            lr_schedule: LrSchedule::Constant,
            weight_decay: 0.0,
            grad_clip: 1.0,
            eval_every: 50,
            checkpoint_every: 200,
            keep_checkpoints: 3,
            checkpoint_best: true,
            log_every: 10,
            shares_every: 50,
            trace: false,
            collective_timeout_s: 300,
            bucket_mb: 25.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CombinerConfig {
    pub kind: CombinerKind,
    /// Fixed weights for `kind = "weights"`, one for every loss (0 leaves a
    /// loss out of the combined loss).
    pub weights: BTreeMap<String, f64>,
}

impl Default for CombinerConfig {
    fn default() -> Self {
        Self {
            kind: CombinerKind::Meltr,
            weights: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeltrConfig {
    pub d_model: i64,
    pub d_hidden: i64,
    pub d_ff: i64,
    pub heads: i64,
    pub meta_lr: f64,
    pub meta_weight_decay: f64,
    pub meta_every: u64,
    /// Where the meta steps fall (see [`FirstMeta`]).
    pub first_meta: FirstMeta,
    pub meta_grad_clip: f64,
    pub gamma: f64,
    /// `recent` (random pick among the last 10 training batches) | `val`.
    pub val_source: ValSource,
    /// The meta step's training batch: `recent` (random pick among the
    /// last 10, as the public code) | `current` (this step's batch, before
    /// its update, reusing the inner step's forward: one forward fewer per
    /// meta step).
    pub train_batch: TrainBatch,
    /// `pytorch` (the public code: PyTorch's default initialisation of
    /// nn.Linear, nn.Embedding and nn.TransformerEncoderLayer) | `random`
    /// (tch's default initialisation, about 2.45x wider, random biases) |
    /// `sum` | `primary`: from the `pytorch` init, fit MELTR to that linear
    /// combiner around the first batch's losses, so the run starts with known
    /// effective weights (all 1, or 1 on the primary and 0 elsewhere) |
    /// `residual`: MELTR's output becomes `Σl` plus the network's, whose
    /// head starts at zero, so the run starts exactly as `sum` (of the losses
    /// as `loss_scale` reads them) and learns a correction to it (on the auxiliary-learning suite: no collapse in 60
    /// runs, but below the public code's spread on `many-aux`; README).
    pub init: MeltrInit,
    /// The γ term's direct gradient `γ·∂|Σl − M(l)|/∂φ`. The public code
    /// drops it (φ's gradients are overwritten by the implicit term, so γ
    /// reaches φ only through `∇_θ L_pri`); adding it makes MELTR collapse
    /// on a held-out task (issue 15).
    pub gamma_direct: bool,
    /// The meta optimizer: `adam` (torch.optim.Adam, L2 added to the
    /// gradient: the public code) | `adamw` (decoupled weight decay).
    pub meta_optimizer: MetaOptimizer,
    /// The batches the meta step draws from: `previous` (the 10 batches
    /// before the current one, as the public code) | `with-current` (the
    /// last 10 including the current one).
    pub pool: Pool,
    /// What a detected collapse (see `engine::collapse`) does: `restore`
    /// (put φ and its optimizer back to the newest healthy meta step and
    /// halve the meta-learning rate; the default, a departure from the
    /// public code measured on the auxiliary-learning suite) | `warn` (an
    /// event only, as the public code, which has no watch).
    pub on_collapse: OnCollapse,
    /// The scale MELTR reads the losses at, from their values on the first
    /// training batch: `raw` (as the model returns them: the public code) |
    /// `capped` (a loss more than `max_loss_ratio` times the primary's is
    /// read at that ratio, the rest raw) | `primary` (every loss read at
    /// the primary's size, `l_k·|l_primary|/|l_k|`). The factors apply to
    /// MELTR's input and to the γ term's `Σl` (and the `Σl` that
    /// `init = "residual"` adds); the effective weights stay weights on the
    /// raw losses. Fixed for a run: checkpoints keep the factors.
    pub loss_scale: LossScale,
    /// `loss_scale = "capped"`'s bound on a loss's ratio to the primary.
    pub max_loss_ratio: f64,
}

impl Default for MeltrConfig {
    fn default() -> Self {
        // The public MELTR code's sizes.
        Self {
            d_model: 256,
            d_hidden: 128,
            d_ff: 512,
            heads: 8,
            meta_lr: 1e-3,
            meta_weight_decay: 3e-5,
            meta_every: 3,
            first_meta: FirstMeta::AtMetaEvery,
            meta_grad_clip: 50.0,
            gamma: 0.1,
            val_source: ValSource::Recent,
            train_batch: TrainBatch::Recent,
            init: MeltrInit::Pytorch,
            gamma_direct: false,
            meta_optimizer: MetaOptimizer::Adam,
            pool: Pool::Previous,
            on_collapse: OnCollapse::Restore,
            loss_scale: LossScale::Capped,
            max_loss_ratio: 50.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AidConfig {
    /// Neumann iterations J; 0 is the identity approximation of H^-1.
    pub iterations: u32,
    /// Neumann step size α.
    pub alpha: f64,
    /// `factorized` | `exact`.
    pub mode: AidMode,
    /// Factorized mode's Jacobian-vector products: `auto` (forward-mode AD;
    /// for ops without forward derivatives double backward, then finite
    /// differences) | `forward` | `differences`.
    pub jvp: JvpMethod,
    /// The Neumann series is dropped for its first term (and says so) when
    /// a term's norm grows past this multiple of the first's. At 1 (the
    /// default) any growth does: with α·H's eigenvalues in (0, 2) (H is
    /// symmetric) every term is shorter than the one before, so growth
    /// means one outside, where the terms alternate in sign as they grow
    /// (walkthroughs Q1 and Q3: at J = 1 a growth of 3.8 per term, under
    /// the former 10, flipped p along it unsaid).
    pub max_growth: f64,
}

impl Default for AidConfig {
    fn default() -> Self {
        Self {
            iterations: 0,
            alpha: 0.1,
            mode: AidMode::Factorized,
            jvp: JvpMethod::Auto,
            max_growth: 1.0,
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file. Relative paths inside stay
    /// as written; resolve them with [`Config::resolve_path`].
    ///
    /// A file that sets no key (empty, or only comments) is refused: a run
    /// from it would silently be all built-in defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_text(path)?;
        let located = |mut e: ConfigError| {
            e.file = Some(path.to_path_buf());
            e
        };
        if sets_no_keys(&text) {
            return Err(located(ConfigError {
                file: None,
                line: None,
                key: None,
                message:
                    "sets no keys (the file is empty or holds only comments), so a run would be \
                          all built-in defaults; start from a complete config, e.g. \
                          `cp configs/default.toml my.toml`, and edit that"
                        .into(),
            }));
        }
        Config::parse(&text).map_err(located)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse_first_problem(text)
            .map_err(|e| error::with_further_problems(e, text, Config::parse_first_problem))
    }

    /// [`Config::parse`], stopping at the first problem.
    fn parse_first_problem(text: &str) -> Result<Config, ConfigError> {
        let config = Config::deserialize_located(text)?;
        config.validate_in(text)?;
        Ok(config)
    }

    /// Parses a live edit of a running session's config: the keys the file
    /// sets replace those of `base` (the config in force); keys it leaves
    /// out keep their values in `base`, never a built-in default. A value is
    /// replaced whole (`combiner.weights` too). Then the result is validated
    /// like any config; errors name the file's line and key.
    pub fn parse_over(base: &Config, text: &str) -> Result<Config, ConfigError> {
        let over = |text: &str| Config::parse_over_first_problem(base, text);
        over(text).map_err(|e| error::with_further_problems(e, text, over))
    }

    /// [`Config::parse_over`], stopping at the first problem.
    fn parse_over_first_problem(base: &Config, text: &str) -> Result<Config, ConfigError> {
        // Syntax, unknown keys and types, located in the file itself.
        Config::deserialize_located(text)?;
        let file: toml::Table = toml::from_str(text).map_err(|e| ConfigError {
            file: None,
            line: e.span().map(|s| line_of_offset(text, s.start)),
            key: None,
            message: e.message().trim().to_string(),
        })?;
        let mut merged = toml::Value::try_from(base).map_err(|e| ConfigError {
            file: None,
            line: None,
            key: None,
            message: format!("the config in force cannot be written as TOML: {e}"),
        })?;
        let root = merged.as_table_mut().expect("a Config is a table");
        for (section, value) in file {
            match (root.get_mut(&section), value) {
                (Some(toml::Value::Table(into)), toml::Value::Table(from)) => into.extend(from),
                (_, value) => {
                    root.insert(section, value);
                }
            }
        }
        let text_of_merged = toml::to_string(&merged).expect("a toml::Value always serialises");
        let config = Config::deserialize_located(&text_of_merged).map_err(|mut e| {
            e.line = e.key.as_deref().and_then(|k| locate_key(text, k));
            e
        })?;
        config.validate_in(text)?;
        Ok(config)
    }

    /// [`Config::validate`], with the error's line found in `text` (the
    /// file the user wrote).
    fn validate_in(&self, text: &str) -> Result<(), ConfigError> {
        self.validate().map_err(|mut e| {
            e.line = e.key.as_deref().and_then(|k| locate_key(text, k));
            e
        })
    }

    /// Deserialises TOML text (no range checks); errors carry the line and
    /// dotted key.
    fn deserialize_located(text: &str) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let line = inner.span().map(|s| line_of_offset(text, s.start));
            let key = (path != "." && !path.is_empty()).then_some(path);
            let line = line.or_else(|| key.as_deref().and_then(|k| locate_key(text, k)));
            let mut message = inner.message().trim().to_string();
            // Syntax errors only: a top-level unknown key (no key path
            // either) keeps serde's message, which its hint reads.
            let semantic = [
                "unknown field",
                "invalid type",
                "invalid value",
                "missing field",
            ]
            .iter()
            .any(|start| message.starts_with(start));
            if let (None, Some(span), false) = (&key, inner.span(), semantic) {
                message.push_str(&text::syntax_context(text, span.start));
                if let Some(first) = text::first_definition(text, &message, span.start) {
                    message.push_str(&format!("; it first appears on line {first}"));
                }
                if let Some((opened, key)) = text::unclosed_array(text, span.start) {
                    message.push_str(&format!(
                        "; the array of `{key}` opened on line {opened} has no closing `]`"
                    ));
                    return ConfigError {
                        file: None,
                        line: Some(opened),
                        key: Some(key),
                        message,
                    };
                }
            }
            ConfigError {
                file: None,
                line,
                key,
                message,
            }
        })?;
        Ok(config)
    }

    /// All losses in the order the engine stacks them: primary first.
    pub fn loss_names(&self) -> Vec<String> {
        std::iter::once(self.workload.primary.clone())
            .chain(self.workload.auxiliary.iter().cloned())
            .collect()
    }

    /// Serialises back to TOML (what the session's `config.toml` holds).
    pub fn to_toml_string(&self) -> String {
        toml::to_string_pretty(self).expect("a Config always serialises")
    }

    /// Every leaf value by dotted key (`aid.iterations`, `combiner.weights.x`).
    pub fn flatten(&self) -> BTreeMap<String, toml::Value> {
        match toml::Value::try_from(self).expect("a Config always serialises") {
            toml::Value::Table(table) => flatten_table(&table),
            _ => unreachable!("a Config serialises to a table"),
        }
    }

    /// A copy with one key set from text typed by a user (`0.003`, `"cuda"`,
    /// `["a", "b"]`, or a bare word for string keys), type- and range-checked.
    pub fn with_value(&self, key: &str, text: &str) -> Result<Config, ConfigError> {
        let mut root = toml::Value::try_from(self).expect("a Config always serialises");
        let slot =
            lookup_mut(&mut root, key).ok_or_else(|| ConfigError::at_key(key, "no such key"))?;
        let parsed =
            overrides::parse_value_like(slot, text).map_err(|m| ConfigError::at_key(key, m))?;
        *slot = parsed;
        let text = toml::to_string(&root).expect("a toml::Value always serialises");
        Config::parse(&text).map_err(|mut e| {
            e.line = None;
            e
        })
    }

    /// Resolves a path from the config relative to the config file's folder.
    pub fn resolve_path(config_file: &Path, relative: &str) -> PathBuf {
        let p = Path::new(relative);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            config_file.parent().unwrap_or(Path::new(".")).join(p)
        }
    }
}

/// The names a choice key accepts, or `None` for a key that is not a
/// choice (for editors and tests that need every valid value).
pub fn choices_of(key: &str) -> Option<Vec<&'static str>> {
    macro_rules! names {
        ($t:ty) => {
            Some(<$t>::ALL.iter().map(|v| v.as_str()).collect())
        };
    }
    match key {
        "workload.kind" => names!(WorkloadKind),
        "workload.metric_goal" => names!(MetricGoal),
        "train.dtype" => names!(Dtype),
        "train.lr_schedule" => names!(LrSchedule),
        "combiner.kind" => names!(CombinerKind),
        "meltr.val_source" => names!(ValSource),
        "meltr.train_batch" => names!(TrainBatch),
        "meltr.init" => names!(MeltrInit),
        "meltr.meta_optimizer" => names!(MetaOptimizer),
        "meltr.pool" => names!(Pool),
        "meltr.first_meta" => names!(FirstMeta),
        "meltr.on_collapse" => names!(OnCollapse),
        "meltr.loss_scale" => names!(LossScale),
        "aid.mode" => names!(AidMode),
        "aid.jvp" => names!(JvpMethod),
        _ => None,
    }
}

/// Every leaf value of a TOML table by dotted key.
fn flatten_table(table: &toml::Table) -> BTreeMap<String, toml::Value> {
    let mut out = BTreeMap::new();
    for (k, v) in table {
        flatten_into(k, v, &mut out);
    }
    out
}

fn flatten_into(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, toml::Value>) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_into(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

fn lookup<'a>(root: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    let mut node = root;
    for part in key.split('.') {
        node = node.as_table()?.get(part)?;
    }
    Some(node)
}

fn lookup_mut<'a>(root: &'a mut toml::Value, key: &str) -> Option<&'a mut toml::Value> {
    let mut node = root;
    for part in key.split('.') {
        node = node.as_table_mut()?.get_mut(part)?;
    }
    Some(node)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod type_error_tests;
