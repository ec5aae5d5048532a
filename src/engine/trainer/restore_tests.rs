//! The collapse watch end to end through the trainer: MELTR knocked into a
//! collapse on purpose is put back to its newest healthy meta step, with
//! the meta-learning rate halved and γ raised (`meltr.on_collapse =
//! "restore"`), or only reported (`"warn"`).
//! Long: the watch's end-to-end tests share the knocked-out trainer and the
//! log readers; split, each part would repeat them.

use super::meta_words::fmt_gamma;
use super::*;
use crate::config::OnCollapse;
use crate::session::log::read_metrics;
use crate::session::metrics::MetricLine;
use std::path::Path;

const META_LR: f64 = 1e-3;

pub(super) fn config(on_collapse: OnCollapse) -> Config {
    let mut config = Config::parse(include_str!("../../../configs/synthetic.toml")).unwrap();
    config.train.device = "cpu".into();
    config.train.steps = 400;
    config.train.log_every = 3;
    config.train.eval_every = 1000;
    config.train.checkpoint_every = 1000;
    config.meltr.meta_lr = META_LR;
    config.meltr.on_collapse = on_collapse;
    config
}

/// Steps before the knock-out: PyTorch's init starts the primary's weight
/// near 0; it passes the healthy bar within the first few meta steps.
pub(super) const HEALTHY_STEPS: u64 = 45;

/// A trainer after [`HEALTHY_STEPS`] steps, then φ and its optimizer's
/// moments zeroed (MELTR's output and every effective weight are then 0, and
/// stay there: all of φ's gradients vanish), with copies of φ after each
/// healthy step.
fn knocked_out(on_collapse: OnCollapse, dir: &Path) -> (Trainer, Vec<Vec<Tensor>>) {
    let (events, _keep) = std::sync::mpsc::sync_channel(1 << 16);
    let (trainer, _) = Trainer::new(dir, config(on_collapse), false, events).unwrap();
    knock_out(trainer)
}

/// [`knocked_out`] for a trainer already built (e.g. one rank of a group).
pub(super) fn knock_out(mut trainer: Trainer) -> (Trainer, Vec<Vec<Tensor>>) {
    let mut phi_after_step = vec![Vec::new()];
    for _ in 0..HEALTHY_STEPS {
        trainer.train_step().unwrap();
        phi_after_step.push(tch::no_grad(|| {
            trainer.combiner.params().iter().map(Tensor::copy).collect()
        }));
    }
    tch::no_grad(|| {
        for phi in trainer.combiner.params() {
            let _ = phi.shallow_clone().zero_();
        }
    });
    if let Some(meta) = trainer.meta.as_mut() {
        meta.clear_moments();
    }
    (trainer, phi_after_step)
}

fn lines(dir: &Path) -> Vec<MetricLine> {
    read_metrics(&SessionDir::new(dir).metrics()).unwrap().lines
}

fn collapse_events(lines: &[MetricLine]) -> Vec<(u64, String)> {
    lines
        .iter()
        .filter_map(|l| match &l.record {
            Record::Event { message, .. } if message.contains("MELTR collapse") => {
                Some((l.step, message.clone()))
            }
            _ => None,
        })
        .collect()
}

fn primary_weights(lines: &[MetricLine], steps: std::ops::Range<u64>) -> Vec<f64> {
    lines
        .iter()
        .filter(|l| steps.contains(&l.step))
        .filter_map(|l| match &l.record {
            Record::Train { weights, .. } => weights.get("primary").copied(),
            _ => None,
        })
        .collect()
}

