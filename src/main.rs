//! `meltr-tui`: parses the command line and dispatches; the work is in the library.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use clap::Parser;

fn main() {
    let cli = meltr_tui::cli::Cli::parse();
    use meltr_tui::cli::Cmd;
    // Output read by `head` ends quietly when the pipe closes, as other
    // tools' does, where nothing must outlive the reader.
    if cli.command.as_ref().is_some_and(Cmd::ends_on_closed_pipe) {
        // SAFETY: at the start of main, before any thread; SIG_DFL is a
        // valid disposition for SIGPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    if let Err(error) = meltr_tui::cli::dispatch(cli) {
        meltr_tui::say_err!("error: {error:#}");
        // Interrupted while a runner started: the shell's code for it.
        let interrupted = error.is::<meltr_tui::runner::launch::Interrupted>();
        match meltr_tui::process::Trap::signal().filter(|_| interrupted) {
            Some(signal) => std::process::exit(meltr_tui::process::exit_code(signal)),
            None => std::process::exit(1),
        }
    }
}
