//! What a run settles on its first training batch before step 1:
//! `meltr.loss_scale`'s factors (kept in checkpoints) and the fit of
//! `meltr.init = "sum" | "primary"`; and, with `meltr.val_source = "val"`,
//! that the meta step's validation forward runs; and what `check` reads
//! of the first batches (values, shares, scans, copied losses).
//! Long: each of these runs the same guarded forward of a training batch
//! (seeded, buffers put back), which lives here once.

use super::*;
use crate::meltr::fit::FIT_TOLERANCE;

/// Losses by name with the steps of the scanned batches where something
/// held of them.
pub type Scan = Vec<(String, Vec<u64>)>;

/// What [`Trainer::scan_batches`] found.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Scanned {
    /// Each loss with the steps where it is not finite.
    pub non_finite: Scan,
    /// Each loss with the steps where it is exactly 0.
    pub zero: Scan,
    /// Each scanned batch's losses (the run's order), batch 1's first.
    pub readings: Vec<Vec<f64>>,
}

/// What [`Trainer::first_batch_shares`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct FirstShares {
    /// Each loss's share of the combined gradient, and its own gradient's
    /// norm over the combined one's.
    pub by_loss: Vec<(String, f64, f64)>,
    /// The losses whose own gradient is not finite.
    pub non_finite_gradients: Vec<String>,
    /// The auxiliaries whose gradient is nonzero on none of the parameters
    /// the primary's is (walkthrough L3's loss on a head of its own).
    pub apart_from_primary: Vec<Apart>,
}

/// An auxiliary whose gradient shares no parameter with the primary's.
#[derive(Debug, Clone, PartialEq)]
pub struct Apart {
    /// The auxiliary's name.
    pub name: String,
    /// Whether the parameters it trains still move the primary's value:
    /// they feed the primary's forward behind a stop-gradient (`.detach()`,
    /// a straight-through estimator: walkthrough O3's VQ codebook, which
    /// `check` said could "neither help nor hurt the primary").
    pub feeds_primary: bool,
}

/// The names of the validation losses and metrics not finite in an
/// evaluation.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NonFiniteEvaluation {
    /// Losses whose mean over the split is NaN or infinite.
    pub losses: Vec<String>,
    /// Metrics likewise.
    pub metrics: Vec<String>,
    /// Every metric's value, by name: the untrained model's (walkthrough
    /// N wanted its starting PSNR from `check`).
    pub values: std::collections::BTreeMap<String, f64>,
}

impl Trainer {
    /// The first training batch's losses under the current θ, leaving the
    /// model's buffers (BatchNorm statistics) as they were; called in setup,
    /// under [`crate::nn::rng::global_draws`].
    fn first_batch_losses(&self) -> Result<Tensor> {
        self.batch_losses(1)
    }

    /// Training batch `step`'s losses as its inner forward computes them,
    /// dropout mask included (the caller holds the global draws), without
    /// a graph, the model's buffers put back.
    fn batch_losses(&self, step: u64) -> Result<Tensor> {
        self.batch_losses_drawn(step, Forward::Inner)
    }

    /// [`Self::batch_losses`] with the draws of `forward`.
    fn batch_losses_drawn(&self, step: u64, forward: Forward) -> Result<Tensor> {
        tch::no_grad(|| self.on_batch_drawn(step, forward, |losses| Ok(losses.shallow_clone())))
    }

    /// `then` of training batch `step`'s losses (the run's names, in its
    /// order) as its inner forward computes them, dropout mask included
    /// (the caller holds the global draws); the model's buffers are put
    /// back after `then`, which may differentiate them (BatchNorm's graph
    /// holds its running statistics, which putting them back changes).
    fn on_batch<T>(&self, step: u64, then: impl FnOnce(&Tensor) -> Result<T>) -> Result<T> {
        self.on_batch_drawn(step, Forward::Inner, then)
    }

    /// [`Self::on_batch`] with the draws of `forward` (the meta step's own
    /// forward of the batch draws its dropout masks apart).
    fn on_batch_drawn<T>(
        &self,
        step: u64,
        forward: Forward,
        then: impl FnOnce(&Tensor) -> Result<T>,
    ) -> Result<T> {
        tch::manual_seed(forward_seed(self.config.workload.seed, step, forward));
        let batch = self.workload.train_batch(step)?;
        let buffers = workload::SavedBuffers::take(self.workload.as_ref())?;
        // A failing forward names the batch's rows, and those that fail
        // alone (walkthrough I: a bad label in step 1's shuffled batch was
        // reported with neither, by `check` and `run` alike).
        let out = self
            .workload
            .losses(&batch)
            .with_context(|| self.failed_batch(step, "the forward of training batch"))
            .and_then(|losses| workload::select(&losses, &self.loss_names))
            .and_then(|losses| then(&losses));
        buffers.restore(self.workload.as_ref())?;
        out
    }

