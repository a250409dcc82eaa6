//! Whether a job may start beside the jobs already running in the state folder.
//!
//! Two jobs must never write one folder: each sink's two-phase commit assumes it alone
//! publishes and discards the files of its folder, so a second writer would delete or repeat
//! the first one's output. A job is therefore refused while another running job writes a
//! folder it would write (the same, or one inside the other), and while the job that took the
//! point it resumes from is still running (both would write that job's sinks). `host run`
//! refuses on these conflicts, under the state folder's start lock; `host check` reports them.
//! [`running_jobs`] reads the facts; [`conflicts`] decides without I/O.

use std::path::PathBuf;

use crate::ids::JobId;
use crate::protected;
use crate::store::{Store, StoreError};
use crate::topology::Plan;

/// A job a live process runs now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    /// The job.
    pub job: JobId,
    /// The folders it may write.
    pub writable_mounts: Vec<PathBuf>,
}

/// Why a job may not start now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// The point to resume from belongs to a job that still runs.
    #[error(
        "the point belongs to job `{0}`, which is still running: both jobs would write its \
         sinks' output (stop it first: `host stop --save {0}`, then resume from that savepoint)"
    )]
    PointOfRunningJob(JobId),
    /// A writable mount overlaps one of a running job.
    #[error(
        "the writable mount {} is also written by running job `{job}` ({}): two jobs must not \
         write one folder (stop that job first, or give this one another folder)",
        mine.display(), theirs.display()
    )]
    SharedMount {
        /// This job's folder.
        mine: PathBuf,
        /// The running job.
        job: JobId,
        /// Its folder that overlaps.
        theirs: PathBuf,
    },
}

/// Every conflict of a job resuming from a point of `point_job` (if any) and writing
/// `writable` with the `running` jobs. Performs no I/O.
pub fn conflicts(
    point_job: Option<&JobId>,
    writable: &[PathBuf],
    running: &[Running],
) -> Vec<Conflict> {
    let mut found = Vec::new();
    for other in running {
        if point_job == Some(&other.job) {
            found.push(Conflict::PointOfRunningJob(other.job.clone()));
        }
        for mine in writable {
            for theirs in &other.writable_mounts {
                if mine.starts_with(theirs) || theirs.starts_with(mine) {
                    found.push(Conflict::SharedMount {
                        mine: mine.clone(),
                        job: other.job.clone(),
                        theirs: theirs.clone(),
                    });
                }
            }
        }
    }
    found
}

/// The host folders `plan` may write, canonical (symbolic links and `..` resolved, see
/// [`protected::canonical`]) so that two spellings of one folder compare equal.
pub fn writable_mounts(plan: &Plan) -> Vec<PathBuf> {
    let mut mounts: Vec<PathBuf> = plan
        .operators
        .iter()
        .flat_map(|op| &op.mounts)
        .filter(|mount| mount.writable)
        .map(|mount| protected::canonical(&mount.host))
        .collect();
    mounts.sort();
    mounts.dedup();
    mounts
}

/// Every job of `store` that a live process runs now. Creates and changes nothing.
pub fn running_jobs(store: &Store) -> Result<Vec<Running>, StoreError> {
    let mut running = Vec::new();
    for job in store.jobs()? {
        if !store.is_running(&job)? {
            continue;
        }
        // A job that runs but whose status cannot be read yet (it is starting) writes no
        // folder that the start lock's holder has not already checked.
        let writable_mounts = store
            .read_status(&job)
            .map(|status| status.writable_mounts)
            .unwrap_or_default();
        running.push(Running {
            job,
            writable_mounts,
        });
    }
    Ok(running)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(job: &str, mounts: &[&str]) -> Running {
        Running {
            job: job.parse().unwrap(),
            writable_mounts: mounts.iter().map(PathBuf::from).collect(),
        }
    }

    #[test]
    fn a_job_alone_has_no_conflict() {
        let job: JobId = "job-old".parse().unwrap();
        assert_eq!(conflicts(Some(&job), &["/out".into()], &[]), []);
    }

    #[test]
    fn resuming_a_point_of_a_running_job_is_a_conflict() {
        let others = [running("job-a", &[])];
        let job: JobId = "job-a".parse().unwrap();
        assert_eq!(
            conflicts(Some(&job), &[], &others),
            [Conflict::PointOfRunningJob(job.clone())]
        );
        let other: JobId = "job-b".parse().unwrap();
        assert_eq!(conflicts(Some(&other), &[], &others), []);
    }

    #[test]
    fn overlapping_writable_folders_conflict_and_siblings_do_not() {
        let others = [running("job-a", &["/data/out"])];
        for mine in ["/data/out", "/data/out/part", "/data"] {
            let found = conflicts(None, &[mine.into()], &others);
            assert_eq!(found.len(), 1, "{mine}");
        }
        for mine in ["/data/out2", "/data/in", "/other"] {
            assert_eq!(conflicts(None, &[mine.into()], &others), [], "{mine}");
        }
    }
}
