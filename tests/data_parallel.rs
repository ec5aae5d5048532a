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
    meltr_tui::dist::rendezvous::free_local_port().unwrap()
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
    train_ranks(config, world, steps)
        .into_iter()
        .map(|(params, _)| params)
        .collect()
}

/// As [`train`], with each rank's gradient buckets started during the
/// backward and all buckets, over the steps (None: no buckets).
type Buckets = Option<(usize, usize)>;
fn train_ranks(config: &Config, world: usize, steps: usize) -> Vec<(Vec<Tensor>, Buckets)> {
    train_configs(&vec![config.clone(); world], steps)
        .into_iter()
        .map(|(params, buckets, _)| (params, buckets))
        .collect()
}

/// As [`train_ranks`], rank `r` built with `configs[r]`; with each rank's
/// loss factors at the end.
fn train_configs(
    configs: &[Config],
    steps: usize,
) -> Vec<(Vec<Tensor>, Buckets, Option<Vec<f64>>)> {
    let world = configs.len();
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    let trainers: Vec<BenchTrainer> = configs
        .iter()
        .enumerate()
        .map(|(rank, config)| {
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
                    trainer.join_group(&rendezvous(rank, world, port)).unwrap();
                }
                for _ in 0..steps {
                    trainer.step().unwrap();
                }
                trainer.sync().unwrap();
                (
                    trainer.parameters(),
                    trainer.buckets_started_in_backward(),
                    trainer.loss_scale(),
                )
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Rank `rank` of `world` threads meeting on 127.0.0.1:`port`.
fn rendezvous(rank: usize, world: usize, port: u16) -> Rendezvous {
    Rendezvous {
        rank,
        world_size: world,
        local_rank: rank,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        timeout: Duration::from_secs(60),
        launcher: Launcher::Torchrun,
    }
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

/// Ranks that join take rank 0's loss factors (`meltr.loss_scale`) with θ
/// and φ: a resumed rank 0 kept them in its checkpoint, while a fresh rank
/// would measure its own. Here rank 1 is built with none at all.
#[test]
fn joining_ranks_take_rank_zeros_loss_factors() {
    let _serial = serial();
    let mut scaled = config("meltr", 16);
    scaled.meltr.loss_scale = meltr_tui::config::LossScale::Primary;
    let mut raw = config("meltr", 16);
    raw.meltr.loss_scale = meltr_tui::config::LossScale::Raw;
    let ranks = train_configs(&[scaled, raw], 4);
    let factors = ranks[0].2.clone().expect("rank 0 measured factors");
    assert!(factors.iter().any(|&f| f != 1.0), "{factors:?}");
    assert_eq!(
        ranks[1].2,
        Some(factors),
        "rank 1 reads the losses as rank 0"
    );
}

/// Ranks that join take rank 0's collapse watch (counters and healthy
/// snapshot), meta-learning rate and γ: a resumed rank 0 has them from its
/// checkpoint, a fresh rank would start its own, and the ranks must decide
/// restores alike. Here rank 0 trained alone first, with other rates.
#[test]
fn joining_ranks_take_rank_zeros_collapse_watch_meta_rate_and_gamma() {
    let _serial = serial();
    let mut ahead = config("meltr", 16);
    ahead.meltr.meta_lr = 2e-3;
    ahead.meltr.gamma = 0.3;
    let fresh = config("meltr", 16);
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut rank0 = BenchTrainer::new(
        &meltr_tui::session::create(root.path(), "rank0", &ahead).unwrap(),
        ahead,
    )
    .unwrap();
    // Meta steps under restore keep a healthy snapshot once the primary's
    // weight clears 0.5.
    for _ in 0..40 {
        rank0.step().unwrap();
    }
    rank0.sync().unwrap();
    let (before, ..) = rank0.collapse_watch();
    assert!(
        before.iter().any(|(name, _)| name.contains(".healthy.")),
        "rank 0 kept no healthy snapshot"
    );
    let rank1 = BenchTrainer::new(
        &meltr_tui::session::create(root.path(), "rank1", &fresh).unwrap(),
        fresh,
    )
    .unwrap();
    let handles: Vec<_> = [rank0, rank1]
        .into_iter()
        .enumerate()
        .map(|(rank, mut trainer)| {
            std::thread::spawn(move || {
                trainer.join_group(&rendezvous(rank, 2, port)).unwrap();
                let joined = trainer.collapse_watch();
                for _ in 0..6 {
                    trainer.step().unwrap();
                }
                trainer.sync().unwrap();
                (joined, trainer.parameters())
            })
        })
        .collect();
    let ranks: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let ((watch0, lr0, gamma0), params0) = &ranks[0];
    let ((watch1, lr1, gamma1), params1) = &ranks[1];
    assert_eq!((*lr1, *gamma1), (*lr0, *gamma0));
    assert_eq!((*lr1, *gamma1), (Some(2e-3), 0.3));
    assert_eq!(watch0.len(), before.len());
    assert_eq!(watch1.len(), watch0.len(), "rank 1 lacks the snapshot");
    // NaN where the watch has no loss average yet: equal as NaN.
    let same = |a: &Tensor, b: &Tensor| {
        a.isnan().equal(&b.isnan())
            && a.nan_to_num(0.0, None, None)
                .equal(&b.nan_to_num(0.0, None, None))
    };
    for ((name, a), (_, b)) in watch0.iter().zip(watch1) {
        assert!(same(a, b), "{name} differs between the ranks");
    }
    assert!(
        bitwise_equal(params0, params1),
        "θ or φ differs between the ranks"
    );
}

// --- θ's gradients in buckets overlapped with the backward (train.bucket_mb) --

fn with_buckets(mut config: Config, bucket_mb: f64) -> Config {
    config.train.bucket_mb = bucket_mb;
    config.validate().unwrap();
    config
}

#[test]
fn buckets_started_during_the_backward_average_as_one_process_with_the_whole_batch() {
    let _serial = serial();
    let steps = 12;
    // 2 KiB buckets: several per step on the synthetic model.
    let bucketed = train_ranks(&with_buckets(config("sum", 16), 0.002), 2, steps);
    let (started, buckets) = bucketed[0]
        .1
        .expect("2 ranks with bucket_mb > 0 use buckets");
    assert!(buckets >= 3 * steps, "{buckets} buckets in {steps} steps");
    // The hooks start all but the last bucket (parameter 0's, which the
    // backward gives last) before the backward returns.
    assert!(
        started >= buckets - steps,
        "only {started} of {buckets} buckets started during the backward"
    );
    assert_eq!(bucketed[0].1, bucketed[1].1);
    let (rank0, rank1) = (&bucketed[0].0, &bucketed[1].0);
    assert!(bitwise_equal(rank0, rank1), "θ differs between the ranks");
    let single = train(&config("sum", 16), 1, steps);
    let err = max_relative_difference(rank0, &single[0]);
    assert!(
        err < 1e-6,
        "2 ranks × 8 rows vs 1 process × 16 rows: {err:e}"
    );
    // train.bucket_mb = 0: one all-reduce after the backward, and the
    // same sums (two ranks: a + b either way).
    let after = train_ranks(&with_buckets(config("sum", 16), 0.0), 2, steps);
    assert_eq!(after[0].1, None, "bucket_mb = 0 turns the buckets off");
    assert!(bitwise_equal(rank0, &after[0].0));
    let start = train(&config("sum", 16), 1, 0);
    assert!(max_relative_difference(rank0, &start[0]) > 1e-3);
}

#[test]
fn buckets_leave_the_meta_step_and_the_gradient_shares_alone() {
    let _serial = serial();
    // Every step logged with gradient shares (θ's gradient from their
    // double backward, put in the buckets after it) and a meta step every
    // second step (backward passes over θ the hooks must ignore).
    let mut c = config("meltr", 16);
    c.train.log_every = 1;
    c.train.shares_every = 3;
    let steps = 8;
    let bucketed = train_ranks(&with_buckets(c.clone(), 0.002), 2, steps);
    let off = train_ranks(&with_buckets(c.clone(), 0.0), 2, steps);
    assert!(
        bitwise_equal(&bucketed[0].0, &bucketed[1].0),
        "θ or φ differs between the ranks"
    );
    let (started, buckets) = bucketed[0].1.unwrap();
    assert!(started > 0 && buckets > started, "{started} of {buckets}");
    let err = max_relative_difference(&bucketed[0].0, &off[0].0);
    assert!(err < 1e-12, "buckets vs one all-reduce: {err:e}");
    let start = train(&c, 1, 0);
    let phi = |params: &[Tensor]| params.last().unwrap().shallow_clone();
    assert!(
        max_relative_difference(&[phi(&bucketed[0].0)], &[phi(&start[0])]) > 1e-6,
        "φ did not move"
    );
}

// --- whole processes: `--nproc`, SLURM's variables, a rank killed -----------

use common::text;
use meltr_tui::session::metrics::{MetricLine, Record, CHECKPOINT_ASKED_EVENT};
use std::process::Command;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meltr-tui"))
}

/// The one session under `sessions` and its metrics lines.
fn only_session(sessions: &std::path::Path) -> (std::path::PathBuf, Vec<MetricLine>) {
    let dirs: Vec<_> = std::fs::read_dir(sessions)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("session.json").exists())
        .collect();
    assert_eq!(dirs.len(), 1, "sessions: {dirs:?}");
    let lines = meltr_tui::session::log::read_metrics(&dirs[0].join("metrics.jsonl"))
        .unwrap()
        .lines;
    (dirs[0].clone(), lines)
}

fn train_losses(lines: &[MetricLine]) -> Vec<(u64, f64)> {
    lines
        .iter()
        .filter_map(|l| match &l.record {
            Record::Train { total, .. } => Some((l.step, *total)),
            _ => None,
        })
        .collect()
}

const SUM_F64: [&str; 8] = [
    "--set",
    "combiner.kind=sum",
    "--set",
    "train.dtype=f64",
    "--set",
    "train.log_every=5",
    "--steps",
    "40",
];

#[test]
fn nproc_two_writes_one_session_that_matches_one_process() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    // The followers' scratch folders go here (TMPDIR), to be checked gone.
    let tmp = tempfile::tempdir().unwrap();
    let run = |sessions: &str, extra: &[&str]| {
        let out = binary()
            .env("TMPDIR", tmp.path())
            .args([
                "run",
                "--headless",
                "-c",
                "configs/synthetic.toml",
                "--sessions-dir",
            ])
            .arg(root.path().join(sessions))
            .args(SUM_F64)
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        // The start says on how many ranks (it did not, a walkthrough).
        let said = extra.contains(&"--nproc") == text(&out).contains("(on cpu × 2 ranks)");
        assert!(said, "{}", text(&out));
        only_session(&root.path().join(sessions))
    };
    let (dir, two) = run("two", &["--nproc", "2"]);
    let (_, one) = run("one", &[]);
    let (two_losses, one_losses) = (train_losses(&two), train_losses(&one));
    // Every logged step once, from rank 0 alone.
    let steps: Vec<u64> = two_losses.iter().map(|(s, _)| *s).collect();
    assert_eq!(steps, (1..=8).map(|i| i * 5).collect::<Vec<_>>());
    assert_eq!(two_losses.len(), one_losses.len());
    for ((step, a), (_, b)) in two_losses.iter().zip(&one_losses) {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1e-12),
            "step {step}: {a} vs {b}"
        );
    }
    assert!(dir.join("checkpoints").read_dir().unwrap().count() >= 1);
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the follower left {left:?} behind");
}

