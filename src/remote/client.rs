//! The TUI's side: plain std, a blocking socket for sending and one reader
//! thread that parses incoming lines into [`Incoming`].
//!
//! The reader thread hands lines over through a bounded queue
//! ([`CLIENT_QUEUE`]). A TUI that stops draining it makes the thread wait,
//! which makes the server's writer for this client wait, which makes the
//! server drop lines for it and send a `lagged` line: memory stays bounded
//! end to end and the runner never notices.

use std::io::{self, BufReader, Write};
use std::marker::PhantomData;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::wire::{self, Frame, ServerLine, MAX_LINE};

/// Parsed lines the reader thread may hold before it waits for the caller to drain them.
pub const CLIENT_QUEUE: usize = 4096;
/// How long [`Client::send`] waits for the runner to take a line before giving up on the connection.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// One line from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming<E> {
    /// A broadcast or greeting line (`{"kind":"event",...}`).
    Event {
        /// The sequence number the server's caller set, if any.
        seq: Option<u64>,
        /// The decoded payload ([`ServerLine::Event`]'s `event`).
        event: E,
    },
    /// `missed` lines were dropped for this client: re-sync (e.g. from the log on disk).
    Lagged {
        /// How many lines the server dropped.
        missed: u64,
    },
    /// The server rejected this client's last line.
    Error {
        /// The server's reason.
        message: String,
    },
    /// A line that is not a [`ServerLine<E>`] (or is over [`MAX_LINE`]): the
    /// start of it, and why it did not parse.
    Undecodable {
        /// The line's first 200 bytes (lossy UTF-8).
        line: String,
        /// The parse error, or that the line was too long.
        error: String,
    },
}

/// A connection to a runner's socket. Lines arrive parsed as [`Incoming<E>`].
///
/// Dropping it closes the connection; its reader thread then ends by itself.
pub struct Client<E> {
    stream: UnixStream,
    incoming: Receiver<Incoming<E>>,
    connected: Arc<AtomicBool>,
    _events: PhantomData<fn() -> E>,
}

impl<E: DeserializeOwned + Send + 'static> Client<E> {
    /// Connects to the runner serving `path`.
    pub fn connect(path: &Path) -> anyhow::Result<Self> {
        super::socket_addr(path)?;
        let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => anyhow!(
                "no runner is serving {}: is the session running? (there is no socket file)",
                path.display()
            ),
            io::ErrorKind::ConnectionRefused => anyhow!(
                "no runner is serving {}: is the session running? (the socket file is stale: its runner exited)",
                path.display()
            ),
            io::ErrorKind::PermissionDenied => anyhow!(
                "permission denied connecting to {}: the runner belongs to another user",
                path.display()
            ),
            _ => anyhow!(e).context(format!("cannot connect to the runner at {}", path.display())),
        })?;
        stream.set_write_timeout(Some(SEND_TIMEOUT))?;
        let reading = stream
            .try_clone()
            .context("cannot clone the runner socket")?;
        let (lines, incoming) = mpsc::sync_channel(CLIENT_QUEUE);
        let connected = Arc::new(AtomicBool::new(true));
        let still_connected = connected.clone();
        std::thread::Builder::new()
            .name("remote-client".into())
            .spawn(move || read_thread(reading, lines, still_connected))
            .context("cannot start the remote client's reader thread")?;
        Ok(Client {
            stream,
            incoming,
            connected,
            _events: PhantomData,
        })
    }
}

impl<E> Client<E> {
    /// Sends `message` as one JSON line. On any failure (including the runner
    /// not taking the line within [`SEND_TIMEOUT`]) the connection is closed,
    /// since a half-written line would corrupt the stream.
    pub fn send<T: Serialize + ?Sized>(&self, message: &T) -> anyhow::Result<()> {
        if !self.is_connected() {
            bail!("not connected to the runner");
        }
        let mut line = serde_json::to_vec(message).context("cannot serialize the command")?;
        if line.len() > MAX_LINE {
            bail!(
                "command is {} bytes, more than the {MAX_LINE} a line may hold",
                line.len()
            );
        }
        line.push(b'\n');
        (&self.stream).write_all(&line).map_err(|e| {
            self.close();
            anyhow!(e).context("cannot send to the runner; disconnected")
        })
    }

    /// Everything received since the last call, oldest first. Never blocks.
    pub fn try_recv_all(&self) -> Vec<Incoming<E>> {
        self.incoming.try_iter().collect()
    }

    /// The next line, waiting at most `timeout`; None on timeout or when the
    /// connection is closed and everything was received.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Incoming<E>> {
        self.incoming.recv_timeout(timeout).ok()
    }

    /// False once the connection is closed (the server went away, or a send
    /// failed). Every line received before that is still returned by
    /// [`Client::try_recv_all`].
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    fn close(&self) {
        self.connected.store(false, Ordering::SeqCst);
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

impl<E> Drop for Client<E> {
    fn drop(&mut self) {
        // The reader thread sees EOF (or, if it waits on a full queue, the queue
        // closing right after this) and ends.
        self.close();
    }
}

fn read_thread<E: DeserializeOwned>(
    stream: UnixStream,
    lines: SyncSender<Incoming<E>>,
    connected: Arc<AtomicBool>,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        let item = match wire::read_frame(&mut reader, &mut buf) {
            Ok(Frame::Line) if wire::is_blank(&buf) => continue,
            Ok(Frame::Line) => decode(&buf),
            Ok(Frame::TooLong) => {
                let start = String::from_utf8_lossy(&buf[..200]).into_owned();
                // Skip the rest of it without buffering.
                if io::BufRead::skip_until(&mut reader, b'\n').is_err() {
                    break;
                }
                Incoming::Undecodable {
                    line: start,
                    error: format!("line longer than {MAX_LINE} bytes"),
                }
            }
            Ok(Frame::Eof | Frame::Partial) | Err(_) => break,
        };
        if lines.send(item).is_err() {
            break; // the Client was dropped
        }
    }
    // Only after the last line was queued, so a caller who sees "disconnected" can drain all.
    connected.store(false, Ordering::SeqCst);
}

fn decode<E: DeserializeOwned>(line: &[u8]) -> Incoming<E> {
    match serde_json::from_slice::<ServerLine<E>>(line) {
        Ok(ServerLine::Event { seq, event }) => Incoming::Event { seq, event },
        Ok(ServerLine::Lagged { missed }) => Incoming::Lagged { missed },
        Ok(ServerLine::Error { message }) => Incoming::Error { message },
        Err(e) => Incoming::Undecodable {
            line: wire::truncate(&String::from_utf8_lossy(line), 200).into_owned(),
            error: e.to_string(),
        },
    }
}
