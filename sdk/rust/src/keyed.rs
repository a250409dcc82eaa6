//! Keyed state: one value per key, kept by the SDK by key group, so that an author never
//! handles key groups and yet every checkpoint costs what changed, not what exists, and a job
//! can resume at another parallelism.
//!
//! Each key group this subtask owns has its own hash table (`group.rs`); the record's group
//! comes from the batch, where the host put it. A lookup hashes the key once and allocates
//! nothing; only a key seen for the first time is copied. A value written since the previous
//! snapshot is marked in its slot, and its group listed. A snapshot
//! encodes each listed group either whole (`[format, version, [[key, value], ...]]`) or, once
//! the host holds the group, as a delta of just the marked values and the removed keys
//! (`[format, version, upserts, removed]`, `docs/state-format.md`). The host keeps a group as
//! its whole state and the deltas after it; a group is written whole again once its deltas
//! since would outnumber its keys (by a margin that varies by group), so what the host keeps
//! stays under about three times the state.

use std::ops::Range;

use serde::Serialize;
use serde::de::DeserializeOwned;
use smallvec::SmallVec;

use crate::Record;
use crate::envelope::{self, StateFormat};
pub use decode::OldEntries;
use group::Group;

/// A key, held inline up to 24 bytes: most keys (words, ids) take no allocation of their own
/// and lie in their group's table with their values, so that a snapshot reads a group in
/// order rather than chasing a pointer (a cache miss) per key, and a restore allocates nothing
/// per key. (Keys on the heap made a full snapshot of 1 M keys spend two thirds of its time
/// waiting on those misses.)
pub type Key = SmallVec<[u8; 24]>;

/// The keyed state of one subtask: a value per key, for the keys of its key groups.
#[derive(Debug)]
pub struct Keyed<V> {
    /// The first key group this subtask owns.
    start: u32,
    /// One per owned key group, by `group - start`.
    groups: Vec<Group<V>>,
    /// The groups changed since the previous snapshot, in the order they changed.
    changed: Vec<u32>,
}

