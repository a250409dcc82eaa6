//! The one loop every subtask runs: take input (or poll the source, [`source`]), call the
//! guest, send the output on; align barriers, snapshot, forward them; commit when told. A
//! restored sink first reconciles its outside world with the checkpoint it restored
//! (`recover`).
//!
//! Each operator and sink subtask logs, at info level, when its guest has processed its first
//! batch since the subtask started (fresh or restored): `first batch processed
//! subtask=<operator>[<index>] records=<n>`. The benchmarks time start-up and upgrades to it.
//!
//! Guest calls are never raced against anything: a call runs to completion (or to its
//! deadline) before the loop looks at its inputs again, because dropping a guest call midway
//! would leave its instance unusable. Only waiting on channels and timers is raced.

use std::future::poll_fn;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::channel::{Closed, Message, Receiver, batch_len};
use super::instance::{CallError, RoleInstance};
use super::lease::Lease;
use super::partition::{Output, check_batch};
use super::swap::{Prepared, SwapOrder, Swapped, UpgradeError};
use super::{CheckpointFailure, Malformed, SwapFailure};
use crate::barrier::{Aligner, Alignment, Barrier};
use crate::connectors::ConnectorError;
use crate::engine::GuestError;
use crate::engine::bindings::{Batch, PollResult};
use crate::fault::Phase;
use crate::ids::{CheckpointId, JobId, SubtaskId};
use crate::metrics::SubtaskCounters;
use crate::snapshot::Held;
use crate::store::{StateFile, Store};
use crate::time::WATERMARK_MIN;
use crate::time::timers::TimerService;
use crate::time::watermarks::{Generator, Valve};
use crate::topology::Role;

/// Most records a source is asked for in one `poll`.
pub const POLL_RECORDS_MAX: u32 = 1_024;
/// Most records one guest call may return: a guest that floods the host is stopped.
pub const BATCH_RECORDS_MAX: usize = 1 << 20;
/// Pause after a source returned no records, before it is polled again.
const IDLE_POLL_MS: u64 = 10;

/// What the coordinator tells a subtask.
#[derive(Clone, Debug)]
pub enum Command {
    /// Sources: emit this barrier now (after snapshotting).
    Trigger(Barrier),
    /// Sinks: checkpoint N is complete; publish its transactions.
    Commit(CheckpointId),
    /// Operators being upgraded: after snapshotting for the order's checkpoint, hand the state
    /// over and go on with the new instance restored from it (or the old one).
    Swap(Arc<SwapOrder>),
}

/// What a subtask tells the coordinator.
#[derive(Debug)]
pub enum Event {
    /// Its state for a checkpoint is durable.
    Acked(Ack),
    /// It could not snapshot for `checkpoint`; the checkpoint must be aborted.
    SnapshotFailed {
        /// Which checkpoint.
        checkpoint: CheckpointId,
        /// Why, naming the subtask.
        error: CheckpointFailure,
    },
    /// A source has nothing more to emit.
    SourceExhausted,
    /// It ended normally.
    Done(SubtaskId),
    /// It failed; the job must stop.
    Failed(SubtaskError),
    /// It stopped because a subtask it sends to is gone: a consequence of a failure that
    /// subtask reports itself, so the job's error names the root cause, not this.
    PeerGone(SubtaskId, Closed),
    /// An upgrade's new module was compiled and checked, or refused (from the task preparing
    /// it, not a subtask).
    Prepared(Box<Result<Prepared, UpgradeError>>),
    /// An upgrade's new instances were restored beside the running ones from checkpoint
    /// `checkpoint`'s snapshot, or caught up to it: ready for another round (from the swap task).
    Staged {
        /// The checkpoint.
        checkpoint: CheckpointId,
        /// Whether the next round is the last, where the new instances take over.
        last: bool,
    },
    /// An upgrade's new instances took over at checkpoint `checkpoint`, or not (from the swap
    /// task).
    Swapped {
        /// The checkpoint.
        checkpoint: CheckpointId,
        /// Why not, naming the subtask.
        result: Result<(), Arc<SwapFailure>>,
    },
    /// A swapped subtask's new instance processed its first batch, `pause` after the swap's
    /// barrier arrived.
    Resumed {
        /// Which subtask.
        subtask: SubtaskId,
        /// From the barrier's arrival to the first batch processed.
        pause: Duration,
    },
}

/// A subtask's state for `checkpoint` is durable in `file`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Ack {
    /// Which subtask.
    pub subtask: SubtaskId,
    /// Which checkpoint.
    pub checkpoint: CheckpointId,
    /// The state file written.
    pub file: StateFile,
    /// How long the subtask held inputs back to align the barrier.
    pub alignment: Duration,
}

