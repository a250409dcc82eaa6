//! Tests of keyed state: deltas, chains, margins, restores, migrations.

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

/// A `migrate` that reads no older version.
fn refuse(version: u32, _: OldEntries<'_, u64>) -> Result<(), String> {
    Err(format!("v{version}"))
}

fn numbers(snapshot: &[GroupState]) -> Vec<(u32, bool)> {
    snapshot.iter().map(|&(g, delta, _)| (g, delta)).collect()
}

/// A fresh state of `range` restored from `chain`, applied in order.
fn restored(range: Range<u32>, chain: &[GroupState]) -> Keyed<u64> {
    let mut keyed = Keyed::new(range);
    for (g, delta, state) in chain {
        keyed
            .restore_group((*g, *delta, state), Load::Restore, COUNTS, refuse)
            .unwrap();
    }
    keyed
}

/// `snapshots` in order, as the host keeps them for a restore: a group written whole drops
/// the pieces before it (and, empty, the group).
fn as_the_host_keeps(snapshots: &[GroupState]) -> Vec<GroupState> {
    let mut kept: std::collections::BTreeMap<u32, Vec<GroupState>> = Default::default();
    for piece in snapshots {
        let chain = kept.entry(piece.0).or_default();
        if !piece.1 {
            chain.clear();
        }
        if !piece.2.is_empty() {
            chain.push(piece.clone());
        }
    }
    kept.into_values().flatten().collect()
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
    let mut expected: Vec<(Vec<u8>, u64)> = keyed.iter().map(|(k, v)| (k.to_vec(), *v)).collect();
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
            let mut all: Vec<(Vec<u8>, u64)> = k.iter().map(|(k, v)| (k.to_vec(), *v)).collect();
            all.sort();
            all
        };
        assert_eq!(sorted(&back), sorted(keyed));
        kinds
    }
}

/// A record of key group 0 whose key is `i` in decimal.
fn key(i: u32) -> Record<'static> {
    Record {
        key: i.to_string().into_bytes().leak(),
        value: b"",
        timestamp: 0,
        key_group: Some(0),
    }
}

