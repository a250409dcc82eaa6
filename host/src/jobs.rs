//! Jobs seen from outside their processes, as the command line and `host serve` share them: the
//! jobs and points of a state folder as listed, and requests to a running job through its
//! control socket, with the same messages for both. Reads the state folder only; a running job
//! alone writes it.

use std::path::PathBuf;

use serde::Serialize;

use crate::control::{self, ControlError, ControlRequest, ControlResponse};
use crate::ids::{JobId, OperatorId, SavepointId};
use crate::metrics::Sample;
use crate::points::savepoint;
use crate::runtime::{Saved, UpgradeSpec, Upgraded};
use crate::store::{JobState, Store, StoreError};

/// Why a request to a job failed; each names the job.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The state folder has no such job.
    #[error("no job `{0}` (see `host list`)")]
    NoSuchJob(JobId),
    /// The job exists but no process runs it.
    #[error("job `{job}` is not running ({state})")]
    NotRunning {
        /// The job.
        job: JobId,
        /// What became of it.
        state: String,
    },
    /// The job refused or failed the request.
    #[error("job `{job}`: {message}")]
    Refused {
        /// The job.
        job: JobId,
        /// Its answer.
        message: String,
    },
    /// The job answered something else than the request calls for.
    #[error("job `{job}`: unexpected answer {answer}")]
    Unexpected {
        /// The job.
        job: JobId,
        /// The answer.
        answer: String,
    },
    /// The job answered that it stopped, but its process has not let go of it.
    #[error(
        "job `{job}` stopped, but its process still held it {waited:?} later \
         (see `host list`; a job started from its points now may be refused)"
    )]
    StillHeld {
        /// The job.
        job: JobId,
        /// How long it was waited for.
        waited: std::time::Duration,
    },
    /// The control socket broke.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The state folder could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Sends `request` to the running job `job`.
pub fn request(
    store: &Store,
    job: &JobId,
    request: &ControlRequest,
) -> Result<ControlResponse, RequestError> {
    let socket = store.layout().control_socket(job);
    match control::call(&socket, request) {
        Ok(ControlResponse::Error { message }) => Err(RequestError::Refused {
            job: job.clone(),
            message,
        }),
        Ok(response) => Ok(response),
        Err(ControlError::NotRunning(_)) => match store.read_status(job) {
            Err(_) => Err(RequestError::NoSuchJob(job.clone())),
            Ok(status) => Err(RequestError::NotRunning {
                job: job.clone(),
                state: describe_state(&status.state, false),
            }),
        },
        Err(e) => Err(e.into()),
    }
}

fn unexpected(job: &JobId, answer: ControlResponse) -> RequestError {
    RequestError::Unexpected {
        job: job.clone(),
        answer: format!("{answer:?}"),
    }
}

/// Longest a stopped job's process may take to let go of it once it answered.
pub const RELEASE_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Takes a savepoint of `job`, stopping it after with `stop`: then returns only once its
/// process has let go of the job, so that a job started from the savepoint right after is not
/// refused as beside a running one.
pub fn save(store: &Store, job: &JobId, stop: bool) -> Result<Saved, RequestError> {
    match request(store, job, &ControlRequest::Save { stop })? {
        ControlResponse::Saved(saved) if stop => released(store, job).map(|()| saved),
        ControlResponse::Saved(saved) => Ok(saved),
        other => Err(unexpected(job, other)),
    }
}

/// Waits until the process of `job`, which answered that it stopped, has let go of it.
fn released(store: &Store, job: &JobId) -> Result<(), RequestError> {
    match store.wait_released(job, RELEASE_WAIT_MAX)? {
        true => Ok(()),
        false => Err(RequestError::StillHeld {
            job: job.clone(),
            waited: RELEASE_WAIT_MAX,
        }),
    }
}

/// Swaps one operator's module of the running `job` live; returns once the swap is final.
pub fn upgrade(store: &Store, job: &JobId, spec: UpgradeSpec) -> Result<Upgraded, RequestError> {
    match request(store, job, &ControlRequest::Upgrade { spec })? {
        ControlResponse::Upgraded(upgraded) => Ok(upgraded),
        other => Err(unexpected(job, other)),
    }
}

/// Stops `job` without a savepoint; returns once its process has let go of it.
pub fn cancel(store: &Store, job: &JobId) -> Result<(), RequestError> {
    match request(store, job, &ControlRequest::Cancel)? {
        ControlResponse::Cancelled => released(store, job),
        other => Err(unexpected(job, other)),
    }
}

/// Every counter of the running `job`.
pub fn metrics(store: &Store, job: &JobId) -> Result<Sample, RequestError> {
    match request(store, job, &ControlRequest::Metrics)? {
        ControlResponse::Metrics(sample) => Ok(*sample),
        other => Err(unexpected(job, other)),
    }
}

/// A job's state in words, as `host list` shows it.
pub fn describe_state(state: &JobState, listening: bool) -> String {
    match state {
        JobState::Running { .. } if listening => "running".to_owned(),
        JobState::Running { .. } => "crashed (the process running it is gone)".to_owned(),
        JobState::Finished => "finished".to_owned(),
        JobState::Stopped {
            savepoint: Some(sp),
        } => format!("stopped with savepoint {sp}"),
        JobState::Stopped { savepoint: None } => "stopped".to_owned(),
        JobState::Failed { error } => format!("failed: {error}"),
    }
}

