//! Building a trainer: the device, the workload, the combiner and both
//! optimizers; on resume, the checkpoint to restore (the newest that reads
//! back), the log cut back to it, and the restart-only keys in force.

use super::start_notes::{start_notes, trained_parameters_note};
use super::*;
use crate::engine::auxiliary_rise::AuxiliaryRise;
use crate::engine::gradient_owner::GradientOwner;
use crate::engine::loss_rise::LossRise;

impl Trainer {
    /// Builds the workload and combiner; with `resume`, restores the newest
    /// checkpoint that reads back and cuts `metrics.jsonl` back to it (see
    /// [`resume_point`]).
    pub fn new(
        dir: &Path,
        mut config: Config,
        resume: bool,
        events: SyncSender<Event>,
    ) -> Result<(Trainer, SessionMeta)> {
        let point = resume.then(|| resume_point(dir, &mut config)).transpose()?;
        // Seeding, data, θ, φ and the init fit draw from libtorch's one
        // generator, in that order.
        let _draws = crate::nn::rng::global_draws();
        let device = resolve_device(&config.train.device)?;
        let saved_module = point
            .as_ref()
            .and_then(|p| p.checkpoint.as_ref())
            .and_then(|c| c.get(&workload::saved_module_key()));
        let workload = workload::build(&config, device, dtype(&config), saved_module.as_ref())?;
        Self::assemble(dir, config, workload, point, events)
    }

    /// As [`Trainer::new`], with a workload built by the caller (tests' faults).
    pub fn with_workload(
        dir: &Path,
        mut config: Config,
        workload: Box<dyn Workload>,
        resume: bool,
        events: SyncSender<Event>,
    ) -> Result<(Trainer, SessionMeta)> {
        let point = resume.then(|| resume_point(dir, &mut config)).transpose()?;
        let _draws = crate::nn::rng::global_draws();
        Self::assemble(dir, config, workload, point, events)
    }

