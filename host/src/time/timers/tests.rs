use super::*;

const GROUPS: u32 = 128;

fn timer(domain: Domain, timestamp: i64, key: &str) -> (u32, Timer) {
    let key = Bytes::copy_from_slice(key.as_bytes());
    (
        key_group(&key, GROUPS),
        Timer {
            domain,
            timestamp,
            key,
        },
    )
}

fn event(timestamp: i64, key: &str) -> (u32, Timer) {
    timer(Domain::Event, timestamp, key)
}

fn register(service: &mut TimerService, (group, timer): (u32, Timer)) -> bool {
    service.register(group, timer)
}

/// The due timers' times and keys.
fn due(service: &TimerService, domain: Domain, now: i64) -> Vec<(i64, String)> {
    let due = service.due(domain, now).into_iter();
    due.map(|(_, t)| (t.timestamp, String::from_utf8(t.key.to_vec()).unwrap()))
        .collect()
}

/// What the host's copy holds after taking in `written`, as `snapshot::Held` does: a whole
/// piece replaces a group's chain (empty: removes it), a delta goes after it.
pub(super) fn take_in(chains: &mut BTreeMap<u32, Vec<Vec<u8>>>, written: Vec<Written>, full: bool) {
    if full {
        chains.clear();
    }
    for (group, delta, bytes) in written {
        match (delta, bytes.is_empty()) {
            (true, _) => chains
                .get_mut(&group)
                .expect("a delta on a chain")
                .push(bytes),
            (false, true) => drop(chains.remove(&group)),
            (false, false) => drop(chains.insert(group, vec![bytes])),
        }
    }
}

pub(super) fn restored(chains: &BTreeMap<u32, Vec<Vec<u8>>>) -> TimerService {
    let chains = chains
        .iter()
        .map(|(&group, chain)| (group, chain.iter().map(Vec::as_slice).collect()));
    TimerService::restore(GROUPS, 0..GROUPS, chains).unwrap()
}

#[test]
fn timers_fire_in_time_order_each_once_whatever_the_order_registered() {
    let mut service = TimerService::new(GROUPS);
    for (t, key) in [(30, "c"), (10, "a"), (20, "b"), (10, "z")] {
        assert!(register(&mut service, event(t, key)));
    }
    assert!(
        !register(&mut service, event(10, "a")),
        "the same timer twice is one"
    );
    let heartbeat = timer(Domain::Processing, 5, "a");
    register(&mut service, heartbeat.clone());
    assert_eq!(service.pending(), 5);
    assert_eq!(service.next(Domain::Event), Some(10));
    let fired = due(&service, Domain::Event, 20);
    let ordered = [(10, "a"), (10, "z"), (20, "b")].map(|(t, k)| (t, k.to_owned()));
    let mut by_time = ordered.to_vec();
    by_time.sort_by_key(|(t, k)| (*t, key_group(k.as_bytes(), GROUPS), k.clone()));
    assert_eq!(fired, by_time);
    assert!(service.delete(heartbeat.0, &heartbeat.1));
    assert!(!service.delete(heartbeat.0, &heartbeat.1), "deleted once");
    assert_eq!(due(&service, Domain::Processing, i64::MAX), []);
    assert_eq!(service.pending_of(Domain::Event), 4);
}

#[test]
fn a_checkpoint_writes_only_the_groups_whose_timers_changed() {
    let mut service = TimerService::new(GROUPS);
    let keys: Vec<String> = (0..200).map(|i| format!("key-{i}")).collect();
    for key in &keys {
        register(&mut service, event(100, key));
    }
    let mut chains = BTreeMap::new();
    let first = service.checkpoint(false);
    assert!(
        first.iter().all(|(_, delta, _)| !delta),
        "new groups go whole"
    );
    let groups_with_timers = first.len();
    take_in(&mut chains, first, false);
    assert!(service.checkpoint(false).is_empty(), "nothing changed");
    // One timer added: only its group is written, as a delta.
    let added = event(200, "key-0");
    register(&mut service, added.clone());
    let second = service.checkpoint(false);
    assert_eq!(second.len(), 1);
    assert_eq!((second[0].0, second[0].1), (added.0, true));
    take_in(&mut chains, second, false);
    // Registered and deleted between two checkpoints: nothing to write.
    let fleeting = event(300, "key-1");
    register(&mut service, fleeting.clone());
    service.delete(fleeting.0, &fleeting.1);
    assert!(service.checkpoint(false).is_empty());
    // Every timer of a group fired: the group is written whole and empty.
    let group = added.0;
    for (_, timer) in service.due(Domain::Event, i64::MAX) {
        if key_group(&timer.key, GROUPS) == group {
            service.delete(group, &timer);
        }
    }
    let emptied = service.checkpoint(false);
    assert_eq!(emptied, [(group, false, Vec::new())]);
    take_in(&mut chains, emptied, false);
    assert_eq!(chains.len(), groups_with_timers - 1);
    let back = restored(&chains);
    assert_eq!(
        due(&back, Domain::Event, i64::MAX),
        due(&service, Domain::Event, i64::MAX)
    );
}

