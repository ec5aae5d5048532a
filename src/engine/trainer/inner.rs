//! The inner step: θ (and any inner-trained combiner parameters) on the
//! combined loss, with the non-finite guard on the device, and the logged
//! step's weights and gradient shares.

use super::data_parallel::{Extra, InnerGrads};
use super::inner_words::{auxiliary_climb_event, gradient_owner_event, Standing};
use super::restore::{ReadPoint, READ_EVERY};
use super::*;

impl Trainer {
    pub(super) fn train_step(&mut self) -> Result<()> {
        self.apply_due_restore();
        self.step += 1;
        // Phases (`meltr-tui bench`; marks do nothing otherwise).
        self.phase_clock.start();
        self.inner.lr = self.config.train.lr_at(self.step);
        let batch = self.shard(self.workload.train_batch(self.step)?)?;
        self.phase_clock.mark("batch");
        // Randomness in the model (dropout) drawn from (seed, step): the
        // same after a resume, and in the PyTorch replay of a trace.
        let seed = forward_seed(self.config.workload.seed, self.step, Forward::Inner);
        // The buffers before this forward, put back if the update is skipped.
        let buffers_before = workload::SavedBuffers::take(self.workload.as_ref())?;
        let forward = seeded(seed, || self.workload.losses(&batch)).and_then(|named| {
            let losses = workload::select(&named, &self.loss_names)?;
            Ok((named, losses))
        });
        let (named, losses) =
            forward.with_context(|| self.failed_batch(self.step, "the training batch of step"))?;
        // Losses that are constants on this batch (a masked loss's
        // `zeros(())` on a batch without what it masks), by position.
        let constants: Vec<i64> = (0..self.loss_names.len() as i64)
            .filter(|&k| {
                named
                    .get(&self.loss_names[k as usize])
                    .is_some_and(|l| !l.requires_grad())
            })
            .collect();
        // Differentiated once (the meta step builds its own graphs).
        let total = self
            .combiner
            .combine_with(&losses, combiner::Derivatives::FirstOrder);
        // A logging step whose losses were not finite hands its train line
        // to the next step (the curve keeps no gap of two periods, and a
        // streak of skips is flushed, and its limit checked, every step).
        // The last step too: a run of 5 steps at log_every 10 logged no
        // train line at all, and figures and tables of it failed. (Shares,
        // a second backward, keep to the schedule.)
        let scheduled = self.step.is_multiple_of(self.config.train.log_every);
        let on_schedule = scheduled || self.step == self.config.train.steps;
        let log_now = on_schedule || self.train_line_owed;
        self.phase_clock.mark("forward");

        // Non-finite losses or gradients skip the update on the device; the
        // host learns which steps were skipped at the next flush (no
        // per-step host sync).
        let losses_finite = total.isfinite().logical_and(&losses.isfinite().all());
        // Weights and shares at the losses this update uses (before the
        // step changes any inner-trained combiner parameters). The shares'
        // double backward needs the weights first; without shares they
        // come from the inner backward itself (`Extra::Weights`: one more
        // input of its reverse pass instead of a backward of their own).
        let shares_now = scheduled && self.config.train.shares_at(self.step);
        let fold_weights = log_now && !shares_now && losses.requires_grad();
        // Read at every READ_EVERYth step too: a collapse restore takes
        // effect at fixed points, whatever the log interval (`restore.rs`).
        if log_now || self.step.is_multiple_of(READ_EVERY) {
            self.flush_pending_at(ReadPoint::before_meta(self.step))?;
        }
        let mut logged = if log_now {
            let weights = if fold_weights {
                None
            } else {
                Some(combiner::effective_weights(
                    self.combiner.as_ref(),
                    &losses,
                )?)
            };
            let shares = match &weights {
                Some(weights) if shares_now => Some(self.gradient_shares(&losses, weights)?),
                _ => None,
            };
            self.phase_clock.mark("weights + shares");
            Some((weights, shares))
        } else {
            None
        };
        // `meltr.train_batch = "current"`: the meta step runs before this
        // update, on this batch, and reuses this forward (its graph kept
        // through the inner backward).
        let reuse_forward = self.meta_due() && self.config.meltr.train_batch == TrainBatch::Current;
        // θ's gradient: from the shares' backward if it gave one, and, with
        // data-parallel ranks, the mean of all ranks' shards (a step skipped
        // everywhere when any rank's losses are not finite).
        let extra = match logged.as_mut() {
            _ if fold_weights => Extra::Weights(losses.shallow_clone()),
            Some((_, Some(shares))) => shares
                .combined
                .take()
                .map_or(Extra::None, Extra::FromShares),
            _ => Extra::None,
        };
        let InnerGrads {
            mut grads,
            reached,
            finite: losses_finite,
            weights: folded_weights,
        } = self.averaged_backward(&total, extra, reuse_forward, &losses_finite)?;
        let norm = clip_grad_norm(&mut grads, self.config.train.grad_clip);
        let ok = losses_finite.logical_and(&norm.isfinite());
        self.phase_clock.mark("clip + guard");
        self.current_batch = Some((self.step, batch));
        if reuse_forward {
            self.meta_step(Some((&losses, &buffers_before)))?;
        }
        if reuse_forward {
            // The meta step restarted the clock.
            self.phase_clock.start();
        }
        if self.group.is_none() {
            // A parameter this step's losses do not reach sits it out, as
            // PyTorch's optimizers skip one whose `.grad` is `None`.
            self.inner
                .step_reached(&self.inner_params, &grads, Some(&ok), &reached);
        } else {
            // Ranks may reach different parameters; every one takes the
            // averaged gradient, and those no loss reached on the first
            // batch are put back until one does.
            let unreached_before = self.unreached_before_update();
            self.inner.step_if(&self.inner_params, &grads, Some(&ok));
            self.put_back_unreached(unreached_before);
        }
        // (After a reused forward's meta step: a skipped update discards its
        // buffer moves too, those of a batch that was not finite here.)
        buffers_before.restore_unless(self.workload.as_ref(), Some(&ok))?;
        if let Some(why) = self.inner.fused_failure.take() {
            self.note_unfused("the model's", &why);
        }
        self.phase_clock.mark("optimizer");
        let losses = losses.detach();
        if let Some(tracer) = &mut self.tracer {
            tracer.inner_losses(&losses);
        }
        // A loss that is a constant on this batch (a masked loss's batch
        // without it) keeps its last value: MELTR's transform at its 0
        // spanned 0 to 2e-6, a flat line (walkthrough M's `flag`). A loss
        // that reached 0 with a gradient (a hinge) is read as it is.
        self.last_losses = Some(match &self.last_losses {
            Some(previous) => {
                let kept = losses.where_self(&losses_finite, previous);
                for &k in &constants {
                    kept.get(k).copy_(&previous.get(k));
                }
                kept
            }
            None => losses.shallow_clone(),
        });
        self.pending_steps.push(PendingStep {
            step: self.step,
            ok,
            losses_finite,
            losses: losses.shallow_clone(),
        });

        // Decided alike on every rank (the values join a collective).
        if logged.is_none() && self.step == 1 {
            self.unlogged_start = Some((self.step, losses.shallow_clone()));
        }
        if let Some((weights, shares)) = logged {
            let weights = weights
                .or(folded_weights)
                .context("the inner backward returned no effective weights")?;
            let mut parts = vec![
                losses.to_kind(Kind::Double),
                weights.to_kind(Kind::Double),
                total.detach().to_kind(Kind::Double).reshape([1]),
            ];
            if let Some(shares) = &shares {
                parts.push(shares.squared_norm.to_kind(Kind::Double).reshape([1]));
                parts.push(shares.shares.to_kind(Kind::Double));
            }
            // Last, so the indices above stay as they are.
            if let Some((_, start)) = &self.unlogged_start {
                parts.push(start.to_kind(Kind::Double));
            }
            let values = Tensor::cat(&parts, 0);
            // What every rank logged, averaged (rank 0 writes it).
            self.average_over_ranks(std::slice::from_ref(&values))?;
            let values = Self::host_values(&values);
            let k = self.loss_names.len();
            let pick = |range: std::ops::Range<usize>| -> Named {
                self.loss_names
                    .iter()
                    .cloned()
                    .zip(values[range].iter().copied())
                    .collect()
            };
            // Not computed at this step, or a zero or non-finite combined
            // gradient: no shares.
            let squared_norm = match shares.is_some() {
                true => values[2 * k + 1],
                false => 0.0,
            };
            let shares = if squared_norm > 0.0 && squared_norm.is_finite() {
                pick(2 * k + 2..3 * k + 2)
            } else {
                Named::new()
            };
            // A skipped (non-finite) step has no train line (the next
            // step logs instead); its event comes with the next flush.
            if values[..=2 * k]
                .iter()
                .chain(shares.values())
                .any(|v| !v.is_finite())
            {
                self.train_line_owed = true;
                self.phase_clock.mark("log");
                return self.finish_step(reuse_forward);
            }
            self.train_line_owed = false;
            let (logged_losses, logged_weights) = (pick(0..k), pick(k..2 * k));
            if let Some((step, _)) = self.unlogged_start.take() {
                self.observe_unlogged_start(step, &values[values.len() - k..]);
            }
            if !std::mem::replace(&mut self.loss_scales_checked, true) {
                let kind = self.config.combiner.kind;
                if kind == CombinerKind::Meltr && self.config.meltr.loss_scale == LossScale::Raw {
                    let residual = self.config.meltr.init == MeltrInit::Residual;
                    if let Some(message) =
                        far_larger_losses(&self.loss_names, &values[..k], residual)
                    {
                        self.emit(Record::Event {
                            level: Level::Warn,
                            message,
                        });
                    }
                }
                if kind == CombinerKind::Sum {
                    if let Some(message) = far_larger_under_sum(&self.loss_names, &values[..k]) {
                        self.emit(Record::Event {
                            level: Level::Info,
                            message,
                        });
                    }
                }
                // Weights near 1 at the start: a user's `weights` may
                // already scale the loss up.
                if matches!(
                    kind,
                    CombinerKind::Sum | CombinerKind::Meltr | CombinerKind::Mlp
                ) {
                    if let Some(message) = far_smaller_losses(&self.loss_names, &values[..k]) {
                        self.emit(Record::Event {
                            level: Level::Info,
                            message,
                        });
                    }
                }
            }
            if let Some(rise) = self.loss_rise.observe(self.step, values[0]) {
                let message = self.loss_rise_event(rise, &values[k..2 * k]);
                self.emit(Record::Event {
                    level: Level::Warn,
                    message,
                });
            }
            for aux in 1..k {
                // Climbing under a positive weight is the model's business
                // (an overfit auxiliary); under a negative one the combiner
                // asks for it.
                let watch = &mut self.auxiliary_rise[aux - 1];
                if let Some(climb) =
                    watch.observe(self.step, values[aux], values[k + aux], values[k])
                {
                    let message = auxiliary_climb_event(&self.loss_names[aux], climb);
                    self.emit(Record::Event {
                        level: Level::Warn,
                        message,
                    });
                }
            }
            let primary = &self.config.workload.primary;
            // The watch counts the copies the meta steps have read (a `sum`
            // run's has none) with the primary; the line logs each loss's
            // own share, under every combiner alike (walkthrough Z1's
            // `share/dup` was in its `sum` runs' lines, not MELTR's).
            let copies = self.collapse.copies.copies();
            let merged = shares_with_copies(&shares, &self.loss_names, &copies);
            if let Some(owner) = self.gradient_owner.observe(self.step, &merged, primary) {
                // Weights and losses now, primary's and owner's: whether
                // MELTR's weights give it the gradient, or its scale does.
                let at = self.loss_names.iter().position(|n| *n == owner.loss);
                let now = at.map(|at| Standing {
                    weights: (values[k], values[k + at]),
                    losses: (values[0], values[at]),
                    primary_first: self.loss_rise.first(),
                    owner_first: at
                        .checked_sub(1)
                        .and_then(|aux| self.auxiliary_rise.get(aux))
                        .and_then(|rise| rise.first()),
                });
                // Whether MELTR reads the owner rescaled (its factor not 1).
                let rescaled = self
                    .combiner
                    .meltr_net()
                    .and_then(|n| n.input_scale())
                    .is_some_and(|s| {
                        Vec::<f64>::try_from(s.to_kind(Kind::Double))
                            .is_ok_and(|f| at.and_then(|at| f.get(at)).is_some_and(|&f| f != 1.0))
                    });
                let kind = (self.config.combiner.kind, rescaled);
                let message = gradient_owner_event(&owner, primary, kind, now);
                self.emit(Record::Event {
                    level: Level::Warn,
                    message,
                });
            }
            // Read only for a line that is written (cheap: NVML's counters).
            let gpu = self.read_gpu();
            self.emit(Record::Train {
                losses: logged_losses,
                total: values[2 * k],
                weights: logged_weights,
                lr: self.inner.lr,
                shares,
                gpu,
            });
        }
        self.phase_clock.mark("log");
        self.finish_step(reuse_forward)
    }