    fn assemble(
        dir: &Path,
        config: Config,
        workload: Box<dyn Workload>,
        resume: Option<ResumePoint>,
        events: SyncSender<Event>,
    ) -> Result<(Trainer, SessionMeta)> {
        // Every way in (file, command, embedding) meets the same rules.
        config.validate().map_err(anyhow::Error::new)?;
        tch::set_num_threads(config.train.threads as i32);
        let device = resolve_device(&config.train.device)?;
        let kind = dtype(&config);
        let combiner = combiner::build(&config, device, kind);
        let theta = workload.parameters();
        let mut inner_params: Vec<Tensor> = theta.iter().map(Tensor::shallow_clone).collect();
        if combiner.training() == Training::Inner {
            inner_params.extend(combiner.params());
        }
        let inner = AdamW::new(&inner_params, config.train.lr, config.train.weight_decay);
        let unreached_storage: Vec<usize> = workload
            .unreached_parameters()
            .iter()
            .map(|t| t.data_ptr() as usize)
            .collect();
        let unreached: Vec<usize> = (0..inner_params.len())
            .filter(|&i| unreached_storage.contains(&(inner_params[i].data_ptr() as usize)))
            .collect();
        let meta = (combiner.training() == Training::Meta).then(|| {
            AdamW::new(
                &combiner.params(),
                config.meltr.meta_lr,
                config.meltr.meta_weight_decay,
            )
            .with_decay(meta_decay(&config))
        });
        let layout = SessionDir::new(dir);
        let metrics_path = layout.metrics();

        let mut parts = (workload, combiner, inner, meta);
        let (mut step, mut time_offset, mut resumed_from) = (0, 0.0, None);
        let mut notes = Vec::new();
        let mut collapse = CollapseGuard::default();
        let mut gamma = config.meltr.gamma;
        let mut ran_with = None;
        let mut last_eval_step = None;
        let mut pool_skipped = BTreeSet::new();
        let (mut neumann_episodes, mut neumann_stopped) = (0, false);
        let mut best_saved = None;
        let mut train_line_owed = false;
        let (mut restored, mut queued_restore) = (None, None);
        let mut logged_evals = Vec::new();
        let mut loss_rise = LossRise::default();
        let mut gradient_owner = GradientOwner::default();
        let mut auxiliary_rise: Vec<AuxiliaryRise> = config
            .workload
            .auxiliary
            .iter()
            .map(|_| AuxiliaryRise::default())
            .collect();
        let mut shares_fallback_said = false;
        if let Some(point) = resume {
            notes = point.notes;
            ran_with = point.ran_with;
            // Cut the log back to the checkpoint actually used.
            step = point.checkpoint.as_ref().map_or(0, |c| c.step);
            if point.checkpoint.is_none() {
                if let Some(note) = restart_note(&metrics_path, &config)? {
                    notes.push((Level::Warn, note));
                }
            }
            let cut = prepare_resume(dir, step)?;
            // The steps a crash costs, said (walkthrough F's resume after a
            // kill at 1600 went on from 1400 without a word).
            if let (Some((lines, reached)), true) = (cut, step > 0) {
                notes.push((
                    Level::Warn,
                    format!(
                        "the log's {lines} line{} after step {step}, up to step {reached}, {} from its newest \
                         readable checkpoint",
                        if lines == 1 { "" } else { "s" },
                        crate::session::log::TRAINED_AGAIN
                    ),
                ));
            }
            if let Some(ckpt) = point.checkpoint {
                super::checkpointing::restore(&ckpt, &mut parts)?;
                let (resumed_gamma, watch_notes) = super::checkpointing::restore_watch(
                    &ckpt,
                    &config,
                    &mut parts,
                    &mut collapse,
                    device,
                )?;
                gamma = resumed_gamma;
                if let Some(steps) =
                    super::checkpointing::saved_values(&ckpt, super::checkpointing::POOL_SKIPPED)?
                {
                    pool_skipped = steps.into_iter().map(|s| s as u64).collect();
                }
                train_line_owed = ckpt.get(super::checkpointing::TRAIN_LINE_OWED).is_some();
                (restored, queued_restore) = super::checkpointing::restore_state(&ckpt, &config)?;
                let stops =
                    super::checkpointing::saved_values(&ckpt, super::checkpointing::NEUMANN_STOPS)?;
                if let Some(&[episodes, stopped]) = stops.as_deref() {
                    (neumann_episodes, neumann_stopped) = (episodes as u32, stopped != 0.0);
                }
                // A fork's first start reads its parent's checkpoint: the
                // parent's best is not the fork's to keep or beat (a review:
                // its own best checkpoint could be rotated out).
                best_saved = match fork_start(dir, step) {
                    true => None,
                    false => super::checkpointing::saved_values(
                        &ckpt,
                        super::checkpointing::BEST_EVALUATED,
                    )?,
                };
                notes.extend(watch_notes.into_iter().map(|n| (Level::Info, n)));
                resumed_from = Some(ckpt.path);
            }
            if metrics_path.exists() {
                let lines = log::read_metrics(&metrics_path)?.lines;
                // The latest time, not the last line's: meta lines carry
                // their step's time and are written after later steps ran.
                time_offset = lines.iter().map(|l| l.time).fold(0.0, f64::max);
                last_eval_step = lines
                    .iter()
                    .filter(|l| matches!(l.record, Record::Eval { .. }))
                    .map(|l| l.step)
                    .max();
                // A fork's first start: its parent's evaluations are not
                // its own to beat (as `best_saved`).
                if !fork_start(dir, step) {
                    logged_evals = lines
                        .iter()
                        .filter_map(|l| match &l.record {
                            Record::Eval { metrics, .. } => Some(metrics.clone()),
                            _ => None,
                        })
                        .collect();
                }
                // The loss-climb watch, as the logged lines left it (a climb
                // said before the resume is not said again).
                let names = config.loss_names();
                loss_rise = LossRise::replayed(&lines, &names[0]);
                gradient_owner = GradientOwner::replayed(&lines, &names, &collapse.copies.copies());
                auxiliary_rise = names[1..]
                    .iter()
                    .map(|name| AuxiliaryRise::replayed(&lines, name, &names[0]))
                    .collect();
                // The shares' double backward failed before: tried again
                // (the failure may have been passing, and every rank must
                // take one path), not said again.
                shares_fallback_said = lines.iter().any(|line| {
                    matches!(&line.record, Record::Event { message, .. }
                        if message.starts_with(super::inner::SHARES_PER_LOSS_FROM_NOW))
                });
            }
        }
        let (workload, combiner, inner, meta) = parts;
        let (primary_metric, higher_is_better) =
            crate::workload::primary_metric(workload.as_ref(), &config.workload)?;
        let changed_inputs = crate::session::inputs::check_or_record(dir, &config, step > 0)?;
        notes.extend(changed_inputs.into_iter().map(|n| (Level::Warn, n)));
        if step == 0 {
            notes.extend(start_notes(
                &config,
                workload.kind(),
                &primary_metric,
                higher_is_better,
            ));
            notes.push((Level::Info, trained_parameters_note(&theta)));
        }
        let mut best_evaluated =
            super::checkpointing::BestEvaluated::new(&primary_metric, higher_is_better, best_saved);
        logged_evals
            .iter()
            .for_each(|m| best_evaluated.seen_before(m));
        let device = theta.first().map(Tensor::device).unwrap_or(Device::Cpu);
        let meta_info = SessionMeta {
            id: layout.id(),
            name: String::new(),
            created: String::new(),
            status: Status::Running,
            pid: std::process::id(),
            pid_started: crate::session::process_started(std::process::id()),
            device: device_label(device),
            libtorch: crate::libtorch_version().to_string(),
            workload: workload.kind().to_string(),
            losses: config.loss_names(),
            primary: config.workload.primary.clone(),
            primary_metric,
            higher_is_better,
            steps: config.train.steps,
            error: None,
            group: None,
            parent: None,
            fork_step: None,
            world_size: None,
            earlier_world_sizes: Vec::new(),
            provenance: Default::default(),
        };
        let recent = recent_batches(workload.as_ref(), step)?;
        let tracer = if config.train.trace {
            Some(Tracer::open(
                dir,
                step,
                workload.as_ref(),
                combiner.as_ref(),
            )?)
        } else {
            None
        };
        let log = MetricsWriter::open(&metrics_path)?;
        let gpu = GpuSource::open(device);
        let in_force = config.clone();
        let mut trainer = Trainer {
            dir: layout,
            loss_names: config.loss_names(),
            config,
            workload,
            combiner,
            theta,
            inner_params,
            unreached,
            inner,
            meta,
            step,
            recent,
            pool_skipped,
            current_batch: None,
            last_losses: None,
            unlogged_start: None,
            log,
            clock: Instant::now(),
            time_offset,
            paused_since: None,
            status: Status::Running,
            meta_blocked: None,
            meta_steps_done: 0,
            collapse,
            early_climb: Default::default(),
            loss_rise,
            gradient_owner,
            auxiliary_rise,
            gamma,
            restore_due: false,
            queued_restore,
            restored,
            alone_scans: 0,
            // Said at the run's start; a resumed run's log has it already.
            loss_scales_checked: resumed_from.is_some(),
            train_line_owed,
            events,
            rate: rate::StepRate::default(),
            unwritten: VecDeque::new(),
            storage_error: None,
            checkpoint_owed: false,
            edited_since_checkpoint: false,
            jvp_routes: JvpRoutes::default(),
            jvp_fallback_reported: Vec::new(),
            refused_edits: Vec::new(),
            shares_per_loss: None,
            shares_fallback_said,
            phase_clock: PhaseClock::disabled(),
            checkpointed_at: resumed_from.as_ref().map(|_| step),
            pending_steps: Vec::new(),
            pending_meta: Vec::new(),
            neumann_stopped,
            neumann_episodes,
            neumann_tally: Default::default(),
            eval_non_finite_said: false,
            skip_streak: Default::default(),
            meta_skip_streak: Default::default(),
            skipped: skips::SkipTotals {
                since: step,
                ..Default::default()
            },
            last_eval_step,
            best_evaluated,
            tracer,
            in_force: Arc::new(Mutex::new(in_force)),
            group: None,
            buckets: None,
            dp_timing: Default::default(),
            rendezvous: None,
            gpu,
            lockstep_sent: Default::default(),
        };
        if let Some(path) = resumed_from {
            // A fork's first start follows its "forked from" line: not a
            // resume of anything yet (it read as one, a walkthrough).
            let message = match fork_start(dir, step) {
                true => format!(
                    "{} of step {step}{} (copied to {})",
                    crate::session::log::STARTS_FROM_PARENT,
                    match crate::fork::own_changes(dir, step).join(", ") {
                        changes if changes.is_empty() => changes,
                        changes => format!(", with {changes}"),
                    },
                    path.display()
                ),
                false => format!(
                    "{}{} at step {step}",
                    crate::session::log::RESUMED_FROM,
                    path.display()
                ),
            };
            trainer.emit(Record::Event {
                level: Level::Info,
                message,
            });
        }
        // After the start's line: a fork of this checkpoint keeps the log
        // up to it, these notes being the start's, not the checkpoint's.
        let workload_notes = trainer.workload.notes();
        let data_warnings = trainer.workload.data_warnings();
        for (level, message) in notes
            .into_iter()
            .chain(workload_notes.into_iter().map(|m| (Level::Info, m)))
            .chain(data_warnings.into_iter().map(|m| (Level::Warn, m)))
        {
            trainer.emit(Record::Event { level, message });
        }
        if let Some(ran_with) = &ran_with {
            trainer.record_resumed_changes(ran_with);
        }
        trainer.record_config_in_force();
        if trainer.combiner.meltr_net().is_some() {
            trainer.start_loss_scale()?;
        }
        if step == 0
            && matches!(
                trainer.config.meltr.init,
                MeltrInit::Sum | MeltrInit::Primary
            )
            && trainer.combiner.training() == Training::Meta
        {
            trainer.start_combiner_linear()?;
        }
        if trainer.config.meltr.val_source == ValSource::Val
            && trainer.combiner.training() == Training::Meta
        {
            trainer.check_meta_validation_batch()?;
        }
        // Any learned combiner weighs a copy apart (`uncertainty` too:
        // walkthrough H's copy of the primary went unsaid there).
        if step == 0 && trainer.combiner.training() != Training::Fixed {
            trainer.note_copied_losses()?;
        }
        Ok((trainer, meta_info))
    }
}