#[test]
fn a_group_is_written_whole_again_once_its_deltas_would_outgrow_its_budget() {
    let mut service = TimerService::new(GROUPS);
    let mut chains = BTreeMap::new();
    let timers: Vec<(u32, Timer)> = (0..10).map(|t| event(t, "k")).collect();
    let group = timers[0].0;
    timers
        .iter()
        .for_each(|t| assert!(register(&mut service, t.clone())));
    take_in(&mut chains, service.checkpoint(false), false);
    let budget = delta_budget(group, 10);
    assert!((30..50).contains(&budget), "{budget}");
    // Each round moves one timer (a delta of two entries): deltas while they fit the budget.
    let mut moved = 0;
    let whole_at = loop {
        moved += 1;
        service.delete(group, &event(moved - 1, "k").1);
        register(&mut service, event(moved + 9, "k"));
        let written = service.checkpoint(false);
        assert_eq!(written.len(), 1);
        take_in(&mut chains, written.clone(), false);
        if !written[0].1 {
            break moved as u64;
        }
        assert_eq!(chains[&group].len(), moved as usize + 1);
    };
    assert_eq!(whole_at, budget / 2 + 1, "whole once 2 x rounds > {budget}");
    assert_eq!(chains[&group].len(), 1);
    assert_eq!(restored(&chains).pending(), 10);
    // Every timer gone: the group is written whole and empty, its chain removed.
    for t in moved..moved + 10 {
        service.delete(group, &event(t, "k").1);
    }
    let emptied = service.checkpoint(false);
    assert_eq!(emptied, vec![(group, false, Vec::new())]);
}

#[test]
fn groups_changing_alike_are_not_rewritten_at_one_checkpoint() {
    let budgets: BTreeSet<u64> = (0..GROUPS).map(|g| delta_budget(g, 1_000)).collect();
    assert!(budgets.len() > 100, "{} distinct budgets", budgets.len());
    assert!(
        budgets.iter().all(|b| (3_000..5_000).contains(b)),
        "{budgets:?}"
    );
}

#[test]
fn a_full_checkpoint_writes_every_group_whole() {
    let mut service = TimerService::new(GROUPS);
    for key in ["a", "b", "c"] {
        register(&mut service, event(5, key));
    }
    service.checkpoint(false);
    register(&mut service, timer(Domain::Processing, 7, "a"));
    let full = service.checkpoint(true);
    let groups: BTreeSet<u32> = ["a", "b", "c"].iter().map(|k| event(0, k).0).collect();
    assert_eq!(full.len(), groups.len());
    assert!(
        full.iter()
            .all(|(g, delta, _)| groups.contains(g) && !delta)
    );
    let mut chains = BTreeMap::new();
    take_in(&mut chains, full, true);
    let back = restored(&chains);
    assert_eq!(back.pending_of(Domain::Processing), 1);
    assert_eq!(back.key_bytes(), 4);
}

#[test]
fn restoring_refuses_a_timer_outside_its_group_and_an_unknown_format() {
    let (group, timer) = event(1, "apple");
    let whole = codec::whole(&BTreeSet::from([timer]));
    let other = (group + 1) % GROUPS;
    let stray = TimerService::restore(GROUPS, 0..GROUPS, [(other, vec![&whole[..]])]);
    let stray = stray.unwrap_err();
    assert_eq!(stray.group, other);
    assert!(
        stray.problem.contains("\"apple\", of another group"),
        "{stray}"
    );
    let not_owned = TimerService::restore(GROUPS, 0..group, [(group, vec![&whole[..]])]);
    assert!(
        not_owned
            .unwrap_err()
            .problem
            .contains("outside the key groups")
    );
    let mut future = whole.clone();
    future[0] = 9;
    let unknown = TimerService::restore(GROUPS, 0..GROUPS, [(group, vec![&future[..]])]);
    assert!(unknown.unwrap_err().problem.contains("timer format 9"));
}
