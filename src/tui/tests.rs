//! Snapshot tests of every pane (80x24 and 160x48, from the fixture
//! history) and unit tests of the app state: keys -> commands, edit
//! validation, what gets written, colours.
//!
//! Long: the TUI's test module; splitting it would scatter the shared
//! fixtures (app builders, fake link) across files.

use super::fixtures;
use super::state::{Action, App, CurveId, Overlay, Pane, Window};
use super::theme::Theme;
use super::{perform, view, Exit};
use crate::config::Config;
use crate::engine::control::{Command, Event};
use crate::engine::link::EngineLink;
use crate::session::metrics::{Level, MetricLine, Named, Record};
use crate::session::Status;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::style::Color;
use ratatui::Terminal;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

mod sessions;

const STEPS: u64 = 500;
const TOTAL: u64 = 1000;

fn app_with(theme: Theme, config_path: PathBuf) -> App {
    let mut app = App::new(
        fixtures::meta(TOTAL),
        config_path,
        fixtures::config(TOTAL),
        fixtures::history(STEPS),
        theme,
    );
    app.on_event(Event::Progress {
        step: STEPS,
        total_steps: TOTAL,
        steps_per_sec: 12.5,
    });
    app.can_export = true;
    app
}

fn app() -> App {
    app_with(
        Theme { color: true },
        PathBuf::from("sessions/demo/config.toml"),
    )
}

fn draw(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| view::draw(f, app)).unwrap();
    terminal
}

/// The screen as plain text, one line per row.
fn text(buffer: &Buffer) -> String {
    let w = usize::from(buffer.area.width);
    buffer
        .content
        .chunks(w.max(1))
        .map(|row| row.iter().map(|c| c.symbol()).collect::<String>() + "\n")
        .collect()
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::from(code)
}

fn press(app: &mut App, code: KeyCode) -> Action {
    app.on_key(key(code))
}

fn type_text(app: &mut App, s: &str) {
    for c in s.chars() {
        assert_eq!(press(app, KeyCode::Char(c)), Action::None);
    }
}

/// Puts the hyperparameter cursor on `key`.
fn select(app: &mut App, key: &str) {
    press(app, KeyCode::Char('3'));
    let index = app
        .hyper_rows()
        .iter()
        .position(|(k, _)| k == key)
        .expect("key is in the table");
    press(app, KeyCode::Home);
    for _ in 0..index {
        press(app, KeyCode::Down);
    }
}

#[derive(Default)]
struct FakeLink {
    sent: RefCell<Vec<Command>>,
}

impl EngineLink for FakeLink {
    fn send(&self, command: Command) {
        self.sent.borrow_mut().push(command);
    }
    fn poll(&self) -> Vec<Event> {
        Vec::new()
    }
}

fn pane_name(p: Pane) -> &'static str {
    match p {
        Pane::Curves => "curves",
        Pane::Contributions => "contributions",
        Pane::Hyper => "hyper",
        Pane::Events => "events",
    }
}

// ---- snapshots --------------------------------------------------------------

#[test]
fn snapshot_each_pane_at_80x24() {
    for pane in Pane::ALL {
        let mut app = app();
        app.focus = pane;
        let t = draw(&app, 80, 24);
        let screen = text(t.backend().buffer());
        assert!(
            screen.contains("demo") && screen.contains("step 500/1,000 (50%)"),
            "{screen}"
        );
        assert!(
            screen.contains(&format!("{} {}", pane.index() + 1, pane.title())),
            "{screen}"
        );
        insta::assert_snapshot!(format!("{}_80x24", pane_name(pane)), t.backend());
    }
}

#[test]
fn snapshot_grid_at_160x48() {
    let t = draw(&app(), 160, 48);
    let screen = text(t.backend().buffer());
    for pane in Pane::ALL {
        assert!(
            screen.contains(pane.title()),
            "{} missing:\n{screen}",
            pane.title()
        );
    }
    insta::assert_snapshot!("grid_160x48", t.backend());
}

#[test]
fn snapshot_each_pane_alone_at_160x48() {
    for pane in Pane::ALL {
        let mut app = app();
        app.focus = pane;
        let mut terminal = Terminal::new(TestBackend::new(160, 48)).unwrap();
        terminal
            .draw(|f| view::render_pane(f, f.area(), &app, pane))
            .unwrap();
        insta::assert_snapshot!(format!("{}_160x48", pane_name(pane)), terminal.backend());
    }
}

#[test]
fn header_shows_progress_speed_eta_device_and_metric() {
    let app = app();
    let t = draw(&app, 160, 48);
    let screen = text(t.backend().buffer());
    assert!(screen.contains("● running"), "{screen}");
    assert!(screen.contains("12.5 steps/s"), "{screen}");
    assert!(screen.contains("ETA 40s"), "{screen}"); // 500 steps left at 12.5/s
    assert!(screen.contains("cuda:0 (NVIDIA H100 80GB HBM3)"));
    let acc = app.store.metric().unwrap().1;
    assert!(
        screen.contains(&format!("accuracy↑ {}", super::fmt::num(acc))),
        "{screen}"
    );
    assert!(!screen.contains("GPU"), "no NVML reading, no GPU field");
}

#[test]
fn header_shows_the_number_of_ranks_of_a_data_parallel_run() {
    let mut app = app();
    let t = draw(&app, 80, 24);
    assert!(!text(t.backend().buffer()).contains("ranks"));
    app.meta.world_size = Some(1);
    assert!(!text(draw(&app, 80, 24).backend().buffer()).contains("ranks"));
    app.meta.world_size = Some(4);
    let t = draw(&app, 80, 24);
    let screen = text(t.backend().buffer());
    assert!(
        screen.contains("cuda:0 (NVIDIA H100 80GB HBM3) × 4 ranks"),
        "{screen}"
    );
    insta::assert_snapshot!("header_4_ranks_80x24", t.backend());
}

#[test]
fn contributions_show_weights_shares_and_transform() {
    let mut app = app();
    app.focus = Pane::Contributions;
    let screen = text(draw(&app, 80, 24).backend().buffer());
    let w = &app.store.train.as_ref().unwrap().weights;
    assert!(
        screen.contains(&format!("primary {}", super::fmt::signed(w["primary"]))),
        "{screen}"
    );
    assert!(screen.contains("share of the gradient"), "{screen}");
    assert!(screen.contains("M as primary sweeps"), "{screen}");
    assert!(screen.contains("meltr: learned weights"), "{screen}");
    press(&mut app, KeyCode::Char('t'));
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(screen.contains("M as helpful sweeps"), "{screen}");
}

#[test]
fn the_shares_heading_comes_with_every_loss_bar_or_not_at_all() {
    // At 120×40 (four panes) the heading showed with no bars under it.
    let mut app = app();
    let losses = app.store.losses.clone();
    // Below 120×32 one pane with tabs, from there the 2×2 grid.
    app.focus = Pane::Contributions;
    for (width, height) in [
        (80, 24),
        (100, 30),
        (120, 34),
        (120, 40),
        (120, 50),
        (160, 48),
        (200, 60),
    ] {
        let screen = text(draw(&app, width, height).backend().buffer());
        let rows: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
        let Some((r, c)) = rows.iter().enumerate().find_map(|(r, row)| {
            let line: String = row.iter().collect();
            let byte = line.find("share of the gradient")?;
            Some((r, line[..byte].chars().count()))
        }) else {
            continue;
        };
        for (i, name) in losses.iter().enumerate() {
            let below: String = rows
                .get(r + 1 + i)
                .map(|row| row.iter().skip(c).collect())
                .unwrap_or_default();
            assert!(
                below.starts_with(name.as_str()),
                "{width}×{height}: no `{name}` bar under the shares heading\n{screen}"
            );
        }
    }
}

