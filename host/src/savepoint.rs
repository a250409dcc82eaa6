//! Restore points (what `--from` accepts), and whether a point fits a job.
//!
//! Before a barrier's journey ends in a new job: `--from` names a point, [`RestorePoint::parse`]
//! reads the name, [`resolve`] finds its folder, and [`check_compatibility`] decides, from the
//! point's metadata and the new plan alone, whether every state has an operator to go to.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::ids::{CheckpointId, JobId, SavepointId};
use crate::store::{Metadata, Store, StoreError};
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
    /// The point does not fit the new job.
    #[error("savepoint {point} does not fit this job:\n  - {}", .problems.join("\n  - "))]
    Incompatible {
        /// The point.
        point: String,
        /// Every problem found, each naming its operator.
        problems: Vec<String>,
    },
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
        None => store.jobs()?,
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

/// Finds the folder of a restore point.
pub fn resolve(store: &Store, point: &RestorePoint) -> Result<PathBuf, SavepointError> {
    let not_found = || SavepointError::NotFound(point.clone());
    match point {
        RestorePoint::Folder(path) if path.is_dir() => Ok(path.clone()),
        RestorePoint::Folder(_) => Err(not_found()),
        RestorePoint::JobCheckpoint(job, n) => {
            let dir = store.layout().checkpoint(job, *n);
            if dir.is_dir() {
                return Ok(dir);
            }
            latest_of_job(store, job, Some(*n))?.ok_or_else(not_found)
        }
        RestorePoint::Name(name) => {
            if let Ok(id) = name.parse::<SavepointId>() {
                let dir = store.layout().savepoint(&id);
                if dir.is_dir() {
                    return Ok(dir);
                }
            }
            let job: JobId = name.parse().map_err(|_| not_found())?;
            if !store.layout().job(&job).is_dir() {
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
                Some(dir) if dir.is_dir() => Ok(dir),
                _ => Err(SavepointError::NothingRetained(job)),
            }
        }
    }
}

/// The newest readable savepoint or retained checkpoint of `job` (numbered `only`, if given).
fn latest_of_job(
    store: &Store,
    job: &JobId,
    only: Option<CheckpointId>,
) -> Result<Option<PathBuf>, StoreError> {
    let newest = list(store, Some(job))?
        .into_iter()
        .filter_map(|listed| Some((listed.metadata.ok()?.checkpoint, listed.dir)))
        .filter(|(n, _)| only.is_none_or(|only| *n == only))
        .max_by_key(|(n, _)| *n);
    Ok(newest.map(|(_, dir)| dir))
}

/// Decides whether the state in `metadata` can go to the operators of `plan`: every state must
/// have an operator of the same id (unless `allow_non_restored`), with the same parallelism.
/// Operators with no state in the point start empty. Performs no I/O.
pub fn check_compatibility(
    metadata: &Metadata,
    plan: &Plan,
    allow_non_restored: bool,
) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    for state in &metadata.operators {
        match plan.operator(&state.id) {
            None if allow_non_restored => {}
            None => problems.push(format!(
                "operator `{}` has state in the savepoint but is not in the job \
                 (rename it back, or pass --allow-non-restored-state to drop its state)",
                state.id
            )),
            Some(op) if op.parallelism != state.parallelism => problems.push(format!(
                "operator `{}`: the savepoint has parallelism {}, the job {}; \
                 changing parallelism (rescaling) is not supported yet",
                state.id, state.parallelism, op.parallelism
            )),
            Some(_) => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Loads a point for restoring into `plan`: metadata verified, compatibility decided, then every
/// state file verified. Nothing is written, and no module has seen any state yet.
pub fn load_for(
    store: &Store,
    dir: &Path,
    plan: &Plan,
    allow_non_restored: bool,
) -> Result<(Metadata, crate::store::States), SavepointError> {
    let point = store.read_point(dir)?;
    check_compatibility(&point.metadata, plan, allow_non_restored).map_err(|problems| {
        SavepointError::Incompatible {
            point: dir.display().to_string(),
            problems,
        }
    })?;
    let states = store.read_states(&point)?;
    Ok((point.metadata, states))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::barrier::BarrierKind;
    use crate::store::OperatorState;

    #[test]
    fn restore_points_parse_by_shape() {
        assert_eq!(
            RestorePoint::parse("./sp").unwrap(),
            RestorePoint::Folder("./sp".into())
        );
        assert_eq!(
            RestorePoint::parse("/tmp/sp").unwrap(),
            RestorePoint::Folder("/tmp/sp".into())
        );
        assert_eq!(
            RestorePoint::parse("job-abc:7").unwrap(),
            RestorePoint::JobCheckpoint("job-abc".parse().unwrap(), CheckpointId(7))
        );
        assert_eq!(
            RestorePoint::parse("sp-x").unwrap(),
            RestorePoint::Name("sp-x".to_owned())
        );
        assert!(
            RestorePoint::parse("job-abc:seven")
                .unwrap_err()
                .contains("not a checkpoint number")
        );
        assert!(RestorePoint::parse("a b").is_err());
    }

    fn metadata(operators: &[(&str, u32)]) -> Metadata {
        Metadata {
            job: "job-a".parse().unwrap(),
            checkpoint: CheckpointId(1),
            kind: BarrierKind::Savepoint,
            completed_unix_ms: 0,
            job_file: String::new(),
            operators: operators
                .iter()
                .map(|(id, parallelism)| OperatorState {
                    id: id.parse().unwrap(),
                    module_sha256: String::new(),
                    module_name: String::new(),
                    module_version: String::new(),
                    parallelism: *parallelism,
                    files: vec![],
                })
                .collect(),
        }
    }

    fn plan(counter_parallelism: u32) -> Plan {
        let text = format!(
            "[[operators]]\nid = \"src\"\nrole = \"source\"\nmodule = \"s.wasm\"\n\
             [[operators]]\nid = \"counter\"\nrole = \"sink\"\nmodule = \"c.wasm\"\nparallelism = {counter_parallelism}\n\
             [[edges]]\nfrom = \"src\"\nto = \"counter\"\npartition = \"key-by\"\n"
        );
        Plan::from_toml(&text, Path::new("/")).unwrap()
    }

    #[test]
    fn compatibility_refuses_state_without_an_operator_unless_allowed() {
        let point = metadata(&[("src", 1), ("counter", 2), ("gone", 1)]);
        let problems = check_compatibility(&point, &plan(2), false).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("`gone`") && problems[0].contains("--allow-non-restored-state")
        );
        assert!(check_compatibility(&point, &plan(2), true).is_ok());
    }

    #[test]
    fn compatibility_refuses_a_changed_parallelism_with_the_reason() {
        let problems =
            check_compatibility(&metadata(&[("counter", 2)]), &plan(3), false).unwrap_err();
        assert!(
            problems[0].contains("parallelism 2, the job 3") && problems[0].contains("rescaling")
        );
    }

    #[test]
    fn compatibility_lets_new_operators_start_empty() {
        assert!(check_compatibility(&metadata(&[("src", 1)]), &plan(2), false).is_ok());
    }
}
