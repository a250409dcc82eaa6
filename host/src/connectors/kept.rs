//! What a sink keeps that makes a checkpoint's records visible only once the checkpoint is
//! complete (the JetStream and Kafka sinks): the records since the last checkpoint, bounded,
//! then each checkpoint's, until its `commit`. Each checkpoint's records carry the ids
//! `{job}:{operator}:{subtask}:{checkpoint}` + `:{index}`, the same when a commit is repeated.
//!
//! The checkpoints kept are the sink's operator state: a restore at another parallelism hands
//! each old subtask's to exactly one new subtask (old `j` to new `j % parallelism`), which
//! commits them under their original ids.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::state::{self, StateError};
use super::{Cause, Setup, owns_old};

/// Most bytes of records a subtask keeps between two checkpoints.
pub const BUFFER_BYTES_MAX: u64 = 256 << 20;

/// The records a checkpoint kept, not yet committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept<R> {
    /// `job:operator:subtask:checkpoint`: record `i`'s id is `{ids}:{i}`.
    pub ids: String,
    /// The subtask that kept them.
    pub subtask: u32,
    /// The checkpoint they belong to.
    pub checkpoint: u64,
    /// The records.
    pub records: Vec<R>,
}

/// A subtask's state: what it kept and has not committed, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct State<R> {
    /// Oldest first.
    pub kept: Vec<Kept<R>>,
}

/// One subtask's records: since the last checkpoint, and kept for checkpoints.
pub struct Keeper<R> {
    /// `job:operator:subtask`, the start of the ids of what it keeps.
    ids: String,
    index: u32,
    parallelism: u32,
    /// Records since the last checkpoint, and their bytes.
    open: Vec<R>,
    open_bytes: u64,
    /// Kept for checkpoints, not yet committed, oldest first.
    kept: Vec<Kept<R>>,
}

impl<R: Clone + Serialize + DeserializeOwned> Keeper<R> {
    /// Nothing kept yet, for the subtask `setup` names.
    pub fn new(setup: &Setup<'_>) -> Self {
        let subtask = setup.subtask;
        let ids = format!("{}:{}:{}", setup.job, subtask.operator, subtask.index);
        Self::of(ids, subtask.index, setup.parallelism)
    }

    /// Nothing kept yet, for subtask `index` of `parallelism`, its ids starting with `ids`.
    fn of(ids: String, index: u32, parallelism: u32) -> Self {
        Keeper {
            ids,
            index,
            parallelism,
            open: Vec::new(),
            open_bytes: 0,
            kept: Vec::new(),
        }
    }

    /// Keeps `record` (of `bytes` bytes) for the next checkpoint.
    pub fn push(&mut self, record: R, bytes: usize) {
        self.open_bytes += bytes as u64;
        self.open.push(record);
    }

    /// Refuses more than [`BUFFER_BYTES_MAX`] since the last checkpoint.
    pub fn check_bound(&self) -> Result<(), Cause> {
        if self.open_bytes > BUFFER_BYTES_MAX {
            return Err(Cause::Buffer {
                bytes: self.open_bytes,
                max: BUFFER_BYTES_MAX,
            });
        }
        Ok(())
    }

    /// Keeps what was written since the last checkpoint as checkpoint `checkpoint`'s.
    pub fn prepare_commit(&mut self, checkpoint: u64) {
        if self.open.is_empty() {
            return;
        }
        self.open_bytes = 0;
        self.kept.push(Kept {
            ids: format!("{}:{checkpoint}", self.ids),
            subtask: self.index,
            checkpoint,
            records: std::mem::take(&mut self.open),
        });
    }

    /// The oldest checkpoint's records, if it is `checkpoint` or earlier: the next to commit.
    pub fn next_due(&self, checkpoint: u64) -> Option<&Kept<R>> {
        self.kept.first().filter(|k| k.checkpoint <= checkpoint)
    }

    /// The oldest checkpoint's records were committed: forgets them.
    pub fn committed_next(&mut self) {
        self.kept.remove(0);
    }

    /// What it kept and has not committed, encoded in state format `version`.
    pub fn snapshot(&self, version: u8) -> Vec<u8> {
        let state = State {
            kept: self.kept.clone(),
        };
        state::encode(version, &state)
    }

