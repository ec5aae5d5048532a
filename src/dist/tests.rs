//! Two Gloo ranks on 127.0.0.1, as threads of this test process.

use super::*;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    rendezvous::free_local_port().unwrap()
}

fn at(rank: usize, world: usize, port: u16, timeout: Duration) -> Rendezvous {
    Rendezvous {
        rank,
        world_size: world,
        local_rank: rank,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        timeout,
        launcher: rendezvous::Launcher::Torchrun,
    }
}

#[test]
fn two_gloo_ranks_average_and_broadcast() {
    let port = free_port();
    let ranks: Vec<_> = (0..2)
        .map(|rank| {
            std::thread::spawn(move || -> Result<(Vec<Vec<f64>>, Vec<f64>, f64)> {
                let group = ProcessGroup::gloo(&at(rank, 2, port, Duration::from_secs(30)))?;
                assert_eq!((group.rank(), group.world_size()), (rank, 2));
                let r = rank as f64;
                // Two dtypes, shapes that need the flat buffer split back.
                let tensors = vec![
                    Tensor::from_slice(&[1.0 + r, 10.0 * r]).to_kind(Kind::Double),
                    Tensor::from_slice(&[r; 6])
                        .to_kind(Kind::Float)
                        .view([2, 3]),
                    Tensor::from_slice(&[3.0 * r]).to_kind(Kind::Double),
                ];
                group.all_reduce_mean(&tensors)?;
                let means = tensors
                    .iter()
                    .map(|t| Vec::<f64>::try_from(t.to_kind(Kind::Double).reshape(-1)).unwrap())
                    .collect();
                let b = Tensor::from_slice(&[r + 7.0, -r]).to_kind(Kind::Double);
                group.broadcast(std::slice::from_ref(&b), 1)?;
                let step = group.broadcast_f64(100.0 + r, 0)?;
                group.barrier()?;
                Ok((means, Vec::<f64>::try_from(&b).unwrap(), step))
            })
        })
        .collect();
    for handle in ranks {
        let (means, broadcast, step) = handle.join().unwrap().unwrap();
        assert_eq!(means, vec![vec![1.5, 5.0], vec![0.5; 6], vec![1.5]]);
        assert_eq!(broadcast, vec![8.0, -1.0]);
        assert_eq!(step, 100.0);
    }
}

#[test]
fn all_reduces_started_together_are_waited_for_later() {
    let port = free_port();
    let ranks: Vec<_> = (0..2)
        .map(|rank| {
            std::thread::spawn(move || -> Result<Vec<Vec<f64>>> {
                let group = ProcessGroup::gloo(&at(rank, 2, port, Duration::from_secs(30)))?;
                let r = rank as f64;
                let a = Tensor::from_slice(&[1.0 + r, 2.0 * r]);
                let b = Tensor::from_slice(&[r; 1000]);
                // Both in flight at once, waited for in the other order.
                let first = group.start_all_reduce_sum(&a)?;
                let second = group.start_all_reduce_sum(&b)?;
                second.wait()?;
                first.wait()?;
                Ok(vec![
                    Vec::try_from(&a)?,
                    Vec::try_from(&b.sum(Kind::Double).reshape([1]))?,
                ])
            })
        })
        .collect();
    for handle in ranks {
        assert_eq!(
            handle.join().unwrap().unwrap(),
            vec![vec![3.0, 2.0], vec![1000.0]]
        );
    }
}

#[test]
fn an_all_reduce_the_other_rank_never_joins_fails_after_the_timeout() {
    let port = free_port();
    let (done, wait_done) = std::sync::mpsc::channel::<()>();
    let absent = std::thread::spawn(move || {
        let group = ProcessGroup::gloo(&at(1, 2, port, Duration::from_secs(2))).unwrap();
        // In the group, but never in the all-reduce (until rank 0 is done).
        let _ = wait_done.recv_timeout(Duration::from_secs(60));
        drop(group);
    });
    let group = ProcessGroup::gloo(&at(0, 2, port, Duration::from_secs(2))).unwrap();
    let t = Tensor::from_slice(&[1.0f64]);
    let started = Instant::now();
    let err = group
        .start_all_reduce_sum(&t)
        .and_then(PendingWork::wait)
        .expect_err("rank 1 never joins the all-reduce");
    let waited = started.elapsed();
    done.send(()).unwrap();
    absent.join().unwrap();
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(30),
        "{waited:?}: {err:#}"
    );
}

#[test]
fn a_rank_alone_gives_up_after_the_timeout_with_a_clear_message() {
    let started = Instant::now();
    let err = ProcessGroup::gloo(&at(0, 2, free_port(), Duration::from_secs(2)))
        .err()
        .expect("no second rank ever arrives");
    let waited = started.elapsed();
    let message = format!("{err:#}");
    assert!(message.contains("rank 0 of 2 could not join"), "{message}");
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(30),
        "{waited:?}"
    );
}

