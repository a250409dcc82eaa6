use super::*;
use crate::key_group::subtask_of_key_group as owner;

/// Old state at parallelism `p` of 128 groups: every group holds one byte, its number.
fn old(p: u32, operator_state: &[u8]) -> Vec<Held> {
    (0..p)
        .map(|s| Held {
            operator_state: Bytes::copy_from_slice(operator_state),
            key_groups: (0..128)
                .filter(|&g| owner(g, 128, p) == s)
                .map(|g| (g, vec![Piece::new(vec![g as u8])]))
                .collect(),
            ..Held::default()
        })
        .collect()
}

fn whole(group: u32, state: &[u8]) -> Changed {
    (group, false, state.to_vec())
}

fn delta(group: u32, state: &[u8]) -> Changed {
    (group, true, state.to_vec())
}

#[test]
fn merge_keeps_groups_not_listed_and_drops_emptied_ones() {
    let mut held = Held::default();
    let first = vec![whole(1, b"a"), whole(2, b"b")];
    held.merge(0..128, b"op1".to_vec(), first, false).unwrap();
    held.merge(
        0..128,
        b"op2".to_vec(),
        vec![whole(2, b""), whole(3, b"c")],
        false,
    )
    .unwrap();
    assert_eq!(&*held.operator_state, b"op2");
    assert_eq!(held.key_groups.keys().copied().collect::<Vec<_>>(), [1, 3]);
    held.merge(0..128, vec![], vec![whole(3, b"c2")], true)
        .unwrap();
    assert_eq!(held.key_groups.keys().copied().collect::<Vec<_>>(), [3]);
}

#[test]
fn deltas_chain_after_the_whole_state_until_it_is_written_whole_again() {
    let mut held = Held::default();
    held.merge(0..128, vec![], vec![whole(1, b"base")], false)
        .unwrap();
    held.merge(0..128, vec![], vec![delta(1, b"d1")], false)
        .unwrap();
    held.merge(0..128, vec![], vec![delta(1, b"d2")], false)
        .unwrap();
    let chain: Vec<&[u8]> = held.key_groups[&1].iter().map(|p| &p.bytes[..]).collect();
    assert_eq!(chain, [&b"base"[..], b"d1", b"d2"]);
    assert_eq!(held.keyed_bytes(), 8);
    held.merge(0..128, vec![], vec![whole(1, b"new")], false)
        .unwrap();
    assert_eq!(held.key_groups[&1], [Piece::new(&b"new"[..])]);
}

#[test]
fn changes_since_a_copy_are_the_pieces_added_the_groups_rewritten_and_those_gone() {
    let mut held = Held::default();
    let first = vec![
        whole(1, b"a"),
        whole(2, b"b"),
        whole(3, b"c"),
        whole(4, b"d"),
    ];
    held.merge(0..128, b"op1".to_vec(), first, false).unwrap();
    held.merge(0..128, vec![], vec![delta(4, b"d1")], false)
        .unwrap();
    let base = held.clone();
    assert!(held.changes_since(&base).is_empty(), "nothing changed");
    held.merge(
        0..128,
        vec![],
        vec![delta(1, b"a1"), whole(2, b"b2")],
        false,
    )
    .unwrap();
    held.merge(
        0..128,
        b"op2".to_vec(),
        vec![delta(1, b"a2"), whole(3, b"")],
        false,
    )
    .unwrap();
    held.merge(0..128, vec![], vec![whole(5, b"e")], false)
        .unwrap();
    held.merge(0..128, vec![], vec![delta(5, b"e1")], false)
        .unwrap();
    let changes = held.changes_since(&base);
    let changes: Vec<(u32, bool, &[u8])> =
        changes.iter().map(|(g, d, b)| (*g, *d, &b[..])).collect();
    assert_eq!(
        changes,
        [
            (1, true, &b"a1"[..]),
            (1, true, b"a2"),
            (2, false, b"b2"),
            (3, false, b""),
            (5, false, b"e"),
            (5, true, b"e1"),
        ]
    );
    // A group written whole again with the very bytes it held is still a change: the
    // guest wrote it, and the new piece is not the old one.
    held.merge(0..128, vec![], vec![whole(4, b"d")], false)
        .unwrap();
    let rewritten = held.changes_since(&base);
    assert!(
        rewritten
            .iter()
            .any(|(g, d, b)| (*g, *d, &b[..]) == (4, false, &b"d"[..]))
    );
}

#[test]
fn a_delta_without_a_whole_state_is_refused_and_changes_nothing() {
    let mut held = Held::default();
    held.merge(0..128, b"op".to_vec(), vec![whole(1, b"base")], false)
        .unwrap();
    let before = held.clone();
    let orphan = held.merge(0..128, vec![], vec![whole(1, b"x"), delta(2, b"d")], false);
    assert_eq!(orphan, Err(BadSnapshot::DeltaWithoutWhole { group: 2 }));
    let in_full = held.merge(0..128, vec![], vec![delta(1, b"d")], true);
    assert_eq!(in_full, Err(BadSnapshot::DeltaWithoutWhole { group: 1 }));
    assert_eq!(held, before);
}

