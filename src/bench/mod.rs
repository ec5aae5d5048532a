//! `meltr-tui bench`: what MELTR costs over plain fine-tuning, measured in
//! one run on this machine's device, as seconds and ratios.
//!
//! For each workload (the built-in video-text model, and a TorchScript
//! model such as the example exporter's): time per inner step with the
//! `primary`, `sum` and `meltr` combiners (and `meltr` logging every step:
//! effective weights with gradient shares at the default `shares_every`,
//! and with shares at every step, by a double backward and by one backward
//! per loss); time per meta step for `exact`
//! (where the model allows a second derivative) and `factorized` at J = 0,
//! 1, 3, and at J = 0 with `aid.jvp = "one-sided"` and with
//! `meltr.val_source = "train-batch"` too; the transient peak memory of an
//! inner and of a meta step; and training throughput (inner and meta steps
//! together, `throughput.rs`); and where a meta step's time goes, phase by
//! phase.
//!
//! Every timing is repeated `rounds` times, interleaved with the ones it is
//! compared with, and the median is reported: on a shared machine a slow
//! spell then hits all sides of a ratio alike. Memory is measured in one
//! extra, untimed round first.
//!
//! Memory is the peak above its level when the measurement starts: on CUDA
//! the caching allocator's allocated bytes ([`crate::device_memory`]), on
//! the CPU the resident set (freed memory is returned to the OS first,
//! `malloc_trim`, and the kernel's peak counter reset,
//! `/proc/self/clear_refs`; in that round blocks of 128 KiB and more are
//! mapped and unmapped directly, so the peak follows live memory, while
//! timed rounds take them from the heap as a settled run does: see
//! [`Allocator`]).

use crate::config::{AidMode, CombinerKind, Config, JvpMethod, MeltrInit, ValSource};
use crate::engine::trainer::BenchTrainer;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Device;

mod memory;
mod phases;
mod throughput;

use memory::{peak_memory, Allocator};
use phases::phased;

pub struct BenchOptions {
    pub device: String,
    /// Inner steps timed per combiner (after warm-up).
    pub steps: u64,
    /// Meta steps timed per mode.
    pub meta_steps: u64,
    /// Timed rounds per measurement (the median is reported).
    pub rounds: u32,
    /// A folder with `model.pt`, `train.safetensors`, `val.safetensors`.
    pub torchscript: Option<PathBuf>,
    /// A run config whose workload is benchmarked too (e.g. the user's own
    /// TorchScript model: its losses, batch size, dtype, threads), named by
    /// the label; paths in it already resolved.
    pub config: Option<(String, Config)>,
    /// Benchmark the built-in video-text model too (first).
    pub builtin: bool,
}

/// One workload's measurements.
struct Report {
    name: String,
    lines: Vec<String>,
}

pub fn run(options: &BenchOptions) -> Result<String> {
    Allocator::Timing.apply();
    // Every workload is set up before any is timed: a model that cannot be
    // benchmarked is refused at once, not after the others' minutes.
    let mut workloads = Vec::new();
    if options.builtin {
        let config = video_text_config(options);
        workloads.push(("video-text".to_string(), "video-text", config));
    }
    // `--torchscript DIR -c CONFIG` on one model timed it twice, the same
    // numbers under two titles (walkthrough S): once, with CONFIG's settings.
    let same_model = |dir: &Path| {
        let of_config = options
            .config
            .as_ref()
            .and_then(|(_, c)| c.workload.model.clone());
        let canonical = |p: &Path| p.canonicalize().ok();
        of_config.is_some_and(|m| {
            canonical(Path::new(&m)).is_some()
                && canonical(Path::new(&m)) == canonical(&dir.join("model.pt"))
        })
    };
    if options.builtin && (options.torchscript.is_some() || options.config.is_some()) {
        say_err!("bench: the built-in video-text model is timed too (--no-builtin skips it)");
    }
    if let Some(dir) = options.torchscript.as_ref().filter(|dir| same_model(dir)) {
        say_err!(
            "bench: --torchscript {} is the -c config's model: timed once, with the config's losses and settings",
            dir.display()
        );
    }
    if let Some(dir) = options.torchscript.as_ref().filter(|dir| !same_model(dir)) {
        let config = torchscript_config(dir, options)?;
        // Its settings are the example's (walkthrough K1 timed batch 32
        // where its own config trains 64, and was not told).
        let label = format!(
            "torchscript {} (primary `{}`, auxiliary {}; the example config's settings, batch {}: \
             -c CONFIG times the model with yours)",
            dir.display(),
            config.workload.primary,
            config
                .workload
                .auxiliary
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", "),
            config.workload.batch_size
        );
        workloads.push((label, "torchscript", config));
    }
    if let Some((label, config)) = &options.config {
        let mut config = config.clone();
        base(&mut config, options);
        let device = crate::engine::trainer::resolve_device(&options.device)?;
        let kind = crate::engine::trainer::dtype(&config);
        crate::workload::build(&config, device, kind, None)
            .with_context(|| format!("-c {label}"))?;
        workloads.push((label.clone(), "config", config));
    }
    if workloads.is_empty() {
        bail!("nothing to benchmark: --no-builtin needs --torchscript DIR or -c CONFIG");
    }
    let scratch = tempfile_dir()?;
    let mut reports = Vec::new();
    for (title, short, config) in workloads {
        let settings = settings_line(&config);
        let mut report = bench_workload(&title, short, config, options, &scratch)?;
        report.lines.insert(0, settings);
        reports.push(report);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let mut out = format!(
        "meltr-tui bench · device {} · libtorch {} · {} inner / {} meta steps per round, median of {} interleaved rounds\n",
        options.device,
        crate::libtorch_version(),
        options.steps,
        options.meta_steps,
        options.rounds.max(1)
    );
    for r in reports {
        out += &format!("\n## {}\n", r.name);
        for line in r.lines {
            out += &line;
            out.push('\n');
        }
    }
    Ok(out)
}

