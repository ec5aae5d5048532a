//! Detached runners as a user meets them: `run --detach`, attaching and
//! detaching while steps advance, two viewers at once, garbage on the
//! socket, an owner-only socket, `kill -9` at random moments followed by
//! `resume` (20 times), and a disk that fills up.

mod common;

use common::{bin, config_lines, run_with_limit, text};
use meltr_tui::engine::checkpoint;
use meltr_tui::engine::control::{Command, Event, Status};
use meltr_tui::engine::link::EngineLink;
use meltr_tui::nn::rng::SplitMix;
use meltr_tui::runner::{self, link::RemoteLink};
use meltr_tui::session::{self, metrics::Record, SessionMeta};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const LOG_EVERY: u64 = 5;

fn write_config(dir: &Path, steps: u64, extra_train: &str) -> PathBuf {
    let path = dir.join("tiny.toml");
    std::fs::write(
        &path,
        format!(
            "[workload]\nkind = \"synthetic\"\n\n\
             [train]\ndevice = \"cpu\"\nsteps = {steps}\nlog_every = {LOG_EVERY}\n{extra_train}\n\n\
             [meltr]\nd_model = 32\nd_hidden = 32\nd_ff = 64\nheads = 4\n"
        ),
    )
    .unwrap();
    path
}

fn detach(root: &Path, config: &Path, name: &str) -> PathBuf {
    let out = run_with_limit(
        bin()
            .arg("--sessions-dir")
            .arg(root)
            .args(["run", "--detach", "-n", name, "-c"])
            .arg(config),
        WAIT,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("running detached"), "{}", text(&out));
    // The run's own notices stay in output.log (walkthrough L: a start note
    // on the terminal, out of place).
    assert!(!text(&out).contains("primary metric:"), "{}", text(&out));
    session::find(root, name).unwrap()
}

fn wait_for<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    common::wait_until(what, WAIT, check)
}

fn last_train_step(dir: &Path) -> u64 {
    common::logged_train_steps(dir).last().copied().unwrap_or(0)
}

/// Kills a runner that a failed test would otherwise leave training.
struct Reaper(PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Ok(meta) = SessionMeta::read(&self.0) {
            if !meta.status.is_terminal() && session::pid_alive(meta.pid) {
                unsafe { libc::kill(meta.pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

/// Polls `link` until `want` accepts an event; returns everything seen.
fn collect_until(
    link: &RemoteLink,
    what: &str,
    mut want: impl FnMut(&Event) -> bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    wait_for(what, || {
        let events = link.poll();
        let done = events.iter().any(&mut want);
        seen.extend(events);
        done.then_some(())
    });
    seen
}

fn line_seqs(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Line { seq, .. } => Some(*seq),
            _ => None,
        })
        .collect()
}

#[test]
fn detach_attach_two_viewers_garbage_and_detach_again() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let config = write_config(tmp.path(), 200_000, "");
    let dir = detach(&root, &config, "live");
    let _reaper = Reaper(dir.clone());
    let runner_pid = SessionMeta::read(&dir).unwrap().pid;
    assert_ne!(runner_pid, std::process::id());
    assert_eq!(
        unsafe { libc::getsid(runner_pid as libc::pid_t) },
        runner_pid as libc::pid_t,
        "the runner leads its own process session (no controlling terminal)"
    );

    // Attach: history from the file, then live lines continuing its indices.
    let (a, history) = RemoteLink::attach(&dir).unwrap();
    assert!(a.detachable());
    let events = collect_until(&a, "20 live lines", {
        let mut lines = 0;
        move |e| {
            lines += matches!(e, Event::Line { .. }) as usize;
            lines >= 20
        }
    });
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ConfigInForce { .. })),
        "the greeting carries the config in force"
    );
    let seqs = line_seqs(&events);
    let expected: Vec<u64> = (history.len() as u64..).take(seqs.len()).collect();
    assert_eq!(
        seqs, expected,
        "live lines continue the history without gaps"
    );

    // A second viewer at the same time: both see steps advance.
    let (b, _) = RemoteLink::attach(&dir).unwrap();
    for link in [&a, &b] {
        let mut first = None;
        collect_until(link, "progress on both viewers", |e| match e {
            Event::Progress { step, .. } => *first.get_or_insert(*step) + 20 <= *step,
            _ => false,
        });
    }

    // Garbage on the socket: answered with errors, nothing else disturbed.
    let mut raw = std::os::unix::net::UnixStream::connect(runner::socket_path(&dir)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(b"garbage\n\xff\xfe\n{\"command\":\"self-destruct\"}\n{\"comm")
        .unwrap();
    let mut reader = BufReader::new(raw.try_clone().unwrap());
    let mut errors = 0;
    let mut line = String::new();
    while errors < 3 {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the runner hung up on garbage"
        );
        errors += line.contains("\"kind\":\"error\"") as usize;
    }
    drop(reader);
    drop(raw); // mid-line
    let before = last_train_step(&dir);
    wait_for("steps after the garbage", || {
        (last_train_step(&dir) > before + 20).then_some(())
    });

    // Detach both viewers: the run goes on with no client.
    drop(a);
    drop(b);
    let alone = last_train_step(&dir);
    wait_for("steps with no viewer", || {
        (last_train_step(&dir) > alone + 50).then_some(())
    });

    // Attach again: pause, resume and stop from the viewer.
    let (c, _) = RemoteLink::attach(&dir).unwrap();
    c.send(Command::Pause);
    collect_until(&c, "paused", |e| {
        matches!(
            e,
            Event::Status {
                status: Status::Paused,
                ..
            }
        )
    });
    let paused_at = last_train_step(&dir);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        last_train_step(&dir),
        paused_at,
        "steps advanced while paused"
    );
    assert_eq!(SessionMeta::read(&dir).unwrap().status, Status::Paused);
    c.send(Command::Resume);
    wait_for("steps after resume", || {
        (last_train_step(&dir) > paused_at).then_some(())
    });
    c.send(Command::Stop);
    collect_until(&c, "stopped", |e| {
        matches!(
            e,
            Event::Status {
                status: Status::Stopped,
                ..
            }
        )
    });
    wait_for("the runner to exit", || {
        (!session::pid_alive(runner_pid)).then_some(())
    });
    assert!(
        !runner::socket_path(&dir).exists(),
        "the socket file is removed"
    );
    assert_eq!(SessionMeta::read(&dir).unwrap().status, Status::Stopped);
    // The runner told its end itself: the link closing after it adds no
    // second status (the events pane showed "run stopped" twice).
    let mut after = Vec::new();
    for _ in 0..40 {
        after.extend(c.poll());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !after.iter().any(|e| matches!(e, Event::Status { .. })),
        "a status after the runner's own: {after:?}"
    );
}

