//! Which jobs are running, known from locks the kernel keeps.
//!
//! A running job holds an exclusive lock (`flock`) on `jobs/<id>/lock` for as long as its
//! process lives; the kernel drops it when the process ends, even by `kill -9`, so a crashed
//! job never looks alive and a live one never looks crashed. Starting a job holds
//! `<root>/start.lock` while it checks the running jobs and claims its own lock, so that two
//! jobs starting at once cannot both decide that a folder is theirs to write. Asking whether a
//! job runs creates and changes nothing: a dry run may ask.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::time::{Duration, Instant};

use super::{Store, StoreError, io_error};
use crate::ids::JobId;

/// How often [`Store::wait_released`] looks again.
const RELEASE_POLL: Duration = Duration::from_millis(5);

/// Held while a job starts: no other job can start in this state folder meanwhile.
#[must_use = "the lock is released when this is dropped"]
pub struct StartLock {
    _file: File,
}

/// Held by the process running a job, for as long as the job runs.
#[must_use = "the job counts as running only while this is held"]
pub struct JobLock {
    _file: File,
}

impl Store {
    /// Waits until no other job is starting in this state folder, and keeps others waiting
    /// until the result is dropped.
    pub fn lock_starts(&self) -> Result<StartLock, StoreError> {
        let path = self.layout.start_lock();
        let file = open_lock_file(&path)?;
        file.lock().map_err(io_error(&path))?;
        Ok(StartLock { _file: file })
    }

    /// Claims `job` (whose folder [`Store::create_job`] made) as running in this process.
    pub fn claim_job(&self, job: &JobId) -> Result<JobLock, StoreError> {
        let path = self.layout.job_lock(job);
        let file = open_lock_file(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(JobLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(StoreError::Io {
                path,
                source: io::Error::new(io::ErrorKind::WouldBlock, "another process runs this job"),
            }),
            Err(TryLockError::Error(e)) => Err(io_error(&path)(e)),
        }
    }

    /// Whether a live process runs `job` now. Creates and changes nothing.
    pub fn is_running(&self, job: &JobId) -> Result<bool, StoreError> {
        let path = self.layout.job_lock(job);
        let file = match File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            other => other.map_err(io_error(&path))?,
        };
        // A shared lock is refused only while an exclusive one is held, by a live process;
        // it is released when `file` closes, here.
        match file.try_lock_shared() {
            Ok(()) => Ok(false),
            Err(TryLockError::WouldBlock) => Ok(true),
            Err(TryLockError::Error(e)) => Err(io_error(&path)(e)),
        }
    }

    /// Waits until no process runs `job` (its process let go of it, or ended) or `max` has
    /// passed; returns whether it was let go. Creates and changes nothing.
    pub fn wait_released(&self, job: &JobId, max: Duration) -> Result<bool, StoreError> {
        let deadline = Instant::now() + max;
        while self.is_running(job)? {
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(RELEASE_POLL);
        }
        Ok(true)
    }

    /// Removes the checkpoints in progress that a job which no longer runs left behind (a
    /// crash mid-checkpoint): nothing can complete them. Call with the [`StartLock`] held, so
    /// that no job starts meanwhile. Returns the folders removed.
    pub fn sweep_abandoned(
        &self,
        _starting: &StartLock,
    ) -> Result<Vec<std::path::PathBuf>, StoreError> {
        let mut removed = Vec::new();
        for job in self.jobs()? {
            if self.is_running(&job)? {
                continue;
            }
            let checkpoints = self.layout.checkpoints(&job);
            for name in super::local::list_names(&checkpoints)? {
                if super::Layout::is_in_progress_name(&name) {
                    let dir = checkpoints.join(name);
                    fs::remove_dir_all(&dir).map_err(io_error(&dir))?;
                    removed.push(dir);
                }
            }
        }
        Ok(removed)
    }
}

/// Opens (creating it if need be) the file whose lock a [`StartLock`] or [`JobLock`] holds.
fn open_lock_file(path: &std::path::Path) -> Result<std::fs::File, StoreError> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::CheckpointId;
    use crate::store::tests::status_of as status;

    #[test]
    fn a_job_runs_exactly_while_its_lock_is_held() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let job = JobId::generate();
        assert!(!store.is_running(&job).unwrap(), "a job never started");
        store
            .create_job(&status(&job), "", CheckpointId(1))
            .unwrap();
        assert!(!store.is_running(&job).unwrap(), "created, not claimed");
        let lock = store.claim_job(&job).unwrap();
        assert!(store.is_running(&job).unwrap());
        assert!(store.claim_job(&job).is_err(), "claimed twice");
        let waited = store
            .wait_released(&job, Duration::from_millis(50))
            .unwrap();
        assert!(!waited, "still held");
        drop(lock);
        assert!(!store.is_running(&job).unwrap());
        assert!(store.wait_released(&job, Duration::ZERO).unwrap());
    }

    #[test]
    fn only_abandoned_checkpoints_in_progress_are_swept() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let (crashed, running) = (JobId::generate(), JobId::generate());
        for job in [&crashed, &running] {
            store.create_job(&status(job), "", CheckpointId(1)).unwrap();
            fs::create_dir_all(store.layout().in_progress(job, CheckpointId(7))).unwrap();
            fs::create_dir_all(store.layout().checkpoint(job, CheckpointId(6))).unwrap();
        }
        let _running = store.claim_job(&running).unwrap();
        let removed = store
            .sweep_abandoned(&store.lock_starts().unwrap())
            .unwrap();
        assert_eq!(
            removed,
            [store.layout().in_progress(&crashed, CheckpointId(7))]
        );
        assert!(
            !store
                .layout()
                .in_progress(&crashed, CheckpointId(7))
                .exists()
        );
        assert!(
            store
                .layout()
                .in_progress(&running, CheckpointId(7))
                .exists()
        );
        assert!(
            store
                .layout()
                .checkpoint(&crashed, CheckpointId(6))
                .exists()
        );
    }
}