/// In a short pane the weights that did not fit were left out without a
/// word, though one held the largest weight the bars are scaled to
/// (walkthrough: six losses at 120×35).
#[test]
fn weights_that_do_not_fit_are_named_with_their_values() {
    let app = app();
    let w = app.store.train.as_ref().unwrap().weights.clone();
    let mut terminal = Terminal::new(TestBackend::new(60, 3)).unwrap();
    terminal
        .draw(|f| super::contributions::render_bars(f, f.area(), &app))
        .unwrap();
    let screen = text(terminal.backend().buffer());
    let rows: Vec<&str> = screen.lines().collect();
    assert!(rows[0].starts_with("weight ∂M/∂l"), "{screen}");
    assert!(rows[1].starts_with("primary"), "{screen}");
    let signed = super::fmt::signed;
    assert_eq!(
        rows[2].trim_end(),
        format!(
            "+2 more: helpful {}, harmful {}",
            signed(w["helpful"]),
            signed(w["harmful"])
        ),
        "{screen}"
    );
}

#[test]
fn shares_absent_shows_weights_only() {
    let mut app = app();
    app.store.train.as_mut().unwrap().shares.clear();
    app.focus = Pane::Contributions;
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(
        screen.contains("weight ∂M/∂l") && !screen.contains("share of the gradient"),
        "{screen}"
    );
}

#[test]
fn snapshot_overlays_and_editor() {
    let mut app = app();
    press(&mut app, KeyCode::Char('?'));
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(screen.contains("AID iterations J +1 / -1"), "{screen}");
    insta::assert_snapshot!("help_80x24", draw(&app, 80, 24).backend());
    press(&mut app, KeyCode::Esc);

    press(&mut app, KeyCode::Char('q'));
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(screen.contains("stop the run, then quit"), "{screen}");
    insta::assert_snapshot!("confirm_quit_80x24", draw(&app, 80, 24).backend());
    press(&mut app, KeyCode::Char('n'));

    select(&mut app, "aid.alpha");
    press(&mut app, KeyCode::Enter);
    app.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    type_text(&mut app, "0");
    press(&mut app, KeyCode::Enter);
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(screen.contains("aid.alpha = 0"), "{screen}");
    assert!(
        screen.contains("expected 0 < alpha <= 1, got 0"),
        "{screen}"
    );
    insta::assert_snapshot!("editor_refused_80x24", draw(&app, 80, 24).backend());
}

/// A run paused by a failed write says why in the header; a user's pause
/// (no reason) has no banner (walkthrough F's `‖ paused` read as a `p`).
#[test]
fn a_pause_for_a_failed_write_is_a_banner() {
    let mut app = app();
    app.on_event(Event::Status {
        status: Status::Paused,
        message: Some(
            "paused: cannot write checkpoint: No space left on device (os error 28)".into(),
        ),
    });
    let screen = text(draw(&app, 100, 24).backend().buffer());
    assert!(
        screen.contains("run paused: cannot write checkpoint: No space left"),
        "{screen}"
    );
    app.on_event(Event::Status {
        status: Status::Paused,
        message: None,
    });
    let screen = text(draw(&app, 100, 24).backend().buffer());
    assert!(!screen.contains("cannot write"), "{screen}");
}

#[test]
fn config_error_is_a_banner_until_a_valid_config() {
    let mut app = app();
    let error = "sessions/demo/config.toml:3: key `aid.iterations`: invalid type: string \"many\", expected u32";
    app.on_event(Event::Line {
        seq: 0,
        line: MetricLine {
            step: 500,
            time: 25.0,
            wall: None,
            record: Record::Config {
                changed: Default::default(),
                error: Some(error.into()),
            },
        },
    });
    app.focus = Pane::Hyper;
    let t = draw(&app, 80, 24);
    let screen = text(t.backend().buffer());
    assert!(
        screen.contains("config refused at step 500, last good config stays in force"),
        "{screen}"
    );
    assert!(
        screen.contains("config refused: sessions/demo/config.toml:3"),
        "{screen}"
    );
    insta::assert_snapshot!("config_error_80x24", t.backend());
    // A refusal longer than the banner's lines says where it is whole.
    let long = format!("{error}; {}", "and more words of the reason ".repeat(12));
    app.on_event(Event::Line {
        seq: 0,
        line: MetricLine {
            step: 501,
            time: 25.5,
            wall: None,
            record: Record::Config {
                changed: Default::default(),
                error: Some(long),
            },
        },
    });
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(screen.contains("… (in full: 4 Events)"), "{screen}");
    app.store.config_error = Some(error.into());
    let t = draw(&app, 80, 24);
    // The banner is red.
    let buf = t.backend().buffer();
    assert_eq!(buf[(0, 2)].bg, Color::Red);
    // And the events pane lists it.
    app.focus = Pane::Events;
    assert!(text(draw(&app, 80, 24).backend().buffer())
        .contains("refused: sessions/demo/config.toml:3"));
    // The config in force a runner greets an attaching TUI with keeps it
    // (walkthrough H: the banner was gone on attach).
    app.on_event(Event::ConfigInForce {
        config: Box::new(fixtures::config(TOTAL)),
    });
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(
        screen.contains("last good config stays in force"),
        "{screen}"
    );
    // An ended run shows no banner: nothing reads the file until a resume
    // checks it anew (it stayed on a finished session after the file was
    // fixed: walkthrough X); the events pane keeps the refusal.
    app.status = Status::Finished;
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(
        !screen.contains("last good config stays in force")
            && screen.contains("config refused: sessions/demo"),
        "{screen}"
    );
    app.status = Status::Running;
    // The runner's line for a file that reads again clears it.
    app.on_event(Event::Line {
        seq: 1,
        line: MetricLine {
            step: 510,
            time: 26.0,
            wall: None,
            record: Record::Config {
                changed: Default::default(),
                error: None,
            },
        },
    });
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(
        !screen.contains("last good config stays in force"),
        "{screen}"
    );
}

/// Warnings at steps 501 (`words` words, then "the reason comes last,
/// expected f64") and 502 ("newer").
fn long_then_newer(app: &mut App, words: usize) {
    let long = format!(
        "{} the reason comes last, expected f64",
        "word ".repeat(words)
    );
    for (seq, (step, message)) in [(501, long.as_str()), (502, "newer")]
        .into_iter()
        .enumerate()
    {
        app.on_event(Event::Line {
            seq: seq as u64,
            line: MetricLine {
                step,
                time: 25.0,
                wall: None,
                record: Record::Event {
                    level: Level::Warn,
                    message: message.into(),
                },
            },
        });
    }
}

/// The top entry of a full events pane lost its end without a mark
/// (walkthrough: a refusal's reason was cut off).
#[test]
fn an_event_cut_at_the_top_of_the_pane_says_so() {
    let mut app = app();
    long_then_newer(&mut app, 60);
    app.focus = Pane::Events;
    // 80x8: a few rows for the pane, fewer than the long entry needs.
    let screen = text(draw(&app, 80, 10).backend().buffer());
    assert!(screen.contains("newer"), "{screen}");
    assert!(
        !screen.contains("expected f64"),
        "the case needs a cut entry: {screen}"
    );
    assert!(screen.contains("word …"), "{screen}");
}

/// An entry longer than the whole pane never showed its end (session 29's
/// walkthrough: the collapse advice); Enter shows it whole, ↓ scrolls it.
#[test]
fn enter_shows_the_bottom_event_whole() {
    let mut app = app();
    long_then_newer(&mut app, 300);
    app.focus = Pane::Events;
    press(&mut app, KeyCode::Up);
    let pane = text(draw(&app, 80, 24).backend().buffer());
    assert!(
        !pane.contains("expected f64"),
        "the case needs a cut entry: {pane}"
    );
    press(&mut app, KeyCode::Enter);
    let shown = text(draw(&app, 80, 24).backend().buffer());
    assert!(shown.contains("step 501"), "{shown}");
    assert!(shown.contains("↓ more"), "{shown}");
    for _ in 0..40 {
        press(&mut app, KeyCode::Down);
    }
    let end = text(draw(&app, 80, 24).backend().buffer());
    assert!(end.contains("expected f64"), "{end}");
    // ↓ stopped at the end: one ↑ scrolls back at once.
    press(&mut app, KeyCode::Up);
    let back = text(draw(&app, 80, 24).backend().buffer());
    assert!(back.contains("↑↓ scroll"), "{back}");
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.overlay, Overlay::None);
    // Enter with nothing scrolled shows the newest.
    press(&mut app, KeyCode::End);
    press(&mut app, KeyCode::Enter);
    assert!(text(draw(&app, 80, 24).backend().buffer()).contains("step 502"));
}