#[test]
fn the_socket_is_for_its_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let config = write_config(tmp.path(), 200_000, "");
    let dir = detach(&root, &config, "private");
    let _reaper = Reaper(dir.clone());
    let socket = runner::socket_path(&dir);
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "runner.sock mode {mode:o}");

    if unsafe { libc::geteuid() } != 0 {
        eprintln!("NOTE: not root, so only the socket's mode (0600) was checked, not another user's connect");
    } else {
        // Let another user reach the folder, so only the socket's own
        // permissions stand in the way.
        let mut p = dir.as_path();
        while p.starts_with(tmp.path()) {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
            p = p.parent().unwrap();
        }
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let probe = |uid: u32| {
            std::process::Command::new("python3")
                .args([
                    "-c",
                    "import socket, sys\ns = socket.socket(socket.AF_UNIX)\n\
                     try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(13)\n",
                ])
                .arg(&socket)
                .uid(uid)
                .gid(uid)
                .status()
                .expect("python3 runs")
                .code()
        };
        assert_eq!(probe(0), Some(0), "the owner can connect");
        assert_eq!(probe(65534), Some(13), "user nobody must be refused");
    }
    let (link, _) = RemoteLink::attach(&dir).unwrap();
    link.send(Command::Stop);
    collect_until(&link, "stopped", |e| {
        matches!(
            e,
            Event::Status {
                status: Status::Stopped,
                ..
            }
        )
    });
}

#[test]
fn kill_9_at_random_moments_then_resume_twenty_times() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    // More steps than any machine runs in the twenty rounds; the last runner
    // is then told (through the live config) to end soon.
    let config = write_config(tmp.path(), 100_000, "checkpoint_every = 10\n");
    let dir = detach(&root, &config, "crashy");
    let _reaper = Reaper(dir.clone());
    let mut rng = SplitMix::new(7, 0);
    for round in 0..20 {
        let pid = SessionMeta::read(&dir).unwrap().pid;
        std::thread::sleep(Duration::from_millis(rng.below(700)));
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        wait_for("the runner to die", || {
            (!session::pid_alive(pid)).then_some(())
        });
        if round == 0 {
            let ls = run_with_limit(bin().arg("--sessions-dir").arg(&root).arg("ls"), WAIT);
            let listing = text(&ls);
            assert!(listing.contains("crashed"), "{listing}");
            // The command that resumes it, and where it goes on.
            assert!(
                listing.contains(" resume ") && listing.contains("crashed at step"),
                "{listing}"
            );
        }
        let out = run_with_limit(
            bin()
                .arg("--sessions-dir")
                .arg(&root)
                .args(["resume", "--detach", "crashy"]),
            WAIT,
        );
        assert!(out.status.success(), "round {round}: {}", text(&out));
    }
    // Let the last runner finish the run, at a step a little ahead.
    let pid = SessionMeta::read(&dir).unwrap().pid;
    let last_step = (last_train_step(&dir) / LOG_EVERY + 120) * LOG_EVERY;
    let live = dir.join("config.toml");
    let text_before = std::fs::read_to_string(&live).unwrap();
    assert!(text_before.contains("steps = 100000"), "{text_before}");
    let edited = text_before.replace("steps = 100000", &format!("steps = {last_step}"));
    std::fs::write(&live, edited).unwrap();
    wait_for("the run to finish", || {
        (!session::pid_alive(pid)).then_some(())
    });
    let meta = SessionMeta::read(&dir).unwrap();
    assert_eq!(meta.status, Status::Finished, "{:?}", meta.error);

    let read = session::log::read_metrics(&dir.join("metrics.jsonl")).unwrap();
    let steps = common::logged_train_steps(&dir);
    // It ends at `last_step`, or later on a machine fast enough to pass
    // that step before the edit lands.
    let end = steps.last().copied().unwrap_or(0);
    assert!(end >= last_step && end < 100_000, "ended at {end}");
    let expected: Vec<u64> = (1..=end / LOG_EVERY).map(|i| i * LOG_EVERY).collect();
    assert_eq!(steps, expected, "train steps continuous, each once");
    let resumes = read
        .lines
        .iter()
        .filter(|l| matches!(&l.record, Record::Event { message, .. } if message.starts_with("resumed from")))
        .count();
    assert!(
        resumes >= 15,
        "only {resumes} resumes from a checkpoint were logged"
    );
    let checkpoints = checkpoint::list(&dir.join("checkpoints"));
    assert!(!checkpoints.is_empty());
    for (step, path) in checkpoints {
        // Every tensor of every kept checkpoint reads back.
        checkpoint::Loaded::read(&path, step).unwrap();
    }
}

