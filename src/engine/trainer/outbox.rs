//! What the trainer tells the world: lines appended to `metrics.jsonl`
//! (kept, in order, until a write succeeds), events to the clients, the
//! session status, and the device values read back in one copy per flush.

use super::*;

/// Skipped steps per run whose rows are run one by one to find those that
/// make a non-finite loss alone (see `rows_non_finite_alone`): each scan
/// is up to a forward per row of the batch.
const MAX_ALONE_SCANS: u32 = 3;

/// An inner step whose outcome the host has not read yet.
pub(super) struct PendingStep {
    pub(super) step: u64,
    /// Whether the update was applied (0-dim bool).
    pub(super) ok: Tensor,
    pub(super) losses_finite: Tensor,
    pub(super) losses: Tensor,
}

/// A meta step whose numbers the host has not read yet.
pub(super) struct PendingMeta {
    pub(super) step: u64,
    /// The steps whose training batches it drew: for φ's training
    /// losses, and for the validation loss (`None`: the held-out split);
    /// `None` when the pool held no batch whose update went through (the
    /// meta step is skipped).
    pub(super) drew: Option<(u64, Option<u64>)>,
    pub(super) norm: Tensor,
    pub(super) reg: Tensor,
    pub(super) meta_lr: f64,
    pub(super) aid_iterations: u32,
    /// γ in force at this step.
    pub(super) gamma: f64,
    /// The effective weights after the update, primary first, then the
    /// primary's training loss (the collapse watch).
    pub(super) watched_weights: Option<Tensor>,
    /// The losses the step was taken on (see
    /// [`crate::meltr::hypergrad::Hypergradient::losses`]); read only when
    /// its hypergradient is not finite, to name the cause.
    pub(super) losses: Option<Tensor>,
    /// Copies of φ and the meta optimizer's step count after the update
    /// (`meltr.on_collapse = "restore"`).
    pub(super) snapshot: Option<Vec<Tensor>>,
    /// The run's clock and the wall clock when the step was taken (its line
    /// is written later, with the next logged step's host copy): what its
    /// line's `time` and `wall` say.
    pub(super) time: f64,
    pub(super) wall: f64,
}