#[test]
fn a_batch_that_does_not_split_over_the_ranks_is_refused_before_any_session() {
    let root = tempfile::tempdir().unwrap();
    let sessions = root.path().join("sessions");
    let out = binary()
        .args([
            "run",
            "--headless",
            "--nproc",
            "2",
            "-c",
            "configs/synthetic.toml",
        ])
        .args([
            "--set",
            "workload.batch_size=33",
            "--steps",
            "5",
            "--sessions-dir",
        ])
        .arg(&sessions)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(
            "synthetic.toml with --set workload.batch_size=33: workload.batch_size = 33 does not split evenly over 2 ranks"
        ),
        "{}",
        text(&out)
    );
    let left = std::fs::read_dir(&sessions).map_or(0, |d| d.count());
    assert_eq!(left, 0, "a session folder was left behind");
}

#[test]
fn two_ranks_launched_with_slurm_variables_train_one_session() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let ranks: Vec<_> = (0..2)
        .map(|rank| {
            binary()
                .args([
                    "run",
                    "--headless",
                    "-c",
                    "configs/synthetic.toml",
                    "--sessions-dir",
                ])
                .arg(root.path())
                .args(SUM_F64)
                .env("SLURM_PROCID", rank.to_string())
                .env("SLURM_NTASKS", "2")
                .env("SLURM_LOCALID", rank.to_string())
                .env("SLURM_JOB_NODELIST", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env_remove("RANK")
                .env_remove("WORLD_SIZE")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in ranks {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    let (_, lines) = only_session(root.path());
    assert_eq!(train_losses(&lines).len(), 8);
}

#[test]
fn a_killed_rank_fails_the_run_at_once_with_a_clear_message() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let sessions = root.path().join("s");
    // The killed follower cannot remove its scratch folder: keep it in here.
    let rank0 = two_local_ranks(root.path(), &sessions, "100000", &[]);
    // Wait for training (a train line), then SIGKILL rank 1.
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let trained = std::fs::read_dir(&sessions)
            .ok()
            .and_then(|mut d| d.next())
            .is_some_and(|e| {
                std::fs::read_to_string(e.unwrap().path().join("metrics.jsonl"))
                    .is_ok_and(|m| m.contains("\"kind\":\"train\""))
            });
        if trained {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let pattern = format!("--sessions-dir {} --headless", sessions.display());
    let killed = Command::new("pkill")
        .args(["-9", "-f", "--", &pattern])
        .status()
        .unwrap();
    assert!(killed.success(), "no follower rank to kill");
    let killed_at = std::time::Instant::now();
    let out = rank0.wait_with_output().unwrap();
    assert!(
        killed_at.elapsed() < Duration::from_secs(60),
        "rank 0 waited {:?}",
        killed_at.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    // It fails at its next collective: the step's gradients, or the
    // orders it sends before a step.
    let reason = |text: &str| {
        ["average with", "reach"].iter().any(|how| {
            text.contains(&format!(
                "rank 0 of 2 could not {how} the other ranks (one of them died"
            ))
        })
    };
    assert!(reason(&said), "{said}");
    let (dir, _) = only_session(&sessions);
    let meta = std::fs::read_to_string(dir.join("session.json")).unwrap();
    assert!(meta.contains("\"failed\"") && reason(&meta), "{meta}");
    // And how it goes on (a failed session gets no hint from `ls`).
    let id = dir.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        said.contains(&format!(
            "resume {id} --nproc 2` (or under the same launcher) "
        )),
        "{said}"
    );
}

// --- scripts/scaling.py: throughput against the number of ranks -------------

#[test]
fn the_scaling_script_measures_one_and_two_ranks_on_a_fixed_global_batch() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let json = root.path().join("scaling.json");
    let out = Command::new("python3")
        .args([
            "scripts/scaling.py",
            "--binary",
            env!("CARGO_BIN_EXE_meltr-tui"),
        ])
        .args(["-c", "configs/synthetic.toml", "--ranks", "1,2"])
        .args(["--steps", "10", "--warmup", "2", "--global-batch", "16"])
        .arg("--out")
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("| ranks | batch per rank | steps/s"),
        "{table}"
    );
    assert!(
        table.contains("\n| 1 | 16 | ") && table.contains("\n| 2 | 8 | "),
        "{table}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for (run, ranks) in runs.iter().zip([1, 2]) {
        assert_eq!(run["ranks"], ranks);
        // Steps 3..10 timed: 7 intervals, from the session's own train lines.
        assert_eq!(run["timed_steps"], 7);
        let rate = run["steps_per_s"].as_f64().unwrap();
        let seconds = run["timed_seconds"].as_f64().unwrap();
        assert!(rate > 0.0 && (rate * seconds - 7.0).abs() < 1e-9, "{run}");
        let samples = run["samples_per_s"].as_f64().unwrap();
        assert!((samples - 16.0 * rate).abs() < 1e-9 * samples, "{run}");
    }
    let speedup = runs[1]["speedup"].as_f64().unwrap();
    let efficiency = runs[1]["efficiency"].as_f64().unwrap();
    assert_eq!(runs[0]["speedup"].as_f64(), Some(1.0));
    assert!((efficiency - speedup / 2.0).abs() < 1e-12);

    // A global batch the ranks cannot split is refused before any run.
    let out = Command::new("python3")
        .args([
            "scripts/scaling.py",
            "--binary",
            env!("CARGO_BIN_EXE_meltr-tui"),
        ])
        .args(["--ranks", "1,3", "--global-batch", "16"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out).contains("does not divide by 3 ranks"),
        "{}",
        text(&out)
    );
}

// --- rank 0's commands reach every rank at the same step (lockstep.rs) ------

use meltr_tui::engine::control::{Command as EngineCommand, Event, Status};
use std::sync::mpsc;

/// What one rank of [`two_ranks_running`] ended with.
struct RankEnd {
    status: Status,
    parameters: Vec<Tensor>,
    config: Config,
    steps: u64,
    /// The steps after which a config came into force (start included).
    applied_after: Vec<u64>,
}

/// Two ranks (threads) running the trainer's own run loop with collective
/// timeout `timeout`; `drive` sees rank 0's events as they come and may
/// send rank 0 commands (the other rank gets none, as in a real run).
fn two_ranks_running(
    config: &Config,
    timeout: Duration,
    mut drive: impl FnMut(&Event, &mpsc::Sender<EngineCommand>),
) -> Vec<RankEnd> {
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut threads = Vec::new();
    let mut channels = Vec::new();
    for rank in 0..2 {
        let dir = meltr_tui::session::create(root.path(), &format!("rank{rank}"), config).unwrap();
        let (events_tx, events) = mpsc::sync_channel(100_000);
        let mut trainer = BenchTrainer::with_events(&dir, config.clone(), events_tx).unwrap();
        let (commands, commands_rx) = mpsc::channel();
        threads.push(std::thread::spawn(move || {
            let at = Rendezvous {
                rank,
                world_size: 2,
                local_rank: rank,
                master_addr: "127.0.0.1".into(),
                master_port: port,
                timeout,
                launcher: Launcher::Torchrun,
            };
            trainer.join_group(&at).unwrap();
            let status = trainer.run(&commands_rx).unwrap();
            (
                status,
                trainer.parameters(),
                trainer.config(),
                trainer.steps_done(),
            )
        }));
        channels.push((commands, events));
    }
    let applied = |event: &Event, last_step: &mut u64, applied: &mut Vec<u64>| match event {
        Event::Progress { step, .. } => *last_step = *step,
        Event::ConfigInForce { .. } => applied.push(*last_step),
        _ => {}
    };
    let (mut last_step, mut applied0) = (0, Vec::new());
    loop {
        match channels[0].1.recv_timeout(Duration::from_millis(50)) {
            Ok(event) => {
                applied(&event, &mut last_step, &mut applied0);
                drive(&event, &channels[0].0);
            }
            Err(_) if threads[0].is_finished() => break,
            Err(_) => {}
        }
    }
    let (mut last_step, mut applied1) = (0, Vec::new());
    for event in channels[1].1.try_iter() {
        applied(&event, &mut last_step, &mut applied1);
    }
    threads
        .into_iter()
        .zip([applied0, applied1])
        .map(|(thread, applied_after)| {
            let (status, parameters, config, steps) = thread.join().unwrap();
            RankEnd {
                status,
                parameters,
                config,
                steps,
                applied_after,
            }
        })
        .collect()
}

#[test]
fn a_live_config_change_on_rank_0_applies_on_every_rank_at_the_same_step() {
    let _serial = serial();
    let mut config = config("meltr", 16);
    config.train.steps = 30;
    let mut changed = config.clone();
    changed.train.lr = 1e-2;
    changed.meltr.meta_lr = 3e-3;
    let mut sent = false;
    let ranks = two_ranks_running(&config, Duration::from_secs(60), |event, commands| {
        if matches!(event, Event::Progress { step, .. } if *step >= 8) && !sent {
            commands
                .send(EngineCommand::ApplyConfig {
                    config: Box::new(changed.clone()),
                })
                .unwrap();
            sent = true;
        }
    });
    for rank in &ranks {
        assert_eq!(rank.status, Status::Finished);
        assert_eq!(rank.steps, 30);
        assert_eq!(
            (rank.config.train.lr, rank.config.meltr.meta_lr),
            (1e-2, 3e-3)
        );
    }
    // In force at the start, then the change, after the same step on both.
    let at = &ranks[0].applied_after;
    assert_eq!(at.len(), 2, "{at:?}");
    assert!(at[0] == 0 && (8..30).contains(&at[1]), "{at:?}");
    assert_eq!(ranks[1].applied_after, *at);
    assert!(
        bitwise_equal(&ranks[0].parameters, &ranks[1].parameters),
        "θ or φ differs between the ranks"
    );
    // Not vacuous: without the change the run ends elsewhere.
    let plain = two_ranks_running(&config, Duration::from_secs(60), |_, _| {});
    assert!(!bitwise_equal(&plain[0].parameters, &ranks[0].parameters));
}

#[test]
fn pause_and_stop_on_rank_0_hold_and_end_every_rank() {
    let _serial = serial();
    let mut config = config("meltr", 16);
    config.train.steps = 1_000_000;
    config.train.eval_every = 1_000_000;
    // A pause longer than the collective timeout: rank 0's heartbeat
    // (every timeout / 3) keeps the other rank waiting, not failing.
    let timeout = Duration::from_secs(3);
    let mut paused_at = None;
    let mut stop_sent = false;
    let mut asked = Vec::new();
    let ranks = two_ranks_running(&config, timeout, |event, commands| {
        if let Event::Line { line, .. } = event {
            if let Record::Event { message, .. } = &line.record {
                if message.starts_with(CHECKPOINT_ASKED_EVENT) {
                    asked.push(message.clone());
                }
            }
        }
        let Event::Progress { step, .. } = event else {
            return;
        };
        match paused_at {
            None if *step >= 5 => {
                commands.send(EngineCommand::Pause).unwrap();
                std::thread::sleep(timeout * 2);
                // Checkpoints asked for while paused: every rank takes them
                // between two of rank 0's waiting messages.
                commands.send(EngineCommand::CheckpointForFork).unwrap();
                commands.send(EngineCommand::Checkpoint).unwrap();
                std::thread::sleep(timeout * 2);
                commands.send(EngineCommand::Resume).unwrap();
                paused_at = Some(*step);
            }
            Some(at) if *step >= at + 5 && !stop_sent => {
                commands.send(EngineCommand::Stop).unwrap();
                stop_sent = true;
            }
            _ => {}
        }
    });
    assert!(stop_sent, "rank 0 never got past its pause");
    assert_eq!(
        asked.len(),
        2,
        "the checkpoints asked while paused: {asked:?}"
    );
    for rank in &ranks {
        assert_eq!(rank.status, Status::Stopped);
    }
    assert_eq!(ranks[0].steps, ranks[1].steps);
    assert!(
        ranks[0].steps >= paused_at.unwrap() + 5,
        "trained on after the pause"
    );
    assert!(bitwise_equal(&ranks[0].parameters, &ranks[1].parameters));
}

/// The processes whose parent is `pid` (from /proc), not yet ended.
fn live_children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            // /proc/PID/stat: "PID (name) STATE PPID ..."; the name may hold spaces.
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            let rest: Vec<&str> = stat
                .rsplit_once(')')
                .map_or(vec![], |(_, r)| r.split_whitespace().collect());
            rest.len() > 1 && rest[0] != "Z" && rest[1] == pid.to_string()
        })
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
    })
}