/// Runs `run --headless` with a cap on file size (RLIMIT_FSIZE): a write
/// past it fails as on a full disk (EFBIG instead of ENOSPC). Waits until
/// the run pauses; returns the session folder and the process.
fn run_until_storage_pause(
    root: &Path,
    config: &Path,
    limit: u64,
) -> (PathBuf, std::process::Child) {
    let mut command = bin();
    command
        .arg("--sessions-dir")
        .arg(root)
        .args(["run", "--headless", "-n", "full", "-c"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    unsafe {
        command.pre_exec(move || {
            // A write past the limit must fail, not kill the process.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let cap = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &cap) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    let dir = wait_for("the session", || session::find(root, "full").ok());
    wait_for("the run to pause on the failed write", || {
        let meta = SessionMeta::read(&dir).ok()?;
        (meta.status == Status::Paused).then_some(())
    });
    (dir, child)
}

fn stop(mut child: std::process::Child) {
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < WAIT,
            "the paused run did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_full_disk_pauses_training_and_corrupts_nothing() {
    // The metrics log hits the cap.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let config = write_config(tmp.path(), 200_000, "checkpoint_every = 100000\n");
    let limit = 48 * 1024;
    let (dir, child) = run_until_storage_pause(&root, &config, limit);
    let meta = SessionMeta::read(&dir).unwrap();
    let message = meta.error.unwrap_or_default();
    assert!(message.contains("metrics.jsonl"), "{message}");
    assert!(message.contains("File too large"), "{message}");
    assert!(message.contains("paused"), "{message}");
    let metrics = dir.join("metrics.jsonl");
    let read = session::log::read_metrics(&metrics).unwrap();
    assert!(!read.torn_tail, "a partial line was left behind");
    assert!(std::fs::read(&metrics).unwrap().ends_with(b"\n"));
    assert!(std::fs::metadata(&metrics).unwrap().len() <= limit);
    let paused_at = last_train_step(&dir);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(last_train_step(&dir), paused_at, "training went on");
    stop(child);

    // A checkpoint hits the cap (the default MELTR is ~1 MB of weights).
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let path = tmp.path().join("big.toml");
    std::fs::write(
        &path,
        "[workload]\nkind = \"synthetic\"\n\n[train]\ndevice = \"cpu\"\nsteps = 200000\n\
         log_every = 1000\ncheckpoint_every = 20\n",
    )
    .unwrap();
    let (dir, child) = run_until_storage_pause(&root, &path, 256 * 1024);
    let message = SessionMeta::read(&dir).unwrap().error.unwrap_or_default();
    assert!(message.contains("checkpoint"), "{message}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("checkpoints"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "partial checkpoint files left: {leftovers:?}"
    );
    session::log::read_metrics(&dir.join("metrics.jsonl")).unwrap();
    stop(child);
}

/// A detached runner whose checkpoint cannot be written says so in
/// `output.log` and retries on its own: a walkthrough's run stayed paused
/// after space was freed until someone pressed `p`, and its log never said
/// why it paused. Here the write fails on a file-size cap, which the test
/// then lifts on the running runner.
#[test]
fn a_detached_run_retries_a_failed_write_until_it_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let config = tmp.path().join("big.toml");
    std::fs::write(
        &config,
        "[workload]\nkind = \"synthetic\"\n\n[train]\ndevice = \"cpu\"\nsteps = 60\n\
         log_every = 1000\neval_every = 1000\ncheckpoint_every = 20\n",
    )
    .unwrap();
    let mut command = bin();
    command
        .arg("--sessions-dir")
        .arg(&root)
        .args(["run", "--detach", "-n", "retry", "-c"])
        .arg(&config);
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            // A soft cap the runner inherits (its checkpoint, ~1 MB, does
            // not fit); the hard limit stays, so it can be lifted.
            let mut cap = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::getrlimit(libc::RLIMIT_FSIZE, &mut cap);
            cap.rlim_cur = 256 * 1024;
            if libc::setrlimit(libc::RLIMIT_FSIZE, &cap) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run_with_limit(&mut command, WAIT);
    assert!(out.status.success(), "{}", text(&out));
    let dir = session::find(&root, "retry").unwrap();
    let output_log = dir.join("output.log");
    let read_log = || std::fs::read_to_string(&output_log).unwrap_or_default();
    wait_for("output.log to say the write failed", || {
        read_log()
            .contains("retrying the write with backoff")
            .then_some(())
    });
    let said = read_log();
    assert!(
        said.contains("cannot write checkpoint") && said.contains("File too large"),
        "{said}"
    );
    // Tries go on while nobody is attached: the run stays paused.
    std::thread::sleep(Duration::from_secs(3));
    let meta = SessionMeta::read(&dir).unwrap();
    assert_eq!(meta.status, Status::Paused, "{said}");
    assert!(
        !read_log().contains("the write succeeded"),
        "{}",
        read_log()
    );
    // Space comes back: the next try writes, and the run finishes alone.
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe {
        libc::prlimit(
            meta.pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            std::ptr::null(),
            &mut current,
        );
        let raised = libc::rlimit {
            rlim_cur: current.rlim_max,
            rlim_max: current.rlim_max,
        };
        assert_eq!(
            libc::prlimit(
                meta.pid as libc::pid_t,
                libc::RLIMIT_FSIZE,
                &raised,
                std::ptr::null_mut()
            ),
            0,
            "{}",
            std::io::Error::last_os_error()
        );
    }
    wait_for("the run to finish", || {
        let meta = SessionMeta::read(&dir).ok()?;
        (meta.status == Status::Finished).then_some(())
    });
    // Its last words say so, as a headless run's (walkthrough K's `tail -f`
    // ended on a checkpoint line).
    let id = dir.file_name().unwrap().to_string_lossy().to_string();
    wait_for("output.log to say the run finished", || {
        read_log()
            .contains(&format!("session {id}: finished"))
            .then_some(())
    });
    assert!(
        read_log().contains("the write succeeded after"),
        "{}",
        read_log()
    );
    assert_eq!(
        checkpoint::list(&dir.join("checkpoints")).last().unwrap().0,
        60
    );
    // A headless start of the same session says so in `output.log` (`tail
    // -f` showed the old lines as current), and what it prints goes there
    // too, as a detached run's (walkthroughs X and Y).
    let out = run_with_limit(
        bin().arg("--sessions-dir").arg(&root).args([
            "resume",
            "--headless",
            "retry",
            "--set",
            "train.steps=62",
        ]),
        WAIT,
    );
    assert!(out.status.success(), "{}", text(&out));
    let log = read_log();
    let headless = log
        .split_once("a headless start (pid")
        .map(|(_, after)| after)
        .unwrap_or_default();
    let printed = text(&out);
    assert!(
        printed.contains(": finished") && headless.contains(": finished"),
        "the terminal's:\n{printed}\noutput.log's:\n{log}"
    );
}

/// Issue 19, item 3: writing `[aid]\niterations = 1` over a running
/// session's `config.toml` reset every other key to its built-in default
/// (`train.steps 20000 → 600`, ...). A live edit changes only what it names.
#[test]
fn a_partial_live_config_changes_only_the_keys_it_names() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let config = write_config(tmp.path(), 20_000, "lr = 0.005\neval_every = 10");
    let dir = detach(&root, &config, "partial");
    let _reaper = Reaper(dir.clone());
    let pid = SessionMeta::read(&dir).unwrap().pid;
    wait_for("a few steps", || {
        (last_train_step(&dir) >= 20).then_some(())
    });
    std::fs::write(dir.join("config.toml"), "[aid]\niterations = 1\n").unwrap();
    let lines = wait_for("the edit to be applied or refused", || {
        let lines = config_lines(&dir);
        (!lines.is_empty()).then_some(lines)
    });
    assert_eq!(
        lines[0],
        (vec!["aid.iterations".to_string()], None),
        "{lines:?}"
    );
    // A partial file with a mistake still names its line and key.
    std::fs::write(dir.join("config.toml"), "[train]\nlr = 0.002\nspeed = 3\n").unwrap();
    let lines = wait_for("the bad edit to be reported", || {
        let lines = config_lines(&dir);
        (lines.len() >= 2).then_some(lines)
    });
    let error = lines[1].1.clone().unwrap_or_default();
    assert!(
        error.contains("config.toml:3") && error.contains("speed"),
        "{lines:?}"
    );
    // A detached run's owner reads both in `output.log`, with no viewer
    // (walkthrough K found it empty after a refused edit).
    let output = std::fs::read_to_string(dir.join("output.log")).unwrap();
    let (before, after) = output
        .split_once(meltr_tui::runner::SERVING_LINE)
        .expect("the serving line");
    assert!(after.contains("primary metric:"), "{output}");
    assert!(!before.contains("primary metric:"), "{output}");
    assert!(output.contains("aid.iterations: 0 -> 1"), "{output}");
    // Its evaluations too, to follow with `tail -f` (walkthrough O).
    assert!(
        after
            .lines()
            .any(|l| l.starts_with("eval     10  ") && l.contains("primary_mse ")),
        "{output}"
    );
    assert!(
        output.contains("config refused at step") && output.contains("speed"),
        "{output}"
    );
    // `ls` says the file is not what runs, until an edit is taken.
    let id = dir.file_name().unwrap().to_string_lossy().to_string();
    let refusal = |root: &Path| {
        let out = run_with_limit(bin().arg("--sessions-dir").arg(root).arg("ls"), WAIT);
        text(&out)
            .lines()
            .find(|l| l.starts_with(&format!("{id}: its config.toml edit at step")))
            .map(str::to_string)
    };
    let note = refusal(&root).expect("ls notes the refused edit");
    assert!(note.contains("speed"), "{note}");
    std::fs::write(dir.join("config.toml"), "[train]\nlr = 0.002\n").unwrap();
    wait_for("the good edit to be applied", || {
        (config_lines(&dir).len() >= 3).then_some(())
    });
    assert_eq!(refusal(&root), None);
    // A restart-only key beside a live one: the live one applies, and
    // `ls` says the edit was refused in part (it said "refused").
    std::fs::write(
        dir.join("config.toml"),
        "[train]\nlr = 0.003\n[meltr]\nd_model = 128\n",
    )
    .unwrap();
    wait_for("the mixed edit to be taken in part", || {
        (config_lines(&dir).len() >= 4).then_some(())
    });
    let note = refusal(&root).expect("ls notes the refused key");
    assert!(
        note.contains("was refused in part") && note.contains("d_model"),
        "{note}"
    );
    // The run goes on with steps = 20000 (not the default 600).
    let meta = SessionMeta::read(&dir).unwrap();
    assert_eq!(meta.status, Status::Running, "{:?}", meta.error);
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    wait_for("the runner to stop", || {
        (!session::pid_alive(pid)).then_some(())
    });
    assert_eq!(SessionMeta::read(&dir).unwrap().status, Status::Stopped);
}

/// `meltr-tui ls`'s row for the session `id`.
fn ls_row(root: &Path, id: &str) -> String {
    let out = run_with_limit(bin().arg("--sessions-dir").arg(root).arg("ls"), WAIT);
    assert!(out.status.success(), "{}", text(&out));
    let listing = text(&out);
    listing
        .lines()
        .find(|l| l.starts_with(id))
        .unwrap_or_else(|| panic!("no row for {id}:\n{listing}"))
        .to_string()
}

/// Issue 19, item 10: under a sessions folder whose `SESSION/runner.sock`
/// is longer than a Unix socket path may be (107 bytes), `run --detach`
/// said "the runner did not start" and left a crashed session. The socket
/// goes to the fallback folder instead (said so), and everything that
/// reaches a runner finds it there.
#[test]
fn a_sessions_folder_too_long_for_the_socket_runs_detached_with_the_socket_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp
        .path()
        .join("a-sessions-folder-with-a-rather-long-name")
        .join("and-nested-in-another-one-just-as-long/sessions");
    let config = write_config(tmp.path(), 200_000, "");
    let out = run_with_limit(
        bin()
            .arg("--sessions-dir")
            .arg(&root)
            .args(["run", "--detach", "-n", "deep", "-c"])
            .arg(&config),
        WAIT,
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let dir = session::find(&root, "deep").unwrap();
    let _reaper = Reaper(dir.clone());
    let id = dir.file_name().unwrap().to_string_lossy().to_string();
    let in_folder = std::fs::canonicalize(&dir).unwrap().join("runner.sock");
    assert!(
        in_folder.as_os_str().len() > 107,
        "the test needs a longer path: {in_folder:?}"
    );

    let socket = runner::socket_path(&dir);
    assert!(socket.as_os_str().len() <= 107, "{socket:?}");
    assert!(!socket.starts_with(&dir), "{socket:?}");
    assert!(
        said.contains(&socket.display().to_string()),
        "`run --detach` does not say where the socket went:\n{said}"
    );
    let log = std::fs::read_to_string(dir.join("output.log")).unwrap();
    assert!(log.contains(&socket.display().to_string()), "{log}");
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&socket), 0o600, "the socket is its owner's only");
    assert_eq!(mode(socket.parent().unwrap()), 0o700);

    // A client connects, sees steps advance, and its commands arrive.
    let (link, _) = RemoteLink::attach(&dir).unwrap();
    let mut first = None;
    collect_until(&link, "steps over the socket", |e| match e {
        Event::Progress { step, .. } => *first.get_or_insert(*step) + 20 <= *step,
        _ => false,
    });
    let row = ls_row(&root, &id);
    assert!(
        row.contains(" running ") && row.contains("alive pid"),
        "{row}"
    );
    link.send(Command::Pause);
    collect_until(&link, "paused", |e| {
        matches!(
            e,
            Event::Status {
                status: Status::Paused,
                ..
            }
        )
    });
    assert!(ls_row(&root, &id).contains(" paused "));
    // End the run early with a live edit, and let it finish.
    let at = last_train_step(&dir);
    std::fs::write(
        dir.join("config.toml"),
        format!("[train]\nsteps = {}\n", at + 100),
    )
    .unwrap();
    wait_for("the edit to apply", || {
        (!config_lines(&dir).is_empty()).then_some(())
    });
    assert_eq!(
        config_lines(&dir)[0],
        (vec!["train.steps".to_string()], None)
    );
    link.send(Command::Resume);
    collect_until(&link, "finished", |e| {
        matches!(
            e,
            Event::Status {
                status: Status::Finished,
                ..
            }
        )
    });
    let pid = SessionMeta::read(&dir).unwrap().pid;
    wait_for("the runner to exit", || {
        (!session::pid_alive(pid)).then_some(())
    });
    let meta = SessionMeta::read(&dir).unwrap();
    assert_eq!(meta.status, Status::Finished, "{:?}", meta.error);
    assert_eq!(last_train_step(&dir), at + 100);
    assert!(!socket.exists(), "the socket file is removed");
    let row = ls_row(&root, &id);
    assert!(row.contains(" finished "), "{row}");
    assert!(row.contains(&format!("{0}/{0}", at + 100)), "{row}");
}

/// Issue 19, item 11: a runner paused because it cannot write (a full
/// disk) cannot write `session.json` either, and `ls` showed it
/// `running`. `ls` asks a live runner itself.
#[test]
fn ls_shows_what_a_live_runner_says_not_a_stale_session_json() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let config = write_config(tmp.path(), 200_000, "");
    let dir = detach(&root, &config, "stale");
    let _reaper = Reaper(dir.clone());
    let id = dir.file_name().unwrap().to_string_lossy().to_string();
    let link = RemoteLink::connect(&dir).unwrap();
    link.send(Command::Pause);
    collect_until(&link, "paused", |e| {
        matches!(
            e,
            Event::Status {
                status: Status::Paused,
                ..
            }
        )
    });
    // As a runner that could not write it leaves session.json.
    let mut meta = SessionMeta::read(&dir).unwrap();
    assert_eq!(meta.status, Status::Paused);
    meta.status = Status::Running;
    meta.write(&dir).unwrap();
    let started = Instant::now();
    let row = ls_row(&root, &id);
    assert!(
        row.contains(" paused ") && row.contains("alive pid"),
        "{row}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    link.send(Command::Resume);
    let row = wait_for("ls to show it running again", || {
        let row = ls_row(&root, &id);
        row.contains(" running ").then_some(row)
    });
    assert!(row.contains("alive pid"), "{row}");
    link.send(Command::Stop);
    collect_until(&link, "stopped", |e| {
        matches!(
            e,
            Event::Status {
                status: Status::Stopped,
                ..
            }
        )
    });
}

/// A run paused from a TUI that then detached stayed paused, and the
/// command line had no way to let it go on (walkthrough P): `resume` does,
/// and refuses `--set` there (an edit of config.toml applies live).
#[test]
fn resume_lets_a_paused_runner_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let config = write_config(tmp.path(), 200_000, "");
    let dir = detach(&root, &config, "paused");
    let _reaper = Reaper(dir.clone());
    let id = dir.file_name().unwrap().to_string_lossy().to_string();
    let link = RemoteLink::connect(&dir).unwrap();
    let status_is = |want: Status| move |e: &Event| matches!(e, Event::Status { status, .. } if *status == want);
    link.send(Command::Pause);
    collect_until(&link, "paused", status_is(Status::Paused));
    let resume = |extra: &[&str]| {
        run_with_limit(
            bin()
                .arg("--sessions-dir")
                .arg(&root)
                .args(["resume", &id])
                .args(extra),
            WAIT,
        )
    };
    // Ranks would wait for a rank 0 that only unpauses: refused first.
    let ranks = resume(&["--nproc", "2"]);
    assert!(
        !ranks.status.success() && text(&ranks).contains("whose ranks go on with it"),
        "{}",
        text(&ranks)
    );
    let refused = resume(&["--set", "train.lr=0.01"]);
    assert!(
        !refused.status.success()
            && text(&refused).contains("is paused by its runner")
            && text(&refused).contains("without --set lets it go on"),
        "{}",
        text(&refused)
    );
    // A restart-only key applies live nowhere: said so, not "an edit of
    // its config.toml applies live" (walkthrough Y).
    let restart_only = resume(&["--set", "workload.batch_size=64"]);
    assert!(
        !restart_only.status.success()
            && text(&restart_only).contains("cannot change on a paused run")
            && !text(&restart_only).contains("applies live"),
        "{}",
        text(&restart_only)
    );
    assert!(ls_row(&root, &id).contains(" paused "));
    let out = resume(&[]);
    assert!(
        out.status.success() && text(&out).contains("was paused; its runner (pid"),
        "{}",
        text(&out)
    );
    collect_until(&link, "running again", status_is(Status::Running));
    // Running: refused as before.
    let out = resume(&["--headless"]);
    assert!(
        !out.status.success() && text(&out).contains("is still running"),
        "{}",
        text(&out)
    );
    link.send(Command::Stop);
    collect_until(&link, "stopped", status_is(Status::Stopped));
}

