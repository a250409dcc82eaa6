//! At most one save or stop per job at a time: a second request for a job while one is in
//! flight is refused (409), not queued, so that no number of requests piles up work on a job.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use crate::ids::JobId;

/// The jobs with a save or stop in flight.
#[derive(Clone, Default)]
pub struct InFlight(Arc<Mutex<HashSet<JobId>>>);

/// A job's one slot, taken until this is dropped.
pub struct Claim {
    jobs: InFlight,
    job: JobId,
}

impl InFlight {
    /// Takes `job`'s slot; `None` while another request holds it.
    pub fn claim(&self, job: &JobId) -> Option<Claim> {
        let mut jobs = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.insert(job.clone()).then(|| Claim {
            jobs: self.clone(),
            job: job.clone(),
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut jobs = self.jobs.0.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.remove(&self.job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_claim_per_job_until_it_is_dropped() {
        let in_flight = InFlight::default();
        let (a, b): (JobId, JobId) = ("job-a".parse().unwrap(), "job-b".parse().unwrap());
        let claim = in_flight.claim(&a).expect("free");
        assert!(in_flight.claim(&a).is_none(), "a second request for job-a");
        let other = in_flight.claim(&b).expect("job-b is independent");
        drop(claim);
        assert!(in_flight.claim(&a).is_some(), "free again once dropped");
        drop(other);
    }
}
