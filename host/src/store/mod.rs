//! The state folder: jobs, their checkpoints, savepoints and the compiled-module cache.
//!
//! Where a barrier's journey ends: each subtask's snapshot is written into the checkpoint's
//! in-progress folder ([`Store::write_state`]); when the coordinator says the checkpoint is
//! complete, [`Store::complete_checkpoint`] or [`Store::complete_savepoint`] writes `_metadata`
//! and publishes the folder atomically. On restore, [`Store::read_point`] and
//! [`Store::read_states`] verify every checksum before any byte reaches a module.
//!
//! Points have two back-ends behind these same methods: this folder (synchronous `std::fs`:
//! the runtime calls it from blocking tasks), or an S3-compatible object store
//! ([`object`], chosen with [`Store::with_object_points`]), where the jobs' status, locks,
//! sockets and module cache stay in this folder. Both share the encoding and verification of
//! `_metadata` and every check of a state file ([`verify_lengths`], [`verify_blob`]).

pub mod fence;
pub mod layout;
mod lock;
pub mod metadata;
pub mod modules;
pub mod object;
mod read;
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
pub use metadata::{
    Definition, Metadata, MetadataError, OperatorState, Origin, StateFile, StateLayout,
};
pub use modules::ModuleFault;
use object::ObjectPoints;

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

/// The state of a point's subtasks, by operator id and subtask index, every checksum verified.
pub type States = BTreeMap<(OperatorId, u32), Held>;

/// Called at each [`Phase`] of a checkpoint: a test may crash the process there, or return an
/// error that the step then fails with (a full disk).
pub type FaultHook = Arc<dyn Fn(Phase, CheckpointId) -> io::Result<()> + Send + Sync>;

/// Where the points (checkpoints and savepoints) live.
#[derive(Clone)]
enum Points {
    /// In the state folder.
    Local,
    /// On an object store.
    Object(Arc<ObjectPoints>),
}

