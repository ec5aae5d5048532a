//! The `meltr-tui` binary as a user runs it: headless runs, the session
//! contract, config errors, kill -9 and resume, `ls`, `doctor`.

mod common;

use common::{bin, logged_train_steps, repo, run_with_limit, text};
use meltr_tui::engine::checkpoint;
use meltr_tui::session::{self, metrics::Record, SessionMeta};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn headless_default_run_finishes_within_two_minutes_and_matches_the_contract() {
    let root = tempfile::tempdir().unwrap();
    let out = run_with_limit(
        bin()
            .args(["run", "-c"])
            .arg(repo("configs/synthetic.toml"))
            .arg("--headless")
            .arg("--sessions-dir")
            .arg(root.path()),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", text(&out));
    let sessions = session::list(root.path());
    assert_eq!(sessions.len(), 1);
    let (dir, meta) = &sessions[0];
    assert_eq!(meta.status, session::Status::Finished);
    assert_eq!(meta.losses, vec!["primary", "helpful", "harmful"]);
    assert_eq!(meta.device, "cpu");
    assert!(meta.libtorch.starts_with("2.11.0"), "{}", meta.libtorch);
    assert!(dir.join("checkpoints").is_dir() && dir.join("plots").is_dir());
    // The session's config.toml is the whole config, with the comments of
    // the file it was started from.
    let kept = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    let source = std::fs::read_to_string(repo("configs/synthetic.toml")).unwrap();
    let comments: Vec<&str> = source.lines().filter(|l| l.starts_with('#')).collect();
    assert!(!comments.is_empty());
    assert!(kept.starts_with(&(comments.join("\n") + "\n")), "{kept}");
    assert!(kept.contains("[aid]") && kept.contains("[meltr]"), "{kept}");
    // One progress line per log interval on stdout.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("step ")).count(),
        60,
        "{stdout}"
    );

    // metrics.jsonl: every line has step, kind, time and its kind's fields.
    let raw = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    let mut last_time = 0.0;
    for line in raw.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(v["step"].is_u64() && v["time"].is_f64(), "{line}");
        let time = v["time"].as_f64().unwrap();
        assert!(time >= last_time, "time goes forward");
        last_time = time;
        let kind = v["kind"].as_str().unwrap().to_string();
        let fields: &[&str] = match kind.as_str() {
            "train" => &["losses", "total", "weights", "lr"],
            "meta" => &["hypergrad_norm", "reg", "meta_lr", "aid_iterations"],
            "eval" => &["metrics", "losses"],
            "event" => &["level", "message"],
            "transform" => &["curves"],
            "config" => &[],
            other => panic!("unknown kind {other}"),
        };
        for f in fields {
            assert!(v.get(*f).is_some(), "{kind} line lacks {f}: {line}");
        }
        kinds.insert(kind);
    }
    for k in ["train", "meta", "eval", "event", "transform"] {
        assert!(kinds.contains(k), "no {k} line");
    }
    assert_eq!(
        checkpoint::list(&dir.join("checkpoints")).last().unwrap().0,
        600
    );
}

#[test]
fn config_errors_name_file_line_and_key_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("[aid]\niterations = 2\nspeed = 3\n", ":3:", "speed"),
        ("[train]\nlr = \"fast\"\n", ":2:", "train.lr"),
        ("[meltr]\ngamma = -1.0\n", ":2:", "meltr.gamma"),
        (
            "[workload]\nauxiliary = [\"nope\"]\n[train]\nsteps = 5\n",
            "",
            "nope",
        ),
        ("[train\n", ":1:", ""),
    ];
    for (i, (toml, line, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, toml).unwrap();
        let out = run_with_limit(
            bin()
                .args(["run", "--headless", "-c"])
                .arg(&path)
                .arg("--sessions-dir")
                .arg(dir.path().join("s")),
            Duration::from_secs(60),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "case {i} should fail");
        assert!(
            err.contains(&format!("bad{i}.toml{line}")) || line.is_empty(),
            "case {i}: {err}"
        );
        assert!(err.contains(key), "case {i}: {err}");
        assert!(!err.contains("frame #"), "no backtrace: {err}");
    }
    let out = bin()
        .args(["run", "--headless", "-c", "/no/such.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such.toml does not exist"));
}

fn write_config(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("c.toml");
    std::fs::write(&path, body).unwrap();
    path
}

