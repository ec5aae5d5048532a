//! Printing that never panics: a closed standard output or error (the
//! reader went away: `meltr-tui run --headless 2>&1 | head`) drops the text
//! instead of panicking, as `println!` does. Runs, runners and sweep
//! drivers must outlive their reader; their logs keep what was said. A
//! headless run keeps it in its session's `output.log` too
//! ([`echo_into`]), as a detached run's runner does.

use std::io::Write as _;
use std::sync::Mutex;

/// The file every line said is copied into, when one is set.
static ECHO: Mutex<Option<std::fs::File>> = Mutex::new(None);

/// From now on, copies what this process says (stdout and stderr, through
/// these macros) into `file` as well: a headless run's `output.log`
/// (walkthroughs X and Y grepped the `output.log` of every session and
/// missed the headless ones'). Output libtorch writes itself is not copied.
pub fn echo_into(file: std::fs::File) {
    *ECHO.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
}

/// Stops [`echo_into`]'s copying and closes its file: before a session
/// folder that holds it is removed (an open file keeps an NFS folder from
/// being removed).
pub fn stop_echo() {
    *ECHO.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// Copies `text` into the echo file, if any, in one write (a viewer's own
/// output may go to the same file); a failed write is dropped (the run does
/// not depend on it).
#[doc(hidden)]
pub fn echo(text: &str) {
    if let Some(file) = ECHO.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        let _ = file.write_all(text.as_bytes());
    }
}

/// A line on stdout; a failed write is dropped.
#[macro_export]
macro_rules! say {
    () => {
        $crate::say!("")
    };
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        // Formatted once (the arguments are evaluated once), with its
        // newline: one write to each.
        let line = format!("{}\n", format_args!($($arg)*));
        let _ = std::io::stdout().write_all(line.as_bytes());
        $crate::say::echo(&line);
    }};
}

/// A line on stderr; a failed write is dropped.
#[macro_export]
macro_rules! say_err {
    () => {
        $crate::say_err!("")
    };
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        // Formatted once (the arguments are evaluated once), with its
        // newline: one write to each.
        let line = format!("{}\n", format_args!($($arg)*));
        let _ = std::io::stderr().write_all(line.as_bytes());
        $crate::say::echo(&line);
    }};
}

/// Text on stderr as it is (no newline added); a failed write is dropped.
#[macro_export]
macro_rules! say_err_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        // Formatted once: the arguments are evaluated once.
        let text = format!($($arg)*);
        let _ = std::io::stderr().write_all(text.as_bytes());
        $crate::say::echo(&text);
    }};
}

/// Text on stdout as it is (no newline added); a failed write is dropped.
#[macro_export]
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        // Formatted once: the arguments are evaluated once.
        let text = format!($($arg)*);
        let _ = std::io::stdout().write_all(text.as_bytes());
        $crate::say::echo(&text);
    }};
}