/// What a resume without a checkpoint drops, when the log went past step
/// 0: the run starts again, and says so (it did silently, with the config
/// as edited since applying from step 0).
fn restart_note(metrics: &Path, config: &Config) -> Result<Option<String>> {
    if !metrics.exists() {
        return Ok(None);
    }
    let last = log::read_metrics(metrics)?
        .lines
        .iter()
        .map(|l| l.step)
        .max()
        .unwrap_or(0);
    Ok((last > 0).then(|| {
        format!(
            "no checkpoint to resume from (the run stopped at step {last}, before its first checkpoint; \
             train.checkpoint_every = {}): it starts again from step 0 with config.toml as it is now, \
             and the {last} logged steps are dropped",
            config.train.checkpoint_every
        )
    }))
}

/// Whether starting the session in `dir` from the checkpoint at `step` is
/// a fork's first start (from the copy of its parent's checkpoint).
fn fork_start(dir: &Path, step: u64) -> bool {
    crate::session::SessionMeta::read(dir)
        .is_ok_and(|m| m.parent.is_some() && m.fork_step == Some(step))
}

/// Makes a session ready to resume from the checkpoint at `step` (0: none):
/// cuts `metrics.jsonl` back to it (everything after it will be redone).
/// Idempotent. Returns what it cut: how many lines, up to which step.
pub fn prepare_resume(dir: &Path, step: u64) -> Result<Option<(usize, u64)>> {
    let metrics = SessionDir::new(dir).metrics();
    if !metrics.exists() {
        return Ok(None);
    }
    let reached = log::read_metrics(&metrics)
        .map(|read| read.lines.iter().map(|l| l.step).max().unwrap_or(0))
        .unwrap_or(0);
    let dropped = log::truncate_after(&metrics, step)?;
    Ok((dropped > 0).then_some((dropped, reached)))
}