impl Trainer {
    /// Writes what the device decided since the last flush — skipped
    /// steps, meta lines, collapse warnings — with one device-to-host copy
    /// (see [`Self::flush_pending_at`], which calls it).
    pub(super) fn write_pending(&mut self) -> Result<()> {
        if self.pending_steps.is_empty() && self.pending_meta.is_empty() {
            return Ok(());
        }
        let steps = std::mem::take(&mut self.pending_steps);
        let metas = std::mem::take(&mut self.pending_meta);
        let mut scalars: Vec<Tensor> = Vec::new();
        for s in &steps {
            scalars.push(s.ok.to_kind(Kind::Double));
            scalars.push(s.losses_finite.to_kind(Kind::Double));
        }
        for m in &metas {
            scalars.push(m.norm.to_kind(Kind::Double));
            scalars.push(m.reg.to_kind(Kind::Double));
            let watched = match &m.watched_weights {
                Some(w) => w.to_kind(Kind::Double),
                // The weights and the losses.
                None => Tensor::full(
                    [2 * self.loss_names.len() as i64],
                    f64::NAN,
                    (Kind::Double, m.norm.device()),
                ),
            };
            scalars.extend(watched.unbind(0));
        }
        let host = Self::host_values(&Tensor::stack(&scalars, 0));
        let (step_flags, meta_values) = host.split_at(2 * steps.len());
        let mut metas = metas
            .iter()
            .zip(meta_values.chunks(2 + 2 * self.loss_names.len()))
            .peekable();
        for (s, flags) in steps.iter().zip(step_flags.chunks(2)) {
            // Meta lines of earlier steps first: the file stays in step order.
            while let Some((m, values)) = metas.next_if(|(m, _)| m.step < s.step) {
                self.write_meta(m, values);
            }
            if flags[0] == 0.0 {
                if self.meta.is_some() {
                    self.pool_skipped.insert(s.step);
                }
                let losses = (flags[1] == 0.0).then(|| self.named_values(&s.losses));
                self.skip_streak.add(s.step, losses.as_ref());
                self.skipped.steps += 1;
                if let Some(more) = self.skip_streak.listing() {
                    let what = match &losses {
                        Some(losses) => non_finite_losses(losses),
                        None => "non-finite gradient".to_string(),
                    };
                    // The batch's rows, to find a bad sample in the data.
                    // A named loss not finite on clean data: the model's
                    // forward made it (not the sum, not the backward).
                    let loss_named = losses
                        .as_ref()
                        .is_some_and(|l| l.values().any(|v| !v.is_finite()));
                    let not_the_cause = self.workload.train_nan_not_the_cause();
                    let bad = self
                        .workload
                        .non_finite_rows(s.step)
                        .map(|bad| {
                            // Clean data (or data whose NaN the model
                            // masks): which rows the model makes it from.
                            // A few scans a run (each is up to a forward
                            // per row), on rank 0 (which says it).
                            let scan = (bad.is_empty() || not_the_cause.is_some())
                                && loss_named
                                && !self.is_follower()
                                && self.alone_scans < MAX_ALONE_SCANS;
                            // Rows holding the data's NaN are no news alone
                            // (a masked mean over none of them is NaN); only
                            // the others say what the model does.
                            let flagged: Vec<i64> = bad
                                .iter()
                                .flat_map(|(_, rows)| rows.iter().copied())
                                .collect();
                            let alone = losses.as_ref().filter(|_| scan).and_then(|losses| {
                                self.alone_scans += 1;
                                let named: Vec<String> = losses
                                    .iter()
                                    .filter(|(_, v)| !v.is_finite())
                                    .map(|(name, _)| name.clone())
                                    .collect();
                                self.workload
                                    .rows_non_finite_alone(s.step, &named, &flagged)
                            });
                            let data = DataNaN {
                                bad: &bad,
                                not_the_cause,
                            };
                            non_finite_listing(data, loss_named, alone.as_deref())
                        })
                        .unwrap_or_default();
                    // A finding said before points to the warning that said
                    // it, which lists its batch's rows (`repeated_finding`).
                    let repeated = (!bad.is_empty())
                        .then(|| self.skipped.repeated_finding(&bad, s.step))
                        .flatten();
                    // What the rows say first, the batch's rows last (walkthrough
                    // A's culprit rows came after a batch of 64).
                    let rows = match (repeated, self.workload.batch_rows(s.step)) {
                        (Some((first, count)), _) => format!(
                            " (the same finding of the batch's rows as at step {first}; {count} \
                             warnings of it so far)"
                        ),
                        (None, Some(rows)) => match bad.strip_prefix("; ") {
                            Some(said) => format!(
                                " ({said}; the batch: training rows {})",
                                workload::listed_rows(&rows)
                            ),
                            None => format!(" (training rows {})", workload::listed_rows(&rows)),
                        },
                        (None, None) => bad,
                    };
                    self.emit_at(
                        s.step,
                        Record::Event {
                            level: Level::Warn,
                            message: format!("{what}; update skipped{rows}{more}"),
                        },
                    );
                }
            } else if let Some(message) =
                std::mem::take(&mut self.skip_streak).ended("steps", skips::WENT_THROUGH)
            {
                self.emit_at(
                    s.step,
                    Record::Event {
                        level: Level::Warn,
                        message,
                    },
                );
            }
        }
        if self.skip_streak.len >= MAX_SKIPPED_IN_A_ROW {
            for (m, values) in metas {
                self.write_meta(m, values);
            }
            bail!("{}", self.unrecoverable_streak());
        }
        for (m, values) in metas {
            self.write_meta(m, values);
        }
        self.forget_skips_before_the_pool();
        Ok(())
    }

    /// Reads which pending steps' updates were skipped into `pool_skipped`
    /// before a meta step draws from the pool, on the CPU (a copy, no
    /// wait); on CUDA that read would wait for the queued work at every
    /// meta step, so there the flush's read (at logged steps) has to do.
    /// Forgets skipped steps older than the pool's window.
    pub(super) fn note_skipped_pending(&mut self) {
        if self.on_cpu() && !self.pending_steps.is_empty() {
            let flags: Vec<Tensor> = self
                .pending_steps
                .iter()
                .map(|s| s.ok.to_kind(Kind::Double))
                .collect();
            let host = Self::host_values(&Tensor::stack(&flags, 0));
            for (s, ok) in self.pending_steps.iter().zip(host) {
                if ok == 0.0 {
                    self.pool_skipped.insert(s.step);
                }
            }
        }
        self.forget_skips_before_the_pool();
    }