impl<V> Keyed<V> {
    /// Empty state for the key groups `range`.
    pub fn new(range: Range<u32>) -> Self {
        Self {
            start: range.start,
            groups: range.map(|_| Group::default()).collect(),
            changed: Vec::new(),
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

    /// The record's group, listed as changed.
    fn touch(&mut self, record: &Record<'_>) -> &mut Group<V> {
        let index = self.index(record);
        self.touch_group(index)
    }

    /// Group `index` (from the first this subtask owns), listed as changed.
    fn touch_group(&mut self, index: usize) -> &mut Group<V> {
        let group = &mut self.groups[index];
        if !group.changed {
            group.changed = true;
            self.changed.push(self.start + index as u32);
        }
        group
    }

    /// The value of the record's key, if it has one.
    pub fn get(&self, record: &Record<'_>) -> Option<&V> {
        let group = &self.groups[self.index(record)];
        group.get(record.key).map(|slot| &slot.value)
    }

    /// The value of the record's key, to change.
    pub fn get_mut(&mut self, record: &Record<'_>) -> Option<&mut V> {
        let bucket = self.groups[self.index(record)].find(record.key)?;
        Some(self.touch(record).mark(bucket))
    }

    /// The value of the record's key, made with `make` if it has none yet.
    pub fn or_insert_with(&mut self, record: &Record<'_>, make: impl FnOnce() -> V) -> &mut V {
        let group = self.touch(record);
        let bucket = group.find_or_insert(record.key, make);
        group.mark(bucket)
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
        self.touch(record).put(record.key, value, true)
    }

    /// Removes the record's key; returns its value.
    pub fn remove(&mut self, record: &Record<'_>) -> Option<V> {
        self.groups[self.index(record)].find(record.key)?;
        self.touch(record).remove_key(record.key)
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        self.groups.iter().map(Group::len).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key and its value, group by group.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.groups
            .iter()
            .flat_map(|group| group.iter().map(|slot| (&slot.key[..], &slot.value)))
    }
}

/// One group's part of a snapshot: `(group, delta, state)`, as the WIT's `key-group-state`.
pub(crate) type GroupState = (u32, bool, Vec<u8>);

impl<V: Serialize> Keyed<V> {
    /// The groups changed since the previous call (every group holding keys, with `full`),
    /// each encoded whole or as a delta: empty whole bytes for a group that holds no key.
    pub(crate) fn snapshot(
        &mut self,
        format: StateFormat,
        full: bool,
    ) -> Result<Vec<GroupState>, String> {
        let listed: Vec<u32> = if full {
            let held = self.groups.iter().enumerate();
            let held = held.filter(|(_, g)| g.len() > 0);
            held.map(|(i, _)| self.start + i as u32).collect()
        } else {
            self.changed.clone()
        };
        for &number in &listed {
            self.groups[(number - self.start) as usize].dedup_listed();
        }
        let mut encoded = Vec::with_capacity(listed.len());
        for &number in &listed {
            let group = &self.groups[(number - self.start) as usize];
            let write = |only_dirty| {
                move |out: &mut Vec<u8>| encode::entries(group, only_dirty, format, out)
            };
            encoded.push(match group.goes_whole(number, full) {
                _ if group.len() == 0 => (number, false, Vec::new()),
                true => (number, false, envelope::seal_with(format, write(false))?),
                false => {
                    let delta = envelope::seal_delta_with(format, write(true), group.removed());
                    (number, true, delta?)
                }
            });
        }
        // Only once the whole snapshot is encoded: a failed one leaves the marks for the next.
        // A full snapshot leaves the host with exactly the groups it lists: every other group
        // is no longer held there.
        if full {
            self.groups
                .iter_mut()
                .for_each(|group| group.written(false));
        }
        for &(number, delta, _) in &encoded {
            self.groups[(number - self.start) as usize].written(delta);
        }
        for number in self.changed.drain(..) {
            self.groups[(number - self.start) as usize].changed = false;
        }
        Ok(encoded)
    }
}

/// What a group's state is loaded by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Load {
    /// `restore`: into a group that holds nothing yet, each group given whole at most once.
    Restore,
    /// `restore-changes`: on top of what was loaded; a group given whole replaces the group.
    Changes,
}

impl<V: DeserializeOwned> Keyed<V> {
    /// Loads `state` into `group`: its whole state, or a delta on top of what was loaded, written
    /// by `snapshot` in `format` or, through `migrate`, in an older version of it. Loaded by
    /// `restore-changes`, what it changes counts as changed since the previous snapshot.
    pub(crate) fn restore_group(
        &mut self,
        (number, delta, state): (u32, bool, &[u8]),
        load: Load,
        format: StateFormat,
        migrate: impl FnOnce(u32, OldEntries<'_, V>) -> Result<(), String>,
    ) -> Result<(), String> {
        let Some(index) = number
            .checked_sub(self.start)
            .filter(|&i| i < self.groups.len() as u32)
        else {
            let range = self.range();
            return Err(format!(
                "key group {number} is not one of this subtask's {range:?}"
            ));
        };
        if load == Load::Changes {
            self.touch_group(index as usize);
            if !delta {
                self.groups[index as usize].replaced();
            }
        }
        let group = &mut self.groups[index as usize];
        let Some(opened) = open_group(number, delta, state, format)? else {
            return Ok(());
        };
        if load == Load::Restore && !delta && group.len() > 0 {
            return Err(format!("key group {number} was given whole twice"));
        }
        if let Some(removed) = opened.removed {
            let removed: Vec<serde_bytes::ByteBuf> = envelope::decode_payload(removed)?;
            removed.iter().for_each(|key| drop(group.remove_key(key)));
        }
        let mut into = decode::Loading { group, load };
        if opened.version == format.version {
            // Straight into the group, keys borrowed from the payload.
            return decode::fill(opened.payload, &mut into);
        }
        migrate(opened.version, OldEntries::new(opened.payload, into))
    }
}

/// A group's state as given to `restore`, opened and checked against `format` and `delta`;
/// none for the empty whole state of a group without keys.
fn open_group(
    number: u32,
    delta: bool,
    state: &[u8],
    format: StateFormat,
) -> Result<Option<envelope::Envelope<'_>>, String> {
    if state.is_empty() && !delta {
        return Ok(None);
    }
    let opened = envelope::open(state)?;
    opened.expect_format(format.name)?;
    if opened.removed.is_some() != delta {
        let what = if delta { "a delta" } else { "whole state" };
        return Err(format!(
            "key group {number}: given as {what}, the state says otherwise"
        ));
    }
    Ok(Some(opened))
}

mod decode;
mod encode;
mod group;
#[cfg(test)]
mod tests;
