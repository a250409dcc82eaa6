//! The control socket of a running job: `host save`, `host stop` and `host serve` reach the job
//! through it.
//!
//! A Unix socket inside the job's folder (owner-only, like the whole state folder), one JSON
//! request line and one JSON response line per connection. The server turns requests into
//! [`runtime::Request`]s; the runtime never knows about sockets.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::{JobMetrics, Sample};
use crate::runtime::{self, Saved, UpgradeSpec, Upgraded};

/// Largest request line the server reads.
pub const REQUEST_BYTES_MAX: u64 = 64 * 1024;
/// How long a client waits for a job to answer (a savepoint of large state takes a while).
pub const RESPONSE_WAIT_MS_MAX: u64 = 10 * 60 * 1_000;

/// A request to a running job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum ControlRequest {
    /// Take a savepoint, and stop right after it with `stop`.
    Save {
        /// Stop after the savepoint.
        stop: bool,
    },
    /// Stop without a savepoint: output since the last checkpoint is not committed.
    Cancel,
    /// Every counter of the job now, and its checkpoint history.
    Metrics,
    /// Swap one operator's module live.
    Upgrade {
        /// What to swap.
        spec: UpgradeSpec,
    },
}

/// A running job's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "kebab-case")]
pub enum ControlResponse {
    /// The savepoint was written.
    Saved(Saved),
    /// The job was cancelled.
    Cancelled,
    /// The job's counters.
    Metrics(Box<Sample>),
    /// The swap is final.
    Upgraded(Upgraded),
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// Why a control request did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens on the socket.
    #[error("job is not running (nothing listens on {0})")]
    NotRunning(PathBuf),
    /// The connection broke.
    #[error("control socket {path}: {source}")]
    Io {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
}

/// Binds the control socket at `path`, owner-only, replacing a stale one.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// How long a server that was told to stop still waits for answers under way.
pub const ANSWERS_WAIT_MS_MAX: u64 = 5_000;

/// Serves control requests to the job behind `requests` until `stop` fires (the job ended).
/// Then it accepts no more connections but finishes the answers under way, so that the job's
/// last answer (the savepoint it stopped with, or that it was cancelled) reaches its client
/// before the process exits.
pub async fn serve(
    listener: UnixListener,
    job: (mpsc::Sender<runtime::Request>, Arc<JobMetrics>),
    mut stop: oneshot::Receiver<()>,
) {
    let (requests, metrics) = job;
    let mut answering = tokio::task::JoinSet::new();
    let report = |done: Result<std::io::Result<()>, tokio::task::JoinError>| {
        if let Ok(Err(e)) = done {
            tracing::warn!("control connection failed: {e}");
        }
    };
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    answering.spawn(answer(stream, requests.clone(), metrics.clone()));
                }
                Err(e) => {
                    tracing::warn!("control socket: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(done) = answering.join_next() => report(done),
        }
    }
    drop(listener);
    let wait = Duration::from_millis(ANSWERS_WAIT_MS_MAX);
    let finished = tokio::time::timeout(wait, async {
        while let Some(done) = answering.join_next().await {
            report(done);
        }
    });
    if finished.await.is_err() {
        tracing::warn!("control connections still open when the job ended were dropped");
    }
}

async fn answer(
    stream: UnixStream,
    requests: mpsc::Sender<runtime::Request>,
    metrics: Arc<JobMetrics>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let Some(request) = read_request(read).await? else {
        // A probe (`is_listening`: `host list`, `host serve`) that connected and hung up.
        return Ok(());
    };
    let response = match request {
        Err(message) => ControlResponse::Error { message },
        Ok(ControlRequest::Metrics) => ControlResponse::Metrics(Box::new(metrics.sample())),
        Ok(request) => forward(request, &requests).await,
    };
    let mut out = serde_json::to_vec(&response).expect("responses serialize");
    out.push(b'\n');
    write.write_all(&out).await
}

/// Reads a client's request line, of at most [`REQUEST_BYTES_MAX`] bytes (what comes after is
/// not read): `None` if the client sent nothing, else the request or why it is refused.
async fn read_request(
    read: impl AsyncRead + Unpin,
) -> std::io::Result<Option<Result<ControlRequest, String>>> {
    let mut line = Vec::new();
    tokio::io::BufReader::new(read.take(REQUEST_BYTES_MAX))
        .read_until(b'\n', &mut line)
        .await?;
    Ok((!line.is_empty()).then(|| parse_request(&line)))
}

