//! What two runs' outputs and states have in common, and where they part: pure.
//!
//! A sink's records are compared key by key, as multisets of values and of timestamps: the
//! records of one key keep their order along one path, but where they reach an operator over
//! several (a `rebalance` edge, a source of several subtasks) they interleave differently
//! from one run to the next, and a job that is right either way must not differ from itself.
//! Keyed state is compared key by key, values only (not the version of the piece that set
//! them: a new module may write another version of the same value).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;

use crate::connectors::capture::Record;
use crate::ids::OperatorId;
use crate::points::state::json::key_to_json;

/// Most differing keys a report shows per sink or operator.
pub const FIRST_MAX: usize = 5;

/// How one sink's outputs compare.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SinkDiff {
    /// The sink.
    pub operator: OperatorId,
    /// Records the old job wrote to it.
    pub old_records: u64,
    /// Records the new job wrote to it.
    pub new_records: u64,
    /// Keys whose records differ.
    pub keys_differing: u64,
    /// The first of them (in key order), each with its first differing record on each side.
    pub first: Vec<RecordDiff>,
}

/// A key's first differing record on each side (none: that side has no record left over).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RecordDiff {
    /// The key: a string when it is UTF-8, else `{"$bin": …}`.
    pub key: Json,
    /// The old job's record.
    pub old: Option<Shown>,
    /// The new job's record.
    pub new: Option<Shown>,
}

/// A record as shown: its value as a key is shown, and its timestamp.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Shown {
    /// The value.
    pub value: Json,
    /// The timestamp.
    pub timestamp: i64,
}

/// How one keyed operator's state after the runs compares.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StateDiff {
    /// The operator.
    pub operator: OperatorId,
    /// Keys in the old job's state.
    pub old_keys: u64,
    /// Keys in the new job's state.
    pub new_keys: u64,
    /// Keys whose values differ, or that only one side has.
    pub keys_differing: u64,
    /// The first of them, in key order.
    pub first: Vec<ValueDiff>,
}

/// A key's value on each side (none: that side does not hold the key).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ValueDiff {
    /// The key.
    pub key: Json,
    /// The old job's value.
    pub old: Option<Json>,
    /// The new job's value.
    pub new: Option<Json>,
}

/// Each record of a sink, all subtasks', grouped by key in the order taken.
fn by_key(records: &BTreeMap<u32, Vec<Record>>) -> BTreeMap<&[u8], Vec<&Record>> {
    let mut keys: BTreeMap<&[u8], Vec<&Record>> = BTreeMap::new();
    for record in records.values().flatten() {
        keys.entry(record.key.as_slice()).or_default().push(record);
    }
    keys
}

/// The indices of `a`'s items that `b` does not match, one for one.
fn unmatched<T: Ord>(a: &[T], b: &[T]) -> Vec<usize> {
    let mut left: BTreeMap<&T, usize> = BTreeMap::new();
    for item in b {
        *left.entry(item).or_default() += 1;
    }
    let mut missing = Vec::new();
    for (index, item) in a.iter().enumerate() {
        match left.get_mut(item) {
            Some(n) if *n > 0 => *n -= 1,
            _ => missing.push(index),
        }
    }
    missing
}

/// Whether one key's records differ: as multisets of values, or of timestamps. If so, its
/// first records that differ, position by position in the order each side took them.
fn key_diff(key: &[u8], old: &[&Record], new: &[&Record]) -> Option<RecordDiff> {
    let values =
        |records: &[&Record]| -> Vec<Vec<u8>> { records.iter().map(|r| r.value.clone()).collect() };
    let stamps =
        |records: &[&Record]| -> Vec<i64> { records.iter().map(|r| r.timestamp).collect() };
    let (old_values, new_values) = (values(old), values(new));
    let (old_stamps, new_stamps) = (stamps(old), stamps(new));
    let agree = |a: &[usize], b: &[usize]| a.is_empty() && b.is_empty();
    let values_agree = agree(
        &unmatched(&old_values, &new_values),
        &unmatched(&new_values, &old_values),
    );
    let stamps_agree = agree(
        &unmatched(&old_stamps, &new_stamps),
        &unmatched(&new_stamps, &old_stamps),
    );
    if values_agree && stamps_agree {
        return None;
    }
    let same = |a: &&Record, b: &&Record| a.value == b.value && a.timestamp == b.timestamp;
    let at = (0..old.len().max(new.len()))
        .find(|&i| !matches!((old.get(i), new.get(i)), (Some(a), Some(b)) if same(a, b)))
        .expect("records that differ differ somewhere");
    let shown = |records: &[&Record]| {
        records.get(at).map(|record| Shown {
            value: key_to_json(&record.value),
            timestamp: record.timestamp,
        })
    };
    Some(RecordDiff {
        key: key_to_json(key),
        old: shown(old),
        new: shown(new),
    })
}

/// How sink `operator`'s records compare (a side without the sink wrote none to it).
pub fn sink(
    operator: &OperatorId,
    old: &BTreeMap<u32, Vec<Record>>,
    new: &BTreeMap<u32, Vec<Record>>,
) -> SinkDiff {
    let count =
        |records: &BTreeMap<u32, Vec<Record>>| records.values().map(Vec::len).sum::<usize>();
    let (old_keys, new_keys) = (by_key(old), by_key(new));
    let keys: BTreeSet<&[u8]> = old_keys.keys().chain(new_keys.keys()).copied().collect();
    let mut diff = SinkDiff {
        operator: operator.clone(),
        old_records: count(old) as u64,
        new_records: count(new) as u64,
        keys_differing: 0,
        first: Vec::new(),
    };
    let none = Vec::new();
    for key in keys {
        let (was, is) = (old_keys.get(key), new_keys.get(key));
        let Some(differs) = key_diff(key, was.unwrap_or(&none), is.unwrap_or(&none)) else {
            continue;
        };
        diff.keys_differing += 1;
        if diff.first.len() < FIRST_MAX {
            diff.first.push(differs);
        }
    }
    diff
}

