//! Restore points (what `--from` accepts), and whether a point fits a job.
//!
//! Before a barrier's journey ends in a new job: `--from` names a point, [`RestorePoint::parse`]
//! reads the name, [`resolve`] finds its folder, and [`check_compatibility`] decides, from the
//! point's metadata and the new plan alone, whether every state has an operator to go to.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::ids::{CheckpointId, JobId, OperatorId, Role, SavepointId};
use crate::key_group::KEY_GROUP_FUNCTION;
use crate::store::{Lease, Metadata, OperatorState, Store, StoreError, fence};
use crate::topology::Plan;

/// What `--from` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestorePoint {
    /// A folder holding `_metadata` (anything with a `/`, or starting with `.`).
    Folder(PathBuf),
    /// `JOB:N`: checkpoint or savepoint N of that job.
    JobCheckpoint(JobId, CheckpointId),
    /// A savepoint id, or a job id (its latest savepoint or retained checkpoint).
    Name(String),
}

impl RestorePoint {
    /// Reads a restore point. Performs no I/O.
    pub fn parse(text: &str) -> Result<RestorePoint, String> {
        if text.contains('/') || text.starts_with('.') {
            return Ok(RestorePoint::Folder(PathBuf::from(text)));
        }
        if let Some((job, n)) = text.split_once(':') {
            let job = job.parse().map_err(|e| format!("`{text}`: {e}"))?;
            let n = n
                .parse()
                .map_err(|_| format!("`{text}`: `{n}` is not a checkpoint number"))?;
            return Ok(RestorePoint::JobCheckpoint(job, CheckpointId(n)));
        }
        crate::ids::check_id(text)?;
        Ok(RestorePoint::Name(text.to_owned()))
    }
}

impl fmt::Display for RestorePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestorePoint::Folder(path) => write!(f, "{}", path.display()),
            RestorePoint::JobCheckpoint(job, n) => write!(f, "{job}:{n}"),
            RestorePoint::Name(name) => f.write_str(name),
        }
    }
}

/// Why a restore point cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SavepointError {
    /// Nothing by that name.
    #[error("no savepoint, job or folder `{0}` (see `host savepoints`)")]
    NotFound(RestorePoint),
    /// The job exists but has no savepoint or retained checkpoint.
    #[error("job `{0}` has no savepoint or retained checkpoint to resume from")]
    NothingRetained(JobId),
    /// The point is unreadable or corrupt.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The newest point of a job is unreadable; an older one is not taken in its place.
    #[error(
        "the newest point of job `{job}` (checkpoint {checkpoint}) is unreadable: {error}\n\
         Not falling back to an older point on its own: the job's output may have been committed \
         past it. To resume from an older point anyway, name it: --from {job}:N (see `host \
         savepoints --job {job}`)"
    )]
    NewestUnreadable {
        /// The job.
        job: JobId,
        /// The checkpoint number of the unreadable point.
        checkpoint: CheckpointId,
        /// Why it is unreadable, naming the file.
        error: StoreError,
    },
    /// The point does not fit the new job.
    #[error("savepoint {point} does not fit this job:{}", bulleted(.problems))]
    Incompatible {
        /// The point.
        point: String,
        /// Every problem found, each naming its operator.
        problems: Vec<Mismatch>,
    },
}

/// Each item on a line of its own, as a list.
fn bulleted<T: fmt::Display>(items: &[T]) -> String {
    items.iter().map(|item| format!("\n  - {item}")).collect()
}

/// A savepoint or retained checkpoint found in the state folder.
#[derive(Clone, Debug)]
pub struct Listed {
    /// Its savepoint id, if it is a savepoint.
    pub savepoint: Option<SavepointId>,
    /// Its folder.
    pub dir: PathBuf,
    /// Its metadata, or why it cannot be read.
    pub metadata: Result<Metadata, String>,
}