/// Why a subtask stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SubtaskError {
    /// A guest call failed.
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// A connector call failed.
    #[error(transparent)]
    Connector(Arc<ConnectorError>),
    /// The guest produced a batch or a snapshot the host cannot read.
    #[error("{subtask}: {problem}")]
    Malformed {
        /// Which subtask.
        subtask: SubtaskId,
        /// What is wrong with it.
        problem: Malformed,
    },
    /// A downstream subtask is gone: the job is failing elsewhere.
    #[error(transparent)]
    Closed(#[from] Closed),
    /// The subtask, or a channel it depends on, failed in another process, which said so.
    #[error(transparent)]
    Remote(#[from] super::RemoteFailure),
    /// The process running subtasks of the job is gone.
    #[error("worker {worker} is gone: its connection to the coordinator closed")]
    WorkerLost {
        /// The worker.
        worker: String,
    },
    /// The process running subtasks of the job said nothing within the coordinator's
    /// timeout: it is taken for lost (and its lease fences its subtasks off).
    #[error("worker {worker} said nothing for {timeout_ms} ms: taken for lost")]
    WorkerSilent {
        /// The worker.
        worker: String,
        /// The coordinator's timeout.
        timeout_ms: u64,
    },
    /// The subtask runs on a worker whose lease ended: it does nothing more.
    #[error("{subtask}: {expired}")]
    Fenced {
        /// Which subtask.
        subtask: SubtaskId,
        /// The lease that ended.
        expired: super::lease::LeaseExpired,
    },
}

impl From<CallError> for SubtaskError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::Guest(error) => SubtaskError::Guest(error),
            CallError::Connector(error) => SubtaskError::Connector(error),
        }
    }
}

/// One subtask, wired and ready to run.
pub struct Subtask {
    /// Which subtask.
    pub id: SubtaskId,
    /// Its operator's role.
    pub role: Role,
    /// Its guest instance or connector, initialized and restored.
    pub instance: RoleInstance,
    /// One channel per upstream subtask (none for a source).
    pub inputs: Vec<Receiver>,
    /// Its outgoing edges (none for a sink).
    pub output: Output,
    /// Commands from the coordinator.
    pub commands: mpsc::UnboundedReceiver<Command>,
    /// Events to the coordinator.
    pub events: mpsc::UnboundedSender<Event>,
    /// Where snapshots are written.
    pub store: Store,
    /// The job, for the state folder's paths.
    pub job: JobId,
    /// Sources only: throttle.
    pub records_per_second_max: Option<u64>,
    /// Sources only: how far a bounded run reads ([`super::SourceBound`]).
    pub bound: Option<Arc<super::SourceBound>>,
    /// Sinks restored from a point: the checkpoint whose outside world `recover` reconciles
    /// before anything else runs.
    pub recover: Option<CheckpointId>,
    /// Its full state as of its latest snapshot; none before the first, which is full.
    pub held: Option<Held>,
    /// What it counts (the same counters as its [`Output`]'s).
    pub counters: Arc<SubtaskCounters>,
    /// An upgrade's order to swap its instance at a checkpoint, until then.
    pub swap: Option<Arc<SwapOrder>>,
    /// Set once it swapped its instance: the new one's first batch is reported.
    pub swapped: Option<Swapped>,
    /// Whether it processed a batch since it started (its first one is logged).
    pub processed_a_batch: bool,
    /// Sources: its watermarks, from the records' timestamps or its guest ([`Generator`]).
    pub generator: Generator,
    /// Others: its watermark, the least of its inputs' ([`Valve`]).
    pub valve: Valve,
    /// Its pending timers (none unless its module keeps timers).
    pub timers: TimerService,
    /// On a worker: the lease checked before every act on the outside world
    /// ([`super::lease`]); none in one process.
    pub lease: Option<Lease>,
}

/// What the loop of a subtask with inputs does next.
enum Step {
    /// A command from the coordinator (none: it is gone).
    Command(Option<Command>),
    /// Processing-time timers are due.
    Timers,
    /// A message from an input.
    Input((usize, Message)),
}

impl Subtask {
    /// Runs until the subtask's inputs end (or its source stops), the coordinator goes away, or
    /// something fails.
    pub async fn run(self) -> Result<(), SubtaskError> {
        let counters = self.counters.clone();
        let ran = match self.role {
            Role::Source => self.run_source().await,
            Role::Operator | Role::Sink => self.run_downstream().await,
        };
        if let Err(SubtaskError::Guest(GuestError::Trapped { .. })) = &ran {
            counters.trapped();
        }
        ran
    }

