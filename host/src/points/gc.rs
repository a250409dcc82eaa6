//! `host gc`: removes the modules of the module store ([`crate::store::modules`]) that no point
//! and no running job refers to any more.
//!
//! The decision ([`unreferenced`]) is pure; [`collect`] gathers the facts and carries it out.
//! A module is referenced by every savepoint and retained checkpoint whose `_metadata` names it,
//! and by every job running now (its status lists its modules, written under the start lock
//! before the job can write a point; on an object store, also by every job whose lease says it
//! runs, on whatever machine: the lease lists its modules). `collect` holds the start lock throughout, so no job can
//! put a module and start between the listing and the removal. A point whose `_metadata` cannot
//! be read might name any module: then nothing is removed. A dry run takes no lock and
//! changes nothing.

use std::collections::BTreeSet;

use super::savepoint;
use crate::ids::JobId;
use crate::store::{Store, StoreError};

/// Why modules cannot be collected.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// A point cannot be read: it may name any module.
    #[error(
        "{point} is unreadable ({error}): it may name any module, so none is removed (repair it, \
         or remove it with `host rm`, first)"
    )]
    UnreadablePoint {
        /// The point.
        point: String,
        /// Why.
        error: String,
    },
    /// A running job's status cannot be read: its modules are unknown.
    #[error("job `{job}` runs but its status is unreadable ({error}): none is removed")]
    UnreadableJob {
        /// The job.
        job: JobId,
        /// Why.
        error: StoreError,
    },
    /// The state folder or the object store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a collection removed (or, dry, would remove).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Collected {
    /// The SHA-256 of each module removed, sorted.
    pub removed: Vec<String>,
    /// How many modules stay (referenced).
    pub kept: usize,
}

/// The stored modules that nothing in `referenced` names, sorted. Performs no I/O.
pub fn unreferenced(stored: &[String], referenced: &BTreeSet<String>) -> Vec<String> {
    let mut victims: Vec<String> = stored
        .iter()
        .filter(|sha| !referenced.contains(*sha))
        .cloned()
        .collect();
    victims.sort();
    victims.dedup();
    victims
}

/// Removes every module nothing refers to (with `dry_run`, only says which).
pub fn collect(store: &Store, dry_run: bool) -> Result<Collected, GcError> {
    let _starting = if dry_run {
        None
    } else {
        Some(store.lock_starts()?)
    };
    let referenced = references(store)?;
    let stored = store.module_hashes()?;
    let removed = unreferenced(&stored, &referenced);
    if !dry_run {
        for sha in &removed {
            store.remove_module(sha)?;
        }
    }
    Ok(Collected {
        kept: stored.len() - removed.len(),
        removed,
    })
}

/// Every module a point or a running job names.
fn references(store: &Store) -> Result<BTreeSet<String>, GcError> {
    let mut referenced = BTreeSet::new();
    for listed in savepoint::list(store, None)? {
        let metadata = listed.metadata.map_err(|error| GcError::UnreadablePoint {
            point: store.display(&listed.dir),
            error,
        })?;
        referenced.extend(metadata.operators.into_iter().map(|op| op.module_sha256));
    }
    for job in store.jobs()? {
        if !store.is_running(&job)? {
            continue;
        }
        let status = store
            .read_status(&job)
            .map_err(|error| GcError::UnreadableJob {
                job: job.clone(),
                error,
            })?;
        referenced.extend(status.modules);
    }
    referenced.extend(store.leased_modules()?);
    Ok(referenced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.repeat(64)).collect()
    }

    #[test]
    fn only_what_nothing_names_goes() {
        let stored = hashes(&["c", "a", "b"]);
        let referenced: BTreeSet<String> = hashes(&["b", "d"]).into_iter().collect();
        assert_eq!(unreferenced(&stored, &referenced), hashes(&["a", "c"]));
        let all: BTreeSet<String> = stored.iter().cloned().collect();
        assert!(unreferenced(&stored, &all).is_empty());
        assert!(unreferenced(&[], &referenced).is_empty());
    }

    #[test]
    fn a_dry_run_changes_nothing_and_a_real_one_keeps_what_a_running_job_holds() {
        use crate::ids::sha256_hex;
        use crate::store::{JobState, JobStatus};
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path().join("home")).unwrap();
        let (held, loose) = (b"held".to_vec(), b"loose".to_vec());
        let (held_sha, loose_sha) = (sha256_hex(&held), sha256_hex(&loose));
        store.put_module(&held_sha, &held).unwrap();
        store.put_module(&loose_sha, &loose).unwrap();
        let job = JobId::generate();
        let status = JobStatus {
            job: job.clone(),
            name: "t".to_owned(),
            started_unix_ms: 0,
            resumed_from: None,
            writable_mounts: Vec::new(),
            modules: vec![held_sha.clone()],
            state: JobState::Running { pid: 1 },
        };
        store
            .create_job(&status, "", crate::ids::CheckpointId(1))
            .unwrap();
        let claim = store.claim_job(&job).unwrap();

        let dry = collect(&store, true).unwrap();
        assert_eq!(dry.removed, std::slice::from_ref(&loose_sha));
        assert_eq!(
            store.module_hashes().unwrap().len(),
            2,
            "a dry run removes nothing"
        );
        let done = collect(&store, false).unwrap();
        assert_eq!((done.removed, done.kept), (vec![loose_sha], 1));
        assert_eq!(
            store.module_hashes().unwrap(),
            std::slice::from_ref(&held_sha)
        );

        // Once the job no longer runs (and wrote no point), its module goes too.
        drop(claim);
        assert_eq!(collect(&store, false).unwrap().removed, [held_sha]);
    }
}
