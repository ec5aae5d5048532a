//! `meltr-tui bench`: what MELTR costs over plain fine-tuning, measured in
//! one run on this machine's device, as seconds and ratios.
//!
//! For each workload (the built-in video-text model, and a TorchScript
//! model such as the example exporter's): time per inner step with the
//! `primary`, `sum` and `meltr` combiners; time per meta step for `exact`
//! (where the model allows a second derivative) and `factorized` at J = 0,
//! 1, 3; the transient peak memory of an inner and of a meta step; and
//! training throughput (inner and meta steps together) of `meltr` at
//! `meta_every = 3` against `sum` (with the meta step's training batch drawn
//! from the recent ones, and with `train_batch = "current"`, which reuses
//! the inner step's forward), and with `log_every` 1 against 50.
//!
//! Memory on CPU is the resident set's peak above its level when the phase
//! starts (freed memory is returned to the OS first, `malloc_trim`, and the
//! kernel's peak counter reset, `/proc/self/clear_refs`). CUDA memory is not
//! measured (tch exposes no allocator statistics).

use crate::config::Config;
use crate::engine::trainer::Trainer;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct BenchOptions {
    pub device: String,
    /// Inner steps timed per combiner (after warm-up).
    pub steps: u64,
    /// Meta steps timed per mode.
    pub meta_steps: u64,
    /// A folder with `model.pt`, `train.safetensors`, `val.safetensors`.
    pub torchscript: Option<PathBuf>,
}

/// One workload's measurements.
struct Report {
    name: String,
    lines: Vec<String>,
}