    /// Each loss's share of the combined gradient on the first training
    /// batch under equal weights (`sum`'s), by name: how hard each loss
    /// pulls on the model, which its value understates (walkthrough E's
    /// auxiliary at 8x the primary's value, under `check`'s 10x flag,
    /// carried 70–100% of the gradient under `sum`). The buffers are put
    /// back. See [`shares`].
    /// With each, its own gradient's norm over the combined one's: a loss
    /// whose share is near 0 may still pull hard, at right angles to the
    /// rest (walkthrough I's random-label loss read as a constant).
    /// With them, the losses whose own gradient is not finite there (a
    /// finite loss can have one: walkthrough J2's `torch.where` over NaN
    /// inputs trained no step, and `check` said "ok").
    pub fn first_batch_shares(&self) -> Result<FirstShares> {
        let _draws = crate::nn::rng::global_draws();
        let (shares, norms, reaches, gradients) = self.on_batch(1, |losses| {
            let (shares, gradients) =
                shares::per_loss_with_gradients(losses, &losses.ones_like(), &self.theta)?;
            let norms = shares.squared_norms.expect("per_loss takes each gradient");
            let reaches = shares::nonzero_on(&gradients);
            let double = |t: Tensor| Vec::<f64>::try_from(t.to_kind(Kind::Double));
            let norms = Tensor::cat(&[norms, shares.squared_norm.reshape([1])], 0);
            let reaches = Vec::<Vec<bool>>::try_from(reaches.to_device(tch::Device::Cpu))?;
            Ok((double(shares.shares)?, double(norms)?, reaches, gradients))
        })?;
        let apart: Vec<usize> = match reaches.split_first() {
            Some((primary, auxiliary)) if primary.iter().any(|&r| r) => (1..=auxiliary.len())
                .filter(|&k| {
                    let reach = &reaches[k];
                    reach.iter().any(|&r| r) && !reach.iter().zip(primary).any(|(&a, &p)| a && p)
                })
                .collect(),
            _ => Vec::new(),
        };
        let before = match apart.is_empty() {
            true => f64::NAN,
            false => self.batch_losses(1)?.get(0).double_value(&[]),
        };
        let apart_from_primary = apart
            .into_iter()
            .map(|k| {
                Ok(Apart {
                    name: self.loss_names[k].clone(),
                    feeds_primary: self.moves_primary(&gradients[k], before)?,
                })
            })
            .collect::<Result<_>>()?;
        let (own, combined) = norms.split_at(self.loss_names.len());
        let by_loss = self.loss_names.iter().cloned().zip(shares).zip(own);
        Ok(FirstShares {
            apart_from_primary,
            non_finite_gradients: by_loss
                .clone()
                .filter(|(_, norm)| !norm.is_finite())
                .map(|((name, _), _)| name)
                .collect(),
            by_loss: by_loss
                .map(|((name, share), norm)| (name, share, (norm / combined[0]).sqrt()))
                .collect(),
        })
    }

    /// Whether moving θ along `gradient` (a small step, on the tensors it is
    /// nonzero on) changes the first training batch's primary loss from
    /// `before`, its value at θ: the parameters feed the primary's
    /// forward. The caller holds the global draws; θ is put back bit for
    /// bit.
    fn moves_primary(&self, gradient: &[Tensor], before: f64) -> Result<bool> {
        let primary = |trainer: &Self| -> Result<f64> {
            Ok(trainer.batch_losses(1)?.get(0).double_value(&[]))
        };
        let rms = |t: &Tensor| t.square().mean(Kind::Double).sqrt().double_value(&[]);
        let saved: Vec<(usize, Tensor)> = tch::no_grad(|| {
            gradient
                .iter()
                .enumerate()
                .filter(|(_, g)| rms(g) > 0.0)
                .map(|(i, g)| {
                    let theta = &self.theta[i];
                    let saved = theta.copy();
                    // A hundredth of the tensor's own size (or of 1e-3).
                    let step = 1e-2 * rms(theta).max(1e-3) / rms(g);
                    let _ = theta
                        .shallow_clone()
                        .g_add_(&(g.to_kind(theta.kind()) * step));
                    (i, saved)
                })
                .collect()
        });
        let after = primary(self);
        tch::no_grad(|| {
            for (i, saved) in &saved {
                self.theta[*i].shallow_clone().copy_(saved);
            }
        });
        let after = after?;
        Ok((after - before).abs() > MOVED_PRIMARY * before.abs().max(f64::MIN_POSITIVE))
    }

    /// The first training batch's losses by name, as step 1 sees them
    /// (`check` shows them: a badly scaled auxiliary shows before any run).
    pub fn first_batch_values(&self) -> Result<Vec<(String, f64)>> {
        let _draws = crate::nn::rng::global_draws();
        self.first_batch_named()
    }

