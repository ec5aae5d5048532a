//! Frame time of the curves pane against run length (10^3, 10^5, 10^6
//! logged steps). Decimation is O(width · log n), so the frame time must
//! stay flat. Not a timed test: it prints numbers.
//!
//!     cargo bench --bench tui_draw

use meltr_tui::tui::fixtures;
use meltr_tui::tui::state::{App, Pane};
use meltr_tui::tui::theme::Theme;
use meltr_tui::tui::view;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent};
use ratatui::Terminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const FRAMES: u32 = 100;
/// Rounds of FRAMES; the fastest round counts (the machine is shared).
const ROUNDS: usize = 7;

fn app(steps: u64) -> App {
    App::new(
        fixtures::meta(steps),
        PathBuf::from("config.toml"),
        fixtures::config(steps),
        fixtures::lines(steps),
        Theme { color: true },
    )
}

/// Mean time to draw `pane` alone on a `w`x`h` terminal, in the fastest round.
fn frame_time(app: &App, pane: Pane, w: u16, h: u16, full: bool) -> Duration {
    let (rounds, frames) = if full { (ROUNDS, FRAMES) } else { (1, 5) };
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    let mut draw = || {
        terminal
            .draw(|f| view::render_pane(f, f.area(), app, pane))
            .unwrap();
    };
    for _ in 0..10 {
        draw();
    }
    (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..frames {
                draw();
            }
            start.elapsed() / frames
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    // `cargo test --all-targets` runs this without `--bench`: a quick smoke run then.
    let full = std::env::args().any(|a| a == "--bench");
    let sizes: &[u64] = if full {
        &[1_000, 100_000, 1_000_000]
    } else {
        &[1_000, 10_000]
    };
    if !full {
        println!("smoke run (use `cargo bench --bench tui_draw` for the numbers)");
    }
    let cases: [(&str, bool); 2] = [("raw", false), ("log+EMA", true)];
    let mut base: Vec<f64> = Vec::new();
    println!(
        "{:>10} {:>9} {:>9} {:>12} {:>8}",
        "steps", "view", "size", "ms/frame", "vs 1e3"
    );
    for (i, &steps) in sizes.iter().enumerate() {
        let built = Instant::now();
        let mut app = app(steps);
        let build = built.elapsed();
        for (c, (name, styled)) in cases.iter().enumerate() {
            if *styled {
                app.on_key(KeyEvent::from(KeyCode::Char('l')));
                app.on_key(KeyEvent::from(KeyCode::Char('s')));
            }
            for (s, (w, h)) in [(80u16, 24u16), (160, 48)].into_iter().enumerate() {
                let ms = frame_time(&app, Pane::Curves, w, h, full).as_secs_f64() * 1e3;
                let k = c * 2 + s;
                if i == 0 {
                    base.push(ms);
                }
                println!(
                    "{steps:>10} {name:>9} {:>9} {ms:>12.3} {:>7.2}x",
                    format!("{w}x{h}"),
                    ms / base[k]
                );
            }
        }
        println!(
            "{:>10} (history of {steps} steps ingested in {:.2} s)",
            "",
            build.as_secs_f64()
        );
    }
}
