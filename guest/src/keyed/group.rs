//! One key group's keys, and what changed in it since the previous snapshot.
//!
//! The slots (each a key, its value and the epoch it was last written in: its mark) lie
//! densely in a vector, in the order their keys came; a hash table (hashbrown's, with its fast
//! default hasher) holds each key's position in it. Dense, because a table of slots is up to
//! half empty (it grows by doubling at seven eighths full): at 1 M keys in 128 groups, each
//! group's 7 800 keys took 16 384 slots of 40 bytes, 84 MB where the keys fill 40. Every
//! page of that was touched by a restore (a fresh page is a fault) and read by a full
//! snapshot; the positions take 4 bytes a bucket.
//!
//! A snapshot of a few changes visits the positions listed when they were marked, reading each
//! slot once rather than probing for its key again. A position stays its slot's until a removal
//! moves the last slot into the hole (which lists it again if marked); growing the table or the
//! vector moves none.

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
    /// Every key's slot, densely.
    slots: Vec<Slot<V>>,
    /// The position in `slots` of each key, by the key's hash.
    positions: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Whether it is listed in `Keyed::changed`.
    pub(super) changed: bool,
    /// Slots marked dirty.
    dirty: usize,
    /// The current epoch: slots marked in it are dirty. Never 0.
    pub(super) epoch: u32,
    /// The positions of the slots marked dirty, while they are few enough (see
    /// [`Group::mark`]) that visiting them beats scanning the group; `None` once they are not.
    /// Possibly repeated, and possibly stale by now (a removal moved a slot): a snapshot
    /// visits only those still marked.
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
            slots: Vec::new(),
            positions: HashTable::new(),
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
        self.slots.len()
    }

    /// Every slot (its key, mark and value).
    pub(super) fn iter(&self) -> impl Iterator<Item = &Slot<V>> {
        self.slots.iter()
    }

    /// The slot of `key`, if held.
    pub(super) fn get(&self, key: &[u8]) -> Option<&Slot<V>> {
        self.find(key).map(|position| &self.slots[position])
    }

    /// The position of `key`'s slot, if held.
    pub(super) fn find(&self, key: &[u8]) -> Option<usize> {
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        let found = self
            .positions
            .find(hash, |&at| slots[at as usize].key[..] == *key);
        found.map(|&at| at as usize)
    }

    /// The position of `key`'s slot, given a slot with `make`'s value if it has none.
    pub(super) fn find_or_insert(&mut self, key: &[u8], make: impl FnOnce() -> V) -> usize {
        let hash = self.hasher.hash_one(key);
        let (slots, hasher) = (&self.slots, &self.hasher);
        let rehash = |&at: &u32| hasher.hash_one(&slots[at as usize].key[..]);
        match self
            .positions
            .entry(hash, |&at| slots[at as usize].key[..] == *key, rehash)
        {
            Entry::Occupied(entry) => *entry.get() as usize,
            Entry::Vacant(entry) => {
                let position = self.slots.len();
                entry.insert(u32::try_from(position).expect("a group holds under 2^32 keys"));
                self.slots.push(Slot::clean(key, make()));
                position
            }
        }
    }

    /// Room for `n` more keys.
    pub(super) fn reserve(&mut self, n: usize) {
        let (slots, hasher) = (&self.slots, &self.hasher);
        let rehash = |&at: &u32| hasher.hash_one(&slots[at as usize].key[..]);
        self.positions.reserve(n, rehash);
        self.slots.reserve(n);
    }

    /// How many positions may be listed: an eighth of the group's keys, and at least 64.
    fn listable(&self) -> usize {
        64.max(self.slots.len() / 8)
    }

    /// Lists `position` as dirty, while the listed ones are [few enough](Group::listable).
    fn list(&mut self, position: usize) {
        let listable = self.listable();
        if let Some(listed) = &mut self.listed {
            if listed.len() < listable {
                listed.push(position as u32);
            } else {
                self.listed = None;
            }
        }
    }

    /// Marks the slot at `position` (just found) dirty; its value, to change. Its position is
    /// listed while the listed ones are [few enough](Group::listable): a snapshot then visits
    /// just them, and otherwise scans the group.
    pub(super) fn mark(&mut self, position: usize) -> &mut V {
        if self.slots[position].marked != self.epoch {
            self.slots[position].marked = self.epoch;
            self.dirty += 1;
            self.list(position);
        }
        &mut self.slots[position].value
    }

    /// Sets `key`'s value, marked dirty with `mark` (else as restored); the value it had.
    pub(super) fn put(&mut self, key: &[u8], value: V, mark: bool) -> Option<V> {
        let mut value = Some(value);
        let position = self.find_or_insert(key, || value.take().expect("made once"));
        let slot = match mark {
            true => self.mark(position),
            false => &mut self.slots[position].value,
        };
        value.map(|value| std::mem::replace(slot, value))
    }

    /// Removes `key`, remembering it for the next delta if the host holds the group. The last
    /// slot moves into its place.
    pub(super) fn remove_key(&mut self, key: &[u8]) -> Option<V> {
        let hash = self.hasher.hash_one(key);
        let slots = &self.slots;
        let entry = self
            .positions
            .find_entry(hash, |&at| slots[at as usize].key[..] == *key)
            .ok()?;
        let position = entry.remove().0 as usize;
        let last = self.slots.len() - 1;
        if position != last {
            let moved = self.hasher.hash_one(&self.slots[last].key[..]);
            let at = self.positions.find_mut(moved, |&at| at as usize == last);
            *at.expect("every slot has its position") = position as u32;
        }
        let Slot { key, marked, value } = self.slots.swap_remove(position);
        self.dirty -= usize::from(marked == self.epoch);
        if position != last && self.slots[position].marked == self.epoch {
            self.list(position);
        }
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
        let keys = self.slots.len();
        let threshold = keys + keys * ((number * 67) % 128) as usize / 128;
        full || !self.based || self.since_whole + self.dirty + self.removed.len() > threshold
    }

    /// Sorts the listed positions and drops repeats, so that each is written once (and the
    /// slots are read in order).
    pub(super) fn dedup_listed(&mut self) {
        if let Some(positions) = &mut self.listed {
            positions.sort_unstable();
            positions.dedup();
        }
    }

    /// Clears the marks of a group just written, whole or as a delta: the next epoch (after
    /// 2^32 - 1 of them, every slot is visited once to start again at 1).
    pub(super) fn written(&mut self, delta: bool) {
        if self.dirty > 0 {
            self.epoch = match self.epoch.checked_add(1) {
                Some(next) => next,
                None => {
                    self.slots.iter_mut().for_each(|slot| slot.marked = 0);
                    1
                }
            };
        }
        self.listed = Some(Vec::new());
        self.since_whole = match delta {
            true => self.since_whole + self.dirty + self.removed.len(),
            false => 0,
        };
        self.based = !self.slots.is_empty();
        self.dirty = 0;
        self.removed.clear();
    }

    /// Its keys replaced by a whole state to come: written whole at the next snapshot.
    pub(super) fn replaced(&mut self) {
        self.slots.clear();
        self.positions.clear();
        self.dirty = 0;
        self.listed = Some(Vec::new());
        self.removed.clear();
        self.based = false;
    }

    /// How many more keys it takes before the table of positions must grow.
    #[cfg(test)]
    pub(super) fn room(&self) -> usize {
        self.positions.capacity() - self.positions.len()
    }

    /// The number of entries [`visit`](Group::visit) calls `each` with: every key, or with
    /// `only_dirty` the keys written since the previous snapshot.
    pub(super) fn count(&self, only_dirty: bool) -> usize {
        match only_dirty {
            true => self.dirty,
            false => self.slots.len(),
        }
    }

    /// Calls `each` with every key and its value or, with `only_dirty`, those written since the
    /// previous snapshot: by their listed positions (sorted and unique by then,
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
            (false, _) => self.slots.iter().try_for_each(&mut entry)?,
            (true, Some(positions)) => positions
                .iter()
                .filter_map(|&at| self.slots.get(at as usize))
                .filter(dirty)
                .try_for_each(&mut entry)?,
            (true, None) => self.slots.iter().filter(dirty).try_for_each(&mut entry)?,
        }
        Ok(visited)
    }

    /// The keys removed since the previous snapshot (a delta's removals).
    pub(super) fn removed(&self) -> &[Key] {
        &self.removed
    }
}
