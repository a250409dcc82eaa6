//! One key group's keys, and what changed in it since the previous snapshot.
//!
//! The keys are in a hash table (hashbrown's, with its fast default hasher), each with its value
//! and the epoch it was last written in (its mark). A snapshot of a few changes finds their slots
//! by the buckets listed when they were marked, reading each slot once rather than probing for
//! its key again (a lookup is two cache misses at 1 M keys: the table's control bytes, then the
//! slot). Buckets stay where they are until the table rehashes, which only making room for a
//! key does: the group lists its marked buckets again when that happens.

use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};
use serde::Serialize;

use super::Key;

/// A key's value, and the group's epoch in which it was last written: the slot is dirty (written
/// since the previous snapshot) while that is the group's current epoch, so that a snapshot
/// clears every mark at once by moving to the next epoch, without visiting a slot.
#[derive(Debug)]
pub(super) struct Slot<V> {
    pub(super) value: V,
    pub(super) marked: u32,
}

impl<V> Slot<V> {
    /// A slot not written since the previous snapshot (epochs start at 1).
    pub(super) fn clean(value: V) -> Self {
        Slot { value, marked: 0 }
    }
}

/// One key group's keys, and what changed in it since the previous snapshot.
#[derive(Debug)]
pub(super) struct Group<V> {
    table: HashTable<(Key, Slot<V>)>,
    hasher: DefaultHashBuilder,
    /// Whether it is listed in `Keyed::changed`.
    pub(super) changed: bool,
    /// Slots marked dirty.
    dirty: usize,
    /// The current epoch: slots marked in it are dirty. Never 0.
    pub(super) epoch: u32,
    /// The buckets of the slots marked dirty, while they are few enough (see [`Group::mark`])
    /// that visiting them beats scanning the group; `None` once they are not. Possibly
    /// repeated, and possibly empty by now (a key removed).
    pub(super) listed: Option<Vec<u32>>,
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
            table: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
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

impl<V> Group<V> {
    /// The keys held.
    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    /// Every key and its slot.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Key, &Slot<V>)> {
        self.table.iter().map(|(key, slot)| (key, slot))
    }

    /// The slot of `key`, if held.
    pub(super) fn get(&self, key: &[u8]) -> Option<&Slot<V>> {
        let hash = self.hasher.hash_one(key);
        let (_, slot) = self.table.find(hash, |(k, _)| k[..] == *key)?;
        Some(slot)
    }

