//! Why a job could not be built, why a checkpoint failed, and why a running job failed: typed
//! causes, each naming the operator, subtask or checkpoint at fault, carried as they are up
//! to the CLI (or the control socket), which formats them once.
//!
//! Cheap to clone where a failure is both reported and kept (the restart policy keeps the one
//! it restarts after): the causes that are not `Clone` themselves sit behind an `Arc`.

use std::fmt;
use std::sync::Arc;

use super::channel::Closed;
use super::instance::CallError;
use super::subtask::{BATCH_RECORDS_MAX, SubtaskError};
use crate::connectors::ConnectorError;
use jobhost_batch::MalformedBatch;

use crate::engine::{EngineError, GuestError};
use crate::ids::{CheckpointId, OperatorId, SubtaskId};
use crate::snapshot::{BadSnapshot, RescaleError};
use crate::store::StoreError;
use crate::time::timers::TimerStateError;

/// A problem found while building a job, naming the operator (and subtask) at fault.
#[derive(Debug)]
pub struct BuildError {
    /// The operator at fault.
    pub operator: OperatorId,
    /// The subtask at fault, if one.
    pub subtask: Option<u32>,
    /// What went wrong.
    pub cause: BuildCause,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.subtask {
            Some(subtask) => write!(
                f,
                "operator `{}` (subtask {subtask}): {}",
                self.operator, self.cause
            ),
            None => write!(f, "operator `{}`: {}", self.operator, self.cause),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.cause)
    }
}

/// What went wrong building one operator or subtask.
#[derive(Debug, thiserror::Error)]
pub enum BuildCause {
    /// Its module could not be loaded for its world (shared by the operators that use it).
    #[error(transparent)]
    Module(Arc<EngineError>),
    /// Its instance could not be created.
    #[error(transparent)]
    Instantiate(EngineError),
    /// Its guest refused or trapped in `describe`, `init` or `restore`.
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// Its connector could not connect, found its server unfit, or refused its state.
    #[error(transparent)]
    Connector(Arc<ConnectorError>),
    /// The point has state for the operator but not for one of its subtasks.
    #[error(
        "checkpoint {checkpoint} has state for the operator but none for its subtask {subtask}"
    )]
    MissingState {
        /// The point's checkpoint.
        checkpoint: CheckpointId,
        /// The point's subtask without state.
        subtask: u32,
    },
    /// The point's state cannot go to the job's parallelism.
    #[error(transparent)]
    Rescale(#[from] RescaleError),
    /// The timers the point holds for a subtask do not read back.
    #[error("subtask {subtask}: {error}")]
    Timers {
        /// The new subtask they were for.
        subtask: u32,
        /// What is wrong with them.
        error: TimerStateError,
    },
    /// The point holds pending timers for the operator, and its module cannot take them.
    #[error(
        "the point holds {pending} pending timers for subtask {subtask}, but the module keeps \
         no timers (it does not implement `timed-operator`, with `on-timer`): they would never \
         fire"
    )]
    TimersNotKept {
        /// The new subtask.
        subtask: u32,
        /// Its pending timers.
        pending: u64,
    },
}

impl From<CallError> for BuildCause {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Guest(error) => BuildCause::Guest(error),
            CallError::Connector(error) => BuildCause::Connector(error),
        }
    }
}

/// Why a job could not be rebuilt after a failure (or for a rollback).
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    /// Its latest checkpoint could not be read back.
    #[error(transparent)]
    Read(#[from] StoreError),
    /// It could not be built from it.
    #[error("{}", join(.0))]
    Build(Vec<BuildError>),
}

fn join(errors: &[BuildError]) -> String {
    let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
    errors.join("; ")
}

/// Why the new module of a live swap could not take over from the handed-over state (the old
/// module runs on).
#[derive(Debug, thiserror::Error)]
pub enum SwapFailure {
    /// A subtask of the operator did not snapshot for the swap's checkpoint.
    #[error("subtask {subtask} did not snapshot for checkpoint {checkpoint}")]
    NoSnapshot {
        /// Which subtask.
        subtask: SubtaskId,
        /// The swap's checkpoint.
        checkpoint: CheckpointId,
    },
    /// A new instance did not start.
    #[error("subtask {subtask}: {cause}")]
    Start {
        /// Which subtask.
        subtask: SubtaskId,
        /// Why.
        cause: BuildCause,
    },
    /// The new instances did not restore the state.
    #[error("{}", join(.0))]
    Restore(Vec<BuildError>),
    /// A staged instance did not snapshot the state it restored, or did not take in what
    /// changed since (`restore-changes`).
    #[error(transparent)]
    CatchUp(GuestError),
    /// A staged instance's snapshot broke the contract.
    #[error("subtask {subtask}: {problem}")]
    Malformed {
        /// Which subtask.
        subtask: SubtaskId,
        /// What is wrong.
        problem: BadSnapshot,
    },
}

