//! Keyed state: one value per key, kept by the SDK by key group, so that an author never
//! handles key groups and yet every checkpoint costs what changed, not what exists, and a job
//! can resume at another parallelism.
//!
//! Each key group this subtask owns has its own hash map (hashbrown, with its fast default
//! hasher); the record's group comes from the batch, where the host put it. A lookup hashes
//! the key once and allocates nothing; only a key seen for the first time is copied. A value
//! written since the previous snapshot is marked in its slot, and its group listed. A snapshot
//! encodes each listed group either whole (`[format, version, [[key, value], ...]]`) or, once
//! the host holds the group, as a delta of just the marked values and the removed keys
//! (`[format, version, upserts, removed]`, `docs/state-format.md`). The host keeps a group as
//! its whole state and the deltas after it; a group is written whole again once its deltas
//! since would outnumber its keys (by a margin that varies by group), so what the host keeps
//! stays under about three times the state.

use std::ops::Range;

use hashbrown::HashMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use smallvec::SmallVec;

use crate::Record;
use crate::envelope::{self, StateFormat};

/// A key, held inline up to 24 bytes: most keys (words, ids) take no allocation of their own
/// and lie in their group's table with their values, so that a snapshot reads a group in
/// order rather than chasing a pointer (a cache miss) per key, and a restore allocates nothing
/// per key. (Keys on the heap made a full snapshot of 1 M keys spend two thirds of its time
/// waiting on those misses.)
pub type Key = SmallVec<[u8; 24]>;

/// A key as looked up: `[u8]` that a [`Key`] borrows as, so that an entry is found with one hash
/// and only a key seen for the first time is copied into the map (hashbrown's `entry_ref` makes
/// the owned key with `ToOwned`, which `[u8]` implements for `Vec<u8>` only). It hashes and
/// compares as `[u8]`, as a `Key` does.
#[derive(Debug, Hash, PartialEq, Eq)]
#[repr(transparent)]
struct KeyRef([u8]);

impl KeyRef {
    #[allow(unsafe_code)]
    fn new(bytes: &[u8]) -> &KeyRef {
        // SAFETY: `KeyRef` is a `repr(transparent)` wrapper of `[u8]`: same layout, same
        // pointer metadata (the idiom of `std::path::Path` over `OsStr`).
        unsafe { &*(bytes as *const [u8] as *const KeyRef) }
    }
}

impl ToOwned for KeyRef {
    type Owned = Key;

    fn to_owned(&self) -> Key {
        Key::from_slice(&self.0)
    }
}

impl std::borrow::Borrow<KeyRef> for Key {
    fn borrow(&self) -> &KeyRef {
        KeyRef::new(self)
    }
}

/// A key's value, and the group's epoch in which it was last written: the slot is dirty (written
/// since the previous snapshot) while that is the group's current epoch, so that a snapshot
/// clears every mark at once by moving to the next epoch, without visiting a slot.
#[derive(Debug)]
struct Slot<V> {
    value: V,
    marked: u32,
}

impl<V> Slot<V> {
    /// A slot not written since the previous snapshot (epochs start at 1).
    fn clean(value: V) -> Self {
        Slot { value, marked: 0 }
    }
}

/// One key group's keys, and what changed in it since the previous snapshot.
#[derive(Debug)]
struct Group<V> {
    map: HashMap<Key, Slot<V>>,
    /// Whether it is listed in `Keyed::changed`.
    changed: bool,
    /// Slots marked dirty.
    dirty: usize,
    /// The current epoch: slots marked in it are dirty. Never 0.
    epoch: u32,
    /// The keys of the slots marked dirty, while they are few enough (see [`Group::mark`])
    /// that visiting them beats scanning the group; `None` once they are not. Possibly
    /// repeated (a key removed and inserted again), and possibly no longer held.
    listed: Option<Vec<Key>>,
    /// Keys removed since the previous snapshot, kept only while the group is `based`.
    removed: Vec<Key>,
    /// Whether the host holds the group as of the previous snapshot, so that a change can go
    /// as a delta on top of it.
    based: bool,
    /// Entries written in deltas since the group was last written whole.
    since_whole: usize,
}

impl<V> Default for Group<V> {
    fn default() -> Self {
        Self {
            map: HashMap::default(),
            changed: false,
            dirty: 0,
            epoch: 1,
            listed: Some(Vec::new()),
            removed: Vec::new(),
            based: false,
            since_whole: 0,
        }
    }
}

