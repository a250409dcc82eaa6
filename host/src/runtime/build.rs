//! Building a job: everything that can fail on configuration, before anything is spawned.
//!
//! Loads every module (checked against its role's world), instantiates every subtask with its
//! limits and grants, calls `describe`, `init` and `restore`, then wires the channels. Every
//! error is collected and names its operator and subtask. Building touches nothing outside
//! the guests (`restore` loads state only): a sink reconciles its outside world with the
//! restored checkpoint (`recover`) as the first step of running, once the whole job is built.
//! A restart after a failure goes through the same path, from the job's latest completed
//! checkpoint.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::channel::{Receiver, Sender};
use super::coordinator::{Commands, CoordinatorTask};
use super::instance::RoleInstance;
use super::remote::{ChannelId, Deploy, Placed, PointRef, Remote};
use super::restore::{self, RestoredTime};
use super::subtask::{Command, Event, Subtask};
use super::wiring::Wiring;
use super::{
    BuildCause, BuildError, Job, JobRecord, JobSpec, OperatorInfo, RestartError, RestoreFrom,
    SourceBound,
};
use crate::connectors::secret::Secrets;
use crate::connectors::{Connector, Setup};
use crate::engine::bindings::{self, Context};
use crate::engine::{Engine, Grants, Instance, Limits, Module};
use crate::ids::{CheckpointId, JobId, SubtaskId};
use crate::key_group::key_group_range;
use crate::metrics::{JobMetrics, Topology};
use crate::protected::Protected;
use crate::snapshot::Rescale;
use crate::store::{States, Store, StoreError, fence};
use crate::time::timers::TimerService;
use crate::time::watermarks::{Generator, Valve};
use crate::topology::{Implementation, OperatorPlan, Plan, Role};

/// What building, and rebuilding after a failure, starts from.
#[derive(Clone)]
pub(super) struct Blueprint {
    pub(super) engine: Arc<Engine>,
    pub(super) store: Store,
    pub(super) job: JobId,
    pub(super) plan: Plan,
    pub(super) record: JobRecord,
    limits: Limits,
    /// The folders no mount may reach.
    protected: Arc<Protected>,
    /// The secrets of its connectors.
    secrets: Arc<Secrets>,
    /// The point the job was started from, for a restart before its first checkpoint; let
    /// go once one completed (see [`Blueprint::forget_initial`]).
    initial: Option<Arc<RestoreFrom>>,
    /// What the job counts, kept across restarts.
    pub(super) metrics: Arc<JobMetrics>,
    /// Where the subtasks run when not in this process (`host/src/cluster/`).
    pub(super) remote: Option<Arc<dyn Remote>>,
    /// On a worker: the lease its subtasks check before acting ([`super::lease`]).
    lease: Option<super::lease::Lease>,
    /// How far its sources read, for a bounded run.
    bound: Option<Arc<SourceBound>>,
}

/// The subtasks of a job that one process runs, built and wired: the whole job in one
/// process, or a worker's share of it ([`build_share`]).
pub struct Share {
    /// The subtasks, ready to run.
    pub subtasks: Vec<Subtask>,
    /// What the checkpoint metadata records of each operator (of those with a subtask here:
    /// the others were not started, and say nothing of their module).
    pub operators: Vec<OperatorInfo>,
    /// A command sender per subtask.
    pub commands: Commands,
    /// The channels whose upstream subtask runs here and downstream one elsewhere: what the
    /// upstream sends arrives at this receiver, to be carried over.
    pub outbound: Vec<(ChannelId, Receiver)>,
    /// The channels whose downstream subtask runs here and upstream one elsewhere: what is
    /// carried over goes into this sender.
    pub inbound: Vec<(ChannelId, Sender)>,
}

/// What a worker builds its share of a job from.
pub struct ShareSpec {
    /// The job.
    pub job: JobId,
    /// The validated job file.
    pub plan: Plan,
    /// Its job file and where it resolves.
    pub record: JobRecord,
    /// State to resume from, checked against the plan and verified.
    pub restore: Option<RestoreFrom>,
    /// The guests' limits.
    pub limits: Limits,
    /// The folders no mount may reach.
    pub protected: Protected,
    /// The secrets of its connectors, read here from where the job file says.
    pub secrets: Secrets,
    /// The subtasks that run here.
    pub here: std::collections::BTreeSet<SubtaskId>,
    /// The worker's lease, which its subtasks check before acting ([`super::lease`]).
    pub lease: Option<super::lease::Lease>,
}