#[test]
fn snapshot_curves_log_smoothed_and_no_color() {
    let mut app = app();
    press(&mut app, KeyCode::Char('l'));
    press(&mut app, KeyCode::Char('s'));
    press(&mut app, KeyCode::Char('s'));
    press(&mut app, KeyCode::Char('s'));
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(screen.contains("log · EMA 0.9 · full"), "{screen}");
    insta::assert_snapshot!("curves_log_ema_80x24", draw(&app, 80, 24).backend());
    // The metric's chart stays linear on a log axis (an accuracy had ticks
    // above 1 there, a walkthrough): the same with `l` off.
    let metric_chart = |app: &App| -> String {
        text(draw(app, 80, 24).backend().buffer())
            .lines()
            .skip_while(|l| !l.contains("━ val accuracy 0"))
            .take_while(|l| !l.starts_with('┗'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let on_log = metric_chart(&app);
    assert!(on_log.lines().count() > 3, "{on_log}");
    press(&mut app, KeyCode::Char('l'));
    assert!(!app.log_scale());
    assert_eq!(metric_chart(&app), on_log);

    let plain = app_with(Theme { color: false }, PathBuf::from("x"));
    let t = draw(&plain, 80, 24);
    let screen = text(t.backend().buffer());
    // Series told apart by marker glyphs in the legend.
    assert!(
        screen.contains("⣿ primary")
            && screen.contains("• helpful")
            && screen.contains("▄ harmful"),
        "{screen}"
    );
    insta::assert_snapshot!("curves_no_color_80x24", t.backend());
}

// ---- colours ----------------------------------------------------------------

#[test]
fn no_color_uses_no_colour_at_all() {
    let mut app = app_with(Theme { color: false }, PathBuf::from("x"));
    app.store.config_error = Some("bad".into());
    for pane in Pane::ALL {
        app.focus = pane;
        for (w, h) in [(80, 24), (160, 48)] {
            let t = draw(&app, w, h);
            for cell in &t.backend().buffer().content {
                assert_eq!(
                    (cell.fg, cell.bg),
                    (Color::Reset, Color::Reset),
                    "{pane:?} {w}x{h} cell {:?}",
                    cell.symbol()
                );
            }
        }
    }
}

#[test]
fn colour_uses_only_the_16_base_colours() {
    let mut app = app();
    app.store.config_error = Some("bad".into());
    for pane in Pane::ALL {
        app.focus = pane;
        for cell in &draw(&app, 160, 48).backend().buffer().content {
            for c in [cell.fg, cell.bg] {
                assert!(!matches!(c, Color::Rgb(..) | Color::Indexed(_)), "{c:?}");
            }
        }
    }
}

/// The help box scrolls no further than shows its last line at the bottom
/// (walkthrough V: twelve ↓ left about twelve blank rows under it), and
/// ↑ then moves at once.
#[test]
fn help_scrolls_no_further_than_its_last_line() {
    let mut app = app();
    press(&mut app, KeyCode::Char('?'));
    let last = crate::tui::keys::KEYS.last().unwrap().2;
    for _ in 0..60 {
        let _ = draw(&app, 120, 24);
        press(&mut app, KeyCode::Down);
    }
    let screen = text(draw(&app, 120, 24).backend().buffer());
    assert!(screen.contains(last), "{screen}");
    let Overlay::Help { scroll } = app.overlay else {
        panic!("{:?}", app.overlay)
    };
    assert_eq!(scroll, app.help_scroll_max.get());
    press(&mut app, KeyCode::Up);
    assert!(matches!(app.overlay, Overlay::Help { scroll: s } if s + 1 == scroll));
}

/// The hyperparameter pane's status line wraps where it is too long for
/// the pane, not cut mid-word (walkthrough V read `|∇φ| 0.0148 wi`).
#[test]
fn the_hyper_status_line_wraps() {
    let app = app();
    let whole: String = super::hyper::status_lines(&app, 400)[0].to_string();
    assert!(whole.contains("meta @"), "{whole}");
    let narrow = super::hyper::status_lines(&app, 20);
    let joined = narrow[..narrow.len() - 1]
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(narrow.len() > 2 && joined == whole, "{narrow:?}");
}

// ---- sizes ------------------------------------------------------------------

#[test]
fn any_size_draws_without_panic() {
    let mut app = app();
    type Setup = Box<dyn Fn(&mut App)>;
    let mut states: Vec<Setup> = vec![
        Box::new(|_| {}),
        Box::new(|a| a.overlay = Overlay::Help { scroll: 3 }),
        Box::new(|a| a.overlay = Overlay::ConfirmQuit),
        Box::new(|a| {
            a.overlay = Overlay::Entry {
                index: 0,
                scroll: 99,
            }
        }),
        Box::new(|a| {
            a.overlay = Overlay::None;
            select(a, "train.lr");
            press(a, KeyCode::Enter);
            type_text(a, "xyz");
            press(a, KeyCode::Enter);
        }),
    ];
    for pane in Pane::ALL {
        states.push(Box::new(move |a| {
            a.editor = None;
            a.focus = pane;
        }));
    }
    for set in &states {
        set(&mut app);
        for w in (0..=130).step_by(7).chain([1, 2, 80, 120, 121]) {
            for h in (0..=40).step_by(3).chain([1, 2, 24, 32, 33]) {
                draw(&app, w, h);
            }
        }
    }
    let empty = App::new(
        fixtures::meta(10),
        PathBuf::from("x"),
        Config::default(),
        Vec::new(),
        Theme { color: true },
    );
    for (w, h) in [(80, 24), (160, 48)] {
        let screen = text(draw(&empty, w, h).backend().buffer());
        assert!(
            screen.contains("waiting for the first logged step"),
            "{screen}"
        );
    }
}

#[test]
fn small_terminals_switch_panes_with_number_keys() {
    let mut app = app();
    for (i, pane) in Pane::ALL.into_iter().enumerate() {
        press(&mut app, KeyCode::Char(char::from(b'1' + i as u8)));
        assert_eq!(app.focus, pane);
    }
    assert_eq!(press(&mut app, KeyCode::Tab), Action::None);
    assert_eq!(app.focus, Pane::Curves);
    press(&mut app, KeyCode::BackTab);
    assert_eq!(app.focus, Pane::Events);
}

// ---- keys -> commands ----------------------------------------------------------

#[test]
fn pause_resume_checkpoint_follow_status() {
    let mut app = app();
    assert_eq!(
        press(&mut app, KeyCode::Char('p')),
        Action::Send(Command::Pause)
    );
    assert_eq!(app.flash.as_ref().unwrap().text, "pause requested");
    app.on_event(Event::Status {
        status: Status::Paused,
        message: None,
    });
    // Done once the header says so (it stayed beside it, a walkthrough).
    assert!(
        app.flash
            .as_ref()
            .is_none_or(|f| !f.text.ends_with("requested")),
        "{:?}",
        app.flash.as_ref().map(|f| &f.text)
    );
    // A steps edit applied while paused shows at once: no progress comes
    // while paused (walkthrough Y read 294/500 after steps 500 → 600).
    app.on_event(Event::Progress {
        step: 294,
        total_steps: 500,
        steps_per_sec: 10.0,
    });
    let mut longer = app.in_force.clone();
    longer.train.steps = 600;
    app.on_event(Event::ConfigInForce {
        config: Box::new(longer),
    });
    let screen = text(draw(&app, 100, 24).backend().buffer());
    assert!(
        screen.contains("/600 (") && !screen.contains("/500"),
        "{screen}"
    );
    assert_eq!(
        press(&mut app, KeyCode::Char('p')),
        Action::Send(Command::Resume)
    );
    assert_eq!(
        press(&mut app, KeyCode::Char('c')),
        Action::Send(Command::Checkpoint)
    );
    app.on_event(Event::Status {
        status: Status::Failed,
        message: Some("CUDA out of memory".into()),
    });
    assert_eq!(press(&mut app, KeyCode::Char('p')), Action::None);
    assert_eq!(press(&mut app, KeyCode::Char('c')), Action::None);
    assert!(app.flash.as_ref().unwrap().text.contains("failed"));
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(
        screen.contains("✖ failed") && screen.contains("run failed: CUDA out of memory"),
        "{screen}"
    );
}

/// A run whose runner died reads "crashed", as in `ls`, and shows no
/// stale rate (it showed "✖ failed ... 47.2 steps/s").
#[test]
fn a_run_whose_runner_died_reads_crashed_without_a_rate() {
    let mut app = app();
    app.on_event(Event::Progress {
        step: 40,
        total_steps: 100,
        steps_per_sec: 47.25,
    });
    let running = text(draw(&app, 100, 24).backend().buffer());
    assert!(running.contains("47.2 steps/s"), "{running}");
    app.on_event(Event::Status {
        status: Status::Failed,
        message: Some(format!(
            "{} (pid 7); `meltr-tui resume x` continues from the newest checkpoint",
            crate::runner::link::RUNNER_GONE
        )),
    });
    let screen = text(draw(&app, 100, 24).backend().buffer());
    assert!(
        screen.contains("✖ crashed") && screen.contains("run crashed: the runner is gone"),
        "{screen}"
    );
    assert!(!screen.contains("steps/s"), "{screen}");
    // The events pane in the header's word (it read "run failed: the runner
    // is gone" under "crashed": walkthrough Y), and so does `p`.
    let last = &app.store.log.last().unwrap().text;
    assert!(
        last.starts_with("run crashed: the runner is gone"),
        "{last}"
    );
    app.on_key(key(KeyCode::Char('p')));
    let screen = text(draw(&app, 100, 24).backend().buffer());
    assert!(
        screen.contains("nothing to pause: the run has crashed"),
        "{screen}"
    );
}

/// An edit written while the run trains applies within a second; one
/// written after it ended waits for a resume or a fork, and says so.
#[test]
fn a_written_edit_says_when_it_applies() {
    let mut app = app();
    let config = app.config.clone();
    app.wrote_config(config.clone(), "aid.iterations = 2");
    let flash = app.flash.as_ref().unwrap().text.clone();
    assert!(flash.contains("applies it at a step boundary"), "{flash}");
    // Applied: the runner's config in force ends the message.
    app.on_event(Event::ConfigInForce {
        config: Box::new(config.clone()),
    });
    assert!(
        app.flash.is_none(),
        "{:?}",
        app.flash.as_ref().map(|f| &f.text)
    );
    app.on_event(Event::Status {
        status: Status::Finished,
        message: None,
    });
    app.wrote_config(config.clone(), "aid.iterations = 3");
    let flash = app.flash.as_ref().unwrap().text.clone();
    assert!(
        flash.contains("the run has ended: resume or fork (f) to train with it"),
        "{flash}"
    );
    // At its last step: a resume or fork would not train.
    let mut ended = config;
    ended.train.steps = app.step();
    app.wrote_config(ended, "aid.iterations = 4");
    let flash = app.flash.as_ref().unwrap().text.clone();
    assert!(
        flash.contains(&format!("raise train.steps above {}", app.step())),
        "{flash}"
    );
}

/// At 80 columns a long message lost its point, which comes last ("…the
/// run has ended: raise train.steps a"); it wraps onto up to three lines.
#[test]
fn a_long_message_wraps_at_the_bottom_instead_of_being_cut() {
    let mut app = app();
    let mut ended = app.config.clone();
    ended.train.steps = app.step();
    app.on_event(Event::Status {
        status: Status::Finished,
        message: None,
    });
    app.wrote_config(ended, "aid.iterations = 4");
    let flash = app.flash.as_ref().unwrap().text.clone();
    assert!(
        flash.chars().count() > 80 && flash.chars().count() <= 240,
        "{flash}"
    );
    let screen = text(draw(&app, 80, 24).backend().buffer());
    let bottom: String = screen
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let squeezed = |s: &str| s.split_whitespace().collect::<String>();
    assert!(
        squeezed(&bottom).contains(&squeezed(&flash)),
        "{flash}\n{screen}"
    );
}

/// A finished run has nothing to stop or leave running: `q` quits (a
/// walkthrough was asked to confirm).
#[test]
fn quit_on_a_finished_run_asks_nothing() {
    let mut app = app();
    app.status = Status::Finished;
    assert_eq!(
        press(&mut app, KeyCode::Char('q')),
        Action::Quit(Exit::Left)
    );
    assert_eq!(app.overlay, Overlay::None);
}

/// A live edit lowering train.steps below the step reached ends the run
/// there: the edit says so, and the header reads the step it finished at
/// (walkthrough B: "finished · step 501/600 (84%)").
#[test]
fn a_run_ended_by_lowering_train_steps_reads_finished_at_its_step() {
    let mut app = app();
    let mut config = fixtures::config(TOTAL);
    config.train.steps = STEPS - 200;
    app.wrote_config(config, "train.steps = 300");
    let flash = app.flash.clone().unwrap().text;
    assert!(
        flash.contains("train.steps 300 is not above the step reached, so the run ends at its next step boundary"),
        "{flash}"
    );
    app.status = Status::Finished;
    let screen = text(draw(&app, 160, 48).backend().buffer());
    assert!(screen.contains("step 500/500 (100%)"), "{screen}");
}

#[test]
fn quit_asks_first_and_can_stop_the_run() {
    let link = FakeLink::default();
    let mut app = app();
    assert_eq!(press(&mut app, KeyCode::Char('q')), Action::None);
    assert_eq!(app.overlay, Overlay::ConfirmQuit);
    assert_eq!(press(&mut app, KeyCode::Char('n')), Action::None);
    assert_eq!(app.overlay, Overlay::None);
    press(&mut app, KeyCode::Char('q'));
    assert_eq!(
        press(&mut app, KeyCode::Char('y')),
        Action::Quit(Exit::Left)
    );
    press(&mut app, KeyCode::Char('q'));
    let action = press(&mut app, KeyCode::Char('s'));
    assert_eq!(action, Action::Quit(Exit::Stopped));
    assert_eq!(perform(&mut app, action, &link, None), Some(Exit::Stopped));
    assert_eq!(*link.sent.borrow(), vec![Command::Stop]);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(app.on_key(ctrl_c), Action::Quit(Exit::Interrupted));
}

#[test]
fn quit_dialog_says_whether_leaving_stops_the_run() {
    let mut app = app();
    press(&mut app, KeyCode::Char('q'));
    let in_process = text(draw(&app, 80, 24).backend().buffer());
    assert!(
        in_process.contains("quit (run stops; resumable)"),
        "{in_process}"
    );
    // The footer says the box's keys, not the panes' (walkthrough X).
    assert!(
        in_process.contains("y (or q) · s as the box says · any other key: back to the TUI")
            && !in_process.contains("Tab pane"),
        "{in_process}"
    );
    app.detachable = true;
    let detached = text(draw(&app, 80, 24).backend().buffer());
    assert!(detached.contains("detach (run goes on)"), "{detached}");
    assert!(detached.contains("stop the run, then quit"), "{detached}");
    assert!(!detached.contains("run stops"), "{detached}");
    // Paused, a detach leaves it paused: said, with a key that lets it go
    // on first (walkthrough P: "it goes on" of a run that stayed paused).
    app.status = Status::Paused;
    let paused = text(draw(&app, 80, 24).backend().buffer());
    assert!(
        paused.contains("detach (run stays paused)")
            && paused.contains("let it go on, then detach"),
        "{paused}"
    );
    let link = FakeLink::default();
    let action = press(&mut app, KeyCode::Char('r'));
    assert_eq!(action, Action::Quit(Exit::Unpaused));
    assert_eq!(perform(&mut app, action, &link, None), Some(Exit::Unpaused));
    assert_eq!(*link.sent.borrow(), vec![Command::Resume]);
    // `r` means nothing to a running run's dialog: it closes.
    app.status = Status::Running;
    press(&mut app, KeyCode::Char('q'));
    assert_eq!(press(&mut app, KeyCode::Char('r')), Action::None);
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn export_calls_the_callback_and_logs_the_answer() {
    let link = FakeLink::default();
    let mut app = app();
    assert_eq!(press(&mut app, KeyCode::Char('e')), Action::Export);
    let ok = || Ok("sessions/demo/plots".to_string());
    assert_eq!(perform(&mut app, Action::Export, &link, Some(&ok)), None);
    assert!(app
        .store
        .log
        .last()
        .unwrap()
        .text
        .contains("exported: sessions/demo/plots"));
    let fail = || Err(anyhow::anyhow!("no space left"));
    perform(&mut app, Action::Export, &link, Some(&fail));
    assert_eq!(app.store.log.last().unwrap().level, Level::Error);
    app.can_export = false;
    assert_eq!(press(&mut app, KeyCode::Char('e')), Action::None);
}

#[test]
fn aid_keys_step_j_and_alpha() {
    let mut app = app();
    let written = |a: Action| match a {
        Action::WriteConfig { config, .. } => *config,
        other => panic!("expected a config write, got {other:?}"),
    };
    assert_eq!(
        written(press(&mut app, KeyCode::Char(']'))).aid.iterations,
        4
    );
    assert_eq!(
        written(press(&mut app, KeyCode::Char('['))).aid.iterations,
        2
    );
    assert_eq!(written(press(&mut app, KeyCode::Char('}'))).aid.alpha, 0.2);
    assert_eq!(written(press(&mut app, KeyCode::Char('{'))).aid.alpha, 0.05);
    // Out of range: refused with the config's own message, nothing to write.
    app.config.aid.alpha = 0.8;
    assert_eq!(press(&mut app, KeyCode::Char('}')), Action::None);
    assert!(
        app.flash
            .as_ref()
            .unwrap()
            .text
            .contains("expected 0 < alpha <= 1, got 1.6"),
        "{:?}",
        app.flash
    );
    app.config.aid.iterations = 0;
    assert_eq!(press(&mut app, KeyCode::Char('[')), Action::None);
    app.config.aid.iterations = 100;
    assert_eq!(press(&mut app, KeyCode::Char(']')), Action::None);
    assert!(app.flash.as_ref().unwrap().text.contains("0 to 100"));
}

// ---- editing ----------------------------------------------------------------

fn temp_config() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, fixtures::config(TOTAL).to_toml_string()).unwrap();
    (dir, path)
}

fn file(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn invalid_edit_is_refused_and_nothing_is_written() {
    let (_dir, path) = temp_config();
    let before = file(&path);
    let link = FakeLink::default();
    let mut app = app_with(Theme { color: true }, path.clone());
    select(&mut app, "train.lr");
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.editor.as_ref().unwrap().input.text(), "0.0005");
    app.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    type_text(&mut app, "-1");
    let action = press(&mut app, KeyCode::Enter);
    assert_eq!(action, Action::None);
    let error = app
        .editor
        .as_ref()
        .expect("editor stays open")
        .error
        .clone()
        .unwrap();
    assert!(
        error.contains("key `train.lr`") && error.contains("> 0"),
        "{error}"
    );
    perform(&mut app, action, &link, None);
    // Wrong type, too.
    app.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    type_text(&mut app, "fast");
    assert_eq!(press(&mut app, KeyCode::Enter), Action::None);
    assert!(app
        .editor
        .as_ref()
        .unwrap()
        .error
        .as_ref()
        .unwrap()
        .contains("expected a number"));
    press(&mut app, KeyCode::Esc);
    assert!(app.editor.is_none());
    assert_eq!(file(&path), before, "nothing written");
    assert!(
        link.sent.borrow().is_empty(),
        "the TUI never sends ApplyConfig itself"
    );
}

/// A whole `key = value` line typed over the value reads as the value
/// (walkthrough G1 was told "expected an integer, got `aid.iterations = 3`").
#[test]
fn a_key_and_value_typed_into_the_editor_reads_as_the_value() {
    let (_dir, path) = temp_config();
    let mut app = app_with(Theme { color: true }, path);
    select(&mut app, "aid.iterations");
    press(&mut app, KeyCode::Enter);
    app.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    type_text(&mut app, " aid.iterations =9 ");
    let action = press(&mut app, KeyCode::Enter);
    let Action::WriteConfig { config, .. } = action else {
        panic!("{action:?}");
    };
    assert_eq!(config.aid.iterations, 9);
    // Another key's line is not this key's value.
    select(&mut app, "aid.iterations");
    press(&mut app, KeyCode::Enter);
    app.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    type_text(&mut app, "aid.alpha = 3");
    assert_eq!(press(&mut app, KeyCode::Enter), Action::None);
}

#[test]
fn valid_edit_writes_the_key_atomically() {
    let (dir, path) = temp_config();
    let link = FakeLink::default();
    let mut app = app_with(Theme { color: true }, path.clone());
    select(&mut app, "aid.iterations");
    press(&mut app, KeyCode::Enter);
    press(&mut app, KeyCode::Backspace);
    type_text(&mut app, "7");
    let action = press(&mut app, KeyCode::Enter);
    assert!(matches!(action, Action::WriteConfig { .. }), "{action:?}");
    assert_eq!(perform(&mut app, action, &link, None), None);
    let written = Config::load(&path).unwrap();
    let mut expected = fixtures::config(TOTAL);
    expected.aid.iterations = 7;
    assert_eq!(written, expected);
    assert_eq!(app.config, expected);
    assert!(
        link.sent.borrow().is_empty(),
        "the watcher applies it, not the TUI"
    );
    assert!(app
        .store
        .log
        .last()
        .unwrap()
        .text
        .contains("aid.iterations = 7"));
    // Pending until the engine reports it in force.
    let screen = text(draw(&app, 160, 48).backend().buffer());
    assert!(screen.contains("pending"), "{screen}");
    app.on_event(Event::ConfigInForce {
        config: Box::new(expected),
    });
    assert!(!text(draw(&app, 160, 48).backend().buffer()).contains("pending"));
    // No temp file left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("config.toml")]);
}

/// Issue 19, item 7: a TUI edit rewrote `config.toml` from the config,
/// dropping the user's comments (also `lr = 0.003  # by hand`).
#[test]
fn an_edit_keeps_the_users_comments_order_and_formatting() {
    let (_dir, path) = temp_config();
    let whole = file(&path);
    let by_hand = format!(
        "# tuned by hand on the 3rd\n{}",
        whole.replace("\nlr = 0.0005\n", "\nlr = 0.0005  # by hand\n")
    );
    assert_ne!(by_hand, whole, "the fixture's lr line is `lr = 0.0005`");
    std::fs::write(&path, &by_hand).unwrap();
    let link = FakeLink::default();
    let mut app = app_with(Theme { color: true }, path.clone());
    select(&mut app, "train.lr");
    press(&mut app, KeyCode::Enter);
    app.on_key(KeyEvent::new(KeyCode::Char('u'), KeyModifiers::CONTROL));
    type_text(&mut app, "0.003");
    let action = press(&mut app, KeyCode::Enter);
    assert_eq!(perform(&mut app, action, &link, None), None);
    assert_eq!(
        file(&path),
        by_hand.replace("lr = 0.0005  # by hand", "lr = 0.003  # by hand"),
        "only the value changed"
    );
    // The engine applies it; then `]` on a partial file (a hand edit that
    // names one key) edits that file in place too.
    app.on_event(Event::ConfigInForce {
        config: Box::new(app.config.clone()),
    });
    std::fs::write(&path, "# J by hand\n[aid]\niterations = 3 # try\n").unwrap();
    let action = press(&mut app, KeyCode::Char(']'));
    assert_eq!(perform(&mut app, action, &link, None), None);
    assert_eq!(file(&path), "# J by hand\n[aid]\niterations = 4 # try\n");
    assert_eq!(app.config.aid.iterations, 4);
    assert_eq!(app.config.train.lr, 0.003, "the other keys as in force");
}

/// Issue 19, item 7: a pending invalid hand edit was overwritten by the
/// next TUI edit. It is left as it is, and the status line says where and
/// what is wrong.
#[test]
fn a_file_with_an_invalid_hand_edit_is_not_overwritten() {
    let (_dir, path) = temp_config();
    let link = FakeLink::default();
    let mut app = app_with(Theme { color: true }, path.clone());
    let cases: [(&[u8], &str, &str); 4] = [
        (b"# mine\n[aid]\niterations = = 3\n", ":3:", "expected"),
        (b"[train]\nlr = -1 # oops\n", ":2:", "key `train.lr`"),
        (b"[train]\nspeed = 3\n", ":2:", "speed"),
        // Saved as Latin-1: a raw 0xe9 byte.
        (b"[train]\n# r\xe9glage\n", ":2:", "not UTF-8"),
    ];
    for (bad, line, what) in cases {
        std::fs::write(&path, bad).unwrap();
        let action = press(&mut app, KeyCode::Char(']'));
        assert!(matches!(action, Action::WriteConfig { .. }), "{action:?}");
        assert_eq!(perform(&mut app, action, &link, None), None);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bad,
            "the file is byte-identical"
        );
        let flash = app.flash.clone().unwrap();
        assert_eq!(flash.level, Level::Error);
        let expected = format!("{}{line}", path.display());
        for needle in [expected.as_str(), what, "left as it is"] {
            assert!(flash.text.contains(needle), "{needle}: {}", flash.text);
        }
        assert!(app.store.log.last().unwrap().text.contains(&expected));
        // Nothing was taken as written.
        assert_eq!(
            app.config.aid.iterations,
            fixtures::config(TOTAL).aid.iterations
        );
    }
    let screen = text(draw(&app, 160, 48).backend().buffer());
    assert!(screen.contains("cannot write the config"), "{screen}");
    // Until an edit applies (it stayed on after one, walkthrough B).
    app.on_event(Event::ConfigInForce {
        config: Box::new(fixtures::config(TOTAL)),
    });
    assert!(app.flash.is_none(), "{:?}", app.flash);
}

/// An emptied (or comment-only) file took a TUI edit as that one key, the
/// session's file left holding nothing else (walkthrough B): the whole
/// config is written back, with the edit and the comments.
#[test]
fn an_edit_of_a_file_that_sets_no_key_writes_the_whole_config() {
    let (_dir, path) = temp_config();
    let link = FakeLink::default();
    let mut app = app_with(Theme { color: true }, path.clone());
    for text in ["", "# my notes\n", "[aid]\n# tuning later\n"] {
        std::fs::write(&path, text).unwrap();
        let action = press(&mut app, KeyCode::Char(']'));
        let Action::WriteConfig { config, .. } = &action else {
            panic!("{action:?}");
        };
        let expected = (**config).clone();
        assert_eq!(perform(&mut app, action, &link, None), None);
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(crate::config::Config::parse(&written).unwrap(), expected);
        let comments = text.lines().filter(|l| l.starts_with('#'));
        assert!(
            comments.into_iter().all(|c| written.starts_with(c)),
            "{written}"
        );
        assert_eq!(app.config, expected);
    }
}

#[test]
fn restart_only_keys_are_refused_with_the_reason() {
    let (_dir, path) = temp_config();
    let before = file(&path);
    let mut app = app_with(Theme { color: true }, path.clone());
    select(&mut app, "meltr.d_model");
    assert_eq!(press(&mut app, KeyCode::Enter), Action::None);
    assert!(app.editor.is_none(), "no editor for a restart-only key");
    let flash = &app.flash.as_ref().unwrap().text;
    assert!(
        flash.contains("restart-only") && flash.contains("MELTR's size is fixed"),
        "{flash}"
    );
    // Where it can change: a new session (a resume and a fork refuse it).
    assert!(
        flash.contains("start a new session (`meltr-tui run -c CONFIG --set meltr.d_model=...`)")
            && !flash.contains("restart the run"),
        "{flash}"
    );
    let err = app.propose("train.device", "cpu").unwrap_err();
    assert!(
        err.contains("tensors live on the device chosen at start"),
        "{err}"
    );
    assert_eq!(file(&path), before);
    let screen = text(draw(&app, 160, 48).backend().buffer());
    assert!(
        screen
            .lines()
            .any(|l| l.contains("meltr.d_model") && l.contains("restart")),
        "{screen}"
    );
    // The editor of another key clears it (walkthrough B saw it stay
    // beside that key's own error).
    select(&mut app, "aid.iterations");
    press(&mut app, KeyCode::Enter);
    assert!(
        app.editor.is_some() && app.flash.is_none(),
        "{:?}",
        app.flash
    );
}

#[test]
fn write_failure_is_reported() {
    let link = FakeLink::default();
    let mut app = app_with(
        Theme { color: true },
        PathBuf::from("/nonexistent-dir/config.toml"),
    );
    let action = press(&mut app, KeyCode::Char(']'));
    perform(&mut app, action, &link, None);
    let flash = app.flash.as_ref().unwrap();
    assert_eq!(flash.level, Level::Error);
    assert!(
        flash.text.contains("cannot write the config"),
        "{}",
        flash.text
    );
    assert_eq!(
        app.config.aid.iterations, 3,
        "unchanged when the write failed"
    );
}

// ---- panes' own keys --------------------------------------------------------

#[test]
fn curves_keys_toggle_log_smoothing_window_and_series() {
    let mut app = app();
    press(&mut app, KeyCode::Char('l'));
    assert!(app.curves.log);
    press(&mut app, KeyCode::Char('s'));
    assert_eq!(app.smoothing(), Some(0.6));
    assert_eq!(app.store.loss_track.smoothing(), Some(0.6));
    press(&mut app, KeyCode::Char('S'));
    assert_eq!(app.smoothing(), None);
    press(&mut app, KeyCode::Char('w'));
    assert_eq!(app.curves.window, Window::Last(100));
    press(&mut app, KeyCode::Char('w'));
    assert_eq!(app.curves.window, Window::Full);
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Char(' '));
    assert!(app.curves.hidden.contains(&CurveId::Loss(1)));
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(screen.contains("· helpful"), "{screen}");
    press(&mut app, KeyCode::Char(' '));
    assert!(!app.curves.hidden.contains(&CurveId::Loss(1)));
}