/// A copy of the program under another name stops its own detached run
/// (`stop` had said its live runner was "gone without a last word").
#[test]
fn stop_works_for_a_renamed_copy_of_the_program() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let config = write_config(tmp.path(), 200_000, "");
    let renamed = tmp.path().join("final-bin");
    std::fs::copy(env!("CARGO_BIN_EXE_meltr-tui"), &renamed).unwrap();
    let renamed_bin = || {
        let mut command = std::process::Command::new(&renamed);
        command.arg("--sessions-dir").arg(&root);
        command
    };
    let out = run_with_limit(
        renamed_bin()
            .args(["run", "--detach", "-n", "copy", "-c"])
            .arg(&config),
        WAIT,
    );
    assert!(out.status.success(), "{}", text(&out));
    let dir = session::find(&root, "copy").unwrap();
    let _reaper = Reaper(dir.clone());
    wait_for("a logged step", || {
        (last_train_step(&dir) > 0).then_some(())
    });
    let out = run_with_limit(renamed_bin().args(["stop", "copy"]), WAIT);
    assert!(
        out.status.success() && text(&out).contains(": stopped at step "),
        "{}",
        text(&out)
    );
    assert_eq!(SessionMeta::read(&dir).unwrap().status, Status::Stopped);
}

#[test]
fn stop_ends_a_detached_run_cleanly_and_says_where() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let config = write_config(tmp.path(), 200_000, "");
    let dir = detach(&root, &config, "long");
    let _reaper = Reaper(dir.clone());
    let id = dir.file_name().unwrap().to_string_lossy().to_string();
    wait_for("a logged step", || {
        (last_train_step(&dir) > 0).then_some(())
    });
    let pid = SessionMeta::read(&dir).unwrap().pid;
    // A resume of it (no terminal here) says it runs, and that its --set
    // is not applied (walkthrough T read "no terminal to draw on").
    let resumed = run_with_limit(
        bin()
            .arg("--sessions-dir")
            .arg(&root)
            .args(["resume", &id, "--set", "train.lr=0.001"]),
        WAIT,
    );
    assert!(
        !resumed.status.success()
            && text(&resumed).contains("is still running")
            && text(&resumed).contains("the --set is not applied"),
        "{}",
        text(&resumed)
    );
    // Paused (from a TUI since detached): stopped all the same.
    let link = RemoteLink::connect(&dir).unwrap();
    link.send(Command::Pause);
    collect_until(
        &link,
        "paused",
        |e| matches!(e, Event::Status { status, .. } if *status == Status::Paused),
    );
    let stop = || {
        run_with_limit(
            bin().arg("--sessions-dir").arg(&root).args(["stop", &id]),
            WAIT,
        )
    };
    let out = stop();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("session {id}: stopped at step ")),
        "{}",
        text(&out)
    );
    assert!(
        !meltr_tui::session::pid_alive(pid),
        "the runner is still there"
    );
    let meta = SessionMeta::read(&dir).unwrap();
    assert_eq!(meta.status, Status::Stopped);
    // Its checkpoint is at the step it says it stopped at.
    let said = text(&out);
    let step: u64 = said
        .split("stopped at step ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no step in: {said}"));
    let checkpoints = checkpoint::list(&dir.join("checkpoints"));
    assert!(
        checkpoints.iter().any(|(s, _)| *s == step),
        "no checkpoint at step {step}: {checkpoints:?}"
    );
    // Nothing left to stop: said, not ignored.
    let again = stop();
    assert!(
        !again.status.success() && text(&again).contains("is not running (it is stopped)"),
        "{}",
        text(&again)
    );
}