#[test]
fn a_collapsed_meltr_is_restored_to_its_newest_healthy_step_with_half_the_meta_rate() {
    let dir = tempfile::tempdir().unwrap();
    let (mut trainer, phi_after_step) = knocked_out(OnCollapse::Restore, dir.path());
    // The watch reads the meta steps at the log steps' flushes; the restore
    // waits for the next step's start.
    while !trainer.restore_due {
        assert!(
            trainer.step < HEALTHY_STEPS + 3 * u64::from(COLLAPSE_META_STEPS) + 10,
            "no restore by step {}",
            trainer.step
        );
        trainer.train_step().unwrap();
    }
    let detected = trainer.step;
    // Zero gradients kept the moments at 0 since the knock-out: make them
    // something the restore has to clear.
    tch::no_grad(|| {
        let meta = trainer.meta.as_ref().unwrap();
        for moment in meta.m.iter().chain(&meta.v) {
            let _ = moment.shallow_clone().fill_(1.0);
        }
    });
    trainer.apply_due_restore();
    let logged = lines(dir.path());
    let events = collapse_events(&logged);
    assert_eq!(events.len(), 1, "{events:?}");
    let message = &events[0].1;
    // 25 meta steps after the knock-out (the primary's watch: armed, and
    // under the floor from the first meta step after it).
    let first_low = HEALTHY_STEPS + 3;
    assert_eq!(
        events[0].0,
        first_low + 3 * u64::from(PRIMARY_COLLAPSE_META_STEPS - 1),
        "{message}"
    );
    assert!(
        message.contains("primary's effective weight") && message.contains("halved"),
        "{message}"
    );
    // Stamped at the meta step that saw it; applied before the next step
    // after the flush that read it.
    assert!(
        message.contains(&format!(" before step {} ", detected + 1)),
        "{message}"
    );
    // How far the primary's loss moved since (under MOVED_LOSS_FACTOR).
    assert!(
        message.contains("(the primary's training loss now ")
            && message.contains("× its value there), "),
        "{message}"
    );
    let healthy: u64 = message
        .split("restored from the meta step at step ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no healthy step in: {message}"));
    assert!(
        healthy.is_multiple_of(3) && healthy <= HEALTHY_STEPS,
        "{message}"
    );
    // Every weight was 0 between the knock-out and the restore ...
    let knocked = primary_weights(&logged, HEALTHY_STEPS + 1..detected + 1);
    assert!(
        !knocked.is_empty() && knocked.iter().all(|w| *w == 0.0),
        "{knocked:?}"
    );
    // ... and φ is now exactly what it was after that healthy step, the
    // meta steps at half the rate.
    let phi = trainer.combiner.params();
    for (now, then) in phi.iter().zip(&phi_after_step[healthy as usize]) {
        assert!(now.equal(then), "φ differs from step {healthy}'s");
    }
    assert_eq!(trainer.meta.as_ref().map(|m| m.lr), Some(META_LR / 2.0));
    // γ is three times the configured one from the restore on, and the
    // message says so.
    let gamma = trainer.config.meltr.gamma;
    assert_eq!(trainer.gamma, 3.0 * gamma);
    assert!(
        message.contains(&format!("γ raised to {}", fmt_gamma(3.0 * gamma))),
        "{message}"
    );
    // The optimizer's step count is back at that step's (one update per
    // meta step); its moments start again from 0.
    let meta = trainer.meta.as_ref().unwrap();
    assert_eq!(meta.step.double_value(&[]), (healthy / 3) as f64);
    for moment in meta.m.iter().chain(&meta.v) {
        assert_eq!(moment.abs().max().double_value(&[]), 0.0);
    }
    // Training goes on from there with non-zero weights.
    for _ in 0..6 {
        trainer.train_step().unwrap();
    }
    trainer.flush_pending().unwrap();
    let logged = lines(dir.path());
    let after = primary_weights(&logged, detected + 1..u64::MAX);
    assert!(
        !after.is_empty() && after.iter().all(|w| *w != 0.0),
        "{after:?}"
    );
    // The first meta step after the restore says where the primary's
    // weight stands: back above the floor here (the losses barely moved
    // while every weight was 0).
    let readings: Vec<(u64, &str, Level)> = logged
        .iter()
        .filter_map(|l| match &l.record {
            Record::Event { message, level } if message.contains("after the restore to step") => {
                Some((l.step, message.as_str(), *level))
            }
            _ => None,
        })
        .collect();
    assert_eq!(readings.len(), 1, "{readings:?}");
    let (at, message, level) = readings[0];
    assert!(at > detected && at <= detected + 3, "{readings:?}");
    assert_eq!(level, Level::Info, "{message}");
    assert!(
        message.contains(&format!("to step {healthy}'s φ")),
        "{message}"
    );
    // The meta lines say γ as a config would (3 × 0.1 is
    // 0.30000000000000004 in f64).
    let said: Vec<f64> = logged
        .iter()
        .filter(|l| l.step > detected)
        .filter_map(|l| match l.record {
            Record::Meta { gamma, .. } => gamma,
            _ => None,
        })
        .collect();
    let written: f64 = fmt_gamma(3.0 * gamma).parse().unwrap();
    assert!(
        !said.is_empty() && said.iter().all(|g| *g == written),
        "{said:?} (γ {gamma})"
    );
}

