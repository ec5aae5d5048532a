//! The run configuration: TOML schema, defaults, validation with precise
//! errors (file, line, key, what was expected), and the live-vs-restart diff
//! used when a config is edited while a run goes on.
//!
//! Everything here is plain data; no tensors, no terminal.

pub mod choices;
pub mod edit;
pub mod watch;

pub use choices::{
    AidMode, CombinerKind, Dtype, JvpMethod, LrSchedule, MeltrInit, MetaOptimizer, OnCollapse,
    Pool, TrainBatch, ValSource, WorkloadKind,
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
    pub log_every: u64,
    /// Writes `trace/` in the session folder (initial θ and φ, each step's
    /// batch rows and meta-step picks, the state after every step) for
    /// `scripts/meltr_replay.py trace`, the step-for-step parity check
    /// against PyTorch. TorchScript workloads; large: for short runs.
    pub trace: bool,
}

impl TrainConfig {
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
            log_every: 10,
            trace: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CombinerConfig {
    pub kind: CombinerKind,
    /// Fixed weights for `kind = "weights"`; a loss not listed weighs 0.
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
    /// effective weights (all 1, or 1 on the primary and 0 elsewhere).
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
    /// What a detected collapse does: `warn` (an event) | `restore` (also
    /// puts φ and its optimizer back to the last healthy meta step).
    pub on_collapse: OnCollapse,
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
            meta_grad_clip: 50.0,
            gamma: 0.1,
            val_source: ValSource::Recent,
            train_batch: TrainBatch::Recent,
            init: MeltrInit::Pytorch,
            gamma_direct: false,
            meta_optimizer: MetaOptimizer::Adam,
            pool: Pool::Previous,
            on_collapse: OnCollapse::Warn,
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
    /// Factorized mode's Jacobian-vector products: `auto` (forward-mode AD,
    /// falling back to finite differences for ops without forward
    /// derivatives) | `forward` | `differences`.
    pub jvp: JvpMethod,
    /// The Neumann series stops (and says so) when a term's norm grows past
    /// this multiple of the first's: for α·H with eigenvalues outside
    /// (0, 2) the series diverges and would feed φ a useless direction.
    pub max_growth: f64,
}

impl Default for AidConfig {
    fn default() -> Self {
        Self {
            iterations: 0,
            alpha: 0.1,
            mode: AidMode::Factorized,
            jvp: JvpMethod::Auto,
            max_growth: 10.0,
        }
    }
}

/// Keys that only take effect when a run starts; a live edit of them is
/// refused with this reason. A key matches when it equals an entry or starts
/// with an entry followed by a dot.
pub const RESTART_ONLY: &[(&str, &str)] = &[
    ("workload", "the workload is built once when the run starts"),
    ("train.device", "tensors live on the device chosen at start"),
    ("train.trace", "a trace starts with the run's initial state"),
    (
        "train.dtype",
        "parameters are created in this dtype at start",
    ),
    (
        "combiner.kind",
        "the combiner's parameters are created at start",
    ),
    (
        "meltr.d_model",
        "MELTR's size is fixed once its parameters exist",
    ),
    (
        "meltr.d_hidden",
        "MELTR's size is fixed once its parameters exist",
    ),
    (
        "meltr.d_ff",
        "MELTR's size is fixed once its parameters exist",
    ),
    (
        "meltr.heads",
        "MELTR's size is fixed once its parameters exist",
    ),
    (
        "meltr.init",
        "MELTR is initialised once, before the first step",
    ),
];

/// Why a key cannot change while a run goes on, or `None` when it is live.
pub fn restart_only_reason(key: &str) -> Option<&'static str> {
    RESTART_ONLY
        .iter()
        .find(|(prefix, _)| {
            key == *prefix
                || (key.starts_with(prefix) && key.as_bytes().get(prefix.len()) == Some(&b'.'))
        })
        .map(|(_, reason)| *reason)
}

