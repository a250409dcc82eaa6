//! A live swap of one operator's module (`host upgrade`), the runtime's side.
//!
//! 1. [`prepare()`]: the new module is compiled (through the engine's compiled-module cache, on
//!    the blocking pool), checked against the operator's world, and its instances, one per
//!    subtask, are started (`describe`, `init`) and say what they are: same role, same rescale
//!    mode, or the request is refused before the running job is touched. All off the hot path.
//! 2. The coordinator sends a [`SwapOrder`] to each subtask of the operator, then triggers a
//!    checkpoint. Each subtask snapshots for it as usual, forwards the barrier, and hands its
//!    state as of that snapshot over ([`SwapOrder::hand_over`]).
//! 3. [`run_swap`], once every subtask handed over, restores the new module's instances through
//!    the same code as a job that resumes from a point ([`super::restore::restore_operator`],
//!    here from the handed-over state instead of files): all of them, or none.
//!    - A module without `catch-up` is restored at that barrier ([`Step::Whole`]): the
//!      subtasks wait, and each goes on with its new instance or its old one.
//!    - A module with it (`live-operator`) is restored beside the running one
//!      ([`Step::Stage`]): the subtasks went on at once with the old module. Then it catches
//!      up ([`catch_up`]): at each next checkpoint the subtasks hand their state over again,
//!      and the new instances take in only what changed since the one before
//!      ([`Held::changes_since`], `restore-changes`), in the background while the rounds get
//!      shorter; at the last ([`Step::CatchUp`]) the subtasks wait. The pause costs what
//!      changed in one round, not what exists.
//! 4. The coordinator keeps further checkpoints back during the canary window; a failure within
//!    it restarts the job from the swap's checkpoint with the old module (see
//!    `runtime::supervise`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Duration, Instant};

use self::catch_up::Staged;
use self::prepare::start_instances;
pub(super) use self::prepare::{Prepared, prepare};
use super::build::Blueprint;
use super::subtask::Event;
use super::{JobFailure, OperatorInfo, RestoreFrom, SwapFailure, restore};
use crate::barrier::BarrierKind;
use crate::engine::{EngineError, Instance};
use crate::fault::Phase;
use crate::ids::{CheckpointId, OperatorId, Role, SubtaskId};
use crate::key_group::KEY_GROUP_FUNCTION;
use crate::snapshot::{Held, Rescale};
use crate::store::{Metadata, OperatorState, StateLayout};
use crate::topology::OperatorPlan;

/// What `host upgrade` asks of a running job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeSpec {
    /// The operator whose module is swapped.
    pub operator: OperatorId,
    /// The new module (an absolute path: the job resolves nothing against its own folder).
    pub module: PathBuf,
    /// The new configuration; none keeps the operator's own.
    pub config: Option<Vec<(String, String)>>,
    /// How long the new module is on probation.
    pub canary: Canary,
}

/// The canary window: the swap is final once the new module has processed `records` records
/// (over all its subtasks) and `ms` milliseconds have passed since the swap (or the sources
/// ran dry). A failure before that puts the old module back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    /// Records the new module must process.
    pub records: u64,
    /// Milliseconds the new module must run.
    pub ms: u64,
}

impl Canary {
    /// Whether a window open for `open_for`, in which the new module processed `records`
    /// records, has passed; it also has once the sources ran dry (`drained`).
    pub fn passed(&self, records: u64, open_for: Duration, drained: bool) -> bool {
        drained || (records >= self.records && open_for >= Duration::from_millis(self.ms))
    }
}

