//! Every path in the state folder, built in one place.
//!
//! ```text
//! <root>/start.lock                          (held while a job starts)
//! <root>/serve-token                         (`host serve`'s token, owner-only)
//! <root>/jobs/<job-id>/job.toml, status, control.sock, lock
//! <root>/jobs/<job-id>/checkpoints/<n>/{_metadata, <operator-id>-<subtask>.state}
//! <root>/jobs/<job-id>/checkpoints/.in-progress-<n>/   (a checkpoint being written)
//! <root>/savepoints/<savepoint-id>/{_metadata, <operator-id>-<subtask>.state}
//! <root>/cache/<sha256>-<engine>.cwasm, <sha256>-<engine>.cwasm.hmac
//! <root>/cache.key                           (the key of the cache's records, owner-only)
//! ```
//! No other module formats a path inside the state folder, but for the names of the files in
//! `cache/`: the engine, which knows nothing of the store (it is handed the folder), names
//! each compiled module by the module's content hash and its own compatibility hash.
//!
//! With the points on an object store (`--store s3://bucket/prefix`), the same paths relative
//! to the state folder are the keys under the prefix ([`Layout::relative`]), for the points and
//! the jobs' leases only:
//!
//! ```text
//! <prefix>/jobs/<job-id>/lease                                  (the generation fence)
//! <prefix>/jobs/<job-id>/checkpoints/<n>/{<operator-id>-<subtask>.state, …, _metadata}
//! <prefix>/savepoints/<savepoint-id>/{_metadata, <operator-id>-<subtask>.state}
//! ```
//! There, a checkpoint's state objects go straight under `checkpoints/<n>/` (no in-progress
//! name): the point exists once its `_metadata`, written last, does.

use std::path::{Path, PathBuf};

use crate::ids::{CheckpointId, JobId, SavepointId};

/// Name of the metadata file inside a checkpoint or savepoint folder.
pub const METADATA_FILE: &str = "_metadata";
const IN_PROGRESS_PREFIX: &str = ".in-progress-";

/// File name of a module in a module store (the state folder's, or an exported point's).
pub fn module_file_name(sha256: &str) -> String {
    format!("{sha256}.wasm")
}

/// The SHA-256 a module store's file name names, if it is one (64 lower-case hex digits, then
/// `.wasm`).
pub fn parse_module_file_name(name: &str) -> Option<&str> {
    let sha = name.strip_suffix(".wasm")?;
    let hex = |c: char| c.is_ascii_digit() || ('a'..='f').contains(&c);
    (sha.len() == 64 && sha.chars().all(hex)).then_some(sha)
}