/// How keyed operator `operator`'s state compares: each side's values by key (keys as JSON).
pub fn state(
    operator: &OperatorId,
    old: &BTreeMap<Vec<u8>, Json>,
    new: &BTreeMap<Vec<u8>, Json>,
) -> StateDiff {
    let keys: BTreeSet<&Vec<u8>> = old.keys().chain(new.keys()).collect();
    let mut diff = StateDiff {
        operator: operator.clone(),
        old_keys: old.len() as u64,
        new_keys: new.len() as u64,
        keys_differing: 0,
        first: Vec::new(),
    };
    for key in keys {
        let (was, is) = (old.get(key), new.get(key));
        if was == is {
            continue;
        }
        diff.keys_differing += 1;
        if diff.first.len() < FIRST_MAX {
            diff.first.push(ValueDiff {
                key: key_to_json(key),
                old: was.cloned(),
                new: is.cloned(),
            });
        }
    }
    diff
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn records(list: &[(u32, &str, &str, i64)]) -> BTreeMap<u32, Vec<Record>> {
        let mut by_subtask: BTreeMap<u32, Vec<Record>> = BTreeMap::new();
        for &(subtask, key, value, timestamp) in list {
            by_subtask.entry(subtask).or_default().push(Record {
                key: key.into(),
                value: value.into(),
                timestamp,
            });
        }
        by_subtask
    }

    fn op() -> OperatorId {
        "sink".parse().unwrap()
    }

    #[test]
    fn the_same_records_of_each_key_in_another_interleaving_agree() {
        let old = records(&[(0, "a", "a 1", 1), (0, "b", "b 1", 2), (1, "a", "a 2", 3)]);
        let new = records(&[(0, "b", "b 1", 2), (1, "a", "a 1", 1), (1, "a", "a 2", 3)]);
        let diff = sink(&op(), &old, &new);
        assert_eq!((diff.old_records, diff.new_records), (3, 3));
        assert_eq!(diff.keys_differing, 0);
        assert!(diff.first.is_empty());
    }

    #[test]
    fn a_differing_value_is_shown_with_its_key_on_both_sides() {
        let old = records(&[(0, "a", "a 1", 1), (0, "b", "b 1", 2), (0, "c", "c 1", 5)]);
        let new = records(&[(0, "a", "a 2", 1), (0, "b", "b 1", 2)]);
        let diff = sink(&op(), &old, &new);
        assert_eq!(
            (diff.old_records, diff.new_records, diff.keys_differing),
            (3, 2, 2)
        );
        let shown = |value: &str, timestamp| {
            Some(Shown {
                value: json!(value),
                timestamp,
            })
        };
        assert_eq!(
            diff.first,
            [
                RecordDiff {
                    key: json!("a"),
                    old: shown("a 1", 1),
                    new: shown("a 2", 1)
                },
                RecordDiff {
                    key: json!("c"),
                    old: shown("c 1", 5),
                    new: None
                },
            ]
        );
    }

    #[test]
    fn the_first_differing_record_is_where_the_sequences_part() {
        let old = records(&[(0, "a", "a 1", 1), (0, "a", "a 2", 2), (1, "a", "a 3", 3)]);
        let new = records(&[(0, "a", "a 2", 1), (0, "a", "a 4", 2), (1, "a", "a 6", 3)]);
        let diff = sink(&op(), &old, &new);
        let first = &diff.first[0];
        assert_eq!(first.old.as_ref().unwrap().value, json!("a 1"));
        assert_eq!(first.new.as_ref().unwrap().value, json!("a 2"));
    }

    #[test]
    fn the_same_values_at_other_times_differ() {
        let old = records(&[(0, "a", "a 1", 1)]);
        let new = records(&[(0, "a", "a 1", 7)]);
        let diff = sink(&op(), &old, &new);
        assert_eq!(diff.keys_differing, 1);
        assert_eq!(diff.first[0].new.as_ref().unwrap().timestamp, 7);
    }

    #[test]
    fn state_differs_by_value_and_by_keys_only_one_side_holds() {
        let old = BTreeMap::from([(b"a".to_vec(), json!(1)), (b"b".to_vec(), json!(2))]);
        let new = BTreeMap::from([
            (b"a".to_vec(), json!(1)),
            (b"b".to_vec(), json!(4)),
            (b"c".to_vec(), json!(1)),
        ]);
        let diff = state(&"counter".parse().unwrap(), &old, &new);
        assert_eq!(
            (diff.old_keys, diff.new_keys, diff.keys_differing),
            (2, 3, 2)
        );
        assert_eq!(
            diff.first,
            [
                ValueDiff {
                    key: json!("b"),
                    old: Some(json!(2)),
                    new: Some(json!(4))
                },
                ValueDiff {
                    key: json!("c"),
                    old: None,
                    new: Some(json!(1))
                },
            ]
        );
        assert_eq!(
            state(&"counter".parse().unwrap(), &old, &old).keys_differing,
            0
        );
    }
}