    /// The workload's training batches an epoch, where it can tell.
    pub fn batches_per_epoch(&self) -> Option<u64> {
        self.workload.batches_per_epoch()
    }

    /// The model's buffers that the first training batch's forward moves
    /// (a step counter, BatchNorm's running statistics), by name; they are
    /// put back.
    pub fn buffers_a_forward_moves(&self) -> Result<Vec<String>> {
        let _draws = crate::nn::rng::global_draws();
        let before = workload::SavedBuffers::take(self.workload.as_ref())?;
        tch::no_grad(|| self.on_batch(1, |_| before.changed(self.workload.as_ref())))
    }

    /// The first loss (the run's order) whose value on the first training
    /// batch the inner forward's draws and the meta step's own forward's
    /// draws of that batch tell apart (dropout, noise), with both values;
    /// a repeat of the inner forward must agree to the bit (a kernel that
    /// is not deterministic draws nothing). The buffers are put back.
    pub fn forward_draws(&self) -> Result<Option<(String, f64, f64)>> {
        let _draws = crate::nn::rng::global_draws();
        let values = |forward| -> Result<Vec<f64>> {
            let losses = self.batch_losses_drawn(1, forward)?;
            Ok(Vec::<f64>::try_from(losses.to_kind(Kind::Double))?)
        };
        let (inner, meta, again) = (
            values(Forward::Inner)?,
            values(Forward::MetaTrain)?,
            values(Forward::Inner)?,
        );
        let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        if bits(&inner) != bits(&again) {
            return Ok(None);
        }
        let differs = (self.loss_names.iter().zip(inner.iter().zip(&meta)))
            .find(|(_, (a, b))| a.to_bits() != b.to_bits());
        Ok(differs.map(|(name, (a, b))| (name.clone(), *a, *b)))
    }

    /// [`Self::first_batch_values`] for a caller that holds the global
    /// draws already (setup).
    fn first_batch_named(&self) -> Result<Vec<(String, f64)>> {
        let values = Vec::<f64>::try_from(self.first_batch_losses()?.to_kind(Kind::Double))?;
        Ok(self.loss_names.iter().cloned().zip(values).collect())
    }

    /// The losses that are not finite on training batches 1..=`batches`
    /// (forwards only, buffers put back), batch 1's from `first` (what
    /// [`Self::first_batch_values`] gave): each loss with the steps where it
    /// is not, in order (`check --batches`; walkthrough O's model gave NaN
    /// on batches without a labelled row, and `check` said "ok"); and each
    /// loss with the steps where it is exactly 0 (walkthrough L's loss that
    /// is 0 on most batches went unsaid).
    pub fn scan_batches(&self, first: &[(String, f64)], batches: u64) -> Result<Scanned> {
        let _draws = crate::nn::rng::global_draws();
        let start = |bad: fn(f64) -> bool| -> Scan {
            first
                .iter()
                .map(|(n, v)| (n.clone(), if bad(*v) { vec![1] } else { vec![] }))
                .collect()
        };
        let not_finite = |v: f64| !v.is_finite();
        let zero = |v: f64| v == 0.0;
        let (mut non_finite, mut zeros) = (start(not_finite), start(zero));
        let mut readings = vec![first.iter().map(|(_, v)| *v).collect::<Vec<f64>>()];
        for step in 2..=batches {
            let values = self.batch_values(step)?;
            readings.push(values.clone());
            for (((_, bad), (_, none)), value) in
                non_finite.iter_mut().zip(zeros.iter_mut()).zip(values)
            {
                if not_finite(value) {
                    bad.push(step);
                }
                if zero(value) {
                    none.push(step);
                }
            }
        }
        non_finite.retain(|(_, steps)| !steps.is_empty());
        zeros.retain(|(_, steps)| !steps.is_empty());
        Ok(Scanned {
            non_finite,
            zero: zeros,
            readings,
        })
    }

    /// Training batch `step`'s losses as numbers (see [`Self::batch_losses`]).
    fn batch_values(&self, step: u64) -> Result<Vec<f64>> {
        let losses = self.batch_losses(step)?;
        Ok(Vec::<f64>::try_from(losses.to_kind(Kind::Double))?)
    }

    /// `readings` (a scan's) with a second batch's losses when the scan
    /// read one batch only, for [`scaled_copy_hints`]: one batch has no
    /// ratio to hold. Not when the second batch holds the first's rows (an
    /// epoch of one batch), nor when its forward fails (the scan says
    /// nothing of batch 2).
    pub fn copy_readings(&self, mut readings: Vec<Vec<f64>>) -> Vec<Vec<f64>> {
        if readings.len() != 1 {
            return readings;
        }
        let sorted = |step| {
            self.workload.batch_rows(step).map(|mut rows| {
                rows.sort_unstable();
                rows
            })
        };
        let first = sorted(1);
        if first.is_some() && first == sorted(2) {
            return readings;
        }
        let _draws = crate::nn::rng::global_draws();
        if let Ok(values) = self.batch_values(2) {
            readings.push(values);
        }
        readings
    }

