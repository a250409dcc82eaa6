//! A worker's lease: how long the subtasks it runs may still act on the outside world without
//! word from their coordinator (`host/src/cluster/`).
//!
//! A worker that stops answering (a partition, a stopped process) is taken for lost by its
//! coordinator once it said nothing for the coordinator's timeout; the job then restarts,
//! under a new generation, on the workers left. The lost worker may come back and go on:
//! its subtasks would then write state files, sink output and commits for a generation that
//! was replaced. The lease fences them off: the worker renews it with each heartbeat its
//! coordinator answers, as of when it *sent* that heartbeat, for a term shorter than the
//! coordinator's timeout. The coordinator, for its part, counts its timeout from when it
//! *received* the worker's last word, which is later; so by the time it takes the worker for
//! lost (and long before it deploys a successor), the worker's lease has ended: each
//! subtask checks it ([`Lease::check`]) before every act on the outside world (a sink's
//! `recover`, `write`, `prepare-commit` and `commit`, a snapshot, a state file's write), and
//! fails with [`LeaseExpired`] instead. The worker, on its side, ends at once when it finds
//! its lease ended.
//!
//! What a lease cannot fence: an act already past its check when the process stopped (a write
//! under way) completes when it resumes. Such a write is of the old generation only: a state
//! file of a checkpoint that was aborted (never published), or a sink's file of a transaction
//! that its successor's `recover` discards.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A lease of a fixed term, renewed as of given instants; cheap to clone (clones share it).
#[derive(Clone, Debug)]
pub struct Lease {
    until: Arc<Mutex<Instant>>,
    term: Duration,
}

/// The lease ended: the coordinator may have taken the worker for lost and deployed another
/// generation in its place.
#[derive(Clone, Debug, thiserror::Error)]
#[error(
    "fenced: no word from the coordinator within the lease's {term_ms} ms (it ended {ago_ms} ms \
     ago); another generation may run in this one's place"
)]
pub struct LeaseExpired {
    /// The lease's term.
    pub term_ms: u64,
    /// How long ago it ended.
    pub ago_ms: u64,
}

impl Lease {
    /// A lease of `term`, granted as of `since`.
    pub fn new(since: Instant, term: Duration) -> Lease {
        Lease {
            until: Arc::new(Mutex::new(since + term)),
            term,
        }
    }

    /// Renews the lease as of `since` (never shortening it).
    pub fn renew(&self, since: Instant) {
        let mut until = self.until.lock().expect("not poisoned");
        *until = (*until).max(since + self.term);
    }

    /// When it ends, unless renewed.
    pub fn until(&self) -> Instant {
        *self.until.lock().expect("not poisoned")
    }

    /// `Ok` while the lease holds; why not once it ended.
    pub fn check(&self) -> Result<(), LeaseExpired> {
        let until = self.until();
        let now = Instant::now();
        if now < until {
            return Ok(());
        }
        Err(LeaseExpired {
            term_ms: self.term.as_millis() as u64,
            ago_ms: now.duration_since(until).as_millis() as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_holds_for_its_term_from_its_latest_renewal_and_never_shrinks() {
        let term = Duration::from_secs(60);
        let long_ago = Instant::now() - Duration::from_secs(120);
        let lease = Lease::new(long_ago, term);
        let expired = lease.check().unwrap_err();
        assert_eq!(expired.term_ms, 60_000);
        assert!(expired.ago_ms >= 59_000, "{expired}");
        lease.renew(Instant::now());
        assert!(lease.check().is_ok());
        let until = lease.until();
        lease.renew(long_ago);
        assert_eq!(lease.until(), until, "a late renewal shortened the lease");
        let clone = lease.clone();
        clone.renew(Instant::now() + term);
        assert!(lease.until() > until, "clones share the lease");
    }
}
