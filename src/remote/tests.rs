//! Tests of the remote transport: real sockets in temporary directories.
//!
//! Long: one test module for the transport, read top to bottom like its
//! contract (framing, limits, permissions, clients coming and going).

use std::fs;
use std::io::{BufRead, BufReader, Cursor, ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::server::{bind_private, check_peer, MAX_BAD_LINES};
use super::wire::{self, Frame, MAX_ERROR_MESSAGE};
use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
enum Cmd {
    Pause,
    Resume,
    SetLr { lr: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Ev {
    Status { state: String },
    Step { step: u64, pad: String },
}

const TIMEOUT: Duration = Duration::from_secs(5);

fn status(state: &str) -> Ev {
    Ev::Status {
        state: state.into(),
    }
}

fn step(step: u64) -> Ev {
    Ev::Step {
        step,
        pad: String::new(),
    }
}

fn greeting() -> Vec<String> {
    vec![
        event_line(&status("config"), None).unwrap(),
        event_line(&status("running"), None).unwrap(),
    ]
}

fn socket_in(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("runner.sock")
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o777
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn next<E: std::fmt::Debug>(client: &Client<E>) -> Incoming<E> {
    client
        .recv_timeout(TIMEOUT)
        .expect("a line within the timeout")
}

fn expect_greeting(client: &Client<Ev>) {
    assert_eq!(
        next(client),
        Incoming::Event {
            seq: None,
            event: status("config")
        }
    );
    assert_eq!(
        next(client),
        Incoming::Event {
            seq: None,
            event: status("running")
        }
    );
}

/// A raw connection, for sending what a well-behaved client never would.
fn raw(path: &Path) -> (UnixStream, BufReader<UnixStream>) {
    let stream = UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    let reader = BufReader::new(stream.try_clone().unwrap());
    (stream, reader)
}

/// The next line as JSON; None at EOF or on a reset connection.
fn read_json(reader: &mut BufReader<UnixStream>) -> Option<Value> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => None,
        Ok(_) => Some(serde_json::from_str(&line).expect("the server sends JSON lines")),
        Err(e) if e.kind() == ErrorKind::ConnectionReset => None,
        Err(e) => panic!("reading from the server: {e}"),
    }
}

fn read_raw_greeting(reader: &mut BufReader<UnixStream>) {
    for state in ["config", "running"] {
        let line = read_json(reader).unwrap();
        assert_eq!(line["kind"], "event");
        assert_eq!(line["event"]["state"], state);
    }
}

fn expect_error(reader: &mut BufReader<UnixStream>, needle: &str) -> String {
    let line = read_json(reader).expect("an error line");
    assert_eq!(line["kind"], "error", "{line}");
    let message = line["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains(needle),
        "{message:?} should mention {needle:?}"
    );
    message
}

fn next_command(server: &Server<Cmd>) -> Cmd {
    server
        .commands()
        .recv_timeout(TIMEOUT)
        .expect("a command within the timeout")
}

/// Check 1: Greeting first, then the same broadcasts in the same order for every
/// client; commands from every client arrive parsed.
#[test]
fn clients_get_greeting_then_broadcasts_in_order_and_commands_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let server = Server::<Cmd>::bind(&path, greeting).unwrap();
    let a = Client::<Ev>::connect(&path).unwrap();
    let b = Client::<Ev>::connect(&path).unwrap();
    // Seeing the greeting means being subscribed: every later broadcast arrives.
    expect_greeting(&a);
    expect_greeting(&b);
    assert_eq!(server.clients(), 2);
    for i in 0..100 {
        server
            .broadcast(event_line(&step(i), Some(i)).unwrap())
            .unwrap();
    }
    for client in [&a, &b] {
        for i in 0..100 {
            assert_eq!(
                next(client),
                Incoming::Event {
                    seq: Some(i),
                    event: step(i)
                }
            );
        }
        assert!(client.try_recv_all().is_empty());
    }

    a.send(&Cmd::Pause).unwrap();
    b.send(&Cmd::SetLr { lr: 0.5 }).unwrap();
    a.send(&Cmd::Resume).unwrap();
    let got: Vec<Cmd> = (0..3).map(|_| next_command(&server)).collect();
    let from_a: Vec<&Cmd> = got
        .iter()
        .filter(|c| **c != Cmd::SetLr { lr: 0.5 })
        .collect();
    assert_eq!(
        from_a,
        [&Cmd::Pause, &Cmd::Resume],
        "per-client order kept: {got:?}"
    );
    assert!(got.contains(&Cmd::SetLr { lr: 0.5 }));

    // A client that attaches while broadcasts go on still gets its greeting
    // first, then an unbroken run of events.
    let sent = Arc::new(AtomicU64::new(0));
    let broadcaster = server.broadcaster();
    let counter = sent.clone();
    let producer = std::thread::spawn(move || {
        for i in 0..200 {
            broadcaster
                .broadcast(event_line(&step(i), Some(i)).unwrap())
                .unwrap();
            counter.store(i + 1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_micros(300));
        }
    });
    wait_until("some events are out", || sent.load(Ordering::SeqCst) >= 20);
    let c = Client::<Ev>::connect(&path).unwrap();
    expect_greeting(&c);
    producer.join().unwrap();
    let mut expected = None;
    loop {
        match next(&c) {
            Incoming::Event { seq: Some(seq), .. } => {
                assert!(
                    expected.is_none_or(|e| e == seq),
                    "gap: {expected:?} then {seq}"
                );
                expected = Some(seq + 1);
                if seq == 199 {
                    break;
                }
            }
            other => panic!("after the greeting only events may come, got {other:?}"),
        }
    }

    // Nothing broadcast after a client's greeting was built is lost: the
    // greeting reports how many events were out, the first event after it is
    // at most the next one.
    let published = Arc::new(AtomicU64::new(0));
    let snapshot = published.clone();
    let path2 = dir.path().join("second.sock");
    let second = Server::<Cmd>::bind(&path2, move || {
        let n = snapshot.load(Ordering::SeqCst);
        vec![event_line(&status(&n.to_string()), None).unwrap()]
    })
    .unwrap();
    let broadcaster = second.broadcaster();
    let counter = published.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let producer = std::thread::spawn(move || {
        for i in 0..1_000_000 {
            if stopped.load(Ordering::SeqCst) {
                break;
            }
            // Counted before it goes out: a greeting that read n saw events < n - 1 complete.
            counter.store(i + 1, Ordering::SeqCst);
            broadcaster
                .broadcast(event_line(&step(i), Some(i)).unwrap())
                .unwrap();
            std::thread::sleep(Duration::from_micros(50));
        }
    });
    wait_until("the producer runs", || {
        published.load(Ordering::SeqCst) > 10
    });
    for _ in 0..5 {
        let d = Client::<Ev>::connect(&path2).unwrap();
        let Incoming::Event {
            event: Ev::Status { state },
            ..
        } = next(&d)
        else {
            panic!("greeting first");
        };
        let seen: u64 = state.parse().unwrap();
        match next(&d) {
            Incoming::Event { seq: Some(seq), .. } => {
                assert!(
                    seq <= seen,
                    "greeting saw {seen} events out, yet the next was {seq}"
                )
            }
            // Fell behind at once (a loaded machine): subscribed all the same, nothing to check.
            Incoming::Lagged { .. } => {}
            other => panic!("expected an event, got {other:?}"),
        }
    }
    stop.store(true, Ordering::SeqCst);
    producer.join().unwrap();

    drop(a);
    wait_until("the dropped client is counted out", || {
        server.clients() == 2
    });
    assert!(b.is_connected());
    server.shutdown();
    wait_until("b notices the server went away", || !b.is_connected());
    assert!(b.send(&Cmd::Pause).is_err());
}

/// Check 2: Bad lines get an error line and leave the connection usable; 16 in a
/// row drop the client; the server goes on serving.
#[test]
fn garbage_gets_error_lines_and_too_much_garbage_drops_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let server = Server::<Cmd>::bind(&path, greeting).unwrap();
    let (mut out, mut input) = raw(&path);
    read_raw_greeting(&mut input);

    out.write_all(b"not json\n").unwrap();
    expect_error(&mut input, "invalid command \"not json\"");
    out.write_all(b"{\"cmd\":\"p\xffause\"}\n\xfe\xfe\n")
        .unwrap();
    expect_error(&mut input, "not valid UTF-8");
    expect_error(&mut input, "not valid UTF-8");
    out.write_all(b"{\"cmd\":\"fly\"}\n").unwrap();
    expect_error(&mut input, "unknown variant `fly`");
    out.write_all(b"{\"cmd\":\"set_lr\"}\r\n").unwrap();
    expect_error(&mut input, "missing field `lr`");
    let long_garbage = format!("{}\n", "z".repeat(10_000));
    out.write_all(long_garbage.as_bytes()).unwrap();
    let message = expect_error(&mut input, "invalid command");
    assert!(
        message.len() <= MAX_ERROR_MESSAGE,
        "message not truncated: {} bytes",
        message.len()
    );

    // Six bad lines so far, then blank lines (ignored) and a good one: it
    // arrives, and resets the count.
    out.write_all(b"\n  \n{\"cmd\":\"set_lr\",\"lr\":0.001}\r\n")
        .unwrap();
    assert_eq!(next_command(&server), Cmd::SetLr { lr: 0.001 });
    out.write_all(b"{\"cmd\":\"pause\"}\n").unwrap();
    assert_eq!(next_command(&server), Cmd::Pause);
    assert_eq!(server.clients(), 1);

    let burst = "[1,2\n".repeat(MAX_BAD_LINES as usize);
    out.write_all(burst.as_bytes()).unwrap();
    for _ in 1..MAX_BAD_LINES {
        expect_error(&mut input, "invalid command");
    }
    expect_error(&mut input, "16 bad lines in a row, closing the connection");
    assert_eq!(
        read_json(&mut input),
        None,
        "the connection is closed after the 16th bad line"
    );
    wait_until("the dropped client is counted out", || {
        server.clients() == 0
    });
    assert!(server.commands().try_recv().is_err());

    let client = Client::<Ev>::connect(&path).unwrap();
    expect_greeting(&client);
    client.send(&Cmd::Resume).unwrap();
    assert_eq!(next_command(&server), Cmd::Resume);
}

