//! Which commands end quietly when the reader of their output goes away.

use super::Cmd;

impl Cmd {
    /// Whether a closed standard output (`meltr-tui ls | head -1`) should
    /// end this command as it ends other tools, by SIGPIPE, rather than
    /// panic on the failed print (walkthrough D's `ls --json | head -c 1`,
    /// walkthrough J's `run --detach | head -1`). Commands that print and
    /// return, a launcher of a detached runner included (the runner is its
    /// own process); not a headless run, a TUI or a runner, which must
    /// outlive a reader that went away.
    pub fn ends_on_closed_pipe(&self) -> bool {
        match self {
            Cmd::Ls { .. }
            | Cmd::Table { .. }
            | Cmd::Compare { .. }
            | Cmd::Doctor
            | Cmd::Check { .. }
            | Cmd::Export { .. }
            | Cmd::Stop { .. } => true,
            // Not `fork`: it says where it forked before its runner starts.
            Cmd::Run { how, .. } | Cmd::Resume { how, .. } => how.detach,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    fn ends(args: &str) -> bool {
        let cli = super::super::Cli::try_parse_from(args.split(' ')).unwrap();
        cli.command.is_some_and(|c| c.ends_on_closed_pipe())
    }

    #[test]
    fn printing_commands_and_launchers_end_on_a_closed_pipe_runs_do_not() {
        assert!(ends("meltr-tui ls"));
        assert!(ends("meltr-tui run -c x.toml --detach"));
        assert!(ends("meltr-tui resume s --detach"));
        assert!(!ends("meltr-tui fork s --detach"));
        assert!(!ends("meltr-tui run -c x.toml --headless"));
        assert!(!ends("meltr-tui run -c x.toml"));
        assert!(!ends("meltr-tui attach"));
    }
}
