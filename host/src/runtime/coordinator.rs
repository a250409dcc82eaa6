//! The coordinator task: triggers checkpoints, collects acks, completes checkpoints and
//! savepoints, tells sinks to commit, applies retention, and ends the job.
//!
//! One barrier's journey, the host's side: a periodic tick or a `save` request asks
//! [`Coordinator::trigger`] for barrier N, which goes to every source subtask as a command. Acks
//! come back as events once each subtask's state file is durable; when the pure coordinator says
//! `Complete`, this task writes `_metadata` and publishes the folder (a checkpoint under the
//! job, a savepoint under `savepoints/`), then sends `Commit(N)` to every sink.
//!
//! A live upgrade ([`upgrade`]) rides on one such checkpoint, and holds further ones back until
//! its canary window has passed.

mod tasks;
mod upgrade;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use super::build::Blueprint;
use super::channel::Closed;
use super::remote::{Placed, Session};
use super::subtask::{Command, Event};
use super::{
    Aborted, CheckpointFailure, JobFailure, OperatorInfo, Outcome, Request, SaveError, Saved,
};
use crate::barrier::{Barrier, BarrierKind, Coordinator, Progress, retention_victims};
use crate::fault::Phase;
use crate::ids::{CheckpointId, JobId, SavepointId, SubtaskId};
use crate::key_group::KEY_GROUP_FUNCTION;
use crate::metrics::{CheckpointStat, JobMetrics};
use crate::store::{Metadata, OperatorState, StateFile, StateLayout, Store};
use crate::topology::Role;
use tasks::panicked;
pub use tasks::spawn_subtasks;
pub use upgrade::UpgradeReply;

type Reply = oneshot::Sender<Result<Saved, SaveError>>;

/// The commands to every subtask.
pub type Commands = BTreeMap<SubtaskId, mpsc::UnboundedSender<Command>>;
/// Both ends of the subtasks' events (the coordinator's tasks send some too).
pub(super) type Events = (mpsc::UnboundedSender<Event>, mpsc::UnboundedReceiver<Event>);

/// How often an open canary window is checked.
const CANARY_CHECK: Duration = Duration::from_millis(10);

/// The coordinator of one job, with everything it needs before it runs.
pub struct CoordinatorTask {
    job: JobId,
    /// What the job is built from: its plan and job file (which a final swap changes), and
    /// what rebuilds it after a failure.
    blueprint: Blueprint,
    operators: Vec<OperatorInfo>,
    store: Store,
    commands: Commands,
    events: mpsc::UnboundedReceiver<Event>,
    /// For the tasks that prepare and swap an upgrade.
    events_tx: mpsc::UnboundedSender<Event>,
    coordinator: Coordinator,
    checkpoint_interval_ms: u64,
    checkpoints_retained: u32,
    max_parallelism: u32,
    /// State files acked for the checkpoint in flight.
    acked: BTreeMap<SubtaskId, StateFile>,
    /// Save requests waiting for their turn (one checkpoint is in flight at a time).
    queued: VecDeque<(bool, Reply)>,
    /// The save request the checkpoint in flight answers, if any.
    answering: Option<Reply>,
    /// Source subtasks that have not yet run dry.
    sources_running: usize,
    /// Set once a barrier with `then_stop` was triggered: no new checkpoints.
    stopping: Option<Barrier>,
    /// The savepoint the stop wrote, once complete.
    final_savepoint: Option<Saved>,
    /// Set when another process took the job over (the store's generation fence): the job
    /// must end, failed, without publishing or committing anything more.
    fenced: Option<Arc<crate::store::StoreError>>,
    /// What the job counts; the coordinator records completed checkpoints there.
    metrics: Arc<JobMetrics>,
    /// When the checkpoint in flight was triggered, and its longest alignment so far.
    in_flight_since: (Instant, Duration),
    /// The live upgrade under way, if any.
    upgrading: Option<upgrade::Upgrading>,
    /// Set when the job failed within an upgrade's canary window: why it rolls back.
    rollback: Option<Arc<super::swap::UpgradeError>>,
    /// While it runs subtasks elsewhere: their deployment.
    session: Option<Box<dyn Session>>,
}