    /// Keeps `pool_skipped` to the pool's window (the current step's and
    /// the [`RECENT_BATCHES`] before it).
    fn forget_skips_before_the_pool(&mut self) {
        let oldest = self.step.saturating_sub(RECENT_BATCHES as u64);
        self.pool_skipped.retain(|&s| s >= oldest);
    }

    /// At the end of a run (finished or stopped): counts the skip streaks
    /// still open, whose steps past the first ten no line names yet, says
    /// how many updates the run skipped in all, and warns of a slide of the
    /// primary's weight too recent for the collapse watch. Returns why the
    /// run failed when every one of its steps was skipped (fewer than
    /// [`MAX_SKIPPED_IN_A_ROW`]: a held-out walkthrough's 30-step run with a
    /// loss NaN throughout ended "finished").
    pub(super) fn report_open_streaks(&mut self) -> Result<Option<String>> {
        self.flush_pending()?;
        let ran = self.step.saturating_sub(self.skipped.since);
        let trained_nothing =
            (ran > 0 && self.skip_streak.len >= ran).then(|| self.unrecoverable_streak());
        let open = [
            (std::mem::take(&mut self.skip_streak), "steps"),
            (std::mem::take(&mut self.meta_skip_streak), "meta steps"),
        ];
        let ended = open
            .into_iter()
            .filter_map(|(streak, what)| streak.ended(what, "until the run ended"));
        let summary = self.skipped.summary(self.step);
        let neumann = self.neumann_tally.summary(self.skipped.since);
        for message in ended.chain(summary).chain(neumann).collect::<Vec<_>>() {
            self.emit(Record::Event {
                level: Level::Warn,
                message,
            });
        }
        Ok(trained_nothing)
    }

    /// At the run's end (not at a stop: a stopped run may go on; walkthrough
    /// G4's stop was read as a run that ended collapsed), a slide of the
    /// primary's weight and a climb of its training loss under way, too
    /// short yet to be said ([`crate::engine::loss_rise::LossRise::climbing_at_the_end`]).
    pub(super) fn report_climb_at_the_end(&mut self) {
        let names = names_with_copies(&self.loss_names, &self.collapse.copies.copies());
        if let Some((meta_steps, w)) = self.collapse.unreported_slide() {
            let message = format!(
                "{} ({}) below {PRIMARY_FLOOR} for its last {meta_steps} \
                 meta steps ({} after the last meta step, whose train line has the weights before it; \
                 the collapse watch acts after {PRIMARY_COLLAPSE_META_STEPS}): {}. \
                 Compare its metric with a `sum` run's, or fork from a checkpoint before the slide",
                crate::session::metrics::ENDS_COLLAPSED_EVENT,
                names[0],
                crate::numfmt::readable(w.primary),
                w.primary_collapse_reading(&names)
            );
            self.emit(Record::Event {
                level: Level::Warn,
                message,
            });
        }
        let climbing = self.loss_rise.climbing_at_the_end().map(|(rise, since)| {
            format!(
                "the run ends with the primary's training loss ({}) climbing: {:.4} (smoothed over the logged \
                 lines), {}, since step {since} (the watch says a climb \
                 held for {} steps): the final evaluation is of a model moving away from its task; \
                 `export --format model --best` takes the best checkpoint's",
                self.loss_names[0],
                rise.now,
                rise.past_lowest(),
                crate::engine::loss_rise::RISE_STEPS,
            )
        });
        if let Some(message) = climbing {
            self.emit(Record::Event {
                level: Level::Warn,
                message,
            });
        }
    }

    /// One device-to-host copy of a vector.
    pub(super) fn host_values(values: &Tensor) -> Vec<f64> {
        Vec::try_from(values.detach().to_kind(Kind::Double).to_device(Device::Cpu))
            .unwrap_or_default()
    }

    fn named_values(&self, values: &Tensor) -> Named {
        let host = Self::host_values(values);
        self.loss_names.iter().cloned().zip(host).collect()
    }

