//! Data-parallel training over Gloo (issue 18), with the ranks as threads
//! of this process on 127.0.0.1: the trainer's sharding, gradient and
//! hypergradient averaging and start-up broadcast, against one process.

mod common;

use common::{serial, small_config};
use meltr_tui::config::{Config, Dtype};
use meltr_tui::dist::rendezvous::Launcher;
use meltr_tui::dist::Rendezvous;
use meltr_tui::engine::trainer::BenchTrainer;
use std::time::Duration;
use tch::Tensor;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn config(combiner: &str, batch_size: usize) -> Config {
    let mut c = small_config(combiner, 1000);
    c.train.dtype = Dtype::F64;
    c.workload.batch_size = batch_size;
    c.meltr.meta_every = 2;
    c.validate().unwrap();
    c
}

/// θ then φ after `steps` steps of `world` ranks (threads) that split
/// batches of `batch_size`, one list per rank; each rank's trainer is
/// built before any trains, as processes would be.
fn train(config: &Config, world: usize, steps: usize) -> Vec<Vec<Tensor>> {
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    let trainers: Vec<BenchTrainer> = (0..world)
        .map(|rank| {
            let dir =
                meltr_tui::session::create(root.path(), &format!("rank{rank}"), config).unwrap();
            BenchTrainer::new(&dir, config.clone()).unwrap()
        })
        .collect();
    let handles: Vec<_> = trainers
        .into_iter()
        .enumerate()
        .map(|(rank, mut trainer)| {
            std::thread::spawn(move || {
                if world > 1 {
                    let at = Rendezvous {
                        rank,
                        world_size: world,
                        local_rank: rank,
                        master_addr: "127.0.0.1".into(),
                        master_port: port,
                        timeout: Duration::from_secs(60),
                        launcher: Launcher::Torchrun,
                    };
                    trainer.join_group(&at).unwrap();
                }
                for _ in 0..steps {
                    trainer.step().unwrap();
                }
                trainer.sync().unwrap();
                trainer.parameters()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn max_relative_difference(a: &[Tensor], b: &[Tensor]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let scale = y.abs().max().double_value(&[]).max(1e-12);
            (x - y).abs().max().double_value(&[]) / scale
        })
        .fold(0.0, f64::max)
}

fn bitwise_equal(a: &[Tensor], b: &[Tensor]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.equal(y))
}

#[test]
fn two_ranks_with_half_batches_train_as_one_process_with_the_whole_batch() {
    // Building a workload seeds libtorch's process-wide RNG: one test at a
    // time, so the single process starts where rank 0 does.
    let _serial = serial();
    let steps = 12;
    let ranks = train(&config("sum", 16), 2, steps);
    assert!(
        bitwise_equal(&ranks[0], &ranks[1]),
        "θ differs between the ranks"
    );
    let single = train(&config("sum", 16), 1, steps);
    let err = max_relative_difference(&ranks[0], &single[0]);
    assert!(
        err < 1e-6,
        "2 ranks × 8 rows vs 1 process × 16 rows: {err:e}"
    );
    // Not vacuous: the parameters moved, and half a batch alone differs.
    let start = train(&config("sum", 16), 1, 0);
    assert!(max_relative_difference(&single[0], &start[0]) > 1e-3);
    let half = train(&config("sum", 8), 1, steps);
    assert!(max_relative_difference(&half[0], &single[0]) > 1e-6);
}

#[test]
fn meltr_on_two_ranks_keeps_theta_and_phi_identical() {
    let _serial = serial();
    // 10 steps: 5 meta steps, each on the ranks' averaged hypergradient.
    let ranks = train(&config("meltr", 16), 2, 10);
    assert!(
        bitwise_equal(&ranks[0], &ranks[1]),
        "θ or φ differs between the ranks"
    );
    let start = train(&config("meltr", 16), 1, 0);
    let phi = |params: &[Tensor]| params.last().unwrap().shallow_clone();
    assert!(
        max_relative_difference(&[phi(&ranks[0])], &[phi(&start[0])]) > 1e-6,
        "φ did not move"
    );
}