    /// `what` and step, with the batch's rows, to find a bad sample in the
    /// data, and those that fail on their own (`check --batches` named
    /// neither where the run did, walkthrough A).
    pub(super) fn failed_batch(&self, step: u64, what: &str) -> String {
        let rows = self
            .workload
            .batch_rows(step)
            .map_or(String::new(), |rows| {
                format!(" (training rows {})", workload::listed_rows(&rows))
            });
        let alone = self
            .workload
            .rows_failing_alone(step)
            .map_or(String::new(), |rows| workload::failing_alone_note(&rows));
        format!("{what} {step}{rows}{alone}")
    }

    /// The validation split's losses and metrics that are not finite in
    /// one evaluation, as every `train.eval_every` makes it, by name
    /// (`check --batches`: walkthrough P's masked loss was NaN on the
    /// validation split only, found by the run's evaluation at step 50).
    pub fn non_finite_evaluation(&self) -> Result<NonFiniteEvaluation> {
        let _draws = crate::nn::rng::global_draws();
        let evaluation = self
            .workload
            .evaluate()
            .context("an evaluation of the validation split")?;
        Ok(NonFiniteEvaluation {
            losses: super::eval_finite::non_finite_names(&evaluation.losses),
            metrics: super::eval_finite::non_finite_names(&evaluation.metrics),
            values: evaluation.metrics.clone(),
        })
    }

    /// `meltr.val_source = "val"`: the meta step's validation forward (the
    /// model in training mode), tried once before training starts or
    /// resumes, on the batch a meta step at step 1 would draw, the buffers
    /// put back. A model that cannot take it (BatchNorm on a 1-row split)
    /// failed at the first meta step. (Whole: built before a data-parallel
    /// group is joined, the trainer does not know its rank's share yet.)
    pub(super) fn check_meta_validation_batch(&self) -> Result<()> {
        tch::manual_seed(forward_seed(self.config.workload.seed, 1, Forward::MetaVal));
        tch::no_grad(|| -> Result<()> {
            let batch = self.workload.val_batch(1)?;
            let buffers = workload::SavedBuffers::take(self.workload.as_ref())?;
            let tried = self.workload.loss(&batch, &self.config.workload.primary);
            buffers.restore(self.workload.as_ref())?;
            tried.map(drop)
        })
        .context(
            "meltr.val_source = \"val\": the meta step's validation forward (the model in training mode, \
             on a batch of the validation split) fails, tried before training; meltr.val_source = \"recent\" \
             (the default) validates on recent training batches instead",
        )
    }

    /// `meltr.init = "sum" | "primary"`: fits the combiner to that linear
    /// combiner around the first batch's losses (see
    /// [`crate::meltr::fit::fit_to_linear`]); warns when the fit leaves an
    /// effective weight more than [`FIT_TOLERANCE`] off. With a loss scale,
    /// `sum` is the sum at that scale.
    pub(super) fn start_combiner_linear(&mut self) -> Result<()> {
        let losses = self.first_batch_losses()?;
        let init = self.config.meltr.init;
        let scale = match self.combiner.meltr_net().and_then(|net| net.input_scale()) {
            Some(scale) => Vec::<f64>::try_from(scale.to_kind(Kind::Double))?,
            None => vec![1.0; self.loss_names.len()],
        };
        let target: Vec<f64> = scale
            .iter()
            .enumerate()
            .map(|(k, &c)| {
                if init == MeltrInit::Sum || k == 0 {
                    c
                } else {
                    0.0
                }
            })
            .collect();
        let error = crate::meltr::fit::fit_to_linear(
            self.combiner.as_ref(),
            &losses,
            &target,
            self.config.workload.seed,
        )?;
        // Under loss factors other than 1, `sum` is the sum at that scale.
        let scaled = init == MeltrInit::Sum && scale.iter().any(|&c| c != 1.0);
        let at_scale = if scaled {
            " at meltr.loss_scale's factors (the sum of the losses as MELTR reads them)"
        } else {
            ""
        };
        let (level, message) = if error <= FIT_TOLERANCE {
            (
                Level::Info,
                format!("meltr.init = \"{init}\": MELTR fitted to the `{init}` combiner{at_scale} around the first batch's losses (largest effective-weight error {error:.3})"),
            )
        } else {
            (
                Level::Warn,
                format!("meltr.init = \"{init}\": the fit to the `{init}` combiner left an effective weight {error:.3} off (tolerance {FIT_TOLERANCE}); the run does not start from `{init}`. Use combiner.kind = \"{init}\" for that baseline, or meltr.init = \"pytorch\""),
            )
        };
        self.emit(Record::Event { level, message });
        Ok(())
    }

