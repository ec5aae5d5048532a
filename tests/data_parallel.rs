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

// --- whole processes: `--nproc`, SLURM's variables, a rank killed -----------

use common::text;
use meltr_tui::session::metrics::{MetricLine, Record};
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
    let rank0 = binary()
        .env("TMPDIR", root.path())
        .args([
            "run",
            "--headless",
            "-c",
            "configs/synthetic.toml",
            "--steps",
            "100000",
            "--nproc",
            "2",
        ])
        .arg("--sessions-dir")
        .arg(&sessions)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
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
    assert!(
        said.contains("could not average with the other ranks"),
        "{said}"
    );
    let (dir, _) = only_session(&sessions);
    let meta = std::fs::read_to_string(dir.join("session.json")).unwrap();
    assert!(
        meta.contains("\"failed\"") && meta.contains("could not average"),
        "{meta}"
    );
}

// --- scripts/scaling.py: throughput against the number of ranks -------------

#[test]
fn the_scaling_script_measures_one_and_two_ranks_on_a_fixed_global_batch() {
    let _serial = serial();
    let root = tempfile::tempdir().unwrap();
    let json = root.path().join("scaling.json");
    let out = Command::new("python3")
        .args(["scripts/scaling.py", "--binary", env!("CARGO_BIN_EXE_meltr-tui")])
        .args(["-c", "configs/synthetic.toml", "--ranks", "1,2"])
        .args(["--steps", "10", "--warmup", "2", "--global-batch", "16"])
        .arg("--out")
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| ranks | batch per rank | steps/s"), "{table}");
    assert!(table.contains("\n| 1 | 16 | ") && table.contains("\n| 2 | 8 | "), "{table}");
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
        .args(["scripts/scaling.py", "--binary", env!("CARGO_BIN_EXE_meltr-tui")])
        .args(["--ranks", "1,3", "--global-batch", "16"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("does not divide by 3 ranks"), "{}", text(&out));
}
