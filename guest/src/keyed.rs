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

/// A key decoded from MessagePack `bin`, straight into a [`Key`].
struct KeyBuf(Key);

impl<'de> serde::Deserialize<'de> for KeyBuf {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(KeyBuf(Key::new()))
    }
}

impl<'de> serde::de::Visitor<'de> for KeyBuf {
    type Value = KeyBuf;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a key (bin)")
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<KeyBuf, E> {
        Ok(KeyBuf(Key::from_slice(bytes)))
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

/// Decodes a group's payload, `[[bin key, value], ...]`, straight into its map: no list of
/// entries in between.
struct IntoMap<'m, V>(&'m mut HashMap<Key, Slot<V>>);

impl<'de, V: DeserializeOwned> serde::de::DeserializeSeed<'de> for IntoMap<'_, V> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, V: DeserializeOwned> serde::de::Visitor<'de> for IntoMap<'_, V> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of [bin key, value]")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.reserve(seq.size_hint().unwrap_or(0));
        while let Some((KeyBuf(key), value)) = seq.next_element::<(KeyBuf, V)>()? {
            self.0.insert(key, Slot::clean(value));
        }
        Ok(())
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
        let group = self.touch(record);
        let (key, slot) = group.map.remove_entry(record.key)?;
        group.dirty -= usize::from(slot.marked == group.epoch);
        if group.based {
            group.removed.push(key);
        }
        Some(slot.value)
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

impl<V: DeserializeOwned> Keyed<V> {
    /// Loads `state` into `group`: its whole state, or a delta on top of what was loaded, written
    /// by `snapshot` in `format` or, through `migrate`, in an older version of it.
    pub(crate) fn restore_group(
        &mut self,
        (number, delta, state): (u32, bool, &[u8]),
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
        let map = &mut self.groups[index as usize].map;
        if state.is_empty() && !delta {
            return Ok(());
        }
        let opened = envelope::open(state)?;
        opened.expect_format(format.name)?;
        if opened.removed.is_some() != delta {
            let what = if delta { "a delta" } else { "whole state" };
            return Err(format!(
                "key group {number}: given as {what}, the state says otherwise"
            ));
        }
        if !delta && !map.is_empty() {
            return Err(format!("key group {number} was given whole twice"));
        }
        if let Some(removed) = opened.removed {
            let removed: Vec<serde_bytes::ByteBuf> = envelope::decode_payload(removed)?;
            removed.iter().for_each(|key| drop(map.remove(&key[..])));
        }
        if opened.version == format.version {
            return envelope::decode_payload_with(opened.payload, IntoMap(map));
        }
        let migrated = migrate(opened.version, opened.payload)?;
        map.reserve(migrated.len());
        map.extend(
            migrated
                .into_iter()
                .map(|(key, value)| (key, Slot::clean(value))),
        );
        Ok(())
    }
}

/// Decodes the payload of a key group written in an older version, whose values were of type
/// `Old`: for an operator's `migrate`.
pub fn old_entries<Old: DeserializeOwned>(payload: &[u8]) -> Result<crate::Entries<Old>, String> {
    let entries: Vec<(KeyBuf, Old)> = envelope::decode_payload(payload)?;
    Ok(entries.into_iter().map(|(KeyBuf(k), v)| (k, v)).collect())
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

    fn numbers(snapshot: &[GroupState]) -> Vec<(u32, bool)> {
        snapshot.iter().map(|&(g, delta, _)| (g, delta)).collect()
    }

    /// A fresh state of `range` restored from `chain`, applied in order.
    fn restored(range: Range<u32>, chain: &[GroupState]) -> Keyed<u64> {
        let mut keyed = Keyed::new(range);
        let refuse = |v: u32, _: &[u8]| Err(format!("v{v}"));
        for (g, delta, state) in chain {
            keyed
                .restore_group((*g, *delta, state), COUNTS, refuse)
                .unwrap();
        }
        keyed
    }

    #[test]
    fn only_changed_groups_are_snapshotted_and_emptied_ones_say_so() {
        let mut keyed: Keyed<u64> = Keyed::new(10..20);
        *keyed.or_default(&record(b"a", 11)) += 1;
        *keyed.or_default(&record(b"b", 12)) += 2;
        let first = keyed.snapshot(COUNTS, false).unwrap();
        assert_eq!(numbers(&first), [(11, false), (12, false)]);
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
        assert_eq!(second, [(12, false, Vec::new())]);
        let full = keyed.snapshot(COUNTS, true).unwrap();
        assert_eq!(numbers(&full), [(11, false)]);
    }

    #[test]
    fn a_few_changes_go_as_a_delta_of_just_them_and_the_chain_restores_exactly() {
        let mut keyed: Keyed<u64> = Keyed::new(0..1);
        let keys: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_string().into_bytes()).collect();
        let at = |k: &[u8]| Record {
            key: k.to_vec().leak(),
            value: b"",
            timestamp: 0,
            key_group: Some(0),
        };
        keys.iter().for_each(|k| *keyed.or_default(&at(k)) += 1);
        let mut chain = keyed.snapshot(COUNTS, true).unwrap();
        *keyed.or_default(&at(b"7")) += 10;
        keyed.insert(&at(b"new"), 5);
        keyed.remove(&at(b"9"));
        let delta = keyed.snapshot(COUNTS, false).unwrap();
        assert_eq!(numbers(&delta), [(0, true)]);
        assert!(
            delta[0].2.len() * 20 < chain[0].2.len(),
            "a delta of 3 entries is a fraction of 100: {} vs {} bytes",
            delta[0].2.len(),
            chain[0].2.len()
        );
        chain.extend(delta);
        let back = restored(0..1, &chain);
        let mut expected: Vec<(Vec<u8>, u64)> =
            keyed.iter().map(|(k, v)| (k.to_vec(), *v)).collect();
        let mut found: Vec<(Vec<u8>, u64)> = back.iter().map(|(k, v)| (k.to_vec(), *v)).collect();
        expected.sort();
        found.sort();
        assert_eq!(found, expected);
        assert_eq!(back.get(&at(b"7")), Some(&11));
        assert_eq!(back.get(&at(b"9")), None);
    }

