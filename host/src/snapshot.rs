//! A subtask's state as the host keeps it, and how a point's state goes to the subtasks of a
//! job that resumes from it, at the same parallelism or another.
//!
//! Between a guest's `snapshot` and the store: a guest returns its operator state and only the
//! key groups changed since its previous snapshot, each whole or as a delta; [`Held`] merges
//! them into the subtask's full state, each group a [`Chain`] of [`Piece`]s (whole, then deltas),
//! and [`Held::home_new_pieces`] places the pieces no checkpoint stored yet in the segment the
//! next checkpoint writes. On resume, the store reads each subtask's
//! state back as a `Held`, and [`plan_restore`] decides, without I/O, which operator states and
//! key groups each new subtask receives: key groups follow the key-group ranges of the new
//! parallelism; operator state goes to the subtask of the same index, or, when the parallelism
//! changed, to every subtask if the module declared `rescale = union`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::key_group::subtask_of_key_group;
use crate::time::watermarks::resumed_position;

/// State bytes a guest wrote for one key group, whole or a delta, and where they are stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The bytes, as the guest wrote them: shared, never copied (a snapshot's bytes as lifted
    /// out of the guest; a restored piece, a slice of its segment as read).
    pub bytes: Bytes,
    /// The segment file holding them, once a checkpoint wrote them.
    pub home: Option<Home>,
}

/// Where a piece is stored: entry `entry` of a segment file of the point that first wrote it
/// (and of every later point still holding the piece, which hard-links it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Home {
    /// The segment's file name.
    pub segment: Arc<str>,
    /// When the segment was written, relative to the other segments of the state: a later
    /// segment has a greater number.
    pub sequence: u64,
    /// The piece's entry in the segment's table.
    pub entry: u32,
    /// Where the piece starts in the segment.
    pub offset: u64,
    /// Checksum of the piece ([`crate::checksum::checksum`]).
    pub checksum: [u8; 16],
}

impl Piece {
    /// A piece not stored yet.
    pub fn new(bytes: impl Into<Bytes>) -> Piece {
        Piece {
            bytes: bytes.into(),
            home: None,
        }
    }

    /// Whether it is `other` itself (or a copy of it), not a piece that only holds the same
    /// bytes: pieces share their bytes, and a piece written again is a new one.
    pub fn is(&self, other: &Piece) -> bool {
        self.bytes.as_ptr() == other.bytes.as_ptr() && self.bytes.len() == other.bytes.len()
    }
}

/// One key group's state as the host keeps it: the group's whole state, then the deltas the
/// guest wrote after it, in order (`restore` receives them so). The guest bounds its length: it
/// writes a group whole again once the deltas since would outgrow it.
pub type Chain = Vec<Piece>;

/// One subtask's full state, as of its latest snapshot: its guest's, and the host's own
/// beside it (its timers, a source's watermark), never mixed with the guest's bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Held {
    /// State not split by key.
    pub operator_state: Bytes,
    /// Keyed state by key group; groups without keys are absent.
    pub key_groups: BTreeMap<u32, Chain>,
    /// The host's timers of each key group, chained as keyed state is
    /// ([`crate::time::timers::codec`]); groups without timers are absent.
    pub timers: BTreeMap<u32, Chain>,
    /// Sources: the last watermark sent, which the restored source never goes below.
    pub watermark: Option<i64>,
}

/// One group of a snapshot, as the WIT's `key-group-state`: number, delta, bytes.
pub type Changed = (u32, bool, Vec<u8>);

/// How a guest's snapshot breaks the contract (and is refused whole, by [`Held::merge`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BadSnapshot {
    /// A key group its subtask does not own.
    #[error(
        "its snapshot holds key group {group}, outside the key groups {}..{} its subtask owns",
        owned.start,
        owned.end
    )]
    NotOwned {
        /// The key group.
        group: u32,
        /// The subtask's key groups.
        owned: std::ops::Range<u32>,
    },
    /// A delta where the host holds no whole state to apply it to.
    #[error(
        "its snapshot holds a delta for key group {group}, of which the host holds no whole \
         state (a full snapshot, or the first of a group, must be whole)"
    )]
    DeltaWithoutWhole {
        /// The key group.
        group: u32,
    },
}

