//! Writing a checkpoint: each subtask's state, durably, into the checkpoint's in-progress
//! folder (or under its prefix on an object store); then, once the coordinator says it is
//! complete, its `_metadata`, and the folder published atomically, as a checkpoint under its
//! job or a savepoint; or, aborted, dropped.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::layout::METADATA_FILE;
use super::object::PutStep;
use super::{Layout, Metadata, StateFile, Store, StoreError, io_error, metadata, state_file};
use crate::durable;
use crate::fault::Phase;
use crate::ids::{CheckpointId, JobId, OperatorId, SavepointId};
use crate::snapshot::Held;

impl Store {
    /// Writes one subtask's state for a checkpoint in progress, durably: the segment of its
    /// pieces new since its previous checkpoint (homed there by [`Held::home_new_pieces`]),
    /// links to the segments of earlier points that hold the rest, and its state file. On an
    /// object store, the objects go straight under the checkpoint's own prefix, unlisted until
    /// its `_metadata`, and the earlier segments are copied server-side (an object store has
    /// no hard links: there, each point holds its own copy).
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
        let blob = &encoded.state_file;
        let midway = || self.fault_point(Phase::StateWrite, checkpoint);
        if let Some(object) = self.object() {
            let at = self.layout.checkpoint(job, checkpoint);
            for (name, pieces) in &encoded.segments {
                let (to, layout) = (at.join(name), &self.layout);
                let copied = earlier(name).map(|from| object.copy_if_present(layout, &from, &to));
                if !copied.transpose()?.unwrap_or(false) {
                    let bytes = Bytes::from(state_file::segment_bytes(pieces).to_vec());
                    object.write_state(layout, &to, bytes, || Ok(()))?;
                }
            }
            // A fault at this phase strikes halfway through the state file's upload.
            // One copy: the object store sends one contiguous body.
            let joined = Bytes::from(blob.to_vec());
            object.write_state(&self.layout, &at.join(&file), joined, midway)?;
        } else {
            let dir = self.layout.in_progress(job, checkpoint);
            durable::create_dir(&dir).map_err(io_error(&dir))?;
            for (name, pieces) in &encoded.segments {
                let path = dir.join(name);
                let linked = earlier(name).map(|from| link_if_present(&from, &path));
                if !linked.transpose()?.unwrap_or(false) {
                    let bytes = state_file::segment_bytes(pieces);
                    durable::write_file_in_building_dir(&path, &bytes.parts(), || Ok(()))
                        .map_err(io_error(&path))?;
                }
            }
            let path = dir.join(&file);
            // A fault at this phase strikes with half the file written.
            durable::write_file_in_building_dir(&path, &blob.parts(), midway)
                .map_err(io_error(&path))?;
        }
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

    fn publish(&self, metadata: &Metadata, to: &Path) -> Result<(), StoreError> {
        let bytes = metadata::encode(metadata);
        // Pair assertion: what is about to be written must decode to what was meant.
        assert_eq!(
            metadata::decode(&bytes).as_ref(),
            Ok(metadata),
            "metadata round trip"
        );
        if let Some(object) = self.object() {
            let (job, checkpoint) = (&metadata.job, metadata.checkpoint);
            let written = self.layout.checkpoint(job, checkpoint);
            if written != to {
                // A savepoint: its own copy of every state file and segment, before its
                // `_metadata`.
                let names = object.names(&self.layout, &written)?;
                object.copy_states(&self.layout, &written, to, names)?;
            }
            // On an object store, the `_metadata` put is the publication: a crash at this
            // phase strikes right before it, with every state object written.
            object.publish(
                &self.layout,
                to,
                job,
                checkpoint,
                bytes,
                |step| match step {
                    PutStep::Before => self.fault_point(Phase::MetadataWritten, checkpoint),
                    PutStep::After => self.fault_point(Phase::MetadataPut, checkpoint),
                },
            )?;
            if written != to {
                object.remove_point(&self.layout, &written)?;
            }
            let mut published = self.published.lock().expect("not poisoned");
            published.insert(job.clone(), to.to_owned());
            return Ok(());
        }
        let from = self.layout.in_progress(&metadata.job, metadata.checkpoint);
        durable::create_dir(&from).map_err(io_error(&from))?;
        let path = from.join(METADATA_FILE);
        durable::write_file_in_building_dir(&path, &[&bytes], || Ok(()))
            .map_err(io_error(&path))?;
        self.fault_point(Phase::MetadataWritten, metadata.checkpoint)
            .map_err(io_error(&path))?;
        // Until this rename, a crash leaves only an in-progress folder that no reader lists.
        durable::publish_dir(&from, to).map_err(io_error(to))?;
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

    /// Drops a checkpoint in progress (aborted or failed).
    pub fn abort(&self, job: &JobId, checkpoint: CheckpointId) -> Result<(), StoreError> {
        if let Some(object) = self.object() {
            // Published already (the fence refused only the commit): it stays.
            let location = self.layout.checkpoint(job, checkpoint);
            return object.remove_unpublished(&self.layout, &location);
        }
        let dir = self.layout.in_progress(job, checkpoint);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(&dir)(e)),
            _ => Ok(()),
        }
    }
}

/// Links the segment file `from`, of an earlier point, as `to`; false if there is none (the
/// point was removed, or the segment's checkpoint aborted).
fn link_if_present(from: &Path, to: &Path) -> Result<bool, StoreError> {
    match durable::link_in_building_dir(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(to)(e)),
    }
}