/// Check 3: A client that goes away mid-line, and one that sends a line over
/// MAX_LINE: neither yields a command, the second gets an error line and is
/// dropped after the server read little more than MAX_LINE bytes.
#[test]
fn half_lines_and_over_long_lines_are_dropped_with_bounded_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let server = Server::<Cmd>::bind(&path, greeting).unwrap();

    // A line only counts once its newline arrives, even if it is whole JSON;
    // whether the client leaves cleanly (EOF) or with our greeting unread
    // (the server's read fails with ECONNRESET).
    for half in [&b"{\"cmd\":\"pau"[..], b"{\"cmd\":\"pause\"}"] {
        for read_greeting in [true, false] {
            let (mut out, mut input) = raw(&path);
            if read_greeting {
                read_raw_greeting(&mut input);
            }
            wait_until("the client is counted", || server.clients() == 1);
            out.write_all(half).unwrap();
            drop((out, input));
            wait_until("the half-line client is counted out", || {
                server.clients() == 0
            });
        }
    }

    let (mut out, mut input) = raw(&path);
    read_raw_greeting(&mut input);
    // Offer 16 MiB without a newline; the server must stop taking it shortly
    // after MAX_LINE + 1 bytes (plus what kernel buffers hold).
    let chunk = vec![b'a'; 64 * 1024];
    let mut accepted = 0usize;
    while accepted < 16 * MAX_LINE {
        match out.write(&chunk) {
            Ok(n) => accepted += n,
            Err(e) => {
                assert!(
                    matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
                    "the server should close on us, got {e}"
                );
                break;
            }
        }
    }
    assert!(accepted > MAX_LINE, "the server read only {accepted} bytes");
    assert!(
        accepted < 4 * MAX_LINE,
        "the server kept reading: {accepted} bytes taken"
    );
    expect_error(&mut input, &format!("line longer than {MAX_LINE} bytes"));
    assert_eq!(read_json(&mut input), None);
    wait_until("the over-long client is counted out", || {
        server.clients() == 0
    });
    assert!(
        server.commands().try_recv().is_err(),
        "no command came of either"
    );

    let client = Client::<Ev>::connect(&path).unwrap();
    expect_greeting(&client);
    client.send(&Cmd::Pause).unwrap();
    assert_eq!(next_command(&server), Cmd::Pause);
    server
        .broadcast(event_line(&step(1), Some(1)).unwrap())
        .unwrap();
    assert_eq!(
        next(&client),
        Incoming::Event {
            seq: Some(1),
            event: step(1)
        }
    );
}

