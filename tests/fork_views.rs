//! Forks where a user sees them: `compare` draws a fork from its fork step
//! with the fork point marked and `parent → fork` in the legend; `f` in the
//! TUI (driven in tmux) forks the attached session with the edited config,
//! says the new id, and the sessions view (`r`, Enter) attaches to it.
//!
//! The TUI test needs `tmux` (it fails, saying so, when it is missing).

mod common;

use common::{bin, repo, run_with_limit, text};
use meltr_tui::config::Config;
use meltr_tui::plot::data::SessionData;
use meltr_tui::plot::figures::{compare, Prep};
use meltr_tui::plot::series::Emphasis;
use meltr_tui::session::{self, SessionMeta, Status};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

/// A small, quick synthetic run: `steps` steps, a checkpoint every 20.
fn parent(root: &Path, name: &str, steps: &str) -> PathBuf {
    let out = run_with_limit(
        bin()
            .arg("--sessions-dir")
            .arg(root)
            .args(["run", "--headless", "-n", name, "--steps", steps, "-c"])
            .arg(repo("configs/synthetic.toml"))
            .args(["--set", "train.checkpoint_every=20"])
            .args(["--set", "train.eval_every=10"])
            .args(["--set", "meltr.d_model=32", "--set", "meltr.heads=4"])
            .args(["--set", "meltr.d_ff=64", "--set", "train.device=\"cpu\""]),
        WAIT,
    );
    assert!(out.status.success(), "{}", text(&out));
    session::find(root, name).unwrap()
}