#[test]
fn kill_9_during_checkpoints_never_leaves_a_half_file_and_resume_appends() {
    let root = tempfile::tempdir().unwrap();
    let config = write_config(
        root.path(),
        "[train]\ndevice = \"cpu\"\nsteps = 400\ncheckpoint_every = 1\nkeep_checkpoints = 0\nlog_every = 5\neval_every = 100\n\
         [meltr]\nd_model = 32\nd_hidden = 32\nd_ff = 64\nheads = 4\n",
    );
    let sessions = root.path().join("sessions");
    let mut child = bin()
        .args(["run", "--headless", "-n", "crash", "-c"])
        .arg(&config)
        .arg("--sessions-dir")
        .arg(&sessions)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Let it write a stream of checkpoints, then kill it mid-flight.
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let dir = session::list(&sessions).first().map(|(d, _)| d.clone());
        if let Some(dir) = dir {
            if checkpoint::list(&dir.join("checkpoints")).len() >= 3 {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no checkpoints appeared"
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let (dir, meta) = session::list(&sessions).remove(0);
    assert_eq!(
        meta.status,
        session::Status::Running,
        "a killed run cannot update its status"
    );
    for (step, path) in checkpoint::list(&dir.join("checkpoints")) {
        let loaded = checkpoint::Loaded::read(&path, step)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(loaded.get("inner.step").is_some());
    }
    // The run resumes from a checkpoint some lines behind its log's end
    // (as when the newest does not read): the resume says which steps it
    // drops (a walkthrough's went back 200 steps without a word).
    let reached = session::log::read_metrics(&dir.join("metrics.jsonl"))
        .unwrap()
        .lines
        .iter()
        .map(|l| l.step)
        .max()
        .unwrap();
    for (step, path) in checkpoint::list(&dir.join("checkpoints")) {
        if step > 1 && step + 5 > reached {
            std::fs::remove_file(path).unwrap();
        }
    }
    let newest = checkpoint::list(&dir.join("checkpoints")).last().unwrap().0;
    assert!(newest < reached, "{newest} {reached}");

    // The system gives the dead runner's pid to another process (a
    // walkthrough's dead run then read `running` and could not be resumed):
    // its start time tells them apart.
    let mut other = Command::new("sleep").arg("120").spawn().unwrap();
    let mut reused = meta.clone();
    assert!(meta.pid_started.is_some(), "the runner's start is recorded");
    reused.pid = other.id();
    reused.write(&dir).unwrap();
    let ls = |sessions: &Path| {
        let out = bin()
            .arg("ls")
            .arg("--sessions-dir")
            .arg(sessions)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // The same pid with that process's own start time reads alive.
    let mut alive = reused.clone();
    alive.pid_started = session::process_started(other.id());
    alive.write(&dir).unwrap();
    assert!(ls(&sessions).contains("running"), "{}", ls(&sessions));
    reused.write(&dir).unwrap();

    // ls reports the dead runner as crashed and suggests resume.
    let listed = ls(&sessions);
    assert!(
        listed.contains("crashed") && listed.contains("resume"),
        "{listed}"
    );
    // Where the resume goes on, and what it trains again (walkthrough D
    // read the crashed row's step as where it would go on).
    assert!(
        listed.contains(&format!(
            "continues from its checkpoint of step {newest} (steps {}–",
            newest + 1
        )),
        "{listed}"
    );

    let out = run_with_limit(
        bin()
            .args(["resume", "--headless", "crash"])
            .arg("--sessions-dir")
            .arg(&sessions),
        Duration::from_secs(120),
    );
    assert!(out.status.success(), "{}", text(&out));
    other.kill().unwrap();
    other.wait().unwrap();
    let train_steps = logged_train_steps(&dir);
    let lines = session::log::read_metrics(&dir.join("metrics.jsonl"))
        .unwrap()
        .lines;
    let expected: Vec<u64> = (1..=80).map(|i| i * 5).collect();
    assert_eq!(train_steps, expected, "continuous, no duplicates");
    let resumed = lines.iter().find_map(|l| match &l.record {
        Record::Event { message, .. } if message.contains("resumed") => Some(l.step),
        _ => None,
    });
    assert_eq!(resumed, Some(newest));
    let said_dropped = lines.iter().any(|l| {
        matches!(&l.record, Record::Event { message, .. }
            if message.contains(&format!("after step {newest}, up to step {reached}, are dropped")))
    });
    assert!(said_dropped, "{}", text(&out));
    assert_eq!(
        SessionMeta::read(&dir).unwrap().status,
        session::Status::Finished
    );
}

#[test]
fn doctor_reports_libtorch_and_cuda() {
    let out = bin().arg("doctor").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("libtorch   2.11.0"), "{text}");
    assert!(text.contains("CUDA "), "{text}");
}

/// `meltr-tui bench` at its smallest: every row of the report is there, with
/// positive finite numbers, and `--out` holds the same report.
#[test]
fn bench_reports_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("bench.txt");
    let out = run_with_limit(
        bin()
            .args([
                "bench",
                "--steps",
                "1",
                "--meta-steps",
                "1",
                "--rounds",
                "1",
            ])
            .arg("--sessions-dir")
            .arg(dir.path())
            .arg("--out")
            .arg(&report),
        Duration::from_secs(300),
    );
    assert!(out.status.success(), "{}", text(&out));
    let written = std::fs::read_to_string(&report).unwrap();
    assert_eq!(written.trim(), String::from_utf8_lossy(&out.stdout).trim());
    // Each workload says what it was measured with.
    assert!(
        written.contains("config: batch 32 · f32 · 1 thread(s) · MELTR d_model 256"),
        "{written}"
    );
    let row = |label: &str| -> Vec<f64> {
        let line = written
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no row {label:?} in\n{written}"));
        let numbers: Vec<f64> = line[line.find(label).unwrap() + label.len()..]
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(
            !numbers.is_empty() && numbers.iter().all(|n| n.is_finite() && *n > 0.0),
            "row {label:?}: {line}"
        );
        numbers
    };
    for label in [
        "primary",
        "sum",
        "meltr",
        "meltr unfused",
        "meltr logged",
        "per loss",
    ] {
        assert_eq!(row(label).len(), 3, "{label}: ms/step, × sum, peak MB");
    }
    for label in [
        "exact                J=0",
        "factorized           J=0",
        "factorized           J=1",
        "factorized           J=3",
        "factorized one-sided J=0",
        "factorized lean      J=0",
    ] {
        assert_eq!(row(label).len(), 5, "{label}");
    }
    for label in [
        "meltr, meta_every 3",
        "meltr, train_batch current",
        "meltr, current + one-sided",
        "meltr, lean meta step",
        "meltr, log_every 1 vs 50",
    ] {
        assert_eq!(row(label).len(), 2, "{label}: steps/s and ratio");
    }
    let unfused = "meltr unfused, meta_every 3";
    assert_eq!(row(unfused).len(), 3, "steps/s, × sum and × fused");
    let phases = written
        .lines()
        .filter(|l| l.contains(" · ") && l.contains("loss JVP"))
        .count();
    assert_eq!(
        phases, 5,
        "phase lines of factorized J = 0, 1, 3, one-sided and lean"
    );
    // Every phase line sums to its step's time: `a 1.00 · … · other 0.10 = 2.30`.
    let phase_lines: Vec<&str> = written
        .lines()
        .filter(|l| l.contains(" · ") && l.contains("other "))
        .collect();
    assert!(
        phase_lines.len() >= 9,
        "inner and meta phase lines: {written}"
    );
    for line in phase_lines {
        let (parts, whole) = line.rsplit_once(" = ").expect("`= total` ends the line");
        let whole: f64 = whole.trim().parse().unwrap();
        let ms: Vec<f64> = parts
            .split(" · ")
            .map(|p| p.rsplit(' ').next().unwrap().parse().unwrap())
            .collect();
        let sum: f64 = ms.iter().sum();
        assert!(
            // Each printed number is off by at most 0.005.
            (sum - whole).abs() <= 0.005 * (ms.len() + 1) as f64 + 1e-9,
            "phases sum to {sum}, not {whole}: {line}"
        );
    }
}

#[test]
fn a_run_whose_every_update_is_skipped_fails_and_its_log_stays_readable() {
    // lr 1e30: the first update sends θ to inf, every later loss is NaN
    // (step 1, logged before its update, is the one finite train line).
    let root = tempfile::tempdir().unwrap();
    let config = write_config(
        root.path(),
        "[train]\ndevice = \"cpu\"\nsteps = 120\nlr = 1e30\ngrad_clip = 1e30\neval_every = 10\nlog_every = 1\n\
         [meltr]\nd_model = 32\nd_hidden = 32\nd_ff = 64\nheads = 4\n",
    );
    let sessions = root.path().join("sessions");
    let out = run_with_limit(
        bin()
            .args(["run", "--headless", "-n", "nan", "-c"])
            .arg(&config)
            .arg("--sessions-dir")
            .arg(&sessions),
        Duration::from_secs(120),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("were all skipped"), "{}", text(&out));
    let (dir, meta) = session::list(&sessions).remove(0);
    assert_eq!(meta.status, session::Status::Failed);
    // Eval lines carry NaN values (written as null) and read back.
    let lines = session::log::read_metrics(&dir.join("metrics.jsonl"))
        .unwrap()
        .lines;
    assert!(lines.iter().any(|l| matches!(&l.record,
        Record::Eval { losses, .. } if losses.values().any(|v| v.is_nan()))));
    // The log ends at the failing step, which `ls` shows.
    let last = lines.last().unwrap();
    assert!(
        matches!(&last.record, Record::Event { level: session::metrics::Level::Error, message }
            if message == meltr_tui::session::log::RUN_FAILED),
        "{last:?}"
    );
    let ls = run_with_limit(
        bin().arg("--sessions-dir").arg(&sessions).arg("ls"),
        Duration::from_secs(60),
    );
    let row = text(&ls)
        .lines()
        .find(|l| l.contains("-nan "))
        .unwrap_or_default()
        .to_string();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells.get(1..3),
        Some(&["failed", &format!("{}/120", last.step)][..]),
        "{row}"
    );
    let export = run_with_limit(
        bin()
            .arg("--sessions-dir")
            .arg(&sessions)
            .args(["export", "nan", "--format", "svg"]),
        Duration::from_secs(60),
    );
    assert!(export.status.success(), "{}", text(&export));
}

