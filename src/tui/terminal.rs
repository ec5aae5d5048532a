//! Owning the terminal, and giving it back in every case: raw mode and the
//! alternate screen on entry; on exit, error, panic (a hook restores the
//! screen before the message prints) and SIGINT/SIGTERM/SIGHUP (a flag the
//! loop checks). While the TUI runs, the process's stdout and stderr go to
//! a log file, so nothing the training code prints lands on the screen;
//! the TUI draws on its own copy of the terminal.

use anyhow::{bail, Context, Result};
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::Terminal;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::path::Path;
use std::sync::{Mutex, Once};

pub type Backend = CrosstermBackend<File>;

/// What must be undone, kept globally so the panic hook can reach it.
struct Saved {
    stdout: RawFd,
    stderr: RawFd,
    tty: RawFd,
    thread: std::thread::ThreadId,
    signals: crate::process::Trap,
}

static SAVED: Mutex<Option<Saved>> = Mutex::new(None);
static HOOK: Once = Once::new();
/// True once SIGINT, SIGTERM or SIGHUP arrived while the TUI ran.
pub fn interrupted() -> bool {
    crate::process::Trap::sprung()
}

/// The terminal, restored when dropped.
pub struct Tui {
    pub terminal: Terminal<Backend>,
}

fn check(ret: libc::c_int, what: &str) -> Result<libc::c_int> {
    if ret < 0 {
        Err(std::io::Error::last_os_error()).with_context(|| format!("{what} failed"))
    } else {
        Ok(ret)
    }
}

/// Whether there is a terminal to draw on (stdout is one, or `/dev/tty`
/// opens), checked before anything is started for the TUI. `instead`: what
/// to do without one, for the message (e.g. "use `resume --headless` or
/// `resume --detach`").
pub fn check_available(instead: &str) -> Result<()> {
    let fd_size = |fd: i32| {
        // `docker exec -it` and the like report 0×0 until their client
        // sends its size: a moment's grace before refusing.
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        loop {
            let size = window_size(fd);
            let none = matches!(size, Some((0, _) | (_, 0)));
            if !none || std::time::Instant::now() >= deadline {
                return size;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let size = if unsafe { libc::isatty(1) } == 1 {
        fd_size(1)
    } else {
        let tty = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .with_context(|| {
                format!(
                    "no terminal to draw on (stdout is not a terminal and /dev/tty cannot be \
                     opened); without one, {instead}"
                )
            })?;
        fd_size(tty.as_raw_fd())
    };
    refuse_no_size(size, instead)
}

/// A terminal of no size (`script` without `stty`, some containers) drew
/// an empty screen and said nothing (walkthrough H).
fn refuse_no_size(size: Option<(u16, u16)>, instead: &str) -> Result<()> {
    match size {
        Some((0, _) | (_, 0)) => bail!(
            "the terminal reports a size of 0 columns or rows, so there is nothing to draw on; \
             give it one (`stty cols 120 rows 40`), or {instead}"
        ),
        _ => Ok(()),
    }
}

/// The terminal's columns and rows on `fd`, as the kernel has them.
fn window_size(fd: i32) -> Option<(u16, u16)> {
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into `size`, which lives here.
    let read = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut size) } == 0;
    read.then_some((size.ws_col, size.ws_row))
}

impl Tui {
    /// Takes the terminal; stdout and stderr are appended to `output_log`
    /// until it is given back.
    pub fn enter(output_log: &Path) -> Result<Tui> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(output_log)
            .with_context(|| {
                format!("cannot open {} for the run's output", output_log.display())
            })?;
        // The screen: our own copy of stdout when it is a terminal, else /dev/tty.
        // SAFETY: plain fd calls; every fd made here is owned by `Saved` or `tty`.
        let tty_file = unsafe {
            if libc::isatty(1) == 1 {
                File::from_raw_fd(check(libc::dup(1), "dup(stdout)")?)
            } else {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/tty")
                    .context("no terminal to draw on")?
            }
        };
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        // SAFETY: dup/dup2 on fds we own or on 1 and 2.
        let saved = unsafe {
            let stdout = check(libc::dup(1), "dup(stdout)")?;
            let stderr = check(libc::dup(2), "dup(stderr)")?;
            check(libc::dup2(log.as_raw_fd(), 1), "redirecting stdout")?;
            check(libc::dup2(log.as_raw_fd(), 2), "redirecting stderr")?;
            Saved {
                stdout,
                stderr,
                tty: check(libc::dup(tty_file.as_raw_fd()), "dup(tty)")?,
                thread: std::thread::current().id(),
                signals: crate::process::Trap::set(),
            }
        };
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved);
        install_panic_hook();

        let mut tty_file = tty_file;
        // Keys typed before the TUI opened (while a first run pretrained)
        // are not its to act on: a walkthrough's `c`, echoed into the
        // progress lines, took a checkpoint when the TUI opened minutes later.
        // SAFETY: tcflush on a terminal fd we hold; failure is harmless.
        unsafe {
            libc::tcflush(tty_file.as_raw_fd(), libc::TCIFLUSH);
        }
        let setup = terminal::enable_raw_mode().and_then(|_| {
            execute!(
                tty_file,
                terminal::EnterAlternateScreen,
                cursor::Hide,
                terminal::Clear(terminal::ClearType::All)
            )
        });
        if let Err(e) = setup {
            restore();
            return Err(e).context("cannot set up the terminal");
        }
        match Terminal::new(CrosstermBackend::new(tty_file)) {
            Ok(terminal) => Ok(Tui { terminal }),
            Err(e) => {
                restore();
                Err(e).context("cannot set up the terminal")
            }
        }
    }
}