/// A configuration problem, located as precisely as we can.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    fn at_key(key: &str, message: impl Into<String>) -> Self {
        Self {
            file: None,
            line: None,
            key: Some(key.to_string()),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{}: ", file.display(), line)?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// One changed key between two configs.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub key: String,
    pub old: toml::Value,
    pub new: toml::Value,
    /// `Some(reason)` when the key can only change at restart.
    pub restart_only: Option<&'static str>,
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
            ConfigError {
                file: None,
                line,
                key,
                message: inner.message().trim().to_string(),
            }
        })?;
        Ok(config)
    }

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
        at_least("workload.batch_size", w.batch_size as f64, 1.0)?;
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
                    "expected 1..={most} (4 per core this machine has), got {}",
                    t.threads
                ),
            ));
        }
        at_least("train.steps", t.steps as f64, 1.0)?;
        positive("train.lr", t.lr)?;
        non_negative("train.weight_decay", t.weight_decay)?;
        positive("train.grad_clip", t.grad_clip)?;
        at_least("train.eval_every", t.eval_every as f64, 1.0)?;
        at_least("train.checkpoint_every", t.checkpoint_every as f64, 1.0)?;
        at_least("train.log_every", t.log_every as f64, 1.0)?;

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
        if c.kind == CombinerKind::Weights && c.weights.is_empty() {
            return Err(ConfigError::at_key(
                "combiner.weights",
                "combiner.kind = \"weights\" needs a table of fixed weights, e.g. { primary = 1.0 }",
            ));
        }

        let m = &self.meltr;
        at_least("meltr.d_model", m.d_model as f64, 1.0)?;
        at_least("meltr.d_hidden", m.d_hidden as f64, 1.0)?;
        at_least("meltr.d_ff", m.d_ff as f64, 1.0)?;
        at_least("meltr.heads", m.heads as f64, 1.0)?;
        if m.d_model % m.heads != 0 {
            return Err(ConfigError::at_key(
                "meltr.heads",
                format!("must divide meltr.d_model ({}), got {}", m.d_model, m.heads),
            ));
        }
        positive("meltr.meta_lr", m.meta_lr)?;
        non_negative("meltr.meta_weight_decay", m.meta_weight_decay)?;
        at_least("meltr.meta_every", m.meta_every as f64, 1.0)?;
        positive("meltr.meta_grad_clip", m.meta_grad_clip)?;
        non_negative("meltr.gamma", m.gamma)?;

        let a = &self.aid;
        if a.iterations > 100 {
            return Err(ConfigError::at_key(
                "aid.iterations",
                format!("expected 0..=100, got {}", a.iterations),
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
        let value = toml::Value::try_from(self).expect("a Config always serialises");
        let mut out = BTreeMap::new();
        flatten_into("", &value, &mut out);
        out
    }

    /// The keys that differ between `self` (old) and `new`.
    pub fn diff(&self, new: &Config) -> Vec<Change> {
        let old = self.flatten();
        let new = new.flatten();
        let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        keys.into_iter()
            .filter(|k| old.get(*k) != new.get(*k))
            .map(|k| Change {
                key: k.clone(),
                old: old
                    .get(k)
                    .cloned()
                    .unwrap_or_else(|| toml::Value::String("(unset)".into())),
                new: new
                    .get(k)
                    .cloned()
                    .unwrap_or_else(|| toml::Value::String("(unset)".into())),
                restart_only: restart_only_reason(k),
            })
            .collect()
    }

    /// A copy with one key set from text typed by a user (`0.003`, `"cuda"`,
    /// `["a", "b"]`, or a bare word for string keys), type- and range-checked.
    pub fn with_value(&self, key: &str, text: &str) -> Result<Config, ConfigError> {
        let mut root = toml::Value::try_from(self).expect("a Config always serialises");
        let slot =
            lookup_mut(&mut root, key).ok_or_else(|| ConfigError::at_key(key, "no such key"))?;
        let parsed = parse_value_like(slot, text).map_err(|m| ConfigError::at_key(key, m))?;
        *slot = parsed;
        let text = toml::to_string(&root).expect("a toml::Value always serialises");
        Config::parse(&text).map_err(|mut e| {
            e.line = None;
            e
        })
    }

    /// This config with every restart-only key set back to `running`'s value
    /// (what a live edit can actually change): each [`RESTART_ONLY`] entry's
    /// value (a key, or a whole section) is copied from `running`.
    pub fn keeping_restart_only_of(self, running: &Config) -> Config {
        let mut root = toml::Value::try_from(&self).expect("a Config always serialises");
        let from = toml::Value::try_from(running).expect("a Config always serialises");
        for (entry, _) in RESTART_ONLY {
            let (parent, leaf) = match entry.rsplit_once('.') {
                Some((parent, leaf)) => (lookup_mut(&mut root, parent), leaf),
                None => (Some(&mut root), *entry),
            };
            let Some(toml::Value::Table(parent)) = parent else {
                continue;
            };
            match lookup(&from, entry) {
                Some(value) => {
                    parent.insert(leaf.to_string(), value.clone());
                }
                None => {
                    parent.remove(leaf);
                }
            }
        }
        root.try_into()
            .expect("values taken from two Configs make a Config")
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
        "train.dtype" => names!(Dtype),
        "train.lr_schedule" => names!(LrSchedule),
        "combiner.kind" => names!(CombinerKind),
        "meltr.val_source" => names!(ValSource),
        "meltr.train_batch" => names!(TrainBatch),
        "meltr.init" => names!(MeltrInit),
        "meltr.meta_optimizer" => names!(MetaOptimizer),
        "meltr.pool" => names!(Pool),
        "meltr.on_collapse" => names!(OnCollapse),
        "aid.mode" => names!(AidMode),
        "aid.jvp" => names!(JvpMethod),
        _ => None,
    }
}

/// Reads a config file as text. A byte that is not UTF-8 is reported with
/// its line and column (TOML files are UTF-8; an editor may have saved
/// Latin-1).
pub fn read_text(path: &Path) -> Result<String, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError {
        file: Some(path.to_path_buf()),
        line: None,
        key: None,
        message: format!("cannot read: {e}"),
    })?;
    decode_text(bytes).map_err(|mut e| {
        e.file = Some(path.to_path_buf());
        e
    })
}

