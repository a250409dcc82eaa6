//! Builds a job from its plan, then runs it: one tokio task per subtask plus the coordinator.
//!
//! [`build`] does everything that can fail on configuration before anything is spawned: it
//! loads every module, instantiates every subtask, calls `init` and `restore`, and wires the
//! channels, returning *all* errors, each naming its operator. `host check` is `build` without
//! [`Job::spawn`].

pub mod channel;
pub mod coordinator;
pub mod partition;
pub mod subtask;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::engine::bindings::{Context, StateOrigin};
use crate::engine::{Engine, Limits, Module};
use crate::ids::{CheckpointId, JobId, OperatorId, SavepointId, SubtaskId};
use crate::store::{Metadata, States, Store};
use crate::topology::{Plan, Role};
use channel::{Receiver, Sender, channel};
use coordinator::CoordinatorTask;
use partition::{Output, OutputEdge};
use subtask::Subtask;

/// Records in flight on one input channel before its sender waits.
pub const CHANNEL_RECORDS_MAX: u32 = 8 * 1_024;

/// What a job is started from.
pub struct JobSpec {
    /// The new job's id.
    pub job: JobId,
    /// The validated job file.
    pub plan: Plan,
    /// The job file's text, recorded in every checkpoint.
    pub job_file: String,
    /// State to resume from, already checked against the plan and verified.
    pub restore: Option<RestoreFrom>,
    /// Limits of every guest instance.
    pub limits: Limits,
    /// Called after each checkpoint is published and before its sinks are told to commit:
    /// the riskiest moment to crash, which fault-injection tests aim at.
    pub after_publish: Option<PublishHook>,
}

/// See [`JobSpec::after_publish`].
pub type PublishHook = Arc<dyn Fn(CheckpointId) + Send + Sync>;

/// A verified checkpoint or savepoint to resume from.
pub struct RestoreFrom {
    /// Its metadata.
    pub metadata: Metadata,
    /// Its state blobs.
    pub states: States,
}

/// A problem found while building a job, naming the operator (and subtask) at fault.
#[derive(Debug)]
pub struct BuildError {
    /// The operator at fault.
    pub operator: OperatorId,
    /// The subtask at fault, if one.
    pub subtask: Option<u32>,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.subtask {
            Some(subtask) => write!(
                f,
                "operator `{}` (subtask {subtask}): {}",
                self.operator, self.message
            ),
            None => write!(f, "operator `{}`: {}", self.operator, self.message),
        }
    }
}

/// What the checkpoint metadata records of each operator.
#[derive(Clone, Debug)]
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
}

/// A job built and ready to spawn.
pub struct Job {
    subtasks: Vec<Subtask>,
    coordinator: CoordinatorTask,
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
        reply: oneshot::Sender<Result<Saved, String>>,
    },
    /// Stop now without a final checkpoint; output since the last checkpoint is not committed.
    Cancel {
        /// Answered once every subtask has stopped.
        reply: oneshot::Sender<()>,
    },
}

/// How a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every source ended and the final checkpoint was committed.
    Finished,
    /// Stopped on request, with a savepoint if one was asked for.
    Stopped(Option<Saved>),
    /// Failed; the error names the operator.
    Failed(String),
}

/// A running job.
pub struct JobHandle {
    requests: mpsc::Sender<Request>,
    outcome: JoinHandle<Outcome>,
}

impl JobHandle {
    /// A sender for requests to this job (for the control socket).
    pub fn requests(&self) -> mpsc::Sender<Request> {
        self.requests.clone()
    }

    /// Waits for the job to end.
    pub async fn wait(self) -> Outcome {
        self.outcome
            .await
            .unwrap_or_else(|e| Outcome::Failed(format!("the coordinator panicked: {e}")))
    }
}

impl Job {
    /// Starts every subtask and the coordinator.
    pub fn spawn(self) -> JobHandle {
        let (requests, requests_rx) = mpsc::channel(16);
        let outcome = tokio::spawn(self.coordinator.run(self.subtasks, requests_rx));
        JobHandle { requests, outcome }
    }

    /// The operators of the job as checkpoint metadata records them.
    pub fn operators(&self) -> &[OperatorInfo] {
        self.coordinator.operators()
    }
}

