//! Keyed state: one value per key, kept by the SDK by key group, so that an author never
//! handles key groups and yet every checkpoint carries only the groups that changed, and a
//! job can resume at another parallelism.
//!
//! Each key group this subtask owns has its own hash map (hashbrown, with its fast default
//! hasher); the record's group comes from the batch, where the host put it. A lookup hashes
//! the key once and allocates nothing; only a key seen for the first time is copied. Every
//! group written since the previous snapshot is marked, and the snapshot encodes just those
//! (`docs/state-format.md`: `[format, version, [[key, value], ...]]`).

use std::ops::Range;

use hashbrown::HashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Record;
use crate::envelope::{self, StateFormat};

/// The keyed state of one subtask: a value per key, for the keys of its key groups.
#[derive(Debug)]
pub struct Keyed<V> {
    /// The first key group this subtask owns.
    start: u32,
    /// One map per owned key group, by `group - start`.
    groups: Vec<HashMap<Vec<u8>, V>>,
    /// Whether each group changed since the previous snapshot.
    changed: Vec<bool>,
    /// The groups changed since the previous snapshot, in the order they changed.
    changed_list: Vec<u32>,
}

impl<V> Keyed<V> {
    /// Empty state for the key groups `range`.
    pub fn new(range: Range<u32>) -> Self {
        let len = range.len();
        Self {
            start: range.start,
            groups: (0..len).map(|_| HashMap::default()).collect(),
            changed: vec![false; len],
            changed_list: Vec::new(),
        }
    }

    /// The key groups this state holds.
    pub fn range(&self) -> Range<u32> {
        self.start..self.start + self.groups.len() as u32
    }

    fn index(&self, record: &Record<'_>) -> usize {
        let group = record
            .key_group
            .expect("keyed state is used only on records of a key-by input (checked per batch)");
        (group - self.start) as usize
    }

    fn touch(&mut self, index: usize) -> &mut HashMap<Vec<u8>, V> {
        if !self.changed[index] {
            self.changed[index] = true;
            self.changed_list.push(self.start + index as u32);
        }
        &mut self.groups[index]
    }

    /// The value of the record's key, if it has one.
    pub fn get(&self, record: &Record<'_>) -> Option<&V> {
        self.groups[self.index(record)].get(record.key)
    }

    /// The value of the record's key, to change.
    pub fn get_mut(&mut self, record: &Record<'_>) -> Option<&mut V> {
        let index = self.index(record);
        if !self.groups[index].contains_key(record.key) {
            return None;
        }
        self.touch(index).get_mut(record.key)
    }

    /// The value of the record's key, made with `make` if it has none yet.
    pub fn or_insert_with(&mut self, record: &Record<'_>, make: impl FnOnce() -> V) -> &mut V {
        let index = self.index(record);
        self.touch(index).entry_ref(record.key).or_insert_with(make)
    }

    /// The value of the record's key, `V::default()` if it has none yet.
    pub fn or_default(&mut self, record: &Record<'_>) -> &mut V
    where
        V: Default,
    {
        self.or_insert_with(record, V::default)
    }

    /// Sets the value of the record's key; returns the previous one.
    pub fn insert(&mut self, record: &Record<'_>, value: V) -> Option<V> {
        let index = self.index(record);
        self.touch(index).insert(record.key.to_vec(), value)
    }

    /// Removes the record's key; returns its value.
    pub fn remove(&mut self, record: &Record<'_>) -> Option<V> {
        let index = self.index(record);
        if !self.groups[index].contains_key(record.key) {
            return None;
        }
        self.touch(index).remove(record.key)
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        self.groups.iter().map(HashMap::len).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(HashMap::is_empty)
    }

    /// Every key and its value, group by group.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.groups
            .iter()
            .flat_map(|group| group.iter().map(|(k, v)| (&k[..], v)))
    }
}

/// A group's entries as the envelope's payload: `[[bin key, value], ...]`.
struct Entries<'a, V>(&'a HashMap<Vec<u8>, V>);

impl<V: Serialize> Serialize for Entries<'_, V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.0
                .iter()
                .map(|(key, value)| (serde_bytes::Bytes::new(key), value)),
        )
    }
}

impl<V: Serialize> Keyed<V> {
    /// The groups changed since the previous call (every group holding keys, with `full`),
    /// each encoded: empty bytes for a group that holds no key.
    pub(crate) fn snapshot(
        &mut self,
        format: StateFormat,
        full: bool,
    ) -> Result<Vec<(u32, Vec<u8>)>, String> {
        let groups: Vec<u32> = if full {
            let held = self
                .groups
                .iter()
                .enumerate()
                .filter(|(_, g)| !g.is_empty());
            held.map(|(i, _)| self.start + i as u32).collect()
        } else {
            self.changed_list.clone()
        };
        let mut encoded = Vec::with_capacity(groups.len());
        for group in groups {
            let entries = &self.groups[(group - self.start) as usize];
            let state = match entries.is_empty() {
                true => Vec::new(),
                false => envelope::seal(format, &Entries(entries))?,
            };
            encoded.push((group, state));
        }
        // Only once the whole snapshot is encoded: a failed one leaves the marks for the next.
        self.changed.iter_mut().for_each(|c| *c = false);
        self.changed_list.clear();
        Ok(encoded)
    }
}

