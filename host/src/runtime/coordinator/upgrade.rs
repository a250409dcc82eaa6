//! The coordinator's side of a live swap (`host upgrade`; see [`crate::runtime::swap`]): one
//! upgrade at a time, through its stages, and the rollback when the job fails within the
//! canary window.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use super::CoordinatorTask;
use crate::barrier::BarrierKind;
use crate::ids::{CheckpointId, OperatorId};
use crate::runtime::subtask::{Command, Event};
use crate::runtime::swap::{
    self, Canary, CanaryCount, Prepared, Step, SwapOrder, UpgradeError, UpgradeSpec, Upgraded,
};
use crate::runtime::{JobFailure, SwapFailure};

/// Where the answer to `host upgrade` goes.
pub type UpgradeReply = oneshot::Sender<Result<Upgraded, UpgradeError>>;

/// The upgrade under way.
pub(super) struct Upgrading {
    operator: OperatorId,
    reply: UpgradeReply,
    canary: Canary,
    stage: Stage,
    /// What the new module processed (for the canary window).
    count: Arc<CanaryCount>,
    /// The checkpoint the new module was restored from beside the running one, once it was.
    staged_from: Option<CheckpointId>,
    /// The rounds of catching up it started so far.
    rounds: u32,
    /// The longest pause a subtask reported so far, and how many reported one.
    pause: Option<Duration>,
    resumed: u32,
    /// The preparation or the swap running beside the coordinator.
    task: Option<AbortHandle>,
}

enum Stage {
    /// The new module is being compiled and checked.
    Preparing,
    /// Ready to swap (or to stage) at the next checkpoint.
    Ready(Arc<Prepared>),
    /// The new module, which can catch up, is being restored beside the running one from the
    /// snapshot of the order's checkpoint; checkpoints go on.
    Staging(Arc<Prepared>, Arc<SwapOrder>),
    /// Restored beside the running one (and caught up so far): ready for a round of catching
    /// up at the next checkpoint, the last one (`true`: the new module takes over) or not.
    Staged(Arc<Prepared>, Arc<SwapOrder>, bool),
    /// The checkpoint at which the new module takes over is under way.
    Swapping(Arc<Prepared>, CheckpointId),
    /// The new module runs, on probation since the instant.
    Canary(Arc<Prepared>, CheckpointId, Instant),
}

impl CoordinatorTask {
    /// Starts preparing the upgrade `spec`, or refuses it at once.
    pub(super) fn upgrade(&mut self, spec: UpgradeSpec, reply: UpgradeReply) {
        let operator = spec.operator.clone();
        if self.blueprint.remote.is_some() {
            let _ = reply.send(Err(UpgradeError::OnWorkers(operator)));
            return;
        }
        let why = match (&self.upgrading, &self.stopping) {
            (Some(_), _) => Some("another upgrade is under way"),
            (_, Some(_)) => Some("the job is stopping"),
            _ => None,
        };
        if let Some(why) = why {
            let _ = reply.send(Err(UpgradeError::Busy { operator, why }));
            return;
        }
        let Some(running) = self.operators.iter().find(|op| op.id == operator).cloned() else {
            let _ = reply.send(Err(UpgradeError::UnknownOperator(operator)));
            return;
        };
        tracing::info!(%operator, module = %spec.module.display(), "preparing an upgrade");
        let (blueprint, events, canary) =
            (self.blueprint.clone(), self.events_tx.clone(), spec.canary);
        let task = tokio::spawn(async move {
            let prepared = swap::prepare(blueprint, spec, running).await;
            let _ = events.send(Event::Prepared(Box::new(prepared)));
        });
        self.upgrading = Some(Upgrading {
            operator,
            reply,
            canary,
            stage: Stage::Preparing,
            count: Arc::default(),
            staged_from: None,
            rounds: 0,
            pause: None,
            resumed: 0,
            task: Some(task.abort_handle()),
        });
    }

    /// The new module is compiled and checked (or refused).
    pub(super) fn on_prepared(&mut self, prepared: Result<Prepared, UpgradeError>) {
        let Some(upgrading) = &mut self.upgrading else {
            return;
        };
        match prepared {
            Ok(prepared) => {
                upgrading.stage = Stage::Ready(Arc::new(prepared));
                self.trigger_next();
            }
            Err(refused) => {
                tracing::warn!(operator = %upgrading.operator, "upgrade refused: {refused}");
                self.answer_upgrade(Err(refused));
            }
        }
    }