/// Check 4: A client that never reads stalls neither `broadcast` nor other
/// clients; when it reads at last it finds a `lagged` line.
#[test]
fn a_client_that_never_reads_stalls_nothing_and_later_sees_lagged() {
    const LINES: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let server = Server::<Cmd>::bind(&path, greeting).unwrap();
    let (slow, mut slow_input) = raw(&path);
    let fast = Client::<Ev>::connect(&path).unwrap();
    wait_until("both clients are counted", || server.clients() == 2);

    // Built with format! rather than serde: a debug build's serializer would dominate the loop.
    let pad = "x".repeat(130);
    let template = event_line(
        &Ev::Step {
            step: 7,
            pad: pad.clone(),
        },
        Some(7),
    )
    .unwrap();
    let started = Instant::now();
    let mut in_broadcast = Duration::ZERO;
    let mut slowest_call = Duration::ZERO;
    for i in 0..LINES {
        let line = format!(
            r#"{{"kind":"event","seq":{i},"event":{{"type":"step","step":{i},"pad":"{pad}"}}}}"#
        );
        if i == 7 {
            assert_eq!(line, template);
        }
        let call = Instant::now();
        server.broadcast(line).unwrap();
        let call = call.elapsed();
        in_broadcast += call;
        slowest_call = slowest_call.max(call);
    }
    let took = started.elapsed();
    eprintln!(
        "{LINES} broadcasts of {} bytes: loop {took:?}, inside broadcast {in_broadcast:?}, \
         slowest call {slowest_call:?}",
        template.len()
    );
    assert!(
        in_broadcast < Duration::from_secs(2),
        "broadcasting stalled: {in_broadcast:?}"
    );

    // The reading client gets the latest line while the slow one still reads nothing.
    let mut lagged = 0;
    let mut last = None;
    while last != Some(LINES - 1) {
        match next(&fast) {
            Incoming::Event { seq, .. } => last = seq,
            Incoming::Lagged { missed } => lagged += missed,
            other => panic!("unexpected {other:?}"),
        }
    }
    eprintln!("the reading client missed {lagged} lines");

    read_raw_greeting(&mut slow_input);
    let mut missed = None;
    let mut seen_last = false;
    let mut count = 0;
    while !seen_last {
        let line = read_json(&mut slow_input).expect("the slow client stays connected");
        count += 1;
        match line["kind"].as_str() {
            Some("lagged") => *missed.get_or_insert(0) += line["missed"].as_u64().unwrap(),
            Some("event") => seen_last = line["seq"] == LINES - 1,
            _ => panic!("unexpected {line}"),
        }
    }
    let missed = missed.expect("the slow client was told it lagged");
    eprintln!("the slow client read {count} lines and missed {missed}");
    assert!(missed > LINES / 2);
    assert!(
        count < 10_000,
        "a slow client's backlog must stay bounded, read {count}"
    );
    drop(slow);
}