/// A swap that became final.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upgraded {
    /// The operator.
    pub operator: OperatorId,
    /// The checkpoint at which the swap took effect: the new module took over the state the
    /// old one snapshotted for it.
    pub checkpoint: CheckpointId,
    /// The checkpoint whose snapshot the new module was restored from beside the running one,
    /// before it caught up at `checkpoint`; none if it was restored at `checkpoint` itself (a
    /// module without `catch-up`).
    #[serde(default)]
    pub staged_from: Option<CheckpointId>,
    /// The checkpoints at which it caught up on what changed since, the last one at
    /// `checkpoint` (0 without `staged_from`).
    #[serde(default)]
    pub catch_up_rounds: u32,
    /// The new module's own name and version.
    pub module_name: String,
    /// Its version.
    pub module_version: String,
    /// The pause the swap caused: from the barrier's arrival at a subtask of the operator to
    /// the first record its new instance processed, the longest over its subtasks, in
    /// microseconds; none if no record reached the new module within the canary window.
    pub pause_us: Option<u64>,
    /// Records the new module processed within the canary window.
    pub canary_records: u64,
}

/// Why an upgrade was refused, failed, or rolled back; each names the operator.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// No such operator.
    #[error("the job has no operator `{0}`")]
    UnknownOperator(OperatorId),
    /// Sources and sinks are not swapped live.
    #[error(
        "operator `{operator}` is a {role}: only operators (role `operator`) are swapped live; \
         upgrade a {role} with `host stop --save` and `host run --from`"
    )]
    NotAnOperator {
        /// The operator.
        operator: OperatorId,
        /// Its role.
        role: Role,
    },
    /// The module cannot be loaded for the operator's world.
    #[error("operator `{operator}`: {source}")]
    Module {
        /// The operator.
        operator: OperatorId,
        /// Why.
        source: EngineError,
    },
    /// The new module's probe instance failed to start (`describe`, `init`).
    #[error("operator `{operator}`: the new module does not start: {failure}")]
    Start {
        /// The operator.
        operator: OperatorId,
        /// Why, in the module's words (boxed: the rarest answer keeps every other one small).
        failure: Box<SwapFailure>,
    },
    /// The new module rescales its operator state differently.
    #[error(
        "operator `{operator}`: the new module rescales its operator state by `{new:?}`, the \
         running one by `{old:?}`: its state could not follow a later parallelism change"
    )]
    Rescale {
        /// The operator.
        operator: OperatorId,
        /// The running module's mode.
        old: Rescale,
        /// The new module's mode.
        new: Rescale,
    },
    /// The new module cannot be put into the state folder's module store, where the points
    /// the job writes after the swap will name it.
    #[error("operator `{operator}`: cannot keep the new module in the module store: {source}")]
    Keep {
        /// The operator.
        operator: OperatorId,
        /// Why.
        source: crate::store::StoreError,
    },
    /// The module file changed between loading and keeping it.
    #[error("operator `{operator}`: {path} changed while it was prepared; upgrade again")]
    Changed {
        /// The operator.
        operator: OperatorId,
        /// The module file.
        path: PathBuf,
    },
    /// One upgrade at a time, and none while the job stops.
    #[error("operator `{operator}`: {why}")]
    Busy {
        /// The operator.
        operator: OperatorId,
        /// Why not now.
        why: &'static str,
    },
    /// The new module's `restore` (or its start) failed: the old module runs on.
    #[error(
        "operator `{operator}`: the new module failed to restore checkpoint {checkpoint}; the old \
         module runs on: {failure}"
    )]
    RestoreFailed {
        /// The operator.
        operator: OperatorId,
        /// The checkpoint it was to restore.
        checkpoint: CheckpointId,
        /// Why, in the module's words.
        failure: Arc<SwapFailure>,
    },
    /// The job failed within the canary window: it restarts with the old module.
    #[error(
        "operator `{operator}`: rolled back to the old module from checkpoint {checkpoint}: the \
         job failed within the canary window: {failure}"
    )]
    RolledBack {
        /// The operator.
        operator: OperatorId,
        /// The checkpoint the job restarts from.
        checkpoint: CheckpointId,
        /// The failure.
        failure: JobFailure,
    },
    /// The job ended (stopped or cancelled) before the swap was final.
    #[error(
        "operator `{operator}`: the job ended before the swap was final: {}",
        .failure.as_ref().map_or("it was stopped".to_owned(), ToString::to_string)
    )]
    JobEnded {
        /// The operator.
        operator: OperatorId,
        /// Why, if it failed.
        failure: Option<JobFailure>,
    },
}

