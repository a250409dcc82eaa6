//! Timers, kept by the host per key group (Flink's `InternalTimerService`): what a guest
//! registered, what is due, and what a checkpoint writes of them.
//!
//! A timer is a key, a time and a clock ([`Domain`]). The [`TimerService`] of a subtask keeps
//! its pending timers twice over: in time order per clock (what fires next), and by the key
//! group of their key (what a checkpoint writes, and what moves with the group on rescale).
//! Each key group's timers are state of their own, beside the guest's keyed state of the group
//! and apart from its bytes: a checkpoint writes the groups whose timers changed, each whole or
//! as a delta on what the host holds ([`codec`]), as the SDKs write a group's keyed state; a
//! restore rebuilds the service from the chains of the groups the subtask owns. Performs no
//! I/O: the runtime fires what [`TimerService::due`] lists, and passes the clock.

pub mod codec;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use bytes::Bytes;

use super::Domain;
use crate::key_group::key_group;

/// Most timers one subtask keeps pending: a guest registering more is refused.
pub const TIMERS_PENDING_MAX: u64 = 1 << 23;
/// Most bytes of keys one subtask's pending timers hold: a guest registering more is refused.
pub const TIMER_KEY_BYTES_MAX: u64 = 256 << 20;

/// One timer: its clock, when it fires (milliseconds), and for which key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timer {
    /// Its clock.
    pub domain: Domain,
    /// When it fires: once the clock reaches this.
    pub timestamp: i64,
    /// The key it is for.
    pub key: Bytes,
}

/// A group's timers changed since the previous checkpoint: added and removed (net).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// Timers registered since, still pending.
    pub added: BTreeSet<Timer>,
    /// Timers pending at the previous checkpoint, gone since (deleted or fired).
    pub removed: BTreeSet<Timer>,
}

impl Change {
    fn len(&self) -> u64 {
        (self.added.len() + self.removed.len()) as u64
    }
}

/// One key group's timers.
#[derive(Clone, Debug, Default)]
struct Group {
    timers: BTreeSet<Timer>,
    /// Timers listed in the deltas the host's copy of the group holds after its whole state;
    /// none while the host's copy has no state for the group.
    chained: Option<u64>,
}

/// One group's timers as a checkpoint writes them: number, whether a delta, bytes ([`codec`]).
pub type Written = (u32, bool, Vec<u8>);

/// The pending timers of one subtask. Performs no I/O.
#[derive(Clone, Debug)]
pub struct TimerService {
    max_parallelism: u32,
    /// Per domain: `(timestamp, key group, key)`, the order they fire in.
    queues: [BTreeSet<(i64, u32, Bytes)>; 2],
    groups: BTreeMap<u32, Group>,
    /// Groups changed since the previous checkpoint.
    changes: BTreeMap<u32, Change>,
    key_bytes: u64,
}

/// Why timer state read back cannot be used: the key group at fault, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the timers of key group {group}: {problem}")]
pub struct TimerStateError {
    /// The key group.
    pub group: u32,
    /// What is wrong.
    pub problem: String,
}

/// How many timers the deltas of key group `group` may list since its whole state, for a
/// group of `timers` timers, before it is written whole again: 3 to 5 times its timers, the
/// factor spread over the groups by their number. Deltas cost what changed; a whole rewrite
/// costs the group; a restore reads the whole state and its deltas. At 3x, a group whose
/// timers all move once per 100 checkpoints is rewritten about every 150: the rewrites add at
/// most a third of what the deltas write, and a restore reads at most 5 + 1 times the group.
/// The spread keeps groups that change alike (keys spread evenly over them) from being
/// rewritten at the same checkpoint, which would make that checkpoint's pause a full one's.
pub fn delta_budget(group: u32, timers: u64) -> u64 {
    // The group number's bits mixed (Fibonacci hashing), its top 8 bits: 0 to 255.
    let spread = u64::from(group.wrapping_mul(0x9e37_79b9) >> 24);
    timers * 3 + timers * spread / 128
}

impl TimerService {
    /// No timers, keys split into `max_parallelism` key groups.
    pub fn new(max_parallelism: u32) -> Self {
        TimerService {
            max_parallelism,
            queues: [BTreeSet::new(), BTreeSet::new()],
            groups: BTreeMap::new(),
            changes: BTreeMap::new(),
            key_bytes: 0,
        }
    }

    /// The timers of the key groups `owned`, from each group's chain as a checkpoint wrote it
    /// (whole, then deltas). Every timer's key must be in the group that holds it.
    pub fn restore<'a>(
        max_parallelism: u32,
        owned: Range<u32>,
        chains: impl IntoIterator<Item = (u32, Vec<&'a [u8]>)>,
    ) -> Result<Self, TimerStateError> {
        let mut service = TimerService::new(max_parallelism);
        for (group, pieces) in chains {
            let problem = |problem: String| TimerStateError { group, problem };
            if !owned.contains(&group) {
                return Err(problem(format!(
                    "outside the key groups {}..{} of the subtask",
                    owned.start, owned.end
                )));
            }
            let timers = codec::read_chain(&pieces).map_err(problem)?;
            if let Some(stray) = timers
                .iter()
                .find(|t| key_group(&t.key, max_parallelism) != group)
            {
                let key = String::from_utf8_lossy(&stray.key).into_owned();
                return Err(problem(format!(
                    "holds a timer of key {key:?}, of another group"
                )));
            }
            for timer in timers {
                service.insert(group, timer);
            }
        }
        // The host's copy of the restored state is none of the subtask's yet: its first
        // checkpoint writes every group whole.
        Ok(service)
    }

