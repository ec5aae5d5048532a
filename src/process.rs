//! Process-wide signal handling, in one place. Handlers only store to an
//! atomic; whoever runs a loop polls the flags.
//!
//! - A training process (headless run, runner) asks SIGINT and SIGTERM for
//!   a clean stop ([`stop_on_signals`]) and exits with the shell's code for
//!   the signal ([`exit_code`]); a runner ignores hang-ups, a headless run
//!   stops cleanly on one too ([`stop_on_hangup`]).
//! - The TUI traps SIGINT, SIGTERM and SIGHUP while it owns the terminal
//!   ([`Trap`]), and puts the previous handlers back when it leaves; a
//!   viewer exits when its terminal hangs up ([`exit_on_hangup`]).
//! - A detached child (runner, sweep driver) starts in a session of its
//!   own ([`detach_from_terminal`]).

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};

/// The signal that asked for a stop (0: none yet) ...
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// ... and how many such signals arrived.
static STOP_COUNT: AtomicU32 = AtomicU32::new(0);
/// Set by a [`Trap`]'s handler ...
static TRAPPED: AtomicBool = AtomicBool::new(false);
/// ... with the signal it caught.
static TRAPPED_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(signal: libc::c_int) {
    STOP_SIGNAL.store(signal, Ordering::SeqCst);
    STOP_COUNT.fetch_add(1, Ordering::SeqCst);
}

extern "C" fn on_trapped_signal(signal: libc::c_int) {
    TRAPPED_SIGNAL.store(signal, Ordering::SeqCst);
    TRAPPED.store(true, Ordering::SeqCst);
}

