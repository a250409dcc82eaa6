//! The state folder: jobs, their checkpoints, savepoints and the compiled-module cache.
//!
//! Where a barrier's journey ends: each subtask's snapshot is written into the checkpoint's
//! in-progress folder ([`Store::write_state`]); when the coordinator says the checkpoint is
//! complete, [`Store::complete_checkpoint`] or [`Store::complete_savepoint`] writes `_metadata`
//! and publishes the folder atomically. On restore, [`Store::read_point`] and
//! [`Store::read_states`] verify every checksum before any byte reaches a module.
//! Synchronous `std::fs`: the runtime calls it from blocking tasks.

pub mod layout;
mod lock;
pub mod metadata;
pub mod state_file;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::barrier::Phase;
use crate::durable;
use crate::ids::{CheckpointId, JobId, OperatorId, SavepointId};
use crate::snapshot::Held;
pub use layout::Layout;
use layout::METADATA_FILE;
pub use lock::{JobLock, StartLock};
pub use metadata::{Metadata, MetadataError, OperatorState, StateFile, StateLayout};

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
    #[error("{path}: corrupt state file: {problem}")]
    CorruptState {
        /// The state file.
        path: PathBuf,
        /// Length or checksum mismatch, or missing.
        problem: String,
    },
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

/// The state of a point's subtasks, by operator id and subtask index, every checksum verified.
pub type States = BTreeMap<(OperatorId, u32), Held>;

/// Called at each [`Phase`] of a checkpoint: a test may crash the process there, or return an
/// error that the step then fails with (a full disk).
pub type FaultHook = Arc<dyn Fn(Phase, CheckpointId) -> io::Result<()> + Send + Sync>;

/// The state folder.
#[derive(Clone)]
pub struct Store {
    layout: Layout,
    faults: Option<FaultHook>,
    /// The folder of each job's newest point published by this process: where a checkpoint
    /// links the segments it still holds from.
    published: Arc<Mutex<HashMap<JobId, PathBuf>>>,
}