    /// The number of key groups keys are split into.
    pub fn max_parallelism(&self) -> u32 {
        self.max_parallelism
    }

    /// Pending timers, of both clocks.
    pub fn pending(&self) -> u64 {
        self.queues.iter().map(|q| q.len() as u64).sum()
    }

    /// Pending timers of `domain`.
    pub fn pending_of(&self, domain: Domain) -> u64 {
        self.queues[domain.index()].len() as u64
    }

    /// Bytes of the keys of the pending timers.
    pub fn key_bytes(&self) -> u64 {
        self.key_bytes
    }

    /// The time of the earliest pending timer of `domain`.
    pub fn next(&self, domain: Domain) -> Option<i64> {
        self.queues[domain.index()].first().map(|(t, ..)| *t)
    }

    /// Registers `timer`, whose key is in key group `group`; false if it was pending already.
    pub fn register(&mut self, group: u32, timer: Timer) -> bool {
        if !self.insert(group, timer.clone()) {
            return false;
        }
        let change = self.changes.entry(group).or_default();
        if !change.removed.remove(&timer) {
            change.added.insert(timer);
        }
        true
    }

    /// Deletes `timer`, whose key is in key group `group`, if it is pending (also when it
    /// fires); false if it was not.
    pub fn delete(&mut self, group: u32, timer: &Timer) -> bool {
        let Some(entry) = self.groups.get_mut(&group) else {
            return false;
        };
        if !entry.timers.remove(timer) {
            return false;
        }
        let queued = (timer.timestamp, group, timer.key.clone());
        self.queues[timer.domain.index()].remove(&queued);
        self.key_bytes -= timer.key.len() as u64;
        let change = self.changes.entry(group).or_default();
        if !change.added.remove(timer) {
            change.removed.insert(timer.clone());
        }
        true
    }

    /// Every pending timer of `domain` due at `now` (at or below it), in the order they fire:
    /// by time, then key group, then key. Stays pending until [`TimerService::delete`]d.
    pub fn due(&self, domain: Domain, now: i64) -> Vec<(u32, Timer)> {
        let queue = &self.queues[domain.index()];
        let due = queue.iter().take_while(|(t, ..)| *t <= now);
        due.map(|(timestamp, group, key)| {
            let timer = Timer {
                domain,
                timestamp: *timestamp,
                key: key.clone(),
            };
            (*group, timer)
        })
        .collect()
    }

    /// What a checkpoint writes of the timers: with `full`, every group that holds timers,
    /// whole (the host's copy holds none); else each group changed since the previous
    /// checkpoint, as a delta on the host's copy, or whole once the deltas since its whole
    /// state would list more timers than its [`delta_budget`] (empty: the group holds none
    /// now). In key-group order.
    pub fn checkpoint(&mut self, full: bool) -> Vec<Written> {
        let changes = std::mem::take(&mut self.changes);
        let mut written = Vec::new();
        let groups: Vec<u32> = match full {
            true => self.groups.keys().copied().collect(),
            false => changes.keys().copied().collect(),
        };
        for group in groups {
            let entry = self
                .groups
                .get_mut(&group)
                .expect("a changed group is kept");
            let change = changes.get(&group);
            let whole = match (full, entry.chained, change) {
                (true, ..) | (false, None, _) => true,
                (false, Some(_), None) => continue,
                (false, Some(_), Some(change)) if change.len() == 0 => continue,
                (false, Some(chained), Some(change)) => {
                    chained + change.len() > delta_budget(group, entry.timers.len() as u64)
                }
            };
            if whole {
                // An empty whole state removes the host's copy of the group, if it has one.
                if !entry.timers.is_empty() {
                    written.push((group, false, codec::whole(&entry.timers)));
                } else if !full && entry.chained.is_some() {
                    written.push((group, false, Vec::new()));
                }
                entry.chained = Some(0);
            } else {
                let change = change.expect("a delta has a change");
                written.push((group, true, codec::delta(change)));
                entry.chained = entry.chained.map(|c| c + change.len());
            }
            if entry.timers.is_empty() {
                self.groups.remove(&group);
            }
        }
        written
    }

    /// Adds `timer` to the queues and its group; false if pending already.
    fn insert(&mut self, group: u32, timer: Timer) -> bool {
        let queued = (timer.timestamp, group, timer.key.clone());
        if !self.queues[timer.domain.index()].insert(queued) {
            return false;
        }
        self.key_bytes += timer.key.len() as u64;
        self.groups.entry(group).or_default().timers.insert(timer);
        true
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
