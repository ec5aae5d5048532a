//! The sessions view (`r`) and forking (`f`): keys -> actions, what the
//! caller's answers change, and snapshots of the list and the overlay.
//!
//! Long: the view's and the fork's tests share one set of fixtures (runs,
//! overlay curves, a recording fork); split, each half would rebuild them.

use super::*;
use crate::runs::Run;
use crate::tui::state::{ForkReport, Overlaid, OverlayCurve};
use crate::tui::{perform_with, Ctx};
use std::collections::BTreeMap;

/// A row of the runs table as `runs::all` would read it.
fn run(name: &str, step: u64, accuracy: Option<f64>, j: i64, fork: Option<(&str, u64)>) -> Run {
    let mut meta = fixtures::meta(TOTAL);
    meta.id = format!("20260101-12000{}-{name}", name.len() % 10);
    meta.name = name.into();
    meta.parent = fork.map(|(p, _)| p.to_string());
    meta.fork_step = fork.map(|(_, s)| s);
    let mut config: BTreeMap<String, toml::Value> = Config::default().flatten();
    config.insert("aid.iterations".into(), toml::Value::Integer(j));
    let eval: Option<crate::runs::Eval> =
        accuracy.map(|a| (step, [("accuracy".to_string(), a)].into()));
    Run {
        dir: PathBuf::from(format!("sessions/{name}")),
        log_error: None,
        status: if step == TOTAL { "finished" } else { "running" }.into(),
        alive_pid: None,
        step,
        steps: TOTAL,
        final_eval: eval.clone(),
        best_eval: eval,
        final_weights: Default::default(),
        last_primary_weight: None,
        final_losses: Default::default(),
        neumann_cut: None,
        final_shares: Default::default(),
        final_share_lines: 0,
        config,
        fork_changes: Vec::new(),
        restores: Vec::new(),
        unrestored_collapses: Vec::new(),
        skipped_share: None,
        refused_edit: None,
        edited: Default::default(),
        ancestors: Vec::new(),
        meta,
    }
}

/// The attached session (`sessions/demo`), another, and a fork of it.
fn runs() -> Vec<Run> {
    vec![
        run("demo", STEPS, Some(0.71), 3, None),
        run("base", TOTAL, Some(0.64), 0, None),
        run(
            "base-fork",
            TOTAL,
            Some(0.69),
            1,
            Some(("20260101-120004-base", 400)),
        ),
    ]
}

/// The key with the most values comes first, where a narrow terminal
/// keeps it (walkthrough R's 80 columns hid `combiner.kind`, the key that
/// told a sweep's rows apart, behind two keys one session had changed).
#[test]
fn the_key_with_the_most_values_is_the_first_column() {
    let mut sweep: Vec<Run> = Vec::new();
    for (i, kind) in ["meltr", "sum", "primary", "uncertainty"]
        .iter()
        .enumerate()
    {
        let mut r = run(&format!("s{i}"), TOTAL, Some(0.5), i64::from(i == 0), None);
        r.config.insert(
            "combiner.kind".into(),
            toml::Value::String(kind.to_string()),
        );
        sweep.push(r);
    }
    let view = crate::tui::state::SessionsView::new(sweep.clone(), Path::new("sessions/s0"));
    assert_eq!(view.differing, ["combiner.kind", "aid.iterations"]);
    // A refresh (every few seconds, or a mark) keeps that order (walkthrough
    // V's columns reordered).
    let mut app = app();
    app.show_sessions(Ok(sweep.clone()));
    app.refresh_sessions(sweep, None);
    assert_eq!(
        app.sessions.as_ref().unwrap().differing,
        ["combiner.kind", "aid.iterations"]
    );
    // Among keys with as many values, one a run changed while it trained
    // (starred) comes first (walkthrough Z's were hidden behind `+6 keys`).
    let mut edited = sweep_with_gamma();
    let view = crate::tui::state::SessionsView::new(edited.clone(), Path::new("sessions/s0"));
    assert_eq!(view.differing, ["aid.iterations", "meltr.gamma"]);
    edited[1].edited.insert(
        "meltr.gamma".into(),
        ("0.1".into(), vec![(50, "0.3".into())]),
    );
    let view = crate::tui::state::SessionsView::new(edited.clone(), Path::new("sessions/s0"));
    assert_eq!(view.differing, ["meltr.gamma", "aid.iterations"]);
    // A key changed and set back to the value every run ends on is a
    // column still, beside those with two values (walkthrough A's J went
    // 0→1→3→2→0).
    edited[0].edited.insert(
        "aid.alpha".into(),
        ("0.1".into(), vec![(40, "0.05".into()), (80, "0.1".into())]),
    );
    let view = crate::tui::state::SessionsView::new(edited, Path::new("sessions/s0"));
    assert_eq!(
        view.differing,
        ["aid.alpha", "meltr.gamma", "aid.iterations"]
    );
}