/// Starts `run --headless` of `config` and reads its stdout up to the first
/// progress line.
fn headless_until_a_step(
    config: &Path,
    sessions: &Path,
    name: &str,
    stderr: Stdio,
) -> (
    std::process::Child,
    std::io::BufReader<std::process::ChildStdout>,
) {
    let mut command = bin();
    command
        .args(["run", "--headless", "-n", name, "-c"])
        .arg(config)
        .arg("--sessions-dir")
        .arg(sessions)
        .stdout(Stdio::piped())
        .stderr(stderr);
    // SIGHUP as a terminal's: a test run under `nohup` (or a CI runner that
    // ignores it) would pass the ignore on, and a headless run keeps it.
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: signal is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGHUP, libc::SIG_DFL);
                Ok(())
            });
        }
    }
    let mut child = command.spawn().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.starts_with("step") {
        line.clear();
        assert!(std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() > 0);
    }
    (child, stdout)
}

/// A second `run -n first` made `export first` match two sessions, unsaid
/// (a walkthrough): the second run says so, with its own id.
#[test]
fn a_name_given_twice_is_said_with_the_new_id() {
    let root = tempfile::tempdir().unwrap();
    let config = write_config(
        root.path(),
        "[train]\ndevice = \"cpu\"\nsteps = 2\nlog_every = 1\neval_every = 100\n\
         [meltr]\nd_model = 32\nd_hidden = 32\nd_ff = 64\nheads = 4\n",
    );
    let sessions = root.path().join("sessions");
    let run = || {
        run_with_limit(
            bin()
                .args(["run", "--headless", "-n", "first", "-c"])
                .arg(&config)
                .arg("--sessions-dir")
                .arg(&sessions),
            Duration::from_secs(120),
        )
    };
    let once = run();
    assert!(once.status.success(), "{}", text(&once));
    assert!(!text(&once).contains("also names"), "{}", text(&once));
    let twice = run();
    assert!(twice.status.success(), "{}", text(&twice));
    let ids: Vec<String> = session::list(&sessions)
        .into_iter()
        .map(|(_, m)| m.id)
        .collect();
    assert_eq!(ids.len(), 2);
    let said = String::from_utf8_lossy(&twice.stderr).to_string();
    assert!(
        said.contains(&format!(
            "note: `first` also names {}; give this session's id ({})",
            ids[0], ids[1]
        )),
        "{said}"
    );
}