/// Walkthrough H4: a collapse said in the run's last read window was worded
/// "the run ends at this step" at a meta step 9 steps before the end. It
/// names the last step, and the step where the restore would have fallen.
#[test]
fn a_collapse_in_the_last_read_window_names_the_runs_end() {
    let dir = tempfile::tempdir().unwrap();
    let (mut trainer, _) = knocked_out(OnCollapse::Restore, dir.path());
    // The primary's watch fires at the 25th meta step under the floor.
    let said_at = HEALTHY_STEPS + 3 + 3 * u64::from(PRIMARY_COLLAPSE_META_STEPS - 1);
    let last = said_at + 5;
    // Before the next read point after it: no step left to restore at.
    assert!(last < (said_at / super::restore::READ_EVERY + 1) * super::restore::READ_EVERY);
    trainer.config.train.steps = last;
    while trainer.step < last {
        trainer.train_step().unwrap();
        assert!(!trainer.restore_due, "restored at {}", trainer.step);
    }
    trainer.flush_pending().unwrap();
    let events = collapse_events(&lines(dir.path()));
    assert_eq!(events.len(), 1, "{events:?}");
    let (step, message) = &events[0];
    assert_eq!(*step, said_at, "{message}");
    assert!(
        message.contains(&format!(
            "φ is not restored: the run ends at step {last} before the restore could take effect"
        )) && message.contains(&format!("at step {last};")),
        "{message}"
    );
}

/// Walkthrough L: a restored φ that read below the floor at once was put
/// back nine more times, the meta-learning rate halved each time (to
/// 1e-3/1024). Once a restore did not lift the primary's weight, the next
/// collapse says so and puts nothing back.
#[test]
fn a_restore_that_did_not_lift_the_primary_is_not_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let (mut trainer, _) = knocked_out(OnCollapse::Restore, dir.path());
    while !trainer.restore_due {
        trainer.train_step().unwrap();
    }
    trainer.apply_due_restore();
    // The restored φ reads as collapsed at once (as the held-out model's
    // did on its moved losses) ...
    tch::no_grad(|| {
        for phi in trainer.combiner.params() {
            let _ = phi.shallow_clone().zero_();
        }
    });
    let restored_at = trainer.step;
    // ... in a run resumed from a checkpoint written before that reading
    // (the review: the unread restore was not in checkpoints).
    trainer.write_checkpoint().unwrap();
    drop(trainer);
    let mut trainer = resumed(dir.path(), config(OnCollapse::Restore));
    let until = restored_at + 3 * u64::from(PRIMARY_COLLAPSE_META_STEPS + 3);
    while trainer.step < until {
        trainer.train_step().unwrap();
        assert!(!trainer.restore_due, "restored again at {}", trainer.step);
    }
    trainer.flush_pending().unwrap();
    let events = collapse_events(&lines(dir.path()));
    assert_eq!(events.len(), 2, "{events:?}");
    let healthy = events[0]
        .1
        .split("restored from the meta step at step ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .unwrap()
        .to_string();
    assert!(
        events[1].0 > restored_at
            && events[1].1.contains(&format!(
                "φ is not put back: the restore to step {healthy}'s φ did not lift"
            )),
        "{events:?}"
    );
    // Halved once, not again.
    assert_eq!(trainer.meta.as_ref().map(|m| m.lr), Some(META_LR / 2.0));
}

/// Walkthrough G: two collapse reports of one flush (the primary's, then
/// every weight's a meta step later) each queued a restore to the same φ,
/// the meta-learning rate quartered before any meta step read the first.
/// The meta steps taken before a restore takes effect are not watched.
#[test]
fn meta_steps_taken_before_a_restore_takes_effect_queue_no_second_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut trainer, _) = knocked_out(OnCollapse::Restore, dir.path());
    while !trainer.restore_due {
        trainer.train_step().unwrap();
    }
    let halved = trainer.meta.as_ref().unwrap().lr;
    // More meta steps of the φ being replaced, read in the same flush: a
    // healthy stretch, then a whole collapse watch's worth of zeros.
    let k = trainer.loss_names.len();
    // The losses: the primary's below any healthy one.
    let read = |trainer: &mut Trainer, weight: f64| {
        read_meta(trainer, halved, &vec![weight; k], &vec![0.0; k])
    };
    for _ in 0..crate::engine::collapse::SETTLED_META_STEPS + 1 {
        read(&mut trainer, 1.0);
    }
    for _ in 0..PRIMARY_COLLAPSE_META_STEPS + 1 {
        read(&mut trainer, 0.0);
    }
    trainer.flush_pending().unwrap();
    let events = collapse_events(&lines(dir.path()));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(trainer.meta.as_ref().unwrap().lr, halved);
}

