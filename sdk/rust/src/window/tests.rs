//! Window semantics, driven natively with the timers of `ManualTimers`. The Python and
//! JavaScript SDKs test the same cases, and the same bytes.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::*;
use crate::aggregate::{self, Count, Sum};
use crate::keyed::Load;
use crate::time::{ManualTimers, TimerService};
use crate::{Batch, BatchBuilder, records};

const V1: StateFormat = StateFormat {
    name: "window-count",
    version: 1,
};

const V2: StateFormat = StateFormat {
    name: "window-count",
    version: 2,
};

/// The bytes of key group 0 after `a` at 1000 and 2000 in tumbling windows of 10 s, counted:
/// `["window-count", 1, [[bin "a", [[0, 10000, 2, false]]]]]`. The Python and JavaScript SDKs'
/// tests hold the same vector.
fn v1_group() -> Vec<u8> {
    let mut bytes = vec![0x93, 0xac];
    bytes.extend_from_slice(b"window-count");
    bytes.extend_from_slice(&[0x01, 0x91, 0x92, 0xc4, 0x01, b'a']);
    bytes.extend_from_slice(&[0x91, 0x94, 0x00, 0xcd, 0x27, 0x10, 0x02, 0xc2]);
    bytes
}

/// Windows, their keyed state and timers, and what they emitted, as text: `key start..end acc`.
struct Run<A: Aggregate> {
    windows: Windows<A>,
    keyed: Keyed<Slots<A::Acc>>,
    timers: Rc<ManualTimers>,
}

fn run<A: Aggregate>(windows: Windows<A>) -> Run<A> {
    windows.check().unwrap();
    Run {
        windows,
        keyed: Keyed::new(0..1),
        timers: ManualTimers::new(|_| 0),
    }
}

fn emit<Acc: std::fmt::Debug>(
    key: &[u8],
    w: Window,
    acc: &Acc,
    out: &mut BatchBuilder,
) -> Result<(), String> {
    let value = format!("{}..{} {acc:?}", w.start, w.end);
    out.push(key, value.as_bytes(), w.max_timestamp())
}

fn lines(output: BatchBuilder) -> Vec<String> {
    let batch: Batch = output.into();
    let read = records(&batch).unwrap();
    read.map(|r| {
        let key = String::from_utf8_lossy(r.key);
        format!("{key} {}", String::from_utf8_lossy(r.value))
    })
    .collect()
}

impl<A: Aggregate> Run<A>
where
    A::Acc: std::fmt::Debug,
{
    /// Processes `(key, timestamp, value)` records.
    fn process(&mut self, input: &[(&str, i64, &str)]) -> Vec<String> {
        let mut batch = BatchBuilder::new();
        for (key, t, value) in input {
            batch.push(key.as_bytes(), value.as_bytes(), *t).unwrap();
        }
        let mut batch: Batch = batch.into();
        batch.key_groups = vec![0; input.len()];
        let mut output = BatchBuilder::new();
        let timers: &dyn TimerService = &*self.timers;
        let input = records(&batch).unwrap();
        let result = self
            .windows
            .process(input, &mut self.keyed, timers, &mut output, &mut emit);
        result.unwrap();
        lines(output)
    }

    /// Moves the watermark and fires the timers due.
    fn advance(&mut self, watermark: i64) -> Vec<String> {
        let fired = self.timers.advance_watermark(watermark);
        let mut output = BatchBuilder::new();
        let fired = records(&fired).unwrap();
        let result = self.windows.on_timer(
            TimeDomain::EventTime,
            fired,
            &mut self.keyed,
            &mut output,
            &mut emit,
        );
        result.unwrap();
        lines(output)
    }

    fn open_windows(&self) -> usize {
        self.keyed.iter().map(|(_, slots)| slots.len()).sum()
    }
}