/// What a workload's figures were measured with: the settings that
/// change a step's cost.
fn settings_line(config: &Config) -> String {
    let m = &config.meltr;
    format!(
        "config: batch {} · {} · {} thread(s) · MELTR d_model {}, d_ff {}, {} heads · aid.mode {}, J = {}, jvp {}",
        config.workload.batch_size,
        config.train.dtype,
        config.train.threads,
        m.d_model,
        m.d_ff,
        m.heads,
        config.aid.mode,
        config.aid.iterations,
        config.aid.jvp,
    )
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("meltr-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn base(config: &mut Config, options: &BenchOptions) {
    config.train.device = options.device.clone();
    config.train.log_every = 50;
    config.train.eval_every = 1_000_000;
    config.train.checkpoint_every = 1_000_000;
    config.train.steps = 1_000_000;
    config.meltr.meta_every = 1_000_000;
    // The init does not change a step's cost; skip the warm-start fit.
    config.meltr.init = MeltrInit::Pytorch;
}

fn video_text_config(options: &BenchOptions) -> Config {
    let mut c = Config::parse(include_str!("../../configs/default.toml"))
        .expect("the default config parses");
    c.workload.init_from = None;
    base(&mut c, options);
    c
}

fn torchscript_config(dir: &Path, options: &BenchOptions) -> Result<Config> {
    let file = |name: &str| -> Result<String> {
        let path = dir.join(name);
        if !path.exists() {
            bail!(
                "--torchscript {}: {name} is missing (export the example: .torch-python examples/torchscript/export_two_stream.py --attention matmul --out {})",
                dir.display(),
                dir.display()
            );
        }
        Ok(path.canonicalize()?.display().to_string())
    };
    let mut c = Config::parse(include_str!("../../examples/torchscript/two_stream.toml"))
        .context("the example config parses")?;
    c.workload.model = Some(file("model.pt")?);
    c.workload.train = Some(file("train.safetensors")?);
    c.workload.val = Some(file("val.safetensors")?);
    base(&mut c, options);
    adopt_loss_names(&mut c, options)
        .with_context(|| format!("--torchscript {}", dir.display()))?;
    Ok(c)
}

/// A model of the user's own does not name its losses as the example's
/// config does: takes them from the model (the primary is the first it
/// returns, the rest auxiliary). `-c CONFIG` chooses them instead.
fn adopt_loss_names(config: &mut Config, options: &BenchOptions) -> Result<()> {
    let device = crate::engine::trainer::resolve_device(&options.device)?;
    let kind = crate::engine::trainer::dtype(config);
    let model = crate::workload::torchscript::TorchScript::new(config, device, kind, None)?;
    let losses = model.losses_in_returned_order();
    let w = &mut config.workload;
    let known = |name: &String| losses.contains(name);
    if known(&w.primary) && w.auxiliary.iter().all(known) {
        return Ok(());
    }
    w.primary = losses[0].clone();
    w.auxiliary = losses[1..].to_vec();
    Ok(())
}

/// A trainer on a throwaway session.
fn trainer(config: &Config, scratch: &Path, name: &str) -> Result<BenchTrainer> {
    let dir = crate::session::create(scratch, name, config)?;
    BenchTrainer::new(&dir, config.clone())
}

/// What a bench trainer runs beyond its config.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Variant {
    /// Gradient shares by one backward per loss (the fallback).
    shares_per_loss: bool,
    /// MELTR through its elementary ops only (what its fused kernels save).
    elementary: bool,
}