/// A runner names itself in `session.json` as it starts, before it reads
/// the config, model and data: until then `ls` named the process that
/// launched it, alive, as the runner (walkthrough R saw a sweep's driver
/// there). Here its config cannot be read, so it stops right after.
#[test]
fn a_runner_claims_its_session_before_it_loads_anything() {
    let root = tempfile::tempdir().unwrap();
    let config = meltr_tui::config::Config::load(&write_config(root.path(), 10, "")).unwrap();
    let dir = session::create(root.path(), "claim", &config).unwrap();
    assert_eq!(SessionMeta::read(&dir).unwrap().pid, std::process::id());
    std::fs::write(dir.join("config.toml"), "not = [toml").unwrap();
    let mut child = bin()
        .arg("__runner")
        .arg(&dir)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let runner = child.id();
    assert!(!child.wait().unwrap().success());
    assert_eq!(SessionMeta::read(&dir).unwrap().pid, runner);
}

/// A runner serves its socket and watches its config while its trainer is
/// built (the foundation model's first pretraining takes minutes): a viewer
/// that attaches then is told so and live, and an edit or a checkpoint
/// asked for meanwhile waits for the first step. All three were lost, the
/// viewer frozen on "waiting for the first logged step" for the whole run
/// (walkthrough D).
#[test]
fn a_runner_serves_and_takes_edits_while_its_trainer_is_built() {
    let root = tempfile::tempdir().unwrap();
    let config = meltr_tui::config::Config::load(&write_config(root.path(), 20, "")).unwrap();
    let dir = session::create(root.path(), "slow", &config).unwrap();
    let mut child = bin()
        .arg("__runner")
        .arg(&dir)
        .env("MELTR_TEST_SLOW_SETUP_MS", "8000")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    wait_for("the runner to serve", || {
        runner::is_serving(&dir).then_some(())
    });
    let said = runner::ask_status(std::slice::from_ref(&dir), Duration::from_secs(5));
    // (Well inside the 8 s setup: what follows must happen during it.)
    assert!(
        started.elapsed() < Duration::from_millis(5000),
        "served only after its setup: {:?}",
        started.elapsed()
    );
    // (A synthetic workload: no word of the video-text one's pretraining.)
    assert_eq!(
        said[0],
        Some((Status::Running, Some(runner::serve::setting_up(false))))
    );
    // `ls` says it is setting up, of the sessions it lists only.
    let ls = |filter: &[&str]| {
        let mut command = bin();
        command
            .arg("--sessions-dir")
            .arg(root.path())
            .arg("ls")
            .args(filter);
        text(&run_with_limit(&mut command, WAIT))
    };
    assert!(ls(&[]).contains(runner::serve::SETTING_UP), "{}", ls(&[]));
    let other = ls(&["--where", "status=finished"]);
    assert!(!other.contains(runner::serve::SETTING_UP), "{other}");
    // An edit of a live key and a checkpoint, both while it sets up.
    let path = session::SessionDir::new(&dir).config();
    let edited = std::fs::read_to_string(&path)
        .unwrap()
        .replace("gamma = 0.1\n", "gamma = 0.25\n");
    assert!(edited.contains("gamma = 0.25"), "{edited}");
    std::fs::write(&path, edited).unwrap();
    let link = RemoteLink::connect(&dir).unwrap();
    link.send(Command::Checkpoint);
    let trained =
        dir.join("metrics.jsonl").exists() && !common::logged_train_steps(&dir).is_empty();
    assert!(!trained, "trained already");
    assert!(child.wait().unwrap().success());
    assert_eq!(SessionMeta::read(&dir).unwrap().status, Status::Finished);
    let in_force = meltr_tui::config::Config::load(&dir.join("config.in-force.toml")).unwrap();
    assert_eq!(in_force.meltr.gamma, 0.25);
    let checkpoints = common::events_matching(&dir, |m| m.starts_with("checkpoint step-"));
    assert!(
        checkpoints.first().is_some_and(|(step, _)| *step < 5),
        "no checkpoint at the first step: {checkpoints:?}"
    );
    // It holds the edit made with it (a fork from it goes on with it):
    // checkpoints asked for with an edit are written after it applies.
    let (step, path) = checkpoint::list(&dir.join("checkpoints")).remove(0);
    let saved = checkpoint::Loaded::read(&path, step)
        .unwrap()
        .config()
        .unwrap();
    assert_eq!(saved.meltr.gamma, 0.25, "the checkpoint of step {step}");
    // Applied before the first step, the edit is the run's start setting.
    let run = meltr_tui::runs::Run::load(&dir).unwrap();
    assert!(!run.edited.contains_key("meltr.gamma"), "{:?}", run.edited);
}

