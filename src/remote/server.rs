//! The runner's side: a Unix socket server on its own tokio runtime thread.
//!
//! Per client there is one task holding a reader and a writer:
//!
//! * the reader parses lines into `C` and pushes them into the command channel
//!   (bounded; a full channel gets the client an error line, never a stall),
//!   answers bad lines with an error line, and ends the connection on EOF, a
//!   line cut off by EOF, a line over [`MAX_LINE`], or [`MAX_BAD_LINES`] bad
//!   lines in a row;
//! * the writer sends the greeting, then the reader's replies and the
//!   broadcast lines. Broadcast lines reach it through a
//!   [`tokio::sync::broadcast`] channel of [`BROADCAST_CAPACITY`] lines, so a
//!   client that stops reading only ever blocks its own writer; when it falls
//!   more than that behind, it loses the oldest lines and gets one
//!   `{"kind":"lagged","missed":N}` line instead.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc as tmpsc, oneshot};

use super::wire::{self, Frame, LineError, MAX_LINE};

/// Lines each client may fall behind before it loses some and gets a `lagged` line.
pub const BROADCAST_CAPACITY: usize = 1024;
/// Parsed commands waiting for the runner; past this a client gets an error line.
pub const COMMAND_QUEUE: usize = 1024;
/// Bad lines in a row after which a client is dropped.
pub const MAX_BAD_LINES: u32 = 16;
/// Error replies waiting for one client's writer; more are dropped.
const REPLY_QUEUE: usize = 64;
/// How long the writer tries to deliver the error line that closes a connection.
const FINAL_LINE_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a failed `accept` (e.g. out of file descriptors) before the next try.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

type Greeting = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// A Unix socket server that fans out lines to every attached client and
/// collects their commands, parsed into `C`.
///
/// Drop (or [`Server::shutdown`]) stops accepting, closes every client and
/// removes the socket file (only if it is still the one this server bound).
pub struct Server<C> {
    path: PathBuf,
    /// (device, inode) of the socket file we bound, so we never remove a successor's.
    file_id: (u64, u64),
    broadcaster: Broadcaster,
    commands: Receiver<C>,
    clients: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// A cheap, cloneable handle for broadcasting from any thread. Broadcasting
/// after the server stopped does nothing.
#[derive(Clone)]
pub struct Broadcaster {
    events: broadcast::Sender<Arc<str>>,
}

impl Broadcaster {
    /// Queues `line` (one JSON document without newline, normally built with
    /// [`wire::event_line`]) for every connected client. Never blocks and never
    /// waits on a client; a client that fell [`BROADCAST_CAPACITY`] lines behind
    /// loses the oldest and gets a `lagged` line. With no client connected the
    /// line is dropped. Fails only for a line that is not one frame.
    pub fn broadcast(&self, line: String) -> Result<(), LineError> {
        wire::check_line(&line)?;
        if self.events.receiver_count() == 0 {
            return Ok(());
        }
        let mut line = line;
        line.push('\n');
        // Err only when no receiver is left: nobody to send to.
        let _ = self.events.send(Arc::from(line));
        Ok(())
    }
}

impl<C: DeserializeOwned + Send + 'static> Server<C> {
    /// Serves `path`: a stale socket file there (nothing answers on it) is
    /// replaced; a live one is an error ("a runner is already serving …"), and
    /// so is any file there that is not a socket. The socket is created with
    /// mode 0600 and only peers with this process's effective uid are served.
    ///
    /// `greeting` runs on the server thread for every new client, after the
    /// client was subscribed to broadcasts; its lines go out first. So a
    /// client misses no broadcast made after its greeting was built, but may
    /// see an event both in the greeting and after it: give events a `seq` to
    /// de-duplicate. Keep `greeting` quick (it holds up the server thread) and
    /// its lines one frame each (others are skipped).
    pub fn bind(
        path: &Path,
        greeting: impl Fn() -> Vec<String> + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        super::socket_addr(path)?; // a clear error for an over-long path, before touching anything
        remove_stale_socket(path)?;
        let listener = match bind_private(path) {
            Ok(listener) => listener,
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                bail!("a runner is already serving {}", path.display())
            }
            Err(e) => return Err(e).with_context(|| format!("cannot bind {}", path.display())),
        };
        let bound = fs::symlink_metadata(path);
        let file_id = bound.as_ref().map(|m| (m.dev(), m.ino())).unwrap_or((0, 0));
        // bind_private already created it 0600 on Linux; this covers systems that ignore fchmod on sockets.
        let chmod = fs::set_permissions(path, fs::Permissions::from_mode(0o600));
        if let Err(e) = bound.and(chmod) {
            let _ = fs::remove_file(path);
            return Err(e)
                .with_context(|| format!("cannot restrict {} to mode 0600", path.display()));
        }
        Self::start(path, file_id, listener, Arc::new(greeting)).inspect_err(|_| {
            let _ = fs::remove_file(path);
        })
    }

    fn start(
        path: &Path,
        file_id: (u64, u64),
        listener: StdUnixListener,
        greeting: Greeting,
    ) -> anyhow::Result<Self> {
        listener.set_nonblocking(true)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the remote server's runtime")?;
        let listener = {
            let _context = runtime.enter();
            UnixListener::from_std(listener)?
        };
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        let (commands_tx, commands) = mpsc::sync_channel(COMMAND_QUEUE);
        let clients = Arc::new(AtomicUsize::new(0));
        let (stop, stop_rx) = oneshot::channel();
        let accept = accept_loop(
            listener,
            events.clone(),
            greeting,
            commands_tx,
            clients.clone(),
            stop_rx,
        );
        let thread = std::thread::Builder::new()
            .name("remote-server".into())
            .spawn(move || {
                runtime.block_on(accept);
                // Dropping the runtime cancels every client task, closing their sockets.
                drop(runtime);
            })
            .context("cannot start the remote server thread")?;
        Ok(Server {
            path: path.to_owned(),
            file_id,
            broadcaster: Broadcaster { events },
            commands,
            clients,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl<C> Server<C> {
    /// See [`Broadcaster::broadcast`].
    pub fn broadcast(&self, line: String) -> Result<(), LineError> {
        self.broadcaster.broadcast(line)
    }

    /// A handle to broadcast from other threads.
    pub fn broadcaster(&self) -> Broadcaster {
        self.broadcaster.clone()
    }

    /// Commands from all clients, parsed, in arrival order (per client).
    pub fn commands(&self) -> &Receiver<C> {
        &self.commands
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::SeqCst)
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops accepting, closes every client, removes the socket file.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = thread.join();
        if let Ok(meta) = fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == self.file_id {
                let _ = fs::remove_file(&self.path);
            }
        }
    }
}

impl<C> Drop for Server<C> {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Removes a socket file nothing answers on; refuses a live socket or a non-socket.
fn remove_stale_socket(path: &Path) -> anyhow::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
    };
    if !meta.file_type().is_socket() {
        bail!(
            "refusing to replace {}: it exists and is not a socket",
            path.display()
        );
    }
    match StdUnixStream::connect(path) {
        Ok(_) => bail!("a runner is already serving {}", path.display()),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                Err(e).with_context(|| format!("cannot remove stale socket {}", path.display()))
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => {
            Err(e).with_context(|| format!("cannot tell whether {} is in use", path.display()))
        }
    }
}