pub fn run(options: &BenchOptions) -> Result<String> {
    let scratch = tempfile_dir()?;
    let mut reports = vec![bench_workload(
        "video-text",
        video_text_config(options),
        options,
        &scratch,
    )?];
    if let Some(dir) = &options.torchscript {
        let config = torchscript_config(dir, options)?;
        reports.push(bench_workload("torchscript", config, options, &scratch)?);
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let mut out = format!(
        "meltr-tui bench · device {} · libtorch {} · {} inner / {} meta steps per measurement\n",
        options.device,
        crate::libtorch_version(),
        options.steps,
        options.meta_steps
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
    config.meltr.init = "random".into();
}

fn video_text_config(options: &BenchOptions) -> Config {
    let mut c =
        Config::parse(include_str!("../configs/default.toml")).expect("the default config parses");
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
    let mut c = Config::parse(include_str!("../examples/torchscript/two_stream.toml"))
        .context("the example config parses")?;
    c.workload.model = Some(file("model.pt")?);
    c.workload.train = Some(file("train.safetensors")?);
    c.workload.val = Some(file("val.safetensors")?);
    base(&mut c, options);
    Ok(c)
}

/// A trainer on a throwaway session.
fn trainer(config: &Config, scratch: &Path, name: &str) -> Result<Trainer> {
    let dir = crate::session::create(scratch, name, config)?;
    let (events, _) = std::sync::mpsc::sync_channel(1);
    Ok(Trainer::new(&dir, config.clone(), false, events)?.0)
}

fn bench_workload(
    name: &str,
    config: Config,
    options: &BenchOptions,
    scratch: &Path,
) -> Result<Report> {
    eprintln!("bench: {name}");
    let mut lines = Vec::new();
    let warmup = 3;

    // Inner steps per combiner.
    let mut inner = Vec::new();
    for kind in ["primary", "sum", "meltr"] {
        let mut c = config.clone();
        c.combiner.kind = kind.into();
        let mut t = trainer(&c, scratch, &format!("{name}-{kind}"))?;
        for _ in 0..warmup {
            t.bench_step()?;
        }
        let (seconds, peak) = measure(|| {
            for _ in 0..options.steps {
                t.bench_step()?;
            }
            t.bench_sync()
        })?;
        inner.push((kind, seconds / options.steps as f64, peak));
    }
    let sum_step = inner[1].1;
    lines.push("inner step       ms/step   × sum   peak MB".into());
    for (kind, s, peak) in &inner {
        lines.push(format!(
            "  {kind:<14} {:>8.2}  {:>6.2}  {:>8.1}",
            s * 1e3,
            s / sum_step,
            mb(*peak)
        ));
    }
    let inner_peak = inner[2].2;

    // Meta steps per AID mode.
    lines.push("meta step        ms/step   × exact  × inner(meltr)  peak MB  × inner peak".into());
    let mut exact_time = None;
    for (mode, j) in [
        ("exact", 0),
        ("factorized", 0),
        ("factorized", 1),
        ("factorized", 3),
    ] {
        let mut c = config.clone();
        c.combiner.kind = "meltr".into();
        c.aid.mode = mode.into();
        c.aid.iterations = j;
        let mut t = trainer(&c, scratch, &format!("{name}-{mode}-{j}"))?;
        for _ in 0..warmup {
            t.bench_step()?;
        }
        if let Err(e) = t.bench_meta_step() {
            lines.push(format!(
                "  {mode:<10} J={j}  not available: {}",
                first_line(&format!("{e:#}"))
            ));
            continue;
        }
        let (seconds, peak) = measure(|| {
            for _ in 0..options.meta_steps {
                t.bench_meta_step()?;
            }
            t.bench_sync()
        })?;
        let per = seconds / options.meta_steps as f64;
        if mode == "exact" {
            exact_time = Some(per);
        }
        lines.push(format!(
            "  {mode:<10} J={j} {:>8.2}  {:>7}  {:>13.2}  {:>7.1}  {:>11.2}",
            per * 1e3,
            exact_time.map_or("-".into(), |e| format!("{:.2}", per / e)),
            per / inner[2].1,
            mb(peak),
            peak as f64 / inner_peak.max(1) as f64
        ));
    }

    // Throughput: inner + meta steps together, as a run does.
    lines.push("training throughput            steps/s   ratio".into());
    let throughput = |kind: &str, meta_every: u64, log_every: u64, batch: &str| -> Result<f64> {
        let mut c = config.clone();
        c.combiner.kind = kind.into();
        c.meltr.meta_every = meta_every;
        c.meltr.train_batch = batch.into();
        c.train.log_every = log_every;
        let mut t = trainer(
            &c,
            scratch,
            &format!("{name}-run-{kind}-{log_every}-{batch}"),
        )?;
        for _ in 0..warmup {
            t.bench_step()?;
        }
        // Whole meta periods, at least four of them.
        let steps = options.steps.max(4 * meta_every.min(options.steps));
        let steps = steps - steps % meta_every.min(steps);
        let (seconds, _) = measure(|| {
            for _ in 0..steps {
                t.bench_step()?;
            }
            t.bench_sync()
        })?;
        Ok(steps as f64 / seconds)
    };
    let sum_rate = throughput("sum", 1_000_000, 50, "recent")?;
    let meltr_rate = throughput("meltr", 3, 50, "recent")?;
    let meltr_current = throughput("meltr", 3, 50, "current")?;
    let meltr_log1 = throughput("meltr", 3, 1, "recent")?;
    lines.push(format!(
        "  sum                          {sum_rate:>8.1}    1.00"
    ));
    lines.push(format!(
        "  meltr, meta_every 3          {meltr_rate:>8.1}  {:>6.2}  (× sum)",
        meltr_rate / sum_rate
    ));
    lines.push(format!(
        "  meltr, train_batch current   {meltr_current:>8.1}  {:>6.2}  (× sum; reuses the inner forward)",
        meltr_current / sum_rate
    ));
    lines.push(format!(
        "  meltr, log_every 1 vs 50     {meltr_log1:>8.1}  {:>6.2}  (× log_every 50)",
        meltr_log1 / meltr_rate
    ));
    Ok(Report {
        name: name.into(),
        lines,
    })
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

/// Seconds `f` takes and the resident set's peak above its level at the
/// start (bytes).
fn measure(f: impl FnOnce() -> Result<()>) -> Result<(f64, u64)> {
    unsafe {
        libc::malloc_trim(0);
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let resting = status_kb("VmRSS:").unwrap_or(0);
    let start = Instant::now();
    f()?;
    let seconds = start.elapsed().as_secs_f64();
    let peak = status_kb("VmHWM:").unwrap_or(0);
    Ok((seconds, peak.saturating_sub(resting) * 1024))
}

fn status_kb(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}