/// Builds the subtasks of `spec.here` (loaded, started, restored) and wires them to each
/// other, and to the channels that cross to other processes; their events go to `events`.
pub async fn build_share(
    engine: Arc<Engine>,
    store: Store,
    spec: ShareSpec,
    events: mpsc::UnboundedSender<Event>,
) -> Result<Share, Vec<BuildError>> {
    let metrics = Arc::new(JobMetrics::new(spec.job.clone(), Topology::of(&spec.plan)));
    let blueprint = Blueprint {
        engine,
        store,
        job: spec.job,
        plan: spec.plan,
        record: spec.record,
        limits: spec.limits,
        protected: Arc::new(spec.protected),
        secrets: Arc::new(spec.secrets),
        initial: None,
        metrics,
        remote: None,
        bound: None,
        lease: spec.lease,
    };
    let here = |subtask: &SubtaskId| spec.here.contains(subtask);
    blueprint.share(spec.restore.as_ref(), &here, events).await
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
        record,
        restore,
        taking_over,
        limits,
        protected,
        secrets,
        remote,
        bound,
    } = spec;
    let initial = restore.map(Arc::new);
    let metrics = Arc::new(JobMetrics::new(job.clone(), Topology::of(&plan)));
    let blueprint = Blueprint {
        engine,
        store,
        job,
        plan,
        record,
        limits,
        protected: Arc::new(protected),
        secrets: Arc::new(secrets),
        initial: initial.clone(),
        metrics,
        remote,
        bound,
        lease: None,
    };
    let resumed = initial.as_ref().map(|r| r.metadata.checkpoint);
    let first = crate::store::fence::first_checkpoint(resumed, taking_over);
    let (placed, coordinator) = blueprint.assemble(initial.as_deref(), first).await?;
    Ok(Job {
        placed,
        coordinator,
        first,
    })
}

/// The newest retained checkpoint of `job`, read and verified, that its lease says the job's
/// own process wrote ([`crate::store::fence::admits`]); one it did not is passed over with a
/// warning naming it, and left where it is.
fn latest_checkpoint(
    store: &Store,
    job: &JobId,
    read_states: bool,
) -> Result<Option<RestoreFrom>, StoreError> {
    let lease = store.lease(job)?;
    for checkpoint in store.checkpoints(job)?.into_iter().rev() {
        let point = store.read_point(&store.layout().checkpoint(job, checkpoint))?;
        let (recorded, generation) = (point.metadata.checkpoint, point.metadata.generation);
        if let Err(unfit) = fence::admits(lease.as_ref(), checkpoint, recorded, generation) {
            let shown = store.display(&point.dir);
            tracing::warn!("passing over {shown} to restart from: {unfit}");
            continue;
        }
        let states = match read_states {
            true => store.read_states(&point)?,
            false => States::new(),
        };
        let location = store.layout().relative(&point.dir).unwrap_or(point.dir);
        return Ok(Some(RestoreFrom {
            metadata: point.metadata,
            states,
            point: Some(PointRef {
                location,
                renames: Vec::new(),
                allow_non_restored: false,
            }),
        }));
    }
    Ok(None)
}

impl Blueprint {
    /// The checkpoint the job started from, if any.
    pub(super) fn initial_checkpoint(&self) -> Option<CheckpointId> {
        self.initial.as_ref().map(|r| r.metadata.checkpoint)
    }

    /// Lets go of the point the job started from (every restored blob of it): a checkpoint of
    /// the job completed, and a restart goes back to the latest one of those instead.
    pub(super) fn forget_initial(&mut self) {
        self.initial = None;
    }

    /// Rebuilds the job from its latest completed checkpoint (or the point it started from),
    /// numbering new checkpoints from `next` at the least.
    pub(super) async fn restart(
        &self,
        next: CheckpointId,
    ) -> Result<(Placed, CoordinatorTask), RestartError> {
        let (store, job) = (self.store.clone(), self.job.clone());
        // Subtasks elsewhere read the point's states themselves.
        let read_states = self.remote.is_none();
        let latest =
            tokio::task::spawn_blocking(move || latest_checkpoint(&store, &job, read_states))
                .await
                .expect("reading a checkpoint does not panic")?;
        let restore = latest.map(Arc::new).or_else(|| self.initial.clone());
        let first = restore
            .as_ref()
            .map_or(next, |r| r.metadata.checkpoint.next().max(next));
        self.assemble(restore.as_deref(), first)
            .await
            .map_err(RestartError::Build)
    }

