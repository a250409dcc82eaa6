//! The PostgreSQL sink's prepared transactions: their global ids, and what to do with each
//! one the server holds when the sink reconciles (pure: decisions over what the server listed).
//!
//! A global id reads `jh:{lineage}:{operator}:{subtask}:{job}:{checkpoint}`: the lineage is the
//! job that first ran the sink (kept in its state through every resume, so that a resumed job
//! finds what the jobs before it prepared), then the operator, the subtask and the job that
//! prepared it, and the checkpoint it belongs to. Job and operator ids hold no `:`.

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
    /// The job that first ran the sink.
    pub lineage: String,
    /// The operator.
    pub operator: String,
    /// The job that prepared it.
    pub job: String,
}

impl Gid {
    /// What every global id of `lineage`'s `operator` starts with.
    pub fn prefix(lineage: &str, operator: &str) -> String {
        format!("jh:{lineage}:{operator}:")
    }

    /// Its global id.
    pub fn id(&self) -> String {
        let prefix = Gid::prefix(&self.lineage, &self.operator);
        format!("{prefix}{}:{}:{}", self.subtask, self.job, self.checkpoint)
    }

    /// The transaction a global id names, if it is one of ours.
    pub fn parse(id: &str) -> Option<Gid> {
        let mut parts = id.split(':');
        if parts.next()? != "jh" {
            return None;
        }
        let gid = Gid {
            lineage: parts.next()?.to_owned(),
            operator: parts.next()?.to_owned(),
            subtask: parts.next()?.parse().ok()?,
            job: parts.next()?.to_owned(),
            checkpoint: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(gid)
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

/// Whose transactions a subtask reconciles: those of `lineage`'s `operator` prepared by old
/// subtasks it takes over (`j % parallelism == index`, so that exactly one subtask does).
#[derive(Clone, Copy, Debug)]
pub struct Share<'a> {
    /// The lineage.
    pub lineage: &'a str,
    /// The operator.
    pub operator: &'a str,
    /// This subtask.
    pub index: u32,
    /// The operator's parallelism now.
    pub parallelism: u32,
}

/// Of the global ids the server lists (`prepared`), those of `share`: commits those `listed`
/// (a completed checkpoint prepared them), keeps those in `keep` (this subtask prepared them
/// for a checkpoint not yet complete), rolls back the rest (prepared for a checkpoint that
/// never completed, by a run that crashed or failed). Ids not of `share` are left alone.
pub fn reconcile(
    prepared: &[String],
    share: Share<'_>,
    listed: &BTreeSet<Gid>,
    keep: &BTreeSet<Gid>,
) -> Reconcile {
    let mut ours: Vec<Gid> = prepared
        .iter()
        .filter_map(|id| Gid::parse(id))
        .filter(|gid| gid.lineage == share.lineage && gid.operator == share.operator)
        .filter(|gid| owns_old(share.index, share.parallelism, gid.subtask))
        .collect();
    ours.sort();
    let mut decision = Reconcile::default();
    for gid in ours {
        if listed.contains(&gid) {
            decision.commit.push(gid.id());
        } else if !keep.contains(&gid) {
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
            lineage: "job-a".to_owned(),
            operator: "db".to_owned(),
            job: job.to_owned(),
        }
    }

    const SHARE: Share<'static> = Share {
        lineage: "job-a",
        operator: "db",
        index: 0,
        parallelism: 2,
    };

    #[test]
    fn a_global_id_reads_back() {
        let g = gid(3, "job-b", 17);
        assert_eq!(g.id(), "jh:job-a:db:3:job-b:17");
        assert_eq!(Gid::parse(&g.id()), Some(g));
        for other in [
            "jh:a:b:c:d:1",
            "jh:a:b:1:d",
            "xx:a:b:1:d:1",
            "jh:a:b:1:d:1:extra",
        ] {
            assert_eq!(Gid::parse(other), None, "{other}");
        }
    }

    #[test]
    fn listed_ones_commit_kept_ones_stay_and_the_rest_of_the_share_rolls_back() {
        let server: Vec<String> = [
            gid(0, "job-a", 4),
            gid(0, "job-a", 5),
            gid(0, "job-b", 6),
            gid(2, "job-a", 5),
            gid(1, "job-a", 5),
        ]
        .iter()
        .map(Gid::id)
        .chain(["jh:job-z:db:0:job-z:5".to_owned(), "other".to_owned()])
        .collect();
        let listed = BTreeSet::from([gid(0, "job-a", 5), gid(2, "job-a", 5), gid(0, "job-a", 3)]);
        let keep = BTreeSet::from([gid(0, "job-b", 6)]);
        let decision = reconcile(&server, SHARE, &listed, &keep);
        assert_eq!(
            decision.commit,
            [gid(0, "job-a", 5).id(), gid(2, "job-a", 5).id()]
        );
        assert_eq!(decision.roll_back, [gid(0, "job-a", 4).id()]);
    }
}