    /// The climb watches' first reading, from a step that logged no line.
    /// It says nothing itself: one reading is no climb, and an auxiliary's
    /// weight there is unknown.
    fn observe_unlogged_start(&mut self, step: u64, losses: &[f64]) {
        let _ = self.loss_rise.observe(step, losses[0]);
        for (watch, &loss) in self.auxiliary_rise.iter_mut().zip(&losses[1..]) {
            watch.observe_unweighted(step, loss);
        }
    }

    /// What a climb of the primary's training loss means, with the
    /// effective weights now (`weights`, primary first).
    fn loss_rise_event(&self, rise: crate::engine::loss_rise::Rise, weights: &[f64]) -> String {
        let primary = &self.loss_names[0];
        let cause = if self.config.combiner.kind == CombinerKind::Meltr {
            let now: Vec<String> = self
                .loss_names
                .iter()
                .zip(weights)
                .map(|(name, w)| format!("{name} {w:+.2e}"))
                .collect();
            format!(
                "MELTR's effective weights now: {}. If they drive it, the collapse watch says so once they stay low; \
                 meltr.on_collapse = \"restore\" puts φ back then, a lower meltr.meta_lr or a higher meltr.gamma slows them; \
                 if the inner steps do, lower train.lr",
                now.join(", ")
            )
        } else {
            "lower train.lr, or clip harder (train.grad_clip)".to_string()
        };
        // A loss that never fell below its first value has no fall to give back.
        let first = match rise.first > rise.lowest {
            true => "giving back over half of its fall from its first value",
            false => "above its first value",
        };
        format!(
            "the primary's training loss ({primary}) has climbed to {:.4} (smoothed), {}, \
             {first}, {:.4} at step {}: the model is moving away from its own task. {cause}",
            rise.now,
            rise.past_lowest(),
            rise.first,
            rise.first_step
        )
    }