/// A config file's bytes as text, or where the first non-UTF-8 byte is.
pub fn decode_text(bytes: Vec<u8>) -> Result<String, ConfigError> {
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let error = e.utf8_error();
        let at = error.valid_up_to();
        let before = &bytes[..at];
        let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // Everything before `at` is valid UTF-8: count characters.
        let column = std::str::from_utf8(&bytes[line_start..at]).map_or(at - line_start, |s| s.chars().count()) + 1;
        let len = error.error_len().unwrap_or(bytes.len() - at);
        let bad: Vec<String> = bytes[at..at + len]
            .iter()
            .map(|b| format!("0x{b:02x}"))
            .collect();
        ConfigError {
            file: None,
            line: Some(before.iter().filter(|&&b| b == b'\n').count() + 1),
            key: None,
            message: format!(
                "column {column} (byte {at} of the file): {} is not UTF-8; a config file must be UTF-8 text \
                 (save it as UTF-8, or write the character as a \\u escape inside a string)",
                bad.join(" ")
            ),
        }
    })
}

/// Whether TOML text sets no value at all (empty, comments, empty tables).
/// Text that does not parse sets something wrong: the parser says what.
pub fn sets_no_keys(text: &str) -> bool {
    fn leaves(table: &toml::Table) -> usize {
        table
            .values()
            .map(|v| match v {
                toml::Value::Table(t) => leaves(t),
                _ => 1,
            })
            .sum()
    }
    toml::from_str::<toml::Table>(text).is_ok_and(|t| leaves(&t) == 0)
}

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
            format!("expected a number > 0, got {value}"),
        ))
    }
}

fn non_negative(key: &str, value: f64) -> Result<(), ConfigError> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::at_key(
            key,
            format!("expected a number >= 0, got {value}"),
        ))
    }
}

fn at_least(key: &str, value: f64, min: f64) -> Result<(), ConfigError> {
    if value >= min {
        Ok(())
    } else {
        Err(ConfigError::at_key(
            key,
            format!("expected an integer >= {min}, got {value}"),
        ))
    }
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The 1-based line where a dotted key is set, found by tracking `[section]`
/// headers; `None` when the key is not written in the file (a default).
pub fn locate_key(text: &str, key: &str) -> Option<usize> {
    let (section, leaf) = match key.split_once('.') {
        Some((s, rest)) => (s, rest.split('.').next().unwrap_or(rest)),
        None => return None,
    };
    let mut current = String::new();
    let mut section_line = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            current = line
                .trim_matches(|c| c == '[' || c == ']')
                .trim()
                .to_string();
            if current == section {
                section_line = Some(i + 1);
            }
            continue;
        }
        if current == section {
            if let Some((k, _)) = line.split_once('=') {
                if k.trim().trim_matches('"') == leaf {
                    return Some(i + 1);
                }
            }
        }
    }
    section_line
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

