//! `meltr-tui`: parses the command line and dispatches; the work is in the library.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use clap::Parser;

fn main() {
    let cli = meltr_tui::cli::Cli::parse();
    if let Err(error) = meltr_tui::cli::dispatch(cli) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}