/// Check 5: The socket file: mode 0600 from the start, one server per path, gone
/// after shutdown (but never a successor's), stale ones replaced, clear errors.
#[test]
fn socket_file_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);

    // bind_private alone (no chmod after it) already makes the file 0600,
    // whereas a plain bind under this umask would not.
    let plain = dir.path().join("plain.sock");
    drop(StdUnixListener::bind(&plain).unwrap());
    let private = dir.path().join("private.sock");
    drop(bind_private(&private).unwrap());
    assert_eq!(mode(&private), 0o600);
    eprintln!("a plain bind gives mode {:o}", mode(&plain));

    let server = Server::<Cmd>::bind(&path, greeting).unwrap();
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_socket());
    assert_eq!(mode(&path), 0o600);
    let err = Server::<Cmd>::bind(&path, greeting)
        .err()
        .expect("a second bind fails");
    assert_eq!(
        err.to_string(),
        format!("a runner is already serving {}", path.display())
    );
    let client = Client::<Ev>::connect(&path).unwrap();
    expect_greeting(&client);
    server.shutdown();
    assert!(!path.exists(), "shutdown removes the socket file");
    wait_until("the client notices", || !client.is_connected());
    let err = Client::<Ev>::connect(&path).err().unwrap().to_string();
    assert!(
        err.starts_with(&format!("no runner is serving {}", path.display())),
        "{err}"
    );

    // A stale socket file (its listener gone, the file left) is replaced.
    drop(StdUnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let err = Client::<Ev>::connect(&path).err().unwrap().to_string();
    assert!(err.contains("stale"), "{err}");
    let server = Server::<Cmd>::bind(&path, greeting).unwrap();
    assert_eq!(mode(&path), 0o600);
    let client = Client::<Ev>::connect(&path).unwrap();
    expect_greeting(&client);
    drop(server);
    assert!(!path.exists(), "drop removes the socket file");

    // A server whose file was replaced leaves its successor's file alone.
    let first = Server::<Cmd>::bind(&path, greeting).unwrap();
    fs::remove_file(&path).unwrap();
    let second = Server::<Cmd>::bind(&path, greeting).unwrap();
    drop(first);
    assert!(
        path.exists(),
        "the first server removed its successor's socket"
    );
    expect_greeting(&Client::<Ev>::connect(&path).unwrap());
    drop(second);
    assert!(!path.exists());

    // Not a socket: left alone.
    fs::write(&path, "precious").unwrap();
    let err = Server::<Cmd>::bind(&path, greeting)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "precious");

    // Paths too long for sun_path: a clear error naming the path, both ends.
    let long = dir.path().join("s".repeat(120));
    let err = Server::<Cmd>::bind(&long, greeting)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains(&long.display().to_string()) && err.contains("at most 107"),
        "{err}"
    );
    let err = Client::<Ev>::connect(&long).err().unwrap().to_string();
    assert!(err.contains("at most 107"), "{err}");
}