/// Two runs that differ in J and in γ, two values each.
fn sweep_with_gamma() -> Vec<Run> {
    (0..2)
        .map(|i| {
            let mut r = run(&format!("g{i}"), TOTAL, Some(0.5), i, None);
            r.config.insert(
                "meltr.gamma".into(),
                toml::Value::Float(0.1 + 0.2 * i as f64),
            );
            r
        })
        .collect()
}

fn with_sessions() -> App {
    let mut app = app();
    assert_eq!(press(&mut app, KeyCode::Char('r')), Action::ListSessions);
    app.show_sessions(Ok(runs()));
    app
}

fn curve(label: &str, from: u64, scale: f64) -> OverlayCurve {
    OverlayCurve {
        label: label.into(),
        points: (from..TOTAL)
            .step_by(10)
            .map(|s| (s as f64, scale / (1.0 + s as f64 / 100.0)))
            .collect(),
    }
}

fn overlaid() -> Overlaid {
    Overlaid {
        what: "training loss primary".into(),
        curves: vec![
            curve("base", 0, 2.0),
            curve("base-fork (fork @400)", 400, 1.5),
        ],
    }
}

#[test]
fn r_opens_the_view_on_the_attached_session_and_esc_or_r_closes_it() {
    let mut app = with_sessions();
    let view = app.sessions.as_ref().expect("the view is open");
    assert_eq!(view.cursor, 0, "cursor on sessions/demo, the attached one");
    assert_eq!(view.differing, vec!["aid.iterations".to_string()]);
    assert_eq!(press(&mut app, KeyCode::Esc), Action::None);
    assert!(app.sessions.is_none());
    app.show_sessions(Ok(runs()));
    press(&mut app, KeyCode::Char('r'));
    assert!(app.sessions.is_none());
    // A number key leaves the view for that pane.
    app.show_sessions(Ok(runs()));
    press(&mut app, KeyCode::Char('3'));
    assert!(app.sessions.is_none());
    assert_eq!(app.focus, Pane::Hyper);
}

#[test]
fn pane_keys_do_nothing_in_the_view_but_global_ones_work() {
    let mut app = with_sessions();
    let hidden = app.curves.hidden.clone();
    press(&mut app, KeyCode::Char('l'));
    assert!(!app.curves.log, "l is the curves pane's, not the view's");
    assert_eq!(app.curves.hidden, hidden);
    assert_eq!(
        press(&mut app, KeyCode::Char('p')),
        Action::Send(Command::Pause)
    );
    press(&mut app, KeyCode::Char('q'));
    assert_eq!(app.overlay, Overlay::ConfirmQuit);
}

#[test]
fn space_marks_and_o_overlays_only_two_or_more() {
    let mut app = with_sessions();
    press(&mut app, KeyCode::Down);
    assert_eq!(press(&mut app, KeyCode::Char(' ')), Action::None);
    let view = app.sessions.as_ref().expect("open");
    assert_eq!(view.cursor, 2, "Space moves on to the next row");
    assert_eq!(press(&mut app, KeyCode::Char('o')), Action::None);
    let flash = app.flash.as_ref().expect("says why").text.clone();
    assert!(flash.contains("1 marked"), "{flash}");
    press(&mut app, KeyCode::Char(' '));
    assert_eq!(
        press(&mut app, KeyCode::Char('o')),
        Action::OverlayCurves(vec!["sessions/base".into(), "sessions/base-fork".into()])
    );
    app.show_overlay(Ok(overlaid()));
    assert!(app.sessions.as_ref().expect("open").overlay.is_some());
    // Esc closes the overlay first, then the view; Space unmarks.
    press(&mut app, KeyCode::Esc);
    let view = app.sessions.as_ref().expect("still open");
    assert!(view.overlay.is_none());
    press(&mut app, KeyCode::Up);
    press(&mut app, KeyCode::Char(' '));
    assert_eq!(
        app.sessions.as_ref().expect("open").marked_dirs(),
        vec![PathBuf::from("sessions/base-fork")],
        "base (row 1) unmarked"
    );
    press(&mut app, KeyCode::Esc);
    assert!(app.sessions.is_none());
}