#[test]
fn compare_starts_a_fork_at_its_fork_step_and_marks_the_fork_point() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let parent_dir = parent(&root, "base", "60");
    let out = run_with_limit(
        bin().arg("--sessions-dir").arg(&root).args([
            "fork",
            "base",
            "--at",
            "20",
            "--headless",
            "-n",
            "branch",
            "--set",
            "meltr.meta_lr=0.01",
        ]),
        WAIT,
    );
    assert!(out.status.success(), "{}", text(&out));
    let fork_dir = session::find(&root, "branch").unwrap();
    // A table at a step before the fork leaves the fork out, said: its log
    // there is its parent's (it read the parent's numbers under its own
    // settings; refusing the whole table for it was walkthrough F's snag).
    let table = |step: &str| {
        run_with_limit(
            bin().arg("--sessions-dir").arg(&root).args([
                "table",
                "--group-by",
                "meltr.meta_lr",
                "--at-step",
                step,
            ]),
            WAIT,
        )
    };
    // At the fork step too: the eval there is its parent's (walkthrough G).
    for step in ["10", "20"] {
        let before = table(step);
        let said = text(&before);
        assert!(
            before.status.success()
                && said.contains("left out a fork, which did not exist yet")
                && said.contains("(forked at step 20)")
                && said.contains("| 1 |"),
            "{said}"
        );
    }
    // With --best too (its note had gone with the eval-step note).
    let best = run_with_limit(
        bin().arg("--sessions-dir").arg(&root).args([
            "table",
            "--group-by",
            "meltr.meta_lr",
            "--at-step",
            "10",
            "--best",
        ]),
        WAIT,
    );
    assert!(
        text(&best).contains("left out a fork, which did not exist yet"),
        "{}",
        text(&best)
    );
    let after = table("30");
    assert!(after.status.success(), "{}", text(&after));
    let sessions = [
        SessionData::load(&parent_dir).unwrap(),
        SessionData::load(&fork_dir).unwrap(),
    ];
    // The fork's log holds the parent's lines up to step 20 too.
    assert!(sessions[1].losses["primary"][0].0 < 20.0);
    let prep = Prep {
        smoothing: meltr_tui::plot::Smoothing::Ema(0.0),
        columns: 1000,
    };
    for metric in ["primary", sessions[0].meta.primary_metric.as_str()] {
        let chart = compare(&sessions, metric, prep, &[0, 1]).unwrap();
        let meltr_tui::plot::chart::Body::Lines(lines) = chart.body else {
            panic!("compare draws lines");
        };
        let by_label = |label: &str| {
            lines
                .iter()
                .find(|l| l.label.as_deref() == Some(label))
                .unwrap_or_else(|| panic!("no line labelled {label:?} in {lines:#?}"))
        };
        let base = by_label("base");
        let branch = by_label("base → branch");
        assert!(
            base.points[0].0 < 20.0,
            "{metric}: the parent starts at its start"
        );
        assert_eq!(
            branch.points[0].0, 20.0,
            "{metric}: the fork starts at step 20"
        );
        assert!(branch.points.iter().all(|p| p.0 >= 20.0));
        let marker = by_label("fork of base at step 20");
        assert_eq!(marker.emphasis, Emphasis::MarkersOnly);
        // On the parent's curve, at the fork step.
        let at_fork = base.points.iter().find(|p| p.0 == 20.0).unwrap();
        assert_eq!(marker.points, vec![*at_fork], "{metric}");
        // The fork is drawn over its parent, in either order of sessions.
        let reversed = [sessions[1].clone(), sessions[0].clone()];
        let chart = compare(&reversed, metric, prep, &[0, 1]).unwrap();
        let meltr_tui::plot::chart::Body::Lines(lines) = chart.body else {
            panic!("compare draws lines");
        };
        let at = |label: &str| lines.iter().position(|l| l.label.as_deref() == Some(label));
        assert!(
            at("base") < at("base → branch") && at("base").is_some(),
            "{metric}: the parent is drawn over its fork"
        );
    }
    // A parent with no value at or before the fork step (its first eval
    // after it): the fork step is a vertical mark, not a marker drawn at
    // the fork's first value (walkthrough J: a value measured at neither).
    let metric = sessions[0].meta.primary_metric.clone();
    let mut late = sessions.clone();
    for s in &mut late {
        s.metrics.get_mut(&metric).unwrap().retain(|p| p.0 > 20.0);
    }
    let chart = compare(&late, &metric, prep, &[0, 1]).unwrap();
    let meltr_tui::plot::chart::Body::Lines(lines) = &chart.body else {
        panic!("compare draws lines");
    };
    assert!(
        lines.iter().all(|l| l.emphasis != Emphasis::MarkersOnly),
        "{lines:#?}"
    );
    let marks: Vec<(f64, &str)> = chart
        .marks
        .iter()
        .map(|m| (m.x, m.label.as_str()))
        .collect();
    assert_eq!(marks, [(20.0, "fork of base at step 20")]);
    // The figure itself, in PNG.
    let png = tmp.path().join("fork.png");
    meltr_tui::plot::compare(
        &[parent_dir.clone(), fork_dir.clone()],
        &png,
        Some("primary"),
        meltr_tui::plot::Style::Paper,
    )
    .unwrap();
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
    // Drawn as groups (`compare --group-by`), the fork step is marked too
    // (a walkthrough's grouped figure drew its fork from step 200 unmarked).
    let svg = tmp.path().join("groups.svg");
    let group = |label: &str, dir: &PathBuf, slot| meltr_tui::plot::CurveGroup {
        label: Some(label.to_string()),
        setting: None,
        dirs: vec![dir.clone()],
        slot,
    };
    let drawn = |groups: &[meltr_tui::plot::CurveGroup]| {
        meltr_tui::plot::compare_groups(
            groups,
            &svg,
            Some("primary"),
            meltr_tui::plot::Style::Paper,
            meltr_tui::plot::bands::Band::Std,
            false,
        )
        .unwrap();
        std::fs::read_to_string(&svg).unwrap()
    };
    let figure = drawn(&[
        group("lr 0.001", &parent_dir, 0),
        group("lr 0.01", &fork_dir, 1),
    ]);
    assert!(figure.contains("fork of base at step 20"), "{figure}");
    // Beside a group of several runs, one run says n=1 too (a walkthrough's
    // fork, one seed, read like another group's mean).
    let mut pair = group("pair", &parent_dir, 0);
    pair.dirs.push(fork_dir.clone());
    let figure = drawn(&[pair, group("single", &parent_dir, 1)]);
    assert!(
        figure.contains("pair (n=2)") && figure.contains("single (n=1)"),
        "{figure}"
    );

    // A fork joins its parent's group unless `--group` says another, or
    // none (a walkthrough's exploratory fork joined a sweep's table).
    let fork = |parent: &str, at: &str, name: &str, group: Option<&str>| {
        let mut command = bin();
        command.arg("--sessions-dir").arg(&root).args([
            "fork",
            parent,
            "--at",
            at,
            "--headless",
            "-n",
            name,
        ]);
        if let Some(group) = group {
            command.args(["--group", group]);
        }
        let out = run_with_limit(&mut command, WAIT);
        assert!(out.status.success(), "{}", text(&out));
        // Joining the parent's group is said (walkthrough P found its fork
        // in the sweep's table unannounced); a chosen group is not.
        let joins =
            text(&out).contains("it joins its parent's group exp, so `table --group exp` lists it");
        assert_eq!(joins, group.is_none(), "{}", text(&out));
        session::SessionMeta::read(&session::find(&root, name).unwrap())
            .unwrap()
            .group
    };
    assert_eq!(
        fork("base", "20", "grouped", Some("exp")),
        Some("exp".to_string())
    );
    assert_eq!(
        fork("grouped", "40", "inherits", None),
        Some("exp".to_string())
    );
    assert_eq!(fork("grouped", "40", "loose", Some("none")), None);
}