#[test]
fn nproc_two_takes_a_live_edit_and_a_sigterm_stops_both_ranks_cleanly() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let sessions = root.path().join("s");
    let rank0 = two_local_ranks(root.path(), &sessions, "1000000", &["train.log_every=5"]);
    let metrics = || {
        std::fs::read_dir(&sessions)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| std::fs::read_to_string(e.ok()?.path().join("metrics.jsonl")).ok())
            .unwrap_or_default()
    };
    common::wait_until("training", Duration::from_secs(60), || {
        metrics().contains("\"kind\":\"train\"").then_some(())
    });
    let follower = common::wait_until("rank 1", Duration::from_secs(10), || {
        live_children(rank0.id()).first().copied()
    });
    // A live edit of the session's config.toml (rank 0 watches it).
    let (dir, _) = only_session(&sessions);
    std::fs::write(dir.join("config.toml"), "[train]\nlr = 0.002\n").unwrap();
    common::wait_until("the change in the log", Duration::from_secs(30), || {
        metrics()
            .lines()
            .any(|l| l.contains("\"kind\":\"config\"") && l.contains("train.lr"))
            .then_some(())
    });
    let trained_after = metrics()
        .lines()
        .filter(|l| l.contains("\"kind\":\"train\""))
        .count();
    common::wait_until("training after the change", Duration::from_secs(30), || {
        (metrics()
            .lines()
            .filter(|l| l.contains("\"kind\":\"train\""))
            .count()
            > trained_after + 1)
            .then_some(())
    });
    assert!(alive(follower), "rank 1 died after the live change");
    let killed = Command::new("kill")
        .args(["-TERM", &rank0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = rank0.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "{}", text(&out));
    common::wait_until("rank 1 to end", Duration::from_secs(30), || {
        (!alive(follower)).then_some(())
    });
    let said = text(&out);
    assert!(!said.contains("rank 1 of 2"), "rank 1 failed: {said}");
    let meta = std::fs::read_to_string(dir.join("session.json")).unwrap();
    assert!(meta.contains("\"stopped\""), "{meta}");
    assert!(dir.join("checkpoints").read_dir().unwrap().count() >= 1);
    // Rank 1 ended its own way (it removes its scratch folder last).
    let left: Vec<_> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "s")
        .collect();
    assert!(left.is_empty(), "rank 1 left {left:?} behind");
}

