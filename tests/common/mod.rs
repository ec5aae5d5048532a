//! Helpers shared by the integration tests.
#![allow(dead_code)]

use meltr_tui::config::Config;
use meltr_tui::engine::{self, control::Status};
use meltr_tui::session::{
    self,
    metrics::{MetricLine, Record},
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Engines seed libtorch's process-wide RNG when they build their data and
/// models (one engine per process in the product), so tests that train run
/// one at a time: hold this guard for the whole test.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A small, fast version of the default config for tests.
pub fn small_config(combiner: &str, steps: u64) -> Config {
    let mut c = Config::default();
    c.combiner.kind = combiner.parse().expect("a combiner kind");
    if c.combiner.kind == meltr_tui::config::CombinerKind::Weights {
        c.combiner.weights = [("primary", 1.0), ("helpful", 0.5), ("harmful", 0.0)]
            .map(|(k, w)| (k.to_string(), w))
            .into();
    }
    c.train.steps = steps;
    c.train.device = "cpu".into();
    c.train.lr = 3e-3;
    c.train.eval_every = 50;
    c.train.log_every = 10;
    c.train.checkpoint_every = 100;
    c.meltr.d_model = 32;
    c.meltr.d_hidden = 32;
    c.meltr.d_ff = 64;
    c.meltr.heads = 4;
    c.validate().unwrap();
    c
}

/// Runs a session to the end in-process; returns its folder and metrics.
pub fn run_session(root: &Path, name: &str, config: Config) -> (PathBuf, Vec<MetricLine>) {
    let dir = session::create(root, name, &config).unwrap();
    let handle = engine::spawn(&dir, config, false).unwrap();
    let status = handle.thread.join().unwrap().unwrap();
    assert_eq!(status, Status::Finished);
    let lines = session::log::read_metrics(&dir.join("metrics.jsonl"))
        .unwrap()
        .lines;
    (dir, lines)
}

/// `|a − b| / |b|` over flattened vectors; `b` must not be zero (the
/// comparison would say nothing).
pub fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let norm: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    assert!(norm > 0.0, "comparing against zero says nothing");
    diff / norm
}

/// The session named `name` under `sessions`, and its metrics.
pub fn metrics_of(sessions: &Path, name: &str) -> (PathBuf, Vec<MetricLine>) {
    let dir = session::find(sessions, name).unwrap();
    let lines = session::log::read_metrics(&dir.join("metrics.jsonl"))
        .unwrap()
        .lines;
    (dir, lines)
}

/// The value of `metric` at the last eval line.
pub fn last_eval(lines: &[MetricLine], metric: &str) -> f64 {
    lines
        .iter()
        .rev()
        .find_map(|l| match &l.record {
            Record::Eval { metrics, .. } => metrics.get(metric).copied(),
            _ => None,
        })
        .expect("an eval line")
}

/// Mean effective weight of `loss` over the last `n` train lines.
pub fn late_weight(lines: &[MetricLine], loss: &str, n: usize) -> f64 {
    let ws: Vec<f64> = lines
        .iter()
        .rev()
        .filter_map(|l| match &l.record {
            Record::Train { weights, .. } => weights.get(loss).copied(),
            _ => None,
        })
        .take(n)
        .collect();
    assert!(!ws.is_empty());
    ws.iter().sum::<f64>() / ws.len() as f64
}

/// `loss`'s value on each `train` line that has it, in file order.
pub fn logged_loss(lines: &[MetricLine], loss: &str) -> Vec<f64> {
    lines
        .iter()
        .filter_map(|l| match &l.record {
            Record::Train { losses, .. } => losses.get(loss).copied(),
            _ => None,
        })
        .collect()
}

/// Steps of the `train` lines in a session's metrics, in file order.
pub fn logged_train_steps(dir: &Path) -> Vec<u64> {
    session::log::read_metrics(&dir.join("metrics.jsonl"))
        .unwrap()
        .lines
        .iter()
        .filter(|l| matches!(l.record, Record::Train { .. }))
        .map(|l| l.step)
        .collect()
}

