//! Writing a checkpoint: each subtask's state, durably, into the checkpoint's in-progress
//! folder (or under its prefix on an object store); then, once the coordinator says it is
//! complete, its `_metadata`, and the point published atomically, as a checkpoint under its
//! job or a savepoint; or, aborted, dropped. How each step is made durable is the back-end's
//! ([`super::backend::PointStore`]); what is written, and from which earlier point a segment
//! is linked or copied, is decided here, for both.

use std::path::{Path, PathBuf};

use super::backend::StateWrite;
use super::{Layout, Metadata, StateFile, Store, StoreError, state_file};
use crate::fault::Phase;
use crate::ids::{CheckpointId, JobId, OperatorId, SavepointId};
use crate::snapshot::Held;

impl Store {
    /// Writes one subtask's state for a checkpoint in progress, durably: the segment of its
    /// pieces new since its previous checkpoint (homed there by [`Held::home_new_pieces`]),
    /// links to (on an object store: copies of) the segments of earlier points that hold the
    /// rest, and its state file. Nothing of it is listed until the checkpoint is published.
    pub fn write_state(
        &self,
        job: &JobId,
        checkpoint: CheckpointId,
        operator: &OperatorId,
        subtask: u32,
        held: &Held,
    ) -> Result<StateFile, StoreError> {
        let encoded = state_file::encode(held);
        let own = Layout::segment_file_name(job, checkpoint, operator.as_str(), subtask);
        let earlier = |name: &str| self.earlier_segment(job, &own, name);
        let file = Layout::state_file_name(operator.as_str(), subtask);
        // A fault at this phase strikes halfway through the state file.
        let midway = || self.fault_point(Phase::StateWrite, checkpoint);
        self.points.write_state(&StateWrite {
            job,
            checkpoint,
            encoded: &encoded,
            file: &file,
            earlier: &earlier,
            midway: &midway,
        })?;
        let blob = &encoded.state_file;
        Ok(StateFile {
            subtask,
            file,
            len: blob.len() as u64,
            checksum: blob.checksum(),
        })
    }

    /// Where segment `name` lies in the job's point before this checkpoint, unless it is `own`
    /// (the one this write makes): a segment a write links or copies instead of writing.
    fn earlier_segment(&self, job: &JobId, own: &str, name: &str) -> Option<PathBuf> {
        let published = self.published.lock().expect("not poisoned");
        published
            .get(job)
            .filter(|_| name != own)
            .map(|e| e.join(name))
    }

    /// Publishes a complete checkpoint: `_metadata` is written, then the folder renamed.
    pub fn complete_checkpoint(&self, metadata: &Metadata) -> Result<PathBuf, StoreError> {
        let to = self.layout.checkpoint(&metadata.job, metadata.checkpoint);
        self.publish(metadata, &to)?;
        Ok(to)
    }

    /// Publishes a complete savepoint under `id`, outside the job's folder.
    pub fn complete_savepoint(
        &self,
        metadata: &Metadata,
        id: &SavepointId,
    ) -> Result<PathBuf, StoreError> {
        let to = self.layout.savepoint(id);
        self.publish(metadata, &to)?;
        Ok(to)
    }

    pub(super) fn publish(&self, metadata: &Metadata, to: &Path) -> Result<(), StoreError> {
        let faults = |phase| self.fault_point(phase, metadata.checkpoint);
        self.points.publish(metadata, to, &faults)?;
        let mut published = self.published.lock().expect("not poisoned");
        published.insert(metadata.job.clone(), to.to_owned());
        Ok(())
    }

    /// Records that point `location` of `job` was published by another process (the
    /// coordinator of a job whose subtasks run in this one): later checkpoints written here
    /// link (or copy) the segments they still hold from it.
    pub fn note_published(&self, job: &JobId, location: &Path) {
        let mut published = self.published.lock().expect("not poisoned");
        published.insert(job.clone(), location.to_owned());
    }

    /// Drops a checkpoint in progress (aborted or failed); one published already (the fence
    /// refused only its commit) stays.
    pub fn abort(&self, job: &JobId, checkpoint: CheckpointId) -> Result<(), StoreError> {
        self.points.abort(job, checkpoint)
    }
}