impl CoordinatorTask {
    /// A coordinator for the job built from `blueprint` whose first checkpoint will be `first`,
    /// commanding its subtasks and hearing from them through `channels`.
    pub(super) fn new(
        blueprint: Blueprint,
        operators: Vec<OperatorInfo>,
        channels: (Commands, Events),
        first: CheckpointId,
    ) -> Self {
        let (commands, (events_tx, events)) = channels;
        let metrics = blueprint.metrics.clone();
        let (plan, store) = (&blueprint.plan, blueprint.store.clone());
        let job = metrics.job().clone();
        let sources_running = plan
            .operators
            .iter()
            .filter(|op| op.role == Role::Source)
            .map(|op| op.parallelism as usize)
            .sum();
        CoordinatorTask {
            coordinator: Coordinator::new(commands.keys().cloned(), first),
            job,
            operators,
            store,
            commands,
            events,
            events_tx,
            checkpoint_interval_ms: plan.checkpoint_interval_ms,
            checkpoints_retained: plan.checkpoints_retained,
            max_parallelism: plan.max_parallelism,
            acked: BTreeMap::new(),
            queued: VecDeque::new(),
            answering: None,
            sources_running,
            stopping: None,
            final_savepoint: None,
            fenced: None,
            metrics,
            in_flight_since: (Instant::now(), Duration::ZERO),
            upgrading: None,
            rollback: None,
            session: None,
            blueprint,
        }
    }

    /// What the job is built from, as it runs now (after any final swap).
    pub(super) fn blueprint(&self) -> &Blueprint {
        &self.blueprint
    }

    /// The job's operators.
    pub fn operators(&self) -> &[OperatorInfo] {
        &self.operators
    }

    /// The number the next checkpoint would get: a restarted job never reuses one.
    pub fn next_checkpoint(&self) -> CheckpointId {
        self.coordinator.next()
    }

    /// Runs the job's subtasks until the job ends, and says how it ended.
    pub(super) async fn run(
        &mut self,
        placed: Placed,
        requests: &mut mpsc::Receiver<Request>,
    ) -> Outcome {
        let (mut tasks, names, running) = self.start(placed);
        let mut ending = Ending {
            running,
            peer_gone: None,
        };
        let period = Duration::from_millis(self.checkpoint_interval_ms.max(1));
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut canary = tokio::time::interval(CANARY_CHECK);
        let outcome = loop {
            let step = tokio::select! {
                _ = ticker.tick(), if self.checkpoint_interval_ms > 0 => {
                    self.trigger_periodic();
                    Step::Go
                }
                _ = canary.tick(), if self.in_canary() => {
                    self.check_canary();
                    Step::Go
                }
                Some(request) = requests.recv() => self.on_request(request),
                Some(event) = self.events.recv() => self.on_event(event, &mut ending).await,
                Some(joined) = tasks.join_next_with_id() => panicked(joined, &names),
            };
            match step {
                Step::Go => {}
                Step::End(outcome) => {
                    self.stop_elsewhere().await;
                    break outcome;
                }
                Step::Fail(failure) => {
                    tasks.shutdown().await;
                    self.stop_elsewhere().await;
                    self.abort_in_flight(Aborted::Job(failure.clone()));
                    break Outcome::Failed(failure);
                }
                Step::Cancel(reply) => {
                    tasks.shutdown().await;
                    self.stop_elsewhere().await;
                    self.abort_in_flight(Aborted::Cancelled);
                    let _ = reply.send(());
                    break Outcome::Stopped(None);
                }
            }
        };
        self.end_upgrade(match &outcome {
            Outcome::Failed(failure) => Some(failure),
            _ => None,
        });
        tracing::info!(job = %self.job, ?outcome, "job ended");
        outcome
    }

    /// Starts the job's subtasks: spawned here, or started on the workers they were deployed
    /// to; returns the tasks spawned here, their names, and how many subtasks run.
    fn start(&mut self, placed: Placed) -> (JoinSet<()>, BTreeMap<tokio::task::Id, String>, usize) {
        match placed {
            Placed::Here(subtasks) => {
                let (tasks, names) = spawn_subtasks(subtasks);
                let running = tasks.len();
                (tasks, names, running)
            }
            Placed::Elsewhere(mut session, running) => {
                session.start();
                self.session = Some(session);
                (JoinSet::new(), BTreeMap::new(), running)
            }
        }
    }

