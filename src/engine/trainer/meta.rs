//! The meta step: φ's hypergradient by AID on a batch of the recent pool,
//! its update, and the collapse watch over the effective weights.

use super::meta_buffers::TrainBatchBuffers;
use super::meta_words::{
    after_restore_event, carried_event, copy_events, drawn_batches, early_climb_event,
    episode_said, fell_under_a_small_weight, fmt_gamma, hypergradient_cause, neumann_converges,
    neumann_stopped, routes_not_said,
};
use super::restore::QueuedRestore;
use super::*;
use crate::config::AidMode;
use crate::numfmt::readable;
use crate::session::metrics::{COLLAPSE_EVENT, RESTORE_EVENT};
use crate::workload::SavedBuffers;

/// What a restore after a collapse multiplies the meta-learning rate by.
const RESTORE_META_LR_FACTOR: f64 = 0.5;
/// γ after a collapse restore, as a multiple of `meltr.gamma`: a larger γ
/// holds M(l) nearer Σl; on the auxiliary-learning suite γ = 0.3 ended no
/// run collapsed (README, "The method": `meltr.on_collapse`).
pub(super) const RESTORE_GAMMA_FACTOR: f64 = 3.0;

impl Trainer {
    /// One meta step. `current_forward`: the loss vector of this step's
    /// batch at the current θ, with its graph (the inner step's forward,
    /// `meltr.train_batch = "current"`), and the buffers that forward
    /// started from; that batch is then the training batch and the meta
    /// step reuses that forward.
    pub(super) fn meta_step(&mut self, current: Option<(&Tensor, &SavedBuffers)>) -> Result<()> {
        let current_forward = current.map(|(forward, _)| forward);
        self.note_skipped_pending();
        let pool = meta_pool(
            &self.recent,
            self.current_batch.as_ref(),
            self.config.meltr.pool == Pool::WithCurrent,
            &self.pool_skipped,
        );
        let n = pool.len() as u64;
        if n == 0 {
            // Every batch of the window was skipped: the meta step is
            // skipped too, and said and counted as one.
            let nan = || Tensor::from(f64::NAN);
            self.pending_meta.push(PendingMeta {
                step: self.step,
                drew: None,
                norm: nan(),
                reg: nan(),
                meta_lr: self.meta.as_ref().map_or(0.0, |m| m.lr),
                aid_iterations: 0,
                gamma: self.gamma,
                watched_weights: None,
                losses: None,
                snapshot: None,
                time: self.time(),
                wall: crate::session::metrics::wall_now(),
            });
            return Ok(());
        }
        self.phase_clock.start();
        // The buffers before this step's forwards, put back if its update
        // is skipped (a pool batch with NaN rows would leave NaN in
        // BatchNorm's running statistics otherwise).
        let buffers_before = SavedBuffers::take(self.workload.as_ref())?;
        let mut rng =
            crate::nn::rng::SplitMix::new(self.config.workload.seed, 0x4d45_5441 ^ self.step);
        // Drawn either way, so the validation pick is the same in both modes.
        let random_pick = rng.below(n) as usize;
        let (train_step, train_batch) = match current_forward {
            Some(_) => {
                let (step, batch) = self.current_batch.as_ref().expect("the inner step set it");
                (*step, batch)
            }
            None => (pool[random_pick].0, &pool[random_pick].1),
        };
        let held_out;
        let (val_step, val_batch) = match self.config.meltr.val_source {
            ValSource::Val => {
                held_out = self.shard(self.workload.val_batch(self.step)?)?;
                (None, &held_out)
            }
            ValSource::Recent => {
                let (step, batch) = pool[rng.below(n) as usize];
                (Some(*step), batch)
            }
            ValSource::TrainingBatch => (Some(train_step), train_batch),
        };
        // Same seed before every forward of a batch: any randomness in the
        // model (e.g. dropout) is identical across the γ term, the JVPs and
        // the finite-difference evaluations. A reused inner forward (this
        // step's batch) drew the inner step's masks: re-evaluations of it
        // draw those again.
        let seed = self.config.workload.seed;
        let train_forward = match current_forward {
            Some(_) => Forward::Inner,
            None => Forward::MetaTrain,
        };
        let (train_seed, val_seed) = (
            forward_seed(seed, self.step, train_forward),
            forward_seed(seed, self.step, Forward::MetaVal),
        );
        let workload = self.workload.as_ref();
        let names = &self.loss_names;
        let primary = &self.config.workload.primary;
        let meta_at = self.step;
        // Each evaluation of the training batch alike (`meta_buffers`).
        // The exact mode differentiates a reused forward's own graph; only
        // its retry with the fused kernels off evaluates the batch again,
        // from the buffers it finds (putting the inner step's back would
        // write into buffers the retried validation graph saved).
        let inner_start = current
            .filter(|_| self.config.aid.mode == AidMode::Factorized)
            .map(|(_, start)| start);
        let buffers = TrainBatchBuffers::new(current.is_some(), inner_start);
        let train_losses = || -> Result<Tensor> {
            buffers.before_forward(workload)?;
            let losses =
                seeded(train_seed, || workload.losses(train_batch)).with_context(|| {
                    format!("the meta step's training batch (that of step {train_step})")
                })?;
            buffers.after_forward(workload)?;
            workload::select(&losses, names)
        };
        // An exact meta step retried with the fused kernels off
        // runs the validation forward again: from the buffers the first one
        // started from, so that they move once.
        let val_forwards = std::cell::Cell::new(0u32);
        let val_primary = || -> Result<Tensor> {
            if val_forwards.replace(val_forwards.get() + 1) > 0 {
                buffers_before.restore(workload)?;
            }
            seeded(val_seed, || workload.loss(val_batch, primary)).with_context(|| match val_step {
                Some(s) => {
                    format!("the meta step's validation batch (the training batch of step {s})")
                }
                None => {
                    format!("the meta step's held-out validation batch (for step {meta_at})")
                }
            })
        };
        let aid = self.config.aid.clone();
        let settings = AidSettings {
            iterations: aid.iterations,
            alpha: aid.alpha,
            mode: aid.mode,
            gamma: self.gamma,
            gamma_direct: self.config.meltr.gamma_direct,
            jvp: aid.jvp,
            max_growth: aid.max_growth,
        };
        let problem = MetaProblem {
            theta: &self.theta,
            combiner: self.combiner.as_ref(),
            train_losses: &train_losses,
            val_primary: (self.config.meltr.val_source != ValSource::TrainingBatch)
                .then_some(&val_primary as &dyn Fn() -> Result<Tensor>),
            train_forward: current_forward,
        };
        let result =
            hypergradient_timed(&problem, &settings, &self.jvp_routes, &mut self.phase_clock);
        buffers.leave(workload)?;
        let mut hyper = match result {
            Ok(h) => h,
            Err(e) if self.meta_steps_done == 0 => {
                return Err(e.context("the first meta step failed"))
            }
            Err(e) => {
                buffers_before.restore(self.workload.as_ref())?;
                let message = format!("meta step at step {} failed: {e:#}; meta steps paused until the config changes", self.step);
                self.meta_blocked = Some(message.clone());
                self.emit(Record::Event {
                    level: Level::Error,
                    message,
                });
                return Ok(());
            }
        };
        // The route first, then what its series did (walkthrough R2: a
        // divergence said before the fallback that took the products).
        // Each route said once, and again when it changes (walkthrough
        // G2's products falling back after a live J edit repeated the loss
        // JVP's route said 200 steps before: a 1000-character line).
        if let Some(message) = hyper.departure.take() {
            self.write_pending_in_order()?;
            self.emit(Record::Event {
                level: Level::Warn,
                message,
            });
        }
        let fallback = std::mem::take(&mut hyper.fallback);
        let said = routes_not_said(&mut self.jvp_fallback_reported, fallback);
        if !said.is_empty() {
            self.write_pending_in_order()?;
        }
        for message in said {
            self.emit(Record::Event {
                level: Level::Info,
                message,
            });
        }
        let stopped = hyper.neumann_stop;
        self.neumann_tally.count(aid.iterations, stopped.as_ref());
        if let Some(stop) = stopped.filter(|_| !self.neumann_stopped) {
            self.neumann_episodes += 1;
            if let Some(count) = episode_said(self.neumann_episodes) {
                let message = neumann_stopped(&stop, &aid, &count);
                self.emit(Record::Event {
                    level: Level::Warn,
                    message,
                });
            }
        }
        // Said where the episode's start was (a flipping series fills the log).
        let said = episode_said(self.neumann_episodes).is_some();
        if self.neumann_stopped && stopped.is_none() && said {
            let next_said = episode_said(self.neumann_episodes + 1).is_some();
            let message = neumann_converges(aid.iterations, next_said);
            self.emit(Record::Event {
                level: Level::Info,
                message,
            });
        }
        self.neumann_stopped = stopped.is_some();
        if let Some(tracer) = &mut self.tracer {
            tracer.meta(train_step, val_step, &hyper.grads, &hyper.reg);
        }
        // Data-parallel: φ's hypergradient (and the logged γ term) averaged
        // over the ranks' shards, so φ moves alike everywhere.
        let mut averaged: Vec<Tensor> = hyper.grads.iter().map(Tensor::shallow_clone).collect();
        averaged.push(hyper.reg.reshape([1]));
        // Averaged too: a loss not finite on any rank is not finite here.
        averaged.push(hyper.losses.shallow_clone());
        self.average_over_ranks(&averaged)?;
        // A non-finite hypergradient skips the meta update on the device.
        let norm = clip_grad_norm(&mut hyper.grads, self.config.meltr.meta_grad_clip);
        let ok = norm.isfinite();
        buffers_before.restore_unless(self.workload.as_ref(), Some(&ok))?;
        let phi = self.combiner.params();
        let meta = self
            .meta
            .as_mut()
            .expect("meta combiners have a meta optimizer");
        meta.step_if(&phi, &hyper.grads, Some(&ok));
        let meta_lr = meta.lr;
        if let Some(why) = meta.fused_failure.take() {
            self.note_unfused("MELTR's", &why);
        }
        self.meta_steps_done += 1;
        self.phase_clock.mark("clip + update");
        let watched_weights = match &self.last_losses {
            Some(losses) => {
                let w = combiner::effective_weights(self.combiner.as_ref(), losses)?;
                // The weights, then the losses: the watch checks a negative
                // weight's "climbs its loss" against the primary's, and
                // counts a copy of the primary (a fixed multiple) with it.
                let losses = losses.detach().to_kind(w.kind());
                let watched = Tensor::cat(&[w.detach(), losses], 0);
                // Each rank's losses are its own shard's: averaged, every
                // rank's watch decides alike (and φ stays the same).
                self.average_over_ranks(std::slice::from_ref(&watched))?;
                Some(watched)
            }
            None => None,
        };
        self.phase_clock.mark("watched weights");
        let snapshot =
            (self.config.meltr.on_collapse == OnCollapse::Restore).then(|| self.meta_snapshot());
        self.phase_clock.mark("snapshot");
        self.pending_meta.push(PendingMeta {
            step: self.step,
            drew: Some((train_step, val_step)),
            norm,
            reg: hyper.reg,
            meta_lr,
            // The terms actually summed: a diverging series stops early.
            aid_iterations: stopped.map_or(aid.iterations, |_| 0),
            gamma: self.gamma,
            watched_weights,
            losses: Some(hyper.losses),
            snapshot,
            time: self.time(),
            wall: crate::session::metrics::wall_now(),
        });
        Ok(())
    }