// --- resume with another world size ------------------------------------------

#[test]
fn a_session_resumes_with_one_rank_and_again_with_two() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let go = |sessions: &std::path::Path, args: &[&str]| {
        let out = binary()
            .env("TMPDIR", tmp.path())
            .args(args)
            .arg("--sessions-dir")
            .arg(sessions)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    };
    let sessions = root.path().join("s");
    go(
        &sessions,
        &[
            "run",
            "--headless",
            "-c",
            "configs/synthetic.toml",
            "--nproc",
            "2",
            "--set",
            "combiner.kind=sum",
            "--set",
            "train.dtype=f64",
            "--set",
            "train.log_every=5",
            "--set",
            "train.checkpoint_every=10",
            "--steps",
            "20",
        ],
    );
    let (dir, _) = only_session(&sessions);
    let id = dir.file_name().unwrap().to_str().unwrap().to_string();
    let world = |dir: &std::path::Path| {
        meltr_tui::session::SessionMeta::read(dir)
            .unwrap()
            .world_size
    };
    assert_eq!(world(&dir), Some(2));
    // Trained with 2 ranks, on with 1 (asked for: a plain resume is refused).
    go(
        &sessions,
        &[
            "resume",
            &id,
            "--headless",
            "--nproc",
            "1",
            "--set",
            "train.steps=30",
        ],
    );
    let (_, lines) = only_session(&sessions);
    assert_eq!(train_losses(&lines).last().unwrap().0, 30);
    assert_eq!(world(&dir), None);
    // The history is kept and said: `ranks` reads 2→1, not 1 (walkthrough
    // S: such a run pooled with one-rank runs, unsaid).
    let ranks = |dir: &std::path::Path| meltr_tui::session::SessionMeta::read(dir).unwrap().ranks();
    assert_eq!(ranks(&dir), "2→1");
    let said: Vec<&str> = lines
        .iter()
        .filter_map(|l| match &l.record {
            Record::Event { message, .. } if message.starts_with("this start trains on") => {
                Some(message.as_str())
            }
            _ => None,
        })
        .collect();
    assert!(
        said.len() == 1 && said[0].contains("on 1 rank where the steps before 20 ran on 2"),
        "{said:?}"
    );
    // Trained with 1 rank, on with 2 — and, from a copy of the same
    // checkpoint, with 1: the same numbers (sum, f64), so rank 1 took rank
    // 0's θ, optimizer state and step.
    let copy = root.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    let copied = Command::new("cp")
        .arg("-r")
        .arg(&dir)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(copied.success());
    go(
        &sessions,
        &[
            "resume",
            &id,
            "--headless",
            "--nproc",
            "2",
            "--set",
            "train.steps=40",
        ],
    );
    go(
        &copy,
        &["resume", &id, "--headless", "--set", "train.steps=40"],
    );
    let (_, two) = only_session(&sessions);
    let (_, one) = only_session(&copy);
    assert_eq!(world(&dir), Some(2));
    assert_eq!(ranks(&dir), "2→1→2");
    let after = |lines: &[MetricLine]| -> Vec<(u64, f64)> {
        train_losses(lines)
            .into_iter()
            .filter(|(s, _)| *s > 30)
            .collect()
    };
    let (two, one) = (after(&two), after(&one));
    assert_eq!(two.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [35, 40]);
    assert_eq!(two.len(), one.len());
    for ((step, a), (_, b)) in two.iter().zip(&one) {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1e-12),
            "step {step}: {a} vs {b}"
        );
    }
    // A plain resume of a session that last trained on 2 ranks is refused,
    // saying how to go on, before any process starts (a 2-rank run went on
    // in one process with only a warning: walkthrough Y).
    let out = binary()
        .env("TMPDIR", tmp.path())
        .args(["resume", &id, "--headless", "--set", "train.steps=50"])
        .arg("--sessions-dir")
        .arg(&sessions)
        .output()
        .unwrap();
    assert!(
        !out.status.success()
            && text(&out).contains("last trained on 2 ranks")
            && text(&out).contains(&format!("resume {id} --nproc 2`")),
        "{}",
        text(&out)
    );
    assert_eq!(ranks(&dir), "2→1→2", "nothing ran");
}

