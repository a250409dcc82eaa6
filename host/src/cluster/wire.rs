//! The control protocol between the coordinator (`host run`) and its workers: one TCP
//! connection per worker, opened by the worker, each message a frame of postcard (its length,
//! u32 little-endian, then its bytes).
//!
//! A worker says [`Hello`], the coordinator answers [`Welcome`] (how often to beat, and the
//! lease's term); from then on the worker sends [`FromWorker::Ping`] every beat, answered by
//! [`ToWorker::Pong`] (see [`crate::runtime::lease`]). For each deployment (a generation), the coordinator sends
//! [`ToWorker::Deploy`], the worker answers [`FromWorker::Built`] (or why not), the coordinator
//! sends [`ToWorker::Start`] once every worker built, then commands; events come back until the
//! job ends or the coordinator says [`ToWorker::Cancel`] (answered by
//! [`FromWorker::Cancelled`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::barrier::Barrier;
use crate::ids::{CheckpointId, JobId, OperatorId, SubtaskId};
use crate::runtime::subtask::Ack;
use crate::runtime::{OperatorInfo, PointRef};

/// The largest control frame accepted: a job file and a placement fit many times over.
pub const FRAME_BYTES_MAX: u32 = 16 << 20;

/// The first message of a worker's connection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Hello {
    /// The cluster's secret: the coordinator refuses a connection without it.
    pub token: String,
    /// A name for the logs and errors (`worker-2 (pid 1234)`).
    pub name: String,
    /// Where its exchange listens.
    pub exchange: SocketAddr,
}

/// The coordinator's answer to a [`Hello`]: how the worker keeps its lease.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Welcome {
    /// How often the worker pings, in milliseconds.
    pub ping_ms: u64,
    /// The lease's term, in milliseconds: less than the coordinator's timeout.
    pub lease_ms: u64,
}

/// How a coordinator tells a silent worker from a busy one.
#[derive(Clone, Copy, Debug)]
pub struct Heartbeat {
    /// How long a worker may say nothing before it is taken for lost.
    pub timeout: std::time::Duration,
}

impl Heartbeat {
    /// What a worker is told: ping four times per timeout; a lease of three quarters of it
    /// (so that it ends before the coordinator, counting from a later instant, gives up).
    pub fn welcome(&self) -> Welcome {
        let timeout_ms = (self.timeout.as_millis() as u64).max(4);
        Welcome {
            ping_ms: timeout_ms / 4,
            lease_ms: timeout_ms / 4 * 3,
        }
    }
}

/// What one worker runs in one generation of a job.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deployment {
    /// The job.
    pub job: JobId,
    /// The deployment's generation: every message and exchange connection of another one is
    /// refused.
    pub generation: u64,
    /// The job file's text, verbatim.
    pub job_file: String,
    /// Where its relative paths resolve (absolute).
    pub base_dir: PathBuf,
    /// The point to restore from, if any.
    pub point: Option<PointRef>,
    /// The subtasks it runs.
    pub subtasks: Vec<SubtaskId>,
    /// Where every subtask of the job runs: the exchange address of its worker.
    pub exchanges: Vec<(SubtaskId, SocketAddr)>,
    /// Guest limits: memory per instance, and time per call.
    pub memory_bytes_max: u64,
    /// Guest limits: time per call, in milliseconds.
    pub call_ms_max: u64,
}

/// A command to one subtask (the runtime's, less live swaps, which stay in one process).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RemoteCommand {
    /// Sources: emit this barrier.
    Trigger(Barrier),
    /// Sinks: checkpoint N is complete.
    Commit(CheckpointId),
}

/// What the coordinator sends a worker.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ToWorker {
    /// Build this share of the job (a new generation).
    Deploy(Box<Deployment>),
    /// Every worker built: start the subtasks of this generation.
    Start(u64),
    /// A command to a subtask.
    Command {
        /// The generation.
        generation: u64,
        /// The subtask.
        subtask: SubtaskId,
        /// The command.
        command: RemoteCommand,
    },
    /// A point of the job was published here: later checkpoints link (or copy) from it.
    Published {
        /// The job.
        job: JobId,
        /// The point's location, as in [`PointRef::location`].
        location: PathBuf,
    },
    /// Stop every subtask of this generation and drop its links.
    Cancel(u64),
    /// The answer to [`FromWorker::Ping`] with this number: the worker's lease is renewed
    /// as of when it sent that ping.
    Pong(u64),
}

