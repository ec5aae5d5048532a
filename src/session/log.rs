//! Append-only `metrics.jsonl`: a writer that puts each line down with one
//! `write` call, and a reader that tolerates a torn last line (a crash
//! mid-write) and skips nothing else silently.

use super::metrics::{Level, MetricLine, Record};
use anyhow::{Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Appends [`MetricLine`]s to `metrics.jsonl`, one `write` each, counting
/// lines so that each gets its index.
pub struct MetricsWriter {
    file: File,
    path: PathBuf,
    /// Complete lines in the file: the index the next line gets.
    lines: u64,
    /// Bytes in the file, to cut a partial write back off.
    len: u64,
}

impl MetricsWriter {
    /// Opens for appending, creating the file if needed. A torn last line
    /// left by a crash is cut off first so the next line starts clean.
    pub fn open(path: &Path) -> Result<Self> {
        if path.exists() {
            cut_torn_tail(path)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {} for appending", path.display()))?;
        let existing =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
            lines: existing.iter().filter(|&&b| b == b'\n').count() as u64,
            len: existing.len() as u64,
        })
    }

    /// Appends one line; returns its index in the file (0-based), which
    /// clients use to tell live lines from ones they read from disk. A
    /// failed write (e.g. a full disk) is cut back off, so the file never
    /// holds a partial line in the middle.
    pub fn append(&mut self, line: &MetricLine) -> Result<u64> {
        let mut text = line.to_json();
        text.push('\n');
        if let Err(e) = self.file.write_all(text.as_bytes()) {
            let _ = self.file.set_len(self.len);
            return Err(e).with_context(|| format!("cannot write to {}", self.path.display()));
        }
        self.len += text.len() as u64;
        self.lines += 1;
        Ok(self.lines - 1)
    }

    /// Makes everything appended so far durable (called at checkpoints).
    pub fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .with_context(|| format!("cannot sync {}", self.path.display()))
    }
}

/// What a read of `metrics.jsonl` found.
#[derive(Debug, Default)]
pub struct MetricsRead {
    /// Every complete line, in file order.
    pub lines: Vec<MetricLine>,
    /// The last line had no newline and did not parse (a crash mid-write,
    /// or a live writer still appending it).
    pub torn_tail: bool,
}

/// Reads every line. A malformed line in the middle is an error naming its
/// line number; a malformed *last* line without a newline is a torn write
/// and is ignored.
pub fn read_metrics(path: &Path) -> Result<MetricsRead> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    parse_metrics(BufReader::new(file), path)
}

/// [`read_metrics`] over any reader. A line without a newline ends the read
/// even when more bytes follow by then: a live writer is appending it, and
/// what it appends next is that line's rest, never a line of its own.
///
/// Bytes, not text, until a line is complete: a read that ends inside a
/// multi-byte character (`φ`, `×` in an event) is a torn line too.
fn parse_metrics(mut reader: impl BufRead, path: &Path) -> Result<MetricsRead> {
    let mut out = MetricsRead::default();
    let mut buf = Vec::new();
    let mut number = 0usize;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        number += 1;
        let complete = buf.ends_with(b"\n");
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim();
        if !text.is_empty() {
            match serde_json::from_str::<MetricLine>(text) {
                Ok(line) => out.lines.push(line),
                Err(_) if !complete => out.torn_tail = true,
                Err(e) => anyhow::bail!("{}:{number}: not a metrics line: {e}", path.display()),
            }
        }
        if !complete {
            break;
        }
    }
    Ok(out)
}

/// The complete lines of `path` from byte `offset` on (a torn last line is
/// left for later) and the offset just past the last one: a follower reads
/// only what was appended since its last call.
pub fn read_metrics_from(path: &Path, offset: u64) -> Result<(Vec<MetricLine>, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut lines = Vec::new();
    for (number, text) in String::from_utf8_lossy(&bytes[..complete])
        .lines()
        .enumerate()
    {
        if text.trim().is_empty() {
            continue;
        }
        let line = serde_json::from_str(text).with_context(|| {
            format!(
                "{}: line {} after byte {offset}: not a metrics line",
                path.display(),
                number + 1
            )
        })?;
        lines.push(line);
    }
    Ok((lines, offset + complete as u64))
}

/// Removes a trailing partial line (no final newline), atomically enough for
/// our purpose: truncation to the last newline.
fn cut_torn_tail(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(keep as u64)
        .with_context(|| format!("cannot truncate torn line in {}", path.display()))?;
    Ok(())
}

/// Keeps only lines with `step <= last_step` (resuming from a checkpoint at
/// `last_step` must not leave duplicate steps). Rewrites via temp + rename.
/// Kept lines stay byte for byte as they were (a parse and print could
/// change a float's last digit); a torn last line goes.
pub fn truncate_after(path: &Path, last_step: u64) -> Result<usize> {
    let (kept, dropped) = lines_up_to(path, last_step)?;
    super::atomic_write(path, kept.as_bytes())?;
    Ok(dropped)
}

