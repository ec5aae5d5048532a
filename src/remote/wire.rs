//! Framing: newline-delimited JSON, one message per line.
//!
//! Every line on the socket is one JSON document followed by `\n` (a `\r`
//! before the `\n` is tolerated on input, and blank lines are ignored). A
//! line's content may be at most [`MAX_LINE`] bytes; readers never buffer
//! more than `MAX_LINE + 1` bytes of one line, so a peer cannot make us
//! allocate without bound.
//!
//! * Client → server: the JSON of the caller's command type `C`, nothing else.
//! * Server → client: a [`ServerLine`], tagged by `"kind"`. The caller's own
//!   lines are `{"kind":"event","seq":N,"event":{...}}` built with
//!   [`event_line`]; `"lagged"` and `"error"` lines come from the transport.

use std::io::{self, BufRead, Read};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt};

/// Most bytes a line may hold, not counting its `\n`.
pub const MAX_LINE: usize = 1 << 20;

/// Longest `message` of a transport error line, in bytes.
pub const MAX_ERROR_MESSAGE: usize = 300;

/// One line from server to client.
///
/// ```json
/// {"kind":"event","seq":7,"event":{...}}   // the caller's broadcast (seq optional)
/// {"kind":"lagged","missed":12}            // this client missed 12 events: re-sync from disk
/// {"kind":"error","message":"..."}         // the server rejected the client's last line
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ServerLine<E> {
    /// A line the caller broadcast (or sent in the greeting).
    Event {
        /// Sequence number the caller may set, e.g. to de-duplicate against a greeting snapshot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// The caller's payload.
        event: E,
    },
    /// The client fell behind and `missed` events were dropped for it.
    Lagged {
        /// How many lines were dropped.
        missed: u64,
    },
    /// The server could not accept the client's last line.
    Error {
        /// Why, for the client to show or log.
        message: String,
    },
}

/// Why a line cannot be sent as one frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// The line is over [`MAX_LINE`] bytes.
    #[error("line is {len} bytes, more than the {MAX_LINE} bytes a line may hold")]
    TooLong {
        /// The line's length in bytes.
        len: usize,
    },
    /// The line holds a newline, which would split it into two frames.
    #[error("line contains a newline: a frame is exactly one line")]
    Newline,
}

/// The line for one broadcast event: `{"kind":"event","seq":N,"event":...}`.
///
/// Fails only where `E`'s `Serialize` fails (e.g. a map with non-string keys).
pub fn event_line<E: Serialize>(event: &E, seq: Option<u64>) -> serde_json::Result<String> {
    serde_json::to_string(&ServerLine::Event { seq, event })
}

/// `{"kind":"lagged","missed":N}`
pub fn lagged_line(missed: u64) -> String {
    serde_json::to_string(&ServerLine::<()>::Lagged { missed }).expect("serializing a lagged line")
}

/// `{"kind":"error","message":"..."}`, the message cut to [`MAX_ERROR_MESSAGE`] bytes.
pub fn error_line(message: &str) -> String {
    let message = truncate(message, MAX_ERROR_MESSAGE).into_owned();
    serde_json::to_string(&ServerLine::<()>::Error { message }).expect("serializing an error line")
}

/// Checks that `line` can go out as one frame: no newline, at most [`MAX_LINE`] bytes.
pub fn check_line(line: &str) -> Result<(), LineError> {
    if line.len() > MAX_LINE {
        return Err(LineError::TooLong { len: line.len() });
    }
    if line.as_bytes().contains(&b'\n') {
        return Err(LineError::Newline);
    }
    Ok(())
}

/// `s` cut to at most `max` bytes on a char boundary, with `…` appended when cut.
pub(crate) fn truncate(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end]).into()
}

/// Parses one client line as a command, or says what is wrong with it.
pub(crate) fn parse_command<C: DeserializeOwned>(line: &[u8]) -> Result<C, String> {
    let text = std::str::from_utf8(line).map_err(|e| {
        format!("line is not valid UTF-8 ({e}); expected one JSON command per line")
    })?;
    serde_json::from_str(text).map_err(|e| {
        let snippet = truncate(text, 80);
        format!("invalid command {snippet:?}: {e}")
    })
}

/// What one bounded read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A complete line is in the buffer, without its `\n` (or `\r\n`).
    Line,
    /// More than [`MAX_LINE`] bytes without a newline; the buffer holds the first `MAX_LINE + 1`.
    TooLong,
    /// End of stream before any byte of a new line.
    Eof,
    /// End of stream in the middle of a line (the peer went away mid-line).
    Partial,
}

/// Upper bound handed to `take` so a single read never buffers more than one over-long line's worth.
const READ_LIMIT: u64 = MAX_LINE as u64 + 1;

fn classify(buf: &mut Vec<u8>, n: usize) -> Frame {
    if n == 0 {
        Frame::Eof
    } else if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        Frame::Line
    } else if n > MAX_LINE {
        Frame::TooLong
    } else {
        Frame::Partial
    }
}

/// Keeps a buffer that once held a huge line from pinning a megabyte per connection.
fn reset(buf: &mut Vec<u8>) {
    buf.clear();
    if buf.capacity() > 64 * 1024 {
        buf.shrink_to(64 * 1024);
    }
}

/// Reads one line into `buf` (cleared first), never buffering more than `MAX_LINE + 1` bytes.
pub(crate) fn read_frame<R: BufRead>(reader: &mut R, buf: &mut Vec<u8>) -> io::Result<Frame> {
    reset(buf);
    let n = Read::take(reader, READ_LIMIT).read_until(b'\n', buf)?;
    Ok(classify(buf, n))
}

/// Async twin of [`read_frame`].
pub(crate) async fn read_frame_async<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> io::Result<Frame> {
    reset(buf);
    let n = AsyncReadExt::take(reader, READ_LIMIT)
        .read_until(b'\n', buf)
        .await?;
    Ok(classify(buf, n))
}

/// True for a line that holds only whitespace (ignored by both ends).
pub(crate) fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}