/// A private tmux server running one command at 160x45, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        match Command::new("tmux").arg("-V").output() {
            Ok(out) if out.status.success() => {}
            _ => panic!("this test drives the TUI through tmux: install tmux"),
        }
        let socket = format!("meltr-fork-test-{}", std::process::id());
        let tmux = Tmux { socket };
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "160",
            "-y",
            "45",
            command,
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .env_remove("TMUX")
            .env("LANG", "C.UTF-8")
            .args(["-u", "-L", &self.socket])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "t"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Waits until the screen contains `what`; returns the screen.
    fn wait_for(&self, what: &str) -> String {
        common::wait_until(&format!("{what:?} on screen"), WAIT, || {
            let screen = self.screen();
            screen.contains(what).then_some(screen)
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

#[test]
fn f_in_the_tui_forks_with_the_edited_key_and_enter_in_the_sessions_view_attaches() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("sessions");
    let parent_dir = parent(&root, "base", "40");
    let parent_id = SessionMeta::read(&parent_dir).unwrap().id;
    let command = format!(
        "{} --sessions-dir '{}' attach base",
        env!("CARGO_BIN_EXE_meltr-tui"),
        root.display()
    );
    let tmux = Tmux::start(&command);
    tmux.wait_for("Hyperparameters");

    // train.steps 40 -> 70 in the editor (written to the parent's
    // config.toml; the parent has ended, so it stays pending there).
    let keys = Config::load(&parent_dir.join("config.toml"))
        .unwrap()
        .flatten();
    let index = keys.keys().position(|k| k == "train.steps").unwrap();
    tmux.keys(&["3", "Home"]);
    for _ in 0..index {
        tmux.keys(&["Down"]);
    }
    tmux.keys(&["Enter", "C-u"]);
    tmux.run(&["send-keys", "-t", "t", "-l", "70"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("wrote train.steps = 70");

    tmux.keys(&["f"]);
    let screen = tmux.wait_for("into session");
    let forks: Vec<(PathBuf, SessionMeta)> = session::list(&root)
        .into_iter()
        .filter(|(_, m)| m.parent.as_deref() == Some(parent_id.as_str()))
        .collect();
    assert_eq!(forks.len(), 1, "{screen}");
    let (fork_dir, meta) = &forks[0];
    assert!(screen.contains("train.steps=70"), "{screen}");
    // The status line names the fork once the view has switched to it (a
    // frame after the log line, at times).
    tmux.wait_for(&meta.id);
    assert_eq!(meta.fork_step, Some(40));
    assert_eq!(meta.group, SessionMeta::read(&parent_dir).unwrap().group);
    // Its command is the `fork` that makes it, not the TUI's `attach`.
    let made_by = meta.provenance.command.clone().unwrap_or_default();
    let root_arg = root.display().to_string();
    let expected = [
        "--sessions-dir",
        root_arg.as_str(),
        "fork",
        &parent_id,
        "--at",
        "40",
        "--detach",
        "--set",
        "train.steps=70",
    ];
    assert_eq!(
        made_by.get(1..),
        Some(&expected.map(String::from)[..]),
        "{made_by:?}"
    );
    let config = Config::load(&fork_dir.join("config.toml")).unwrap();
    assert_eq!(config.train.steps, 70, "the edited key is the fork's");
    // The fork trains on from step 40 to 70 in its own runner.
    common::wait_until("the fork to finish", WAIT, || {
        let m = SessionMeta::read(fork_dir).ok()?;
        (m.status == Status::Finished).then_some(())
    });
    let steps = common::logged_train_steps(fork_dir);
    assert_eq!(steps.last(), Some(&70), "{steps:?}");

    // The sessions view lists both, the fork with its lineage; Enter on it
    // attaches this TUI to it.
    tmux.keys(&["r"]);
    // The lineage cell itself is waited for: a capture can land while the
    // terminal is mid-frame (seen once in make test: the new header drawn,
    // the fork's row not yet).
    tmux.wait_for("FORKED FROM");
    let screen = tmux.wait_for(&format!("{parent_id}@40"));
    assert!(
        screen.contains("train.steps"),
        "the differing key\n{screen}"
    );
    tmux.keys(&["End", "Enter"]);
    // The panes again, the header naming the fork.
    common::wait_until("the TUI on the fork", WAIT, || {
        let screen = tmux.screen();
        let on_fork = screen
            .lines()
            .next()
            .is_some_and(|l| l.contains("base-fork"));
        (on_fork && !screen.contains("FORKED FROM")).then_some(())
    });
    tmux.keys(&["q", "y"]);
}