/// What became of a job, in one word (`host list` says more): the `state` label of the
/// `jobhost_jobs` gauge, and `phase` in `host list --json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// A process runs it (its control socket answers).
    Running,
    /// Its status says running, but no process answers for it.
    Crashed,
    /// Every source ended and its final checkpoint was committed.
    Finished,
    /// Stopped on request.
    Stopped,
    /// Failed.
    Failed,
}

impl Phase {
    /// Every phase, in the order a scrape lists them.
    pub const ALL: [Phase; 5] = [
        Phase::Running,
        Phase::Crashed,
        Phase::Finished,
        Phase::Stopped,
        Phase::Failed,
    ];

    /// The phase of a job in `state`, whose control socket is `listening` or not.
    pub fn of(state: &JobState, listening: bool) -> Phase {
        match state {
            JobState::Running { .. } if listening => Phase::Running,
            JobState::Running { .. } => Phase::Crashed,
            JobState::Finished => Phase::Finished,
            JobState::Stopped { .. } => Phase::Stopped,
            JobState::Failed { .. } => Phase::Failed,
        }
    }

    /// Its name, as a label value.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Crashed => "crashed",
            Phase::Finished => "finished",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
        }
    }
}

/// One job as `host list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct JobRow {
    /// Its id.
    pub job: JobId,
    /// The job file's name.
    pub name: String,
    /// Its state in words.
    pub state: String,
    /// Its state in one word.
    pub phase: Phase,
    /// Whether a process runs it now (its control socket answers).
    pub running: bool,
    /// When it started.
    pub started_unix_ms: u64,
    /// The point it resumed from.
    pub resumed_from: Option<PathBuf>,
    /// Where each of its subtasks is in event time, while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<Vec<SubtaskTime>>,
}

/// Where one subtask of a running job is in event time, as `host list --json` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct SubtaskTime {
    /// Its operator.
    pub operator: OperatorId,
    /// Its index.
    pub subtask: u32,
    /// Its watermark, none before its first.
    pub watermark: Option<i64>,
    /// How far its watermark is behind the wall clock, in milliseconds.
    pub watermark_lag_ms: Option<i64>,
    /// Timers it keeps pending.
    pub timers_pending: u64,
    /// Records that came in behind its watermark.
    pub records_late: u64,
}

impl SubtaskTime {
    /// Every subtask's, from a sample of the job's counters.
    fn of(sample: &Sample) -> Vec<SubtaskTime> {
        let subtasks = sample.subtasks.iter();
        subtasks
            .map(|s| SubtaskTime {
                operator: s.operator.clone(),
                subtask: s.index,
                watermark: s.watermark,
                watermark_lag_ms: s.watermark_lag_ms,
                timers_pending: s.timers_pending,
                records_late: s.records_late,
            })
            .collect()
    }
}

/// Every job of the state folder, oldest id first.
pub fn list(store: &Store) -> Result<Vec<JobRow>, StoreError> {
    let mut rows = Vec::new();
    for job in store.jobs()? {
        let Ok(status) = store.read_status(&job) else {
            continue;
        };
        let running = control::is_listening(&store.layout().control_socket(&job));
        let sample = running.then(|| metrics(store, &job).ok()).flatten();
        rows.push(JobRow {
            time: sample.as_ref().map(SubtaskTime::of),
            state: describe_state(&status.state, running),
            phase: Phase::of(&status.state, running),
            running,
            job: status.job,
            name: status.name,
            started_unix_ms: status.started_unix_ms,
            resumed_from: status.resumed_from,
        });
    }
    Ok(rows)
}

/// One savepoint or retained checkpoint as `host savepoints` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PointRow {
    /// Its savepoint id; none for a checkpoint.
    pub savepoint: Option<SavepointId>,
    /// Its folder.
    pub path: PathBuf,
    /// The job that took it.
    pub job: Option<JobId>,
    /// Its number within that job.
    pub checkpoint: Option<u64>,
    /// When it completed.
    pub completed_unix_ms: Option<u64>,
    /// The job it resumed from took the point this one descends from (lineage).
    pub resumed_from: Option<PathBuf>,
    /// Bytes of its files.
    pub state_bytes: Option<u64>,
    /// Why its metadata cannot be read.
    pub error: Option<String>,
}

/// Savepoints, then retained checkpoints, of every job or of `job`.
pub fn points(store: &Store, job: Option<&JobId>) -> Result<Vec<PointRow>, StoreError> {
    let listed = savepoint::list(store, job)?;
    let rows = listed.into_iter().map(|l| {
        let m = l.metadata.as_ref().ok();
        let status = m.and_then(|m| store.read_status(&m.job).ok());
        PointRow {
            state_bytes: m.map(|_| store.point_bytes(&l.dir)),
            job: m.map(|m| m.job.clone()),
            checkpoint: m.map(|m| m.checkpoint.0),
            completed_unix_ms: m.map(|m| m.completed_unix_ms),
            resumed_from: status.and_then(|s| s.resumed_from),
            error: l.metadata.err(),
            savepoint: l.savepoint,
            path: PathBuf::from(store.display(&l.dir)),
        }
    });
    Ok(rows.collect())
}
