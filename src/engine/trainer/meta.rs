//! The meta step: φ's hypergradient by AID on a batch of the recent pool,
//! its update, and the collapse watch over the effective weights.

use super::*;

/// A meta step whose numbers the host has not read yet.
pub(super) struct PendingMeta {
    pub(super) step: u64,
    pub(super) norm: Tensor,
    pub(super) reg: Tensor,
    pub(super) meta_lr: f64,
    pub(super) aid_iterations: u32,
    /// The largest |effective weight| after the update (collapse watch).
    pub(super) largest_weight: Option<Tensor>,
    /// Copies of φ and the meta optimizer's state after the update
    /// (`meltr.on_collapse = "restore"`).
    pub(super) snapshot: Option<Vec<Tensor>>,
}

impl Trainer {
    /// One meta step. `current_forward`: the loss vector of this step's
    /// batch at the current θ, with its graph (the inner step's forward,
    /// `meltr.train_batch = "current"`); that batch is then the training
    /// batch and the meta step reuses that forward.
    pub(super) fn meta_step(&mut self, current_forward: Option<&Tensor>) -> Result<()> {
        let pool = meta_pool(
            &self.recent,
            self.current_batch.as_ref(),
            self.config.meltr.pool == Pool::WithCurrent,
        );
        let n = pool.len() as u64;
        if n == 0 {
            return Ok(());
        }
        self.phase_clock.start();
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
        let (val_step, val_batch) = if self.config.meltr.val_source == ValSource::Val {
            held_out = self.shard(self.workload.val_batch(self.step)?)?;
            (None, &held_out)
        } else {
            let (step, batch) = pool[rng.below(n) as usize];
            (Some(*step), batch)
        };
        // Same seed before every forward: any randomness in the model (e.g.
        // dropout) is identical across the finite-difference evaluations.
        let forward_seed = (self.config.workload.seed ^ self.step) as i64;
        let workload = self.workload.as_ref();
        let names = &self.loss_names;
        let primary = &self.config.workload.primary;
        let meta_at = self.step;
        let train_losses = || -> Result<Tensor> {
            tch::manual_seed(forward_seed);
            let losses = workload.losses(train_batch).with_context(|| {
                format!("the meta step's training batch (that of step {train_step})")
            })?;
            workload::select(&losses, names)
        };
        let val_primary = || -> Result<Tensor> {
            tch::manual_seed(forward_seed + 1);
            workload
                .loss(val_batch, primary)
                .with_context(|| match val_step {
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
            gamma: self.config.meltr.gamma,
            gamma_direct: self.config.meltr.gamma_direct,
            jvp: aid.jvp,
            max_growth: aid.max_growth,
        };
        let problem = MetaProblem {
            theta: &self.theta,
            combiner: self.combiner.as_ref(),
            train_losses: &train_losses,
            val_primary: &val_primary,
            train_forward: current_forward,
        };
        let result = hypergradient_timed(&problem, &settings, &mut self.phase_clock);
        let mut hyper = match result {
            Ok(h) => h,
            Err(e) if self.meta_steps_done == 0 => {
                return Err(e.context("the first meta step failed"))
            }
            Err(e) => {
                let message = format!("meta step at step {} failed: {e:#}; meta steps paused until the config changes", self.step);
                self.meta_blocked = Some(message.clone());
                {
                    self.emit(Record::Event {
                        level: Level::Error,
                        message,
                    });
                    return Ok(());
                }
            }
        };
        let stopped = hyper.neumann_stop;
        if let Some(stop) = stopped.filter(|_| !self.neumann_stopped) {
            self.emit(Record::Event {
                level: Level::Warn,
                message: format!(
                    "step {}: the Neumann series diverges (‖v_{}‖ = {:.3e}·‖v_0‖ > aid.max_growth = {}); it stops at {} term(s) while this lasts. Lower aid.alpha (now {}) or aid.iterations",
                    self.step, stop.terms, stop.growth, aid.max_growth, stop.terms, aid.alpha
                ),
            });
        }
        self.neumann_stopped = stopped.is_some();
        if let Some(tracer) = &mut self.tracer {
            tracer.meta(train_step, val_step, &hyper.grads, &hyper.reg);
        }
        if let Some(why) = hyper.fallback.take() {
            if !self.jvp_fallback_reported {
                self.jvp_fallback_reported = true;
                self.emit(Record::Event {
                    level: Level::Info,
                    message: format!("forward-mode AD is not available for this model ({why}); the meta step uses finite differences"),
                });
            }
        }
        // Data-parallel: φ's hypergradient (and the logged γ term) averaged
        // over the ranks' shards, so φ moves alike everywhere.
        let mut averaged: Vec<Tensor> = hyper.grads.iter().map(Tensor::shallow_clone).collect();
        averaged.push(hyper.reg.reshape([1]));
        self.average_over_ranks(&averaged)?;
        // A non-finite hypergradient skips the meta update on the device.
        let norm = clip_grad_norm(&mut hyper.grads, self.config.meltr.meta_grad_clip);
        let ok = norm.isfinite();
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
        let largest_weight = match &self.last_losses {
            Some(losses) => Some(
                combiner::effective_weights(self.combiner.as_ref(), losses)?
                    .abs()
                    .max(),
            ),
            None => None,
        };
        let snapshot =
            (self.config.meltr.on_collapse == OnCollapse::Restore).then(|| self.meta_snapshot());
        self.phase_clock.mark("update");
        self.pending_meta.push(PendingMeta {
            step: self.step,
            norm,
            reg: hyper.reg,
            meta_lr,
            aid_iterations: aid.iterations,
            largest_weight,
            snapshot,
        });
        Ok(())
    }

    /// A meta step's line (or its skip), and the collapse watch.
    pub(super) fn write_meta(&mut self, m: &PendingMeta, values: &[f64]) {
        let (norm, reg, largest) = (values[0], values[1], values[2]);
        if !norm.is_finite() {
            self.emit_at(
                m.step,
                Record::Event {
                    level: Level::Warn,
                    message: format!(
                        "step {}: non-finite hypergradient; meta update skipped",
                        m.step
                    ),
                },
            );
            return;
        }
        self.emit_at(
            m.step,
            Record::Meta {
                hypergrad_norm: norm,
                reg,
                meta_lr: m.meta_lr,
                aid_iterations: m.aid_iterations,
            },
        );
        if !largest.is_finite() {
            return;
        }
        let verdict = self.collapse.observe(
            m.step,
            largest,
            m.snapshot
                .as_ref()
                .map(|s| s.iter().map(Tensor::shallow_clone).collect()),
        );
        if let Verdict::Collapsed { healthy_step } = verdict {
            let restore = self.config.meltr.on_collapse == OnCollapse::Restore;
            let outcome = match (healthy_step, restore) {
                (Some(_), true) => {
                    let state = self.meta_state();
                    let from = self.collapse.restore(&state).unwrap_or_default();
                    format!("φ and its optimizer restored from the meta step at step {from} (meltr.on_collapse = \"restore\")")
                }
                (None, true) => "no healthy meta step to restore from yet".to_string(),
                (_, false) => "the model is no longer learning; meltr.on_collapse = \"restore\" would put φ back to the last healthy meta step".to_string(),
            };
            self.emit_at(m.step, Record::Event {
                level: Level::Warn,
                message: format!(
                    "MELTR collapse: every effective weight has stayed below {COLLAPSE_WEIGHT} for {COLLAPSE_META_STEPS} meta steps (largest {largest:.2e}); \
                     {outcome}. Raise meltr.gamma (now {}) or lower meltr.meta_lr",
                    self.config.meltr.gamma
                ),
            });
        }
    }

    /// Copies of φ and the meta optimizer's state, in [`Self::meta_state`]'s
    /// order (device copies; no host sync).
    fn meta_snapshot(&self) -> Vec<Tensor> {
        tch::no_grad(|| self.meta_state().iter().map(Tensor::copy).collect())
    }

    /// φ, then the meta optimizer's step count and moments (shallow).
    fn meta_state(&self) -> Vec<Tensor> {
        let mut state = self.combiner.params();
        if let Some(meta) = &self.meta {
            state.extend(meta.state("meta").into_iter().map(|(_, t)| t));
        }
        state
    }
}

/// The batches a meta step draws from, oldest first: the last
/// [`RECENT_BATCHES`] before this step's (`meltr.pool = "previous"`, the
/// public code), or the last ones including it (`with_current`). An empty
/// pool (a meta step at step 1) holds this step's batch, as the public
/// code's first meta step uses its current batch.
fn meta_pool<'a>(
    recent: &'a VecDeque<(u64, Batch)>,
    current: Option<&'a (u64, Batch)>,
    with_current: bool,
) -> Vec<&'a (u64, Batch)> {
    let mut pool: Vec<&(u64, Batch)> = recent.iter().collect();
    if let Some(current) = current {
        if with_current || pool.is_empty() {
            pool.push(current);
            if pool.len() > RECENT_BATCHES {
                pool.remove(0);
            }
        }
    }
    pool
}

/// `meltr.meta_optimizer`: Adam with L2 (`adam`, the public code) or
/// decoupled decay (`adamw`).
pub(super) fn meta_decay(config: &Config) -> WeightDecay {
    match config.meltr.meta_optimizer {
        MetaOptimizer::AdamW => WeightDecay::Decoupled,
        MetaOptimizer::Adam => WeightDecay::Coupled,
    }
}
