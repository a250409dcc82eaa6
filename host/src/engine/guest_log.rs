//! Where a guest's stdout and stderr go: into the host's log, a line at a time, tagged with the
//! subtask that wrote it, and rate-limited, so that a chatty or hostile guest cannot flood the
//! host's log (or its disk).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

use crate::ids::SubtaskId;

/// Lines a subtask may log per second; the rest are counted and dropped.
pub const LINES_PER_SECOND_MAX: u32 = 100;
/// Longest line logged; a longer one is cut here.
pub const LINE_BYTES_MAX: usize = 4 * 1024;

/// Which of a guest's output streams.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    /// Logged at info level.
    Stdout,
    /// Logged at warn level.
    Stderr,
}

/// One guest output stream, as WASI hands it to the guest.
#[derive(Clone)]
pub struct GuestLog {
    subtask: Arc<str>,
    stream: Stream,
    /// Shared by every handle of the subtask's streams, so that the limit is per subtask.
    budget: Arc<Mutex<Budget>>,
}

impl GuestLog {
    /// The output streams of `subtask`: stdout and stderr, sharing one rate limit.
    pub fn pair(subtask: &SubtaskId) -> (GuestLog, GuestLog) {
        let subtask: Arc<str> = subtask.to_string().into();
        let budget = Arc::new(Mutex::new(Budget::new(Instant::now())));
        let log = |stream| GuestLog {
            subtask: subtask.clone(),
            stream,
            budget: budget.clone(),
        };
        (log(Stream::Stdout), log(Stream::Stderr))
    }

    fn writer(&self) -> LineWriter {
        LineWriter {
            log: self.clone(),
            partial: Vec::new(),
        }
    }

    fn emit(&self, line: &[u8]) {
        let verdict = self
            .budget
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .admit(Instant::now());
        let subtask = &*self.subtask;
        match verdict {
            Verdict::Drop => return,
            Verdict::StartDropping => {
                tracing::warn!(%subtask, "guest output over {LINES_PER_SECOND_MAX} lines/s: dropping lines until the next second");
                return;
            }
            Verdict::Log { dropped_before: 0 } => {}
            Verdict::Log { dropped_before } => {
                tracing::warn!(%subtask, "guest output: {dropped_before} lines were dropped");
            }
        }
        let line = String::from_utf8_lossy(&line[..line.len().min(LINE_BYTES_MAX)]);
        match self.stream {
            Stream::Stdout => tracing::info!(%subtask, "guest: {line}"),
            Stream::Stderr => tracing::warn!(%subtask, "guest: {line}"),
        }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    /// The stream a WASIp2 guest writes to: synchronous, as logging is (the default would run
    /// every write through a background task).
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }
}

/// Splits what a guest writes into lines for [`GuestLog::emit`].
struct LineWriter {
    log: GuestLog,
    partial: Vec<u8>,
}

impl LineWriter {
    fn write(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.push(&bytes[..end]);
            self.flush_line();
            bytes = &bytes[end + 1..];
        }
        self.push(bytes);
        if self.partial.len() >= LINE_BYTES_MAX {
            self.flush_line();
        }
    }

    /// Keeps at most [`LINE_BYTES_MAX`] bytes of the line being written.
    fn push(&mut self, bytes: &[u8]) {
        let room = LINE_BYTES_MAX.saturating_sub(self.partial.len());
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn flush_line(&mut self) {
        self.log.emit(&self.partial);
        self.partial.clear();
    }
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        LineWriter::write(self, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write(bytes);
        Poll::Ready(Ok(bytes.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    /// A last line without its newline is still logged.
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            self.flush_line();
        }
    }
}

/// A budget of [`LINES_PER_SECOND_MAX`] lines per one-second window.
#[derive(Debug)]
struct Budget {
    window_started: Instant,
    lines: u32,
    dropped: u64,
}

impl Budget {
    fn new(now: Instant) -> Self {
        Budget {
            window_started: now,
            lines: 0,
            dropped: 0,
        }
    }

    /// Whether a line may be logged at `now`.
    fn admit(&mut self, now: Instant) -> Verdict {
        if now.duration_since(self.window_started) >= Duration::from_secs(1) {
            self.window_started = now;
            self.lines = 0;
        }
        if self.lines == LINES_PER_SECOND_MAX {
            self.dropped += 1;
            return if self.dropped == 1 {
                Verdict::StartDropping
            } else {
                Verdict::Drop
            };
        }
        self.lines += 1;
        Verdict::Log {
            dropped_before: std::mem::take(&mut self.dropped),
        }
    }
}

/// What to do with a line.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Log it; `dropped_before` lines were dropped since the last one logged.
    Log { dropped_before: u64 },
    /// Drop it, the first of a run: say that lines are being dropped.
    StartDropping,
    /// Drop it.
    Drop,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines logged so far through `log`'s budget.
    fn logged(log: &GuestLog) -> u32 {
        log.budget.lock().unwrap().lines
    }

    #[test]
    fn output_is_logged_by_whole_lines_and_a_last_partial_line_at_the_end() {
        let subtask = SubtaskId {
            operator: "op".parse().unwrap(),
            index: 0,
        };
        let (_, stderr) = GuestLog::pair(&subtask);
        let mut writer = stderr.writer();
        writer.write(b"one\ntw");
        assert_eq!(logged(&stderr), 1);
        writer.write(b"o\nthr");
        assert_eq!(logged(&stderr), 2);
        writer.write(&[b'x'; LINE_BYTES_MAX + 10]);
        assert_eq!(logged(&stderr), 3, "a line is cut at LINE_BYTES_MAX");
        drop(writer);
        assert_eq!(logged(&stderr), 3, "nothing left after the cut line");
        let mut writer = stderr.writer();
        writer.write(b"no newline");
        drop(writer);
        assert_eq!(logged(&stderr), 4);
    }

    #[test]
    fn the_budget_admits_a_window_full_then_reports_what_it_dropped() {
        let start = Instant::now();
        let mut budget = Budget::new(start);
        let log = |dropped_before| Verdict::Log { dropped_before };
        for _ in 0..LINES_PER_SECOND_MAX {
            assert_eq!(budget.admit(start), log(0));
        }
        let late = start + Duration::from_millis(999);
        assert_eq!(budget.admit(late), Verdict::StartDropping);
        for _ in 0..4 {
            assert_eq!(budget.admit(late), Verdict::Drop);
        }
        assert_eq!(budget.admit(start + Duration::from_secs(1)), log(5));
        assert_eq!(budget.admit(start + Duration::from_secs(1)), log(0));
    }
}
