//! The bench's training throughput: inner and meta steps together, as a
//! run takes them, for `sum` and MELTR at `meta_every = 3`: the meta step's
//! training batch drawn from the recent ones (the default); the step's own
//! (`train_batch = "current"`, reusing the inner step's forward); that with
//! `aid.jvp = "one-sided"`, and with `meltr.val_source = "train-batch"` too
//! (no validation forward: the lean meta step); MELTR at `log_every` 1
//! against 50; and MELTR through elementary ops only.

use super::{interleaved, BenchOptions, Variant};
use crate::config::{CombinerKind, Config, JvpMethod, TrainBatch, ValSource};
use crate::engine::trainer::BenchTrainer;
use anyhow::Result;
use tch::Device;

/// A bench trainer of the workload's config, edited.
pub(super) type With<'a> = dyn Fn(&str, Variant, &dyn Fn(&mut Config)) -> Result<BenchTrainer> + 'a;

/// Appends the throughput rows to `lines`.
pub(super) fn section(
    device: Device,
    options: &BenchOptions,
    with: &With,
    lines: &mut Vec<String>,
) -> Result<()> {
    // Throughput: inner + meta steps together, as a run does, in whole
    // meta periods (at least four of them).
    lines.push("training throughput            steps/s   ratio".into());
    let meta_every = 3;
    let steps = options.steps.max(4 * meta_every);
    let steps = steps - steps % meta_every;
    let sum = ThroughputRun {
        kind: CombinerKind::Sum,
        meta_every: 1_000_000,
        ..ThroughputRun::default()
    };
    let meltr = ThroughputRun {
        meta_every,
        ..ThroughputRun::default()
    };
    let runs = [
        sum,
        meltr,
        ThroughputRun {
            train_batch: TrainBatch::Current,
            ..meltr
        },
        ThroughputRun {
            train_batch: TrainBatch::Current,
            jvp: JvpMethod::OneSided,
            ..meltr
        },
        ThroughputRun {
            train_batch: TrainBatch::Current,
            val_source: ValSource::TrainingBatch,
            jvp: JvpMethod::OneSided,
            ..meltr
        },
        ThroughputRun {
            log_every: 1,
            ..meltr
        },
        ThroughputRun {
            elementary: true,
            ..meltr
        },
    ];
    let mut trainers = runs
        .iter()
        .map(|run| {
            let label = format!(
                "run-{}-{}-{}-{}-{}-{}",
                run.kind, run.log_every, run.train_batch, run.val_source, run.jvp, run.elementary
            );
            let variant = Variant {
                elementary: run.elementary,
                ..Variant::default()
            };
            with(&label, variant, &|c| {
                c.combiner.kind = run.kind;
                c.meltr.meta_every = run.meta_every;
                c.meltr.train_batch = run.train_batch;
                c.meltr.val_source = run.val_source;
                c.aid.jvp = run.jvp;
                c.train.log_every = run.log_every;
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let rates: Vec<f64> = interleaved(device, &mut trainers, options.rounds, |t| {
        (0..steps).try_for_each(|_| t.step())
    })?
    .iter()
    .map(|(seconds, _)| steps as f64 / seconds)
    .collect();
    let [sum_rate, meltr_rate, meltr_current, meltr_one_sided, meltr_lean, meltr_log1, meltr_unfused] =
        rates[..]
    else {
        unreachable!("seven runs")
    };
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
        "  meltr, current + one-sided   {meltr_one_sided:>8.1}  {:>6.2}  (× sum; and aid.jvp = one-sided: one no-grad forward)",
        meltr_one_sided / sum_rate
    ));
    lines.push(format!(
        "  meltr, lean meta step        {meltr_lean:>8.1}  {:>6.2}  (× sum; and meltr.val_source = train-batch)",
        meltr_lean / sum_rate
    ));
    lines.push(format!(
        "  meltr, log_every 1 vs 50     {meltr_log1:>8.1}  {:>6.2}  (× log_every 50)",
        meltr_log1 / meltr_rate
    ));
    lines.push(format!(
        "  meltr unfused, meta_every 3  {meltr_unfused:>8.1}  {:>6.2}  (× sum; MELTR's elementary ops only: {:.2} × fused)",
        meltr_unfused / sum_rate,
        meltr_unfused / meltr_rate
    ));
    Ok(())
}

/// One configuration the throughput section times.
#[derive(Clone, Copy)]
struct ThroughputRun {
    kind: CombinerKind,
    meta_every: u64,
    log_every: u64,
    train_batch: TrainBatch,
    val_source: ValSource,
    jvp: JvpMethod,
    /// MELTR through elementary ops only (no fused kernels).
    elementary: bool,
}

impl Default for ThroughputRun {
    fn default() -> Self {
        Self {
            kind: CombinerKind::Meltr,
            meta_every: 3,
            log_every: 50,
            train_batch: TrainBatch::Recent,
            val_source: ValSource::Recent,
            jvp: JvpMethod::Auto,
            elementary: false,
        }
    }
}