/// Loads, instantiates, initializes and restores every subtask of `spec`, and wires them.
pub async fn build(
    engine: Arc<Engine>,
    store: Store,
    spec: JobSpec,
) -> Result<Job, Vec<BuildError>> {
    let JobSpec {
        job,
        plan,
        job_file,
        restore,
        limits,
        after_publish,
    } = spec;
    let mut errors = Vec::new();
    let modules: Vec<Option<Module>> = plan
        .operators
        .iter()
        .map(|op| {
            engine
                .load(&op.module, op.role)
                .map_err(|e| {
                    errors.push(BuildError {
                        operator: op.id.clone(),
                        subtask: None,
                        message: e.to_string(),
                    })
                })
                .ok()
        })
        .collect();
    if !errors.is_empty() {
        return Err(errors);
    }

    let (events_tx, events) = mpsc::unbounded_channel();
    let mut infos = Vec::new();
    let mut instances = Vec::new();
    for (op, module) in plan.operators.iter().zip(modules.iter().flatten()) {
        let mut info = OperatorInfo {
            id: op.id.clone(),
            role: op.role,
            parallelism: op.parallelism,
            module_sha256: module.sha256.clone(),
            module_name: String::new(),
            module_version: String::new(),
        };
        let origin = restore
            .as_ref()
            .and_then(|r| r.metadata.operators.iter().find(|s| s.id == op.id));
        for index in 0..op.parallelism {
            let subtask = SubtaskId {
                operator: op.id.clone(),
                index,
            };
            let fail = |message: String| BuildError {
                operator: op.id.clone(),
                subtask: Some(index),
                message,
            };
            let mut instance = match engine
                .instantiate(module, subtask.clone(), limits, &op.mounts)
                .await
            {
                Ok(instance) => instance,
                Err(e) => {
                    errors.push(fail(e.to_string()));
                    continue;
                }
            };
            let context = Context {
                operator_id: op.id.to_string(),
                subtask: index,
                parallelism: op.parallelism,
                config: op.config.clone(),
            };
            let started = async {
                let described = instance.describe().await?;
                info.module_name = described.name;
                info.module_version = described.version;
                instance.init(&context).await?;
                if let (Some(origin), Some(restore)) = (origin, &restore)
                    && let Some(blob) = restore.states.get(&(op.id.clone(), index))
                {
                    let from = StateOrigin {
                        module_name: origin.module_name.clone(),
                        module_version: origin.module_version.clone(),
                        module_sha256: origin.module_sha256.clone(),
                    };
                    instance.restore(blob, &from).await?;
                    if op.role == Role::Sink {
                        // The restored checkpoint is complete: publish what it prepared.
                        instance.commit(restore.metadata.checkpoint.0).await?;
                    }
                }
                Ok::<_, crate::engine::GuestError>(())
            };
            match started.await {
                Ok(()) => instances.push((subtask, instance)),
                Err(e) => errors.push(fail(e.to_string())),
            }
        }
        infos.push(info);
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut wiring = Wiring::new(&plan);
    let mut subtasks = Vec::new();
    let mut commands = BTreeMap::new();
    for (id, instance) in instances {
        let op_index = plan
            .operators
            .iter()
            .position(|op| op.id == id.operator)
            .expect("planned operator");
        let op = &plan.operators[op_index];
        let (command_tx, command_rx) = mpsc::unbounded_channel();
        commands.insert(id.clone(), command_tx);
        subtasks.push(Subtask {
            inputs: wiring
                .inputs
                .remove(&(op_index, id.index))
                .unwrap_or_default(),
            output: wiring.output(&plan, op_index, id.index),
            id,
            role: op.role,
            instance,
            commands: command_rx,
            events: events_tx.clone(),
            store: store.clone(),
            job: job.clone(),
            records_per_second_max: op.records_per_second_max,
        });
    }
    let first = restore
        .as_ref()
        .map_or(CheckpointId(1), |r| r.metadata.checkpoint.next());
    let mut coordinator =
        CoordinatorTask::new(job, job_file, &plan, infos, store, commands, events, first);
    coordinator.after_publish = after_publish;
    Ok(Job {
        subtasks,
        coordinator,
    })
}

/// The channels of every edge, between every pair of subtasks it connects.
struct Wiring {
    /// Receivers by (operator index, subtask index).
    inputs: BTreeMap<(usize, u32), Vec<Receiver>>,
    /// Senders by (edge index, upstream subtask), one per reachable downstream subtask.
    senders: BTreeMap<(usize, u32), Vec<Sender>>,
}

impl Wiring {
    fn new(plan: &Plan) -> Self {
        let mut wiring = Wiring {
            inputs: BTreeMap::new(),
            senders: BTreeMap::new(),
        };
        for (e, edge) in plan.edges.iter().enumerate() {
            let (up, down) = (&plan.operators[edge.from], &plan.operators[edge.to]);
            for i in 0..up.parallelism {
                let targets: Vec<u32> = match edge.partition {
                    crate::topology::Partition::Forward => vec![i],
                    _ => (0..down.parallelism).collect(),
                };
                for j in targets {
                    let (tx, rx) = channel(CHANNEL_RECORDS_MAX);
                    wiring.senders.entry((e, i)).or_default().push(tx);
                    wiring.inputs.entry((edge.to, j)).or_default().push(rx);
                }
            }
        }
        wiring
    }

    fn output(&mut self, plan: &Plan, op_index: usize, subtask: u32) -> Output {
        let edges = plan
            .edges
            .iter()
            .enumerate()
            .filter(|(_, edge)| edge.from == op_index)
            .map(|(e, edge)| {
                let targets = self.senders.remove(&(e, subtask)).expect("wired edge");
                OutputEdge::new(edge.partition, targets, plan.max_parallelism)
            })
            .collect();
        Output::new(edges)
    }
}