/// The config a session's `config.toml` asks for, read over the config last
/// in force (`config.in-force.toml`, when there is one) as a live edit is:
/// keys a partial file leaves out keep the values they ran with, never a
/// built-in default. What `resume`, the runner and `attach` start from.
pub fn session_config(dir: &Path) -> Result<Config, crate::config::ConfigError> {
    let layout = SessionDir::new(dir);
    let path = layout.config();
    let Ok(in_force) = Config::load(&layout.config_in_force()) else {
        return Config::load(&path);
    };
    let text = crate::config::read_text(&path)?;
    Config::parse_over(&in_force, &text).map_err(|mut e| {
        e.file = Some(path);
        e
    })
}

/// The meta step's pool as it stands after `step`: the training batches
/// of the last steps, oldest first.
fn recent_batches(workload: &dyn Workload, step: u64) -> Result<VecDeque<(u64, Batch)>> {
    (step.saturating_sub(RECENT_BATCHES as u64 - 1).max(1)..=step)
        .map(|s| Ok((s, workload.train_batch(s)?)))
        .collect()
}

impl Trainer {
    /// [`recent_batches`] of this trainer's workload.
    pub(super) fn recent_batches_before(&self, step: u64) -> Result<VecDeque<(u64, Batch)>> {
        recent_batches(self.workload.as_ref(), step)
    }
}

