//! Where a session came from, recorded in `session.json` when it is
//! created: the meltr-tui version, the host, the command line, and the git
//! commit of the working folder when it is inside a repository. Every field
//! is optional so that sessions written before (or where a fact cannot be
//! found) still read.

use serde::{Deserialize, Serialize};
use std::path::Path;
use std::process::{Command, Stdio};

/// The facts that let a result be traced back to code and machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The meltr-tui version that created the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meltr_tui_version: Option<String>,
    /// The machine's host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The command line that created the session, one argument an item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// `HEAD` of the git repository the working folder is in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// Whether that repository had uncommitted changes to tracked files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_dirty: Option<bool>,
}

/// The command line a background process (a sweep's detached driver)
/// records for the sessions it creates: the user's, as a JSON array, not
/// its own `sweep resume GROUP` (walkthrough S read a resume that was
/// never run as its members' command).
pub const COMMAND_ENV: &str = "MELTR_TUI_USER_COMMAND";

/// This process's command line as [`Provenance::command`] records it.
fn command_line() -> Vec<String> {
    std::env::var(COMMAND_ENV)
        .ok()
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_else(|| std::env::args().collect())
}

impl Provenance {
    /// The facts of the running process, in its working folder.
    pub fn of_this_process() -> Provenance {
        let cwd = std::env::current_dir().ok();
        let (git_commit, git_dirty) = match cwd.as_deref().and_then(git_commit) {
            Some(commit) => (Some(commit), cwd.as_deref().and_then(git_dirty)),
            None => (None, None),
        };
        Provenance {
            meltr_tui_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            host: host_name(),
            command: Some(command_line()),
            git_commit,
            git_dirty,
        }
    }
}

/// The host name (`gethostname`), if it is valid UTF-8.
pub fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates
    // within it when the name fits (and we cap at the first NUL anyway).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..end]).ok()?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// Runs `git` in `dir`; its trimmed stdout when it succeeds (no git, or
/// not a repository: None).
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The commit `HEAD` names in the repository around `dir`.
pub fn git_commit(dir: &Path) -> Option<String> {
    git(dir, &["rev-parse", "--verify", "HEAD"]).filter(|c| !c.is_empty())
}

/// Whether tracked files in the repository around `dir` differ from `HEAD`.
fn git_dirty(dir: &Path) -> Option<bool> {
    git(dir, &["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repository_gives_its_head_and_a_plain_folder_none() {
        let repo = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| {
            let ok = Command::new("git")
                .arg("-C")
                .arg(repo.path())
                .args(args)
                .output()
                .unwrap()
                .status
                .success();
            assert!(ok, "git {args:?}");
        };
        run(&["init", "-q"]);
        std::fs::write(repo.path().join("a"), "1").unwrap();
        run(&["add", "a"]);
        run(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "one",
        ]);
        // HEAD read from the files, not through git.
        let head_ref = std::fs::read_to_string(repo.path().join(".git/HEAD")).unwrap();
        let branch = head_ref.trim().strip_prefix("ref: ").unwrap();
        let head = std::fs::read_to_string(repo.path().join(".git").join(branch)).unwrap();
        assert_eq!(git_commit(repo.path()).as_deref(), Some(head.trim()));
        assert_eq!(git_dirty(repo.path()), Some(false));
        std::fs::write(repo.path().join("a"), "2").unwrap();
        assert_eq!(git_dirty(repo.path()), Some(true));
        let plain = tempfile::tempdir().unwrap();
        assert_eq!(git_commit(plain.path()), None);
    }

    #[test]
    fn old_session_json_without_the_fields_still_reads() {
        let p: Provenance = serde_json::from_str("{}").unwrap();
        assert_eq!(p, Provenance::default());
        let here = Provenance::of_this_process();
        assert!(here.host.is_some() && here.command.is_some());
        let text = serde_json::to_string(&here).unwrap();
        assert_eq!(serde_json::from_str::<Provenance>(&text).unwrap(), here);
    }
}
