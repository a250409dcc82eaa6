//! A subtask's side of a checkpoint: at its aligned barrier, the guest's snapshot (a sink's
//! `prepare-commit` first), merged into the host's copy of its state with the host's own
//! (timers, a source's watermark), then written on the blocking pool; the ack, or the failure,
//! goes to the coordinator once the write is durable. A worker's subtask checks its lease
//! before each ([`super::super::lease`]).

use std::time::Duration;

use tokio::time::Instant;

use super::{Ack, Event, Subtask, SubtaskError};
use crate::barrier::Barrier;
use crate::engine::GuestError;
use crate::engine::bindings::Snapshot;
use crate::ids::CheckpointId;
use crate::runtime::CheckpointFailure;
use crate::runtime::instance::CallError;
use crate::runtime::lease::Lease;
use crate::snapshot::Held;
use crate::store::Layout;
use crate::topology::Role;

impl Subtask {
    /// Snapshots the guest for `barrier` and writes the blob off the hot path; the ack (or the
    /// failure) reaches the coordinator once the write is durable. A guest that refuses only
    /// aborts this checkpoint (and `false` says so); a trap fails the subtask.
    pub(super) async fn checkpoint(
        &mut self,
        barrier: Barrier,
        alignment: Duration,
    ) -> Result<bool, SubtaskError> {
        self.leased()?;
        let checkpoint = barrier.checkpoint;
        // The first snapshot of an instance is full: from then on, the host's copy of its
        // state is exactly the guest's, and later snapshots carry only what changed.
        let full = self.held.is_none();
        let since = Instant::now().into_std();
        let snapshot = async {
            if self.role == Role::Sink {
                self.instance.prepare_commit(checkpoint.0).await?;
            }
            self.instance.snapshot(checkpoint.0, full).await
        };
        let held = match snapshot.await {
            Ok(snapshot) => {
                let snapshot_ms = since.elapsed().as_secs_f64() * 1e3;
                let held = self.take_in(checkpoint, snapshot, full)?;
                let (subtask, merged_ms) = (&self.id, since.elapsed().as_secs_f64() * 1e3);
                tracing::debug!(%subtask, %checkpoint, full, snapshot_ms, merged_ms, "state taken");
                held
            }
            Err(CallError::Guest(error @ GuestError::Refused { .. })) => {
                let error = CheckpointFailure::Refused(error);
                let _ = self
                    .events
                    .send(Event::SnapshotFailed { checkpoint, error });
                return Ok(false);
            }
            Err(trap) => return Err(trap.into()),
        };
        self.counters.checkpoint_synced_since(since);
        self.write_off_the_hot_path(checkpoint, held, alignment);
        Ok(true)
    }

    /// Merges a snapshot into the host's copy of the subtask's state, and homes its new pieces
    /// in the segment this checkpoint writes; returns a copy to write (cheap: the pieces are
    /// shared, and encoded off the hot path).
    fn take_in(
        &mut self,
        checkpoint: CheckpointId,
        snapshot: Snapshot,
        full: bool,
    ) -> Result<Held, SubtaskError> {
        let (operator_state, changed) = snapshot.into_changes();
        let held = self.held.get_or_insert_with(Held::default);
        let owned = self.instance.key_groups();
        let merged = held.merge(owned.clone(), operator_state, changed, full);
        merged.map_err(|problem| SubtaskError::Malformed {
            subtask: self.id.clone(),
            problem: problem.into(),
        })?;
        // The host's own state, beside the guest's: the timers of the groups whose timers
        // changed (all of them, whole, when the host's copy is new), a source's watermark.
        let timers = self.timers.checkpoint(full);
        let merged = held.merge_timers(owned, timers, full);
        merged.expect("the timer service writes its own groups, whole before any delta");
        held.watermark = self.generator.position();
        let (operator, index) = (self.id.operator.as_str(), self.id.index);
        let segment = Layout::segment_file_name(&self.job, checkpoint, operator, index);
        held.home_new_pieces(&segment, checkpoint.0);
        Ok(held.clone())
    }

    /// Writes the state on the blocking pool; the ack (or the failure) reaches the coordinator
    /// once the write is durable.
    fn write_off_the_hot_path(&self, checkpoint: CheckpointId, held: Held, alignment: Duration) {
        let (store, job, subtask, events) = (
            self.store.clone(),
            self.job.clone(),
            self.id.clone(),
            self.events.clone(),
        );
        let lease = self.lease.clone();
        tokio::task::spawn_blocking(move || {
            // The write may start long after the snapshot: the lease is checked again.
            if let Some(Err(expired)) = lease.as_ref().map(Lease::check) {
                let _ = events.send(Event::Failed(SubtaskError::Fenced { subtask, expired }));
                return;
            }
            let since = Instant::now();
            let write =
                store.write_state(&job, checkpoint, &subtask.operator, subtask.index, &held);
            let write_ms = since.elapsed().as_secs_f64() * 1e3;
            tracing::debug!(%subtask, %checkpoint, write_ms, ok = write.is_ok(), "state written");
            let event = match write {
                Ok(file) => Event::Acked(Ack {
                    subtask,
                    checkpoint,
                    file,
                    alignment,
                }),
                Err(source) => Event::SnapshotFailed {
                    checkpoint,
                    error: CheckpointFailure::Write { subtask, source },
                },
            };
            let _ = events.send(event);
            // Only now, after the ack: this may be the last copy of the state's bytes, and
            // freeing them (unmapping: about 20 ms at 100 MiB) is no part of the checkpoint.
            drop(held);
        });
    }
}
