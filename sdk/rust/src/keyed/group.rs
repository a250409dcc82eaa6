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

use super::Key;

/// A key, its value, and the group's epoch in which it was last written: the slot is dirty
/// (written since the previous snapshot) while that is the group's current epoch, so that a
/// snapshot clears every mark at once by moving to the next epoch, without visiting a slot.
///
/// One struct, not a key beside a (value, mark) pair, so that the compiler packs its fields:
/// a counter's slot is 40 bytes in a guest, not 48 (the mark fills the key's tail), and a
/// snapshot, which reads every slot of a group, reads a sixth less memory.
#[derive(Debug)]
pub(super) struct Slot<V> {
    pub(super) key: Key,
    pub(super) marked: u32,
    pub(super) value: V,
}

// The packing the comment above counts on (the key is 28 bytes in a guest: 24 inline and a
// length).
#[cfg(target_arch = "wasm32")]
const _: () = assert!(std::mem::size_of::<Slot<u64>>() == 40);

impl<V> Slot<V> {
    /// A slot not written since the previous snapshot (epochs start at 1).
    pub(super) fn clean(key: &[u8], value: V) -> Self {
        Slot {
            key: Key::from_slice(key),
            marked: 0,
            value,
        }
    }
}

/// One key group's keys, and what changed in it since the previous snapshot.
#[derive(Debug)]
pub(super) struct Group<V> {
    table: HashTable<Slot<V>>,
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

    /// Every slot (its key, mark and value).
    pub(super) fn iter(&self) -> impl Iterator<Item = &Slot<V>> {
        self.table.iter()
    }

    /// The slot of `key`, if held.
    pub(super) fn get(&self, key: &[u8]) -> Option<&Slot<V>> {
        let hash = self.hasher.hash_one(key);
        self.table.find(hash, |slot| slot.key[..] == *key)
    }

    /// The bucket of `key`, if held.
    pub(super) fn find(&self, key: &[u8]) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        self.table
            .find_bucket_index(hash, |slot| slot.key[..] == *key)
    }

    /// The bucket of `key`, given a slot with `make`'s value if it has none.
    pub(super) fn find_or_insert(&mut self, key: &[u8], make: impl FnOnce() -> V) -> usize {
        self.make_room();
        let hash = self.hasher.hash_one(key);
        let hasher = &self.hasher;
        let rehash = |slot: &Slot<V>| hasher.hash_one(&slot.key[..]);
        match self.table.entry(hash, |slot| slot.key[..] == *key, rehash) {
            Entry::Occupied(entry) => entry.bucket_index(),
            Entry::Vacant(entry) => entry.insert(Slot::clean(key, make())).bucket_index(),
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
        self.table.reserve(n, |slot| hasher.hash_one(&slot.key[..]));
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
            let slot = self.table.get_bucket(bucket);
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
        let slot = self
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
                let slot = self.table.get_bucket_mut(bucket).expect("just found");
                &mut slot.value
            }
        };
        value.map(|value| std::mem::replace(slot, value))
    }

    /// Removes `key`, remembering it for the next delta if the host holds the group.
    pub(super) fn remove_key(&mut self, key: &[u8]) -> Option<V> {
        let hash = self.hasher.hash_one(key);
        let entry = self
            .table
            .find_entry(hash, |slot| slot.key[..] == *key)
            .ok()?;
        let (Slot { key, marked, value }, _) = entry.remove();
        self.dirty -= usize::from(marked == self.epoch);
        if self.based {
            self.removed.push(key);
        }
        Some(value)
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
                    self.table.iter_mut().for_each(|slot| slot.marked = 0);
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

    /// The number of entries [`visit`](Group::visit) calls `each` with: every key, or with
    /// `only_dirty` the keys written since the previous snapshot.
    pub(super) fn count(&self, only_dirty: bool) -> usize {
        match only_dirty {
            true => self.dirty,
            false => self.table.len(),
        }
    }

    /// Calls `each` with every key and its value or, with `only_dirty`, those written since the
    /// previous snapshot: by their listed buckets (sorted and unique by then,
    /// [`Group::dedup_listed`]) while they are listed, else by a scan. Returns how many it
    /// visited.
    pub(super) fn visit<E>(
        &self,
        only_dirty: bool,
        mut each: impl FnMut(&Key, &V) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut visited = 0;
        let mut entry = |slot: &Slot<V>| {
            visited += 1;
            each(&slot.key, &slot.value)
        };
        let dirty = |slot: &&Slot<V>| slot.marked == self.epoch;
        match (only_dirty, &self.listed) {
            (false, _) => self.table.iter().try_for_each(&mut entry)?,
            (true, Some(buckets)) => {
                self.touch(buckets);
                buckets
                    .iter()
                    .filter_map(|&bucket| self.table.get_bucket(bucket as usize))
                    .filter(dirty)
                    .try_for_each(&mut entry)?
            }
            (true, None) => self.table.iter().filter(dirty).try_for_each(&mut entry)?,
        }
        Ok(visited)
    }

    /// Reads each slot in `buckets` once, in a loop that does nothing else: the slots of a
    /// large table are cache misses, and loads that do not depend on each other overlap, where
    /// the same loads one per entry, each followed by that entry's encoding, wait one after
    /// the other. (Wasm has no prefetch instruction; this is one by hand.)
    fn touch(&self, buckets: &[u32]) {
        let mut seen = 0;
        for &bucket in buckets {
            if let Some(slot) = self.table.get_bucket(bucket as usize) {
                seen ^= slot.marked;
            }
        }
        std::hint::black_box(seen);
    }

    /// The keys removed since the previous snapshot (a delta's removals).
    pub(super) fn removed(&self) -> &[Key] {
        &self.removed
    }
}
