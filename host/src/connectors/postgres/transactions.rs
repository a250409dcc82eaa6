//! The PostgreSQL sink's prepared transactions: their global ids, and what to do with each
//! one the server holds when the sink reconciles (pure: decisions over what the server listed).
//!
//! A global id reads `jh:{prefix}:{subtask}:{job}:{checkpoint}`. The prefix names the sink
//! itself, not a run of it: `{operator}.{table}` by default (or the config's
//! `transaction_prefix`), the same for every job that runs the sink, resumed or started afresh,
//! so that a job finds what any earlier run left prepared, even one that crashed before its
//! first checkpoint and was never resumed. Then the subtask and the job that prepared it, and
//! the checkpoint it belongs to. Prefixes, job ids and subtasks hold no `:`.
//!
//! A transaction of the prefix prepared by another job whose sessions are still connected
//! (their `application_name` names the job) is never touched: that job is alive and resolves
//! its own. The sink's own job is always its own to resolve (an earlier run of it in this
//! process has gone).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::super::owns_old;

/// PostgreSQL's limit on a global transaction id, in bytes (`GIDSIZE` less its terminator).
pub const GID_BYTES_MAX: usize = 199;

/// One prepared transaction of the sink.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Gid {
    /// The checkpoint it belongs to (first: ids sort by checkpoint).
    pub checkpoint: u64,
    /// The subtask that prepared it.
    pub subtask: u32,
    /// The sink's prefix.
    pub prefix: String,
    /// The job that prepared it.
    pub job: String,
}

impl Gid {
    /// What every global id of the sink with `prefix` starts with.
    pub fn start(prefix: &str) -> String {
        format!("jh:{prefix}:")
    }

    /// Its global id.
    pub fn id(&self) -> String {
        let start = Gid::start(&self.prefix);
        format!("{start}{}:{}:{}", self.subtask, self.job, self.checkpoint)
    }

    /// The transaction a global id names, if it is one of this host's.
    pub fn parse(id: &str) -> Option<Gid> {
        let mut parts = id.rsplitn(4, ':');
        let checkpoint = parts.next()?.parse().ok()?;
        let job = parts.next()?.to_owned();
        let subtask = parts.next()?.parse().ok()?;
        let prefix = parts.next()?.strip_prefix("jh:")?.to_owned();
        let plain = |s: &str| !s.is_empty() && !s.contains(':');
        (plain(&prefix) && plain(&job)).then_some(Gid {
            checkpoint,
            subtask,
            prefix,
            job,
        })
    }
}

/// What one sink subtask does with the prepared transactions the server holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconcile {
    /// Global ids to commit (`COMMIT PREPARED`), in checkpoint order.
    pub commit: Vec<String>,
    /// Global ids to roll back (`ROLLBACK PREPARED`).
    pub roll_back: Vec<String>,
}

/// Whose transactions a subtask reconciles: those of the sink's `prefix` prepared by old
/// subtasks it takes over (`j % parallelism == index`, so that exactly one subtask does), by
/// its own job or by jobs no longer connected.
#[derive(Clone, Copy, Debug)]
pub struct Share<'a> {
    /// The sink's prefix.
    pub prefix: &'a str,
    /// This subtask.
    pub index: u32,
    /// The operator's parallelism now.
    pub parallelism: u32,
    /// This subtask's job.
    pub job: &'a str,
    /// The jobs with sessions connected to the server now.
    pub live: &'a BTreeSet<String>,
}

/// Of the global ids the server lists (`prepared`): commits those `listed` (a completed
/// checkpoint prepared them, under whatever prefix); of the rest of `share`, keeps those in
/// `keep` (this subtask prepared them for a checkpoint not yet complete) and rolls back the
/// others (prepared for a checkpoint that never completed, by a run that is gone). Ids not of
/// `share` are left alone.
pub fn reconcile(
    prepared: &[String],
    share: Share<'_>,
    listed: &BTreeSet<Gid>,
    keep: &BTreeSet<Gid>,
) -> Reconcile {
    let mut ours: Vec<Gid> = prepared.iter().filter_map(|id| Gid::parse(id)).collect();
    ours.sort();
    let mut decision = Reconcile::default();
    for gid in ours {
        let own = gid.prefix == share.prefix
            && owns_old(share.index, share.parallelism, gid.subtask)
            && (gid.job == share.job || !share.live.contains(&gid.job));
        if listed.contains(&gid) {
            decision.commit.push(gid.id());
        } else if own && !keep.contains(&gid) {
            decision.roll_back.push(gid.id());
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gid(subtask: u32, job: &str, checkpoint: u64) -> Gid {
        Gid {
            checkpoint,
            subtask,
            prefix: "db.counts".to_owned(),
            job: job.to_owned(),
        }
    }

    #[test]
    fn a_global_id_reads_back() {
        let g = gid(3, "job-b", 17);
        assert_eq!(g.id(), "jh:db.counts:3:job-b:17");
        assert_eq!(Gid::parse(&g.id()), Some(g));
        for other in [
            "jh:p:c:d:1",
            "jh:p:1:d",
            "xx:p:1:d:1",
            "jh::1:d:1",
            "jh:p:1::1",
        ] {
            assert_eq!(Gid::parse(other), None, "{other}");
        }
    }

    #[test]
    fn listed_ones_commit_kept_and_live_ones_stay_and_the_rest_of_the_share_rolls_back() {
        let server: Vec<String> = [
            gid(0, "job-a", 4),
            gid(0, "job-a", 5),
            gid(0, "job-b", 6),
            gid(2, "job-a", 5),
            gid(1, "job-a", 5),
            gid(0, "job-live", 7),
            gid(0, "job-b", 3),
        ]
        .iter()
        .map(Gid::id)
        .chain(["jh:other.t:0:job-z:5".to_owned(), "not-ours".to_owned()])
        .collect();
        let listed = BTreeSet::from([gid(0, "job-a", 5), gid(2, "job-a", 5), gid(0, "job-a", 2)]);
        let keep = BTreeSet::from([gid(0, "job-b", 6)]);
        let live = BTreeSet::from(["job-live".to_owned(), "job-b".to_owned()]);
        let share = Share {
            prefix: "db.counts",
            index: 0,
            parallelism: 2,
            job: "job-b",
            live: &live,
        };
        let decision = reconcile(&server, share, &listed, &keep);
        assert_eq!(
            decision.commit,
            [gid(0, "job-a", 5).id(), gid(2, "job-a", 5).id()]
        );
        // Its own job's older transaction goes, though the job is live (it is this one);
        // another live job's stays.
        assert_eq!(
            decision.roll_back,
            [gid(0, "job-b", 3).id(), gid(0, "job-a", 4).id()]
        );
    }
}