    /// Keeps `keyed` and a copy restored from every snapshot taken, and checks they agree.
    struct Mirror {
        chain: Vec<GroupState>,
    }

    impl Mirror {
        fn snapshot(&mut self, keyed: &mut Keyed<u64>, full: bool) -> Vec<(u32, bool)> {
            let taken = keyed.snapshot(COUNTS, full).unwrap();
            if full {
                self.chain.clear();
            }
            let kinds = numbers(&taken);
            for (g, delta, state) in taken {
                if !delta {
                    self.chain.retain(|(h, ..)| *h != g);
                }
                if delta || !state.is_empty() {
                    self.chain.push((g, delta, state));
                }
            }
            let back = restored(keyed.range(), &self.chain);
            let sorted = |k: &Keyed<u64>| {
                let mut all: Vec<(Vec<u8>, u64)> =
                    k.iter().map(|(k, v)| (k.to_vec(), *v)).collect();
                all.sort();
                all
            };
            assert_eq!(sorted(&back), sorted(keyed));
            kinds
        }
    }

    #[test]
    fn deltas_are_exact_whether_their_keys_were_listed_or_scanned_for() {
        let mut keyed: Keyed<u64> = Keyed::new(0..1);
        let key = |i: u32| Record {
            key: i.to_string().into_bytes().leak(),
            value: b"",
            timestamp: 0,
            key_group: Some(0),
        };
        (0..1000).for_each(|i| *keyed.or_default(&key(i)) += 1);
        let mut mirror = Mirror { chain: Vec::new() };
        assert_eq!(mirror.snapshot(&mut keyed, false), [(0, false)]);
        // A few: listed. A key removed and inserted again is written once.
        (0..10).for_each(|i| *keyed.or_default(&key(i)) += 1);
        keyed.remove(&key(3));
        keyed.insert(&key(3), 7);
        keyed.remove(&key(4));
        assert_eq!(mirror.snapshot(&mut keyed, false), [(0, true)]);
        // Many: more than an eighth of the group, scanned for.
        (100..600).for_each(|i| *keyed.get_mut(&key(i)).unwrap() += 5);
        assert_eq!(keyed.groups[0].listed, None);
        assert_eq!(mirror.snapshot(&mut keyed, false), [(0, true)]);
        assert!(
            keyed.groups[0].listed.is_some(),
            "listing again after a snapshot"
        );
        keyed.insert(&key(5000), 1);
        assert_eq!(mirror.snapshot(&mut keyed, true), [(0, false)]);
    }