#[test]
fn tumbling_windows_count_out_of_order_records_and_fire_once_at_their_end() {
    let mut run = run(Windows::tumbling(10_000).aggregate(aggregate::count()));
    let none: [&str; 0] = [];
    assert_eq!(
        run.process(&[
            ("a", 1_000, ""),
            ("a", 12_000, ""),
            ("b", 3_000, ""),
            ("a", 9_000, "")
        ]),
        none
    );
    assert_eq!(run.advance(9_998), none);
    assert_eq!(run.advance(9_999), ["a 0..10000 2", "b 0..10000 1"]);
    assert_eq!(run.advance(9_999), none, "a window fires once");
    assert_eq!(run.process(&[("a", 15_000, "")]), none);
    assert_eq!(run.advance(25_000), ["a 10000..20000 2"]);
    assert_eq!(
        run.open_windows(),
        0,
        "without lateness, a window goes as it fires"
    );
    assert_eq!(run.windows.late_records(), 0);
}

/// A tiny deterministic generator (a linear congruential one), for disorder without a crate.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn out_of_order_input_within_the_bound_gives_exactly_the_model() {
    // Records of 5 keys at times that wander up to 3 s back; the watermark trails the
    // greatest timestamp seen by 3 s, as a bounded-out-of-orderness source's does.
    let mut rng = Lcg(7);
    let mut run = run(Windows::tumbling(1_000).aggregate(aggregate::count()));
    let mut model: BTreeMap<(String, i64), u64> = BTreeMap::new();
    let mut emitted = Vec::new();
    let mut greatest = 0;
    for step in 0..400 {
        let t = (step * 50 - rng.below(3_000) as i64).max(0);
        let key = format!("k{}", rng.below(5));
        *model.entry((key.clone(), t - t % 1_000)).or_default() += 1;
        emitted.extend(run.process(&[(&key, t, "")]));
        greatest = greatest.max(t);
        emitted.extend(run.advance(greatest - 3_000));
    }
    emitted.extend(run.advance(i64::MAX));
    assert_eq!(run.windows.late_records(), 0);
    let mut expected: Vec<_> = model
        .iter()
        .map(|((key, start), n)| format!("{key} {start}..{} {n}", start + 1_000))
        .collect();
    expected.sort();
    emitted.sort();
    assert_eq!(emitted, expected);
}

#[test]
fn sliding_windows_hold_a_record_in_each_window_that_covers_it() {
    let mut run = run(Windows::sliding(10_000, 5_000).aggregate(aggregate::count()));
    run.process(&[("a", 7_000, ""), ("a", 12_000, "")]);
    assert_eq!(run.advance(9_999), ["a 0..10000 1"]);
    assert_eq!(run.advance(20_000), ["a 5000..15000 2", "a 10000..20000 1"]);
}

#[test]
fn sessions_merge_when_a_record_bridges_their_gap() {
    let mut run = run(Windows::session(1_000).aggregate(aggregate::count()));
    run.process(&[("a", 0, ""), ("a", 2_500, ""), ("b", 100, "")]);
    // [1500, 2500) touches [2500, 3500): one session.
    run.process(&[("a", 1_500, "")]);
    assert_eq!(run.open_windows(), 3);
    // [800, 1800) touches [0, 1000) and [1500, 3500): one session of 4.
    run.process(&[("a", 800, "")]);
    assert_eq!(run.open_windows(), 2);
    // The timer of the session merged away is gone (999); the merged one's is there (3499,
    // which [2500, 3500) had too).
    let pending = run.timers.pending(TimeDomain::EventTime);
    assert_eq!(pending, [(b"b".to_vec(), 1_099), (b"a".to_vec(), 3_499)]);
    assert_eq!(run.advance(3_499), ["b 100..1100 1", "a 0..3500 4"]);
    assert_eq!(run.open_windows(), 0);
}

