//! Printing that never panics: a closed standard output or error (the
//! reader went away: `meltr-tui run --headless 2>&1 | head`) drops the text
//! instead of panicking, as `println!` does. Runs, runners and sweep
//! drivers must outlive their reader; their logs keep what was said.

/// A line on stdout; a failed write is dropped.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// A line on stderr; a failed write is dropped.
#[macro_export]
macro_rules! say_err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Text on stderr as it is (no newline added); a failed write is dropped.
#[macro_export]
macro_rules! say_err_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

/// Text on stdout as it is (no newline added); a failed write is dropped.
#[macro_export]
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}