    #[test]
    fn a_group_goes_whole_again_once_its_deltas_would_outnumber_its_keys() {
        let mut keyed: Keyed<u64> = Keyed::new(0..1);
        for key in [b"a", b"b", b"c", b"d"] {
            keyed.insert(&record(key, 0), 0);
        }
        keyed.snapshot(COUNTS, false).unwrap();
        let mut kinds = Vec::new();
        for round in 0..4 {
            keyed.insert(&record(b"a", 0), round);
            keyed.insert(&record(b"b", 0), round);
            kinds.push(numbers(&keyed.snapshot(COUNTS, false).unwrap())[0].1);
        }
        // 2 + 2 deltas of 2 entries make 4, as many as the keys; the third would make 6.
        assert_eq!(kinds, [true, true, false, true]);
    }

    #[test]
    fn a_failed_restore_names_the_group_and_a_delta_must_say_so() {
        let mut keyed: Keyed<u64> = Keyed::new(0..1);
        keyed.insert(&record(b"a", 0), 1);
        let whole = keyed.snapshot(COUNTS, true).unwrap();
        keyed.insert(&record(b"a", 0), 2);
        let delta = keyed.snapshot(COUNTS, false).unwrap();
        assert_eq!(numbers(&delta), [(0, true)]);
        let refuse = |v: u32, _: &[u8]| Err(format!("v{v}"));
        let mut fresh: Keyed<u64> = Keyed::new(0..1);
        let error = fresh
            .restore_group((0, false, &delta[0].2), COUNTS, refuse)
            .unwrap_err();
        assert_eq!(
            error,
            "key group 0: given as whole state, the state says otherwise"
        );
        fresh
            .restore_group((0, false, &whole[0].2), COUNTS, refuse)
            .unwrap();
        let twice = fresh.restore_group((0, false, &whole[0].2), COUNTS, refuse);
        assert_eq!(twice.unwrap_err(), "key group 0 was given whole twice");
    }

    #[test]
    fn groups_round_trip_and_older_versions_go_through_migrate() {
        let mut keyed: Keyed<u64> = Keyed::new(0..4);
        *keyed.or_default(&record(b"apple", 0)) += 3;
        let groups = keyed.snapshot(COUNTS, true).unwrap();
        let mut restored: Keyed<u64> = Keyed::new(0..4);
        let refuse = |v: u32, _: &[u8]| Err(format!("v{v}"));
        restored
            .restore_group((0, false, &groups[0].2), COUNTS, refuse)
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
        restored
            .restore_group((1, false, &v1), COUNTS, migrate)
            .unwrap();
        assert_eq!(restored.get(&record(b"pear", 1)), Some(&50));
        let error = restored
            .restore_group((9, false, &v1), COUNTS, refuse)
            .unwrap_err();
        assert_eq!(error, "key group 9 is not one of this subtask's 0..4");
    }

    #[test]
    fn marks_survive_the_epoch_wrapping_around() {
        let mut keyed: Keyed<u64> = Keyed::new(0..1);
        *keyed.or_default(&record(b"a", 0)) += 1;
        *keyed.or_default(&record(b"b", 0)) += 1;
        keyed.snapshot(COUNTS, true).unwrap();
        keyed.groups[0].epoch = u32::MAX;
        *keyed.or_default(&record(b"a", 0)) += 1;
        let delta = keyed.snapshot(COUNTS, false).unwrap();
        assert_eq!(numbers(&delta), vec![(0, true)]);
        assert_eq!(keyed.groups[0].epoch, 1);
        assert!(keyed.groups[0].map.values().all(|slot| slot.marked == 0));
        // Only `b` is written since: a delta of exactly one upsert.
        *keyed.or_default(&record(b"b", 0)) += 1;
        let delta = keyed.snapshot(COUNTS, false).unwrap();
        let opened = envelope::open(&delta[0].2).unwrap();
        let upserts: Vec<(serde_bytes::ByteBuf, u64)> =
            envelope::decode_payload(opened.payload).unwrap();
        assert_eq!(
            upserts,
            vec![(serde_bytes::ByteBuf::from(b"b".to_vec()), 2)]
        );
    }
}