    /// Takes over what the old subtasks it succeeds kept (old `j` for new `j % parallelism`).
    pub fn restore(&mut self, version: u8, states: &[&[u8]]) -> Result<(), StateError> {
        for bytes in states {
            let old: State<R> = state::decode(version, bytes)?;
            let mine = old.kept.into_iter();
            let mine = mine.filter(|k| owns_old(self.index, self.parallelism, k.subtask));
            self.kept.extend(mine);
        }
        self.kept.sort_by_key(|k| (k.checkpoint, k.subtask));
        Ok(())
    }
}

/// What a person reads of a sink's state (format `version`): the checkpoints it kept records
/// of, and how many each, still to `verb` (publish, produce).
pub fn describe<R: DeserializeOwned>(
    version: u8,
    bytes: &[u8],
    verb: &str,
) -> Result<String, StateError> {
    let state: State<R> = state::decode(version, bytes)?;
    if state.kept.is_empty() {
        return Ok(format!("nothing kept to {verb}"));
    }
    let kept: Vec<String> = state
        .kept
        .iter()
        .map(|k| format!("{} ({} records)", k.ids, k.records.len()))
        .collect();
    Ok(format!("kept to {verb}: {}", kept.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSION: u8 = 1;

    #[test]
    fn each_checkpoint_is_kept_until_committed_in_order() {
        let mut keeper = Keeper::of("j:sink:0".to_owned(), 0, 1);
        keeper.prepare_commit(2);
        assert!(
            keeper.next_due(u64::MAX).is_none(),
            "nothing written, nothing kept"
        );
        keeper.push("a".to_owned(), 1);
        keeper.push("b".to_owned(), 1);
        keeper.prepare_commit(3);
        keeper.push("c".to_owned(), 1);
        keeper.prepare_commit(4);
        assert!(keeper.next_due(2).is_none());
        let due = keeper.next_due(3).unwrap();
        assert_eq!(due.ids, "j:sink:0:3");
        assert_eq!(due.records, ["a", "b"]);
        keeper.committed_next();
        assert!(keeper.next_due(3).is_none(), "checkpoint 4's waits for 4");
        assert_eq!(keeper.next_due(4).unwrap().records, ["c"]);
    }

    #[test]
    fn more_than_the_bound_since_a_checkpoint_is_refused() {
        let mut keeper = Keeper::of("j:sink:0".to_owned(), 0, 1);
        keeper.push(0u8, BUFFER_BYTES_MAX as usize);
        assert!(keeper.check_bound().is_ok(), "at the bound");
        keeper.push(0u8, 1);
        let refused = keeper.check_bound();
        assert!(matches!(refused, Err(Cause::Buffer { max, .. }) if max == BUFFER_BYTES_MAX));
        keeper.prepare_commit(1);
        assert!(
            keeper.check_bound().is_ok(),
            "kept for checkpoint 1: a new interval"
        );
    }

    #[test]
    fn a_restore_at_another_parallelism_hands_each_old_subtask_to_one_new() {
        // Three old subtasks, each with checkpoint 5 kept; then two new ones.
        let states: Vec<Vec<u8>> = (0..3)
            .map(|old| {
                let mut keeper = Keeper::of(format!("j:sink:{old}"), old, 3);
                keeper.push(old, 1);
                keeper.prepare_commit(5);
                keeper.snapshot(VERSION)
            })
            .collect();
        let states: Vec<&[u8]> = states.iter().map(Vec::as_slice).collect();
        let taken = |index| {
            let mut keeper = Keeper::<u32>::of(format!("j:sink:{index}"), index, 2);
            keeper.restore(VERSION, &states).unwrap();
            let mut ids = Vec::new();
            while let Some(kept) = keeper.next_due(5) {
                ids.push(kept.ids.clone());
                keeper.committed_next();
            }
            ids
        };
        assert_eq!(
            taken(0),
            ["j:sink:0:5", "j:sink:2:5"],
            "old 0 and 2 (j % 2 == 0)"
        );
        assert_eq!(taken(1), ["j:sink:1:5"]);
    }
}