impl Store {
    /// Opens the state folder at `root`, creating it owner-only (0700) if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let layout = Layout::new(root);
        for dir in [
            layout.root().to_owned(),
            layout.jobs(),
            layout.savepoints(),
            layout.cache(),
        ] {
            durable::create_dir(&dir).map_err(io_error(&dir))?;
        }
        let root = layout.root();
        fs::set_permissions(root, fs::Permissions::from_mode(0o700)).map_err(io_error(root))?;
        Ok(Store {
            layout,
            faults: None,
            published: Arc::default(),
        })
    }

    /// The state folder at `root`, for commands that only read it: creates and changes
    /// nothing, and a folder that does not exist reads as empty.
    pub fn at(root: impl Into<PathBuf>) -> Store {
        Store {
            layout: Layout::new(root),
            faults: None,
            published: Arc::default(),
        }
    }

    /// This store, with faults injected at the phases of every checkpoint.
    pub fn with_faults(self, faults: FaultHook) -> Store {
        Store {
            faults: Some(faults),
            ..self
        }
    }

    /// A point where an injected fault may strike.
    pub fn fault_point(&self, phase: Phase, checkpoint: CheckpointId) -> io::Result<()> {
        self.faults
            .as_ref()
            .map_or(Ok(()), |fault| fault(phase, checkpoint))
    }

    /// Paths inside this state folder.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Records a new job and the job file it runs.
    pub fn create_job(&self, status: &JobStatus, job_file: &str) -> Result<(), StoreError> {
        let dir = self.layout.checkpoints(&status.job);
        durable::create_dir(&dir).map_err(io_error(&dir))?;
        let path = self.layout.job_file(&status.job);
        durable::write_file(&path, job_file.as_bytes()).map_err(io_error(&path))?;
        self.write_status(status)
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
        let mut jobs: Vec<JobId> = self
            .list_names(&self.layout.jobs())?
            .into_iter()
            .filter_map(|name| name.parse().ok())
            .collect();
        jobs.sort();
        Ok(jobs)
    }

    /// Writes one subtask's state for a checkpoint in progress, durably: the segment of its
    /// pieces new since its previous checkpoint (homed there by [`Held::home_new_pieces`]),
    /// links to the segments of earlier points that hold the rest, and its state file.
    pub fn write_state(
        &self,
        job: &JobId,
        checkpoint: CheckpointId,
        operator: &OperatorId,
        subtask: u32,
        held: &Held,
    ) -> Result<StateFile, StoreError> {
        let dir = self.layout.in_progress(job, checkpoint);
        durable::create_dir(&dir).map_err(io_error(&dir))?;
        let encoded = state_file::encode(held);
        let own = Layout::segment_file_name(job, checkpoint, operator.as_str(), subtask);
        let earlier = self
            .published
            .lock()
            .expect("not poisoned")
            .get(job)
            .cloned();
        for (name, pieces) in &encoded.segments {
            let path = dir.join(name);
            if *name != own && self.link_earlier(earlier.as_deref(), name, &path)? {
                continue;
            }
            let bytes = state_file::segment_bytes(pieces);
            durable::write_file_in_building_dir(&path, &bytes, || Ok(()))
                .map_err(io_error(&path))?;
        }
        let file = Layout::state_file_name(operator.as_str(), subtask);
        let path = dir.join(&file);
        let blob = &encoded.state_file;
        // A fault at this phase strikes with half the file written.
        durable::write_file_in_building_dir(&path, blob, || {
            self.fault_point(Phase::StateWrite, checkpoint)
        })
        .map_err(io_error(&path))?;
        Ok(StateFile {
            subtask,
            file,
            len: blob.len() as u64,
            checksum: metadata::checksum(blob),
        })
    }

    /// Links segment `name` of the point folder `earlier` as `to`; false if there is no such
    /// segment (the point was removed, or the segment's checkpoint aborted).
    fn link_earlier(
        &self,
        earlier: Option<&Path>,
        name: &str,
        to: &Path,
    ) -> Result<bool, StoreError> {
        let Some(earlier) = earlier else {
            return Ok(false);
        };
        match durable::link_in_building_dir(&earlier.join(name), to) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error(to)(e)),
        }
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
        let from = self.layout.in_progress(&metadata.job, metadata.checkpoint);
        durable::create_dir(&from).map_err(io_error(&from))?;
        let bytes = metadata::encode(metadata);
        // Pair assertion: what is about to be written must decode to what was meant.
        assert_eq!(
            metadata::decode(&bytes).as_ref(),
            Ok(metadata),
            "metadata round trip"
        );
        let path = from.join(METADATA_FILE);
        durable::write_file_in_building_dir(&path, &bytes, || Ok(())).map_err(io_error(&path))?;
        self.fault_point(Phase::MetadataWritten, metadata.checkpoint)
            .map_err(io_error(&path))?;
        // Until this rename, a crash leaves only an in-progress folder that no reader lists.
        durable::publish_dir(&from, to).map_err(io_error(to))?;
        let mut published = self.published.lock().expect("not poisoned");
        published.insert(metadata.job.clone(), to.to_owned());
        Ok(())
    }

    /// Drops a checkpoint in progress (aborted or failed).
    pub fn abort(&self, job: &JobId, checkpoint: CheckpointId) -> Result<(), StoreError> {
        let dir = self.layout.in_progress(job, checkpoint);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(&dir)(e)),
            _ => Ok(()),
        }
    }

    /// A job's completed, retained checkpoints, oldest first.
    pub fn checkpoints(&self, job: &JobId) -> Result<Vec<CheckpointId>, StoreError> {
        let mut ids: Vec<_> = self
            .list_names(&self.layout.checkpoints(job))?
            .iter()
            .filter_map(|name| Layout::parse_checkpoint_name(name))
            .collect();
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
            fs::remove_dir_all(&dir).map_err(io_error(&dir))?;
        }
        Ok(())
    }

    /// Every savepoint folder's id, sorted.
    pub fn savepoint_ids(&self) -> Result<Vec<SavepointId>, StoreError> {
        let mut ids: Vec<SavepointId> = self
            .list_names(&self.layout.savepoints())?
            .into_iter()
            .filter_map(|name| name.parse().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Deletes a savepoint; the only way one is ever removed.
    pub fn remove_savepoint(&self, id: &SavepointId) -> Result<PathBuf, StoreError> {
        let dir = self.layout.savepoint(id);
        fs::remove_dir_all(&dir).map_err(io_error(&dir))?;
        durable::sync_dir(&self.layout.savepoints())
            .map_err(io_error(&self.layout.savepoints()))?;
        Ok(dir)
    }

    /// Reads and verifies a point's `_metadata`.
    pub fn read_point(&self, dir: &Path) -> Result<Point, StoreError> {
        let path = dir.join(METADATA_FILE);
        let file = match fs::File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotAPoint {
                    path: dir.to_owned(),
                });
            }
            other => other.map_err(io_error(&path))?,
        };
        let len = file.metadata().map_err(io_error(&path))?.len();
        if len > metadata::METADATA_BYTES_MAX {
            let source = MetadataError::TooLarge(len);
            return Err(StoreError::Metadata { path, source });
        }
        let mut bytes = Vec::with_capacity(len as usize);
        io::Read::read_to_end(
            &mut io::Read::take(file, metadata::METADATA_BYTES_MAX),
            &mut bytes,
        )
        .map_err(io_error(&path))?;
        let metadata =
            metadata::decode(&bytes).map_err(|source| StoreError::Metadata { path, source })?;
        Ok(Point {
            dir: dir.to_owned(),
            metadata,
        })
    }

    /// Reads every state file of a point, verifying each length and checksum. The cheap checks
    /// come first, worst problem first: a missing file, then a wrong length, is reported before
    /// any file is read (so `_metadata` from another topology is named as such, and a damaged
    /// savepoint of many gigabytes is refused at once). The files are opened through a
    /// capability on the point's folder, so a name in `_metadata` can never reach outside it.
    pub fn read_states(&self, point: &Point) -> Result<States, StoreError> {
        let folder = cap_std::fs::Dir::open_ambient_dir(&point.dir, cap_std::ambient_authority())
            .map_err(io_error(&point.dir))?;
        let files: Vec<(&OperatorId, &StateFile)> = point
            .metadata
            .operators
            .iter()
            .flat_map(|op| op.files.iter().map(move |file| (&op.id, file)))
            .collect();
        let corrupt = |file: &StateFile, problem: String| StoreError::CorruptState {
            path: point.dir.join(&file.file),
            problem,
        };
        let mut lens = Vec::with_capacity(files.len());
        for (_, file) in &files {
            let found = folder.metadata(&file.file);
            lens.push(found.map_err(|e| corrupt(file, e.to_string()))?.len());
        }
        for ((_, file), len) in files.iter().zip(lens) {
            if len != file.len {
                let problem = format!("{len} bytes, metadata says {}", file.len);
                return Err(corrupt(file, problem));
            }
        }
        let mut states = States::new();
        for (id, file) in files {
            let blob = folder
                .read(&file.file)
                .map_err(|e| corrupt(file, e.to_string()))?;
            if metadata::checksum(&blob) != file.checksum {
                return Err(corrupt(file, "checksum mismatch".to_owned()));
            }
            let held = decode_state(point, &folder, blob).map_err(|e| e.at(point, file))?;
            states.insert((id.clone(), file.subtask), held);
        }
        Ok(states)
    }

    fn list_names(&self, dir: &Path) -> Result<Vec<String>, StoreError> {
        let entries = match fs::read_dir(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            other => other.map_err(io_error(dir))?,
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error(dir))?;
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }
}