    /// A loss equal to another to the bit on the first batch, said as a
    /// meta-trained run starts (walkthrough B: `check` said `dup` copied
    /// the primary; the runs' logs did not, while their collapse watch read
    /// the primary's weight alone).
    pub(super) fn note_copied_losses(&mut self) -> Result<()> {
        for message in self.copied_loss_hints()? {
            self.emit(Record::Event {
                level: Level::Warn,
                message,
            });
        }
        Ok(())
    }

    /// [`same_value_pairs`] of the first batch, each confirmed by the two
    /// losses' gradients (the caller holds the global draws): two losses
    /// equal to the bit whose gradients differ are no copy (walkthrough
    /// O3's VQ losses ‖sg[z] − q‖² and ‖z − sg[q]‖², equal in value, one
    /// training the codebook and the other the encoder).
    pub fn copied_loss_hints(&self) -> Result<Vec<String>> {
        let losses = self.first_batch_named()?;
        let pairs = same_value_pairs(&losses);
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let copies = self.on_batch(1, |values| {
            let (_, gradients) =
                shares::per_loss_with_gradients(values, &values.ones_like(), &self.theta)?;
            Ok(pairs
                .iter()
                .map(|&(copy, of)| same_gradient(&gradients[copy], &gradients[of]))
                .collect::<Vec<bool>>())
        })?;
        Ok(pairs
            .iter()
            .zip(copies)
            .filter(|(_, copy)| *copy)
            .map(|(&(copy, of), _)| same_value_hint(&losses, copy, of))
            .collect())
    }

    /// Puts `meltr.loss_scale` in force at the start of a run: the factors
    /// a checkpoint kept, or measured now on the first batch (a fresh run),
    /// or none (`raw`, or a checkpoint from before factors were kept:
    /// measuring under a trained θ would change mid-run the function MELTR
    /// has learned).
    pub(super) fn start_loss_scale(&mut self) -> Result<()> {
        let setting = self.config.meltr.loss_scale;
        let restored = self
            .combiner
            .meltr_net()
            .is_some_and(|net| net.input_scale().is_some());
        let warn = |message: String| Record::Event {
            level: Level::Warn,
            message,
        };
        if restored {
            if setting == LossScale::Raw {
                self.emit(warn(format!(
                    "meltr.loss_scale = \"raw\", but the checkpoint at step {} holds the loss factors this run \
                     started with; they stay in force (the setting is fixed for a run: start a new session to read \
                     the raw losses)",
                    self.step
                )));
            }
            return Ok(());
        }
        if setting == LossScale::Raw {
            return Ok(());
        }
        if self.step > 0 {
            self.emit(warn(format!(
                "meltr.loss_scale = \"{setting}\", but the checkpoint at step {} holds no loss factors (it was \
                 written before they were kept): MELTR reads the raw losses for the rest of this run, as it did \
                 before it",
                self.step
            )));
            return Ok(());
        }
        self.measure_loss_scale()
    }

    /// The losses the factors are measured on: the first training batch's,
    /// or, where its primary is exactly 0 (a masked primary with nothing to
    /// mask there: walkthrough P2's 10%-labelled data read as a
    /// log-likelihood and its losses raw), the first of the next batches
    /// whose primary is not, up to [`SCALE_BATCHES`]; with the batch's step.
    fn loss_scale_batch(&self) -> Result<(u64, Vec<f64>)> {
        let read = |step: u64| -> Result<Vec<f64>> {
            Ok(Vec::<f64>::try_from(
                self.batch_losses(step)?.to_kind(Kind::Double),
            )?)
        };
        let mut first = None;
        for step in 1..=SCALE_BATCHES {
            let values = read(step)?;
            if values.first() != Some(&0.0) {
                return Ok((step, values));
            }
            first.get_or_insert(values);
        }
        Ok((1, first.expect("SCALE_BATCHES >= 1")))
    }

