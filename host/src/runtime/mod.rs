//! Builds a job from its plan, then runs it: one tokio task per subtask plus the coordinator.
//!
//! [`build()`] does everything that can fail on configuration before anything is spawned: it
//! loads every module, instantiates every subtask, calls `init` and `restore`, and wires the
//! channels, returning *all* errors, each naming its operator. `host check` is `build` without
//! [`Job::spawn`]. A spawned job is supervised: when a subtask fails, the job restarts from its
//! latest completed checkpoint as often as the job file's restart strategy allows.

mod bound;
mod build;
pub mod channel;
pub mod coordinator;
mod failure;
pub mod instance;
pub mod lease;
pub mod partition;
pub mod remote;
mod restore;
pub mod subtask;
pub mod swap;
mod wiring;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::connectors::secret::Secrets;
use crate::engine::Limits;
use crate::ids::{CheckpointId, JobId, OperatorId, SavepointId};
use crate::metrics::JobMetrics;
use crate::protected::Protected;
use crate::snapshot::Rescale;
use crate::store::{Definition, Metadata, Origin, States};
use crate::topology::{Plan, Role};
use coordinator::CoordinatorTask;

/// Control requests (save, stop) queued for a job before their senders wait.
pub const REQUESTS_QUEUED_MAX: usize = 16;

/// Records in flight on one input channel before its sender waits.
pub const CHANNEL_RECORDS_MAX: u32 = 8 * 1_024;

/// What a job is started from.
pub struct JobSpec {
    /// The new job's id.
    pub job: JobId,
    /// The validated job file.
    pub plan: Plan,
    /// What every point of the job records of its definition and lineage.
    pub record: JobRecord,
    /// State to resume from, already checked against the plan and verified.
    pub restore: Option<RestoreFrom>,
    /// Whether the job takes over the point's job (on an object store): its checkpoints are
    /// then numbered apart from the old process's ([`crate::store::fence::first_checkpoint`]).
    pub taking_over: bool,
    /// Limits of every guest instance, unless its operator sets its own in the job file.
    pub limits: Limits,
    /// The folders no mount may reach.
    pub protected: Protected,
    /// The secrets of its connectors, read by the caller from where the job file says.
    pub secrets: Secrets,
    /// Where the subtasks run when not in this process (`host/src/cluster/`); `None`: here.
    pub remote: Option<Arc<dyn remote::Remote>>,
    /// How far its sources read, for a bounded run (`host shadow`); `None`: as far as they go.
    pub bound: Option<Arc<SourceBound>>,
}

/// What every checkpoint and savepoint of a job records beside its state: enough to start the
/// job again without its job file, and where it came from.
#[derive(Clone, Debug)]
pub struct JobRecord {
    /// The job file's text, verbatim.
    pub job_file: String,
    /// Where its relative paths resolve.
    pub definition: Definition,
    /// The point the job started from, if any.
    pub resumed_from: Option<Origin>,
}

impl JobRecord {
    /// The record of a job run from `job_file`, whose relative paths resolve against `base`
    /// (made absolute here), started from `resumed_from`.
    pub fn new(job_file: String, base: &std::path::Path, resumed_from: Option<Origin>) -> Self {
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_owned());
        JobRecord {
            job_file,
            definition: Definition {
                base_dir: base.to_string_lossy().into_owned(),
            },
            resumed_from,
        }
    }
}

/// A verified checkpoint or savepoint to resume from.
pub struct RestoreFrom {
    /// Its metadata.
    pub metadata: Metadata,
    /// Its state blobs (none read when the subtasks run elsewhere: they read them).
    pub states: States,
    /// Where it lies, for subtasks elsewhere to read it; none for state only in memory.
    pub point: Option<remote::PointRef>,
}

/// What the checkpoint metadata records of each operator (and a worker tells its coordinator).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct OperatorInfo {
    /// Stable id.
    pub id: OperatorId,
    /// Role.
    pub role: Role,
    /// Subtasks.
    pub parallelism: u32,
    /// SHA-256 of its module.
    pub module_sha256: String,
    /// The module's own name.
    pub module_name: String,
    /// The module's own version.
    pub module_version: String,
    /// How its operator state rescales, as the module says.
    pub rescale: Rescale,
    /// How its state moved from the point's subtasks, if it was restored.
    pub remap: Option<Remap>,
}

pub use bound::SourceBound;
pub use build::{Share, ShareSpec, build, build_share};
pub use failure::{
    Aborted, BuildCause, BuildError, CheckpointFailure, JobFailure, Malformed, RemoteFailure,
    RestartError, SaveError, SwapFailure,
};
pub use remote::{ChannelId, PointRef};
pub use restore::Remap;
pub use swap::{Canary, UpgradeSpec, Upgraded};

/// A job built and ready to spawn.
pub struct Job {
    placed: remote::Placed,
    coordinator: CoordinatorTask,
    /// The number its first checkpoint takes.
    first: CheckpointId,
}

/// A savepoint (or final checkpoint) a job wrote on request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Saved {
    /// The savepoint's id.
    pub id: SavepointId,
    /// Its checkpoint number within the job.
    pub checkpoint: CheckpointId,
    /// Its folder.
    pub path: std::path::PathBuf,
}