/// Every savepoint, then every retained checkpoint of every job (or of `job` only).
pub fn list(store: &Store, job: Option<&JobId>) -> Result<Vec<Listed>, StoreError> {
    let mut listed = Vec::new();
    for id in store.savepoint_ids()? {
        let dir = store.layout().savepoint(&id);
        let metadata = store
            .read_point(&dir)
            .map(|p| p.metadata)
            .map_err(|e| e.to_string());
        if job.is_none() || metadata.as_ref().is_ok_and(|m| Some(&m.job) == job) {
            listed.push(Listed {
                savepoint: Some(id),
                dir,
                metadata,
            });
        }
    }
    let jobs = match job {
        Some(job) => vec![job.clone()],
        None => store.point_jobs()?,
    };
    for job in jobs {
        for checkpoint in store.checkpoints(&job)? {
            let dir = store.layout().checkpoint(&job, checkpoint);
            let metadata = store
                .read_point(&dir)
                .map(|p| p.metadata)
                .map_err(|e| e.to_string());
            listed.push(Listed {
                savepoint: None,
                dir,
                metadata,
            });
        }
    }
    Ok(listed)
}

/// Finds the folder of a restore point (on an object store: its location, named by its path
/// under the state folder).
pub fn resolve(store: &Store, point: &RestorePoint) -> Result<PathBuf, SavepointError> {
    let not_found = || SavepointError::NotFound(point.clone());
    match point {
        RestorePoint::Folder(path) => {
            // `s3://…` of this store's points names the same location as its path here.
            let path = store.location_of_url(path).unwrap_or_else(|| path.clone());
            match store.has_point(&path)? {
                true => Ok(path),
                false => Err(not_found()),
            }
        }
        RestorePoint::JobCheckpoint(job, n) => {
            let lease = store.lease(job)?;
            let dir = store.layout().checkpoint(job, *n);
            if store.has_point(&dir)? && stands_for_job(store, lease.as_ref(), &dir, *n)? {
                return Ok(dir);
            }
            latest_of_job(store, job, Some(*n))?.ok_or_else(not_found)
        }
        RestorePoint::Name(name) => {
            if let Ok(id) = name.parse::<SavepointId>() {
                let dir = store.layout().savepoint(&id);
                if store.has_point(&dir)? {
                    return Ok(dir);
                }
            }
            let job: JobId = name.parse().map_err(|_| not_found())?;
            if !store.has_job(&job)? {
                return Err(not_found());
            }
            if let Some(dir) = latest_of_job(store, &job, None)? {
                return Ok(dir);
            }
            // A job that died before its first checkpoint still holds the state it resumed from.
            match store
                .read_status(&job)
                .ok()
                .and_then(|status| status.resumed_from)
            {
                Some(dir) if store.has_point(&dir)? => Ok(dir),
                _ => Err(SavepointError::NothingRetained(job)),
            }
        }
    }
}

/// The newest savepoint or retained checkpoint of `job` (numbered `only`, if given). If that
/// point's `_metadata` is unreadable, it is refused, naming the file: never silently passed
/// over for an older point, whose output the job has already committed past. A point the
/// job's lease says its own process could not have written is passed over, with a warning
/// naming it ([`fence::admits`]), and left where it is.
fn latest_of_job(
    store: &Store,
    job: &JobId,
    only: Option<CheckpointId>,
) -> Result<Option<PathBuf>, SavepointError> {
    let lease = store.lease(job)?;
    let mut points: Vec<(CheckpointId, PathBuf, Option<StoreError>)> = Vec::new();
    let mut take = |n, dir: PathBuf, read: Result<Metadata, StoreError>| match read {
        Ok(m) if admitted(store, lease.as_ref(), &dir, n, &m) => points.push((n, dir, None)),
        Ok(_) => {}
        Err(e) => points.push((n, dir, Some(e))),
    };
    for id in store.savepoint_ids()? {
        let dir = store.layout().savepoint(&id);
        match store.read_point(&dir) {
            Ok(point) if &point.metadata.job == job => {
                take(point.metadata.checkpoint, dir, Ok(point.metadata))
            }
            Ok(_) => {}
            Err(e) => {
                if let Some(n) = id.checkpoint_of(job) {
                    take(n, dir, Err(e));
                }
            }
        }
    }
    for n in store.checkpoints(job)? {
        let dir = store.layout().checkpoint(job, n);
        take(n, dir.clone(), store.read_point(&dir).map(|p| p.metadata));
    }
    let newest = points
        .into_iter()
        .filter(|(n, ..)| only.is_none_or(|only| *n == only))
        .max_by_key(|(n, _, unreadable)| (*n, unreadable.is_none()));
    match newest {
        None => Ok(None),
        Some((_, dir, None)) => Ok(Some(dir)),
        Some((checkpoint, _, Some(error))) => Err(SavepointError::NewestUnreadable {
            job: job.clone(),
            checkpoint,
            error,
        }),
    }
}