/// Makes `command`'s process start a new session: it has no controlling
/// terminal, so the terminal's hang-up never reaches it.
pub fn detach_from_terminal(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes SIGINT and SIGTERM request a clean stop (see [`stop_signal`])
/// instead of killing the process mid-write.
pub fn stop_on_signals() {
    let handler = on_stop_signal as *const () as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Makes SIGHUP request a clean stop too, for a headless run: a dropped
/// SSH connection killed one mid-interval, its steps since the last
/// checkpoint lost (a walkthrough). Under `nohup` (SIGHUP ignored from
/// the start) it stays ignored.
pub fn stop_on_hangup() {
    stop_on_unless_ignored(libc::SIGHUP);
}

fn stop_on_unless_ignored(signal: libc::c_int) {
    // SAFETY: a query of the current disposition (null new action), then
    // a handler that only stores to an atomic.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, std::ptr::null(), &mut current) == 0
            && current.sa_sigaction == libc::SIG_IGN
        {
            return;
        }
        libc::signal(signal, on_stop_signal as *const () as libc::sighandler_t);
    }
}

/// Whether a stop signal (SIGINT, SIGTERM, or SIGHUP after
/// [`stop_on_hangup`]) arrived.
pub fn stop_requested() -> bool {
    stop_signal().is_some()
}

/// How many stop signals arrived (a second one while a run is still being
/// built quits at once: see the headless run).
pub fn stop_count() -> u32 {
    STOP_COUNT.load(Ordering::SeqCst)
}

/// The signal that asked for a stop, if one did.
pub fn stop_signal() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// The shell's exit status for a process ended by `signal`: 129 for
/// SIGHUP, 130 for SIGINT, 143 for SIGTERM.
pub fn exit_code(signal: i32) -> i32 {
    128 + signal
}

/// Ignores SIGHUP (a detached runner outlives its terminal) and SIGPIPE (a
/// client that vanished mid-write is an error return, not a death).
pub fn ignore_hangups() {
    // SAFETY: SIG_IGN for two signals; no handler code runs.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// SIGINT, SIGTERM and SIGHUP caught into a flag ([`Trap::sprung`]) until
/// [`Trap::release`] puts the previous handlers back.
pub struct Trap {
    previous: Vec<(libc::c_int, libc::sigaction)>,
}

impl Trap {
    const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

    pub fn set() -> Trap {
        Self::set_for(&Self::SIGNALS, false)
    }

    /// SIGINT and SIGTERM only, each unless ignored from the start (a
    /// `nohup` or `&` job's): a Ctrl-C while a runner starts. A hang-up
    /// then still ends this process alone, and the runner trains on.
    pub fn interrupts() -> Trap {
        Self::set_for(&[libc::SIGINT, libc::SIGTERM], true)
    }

    fn set_for(signals: &[libc::c_int], unless_ignored: bool) -> Trap {
        TRAPPED.store(false, Ordering::SeqCst);
        let mut previous = Vec::new();
        for &signal in signals {
            // SAFETY: plain sigaction structs; the handler only stores to an
            // atomic.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(signal, std::ptr::null(), &mut old) != 0
                    || (unless_ignored && old.sa_sigaction == libc::SIG_IGN)
                {
                    continue;
                }
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = on_trapped_signal as *const () as libc::sighandler_t;
                if libc::sigaction(signal, &new, &mut old) == 0 {
                    previous.push((signal, old));
                }
            }
        }
        Trap { previous }
    }

    /// The signal a trap caught last, if any did.
    pub fn signal() -> Option<i32> {
        Self::sprung().then(|| TRAPPED_SIGNAL.load(Ordering::SeqCst))
    }

    /// Whether one of the signals arrived since [`Trap::set`].
    pub fn sprung() -> bool {
        TRAPPED.load(Ordering::SeqCst)
    }

    /// Puts the handlers in place before [`Trap::set`] back.
    pub fn release(&self) {
        for (signal, old) in &self.previous {
            // SAFETY: restores a sigaction read by sigaction itself.
            unsafe {
                libc::sigaction(*signal, old, std::ptr::null_mut());
            }
        }
    }
}

/// A dropped SSH connection leaves the TUI on a dead terminal (crossterm
/// then spins instead of failing): this watchdog ends the process when the
/// terminal hangs up. Only the viewer goes; a runner is a separate process.
pub fn exit_on_hangup() {
    if unsafe { libc::isatty(0) } != 1 {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("hangup-watch".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(250));
            let mut tty = libc::pollfd {
                fd: 0,
                events: 0,
                revents: 0,
            };
            let hung_up = unsafe { libc::poll(&mut tty, 1, 0) } > 0
                && tty.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0;
            if hung_up {
                std::process::exit(0);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trap_catches_a_signal_and_release_restores_the_previous_handler() {
        // SIGHUP's own previous handler: a flag we can observe.
        stop_on_signals_for(libc::SIGHUP);
        let trap = Trap::set();
        assert!(!Trap::sprung());
        unsafe { libc::raise(libc::SIGHUP) };
        assert!(Trap::sprung());
        assert_eq!(stop_signal(), None, "the trap, not the old handler, ran");
        trap.release();
        unsafe { libc::raise(libc::SIGHUP) };
        assert_eq!(stop_signal(), Some(libc::SIGHUP), "the old handler is back");
    }

    fn stop_on_signals_for(signal: libc::c_int) {
        let handler = on_stop_signal as *const () as libc::sighandler_t;
        unsafe { libc::signal(signal, handler) };
    }

    /// A signal ignored from the start (SIGHUP under `nohup`) stays
    /// ignored; otherwise it asks for a stop. (SIGUSR2: SIGHUP is the other
    /// test's, and tests run at once.)
    #[test]
    fn a_signal_ignored_from_the_start_stays_ignored() {
        let disposition = || unsafe {
            let mut current: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGUSR2, std::ptr::null(), &mut current);
            current.sa_sigaction
        };
        unsafe { libc::signal(libc::SIGUSR2, libc::SIG_IGN) };
        stop_on_unless_ignored(libc::SIGUSR2);
        assert_eq!(disposition(), libc::SIG_IGN);
        unsafe { libc::signal(libc::SIGUSR2, libc::SIG_DFL) };
        stop_on_unless_ignored(libc::SIGUSR2);
        assert_eq!(
            disposition(),
            on_stop_signal as *const () as libc::sighandler_t
        );
        unsafe { libc::signal(libc::SIGUSR2, libc::SIG_IGN) };
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        assert_eq!(exit_code(libc::SIGINT), 130);
        assert_eq!(exit_code(libc::SIGTERM), 143);
    }
}