/// A request to a running job.
#[derive(Debug)]
pub enum Request {
    /// Take a savepoint; with `stop`, stop the job right after it.
    Save {
        /// Stop after the savepoint.
        stop: bool,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Saved, SaveError>>,
    },
    /// Swap one operator's module live (`host upgrade`); answered once the swap is final, or
    /// was refused, failed or rolled back.
    Upgrade {
        /// What to swap.
        spec: UpgradeSpec,
        /// Where the answer goes.
        reply: coordinator::UpgradeReply,
    },
    /// Stop now without a final checkpoint; output since the last checkpoint is not committed.
    Cancel {
        /// Answered once every subtask has stopped.
        reply: oneshot::Sender<()>,
    },
}

/// How a job ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Every source ended and the final checkpoint was committed.
    Finished,
    /// Stopped on request, with a savepoint if one was asked for.
    Stopped(Option<Saved>),
    /// Failed; the failure names the operator, subtask or checkpoint at fault.
    Failed(JobFailure),
}

/// A running job.
pub struct JobHandle {
    requests: mpsc::Sender<Request>,
    metrics: Arc<JobMetrics>,
    outcome: JoinHandle<Outcome>,
}

impl JobHandle {
    /// What the job counts (for the control socket).
    pub fn metrics(&self) -> Arc<JobMetrics> {
        self.metrics.clone()
    }

    /// A sender for requests to this job (for the control socket).
    pub fn requests(&self) -> mpsc::Sender<Request> {
        self.requests.clone()
    }

    /// Waits for the job to end.
    pub async fn wait(self) -> Outcome {
        self.outcome
            .await
            .unwrap_or_else(|e| Outcome::Failed(JobFailure::CoordinatorPanicked(e.to_string())))
    }
}

impl Job {
    /// Starts every subtask and the coordinator, under supervision.
    pub fn spawn(self) -> JobHandle {
        if let Some(restored) = self.restored_from() {
            // Every subtask restored, the job admitted, no sink has recovered yet.
            let store = &self.coordinator.blueprint().store;
            let _ = store.fault_point(crate::fault::Phase::Restored, restored);
        }
        let (requests, requests_rx) = mpsc::channel(REQUESTS_QUEUED_MAX);
        let metrics = self.coordinator.blueprint().metrics.clone();
        let store = self.coordinator.blueprint().store.clone();
        let outcome = tokio::spawn(async move {
            let outcome = self.supervise(requests_rx).await;
            // Off the runtime's threads: a stall here must not hold up the answer to a stop.
            let ended = move || store.fault_point(crate::fault::Phase::Ended, CheckpointId(0));
            let _ = tokio::task::spawn_blocking(ended).await;
            outcome
        });
        JobHandle {
            requests,
            metrics,
            outcome,
        }
    }

    /// Runs the job; after a failure, restarts it from its latest completed checkpoint while
    /// the restart strategy allows, then gives up with the last error. A job fenced off by
    /// another process that took it over ends at once, never restarted. A failure within a live
    /// upgrade's canary window is a rollback, not counted: the job restarts at once from the
    /// checkpoint the new module restored, with the old module (the coordinator's blueprint
    /// names the new one only once the swap is final).
    async fn supervise(self, mut requests: mpsc::Receiver<Request>) -> Outcome {
        let Job {
            mut placed,
            mut coordinator,
            ..
        } = self;
        let strategy = coordinator.blueprint().plan.restart;
        let mut restarts = 0;
        loop {
            let outcome = coordinator.run(placed, &mut requests).await;
            let Outcome::Failed(failure) = outcome else {
                return outcome;
            };
            // The job is another process's now: restarting would run every sink's `recover`
            // again, over output the new owner may already have committed.
            if failure.is_fenced() {
                return Outcome::Failed(failure);
            }
            let blueprint = coordinator.blueprint().clone();
            if let Some(rollback) = coordinator.take_rollback() {
                tracing::warn!(job = %blueprint.job, "{rollback}");
                match blueprint.restart(coordinator.next_checkpoint()).await {
                    Ok(rebuilt) => (placed, coordinator) = rebuilt,
                    Err(error) => {
                        let error = Arc::new(error);
                        return Outcome::Failed(JobFailure::RollbackFailed { rollback, error });
                    }
                }
                continue;
            }
            if restarts == strategy.attempts {
                return Outcome::Failed(match restarts {
                    0 => failure,
                    restarts => JobFailure::GaveUp {
                        failure: Box::new(failure),
                        restarts,
                    },
                });
            }
            restarts += 1;
            blueprint.metrics.restarted();
            tracing::warn!(job = %blueprint.job, restart = restarts, of = strategy.attempts, "{failure}; restarting from the latest checkpoint");
            tokio::time::sleep(std::time::Duration::from_millis(strategy.delay_ms)).await;
            match blueprint.restart(coordinator.next_checkpoint()).await {
                Ok((rebuilt, rebuilt_coordinator)) => {
                    (placed, coordinator) = (rebuilt, rebuilt_coordinator)
                }
                Err(error) => {
                    return Outcome::Failed(JobFailure::RestartFailed {
                        failure: Box::new(failure),
                        error: Arc::new(error),
                    });
                }
            }
        }
    }

    /// The checkpoint the job was restored from, if any.
    pub fn restored_from(&self) -> Option<CheckpointId> {
        self.coordinator.blueprint().initial_checkpoint()
    }

    /// The number the job's first checkpoint takes: on from the point it resumed, or, taking
    /// the point's job over, from the next epoch ([`crate::store::fence::first_checkpoint`]).
    pub fn first_checkpoint(&self) -> CheckpointId {
        self.first
    }

    /// The operators of the job as checkpoint metadata records them.
    pub fn operators(&self) -> &[OperatorInfo] {
        self.coordinator.operators()
    }
}