/// What a guest produced that the host cannot read: a batch or a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// A batch of more records than one batch may hold.
    #[error("returned a batch of {records} records, over the limit of {BATCH_RECORDS_MAX}")]
    TooManyRecords {
        /// Its records.
        records: usize,
    },
    /// A batch whose columns do not read as records.
    #[error(transparent)]
    Batch(#[from] MalformedBatch),
    /// A snapshot that breaks the contract.
    #[error(transparent)]
    Snapshot(#[from] BadSnapshot),
}

/// Why one checkpoint failed (and was aborted).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointFailure {
    /// A guest refused its snapshot (a trap fails the subtask instead).
    #[error(transparent)]
    Refused(GuestError),
    /// A subtask's state could not be written.
    #[error("{subtask}: {source}")]
    Write {
        /// Which subtask.
        subtask: SubtaskId,
        /// Why.
        source: StoreError,
    },
    /// The checkpoint could not be completed: its metadata written or its folder published.
    #[error(transparent)]
    Complete(Arc<StoreError>),
}

/// Why a savepoint asked for (`host save`, `host stop --save`) was not taken.
#[derive(Clone, Debug, thiserror::Error)]
pub enum SaveError {
    /// A stop is under way: its own savepoint, if any, is the last.
    #[error("the job is already stopping")]
    Stopping,
    /// The savepoint's checkpoint was aborted.
    #[error("savepoint {checkpoint} failed: {cause}")]
    Failed {
        /// Its number.
        checkpoint: CheckpointId,
        /// Why.
        cause: Aborted,
    },
    /// The job ended while the request waited for its turn.
    #[error("the job ended before the savepoint: {0}")]
    JobEnded(Aborted),
}

/// Why the checkpoint in flight (or a save request waiting for its turn) was dropped.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Aborted {
    /// The checkpoint itself failed.
    #[error(transparent)]
    Checkpoint(Arc<CheckpointFailure>),
    /// The job failed.
    #[error(transparent)]
    Job(JobFailure),
    /// The job was cancelled (`host stop` without `--save`).
    #[error("the job was stopped")]
    Cancelled,
}

/// Why a running job failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum JobFailure {
    /// A subtask failed: its guest trapped, or produced what the host cannot read.
    #[error(transparent)]
    Subtask(Arc<SubtaskError>),
    /// A subtask's task panicked (a bug of the host).
    #[error("subtask {0} panicked")]
    Panicked(String),
    /// Every subtask ended because a peer vanished, and none said why.
    #[error("{subtask}: {closed}")]
    PeerGone {
        /// The first subtask that saw it.
        subtask: SubtaskId,
        /// What it saw.
        closed: Closed,
    },
    /// The checkpoint that was to end the job (`stop --save`) failed.
    #[error("the final checkpoint {checkpoint} failed: {cause}")]
    FinalCheckpoint {
        /// Its number.
        checkpoint: CheckpointId,
        /// Why.
        cause: Arc<CheckpointFailure>,
    },
    /// Another process took the job over (the store's generation fence).
    #[error(transparent)]
    Fenced(Arc<StoreError>),
    /// The coordinator's task panicked (a bug of the host).
    #[error("the coordinator panicked: {0}")]
    CoordinatorPanicked(String),
    /// The restart strategy's attempts ran out.
    #[error("{failure} (gave up after {restarts} restarts)")]
    GaveUp {
        /// The last failure.
        failure: Box<JobFailure>,
        /// Restarts attempted.
        restarts: u32,
    },
    /// A restart after `failure` could not rebuild the job.
    #[error("{failure}; restarting failed: {error}")]
    RestartFailed {
        /// What the restart was for.
        failure: Box<JobFailure>,
        /// Why it failed.
        error: Arc<RestartError>,
    },
    /// The rollback of a live upgrade could not rebuild the job with the old module.
    #[error("{rollback}; rolling back failed: {error}")]
    RollbackFailed {
        /// The rollback.
        rollback: Arc<super::swap::UpgradeError>,
        /// Why it failed.
        error: Arc<RestartError>,
    },
}

impl JobFailure {
    /// Whether another process took the job over: a job fenced off ends, never restarted.
    pub fn is_fenced(&self) -> bool {
        matches!(self, JobFailure::Fenced(_))
    }
}