    async fn run_downstream(mut self) -> Result<(), SubtaskError> {
        if let Some(checkpoint) = self.recover {
            self.leased()?;
            self.instance.recover(checkpoint.0).await?;
            let _ = self.store.fault_point(Phase::SinkRecovered, checkpoint);
        }
        let mut aligner = Aligner::new(self.inputs.len());
        // When the barrier being aligned first arrived.
        let mut aligning_since: Option<Instant> = None;
        let mut last_barrier: Option<Barrier> = None;
        let mut committed: Option<CheckpointId> = None;
        while !aligner.all_ended() {
            let timers = self.processing_timers_due();
            let step = tokio::select! {
                biased;
                command = self.commands.recv() => Step::Command(command),
                () = tokio::time::sleep_until(timers.unwrap_or_else(Instant::now)),
                    if timers.is_some() => Step::Timers,
                message = next_message(&mut self.inputs, &aligner) => Step::Input(message),
            };
            let alignment = match step {
                Step::Command(Some(Command::Commit(checkpoint))) => {
                    self.commit(checkpoint).await?;
                    committed = Some(checkpoint);
                    continue;
                }
                Step::Command(Some(Command::Swap(order))) => {
                    self.swap = Some(order);
                    continue;
                }
                Step::Command(Some(Command::Trigger(_))) => {
                    unreachable!("only sources are triggered")
                }
                Step::Command(None) => return Ok(()),
                Step::Timers => {
                    self.fire_processing_timers().await?;
                    continue;
                }
                Step::Input((input, Message::Barrier(barrier))) => {
                    aligning_since.get_or_insert_with(Instant::now);
                    aligner.on_barrier(input, barrier)
                }
                Step::Input((input, Message::End)) => aligner.on_end(input),
                Step::Input((input, message)) => {
                    self.on_input(input, message).await?;
                    continue;
                }
            };
            if let Alignment::Aligned(barrier) = alignment {
                let arrived = aligning_since.take().unwrap_or_else(Instant::now);
                let snapshotted = self.checkpoint(barrier, arrived.elapsed()).await?;
                self.output.barrier(barrier)?;
                self.swap_at(barrier.checkpoint, snapshotted, arrived).await;
                last_barrier = Some(barrier);
            }
        }
        self.output.end()?;
        self.await_final_commit(last_barrier, committed).await
    }

    /// A sink that passed a final barrier (`last`) stays until that checkpoint is committed
    /// (the commit may also have come before its last input ended: `committed`).
    async fn await_final_commit(
        &mut self,
        last: Option<Barrier>,
        mut committed: Option<CheckpointId>,
    ) -> Result<(), SubtaskError> {
        let Some(last) = last.filter(|b| b.then_stop && self.role == Role::Sink) else {
            return Ok(());
        };
        while committed.is_none_or(|c| c < last.checkpoint) {
            match self.commands.recv().await {
                Some(Command::Commit(checkpoint)) => {
                    self.commit(checkpoint).await?;
                    committed = Some(checkpoint);
                }
                Some(Command::Trigger(_)) => unreachable!("only sources are triggered"),
                Some(Command::Swap(_)) => {}
                None => break,
            }
        }
        Ok(())
    }

    async fn commit(&mut self, checkpoint: CheckpointId) -> Result<(), SubtaskError> {
        self.leased()?;
        self.instance.commit(checkpoint.0).await?;
        let _ = self.store.fault_point(Phase::SinkCommitted, checkpoint);
        Ok(())
    }

    /// Records, a watermark or idleness from `input`: the records are processed (or written);
    /// time goes on as the inputs' valve says.
    async fn on_input(&mut self, input: usize, message: Message) -> Result<(), SubtaskError> {
        let signal = match &message {
            Message::Watermark(watermark) => self.valve.on_watermark(input, *watermark),
            Message::Idle => self.valve.on_idle(input),
            Message::Batch(_) => self.valve.on_records(input),
            Message::Barrier(_) | Message::End => unreachable!("aligned, not processed"),
        };
        if let Some(signal) = signal {
            self.on_time(signal).await?;
        }
        if let Message::Batch(batch) = message {
            self.on_batch(batch).await?;
        }
        Ok(())
    }

    async fn on_batch(&mut self, batch: Batch) -> Result<(), SubtaskError> {
        let records = batch_len(&batch);
        self.counters.received(records);
        let watermark = self.valve.watermark();
        if watermark != WATERMARK_MIN {
            let late = batch.timestamps.iter().filter(|&&t| t <= watermark);
            self.counters.late(late.count());
        }
        let since = Instant::now().into_std();
        match self.role {
            Role::Sink => {
                self.leased()?;
                let written = self.instance.write(&batch).await;
                self.counters.busy_since(since);
                written?;
            }
            _ => {
                self.open_timers();
                let output = self.instance.process(&batch).await;
                self.counters.busy_since(since);
                self.close_timers();
                let output = output?;
                self.check(&output)?;
                self.output.send(output).await?;
            }
        }
        if !std::mem::replace(&mut self.processed_a_batch, true) {
            // The observable "first record processed" (docs/benchmarks.md).
            tracing::info!(subtask = %self.id, records, "first batch processed");
        }
        self.after_swap(records);
        Ok(())
    }

