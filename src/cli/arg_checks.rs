//! Checks of argument values that clap's types do not make (a session's
//! name here; a sweep's runner count in `sweep`), tested through the parser.

/// A session's name as given: not empty, no control characters (a newline
/// or tab garbled the TUI's header), at most 100 characters.
pub(super) fn session_name(name: &str) -> std::result::Result<String, String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("a session name needs a character other than spaces".into());
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{c:?} in a session name: names show in the TUI, `ls` and folder names, so they \
             hold no control characters"
        ));
    }
    if name.chars().count() > 100 {
        return Err(format!(
            "a session name of {} characters; at most 100",
            name.chars().count()
        ));
    }
    Ok(name.to_string())
}

/// `--group none`: no group, for `new`, `run` and `fork` alike (walkthrough
/// L's `run --group none` made a group called `none`; walkthrough Y's was
/// refused where `fork` took it), and the listings' filter.
use crate::runs::filter::NO_GROUP;

/// A new session's `--group`, checked as a name ([`NO_GROUP`] passes, and
/// [`in_group`] reads it as none).
pub(super) fn group_name(group: &str) -> std::result::Result<String, String> {
    session_name(group).map_err(|e| e.replace("session name", "group name"))
}

/// The group a `--group` value puts a session in.
pub(super) fn in_group(group: Option<String>) -> Option<String> {
    group.filter(|g| !g.eq_ignore_ascii_case(NO_GROUP))
}

#[cfg(test)]
mod tests {
    use super::super::Cli;
    use super::*;
    use clap::Parser;

    #[test]
    fn session_names_are_checked_as_given() {
        assert_eq!(session_name("  run 1 ").unwrap(), "run 1");
        assert!(session_name("")
            .unwrap_err()
            .contains("a character other than spaces"));
        assert!(session_name("new\nline")
            .unwrap_err()
            .contains("'\\n' in a session name"));
        assert!(session_name(&"x".repeat(101))
            .unwrap_err()
            .contains("at most 100"));
        let parsed = Cli::try_parse_from(["meltr-tui", "run", "-c", "c.toml", "-n", "tab\tname"]);
        assert!(parsed.is_err());
        let grouped =
            |g: &str| Cli::try_parse_from(["meltr-tui", "run", "-c", "c.toml", "--group", g]);
        assert_eq!(in_group(Some(group_name(" none ").unwrap())), None);
        assert_eq!(in_group(Some(group_name("None").unwrap())), None);
        assert_eq!(
            in_group(Some(group_name("ablation").unwrap())).as_deref(),
            Some("ablation")
        );
        assert!(grouped("none").is_ok());
        assert!(grouped("a\tb").is_err());
    }

    #[test]
    fn a_sweep_runs_at_least_one_runner_at_a_time() {
        let sweep = |parallel: &str| {
            Cli::try_parse_from([
                "meltr-tui",
                "sweep",
                "-c",
                "c.toml",
                "--set",
                "meltr.gamma=0,0.1",
                "--parallel",
                parallel,
            ])
        };
        let refused = sweep("0").unwrap_err().to_string();
        assert!(
            refused.contains("0 runners would start nothing"),
            "{refused}"
        );
        assert!(sweep("2").is_ok());
        assert!(
            Cli::try_parse_from(["meltr-tui", "sweep", "resume", "g", "--parallel", "0"]).is_err()
        );
    }

    /// Only a headless run gives up on failed writes; a runner pauses (a
    /// walkthrough's `--detach --give-up-after 5` was accepted and ignored).
    #[test]
    fn give_up_after_needs_headless() {
        let mode = |how: &[&str]| {
            let mut args = vec!["meltr-tui", "run", "-c", "c.toml"];
            args.extend(how);
            match Cli::try_parse_from(args).unwrap().command {
                Some(crate::cli::Cmd::Run { how, .. }) => crate::cli::Mode::of(&how),
                other => panic!("{other:?}"),
            }
        };
        for how in [
            &["--detach", "--give-up-after", "5"][..],
            &["--give-up-after", "5"],
        ] {
            let refused = mode(how).unwrap_err().to_string();
            assert!(
                refused.starts_with("--give-up-after needs --headless"),
                "{how:?}: {refused}"
            );
        }
        let headless = mode(&["--headless", "--give-up-after", "5"]).unwrap();
        assert_eq!(
            headless,
            crate::cli::Mode::Headless {
                give_up_after: std::time::Duration::from_secs(5)
            }
        );
        assert_eq!(mode(&["--detach"]).unwrap(), crate::cli::Mode::Detached);
    }
}
