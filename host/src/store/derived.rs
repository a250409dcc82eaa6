//! Writing a point that no job wrote: a savepoint made offline by `host state` (an edit of
//! another point, a repartition, a bootstrap from data), through the very path a checkpoint
//! takes ([`Store::write_state`], then a savepoint's publication): each subtask's state file
//! written, the pieces new to it in one new segment, every segment it still holds from the
//! original linked from there (on an object store, copied server-side), then `_metadata`, the
//! point published atomically. A failure drops what was written; nothing of the original is
//! ever written.
//!
//! The point belongs to a job of its own (named after the tool), which runs nowhere: where the
//! points are shared, it holds that job's lease only while it writes, as a job would.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::fence::{self, Lease};
use super::{Layout, Metadata, Point, Store, StoreError, io_error};
use crate::durable;
use crate::ids::OperatorId;
use crate::snapshot::Held;

/// What a derived point's files were made of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Files written new (state files, new segments, `_metadata`).
    pub new_files: usize,
    /// Files shared with the original point (segments linked, or copied server-side).
    pub shared_files: usize,
}

/// A derived point being written: [`Store::derive`], then [`Deriving::write`] for every
/// subtask of every operator its metadata lists, then [`Deriving::publish`]. Dropped
/// unpublished, it removes what it wrote.
pub struct Deriving<'s> {
    store: &'s Store,
    metadata: Metadata,
    to: PathBuf,
    written: Written,
    published: bool,
}

impl Store {
    /// Starts writing the point `metadata` describes (its job a new one, never run) at `to`,
    /// which must not exist; segments of `from` are linked from there.
    pub fn derive(
        &self,
        from: Option<&Point>,
        to: &Path,
        mut metadata: Metadata,
    ) -> Result<Deriving<'_>, StoreError> {
        if self.has_point(to)? {
            let exists = std::io::Error::from(std::io::ErrorKind::AlreadyExists);
            return Err(io_error(&PathBuf::from(self.display(to)))(exists));
        }
        let job = &metadata.job;
        let lease = Lease {
            generation: fence::generation_of(metadata.checkpoint),
            holder: format!(
                "{job} (pid {}, writing a point offline)",
                std::process::id()
            ),
            running: true,
            modules: Vec::new(),
        };
        self.points.create_lease(job, lease)?;
        metadata.generation = self.held_generation(job);
        if let Some(from) = from {
            let mut published = self.published.lock().expect("not poisoned");
            published.insert(job.clone(), from.dir.clone());
        }
        Ok(Deriving {
            store: self,
            metadata,
            to: to.to_owned(),
            written: Written::default(),
            published: false,
        })
    }
}

impl Deriving<'_> {
    /// Writes the state of `subtask` of `operator`: every piece not stored yet goes into the
    /// subtask's new segment, the others stay where the original holds them.
    pub fn write(
        &mut self,
        operator: &OperatorId,
        subtask: u32,
        mut held: Held,
    ) -> Result<(), StoreError> {
        let (job, checkpoint) = (&self.metadata.job, self.metadata.checkpoint);
        let own = Layout::segment_file_name(job, checkpoint, operator.as_str(), subtask);
        held.home_new_pieces(&own, checkpoint.0);
        let pieces = held
            .key_groups
            .values()
            .chain(held.timers.values())
            .flatten();
        let segments: BTreeSet<&str> = pieces
            .filter_map(|p| Some(&*p.home.as_ref()?.segment))
            .collect();
        let shared = segments.iter().filter(|name| **name != own).count();
        let file = self
            .store
            .write_state(job, checkpoint, operator, subtask, &held)?;
        self.written.shared_files += shared;
        self.written.new_files += 1 + usize::from(segments.contains(own.as_str()));
        let op = self
            .metadata
            .operators
            .iter_mut()
            .find(|op| &op.id == operator);
        let op = op.expect("a derived point's state belongs to one of its operators");
        let slot = op.files.iter_mut().find(|f| f.subtask == subtask);
        *slot.expect("a subtask of the operator") = file;
        Ok(())
    }

    /// Publishes the point; returns its location and what it is made of.
    pub fn publish(mut self) -> Result<(PathBuf, Written), StoreError> {
        self.store.publish(&self.metadata, &self.to)?;
        self.published = true;
        self.written.new_files += 1;
        Ok((self.to.clone(), self.written.clone()))
    }
}

impl Drop for Deriving<'_> {
    fn drop(&mut self) {
        let job = &self.metadata.job;
        if !self.published {
            let _ = self.store.abort(job, self.metadata.checkpoint);
        }
        let _ = self.store.release_lease(job);
        self.store
            .published
            .lock()
            .expect("not poisoned")
            .remove(job);
        // The folder the checkpoint path made for the job, which runs nowhere (empty now).
        let folder = self.store.layout.job(job);
        if folder.is_dir() {
            let _ = durable::remove_dir(&folder);
        }
    }
}