/// Whether the point at `dir`, listed as checkpoint `listed` of its job, may stand for the job
/// as its lease (`None`: it has none, and its `_metadata` is not read here) says
/// ([`admitted`]).
fn stands_for_job(
    store: &Store,
    lease: Option<&Lease>,
    dir: &Path,
    listed: CheckpointId,
) -> Result<bool, StoreError> {
    if lease.is_none() {
        return Ok(true);
    }
    let metadata = store.read_point(dir)?.metadata;
    Ok(admitted(store, lease, dir, listed, &metadata))
}

/// Whether the point at `dir`, listed as checkpoint `listed` of its job, whose `_metadata` is
/// `metadata`, may stand for the job ([`fence::admits`]); one that may not is named in a
/// warning, never used, never removed.
fn admitted(
    store: &Store,
    lease: Option<&Lease>,
    dir: &Path,
    listed: CheckpointId,
    metadata: &Metadata,
) -> bool {
    let Err(unfit) = fence::admits(lease, listed, metadata.checkpoint, metadata.generation) else {
        return true;
    };
    let shown = store.display(dir);
    tracing::warn!(
        "passing over {shown}: {unfit}, so job `{}`'s own process did not write it; to resume \
         from it anyway, name it: --from {shown}",
        metadata.job
    );
    false
}

/// Why the state of a point cannot go to a job: each names the operator or property at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// State of an operator the job no longer has.
    #[error(
        "operator `{0}` has state in the savepoint but is not in the job \
         (rename it back, pass --rename {0}=NEW_ID if the job calls it NEW_ID, or pass \
         --allow-non-restored-state to drop its state)"
    )]
    NotInJob(OperatorId),
    /// `--rename OLD=NEW` of an operator the point has no state of.
    #[error("--rename {old}={new}: the savepoint has no operator `{old}`")]
    RenameUnknown {
        /// The old id.
        old: OperatorId,
        /// The new id.
        new: OperatorId,
    },
    /// `--rename OLD=NEW` to an id that already names state in the point (not renamed away),
    /// or that two renames share.
    #[error(
        "--rename {old}={new}: the savepoint already has state for an operator `{new}` (two \
         states would go to one operator)"
    )]
    RenameTaken {
        /// The old id.
        old: OperatorId,
        /// The new id.
        new: OperatorId,
    },
    /// The same id now names an operator of another role (another WIT world).
    #[error(
        "operator `{operator}` has role `{point}` in the savepoint and role `{job}` in the job: \
         its state would go to a module of another world (give the new operator a new id)"
    )]
    Role {
        /// The operator.
        operator: OperatorId,
        /// Its role in the point.
        point: Role,
        /// Its role in the job.
        job: Role,
    },
    /// A subtask of the point has no state file: resuming would start it empty.
    #[error(
        "operator `{operator}`: the savepoint has no state for subtask {subtask} of {parallelism} \
         (the point is incomplete)"
    )]
    MissingState {
        /// The operator.
        operator: OperatorId,
        /// The subtask without a file.
        subtask: u32,
        /// The operator's parallelism in the point.
        parallelism: u32,
    },
    /// State files that no subtask of the point owns.
    #[error(
        "operator `{operator}`: the savepoint has state for subtask {subtask}, which a parallelism of {parallelism} does not have, or twice"
    )]
    StrayState {
        /// The operator.
        operator: OperatorId,
        /// The subtask named by the stray file.
        subtask: u32,
        /// The operator's parallelism in the point.
        parallelism: u32,
    },
    /// A changed number of key groups, which would move keys between subtasks.
    #[error(
        "the savepoint's keyed state is split into max_parallelism = {point} key groups, the job \
         sets {job}: keys would land on subtasks that do not hold their state (set \
         max_parallelism = {point} in the job file; it is fixed for the life of the state)"
    )]
    MaxParallelism {
        /// Key groups in the point.
        point: u32,
        /// Key groups in the job.
        job: u32,
    },
    /// A key-group function this host does not compute.
    #[error("the savepoint's keys were grouped by `{point}`, this host groups them by `{host}`")]
    KeyGroupFunction {
        /// The function named by the point.
        point: String,
        /// This host's.
        host: &'static str,
    },
}

/// How a point's state maps onto a job's operators: by id, after `renames`; with
/// `allow_non_restored`, state of operators the job does not have is dropped, not refused.
#[derive(Clone, Debug, Default)]
pub struct Mapping {
    /// `--allow-non-restored-state`.
    pub allow_non_restored: bool,
    /// `--rename OLD=NEW`: state of operator OLD in the point goes to operator NEW.
    pub renames: Vec<(OperatorId, OperatorId)>,
}