    /// Says once that an optimizer left ATen's fused kernel for the
    /// elementwise update (same formulas, slower).
    pub(super) fn note_unfused(&mut self, whose: &str, why: &str) {
        self.emit(Record::Event {
            level: Level::Info,
            message: format!("{whose} optimizer updates with elementwise ops from now on: the fused Adam kernel failed ({why})"),
        });
    }

    /// Each loss's share of the combined gradient (see [`shares`]), by a
    /// double backward unless one has failed in this run (a model without
    /// second derivatives, or out of memory).
    fn gradient_shares(&mut self, losses: &Tensor, weights: &Tensor) -> Result<Shares> {
        if self.shares_per_loss.is_none() {
            match shares::by_double_backward(losses, weights, &self.theta) {
                Ok(shares) => return Ok(shares),
                Err(e) => {
                    self.shares_per_loss = Some(format!("{e:#}"));
                    if !std::mem::replace(&mut self.shares_fallback_said, true) {
                        self.emit(Record::Event {
                            level: Level::Info,
                            message: format!("{SHARES_PER_LOSS_FROM_NOW}{e:#})"),
                        });
                    }
                }
            }
        }
        shares::per_loss(losses, weights, &self.theta)
    }

    /// Copies of the parameters no loss reached on the first batch, before
    /// a data-parallel update ([`Trainer::put_back_unreached`]); none for
    /// most models.
    fn unreached_before_update(&self) -> Vec<Tensor> {
        tch::no_grad(|| {
            self.unreached
                .iter()
                .map(|&i| self.inner_params[i].copy())
                .collect()
        })
    }

