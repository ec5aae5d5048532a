//! A checkpoint asked for on rank 0 (the TUI's `c` and `f`) is taken by
//! every rank at the same step: its flush reads the collapse watch, whose
//! restore changes φ, so a rank that flushed alone would train on another φ.

use super::restore_tests::{config, knock_out, HEALTHY_STEPS};
use super::*;
use crate::config::OnCollapse;
use crate::dist::rendezvous::Launcher;
use crate::dist::Rendezvous;
use crate::session::log::read_metrics;
use std::time::Duration;

/// Steps after the knock-out: the restore comes 25 meta steps (75 steps) in.
const AFTER_KNOCK_OUT: u64 = 120;

/// Rank `rank` of two: knocked out after its healthy steps, then run with
/// rank 0 asked for a fork's checkpoint at every step. φ at the end, and
/// rank 0's restore events.
fn rank_run(rank: usize, port: u16, dir: &std::path::Path) -> (Vec<Tensor>, usize) {
    let mut config = config(OnCollapse::Restore);
    config.train.dtype = crate::config::Dtype::F64;
    // Only the asked checkpoints flush between the first and the last step.
    config.train.log_every = 1000;
    config.train.steps = HEALTHY_STEPS + AFTER_KNOCK_OUT;
    let (events, progress) = std::sync::mpsc::sync_channel(1 << 16);
    let (mut trainer, _) = Trainer::new(dir, config, false, events).unwrap();
    trainer
        .join_group(&Rendezvous {
            rank,
            world_size: 2,
            local_rank: rank,
            master_addr: "127.0.0.1".into(),
            master_port: port,
            timeout: Duration::from_secs(60),
            launcher: Launcher::Torchrun,
        })
        .unwrap();
    let (mut trainer, _) = knock_out(trainer);
    let (commands, received) = std::sync::mpsc::channel();
    let asker = std::thread::spawn(move || {
        for event in progress {
            if rank == 0 && matches!(event, Event::Progress { .. }) {
                let _ = commands.send(Command::CheckpointForFork);
            }
        }
    });
    let status = trainer.run_loop(&received).unwrap();
    assert_eq!(status, Status::Finished);
    let phi = tch::no_grad(|| trainer.combiner.params().iter().map(Tensor::copy).collect());
    drop(trainer);
    asker.join().unwrap();
    let restores = read_metrics(&SessionDir::new(dir).metrics())
        .unwrap()
        .lines
        .iter()
        .filter(|l| matches!(&l.record, Record::Event { message, .. } if message.contains("restored from")))
        .count();
    (phi, restores)
}

#[test]
fn a_checkpoint_asked_on_rank_0_flushes_every_rank_at_the_same_step() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let ranks: Vec<_> = dirs
        .iter()
        .enumerate()
        .map(|(rank, dir)| {
            let dir = dir.path().to_path_buf();
            std::thread::spawn(move || rank_run(rank, port, &dir))
        })
        .collect();
    let [(phi0, restores), (phi1, _)] = ranks
        .into_iter()
        .map(|r| r.join().unwrap())
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    // Not vacuous: the watch restored φ between two log steps.
    assert!(restores >= 1, "no restore on rank 0");
    let same = phi0.iter().zip(&phi1).all(|(a, b)| a.equal(b));
    assert!(same, "φ differs between the ranks after the restore");
}