#[test]
fn events_scroll_and_follow() {
    let mut app = app();
    app.focus = Pane::Events;
    press(&mut app, KeyCode::Home);
    assert_eq!(app.events_scroll, app.store.log.len() - 1);
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(screen.contains("newer below"), "{screen}");
    press(&mut app, KeyCode::Up);
    let scrolled = app.events_scroll;
    app.on_event(Event::Line {
        seq: 0,
        line: MetricLine {
            step: 501,
            time: 25.0,
            wall: None,
            record: Record::Event {
                level: Level::Warn,
                message: "new".into(),
            },
        },
    });
    assert_eq!(
        app.events_scroll,
        scrolled + 1,
        "the view stays on the same entries"
    );
    press(&mut app, KeyCode::End);
    assert_eq!(app.events_scroll, 0);
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(
        screen.contains("checkpoint written at step 400"),
        "{screen}"
    );
    assert!(screen.contains("skipped step: non-finite loss"), "{screen}");
}

/// Home showed the oldest entry alone at the top of an otherwise empty pane.
#[test]
fn events_home_shows_the_oldest_entries_in_a_full_pane() {
    let mut app = app();
    app.focus = Pane::Events;
    for i in 0..40 {
        app.on_event(Event::Line {
            seq: 0,
            line: MetricLine {
                step: 600 + i,
                time: 30.0,
                wall: None,
                record: Record::Event {
                    level: Level::Info,
                    message: format!("numbered entry {i}"),
                },
            },
        });
    }
    let oldest = app.store.log[0].text.clone();
    let _ = draw(&app, 80, 24);
    press(&mut app, KeyCode::Home);
    let screen = text(draw(&app, 80, 24).backend().buffer());
    // The oldest entry whole at the top (its start and its end)...
    let rows: Vec<&str> = screen.lines().collect();
    let top = rows
        .iter()
        .position(|r| r.starts_with("┏ 4 Events"))
        .unwrap()
        + 1;
    assert!(rows[top].contains(&oldest[..20]), "{screen}");
    let tail: String = oldest
        .chars()
        .rev()
        .take(6)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    assert!(
        rows[top..top + 3].iter().any(|r| r.contains(&tail)),
        "{tail}: {screen}"
    );
    // ... and entries down to the pane's last row.
    let bottom = rows.iter().position(|r| r.starts_with("┗")).unwrap() - 1;
    assert!(
        !rows[bottom]
            .trim_matches(|c| c == '┃' || c == ' ')
            .is_empty(),
        "a full pane: {screen}"
    );
    assert!(!screen.contains("numbered entry 39"), "{screen}");
    // Up at the top stays there; Down then shows the next entry at the bottom.
    let top = app.events_scroll;
    press(&mut app, KeyCode::Up);
    assert_eq!(app.events_scroll, top);
    press(&mut app, KeyCode::Down);
    assert_eq!(app.events_scroll, top - 1);
}

