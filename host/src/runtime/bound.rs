//! How far the sources of a bounded run read (`host shadow`): at most so many records per
//! source subtask, or until told to stop; what each emitted is counted, so that a second run
//! reads exactly the same records. A source subtask that reaches its bound ends as if its
//! guest had said `end`: the job then finishes with its final checkpoint, every record emitted
//! processed and committed.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::engine::bindings::Batch;
use crate::ids::SubtaskId;

/// The bound of every source subtask of one run, and what each emitted.
#[derive(Debug, Default)]
pub struct SourceBound {
    /// Records any source subtask not in `exactly` may emit.
    each: Option<u64>,
    /// Records these source subtasks emit, at most.
    exactly: BTreeMap<SubtaskId, u64>,
    /// Set: every source subtask ends at its next poll.
    stopped: AtomicBool,
    /// Records each source subtask emitted.
    emitted: Mutex<BTreeMap<SubtaskId, u64>>,
}

impl SourceBound {
    /// At most `each` records per source subtask (`None`: as many as they have).
    pub fn each(each: Option<u64>) -> Self {
        SourceBound {
            each,
            ..SourceBound::default()
        }
    }

    /// Exactly what another run emitted: `emitted`, per source subtask; others read nothing.
    pub fn exactly(emitted: BTreeMap<SubtaskId, u64>) -> Self {
        SourceBound {
            each: Some(0),
            exactly: emitted,
            ..SourceBound::default()
        }
    }

    /// Ends every source subtask at its next poll.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// What each source subtask emitted so far.
    pub fn emitted(&self) -> BTreeMap<SubtaskId, u64> {
        self.emitted.lock().expect("not poisoned").clone()
    }

    /// How many more records `subtask` may emit; `None`: no bound.
    pub fn left(&self, subtask: &SubtaskId) -> Option<u64> {
        if self.stopped.load(Ordering::SeqCst) {
            return Some(0);
        }
        let limit = self.exactly.get(subtask).copied().or(self.each)?;
        let emitted = self.emitted.lock().expect("not poisoned");
        let done = emitted.get(subtask).copied().unwrap_or(0);
        Some(limit.saturating_sub(done))
    }

    /// Cuts `batch` (just polled by `subtask`) to what the bound leaves, and counts it.
    pub fn take(&self, subtask: &SubtaskId, batch: &mut Batch) {
        if let Some(left) = self.left(subtask) {
            truncate(batch, usize::try_from(left).unwrap_or(usize::MAX));
        }
        let mut emitted = self.emitted.lock().expect("not poisoned");
        *emitted.entry(subtask.clone()).or_default() += batch.timestamps.len() as u64;
    }
}

/// Keeps the first `records` records of a batch already checked to be well formed.
fn truncate(batch: &mut Batch, records: usize) {
    if batch.timestamps.len() <= records {
        return;
    }
    let end = |ends: &[u32]| records.checked_sub(1).map_or(0, |last| ends[last] as usize);
    batch.keys.truncate(end(&batch.key_ends));
    batch.values.truncate(end(&batch.value_ends));
    batch.key_ends.truncate(records);
    batch.value_ends.truncate(records);
    batch.timestamps.truncate(records);
    batch.key_groups.truncate(records);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subtask(index: u32) -> SubtaskId {
        SubtaskId {
            operator: "lines".parse().unwrap(),
            index,
        }
    }

    fn batch(words: &[&str]) -> Batch {
        let (mut keys, mut key_ends, mut values, mut value_ends) = (vec![], vec![], vec![], vec![]);
        for word in words {
            keys.extend_from_slice(word.as_bytes());
            key_ends.push(keys.len() as u32);
            values.extend_from_slice(word.to_uppercase().as_bytes());
            value_ends.push(values.len() as u32);
        }
        Batch {
            keys,
            key_ends,
            values,
            value_ends,
            timestamps: (0..words.len() as i64).collect(),
            key_groups: vec![],
        }
    }

    type Parts = (Vec<u8>, Vec<u32>, Vec<u8>, Vec<u32>, Vec<i64>);

    fn parts(b: &Batch) -> Parts {
        let b = b.clone();
        (b.keys, b.key_ends, b.values, b.value_ends, b.timestamps)
    }

    #[test]
    fn a_batch_past_the_bound_is_cut_and_counted() {
        let bound = SourceBound::each(Some(3));
        let mut first = batch(&["a", "bb"]);
        bound.take(&subtask(0), &mut first);
        assert_eq!(bound.left(&subtask(0)), Some(1));
        let mut second = batch(&["ccc", "dddd"]);
        bound.take(&subtask(0), &mut second);
        assert_eq!(parts(&second), parts(&batch(&["ccc"])));
        assert_eq!(bound.left(&subtask(0)), Some(0));
        assert_eq!(bound.left(&subtask(1)), Some(3));
        assert_eq!(bound.emitted(), BTreeMap::from([(subtask(0), 3)]));
    }

    #[test]
    fn exactly_what_another_run_emitted_and_nothing_after_a_stop() {
        let bound = SourceBound::exactly(BTreeMap::from([(subtask(0), 2)]));
        assert_eq!(bound.left(&subtask(0)), Some(2));
        assert_eq!(bound.left(&subtask(1)), Some(0), "not in the other run");
        let unbounded = SourceBound::each(None);
        assert_eq!(unbounded.left(&subtask(0)), None);
        unbounded.stop();
        assert_eq!(unbounded.left(&subtask(0)), Some(0));
    }
}