/// The `event` lines of a session's metrics whose message `matches`:
/// (step, message), in file order.
pub fn events_matching(dir: &Path, matches: impl Fn(&str) -> bool) -> Vec<(u64, String)> {
    session::log::read_metrics(&dir.join("metrics.jsonl"))
        .unwrap()
        .lines
        .into_iter()
        .filter_map(|l| match l.record {
            Record::Event { message, .. } if matches(&message) => Some((l.step, message)),
            _ => None,
        })
        .collect()
}

/// The `config` lines of a session's metrics: (changed keys, error).
pub fn config_lines(dir: &Path) -> Vec<(Vec<String>, Option<String>)> {
    session::log::read_metrics(&dir.join("metrics.jsonl"))
        .unwrap()
        .lines
        .into_iter()
        .filter_map(|l| match l.record {
            Record::Config { changed, error } => Some((changed.into_keys().collect(), error)),
            _ => None,
        })
        .collect()
}

/// The `meltr-tui` binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meltr-tui"))
}

pub fn repo(path: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs to completion, killing it (and failing) after `limit`.
pub fn run_with_limit(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            child.kill().unwrap();
            panic!("did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The python that has the torch meltr-tui links: `$MELTR_PYTHON`, else the
/// `.torch-python` wrapper that `scripts/setup.sh` writes.
pub fn torch_python() -> PathBuf {
    if let Some(python) = std::env::var_os("MELTR_PYTHON") {
        return python.into();
    }
    let wrapper = repo(".torch-python");
    assert!(
        wrapper.exists(),
        "no python with torch: run scripts/setup.sh (it writes .torch-python) or set MELTR_PYTHON"
    );
    wrapper
}

/// Runs a python script with the torch python; panics with its output on failure.
pub fn run_python(args: &[&std::ffi::OsStr]) {
    let out = Command::new(torch_python()).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "python {args:?} failed:\n{}",
        text(&out)
    );
}

/// Exports the example two-stream TorchScript model and its data into a
/// new kept temporary folder, with the exporter's `options` (e.g.
/// `["--attention", "matmul", "--train", "128"]`).
pub fn export_two_stream(options: &[&str]) -> PathBuf {
    let dir = tempfile::tempdir().unwrap().keep();
    let script = repo("examples/torchscript/export_two_stream.py");
    let mut args: Vec<&std::ffi::OsStr> =
        vec![script.as_os_str(), "--out".as_ref(), dir.as_os_str()];
    args.extend(options.iter().map(std::ffi::OsStr::new));
    run_python(&args);
    dir
}

/// `tests/fixtures/flag_models.py`'s models, exported once per test binary.
pub fn flag_models() -> &'static Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        run_python(&[
            repo("tests/fixtures/flag_models.py").as_os_str(),
            dir.as_os_str(),
        ]);
        dir
    })
}

/// Seeds libtorch's process-wide generator and holds the engine's draws
/// lock until the guard drops. A test's draws made without it land between
/// another thread's seeding and its draws (an in-process run's dropout
/// masks, another test's data): CI once saw a dropout run's replay 6e-3 off
/// because a parallel test seeded and drew its data mid-forward.
pub fn seeded_draws(seed: i64) -> std::sync::MutexGuard<'static, ()> {
    let draws = meltr_tui::nn::rng::global_draws();
    tch::manual_seed(seed);
    draws
}

/// Data for the flag models: `rows` samples of `x` [rows, width], `y`,
/// and `flag` set on the rows listed.
pub fn flag_data(path: &Path, rows: i64, width: i64, flagged: &[i64]) -> PathBuf {
    use tch::{Device, Kind, Tensor};
    let draws = seeded_draws(1);
    let x = Tensor::randn([rows, width], (Kind::Float, Device::Cpu));
    drop(draws);
    let y = x.sum_dim_intlist(&[1i64][..], false, Kind::Float).sin();
    let flag = Tensor::zeros([rows], (Kind::Float, Device::Cpu));
    for &row in flagged {
        let _ = flag.get(row).fill_(1.0);
    }
    Tensor::write_safetensors(&[("x", x), ("y", y), ("flag", flag)], path).unwrap();
    path.to_path_buf()
}

/// Polls `check` every 20 ms until it gives a value; fails the test after
/// `limit`, naming what it waited for.
pub fn wait_until<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