/// Parses user text as a TOML value of the same type as `like`.
fn parse_value_like(like: &toml::Value, text: &str) -> Result<toml::Value, String> {
    let text = text.trim();
    let parsed: Option<toml::Value> = toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"));
    let type_name = like.type_str();
    match (like, parsed) {
        (toml::Value::String(_), Some(v @ toml::Value::String(_))) => Ok(v),
        (toml::Value::String(_), _) => Ok(toml::Value::String(text.to_string())),
        (toml::Value::Float(_), Some(toml::Value::Integer(i))) => Ok(toml::Value::Float(i as f64)),
        (toml::Value::Float(_), Some(v @ toml::Value::Float(_))) => Ok(v),
        (toml::Value::Integer(_), Some(v @ toml::Value::Integer(_))) => Ok(v),
        (toml::Value::Boolean(_), Some(v @ toml::Value::Boolean(_))) => Ok(v),
        (toml::Value::Array(_), Some(v @ toml::Value::Array(_))) => Ok(v),
        (_, _) => Err(format!("expected {}, got `{text}`", article(type_name))),
    }
}

fn article(type_name: &str) -> String {
    match type_name {
        "integer" => "an integer".into(),
        "float" => "a number".into(),
        "array" => "an array like [\"a\", \"b\"]".into(),
        other => format!("a {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_roundtrip() {
        let c = Config::default();
        c.validate().unwrap();
        let back = Config::parse(&c.to_toml_string()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = Config::parse("[aid]\niterations = 2\nbogus = 1\n").unwrap_err();
        assert_eq!(err.line, Some(3), "{err}");
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn wrong_type_names_key() {
        let err = Config::parse("[train]\nlr = \"fast\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("train.lr"), "{err}");
        assert_eq!(err.line, Some(2));
    }

    #[test]
    fn out_of_range_names_key_and_line() {
        let err = Config::parse("[train]\nsteps = 10\n\n[aid]\nalpha = 3.0\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("aid.alpha"));
        assert_eq!(err.line, Some(5));
        assert!(err.message.contains("0 < alpha <= 1"), "{err}");
    }

    #[test]
    fn heads_must_divide_d_model() {
        let err = Config::parse("[meltr]\nd_model = 10\nheads = 3\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("meltr.heads"));
    }

    #[test]
    fn cosine_schedule_runs_from_lr_to_zero_and_constant_stays() {
        let mut t = TrainConfig {
            lr: 0.01,
            steps: 100,
            ..Default::default()
        };
        assert_eq!(t.lr_at(1), 0.01);
        assert_eq!(t.lr_at(100), 0.01);
        t.lr_schedule = LrSchedule::Cosine;
        assert_eq!(t.lr_at(1), 0.01);
        assert!((t.lr_at(51) - 0.005).abs() < 1e-12, "{}", t.lr_at(51));
        assert!(t.lr_at(100) > 0.0 && t.lr_at(100) < 1e-5);
        assert!(t.lr_at(30) > t.lr_at(31));
        // Past the horizon (steps lowered live) it stays at zero.
        assert!(t.lr_at(500).abs() < 1e-12);
        let err = Config::parse("[train]\nlr_schedule = \"linear\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("train.lr_schedule"), "{err}");
        let err = Config::parse("[meltr]\ninit = \"zeros\"\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("meltr.init"), "{err}");
        assert!(restart_only_reason("meltr.init").is_some());
    }

    #[test]
    fn diff_marks_restart_only_keys() {
        let old = Config::default();
        let mut new = old.clone();
        new.aid.iterations = 3;
        new.meltr.d_model = 64;
        let changes = old.diff(&new);
        assert_eq!(changes.len(), 2);
        let live = changes.iter().find(|c| c.key == "aid.iterations").unwrap();
        assert!(live.restart_only.is_none());
        let restart = changes.iter().find(|c| c.key == "meltr.d_model").unwrap();
        assert!(restart.restart_only.is_some());
        assert!(restart_only_reason("workload.seed").is_some());
        assert!(restart_only_reason("workloadx").is_none());
    }

    #[test]
    fn keeping_restart_only_matches_the_restart_only_list() {
        let running = Config::default();
        let mut edited = Config::default();
        edited.workload.seed = 9;
        edited.workload.batch_size = 3;
        edited.train.device = "cpu".into();
        edited.train.dtype = crate::config::Dtype::F64;
        edited.combiner.kind = crate::config::CombinerKind::Sum;
        edited.meltr.d_model = 16;
        edited.meltr.d_hidden = 16;
        edited.meltr.d_ff = 16;
        edited.meltr.heads = 2;
        edited.aid.iterations = 4;
        let requested = running.diff(&edited);
        assert!(
            requested
                .iter()
                .filter(|c| c.restart_only.is_some())
                .count()
                >= 9
        );
        let kept = running.diff(&edited.keeping_restart_only_of(&running));
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(kept[0].key, "aid.iterations");
    }

    /// A different valid value for `key` (for tests that must change a key).
    fn another(key: &str, value: &toml::Value) -> toml::Value {
        match value {
            toml::Value::String(s) => match choices_of(key) {
                Some(names) => toml::Value::String(
                    names
                        .into_iter()
                        .find(|n| n != s)
                        .expect("two options")
                        .into(),
                ),
                None => toml::Value::String(format!("{s}-other")),
            },
            toml::Value::Integer(i) => toml::Value::Integer(i + 1),
            toml::Value::Float(f) => toml::Value::Float(f * 2.0 + 1.0),
            toml::Value::Boolean(b) => toml::Value::Boolean(!b),
            toml::Value::Array(a) => {
                let mut a = a.clone();
                a.push(toml::Value::String("other".into()));
                toml::Value::Array(a)
            }
            other => panic!("no other value for {other:?}"),
        }
    }

    /// `choices_of` knows every choice key, and every name it lists reads
    /// back as that key's value.
    #[test]
    fn choices_of_covers_every_choice_key() {
        let running = Config::default();
        for (key, value) in running.flatten() {
            let toml::Value::String(_) = value else {
                continue;
            };
            let with = |text: &str| {
                let mut root = toml::Value::try_from(&running).unwrap();
                *lookup_mut(&mut root, &key).unwrap() = toml::Value::String(text.into());
                root.try_into::<Config>()
            };
            match choices_of(&key) {
                Some(names) => {
                    assert!(with("no-such-option").is_err(), "{key} took any text");
                    for name in names {
                        let config = with(name).unwrap();
                        assert_eq!(config.flatten()[&key].as_str(), Some(name), "{key}");
                    }
                }
                None => assert!(
                    with("free text").is_ok(),
                    "{key} is a choice: list it in choices_of"
                ),
            }
        }
    }

    /// Issue 19, item 4: `meltr.init` is restart-only but a live edit of it
    /// was logged as changed. Every key under every [`RESTART_ONLY`] entry,
    /// edited, is kept at its running value; and nothing else is.
    #[test]
    fn every_restart_only_key_is_kept_and_every_live_key_applies() {
        let running = Config::default();
        let flat = running.flatten();
        for (prefix, _) in RESTART_ONLY {
            let keys: Vec<&String> = flat
                .keys()
                .filter(|k| restart_only_reason(k).is_some() && k.starts_with(prefix))
                .collect();
            assert!(!keys.is_empty(), "{prefix} names no key of the config");
            for key in keys {
                let mut root = toml::Value::try_from(&running).unwrap();
                let slot = lookup_mut(&mut root, key).unwrap();
                *slot = another(key, slot);
                let edited: Config = root.try_into().unwrap();
                let requested = running.diff(&edited);
                assert_eq!(requested.len(), 1, "{key}: {requested:?}");
                assert!(requested[0].restart_only.is_some(), "{key}");
                let kept = running.diff(&edited.keeping_restart_only_of(&running));
                assert!(kept.is_empty(), "{key} was applied live: {kept:?}");
            }
        }
        // Every other key is live: an edit of it goes through.
        for key in flat.keys().filter(|k| restart_only_reason(k).is_none()) {
            let mut root = toml::Value::try_from(&running).unwrap();
            let slot = lookup_mut(&mut root, key).unwrap();
            *slot = another(key, slot);
            let edited: Config = root.try_into().unwrap();
            let kept = running.diff(&edited.keeping_restart_only_of(&running));
            assert_eq!(kept.len(), 1, "{key}: {kept:?}");
        }
    }

    #[test]
    fn threads_have_an_upper_bound() {
        let err = Config::parse("[train]\nthreads = 5000\n").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("train.threads"), "{err}");
        assert_eq!(err.line, Some(2));
        assert!(Config::parse("[train]\nthreads = 0\n").is_err());
        Config::parse(&format!("[train]\nthreads = {}\n", max_threads())).unwrap();
    }

    #[test]
    fn with_value_type_and_range_checks() {
        let c = Config::default();
        assert_eq!(c.with_value("train.lr", "0.01").unwrap().train.lr, 0.01);
        assert_eq!(c.with_value("train.lr", "1").unwrap().train.lr, 1.0);
        assert!(c
            .with_value("train.lr", "-1")
            .unwrap_err()
            .message
            .contains("> 0"));
        assert!(c
            .with_value("aid.iterations", "1.5")
            .unwrap_err()
            .message
            .contains("integer"));
        assert_eq!(
            c.with_value("aid.mode", "exact").unwrap().aid.mode,
            AidMode::Exact
        );
        assert!(c.with_value("aid.mode", "fast").is_err());
        assert!(c.with_value("aid.nope", "1").is_err());
    }

    /// Issue 19, item 14: a non-UTF-8 byte said only "stream did not
    /// contain valid UTF-8", with no line.
    #[test]
    fn a_non_utf8_byte_is_located_by_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.toml");
        // "café" in Latin-1 on line 3: é is the single byte 0xe9.
        std::fs::write(&path, b"[workload]\nseed = 1\n# caf\xe9\n").unwrap();
        let err = Config::load(&path).unwrap_err();
        assert_eq!(err.file.as_deref(), Some(path.as_path()));
        assert_eq!(err.line, Some(3), "{err}");
        let text = err.to_string();
        assert!(text.contains("latin1.toml:3:"), "{text}");
        assert!(text.contains("column 6"), "{text}");
        assert!(text.contains("0xe9") && text.contains("UTF-8"), "{text}");
        // The column counts characters, not bytes, before the bad byte.
        assert!(decode_text("a = \"é\"\n".as_bytes().to_vec()).is_ok());
        let mut bytes = "k = \"éé".as_bytes().to_vec();
        bytes.push(0xff);
        let err = decode_text(bytes).unwrap_err();
        assert_eq!(err.line, Some(1));
        assert!(err.message.contains("column 8"), "{err}");
    }

    /// Issue 19, item 14: an empty or comment-only config silently ran
    /// 600 steps of built-in defaults.
    #[test]
    fn a_config_that_sets_no_keys_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        for (i, body) in [
            "",
            "\n\n",
            "# nothing here yet\n  # still nothing\n",
            "[train]\n# lr = 1\n",
        ]
        .iter()
        .enumerate()
        {
            let path = dir.path().join(format!("empty{i}.toml"));
            std::fs::write(&path, body).unwrap();
            let err = Config::load(&path).unwrap_err().to_string();
            assert!(
                err.contains(&format!("empty{i}.toml: sets no keys")),
                "{err}"
            );
            assert!(err.contains("configs/default.toml"), "{err}");
        }
        // One key is enough; bad syntax is still reported as such.
        let path = dir.path().join("one.toml");
        std::fs::write(&path, "# mine\n[train]\nsteps = 5\n").unwrap();
        assert_eq!(Config::load(&path).unwrap().train.steps, 5);
        std::fs::write(&path, "[train\n").unwrap();
        let err = Config::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("one.toml:1:") && !err.contains("sets no keys"),
            "{err}"
        );
    }
}