/// The other sessions move on while the view is open (a walkthrough saw
/// their rows and the overlay stand still): a refresh replaces them and
/// keeps the cursor and the marks on their sessions.
#[test]
fn a_refresh_moves_the_other_rows_and_the_overlay_on() {
    let mut app = with_sessions();
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Char(' '));
    press(&mut app, KeyCode::Char(' '));
    app.show_overlay(Ok(overlaid()));
    press(&mut app, KeyCode::Up);
    // A new session listed first, and `base` further on.
    let mut later = runs();
    later[1].step = TOTAL + 50;
    later.insert(0, run("newer", 10, None, 2, None));
    assert_eq!(
        app.sessions.as_ref().unwrap().marked_dirs(),
        vec![PathBuf::from("sessions/base"), "sessions/base-fork".into()],
        "what the caller reads the curves of"
    );
    let mut fresh = overlaid();
    fresh.curves[0].points.push((TOTAL as f64, 0.1));
    app.refresh_sessions(later, Some(Ok(fresh)));
    let view = app.sessions.as_ref().expect("open");
    assert_eq!(view.runs.len(), 4);
    assert_eq!(view.runs[2].step, TOTAL + 50);
    assert_eq!(
        view.runs[view.cursor].meta.name, "base",
        "cursor stays on base"
    );
    let overlay = view.overlay.as_ref().expect("still shown");
    assert_eq!(overlay.curves[0].points.last(), Some(&(TOTAL as f64, 0.1)));
    // A failed read of the curves keeps those shown.
    app.refresh_sessions(runs(), Some(Err(anyhow::anyhow!("gone"))));
    assert!(app.sessions.as_ref().unwrap().overlay.is_some());
}

#[test]
fn enter_attaches_to_another_session_and_closes_on_this_one() {
    let mut app = with_sessions();
    assert_eq!(press(&mut app, KeyCode::Enter), Action::None);
    assert!(app.sessions.is_none(), "Enter on the attached one closes");
    app.show_sessions(Ok(runs()));
    press(&mut app, KeyCode::End);
    let action = press(&mut app, KeyCode::Enter);
    assert_eq!(
        action,
        Action::Quit(Exit::Attach("sessions/base-fork".into()))
    );
    let link = FakeLink::default();
    assert_eq!(
        perform(&mut app, action, &link, None),
        Some(Exit::Attach("sessions/base-fork".into()))
    );
    assert!(link.sent.borrow().is_empty(), "switching stops nothing");
}

#[test]
fn a_folder_that_cannot_be_listed_is_said() {
    let mut app = app();
    let link = FakeLink::default();
    perform_with(&mut app, Action::ListSessions, &link, Ctx::default());
    assert!(app.sessions.is_none());
    let flash = app.flash.as_ref().expect("says why").text.clone();
    assert!(flash.contains("cannot list sessions"), "{flash}");
}

/// A fork callback that succeeds, recording the `train.lr` it was given.
fn recorded_fork(seen: &RefCell<Vec<f64>>, config: &Config) -> anyhow::Result<ForkReport> {
    seen.borrow_mut().push(config.train.lr);
    Ok(ForkReport {
        id: "20260101-130000-demo-fork".into(),
        dir: "sessions/20260101-130000-demo-fork".into(),
        step: 400,
        changes: vec!["train.lr=0.002".into()],
    })
}