#[test]
fn an_interrupted_headless_run_exits_129_130_or_143() {
    let root = tempfile::tempdir().unwrap();
    let config = write_config(
        root.path(),
        "[train]\ndevice = \"cpu\"\nsteps = 100000\nlog_every = 5\neval_every = 100000\n\
         [meltr]\nd_model = 32\nd_hidden = 32\nd_ff = 64\nheads = 4\n",
    );
    // SIGHUP: a dropped SSH connection (it killed the run mid-interval).
    for (signal, code) in [
        (libc::SIGINT, 130),
        (libc::SIGTERM, 143),
        (libc::SIGHUP, 129),
    ] {
        let sessions = root.path().join(format!("s{signal}"));
        let (mut child, mut stdout) =
            headless_until_a_step(&config, &sessions, "long", Stdio::null());
        // Keep draining stdout so the run never blocks on a full pipe.
        let drain = std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = child.wait().unwrap();
        let _ = drain.join();
        assert_eq!(status.code(), Some(code), "signal {signal}");
        let (dir, meta) = session::list(&sessions).remove(0);
        assert_eq!(meta.status, session::Status::Stopped);
        // The log says where it stopped (it held only the checkpoint line).
        let stopped = common::events_matching(&dir, |m| m.starts_with("stopped at step "));
        assert_eq!(stopped.len(), 1, "signal {signal}");
        assert!(stopped[0]
            .1
            .starts_with(&format!("stopped at step {} of 100000", stopped[0].0)));
    }
}