#[test]
fn late_data_within_the_lateness_updates_and_re_emits_beyond_it_is_dropped_and_counted() {
    let windows = Windows::tumbling(10_000).allowed_lateness(2_000);
    let mut run = run(windows.late_output().aggregate(aggregate::count()));
    run.process(&[("a", 1_000, ""), ("a", 2_000, "")]);
    assert_eq!(run.advance(10_500), ["a 0..10000 2"]);
    // Within the lateness: the window takes it, and its new result goes at once.
    assert_eq!(run.process(&[("a", 5_000, "x")]), ["a 0..10000 3"]);
    // Its state stays until the watermark reaches 9999 + 2000.
    assert_eq!(run.advance(11_998), [""; 0]);
    assert_eq!(run.open_windows(), 1);
    assert_eq!(run.advance(11_999), [""; 0]);
    assert_eq!(
        run.open_windows(),
        0,
        "dropped at end - 1 + allowed lateness"
    );
    // Beyond it: dropped, counted, and sent to the side output.
    let late = run.process(&[("a", 6_000, "y"), ("a", 12_500, "z")]);
    assert_eq!(late, ["\u{fffd}late:a y"]);
    assert_eq!(run.windows.late_records(), 1);
    assert_eq!(
        run.open_windows(),
        1,
        "the on-time record opened its window"
    );
    // A window first seen within its lateness is emitted at once, and once.
    let mut run2 = self::run(
        Windows::tumbling(10_000)
            .allowed_lateness(2_000)
            .aggregate(aggregate::count()),
    );
    run2.advance(10_000);
    assert_eq!(run2.process(&[("a", 9_000, "")]), ["a 0..10000 1"]);
    assert_eq!(run2.advance(11_000), [""; 0]);
}

#[test]
fn a_late_record_that_does_not_change_the_result_is_not_emitted_again() {
    let windows = Windows::tumbling(10_000).allowed_lateness(5_000);
    let mut run = run(windows.aggregate((aggregate::min(), aggregate::max())));
    run.process(&[("a", 1_000, "4"), ("a", 2_000, "9")]);
    assert_eq!(run.advance(10_000), ["a 0..10000 (4, 9)"]);
    assert_eq!(run.process(&[("a", 3_000, "5")]), [""; 0]);
    assert_eq!(run.process(&[("a", 3_000, "1")]), ["a 0..10000 (1, 9)"]);
}

#[test]
fn window_state_is_the_portable_bytes_every_sdk_writes() {
    let mut run = run(Windows::tumbling(10_000).aggregate(aggregate::count()));
    run.process(&[("a", 1_000, ""), ("a", 2_000, "")]);
    let snapshot = run.keyed.snapshot(V1, true).unwrap();
    assert_eq!(snapshot, [(0, false, v1_group())]);
}

#[test]
fn v2_resumes_v1_open_windows_its_sum_unknown_and_sums_new_ones() {
    let mut v1 = run(Windows::tumbling(10_000).aggregate(aggregate::count()));
    v1.process(&[("a", 1_000, "1"), ("a", 2_000, "1")]);
    let snapshot = v1.keyed.snapshot(V1, true).unwrap();
    // v2 resumes from v1's state, with the timers v1 registered (the host keeps them).
    let mut v2 = run(Windows::tumbling(10_000).aggregate((aggregate::count(), aggregate::sum())));
    v2.timers = v1.timers.clone();
    let migrate = |version: u32, old: OldEntries<'_, Slots<(u64, Option<i64>)>>| match version {
        1 => OldWindows::<(Count, Sum)>(old).convert(|count: u64| (count, None)),
        _ => Err(format!("v{version}")),
    };
    let (group, delta, bytes) = &snapshot[0];
    v2.keyed
        .restore_group((*group, *delta, bytes), Load::Restore, V2, migrate)
        .unwrap();
    v2.process(&[("a", 3_000, "5"), ("a", 13_000, "7")]);
    assert_eq!(
        v2.advance(20_000),
        ["a 0..10000 (3, None)", "a 10000..20000 (1, Some(7))"]
    );
    assert_eq!(v2.open_windows(), 0);
}