/// Renames the point's operators as `renames` say (state follows its operator to the new id),
/// in `metadata` only: state files keep their names, and are read through it. Refuses a
/// rename of an operator the point does not have, and one onto an id that names other state.
pub fn rename(
    metadata: &mut Metadata,
    renames: &[(OperatorId, OperatorId)],
) -> Result<(), Vec<Mismatch>> {
    let mut problems = Vec::new();
    let renamed_away = |id: &OperatorId| renames.iter().any(|(old, _)| old == id);
    for (i, (old, new)) in renames.iter().enumerate() {
        let (old, new) = (old.clone(), new.clone());
        if !metadata.operators.iter().any(|op| op.id == old) {
            problems.push(Mismatch::RenameUnknown { old, new });
        } else if metadata
            .operators
            .iter()
            .any(|op| op.id == new && !renamed_away(&new))
            || renames[..i].iter().any(|(_, earlier)| *earlier == new)
        {
            problems.push(Mismatch::RenameTaken { old, new });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    for op in &mut metadata.operators {
        if let Some((_, new)) = renames.iter().find(|(old, _)| *old == op.id) {
            op.id = new.clone();
        }
    }
    Ok(())
}

/// Decides whether the state in `metadata` can go to the operators of `plan`: every property
/// that decides where a key's state lives (max parallelism, key-group function) must match,
/// every state must have an operator of the same id and role (unless `allow_non_restored`
/// drops it), and every subtask of the point must have its state file. A changed parallelism
/// is decided once the module has said how its state rescales ([`crate::snapshot`]).
/// Operators with no state in the point start empty. Returns every mismatch. Performs no I/O.
pub fn check_compatibility(
    metadata: &Metadata,
    plan: &Plan,
    allow_non_restored: bool,
) -> Result<(), Vec<Mismatch>> {
    let mut problems = Vec::new();
    if metadata.key_group_function != KEY_GROUP_FUNCTION {
        problems.push(Mismatch::KeyGroupFunction {
            point: metadata.key_group_function.clone(),
            host: KEY_GROUP_FUNCTION,
        });
    }
    if metadata.max_parallelism != plan.max_parallelism {
        problems.push(Mismatch::MaxParallelism {
            point: metadata.max_parallelism,
            job: plan.max_parallelism,
        });
    }
    for state in &metadata.operators {
        problems.extend(files_mismatch(state));
        let operator = state.id.clone();
        match plan.operator(&state.id) {
            None if allow_non_restored => {}
            None => problems.push(Mismatch::NotInJob(operator)),
            Some(op) if op.role != state.role => problems.push(Mismatch::Role {
                operator,
                point: state.role,
                job: op.role,
            }),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The first subtask of `state` without exactly one state file, if any.
fn files_mismatch(state: &OperatorState) -> Option<Mismatch> {
    let parallelism = state.parallelism;
    let mut seen = vec![false; parallelism as usize];
    for file in &state.files {
        match seen.get_mut(file.subtask as usize) {
            Some(seen) if !*seen => *seen = true,
            _ => {
                return Some(Mismatch::StrayState {
                    operator: state.id.clone(),
                    subtask: file.subtask,
                    parallelism,
                });
            }
        }
    }
    let subtask = seen.iter().position(|seen| !seen)? as u32;
    Some(Mismatch::MissingState {
        operator: state.id.clone(),
        subtask,
        parallelism,
    })
}

/// Loads a point for restoring into `plan`: metadata verified, compatibility decided, then every
/// state file verified. Nothing is written, and no module has seen any state yet.
pub fn load_for(
    store: &Store,
    dir: &Path,
    plan: &Plan,
    mapping: &Mapping,
) -> Result<(Metadata, crate::store::States), SavepointError> {
    let mut point = store.read_point(dir)?;
    let incompatible = |problems| SavepointError::Incompatible {
        point: dir.display().to_string(),
        problems,
    };
    rename(&mut point.metadata, &mapping.renames).map_err(incompatible)?;
    check_compatibility(&point.metadata, plan, mapping.allow_non_restored).map_err(incompatible)?;
    let states = store.read_states(&point)?;
    Ok((point.metadata, states))
}

#[cfg(test)]
mod tests;