/// Times one workload; `title` heads its report, `short` names its
/// throwaway sessions.
fn bench_workload(
    title: &str,
    short: &str,
    config: Config,
    options: &BenchOptions,
    scratch: &Path,
) -> Result<Report> {
    say_err!("bench: {title}");
    let device = crate::engine::trainer::resolve_device(&options.device)?;
    let mut lines = Vec::new();
    let warmup = 3;
    let with =
        |label: &str, variant: Variant, edit: &dyn Fn(&mut Config)| -> Result<BenchTrainer> {
            let mut c = config.clone();
            edit(&mut c);
            let mut t = trainer(&c, scratch, &format!("{short}-{label}"))?;
            // Before the warm-up, so that it warms the path being timed.
            if variant.shares_per_loss {
                t.shares_per_loss();
            }
            if variant.elementary {
                t.elementary_combiner_ops();
            }
            for _ in 0..warmup {
                t.step()?;
            }
            Ok(t)
        };

    // Inner steps per combiner, and MELTR's when every step is logged
    // (effective weights and one host read each step; gradient shares at
    // the default `shares_every`, then at every step). The last row takes
    // the shares by one backward per loss (the fallback for models without
    // second derivatives).
    let default_shares_every = crate::config::TrainConfig::default().shares_every;
    // (label, combiner, log_every, shares_every, shares by one backward per
    // loss, MELTR through its elementary ops only: what its fused kernels save)
    let kinds = [
        ("primary", CombinerKind::Primary, 50, 50, false, false),
        ("sum", CombinerKind::Sum, 50, 50, false, false),
        ("meltr", CombinerKind::Meltr, 50, 50, false, false),
        ("meltr unfused", CombinerKind::Meltr, 50, 50, false, true),
        (
            "meltr logged",
            CombinerKind::Meltr,
            1,
            default_shares_every,
            false,
            false,
        ),
        ("  + shares", CombinerKind::Meltr, 1, 1, false, false),
        ("    per loss", CombinerKind::Meltr, 1, 1, true, false),
    ];
    let mut trainers = kinds
        .iter()
        .map(
            |&(label, kind, log_every, shares_every, shares_per_loss, elementary)| {
                let variant = Variant {
                    shares_per_loss,
                    elementary,
                };
                with(&label.trim().replace([' ', '+'], "-"), variant, &|c| {
                    c.combiner.kind = kind;
                    c.train.log_every = log_every;
                    c.train.shares_every = shares_every;
                })
            },
        )
        .collect::<Result<Vec<_>>>()?;
    let inner = interleaved(device, &mut trainers, options.rounds, |t| {
        (0..options.steps).try_for_each(|_| t.step())
    })?;
    // Where an inner step's time goes, in a separate pass (see the meta
    // step phases below).
    let mut inner_phases = Vec::new();
    for ((label, ..), t) in kinds.iter().zip(&mut trainers) {
        let phases = phased(t, options.steps, |t| t.step())?;
        inner_phases.push(format!("  {label:<14} {phases}"));
    }
    drop(trainers);
    let per_step = |seconds: f64| seconds / options.steps as f64;
    let sum_step = per_step(inner[1].0);
    let meltr_step = per_step(inner[2].0);
    let inner_peak = inner[2].1;
    lines.push("inner step       ms/step   × sum   peak MB".into());
    for ((label, ..), (seconds, peak)) in kinds.iter().zip(&inner) {
        let s = per_step(*seconds);
        lines.push(format!(
            "  {label:<14} {:>8.2}  {:>6.2}  {:>8.1}",
            s * 1e3,
            s / sum_step,
            mb(*peak)
        ));
    }
    lines.push("inner step phases, ms per step (device synchronized at each boundary)".into());
    lines.extend(inner_phases);

    // Meta steps per AID mode (each trainer also takes one untimed meta
    // step, which tells whether the mode is available for this model).
    lines.push(
        "meta step                   ms/step   × exact  × inner(meltr)  peak MB  × inner peak"
            .into(),
    );
    let mut modes = Vec::new();
    let mut trainers = Vec::new();
    // `one-sided`: `aid.jvp = "one-sided"`; `lean`: and
    // `meltr.val_source = "train-batch"` (no validation forward).
    for (mode, j, variant) in [
        (AidMode::Exact, 0, ""),
        (AidMode::Factorized, 0, ""),
        (AidMode::Factorized, 1, ""),
        (AidMode::Factorized, 3, ""),
        (AidMode::Factorized, 0, "one-sided"),
        (AidMode::Factorized, 0, "lean"),
    ] {
        let mut t = with(&format!("{mode}-{j}-{variant}"), Variant::default(), &|c| {
            c.combiner.kind = CombinerKind::Meltr;
            c.aid.mode = mode;
            c.aid.iterations = j;
            if !variant.is_empty() {
                c.aid.jvp = JvpMethod::OneSided;
            }
            if variant == "lean" {
                c.meltr.val_source = ValSource::TrainingBatch;
            }
        })?;
        let name = format!("{mode} {variant}").trim_end().to_string();
        match t.meta_step() {
            Ok(()) => {
                modes.push((mode, j, name));
                trainers.push(t);
            }
            Err(e) => lines.push(format!(
                "  {name:<20} J={j}  not available: {}",
                first_line(&format!("{e:#}"))
            )),
        }
    }
    let meta = interleaved(device, &mut trainers, options.rounds, |t| {
        (0..options.meta_steps).try_for_each(|_| t.meta_step())
    })?;
    let exact_time = modes
        .iter()
        .position(|m| m.0 == AidMode::Exact)
        .map(|i| meta[i].0);
    for ((_, j, name), (seconds, peak)) in modes.iter().zip(&meta) {
        let per = seconds / options.meta_steps as f64;
        lines.push(format!(
            "  {name:<20} J={j} {:>8.2}  {:>7}  {:>13.2}  {:>7.1}  {:>11.2}",
            per * 1e3,
            exact_time.map_or("-".into(), |e| format!("{:.2}", seconds / e)),
            per / meltr_step,
            mb(*peak),
            *peak as f64 / inner_peak.max(1) as f64
        ));
    }
    // Where the time goes, in a separate pass: the clock synchronizes the
    // device at each phase boundary.
    lines.push("meta step phases, ms per meta step (device synchronized at each boundary)".into());
    for ((_, j, name), t) in modes.iter().zip(&mut trainers) {
        let phases = phased(t, options.meta_steps, |t| t.meta_step())?;
        lines.push(format!("  {name:<20} J={j}  {phases}"));
    }
    drop(trainers);

    throughput::section(device, options, &with, &mut lines)?;
    lines.extend(ROW_NOTES.iter().map(|l| l.to_string()));
    Ok(Report {
        name: title.into(),
        lines,
    })
}