    /// Measures the factors on the first batch (see
    /// [`Self::loss_scale_batch`]), puts them in force, and says which
    /// losses they change.
    fn measure_loss_scale(&mut self) -> Result<()> {
        let (batch, values) = self.loss_scale_batch()?;
        let on = match batch {
            1 => "the first batch".to_string(),
            step => format!(
                "training batch {step}, the first whose primary is not exactly 0 (a masked primary with nothing \
                 to mask on the batches before)"
            ),
        };
        let meltr = &self.config.meltr;
        let factors = loss_scale_factors(&values, meltr.loss_scale, meltr.max_loss_ratio);
        let changed: Vec<String> = self
            .loss_names
            .iter()
            .zip(&values)
            .zip(&factors)
            .filter(|(_, &f)| f != 1.0)
            .map(|((name, value), &f)| {
                // Signed: a negative loss beside a positive primary read
                // `0.729x` (walkthrough M1); the factor is the sizes'.
                let ratio = crate::numfmt::readable(value / values[0]);
                format!("{name} ({ratio}x the primary) x{}", factor_text(f))
            })
            .collect();
        let setting = match meltr.loss_scale {
            LossScale::Capped => format!(
                "meltr.loss_scale = \"capped\" (max_loss_ratio {})",
                meltr.max_loss_ratio
            ),
            other => format!("meltr.loss_scale = \"{other}\""),
        };
        // Set even when every factor is 1 (exact): a checkpoint keeps them,
        // and a resume does not measure again under a trained θ.
        if let Some(net) = self.combiner.meltr_net_mut() {
            net.set_input_scale(Some(Tensor::from_slice(&factors)));
        }
        // The trace gets them as MELTR holds them (φ's kind).
        if let (Some(tracer), Some(scale)) = (
            &self.tracer,
            self.combiner.meltr_net().and_then(|n| n.input_scale()),
        ) {
            tracer.loss_scale(scale)?;
        }
        let message = match (changed.is_empty(), meltr.loss_scale) {
            (_, LossScale::Capped | LossScale::Primary) if values[0] == 0.0 => format!(
                "{setting}: the primary is exactly 0 on the first {SCALE_BATCHES} training batches, which sets \
                 no scale for the other losses: MELTR reads every loss raw, as the public code does"
            ),
            (_, LossScale::Capped | LossScale::Primary) if primary_gives_no_scale(&values) => format!(
                "{setting}: the primary's first value ({}) is not above 0 (a log-likelihood?), which sets no \
                 scale for the other losses: MELTR reads every loss raw, as the public code does",
                crate::numfmt::readable(values[0])
            ),
            // The default guard says nothing where it changes nothing.
            (true, LossScale::Capped) => return Ok(()),
            (true, _) => format!("{setting}: every loss is read as it is on {on}"),
            (false, _) => format!(
                "{setting}: MELTR reads {} (measured on {on}; its effective weights stay weights on the raw \
                 losses)",
                changed.join(", ")
            ),
        };
        self.emit(Record::Event {
            level: Level::Info,
            message,
        });
        Ok(())
    }

    /// The factors in force as one `[K + 1]` tensor (a leading 1, or all
    /// zeros for none), for rank 0 to broadcast (see [`Self::set_loss_scale_slot`]).
    pub(super) fn loss_scale_slot(&self) -> Option<Tensor> {
        let net = self.combiner.meltr_net()?;
        let like = net.head_weight();
        let options = (like.kind(), like.device());
        Some(match net.input_scale() {
            Some(scale) => Tensor::cat(
                &[Tensor::ones([1], options), scale.to_device(like.device())],
                0,
            ),
            None => Tensor::zeros([net.sizes().losses + 1], options),
        })
    }

    /// Puts in force the factors of a slot from [`Self::loss_scale_slot`].
    pub(super) fn set_loss_scale_slot(&mut self, slot: &Tensor) {
        if let Some(net) = self.combiner.meltr_net_mut() {
            let k = net.sizes().losses;
            let scale = (slot.double_value(&[0]) == 1.0).then(|| slot.narrow(0, 1, k).copy());
            net.set_input_scale(scale);
        }
    }
}

fn factor_text(f: f64) -> String {
    if (1e-3..1e3).contains(&f) {
        crate::numfmt::fixed(f, 4)
    } else {
        format!("{f:.2e}")
    }
}

/// The factors of `scale` from the first batch's loss values (primary
/// first): `primary`: `|l_primary| / |l_k|`; `capped`: that times
/// `max_ratio` where below 1, else 1; `raw`: 1. A zero or non-finite loss
/// keeps factor 1, as does every loss when the primary's is not above 0
/// (see [`primary_gives_no_scale`]); factors stay within [1e-6, 1e6].
/// How many training batches [`Trainer::loss_scale_batch`] reads at most
/// for a primary that is not exactly 0.
const SCALE_BATCHES: u64 = 16;

fn loss_scale_factors(values: &[f64], scale: LossScale, max_ratio: f64) -> Vec<f64> {
    let primary = values.first().copied().unwrap_or(0.0);
    values
        .iter()
        .map(|v| {
            let to_primary = primary / v.abs();
            if !(primary > 0.0 && to_primary.is_finite() && to_primary > 0.0) {
                return 1.0;
            }
            let factor = match scale {
                LossScale::Raw => 1.0,
                LossScale::Primary => to_primary,
                LossScale::Capped => (to_primary * max_ratio).min(1.0),
            };
            factor.clamp(1e-6, 1e6)
        })
        .collect()
}