    /// The bucket of `key`, if held.
    pub(super) fn find(&self, key: &[u8]) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        self.table.find_bucket_index(hash, |(k, _)| k[..] == *key)
    }

    /// The bucket of `key`, given a slot with `make`'s value if it has none.
    pub(super) fn find_or_insert(&mut self, key: &[u8], make: impl FnOnce() -> V) -> usize {
        self.make_room();
        let hash = self.hasher.hash_one(key);
        let hasher = &self.hasher;
        let rehash = |(k, _): &(Key, Slot<V>)| hasher.hash_one(&k[..]);
        match self.table.entry(hash, |(k, _)| k[..] == *key, rehash) {
            Entry::Occupied(entry) => entry.bucket_index(),
            Entry::Vacant(entry) => entry
                .insert((Key::from_slice(key), Slot::clean(make())))
                .bucket_index(),
        }
    }

    /// Room for one more key, so that inserting it moves no slot.
    fn make_room(&mut self) {
        self.reserve(1);
    }

    /// Room for `n` more keys. Making room can rehash, which moves the slots (and changes the
    /// capacity: there was not room enough): the marked ones are listed again.
    pub(super) fn reserve(&mut self, n: usize) {
        let capacity = self.table.capacity();
        let hasher = &self.hasher;
        self.table.reserve(n, |(k, _)| hasher.hash_one(&k[..]));
        if self.table.capacity() != capacity && self.listed.is_some() {
            self.listed = self.marked_buckets();
        }
    }

    /// The buckets of the dirty slots, if few enough to list.
    fn marked_buckets(&self) -> Option<Vec<u32>> {
        match self.dirty {
            0 => return Some(Vec::new()),
            dirty if dirty > self.listable() => return None,
            _ => {}
        }
        let marked = self.table.iter_buckets().filter(|&bucket| {
            let slot = self.table.get_bucket(bucket).map(|(_, slot)| slot);
            slot.is_some_and(|slot| slot.marked == self.epoch)
        });
        Some(marked.map(|bucket| bucket as u32).collect())
    }

    /// How many buckets may be listed: an eighth of the group's keys, and at least 64.
    fn listable(&self) -> usize {
        64.max(self.table.len() / 8)
    }

    /// Marks the slot in `bucket` (just found) dirty; its value, to change. Its bucket is listed
    /// while the listed ones are [few enough](Group::listable): a snapshot then visits just them,
    /// and otherwise scans the group.
    pub(super) fn mark(&mut self, bucket: usize) -> &mut V {
        let listable = self.listable();
        let (_, slot) = self
            .table
            .get_bucket_mut(bucket)
            .expect("a bucket marked is one just found");
        if slot.marked != self.epoch {
            slot.marked = self.epoch;
            self.dirty += 1;
            if let Some(listed) = &mut self.listed {
                if listed.len() < listable {
                    listed.push(bucket as u32);
                } else {
                    self.listed = None;
                }
            }
        }
        &mut slot.value
    }

    /// Sets `key`'s value, marked dirty with `mark` (else as restored); the value it had.
    pub(super) fn put(&mut self, key: &[u8], value: V, mark: bool) -> Option<V> {
        let mut value = Some(value);
        let bucket = self.find_or_insert(key, || value.take().expect("made once"));
        let slot = match mark {
            true => self.mark(bucket),
            false => {
                let (_, slot) = self.table.get_bucket_mut(bucket).expect("just found");
                &mut slot.value
            }
        };
        value.map(|value| std::mem::replace(slot, value))
    }

    /// Removes `key`, remembering it for the next delta if the host holds the group.
    pub(super) fn remove_key(&mut self, key: &[u8]) -> Option<V> {
        let hash = self.hasher.hash_one(key);
        let entry = self.table.find_entry(hash, |(k, _)| k[..] == *key).ok()?;
        let ((key, slot), _) = entry.remove();
        self.dirty -= usize::from(slot.marked == self.epoch);
        if self.based {
            self.removed.push(key);
        }
        Some(slot.value)
    }

    /// Whether the changes of group `number` go whole: the host does not hold it, or its
    /// deltas since it was last written whole would outnumber its keys, by a margin of
    /// `(number × 67 mod 128) / 128` of them: 128 consecutive groups take 128 different
    /// margins. The margin staggers the groups: keys that change uniformly would otherwise
    /// bring every group to its threshold at the same checkpoint, and that one checkpoint
    /// would write (and pause for) the whole state.
    pub(super) fn goes_whole(&self, number: u32, full: bool) -> bool {
        let keys = self.table.len();
        let threshold = keys + keys * ((number * 67) % 128) as usize / 128;
        full || !self.based || self.since_whole + self.dirty + self.removed.len() > threshold
    }

    /// Sorts the listed buckets and drops repeats, so that each is written once (and the
    /// table is read in order).
    pub(super) fn dedup_listed(&mut self) {
        if let Some(buckets) = &mut self.listed {
            buckets.sort_unstable();
            buckets.dedup();
        }
    }

    /// Clears the marks of a group just written, whole or as a delta: the next epoch (after
    /// 2^32 - 1 of them, every slot is visited once to start again at 1).
    pub(super) fn written(&mut self, delta: bool) {
        if self.dirty > 0 {
            self.epoch = match self.epoch.checked_add(1) {
                Some(next) => next,
                None => {
                    self.table.iter_mut().for_each(|(_, slot)| slot.marked = 0);
                    1
                }
            };
        }
        self.listed = Some(Vec::new());
        self.since_whole = match delta {
            true => self.since_whole + self.dirty + self.removed.len(),
            false => 0,
        };
        self.based = !self.table.is_empty();
        self.dirty = 0;
        self.removed.clear();
    }

    /// Its keys replaced by a whole state to come: written whole at the next snapshot.
    pub(super) fn replaced(&mut self) {
        self.table.clear();
        self.dirty = 0;
        self.listed = Some(Vec::new());
        self.removed.clear();
        self.based = false;
    }

    /// How many more keys it takes before the table must grow.
    #[cfg(test)]
    pub(super) fn room(&self) -> usize {
        self.table.capacity() - self.table.len()
    }

    /// The keys removed since the previous snapshot (a delta's removals).
    pub(super) fn removed(&self) -> &[Key] {
        &self.removed
    }
}

/// A group's entries as the envelope's payload: `[[bin key, value], ...]`; with `only_dirty`,
/// just the values written since the previous snapshot (a delta's upserts).
pub(super) struct Entries<'a, V> {
    pub(super) group: &'a Group<V>,
    pub(super) only_dirty: bool,
}

impl<V: Serialize> Serialize for Entries<'_, V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let Self { group, only_dirty } = *self;
        let len = if only_dirty {
            group.dirty
        } else {
            group.table.len()
        };
        let mut seq = serializer.serialize_seq(Some(len))?;
        let mut written = 0;
        let mut entry = |(key, slot): &(Key, Slot<V>)| {
            written += 1;
            seq.serialize_element(&(serde_bytes::Bytes::new(key), &slot.value))
        };
        let dirty = |(_, slot): &&(Key, Slot<V>)| slot.marked == group.epoch;
        match (only_dirty, &group.listed) {
            (false, _) => group.table.iter().try_for_each(&mut entry)?,
            // Listed buckets are sorted and unique by now ([`Group::dedup_listed`]).
            (true, Some(buckets)) => buckets
                .iter()
                .filter_map(|&bucket| group.table.get_bucket(bucket as usize))
                .filter(dirty)
                .try_for_each(&mut entry)?,
            (true, None) => group.table.iter().filter(dirty).try_for_each(&mut entry)?,
        }
        // The array's length went first: a miscount would be a corrupt state, refused here.
        if written != len {
            let error = format!("{written} entries found of the {len} counted (an SDK bug)");
            return Err(serde::ser::Error::custom(error));
        }
        seq.end()
    }
}
