//! The state folder: jobs, their checkpoints, savepoints and the compiled-module cache.
//!
//! Where a barrier's journey ends: each subtask's snapshot is written into the checkpoint's
//! in-progress folder ([`Store::write_state`]); when the coordinator says the checkpoint is
//! complete, [`Store::complete_checkpoint`] or [`Store::complete_savepoint`] writes `_metadata`
//! and publishes the folder atomically. On restore, [`Store::read_point`] and
//! [`Store::read_states`] verify every checksum before any byte reaches a module.
//!
//! Points and modules live behind one interface, [`backend::PointStore`]: in this folder
//! ([`local`]: synchronous `std::fs`, which the runtime calls from blocking tasks), or on an
//! S3-compatible object store ([`object`], chosen once with [`Store::with_points`]), where
//! the jobs' status, locks, sockets and the compiled-module cache stay in this folder. The
//! store's methods never ask which one they have: both share the encoding and verification of
//! `_metadata` and every check of a state file ([`verify_lengths`], [`verify_blob`]), and the
//! decisions over leases ([`fence`]).

pub mod backend;
mod derived;
pub mod fence;
pub mod layout;
pub mod local;
mod lock;
pub mod metadata;
pub mod modules;
pub mod object;
mod read;
pub mod state_file;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::durable;
use crate::fault::{FaultHook, Phase};
use crate::ids::{CheckpointId, JobId, OperatorId, SavepointId};
use crate::snapshot::Held;
pub use backend::PointStore;
pub use derived::{Deriving, Written};
pub use fence::Lease;
pub use layout::Layout;
use layout::METADATA_FILE;
use local::LocalPoints;
pub use lock::{JobLock, StartLock};
pub use metadata::{
    Definition, Metadata, MetadataError, OperatorState, Origin, StateFile, StateLayout,
};
pub use modules::ModuleFault;
pub use read::StateFault;
pub(crate) use read::{verify_blob, verify_lengths};

/// A failure of the state folder, naming the path at fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error on a path.
    #[error("{path}: {source}")]
    Io {
        /// The path at fault.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The folder is not a checkpoint or savepoint (no `_metadata`).
    #[error("{path}: not a checkpoint or savepoint folder (no {METADATA_FILE})")]
    NotAPoint {
        /// The folder.
        path: PathBuf,
    },
    /// `_metadata` is unusable.
    #[error("{path}: {source}")]
    Metadata {
        /// The `_metadata` file.
        path: PathBuf,
        /// Why it is unusable.
        source: MetadataError,
    },
    /// A state file does not match what `_metadata` says of it.
    #[error("{path}: corrupt state file: {fault}")]
    CorruptState {
        /// The state file (or the segment at fault).
        path: PathBuf,
        /// What is wrong with it.
        fault: StateFault,
    },
    /// A module a point names is not in the module store.
    #[error(
        "module sha256:{}, which {} names, is not in the module store (no {}); pass the job \
         file to run its own modules instead",
        .0.sha256, .0.point, .0.path.display()
    )]
    ModuleMissing(Box<ModuleFault>),
    /// A module's bytes do not hash to its name: damaged or tampered with.
    #[error(
        "module sha256:{}, which {} names, is corrupt: {} hashes to sha256:{}; refusing to run it",
        .0.sha256, .0.point, .0.path.display(), .0.actual
    )]
    ModuleCorrupt(Box<ModuleFault>),
    /// A request to the object store failed.
    #[error("{key}: {source}")]
    Object {
        /// The object (or prefix), as a URL.
        key: String,
        /// What went wrong.
        source: Box<object_store::Error>,
    },
    /// Another process took the job over: this one may no longer publish or commit its points
    /// (see [`fence`]).
    #[error(
        "job `{job}` was taken over (its lease on the object store holds generation {}, held by \
         {holder}; this process holds generation {held}): refusing to publish or commit \
         checkpoint {checkpoint} (generation fence)",
        .current.map_or("none".to_owned(), |g| g.to_string())
    )]
    Fenced {
        /// The job.
        job: JobId,
        /// The checkpoint that was to be published.
        checkpoint: CheckpointId,
        /// The generation this process holds.
        held: u64,
        /// The generation the lease holds now.
        current: Option<u64>,
        /// Who holds it now.
        holder: String,
    },
}