/// Creates a listening socket at `path` whose file is mode 0600 from the moment it exists.
///
/// On Linux the file `bind` creates takes its permission bits from the socket's
/// inode (masked by the umask), so `fchmod` before `bind` leaves no window in
/// which another user could connect, and touches no process-wide state such as
/// the umask.
pub(crate) fn bind_private(path: &Path) -> io::Result<StdUnixListener> {
    let (addr, len) = super::socket_addr(path).map_err(io::Error::other)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let kind = libc::SOCK_STREAM;
    // SAFETY: plain socket syscalls on a descriptor we own; `addr` outlives the calls.
    unsafe {
        let fd = libc::socket(libc::AF_UNIX, kind, 0);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC);
        // Where unsupported this fails harmlessly; the caller chmods after bind too.
        libc::fchmod(fd.as_raw_fd(), 0o600);
        let addr_ptr = &addr as *const libc::sockaddr_un as *const libc::sockaddr;
        if libc::bind(fd.as_raw_fd(), addr_ptr, len) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::listen(fd.as_raw_fd(), 128) != 0 {
            let e = io::Error::last_os_error();
            let _ = fs::remove_file(path);
            return Err(e);
        }
        Ok(StdUnixListener::from(fd))
    }
}

/// Why a peer is refused. Only the server's own effective uid may attach.
pub(crate) fn check_peer(peer_uid: libc::uid_t, own_euid: libc::uid_t) -> Result<(), String> {
    if peer_uid == own_euid {
        Ok(())
    } else {
        Err(format!(
            "peer uid {peer_uid} is not the server's uid {own_euid}"
        ))
    }
}

/// Decrements the client count when a connection ends, however it ends.
struct ClientGuard(Arc<AtomicUsize>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn accept_loop<C: DeserializeOwned + Send + 'static>(
    listener: UnixListener,
    events: broadcast::Sender<Arc<str>>,
    greeting: Greeting,
    commands: SyncSender<C>,
    clients: Arc<AtomicUsize>,
    mut stop: oneshot::Receiver<()>,
) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    loop {
        let stream = tokio::select! {
            biased;
            _ = &mut stop => return, // shutdown, or the Server was dropped
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let allowed = stream.peer_cred().map_err(|e| e.to_string());
        if allowed
            .and_then(|cred| check_peer(cred.uid(), euid))
            .is_err()
        {
            continue; // dropping the stream closes it before anything is sent
        }
        // Subscribe before the greeting is built, so nothing broadcast after it is missed.
        let receiver = events.subscribe();
        clients.fetch_add(1, Ordering::SeqCst);
        let guard = ClientGuard(clients.clone());
        tokio::spawn(serve_client(
            stream,
            receiver,
            greeting.clone(),
            commands.clone(),
            guard,
        ));
    }
}