    /// Builds the job: every subtask started and restored (from `restore`, if given), here or
    /// elsewhere, then wired to its peers and to a coordinator whose first checkpoint is
    /// `first`.
    async fn assemble(
        &self,
        restore: Option<&RestoreFrom>,
        first: CheckpointId,
    ) -> Result<(Placed, CoordinatorTask), Vec<BuildError>> {
        let (events_tx, events) = mpsc::unbounded_channel();
        if let Some(remote) = &self.remote {
            let deploy = Deploy {
                job: &self.job,
                plan: &self.plan,
                record: &self.record,
                point: restore.map(|r| r.point.as_ref().expect("a point elsewhere has a location")),
                limits: self.limits,
                events: events_tx.clone(),
            };
            let deployed = remote.deploy(deploy).await?;
            let count = deployed.commands.len();
            let channels = (deployed.commands, (events_tx, events));
            let coordinator =
                CoordinatorTask::new(self.clone(), deployed.operators, channels, first);
            return Ok((Placed::Elsewhere(deployed.session, count), coordinator));
        }
        let share = self.share(restore, &|_| true, events_tx.clone()).await?;
        let channels = (share.commands, (events_tx, events));
        let coordinator = CoordinatorTask::new(self.clone(), share.operators, channels, first);
        Ok((Placed::Here(share.subtasks), coordinator))
    }

    /// Builds the subtasks that run `here` (every one, for a job in one process), wired to
    /// each other and to the channels that cross elsewhere; their events go to `events`.
    async fn share(
        &self,
        restore: Option<&RestoreFrom>,
        here: &(dyn Fn(&SubtaskId) -> bool + Sync),
        events: mpsc::UnboundedSender<Event>,
    ) -> Result<Share, Vec<BuildError>> {
        let (instances, operators) = self.start_all(restore, here).await?;
        let mut wiring = Wiring::new(&self.plan, here);
        let mut subtasks = Vec::new();
        let mut commands = BTreeMap::new();
        for started in instances {
            let (command_tx, command_rx) = mpsc::unbounded_channel();
            commands.insert(started.0.subtask().clone(), command_tx);
            let channels = (command_rx, events.clone());
            subtasks.push(self.wire(started, channels, &mut wiring, restore));
        }
        Ok(Share {
            subtasks,
            operators,
            commands,
            outbound: wiring.outbound,
            inbound: wiring.inbound,
        })
    }

    /// Loads every module, and starts and restores every subtask: the instances in plan
    /// order, and what the checkpoint metadata will record of each operator. Collects every
    /// error.
    async fn start_all(
        &self,
        restore: Option<&RestoreFrom>,
        here: &(dyn Fn(&SubtaskId) -> bool + Sync),
    ) -> Result<(Vec<Started>, Vec<OperatorInfo>), Vec<BuildError>> {
        let mut errors = Vec::new();
        let started_at = std::time::Instant::now();
        let indices = |op: &OperatorPlan| indices_here(op, here);
        let modules = self.load_modules(&|op| !indices(op).is_empty()).await?;
        tracing::debug!(elapsed = ?started_at.elapsed(), "modules loaded");
        let (mut instances, mut infos) = (Vec::new(), Vec::new());
        for (op, module) in self.plan.operators.iter().zip(&modules) {
            let mut info = info_of(op, module.as_ref());
            let indices = indices(op);
            if !indices.is_empty() {
                let started = self.start_operator(op, module.as_ref(), &indices, &mut info);
                let (mut started, refused) = started.await;
                errors.extend(refused);
                let mut times = Vec::new();
                if started.len() == indices.len() {
                    let restored = restore::restore_operator(op, &mut started, restore, &mut info);
                    match restored.await {
                        Ok(restored) => times = restored,
                        Err(refused) => errors.extend(refused),
                    }
                    tracing::debug!(operator = %op.id, elapsed = ?started_at.elapsed(), "restored");
                }
                let times = times.into_iter().chain(std::iter::repeat_with(|| None));
                instances.extend(started.into_iter().zip(times));
            }
            infos.push(info);
        }
        if errors.is_empty() {
            Ok((instances, infos))
        } else {
            Err(errors)
        }
    }