impl StoreError {
    /// Whether this is the generation fence: the job is no longer this process's to run.
    pub fn is_fenced(&self) -> bool {
        matches!(self, StoreError::Fenced { .. })
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a job is doing, as recorded in its status file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum JobState {
    /// Running in the process `pid`.
    Running {
        /// The host process running it.
        pid: u32,
    },
    /// Every source ended and the final checkpoint was committed.
    Finished,
    /// Stopped on request.
    Stopped {
        /// The final savepoint, if one was asked for.
        savepoint: Option<SavepointId>,
    },
    /// Failed with this error.
    Failed {
        /// The error, naming the operator at fault.
        error: String,
    },
}

/// A job's status file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobStatus {
    /// The job.
    pub job: JobId,
    /// The job's name from its job file.
    pub name: String,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// The checkpoint or savepoint folder it resumed from, if any: its latest state until it
    /// completes a checkpoint of its own.
    #[serde(default)]
    pub resumed_from: Option<PathBuf>,
    /// The host folders it may write (its writable mounts), canonical: no other job may
    /// write them while it runs.
    #[serde(default)]
    pub writable_mounts: Vec<PathBuf>,
    /// The SHA-256 of every module it runs, sorted: in the module store, held there while the
    /// job runs (`host gc` never removes them).
    #[serde(default)]
    pub modules: Vec<String>,
    /// What it is doing.
    #[serde(flatten)]
    pub state: JobState,
}

/// A checkpoint or savepoint read from disk, its metadata verified.
#[derive(Clone, Debug)]
pub struct Point {
    /// Its folder.
    pub dir: PathBuf,
    /// Its verified metadata.
    pub metadata: Metadata,
}

impl Point {
    /// Every state file the point's `_metadata` names, with its operator, in the order it
    /// names them.
    pub fn state_files(&self) -> Vec<(&OperatorId, &StateFile)> {
        let operators = self.metadata.operators.iter();
        operators
            .flat_map(|op| op.files.iter().map(move |file| (&op.id, file)))
            .collect()
    }
}

/// The state of a point's subtasks, by operator id and subtask index, every checksum verified.
pub type States = BTreeMap<(OperatorId, u32), Held>;

/// The state folder.
#[derive(Clone)]
pub struct Store {
    layout: Layout,
    faults: Option<FaultHook>,
    /// Where the points and modules live.
    points: Arc<dyn PointStore>,
    /// This machine's file system: where a point given by a folder outside the state folder
    /// (an export) is read while the points live elsewhere.
    local: LocalPoints,
    /// The folder of each job's newest point published by this process: where a checkpoint
    /// links (on an object store: copies) the segments it still holds from.
    published: Arc<Mutex<HashMap<JobId, PathBuf>>>,
}

/// Warns if the existing state folder `root` is open to other users: the control sockets
/// inside are owner-only anyway, but the points and job files are not.
fn warn_if_shared(root: &Path) {
    let Ok(metadata) = fs::metadata(root) else {
        return;
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            "the state folder {} is open to other users (mode {mode:o}); \
             `chmod 700` it to keep its points to yourself",
            root.display()
        );
    }
}