    /// With data-parallel ranks (whose updates take the averaged gradient
    /// of every parameter), puts back each parameter no gradient has
    /// reached yet (its second moment all zero): the zero gradient it gets
    /// moves it only by weight decay, and PyTorch's optimizers skip a
    /// parameter whose `.grad` is `None`. Once a gradient reaches it, it
    /// trains as any other. Decided on the device, without a host sync.
    fn put_back_unreached(&self, before: Vec<Tensor>) {
        tch::no_grad(|| {
            for (&i, before) in self.unreached.iter().zip(before) {
                let never_reached = self.inner.v[i].eq(0.0).all();
                let param = &self.inner_params[i];
                let kept = before.where_self(&never_reached, param);
                param.shallow_clone().copy_(&kept);
            }
        });
    }
}

/// The start of the event said when the shares' double backward failed;
/// a resume reads it back, so as not to say it again.
pub(super) const SHARES_PER_LOSS_FROM_NOW: &str =
    "gradient shares take one backward pass per loss from now on: their double backward failed (";

/// An auxiliary loss at least this many times the primary's value is named
/// at the run's first train line (the suite's badly scaled losses are
/// within 25x; one about 2000x took MELTR over in a held-out walkthrough).
pub(super) const FAR_LARGER_LOSS: f64 = 100.0;