/// Whether the primary's first value gives no scale to read the others
/// at: 0 or below, a log-likelihood's value (walkthrough H1's Gaussian
/// negative log-likelihood at −2.5 on the first batch read a helpful
/// auxiliary at a fifteenth), whose size is its constant's, not its
/// gradient's. The losses are then read raw, as the public code does.
pub fn primary_gives_no_scale(values: &[f64]) -> bool {
    values.first().is_some_and(|&v| v.is_finite() && v <= 0.0)
}

/// Each loss equal to the bit to an earlier one on the first batch (not 0,
/// finite), with the first such: `(copy, of)`. A copy of another loss
/// (walkthrough Q's `dup_primary` was the primary's tensor, unsaid, while
/// MELTR weighs the two as two), where [`same_gradient`] agrees.
fn same_value_pairs(losses: &[(String, f64)]) -> Vec<(usize, usize)> {
    losses
        .iter()
        .enumerate()
        .filter_map(|(i, (_, value))| {
            // A masked loss is 0 on a batch with nothing to mask: no copy.
            if *value == 0.0 || !value.is_finite() {
                return None;
            }
            let j = losses[..i]
                .iter()
                .position(|(_, v)| v.to_bits() == value.to_bits())?;
            Some((i, j))
        })
        .collect()
}

/// What is said of loss `copy`, equal to loss `of` (a copy).
fn same_value_hint(losses: &[(String, f64)], copy: usize, of: usize) -> String {
    let role = if of == 0 {
        "the primary: a learned combiner (MELTR, `mlp`, `uncertainty`) weighs the two apart, and MELTR's \
         collapse watch counts the copy's weight with the primary's once two meta steps read it alike"
    } else {
        "that loss: a learned combiner (MELTR, `mlp`, `uncertainty`) weighs the two apart"
    };
    format!(
        "{} equals {} to the bit on the first batch ({}): a copy of {role}",
        losses[copy].0,
        losses[of].0,
        crate::numfmt::readable(losses[copy].1)
    )
}

/// Whether two gradients are one, up to rounding (a copy's is the same
/// tensor; a loss computed another way may differ in the last bits).
fn same_gradient(a: &[Tensor], b: &[Tensor]) -> bool {
    let difference: Vec<Tensor> = a.iter().zip(b).map(|(a, b)| a - b).collect();
    let squared = |g: &[Tensor]| crate::nn::autograd::dot(g, g).double_value(&[]);
    let largest = squared(a).max(squared(b));
    squared(&difference) <= SAME_GRADIENT_TOLERANCE.powi(2) * largest
}

/// How far (relative) the primary's value must move for
/// [`Trainer::moves_primary`]: far above rounding, far below what a
/// hundredth of a parameter tensor's size moves a loss that reads it.
const MOVED_PRIMARY: f64 = 1e-7;

/// How far apart (relative, in norm) two losses' gradients may be and
/// still be a copy's.
const SAME_GRADIENT_TOLERANCE: f64 = 1e-4;

