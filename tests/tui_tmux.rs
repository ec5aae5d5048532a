//! The TUI end to end, in a real terminal: `meltr-tui new` runs inside a
//! private tmux server at a fixed size, and the test reads the screen with
//! `tmux capture-pane` and drives it with `tmux send-keys`, as a user would:
//! all panes drawn and the step advancing; the learning rate changed in the
//! hyperparameter editor (written to `config.toml`, later `train` lines carry
//! it); `config.toml` replaced by rename as vim saves it (a new
//! `aid.iterations`, applied); an invalid value (the error with file, line and
//! key on screen while steps keep advancing); quit, stopping the run; a
//! dropped terminal, attach again; a run whose runner was killed, attached.
//!
//! Needs `tmux` (the test fails, saying so, when it is missing).

mod common;

use common::wait_until;
use meltr_tui::config::Config;
use meltr_tui::session::{
    self,
    metrics::{MetricLine, Record},
    SessionMeta, Status,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Longest wait for any one thing to show up (generous: the machine may be
/// busy with other tests).
const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);
const WIDTH: u16 = 160;
const HEIGHT: u16 = 48;
/// The tmux session (and window) the TUI runs in.
const TARGET: &str = "tui";
const LOG_EVERY: u64 = 5;
const NEW_LR: &str = "0.0005";
const NEW_ITERATIONS: u32 = 2;

/// A small run that goes on for minutes; the test stops it at the end.
/// (About 150 steps/s on one CPU core, so a few thousand steps could end
/// before the last check on a fast machine.) A small α: the series must not
/// stop early, or the meta lines count fewer iterations than the edit of J
/// asks for.
fn config_text() -> String {
    format!(
        "[workload]\nkind = \"synthetic\"\n\n\
         [train]\ndevice = \"cpu\"\nsteps = 200000\nlog_every = {LOG_EVERY}\n\n\
         [meltr]\nd_model = 32\nd_hidden = 32\nd_ff = 64\nheads = 4\n\n\
         [aid]\nalpha = 0.01\nmax_growth = 1e6\n"
    )
}

/// A private tmux server (its own socket), killed when dropped, also when
/// the test fails; the TUI process is killed too if it outlives the server.
struct Tmux {
    socket: String,
    conf: PathBuf,
    /// The server's socket file, removed when dropped.
    socket_path: Option<PathBuf>,
    /// The `meltr-tui` process (from `session.json`), once known.
    tui_pid: Option<u32>,
    /// The detached runner, once known: killed when dropped (a failed test
    /// must not leave it training).
    runner_pid: Option<u32>,
}

impl Tmux {
    fn command(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.env_remove("TMUX")
            .env("LANG", "C.UTF-8")
            .args(["-u", "-L", &self.socket, "-f"])
            .arg(&self.conf);
        cmd
    }

    fn output(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run tmux {args:?}: {e}"))
    }

    /// Runs a tmux command that must succeed; returns its stdout.
    fn run(&self, args: &[&str]) -> String {
        let out = self.output(args);
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The visible screen, one line per row.
    fn screen(&self) -> String {
        let out = self.output(&["capture-pane", "-p", "-t", TARGET]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Whether `what` is on the screen within a few frames: one capture can
    /// catch tmux in the middle of drawing a frame.
    fn shows(&self, what: &str) -> bool {
        (0..10).any(|attempt| {
            if attempt > 0 {
                std::thread::sleep(POLL);
            }
            self.screen().contains(what)
        })
    }

    /// The screen and the lines scrolled off it.
    fn screen_and_history(&self) -> String {
        let out = self.output(&["capture-pane", "-p", "-S", "-", "-t", TARGET]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Named keys (`Enter`, `Down`, `C-u`, or single characters).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", TARGET];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Literal text, typed.
    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", TARGET, "-l", text]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.output(&["kill-server"]);
        if let Some(path) = &self.socket_path {
            let _ = std::fs::remove_file(path);
        }
        if let Some(pid) = self.runner_pid.filter(|&p| is_our_binary(p)) {
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        // The TUI leaves on SIGHUP; make sure, without killing a stranger.
        if let Some(pid) = self.tui_pid {
            let start = Instant::now();
            while is_our_binary(pid) && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(POLL);
            }
            if is_our_binary(pid) {
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
    }
}

/// A process's state and its threads' states, for diagnostics.
fn process_state(pid: u32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return "gone".into();
    };
    tasks
        .flatten()
        .map(|t| {
            let read = |f: &str| std::fs::read_to_string(t.path().join(f)).unwrap_or_default();
            let stat = read("stat");
            let state = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next()
                .unwrap_or("?")
                .to_string();
            format!(
                "{} {} {} {}",
                t.file_name().to_string_lossy(),
                read("comm").trim(),
                state,
                read("wchan")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `pid` is a live (not zombie) `meltr-tui` process.
fn is_our_binary(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().next());
    stat.contains("(meltr-tui)") && state != Some("Z")
}

/// Fails, with instructions, when tmux is not installed (never skips).
fn require_tmux() {
    match Command::new("tmux").arg("-V").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`tmux -V` failed ({}): this test drives the TUI in a real terminal through tmux; \
             install a working tmux (e.g. `apt-get install tmux`)",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!(
            "tmux is not installed ({e}): this test drives the TUI in a real terminal through tmux; \
             install it (e.g. `apt-get install tmux`, or `brew install tmux`) and run the test again"
        ),
    }
}

/// A shell word.
fn quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

impl Tmux {
    /// A private tmux server in `tmp` running `command` in a window of
    /// [`WIDTH`] x [`HEIGHT`].
    fn start(tmp: &Path, command: &str) -> Tmux {
        let conf = tmp.join("tmux.conf");
        // Keep the pane (and the TUI's last words) after it exits; no status
        // line, so the TUI gets the whole window; a known shell for the command.
        // And a watchdog: should this test process die without unwinding (a
        // kill, a harness timeout), the server still goes, and the TUI with it.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let socket = format!("meltr-tui-test-{}-{nanos}", std::process::id());
        std::fs::write(
            &conf,
            format!(
                "set -g remain-on-exit on\nset -g status off\nset -g default-shell /bin/sh\n\
                 run-shell -b \"while kill -0 {} 2>/dev/null; do sleep 1; done; tmux -L {socket} kill-server; rm -f '#{{socket_path}}'\"\n",
                std::process::id()
            ),
        )
        .unwrap();
        let mut tmux = Tmux {
            socket,
            conf,
            socket_path: None,
            tui_pid: None,
            runner_pid: None,
        };
        let (w, h) = (WIDTH.to_string(), HEIGHT.to_string());
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            TARGET,
            "-x",
            &w,
            "-y",
            &h,
            command,
        ]);
        tmux.socket_path = Some(PathBuf::from(
            tmux.run(&["display-message", "-p", "#{socket_path}"])
                .trim(),
        ));
        tmux
    }
}

/// The test's view of the run: the terminal and the session folder.
struct Run {
    tmux: Tmux,
    root: PathBuf,
    dir: Option<PathBuf>,
}

impl Run {
    fn dir(&self) -> &Path {
        self.dir.as_deref().expect("the session folder is known")
    }

    fn metrics(&self) -> Vec<MetricLine> {
        self.dir
            .as_ref()
            .and_then(|d| session::log::read_metrics(&d.join("metrics.jsonl")).ok())
            .map(|r| r.lines)
            .unwrap_or_default()
    }

    fn config(&self) -> Option<Config> {
        Config::load(&self.dir().join("config.toml")).ok()
    }

    /// What to show when a wait times out: the screen, the log's tail, the
    /// run's captured output.
    fn diagnostics(&self) -> String {
        let mut out = format!("--- screen ---\n{}", self.tmux.screen());
        if let Some(pid) = self.tmux.tui_pid {
            out += &format!("--- process {pid} ---\n{}\n", process_state(pid));
        }
        if let Some(dir) = &self.dir {
            let tail: Vec<String> = std::fs::read_to_string(dir.join("metrics.jsonl"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(8)
                .map(|l| l.chars().take(300).collect())
                .collect();
            out += "--- metrics.jsonl (newest first) ---\n";
            out += &tail.join("\n");
            out += "\n--- output.log ---\n";
            out += &std::fs::read_to_string(dir.join("output.log")).unwrap_or_default();
        }
        out
    }

    /// Polls `check` until it gives a value; fails after [`WAIT`].
    fn wait<T>(&self, what: &str, mut check: impl FnMut(&Run) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(value) = check(self) {
                return value;
            }
            if start.elapsed() > WAIT {
                panic!(
                    "timed out after {WAIT:?} waiting for {what}\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// `q`, then `s` in the quit dialog (which offers to detach, the run
    /// living in its runner); waits for the TUI to exit 0, as the shell
    /// records in `exit_file`.
    fn stop_from_the_quit_dialog(&self, exit_file: &Path) {
        self.tmux.keys(&["q"]);
        self.wait("the quit confirmation", |r| {
            r.tmux
                .screen()
                .contains("detach (run goes on)")
                .then_some(())
        });
        self.tmux.keys(&["s"]);
        let status: i32 = self.wait("the TUI process to exit", |_| {
            std::fs::read_to_string(exit_file).ok()?.trim().parse().ok()
        });
        assert_eq!(status, 0, "exit status\n{}", self.diagnostics());
    }

    /// Waits until the header shows a step beyond `after`; returns it.
    fn wait_screen_step_beyond(&self, after: u64) -> u64 {
        self.wait(&format!("the header's step to pass {after}"), |r| {
            screen_step(&r.tmux.screen()).filter(|&s| s > after)
        })
    }

    /// Waits until `metrics.jsonl` has a train line beyond `after`; returns its step.
    fn wait_train_beyond(&self, after: u64) -> u64 {
        self.wait(&format!("a train line after step {after}"), |r| {
            last_train_step(&r.metrics()).filter(|&s| s > after)
        })
    }
}

/// The session's detached runner: the pid in `session.json` once it is a
/// live `meltr-tui` leading its own process session.
fn runner_pid(dir: &Path) -> Option<u32> {
    let pid = SessionMeta::read(dir).ok()?.pid;
    let leads = unsafe { libc::getsid(pid as libc::pid_t) } == pid as libc::pid_t;
    (leads && is_our_binary(pid)).then_some(pid)
}

/// The step in the header: `step 1,234/200,000`.
fn screen_step(screen: &str) -> Option<u64> {
    let first = screen.lines().next()?;
    let at = first.find("step ")? + "step ".len();
    let digits: String = first[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    first[at + digits.len()..].contains('/').then_some(())?;
    digits.parse().ok()
}

fn last_train_step(lines: &[MetricLine]) -> Option<u64> {
    lines
        .iter()
        .rev()
        .find(|l| matches!(l.record, Record::Train { .. }))
        .map(|l| l.step)
}

fn train_lrs(lines: &[MetricLine]) -> Vec<(u64, f64)> {
    lines
        .iter()
        .filter_map(|l| match &l.record {
            Record::Train { lr, .. } => Some((l.step, *lr)),
            _ => None,
        })
        .collect()
}

/// The step of the first `config` line whose `changed` takes `key` to `new`.
fn change_step(lines: &[MetricLine], key: &str, new: &serde_json::Value) -> Option<u64> {
    lines.iter().find_map(|l| match &l.record {
        Record::Config { changed, .. } if changed.get(key).is_some_and(|(_, n)| n == new) => {
            Some(l.step)
        }
        _ => None,
    })
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

/// Replaces `config.toml` as vim does: a new file beside it, renamed over it.
fn replace_by_rename(dir: &Path, text: &str) {
    let tmp = dir.join(".config.toml.tui-test.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("config.toml")).unwrap();
}

#[test]
fn tui_in_tmux_shows_the_run_and_applies_edits_from_the_editor_and_from_outside() {
    require_tmux();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let config_path = tmp.path().join("tiny.toml");
    std::fs::write(&config_path, config_text()).unwrap();
    // The shell records the exit status once the TUI's process has exited
    // and been reaped. (tmux's own `pane_dead_status` is not reliable: a
    // tmux linked with libutempter can miss the SIGCHLD of a pane process
    // that exits while the pane is being closed, leaving it a zombie.)
    let exit_file = tmp.path().join("exit-status");
    let command = format!(
        "{} --sessions-dir {} new -c {} -n tmuxtest; echo $? > {}",
        quote(Path::new(env!("CARGO_BIN_EXE_meltr-tui"))),
        quote(&root),
        quote(&config_path),
        quote(&exit_file)
    );
    let tmux = Tmux::start(tmp.path(), &command);
    let mut run = Run {
        tmux,
        root,
        dir: None,
    };

    // ---- the TUI is up: every pane drawn, the step advancing ---------------
    let dir = run.wait("the session folder", |r| {
        let sessions = session::list(&r.root);
        (sessions.len() == 1).then(|| sessions[0].0.clone())
    });
    run.dir = Some(dir.clone());
    run.tmux.tui_pid = Some(SessionMeta::read(&dir).unwrap().pid);
    run.tmux.runner_pid = Some(run.wait("the runner process", |r| runner_pid(r.dir())));
    let first = run.wait("all panes and the header", |r| {
        let screen = r.tmux.screen();
        let all = [
            "tmuxtest",
            "running",
            "1 Curves",
            "2 Contributions",
            "3 Hyperparameters",
            "4 Events",
            "? help",
        ]
        .iter()
        .all(|s| screen.contains(s));
        all.then(|| screen_step(&screen)).flatten()
    });
    let screen = run.tmux.screen();
    assert_eq!(screen.lines().count(), usize::from(HEIGHT), "{screen}");
    assert!(
        screen
            .lines()
            .all(|l| l.chars().count() <= usize::from(WIDTH)),
        "{screen}"
    );
    run.wait_screen_step_beyond(first);

    // ---- the learning rate, changed in the editor pane ----------------------
    let config = run.config().expect("a valid config.toml");
    let old_lr = config.train.lr;
    assert!(!close(old_lr, NEW_LR.parse().unwrap()));
    let row = config
        .flatten()
        .keys()
        .position(|k| k == "train.lr")
        .expect("train.lr is a row of the hyperparameter table");
    run.tmux.keys(&["3"]);
    run.wait("the hyperparameters pane focused", |r| {
        r.tmux
            .screen()
            .contains("┏ 3 Hyperparameters")
            .then_some(())
    });
    run.tmux.keys(&["Home"]);
    for _ in 0..row {
        run.tmux.keys(&["Down"]);
    }
    run.tmux.keys(&["Enter"]);
    let keys: Vec<String> = config.flatten().into_keys().collect();
    run.wait("the editor open on train.lr", |r| {
        let screen = r.tmux.screen();
        // The editor line is `key = value` in the (focused, thick-bordered) pane.
        let open = keys.iter().find(|k| screen.contains(&format!("┃{k} = ")))?;
        assert_eq!(
            open, "train.lr",
            "the editor opened on another key\n{screen}"
        );
        Some(())
    });
    run.tmux.keys(&["C-u"]);
    run.tmux.type_text(NEW_LR);
    run.tmux.keys(&["Enter"]);
    let new_lr: f64 = NEW_LR.parse().unwrap();
    run.wait("config.toml to carry the new train.lr", |r| {
        r.config().filter(|c| close(c.train.lr, new_lr))
    });
    let lr_step = run.wait("later train lines with the new lr", |r| {
        let lrs = train_lrs(&r.metrics());
        let at = lrs.iter().position(|(_, lr)| close(*lr, new_lr))?;
        // Once applied it stays: two later lines carry it too.
        (lrs.len() >= at + 3).then(|| lrs[at].0)
    });
    let lines = run.metrics();
    let lrs = train_lrs(&lines);
    assert!(
        lrs.iter()
            .filter(|(s, _)| *s < lr_step)
            .all(|(_, lr)| close(*lr, old_lr)),
        "{lrs:?}"
    );
    assert!(
        lrs.iter()
            .filter(|(s, _)| *s >= lr_step)
            .all(|(_, lr)| close(*lr, new_lr)),
        "{lrs:?}"
    );
    assert!(
        change_step(&lines, "train.lr", &serde_json::json!(new_lr)).is_some(),
        "no config line records train.lr -> {new_lr}"
    );

    // ---- config.toml replaced by rename (as vim saves it) -------------------
    let mut edited = run.config().expect("a valid config.toml");
    assert_ne!(edited.aid.iterations, NEW_ITERATIONS);
    edited.aid.iterations = NEW_ITERATIONS;
    replace_by_rename(&dir, &edited.to_toml_string());
    let changed_at = run.wait("a config line with aid.iterations", |r| {
        change_step(
            &r.metrics(),
            "aid.iterations",
            &serde_json::json!(NEW_ITERATIONS),
        )
    });
    run.wait("meta lines with the new aid_iterations", |r| {
        let later: Vec<u32> = r
            .metrics()
            .iter()
            .filter(|l| l.step > changed_at)
            .filter_map(|l| match l.record {
                Record::Meta { aid_iterations, .. } => Some(aid_iterations),
                _ => None,
            })
            .collect();
        (later.len() >= 2).then_some(later)
    })
    .iter()
    .for_each(|&j| assert_eq!(j, NEW_ITERATIONS));
    run.wait("the hyperparameters pane to show the new J", |r| {
        r.tmux
            .screen()
            .contains(&format!("J {NEW_ITERATIONS} · α"))
            .then_some(())
    });

    // ---- an invalid value: reported on screen, the run goes on --------------
    let text = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    let mut bad_line = None;
    let bad: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if l.trim_start().starts_with("iterations =") {
                bad_line = Some(i + 1);
                "iterations = \"many\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect();
    let bad_line = bad_line.expect("config.toml has an `iterations =` line");
    replace_by_rename(&dir, &(bad.join("\n") + "\n"));
    let location = format!("config.toml:{bad_line}:");
    run.wait("the config error (file, line, key) on screen", |r| {
        let screen = r.tmux.screen();
        [
            "config refused",
            location.as_str(),
            "`aid.iterations`",
            "\"many\"",
        ]
        .iter()
        .all(|s| screen.contains(s))
        .then_some(())
    });
    let error_at = run.wait("a config error line in metrics.jsonl", |r| {
        r.metrics().iter().find_map(|l| match &l.record {
            Record::Config { error: Some(e), .. } if e.contains("aid.iterations") => Some(l.step),
            _ => None,
        })
    });
    let train_then = run.wait_train_beyond(error_at);
    run.wait_train_beyond(train_then + 2 * LOG_EVERY);
    let on_screen = screen_step(&run.tmux.screen()).unwrap_or(0);
    run.wait_screen_step_beyond(on_screen);
    // The last good config stays in force.
    let lines = run.metrics();
    assert!(
        lines.iter().all(|l| match l.record {
            Record::Meta { aid_iterations, .. } => {
                l.step <= changed_at || aid_iterations == NEW_ITERATIONS
            }
            _ => true,
        }),
        "a meta step after the invalid edit left aid.iterations = {NEW_ITERATIONS}"
    );
    assert!(run.tmux.shows("config refused"), "{}", run.diagnostics());

    // ---- quit, stopping the run ---------------------------------------------
    run.stop_from_the_quit_dialog(&exit_file);
    let pid = run.tmux.tui_pid.unwrap();
    assert!(!is_our_binary(pid), "{}", process_state(pid));
    let meta = SessionMeta::read(&dir).unwrap();
    assert!(
        matches!(meta.status, Status::Stopped | Status::Finished),
        "session.json status is {:?}",
        meta.status
    );
    let screen = run.tmux.screen_and_history();
    assert!(
        screen.contains(&format!("session {}: {}", meta.id, meta.status.as_str())),
        "{screen}"
    );
    eprintln!("tui_tmux: {:.1} s", started.elapsed().as_secs_f64());
}

/// A dropped SSH connection: the terminal (the tmux server, with the TUI in
/// it) is killed; the detached runner goes on training; `attach` from a new
/// terminal shows the same run, live; stopping it from there ends it.
#[test]
fn a_dropped_terminal_leaves_the_run_going_and_attach_picks_it_up() {
    require_tmux();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let config_path = tmp.path().join("tiny.toml");
    std::fs::write(&config_path, config_text()).unwrap();
    let bin = quote(Path::new(env!("CARGO_BIN_EXE_meltr-tui")));
    let first = tmp.path().join("first");
    std::fs::create_dir(&first).unwrap();
    let command = format!(
        "{bin} --sessions-dir {} new -c {} -n dropped",
        quote(&root),
        quote(&config_path)
    );
    let mut run = Run {
        tmux: Tmux::start(&first, &command),
        root: root.clone(),
        dir: None,
    };
    let dir = run.wait("the session folder", |r| {
        let sessions = session::list(&r.root);
        (sessions.len() == 1).then(|| sessions[0].0.clone())
    });
    run.dir = Some(dir.clone());
    let runner = run.wait("the runner process", |r| runner_pid(r.dir()));
    run.tmux.runner_pid = Some(runner);
    let seen = run.wait("the TUI showing steps", |r| screen_step(&r.tmux.screen()));

    // The connection drops: the terminal and everything in it go.
    let _ = run.tmux.output(&["kill-server"]);
    let dropped_at = last_train_step(&run.metrics()).unwrap_or(seen);
    let later = run.wait_train_beyond(dropped_at + 10 * LOG_EVERY);
    assert!(is_our_binary(runner), "the runner died with the terminal");
    assert_eq!(SessionMeta::read(&dir).unwrap().status, Status::Running);

    // A new terminal attaches to the same run.
    let second = tmp.path().join("second");
    std::fs::create_dir(&second).unwrap();
    let exit_file = tmp.path().join("exit-status");
    let command = format!(
        "{bin} --sessions-dir {} attach dropped; echo $? > {}",
        quote(&root),
        quote(&exit_file)
    );
    let mut tmux = Tmux::start(&second, &command);
    tmux.runner_pid = run.tmux.runner_pid.take();
    run.tmux = tmux;
    let on_screen = run.wait("the attached TUI past the drop", |r| {
        let screen = r.tmux.screen();
        screen
            .contains("dropped")
            .then(|| screen_step(&screen))
            .flatten()
            .filter(|&s| s >= later)
    });
    run.wait_screen_step_beyond(on_screen);
    // History from before the drop is drawn too: the curves start at the
    // first logged step.
    assert!(run.tmux.shows("1 Curves"), "{}", run.diagnostics());

    run.stop_from_the_quit_dialog(&exit_file);
    run.wait("the runner to end", |_| {
        (!is_our_binary(runner)).then_some(())
    });
    assert_eq!(SessionMeta::read(&dir).unwrap().status, Status::Stopped);
}

/// A run whose runner was killed (`kill -9`, a reboot) still says
/// `running` in its `session.json`; attached, the TUI showed "● running"
/// where `ls` says crashed. It reads "✖ crashed" with the way on.
#[test]
fn attaching_to_a_run_whose_runner_was_killed_shows_it_crashed() {
    require_tmux();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let config_path = tmp.path().join("tiny.toml");
    std::fs::write(&config_path, config_text()).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_meltr-tui"));
    let meltr_ok = |args: &[&str]| {
        let out = Command::new(bin)
            .arg("--sessions-dir")
            .arg(&root)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let config = config_path.to_str().unwrap();
    meltr_ok(&["run", "--detach", "-n", "killed", "-c", config]);
    let dir = session::find(&root, "killed").unwrap();
    let runner = wait_until("the runner", WAIT, || runner_pid(&dir));
    wait_until("a few steps", WAIT, || {
        let lines = session::log::read_metrics(&dir.join("metrics.jsonl")).ok()?;
        last_train_step(&lines.lines).filter(|&s| s >= 2 * LOG_EVERY)
    });
    unsafe { libc::kill(runner as libc::pid_t, libc::SIGKILL) };
    wait_until("the runner to die", WAIT, || {
        (!is_our_binary(runner)).then_some(())
    });
    assert_eq!(SessionMeta::read(&dir).unwrap().status, Status::Running);

    let command = format!(
        "{} --sessions-dir {} attach killed",
        quote(bin),
        quote(&root)
    );
    let mut tmux = Tmux::start(tmp.path(), &command);
    let screen = wait_until("the TUI's header", WAIT, || {
        let screen = tmux.screen();
        screen.contains("killed").then_some(screen)
    });
    assert!(
        tmux.shows("✖ crashed") && tmux.shows("run crashed: the runner is gone"),
        "{screen}"
    );
    assert!(!tmux.screen().contains("● running"), "{}", tmux.screen());
    let crashed_at = screen_step(&tmux.screen()).expect("the header's step");

    // Resumed elsewhere while this viewer stays open: it attaches to the
    // new runner by itself (walkthrough O's stayed on "crashed").
    meltr_ok(&["resume", "killed", "--detach"]);
    // The new runner dies with the test, whatever happens (Tmux's drop).
    tmux.runner_pid = Some(wait_until("the new runner", WAIT, || {
        runner_pid(&dir).filter(|&pid| pid != runner)
    }));
    wait_until("the viewer to show the resumed run", WAIT, || {
        let screen = tmux.screen();
        (screen.contains("● running") && screen_step(&screen).is_some_and(|s| s > crashed_at))
            .then_some(())
    });
    assert!(!tmux.screen().contains("crashed"), "{}", tmux.screen());
}