/// A meta step's line at the trainer's step with these effective weights
/// and losses (the primary first in each), read by the collapse watch.
fn read_meta(trainer: &mut Trainer, meta_lr: f64, weights: &[f64], losses: &[f64]) {
    let m = super::outbox::PendingMeta {
        step: trainer.step,
        drew: Some((trainer.step, None)),
        norm: Tensor::from(1.0),
        reg: Tensor::from(0.0),
        meta_lr,
        aid_iterations: 0,
        gamma: trainer.gamma,
        watched_weights: None,
        losses: None,
        snapshot: None,
        time: 0.0,
        wall: 0.0,
    };
    let values: Vec<f64> = [1.0, 0.0]
        .iter()
        .chain(weights)
        .chain(losses)
        .copied()
        .collect();
    trainer.write_meta(&m, &values);
}

/// Walkthrough P: `dup`, the primary's InfoNCE computed a second time,
/// held the weight the primary's own slot lost, and the watch restored φ
/// over it (walkthrough O's `half`, half the primary's loss, alike). A
/// loss that stays a fixed multiple of the primary counts with it; one
/// whose ratio moves does not.
#[test]
fn a_copy_of_the_primary_holds_the_primarys_weight() {
    // `factor`: the copy's loss over the primary's; `moving`: that ratio
    // changes between meta steps (no copy).
    let collapses = |factor: f64, moving: bool| {
        let dir = tempfile::tempdir().unwrap();
        let (events, _keep) = std::sync::mpsc::sync_channel(1 << 16);
        let (mut trainer, _) =
            Trainer::new(dir.path(), config(OnCollapse::Restore), false, events).unwrap();
        let k = trainer.loss_names.len();
        assert!(k >= 3, "the synthetic workload has auxiliaries");
        let mut weights = vec![0.3; k];
        let settled = crate::engine::collapse::SETTLED_META_STEPS + 1;
        for i in 0..settled + PRIMARY_COLLAPSE_META_STEPS + 1 {
            let loss = 2.0 / (1.0 + i as f64);
            let ratio = factor * if moving && i % 2 == 1 { 1.1 } else { 1.0 };
            let mut losses = vec![0.5; k];
            (losses[0], losses[k - 1]) = (loss, ratio * loss);
            // Healthy, then the primary's own slot near 0 with its copy
            // holding 2.5 / factor.
            (weights[0], weights[k - 1]) = match i < settled {
                true => (1.0, 0.3),
                false => (0.01, 2.5 / factor),
            };
            read_meta(&mut trainer, META_LR, &weights, &losses);
            trainer.step += 1;
        }
        trainer.flush_pending().unwrap();
        let logged = lines(dir.path());
        // The copy is said once, when found (walkthrough Z1).
        let copy_said: Vec<String> = logged
            .iter()
            .filter_map(|l| match &l.record {
                Record::Event { message, .. } if message.contains("a copy of the primary") => {
                    Some(message.clone())
                }
                _ => None,
            })
            .collect();
        (collapse_events(&logged), copy_said)
    };
    let (exact, said) = collapses(1.0, false);
    assert_eq!(exact, []);
    assert_eq!(said.len(), 1, "{said:?}");
    let (half, said) = collapses(0.5, false);
    assert_eq!(half, []);
    assert!(
        said.len() == 1
            && said[0].contains(" has been 0.5x primary's value at every meta step read"),
        "{said:?}"
    );
    assert!(said[0].contains("(primary + 0.5×"), "{said:?}");
    let (moving, said) = collapses(0.5, true);
    assert_eq!(moving.len(), 1, "{moving:?}");
    assert!(moving[0].1.contains("(primary)"), "{}", moving[0].1);
    assert_eq!(said, Vec::<String>::new());
}

/// A copy's share of the gradient is logged as its own, as under `sum`
/// (walkthrough Z1's `share/dup` was missing from MELTR's lines only); the
/// watches alone count it with the primary's.
#[test]
fn a_copys_share_is_logged_as_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (events, _keep) = std::sync::mpsc::sync_channel(1 << 16);
    let mut config = config(OnCollapse::Restore);
    (config.train.log_every, config.train.shares_every) = (1, 1);
    let (mut trainer, _) = Trainer::new(dir.path(), config, false, events).unwrap();
    let k = trainer.loss_names.len();
    // The last loss half the primary at two meta steps; the others not
    // one multiple.
    for other in [0.7, 0.9] {
        let mut losses = vec![other; k];
        (losses[0], losses[k - 1]) = (1.0, 0.5);
        trainer.collapse.copies.observe(&losses);
    }
    trainer.train_step().unwrap();
    // (Still read as a copy at the logged step: the check can fail.)
    assert_eq!(trainer.collapse.copies.copies().len(), 1);
    trainer.flush_pending().unwrap();
    let shares = lines(dir.path())
        .iter()
        .find_map(|l| match &l.record {
            Record::Train { shares, .. } if !shares.is_empty() => Some(shares.clone()),
            _ => None,
        })
        .expect("a train line with shares");
    assert_eq!(shares.len(), k, "{shares:?}");
}

