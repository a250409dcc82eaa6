//! The generation fence: which process may still publish a job's points on an object store.
//!
//! On a local state folder, a kernel lock says which process runs a job ([`super::lock`]). An
//! object store shared by several machines has no such lock, so each job has a lease object,
//! `jobs/<job-id>/lease`, holding a generation number:
//!
//! 1. The process that starts job J creates J's lease with generation 1 (a create-only put:
//!    `If-None-Match: *`), and holds generation 1.
//! 2. A process that resumes from any point of J on the store (`run --from J`, `J:N`, or a
//!    savepoint of J) first *takes J over*: it reads the lease and writes generation + 1 with a
//!    conditional put on the e-tag it read (`If-Match`), retrying on a lost race. It does this
//!    before it chooses which point of J to resume from.
//! 3. A process publishes point N of J (writes its `_metadata`) only if the lease still holds
//!    the generation it holds, read right **before** the `_metadata` put; and it lets its sinks
//!    commit N only if the lease still holds it when read again right **after** that put.
//!
//! What this guarantees: once a successor has taken J over (step 2), J's old process can neither
//! publish a point that the successor did not see when it chose its point, nor commit one. A
//! point published after the takeover got past its first check before the takeover; its second
//! check fails, so it is never committed by the old process (the successor, if it resumes from
//! it, recovers it itself). A point committed by the old process passed its second check before
//! the takeover, so it was published before the successor listed the points: resuming from the
//! job's latest point never rewinds past committed output. The old process fails with
//! [`super::StoreError::Fenced`] at its next publish.
//!
//! A successor removes the states of the old process's unpublished points, but first writes
//! each one's `_metadata` itself, empty and create-only: the old process's put of that
//! `_metadata`, if it was past its first check, then fails, so that no interleaving publishes a
//! point whose states are gone (and if the old put came first, the point is whole and stays).
//!
//! A successor numbers its checkpoints from the start of the next *epoch* of
//! [`CHECKPOINT_EPOCH`] numbers after the point it resumes from ([`first_checkpoint`]), while
//! the old process, until its next publish fences it, counts on within the epoch of that point:
//! the two never name a checkpoint, and so never a sink's file or transaction, alike.
//!
//! A job's lease starts at the generation of the epoch its checkpoints are numbered in
//! ([`generation_of`]: epoch 0, generation 1), and each point records the generation its
//! writer held (`_metadata` format 5). Anyone who can write the shared prefix can put a
//! `_metadata` there, so resolving a job's id (`--from JOB`) takes only a point that the
//! job's own process could have written ([`admits`]): one whose generation the lease has
//! reached and whose number lies in that generation's epoch; any other is passed over, with a
//! warning naming it, and left where it is.
//!
//! This module decides from facts already read; it performs no I/O.

use serde::{Deserialize, Serialize};

use crate::ids::CheckpointId;

/// How many checkpoint numbers one owner of a job's lineage has before a successor's begin: a
/// process checkpointing every 100 ms would need 3 000 years to run out.
pub const CHECKPOINT_EPOCH: u64 = 1_000_000_000_000;

/// The first checkpoint of a job resumed from checkpoint `resumed` (`None`: started afresh).
/// One that takes the point's job over (`taking_over`, on an object store) starts the next
/// epoch; otherwise it goes on from `resumed + 1`. Performs no I/O.
pub fn first_checkpoint(resumed: Option<CheckpointId>, taking_over: bool) -> CheckpointId {
    match resumed {
        None => CheckpointId(1),
        Some(resumed) if taking_over => {
            CheckpointId((resumed.0 / CHECKPOINT_EPOCH + 1) * CHECKPOINT_EPOCH + 1)
        }
        Some(resumed) => resumed.next(),
    }
}

/// The epoch checkpoint number `checkpoint` lies in: epoch `k` holds `k * E + 1` to
/// `(k + 1) * E`, for `E` = [`CHECKPOINT_EPOCH`]. Performs no I/O.
pub fn epoch_of(checkpoint: CheckpointId) -> u64 {
    checkpoint.0.saturating_sub(1) / CHECKPOINT_EPOCH
}

/// The generation the lease of a job whose first checkpoint is `first` starts at: one past its
/// epoch, so that the generation a point records names the epoch its number lies in. A job
/// started afresh holds generation 1; one resuming a job it took over, numbered from the next
/// epoch on ([`first_checkpoint`]), the generation after. Performs no I/O.
pub fn generation_of(first: CheckpointId) -> u64 {
    epoch_of(first) + 1
}