/// The marks of a group, apart from its map (which holds the slot being marked).
struct Marks<'a> {
    dirty: &'a mut usize,
    epoch: u32,
    listed: &'a mut Option<Vec<Key>>,
    /// The keys the group holds.
    keys: usize,
}

impl Marks<'_> {
    /// Marks `slot`, of `key`, dirty. Its key is listed while the listed keys are at most an
    /// eighth of the group's (and 64): a snapshot then visits just them, and otherwise scans.
    fn mark<'v, V>(self, slot: &'v mut Slot<V>, key: &[u8]) -> &'v mut V {
        if slot.marked != self.epoch {
            slot.marked = self.epoch;
            *self.dirty += 1;
            if let Some(keys) = self.listed {
                if keys.len() < 64.max(self.keys / 8) {
                    keys.push(Key::from_slice(key));
                } else {
                    *self.listed = None;
                }
            }
        }
        &mut slot.value
    }
}

impl<V> Group<V> {
    /// Removes `key`, remembering it for the next delta if the host holds the group.
    fn remove_key(&mut self, key: &[u8]) -> Option<V> {
        let (key, slot) = self.map.remove_entry(key)?;
        self.dirty -= usize::from(slot.marked == self.epoch);
        if self.based {
            self.removed.push(key);
        }
        Some(slot.value)
    }

    /// Its map, and its marks.
    fn parts(&mut self) -> (&mut HashMap<Key, Slot<V>>, Marks<'_>) {
        let keys = self.map.len();
        let Group {
            map,
            dirty,
            epoch,
            listed,
            ..
        } = self;
        (
            map,
            Marks {
                dirty,
                epoch: *epoch,
                listed,
                keys,
            },
        )
    }

    /// Whether the changes of group `number` go whole: the host does not hold it, or its
    /// deltas since it was last written whole would outnumber its keys, by a margin of
    /// `(number × 67 mod 128) / 128` of them: 128 consecutive groups take 128 different
    /// margins. The margin staggers the groups: keys that change uniformly would otherwise
    /// bring every group to its threshold at the same checkpoint, and that one checkpoint
    /// would write (and pause for) the whole state.
    fn goes_whole(&self, number: u32, full: bool) -> bool {
        let keys = self.map.len();
        let threshold = keys + keys * ((number * 67) % 128) as usize / 128;
        full || !self.based || self.since_whole + self.dirty + self.removed.len() > threshold
    }
}

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
        group.map.get(record.key).map(|slot| &slot.value)
    }

    /// The value of the record's key, to change.
    pub fn get_mut(&mut self, record: &Record<'_>) -> Option<&mut V> {
        if !self.groups[self.index(record)].map.contains_key(record.key) {
            return None;
        }
        let (map, marks) = self.touch(record).parts();
        map.get_mut(record.key)
            .map(|slot| marks.mark(slot, record.key))
    }

    /// The value of the record's key, made with `make` if it has none yet.
    pub fn or_insert_with(&mut self, record: &Record<'_>, make: impl FnOnce() -> V) -> &mut V {
        let (map, marks) = self.touch(record).parts();
        let slot = map
            .entry_ref(KeyRef::new(record.key))
            .or_insert_with(|| Slot::clean(make()));
        marks.mark(slot, record.key)
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
        let (map, marks) = self.touch(record).parts();
        if let Some(slot) = map.get_mut(record.key) {
            return Some(std::mem::replace(marks.mark(slot, record.key), value));
        }
        let slot = Slot::clean(value);
        marks.mark(
            map.entry_ref(KeyRef::new(record.key))
                .insert(slot)
                .into_mut(),
            record.key,
        );
        None
    }

    /// Removes the record's key; returns its value.
    pub fn remove(&mut self, record: &Record<'_>) -> Option<V> {
        if !self.groups[self.index(record)].map.contains_key(record.key) {
            return None;
        }
        self.touch(record).remove_key(record.key)
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.map.len()).sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(|g| g.map.is_empty())
    }

    /// Every key and its value, group by group.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &V)> {
        self.groups
            .iter()
            .flat_map(|group| group.map.iter().map(|(k, slot)| (&k[..], &slot.value)))
    }
}

/// A group's entries as the envelope's payload: `[[bin key, value], ...]`; with `only_dirty`,
/// just the values written since the previous snapshot (a delta's upserts).
struct Entries<'a, V> {
    group: &'a Group<V>,
    only_dirty: bool,
}