#[test]
fn help_lists_every_global_key() {
    let keys: String = super::keys::KEYS
        .iter()
        .map(|(_, k, _)| format!("{k} "))
        .collect();
    for k in [
        "Tab",
        "1 2 3 4",
        "p",
        "c",
        "e",
        "]",
        "[",
        "}",
        "{",
        "?",
        "q",
        "Ctrl-C",
        "l",
        "s / S",
        "w",
        "t / T",
        "Enter",
        "Home / End",
    ] {
        assert!(keys.contains(k), "help misses {k}");
    }
}

/// A walkthrough: after a collapse restore the hyperparameters pane still
/// read `meltr.gamma 0.1` and `meltr.meta_lr 0.001`, the config's values,
/// while the engine ran at 0.3 and 5e-4. The meta lines' values are shown
/// beside them until the key's next edit.
#[test]
fn the_rate_and_gamma_a_restore_set_are_shown_beside_the_configs() {
    let mut app = app();
    let meta_line = |step, meta_lr, gamma| Event::Line {
        seq: 0,
        line: MetricLine {
            step,
            time: 25.0,
            wall: None,
            record: Record::Meta {
                hypergrad_norm: 0.1,
                reg: 0.01,
                meta_lr,
                aid_iterations: 0,
                gamma: Some(gamma),
            },
        },
    };
    app.focus = Pane::Hyper;
    let row = |app: &mut App, key: &str| {
        select(app, key);
        let screen = text(draw(app, 160, 48).backend().buffer());
        screen
            .lines()
            .find(|l| l.contains(&format!("{key} ")))
            .unwrap_or_else(|| panic!("no {key} row in:\n{screen}"))
            .to_string()
    };
    app.on_event(meta_line(STEPS + 1, 1e-3, 0.1));
    assert!(!row(&mut app, "meltr.gamma").contains("now"));
    app.on_event(meta_line(STEPS + 4, 5e-4, 0.3));
    let gamma = row(&mut app, "meltr.gamma");
    assert!(
        gamma.contains("0.1 → 0.3 now") && gamma.contains("restore"),
        "{gamma}"
    );
    let rate = row(&mut app, "meltr.meta_lr");
    assert!(
        rate.contains("0.001 → 5e-4 now") && rate.contains("restore"),
        "{rate}"
    );
    // An edit of γ sets it again: no mark until a newer meta line differs.
    app.on_event(Event::Line {
        seq: 0,
        line: MetricLine {
            step: STEPS + 5,
            time: 26.0,
            wall: None,
            record: Record::Config {
                changed: [("meltr.gamma".to_string(), (0.3.into(), 0.1.into()))].into(),
                error: None,
            },
        },
    });
    assert!(!row(&mut app, "meltr.gamma").contains("now"));
    assert!(row(&mut app, "meltr.meta_lr").contains("5e-4 now"));
}