    /// Starts `op`'s subtasks `indices` (its module's instances, or its connector's), each
    /// described and initialized into `info`; returns those started and the errors of the rest.
    async fn start_operator(
        &self,
        op: &OperatorPlan,
        module: Option<&Module>,
        indices: &[u32],
        info: &mut OperatorInfo,
    ) -> (Vec<RoleInstance>, Vec<BuildError>) {
        let (mut started, mut errors) = (Vec::new(), Vec::new());
        for &index in indices {
            let instance = match module {
                Some(module) => {
                    let started = self.start_subtask(op, module, index, info).await;
                    started.map(RoleInstance::from)
                }
                None => self.start_connector(op, index, info).await,
            };
            match instance {
                Ok(instance) => started.push(instance),
                Err(cause) => errors.push(BuildError {
                    operator: op.id.clone(),
                    subtask: Some(index),
                    cause,
                }),
            }
        }
        tracing::debug!(operator = %op.id, "instantiated");
        (started, errors)
    }

    /// A started subtask, given its channels: inputs and outputs from `wiring`, commands from
    /// the coordinator and events to it.
    fn wire(
        &self,
        (instance, time): Started,
        (commands, events): (
            mpsc::UnboundedReceiver<Command>,
            mpsc::UnboundedSender<Event>,
        ),
        wiring: &mut Wiring,
        restore: Option<&RestoreFrom>,
    ) -> Subtask {
        let id = instance.subtask().clone();
        let operators = &self.plan.operators;
        let op_index = operators.iter().position(|op| op.id == id.operator);
        let op_index = op_index.expect("planned operator");
        let op = &operators[op_index];
        let counters = self.metrics.subtask(&id);
        let (timers, watermark) = match time {
            Some(RestoredTime { timers, watermark }) => (timers, watermark),
            None => (TimerService::new(self.plan.max_parallelism), None),
        };
        counters.timers_pending(timers.pending());
        let now = std::time::Instant::now();
        let inputs = wiring.inputs.remove(&(op_index, id.index));
        let inputs = inputs.unwrap_or_default();
        Subtask {
            output: wiring.output(&self.plan, op_index, id.index, counters.clone()),
            counters,
            id,
            role: op.role,
            instance,
            commands,
            events,
            store: self.store.clone(),
            job: self.job.clone(),
            records_per_second_max: op.records_per_second_max,
            bound: self.bound.clone().filter(|_| op.role == Role::Source),
            generator: Generator::new(op.watermark, watermark, now),
            recover: recover_checkpoint(restore, op),
            held: None,
            swap: None,
            swapped: None,
            processed_a_batch: false,
            valve: Valve::new(inputs.len()),
            timers,
            inputs,
            lease: self.lease.clone(),
        }
    }

    /// Loads every operator's module (each file once), all at once on the blocking pool: a
    /// cold compile takes seconds (tens for a Python component), and modules compile apart.
    /// A connector has none, and neither has an operator with no subtask here.
    async fn load_modules(
        &self,
        needed: &(dyn Fn(&OperatorPlan) -> bool + Sync),
    ) -> Result<Vec<Option<Module>>, Vec<BuildError>> {
        let mut loads = BTreeMap::new();
        for op in self.plan.operators.iter().filter(|op| needed(op)) {
            let Some(path) = op.module() else { continue };
            let (engine, path, role) = (self.engine.clone(), path.to_owned(), op.role);
            loads.entry((path.clone(), role)).or_insert_with(|| {
                tokio::task::spawn_blocking(move || engine.load(&path, role).map_err(Arc::new))
            });
        }
        let mut loaded = BTreeMap::new();
        for (key, load) in loads {
            loaded.insert(key, load.await.expect("loading a module does not panic"));
        }
        let (mut modules, mut errors) = (Vec::new(), Vec::new());
        for op in &self.plan.operators {
            let Some(path) = op.module() else {
                modules.push(None);
                continue;
            };
            match loaded.get(&(path.to_owned(), op.role)) {
                None => modules.push(None),
                Some(Ok(module)) => modules.push(Some(module.clone())),
                Some(Err(e)) => errors.push(BuildError {
                    operator: op.id.clone(),
                    subtask: None,
                    cause: BuildCause::Module(e.clone()),
                }),
            }
        }
        if errors.is_empty() {
            Ok(modules)
        } else {
            Err(errors)
        }
    }