/// What the report's rows are, for a reader who has not read this file.
const ROW_NOTES: [&str; 8] = [
    "what the rows are:",
    "  meltr unfused: MELTR's forward through elementary ops (no fused layer norm, softmax, attention); meltr logged: a step that logs (weights from the backward); + shares: and each loss's share of the gradient; per loss: shares by one backward per loss",
    "  exact / factorized J: aid.mode and aid.iterations; a mode the model cannot take says `not available`; a run says when forward-mode AD falls back (double backward or differences); one-sided: aid.jvp = \"one-sided\"; lean: and meltr.val_source = \"train-batch\" (the primary's gradient from the training forward: no validation forward, but on the suite's label-noise task 9 points lower)",
    "  watched weights: the collapse watch's read of the effective weights; snapshot: the copy of φ a restore would go back to",
    "  other: time in no named phase; the phase lines come from a separate pass that synchronizes at",
    "  every boundary, one run rather than the median of interleaved rounds, so their totals differ",
    "  from the ms/step columns by the machine's noise and the synchronization",
    "  ratios compare rows of this report only (one machine, one run)",
];

/// Runs `work` on each trainer in turn, `rounds` times over (interleaved,
/// so a slow spell of a shared machine hits every configuration alike),
/// after one untimed round that measures memory. Returns, per trainer, the
/// median seconds of its timed rounds and that round's transient peak.
pub(super) fn interleaved(
    device: Device,
    trainers: &mut [BenchTrainer],
    rounds: u32,
    work: impl Fn(&mut BenchTrainer) -> Result<()>,
) -> Result<Vec<(f64, u64)>> {
    let mut peaks = Vec::new();
    for t in trainers.iter_mut() {
        peaks.push(peak_memory(device, || {
            work(t)?;
            t.sync()
        })?);
    }
    let mut seconds = vec![Vec::new(); trainers.len()];
    for _ in 0..rounds.max(1) {
        for (i, t) in trainers.iter_mut().enumerate() {
            let start = Instant::now();
            work(t)?;
            t.sync()?;
            seconds[i].push(start.elapsed().as_secs_f64());
        }
    }
    Ok(seconds
        .iter()
        .map(|s| crate::session::metrics::median(s))
        .zip(peaks)
        .collect())
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("")
        .chars()
        .take(120)
        .collect()
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