/// Parses a request line as [`read_request`] read it: one that filled [`REQUEST_BYTES_MAX`]
/// without ending is refused as too long.
fn parse_request(line: &[u8]) -> Result<ControlRequest, String> {
    if line.len() as u64 >= REQUEST_BYTES_MAX && !line.ends_with(b"\n") {
        return Err(format!(
            "malformed request: longer than {REQUEST_BYTES_MAX} bytes"
        ));
    }
    serde_json::from_slice(line).map_err(|e| format!("malformed request: {e}"))
}

async fn forward(
    request: ControlRequest,
    requests: &mpsc::Sender<runtime::Request>,
) -> ControlResponse {
    let gone = || ControlResponse::Error {
        message: "the job is ending".to_owned(),
    };
    match request {
        ControlRequest::Save { stop } => {
            let (reply, answer) = oneshot::channel();
            if requests
                .send(runtime::Request::Save { stop, reply })
                .await
                .is_err()
            {
                return gone();
            }
            match answer.await {
                Ok(Ok(saved)) => ControlResponse::Saved(saved),
                Ok(Err(error)) => refused(&error),
                Err(_) => gone(),
            }
        }
        ControlRequest::Upgrade { spec } => {
            let (reply, answer) = oneshot::channel();
            let request = runtime::Request::Upgrade { spec, reply };
            if requests.send(request).await.is_err() {
                return gone();
            }
            match answer.await {
                Ok(Ok(upgraded)) => ControlResponse::Upgraded(upgraded),
                Ok(Err(error)) => refused(&error),
                Err(_) => gone(),
            }
        }
        ControlRequest::Cancel => {
            let (reply, answer) = oneshot::channel();
            if requests
                .send(runtime::Request::Cancel { reply })
                .await
                .is_err()
            {
                return gone();
            }
            match answer.await {
                Ok(()) => ControlResponse::Cancelled,
                Err(_) => gone(),
            }
        }
        ControlRequest::Metrics => unreachable!("answered by the server itself"),
    }
}

/// A job's refusal as the client reads it: the error in words (the socket carries text).
fn refused(error: &dyn std::error::Error) -> ControlResponse {
    ControlResponse::Error {
        message: error.to_string(),
    }
}

/// Sends one request to the job listening at `path` and waits for its answer (blocking).
pub fn call(path: &Path, request: &ControlRequest) -> Result<ControlResponse, ControlError> {
    let io = |source| ControlError::Io {
        path: path.to_owned(),
        source,
    };
    let mut stream = std::os::unix::net::UnixStream::connect(path)
        .map_err(|_| ControlError::NotRunning(path.to_owned()))?;
    stream
        .set_read_timeout(Some(Duration::from_millis(RESPONSE_WAIT_MS_MAX)))
        .map_err(io)?;
    let mut line = serde_json::to_vec(request).expect("requests serialize");
    line.push(b'\n');
    stream.write_all(&line).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).map_err(io)?;
    serde_json::from_str(&answer)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Whether a job listens at `path`.
pub fn is_listening(path: &Path) -> bool {
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    /// A job that ends as it answers: the process exits right after `serve` returns, so the
    /// answer must be with the client by then. (One thread, and the stop sent before the reply,
    /// so that `serve` sees the stop before the answer is written.)
    #[test]
    fn the_last_answer_of_an_ending_job_reaches_its_client() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime.block_on(async { bind(&path) }).unwrap();
        let (requests, mut job) = mpsc::channel(1);
        let (stop, stopped) = oneshot::channel();
        let topology = crate::metrics::Topology::default();
        let metrics = Arc::new(JobMetrics::new(crate::ids::JobId::generate(), topology));
        let server = runtime.spawn(serve(listener, (requests, metrics), stopped));
        let client = std::thread::spawn({
            let path = path.clone();
            move || call(&path, &ControlRequest::Cancel)
        });
        runtime.block_on(async {
            let Some(runtime::Request::Cancel { reply }) = job.recv().await else {
                panic!("expected a cancel request");
            };
            stop.send(()).unwrap();
            reply.send(()).unwrap();
            server.await.unwrap();
        });
        // As when the process exits: whatever `serve` left running dies here.
        drop(runtime);
        assert_eq!(client.join().unwrap().unwrap(), ControlResponse::Cancelled);
    }
}