#[test]
fn f_forks_with_the_edited_config_and_says_the_new_id() {
    let mut app = app();
    assert_eq!(press(&mut app, KeyCode::Char('f')), Action::None);
    assert!(app
        .flash
        .as_ref()
        .expect("warns")
        .text
        .contains("not available"));

    app.can_fork = true;
    select(&mut app, "train.lr");
    press(&mut app, KeyCode::Enter);
    app.editor.as_mut().expect("editing").input.clear();
    type_text(&mut app, "0.002");
    let edit = press(&mut app, KeyCode::Enter);
    let Action::WriteConfig { config, .. } = edit else {
        panic!("expected a write, got {edit:?}");
    };
    app.wrote_config(*config, "train.lr = 0.002");

    // A live run checkpoints the step it is at first, and the fork waits
    // for that checkpoint (walkthrough P: `f` at step 248 forked at 200).
    assert_eq!(
        press(&mut app, KeyCode::Char('f')),
        Action::Send(Command::CheckpointForFork)
    );
    assert_eq!(app.fork_waiting, Some(None));
    assert_eq!(app.fork_ready, None);
    app.on_event(checkpoint_asked(400));
    assert_eq!(
        (app.fork_waiting.clone(), app.fork_ready.clone()),
        (None, Some(None))
    );
    app.fork_ready = None;
    let seen: RefCell<Vec<f64>> = RefCell::default();
    let fork = |c: &Config| recorded_fork(&seen, c);
    let ctx = Ctx {
        fork: Some(&fork),
        ..Ctx::default()
    };
    let link = FakeLink::default();
    assert_eq!(perform_with(&mut app, Action::Fork(None), &link, ctx), None);
    assert_eq!(
        *seen.borrow(),
        vec![0.002],
        "the fork gets the edited config"
    );
    let flash = app.flash.as_ref().expect("says the id").text.clone();
    assert!(
        flash.contains("into session 20260101-130000-demo-fork")
            && flash.contains("step 400")
            && flash.contains("train.lr=0.002")
            && flash.contains("beside this run")
            && flash.contains("`meltr-tui stop 20260101-130000-demo-fork` ends it"),
        "{flash}"
    );
    let failing = |_: &Config| -> anyhow::Result<ForkReport> {
        anyhow::bail!("session demo has no checkpoint to fork from")
    };
    let ctx = Ctx {
        fork: Some(&failing),
        ..Ctx::default()
    };
    perform_with(&mut app, Action::Fork(None), &link, ctx);
    let flash = app.flash.as_ref().expect("says why").text.clone();
    assert!(
        flash.contains("fork failed: session demo has no checkpoint"),
        "{flash}"
    );
    // A fork still waiting when the run ends forks from its newest
    // checkpoint; an ended run forks at once.
    press(&mut app, KeyCode::Char('f'));
    app.on_event(Event::Status {
        status: Status::Stopped,
        message: None,
    });
    assert_eq!(
        (app.fork_waiting.clone(), app.fork_ready.clone()),
        (None, Some(None))
    );
    assert_eq!(press(&mut app, KeyCode::Char('f')), Action::Fork(None));
    // Paused for a reason (the checkpoint could not be written): the fork
    // is dropped and said, not left to go off at a later checkpoint.
    app.fork_ready = None;
    app.status = Status::Running;
    press(&mut app, KeyCode::Char('f'));
    app.on_event(Event::Status {
        status: Status::Paused,
        message: Some("no space left on device".into()),
    });
    assert_eq!(
        (app.fork_waiting.clone(), app.fork_ready.clone()),
        (None, None)
    );
    assert!(app
        .store
        .log
        .iter()
        .any(|e| e.text == "fork not made: no space left on device"));
    app.on_event(checkpoint_asked(500));
    assert_eq!(app.fork_ready, None);
    // A run that takes no command (viewed from its files): at once.
    app.status = Status::Running;
    app.takes_commands = false;
    assert_eq!(press(&mut app, KeyCode::Char('f')), Action::Fork(None));
}

/// The event a checkpoint asked for by hand writes at `step`.
fn checkpoint_asked(step: u64) -> Event {
    let message = format!(
        "{}{step} written for a fork",
        crate::session::metrics::CHECKPOINT_ASKED_EVENT
    );
    Event::Line {
        line: MetricLine {
            step,
            time: 0.0,
            wall: None,
            record: Record::Event {
                level: Level::Info,
                message,
            },
        },
        seq: 0,
    }
}