/// The warning for auxiliary losses [`FAR_LARGER_LOSS`] times the primary's
/// value or more (`values`: primary first), if any; `residual`: MELTR
/// already starts as a correction to `sum`.
pub(super) fn far_larger_losses(
    names: &[String],
    values: &[f64],
    residual: bool,
) -> Option<String> {
    let large = far_larger(names, values);
    let remedy = if residual {
        "set meltr.loss_scale = \"capped\" (the default) or scale it down in the model"
    } else {
        "set meltr.loss_scale = \"capped\" (the default), scale it down in the model or set meltr.init = \"residual\""
    };
    (!large.is_empty()).then(|| {
        format!(
            "auxiliary loss {} at least {FAR_LARGER_LOSS:.0}x the primary's value ({} = {:.3e}): {RAW_LOSS_VALUES} \
             (the primary's effective weight then never rises). If the primary's weight stays near 0 or below, {remedy}",
            large.join(", "),
            names[0],
            values[0]
        )
    })
}

/// Auxiliary losses at least [`FAR_LARGER_LOSS`] times the primary's value
/// (`values`: primary first), as `name (value, ratio)`.
fn far_larger(names: &[String], values: &[f64]) -> Vec<String> {
    let primary = values.first().map_or(0.0, |v| v.abs());
    names
        .iter()
        .zip(values)
        .skip(1)
        .filter(|(_, v)| v.abs() >= FAR_LARGER_LOSS * primary && primary > 0.0)
        .map(|(name, v)| format!("{name} ({v:.3e}, {:.0}x)", v.abs() / primary))
        .collect()
}

/// The note under `sum` for auxiliary losses [`FAR_LARGER_LOSS`] times the
/// primary's value or more: at weight 1 such a loss likely takes most of
/// the gradient (a walkthrough's ×100 loss took 99.8% of it, unsaid).
pub(super) fn far_larger_under_sum(names: &[String], values: &[f64]) -> Option<String> {
    let large = far_larger(names, values);
    let pronouns = match large.len() {
        1 => ("it likely takes most of the gradient", "it", "it"),
        _ => ("they likely take most of the gradient", "them", "they"),
    };
    (!large.is_empty()).then(|| {
        format!(
            "at the first logged step, {} at least {FAR_LARGER_LOSS:.0}x the primary's value ({} = {:.3e}): \
             under `sum` {} (the contributions pane's gradient shares and the export's \
             share/ columns show it); scale {} down in the model, or weigh {} with combiner.kind = \"weights\", if {} should count less",
            losses_are(&large),
            names[0],
            values[0],
            pronouns.0,
            pronouns.1,
            pronouns.1,
            pronouns.2,
        )
    })
}