/// Walkthrough L: restores after the primary's loss had climbed about
/// twofold read the primary below the floor at once and ended at chance.
/// Such a collapse of the primary is reported and φ left as it is; every
/// weight dead is still restored.
#[test]
fn a_collapse_after_the_primary_loss_climbed_far_puts_nothing_back() {
    let dir = tempfile::tempdir().unwrap();
    let (mut trainer, _) = knocked_out(OnCollapse::Restore, dir.path());
    // (The watch reads meta steps when their lines are written.)
    trainer.flush_pending().unwrap();
    trainer.collapse.lower_healthy_loss(10.0);
    for _ in 0..(3 * PRIMARY_COLLAPSE_META_STEPS + 30) {
        trainer.train_step().unwrap();
    }
    trainer.flush_pending().unwrap();
    let events = collapse_events(&lines(dir.path()));
    let Some(((_, primary), others)) = events.split_first() else {
        panic!("no collapse reported");
    };
    assert!(
        primary.contains("the primary's effective weight")
            && primary.contains("φ is not put back: the primary's training loss has climbed from")
            && primary.contains("the last healthy meta step, to "),
        "{events:?}"
    );
    assert!(
        others
            .iter()
            .all(|(_, m)| m.contains("every effective weight") && m.contains("φ restored")),
        "{events:?}"
    );
}

/// Where a restore takes effect does not follow the logging: at any
/// `train.log_every` the run says the same events and trains to the same φ
/// (walkthrough M2's restore fell before step 526 at log_every 1 and 532
/// at 10, and the runs parted), and its log stays in step order.
#[test]
fn a_restore_falls_at_the_same_step_whatever_the_log_interval() {
    let run = |log_every: u64| {
        let dir = tempfile::tempdir().unwrap();
        let (trainer, _) = logging_every(dir.path(), log_every);
        let (mut trainer, _) = knock_out(trainer);
        for _ in 0..(3 * COLLAPSE_META_STEPS + 30) {
            trainer.train_step().unwrap();
        }
        trainer.flush_pending().unwrap();
        let lines = lines(dir.path());
        let steps: Vec<u64> = lines.iter().map(|l| l.step).collect();
        assert!(
            steps.windows(2).all(|w| w[0] <= w[1]),
            "log_every {log_every}: lines out of step order: {steps:?}"
        );
        let phi: Vec<Tensor> =
            tch::no_grad(|| trainer.combiner.params().iter().map(Tensor::copy).collect());
        let lr = trainer.meta.as_ref().map(|m| m.lr);
        (collapse_events(&lines), phi, lr, trainer.gamma)
    };
    let (said, phi, lr, gamma) = run(3);
    assert!(
        said.iter().any(|(_, m)| m.contains("φ restored")),
        "no restore: {said:?}"
    );
    for log_every in [1, 7, 10, 50] {
        let (other_said, other_phi, other_lr, other_gamma) = run(log_every);
        assert_eq!(other_said, said, "log_every {log_every}");
        assert_eq!(
            (other_lr, other_gamma),
            (lr, gamma),
            "log_every {log_every}"
        );
        assert!(
            phi.iter().zip(&other_phi).all(|(a, b)| a.equal(b)),
            "φ at log_every {log_every} differs from log_every 3's"
        );
    }
}