/// Stopped while the built-in workload's foundation model pretrains for
/// the first time (an empty cache): nothing was trained or cached, so the
/// new folder goes, and the run exits with the signal's code (it exited 1,
/// as a failure).
#[test]
fn a_headless_run_stopped_during_its_first_pretraining_exits_130() {
    use std::io::BufRead;
    let root = tempfile::tempdir().unwrap();
    let sessions = root.path().join("s");
    let cache = root.path().join("cache");
    let mut child = bin()
        .env("MELTR_CACHE", &cache)
        .args(["run", "--headless", "--steps", "5", "-c"])
        .arg(repo("configs/default.toml"))
        .arg("--sessions-dir")
        .arg(&sessions)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut said = String::new();
    while !said.contains("pretraining the video-text foundation model") {
        let read = stderr.read_line(&mut said).unwrap();
        assert!(read > 0, "ended before its pretraining: {said}");
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    std::io::Read::read_to_string(&mut stderr, &mut said).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(
        said.contains("stopped during the foundation model's first pretraining")
            && said.contains("its new session folder"),
        "{said}"
    );
    assert!(session::list(&sessions).is_empty());
    assert!(std::fs::read_dir(&cache).map_or(true, |d| d.count() == 0));
}

/// `run --headless ... | head -2`: the reader goes away after two lines. The
/// run used to panic on the broken pipe (and crash with SIGSEGV, leaving the
/// session "running"); it must train to the end and finish.
#[test]
fn a_headless_run_whose_stdout_reader_goes_away_trains_to_the_end() {
    let root = tempfile::tempdir().unwrap();
    let config = write_config(
        root.path(),
        "[train]\ndevice = \"cpu\"\nsteps = 120\nlog_every = 1\neval_every = 60\n\
         [meltr]\nd_model = 32\nd_hidden = 32\nd_ff = 64\nheads = 4\n",
    );
    let sessions = root.path().join("s");
    let (child, stdout) = headless_until_a_step(&config, &sessions, "piped", Stdio::piped());
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, text(&out));
    let (dir, meta) = session::list(&sessions).remove(0);
    assert_eq!(meta.status, session::Status::Finished, "{:?}", meta.error);
    assert_eq!(logged_train_steps(&dir).last(), Some(&120));
}

/// `run --headless ... 2>&1 | head` with the reader gone before the run's
/// error is printed: exit code 1, as for any failed run, not a panic's 101
/// on the closed pipe (a held-out walkthrough's NaN model). The same for a
/// sweep driver's and a failed run's notes.
#[test]
fn a_failed_run_whose_reader_went_away_exits_1_without_a_panic() {
    let root = tempfile::tempdir().unwrap();
    // Fails as it starts: the error is the last thing the process says.
    let config = write_config(root.path(), "[train]\ndevice = \"cuda:7\"\n");
    for args in [
        vec!["run", "--headless", "-c"],
        vec!["sweep", "--set", "train.lr=0.1,0.2", "-c"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = bin()
            .args(&args)
            .arg(&config)
            .arg("--sessions-dir")
            .arg(root.path().join("s"))
            .stdout(writer.try_clone().unwrap())
            .stderr(writer)
            .status()
            .unwrap();
        assert_eq!(out.code(), Some(1), "{args:?}: {out:?}");
    }
}

/// Runs `command` in a new process session: no controlling terminal, so
/// no /dev/tty (as under a detached launcher).
fn without_terminal(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
}

/// Issue 19, item 9: `new` without a terminal said "no terminal to draw on"
/// only after starting a runner that then trained to the end.
#[test]
fn new_without_a_terminal_fails_before_starting_anything() {
    let root = tempfile::tempdir().unwrap();
    let sessions = root.path().join("sessions");
    let config = write_config(
        root.path(),
        "[train]\ndevice = \"cpu\"\nsteps = 100000\n\
         [meltr]\nd_model = 32\nd_hidden = 32\nd_ff = 64\nheads = 4\n",
    );
    let mut command = bin();
    command
        .args(["new", "-c"])
        .arg(&config)
        .arg("--sessions-dir")
        .arg(&sessions)
        .stdin(Stdio::null());
    without_terminal(&mut command);
    let out = run_with_limit(&mut command, Duration::from_secs(60));
    // Before anything else: never leave a runner training (a failing run of
    // this test must not either).
    let started = session::list(&sessions);
    for (_, meta) in &started {
        if session::pid_alive(meta.pid) && meta.pid != std::process::id() {
            unsafe { libc::kill(meta.pid as libc::pid_t, libc::SIGKILL) };
        }
    }
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("terminal"), "{}", text(&out));
    assert!(started.is_empty(), "a session was created: {started:?}");
}