/// A walkthrough: on a log scale MELTR's combined loss (−10 to +24 there)
/// showed as fragments, with nothing saying its negative values were left
/// out.
#[test]
fn a_log_scale_says_which_series_have_values_it_cannot_draw() {
    let mut app = app();
    press(&mut app, KeyCode::Char('l'));
    app.curves.hidden.remove(&CurveId::Total);
    let screen = |app: &App| text(draw(app, 120, 40).backend().buffer());
    assert!(!screen(&app).contains("not drawn"), "{}", screen(&app));
    let losses: Named = app.store.losses.iter().map(|l| (l.clone(), 0.5)).collect();
    app.on_event(Event::Line {
        seq: 0,
        line: MetricLine {
            step: STEPS + 1,
            time: 26.0,
            wall: None,
            record: Record::Train {
                losses: losses.clone(),
                total: -3.0,
                weights: losses,
                lr: 1e-3,
                shares: Named::new(),
                gpu: None,
            },
        },
    });
    assert!(
        screen(&app).contains("log scale: values ≤ 0 of combined not drawn (l: linear)"),
        "{}",
        screen(&app)
    );
    press(&mut app, KeyCode::Char('l'));
    assert!(!screen(&app).contains("not drawn"));
}

/// Losses decades apart start on a log axis, as `export` draws them (a
/// walkthrough's x100 loss drew the others flat along zero until `l`);
/// `l` then switches as before.
#[test]
fn losses_decades_apart_start_on_a_log_axis_until_l() {
    let mut app = app();
    assert!(!app.log_scale(), "the fixture's losses are alike");
    // The sizes are read at 8, 16, 32, … lines: within 64 more, whatever
    // the fixture's count.
    for step in 0..64 {
        if app.log_scale() {
            break;
        }
        let losses: Named = app
            .store
            .losses
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), if i == 0 { 5000.0 } else { 0.5 }))
            .collect();
        app.on_event(Event::Line {
            seq: 0,
            line: train_line(STEPS + 1 + step, losses),
        });
    }
    assert!(app.log_scale());
    let screen = text(draw(&app, 120, 40).backend().buffer());
    assert!(screen.contains(" log (auto) · "), "{screen}");
    press(&mut app, KeyCode::Char('l'));
    assert!(!app.log_scale());
    press(&mut app, KeyCode::Char('l'));
    assert!(app.log_scale());
}