/// A restore decided and not yet at its point when a checkpoint is
/// written (a stop): the resumed run applies it where the straight run
/// does, and trains alike.
#[test]
fn a_restore_queued_at_a_checkpoint_falls_after_the_resume_where_it_would_have() {
    let dir = tempfile::tempdir().unwrap();
    let (trainer, config) = logging_every(dir.path(), 1);
    let (mut straight, _) = knock_out(trainer);
    while straight.queued_restore.is_none() {
        straight.train_step().unwrap();
    }
    straight.write_checkpoint().unwrap();
    let queued = straight.queued_restore.expect("not due at this step");
    assert!(
        queued.at.step > straight.step,
        "{queued:?} at {}",
        straight.step
    );
    let (copy, edited) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    copy_session(dir.path(), copy.path());
    copy_session(dir.path(), edited.path());
    // A resume that edits meltr.meta_lr keeps the edit, as a live edit does.
    let mut edit = config.clone();
    edit.meltr.meta_lr = 2e-3;
    let mut edited_run = resumed(edited.path(), edit);
    let mut resumed_run = resumed(copy.path(), config);
    assert_eq!(resumed_run.queued_restore, Some(queued));
    for _ in 0..30 {
        straight.train_step().unwrap();
        resumed_run.train_step().unwrap();
        edited_run.train_step().unwrap();
    }
    assert_eq!(edited_run.meta.as_ref().map(|m| m.lr), Some(2e-3));
    assert_eq!(edited_run.gamma, straight.gamma);
    assert_eq!(resumed_run.meta.as_ref().map(|m| m.lr), Some(META_LR / 2.0));
    assert_eq!(resumed_run.gamma, straight.gamma);
    assert_same_phi(&straight, &resumed_run);
}

/// A slide of the primary's weight too short for the watch is said at the
/// run's end, not at a stop (walkthrough G4's stopped run read as one that
/// ended collapsed, and `ls` said so).
#[test]
fn a_slide_under_way_is_said_at_the_end_and_not_at_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (mut trainer, _) = knocked_out(OnCollapse::Warn, dir.path());
    while trainer.collapse.unreported_slide().is_none() {
        trainer.train_step().unwrap();
        trainer.flush_pending().unwrap();
    }
    let said = |dir: &Path| {
        lines(dir).iter().any(|l| {
            matches!(&l.record, Record::Event { message, .. }
                if message.starts_with(crate::session::metrics::ENDS_COLLAPSED_EVENT))
        })
    };
    trainer.report_open_streaks().unwrap();
    assert!(!said(dir.path()), "said at a stop");
    trainer.report_climb_at_the_end();
    assert!(said(dir.path()), "not said at the end");
}

/// A live edit between two reads of the meta steps' lines is written after
/// those of the steps before it (walkthrough G4's events pane had `]`'s
/// edit at step 438 above a restore's note at 432).
#[test]
fn a_live_edit_keeps_the_log_in_step_order() {
    let dir = tempfile::tempdir().unwrap();
    let (mut trainer, config) = logging_every(dir.path(), 10);
    for _ in 0..13 {
        trainer.train_step().unwrap();
    }
    let mut edited = config;
    edited.meltr.gamma = 0.2;
    trainer.apply_config(edited).unwrap();
    for _ in 0..7 {
        trainer.train_step().unwrap();
    }
    trainer.flush_pending().unwrap();
    let lines = lines(dir.path());
    let steps: Vec<u64> = lines.iter().map(|l| l.step).collect();
    assert!(
        lines
            .iter()
            .any(|l| matches!(l.record, Record::Config { .. }) && l.step == 13),
        "no config line at step 13"
    );
    assert!(
        steps.windows(2).all(|w| w[0] <= w[1]),
        "lines out of step order: {steps:?}"
    );
}

/// A resume that starts the Neumann series at the untuned α says so, as
/// the same live edit does (walkthrough G6's `resume --set
/// aid.iterations=1` had no word on it).
#[test]
fn a_resume_that_starts_the_series_says_alpha_is_untuned() {
    let dir = tempfile::tempdir().unwrap();
    let (events, _keep) = std::sync::mpsc::sync_channel(1 << 16);
    let config = config(OnCollapse::Restore);
    let (mut trainer, _) = Trainer::new(dir.path(), config.clone(), false, events).unwrap();
    for _ in 0..5 {
        trainer.train_step().unwrap();
    }
    trainer.write_checkpoint().unwrap();
    drop(trainer);
    let said = |dir: &Path| {
        lines(dir).iter().any(|l| {
            matches!(&l.record, Record::Event { message, .. }
                if message.starts_with("aid.iterations 0→1 starts the Neumann series"))
        })
    };
    let mut edited = config;
    edited.aid.iterations = 1;
    let _resumed = resumed(dir.path(), edited);
    assert!(said(dir.path()), "no note on the untuned α at the resume");
}