/// The message of the line a failed run ends its log with (at the failing
/// step). A resume or fork from that step drops it: the run goes on there.
pub const RUN_FAILED: &str = "the run failed at this step (its error is in session.json)";

/// How the line a stopped run ends its log with begins (a fork from that
/// step leaves it out: the fork did not stop there).
pub const STOPPED_AT: &str = "stopped at step ";

/// How a resumed run's first line begins (before its notes).
pub const RESUMED_FROM: &str = "resumed from checkpoint ";

/// What a resume says when it dropped logged steps after its checkpoint
/// (a crash): `… up to step R, ` then this.
pub const TRAINED_AGAIN: &str = "are dropped: the run trains those steps again";

/// The last dropped step of a [`TRAINED_AGAIN`] message.
pub fn trained_again_up_to(message: &str) -> Option<u64> {
    if !message.contains(TRAINED_AGAIN) {
        return None;
    }
    let after = message.split("up to step ").nth(1)?;
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// How a fork's first start's first line begins.
pub const STARTS_FROM_PARENT: &str = "starts from its parent's checkpoint";

/// Whether `line` was written after the checkpoint of its step: a stop's
/// mark, or a start from that checkpoint (its first line; its notes and
/// edits follow it).
pub fn is_after_checkpoint(line: &MetricLine) -> bool {
    is_stop_mark(line)
        || matches!(&line.record, Record::Event { level: Level::Info, message }
            if message.starts_with(RESUMED_FROM) || message.starts_with(STARTS_FROM_PARENT))
}

/// Whether `line` is a stopped run's mark ([`STOPPED_AT`]).
pub fn is_stop_mark(line: &MetricLine) -> bool {
    matches!(&line.record, Record::Event { level: Level::Info, message } if message.starts_with(STOPPED_AT))
}

/// Whether `line` is the mark a failed run left ([`RUN_FAILED`]).
fn is_failure_mark(line: &MetricLine) -> bool {
    matches!(&line.record, Record::Event { level: Level::Error, message } if message == RUN_FAILED)
}

/// The text of the complete lines of `path` with `step <= last_step`, as
/// written (but a failed run's mark), and how many later lines there are. A
/// malformed line other than a torn last one is an error naming it.
pub fn lines_up_to(path: &Path, last_step: u64) -> Result<(String, usize)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let (mut kept, mut dropped) = (String::new(), 0);
    for (number, raw) in text.split_inclusive('\n').enumerate() {
        let body = raw.trim();
        if body.is_empty() {
            continue;
        }
        let line = match serde_json::from_str::<MetricLine>(body) {
            Ok(line) => line,
            Err(_) if !raw.ends_with('\n') => break,
            Err(e) => anyhow::bail!("{}:{}: not a metrics line: {e}", path.display(), number + 1),
        };
        if is_failure_mark(&line) {
            continue;
        }
        if line.step <= last_step {
            kept.push_str(body);
            kept.push('\n');
        } else {
            dropped += 1;
        }
    }
    Ok((kept, dropped))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(step: u64) -> MetricLine {
        MetricLine {
            step,
            time: step as f64,
            wall: None,
            record: Record::Event {
                level: Level::Info,
                message: format!("s{step}"),
            },
        }
    }

    #[test]
    fn truncate_after_keeps_kept_lines_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        // Parsing and printing this float again changes its last digit.
        let kept = r#"{"step":3,"time":0.30832561,"kind":"meta","hypergrad_norm":68.29016876220703,"reg":11.505110740661621,"meta_lr":0.001,"aid_iterations":0}"#;
        let later = event(4).to_json();
        std::fs::write(&path, format!("{kept}\n{later}\n")).unwrap();
        assert_eq!(truncate_after(&path, 3).unwrap(), 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{kept}\n"));
    }

    #[test]
    fn torn_last_line_is_ignored_and_cut_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut w = MetricsWriter::open(&path).unwrap();
        w.append(&event(1)).unwrap();
        w.append(&event(2)).unwrap();
        drop(w);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"step":3,"time":3.0,"kind":"ev"#).unwrap();
        let read = read_metrics(&path).unwrap();
        assert_eq!(read.lines.len(), 2);
        assert!(read.torn_tail);
        let mut w = MetricsWriter::open(&path).unwrap();
        assert_eq!(w.append(&event(3)).unwrap(), 2, "index after two lines");
        let read = read_metrics(&path).unwrap();
        assert_eq!(
            read.lines.iter().map(|l| l.step).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(!read.torn_tail);
    }

    /// A file that ends mid-line on the first read and has the rest of the
    /// line (and another) on the next, as a live session's file does.
    struct GrowingFile {
        reads: std::collections::VecDeque<Vec<u8>>,
    }

    impl std::io::Read for GrowingFile {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let Some(mut chunk) = self.reads.pop_front() else {
                return Ok(0);
            };
            let n = chunk.len().min(out.len());
            out[..n].copy_from_slice(&chunk[..n]);
            if n < chunk.len() {
                self.reads.push_front(chunk.split_off(n));
            }
            Ok(n)
        }
    }

    #[test]
    fn a_line_being_written_while_read_is_a_torn_tail_not_an_error() {
        let whole = format!("{}\n{}\n", event(1).to_json(), event(2).to_json());
        let cut = whole.find("\"kind\"").unwrap() + event(1).to_json().len() + 1;
        let file = GrowingFile {
            // First part, end of file (an empty read), then the rest of
            // the line and a later line: what a writer appends meanwhile.
            reads: [
                whole.as_bytes()[..cut].to_vec(),
                vec![],
                format!("{}{}\n", &whole[cut..], event(3).to_json()).into_bytes(),
            ]
            .into(),
        };
        let read = parse_metrics(BufReader::new(file), Path::new("m.jsonl")).unwrap();
        assert_eq!(read.lines.iter().map(|l| l.step).collect::<Vec<_>>(), [1]);
        assert!(read.torn_tail);
    }

    #[test]
    fn a_read_that_ends_inside_a_character_is_a_torn_tail_too() {
        let done = event(1).to_json() + "\n";
        let mut growing = MetricLine {
            step: 2,
            time: 2.0,
            wall: None,
            record: Record::Event {
                level: Level::Warn,
                message: "φ restored".into(),
            },
        }
        .to_json()
        .into_bytes();
        let phi = growing
            .windows(2)
            .position(|w| w == "φ".as_bytes())
            .unwrap();
        let rest = growing.split_off(phi + 1);
        let file = GrowingFile {
            reads: [[done.into_bytes(), growing].concat(), vec![], rest].into(),
        };
        let read = parse_metrics(BufReader::new(file), Path::new("m.jsonl")).unwrap();
        assert_eq!(read.lines.len(), 1);
        assert!(read.torn_tail);
    }

    #[test]
    fn reading_from_an_offset_returns_only_new_complete_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut w = MetricsWriter::open(&path).unwrap();
        w.append(&event(1)).unwrap();
        let (first, offset) = read_metrics_from(&path, 0).unwrap();
        assert_eq!(first.len(), 1);
        w.append(&event(2)).unwrap();
        w.append(&event(3)).unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"step":4,"time":4.0,"ki"#).unwrap();
        let (next, torn_at) = read_metrics_from(&path, offset).unwrap();
        assert_eq!(next.iter().map(|l| l.step).collect::<Vec<_>>(), vec![2, 3]);
        // The torn line is not consumed: once complete, it is read.
        f.write_all(b"nd\":\"event\",\"level\":\"info\",\"message\":\"s4\"}\n")
            .unwrap();
        let (last, _) = read_metrics_from(&path, torn_at).unwrap();
        assert_eq!(last.iter().map(|l| l.step).collect::<Vec<_>>(), vec![4]);
    }

    #[test]
    fn corrupt_middle_line_is_an_error_with_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(
            &path,
            format!("{}\nnot json\n{}\n", event(1).to_json(), event(2).to_json()),
        )
        .unwrap();
        let err = read_metrics(&path).unwrap_err().to_string();
        assert!(err.contains(":2:"), "{err}");
    }

    #[test]
    fn a_failed_runs_mark_goes_when_the_run_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let mut w = MetricsWriter::open(&path).unwrap();
        let mark = MetricLine {
            record: Record::Event {
                level: Level::Error,
                message: RUN_FAILED.into(),
            },
            ..event(20)
        };
        for line in [event(10), event(20), mark] {
            w.append(&line).unwrap();
        }
        let (kept, dropped) = lines_up_to(&path, 20).unwrap();
        assert_eq!((kept.lines().count(), dropped), (2, 0), "{kept}");
        assert!(!kept.contains(RUN_FAILED));
    }

    #[test]
    fn truncate_after_drops_later_steps() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        let mut w = MetricsWriter::open(&path).unwrap();
        for s in 1..=5 {
            w.append(&event(s)).unwrap();
        }
        assert_eq!(truncate_after(&path, 3).unwrap(), 2);
        let steps: Vec<u64> = read_metrics(&path)
            .unwrap()
            .lines
            .iter()
            .map(|l| l.step)
            .collect();
        assert_eq!(steps, vec![1, 2, 3]);
    }
}