// --- examples/slurm ----------------------------------------------------------

#[test]
fn the_slurm_example_runs_two_ranks_through_a_stand_in_srun() {
    let _serial = serial();
    let script = "examples/slurm/meltr.sbatch";
    let out = Command::new("bash").args(["-n", script]).output().unwrap();
    assert!(out.status.success(), "bash -n: {}", text(&out));
    // Every flag its srun line gives meltr-tui is one `run` has.
    let source = std::fs::read_to_string(script).unwrap();
    let srun = source
        .split("\nsrun ")
        .nth(1)
        .expect("an srun line")
        .split("\n\n")
        .next()
        .unwrap()
        .replace("\\\n", " ");
    let after_binary = srun.split("\"$MELTR\" run").nth(1).expect("\"$MELTR\" run");
    let flags: Vec<&str> = after_binary
        .split_whitespace()
        .filter(|w| w.starts_with('-'))
        .collect();
    assert!(flags.len() >= 5, "{flags:?}");
    let help = binary().args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).to_string();
    for flag in &flags {
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag},")),
            "`{flag}` is not a flag of `meltr-tui run`:\n{help}"
        );
    }
    // Run it, with a stand-in srun that starts its tasks on this machine.
    let root = tempfile::tempdir().unwrap();
    let bin = root.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::fs::write(
        bin.join("srun"),
        "#!/bin/bash\n\
         while [[ $1 == --* ]]; do shift; done\n\
         for i in 0 1; do\n\
           SLURM_PROCID=$i SLURM_NTASKS=2 SLURM_LOCALID=$i SLURM_JOB_NODELIST=127.0.0.1 \"$@\" &\n\
         done\n\
         status=0\n\
         for job in $(jobs -p); do wait $job || status=1; done\n\
         exit $status\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("srun"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sessions = root.path().join("sessions");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new("bash")
        .arg(script)
        .args(["--steps", "20", "--set", "train.log_every=5"])
        .env("PATH", path)
        .env("CONFIG", "configs/synthetic.toml")
        .env("SESSIONS", &sessions)
        .env("MELTR", env!("CARGO_BIN_EXE_meltr-tui"))
        .env("DEVICE", "cpu")
        .env("SLURM_JOB_ID", "4242")
        .env("MASTER_PORT", free_port().to_string())
        .env_remove("RANK")
        .env_remove("WORLD_SIZE")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let (dir, lines) = only_session(&sessions);
    assert!(
        dir.to_string_lossy().ends_with("meltr-4242"),
        "{}",
        dir.display()
    );
    assert_eq!(
        train_losses(&lines)
            .iter()
            .map(|(s, _)| *s)
            .collect::<Vec<_>>(),
        [5, 10, 15, 20]
    );
    let meta = meltr_tui::session::SessionMeta::read(&dir).unwrap();
    assert_eq!(meta.world_size, Some(2));
}