impl Drop for Tui {
    fn drop(&mut self) {
        restore();
    }
}

/// Gives the terminal back: leaves the alternate screen, raw mode off,
/// cursor shown, stdout/stderr and signal handlers as they were. Safe to
/// call more than once; only the first call does anything.
pub fn restore() {
    let Some(saved) = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take() else {
        return;
    };
    // SAFETY: `saved.tty` is our own dup of the terminal, used nowhere
    // else; the File closes it when dropped below.
    let mut tty = unsafe { File::from_raw_fd(saved.tty) };
    let _ = execute!(tty, terminal::LeaveAlternateScreen, cursor::Show);
    let _ = terminal::disable_raw_mode();
    let _ = tty.flush();
    drop(tty);
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    unsafe {
        libc::dup2(saved.stdout, 1);
        libc::dup2(saved.stderr, 2);
        libc::close(saved.stdout);
        libc::close(saved.stderr);
    }
    saved.signals.release();
}

/// Restores the terminal before a panic on the TUI thread is reported, so
/// the message is readable. Panics on other threads (the engine's) go to
/// the output log like the rest of their output, and the TUI goes on.
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let ours = SAVED
                .lock()
                .map(|s| {
                    s.as_ref()
                        .is_some_and(|s| s.thread == std::thread::current().id())
                })
                .unwrap_or(false);
            if ours {
                restore();
            }
            previous(info);
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new pseudo-terminal has no size until one is set: refused with
    /// how to give it one; once set, it passes.
    #[test]
    fn a_terminal_of_no_size_is_refused_with_a_fix() {
        // SAFETY: plain fd calls on a pty this test opens and closes.
        let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
        assert!(master >= 0, "no pseudo-terminal");
        let size = window_size(master);
        assert_eq!(size, Some((0, 0)));
        let refused = refuse_no_size(size, "use `run --headless`").unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("`stty cols 120 rows 40`), or use `run --headless`"),
            "{refused}"
        );
        let set = libc::winsize {
            ws_row: 30,
            ws_col: 100,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        assert_eq!(unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &set) }, 0);
        let size = window_size(master);
        assert_eq!(size, Some((100, 30)));
        assert!(refuse_no_size(size, "").is_ok());
        unsafe { libc::close(master) };
    }
}