/// A viewer of a headless run (no socket) follows it through its files:
/// new lines arrive with their index in the log, a stop reaches the run
/// as SIGTERM (it checkpoints and stops), and its end is said. (It showed
/// the history it attached to, frozen.)
#[test]
fn a_viewer_follows_a_headless_run_through_its_files_and_can_stop_it() {
    use meltr_tui::runner::tail::LogTail;
    let root = tempfile::tempdir().unwrap();
    let config = write_config(root.path(), 100_000, "");
    let mut child = bin()
        .arg("--sessions-dir")
        .arg(root.path())
        .args(["run", "--headless", "-n", "tail", "-c"])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let dir = wait_for("the headless run's first step", || {
        let dir = session::find(root.path(), "tail").ok()?;
        (dir.join("metrics.jsonl").exists() && last_train_step(&dir) > 0).then_some(dir)
    });
    assert!(!runner::is_serving(&dir));
    let (link, history) = LogTail::attach(&dir).unwrap();
    assert!(!link.takes_commands() && link.detachable());
    let mut events = Vec::new();
    wait_for("lines after the history", || {
        events.extend(link.poll());
        (line_seqs(&events).len() >= 3).then_some(())
    });
    let seqs = line_seqs(&events);
    let first = history.len() as u64;
    assert_eq!(seqs, (first..first + seqs.len() as u64).collect::<Vec<_>>());
    link.send(Command::Stop);
    let stopped = wait_for("the stopped status", || {
        events.extend(link.poll());
        events.iter().find_map(|e| match e {
            Event::Status { status, .. } if status.is_terminal() => Some(*status),
            _ => None,
        })
    });
    assert_eq!(stopped, Status::Stopped);
    // The code of a SIGTERM stop, as the README says.
    assert_eq!(child.wait().unwrap().code(), Some(143));
    // Every line of the log reached the viewer, the stop's last one too.
    let logged = session::log::read_metrics(&dir.join("metrics.jsonl"))
        .unwrap()
        .lines
        .len();
    assert_eq!(history.len() + line_seqs(&events).len(), logged);
}