/// What a forked child saw trying to attach.
#[derive(Debug, PartialEq)]
enum Attach {
    Denied,
    ConnectFailed,
    SetuidFailed,
    GotData,
    ClosedWithoutData,
    ReadFailed,
}

/// Connects from a forked child running as `uid` (None: as we are) and
/// reports what happened. The child only makes raw syscalls and `_exit`s.
fn attach_from_child(path: &Path, uid: Option<libc::uid_t>) -> Attach {
    let (addr, len) = socket_addr(path).unwrap();
    // SAFETY: the child runs only async-signal-safe syscalls, then _exit.
    unsafe {
        let pid = libc::fork();
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            if let Some(uid) = uid {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(uid) != 0
                    || libc::setuid(uid) != 0
                {
                    libc::_exit(12);
                }
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
            let timeout = libc::timeval {
                tv_sec: 3,
                tv_usec: 0,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &timeout as *const libc::timeval as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
            let addr_ptr = &addr as *const libc::sockaddr_un as *const libc::sockaddr;
            if libc::connect(fd, addr_ptr, len) != 0 {
                let errno = std::io::Error::last_os_error().raw_os_error();
                libc::_exit(if errno == Some(libc::EACCES) { 10 } else { 11 });
            }
            let mut byte = 0u8;
            let n = libc::read(fd, &mut byte as *mut u8 as *mut libc::c_void, 1);
            let errno = std::io::Error::last_os_error().raw_os_error();
            libc::_exit(match n {
                1 => 13,
                0 => 14,
                _ if errno == Some(libc::ECONNRESET) => 14,
                _ => 15,
            });
        }
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
        assert!(libc::WIFEXITED(status), "child died: status {status}");
        match libc::WEXITSTATUS(status) {
            10 => Attach::Denied,
            11 => Attach::ConnectFailed,
            12 => Attach::SetuidFailed,
            13 => Attach::GotData,
            14 => Attach::ClosedWithoutData,
            15 => Attach::ReadFailed,
            other => panic!("child exited {other}"),
        }
    }
}

/// Check 6: Other users cannot attach: the socket's mode stops them, and past the
/// mode the server's SO_PEERCRED check closes them before sending anything.
#[test]
fn other_users_are_refused() {
    assert!(check_peer(0, 0).is_ok());
    assert!(check_peer(1000, 1000).is_ok());
    assert!(check_peer(65534, 0).unwrap_err().contains("peer uid 65534"));
    assert!(
        check_peer(0, 1000).is_err(),
        "not even root may attach to another user's runner"
    );

    let dir = tempfile::tempdir().unwrap();
    // Let everyone traverse the directory, so only the socket's own mode can stop them.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let path = socket_in(&dir);
    let server = Server::<Cmd>::bind(&path, greeting).unwrap();
    assert_eq!(mode(&path), 0o600);

    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "NOTE other_users_are_refused: not running as root, so only the socket mode (0600) \
             and check_peer were checked; attaching as another uid needs root"
        );
        return;
    }
    assert_eq!(
        attach_from_child(&path, None),
        Attach::GotData,
        "control: our own uid is served"
    );
    let nobody = 65534;
    let as_nobody = attach_from_child(&path, Some(nobody));
    assert_ne!(
        as_nobody,
        Attach::SetuidFailed,
        "cannot become uid {nobody} to run this test"
    );
    assert_eq!(
        as_nobody,
        Attach::Denied,
        "mode 0600 must refuse uid {nobody}"
    );

    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    assert_eq!(
        attach_from_child(&path, Some(nobody)),
        Attach::ClosedWithoutData,
        "the peer-uid check must close uid {nobody}'s connection before the greeting"
    );
    wait_until("refused and finished peers are not counted", || {
        server.clients() == 0
    });
    let client = Client::<Ev>::connect(&path).unwrap();
    expect_greeting(&client);
}