/// `auxiliary loss a (…) is` or `auxiliary losses a (…), b (…) are`.
fn losses_are(listed: &[String]) -> String {
    match listed {
        [one] => format!("auxiliary loss {one} is"),
        many => format!("auxiliary losses {} are", many.join(", ")),
    }
}

/// The note for auxiliary losses at most 1/[`FAR_LARGER_LOSS`] of the
/// primary's value (`values`: primary first), if any: such a loss (one
/// scaled by 1e-3 in the model, say) usually has as small a gradient, so it
/// hardly moves the model at a weight near 1.
pub(super) fn far_smaller_losses(names: &[String], values: &[f64]) -> Option<String> {
    let primary = values.first()?.abs();
    let small: Vec<String> = names
        .iter()
        .zip(values)
        .skip(1)
        .filter(|(_, v)| v.abs() * FAR_LARGER_LOSS <= primary && v.abs() > 0.0)
        .map(|(name, v)| format!("{name} ({v:.3e}, 1/{:.0})", primary / v.abs()))
        .collect();
    (!small.is_empty()).then(|| {
        format!(
            "at the first logged step, {} at most 1/{FAR_LARGER_LOSS:.0} of the primary's value ({} = {:.3e}): \
             its gradient is likely as small, so at a weight near 1 it hardly moves the model (the \
             contributions pane's gradient shares show it); scale it up in the model if it should count",
            losses_are(&small),
            names[0],
            values[0]
        )
    })
}

#[cfg(test)]
mod scale_tests {
    use super::*;

    #[test]
    fn only_an_auxiliary_far_larger_than_the_primary_is_named() {
        let names: Vec<String> = ["cls", "count", "count_x200", "tiny"]
            .map(String::from)
            .into();
        let message = far_larger_losses(&names, &[1.4, 20.0, 4000.0, 1e-4], false).unwrap();
        assert!(message.contains("count_x200 (4.000e3, 2857x)"), "{message}");
        assert!(
            !message.contains("count (") && !message.contains("tiny"),
            "{message}"
        );
        assert!(message.contains("cls = 1.400e0"), "{message}");
        assert!(message.contains("meltr.init = \"residual\""), "{message}");
        // Not the word the suite counts collapses by.
        assert!(!message.to_lowercase().contains("collapse"), "{message}");
        let residual = far_larger_losses(&names, &[1.4, 20.0, 4000.0, 1e-4], true).unwrap();
        assert!(!residual.contains("meltr.init"), "{residual}");
        // Just under the bar, or a primary of 0: nothing to say.
        assert_eq!(
            far_larger_losses(&names, &[1.0, 99.0, 50.0, 1.0], false),
            None
        );
        assert_eq!(
            far_larger_losses(&names, &[0.0, 5.0, 1.0, 1.0], false),
            None
        );
        // The other end: a loss a walkthrough scaled by 1e-3 (700x below).
        let small = far_smaller_losses(&names, &[1.4, 20.0, 4000.0, 2e-3]).unwrap();
        assert!(small.contains("tiny (2.000e-3, 1/700)"), "{small}");
        assert!(
            !small.contains("count (") && !small.contains("count_x200"),
            "{small}"
        );
        assert_eq!(far_smaller_losses(&names, &[1.0, 0.011, 5.0, 0.0]), None);
        // Under `sum`, the large one is said with its share of the gradient.
        let under_sum = far_larger_under_sum(&names, &[1.4, 20.0, 4000.0, 1e-4]).unwrap();
        assert!(
            under_sum.contains("count_x200 (4.000e3, 2857x)"),
            "{under_sum}"
        );
        assert!(under_sum.contains("most of the gradient"), "{under_sum}");
        assert_eq!(far_larger_under_sum(&names, &[1.0, 99.0, 50.0, 1.0]), None);
    }
}

#[cfg(test)]
#[path = "inner_tests.rs"]
mod tests;