/// Why a state file, verified, does not give its state: the file, or a segment, at fault.
enum Undecodable {
    StateFile(String),
    Segment(PathBuf, String),
}

impl Undecodable {
    fn at(self, point: &Point, file: &StateFile) -> StoreError {
        let (path, problem) = match self {
            Undecodable::StateFile(problem) => (point.dir.join(&file.file), problem),
            Undecodable::Segment(path, problem) => (path, problem),
        };
        StoreError::CorruptState { path, problem }
    }
}

/// A subtask's state from its verified state file, as the point's layout has it; in format 3,
/// each piece read from its segment in the point's folder and verified.
fn decode_state(
    point: &Point,
    folder: &cap_std::fs::Dir,
    blob: Vec<u8>,
) -> Result<Held, Undecodable> {
    match point.metadata.state_layout {
        StateLayout::Blob => Ok(Held {
            operator_state: blob.into(),
            key_groups: BTreeMap::new(),
        }),
        StateLayout::Grouped => state_file::decode_grouped(&blob).map_err(Undecodable::StateFile),
        StateLayout::Chained => {
            let decoded = state_file::decode(&blob).map_err(Undecodable::StateFile)?;
            let mut segments = SegmentFiles {
                folder,
                open: HashMap::new(),
            };
            decoded
                .load(&mut segments)
                .map_err(|e| Undecodable::Segment(point.dir.join(e.segment), e.problem))
        }
    }
}