/// Issue 19, item 14: a device that does not exist and a primary loss the
/// workload lacks left a failed session folder (also from `run --detach`
/// and `new`); a non-UTF-8 byte gave no line; an empty or comment-only
/// config silently ran 600 default steps; `ls` on a file said "no
/// sessions" with rc 0.
#[test]
fn a_config_that_cannot_start_leaves_no_session_and_ls_refuses_a_file() {
    let root = tempfile::tempdir().unwrap();
    let sessions = root.path().join("sessions");
    let cases: [(&[u8], &[&str]); 7] = [
        (
            b"[train]\ndevice = \"cuda:7\"\n",
            // The line of the key at fault, as the config's own checks say.
            &["c.toml:2: ", "cuda:7", "does not exist"],
        ),
        (
            b"[workload]\nprimary = \"nope\"\nauxiliary = [\"helpful\"]\n",
            &["c.toml:2: ", "workload.primary = \"nope\" is not a loss"],
        ),
        (
            b"[workload]\nauxiliary = [\"helpful\", \"extra\"]\n",
            &["c.toml:2: ", "extra"],
        ),
        (b"", &["c.toml: sets no keys", "configs/default.toml"]),
        (
            b"# to do: fill in\n\n[train]\n# steps = 10\n",
            &["c.toml: sets no keys", "configs/default.toml"],
        ),
        // Saved as Latin-1: `é` is the single byte 0xe9, on line 2.
        (
            b"[train]\n# r\xe9glage fin\nsteps = 10\n",
            &["c.toml:2: column 4", "0xe9 is not UTF-8"],
        ),
        (
            b"[train]\ndevice = \"cpu\"\nsteps = 10\nlr = \"caf\xc3\xa9\"\n\xff\n",
            &["c.toml:5: column 1", "0xff"],
        ),
    ];
    let modes: [&[&str]; 3] = [&["run", "--headless"], &["run", "--detach"], &["new"]];
    for (body, needles) in cases {
        let config = root.path().join("c.toml");
        std::fs::write(&config, body).unwrap();
        for mode in modes {
            let mut command = bin();
            command
                .args(mode)
                .arg("-c")
                .arg(&config)
                .arg("--sessions-dir")
                .arg(&sessions)
                .stdin(Stdio::null());
            // No controlling terminal: `new` must fail on the config, not
            // open a TUI (nor fail on the terminal first).
            without_terminal(&mut command);
            let out = run_with_limit(&mut command, Duration::from_secs(60));
            let what = format!("{mode:?} {}", String::from_utf8_lossy(body));
            let left = session::list(&sessions);
            for (_, meta) in &left {
                if session::pid_alive(meta.pid) && meta.pid != std::process::id() {
                    unsafe { libc::kill(meta.pid as libc::pid_t, libc::SIGKILL) };
                }
            }
            assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out));
            for needle in needles {
                assert!(text(&out).contains(needle), "{what}: {}", text(&out));
            }
            assert!(!text(&out).contains("terminal"), "{what}: {}", text(&out));
            let left: Vec<_> = std::fs::read_dir(&sessions)
                .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{what}: left {left:?}");
        }
    }

    let file = root.path().join("c.toml");
    let out = bin()
        .arg("--sessions-dir")
        .arg(&file)
        .arg("ls")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not a directory"), "{}", text(&out));
    // A folder that does not exist yet simply holds no sessions.
    let out = bin()
        .arg("--sessions-dir")
        .arg(root.path().join("none"))
        .arg("ls")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

/// Issue 19, item 8: a headless run whose checkpoint cannot be written (a
/// full disk, here a file-size limit: `RLIMIT_FSIZE`, with SIGXFSZ
/// ignored so the write fails with EFBIG instead of killing) retries with
/// backoff, then stops as failed with the reason and a non-zero exit,
/// instead of waiting forever.
#[test]
fn a_headless_run_that_cannot_write_gives_up_with_the_reason() {
    use std::os::unix::process::CommandExt;
    let root = tempfile::tempdir().unwrap();
    let mut command = bin();
    command
        .args(["run", "-c"])
        .arg(repo("configs/synthetic.toml"))
        .args(["--headless", "--give-up-after", "3", "--sessions-dir"])
        .arg(root.path());
    // SAFETY: setrlimit and signal are async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            // Metrics lines and session.json fit; a checkpoint (MB) does not.
            let limit = libc::rlimit {
                rlim_cur: 256 * 1024,
                rlim_max: 256 * 1024,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let started = Instant::now();
    let out = run_with_limit(&mut command, Duration::from_secs(120));
    let output = text(&out);
    assert_eq!(out.status.code(), Some(1), "{output}");
    assert!(
        output.contains("retrying the write with backoff")
            && output.contains("gave up after 3 s of failed writes"),
        "{output}"
    );
    assert!(output.contains("cannot write checkpoint"), "{output}");
    assert!(started.elapsed() < Duration::from_secs(90));
    let sessions = session::list(root.path());
    let (_, meta) = &sessions[0];
    assert_eq!(meta.status, session::Status::Failed, "{output}");
    assert!(
        meta.error.as_deref().unwrap_or("").contains("gave up"),
        "{meta:?}"
    );
}

/// `meltr-tui ls` on `root`, which must finish within `limit`.
fn ls_within(root: &Path, limit: Duration) -> String {
    let started = Instant::now();
    let out = run_with_limit(bin().arg("--sessions-dir").arg(root).arg("ls"), limit);
    assert!(out.status.success(), "{}", text(&out));
    assert!(started.elapsed() < limit);
    text(&out)
}

/// Issue 19, item 11: after a live edit of `train.steps`, `ls` showed the
/// total `session.json` was created with (`96486/20000`). It shows the
/// config in force.
#[test]
fn ls_shows_the_steps_of_the_config_in_force() {
    let root = tempfile::tempdir().unwrap();
    let config = common::small_config("meltr", 600);
    let dir = session::create(root.path(), "edited", &config).unwrap();
    session::update_status(&dir, session::Status::Stopped, None).unwrap();
    let mut in_force = config.clone();
    in_force.train.steps = 900;
    std::fs::write(
        session::SessionDir::new(&dir).config_in_force(),
        in_force.to_toml_string(),
    )
    .unwrap();
    let listing = ls_within(root.path(), Duration::from_secs(30));
    assert!(listing.contains(" 0/900 "), "{listing}");
    // With no config in force recorded, session.json's total.
    std::fs::remove_file(session::SessionDir::new(&dir).config_in_force()).unwrap();
    let listing = ls_within(root.path(), Duration::from_secs(30));
    assert!(listing.contains(" 0/600 "), "{listing}");
}

/// `ls` asks live runners for their status, but never hangs on one that
/// does not answer: it shows what `session.json` says.
#[test]
fn ls_does_not_wait_on_a_runner_that_does_not_answer() {
    let root = tempfile::tempdir().unwrap();
    let dir = session::create(root.path(), "stuck", &common::small_config("meltr", 600)).unwrap();
    // session.json names this (live) process; its socket accepts nothing.
    let _listener =
        std::os::unix::net::UnixListener::bind(meltr_tui::runner::socket_path(&dir)).unwrap();
    let started = Instant::now();
    let listing = ls_within(root.path(), Duration::from_secs(30));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ls took {:?}",
        started.elapsed()
    );
    let row = listing.lines().find(|l| l.contains("stuck")).unwrap();
    assert!(
        row.contains(" running ") && row.contains("alive pid"),
        "{listing}"
    );
}