/// Why a point of a job is passed over when the job's id is resolved: its job's own process
/// could not have written it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unfit {
    /// Its `_metadata` names another number than the one it is listed under.
    #[error("its `_metadata` says checkpoint {recorded}, but it is listed as checkpoint {listed}")]
    Renumbered {
        /// The number it is listed under.
        listed: CheckpointId,
        /// The number its `_metadata` says.
        recorded: CheckpointId,
    },
    /// Written under a generation the job's lease has not reached.
    #[error(
        "it says it was written under generation {generation} of the job's lease, which is at \
         {current}"
    )]
    Ahead {
        /// The generation it records (or, recording none, that of its number's epoch).
        generation: u64,
        /// The lease's generation now.
        current: u64,
    },
    /// Numbered outside the epoch of the generation it records.
    #[error(
        "it is numbered {checkpoint}, outside the checkpoints of generation {generation} ({} to {})",
        (generation.saturating_sub(1)) * CHECKPOINT_EPOCH + 1,
        generation * CHECKPOINT_EPOCH
    )]
    OutsideEpoch {
        /// Its number.
        checkpoint: CheckpointId,
        /// The generation it records.
        generation: u64,
    },
}

/// Whether the point listed as checkpoint `listed` of a job, whose `_metadata` records number
/// `recorded` and `generation` (`None`: format 4 or older, or written with no lease), may stand
/// for the job when its id is resolved, the job's lease being `lease` (`None`: it has none: a
/// local state folder, whose writers its owner trusts, and nothing is refused). Under a lease,
/// it must be listed under its own number, and only a generation the lease has reached may
/// have written it, within that generation's epoch; a point recording no generation is taken
/// to be of its number's epoch. Performs no I/O.
pub fn admits(
    lease: Option<&Lease>,
    listed: CheckpointId,
    recorded: CheckpointId,
    generation: Option<u64>,
) -> Result<(), Unfit> {
    let Some(lease) = lease else {
        return Ok(());
    };
    if listed != recorded {
        return Err(Unfit::Renumbered { listed, recorded });
    }
    let of_epoch = epoch_of(recorded) + 1;
    let generation = generation.unwrap_or(of_epoch);
    if generation > lease.generation {
        let current = lease.generation;
        return Err(Unfit::Ahead {
            generation,
            current,
        });
    }
    if generation != of_epoch {
        let checkpoint = recorded;
        return Err(Unfit::OutsideEpoch {
            checkpoint,
            generation,
        });
    }
    Ok(())
}

/// The contents of a lease object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Raised by one at each takeover.
    pub generation: u64,
    /// Who holds it, for error messages (`job-… (pid …)`).
    pub holder: String,
    /// Whether the job's process may still be running, wherever it runs: set when it starts,
    /// cleared when it ends or is taken over. A process that crashed leaves it set; a lease
    /// written before the field existed reads as set (what is kept for a running job is then
    /// kept, never lost).
    #[serde(default = "running_unless_told")]
    pub running: bool,
    /// The modules the job runs (SHA-256), which `host gc` keeps while it runs, wherever.
    #[serde(default)]
    pub modules: Vec<String>,
}

fn running_unless_told() -> bool {
    true
}

/// Whether a process other than this one (which holds generation `held` of the job, 0 for
/// none) may run the job, as `now` says. Performs no I/O.
pub fn runs_elsewhere(held: u64, now: &Lease) -> bool {
    now.running && now.generation != held
}

/// Whether a process holding generation `held` may publish, given the lease as read now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fence {
    /// The lease still holds our generation: go on.
    Current,
    /// Another process took the job over: refuse to publish or commit.
    Superseded {
        /// The generation this process holds.
        held: u64,
        /// The generation the lease holds now (`None`: the lease is gone).
        current: Option<u64>,
        /// Who holds it now, if known.
        holder: Option<String>,
    },
}

/// Decides whether a process holding generation `held` may publish, given the lease read now
/// (`None` if it no longer exists). Only the very generation held passes: a lease that is gone
/// or that holds any other generation means the job is no longer ours. Performs no I/O.
pub fn decide(held: u64, now: Option<&Lease>) -> Fence {
    match now {
        Some(lease) if lease.generation == held => Fence::Current,
        _ => Fence::Superseded {
            held,
            current: now.map(|l| l.generation),
            holder: now.map(|l| l.holder.clone()),
        },
    }
}

/// The lease a takeover writes over `now` (`None`: the job has no lease yet). Performs no I/O.
pub fn taken_over(now: Option<&Lease>, holder: String) -> Lease {
    Lease {
        generation: now.map_or(0, |l| l.generation) + 1,
        holder,
        // Its process, wherever it is, can no longer publish: the job runs on as another.
        running: false,
        modules: Vec::new(),
    }
}

/// The bytes of a lease object.
pub fn encode(lease: &Lease) -> Vec<u8> {
    serde_json::to_vec(lease).expect("a lease serializes")
}