/// The segment files of a point being read, each opened once, through the capability on the
/// point's folder.
struct SegmentFiles<'a> {
    folder: &'a cap_std::fs::Dir,
    open: HashMap<String, fs::File>,
}

impl SegmentFiles<'_> {
    fn file(&mut self, name: &str) -> io::Result<&fs::File> {
        if !self.open.contains_key(name) {
            let file = self.folder.open(name)?.into_std();
            self.open.insert(name.to_owned(), file);
        }
        Ok(&self.open[name])
    }

    /// A segment's table and trailer, unverified.
    fn table_bytes(&mut self, name: &str) -> io::Result<(Vec<u8>, [u8; state_file::TRAILER_LEN])> {
        let len = self.file(name)?.metadata()?.len();
        let short = || io::Error::new(io::ErrorKind::UnexpectedEof, "shorter than its table");
        let trailer_at = len.checked_sub(state_file::TRAILER_LEN as u64);
        let trailer_at = trailer_at.ok_or_else(short)?;
        let trailer = self.read_at(name, trailer_at, state_file::TRAILER_LEN)?;
        let trailer: [u8; state_file::TRAILER_LEN] = trailer.try_into().expect("its length");
        let table_len = u64::from(state_file::table_len(&trailer));
        let table_at = trailer_at.checked_sub(table_len).ok_or_else(short)?;
        Ok((self.read_at(name, table_at, table_len as usize)?, trailer))
    }

    fn read_at(&mut self, name: &str, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut bytes = vec![0; len];
        std::os::unix::fs::FileExt::read_exact_at(self.file(name)?, &mut bytes, offset)?;
        Ok(bytes)
    }
}

fn segment_error(segment: &str) -> impl FnOnce(String) -> state_file::SegmentError + '_ {
    move |problem| state_file::SegmentError {
        segment: segment.to_owned(),
        problem,
    }
}

impl state_file::Segments for SegmentFiles<'_> {
    fn table(&mut self, name: &str) -> Result<Vec<state_file::Entry>, state_file::SegmentError> {
        let (table, trailer) = self
            .table_bytes(name)
            .map_err(|e| segment_error(name)(e.to_string()))?;
        state_file::decode_table(&table, &trailer).map_err(segment_error(name))
    }

    fn piece(
        &mut self,
        name: &str,
        entry: &state_file::Entry,
    ) -> Result<Vec<u8>, state_file::SegmentError> {
        let bytes = self.read_at(name, entry.offset, entry.len as usize);
        let bytes = bytes.map_err(|e| segment_error(name)(e.to_string()))?;
        if metadata::checksum(&bytes) != entry.checksum {
            let problem = format!("checksum mismatch at offset {}", entry.offset);
            return Err(segment_error(name)(problem));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod crash_consistency;
#[cfg(test)]
mod tests;