    /// Connects one subtask of the connector operator `op` to its server, and records what it
    /// is in `info`.
    async fn start_connector(
        &self,
        op: &OperatorPlan,
        index: u32,
        info: &mut OperatorInfo,
    ) -> Result<RoleInstance, BuildCause> {
        let Implementation::Connector(config) = &op.implementation else {
            unreachable!("a module's subtask started as a connector")
        };
        let subtask = SubtaskId {
            operator: op.id.clone(),
            index,
        };
        let setup = Setup {
            job: &self.job,
            subtask: &subtask,
            parallelism: op.parallelism,
            config,
            secret: self.secrets.of(&op.id),
        };
        let connector = Connector::open(setup).await;
        let connector = connector.map_err(|e| BuildCause::Connector(Arc::new(e)))?;
        describe_into(info, connector.describe());
        // Each subtask keeps what is its own from every old subtask's state, at any
        // parallelism, the same one included (a source's subject filters follow their order in
        // the job file, which may change).
        info.rescale = Rescale::Broadcast;
        Ok(RoleInstance::Connector(connector))
    }

    /// Instantiates one subtask and starts it: `describe`, then `init` (also for a live swap).
    pub(super) async fn start_subtask(
        &self,
        op: &OperatorPlan,
        module: &Module,
        index: u32,
        info: &mut OperatorInfo,
    ) -> Result<Instance, BuildCause> {
        let limits = Limits {
            memory_bytes_max: op
                .memory_bytes_max
                .map_or(self.limits.memory_bytes_max, |m| m as usize),
            call_ms_max: op.call_ms_max.unwrap_or(self.limits.call_ms_max),
        };
        let subtask = SubtaskId {
            operator: op.id.clone(),
            index,
        };
        let grants = Grants {
            mounts: &op.mounts,
            clock: op.clock,
            protected: &self.protected,
        };
        let mut instance = self
            .engine
            .instantiate(module, subtask, limits, grants)
            .await
            .map_err(BuildCause::Instantiate)?;
        let key_groups = key_group_range(index, op.parallelism, self.plan.max_parallelism);
        let context = Context {
            operator_id: op.id.to_string(),
            subtask: index,
            parallelism: op.parallelism,
            max_parallelism: self.plan.max_parallelism,
            key_group_start: key_groups.start,
            key_group_end: key_groups.end,
            config: op.config.clone(),
        };
        let described = instance.describe().await?;
        describe_into(info, described);
        instance.init(&context).await?;
        Ok(instance)
    }
}

/// What a point records of `op` before its subtasks are described: its module's hash (empty
/// for a connector, which has no module).
fn info_of(op: &OperatorPlan, module: Option<&Module>) -> OperatorInfo {
    OperatorInfo {
        id: op.id.clone(),
        role: op.role,
        parallelism: op.parallelism,
        module_sha256: module.map_or(String::new(), |m| m.sha256.clone()),
        module_name: String::new(),
        module_version: String::new(),
        rescale: Rescale::Refuse,
        remap: None,
    }
}

/// Records what `describe` said in `info`.
fn describe_into(info: &mut OperatorInfo, described: bindings::ModuleInfo) {
    info.module_name = described.name;
    info.module_version = described.version;
    info.rescale = match described.rescale {
        bindings::Rescale::Refuse => Rescale::Refuse,
        bindings::Rescale::Union => Rescale::Union,
    };
}

/// A subtask started (and restored): its instance, and the timers and watermark it restored.
type Started = (RoleInstance, Option<RestoredTime>);

/// The indices of `op`'s subtasks that run `here`.
fn indices_here(op: &OperatorPlan, here: &(dyn Fn(&SubtaskId) -> bool + Sync)) -> Vec<u32> {
    let id = |index| SubtaskId {
        operator: op.id.clone(),
        index,
    };
    (0..op.parallelism).filter(|&i| here(&id(i))).collect()
}

/// The checkpoint a sink restored from, whose outside world it reconciles (`recover`) once
/// the job starts; none for other roles, and for a sink the point has no state for.
fn recover_checkpoint(restore: Option<&RestoreFrom>, op: &OperatorPlan) -> Option<CheckpointId> {
    let restore = restore.filter(|_| op.role == Role::Sink)?;
    let has_state = restore.metadata.operators.iter().any(|s| s.id == op.id);
    has_state.then_some(restore.metadata.checkpoint)
}