impl<V: DeserializeOwned> Keyed<V> {
    /// Loads the state of `group`, written by `snapshot` in `format` or, through `migrate`,
    /// in an older version of it.
    pub(crate) fn restore_group(
        &mut self,
        group: u32,
        state: &[u8],
        format: StateFormat,
        migrate: impl FnOnce(u32, &[u8]) -> Result<crate::Entries<V>, String>,
    ) -> Result<(), String> {
        let Some(index) = group
            .checked_sub(self.start)
            .filter(|&i| i < self.groups.len() as u32)
        else {
            let range = self.range();
            return Err(format!(
                "key group {group} is not one of this subtask's {range:?}"
            ));
        };
        if state.is_empty() {
            return Ok(());
        }
        let opened = envelope::open(state)?;
        opened.expect_format(format.name)?;
        let entries: Vec<(serde_bytes::ByteBuf, V)> = if opened.version == format.version {
            envelope::decode_payload(opened.payload)?
        } else {
            let migrated = migrate(opened.version, opened.payload)?;
            migrated.into_iter().map(|(k, v)| (k.into(), v)).collect()
        };
        let map = &mut self.groups[index as usize];
        map.reserve(entries.len());
        map.extend(entries.into_iter().map(|(k, v)| (k.into_vec(), v)));
        Ok(())
    }
}

/// Decodes the payload of a key group written in an older version, whose values were of type
/// `Old`: for an operator's `migrate`.
pub fn old_entries<Old: DeserializeOwned>(payload: &[u8]) -> Result<crate::Entries<Old>, String> {
    let entries: Vec<(serde_bytes::ByteBuf, Old)> = envelope::decode_payload(payload)?;
    Ok(entries
        .into_iter()
        .map(|(k, v)| (k.into_vec(), v))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNTS: StateFormat = StateFormat {
        name: "word-count",
        version: 2,
    };

    fn record(key: &'static [u8], group: u32) -> Record<'static> {
        Record {
            key,
            value: b"",
            timestamp: 0,
            key_group: Some(group),
        }
    }

    #[test]
    fn only_changed_groups_are_snapshotted_and_emptied_ones_say_so() {
        let mut keyed: Keyed<u64> = Keyed::new(10..20);
        *keyed.or_default(&record(b"a", 11)) += 1;
        *keyed.or_default(&record(b"b", 12)) += 2;
        let first = keyed.snapshot(COUNTS, false).unwrap();
        assert_eq!(first.iter().map(|(g, _)| *g).collect::<Vec<_>>(), [11, 12]);
        assert!(
            keyed.snapshot(COUNTS, false).unwrap().is_empty(),
            "nothing changed"
        );
        assert_eq!(keyed.get(&record(b"a", 11)), Some(&1));
        assert!(
            keyed.snapshot(COUNTS, false).unwrap().is_empty(),
            "reading is no change"
        );
        keyed.remove(&record(b"b", 12));
        let second = keyed.snapshot(COUNTS, false).unwrap();
        assert_eq!(second, [(12, Vec::new())]);
        let full = keyed.snapshot(COUNTS, true).unwrap();
        assert_eq!(full.iter().map(|(g, _)| *g).collect::<Vec<_>>(), [11]);
    }

    #[test]
    fn groups_round_trip_and_older_versions_go_through_migrate() {
        let mut keyed: Keyed<u64> = Keyed::new(0..4);
        *keyed.or_default(&record(b"apple", 0)) += 3;
        let groups = keyed.snapshot(COUNTS, true).unwrap();
        let mut restored: Keyed<u64> = Keyed::new(0..4);
        let refuse = |v: u32, _: &[u8]| Err(format!("v{v}"));
        restored
            .restore_group(0, &groups[0].1, COUNTS, refuse)
            .unwrap();
        assert_eq!(restored.get(&record(b"apple", 0)), Some(&3));

        let old = StateFormat {
            name: "word-count",
            version: 1,
        };
        let v1 = envelope::seal(old, &[(serde_bytes::Bytes::new(b"pear"), 5u32)]).unwrap();
        let migrate = |version: u32, payload: &[u8]| {
            assert_eq!(version, 1);
            let entries = old_entries::<u32>(payload)?;
            Ok(entries
                .into_iter()
                .map(|(k, v)| (k, u64::from(v) * 10))
                .collect())
        };
        restored.restore_group(1, &v1, COUNTS, migrate).unwrap();
        assert_eq!(restored.get(&record(b"pear", 1)), Some(&50));
        let error = restored.restore_group(9, &v1, COUNTS, refuse).unwrap_err();
        assert_eq!(error, "key group 9 is not one of this subtask's 0..4");
    }
}