    /// Seconds the run has trained: since its start, less every pause
    /// (the one still going on too, for lines written while paused).
    pub(super) fn time(&self) -> f64 {
        // One reading of the clock for both terms: two (`elapsed()` each)
        // put lines written while paused up to 2e-7 s before the pause.
        let now = Instant::now();
        let paused_now = self
            .paused_since
            .map_or(std::time::Duration::ZERO, |since| now.duration_since(since));
        let trained = now.duration_since(self.clock).saturating_sub(paused_now);
        self.time_offset + trained.as_secs_f64()
    }

    /// Appends a line to `metrics.jsonl` and tells the clients. A failed
    /// write keeps the line for later and records the storage error.
    pub(super) fn emit(&mut self, record: Record) {
        self.emit_at(self.step, record)
    }

    /// As [`Trainer::emit`], for a line about an earlier step.
    pub(super) fn emit_at(&mut self, step: u64, record: Record) {
        let (time, wall) = (self.time(), crate::session::metrics::wall_now());
        self.emit_timed(step, time, wall, record);
    }

    /// [`Self::emit_at`] for a meta step's line, written after the step was
    /// taken: it carries the step's own time.
    pub(super) fn emit_taken(&mut self, m: &PendingMeta, record: Record) {
        self.emit_timed(m.step, m.time, m.wall, record);
    }

    fn emit_timed(&mut self, step: u64, time: f64, wall: f64, record: Record) {
        if self.is_follower() {
            return;
        }
        let line = MetricLine {
            step,
            time,
            wall: Some(wall),
            record,
        };
        self.unwritten.push_back(line);
        self.flush_lines();
    }

    /// Writes owed lines in order; false (with the error recorded) when a
    /// write fails.
    pub(super) fn flush_lines(&mut self) -> bool {
        while let Some(line) = self.unwritten.front() {
            match self.log.append(line) {
                Ok(seq) => {
                    let line = self.unwritten.pop_front().expect("front exists");
                    self.send(Event::Line { line, seq });
                }
                Err(e) => {
                    self.storage_error.get_or_insert(format!("{e:#}"));
                    return false;
                }
            }
        }
        true
    }

    /// Never blocks: a full channel drops the event (everything that matters
    /// is in `metrics.jsonl`, which a client can re-read).
    pub(super) fn send(&self, event: Event) {
        let _ = self.events.try_send(event);
    }

    pub(super) fn set_status(&mut self, status: Status, message: Option<String>) {
        self.status = status;
        let _ = crate::session::update_status(self.dir.path(), status, message.clone());
        self.send(Event::Status { status, message });
    }
}

/// A skipped step's batch's rows holding NaN or inf in workload.train, by
/// tensor, and why they are no cause, where the run's start found why.
struct DataNaN<'a> {
    bad: &'a [(String, Vec<i64>)],
    not_the_cause: Option<&'static str>,
}

/// `; …` for a skipped step's warning: which rows hold NaN or inf
/// in which of workload.train's tensors (a model may mask NaN labels: the
/// tensor tells those rows from a bad sample); empty when none does.
fn non_finite_listing(data: DataNaN, loss_named: bool, alone: Option<&[i64]>) -> String {
    let each: Vec<String> = data
        .bad
        .iter()
        .map(|(tensor, rows)| match rows[..] {
            [row] => format!("row {row} in `{tensor}`"),
            _ => format!("rows {} in `{tensor}`", workload::listed_rows(rows)),
        })
        .collect();
    // NaN the model masks are no cause (walkthrough S's model multiplied
    // its primary by NaN, and each skipped step named its masked labels).
    let clean = match (each.is_empty(), data.not_the_cause) {
        (true, _) => Some("no row of the batch holds NaN or inf in workload.train".to_string()),
        (false, Some(why)) => Some(format!(
            "the batch's NaN or inf in workload.train ({}) are {why}",
            each.join("; ")
        )),
        (false, None) => None,
    };
    match clean {
        // The data is clean, so the forward made it (walkthrough O's
        // cross_entropy with ignore_index gave NaN on a batch whose labels
        // were all ignored, and the warning left data and model alike).
        // The culprit rows first: behind a batch's masked NaN rows
        // (walkthrough A's 64) they read as an afterthought.
        Some(clean) if loss_named => match alone {
            Some(rows) => format!(
                "; run alone (at the current parameters), {} {} that loss non-finite \
                 (look at what the model does with {}), and {clean}, so the model made it",
                match rows {
                    [row] => format!("row {row}"),
                    _ => format!("rows {}", workload::listed_rows(rows)),
                },
                if rows.len() == 1 { "makes" } else { "make" },
                if rows.len() == 1 { "it" } else { "them" }
            ),
            None => format!(
                "; {clean}, so the model made it (e.g. a mean over an empty selection: \
                 cross_entropy with ignore_index on a batch whose labels are all ignored)"
            ),
        },
        Some(clean) => format!("; {clean}"),
        None => format!(
            "; of the batch's rows, NaN or inf in workload.train: {}",
            each.join("; ")
        ),
    }
}