#[test]
fn new_pieces_are_homed_one_after_the_other_and_homed_ones_stay() {
    let mut held = Held::default();
    held.merge(
        0..128,
        vec![],
        vec![whole(1, b"one"), whole(2, b"two!")],
        false,
    )
    .unwrap();
    held.home_new_pieces("a.seg", 1);
    held.merge(0..128, vec![], vec![delta(1, b"+1"), whole(3, b"3")], false)
        .unwrap();
    held.home_new_pieces("b.seg", 2);
    let homes: Vec<(&str, u64)> = held
        .key_groups
        .values()
        .flatten()
        .map(|p| p.home.as_ref().unwrap())
        .map(|h| (&*h.segment, h.offset))
        .collect();
    assert_eq!(
        homes,
        [("a.seg", 0), ("b.seg", 0), ("a.seg", 3), ("b.seg", 2)]
    );
}

#[test]
fn at_the_same_parallelism_each_subtask_gets_its_own_state() {
    let assigned = plan_restore(&old(2, b"x"), 2, 128, Rescale::Refuse).unwrap();
    for (s, a) in assigned.iter().enumerate() {
        assert_eq!(a.operator_states.len(), 1);
        assert!(a.key_groups.keys().all(|&g| owner(g, 128, 2) == s as u32));
        assert_eq!(a.moved.keys().copied().collect::<Vec<_>>(), [s as u32]);
    }
}

#[test]
fn key_groups_follow_the_new_ranges_from_2_to_3_and_back_to_1() {
    let to_three = plan_restore(&old(2, b""), 3, 128, Rescale::Refuse).unwrap();
    let groups: Vec<usize> = to_three.iter().map(|a| a.key_groups.len()).collect();
    assert_eq!(groups, [43, 43, 42]);
    // New subtask 1 (groups 43..=85) takes 21 groups from old 0 (..=63) and 22 from old 1.
    assert_eq!(
        to_three[1].moved,
        BTreeMap::from([(0, (21, 21)), (1, (22, 22))])
    );
    assert!(to_three.iter().all(|a| a.operator_states.is_empty()));
    let held: Vec<Held> = to_three
        .into_iter()
        .map(|a| Held {
            operator_state: Bytes::new(),
            key_groups: a.key_groups,
            ..Held::default()
        })
        .collect();
    let to_one = plan_restore(&held, 1, 128, Rescale::Refuse).unwrap();
    assert_eq!(to_one[0].key_groups.len(), 128);
    assert!(
        to_one[0]
            .key_groups
            .iter()
            .all(|(&g, chain)| chain.len() == 1 && chain[0].bytes[..] == [g as u8])
    );
}

#[test]
fn timers_follow_their_key_groups_and_a_source_resumes_after_the_least_watermark() {
    let mut state = old(2, b"");
    for (s, held) in state.iter_mut().enumerate() {
        held.timers = held.key_groups.clone();
        held.watermark = Some(100 + s as i64);
    }
    let same = plan_restore(&state, 2, 128, Rescale::Refuse).unwrap();
    let watermarks: Vec<_> = same.iter().map(|a| a.watermark).collect();
    assert_eq!(watermarks, [Some(100), Some(101)]);
    let to_three = plan_restore(&state, 3, 128, Rescale::Refuse).unwrap();
    for assigned in &to_three {
        assert!(assigned.timers.keys().eq(assigned.key_groups.keys()));
        assert_eq!(
            assigned.watermark,
            Some(100),
            "the least of the old subtasks'"
        );
    }
    state[1].watermark = None;
    let unknown = plan_restore(&state, 1, 128, Rescale::Refuse).unwrap();
    assert_eq!(unknown[0].watermark, None, "one old subtask had sent none");
    assert_eq!(unknown[0].timers.len(), 128);
    state[0].timers.insert(127, vec![Piece::new(vec![1])]);
    let stray = plan_restore(&state, 2, 128, Rescale::Refuse).unwrap_err();
    assert!(matches!(stray, RescaleError::StrayGroup { group: 127, .. }));
}

#[test]
fn operator_state_rescales_only_by_union_or_when_empty() {
    let refused = plan_restore(&old(2, b"pos"), 3, 128, Rescale::Refuse).unwrap_err();
    assert_eq!(refused, RescaleError::Refused { from: 2, to: 3 });
    let union = plan_restore(&old(2, b"pos"), 3, 128, Rescale::Union).unwrap();
    assert!(union.iter().all(|a| a.operator_states.len() == 2));
}

#[test]
fn a_snapshot_with_a_group_outside_its_subtask_is_refused_and_changes_nothing() {
    let mut held = Held::default();
    held.merge(0..64, b"op".to_vec(), vec![whole(1, b"one")], false)
        .unwrap();
    let before = held.clone();
    let stray = held.merge(
        0..64,
        b"op2".to_vec(),
        vec![whole(2, b"two"), whole(64, b"x")],
        false,
    );
    let owned = 0..64;
    assert_eq!(stray, Err(BadSnapshot::NotOwned { group: 64, owned }));
    let in_full = held.merge(64..128, vec![], vec![whole(1, b"one")], true);
    let refusal = in_full.unwrap_err().to_string();
    assert!(
        refusal.contains("outside the key groups 64..128"),
        "{refusal}"
    );
    assert_eq!(held, before);
}

#[test]
fn a_group_outside_its_subtask_range_is_refused() {
    let mut state = old(2, b"");
    state[0].key_groups.insert(127, vec![Piece::new(vec![1])]);
    let error = plan_restore(&state, 2, 128, Rescale::Refuse).unwrap_err();
    assert_eq!(
        error,
        RescaleError::StrayGroup {
            subtask: 0,
            parallelism: 2,
            group: 127
        }
    );
}
