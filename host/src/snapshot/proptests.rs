//! Property tests of [`Held::merge`]: a guest's snapshot lists whatever groups the guest put in
//! it. The strategies of subtasks' states are shared with the state file's property tests.

use proptest::prelude::*;

use super::*;
use crate::fuzz::explained;

/// The key groups of the states generated: few, so that chains grow.
pub(crate) const GROUPS: u32 = 12;

/// A snapshot a guest may return: operator state, changed groups, whether full.
pub(crate) type Snapshot = (Vec<u8>, Vec<Changed>, bool);

/// Any snapshot of groups up to a few past [`GROUPS`]: whole, delta, empty, repeated.
pub(crate) fn snapshot() -> impl Strategy<Value = Snapshot> {
    let state = prop::collection::vec(any::<u8>(), 0..24);
    let change = (0..GROUPS + 3, any::<bool>(), state);
    (
        prop::collection::vec(any::<u8>(), 0..32),
        prop::collection::vec(change, 0..6),
        any::<bool>(),
    )
}

/// A subtask's state after up to four checkpoints, each homing its new pieces in a segment of
/// its own (snapshots that break the contract are refused by `merge`, and skipped): the
/// guest's keyed state, and the host's timers and watermark beside it.
pub(crate) fn held() -> impl Strategy<Value = Held> {
    let checkpoint = (snapshot(), snapshot(), prop::option::of(any::<i64>()));
    prop::collection::vec(checkpoint, 1..5).prop_map(|checkpoints| {
        let mut held = Held::default();
        for (n, (guest, timers, watermark)) in checkpoints.into_iter().enumerate() {
            let (operator_state, changed, full) = guest;
            let _ = held.merge(0..GROUPS, operator_state, changed, full);
            let _ = held.merge_timers(0..GROUPS, timers.1, timers.2);
            held.watermark = watermark;
            held.home_new_pieces(&format!("c{n}.seg"), n as u64);
        }
        held
    })
}

proptest! {
    /// A snapshot is taken in whole or not at all: refused with a reason and nothing changed,
    /// or taken in with every chain non-empty, every group the subtask's or held before, and,
    /// for a full snapshot, only the groups it listed whole.
    #[test]
    fn snapshots_are_taken_in_whole_or_refused_with_a_reason(
        before in held(),
        (start, end) in (0..GROUPS, 0..GROUPS).prop_map(|(a, b)| (a.min(b), a.max(b) + 1)),
        (operator_state, changed, full) in snapshot(),
    ) {
        let mut after = before.clone();
        match after.merge(start..end, operator_state.clone(), changed.clone(), full) {
            Err(refusal) => {
                explained(&refusal)?;
                prop_assert_eq!(after, before);
            }
            Ok(()) => {
                prop_assert_eq!(&after.operator_state[..], &operator_state[..]);
                for (group, chain) in &after.key_groups {
                    prop_assert!(!chain.is_empty());
                    let listed = changed.iter().any(|(g, ..)| g == group);
                    let whole = changed.iter().any(|(g, delta, _)| g == group && !delta);
                    prop_assert!(listed || (!full && before.key_groups.contains_key(group)));
                    prop_assert!(!full || whole);
                    prop_assert!(!listed || (start..end).contains(group));
                }
            }
        }
    }
}
