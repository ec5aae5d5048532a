//! The session directory's layout, named once (DESIGN.md's contract):
//!
//! ```text
//! SESSION/
//!   config.toml            the config asked for (edited live)
//!   config.in-force.toml   the config the trainer runs with
//!   session.json           id, status, pid, device, losses, ...
//!   metrics.jsonl          one JSON line per record, append-only
//!   checkpoints/           step-NNNNNNNNNN.safetensors
//!   plots/                 exported figures
//!   trace/                 train.trace = true: the run for the replay
//!   output.log             a runner's (or the TUI's) stdout and stderr
//!   runner.sock            a detached runner's socket (see SessionDir::socket:
//!                          elsewhere when this path is too long for a socket)
//! ```

use anyhow::{bail, Context};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The socket's name in the session folder.
const SOCKET_NAME: &str = "runner.sock";

/// A session's folder, and where each of its files lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDir(PathBuf);

impl SessionDir {
    /// The layout of the session folder at `path`; nothing is created or checked.
    pub fn new(path: impl Into<PathBuf>) -> SessionDir {
        SessionDir(path.into())
    }

    /// The folder itself, as given.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The folder's name: the session id.
    pub fn id(&self) -> String {
        self.0
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// `config.toml`: the config asked for, which the user edits live.
    pub fn config(&self) -> PathBuf {
        self.0.join("config.toml")
    }

    /// What a resume takes restart-only keys from: `config.toml` may hold
    /// an edit that was refused.
    pub fn config_in_force(&self) -> PathBuf {
        self.0.join("config.in-force.toml")
    }

    /// `session.json`: the session's [`SessionMeta`](super::SessionMeta).
    pub fn session_json(&self) -> PathBuf {
        self.0.join("session.json")
    }

    /// `metrics.jsonl`: the append-only log of [`MetricLine`](super::metrics::MetricLine)s.
    pub fn metrics(&self) -> PathBuf {
        self.0.join("metrics.jsonl")
    }

    /// `checkpoints/`: the newest few checkpoints, one safetensors file each.
    pub fn checkpoints(&self) -> PathBuf {
        self.0.join("checkpoints")
    }

    /// `plots/`: figures exported from the session.
    pub fn plots(&self) -> PathBuf {
        self.0.join("plots")
    }

    /// `trace/`: the run written down for the Python replay (`train.trace`).
    pub fn trace(&self) -> PathBuf {
        self.0.join("trace")
    }

    /// `output.log`: a runner's (or the TUI's) stdout and stderr.
    pub fn output_log(&self) -> PathBuf {
        self.0.join("output.log")
    }

    /// The runner's socket, by absolute path (clients in any working
    /// directory reach the same one): `runner.sock` in the folder, or, where
    /// that path is longer than a Unix socket path may be (107 bytes on
    /// Linux), `<hash>.sock` in [`fallback_socket_dir`], the hash taken of
    /// the folder's canonical path. The runner and every client work it out
    /// alike, from the path alone: nothing needs to be recorded.
    pub fn socket(&self) -> PathBuf {
        let folder = self.canonical();
        let in_folder = folder.join(SOCKET_NAME);
        if socket_fits(&in_folder) {
            in_folder
        } else {
            fallback_socket_dir().join(format!(
                "{:016x}.sock",
                fnv1a_64(folder.as_os_str().as_bytes())
            ))
        }
    }

    /// Whether [`socket`](Self::socket) is outside the folder (its path in
    /// the folder would be too long for a Unix socket).
    pub fn socket_elsewhere(&self) -> bool {
        self.socket() != self.canonical().join(SOCKET_NAME)
    }

    /// Makes the socket's place ready for a runner to bind and returns the
    /// socket path: in the folder there is nothing to do; the shared
    /// [`fallback_socket_dir`] is created with mode 0700, or checked to be a
    /// directory owned by this user and closed to others. Fails, saying why,
    /// where the socket has no place.
    pub fn prepare_socket(&self) -> anyhow::Result<PathBuf> {
        let socket = self.socket();
        if !self.socket_elsewhere() {
            return Ok(socket);
        }
        let in_folder = self.canonical().join(SOCKET_NAME);
        let why = format!(
            "the runner's socket cannot go in the session folder ({} is {} bytes, more than \
             the {} a Unix socket path may hold)",
            in_folder.display(),
            in_folder.as_os_str().len(),
            max_socket_path()
        );
        if let Err(e) = prepare_private_dir(&fallback_socket_dir())
            .and_then(|()| crate::remote::socket_addr(&socket).map(|_| ()))
        {
            bail!(
                "{why}, nor in {}: {e:#}; use a shorter sessions folder (--sessions-dir or \
                 $MELTR_SESSIONS)",
                fallback_socket_dir().display()
            );
        }
        Ok(socket)
    }

    /// The folder's canonical path (as given while it does not exist).
    fn canonical(&self) -> PathBuf {
        std::fs::canonicalize(&self.0).unwrap_or_else(|_| self.0.clone())
    }

    /// Whether the folder holds a session (its `session.json`).
    pub fn is_session(&self) -> bool {
        self.session_json().is_file()
    }
}

impl AsRef<Path> for SessionDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

/// Where runner sockets go whose session folder's path is too long for one:
/// `/tmp/meltr-tui-<uid>/`. Fixed rather than taken from the environment
/// (`$XDG_RUNTIME_DIR`, `$TMPDIR`), so a client started from another login,
/// `cron` or `sudo -u` finds the same socket, and a detached runner keeps
/// it when the login that started it ends (logind removes `/run/user/<uid>`).
pub fn fallback_socket_dir() -> PathBuf {
    // SAFETY: geteuid cannot fail and touches no memory.
    PathBuf::from(format!("/tmp/meltr-tui-{}", unsafe { libc::geteuid() }))
}

/// The longest path a Unix socket may have (`sun_path` less its NUL: 107
/// bytes on Linux).
pub fn max_socket_path() -> usize {
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_path.len() - 1
}

fn socket_fits(path: &Path) -> bool {
    crate::remote::socket_addr(path).is_ok()
}

/// 64-bit FNV-1a: a hash that stays the same across Rust versions and
/// builds (std's `DefaultHasher` does not promise to), so runners and
/// clients of different builds name a socket alike.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}

/// Creates `dir` with mode 0700, or checks the one there: a real directory
/// (not a symlink), owned by this user; one of ours open to others is
/// closed (chmod 0700). Someone else's is refused: they could read or
/// replace the sockets in it.
fn prepare_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir)
        .with_context(|| format!("cannot inspect {}", dir.display()))?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory (a symlink or a file is in the way)",
            dir.display()
        );
    }
    // SAFETY: geteuid cannot fail and touches no memory.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid {
        bail!(
            "{} belongs to uid {}, not to you (uid {uid}), so it cannot hold your runner's socket",
            dir.display(),
            meta.uid()
        );
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {} to mode 0700", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn fnv1a_64_matches_the_reference_values() {
        assert_eq!(fnv1a_64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a_64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn a_socket_path_too_long_for_the_folder_goes_to_the_fallback_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let short = SessionDir::new(tmp.path().join("s"));
        std::fs::create_dir(short.path()).unwrap();
        assert_eq!(
            short.socket(),
            std::fs::canonicalize(short.path())
                .unwrap()
                .join("runner.sock")
        );
        assert!(!short.socket_elsewhere());

        let deep = tmp.path().join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let long = SessionDir::new(&deep);
        let socket = long.socket();
        assert!(long.socket_elsewhere());
        assert_eq!(socket.parent(), Some(fallback_socket_dir().as_path()));
        assert!(socket.as_os_str().len() <= max_socket_path(), "{socket:?}");
        // The same folder named another way (relative, with `..`) gives the
        // same socket; another folder another one.
        let roundabout = SessionDir::new(deep.join("..").join("e".repeat(60)));
        assert_eq!(roundabout.socket(), socket);
        let other = tmp.path().join("d".repeat(60)).join("f".repeat(60));
        std::fs::create_dir_all(&other).unwrap();
        assert_ne!(SessionDir::new(&other).socket(), socket);

        assert_eq!(long.prepare_socket().unwrap(), socket);
        let meta = std::fs::symlink_metadata(fallback_socket_dir()).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.mode() & 0o777, 0o700);
    }

    #[test]
    fn the_fallback_folder_must_be_a_private_directory_of_ours() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("sockets");
        prepare_private_dir(&dir).unwrap();
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        // Ours but open to others: closed.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        prepare_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        // A symlink (even to a directory of ours) or a file: refused.
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let err = prepare_private_dir(&link).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = prepare_private_dir(&file).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
        // Someone else's: refused (only root can make one here).
        if unsafe { libc::geteuid() } == 0 {
            let theirs = tmp.path().join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            let err = prepare_private_dir(&theirs).unwrap_err().to_string();
            assert!(err.contains("belongs to uid 65534"), "{err}");
        } else {
            eprintln!("NOTE: not root, so a folder of another user was not tried");
        }
    }
}