    /// Starts a swap that is ready: orders the operator's subtasks to hand their state over at
    /// the next checkpoint, then triggers it. A module that can catch up is staged there, and
    /// swapped at the checkpoint after it is restored. Says whether it triggered one.
    pub(super) fn start_swap(&mut self) -> bool {
        let Some(upgrading) = &mut self.upgrading else {
            return false;
        };
        let checkpoint = self.coordinator.next();
        let (order, stage) = match &upgrading.stage {
            Stage::Ready(prepared) => {
                let step = match prepared.module.catches_up() {
                    true => Step::Stage,
                    false => Step::Whole,
                };
                let (order, handovers) = SwapOrder::new(checkpoint, step, upgrading.count.clone());
                let running = self.operators.iter().find(|op| op.id == upgrading.operator);
                let running = running.cloned().expect("an operator of the job");
                let task = tokio::spawn(swap::run_swap(
                    self.blueprint.clone(),
                    prepared.clone(),
                    running,
                    checkpoint,
                    handovers,
                    self.events_tx.clone(),
                ));
                upgrading.task = Some(task.abort_handle());
                let stage = match step {
                    Step::Stage => Stage::Staging(prepared.clone(), order.clone()),
                    _ => Stage::Swapping(prepared.clone(), checkpoint),
                };
                (order, stage)
            }
            Stage::Staged(prepared, staged, true) => (
                staged.next(checkpoint, Step::CatchUp),
                Stage::Swapping(prepared.clone(), checkpoint),
            ),
            Stage::Staged(prepared, staged, false) => {
                let order = staged.next(checkpoint, Step::Stage);
                (order.clone(), Stage::Staging(prepared.clone(), order))
            }
            _ => return false,
        };
        upgrading.stage = stage;
        let operator = upgrading.operator.clone();
        for (subtask, commands) in &self.commands {
            if subtask.operator == operator {
                let _ = commands.send(Command::Swap(order.clone()));
            }
        }
        let step = order.step;
        tracing::info!(%operator, %checkpoint, ?step, "handing state over at checkpoint");
        self.trigger(BarrierKind::Checkpoint, false);
        true
    }

    /// The new module's instances are restored beside the running ones (or caught up to
    /// `checkpoint`): they catch up again at the next checkpoint, and take over if `last`.
    pub(super) fn on_staged(&mut self, checkpoint: CheckpointId, last: bool) {
        let Some(upgrading) = &mut self.upgrading else {
            return;
        };
        let Stage::Staging(prepared, order) = &upgrading.stage else {
            return;
        };
        debug_assert_eq!(order.checkpoint, checkpoint);
        tracing::info!(operator = %upgrading.operator, %checkpoint, last, "new module staged beside the running one");
        upgrading.stage = Stage::Staged(prepared.clone(), order.clone(), last);
        upgrading.staged_from.get_or_insert(checkpoint);
        upgrading.rounds += 1;
        self.trigger_next();
    }

    /// Whether checkpoints are held back: a swap is under way or on probation.
    pub(super) fn holds_checkpoints(&self) -> bool {
        let stage = self.upgrading.as_ref().map(|u| &u.stage);
        matches!(stage, Some(Stage::Swapping(..) | Stage::Canary(..)))
    }

    /// Whether a canary window is open.
    pub(super) fn in_canary(&self) -> bool {
        let stage = self.upgrading.as_ref().map(|u| &u.stage);
        matches!(stage, Some(Stage::Canary(..)))
    }

    /// The swap task says how the new module's instances started and restored.
    pub(super) fn on_swapped(
        &mut self,
        checkpoint: CheckpointId,
        result: Result<(), Arc<SwapFailure>>,
    ) {
        let Some(upgrading) = &mut self.upgrading else {
            return;
        };
        let prepared = match &upgrading.stage {
            Stage::Swapping(prepared, at) => {
                debug_assert_eq!(*at, checkpoint);
                prepared.clone()
            }
            // Restoring beside the running module failed.
            Stage::Staging(prepared, _) => prepared.clone(),
            _ => return,
        };
        match result {
            Ok(()) => {
                tracing::info!(operator = %upgrading.operator, %checkpoint, "new module took over; canary window open");
                upgrading.stage = Stage::Canary(prepared, checkpoint, Instant::now());
            }
            Err(failure) => {
                let operator = upgrading.operator.clone();
                tracing::warn!(%operator, %checkpoint, "upgrade failed, the old module runs on: {failure}");
                let failed = UpgradeError::RestoreFailed {
                    operator,
                    checkpoint,
                    failure,
                };
                self.answer_upgrade(Err(failed));
                self.trigger_next();
            }
        }
    }

