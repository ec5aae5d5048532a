//! How the command line names a session: the `meltr-tui attach ID` and
//! `resume ID` the commands print, with the sessions folder when it is not
//! where a plain `meltr-tui` looks.

use std::path::Path;

/// Where sessions live unless `--sessions-dir` or `MELTR_SESSIONS` says.
pub const DEFAULT_ROOT: &str = "sessions";

/// How to name the session in `dir` on the command line: `meltr-tui
/// SUBCOMMAND ID`, with `--sessions-dir` unless a plain `meltr-tui` finds
/// it from anywhere it is likely typed: the default folder as given (the
/// user's working folder), or the folder `MELTR_SESSIONS` names. (Two
/// walkthroughs ran with `--sessions-dir`; the printed `meltr-tui attach
/// ID`, typed from another folder, found no session.)
pub fn command_for(dir: &Path, subcommand: &str) -> String {
    let from_env = std::env::var_os("MELTR_SESSIONS").map(std::path::PathBuf::from);
    command_from(dir, subcommand, from_env.as_deref())
}

/// `meltr-tui resume ID` for the session in `dir`, with `--nproc N` when
/// its last start trained on N > 1 ranks: a plain resume of such a session
/// is refused (a stop's hint named the plain command for a 2-rank run).
pub fn resume_command_for(dir: &Path) -> String {
    let plain = command_for(dir, "resume");
    match super::SessionMeta::read(dir)
        .ok()
        .and_then(|m| m.world_size)
    {
        Some(ranks) if ranks > 1 => format!("{plain} --nproc {ranks}"),
        _ => plain,
    }
}

/// [`command_for`] with `MELTR_SESSIONS` as `from_env`.
fn command_from(dir: &Path, subcommand: &str, from_env: Option<&Path>) -> String {
    let id = dir.file_name().unwrap_or_default().to_string_lossy();
    let root = dir.parent().unwrap_or(Path::new("."));
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    let plain = match from_env {
        Some(env_root) => same(root, env_root),
        None => root == Path::new(DEFAULT_ROOT),
    };
    if plain {
        format!("meltr-tui {subcommand} {id}")
    } else {
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        let root = root.canonicalize().unwrap_or(root);
        format!(
            "meltr-tui --sessions-dir {} {subcommand} {id}",
            root.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The printed `attach`/`resume` names the sessions folder unless it is
    /// the default as given or `MELTR_SESSIONS`.
    #[test]
    fn printed_commands_name_a_sessions_folder_that_is_not_the_default() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("runs");
        std::fs::create_dir_all(elsewhere.join("abc")).unwrap();
        let named = format!(
            "meltr-tui --sessions-dir {} attach abc",
            elsewhere.canonicalize().unwrap().display()
        );
        assert_eq!(command_from(&elsewhere.join("abc"), "attach", None), named);
        // Given by --sessions-dir, it is named even where a folder called
        // `sessions` is that folder: the hint is typed from anywhere.
        let named_sessions = tmp.path().join("sessions");
        std::fs::create_dir_all(named_sessions.join("abc")).unwrap();
        assert!(command_from(&named_sessions.join("abc"), "attach", None)
            .starts_with("meltr-tui --sessions-dir /"));
        assert_eq!(
            command_from(&elsewhere.join("abc"), "resume", Some(&elsewhere)),
            "meltr-tui resume abc"
        );
        assert_eq!(
            command_from(Path::new("sessions/abc"), "attach", None),
            "meltr-tui attach abc"
        );
    }

    /// A stop of a 2-rank run named the plain `resume`, which is refused for
    /// such a session: the hint carries `--nproc N`.
    #[test]
    fn the_resume_hint_of_a_multi_rank_session_names_its_ranks() {
        let tmp = tempfile::tempdir().unwrap();
        let dir =
            crate::session::create(tmp.path(), "dp", &crate::config::Config::default()).unwrap();
        assert!(!resume_command_for(&dir).contains("--nproc"));
        let mut meta = crate::session::SessionMeta::read(&dir).unwrap();
        meta.world_size = Some(2);
        meta.write(&dir).unwrap();
        assert!(
            resume_command_for(&dir).ends_with(" --nproc 2"),
            "{}",
            resume_command_for(&dir)
        );
    }
}