/// Losses that were one fixed multiple of an earlier loss on every
/// training batch read (two at least, each loss finite, not 0, and the
/// earlier one not the same on all: a loss that depends on no data, such
/// as a weight penalty, is in a fixed ratio to any other such): a scaled
/// copy, the same gradient scaled (walkthroughs G2 and G6: `0.3 ×` the
/// primary and `3 ×` an auxiliary went unsaid by `check`). A copy to the
/// bit on the first batch is [`Trainer::copied_loss_hints`]'s.
pub fn scaled_copy_hints(names: &[String], readings: &[Vec<f64>]) -> Vec<String> {
    use crate::engine::collapse::RATIO_TOLERANCE;
    if readings.len() < 2 {
        return Vec::new();
    }
    let column = |k: usize| readings.iter().map(move |r| r[k]);
    let usable = |k: usize| column(k).all(|v| v.is_finite() && v != 0.0);
    let mut hints = Vec::new();
    for j in 1..names.len() {
        let first_bits = |k: usize| readings[0][k].to_bits();
        if (0..j).any(|i| first_bits(i) == first_bits(j)) {
            continue;
        }
        let copied = (0..j).find(|&i| {
            if !usable(i) || !usable(j) {
                return false;
            }
            let first = readings[0][i];
            let varies = column(i).any(|v| (v - first).abs() > 1e-6 * first.abs());
            let ratio = readings[0][j] / first;
            varies
                && readings
                    .iter()
                    .all(|r| (r[j] / r[i] - ratio).abs() <= RATIO_TOLERANCE * ratio.abs())
        });
        let Some(i) = copied else {
            continue;
        };
        let ratio = readings[0][j] / readings[0][i];
        let what = match i {
            0 => "a scaled copy of the primary: a learned combiner (MELTR, `mlp`, `uncertainty`) weighs the two \
                  apart, and MELTR's collapse watch counts the copy's weight with the primary's once two meta \
                  steps read it alike"
                .to_string(),
            _ => format!(
                "a scaled copy of that loss: under `sum` its gradient trains at weight {} (1 + {}), and a learned \
                 combiner (MELTR, `mlp`, `uncertainty`) weighs the two apart",
                crate::numfmt::readable(1.0 + ratio),
                crate::numfmt::readable(ratio)
            ),
        };
        hints.push(format!(
            "{} has been {}x {} on each of the {} training batches read, the same gradient scaled: {what}",
            names[j],
            crate::numfmt::readable(ratio),
            names[i],
            readings.len()
        ));
    }
    hints
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Losses equal to the bit to an earlier one are paired with it (0 is
    /// no copy: a masked loss with nothing to mask), and said.
    #[test]
    fn a_loss_equal_to_another_on_the_first_batch_is_paired_and_said() {
        let losses = [
            ("cls".to_string(), 1.598),
            ("dup".to_string(), 1.598),
            ("aux".to_string(), 0.5),
            ("aux_copy".to_string(), 0.5),
            ("near".to_string(), 1.5980001),
            ("masked".to_string(), 0.0),
            ("masked_too".to_string(), 0.0),
        ];
        assert_eq!(same_value_pairs(&losses), [(1, 0), (3, 2)]);
        assert!(same_value_hint(&losses, 1, 0).starts_with(
            "dup equals cls to the bit on the first batch (1.598): a copy of the primary"
        ));
        assert!(same_value_hint(&losses, 3, 2).starts_with("aux_copy equals aux to the bit"));
    }

    /// A loss in a fixed ratio to an earlier one on every batch is said,
    /// against the earliest; a ratio that moves, a copy to the bit, a loss
    /// of no data (constant) and one batch alone are not.
    #[test]
    fn scaled_copies_are_found_over_batches() {
        let names: Vec<String> = ["ce", "half", "rel", "rel3", "l2", "l2b", "same"]
            .map(String::from)
            .to_vec();
        let reading = |ce: f64, rel: f64| vec![ce, 0.3 * ce, rel, 3.0 * rel, 0.01, 0.02, ce];
        let readings = vec![reading(2.0, 0.7), reading(1.6, 0.9), reading(1.9, 0.4)];
        let hints = scaled_copy_hints(&names, &readings);
        assert_eq!(hints.len(), 2, "{hints:#?}");
        assert!(
            hints[0].starts_with("half has been 0.3x ce on each of the 3 training batches read")
                && hints[0].contains("a scaled copy of the primary"),
            "{hints:#?}"
        );
        assert!(
            hints[1].starts_with("rel3 has been 3x rel on each")
                && hints[1].contains("trains at weight 4 (1 + 3)"),
            "{hints:#?}"
        );
        assert!(scaled_copy_hints(&names, &readings[..1]).is_empty());
        // Off by more than the tolerance on one batch: no copy.
        let mut off = readings.clone();
        off[2][1] *= 1.001;
        assert_eq!(scaled_copy_hints(&names, &off).len(), 1);
        // A masked loss at 0 on a batch: not read.
        off[1][3] = 0.0;
        assert!(scaled_copy_hints(&names, &off).is_empty());
    }

    #[test]
    fn loss_scale_factors_bring_each_loss_to_the_primarys_size() {
        let values = [2.0, 400.0, -0.5, 2.0, 50.0];
        assert_eq!(
            loss_scale_factors(&values, LossScale::Primary, 50.0),
            [1.0, 0.005, 4.0, 1.0, 0.04]
        );
        // Capped: only the loss past 50x the primary's changes, to 50x.
        assert_eq!(
            loss_scale_factors(&values, LossScale::Capped, 50.0),
            [1.0, 0.25, 1.0, 1.0, 1.0]
        );
        assert_eq!(loss_scale_factors(&values, LossScale::Raw, 50.0), [1.0; 5]);
        // A primary below 0 (a log-likelihood) sets no scale: read raw.
        let below = [-2.5, 400.0, 9.0];
        assert!(primary_gives_no_scale(&below) && !primary_gives_no_scale(&values));
        for scale in [LossScale::Primary, LossScale::Capped] {
            assert_eq!(loss_scale_factors(&below, scale, 50.0), [1.0; 3]);
        }
        // Nothing to scale by: a zero, infinite or NaN loss keeps factor 1,
        // as does every loss when the primary is zero; the rest are clamped.
        assert_eq!(
            loss_scale_factors(
                &[2.0, 0.0, f64::INFINITY, f64::NAN, 1e-9],
                LossScale::Primary,
                50.0
            ),
            [1.0, 1.0, 1.0, 1.0, 1e6]
        );
        assert_eq!(
            loss_scale_factors(&[0.0, 3.0], LossScale::Primary, 50.0),
            [1.0, 1.0]
        );
    }
}