    /// Stops the subtasks that run elsewhere, if any, and waits until they have.
    async fn stop_elsewhere(&mut self) {
        if let Some(mut session) = self.session.take() {
            session.stop().await;
        }
    }

    /// A request from the control socket.
    fn on_request(&mut self, request: Request) -> Step {
        match request {
            Request::Save { stop, reply } => {
                if self.stopping.is_some() {
                    let _ = reply.send(Err(SaveError::Stopping));
                } else {
                    self.queued.push_back((stop, reply));
                    self.trigger_next();
                }
            }
            Request::Upgrade { spec, reply } => self.upgrade(spec, reply),
            Request::Cancel { reply } => return Step::Cancel(reply),
        }
        Step::Go
    }

    /// An event from a subtask (or from a task preparing or swapping an upgrade).
    async fn on_event(&mut self, event: Event, ending: &mut Ending) -> Step {
        match event {
            Event::Acked(super::subtask::Ack {
                subtask,
                checkpoint,
                file,
                alignment,
            }) => {
                self.in_flight_since.1 = self.in_flight_since.1.max(alignment);
                self.on_ack(subtask, checkpoint, file).await;
                if let Some(fenced) = self.fenced.take() {
                    return Step::Fail(JobFailure::Fenced(fenced));
                }
            }
            Event::SnapshotFailed { checkpoint, error } => {
                return self.on_snapshot_failed(checkpoint, error);
            }
            Event::Prepared(prepared) => self.on_prepared(*prepared),
            Event::Staged { checkpoint, last } => self.on_staged(checkpoint, last),
            Event::Swapped { checkpoint, result } => self.on_swapped(checkpoint, result),
            Event::Resumed { subtask, pause } => {
                tracing::debug!(%subtask, ?pause, "the new module processed its first batch");
                self.on_resumed(pause);
            }
            Event::SourceExhausted => {
                self.sources_running -= 1;
                self.trigger_next();
            }
            Event::Done(subtask) => {
                tracing::debug!(%subtask, "subtask done");
                ending.running -= 1;
                if ending.running == 0 {
                    return Step::End(match self.final_savepoint.take() {
                        Some(saved) => Outcome::Stopped(Some(saved)),
                        None => Outcome::Finished,
                    });
                }
            }
            Event::PeerGone(subtask, closed) => return ending.peer_gone(subtask, closed),
            Event::Failed(error) => return Step::Fail(JobFailure::Subtask(Arc::new(error))),
        }
        Step::Go
    }

    /// A subtask could not snapshot for `checkpoint`: the checkpoint is aborted; the job
    /// fails if it was the final one.
    fn on_snapshot_failed(&mut self, checkpoint: CheckpointId, error: CheckpointFailure) -> Step {
        tracing::warn!(%checkpoint, "checkpoint aborted: {error}");
        if self.coordinator.abort(checkpoint).is_none() {
            // Already aborted; this late write may have left files behind.
            self.remove_aborted(checkpoint);
            return Step::Go;
        }
        let cause = Arc::new(error);
        self.abandon(checkpoint, Aborted::Checkpoint(cause.clone()));
        if self.stopping.is_some_and(|b| b.checkpoint == checkpoint) {
            return Step::Fail(JobFailure::FinalCheckpoint { checkpoint, cause });
        }
        self.trigger_next();
        Step::Go
    }

    /// A periodic checkpoint, unless one is in flight or held back; a swap that is ready
    /// rides on it.
    fn trigger_periodic(&mut self) {
        if self.coordinator.is_busy() || self.stopping.is_some() {
            return;
        }
        if !self.start_swap() && !self.holds_checkpoints() {
            self.trigger(BarrierKind::Checkpoint, false);
        }
    }

    /// Starts a swap that is ready, or triggers the next queued save, or the final checkpoint
    /// once every source ran dry (ending a canary window first).
    fn trigger_next(&mut self) {
        if self.coordinator.is_busy() || self.stopping.is_some() || self.start_swap() {
            return;
        }
        if self.holds_checkpoints() {
            if self.sources_running == 0 {
                self.check_canary();
            }
            return;
        }
        if let Some((stop, reply)) = self.queued.pop_front() {
            self.answering = Some(reply);
            self.trigger(BarrierKind::Savepoint, stop);
        } else if self.sources_running == 0 {
            self.trigger(BarrierKind::Checkpoint, true);
        }
    }