#[test]
fn wire_shapes() {
    assert_eq!(
        event_line(&status("ok"), Some(7)).unwrap(),
        r#"{"kind":"event","seq":7,"event":{"type":"status","state":"ok"}}"#
    );
    assert_eq!(
        event_line(&3, None).unwrap(),
        r#"{"kind":"event","event":3}"#
    );
    assert_eq!(wire::lagged_line(12), r#"{"kind":"lagged","missed":12}"#);
    assert_eq!(
        wire::error_line("bad"),
        r#"{"kind":"error","message":"bad"}"#
    );
    let parsed: ServerLine<Ev> =
        serde_json::from_str(r#"{"kind":"event","event":{"type":"step","step":2,"pad":""}}"#)
            .unwrap();
    assert_eq!(
        parsed,
        ServerLine::Event {
            seq: None,
            event: step(2)
        }
    );

    assert_eq!(wire::check_line("{}"), Ok(()));
    assert_eq!(wire::check_line("{\n}"), Err(LineError::Newline));
    let big = "x".repeat(MAX_LINE + 1);
    assert_eq!(
        wire::check_line(&big),
        Err(LineError::TooLong { len: MAX_LINE + 1 })
    );
    assert!(wire::check_line(&big[1..]).is_ok());

    let accents = "é".repeat(400);
    let cut = wire::truncate(&accents, MAX_ERROR_MESSAGE);
    assert!(cut.len() <= MAX_ERROR_MESSAGE && cut.ends_with('…'));
    let long = wire::error_line(&accents);
    let message: Value = serde_json::from_str(&long).unwrap();
    assert!(message["message"].as_str().unwrap().len() <= MAX_ERROR_MESSAGE);
}

#[test]
fn frame_reading_is_bounded() {
    let mut input = b"one\r\ntwo\n".to_vec();
    input.extend(vec![b'a'; MAX_LINE]);
    input.push(b'\n');
    input.extend(vec![b'b'; MAX_LINE + 1]);
    input.extend(b"\nrest");
    let expected = [
        (Frame::Line, 3),
        (Frame::Line, 3),
        (Frame::Line, MAX_LINE),
        (Frame::TooLong, MAX_LINE + 1),
    ];

    let mut reader = Cursor::new(&input);
    let mut buf = Vec::new();
    for (frame, len) in expected {
        assert_eq!(wire::read_frame(&mut reader, &mut buf).unwrap(), frame);
        assert_eq!(buf.len(), len);
    }
    assert_eq!(&buf[..2], b"bb");
    assert!(buf.capacity() <= 4 * MAX_LINE);
    reader.read_exact(&mut [0; 1]).unwrap(); // the newline ending the over-long line
    assert_eq!(
        wire::read_frame(&mut reader, &mut buf).unwrap(),
        Frame::Partial
    );
    assert_eq!(buf, b"rest");
    assert_eq!(wire::read_frame(&mut reader, &mut buf).unwrap(), Frame::Eof);

    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut reader = tokio::io::BufReader::new(&input[..]);
        for (frame, len) in expected {
            assert_eq!(
                wire::read_frame_async(&mut reader, &mut buf).await.unwrap(),
                frame
            );
            assert_eq!(buf.len(), len);
        }
    });
}