/// The state folder.
#[derive(Clone)]
pub struct Store {
    layout: Layout,
    faults: Option<FaultHook>,
    points: Points,
    /// The folder of each job's newest point published by this process: where a checkpoint
    /// links (on an object store: copies) the segments it still holds from.
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
            layout.modules(),
            layout.cache(),
        ] {
            durable::create_dir(&dir).map_err(io_error(&dir))?;
        }
        let root = layout.root();
        fs::set_permissions(root, fs::Permissions::from_mode(0o700)).map_err(io_error(root))?;
        Ok(Store {
            layout,
            faults: None,
            points: Points::Local,
            published: Arc::default(),
        })
    }

    /// The state folder at `root`, for commands that only read it: creates and changes
    /// nothing, and a folder that does not exist reads as empty.
    pub fn at(root: impl Into<PathBuf>) -> Store {
        Store {
            layout: Layout::new(root),
            faults: None,
            points: Points::Local,
            published: Arc::default(),
        }
    }

    /// This store, with its checkpoints and savepoints on an object store.
    pub fn with_object_points(self, points: ObjectPoints) -> Store {
        Store {
            points: Points::Object(Arc::new(points)),
            ..self
        }
    }

    /// The object store the points live on, if not this folder.
    fn object(&self) -> Option<&ObjectPoints> {
        match &self.points {
            Points::Local => None,
            Points::Object(points) => Some(points),
        }
    }

    /// Whether the points live on an object store.
    pub fn has_object_points(&self) -> bool {
        self.object().is_some()
    }

    /// A point's location as a person should read it: its URL on the object store, or its
    /// folder.
    pub fn display(&self, location: &Path) -> String {
        self.object()
            .and_then(|o| o.display(&self.layout, location))
            .unwrap_or_else(|| location.display().to_string())
    }

    /// The location under the state folder of `s3://…` on this store's object store, if `url`
    /// is one.
    pub fn location_of_url(&self, url: &Path) -> Option<PathBuf> {
        let object = self.object()?;
        let url = url.to_str()?;
        let base = object.url().to_string();
        let relative = url.strip_prefix(&base)?.strip_prefix('/')?;
        let location = self.layout.root().join(relative.trim_end_matches('/'));
        self.layout.relative(&location).map(|_| location)
    }

    /// Whether `location` is on the object store (rather than a local folder).
    pub fn is_on_object_store(&self, location: &Path) -> bool {
        self.on_object_store(location).is_some()
    }

    /// Whether `location` names a point on the object store (rather than a local folder).
    fn on_object_store(&self, location: &Path) -> Option<&ObjectPoints> {
        self.object()
            .filter(|o| o.key(&self.layout, location).is_some())
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
        if let Some(object) = self.object() {
            let holder = format!("{} (pid {})", status.job, std::process::id());
            object.create_lease(&self.layout, &status.job, holder)?;
        }
        self.write_status(status)
    }

    /// Takes over `job`, whose point a job of this process resumes from: on an object store,
    /// raises its lease's generation so that its old process can no longer publish or commit
    /// ([`fence`]), then removes what its unpublished points left behind. Call it before
    /// choosing the point. A local state folder needs none of this (its locks and admission
    /// decide), and nothing happens.
    pub fn take_over(&self, job: &JobId) -> Result<(), StoreError> {
        let Some(object) = self.object() else {
            return Ok(());
        };
        let holder = format!("a job resuming from it (pid {})", std::process::id());
        let generation = object.take_over(&self.layout, job, holder)?;
        tracing::info!(%job, generation, "took the job's lease over");
        // What a crash of the old process left: never published, and now it never will be
        // (but for a publish already past its first fence check; see `fence`).
        for checkpoint in object.leftovers(&self.layout, job)? {
            let location = self.layout.checkpoint(job, checkpoint);
            tracing::info!(
                "removing {}: a point never published",
                self.display(&location)
            );
            object.remove_unpublished(&self.layout, &location)?;
        }
        Ok(())
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
        let earlier = self
            .published
            .lock()
            .expect("not poisoned")
            .get(job)
            .cloned();
        let earlier = earlier.as_deref();
        let file = Layout::state_file_name(operator.as_str(), subtask);
        let blob = &encoded.state_file;
        let midway = || self.fault_point(Phase::StateWrite, checkpoint);
        if let Some(object) = self.object() {
            let at = self.layout.checkpoint(job, checkpoint);
            for (name, pieces) in &encoded.segments {
                let (to, layout) = (at.join(name), &self.layout);
                if *name == own || !object.copy_if_present(layout, earlier, name, &to)? {
                    let bytes = state_file::segment_bytes(pieces);
                    object.write_state(layout, &to, &bytes, || Ok(()))?;
                }
            }
            // A fault at this phase strikes halfway through the state file's upload.
            object.write_state(&self.layout, &at.join(&file), blob, midway)?;
        } else {
            let dir = self.layout.in_progress(job, checkpoint);
            durable::create_dir(&dir).map_err(io_error(&dir))?;
            for (name, pieces) in &encoded.segments {
                let path = dir.join(name);
                if *name == own || !self.link_earlier(earlier, name, &path)? {
                    let bytes = state_file::segment_bytes(pieces);
                    durable::write_file_in_building_dir(&path, &bytes, || Ok(()))
                        .map_err(io_error(&path))?;
                }
            }
            let path = dir.join(&file);
            // A fault at this phase strikes with half the file written.
            durable::write_file_in_building_dir(&path, blob, midway).map_err(io_error(&path))?;
        }
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
            object.publish(&self.layout, to, job, checkpoint, bytes, || {
                self.fault_point(Phase::MetadataWritten, checkpoint)
            })?;
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

    /// A job's completed, retained checkpoints, oldest first.
    pub fn checkpoints(&self, job: &JobId) -> Result<Vec<CheckpointId>, StoreError> {
        if let Some(object) = self.object() {
            let mut ids = object.checkpoints(&self.layout, job)?;
            ids.sort();
            return Ok(ids);
        }
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
            if let Some(object) = self.object() {
                object.remove_point(&self.layout, &dir)?;
                continue;
            }
            fs::remove_dir_all(&dir).map_err(io_error(&dir))?;
        }
        Ok(())
    }

    /// Every savepoint folder's id, sorted.
    pub fn savepoint_ids(&self) -> Result<Vec<SavepointId>, StoreError> {
        if let Some(object) = self.object() {
            let mut ids = object.savepoint_ids(&self.layout)?;
            ids.sort();
            return Ok(ids);
        }
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
        if let Some(object) = self.object() {
            if !object.has_point(&self.layout, &dir)? {
                let source = io::Error::from(io::ErrorKind::NotFound);
                return Err(io_error(&dir)(source));
            }
            object.remove_point(&self.layout, &dir)?;
            return Ok(dir);
        }
        fs::remove_dir_all(&dir).map_err(io_error(&dir))?;
        durable::sync_dir(&self.layout.savepoints())
            .map_err(io_error(&self.layout.savepoints()))?;
        Ok(dir)
    }

    /// Reads and verifies a point's `_metadata`.
    pub fn read_point(&self, dir: &Path) -> Result<Point, StoreError> {
        if let Some(object) = self.on_object_store(dir) {
            let Some(bytes) = object.read_metadata(&self.layout, dir)? else {
                return Err(StoreError::NotAPoint {
                    path: PathBuf::from(self.display(dir)),
                });
            };
            let path = PathBuf::from(self.display(&dir.join(METADATA_FILE)));
            let metadata =
                metadata::decode(&bytes).map_err(|source| StoreError::Metadata { path, source })?;
            return Ok(Point {
                dir: dir.to_owned(),
                metadata,
            });
        }
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
    /// savepoint of many gigabytes is refused at once). In a folder, the files are opened
    /// through a capability on the point's folder, so a name in `_metadata` can never reach
    /// outside it; on an object store, each name is one segment of a key under the point's
    /// prefix, escaped, so it cannot either.
    pub fn read_states(&self, point: &Point) -> Result<States, StoreError> {
        let files: Vec<(&OperatorId, &StateFile)> = point
            .metadata
            .operators
            .iter()
            .flat_map(|op| op.files.iter().map(move |file| (&op.id, file)))
            .collect();
        if let Some(object) = self.on_object_store(&point.dir) {
            let blobs = object.read_states(&self.layout, point, &files)?;
            let mut segments = read::ObjectSegments {
                object,
                layout: &self.layout,
                point,
                fetched: HashMap::new(),
            };
            let mut states = States::new();
            for ((id, file), blob) in files.into_iter().zip(blobs) {
                let held = read::decode_state(point, blob.to_vec(), &mut segments)
                    .map_err(|e| e.at(self, point, file))?;
                states.insert((id.clone(), file.subtask), held);
            }
            return Ok(states);
        }
        let folder = cap_std::fs::Dir::open_ambient_dir(&point.dir, cap_std::ambient_authority())
            .map_err(io_error(&point.dir))?;
        let path_of = |file: &StateFile| point.dir.join(&file.file);
        let lens = files.iter().map(|(_, file)| {
            let found = folder.metadata(&file.file);
            found.map(|m| m.len()).map_err(|e| e.to_string())
        });
        verify_lengths(&files, lens.collect(), &path_of)?;
        let mut states = States::new();
        for (id, file) in files {
            let blob = folder
                .read(&file.file)
                .map_err(|e| corrupt(file, &path_of, e.to_string()))?;
            verify_blob(file, &blob, &path_of)?;
            let mut segments = read::SegmentFiles {
                folder: &folder,
                read: HashMap::new(),
            };
            let held = read::decode_state(point, blob, &mut segments)
                .map_err(|e| e.at(self, point, file))?;
            states.insert((id.clone(), file.subtask), held);
        }
        Ok(states)
    }

    /// The bytes of a point's files or objects: what copying it moves (segments it shares with
    /// other points by hard links included); 0 if they cannot be listed.
    pub fn point_bytes(&self, location: &Path) -> u64 {
        if let Some(object) = self.on_object_store(location) {
            return object.bytes_under(&self.layout, location).unwrap_or(0);
        }
        let files = fs::read_dir(location).into_iter().flatten().flatten();
        files
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    /// Whether `location` holds a point: its `_metadata` on the object store, or a folder.
    pub fn has_point(&self, location: &Path) -> Result<bool, StoreError> {
        match self.on_object_store(location) {
            Some(object) => object.has_point(&self.layout, location),
            None => Ok(location.is_dir()),
        }
    }

    /// Whether `job` is known here: its folder, or anything of it on the object store (a job
    /// that ran from another state folder on the same store).
    pub fn has_job(&self, job: &JobId) -> Result<bool, StoreError> {
        if self.layout.job(job).is_dir() {
            return Ok(true);
        }
        self.object()
            .map_or(Ok(false), |object| object.has_job(&self.layout, job))
    }

    /// Every job that may have points, sorted: those with a folder here and, on an object
    /// store, those with objects there.
    pub fn point_jobs(&self) -> Result<Vec<JobId>, StoreError> {
        let mut jobs = self.jobs()?;
        if let Some(object) = self.object() {
            jobs.extend(object.jobs(&self.layout)?);
            jobs.sort();
            jobs.dedup();
        }
        Ok(jobs)
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

/// A state file's problem, naming it.
fn corrupt(
    file: &StateFile,
    path_of: &dyn Fn(&StateFile) -> PathBuf,
    problem: String,
) -> StoreError {
    StoreError::CorruptState {
        path: path_of(file),
        problem,
    }
}

/// The first checks of a point's state files, for every back-end: each file was `found` (its
/// length, or why not), and with the length `_metadata` says. A missing file is reported before
/// any wrong length. Performs no I/O.
pub(crate) fn verify_lengths(
    files: &[(&OperatorId, &StateFile)],
    found: Vec<Result<u64, String>>,
    path_of: &dyn Fn(&StateFile) -> PathBuf,
) -> Result<Vec<u64>, StoreError> {
    assert_eq!(files.len(), found.len(), "one finding per file");
    let mut lens = Vec::with_capacity(files.len());
    for ((_, file), len) in files.iter().zip(found) {
        lens.push(len.map_err(|problem| corrupt(file, path_of, problem))?);
    }
    for ((_, file), &len) in files.iter().zip(&lens) {
        if len != file.len {
            let problem = format!("{len} bytes, metadata says {}", file.len);
            return Err(corrupt(file, path_of, problem));
        }
    }
    Ok(lens)
}

/// The last check of a state file, for every back-end: its bytes have the length and
/// checksum `_metadata` says. Performs no I/O.
pub(crate) fn verify_blob(
    file: &StateFile,
    blob: &[u8],
    path_of: &dyn Fn(&StateFile) -> PathBuf,
) -> Result<(), StoreError> {
    if blob.len() as u64 != file.len {
        let problem = format!("{} bytes read, metadata says {}", blob.len(), file.len);
        return Err(corrupt(file, path_of, problem));
    }
    if metadata::checksum(blob) != file.checksum {
        return Err(corrupt(file, path_of, "checksum mismatch".to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod crash_consistency;
#[cfg(test)]
mod tests;
