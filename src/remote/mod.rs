//! Remote attach: the transport between a training runner and the TUIs watching it.
//!
//! A runner serves a line protocol on a Unix domain socket in its session
//! directory; any number of TUI clients can attach and detach while training
//! goes on. This module owns only the transport, generic over the message
//! types:
//!
//! * [`wire`]: the framing (newline-delimited JSON, at most [`MAX_LINE`] bytes
//!   a line) and the server-to-client envelope [`ServerLine`].
//! * [`Server`]: binds the socket (mode 0600, same-uid peers only), greets each
//!   new client, fans broadcast lines out without ever waiting on a client, and
//!   hands parsed commands to the runner through a channel. Runs its own
//!   single-threaded tokio runtime on one dedicated thread.
//! * [`Client`]: plain std; a blocking socket for sending and one reader thread
//!   that parses incoming lines, drained without blocking by
//!   [`Client::try_recv_all`].
//!
//! What the events and commands mean, and what a greeting holds, belongs to
//! the caller.
#![warn(missing_docs)]

pub mod client;
pub mod server;
pub mod wire;

#[cfg(test)]
mod tests;

pub use client::{Client, Incoming};
pub use server::{Broadcaster, Server};
pub use wire::{event_line, LineError, ServerLine, MAX_LINE};

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The address for `path`, or a clear error where the path cannot name a Unix socket
/// (longer than `sun_path` allows, 107 bytes on Linux, or holding a NUL byte).
pub(crate) fn socket_addr(path: &Path) -> anyhow::Result<(libc::sockaddr_un, libc::socklen_t)> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let max = addr.sun_path.len() - 1; // room for the terminating NUL
    if bytes.len() > max {
        anyhow::bail!(
            "socket path {} is {} bytes, but a Unix socket path may hold at most {max}: \
             use a shorter session directory",
            path.display(),
            bytes.len()
        );
    }
    if bytes.is_empty() || bytes.contains(&0) {
        anyhow::bail!("socket path {:?} is empty or holds a NUL byte", path);
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    Ok((addr, len as libc::socklen_t))
}