/// A walkthrough: an edit in the TUI applied to the attached run, so a
/// fork after it was the same as its parent. Ctrl-F in the editor forks
/// with the value and leaves this run's config as it was.
#[test]
fn ctrl_f_in_the_editor_forks_with_the_value_without_writing_it_here() {
    let mut app = app();
    let before = app.config.clone();
    select(&mut app, "train.lr");
    press(&mut app, KeyCode::Enter);
    app.editor.as_mut().expect("editing").input.clear();
    type_text(&mut app, "0.002");
    let ctrl_f = KeyEvent::new(KeyCode::Char('f'), KeyModifiers::CONTROL);
    // Where forking is not available the value stays in the editor.
    assert_eq!(app.on_key(ctrl_f), Action::None);
    assert_eq!(
        app.editor.as_ref().expect("still editing").input.text(),
        "0.002"
    );
    app.can_fork = true;
    assert_eq!(app.on_key(ctrl_f), Action::Send(Command::CheckpointForFork));
    app.on_event(checkpoint_asked(400));
    let ready = app.fork_ready.take().expect("the fork, once checkpointed");
    let action = Action::Fork(ready);
    let Action::Fork(Some(config)) = &action else {
        panic!("expected a fork with the value, got {action:?}");
    };
    assert_eq!(config.train.lr, 0.002);
    assert!(app.editor.is_none());
    assert_eq!(app.config, before, "nothing changes here");
    let flash = app.flash.as_ref().expect("says so").text.clone();
    assert!(
        flash.contains("train.lr = 0.002 (not applied to this run)"),
        "{flash}"
    );
    let seen: RefCell<Vec<f64>> = RefCell::default();
    let fork = |c: &Config| recorded_fork(&seen, c);
    let ctx = Ctx {
        fork: Some(&fork),
        ..Ctx::default()
    };
    assert_eq!(
        perform_with(&mut app, action, &FakeLink::default(), ctx),
        None
    );
    assert_eq!(*seen.borrow(), vec![0.002]);
    assert_eq!(app.config, before);

    // A value the config refuses stays in the editor with the reason.
    select(&mut app, "train.lr");
    press(&mut app, KeyCode::Enter);
    app.editor.as_mut().expect("editing").input.clear();
    type_text(&mut app, "fast");
    assert_eq!(app.on_key(ctrl_f), Action::None);
    assert!(app.editor.as_ref().expect("still editing").error.is_some());
}

/// The attached session's row read its files, older than the header
/// (walkthrough: `running 1520/6000` under a header at step 1,562).
#[test]
fn the_attached_row_shows_what_the_header_shows() {
    let mut app = with_sessions();
    app.on_event(Event::Status {
        status: Status::Paused,
        message: None,
    });
    app.on_event(Event::Progress {
        step: STEPS + 20,
        total_steps: TOTAL,
        steps_per_sec: 12.5,
    });
    let screen = text(draw(&app, 160, 45).backend().buffer());
    let row = screen
        .lines()
        .find(|l| l.contains("demo ◂"))
        .unwrap_or_else(|| panic!("{screen}"));
    let expected = format!("paused  {}/{TOTAL}", STEPS + 20);
    assert!(
        row.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .contains(&expected.split_whitespace().collect::<Vec<_>>().join(" ")),
        "{row}"
    );
}

#[test]
fn snapshot_sessions_view_and_overlay() {
    let mut app = with_sessions();
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Char(' '));
    press(&mut app, KeyCode::Char(' '));
    insta::assert_snapshot!("sessions_160x45", draw(&app, 160, 45).backend());
    insta::assert_snapshot!("sessions_80x24", draw(&app, 80, 24).backend());
    app.show_overlay(Ok(overlaid()));
    let t = draw(&app, 160, 45);
    let screen = text(t.backend().buffer());
    assert!(
        screen.contains("base-fork (fork @400)") && screen.contains("training loss primary"),
        "{screen}"
    );
    insta::assert_snapshot!("sessions_overlay_160x45", t.backend());
}

#[test]
fn the_view_draws_at_any_size_and_with_no_sessions() {
    let mut app = with_sessions();
    app.show_overlay(Ok(overlaid()));
    for w in (0..=170).step_by(9).chain([1, 2, 80, 120]) {
        for h in (0..=50).step_by(4).chain([1, 2, 24, 32]) {
            draw(&app, w, h);
        }
    }
    app.show_sessions(Ok(Vec::new()));
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(screen.contains("no sessions in this folder"), "{screen}");
    assert_eq!(press(&mut app, KeyCode::Enter), Action::None);
    assert_eq!(press(&mut app, KeyCode::Char(' ')), Action::None);
}

#[test]
fn help_has_the_sessions_and_fork_keys() {
    for (context, keys) in [
        ("global", "r"),
        ("global", "f"),
        ("runs", "Space"),
        ("runs", "o"),
        ("runs", "Enter"),
    ] {
        assert!(
            crate::tui::keys::KEYS
                .iter()
                .any(|(c, k, _)| *c == context && *k == keys),
            "help misses {context} {keys}"
        );
    }
}