impl Held {
    /// Takes in a snapshot: its operator state, and the key groups it lists as changed, each
    /// whole (empty: a group that no longer holds keys) or as a delta on the group's chain.
    /// With `full`, the snapshot listed every group, whole, and the groups it did not list are
    /// gone. A group outside `owned` (the subtask's key groups), or a delta where the host
    /// holds no state for the group, is refused, and then nothing is taken in: the guest broke
    /// the contract, and a checkpoint holding it could never be restored.
    pub fn merge(
        &mut self,
        owned: std::ops::Range<u32>,
        operator_state: Vec<u8>,
        changed: Vec<Changed>,
        full: bool,
    ) -> Result<(), BadSnapshot> {
        check_changes(&self.key_groups, &owned, &changed, full)?;
        self.operator_state = operator_state.into();
        take_changes(&mut self.key_groups, changed, full);
        Ok(())
    }

    /// Takes in the timers of the key groups whose timers changed, as
    /// [`crate::time::timers::TimerService::checkpoint`] writes them, as [`Held::merge`] takes
    /// in keyed state (with `full`, every group with timers, and the others have none).
    /// The timers come from the host's own timer service, which keeps its groups apart by
    /// owner and writes a delta only on a group it wrote before: an error is the host's bug.
    pub fn merge_timers(
        &mut self,
        owned: std::ops::Range<u32>,
        changed: Vec<Changed>,
        full: bool,
    ) -> Result<(), BadSnapshot> {
        check_changes(&self.timers, &owned, &changed, full)?;
        take_changes(&mut self.timers, changed, full);
        Ok(())
    }

    /// Gives every piece not stored yet a home in `segment`, written `sequence`-th (the
    /// checkpoint's number): the pieces one after the other from offset 0, in key-group order,
    /// as the entries of the segment's table. The segment a checkpoint writes.
    pub fn home_new_pieces(&mut self, segment: &str, sequence: u64) {
        let segment: Arc<str> = segment.into();
        let (mut entry, mut offset) = (0, 0);
        let keyed = self.key_groups.values_mut().flatten();
        for piece in keyed.chain(self.timers.values_mut().flatten()) {
            if piece.home.is_none() {
                piece.home = Some(Home {
                    segment: segment.clone(),
                    sequence,
                    entry,
                    offset,
                    checksum: crate::checksum::checksum(&piece.bytes),
                });
                entry += 1;
                offset += piece.bytes.len() as u64;
            }
        }
    }

    /// What changed from `base`, an earlier copy of this state, to this state, for a live
    /// swap's catch-up (`restore-changes`): for each key group whose chain grew, the pieces
    /// added since, as deltas; for each group written whole again (or new), its whole chain;
    /// for each group gone, an empty whole state. In key-group order. Pieces are compared by
    /// identity: a copy shares them, and a piece written again is a new one.
    pub fn changes_since(&self, base: &Held) -> Vec<(u32, bool, Bytes)> {
        let mut changes = Vec::new();
        for (&group, chain) in &self.key_groups {
            let old = base.key_groups.get(&group).map_or(&[][..], Vec::as_slice);
            let grew = old.len() <= chain.len() && old.iter().zip(chain).all(|(o, n)| o.is(n));
            let from = if grew { old.len() } else { 0 };
            // A chain's first piece is its whole state; every later one, a delta.
            let pieces = chain.iter().enumerate().skip(from);
            changes.extend(pieces.map(|(i, piece)| (group, i > 0, piece.bytes.clone())));
        }
        let gone = base
            .key_groups
            .keys()
            .filter(|g| !self.key_groups.contains_key(g));
        changes.extend(gone.map(|&group| (group, false, Bytes::new())));
        changes.sort_by_key(|&(group, ..)| group);
        changes
    }

    /// Total bytes of keyed state, deltas included.
    pub fn keyed_bytes(&self) -> u64 {
        self.key_groups.values().map(chain_bytes).sum()
    }
}

/// Checks the groups `changed` against the chains `held` before any is taken in: each must be
/// one of the subtask's (`owned`), and a delta needs the group's whole state held (never in a
/// `full` snapshot).
fn check_changes(
    held: &BTreeMap<u32, Chain>,
    owned: &std::ops::Range<u32>,
    changed: &[Changed],
    full: bool,
) -> Result<(), BadSnapshot> {
    if let Some(&(group, ..)) = changed.iter().find(|(group, ..)| !owned.contains(group)) {
        let owned = owned.clone();
        return Err(BadSnapshot::NotOwned { group, owned });
    }
    if let Some(&(group, ..)) = changed
        .iter()
        .find(|(group, delta, _)| *delta && (full || !held.contains_key(group)))
    {
        return Err(BadSnapshot::DeltaWithoutWhole { group });
    }
    Ok(())
}