/// What the coordinator tells each subtask of the swapped operator before the checkpoint.
#[derive(Debug)]
pub struct SwapOrder {
    /// The checkpoint at which the subtask hands its state over.
    pub checkpoint: CheckpointId,
    /// What the handover is for.
    pub step: Step,
    handovers: mpsc::UnboundedSender<Handover>,
    /// What the new module processed, over all subtasks (for the canary window).
    count: Arc<CanaryCount>,
}

/// What a subtask's state, handed over at a swap's checkpoint, is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The new instances restore it, while the subtasks wait to swap.
    Whole,
    /// The new instances restore it beside the running ones, or, restored, take in what
    /// changed since (a round of catching up): the subtasks go on at once.
    Stage,
    /// The staged instances take in what changed since, while the subtasks wait to swap.
    CatchUp,
}

/// What the new module's instances processed in the canary window, counted by the subtasks as
/// they go. A subtask counts itself as resumed before it counts its first records, and tells
/// the coordinator its pause (`Event::Resumed`) after: so once the coordinator sees records,
/// it knows how many pauses are still on their way to it, and waits for them before it ends
/// the window (else a busy subtask could close the window before its pause is known).
#[derive(Debug, Default)]
pub struct CanaryCount {
    records: AtomicU64,
    resumed: AtomicU32,
}

impl CanaryCount {
    /// A subtask's new instance processed `records` records (`first`: its first batch).
    fn add(&self, records: usize, first: bool) {
        if first {
            self.resumed.fetch_add(1, Ordering::Relaxed);
        }
        self.records.fetch_add(records as u64, Ordering::Release);
    }

    /// The records processed so far, and how many subtasks had resumed when they were.
    pub fn read(&self) -> (u64, u32) {
        let records = self.records.load(Ordering::Acquire);
        (records, self.resumed.load(Ordering::Relaxed))
    }
}

/// A subtask's new instance, and the host's copy of its state, if it snapshotted: else its
/// first snapshot is full.
pub type Taken = (Instance, Option<Held>);

/// One subtask's state, handed over to the swap.
pub(super) struct Handover {
    index: u32,
    /// The checkpoint it was handed over at.
    checkpoint: CheckpointId,
    /// Its state as of the checkpoint; none if its snapshot failed.
    held: Option<Held>,
    /// Where the new instance goes, if the subtask waits for it.
    reply: Option<oneshot::Sender<Taken>>,
}

impl SwapOrder {
    /// An order for `checkpoint`, and the receiving end of the handovers.
    pub(super) fn new(
        checkpoint: CheckpointId,
        step: Step,
        count: Arc<CanaryCount>,
    ) -> (Arc<SwapOrder>, mpsc::UnboundedReceiver<Handover>) {
        let (handovers, received) = mpsc::unbounded_channel();
        let order = SwapOrder {
            checkpoint,
            step,
            handovers,
            count,
        };
        (Arc::new(order), received)
    }

    /// The order for the next round of the same swap, at `checkpoint`.
    pub(super) fn next(&self, checkpoint: CheckpointId, step: Step) -> Arc<SwapOrder> {
        Arc::new(SwapOrder {
            checkpoint,
            step,
            handovers: self.handovers.clone(),
            count: self.count.clone(),
        })
    }

    /// Hands over subtask `index`'s state as of the checkpoint (none if its snapshot failed).
    /// To stage, returns at once with none: the old instance runs on. Otherwise waits for the
    /// swap: the new instance, restored from it, or none (the old one stays).
    pub async fn hand_over(&self, index: u32, held: Option<Held>) -> Option<Taken> {
        let (reply, answer) = oneshot::channel();
        let handover = Handover {
            index,
            checkpoint: self.checkpoint,
            held,
            reply: (self.step != Step::Stage).then_some(reply),
        };
        self.handovers.send(handover).ok()?;
        answer.await.ok()
    }
}