    /// A subtask's new instance processed its first record, `pause` after the barrier arrived.
    pub(super) fn on_resumed(&mut self, pause: Duration) {
        if let Some(upgrading) = &mut self.upgrading {
            upgrading.pause = Some(upgrading.pause.map_or(pause, |p| p.max(pause)));
            upgrading.resumed += 1;
        }
    }

    /// Makes the swap final once its canary window passed (or the sources ran dry) and its
    /// checkpoint is no longer in flight.
    pub(super) fn check_canary(&mut self) {
        let Some(upgrading) = &self.upgrading else {
            return;
        };
        let Stage::Canary(prepared, checkpoint, since) = &upgrading.stage else {
            return;
        };
        let (records, resumed) = upgrading.count.read();
        if upgrading.resumed < resumed {
            return; // a subtask's pause is still on its way here
        }
        let passed = upgrading
            .canary
            .passed(records, since.elapsed(), self.sources_running == 0);
        if !passed || self.coordinator.is_busy() {
            return;
        }
        let (prepared, checkpoint) = (prepared.clone(), *checkpoint);
        let operator = upgrading.operator.clone();
        if let Some(info) = self.operators.iter_mut().find(|op| op.id == operator) {
            *info = prepared.info.clone();
        }
        let plan = &mut self.blueprint.plan;
        if let Some(op) = plan.operators.iter_mut().find(|op| op.id == operator) {
            *op = prepared.plan.clone();
        }
        self.blueprint.record.job_file =
            swap::job_file_with(&self.blueprint.record.job_file, &prepared.plan);
        let pause_us = upgrading.pause.map(|p| p.as_micros() as u64);
        tracing::info!(%operator, module = %prepared.spec.module.display(), pause_us, records, "upgrade final");
        let upgraded = Upgraded {
            operator,
            checkpoint,
            staged_from: upgrading.staged_from,
            catch_up_rounds: upgrading.rounds,
            module_name: prepared.info.module_name.clone(),
            module_version: prepared.info.module_version.clone(),
            pause_us,
            canary_records: records,
        };
        self.answer_upgrade(Ok(upgraded));
        self.trigger_next();
    }

    /// The job ended with an upgrade under way; `failure` is why, if it failed. A failure within
    /// the canary window rolls back: the restart (see `Job::supervise`) runs the old module,
    /// from the checkpoint the new one restored.
    pub(super) fn end_upgrade(&mut self, failure: Option<&JobFailure>) {
        let Some(upgrading) = &self.upgrading else {
            return;
        };
        let operator = upgrading.operator.clone();
        let error = match (&upgrading.stage, failure) {
            (Stage::Canary(_, checkpoint, _), Some(failure)) => {
                let rolled_back = || UpgradeError::RolledBack {
                    operator: operator.clone(),
                    checkpoint: *checkpoint,
                    failure: failure.clone(),
                };
                self.rollback = Some(Arc::new(rolled_back()));
                rolled_back()
            }
            (_, failure) => UpgradeError::JobEnded {
                operator,
                failure: failure.cloned(),
            },
        };
        self.answer_upgrade(Err(error));
    }

    /// Why the job just ended should restart with the old module, once.
    pub fn take_rollback(&mut self) -> Option<Arc<UpgradeError>> {
        self.rollback.take()
    }

    /// Answers `host upgrade`. The new module's compiled form goes into the cache only once
    /// its swap is final: a refused, failed or rolled-back upgrade leaves no file behind.
    fn answer_upgrade(&mut self, answer: Result<Upgraded, UpgradeError>) {
        if let Some(upgrading) = self.upgrading.take() {
            if let Some(task) = upgrading.task {
                task.abort();
            }
            match &answer {
                Ok(_) => self.blueprint.engine.write_cache(),
                Err(_) => self.blueprint.engine.discard_uncached(),
            }
            let _ = upgrading.reply.send(answer);
        }
    }
}