    /// A meta step's line (or its skip), and the collapse watch.
    pub(super) fn write_meta(&mut self, m: &PendingMeta, values: &[f64]) {
        let (norm, reg) = (values[0], values[1]);
        let k = self.loss_names.len();
        let (weights, losses) = values[2..2 + 2 * k].split_at(k);
        let known = self.collapse.copies.copies();
        let copies = self.collapse.copies.observe(losses);
        // Said when first read, and when a later reading rules it out
        // (walkthrough Z1's `dup`, half its primary, was named only inside
        // collapse warnings).
        for message in copy_events(&self.loss_names, &known, &copies) {
            self.emit_taken(
                m,
                Record::Event {
                    level: Level::Info,
                    message,
                },
            );
        }
        let watched = Weights {
            primary_loss: losses[0],
            ..Weights::with_copies(weights, &copies)
        };
        // Messages name the primary with its copies (walkthrough P's `dup`,
        // the primary's InfoNCE computed twice, held most of their weight).
        let names = &names_with_copies(&self.loss_names, &copies);
        if !norm.is_finite() {
            self.meta_skip_streak.add(m.step, None);
            self.skipped.meta_steps += 1;
            if let Some(more) = self.meta_skip_streak.listing() {
                self.emit_taken(
                    m,
                    Record::Event {
                        level: Level::Warn,
                        message: match m.drew {
                            Some(_) => format!(
                                "non-finite hypergradient ({}{}); meta update skipped{more}",
                                drawn_batches(m.drew),
                                m.losses.as_ref().map_or(String::new(), |losses| {
                                    let values = Self::host_values(losses);
                                    let exact = self.config.aid.mode == AidMode::Exact;
                                    let cause =
                                        hypergradient_cause(&self.loss_names, &values, exact);
                                    format!("; {cause}")
                                })
                            ),
                            None => {
                                format!("{}; meta update skipped{more}", drawn_batches(None))
                            }
                        },
                    },
                );
            }
            return;
        }
        if let Some(message) = std::mem::take(&mut self.meta_skip_streak)
            .ended("meta steps", super::skips::WENT_THROUGH)
        {
            self.emit_taken(
                m,
                Record::Event {
                    level: Level::Warn,
                    message,
                },
            );
        }
        self.emit_taken(
            m,
            Record::Meta {
                hypergrad_norm: norm,
                reg,
                meta_lr: m.meta_lr,
                aid_iterations: m.aid_iterations,
                // As configs write it (the value in force may carry a
                // product's last-bit noise: 3 × 0.1).
                gamma: Some(format!("{:.12e}", m.gamma).parse().unwrap_or(m.gamma)),
            },
        );
        if !(watched.largest.is_finite() && watched.primary.is_finite()) {
            return;
        }
        // (Not while the restore waits for its point: φ is not back yet.)
        let applied = self.queued_restore.is_none();
        if let Some((from, _)) = self
            .restored
            .filter(|&(_, before)| applied && m.step >= before)
        {
            self.restored = None;
            let record = after_restore_event(names, from, m.step, watched);
            self.emit_taken(m, record);
            if watched.primary < PRIMARY_FLOOR {
                self.collapse.restore_did_not_help(from);
            }
        }
        let armed = self.collapse.armed();
        if let Some(note) = self.early_climb.observe(m.step, watched.primary, armed) {
            // MELTR's default starts (every weight near 0, either sign) do
            // this; other starts rarely.
            let default_start = self.config.combiner.kind == CombinerKind::Meltr
                && matches!(
                    self.config.meltr.init,
                    MeltrInit::Pytorch | MeltrInit::Random
                );
            let record = early_climb_event(names, default_start, note, watched);
            self.emit_taken(m, record);
        }
        let verdict = self.collapse.observe(
            m.step,
            watched,
            m.snapshot
                .as_ref()
                .map(|s| s.iter().map(Tensor::shallow_clone).collect()),
        );
        // A verdict on a meta step before a pending restore takes effect
        // judges the φ it replaces (walkthrough G: a second restore queued
        // in the same flush quartered the meta-learning rate). Read all the
        // same: the watch's loss average goes on.
        if self
            .restored
            .is_some_and(|(_, before)| !applied || m.step < before)
        {
            return;
        }
        let (kind, healthy_step, spent, loss_since) = match verdict {
            Verdict::Fine => return,
            Verdict::Carried(carried) => {
                let record = carried_event(names, carried, watched);
                self.emit_taken(m, record);
                return;
            }
            Verdict::Collapsed {
                kind,
                healthy_step,
                spent,
                loss_since,
            } => (kind, healthy_step, spent, loss_since),
        };
        let what = match kind {
            Collapse::Primary => format!(
                "the primary's effective weight ({}) has stayed below {PRIMARY_FLOOR} (a tenth of its weight under `sum`) \
                 for {PRIMARY_COLLAPSE_META_STEPS} meta steps (now {}): {}",
                names[0],
                readable(watched.primary),
                // (A negative weight's fall is carried, not collapsed; with
                // the primary still the largest weight, every weight shrank,
                // and its loss may well fall.)
                match self.collapse.loss_fell_over_count() {
                    Some(fell) if watched.largest_at != 0 => {
                        fell_under_a_small_weight(fell, &watched, names)
                    }
                    _ => watched.primary_collapse_reading(names),
                }
            ),
            Collapse::PrimaryNeverRose => format!(
                "the primary's effective weight ({}) has not reached {PRIMARY_FLOOR} (a tenth of its weight under `sum`) \
                 in the run's first {PRIMARY_NEVER_ROSE_META_STEPS} meta steps (now {}): {}",
                names[0],
                readable(watched.primary),
                watched.never_rose_reading(names)
            ),
            Collapse::Every => format!(
                "every effective weight has stayed below {COLLAPSE_WEIGHT} for {COLLAPSE_META_STEPS} meta steps \
                 (largest {:.2e}): the model is no longer learning",
                watched.magnitude()
            ),
        };
        // Where the verdict takes effect: the same step at any log interval.
        let point = self.verdict_point(m.step);
        let at_the_end = point.step >= self.config.train.steps;
        let go_on = match at_the_end {
            true => "",
            false => "; the meta steps go on from here",
        };
        let moved_on = loss_since.filter(LossSince::moved_on);
        let outcome = match (healthy_step, spent, self.config.meltr.on_collapse) {
            (Some(from), true, OnCollapse::Restore) => format!(
                "φ is not put back: the restore to step {from}'s φ did not lift the primary's weight \
                 (the first meta step after it read below {PRIMARY_FLOOR}), and no meta step has been \
                 healthy since{go_on}"
            ),
            (Some(from), false, OnCollapse::Restore) if moved_on.is_some() => {
                let since = moved_on.expect("matched");
                format!(
                    "φ is not put back: the primary's training loss has climbed from {} at step {from}, the last \
                     healthy meta step, to {} (over {MOVED_LOSS_FACTOR} times): the model has moved on from that \
                     state, and M weighs today's losses, so its φ would not give the weights it gave then{go_on}",
                    readable(since.then),
                    readable(since.now),
                )
            }
            (Some(from), false, OnCollapse::Restore) if at_the_end => format!(
                "φ is not restored: the run ends at step {} before the restore could take effect (it is \
                 applied after the engine reads this meta step, at step {}; the last healthy meta step was at \
                 step {from})",
                self.config.train.steps,
                point.step,
            ),
            (Some(from), false, OnCollapse::Restore) => {
                // Applied when a flush reaches `point`; φ may be in the
                // graph of that step's forward: the copy waits for the next
                // step (`apply_due_restore`).
                self.restored = Some((from, point.step + 1));
                let meta = self
                    .meta
                    .as_ref()
                    .expect("meta combiners have a meta optimizer");
                // The same meta-learning rate slid there once; half of it
                // moves φ away from the healthy state more slowly.
                let lr = meta.lr * RESTORE_META_LR_FACTOR;
                // And a stronger pull of M(l) towards Σl (once: later
                // restores keep it).
                let gamma = self
                    .gamma
                    .max(RESTORE_GAMMA_FACTOR * self.config.meltr.gamma);
                let raised = match gamma > self.gamma {
                    true => format!(" and γ raised to {}", fmt_gamma(gamma)),
                    false => String::new(),
                };
                self.queued_restore = Some(QueuedRestore {
                    at: point,
                    meta_lr: Some(lr),
                    gamma: Some(gamma),
                });
                // Meta lines are written in batches, after later steps
                // may have run: say when the restore takes effect.
                // How far the model moved since (the evidence for
                // MOVED_LOSS_FACTOR: scripts/collapse_restores.py reads it).
                let since = loss_since.map_or(String::new(), |since| {
                    format!(" (the primary's training loss {})", since.words())
                });
                format!(
                    "{RESTORE_EVENT} at step {from} before step {}{since}, its optimizer's moments cleared, the meta-learning rate halved to {lr:.3e}{raised} \
                     for the rest of the run (meltr.on_collapse = \"restore\"; an edit of meltr.meta_lr or meltr.gamma sets it again)",
                    point.step + 1,
                )
            }
            (None, _, OnCollapse::Restore) => "no healthy meta step to restore from yet".to_string(),
            // (With "warn" no healthy state is kept: the kind tells.)
            (_, _, OnCollapse::Warn) if kind == Collapse::PrimaryNeverRose => {
                "no meta step was healthy yet, so there is nothing to restore".to_string()
            }
            (_, _, OnCollapse::Warn) => {
                "meltr.on_collapse = \"restore\" would put φ back to the last healthy meta step"
                    .to_string()
            }
        };
        self.emit_taken(
            m,
            Record::Event {
                level: Level::Warn,
                message: format!(
                    "{COLLAPSE_EVENT}{what}; {outcome}. {}",
                    self.collapse_advice(kind)
                ),
            },
        );
    }
}