// --- train.collective_timeout_s ----------------------------------------------

#[test]
fn a_hung_rank_fails_the_run_after_the_configured_collective_timeout() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let sessions = root.path().join("s");
    let rank0 = two_local_ranks(
        root.path(),
        &sessions,
        "1000000",
        &["train.collective_timeout_s=2"],
    );
    common::wait_until("training", Duration::from_secs(60), || {
        std::fs::read_dir(&sessions)
            .ok()?
            .next()
            .and_then(|e| std::fs::read_to_string(e.ok()?.path().join("metrics.jsonl")).ok())
            .filter(|m| m.contains("\"kind\":\"train\""))
    });
    let follower = common::wait_until("rank 1", Duration::from_secs(10), || {
        live_children(rank0.id()).first().copied()
    });
    // Rank 1 hangs (stopped, its sockets open): only the timeout ends rank 0.
    let signal = |name: &str| {
        let sent = Command::new("kill")
            .args([name, &follower.to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {name} {follower}");
    };
    signal("-STOP");
    let hung_at = std::time::Instant::now();
    let mut rank0 = rank0;
    // Not wait_with_output: the stopped rank holds rank 0's stderr open.
    common::wait_until("rank 0 to fail", Duration::from_secs(60), || {
        rank0.try_wait().unwrap()
    });
    let waited = hung_at.elapsed();
    signal("-KILL");
    let out = rank0.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("did not answer within train.collective_timeout_s = 2 s"),
        "{said}"
    );
    assert!(
        waited >= Duration::from_secs(1) && waited < Duration::from_secs(30),
        "rank 0 failed after {waited:?}"
    );
}