    fn trigger(&mut self, kind: BarrierKind, then_stop: bool) {
        let barrier = self
            .coordinator
            .trigger(kind, then_stop)
            .expect("no checkpoint in flight");
        tracing::debug!(checkpoint = %barrier.checkpoint, ?kind, then_stop, "triggering");
        if then_stop {
            self.stopping = Some(barrier);
        }
        self.acked.clear();
        self.in_flight_since = (Instant::now(), Duration::ZERO);
        self.send_to(Role::Source, &Command::Trigger(barrier));
    }

    /// Sends `command` to every subtask of the operators of `role`.
    fn send_to(&self, role: Role, command: &Command) {
        for (subtask, commands) in &self.commands {
            if self
                .operators
                .iter()
                .any(|op| op.id == subtask.operator && op.role == role)
            {
                let _ = commands.send(command.clone());
            }
        }
    }

    async fn on_ack(&mut self, subtask: SubtaskId, checkpoint: CheckpointId, file: StateFile) {
        let progress = self.coordinator.ack(checkpoint, &subtask);
        if progress == Progress::Stale {
            // A write that finished after its checkpoint was aborted.
            self.remove_aborted(checkpoint);
            return;
        }
        self.acked.insert(subtask, file);
        let Progress::Complete(barrier) = progress else {
            return;
        };
        match self.complete(barrier).await {
            Ok(saved) => {
                let dir = saved.as_ref().map_or_else(
                    || self.store.layout().checkpoint(&self.job, checkpoint),
                    |s| s.path.clone(),
                );
                self.record(barrier, &dir);
                if let Some(session) = &self.session {
                    session.published(&dir);
                }
                if barrier.kind == BarrierKind::Checkpoint {
                    self.blueprint.forget_initial();
                }
                // Between publishing and committing: the riskiest moment to crash.
                let _ = self.store.fault_point(Phase::Published, checkpoint);
                self.send_to(Role::Sink, &Command::Commit(checkpoint));
                if let Some(saved) = saved {
                    if barrier.then_stop {
                        self.final_savepoint = Some(saved.clone());
                    }
                    if let Some(reply) = self.answering.take() {
                        let _ = reply.send(Ok(saved));
                    }
                }
            }
            Err(error) => {
                tracing::error!(%checkpoint, "cannot complete checkpoint: {error}");
                self.abandon(checkpoint, Aborted::Checkpoint(Arc::new(error)));
            }
        }
        self.trigger_next();
    }

    /// Records the checkpoint just completed in the job's history.
    fn record(&self, barrier: Barrier, dir: &std::path::Path) {
        let (since, alignment) = self.in_flight_since;
        let mut operator_bytes = BTreeMap::new();
        for (subtask, file) in &self.acked {
            *operator_bytes.entry(subtask.operator.clone()).or_default() += file.len;
        }
        self.metrics.completed(CheckpointStat {
            checkpoint: barrier.checkpoint.0,
            kind: format!("{:?}", barrier.kind).to_lowercase(),
            completed_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            duration_ms: since.elapsed().as_millis() as u64,
            bytes: self.store.point_bytes(dir),
            alignment_ms: alignment.as_millis() as u64,
            operator_bytes,
        });
    }

    /// Writes the metadata and publishes the folder; applies retention to checkpoints.
    async fn complete(&mut self, barrier: Barrier) -> Result<Option<Saved>, CheckpointFailure> {
        let metadata = self.metadata(barrier);
        let store = self.store.clone();
        let keep = self.checkpoints_retained;
        let blocking = tokio::task::spawn_blocking(move || match metadata.kind {
            BarrierKind::Savepoint => {
                let id = SavepointId::generate(&metadata.job, metadata.checkpoint);
                let path = store.complete_savepoint(&metadata, &id)?;
                Ok(Some(Saved {
                    id,
                    checkpoint: metadata.checkpoint,
                    path,
                }))
            }
            BarrierKind::Checkpoint => {
                store.complete_checkpoint(&metadata)?;
                let victims = retention_victims(&store.checkpoints(&metadata.job)?, keep);
                store.remove_checkpoints(&metadata.job, &victims)?;
                Ok(None)
            }
        });
        let result: Result<_, crate::store::StoreError> =
            blocking.await.expect("store calls do not panic");
        let saved = result.map_err(|e| {
            let e = Arc::new(e);
            if e.is_fenced() {
                self.fenced = Some(e.clone());
            }
            CheckpointFailure::Complete(e)
        })?;
        tracing::info!(checkpoint = %barrier.checkpoint, kind = ?barrier.kind, "checkpoint complete");
        Ok(saved)
    }