/// The paths of one state folder.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout of the state folder at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The state folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Folder holding one folder per job.
    pub fn jobs(&self) -> PathBuf {
        self.root.join("jobs")
    }

    /// One job's folder.
    pub fn job(&self, job: &JobId) -> PathBuf {
        self.jobs().join(job.as_str())
    }

    /// The job file a job was started with.
    pub fn job_file(&self, job: &JobId) -> PathBuf {
        self.job(job).join("job.toml")
    }

    /// The job's status file.
    pub fn job_status(&self, job: &JobId) -> PathBuf {
        self.job(job).join("status")
    }

    /// The lock a running job's process holds.
    pub fn job_lock(&self, job: &JobId) -> PathBuf {
        self.job(job).join("lock")
    }

    /// The lock held while a job starts.
    pub fn start_lock(&self) -> PathBuf {
        self.root.join("start.lock")
    }

    /// The token `host serve` generates on its first start and reuses (owner-only, 0600).
    pub fn serve_token(&self) -> PathBuf {
        self.root.join("serve-token")
    }

    /// The output of a job started with `host run --detach` (its id, then its log).
    pub fn job_log(&self, job: &JobId) -> PathBuf {
        self.job(job).join("log")
    }

    /// The Unix socket a running job listens on for control requests.
    pub fn control_socket(&self, job: &JobId) -> PathBuf {
        self.job(job).join("control.sock")
    }

    /// A job's lease on an object store (see [`super::fence`]).
    pub fn lease(&self, job: &JobId) -> PathBuf {
        self.job(job).join("lease")
    }

    /// A location under the state folder, relative to it (`None` if it is not under it, or
    /// climbs out with `..`). `location` may also be the absolute form of a relative root.
    pub fn relative(&self, location: &Path) -> Option<PathBuf> {
        let relative = match location.strip_prefix(&self.root) {
            Ok(relative) => relative.to_owned(),
            Err(_) => {
                let root = std::path::absolute(&self.root).ok()?;
                let location = std::path::absolute(location).ok()?;
                location.strip_prefix(root).ok()?.to_owned()
            }
        };
        let plain = relative
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        plain.then_some(relative)
    }

    /// Folder of a job's retained checkpoints.
    pub fn checkpoints(&self, job: &JobId) -> PathBuf {
        self.job(job).join("checkpoints")
    }

    /// A completed checkpoint's folder.
    pub fn checkpoint(&self, job: &JobId, checkpoint: CheckpointId) -> PathBuf {
        self.checkpoints(job).join(checkpoint.0.to_string())
    }

    /// Where the state of a checkpoint (or savepoint) in progress is written.
    pub fn in_progress(&self, job: &JobId, checkpoint: CheckpointId) -> PathBuf {
        self.checkpoints(job)
            .join(format!("{IN_PROGRESS_PREFIX}{}", checkpoint.0))
    }

    /// The checkpoint number of a folder name inside `checkpoints/`, if it is a completed one.
    pub fn parse_checkpoint_name(name: &str) -> Option<CheckpointId> {
        let digits = name.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty();
        digits
            .then(|| name.parse().ok().map(CheckpointId))
            .flatten()
    }

    /// Whether a folder name inside `checkpoints/` is that of a checkpoint in progress.
    pub fn is_in_progress_name(name: &str) -> bool {
        name.strip_prefix(IN_PROGRESS_PREFIX)
            .is_some_and(|n| Self::parse_checkpoint_name(n).is_some())
    }

    /// Folder holding every savepoint.
    pub fn savepoints(&self) -> PathBuf {
        self.root.join("savepoints")
    }

    /// One savepoint's folder.
    pub fn savepoint(&self, id: &SavepointId) -> PathBuf {
        self.savepoints().join(id.as_str())
    }

    /// The module store: every module a job ran, by content.
    pub fn modules(&self) -> PathBuf {
        self.root.join("modules")
    }

    /// One module in the module store, named by the SHA-256 of its bytes (lower-case hex).
    pub fn module(&self, sha256: &str) -> PathBuf {
        self.modules().join(module_file_name(sha256))
    }

    /// The compiled-module cache.
    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    /// The secret that the records of the compiled-module cache are keyed with: outside the
    /// cache folder, so that reading the cache does not give it away.
    pub fn cache_key(&self) -> PathBuf {
        self.root.join("cache.key")
    }

    /// File name of one subtask's state blob inside a point folder.
    pub fn state_file_name(operator: &str, subtask: u32) -> String {
        format!("{operator}-{subtask}.state")
    }

    /// File name of the segment that checkpoint `checkpoint` of `job` writes for one subtask
    /// (the pieces of its keyed state new since its previous checkpoint). Later points of the
    /// job hard-link it under the same name, beside the segments they write: names are unique
    /// per job, checkpoint and subtask, so they never collide.
    pub fn segment_file_name(
        job: &JobId,
        checkpoint: CheckpointId,
        operator: &str,
        subtask: u32,
    ) -> String {
        format!("{operator}-{subtask}.{job}-{}.seg", checkpoint.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_digit_names_are_completed_checkpoints() {
        assert_eq!(Layout::parse_checkpoint_name("12"), Some(CheckpointId(12)));
        assert_eq!(Layout::parse_checkpoint_name(".in-progress-12"), None);
        assert_eq!(Layout::parse_checkpoint_name("+1"), None);
        assert_eq!(Layout::parse_checkpoint_name(""), None);
        assert!(Layout::is_in_progress_name(".in-progress-12"));
        assert!(!Layout::is_in_progress_name(".in-progress-"));
        assert!(!Layout::is_in_progress_name("12"));
    }

    #[test]
    fn locations_under_the_state_folder_map_to_relative_keys() {
        let layout = Layout::new(".host");
        let job: JobId = "job-a".parse().unwrap();
        let rel = |p: &Path| layout.relative(p).map(|r| r.to_string_lossy().into_owned());
        assert_eq!(
            rel(&layout.checkpoint(&job, CheckpointId(3))).as_deref(),
            Some("jobs/job-a/checkpoints/3")
        );
        assert_eq!(
            rel(&layout.lease(&job)).as_deref(),
            Some("jobs/job-a/lease")
        );
        let savepoint = std::path::absolute(layout.savepoint(&"sp-x".parse().unwrap())).unwrap();
        assert_eq!(rel(&savepoint).as_deref(), Some("savepoints/sp-x"));
        assert_eq!(rel(Path::new("/elsewhere/savepoints/sp-x")), None);
        assert_eq!(rel(Path::new(".host/jobs/../../etc")), None);
    }
}