/// `run --headless --nproc 2` of the synthetic config for `steps` steps,
/// with `--set` for each of `overrides`, its output piped; a follower's
/// scratch folder goes under `tmp` (a killed one cannot remove it).
fn two_local_ranks(
    tmp: &std::path::Path,
    sessions: &std::path::Path,
    steps: &str,
    overrides: &[&str],
) -> std::process::Child {
    let mut command = binary();
    command
        .env("TMPDIR", tmp)
        .args(["run", "--headless", "-c", "configs/synthetic.toml"])
        .args(["--steps", steps, "--nproc", "2"]);
    for o in overrides {
        command.args(["--set", o]);
    }
    command
        .arg("--sessions-dir")
        .arg(sessions)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// `run --nproc 2 --detach` returns at once though its output is piped,
/// and its follower rank runs in a process session of its own, as the
/// runner does: a follower holding the caller's stderr kept a walkthrough's
/// `$(… 2>&1)` open until the run ended, and a dropped SSH connection would
/// have ended it. Its stop's hint names `--nproc 2`.
#[test]
fn a_detached_two_rank_run_lets_its_caller_go_and_outlives_its_terminal() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let sessions = root.path().join("s");
    let started = std::time::Instant::now();
    let out = common::run_with_limit(
        binary()
            .env("TMPDIR", tmp.path())
            .arg("--sessions-dir")
            .arg(&sessions)
            .args(["run", "--detach", "-c", "configs/synthetic.toml"])
            .args(["--steps", "1000000", "--nproc", "2"]),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(120));
    let (dir, _) = only_session(&sessions);
    let id = dir.file_name().unwrap().to_str().unwrap().to_string();
    // The follower: a headless copy of the command, the leader of its own
    // process session (its session id is its pid).
    let ps = Command::new("ps")
        .args(["-eo", "pid=,sid=,args="])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&ps.stdout).to_string();
    let follower = listing
        .lines()
        .find(|l| l.contains(&sessions.display().to_string()) && l.contains("--headless"))
        .unwrap_or_else(|| panic!("no follower rank in {listing}"))
        .to_string();
    let fields: Vec<&str> = follower.split_whitespace().collect();
    assert_eq!(fields[0], fields[1], "not in its own session: {follower}");
    let stop = binary()
        .arg("--sessions-dir")
        .arg(&sessions)
        .args(["stop", &id])
        .output()
        .unwrap();
    assert!(
        stop.status.success() && text(&stop).contains(&format!("resume {id} --nproc 2`")),
        "{}",
        text(&stop)
    );
}
