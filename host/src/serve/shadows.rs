//! Shadow runs from the dashboard: `POST /api/jobs/{id}/shadow` runs `host shadow` from the
//! job's latest point (or the one named) with the two job files named, and the server keeps the
//! latest result of each job in memory, for `GET /api/jobs/{id}/shadow` and the dashboard.
//!
//! The run is the command line's own ([`ShadowRunner`], which `host serve` is given): it
//! changes nothing, as `host shadow` does ([`crate::shadow`]). Nothing of it is written: a
//! result lives as long as the server. One shadow run per job at a time; a second is refused
//! (409), not queued.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::ids::JobId;
use crate::shadow::Report;
use crate::store::Store;

/// A shadow run as the API asks for it (the body of `POST /api/jobs/{id}/shadow`): the fields
/// of `host shadow`. Paths are the server's.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowRequest {
    /// The point both start from; the job's latest when absent.
    #[serde(default)]
    pub from: Option<String>,
    /// The job file of the job running now.
    pub old: PathBuf,
    /// The job file of the job to try.
    pub new: PathBuf,
    /// Records per source subtask, at most.
    #[serde(default)]
    pub records: Option<u64>,
    /// Milliseconds the old job's sources read, at most.
    #[serde(default)]
    pub for_ms: Option<u64>,
}

impl ShadowRequest {
    /// How long the sources read, at most.
    pub fn duration(&self) -> Option<Duration> {
        self.for_ms.map(Duration::from_millis)
    }
}

/// Why a shadow run could not compare the jobs, as the command line words it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ShadowFailed(pub String);

/// Runs one shadow run as `host shadow` does, blocking: what the command line gives the server.
pub type ShadowRunner =
    Arc<dyn Fn(&Store, &ShadowRequest) -> Result<Report, ShadowFailed> + Send + Sync>;

/// A job's latest shadow run.
#[derive(Clone, Debug, Serialize)]
pub struct ShadowResult {
    /// What was asked.
    pub request: ShadowRequest,
    /// The point both started from.
    pub from: String,
    /// When it started.
    pub started_unix_ms: u64,
    /// How long it took, once it ended.
    pub took_ms: Option<u64>,
    /// `running`, `agrees`, `differs` or `failed`.
    pub outcome: &'static str,
    /// What it found, once it ended (the JSON of `host shadow --json`).
    pub report: Option<Value>,
    /// Why it failed.
    pub error: Option<String>,
}

/// Every job's latest shadow run, and the runner.
#[derive(Clone)]
pub struct Shadows {
    runner: ShadowRunner,
    latest: Arc<Mutex<HashMap<JobId, ShadowResult>>>,
}

impl Shadows {
    /// No shadow run yet; `runner` runs them.
    pub fn new(runner: ShadowRunner) -> Self {
        Shadows {
            runner,
            latest: Arc::default(),
        }
    }

    /// The latest shadow run of `job`, ended or not.
    pub fn latest(&self, job: &JobId) -> Option<ShadowResult> {
        self.table().get(job).cloned()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, ShadowResult>> {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a shadow run of `job` as running; `None` while one already runs.
    pub fn begin(&self, job: &JobId, request: ShadowRequest) -> Option<ShadowResult> {
        let mut table = self.table();
        if table.get(job).is_some_and(|r| r.took_ms.is_none()) {
            return None;
        }
        let result = ShadowResult {
            from: request.from.clone().unwrap_or_else(|| job.to_string()),
            request,
            started_unix_ms: unix_ms(),
            took_ms: None,
            outcome: "running",
            report: None,
            error: None,
        };
        table.insert(job.clone(), result.clone());
        Some(result)
    }

    /// Runs the shadow run `begin` recorded, blocking; records and returns how it ended.
    pub fn run(&self, store: &Store, job: &JobId, mut result: ShadowResult) -> ShadowResult {
        let started = Instant::now();
        let mut request = result.request.clone();
        request.from = Some(result.from.clone());
        match (self.runner)(store, &request) {
            Ok(report) => {
                result.outcome = if report.agrees() { "agrees" } else { "differs" };
                result.report = Some(serde_json::to_value(&report).expect("reports serialize"));
            }
            Err(failed) => {
                result.outcome = "failed";
                result.error = Some(failed.0);
            }
        }
        result.took_ms = Some(started.elapsed().as_millis() as u64);
        self.table().insert(job.clone(), result.clone());
        result
    }
}

fn unix_ms() -> u64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    now.map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ShadowRequest {
        ShadowRequest {
            from: None,
            old: "old.toml".into(),
            new: "new.toml".into(),
            records: Some(10),
            for_ms: None,
        }
    }

    #[test]
    fn one_shadow_run_per_job_at_a_time_and_its_failure_is_kept() {
        let runner: ShadowRunner = Arc::new(|_, request| {
            assert_eq!(
                request.from.as_deref(),
                Some("job-a"),
                "the job's latest point"
            );
            Err(ShadowFailed("no such module".to_owned()))
        });
        let shadows = Shadows::new(runner);
        let job: JobId = "job-a".parse().unwrap();
        let begun = shadows.begin(&job, request()).expect("none runs");
        assert!(
            shadows.begin(&job, request()).is_none(),
            "a second while it runs"
        );
        assert_eq!(shadows.latest(&job).unwrap().outcome, "running");
        let store = Store::open(tempfile::tempdir().unwrap().path().join("home")).unwrap();
        let ended = shadows.run(&store, &job, begun);
        assert_eq!(
            (ended.outcome, ended.error.as_deref()),
            ("failed", Some("no such module"))
        );
        assert!(ended.took_ms.is_some());
        assert_eq!(shadows.latest(&job).unwrap().outcome, "failed");
        assert!(
            shadows.begin(&job, request()).is_some(),
            "free once it ended"
        );
    }
}
