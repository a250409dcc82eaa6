//! Where points and modules live: one interface, [`PointStore`], over the state folder itself
//! ([`super::local`]) and an S3-compatible object store ([`super::object`]), so that
//! [`super::Store`]'s methods, and everyone who calls them, never ask which one they have.
//!
//! Each implementation keeps its own way of making a point appear whole or not at all: in a
//! folder, files fsynced in an in-progress folder that a rename publishes; on an object store,
//! state objects first, then a create-only `_metadata` put between two checks of the job's
//! lease ([`super::fence`]). What both share sits above, in the store: the encoding and every
//! check of `_metadata` and of the state files, which segments a checkpoint links or copies,
//! the decisions over leases. Unit tests of those decisions run on the object implementation
//! over an in-memory bucket (`ObjectPoints::in_memory`, in test builds): the very protocol
//! that runs against S3, without a server.
//!
//! Every method names its location by its path under the state folder
//! ([`super::Layout`], which each implementation holds); a point given by a folder outside it
//! (an export) is always read where it lies, by the local implementation ([`super::Store`]
//! routes it there).

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::fence::Lease;
use super::state_file::{Encoded, Segments};
use super::{Metadata, Point, StoreError};
use crate::fault::Phase;
use crate::ids::{CheckpointId, JobId, SavepointId};

/// Where a state file of a point being read goes, verified, with the segments it may name:
/// called once per file, with its index in [`Point::state_files`].
pub type TakeState<'a> = dyn FnMut(usize, Bytes, &mut dyn Segments) -> Result<(), StoreError> + 'a;

/// Where an injected fault may strike while a point is published (tests only; a no-op else).
pub type Faults<'a> = dyn Fn(Phase) -> io::Result<()> + 'a;

/// One subtask's state, to be written for checkpoint `checkpoint` of `job` in progress.
pub struct StateWrite<'a> {
    /// The job.
    pub job: &'a JobId,
    /// The checkpoint in progress.
    pub checkpoint: CheckpointId,
    /// The state file's bytes, and the pieces of each segment it names.
    pub encoded: &'a Encoded<'a>,
    /// The state file's name.
    pub file: &'a str,
    /// Where an earlier point holds segment `name`, if one does: linked or copied from there.
    pub earlier: &'a dyn Fn(&str) -> Option<PathBuf>,
    /// Runs halfway through the state file (where a test crashes or fails the write).
    pub midway: &'a dyn Fn() -> io::Result<()>,
}

/// The back-end of a state folder's points (checkpoints and savepoints) and module store.
///
/// Methods are synchronous: the runtime calls them from blocking tasks, the command line from
/// its one thread.
pub trait PointStore: Send + Sync + std::fmt::Debug {
    // ----- Names ------------------------------------------------------------------------------

    /// Whether `location` is one of this back-end's (else it is a folder on this machine).
    fn holds(&self, location: &Path) -> bool;

    /// `location` as a person should read it: its folder, or its URL.
    fn display(&self, location: &Path) -> String;

    /// The location that `url` names, if it is a URL of this back-end (`s3://…`).
    fn location_of_url(&self, url: &Path) -> Option<PathBuf>;