#[test]
fn deltas_are_exact_whether_their_keys_were_listed_or_scanned_for() {
    let mut keyed: Keyed<u64> = Keyed::new(0..1);
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
fn a_delta_is_exact_when_the_table_grew_after_its_keys_were_marked() {
    let mut keyed: Keyed<u64> = Keyed::new(0..1);
    let mut held = 0;
    while held < 500 || keyed.groups[0].room() > 0 {
        keyed.insert(&key(held), 1);
        held += 1;
    }
    let mut mirror = Mirror { chain: Vec::new() };
    assert_eq!(mirror.snapshot(&mut keyed, false), [(0, false)]);
    // Marked where the slots are now (`get_mut` makes no room); then one key more moves
    // every slot.
    (0..20).for_each(|i| *keyed.get_mut(&key(i * 7)).unwrap() += 1);
    assert_eq!(keyed.groups[0].room(), 0);
    keyed.insert(&key(held), 1);
    assert!(keyed.groups[0].room() > 0, "the table grew");
    assert!(keyed.groups[0].listed.is_some(), "its marks listed");
    assert_eq!(mirror.snapshot(&mut keyed, false), [(0, true)]);
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
    let mut fresh: Keyed<u64> = Keyed::new(0..1);
    let error = fresh
        .restore_group((0, false, &delta[0].2), Load::Restore, COUNTS, refuse)
        .unwrap_err();
    assert_eq!(
        error,
        "key group 0: given as whole state, the state says otherwise"
    );
    fresh
        .restore_group((0, false, &whole[0].2), Load::Restore, COUNTS, refuse)
        .unwrap();
    let twice = fresh.restore_group((0, false, &whole[0].2), Load::Restore, COUNTS, refuse);
    assert_eq!(twice.unwrap_err(), "key group 0 was given whole twice");
}

#[test]
fn groups_round_trip_and_older_versions_go_through_migrate() {
    let mut keyed: Keyed<u64> = Keyed::new(0..4);
    *keyed.or_default(&record(b"apple", 0)) += 3;
    let groups = keyed.snapshot(COUNTS, true).unwrap();
    let mut restored: Keyed<u64> = Keyed::new(0..4);
    restored
        .restore_group((0, false, &groups[0].2), Load::Restore, COUNTS, refuse)
        .unwrap();
    assert_eq!(restored.get(&record(b"apple", 0)), Some(&3));

    let old = StateFormat {
        name: "word-count",
        version: 1,
    };
    let v1 = envelope::seal(old, &[(serde_bytes::Bytes::new(b"pear"), 5u32)]).unwrap();
    let migrate = |version: u32, old: OldEntries<'_, u64>| {
        assert_eq!(version, 1);
        old.convert(|key, v: u32| {
            assert_eq!(key, b"pear");
            u64::from(v) * 10
        })
    };
    restored
        .restore_group((1, false, &v1), Load::Restore, COUNTS, migrate)
        .unwrap();
    assert_eq!(restored.get(&record(b"pear", 1)), Some(&50));
    let error = restored
        .restore_group((9, false, &v1), Load::Restore, COUNTS, refuse)
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
    assert!(keyed.groups[0].iter().all(|slot| slot.marked == 0));
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

#[test]
fn changes_apply_on_top_of_a_restore_and_a_whole_group_replaces_it() {
    // The running module: three groups, snapshotted (what the swap restores first)...
    let mut running: Keyed<u64> = Keyed::new(0..3);
    running.insert(&record(b"a", 0), 1);
    running.insert(&record(b"b", 1), 2);
    running.insert(&record(b"c", 2), 3);
    let base = running.snapshot(COUNTS, true).unwrap();
    // ...then changes until the swap's barrier: a delta in group 0, group 1 emptied, and
    // group 2 written whole.
    running.insert(&record(b"a", 0), 10);
    running.insert(&record(b"a2", 0), 11);
    running.remove(&record(b"b", 1));
    let delta = running.snapshot(COUNTS, false).unwrap();
    assert_eq!(numbers(&delta), [(0, true), (1, false)]);
    running.insert(&record(b"c", 2), 30);
    let whole = running.snapshot(COUNTS, true).unwrap();
    let whole_2: Vec<_> = whole.into_iter().filter(|g| g.0 == 2).collect();

    // The new module: restored from the base, snapshotted whole (the host's copy of it)...
    let mut swapped = restored(0..3, &base);
    let staged = swapped.snapshot(COUNTS, true).unwrap();
    for (g, d, state) in delta.iter().chain(&whole_2) {
        swapped
            .restore_group((*g, *d, state), Load::Changes, COUNTS, refuse)
            .unwrap();
    }
    assert_eq!(swapped.get(&record(b"a", 0)), Some(&10));
    assert_eq!(swapped.get(&record(b"a2", 0)), Some(&11));
    assert_eq!(swapped.get(&record(b"b", 1)), None, "emptied");
    assert_eq!(swapped.get(&record(b"c", 2)), Some(&30), "replaced whole");
    // ...whose next snapshot lists what the changes changed: group 0 as a delta of its two
    // keys, the others whole; on top of the staged copy, it restores the same state.
    let next = swapped.snapshot(COUNTS, false).unwrap();
    assert_eq!(numbers(&next), [(0, true), (1, false), (2, false)]);
    let again = restored(0..3, &as_the_host_keeps(&[staged, next].concat()));
    for (key, group) in [(&b"a"[..], 0), (b"a2", 0), (b"b", 1), (b"c", 2)] {
        let key = &*Vec::leak(key.to_vec());
        assert_eq!(
            again.get(&record(key, group)),
            swapped.get(&record(key, group))
        );
    }
    // As `restore` would not: a whole group given again replaces rather than refuses.
    let twice = swapped.restore_group((2, false, &whole_2[0].2), Load::Changes, COUNTS, refuse);
    assert_eq!(twice, Ok(()));
    assert_eq!(swapped.get(&record(b"c", 2)), Some(&30));
}