/// The batches a meta step draws from, oldest first: the last
/// [`RECENT_BATCHES`] before this step's (`meltr.pool = "previous"`, the
/// public code), or the last ones including it (`with_current`). An empty
/// pool (a meta step at step 1) holds this step's batch, as the public
/// code's first meta step uses its current batch. Batches whose update was
/// skipped (`skipped`: their steps) are left out: a NaN row in one made
/// every meta step that drew it skip as well (a held-out walkthrough lost
/// 8 of 20 meta updates to one bad row; the public code has no guard).
fn meta_pool<'a>(
    recent: &'a VecDeque<(u64, Batch)>,
    current: Option<&'a (u64, Batch)>,
    with_current: bool,
    skipped: &BTreeSet<u64>,
) -> Vec<&'a (u64, Batch)> {
    let mut window: Vec<&(u64, Batch)> = recent.iter().collect();
    if let Some(current) = current {
        if with_current || window.is_empty() {
            window.push(current);
            if window.len() > RECENT_BATCHES {
                window.remove(0);
            }
        }
    }
    window.retain(|(step, _)| !skipped.contains(step));
    // Nothing left: this step's batch, when its update is not known to be
    // skipped.
    match current {
        Some(current) if window.is_empty() && !skipped.contains(&current.0) => vec![current],
        _ => window,
    }
}

/// `meltr.meta_optimizer`: Adam with L2 (`adam`, the public code) or
/// decoupled decay (`adamw`).
pub(super) fn meta_decay(config: &Config) -> WeightDecay {
    match config.meltr.meta_optimizer {
        MetaOptimizer::AdamW => WeightDecay::Decoupled,
        MetaOptimizer::Adam => WeightDecay::Coupled,
    }
}