async fn serve_client<C: DeserializeOwned>(
    stream: UnixStream,
    events: broadcast::Receiver<Arc<str>>,
    greeting: Greeting,
    commands: SyncSender<C>,
    guard: ClientGuard,
) {
    let (input, output) = stream.into_split();
    let (replies_tx, replies_rx) = tmpsc::channel(REPLY_QUEUE);
    let (close_tx, close_rx) = oneshot::channel();
    let greeting = greeting();
    let reader = read_loop(input, commands, replies_tx, close_tx);
    let writer = write_loop(output, greeting, events, replies_rx, close_rx);
    tokio::pin!(writer);
    tokio::select! {
        // The reader ended the connection: let the writer deliver its last line.
        _ = reader => (&mut writer).await,
        // The writer failed (the client is gone): drop the reader too.
        _ = &mut writer => {}
    }
    drop(guard);
}

/// Reads the client's lines until the connection should end; then tells the
/// writer, with the error line to send last if there is one.
async fn read_loop<C: DeserializeOwned>(
    input: OwnedReadHalf,
    commands: SyncSender<C>,
    replies: tmpsc::Sender<String>,
    close: oneshot::Sender<Option<String>>,
) {
    let mut input = BufReader::new(input);
    let mut buf = Vec::new();
    let mut bad_in_a_row = 0;
    let last_words = loop {
        match wire::read_frame_async(&mut input, &mut buf).await {
            Ok(Frame::Line) if wire::is_blank(&buf) => {}
            Ok(Frame::Line) => match wire::parse_command::<C>(&buf) {
                Ok(command) => {
                    bad_in_a_row = 0;
                    if let Err(TrySendError::Full(_)) = commands.try_send(command) {
                        let _ = replies.try_send(wire::error_line(
                            "the runner's command queue is full: command dropped, try again",
                        ));
                    }
                }
                Err(message) => {
                    bad_in_a_row += 1;
                    if bad_in_a_row >= MAX_BAD_LINES {
                        break Some(format!(
                            "{MAX_BAD_LINES} bad lines in a row, closing the connection; the last: {message}"
                        ));
                    }
                    // A client that never reads its replies only loses them.
                    let _ = replies.try_send(wire::error_line(&message));
                }
            },
            Ok(Frame::TooLong) => {
                break Some(format!(
                    "line longer than {MAX_LINE} bytes, closing the connection"
                ))
            }
            Ok(Frame::Eof) | Ok(Frame::Partial) | Err(_) => break None,
        }
    };
    let _ = close.send(last_words.map(|message| {
        let mut line = wire::error_line(&message);
        line.push('\n');
        line
    }));
}

/// Writes the greeting, then replies and broadcast lines, until the reader
/// closes the connection or the client stops taking data for good.
async fn write_loop(
    mut output: OwnedWriteHalf,
    greeting: Vec<String>,
    mut events: broadcast::Receiver<Arc<str>>,
    mut replies: tmpsc::Receiver<String>,
    mut close: oneshot::Receiver<Option<String>>,
) {
    for mut line in greeting {
        if wire::check_line(&line).is_err() {
            continue;
        }
        line.push('\n');
        if !write_or_close(&mut output, line.as_bytes(), &mut close).await {
            return;
        }
    }
    loop {
        let line: Arc<str> = tokio::select! {
            biased;
            Some(mut reply) = replies.recv() => {
                reply.push('\n');
                reply.into()
            }
            last = &mut close => {
                if let Ok(Some(line)) = last {
                    let _ = tokio::time::timeout(FINAL_LINE_TIMEOUT, output.write_all(line.as_bytes())).await;
                }
                return;
            }
            event = events.recv() => match event {
                Ok(line) => line,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    let mut line = wire::lagged_line(missed);
                    line.push('\n');
                    line.into()
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if !write_or_close(&mut output, line.as_bytes(), &mut close).await {
            return;
        }
    }
}

/// Writes one whole line; false when the write failed or the reader closed the
/// connection while the write was stuck (then no last line is sent: it would
/// land in the middle of this one).
async fn write_or_close(
    output: &mut OwnedWriteHalf,
    line: &[u8],
    close: &mut oneshot::Receiver<Option<String>>,
) -> bool {
    tokio::select! {
        biased;
        written = output.write_all(line) => written.is_ok(),
        _ = close => false,
    }
}