/// Takes checked changes into the chains `held`: each group whole (empty: gone) or as a
/// delta after its chain; with `full`, the groups not listed are gone.
fn take_changes(held: &mut BTreeMap<u32, Chain>, changed: Vec<Changed>, full: bool) {
    if full {
        held.clear();
    }
    for (group, delta, state) in changed {
        match (delta, state.is_empty()) {
            // An empty delta changes nothing.
            (true, true) => {}
            (true, false) => held.entry(group).or_default().push(Piece::new(state)),
            (false, true) => drop(held.remove(&group)),
            (false, false) => drop(held.insert(group, vec![Piece::new(state)])),
        }
    }
}

/// The bytes of a chain.
pub fn chain_bytes(chain: &Chain) -> u64 {
    chain.iter().map(|p| p.bytes.len() as u64).sum()
}

/// How a module's operator state goes to subtasks when the parallelism changes (its
/// `describe` says).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rescale {
    /// A parallelism change is refused, unless every old operator state is empty.
    Refuse,
    /// Every new subtask receives every old subtask's operator state.
    Union,
}

/// What one new subtask restores.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assigned {
    /// Operator states, in old subtask order.
    pub operator_states: Vec<Bytes>,
    /// Key groups it owns, with their state.
    pub key_groups: BTreeMap<u32, Chain>,
    /// The timers of the key groups it owns.
    pub timers: BTreeMap<u32, Chain>,
    /// Sources: the watermark it resumes after (the old subtask's at the same parallelism,
    /// else the least of the old subtasks').
    pub watermark: Option<i64>,
    /// For `host check`'s report: old subtask -> (key groups, bytes) that came from it.
    pub moved: BTreeMap<u32, (u32, u64)>,
}

/// Why an operator's state cannot go to the new parallelism.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RescaleError {
    /// The module keeps operator state it cannot split or merge.
    #[error(
        "its state cannot move from parallelism {from} to {to}: the module keeps operator state \
         that it does not split or merge (its `describe` says `rescale: refuse`)"
    )]
    Refused {
        /// The old parallelism.
        from: u32,
        /// The new parallelism.
        to: u32,
    },
    /// A state file holds a key group its subtask did not own: the point is not consistent.
    #[error(
        "subtask {subtask} of parallelism {parallelism} held key group {group}, which it does not own"
    )]
    StrayGroup {
        /// The old subtask.
        subtask: u32,
        /// Its parallelism.
        parallelism: u32,
        /// The key group.
        group: u32,
    },
}

/// Decides what each of `parallelism` new subtasks restores from `old`, the state of every
/// old subtask in order. Performs no I/O.
pub fn plan_restore(
    old: &[Held],
    parallelism: u32,
    max_parallelism: u32,
    rescale: Rescale,
) -> Result<Vec<Assigned>, RescaleError> {
    let old_parallelism = old.len() as u32;
    let mut assigned = vec![Assigned::default(); parallelism as usize];
    for (subtask, held) in old.iter().enumerate() {
        let subtask = subtask as u32;
        let owner = |group: u32| {
            let strays = group >= max_parallelism
                || subtask_of_key_group(group, max_parallelism, old_parallelism) != subtask;
            if strays {
                return Err(RescaleError::StrayGroup {
                    subtask,
                    parallelism: old_parallelism,
                    group,
                });
            }
            Ok(subtask_of_key_group(group, max_parallelism, parallelism) as usize)
        };
        for (&group, chain) in &held.key_groups {
            let owner = &mut assigned[owner(group)?];
            owner.key_groups.insert(group, chain.clone());
            let moved = owner.moved.entry(subtask).or_default();
            *moved = (moved.0 + 1, moved.1 + chain_bytes(chain));
        }
        for (&group, chain) in &held.timers {
            assigned[owner(group)?].timers.insert(group, chain.clone());
        }
    }
    if old_parallelism == parallelism {
        for (assigned, held) in assigned.iter_mut().zip(old) {
            assigned.operator_states = vec![held.operator_state.clone()];
            assigned.watermark = held.watermark;
        }
        return Ok(assigned);
    }
    let least = resumed_position(old.iter().map(|h| h.watermark));
    assigned.iter_mut().for_each(|a| a.watermark = least);
    let operator_states: Vec<Bytes> = old.iter().map(|h| h.operator_state.clone()).collect();
    if operator_states.iter().any(|s| !s.is_empty()) {
        if rescale == Rescale::Refuse {
            return Err(RescaleError::Refused {
                from: old_parallelism,
                to: parallelism,
            });
        }
        for assigned in &mut assigned {
            assigned.operator_states = operator_states.clone();
        }
    }
    Ok(assigned)
}

#[cfg(test)]
pub(crate) mod proptests;

#[cfg(test)]
mod tests;