/// The config lines a session's log holds: (step, key, old, new).
fn logged_changes(dir: &Path) -> Vec<(u64, String, String, String)> {
    session::log::read_metrics(&dir.join("metrics.jsonl"))
        .unwrap()
        .lines
        .into_iter()
        .flat_map(|l| match l.record {
            Record::Config { changed, .. } => changed
                .into_iter()
                .map(|(key, (old, new))| (l.step, key, old.to_string(), new.to_string()))
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn a_resume_logs_how_its_config_differs_from_the_checkpointed_run() {
    let root = tempfile::tempdir().unwrap();
    let config = write_config(
        root.path(),
        "[train]\ndevice = \"cpu\"\nsteps = 60\ncheckpoint_every = 30\nlog_every = 10\neval_every = 60\n\
         [meltr]\nd_model = 32\nd_hidden = 32\nd_ff = 64\nheads = 4\n",
    );
    let sessions = root.path().join("sessions");
    let headless = |args: &[&str]| {
        let out = run_with_limit(
            bin().args(args).arg("--sessions-dir").arg(&sessions),
            Duration::from_secs(120),
        );
        assert!(out.status.success(), "{args:?}: {}", text(&out));
    };
    headless(&[
        "run",
        "--headless",
        "-n",
        "edits",
        "-c",
        config.to_str().unwrap(),
    ]);
    let (dir, _) = session::list(&sessions).remove(0);
    assert_eq!(logged_changes(&dir), [], "a plain run changes nothing");

    // `resume --set`: steps 61.. run with γ 0.5, and the log says so.
    headless(&[
        "resume",
        "--headless",
        "edits",
        "--set",
        "meltr.gamma=0.5",
        "--set",
        "train.steps=90",
    ]);
    let change = |step: u64, key: &str, old: &str, new: &str| {
        (step, key.to_string(), old.to_string(), new.to_string())
    };
    let set = vec![
        change(60, "meltr.gamma", "0.1", "0.5"),
        change(60, "train.steps", "60", "90"),
    ];
    assert_eq!(logged_changes(&dir), set);

    // A crash that loses the checkpoints written since: the resume from
    // step 30 runs with config.toml's γ 0.5 where the run had 0.1 (the
    // session's last config in force already says 0.5, so only the
    // checkpoint knows).
    for (step, path) in checkpoint::list(&dir.join("checkpoints")) {
        if step > 30 {
            std::fs::remove_file(path).unwrap();
        }
    }
    // Crashed: still "running" in session.json, its runner (pid) gone. (A
    // finished session is not resumed; see the end.)
    session::update_status(&dir, session::Status::Running, None).unwrap();
    headless(&["resume", "--headless", "edits"]);
    assert_eq!(
        logged_changes(&dir),
        [
            change(30, "meltr.gamma", "0.1", "0.5"),
            change(30, "train.steps", "60", "90"),
        ]
    );
    let steps = logged_train_steps(&dir);
    assert_eq!(steps, (1..=9).map(|i| i * 10).collect::<Vec<u64>>());

    // Finished at its last step: another resume is refused with what to do
    // (it printed "resumed ... finished" and exited 0).
    let again = run_with_limit(
        bin()
            .args(["resume", "--headless", "edits"])
            .arg("--sessions-dir")
            .arg(&sessions),
        Duration::from_secs(60),
    );
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(
        text(&again).contains("finished at step 90 (train.steps = 90): nothing to resume")
            && text(&again).contains("--set train.steps=180"),
        "{}",
        text(&again)
    );
    // ... and its --sets are not written into the session's config.
    let before = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    // Fewer steps than it reached: refused as `fork` refuses it (a stopped
    // session was marked finished, "steps now 10", at step 352).
    session::update_status(&dir, session::Status::Stopped, None).unwrap();
    let fewer = run_with_limit(
        bin()
            .args(["resume", "--headless", "edits", "--set", "train.steps=40"])
            .arg("--sessions-dir")
            .arg(&sessions),
        Duration::from_secs(60),
    );
    assert_eq!(fewer.status.code(), Some(1), "{}", text(&fewer));
    assert!(
        text(&fewer).contains("--set train.steps=40: session")
            && text(&fewer)
                .contains("resumes from its checkpoint at step 90, so it would not train"),
        "{}",
        text(&fewer)
    );
    session::update_status(&dir, session::Status::Finished, None).unwrap();
    let refused = run_with_limit(
        bin()
            .args(["resume", "--headless", "edits", "--set", "meltr.gamma=0.9"])
            .arg("--sessions-dir")
            .arg(&sessions),
        Duration::from_secs(60),
    );
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert_eq!(
        std::fs::read_to_string(dir.join("config.toml")).unwrap(),
        before
    );
    // The TUI's resume checks its arguments before the terminal: a
    // refused restart-only --set said "no terminal to draw on" (a
    // walkthrough). A new process session: no terminal.
    let mut command = bin();
    command
        .args(["resume", "edits", "--set", "workload.batch_size=16"])
        .arg("--sessions-dir")
        .arg(&sessions)
        .stdin(Stdio::null());
    without_terminal(&mut command);
    let refused = run_with_limit(&mut command, Duration::from_secs(60));
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(
        text(&refused).contains("workload.batch_size") && !text(&refused).contains("terminal"),
        "{}",
        text(&refused)
    );
    // So does the TUI's fork: a missing checkpoint said "no terminal" (a
    // walkthrough), and the hint for a fork named `run`.
    let fork_without_terminal = |at: &str| {
        let mut command = bin();
        command
            .args(["fork", "edits", "--at", at, "--set", "train.steps=200"])
            .arg("--sessions-dir")
            .arg(&sessions)
            .stdin(Stdio::null());
        without_terminal(&mut command);
        run_with_limit(&mut command, Duration::from_secs(60))
    };
    let sessions_before = session::list(&sessions).len();
    let no_checkpoint = fork_without_terminal("3");
    assert_eq!(no_checkpoint.status.code(), Some(1));
    assert!(
        text(&no_checkpoint).contains("no checkpoint at step 3")
            && !text(&no_checkpoint).contains("terminal"),
        "{}",
        text(&no_checkpoint)
    );
    let newest = checkpoint::list(&dir.join("checkpoints")).last().unwrap().0;
    let no_terminal = fork_without_terminal(&newest.to_string());
    assert_eq!(no_terminal.status.code(), Some(1));
    assert!(
        text(&no_terminal).contains("use `fork --headless` or `fork --detach`"),
        "{}",
        text(&no_terminal)
    );
    assert_eq!(
        session::list(&sessions).len(),
        sessions_before,
        "a fork folder was left"
    );
    // With its checkpoints gone it is still finished, not started over
    // (which would cut its log).
    for (_, path) in checkpoint::list(&dir.join("checkpoints")) {
        std::fs::remove_file(path).unwrap();
    }
    let gone = run_with_limit(
        bin()
            .args(["resume", "--headless", "edits"])
            .arg("--sessions-dir")
            .arg(&sessions),
        Duration::from_secs(60),
    );
    assert!(text(&gone).contains("nothing to resume"), "{}", text(&gone));
    assert_eq!(
        logged_train_steps(&dir),
        (1..=9).map(|i| i * 10).collect::<Vec<u64>>()
    );
}

/// A negative step or digit count got clap's "unexpected argument '-5'
/// found … use '-- -5'" (walkthrough B): it is read as the value and
/// refused as one.
#[test]
fn a_negative_step_or_digit_count_is_refused_as_a_value() {
    for args in [
        &["fork", "nosuch", "--at", "-5"][..],
        &["table", "--digits", "-1"],
        &["table", "--at-step", "-5"],
        &["export", "nosuch", "--at", "-5"],
    ] {
        let out = bin().args(args).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && said.contains("invalid value '-")
                && !said.contains("unexpected argument"),
            "{args:?}: {said}"
        );
    }
}