/// A train line with these losses (as weights too).
fn train_line(step: u64, losses: Named) -> MetricLine {
    MetricLine {
        step,
        time: 26.0,
        wall: None,
        record: Record::Train {
            losses: losses.clone(),
            total: 1.0,
            weights: losses,
            lr: 1e-3,
            shares: Named::new(),
            gpu: None,
        },
    }
}

/// A session opened on its history draws its losses on the axis `export`
/// chooses from every line, not from its first 8, 16, 32, … lines
/// (walkthrough R: a finished run of 60 lines was on a log axis in the TUI
/// and linear in its exported figure). Here 32 lines alike, then 31 with
/// the first loss 50x the others: the whole history takes a log axis.
#[test]
fn a_history_is_drawn_on_the_axis_its_every_line_chooses() {
    let names = ["a", "b", "c"];
    let history = (0..63u64).map(|step| {
        let first = if step < 32 { 1.0 } else { 50.0 };
        let losses: Named = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), if i == 0 { first } else { 1.0 }))
            .collect();
        train_line(step * 10, losses)
    });
    let mut meta = fixtures::meta(TOTAL);
    meta.losses = names.iter().map(|n| n.to_string()).collect();
    let config_path = PathBuf::from("sessions/demo/config.toml");
    let app = App::new(
        meta,
        config_path,
        fixtures::config(TOTAL),
        history,
        Theme { color: true },
    );
    assert!(app.log_scale());
}