/// What a subtask on a worker tells the coordinator (the runtime's events that cross).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RemoteEvent {
    /// Its state for a checkpoint is durable in the shared store.
    Acked(Ack),
    /// It could not snapshot for `checkpoint`.
    SnapshotFailed {
        /// The checkpoint.
        checkpoint: CheckpointId,
        /// Why, as the worker says it.
        message: String,
    },
    /// A source ran dry.
    SourceExhausted,
    /// It ended normally.
    Done(SubtaskId),
    /// It failed.
    Failed {
        /// The subtask, if one (else a link or the worker itself).
        subtask: Option<SubtaskId>,
        /// Why, as the worker says it.
        message: String,
    },
    /// It stopped because a peer is gone.
    PeerGone(SubtaskId),
}

/// What a worker sends the coordinator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum FromWorker {
    /// Its share of generation `generation` is built.
    Built {
        /// The generation.
        generation: u64,
        /// Each operator it runs a subtask of, as the checkpoint metadata records it.
        operators: Vec<OperatorInfo>,
    },
    /// Its share could not be built.
    BuildFailed {
        /// The generation.
        generation: u64,
        /// Each problem: the operator, the subtask, and why.
        errors: Vec<(OperatorId, Option<u32>, String)>,
    },
    /// An event of a subtask of generation `generation`.
    Event {
        /// The generation.
        generation: u64,
        /// The event.
        event: RemoteEvent,
    },
    /// Every subtask of generation `generation` stopped.
    Cancelled(u64),
    /// A heartbeat, numbered from 1.
    Ping(u64),
}

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection failed or closed.
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// A frame over [`FRAME_BYTES_MAX`].
    #[error("a frame of {0} bytes, over the limit of {FRAME_BYTES_MAX}")]
    TooLarge(u32),
    /// A frame that does not decode.
    #[error("a frame that does not decode: {0}")]
    Decode(#[from] postcard::Error),
}

/// Writes `message` as one frame.
pub async fn write<W: AsyncWrite + Unpin, T: Serialize>(
    to: &mut W,
    message: &T,
) -> Result<(), WireError> {
    let bytes = postcard::to_stdvec(message)?;
    let len = u32::try_from(bytes.len()).map_err(|_| WireError::TooLarge(u32::MAX))?;
    if len > FRAME_BYTES_MAX {
        return Err(WireError::TooLarge(len));
    }
    to.write_all(&len.to_le_bytes()).await?;
    to.write_all(&bytes).await?;
    to.flush().await?;
    Ok(())
}

/// Reads one frame; `None` at a clean end of the connection.
pub async fn read<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    from: &mut R,
) -> Result<Option<T>, WireError> {
    let mut len = [0; 4];
    match from.read_exact(&mut len).await {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    };
    let len = u32::from_le_bytes(len);
    if len > FRAME_BYTES_MAX {
        return Err(WireError::TooLarge(len));
    }
    let mut bytes = vec![0; len as usize];
    from.read_exact(&mut bytes).await?;
    Ok(Some(postcard::from_bytes(&bytes)?))
}

/// Compares two tokens in time independent of where they differ.
pub fn same_token(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0, |d, (x, y)| d | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversized_ones_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        let sent = ToWorker::Start(7);
        write(&mut a, &sent).await.unwrap();
        let got: ToWorker = read(&mut b).await.unwrap().unwrap();
        assert!(matches!(got, ToWorker::Start(7)));
        a.write_all(&(FRAME_BYTES_MAX + 1).to_le_bytes())
            .await
            .unwrap();
        let refused = read::<_, ToWorker>(&mut b).await;
        assert!(
            matches!(refused, Err(WireError::TooLarge(_))),
            "{refused:?}"
        );
        drop(a);
        assert!(read::<_, ToWorker>(&mut b).await.unwrap().is_none());
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
    }
}