/// A runner that does not drain its commands makes clients get an error
/// line per dropped command; memory stays bounded; draining recovers.
#[test]
fn a_full_command_queue_answers_with_errors() {
    use super::server::COMMAND_QUEUE;
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let server = Server::<Cmd>::bind(&path, greeting).unwrap();
    let (mut out, mut input) = raw(&path);
    read_raw_greeting(&mut input);
    let lines = "{\"cmd\":\"pause\"}\n".repeat(COMMAND_QUEUE + 3);
    out.write_all(lines.as_bytes()).unwrap();
    for _ in 0..3 {
        expect_error(&mut input, "command queue is full");
    }
    assert_eq!(server.commands().try_iter().count(), COMMAND_QUEUE);
    out.write_all(b"{\"cmd\":\"resume\"}\n").unwrap();
    assert_eq!(next_command(&server), Cmd::Resume);

    // Lines that are not one frame are refused before they reach anyone.
    assert_eq!(server.broadcast("{\n}".into()), Err(LineError::Newline));
    let huge = format!("\"{}\"", "x".repeat(MAX_LINE));
    assert!(matches!(
        server.broadcast(huge),
        Err(LineError::TooLong { .. })
    ));
}

/// The client copes with lines it cannot decode, including one over
/// MAX_LINE, and refuses to send a command that is not one frame.
#[test]
fn client_survives_odd_server_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = socket_in(&dir);
    let listener = StdUnixListener::bind(&path).unwrap();
    let fake_server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut lines = Vec::new();
        lines.extend(b"hello\n");
        lines.extend(b"{\"kind\":\"event\",\"event\":{\"type\":\"nope\"}}\n");
        lines.extend(vec![b'['; MAX_LINE + 10]);
        lines.push(b'\n');
        lines.extend(event_line(&step(3), Some(3)).unwrap().as_bytes());
        lines.extend(
            b"\n{\"kind\":\"lagged\",\"missed\":4}\n{\"kind\":\"error\",\"message\":\"m\"}\n",
        );
        stream.write_all(&lines).unwrap();
        let mut got = String::new();
        BufReader::new(stream).read_line(&mut got).unwrap();
        got
    });
    let client = Client::<Ev>::connect(&path).unwrap();
    let Incoming::Undecodable { line, .. } = next(&client) else {
        panic!("hello is not JSON")
    };
    assert_eq!(line, "hello");
    let Incoming::Undecodable { error, .. } = next(&client) else {
        panic!("unknown event")
    };
    assert!(error.contains("unknown variant `nope`"), "{error}");
    let Incoming::Undecodable { line, error } = next(&client) else {
        panic!("over-long line")
    };
    assert!(line.starts_with("[[[") && line.len() <= 200, "{line}");
    assert!(error.contains("longer than"), "{error}");
    assert_eq!(
        next(&client),
        Incoming::Event {
            seq: Some(3),
            event: step(3)
        }
    );
    assert_eq!(next(&client), Incoming::Lagged { missed: 4 });
    assert_eq!(
        next(&client),
        Incoming::Error {
            message: "m".into()
        }
    );

    assert!(
        client.send(&"x".repeat(MAX_LINE)).is_err(),
        "a command over MAX_LINE"
    );
    assert!(
        client.is_connected(),
        "a refused command leaves the connection alone"
    );
    client.send(&Cmd::SetLr { lr: 2.0 }).unwrap();
    assert_eq!(
        fake_server.join().unwrap(),
        "{\"cmd\":\"set_lr\",\"lr\":2.0}\n"
    );
    wait_until("the client sees the fake server leave", || {
        !client.is_connected()
    });
    assert!(client.try_recv_all().is_empty());
}