    /// Where `location` lies in this machine's file system, if it does (a point's folder, a
    /// module's file); `None` for an object.
    fn local_path<'l>(&self, location: &'l Path) -> Option<&'l Path>;

    /// Whether processes on other machines may share these points, so that a job resuming from
    /// one takes the point's job over ([`super::fence`]): a lease, not a local lock, then says
    /// who runs a job.
    fn shared(&self) -> bool;

    // ----- Leases (the generation fence; a back-end that is not shared has none) -------------

    /// Creates `lease`, of a job this process starts, and holds its generation.
    fn create_lease(&self, job: &JobId, lease: Lease) -> Result<(), StoreError>;

    /// Takes `job` over (raises its lease's generation, so that its old process can no longer
    /// publish or commit), then makes what its unpublished points left never publishable and
    /// removes it. Returns the new generation (`None`: nothing to take over here).
    fn take_over(&self, job: &JobId, holder: String) -> Result<Option<u64>, StoreError>;

    /// Marks the lease of `job`, which this process ran, as no longer running, if it still
    /// holds it.
    fn release_lease(&self, job: &JobId) -> Result<(), StoreError>;

    /// The lease of `job` as it is now (`None`: it has none).
    fn lease(&self, job: &JobId) -> Result<Option<Lease>, StoreError>;

    /// The generation of `job`'s lease this process holds (0: none).
    fn held(&self, job: &JobId) -> u64;

    // ----- Listing ----------------------------------------------------------------------------

    /// Every job with points (or a lease) here, unsorted.
    fn jobs(&self) -> Result<Vec<JobId>, StoreError>;

    /// Whether anything of `job` is here.
    fn has_job(&self, job: &JobId) -> Result<bool, StoreError>;

    /// A job's published checkpoints, unsorted.
    fn checkpoints(&self, job: &JobId) -> Result<Vec<CheckpointId>, StoreError>;

    /// Every published savepoint's id, unsorted.
    fn savepoint_ids(&self) -> Result<Vec<SavepointId>, StoreError>;

    // ----- One point --------------------------------------------------------------------------

    /// Whether a point is published at `location`.
    fn has_point(&self, location: &Path) -> Result<bool, StoreError>;

    /// The bytes of the point's files; 0 if they cannot be listed.
    fn point_bytes(&self, location: &Path) -> u64;

    /// The names of the point's files (not folders inside it), unsorted.
    fn point_files(&self, location: &Path) -> Result<Vec<String>, StoreError>;

    /// File `name` of the point at `location`, whole.
    fn read_point_file(&self, location: &Path, name: &str) -> Result<Vec<u8>, StoreError>;

    /// The point's `_metadata` (`None`: no point there), refused unread past
    /// [`super::metadata::METADATA_BYTES_MAX`].
    fn read_metadata(&self, location: &Path) -> Result<Option<Vec<u8>>, StoreError>;

    /// Reads the state files of `point` ([`Point::state_files`]), each verified
    /// ([`super::verify_lengths`] for all of them first, then [`super::verify_blob`]), and
    /// hands each to `take`, by its index there, with the point's segments.
    fn read_states(&self, point: &Point, take: &mut TakeState<'_>) -> Result<(), StoreError>;

    /// Deletes the point at `location` (`_metadata` first, where that matters).
    fn remove_point(&self, location: &Path) -> Result<(), StoreError>;

    // ----- Writing a checkpoint ---------------------------------------------------------------

    /// Writes one subtask's state for a checkpoint in progress, durably: its segments, each
    /// linked or copied from an earlier point that holds it, else written; then its state file.
    fn write_state(&self, write: &StateWrite<'_>) -> Result<(), StoreError>;

    /// Publishes `metadata`, whose states were written for its checkpoint, atomically at `to`
    /// (the checkpoint's own location, or a savepoint's), its bytes from
    /// [`super::metadata::encode_checked`].
    fn publish(&self, metadata: &Metadata, to: &Path, faults: &Faults) -> Result<(), StoreError>;

    /// Drops a checkpoint in progress (aborted or failed); a published one stays.
    fn abort(&self, job: &JobId, checkpoint: CheckpointId) -> Result<(), StoreError>;

    // ----- The module store -------------------------------------------------------------------

    /// Puts module `sha256` unless it is there whole; returns whether it wrote it.
    fn put_module(&self, sha256: &str, bytes: &[u8]) -> Result<bool, StoreError>;

    /// The bytes of module `sha256`, unverified (`None`: not there).
    fn read_module(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// The names in the module store (modules, and anything else found there), unsorted.
    fn module_names(&self) -> Result<Vec<String>, StoreError>;

    /// Deletes module `sha256` (absent already is fine).
    fn remove_module(&self, sha256: &str) -> Result<(), StoreError>;
}