#[test]
fn with_warn_a_collapse_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (mut trainer, _) = knocked_out(OnCollapse::Warn, dir.path());
    for _ in 0..(3 * COLLAPSE_META_STEPS + 30) {
        trainer.train_step().unwrap();
    }
    trainer.flush_pending().unwrap();
    let logged = lines(dir.path());
    let events = collapse_events(&logged);
    // One report per episode (the primary's first; the every-weight watch
    // completes its own longer streak later).
    assert!(!events.is_empty() && events.len() <= 2, "{events:?}");
    assert!(
        events
            .iter()
            .all(|(_, m)| m.contains("would put φ back") && !m.contains("restored")),
        "{events:?}"
    );
    let last = primary_weights(&logged, trainer.step - 3..trainer.step + 1);
    assert!(
        !last.is_empty() && last.iter().all(|w| *w == 0.0),
        "{last:?}"
    );
    assert_eq!(trainer.meta.as_ref().map(|m| m.lr), Some(META_LR));
    assert_eq!(trainer.gamma, trainer.config.meltr.gamma);
}

/// Copies a session folder (files and one level of subfolders, as a
/// session has).
fn copy_session(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_session(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn assert_same_phi(straight: &Trainer, resumed_run: &Trainer) {
    for (a, b) in straight
        .combiner
        .params()
        .iter()
        .zip(&resumed_run.combiner.params())
    {
        assert!(
            a.equal(b),
            "φ after the resume differs from the straight run's"
        );
    }
}

/// A fresh trainer of [`config`] (restoring) that logs every `log_every`
/// steps, and that config.
fn logging_every(dir: &Path, log_every: u64) -> (Trainer, Config) {
    let (events, _keep) = std::sync::mpsc::sync_channel(1 << 16);
    let mut config = config(OnCollapse::Restore);
    config.train.log_every = log_every;
    let (trainer, _) = Trainer::new(dir, config.clone(), false, events).unwrap();
    (trainer, config)
}

fn resumed(dir: &Path, config: Config) -> Trainer {
    let (events, _keep) = std::sync::mpsc::sync_channel(1 << 16);
    Trainer::new(dir, config, true, events).unwrap().0
}

#[test]
fn a_resume_after_a_restore_keeps_the_halved_rate_the_raised_gamma_and_the_watch() {
    let dir = tempfile::tempdir().unwrap();
    let (mut straight, _) = knocked_out(OnCollapse::Restore, dir.path());
    while !straight.restore_due {
        straight.train_step().unwrap();
    }
    // The checkpoint lands the due restore first.
    straight.write_checkpoint().unwrap();
    assert!(!straight.restore_due);
    let copy = tempfile::tempdir().unwrap();
    copy_session(dir.path(), copy.path());
    let edited = tempfile::tempdir().unwrap();
    copy_session(dir.path(), edited.path());

    let mut resumed_run = resumed(copy.path(), config(OnCollapse::Restore));
    assert_eq!(resumed_run.meta.as_ref().map(|m| m.lr), Some(META_LR / 2.0));
    // The log says why the rate is not the configured one.
    resumed_run.flush_pending().unwrap();
    let said = lines(copy.path()).iter().any(|l| {
        matches!(&l.record, Record::Event { message, .. }
            if message.contains("meta-learning rate resumes at 5.000e-4"))
    });
    assert!(said, "no note on the resumed meta-learning rate");
    // γ too (the φ check below fails without it).
    assert_eq!(resumed_run.gamma, straight.gamma);
    assert!(resumed_run.gamma > resumed_run.config.meltr.gamma);
    let said = lines(copy.path()).iter().any(
        |l| matches!(&l.record, Record::Event { message, .. } if message.contains("γ resumes at")),
    );
    assert!(said, "no note on the resumed γ");
    for _ in 0..12 {
        straight.train_step().unwrap();
        resumed_run.train_step().unwrap();
    }
    assert_same_phi(&straight, &resumed_run);
    // The watch goes on alike: same counters, same healthy snapshot.
    let (a, b) = (
        straight.collapse.state("c"),
        resumed_run.collapse.state("c"),
    );
    assert_eq!(a.len(), b.len());
    assert!(
        a.iter().any(|(name, _)| name.contains(".healthy.")),
        "no healthy snapshot was kept"
    );
    // (NaN where nothing was read yet: equal as NaN.)
    let same = |x: &Tensor, y: &Tensor| {
        x.isnan().equal(&y.isnan())
            && x.nan_to_num(0.0, None, None)
                .equal(&y.nan_to_num(0.0, None, None))
    };
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        assert!(same(x, y), "{name} differs after the resume: {x} {y}");
    }

    // A resume whose config edits meltr.meta_lr takes the edit.
    let mut edit = config(OnCollapse::Restore);
    edit.meltr.meta_lr = 3.0 * META_LR;
    edit.meltr.gamma = 0.2;
    let edited_run = resumed(edited.path(), edit);
    assert_eq!(edited_run.meta.as_ref().map(|m| m.lr), Some(3.0 * META_LR));
    assert_eq!(edited_run.gamma, 0.2);

    // A live edit of γ to the value the restore put in force says what it
    // replaced: the config line's old value is the config's (walkthrough X).
    let raised = resumed_run.gamma;
    let mut live = resumed_run.config.clone();
    // As a user types it: 0.3, where the restore's is 0.30000000000000004.
    let typed: f64 = fmt_gamma(raised).parse().unwrap();
    assert_ne!(typed, raised, "the test needs the rounding");
    live.meltr.gamma = typed;
    resumed_run.apply_config(live).unwrap();
    resumed_run.flush_pending().unwrap();
    let expected = format!(
        "meltr.gamma was {} in force, a collapse restore's, not the config's {}: the edit sets {}, as it was",
        crate::numfmt::readable(raised),
        crate::numfmt::readable(config(OnCollapse::Restore).meltr.gamma),
        crate::numfmt::readable(typed)
    );
    let said = lines(copy.path())
        .iter()
        .any(|l| matches!(&l.record, Record::Event { message, .. } if *message == expected));
    assert!(said, "no note on the γ the edit replaced: {expected}");
    assert_eq!(resumed_run.gamma, typed);
}

/// The pool's skipped steps travel with the checkpoint: a resumed run's
/// meta steps draw from the same batches as the uninterrupted run's (and
/// the skipped ones change what they draw: the check can fail).
#[test]
fn a_resume_draws_from_the_pool_as_the_run_would_have() {
    let run = |skipped: &[u64]| {
        let dir = tempfile::tempdir().unwrap();
        let (events, _keep) = std::sync::mpsc::sync_channel(1 << 16);
        let (mut trainer, _) =
            Trainer::new(dir.path(), config(OnCollapse::Restore), false, events).unwrap();
        for _ in 0..12 {
            trainer.train_step().unwrap();
        }
        // As if these steps' updates had been skipped.
        trainer.pool_skipped.extend(skipped);
        trainer.write_checkpoint().unwrap();
        (dir, trainer)
    };
    let phi_after = |trainer: &mut Trainer| {
        for _ in 0..9 {
            trainer.train_step().unwrap();
        }
        tch::no_grad(|| {
            trainer
                .combiner
                .params()
                .iter()
                .map(Tensor::copy)
                .collect::<Vec<_>>()
        })
    };
    let (dir, mut straight) = run(&[5, 7, 8, 9, 10, 11, 12]);
    let copy = tempfile::tempdir().unwrap();
    copy_session(dir.path(), copy.path());
    let mut resumed_run = resumed(copy.path(), config(OnCollapse::Restore));
    assert_eq!(
        resumed_run.pool_skipped,
        BTreeSet::from([5, 7, 8, 9, 10, 11, 12])
    );
    let (a, b) = (phi_after(&mut straight), phi_after(&mut resumed_run));
    assert!(
        a.iter().zip(&b).all(|(a, b)| a.equal(b)),
        "φ differs after the resume"
    );
    let (_, mut unskipped) = run(&[]);
    let c = phi_after(&mut unskipped);
    assert!(
        !a.iter().zip(&c).all(|(a, c)| a.equal(c)),
        "the skipped steps changed nothing the meta steps drew"
    );
}

/// The Neumann series' stop episodes travel with the checkpoint: a resumed
/// run's warnings count on (the 5th is not said as the 1st); so does a
/// train line owed by a skipped logging step.
#[test]
fn a_resume_counts_the_neumann_stops_on_and_logs_an_owed_line() {
    let dir = tempfile::tempdir().unwrap();
    let (events, _keep) = std::sync::mpsc::sync_channel(1 << 16);
    let (mut trainer, _) =
        Trainer::new(dir.path(), config(OnCollapse::Restore), false, events).unwrap();
    for _ in 0..3 {
        trainer.train_step().unwrap();
    }
    (trainer.neumann_episodes, trainer.neumann_stopped) = (5, true);
    trainer.train_line_owed = true;
    trainer.write_checkpoint().unwrap();
    let resumed_run = resumed(dir.path(), config(OnCollapse::Restore));
    assert_eq!(
        (resumed_run.neumann_episodes, resumed_run.neumann_stopped),
        (5, true)
    );
    assert!(
        resumed_run.train_line_owed,
        "the owed train line is forgotten"
    );
}