/// A path's last component, for messages.
fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// What resuming found before the trainer exists: the checkpoint to restore,
/// and what to tell the user once the log is cut back to it.
struct ResumePoint {
    checkpoint: Option<checkpoint::Loaded>,
    notes: Vec<(Level, String)>,
    /// The config in force at the checkpoint's step, when the checkpoint
    /// carries it (one written before checkpoints did, or a resume from
    /// step 0, has nothing to compare with: the resume logs no changes).
    ran_with: Option<Config>,
}

/// `config` with its restart-only keys as in `in_force`, and the edits
/// that leaves out (`key` = file value (in force: value)).
fn restart_only_left_out(config: &Config, in_force: &Config) -> (Config, Vec<String>) {
    let kept = config.clone().keeping_restart_only_of(in_force);
    let left_out = config
        .diff(&kept)
        .iter()
        .map(|c| format!("`{}` = {} (in force: {})", c.key, c.old, c.new))
        .collect();
    (kept, left_out)
}

/// The restart-only edits in a session's `config.toml` that resuming it
/// leaves out (none when it has no config in force yet), for a caller to
/// say before the run starts elsewhere (`resume --detach`).
pub fn restart_only_edits_left_out(dir: &Path) -> Result<Vec<String>> {
    let layout = SessionDir::new(dir);
    let Ok(in_force) = Config::load(&layout.config_in_force()) else {
        return Ok(Vec::new());
    };
    let config = session_config(dir).map_err(anyhow::Error::new)?;
    Ok(restart_only_left_out(&config, &in_force).1)
}

/// Gets a session ready to resume: removes temp files of writers that died
/// mid-write, sets restart-only keys of `config` back to what was in force
/// (`config.in-force.toml`), and finds the newest checkpoint that reads
/// back, moving newer unreadable ones aside.
fn resume_point(dir: &Path, config: &mut Config) -> Result<ResumePoint> {
    let mut notes = Vec::new();
    let layout = SessionDir::new(dir);
    let checkpoints = layout.checkpoints();
    let mut removed = session::remove_orphan_temps(&checkpoints);
    removed.extend(session::remove_orphan_temps(dir));
    if !removed.is_empty() {
        let names: Vec<String> = removed.iter().map(|p| file_name(p)).collect();
        notes.push((
            Level::Info,
            format!(
                "removed {} temp file(s) of a writer that died mid-write: {}",
                names.len(),
                names.join(", ")
            ),
        ));
    }

    let in_force_path = layout.config_in_force();
    let in_force_name = file_name(&in_force_path);
    if in_force_path.exists() {
        match Config::load(&in_force_path) {
            Ok(in_force) => {
                let (kept, not_applied) = restart_only_left_out(config, &in_force);
                if !not_applied.is_empty() {
                    kept.validate().map_err(|e| {
                        anyhow::anyhow!(
                            "config.toml holds restart-only edits that cannot apply to this session ({}), \
                             and with the values in force ({in_force_name}) it is invalid: {e}",
                            not_applied.join(", ")
                        )
                    })?;
                    notes.push((
                        Level::Warn,
                        format!(
                            "restart-only edits in config.toml were not applied: {}; the session resumes with \
                             the config it ran with ({in_force_name}). To train with them, start a new session",
                            not_applied.join(", ")
                        ),
                    ));
                }
                *config = kept;
            }
            Err(e) => notes.push((
                Level::Warn,
                format!("cannot read the config in force ({e}); restart-only keys come from config.toml"),
            )),
        }
    }

    let (checkpoint, unreadable) = checkpoint::Loaded::newest_readable(&checkpoints);
    for (path, why) in unreadable {
        let name = file_name(&path);
        let moved = match checkpoint::set_aside(&path) {
            Ok(aside) => format!("moved aside to {}", file_name(&aside)),
            Err(e) => format!("{e:#}"),
        };
        notes.push((
            Level::Warn,
            format!("skipped checkpoint {name}, which does not read back ({why}); {moved}"),
        ));
    }
    let ran_with = checkpoint.as_ref().and_then(checkpoint::Loaded::config);
    Ok(ResumePoint {
        checkpoint,
        notes,
        ran_with,
    })
}

#[cfg(test)]
#[path = "setup_tests.rs"]
mod tests;