/// Reads a lease object.
pub fn decode(bytes: &[u8]) -> Result<Lease, serde_json::Error> {
    serde_json::from_slice(bytes)
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(generation: u64) -> Lease {
        Lease {
            generation,
            holder: format!("holder {generation}"),
            running: true,
            modules: vec!["a".repeat(64)],
        }
    }

    #[test]
    fn a_job_runs_elsewhere_while_its_lease_says_it_runs_and_is_not_ours() {
        let mut now = lease(2);
        assert!(runs_elsewhere(0, &now));
        assert!(!runs_elsewhere(2, &now), "ours");
        now.running = false;
        assert!(!runs_elsewhere(0, &now), "ended");
        // A lease from before the field: running, with no modules known.
        let old = decode(br#"{"generation":1,"holder":"h"}"#).unwrap();
        assert!(old.running && old.modules.is_empty());
        let taken = taken_over(Some(&lease(2)), "b".to_owned());
        assert!(
            !runs_elsewhere(0, &taken),
            "taken over: its process can publish no more"
        );
    }

    #[test]
    fn only_the_generation_held_may_publish() {
        assert_eq!(decide(1, Some(&lease(1))), Fence::Current);
        assert_eq!(
            decide(1, Some(&lease(2))),
            Fence::Superseded {
                held: 1,
                current: Some(2),
                holder: Some("holder 2".to_owned())
            }
        );
        // A lower generation is not ours either (a lease rewritten by hand, or restored).
        assert!(matches!(
            decide(3, Some(&lease(2))),
            Fence::Superseded { .. }
        ));
        assert!(matches!(
            decide(1, None),
            Fence::Superseded { current: None, .. }
        ));
    }

    #[test]
    fn a_successor_numbers_checkpoints_apart_from_its_predecessor() {
        assert_eq!(first_checkpoint(None, false), CheckpointId(1));
        assert_eq!(
            first_checkpoint(Some(CheckpointId(13)), false),
            CheckpointId(14)
        );
        let first = first_checkpoint(Some(CheckpointId(13)), true);
        assert_eq!(first, CheckpointId(CHECKPOINT_EPOCH + 1));
        // The old owner may count on from 13 for an epoch's worth without reaching it.
        assert!(CheckpointId(CHECKPOINT_EPOCH - 1) < first);
        // A successor of the successor starts the epoch after.
        let next = first_checkpoint(Some(CheckpointId(CHECKPOINT_EPOCH + 40)), true);
        assert_eq!(next, CheckpointId(2 * CHECKPOINT_EPOCH + 1));
    }

    #[test]
    fn a_lease_starts_at_the_generation_of_its_jobs_epoch() {
        assert_eq!(generation_of(first_checkpoint(None, false)), 1);
        let successor = first_checkpoint(Some(CheckpointId(13)), true);
        assert_eq!(generation_of(successor), 2);
        let local = first_checkpoint(Some(CheckpointId(CHECKPOINT_EPOCH + 40)), false);
        assert_eq!(generation_of(local), 2, "resumed in place: the same epoch");
        assert_eq!(epoch_of(CheckpointId(CHECKPOINT_EPOCH)), 0);
        assert_eq!(epoch_of(CheckpointId(CHECKPOINT_EPOCH + 1)), 1);
    }

    #[test]
    fn only_a_point_its_jobs_own_process_could_have_written_stands_for_the_job() {
        let n = CheckpointId;
        let e = CHECKPOINT_EPOCH;
        let now = lease(2);
        // Generation 1 in epoch 0, generation 2 in epoch 1: what the job and a successor
        // started at the next epoch write.
        assert_eq!(admits(Some(&now), n(7), n(7), Some(1)), Ok(()));
        assert_eq!(admits(Some(&now), n(e + 7), n(e + 7), Some(2)), Ok(()));
        // Before format 5: the generation of its number's epoch.
        assert_eq!(admits(Some(&now), n(e + 7), n(e + 7), None), Ok(()));
        let ahead = Unfit::Ahead {
            generation: 3,
            current: 2,
        };
        assert_eq!(
            admits(Some(&now), n(2 * e + 7), n(2 * e + 7), Some(3)),
            Err(ahead.clone())
        );
        assert_eq!(
            admits(Some(&now), n(2 * e + 7), n(2 * e + 7), None),
            Err(ahead)
        );
        let outside = admits(Some(&now), n(2 * e + 7), n(2 * e + 7), Some(1));
        assert!(
            matches!(outside, Err(Unfit::OutsideEpoch { .. })),
            "{outside:?}"
        );
        let renumbered = admits(Some(&now), n(9), n(7), Some(1));
        assert!(matches!(renumbered, Err(Unfit::Renumbered { .. })));
        // No lease (a local state folder): nothing is refused.
        assert_eq!(admits(None, n(9), n(7 * e), Some(5)), Ok(()));
    }

    #[test]
    fn a_takeover_raises_the_generation_by_one() {
        assert_eq!(taken_over(None, "b".to_owned()).generation, 1);
        assert_eq!(taken_over(Some(&lease(4)), "b".to_owned()).generation, 5);
        let taken = taken_over(Some(&lease(1)), "b".to_owned());
        assert!(matches!(decide(1, Some(&taken)), Fence::Superseded { .. }));
        assert_eq!(decode(&encode(&taken)).unwrap(), taken);
    }
}