impl Store {
    /// Opens the state folder at `root`, creating it owner-only (0700) if needed. A folder
    /// that exists keeps its mode (`--home` may name any folder: the host changes none it did
    /// not make); one that others may enter gets a warning.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let layout = Layout::new(root);
        warn_if_shared(layout.root());
        for dir in [
            layout.root().to_owned(),
            layout.jobs(),
            layout.savepoints(),
            layout.modules(),
            layout.cache(),
        ] {
            durable::create_dir(&dir).map_err(io_error(&dir))?;
        }
        Ok(Store::at(layout.root()))
    }

    /// The state folder at `root`, for commands that only read it: creates and changes
    /// nothing, and a folder that does not exist reads as empty.
    pub fn at(root: impl Into<PathBuf>) -> Store {
        let layout = Layout::new(root);
        let local = LocalPoints::new(layout.clone());
        Store {
            layout,
            faults: None,
            points: Arc::new(local.clone()),
            local,
            published: Arc::default(),
        }
    }

    /// This store, with its checkpoints, savepoints and module store on `points` (an object
    /// store, made for this state folder's [`Store::layout`]) instead of this folder; the
    /// jobs' status, locks, sockets and the compiled-module cache stay in the folder.
    pub fn with_points(self, points: impl PointStore + 'static) -> Store {
        Store {
            points: Arc::new(points),
            ..self
        }
    }

    /// The back-end of the point at `location`: the store's, or, for a folder outside the
    /// state folder while the points live elsewhere, this machine's file system.
    fn at_location(&self, location: &Path) -> &dyn PointStore {
        match self.points.holds(location) {
            true => &*self.points,
            false => &self.local,
        }
    }

    /// A point's location as a person should read it: its URL on an object store, or its
    /// folder.
    pub fn display(&self, location: &Path) -> String {
        self.at_location(location).display(location)
    }

    /// The location under the state folder that `url` (`s3://…`) names, if it is a URL of
    /// this store's points.
    pub fn location_of_url(&self, url: &Path) -> Option<PathBuf> {
        self.points.location_of_url(url)
    }

    /// Where `location` (a point, or a file of the module store) lies in this machine's file
    /// system, if it does; `None` on an object store.
    pub fn local_path<'l>(&self, location: &'l Path) -> Option<&'l Path> {
        self.at_location(location).local_path(location)
    }

    /// Whether a job resuming from the point at `location` takes the point's job over
    /// ([`Store::take_over`]): where processes on several machines may share the point.
    pub fn resuming_takes_over(&self, location: &Path) -> bool {
        self.at_location(location).shared()
    }

    #[cfg(any(test, feature = "fault-injection"))]
    /// This store, with faults injected at the phases of every checkpoint.
    pub fn with_faults(self, faults: FaultHook) -> Store {
        Store {
            faults: Some(faults),
            ..self
        }
    }

    /// A point where an injected fault may strike.
    pub(crate) fn fault_point(&self, phase: Phase, checkpoint: CheckpointId) -> io::Result<()> {
        self.faults
            .as_ref()
            .map_or(Ok(()), |fault| fault(phase, checkpoint))
    }

    /// Paths inside this state folder.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Records a new job and the job file it runs; where the points are shared, creates its
    /// lease, at the generation of the epoch of `first`, its first checkpoint
    /// ([`fence::generation_of`]).
    pub fn create_job(
        &self,
        status: &JobStatus,
        job_file: &str,
        first: CheckpointId,
    ) -> Result<(), StoreError> {
        let dir = self.layout.checkpoints(&status.job);
        durable::create_dir(&dir).map_err(io_error(&dir))?;
        let path = self.layout.job_file(&status.job);
        durable::write_file(&path, job_file.as_bytes()).map_err(io_error(&path))?;
        let lease = Lease {
            generation: fence::generation_of(first),
            holder: format!("{} (pid {})", status.job, std::process::id()),
            running: true,
            modules: status.modules.clone(),
        };
        self.points.create_lease(&status.job, lease)?;
        self.write_status(status)
    }

    /// Takes over `job`, whose point a job of this process resumes from: where the points are
    /// shared, raises its lease's generation so that its old process can no longer publish or
    /// commit ([`fence`]), then removes what its unpublished points left behind. Call it
    /// before choosing the point. A local state folder needs none of this (its locks and
    /// admission decide), and nothing happens.
    pub fn take_over(&self, job: &JobId) -> Result<(), StoreError> {
        let holder = format!("a job resuming from it (pid {})", std::process::id());
        self.points.take_over(job, holder).map(drop)
    }

    /// Records, where the points are shared, that this process no longer runs `job` (its
    /// lease, if it still holds it): `host rm` and `host gc` anywhere may then treat it as
    /// ended.
    pub fn release_lease(&self, job: &JobId) -> Result<(), StoreError> {
        self.points.release_lease(job)
    }

    /// The lease of `job` as it is now (`None`: it has none, as on a local state folder).
    pub fn lease(&self, job: &JobId) -> Result<Option<Lease>, StoreError> {
        self.points.lease(job)
    }

    /// The generation of `job`'s lease this process holds, which a point it publishes records
    /// (`None`: it holds none, as on a local state folder).
    pub fn held_generation(&self, job: &JobId) -> Option<u64> {
        Some(self.points.held(job)).filter(|&generation| generation > 0)
    }

    /// Who runs `job` in another process, as its lease says (`None`: no one, or a local state
    /// folder, whose locks [`Store::is_running`] reads).
    pub fn runs_elsewhere(&self, job: &JobId) -> Result<Option<String>, StoreError> {
        let lease = self.points.lease(job)?;
        let held = self.points.held(job);
        Ok(lease
            .filter(|lease| fence::runs_elsewhere(held, lease))
            .map(|lease| lease.holder))
    }

    /// The modules of every job whose lease says it runs, wherever: a job started elsewhere
    /// has put them before any point of its names them.
    pub fn leased_modules(&self) -> Result<Vec<String>, StoreError> {
        let mut modules = Vec::new();
        for job in self.points.jobs()? {
            let lease = self.points.lease(&job)?;
            modules.extend(
                lease
                    .filter(|l| l.running)
                    .into_iter()
                    .flat_map(|l| l.modules),
            );
        }
        Ok(modules)
    }

    /// Replaces a job's status file.
    pub fn write_status(&self, status: &JobStatus) -> Result<(), StoreError> {
        let path = self.layout.job_status(&status.job);
        let json = serde_json::to_vec_pretty(status).expect("status serializes");
        durable::write_file(&path, &json).map_err(io_error(&path))
    }

    /// Reads a job's status file.
    pub fn read_status(&self, job: &JobId) -> Result<JobStatus, StoreError> {
        let path = self.layout.job_status(job);
        let bytes = fs::read(&path).map_err(io_error(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| StoreError::Io {
            path,
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })
    }

    /// Every job with a folder here, sorted by id.
    pub fn jobs(&self) -> Result<Vec<JobId>, StoreError> {
        let mut jobs = local::job_folders(&self.layout)?;
        jobs.sort();
        Ok(jobs)
    }

    /// A job's completed, retained checkpoints, oldest first.
    pub fn checkpoints(&self, job: &JobId) -> Result<Vec<CheckpointId>, StoreError> {
        let mut ids = self.points.checkpoints(job)?;
        ids.sort();
        Ok(ids)
    }

    /// Deletes these retained checkpoints of a job (never savepoints: they live elsewhere).
    pub fn remove_checkpoints(
        &self,
        job: &JobId,
        victims: &[CheckpointId],
    ) -> Result<(), StoreError> {
        for &checkpoint in victims {
            let dir = self.layout.checkpoint(job, checkpoint);
            self.points.remove_point(&dir)?;
        }
        Ok(())
    }

    /// Every savepoint's id, sorted.
    pub fn savepoint_ids(&self) -> Result<Vec<SavepointId>, StoreError> {
        let mut ids = self.points.savepoint_ids()?;
        ids.sort();
        Ok(ids)
    }

    /// Deletes a savepoint; the only way one is ever removed.
    pub fn remove_savepoint(&self, id: &SavepointId) -> Result<PathBuf, StoreError> {
        let dir = self.layout.savepoint(id);
        if !self.points.has_point(&dir)? {
            let source = io::Error::from(io::ErrorKind::NotFound);
            return Err(io_error(&dir)(source));
        }
        self.points.remove_point(&dir)?;
        Ok(dir)
    }

    /// The bytes of a point's files or objects: what copying it moves (segments it shares with
    /// other points by hard links included); 0 if they cannot be listed.
    pub fn point_bytes(&self, location: &Path) -> u64 {
        self.at_location(location).point_bytes(location)
    }

    /// Whether `location` holds a point: its `_metadata` on an object store, or a folder.
    pub fn has_point(&self, location: &Path) -> Result<bool, StoreError> {
        self.at_location(location).has_point(location)
    }

    /// Whether `job` is known here: its folder, or anything of it where the points live (a job
    /// that ran from another state folder on the same object store).
    pub fn has_job(&self, job: &JobId) -> Result<bool, StoreError> {
        Ok(self.layout.job(job).is_dir() || self.points.has_job(job)?)
    }

    /// Every job that may have points, sorted: those with a folder here and those with points
    /// where the points live.
    pub fn point_jobs(&self) -> Result<Vec<JobId>, StoreError> {
        let mut jobs = self.jobs()?;
        jobs.extend(self.points.jobs()?);
        jobs.sort();
        jobs.dedup();
        Ok(jobs)
    }
}

#[cfg(test)]
mod crash_consistency;
#[cfg(test)]
mod decisions;
#[cfg(test)]
mod tests;