    /// Polls a source's guest, counting the call as busy time.
    async fn poll(&mut self, records_max: u32) -> Result<PollResult, CallError> {
        let since = Instant::now().into_std();
        let polled = self.instance.poll(records_max).await;
        self.counters.busy_since(since);
        polled
    }

    /// `Ok` unless the subtask runs on a worker whose lease ended ([`super::lease`]): checked
    /// before every act on the outside world.
    fn leased(&self) -> Result<(), SubtaskError> {
        let Some(lease) = &self.lease else {
            return Ok(());
        };
        lease.check().map_err(|expired| SubtaskError::Fenced {
            subtask: self.id.clone(),
            expired,
        })
    }

    fn check(&self, batch: &Batch) -> Result<(), SubtaskError> {
        check_returned(batch).map_err(|problem| SubtaskError::Malformed {
            subtask: self.id.clone(),
            problem,
        })
    }

    /// If an upgrade ordered a swap at `checkpoint`, for which the subtask `snapshotted` (or
    /// not), hands its state as of that snapshot over and goes on with the new instance
    /// restored from it; or with the old one, if the swap failed, or if the state only stages
    /// the new instance (the swap is then at a later checkpoint).
    async fn swap_at(&mut self, checkpoint: CheckpointId, snapshotted: bool, arrived: Instant) {
        let Some(order) = self.swap.take_if(|o| o.checkpoint == checkpoint) else {
            return;
        };
        let held = self.held.clone().filter(|_| snapshotted);
        let snapshot_ms = arrived.elapsed().as_secs_f64() * 1e3;
        let step = order.step;
        tracing::debug!(subtask = %self.id, %checkpoint, snapshot_ms, ?step, "handing state over to the swap");
        if let Some((instance, held)) = order.hand_over(self.id.index, held).await {
            // Freeing the old instance's memory (unmapping every page it touched: about 13 ms
            // at 1 M keys) is no part of the swap: off the hot path.
            let old = std::mem::replace(&mut self.instance, instance.into());
            tokio::task::spawn_blocking(move || drop(old));
            // The host's copy of the new instance's state: a staged one was snapshotted whole
            // beside the running one. Else its first snapshot is full: the copy held is the
            // old module's. The host's own state (timers, watermark) is the subtask's, and
            // stays: so does its copy of it.
            let own = self.held.take().map(|h| (h.timers, h.watermark));
            self.held = held.map(|mut held| {
                (held.timers, held.watermark) = own.unwrap_or_default();
                held
            });
            self.swapped = Some(Swapped::new(&order, arrived));
            let took_over_ms = arrived.elapsed().as_secs_f64() * 1e3;
            tracing::debug!(subtask = %self.id, %checkpoint, took_over_ms, "the new instance took over");
        }
    }

    /// After a swap: counts what the new instance processed, and reports its first batch.
    fn after_swap(&mut self, records: usize) {
        let Some(swapped) = &mut self.swapped else {
            return;
        };
        if let Some(pause) = swapped.processed(records) {
            let subtask = self.id.clone();
            let _ = self.events.send(Event::Resumed { subtask, pause });
        }
    }
}

/// The next message from any input not held back by alignment, fairly. An input whose sender
/// is gone counts as ended.
async fn next_message(inputs: &mut [Receiver], aligner: &Aligner) -> (usize, Message) {
    let mut start = 0;
    poll_fn(|cx| {
        let n = inputs.len();
        for offset in 0..n {
            let i = (start + offset) % n;
            if aligner.is_blocked(i) || aligner.is_ended(i) {
                continue;
            }
            if let Poll::Ready(message) = inputs[i].poll_recv(cx) {
                start = i + 1;
                return Poll::Ready((i, message.unwrap_or(Message::End)));
            }
        }
        Poll::Pending
    })
    .await
}

/// Checks a batch a guest returned: at most [`BATCH_RECORDS_MAX`] records, in columns that read
/// within their bounds ([`check_batch`]).
pub fn check_returned(batch: &Batch) -> Result<(), Malformed> {
    let records = batch_len(batch);
    if records > BATCH_RECORDS_MAX {
        return Err(Malformed::TooManyRecords { records });
    }
    Ok(check_batch(batch)?)
}

mod checkpoint;
#[cfg(test)]
mod proptests;
mod source;
#[cfg(test)]
mod tests;
mod time;
