//! How the command line names a session: the `meltr-tui attach ID` and
//! `resume ID` the commands print, with the sessions folder when it is not
//! where a plain `meltr-tui` looks.

use std::path::Path;

/// Where sessions live unless `--sessions-dir` or `MELTR_SESSIONS` says.
pub const DEFAULT_ROOT: &str = "sessions";

/// How to name the session in `dir` on the command line: `meltr-tui ID`,
/// with `--sessions-dir` when a plain `meltr-tui` would look elsewhere (a
/// walkthrough ran with `--sessions-dir`, then the printed `meltr-tui
/// attach ID` found no session).
pub fn command_for(dir: &Path, subcommand: &str) -> String {
    let default_root = std::env::var_os("MELTR_SESSIONS").map_or_else(
        || std::path::PathBuf::from(DEFAULT_ROOT),
        std::path::PathBuf::from,
    );
    command_from(dir, subcommand, &default_root)
}

/// [`command_for`] where a plain `meltr-tui` looks in `default_root`.
fn command_from(dir: &Path, subcommand: &str, default_root: &Path) -> String {
    let id = dir.file_name().unwrap_or_default().to_string_lossy();
    let root = dir.parent().unwrap_or(Path::new("."));
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if same(root, default_root) {
        format!("meltr-tui {subcommand} {id}")
    } else {
        let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
        format!(
            "meltr-tui --sessions-dir {} {subcommand} {id}",
            root.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The printed `attach`/`resume` names the sessions folder only where
    /// a plain `meltr-tui` would not look.
    #[test]
    fn printed_commands_name_a_sessions_folder_that_is_not_the_default() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("runs");
        std::fs::create_dir_all(elsewhere.join("abc")).unwrap();
        assert_eq!(
            command_from(&elsewhere.join("abc"), "attach", Path::new("sessions")),
            format!(
                "meltr-tui --sessions-dir {} attach abc",
                elsewhere.canonicalize().unwrap().display()
            )
        );
        assert_eq!(
            command_from(&elsewhere.join("abc"), "resume", &elsewhere),
            "meltr-tui resume abc"
        );
        assert_eq!(
            command_from(Path::new("sessions/abc"), "attach", Path::new("sessions")),
            "meltr-tui attach abc"
        );
    }
}