/// Differing keys that do not fit were dropped without a word
/// (walkthrough): the last column counts them.
#[test]
fn differing_keys_that_do_not_fit_are_counted() {
    let mut app = app();
    press(&mut app, KeyCode::Char('r'));
    let keys = [
        "meltr.gamma",
        "meltr.meta_lr",
        "train.lr",
        "meltr.meta_every",
        "train.weight_decay",
    ];
    let mut many = runs();
    for (i, r) in many.iter_mut().enumerate() {
        for key in keys {
            r.config
                .insert(key.into(), toml::Value::Float(0.001 * (i + 1) as f64));
        }
    }
    app.show_sessions(Ok(many));
    let wide = text(draw(&app, 170, 24).backend().buffer());
    assert!(keys.iter().all(|k| wide.contains(k)), "{wide}");
    assert!(!wide.contains(" key"), "{wide}");
    let narrow = text(draw(&app, 80, 24).backend().buffer());
    let header = narrow
        .lines()
        .find(|l| l.contains("STATUS"))
        .unwrap_or_else(|| panic!("{narrow}"));
    let hidden = 6 - ["aid.iterations"]
        .iter()
        .chain(&keys)
        .filter(|k| header.contains(*k))
        .count();
    assert!(hidden > 0, "{header}");
    let marker = format!("+{hidden} key{}", if hidden == 1 { "" } else { "s" });
    assert!(header.contains(&marker), "{header}");
    assert!(narrow.contains("←→ keys"), "{narrow}");
    // → scrolls the key columns: the first goes, counted on the left, and
    // a hidden one comes into view; ← brings it back (80 columns showed
    // the keys that fit and no way to the rest).
    let header_at = |app: &App| {
        let screen = text(draw(app, 100, 24).backend().buffer());
        screen
            .lines()
            .find(|l| l.contains("STATUS"))
            .unwrap()
            .to_string()
    };
    let order = app.sessions.as_ref().unwrap().differing.clone();
    let before = header_at(&app);
    assert!(
        before.contains(&order[0]) && !before.contains('←'),
        "{before}"
    );
    press(&mut app, KeyCode::Right);
    let after = header_at(&app);
    assert!(
        !after.contains(&order[0]) && after.contains("←1 "),
        "{after}"
    );
    assert!(
        order
            .iter()
            .any(|k| !before.contains(k) && after.contains(k)),
        "{before}\n{after}"
    );
    for _ in 0..10 {
        press(&mut app, KeyCode::Right);
    }
    let end = header_at(&app);
    assert!(
        end.contains(&order[order.len() - 1]) && end.contains("←5 keys"),
        "{end}"
    );
    for _ in 0..10 {
        press(&mut app, KeyCode::Left);
    }
    assert_eq!(header_at(&app), before);

    // A wide key does not take the narrower ones after it along
    // (walkthrough P: `+9 keys` beside 45 empty columns).
    let wide_key = "combiner.weights.a_loss_with_a_name_long_enough_to_miss";
    let mut two = runs();
    for (i, r) in two.iter_mut().enumerate() {
        for key in [wide_key, "train.lr"] {
            r.config
                .insert(key.into(), toml::Value::Float(0.001 * (i + 1) as f64));
        }
    }
    app.show_sessions(Ok(two));
    let screen = text(draw(&app, 100, 24).backend().buffer());
    let header = screen.lines().find(|l| l.contains("STATUS")).unwrap();
    assert!(
        header.contains("train.lr") && !header.contains(wide_key) && header.contains("+1 key"),
        "{header}"
    );
}

/// A runner greets each TUI that attaches with its status: the status the
/// TUI already shows is no event (walkthrough N's Events pane read
/// "status run running"); a change, or a status with a message, is.
#[test]
fn a_status_the_tui_already_shows_is_no_event() {
    let mut app = app();
    let entries = |app: &App| app.store.log.len();
    let before = entries(&app);
    let status = app.status;
    app.on_event(Event::Status {
        status,
        message: None,
    });
    assert_eq!(entries(&app), before);
    app.on_event(Event::Status {
        status: Status::Paused,
        message: None,
    });
    assert_eq!(entries(&app), before + 1);
    app.on_event(Event::Status {
        status: Status::Paused,
        message: Some("the disk is full".into()),
    });
    assert_eq!(entries(&app), before + 2);
}