/// What was not finite of a step's losses: named, or the combined loss
/// when each was finite (a loss of 1.35e38 overflowed float32 in the sum;
/// "non-finite loss" listing only finite values read as a wrong report).
fn non_finite_losses(losses: &crate::session::metrics::Named) -> String {
    let listed: Vec<String> = losses
        .iter()
        .map(|(k, v)| format!("{k} {}", crate::numfmt::readable(*v)))
        .collect();
    let largest = losses
        .iter()
        .filter(|(_, v)| v.is_finite())
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()));
    let all_finite = losses.values().all(|v| v.is_finite());
    match largest {
        // Near float32's largest (3.4e38), weights of a few units overflow.
        Some((name, value)) if all_finite && value.abs() >= OVERFLOWS => format!(
            "non-finite combined loss from finite losses ({}): `{name}` at {} overflows \
             the training precision when combined",
            listed.join(", "),
            crate::numfmt::readable(*value)
        ),
        _ if all_finite => format!(
            "non-finite combined loss from finite losses ({}): the combiner's output is NaN or \
             inf (its weights: MELTR's parameters, or the fixed ones)",
            listed.join(", ")
        ),
        _ => format!("non-finite loss ({})", listed.join(", ")),
    }
}

/// A loss this large is blamed for a combined loss that overflowed.
const OVERFLOWS: f64 = 1e30;

#[cfg(test)]
mod message_tests {
    use super::{non_finite_listing, non_finite_losses, DataNaN};

    /// NaN rows the model masks (or that a model NaN on clean rows too
    /// cannot be blamed on) are listed as no cause, and the model is said
    /// to make the loss (walkthrough S was pointed at its masked labels).
    #[test]
    fn nan_rows_that_are_no_cause_are_said_so() {
        let bad = [("partial".to_string(), vec![3, 5])];
        let blamed = non_finite_listing(
            DataNaN {
                bad: &bad,
                not_the_cause: None,
            },
            true,
            None,
        );
        assert_eq!(
            blamed,
            "; of the batch's rows, NaN or inf in workload.train: rows [3, 5] in `partial`"
        );
        let masked = non_finite_listing(
            DataNaN {
                bad: &bad,
                not_the_cause: Some("no cause: the model masks them, as the run's start found"),
            },
            true,
            Some(&[7]),
        );
        assert_eq!(
            masked,
            "; run alone (at the current parameters), row 7 makes that loss non-finite (look at \
             what the model does with it), and the batch's NaN or inf in workload.train (rows [3, 5] in \
             `partial`) are no cause: the model masks them, as the run's start found, so the \
             model made it"
        );
    }

    #[test]
    fn finite_losses_that_overflow_combined_are_said_as_such() {
        let huge = [
            ("aux".to_string(), 1.352729020968571e38),
            ("cls".to_string(), 1.7693),
        ]
        .into();
        assert_eq!(
            non_finite_losses(&huge),
            "non-finite combined loss from finite losses (aux 1.353e38, cls 1.769): `aux` at \
             1.353e38 overflows the training precision when combined"
        );
        let small = [("aux".to_string(), 2.5), ("cls".to_string(), 1.0)].into();
        assert!(
            non_finite_losses(&small).ends_with("the combiner's output is NaN or inf (its weights: MELTR's parameters, or the fixed ones)"),
            "{}",
            non_finite_losses(&small)
        );
        let nan = [("aux".to_string(), f64::NAN), ("cls".to_string(), 1.0)].into();
        assert_eq!(non_finite_losses(&nan), "non-finite loss (aux NaN, cls 1)");
    }
}