/// The status line under the hyperparameters says how many Neumann terms
/// the newest meta step summed only when that is not the J configured (it
/// showed `J 3 … J 3`, two Js, one unlabelled).
#[test]
fn the_meta_steps_j_is_said_only_when_it_differs_from_the_configured() {
    let mut app = app();
    app.focus = Pane::Hyper;
    let configured = app.config.aid.iterations;
    let status = |app: &App| {
        text(draw(app, 230, 48).backend().buffer())
            .lines()
            .find(|l| l.contains("meta @"))
            .map(str::to_string)
            .expect("a meta step is shown")
    };
    let meta = app.store.meta.clone().expect("the fixture has meta lines");
    assert_eq!(meta.aid_iterations, configured);
    assert!(!status(&app).contains("with J"), "{}", status(&app));
    app.store.meta = Some(crate::tui::store::MetaSnapshot {
        aid_iterations: configured - 1,
        ..meta
    });
    assert!(
        status(&app).contains(&format!("with J {} (cut: diverged)", configured - 1)),
        "{}",
        status(&app)
    );
    // An edit not in force yet (a finished run's file) cuts nothing
    // (walkthrough Z3).
    app.in_force.aid.iterations = configured - 1;
    assert!(
        status(&app).contains(&format!("with J {}", configured - 1))
            && !status(&app).contains("cut"),
        "{}",
        status(&app)
    );
    app.in_force.aid.iterations = configured;
    // Raised at or after that meta step: the edit is why (walkthrough Y).
    app.store
        .edited_at
        .insert("aid.iterations".to_string(), meta.step);
    assert!(
        status(&app).contains(&format!("with J {} (J edited since)", configured - 1)),
        "{}",
        status(&app)
    );
}

/// A fork's best in the header is after its fork step: the evaluation at
/// that step was its parent's (walkthrough G).
#[test]
fn a_forks_best_is_after_its_fork_step() {
    let best_step = app().store.best_metric.expect("the fixture has evals").0;
    let mut meta = fixtures::meta(TOTAL);
    meta.parent = Some("parent".into());
    meta.fork_step = Some(best_step);
    let fork = App::new(
        meta,
        PathBuf::from("sessions/demo/config.toml"),
        fixtures::config(TOTAL),
        fixtures::history(STEPS),
        Theme { color: true },
    );
    let fork_best = fork.store.best_metric.map(|b| b.0);
    assert!(
        fork_best.is_none_or(|step| step > best_step),
        "{fork_best:?} at fork step {best_step}"
    );
}

/// A headless run's viewer sends it nothing but a stop: `p` and `c` say
/// so instead of "requested" (a walkthrough's `c` said "checkpoint
/// requested" and no checkpoint came); `q` offers a detach and a stop.
#[test]
fn pause_and_checkpoint_say_a_headless_run_does_not_take_them() {
    let mut app = app();
    app.takes_commands = false;
    app.detachable = true;
    for key in ['p', 'c'] {
        assert_eq!(press(&mut app, KeyCode::Char(key)), Action::None);
        let flash = &app.flash.as_ref().unwrap().text;
        assert_eq!(flash, crate::tui::state::NOT_LINKED);
    }
    press(&mut app, KeyCode::Char('q'));
    let dialog = text(draw(&app, 80, 24).backend().buffer());
    assert!(dialog.contains("detach (run goes on)"), "{dialog}");
    assert_eq!(
        press(&mut app, KeyCode::Char('s')),
        Action::Quit(Exit::Stopped)
    );
    // A run that ended takes nothing either way: said as before.
    app.overlay = Overlay::None;
    app.status = Status::Finished;
    press(&mut app, KeyCode::Char('c'));
    let flash = &app.flash.as_ref().unwrap().text;
    assert!(flash.contains("no checkpoint to take"), "{flash}");
}

/// A viewer attached while the runner sets up says so in the header, and
/// no metric direction before a metric is named (walkthrough F's header
/// read "running" and "↓ (no eval yet)" for R@1).
#[test]
fn a_run_setting_up_says_so_with_no_metric_direction() {
    let mut app = app();
    app.store.primary_metric.clear();
    app.on_event(Event::Status {
        status: Status::Running,
        message: Some(crate::runner::serve::setting_up(false)),
    });
    let screen = text(draw(&app, 120, 30).backend().buffer());
    let header: Vec<&str> = screen.lines().take(2).collect();
    assert!(header[0].contains("● setting up"), "{screen}");
    assert!(
        header[1].contains("no eval yet") && !header[1].contains('↓'),
        "{screen}"
    );
    // The events pane says "setting up" once (walkthrough K2).
    let said: Vec<&str> = app.store.log.iter().map(|e| e.text.as_str()).collect();
    assert!(
        said.iter()
            .any(|t| t.starts_with("run setting up: loading the model and data"))
            && !said.iter().any(|t| t.contains("setting up: setting up")),
        "{said:?}"
    );
    // The trainer's own status ends it.
    app.on_event(Event::Status {
        status: Status::Running,
        message: None,
    });
    let screen = text(draw(&app, 120, 30).backend().buffer());
    assert!(
        screen.lines().next().unwrap().contains("● running"),
        "{screen}"
    );
}

/// Six losses at 80x24 (walkthrough M): the weights chart read "(too
/// small)" under two bar sections, and the shares were dropped. The chart
/// keeps its least height, and the shares become a column of the weights'
/// rows.
#[test]
fn six_losses_at_80x24_keep_the_weights_chart_and_the_shares() {
    let extra = ["fourth", "fifth", "sixth"];
    let mut meta = fixtures::meta(TOTAL);
    meta.losses.extend(extra.map(String::from));
    let history: Vec<MetricLine> = fixtures::history(STEPS)
        .into_iter()
        .map(|mut line| {
            if let Record::Train {
                losses,
                weights,
                shares,
                ..
            } = &mut line.record
            {
                for (k, name) in extra.into_iter().enumerate() {
                    losses.insert(name.into(), 0.5);
                    weights.insert(name.into(), 0.1 * (k + 1) as f64);
                    shares.insert(name.into(), 0.05);
                }
            }
            line
        })
        .collect();
    let mut app = App::new(
        meta,
        PathBuf::from("sessions/demo/config.toml"),
        fixtures::config(TOTAL),
        history,
        Theme { color: true },
    );
    app.focus = Pane::Contributions;
    let screen = text(draw(&app, 80, 24).backend().buffer());
    assert!(!screen.contains("(too small)"), "{screen}");
    assert!(screen.contains("weight ∂M/∂l @"), "{screen}");
    assert!(screen.contains(" · share @"), "{screen}");
    let sixth = screen
        .lines()
        .find(|l| l.contains("sixth ") && l.contains('%'))
        .unwrap_or_else(|| panic!("no row of `sixth`:\n{screen}"));
    assert!(sixth.contains("+0.3") && sixth.contains("5.0%"), "{sixth}");
}