/// A subtask running a swapped-in instance: measures the pause, counts for the canary.
#[derive(Debug)]
pub struct Swapped {
    /// When the swap's barrier arrived at the subtask.
    arrived: Instant,
    count: Arc<CanaryCount>,
    /// Whether the new instance processed a record yet.
    resumed: bool,
}

impl Swapped {
    /// The subtask swapped at the barrier that arrived at `arrived`, under `order`.
    pub fn new(order: &SwapOrder, arrived: Instant) -> Swapped {
        Swapped {
            arrived,
            count: order.count.clone(),
            resumed: false,
        }
    }

    /// The new instance processed `records` records; the first time, the pause it caused.
    pub fn processed(&mut self, records: usize) -> Option<Duration> {
        let first = !std::mem::replace(&mut self.resumed, true);
        self.count.add(records, first);
        first.then(|| self.arrived.elapsed())
    }
}

/// Waits for every subtask of the operator to hand its state over, then starts and restores
/// the new module's instances from it: all of them, or none. A module with `catch-up` is
/// restored beside the running one (`Event::Staged`), then takes in what changed, over the
/// next handovers ([`catch_up::rounds`]). Tells the coordinator how it went (`Event::Swapped`).
pub(super) async fn run_swap(
    blueprint: Blueprint,
    prepared: Arc<Prepared>,
    running: OperatorInfo,
    checkpoint: CheckpointId,
    mut handovers: mpsc::UnboundedReceiver<Handover>,
    events: mpsc::UnboundedSender<Event>,
) {
    let parallelism = prepared.plan.parallelism as usize;
    let Some(base) = receive_all(&mut handovers, parallelism).await else {
        return;
    };
    let since = Instant::now();
    let result = restored_instances(&blueprint, &prepared, &running, checkpoint, &base);
    let result = result.await;
    let restore_ms = since.elapsed().as_secs_f64() * 1e3;
    let staged = prepared.module.catches_up();
    tracing::info!(operator = %running.id, %checkpoint, restore_ms, staged, ok = result.is_ok(), "new instances restored");
    let instances = match result {
        Ok(instances) if staged => instances,
        result => {
            let taken = result.map(|i| i.into_iter().map(|i| (i, None)).collect());
            return answer(checkpoint, taken, base, &events);
        }
    };
    // A fault point, for tests: a crash here, or a stall (as a slow module's would be).
    let store = blueprint.store.clone();
    let fault = move || store.fault_point(Phase::SwapStaged, checkpoint);
    let _ = tokio::task::spawn_blocking(fault).await;
    match Staged::copied(instances, checkpoint).await {
        Ok(staged) => {
            let (step, from) = (since.elapsed(), (checkpoint, base));
            catch_up::rounds(staged, &running, from, step, handovers, &events).await;
        }
        Err(failure) => answer(checkpoint, Err(failure), base, &events),
    }
}

/// Every subtask's handover of one checkpoint, by subtask index; none if the job went away.
async fn receive_all(
    handovers: &mut mpsc::UnboundedReceiver<Handover>,
    parallelism: usize,
) -> Option<BTreeMap<u32, Handover>> {
    let mut received = BTreeMap::new();
    while received.len() < parallelism {
        let handover = handovers.recv().await?;
        received.insert(handover.index, handover);
    }
    Some(received)
}

/// Tells the coordinator how the swap at `checkpoint` went, then gives each subtask that waits
/// its new instance (on failure, dropping the replies: each keeps its old instance).
fn answer(
    checkpoint: CheckpointId,
    result: Result<Vec<Taken>, SwapFailure>,
    received: BTreeMap<u32, Handover>,
    events: &mpsc::UnboundedSender<Event>,
) {
    // The coordinator hears of the swap before any new instance runs (and may fail).
    let result = result.map_err(Arc::new);
    let swapped = result.as_ref().map(|_| ()).map_err(Arc::clone);
    let _ = events.send(Event::Swapped {
        checkpoint,
        result: swapped,
    });
    for (taken, handover) in result.into_iter().flatten().zip(received.into_values()) {
        if let Some(reply) = handover.reply {
            let _ = reply.send(taken);
        }
    }
}