impl<V: Serialize> Serialize for Entries<'_, V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let Self { group, only_dirty } = *self;
        let len = if only_dirty {
            group.dirty
        } else {
            group.map.len()
        };
        let mut seq = serializer.serialize_seq(Some(len))?;
        let mut entry = |(key, slot): (&Key, &Slot<V>)| {
            seq.serialize_element(&(serde_bytes::Bytes::new(key), &slot.value))
        };
        match (only_dirty, &group.listed) {
            (false, _) => group.map.iter().try_for_each(&mut entry)?,
            // Listed keys are sorted and unique by now ([`Group::dedup_listed`]).
            (true, Some(keys)) => keys
                .iter()
                .filter_map(|key| group.map.get_key_value(key))
                .filter(|(_, slot)| slot.marked == group.epoch)
                .try_for_each(&mut entry)?,
            (true, None) => group
                .map
                .iter()
                .filter(|(_, s)| s.marked == group.epoch)
                .try_for_each(&mut entry)?,
        }
        seq.end()
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
            let held = held.filter(|(_, g)| !g.map.is_empty());
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
            encoded.push(match group.goes_whole(number, full) {
                _ if group.map.is_empty() => (number, false, Vec::new()),
                true => (number, false, envelope::seal(format, &whole(group))?),
                false => {
                    let upserts = Entries {
                        group,
                        only_dirty: true,
                    };
                    (
                        number,
                        true,
                        envelope::seal_delta(format, &upserts, &group.removed)?,
                    )
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

fn whole<V>(group: &Group<V>) -> Entries<'_, V> {
    Entries {
        group,
        only_dirty: false,
    }
}

impl<V> Group<V> {
    /// Sorts the listed keys and drops repeats, so that each is written once.
    fn dedup_listed(&mut self) {
        if let Some(keys) = &mut self.listed {
            keys.sort_unstable();
            keys.dedup();
        }
    }

    /// Clears the marks of a group just written, whole or as a delta: the next epoch (after
    /// 2^32 - 1 of them, every slot is visited once to start again at 1).
    fn written(&mut self, delta: bool) {
        if self.dirty > 0 {
            self.epoch = match self.epoch.checked_add(1) {
                Some(next) => next,
                None => {
                    self.map.values_mut().for_each(|slot| slot.marked = 0);
                    1
                }
            };
        }
        self.listed = Some(Vec::new());
        self.since_whole = match delta {
            true => self.since_whole + self.dirty + self.removed.len(),
            false => 0,
        };
        self.based = !self.map.is_empty();
        self.dirty = 0;
        self.removed.clear();
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
        migrate: impl FnOnce(u32, &[u8]) -> Result<crate::Entries<V>, String>,
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
        if load == Load::Restore && !delta && !group.map.is_empty() {
            return Err(format!("key group {number} was given whole twice"));
        }
        if let Some(removed) = opened.removed {
            let removed: Vec<serde_bytes::ByteBuf> = envelope::decode_payload(removed)?;
            removed.iter().for_each(|key| drop(group.remove_key(key)));
        }
        let entries = match (load, opened.version == format.version) {
            // The fast path of a restore: straight into the map.
            (Load::Restore, true) => return decode::fill(opened.payload, &mut group.map),
            (Load::Changes, true) => decode::entries(opened.payload)?,
            (_, false) => migrate(opened.version, opened.payload)?,
        };
        group.map.reserve(entries.len());
        for (key, value) in entries {
            match load {
                Load::Restore => drop(group.map.insert(key, Slot::clean(value))),
                Load::Changes => group.upsert_marked(key, value),
            }
        }
        Ok(())
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

impl<V> Group<V> {
    /// Its keys replaced by a whole state to come: written whole at the next snapshot.
    fn replaced(&mut self) {
        self.map.clear();
        self.dirty = 0;
        self.listed = Some(Vec::new());
        self.removed.clear();
        self.based = false;
    }

    /// Sets `key`'s value, marking it dirty.
    fn upsert_marked(&mut self, key: Key, value: V) {
        let bytes = key.clone();
        let (map, marks) = self.parts();
        let slot = match map.entry(key) {
            hashbrown::hash_map::Entry::Occupied(entry) => {
                let slot = entry.into_mut();
                slot.value = value;
                slot
            }
            hashbrown::hash_map::Entry::Vacant(entry) => entry.insert(Slot::clean(value)),
        };
        marks.mark(slot, &bytes);
    }
}

/// Decodes the payload of a key group written in an older version, whose values were of type
/// `Old`: for an operator's `migrate`.
pub fn old_entries<Old: DeserializeOwned>(payload: &[u8]) -> Result<crate::Entries<Old>, String> {
    decode::entries(payload)
}

mod decode;
#[cfg(test)]
mod tests;