#[test]
#[ignore = "needs a CUDA device (scripts/gpu-check.sh runs it)"]
fn an_nccl_group_of_one_all_reduces_and_broadcasts_on_cuda() {
    let group = ProcessGroup::nccl(&at(0, 1, free_port(), Duration::from_secs(60))).unwrap();
    let device = tch::Device::Cuda(0);
    let tensors = vec![
        Tensor::from_slice(&[1.0f32, 2.0]).to_device(device),
        Tensor::from_slice(&[3.0f64]).to_device(device),
    ];
    group.all_reduce_mean(&tensors).unwrap();
    group.broadcast(&tensors, 0).unwrap();
    group.barrier().unwrap();
    assert_eq!(
        Vec::<f32>::try_from(tensors[0].to_device(tch::Device::Cpu)).unwrap(),
        [1.0, 2.0]
    );
    assert_eq!(
        Vec::<f64>::try_from(tensors[1].to_device(tch::Device::Cpu)).unwrap(),
        [3.0]
    );
}

#[test]
#[ignore = "needs a CUDA device (scripts/gpu-check.sh runs it)"]
fn gradient_buckets_average_during_the_backward_on_cuda() {
    // NCCL: also that the hook's copies and NCCL's stream are ordered.
    let group = ProcessGroup::nccl(&at(0, 1, free_port(), Duration::from_secs(60))).unwrap();
    buckets_of_one_rank_return_autograds_gradients(&group, tch::Device::Cuda(0));
}

#[test]
fn gradient_buckets_of_one_gloo_rank_return_autograds_gradients() {
    let group = ProcessGroup::gloo(&at(0, 1, free_port(), Duration::from_secs(60))).unwrap();
    buckets_of_one_rank_return_autograds_gradients(&group, tch::Device::Cpu);
}

/// World size 1: the mean of one rank is its own gradient, so the buckets
/// must hand back exactly what autograd computed.
fn buckets_of_one_rank_return_autograds_gradients(group: &ProcessGroup, device: tch::Device) {
    let _draws = crate::nn::rng::global_draws();
    let params: Vec<Tensor> = [[64i64, 32], [32, 8], [8, 1]]
        .iter()
        .map(|s| Tensor::randn(s.as_slice(), (tch::Kind::Float, device)).set_requires_grad(true))
        .collect();
    // 4 KiB buckets: the 8 KiB first parameter fills one alone, so at
    // least one all-reduce starts before the backward ends.
    let buckets = buckets::GradBuckets::new(group, &params, 4096).unwrap();
    assert!(buckets.len() >= 2, "{} buckets", buckets.len());
    let x = Tensor::randn([16, 64], (tch::Kind::Float, device));
    for _ in 0..3 {
        let loss = x
            .matmul(&params[0])
            .tanh()
            .matmul(&params[1])
            .tanh()
            .matmul(&params[2])
            .square()
            .mean(None);
        buckets.arm(&Tensor::from(true).to_device(device)).unwrap();
        let grads = Tensor::run_backward(&[&loss], &params, false, false);
        buckets.deliver(&grads).unwrap();
        let averaged = buckets.finish().unwrap();
        assert!(bool::try_from(averaged.finite.to_device(tch::Device::Cpu)).unwrap());
        assert!(averaged.started_in_backward >= 1);
        for (ours, autograd) in averaged.grads.iter().zip(&grads) {
            let err = (ours - autograd).abs().max().double_value(&[]);
            assert!(err == 0.0, "bucketed gradient differs by {err:e}");
        }
    }
}

/// Many groups of one process starting their first collectives at once (as
/// in-process ranks in tests do). torch 2.11's flight recorder files a
/// group's first collective in a map it updates before taking its lock;
/// unserialized, this crashed the process (SIGSEGV in the map's insert)
/// in 4 of 8 runs.
#[test]
fn groups_of_one_process_start_collectives_at_once() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 12;
    let start = std::sync::Arc::new(std::sync::Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|i| {
            let start = start.clone();
            std::thread::spawn(move || -> Result<()> {
                for round in 0..ROUNDS {
                    let value = (i * ROUNDS + round) as f64;
                    let t = Tensor::from_slice(&[value]);
                    // One group alive per thread: each holds sockets, and
                    // 96 at once would pass a 1024-descriptor limit.
                    let group =
                        ProcessGroup::gloo(&at(0, 1, free_port(), Duration::from_secs(30)))?;
                    start.wait();
                    group.all_reduce_sum(&t)?;
                    assert_eq!(t.double_value(&[0]), value);
                }
                Ok(())
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap().unwrap();
    }
}