/// The held state of every subtask that handed some over, or which one did not.
fn held_by_subtask<'a>(
    operator: &OperatorId,
    received: &'a BTreeMap<u32, Handover>,
) -> Result<BTreeMap<u32, &'a Held>, SwapFailure> {
    received
        .iter()
        .map(|(&index, handover)| match &handover.held {
            Some(held) => Ok((index, held)),
            None => Err(SwapFailure::NoSnapshot {
                subtask: SubtaskId {
                    operator: operator.clone(),
                    index,
                },
                checkpoint: handover.checkpoint,
            }),
        })
        .collect()
}

/// The new module's instances, started and restored from the handed-over state.
async fn restored_instances(
    blueprint: &Blueprint,
    prepared: &Prepared,
    running: &OperatorInfo,
    checkpoint: CheckpointId,
    received: &BTreeMap<u32, Handover>,
) -> Result<Vec<Instance>, SwapFailure> {
    let held = held_by_subtask(&running.id, received)?;
    let states = held.into_iter();
    let states = states.map(|(index, held)| ((running.id.clone(), index), held.clone()));
    let point = RestoreFrom {
        metadata: handed_over(blueprint, running, checkpoint),
        states: states.collect(),
    };
    let mut info = prepared.info.clone();
    let mut instances = std::mem::take(&mut *prepared.instances.lock().expect("not poisoned"));
    if instances.len() != prepared.plan.parallelism as usize {
        instances = start_instances(blueprint, &prepared.plan, &prepared.module, &mut info).await?;
    }
    let restored =
        restore::restore_operator(&prepared.plan, &mut instances, Some(&point), &mut info).await;
    // The subtasks keep their own timers and watermark across the swap: what the handed-over
    // state holds of them is theirs already.
    restored.map_err(SwapFailure::Restore)?;
    Ok(instances)
}

/// What a point of the handed-over state would record: the operator as the old module wrote it.
fn handed_over(
    blueprint: &Blueprint,
    running: &OperatorInfo,
    checkpoint: CheckpointId,
) -> Metadata {
    Metadata {
        job: blueprint.job.clone(),
        checkpoint,
        kind: BarrierKind::Checkpoint,
        completed_unix_ms: 0,
        job_file: String::new(),
        definition: None,
        resumed_from: None,
        generation: None,
        max_parallelism: blueprint.plan.max_parallelism,
        key_group_function: KEY_GROUP_FUNCTION.to_owned(),
        state_layout: StateLayout::Timed,
        operators: vec![OperatorState {
            id: running.id.clone(),
            role: running.role,
            module_sha256: running.module_sha256.clone(),
            module_name: running.module_name.clone(),
            module_version: running.module_version.clone(),
            parallelism: running.parallelism,
            files: Vec::new(),
        }],
    }
}

/// The job file `text` with operator `plan.id` naming `plan`'s module and configuration: what
/// checkpoints record once a swap is final. A job file that does not parse is kept as is.
pub(super) fn job_file_with(text: &str, plan: &OperatorPlan) -> String {
    let Ok(mut table) = text.parse::<toml::Table>() else {
        return text.to_owned();
    };
    let operators = table.get_mut("operators").and_then(|o| o.as_array_mut());
    let named = operators
        .into_iter()
        .flatten()
        .filter_map(|o| o.as_table_mut());
    for op in named.filter(|o| o.get("id").and_then(|i| i.as_str()) == Some(plan.id.as_str())) {
        if let Some(module) = plan.module() {
            let module = module.to_string_lossy().into_owned();
            op.insert("module".to_owned(), toml::Value::String(module));
        }
        let config = plan.config.iter().cloned();
        let config = config.map(|(k, v)| (k, toml::Value::String(v))).collect();
        op.insert("config".to_owned(), toml::Value::Table(config));
    }
    toml::to_string(&table).unwrap_or_else(|_| text.to_owned())
}

mod catch_up;
mod prepare;
#[cfg(test)]
mod tests;