    /// The metadata of the checkpoint `barrier` completes: the job, each operator with its
    /// module and the state files its subtasks acked, and the generation of the job's lease
    /// this process holds.
    fn metadata(&self, barrier: Barrier) -> Metadata {
        Metadata {
            job: self.job.clone(),
            checkpoint: barrier.checkpoint,
            kind: barrier.kind,
            completed_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            job_file: self.blueprint.record.job_file.clone(),
            max_parallelism: self.max_parallelism,
            key_group_function: KEY_GROUP_FUNCTION.to_owned(),
            state_layout: StateLayout::Timed,
            operators: self
                .operators
                .iter()
                .map(|op| OperatorState {
                    id: op.id.clone(),
                    role: op.role,
                    module_sha256: op.module_sha256.clone(),
                    module_name: op.module_name.clone(),
                    module_version: op.module_version.clone(),
                    parallelism: op.parallelism,
                    files: self
                        .acked
                        .iter()
                        .filter(|(subtask, _)| subtask.operator == op.id)
                        .map(|(_, file)| file.clone())
                        .collect(),
                })
                .collect(),
            definition: Some(self.blueprint.record.definition.clone()),
            resumed_from: self.blueprint.record.resumed_from.clone(),
            // The generation whose fence the publication passes (none on a local folder).
            generation: self.store.held_generation(&self.job),
        }
    }

    /// Drops the files of a checkpoint that will never complete and answers its requester.
    fn abandon(&mut self, checkpoint: CheckpointId, cause: Aborted) {
        self.remove_aborted(checkpoint);
        if let Some(reply) = self.answering.take() {
            let _ = reply.send(Err(SaveError::Failed { checkpoint, cause }));
        }
    }

    fn remove_aborted(&self, checkpoint: CheckpointId) {
        if let Err(e) = self.store.abort(&self.job, checkpoint) {
            tracing::warn!("cannot clean up checkpoint {checkpoint}: {e}");
        }
    }

    /// The job is ending abnormally: drop the checkpoint in flight, answer every requester.
    fn abort_in_flight(&mut self, cause: Aborted) {
        if let Some(barrier) = self.coordinator.in_flight() {
            self.coordinator.abort(barrier.checkpoint);
            self.abandon(barrier.checkpoint, cause.clone());
        }
        for (_, reply) in self.queued.drain(..) {
            let _ = reply.send(Err(SaveError::JobEnded(cause.clone())));
        }
    }
}

/// What one request, event or ended task means for the coordinator's loop.
enum Step {
    /// Go on.
    Go,
    /// Every subtask ended: the job ended so.
    End(Outcome),
    /// The job failed: stop every subtask.
    Fail(JobFailure),
    /// `host stop` without a savepoint: stop every subtask, then answer.
    Cancel(oneshot::Sender<()>),
}

/// How many subtasks still run, and why the first one that stopped for a vanished peer did,
/// in case no root cause is reported.
struct Ending {
    running: usize,
    peer_gone: Option<(SubtaskId, Closed)>,
}

impl Ending {
    /// `subtask` stopped because a peer vanished: the job fails once every subtask has.
    fn peer_gone(&mut self, subtask: SubtaskId, closed: Closed) -> Step {
        tracing::debug!(%subtask, "{closed}");
        self.running -= 1;
        let (subtask, closed) = self.peer_gone.get_or_insert((subtask, closed)).clone();
        if self.running > 0 {
            return Step::Go;
        }
        Step::Fail(JobFailure::PeerGone { subtask, closed })
    }
}
