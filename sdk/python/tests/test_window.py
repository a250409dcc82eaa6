"""Window semantics, driven natively with `ManualTimers`: the cases and bytes of the Rust SDK's
tests (`sdk/rust/src/window/tests.rs`) and the JavaScript SDK's."""

import unittest

import support  # noqa: F401  (the SDK on sys.path)
from jobhost import (
    BatchBuilder,
    KeyedState,
    ManualTimers,
    StateError,
    TimeDomain,
    WindowOperator,
    Windows,
    aggregate,
    records,
)

# Key group 0 after `a` at 1000 and 2000 in tumbling windows of 10 s, counted:
# ["window-count", 1, [[bin "a", [[0, 10000, 2, false]]]]], as in the Rust and JS tests.
V1_GROUP = b"\x93\xacwindow-count\x01\x91\x92\xc4\x01a\x91\x94\x00\xcd\x27\x10\x02\xc2"


class Lines(WindowOperator):
    """Emits each result as `key start..end acc`."""

    name, version = "lines", "1.0.0"
    state_format, state_version = "window-count", 1

    def __init__(self, windows):
        self.windows = windows

    def emit(self, key, window, acc, out):
        out.push(key, b"%s..%d %r" % (b"%d" % window.start, window.end, acc), window.max_timestamp)


class Run:
    """A window operator, its keyed state and timers; each call returns what it emitted."""

    def __init__(self, windows, version=1, timers=None, operator=Lines):
        self.operator = operator(windows)
        self.operator.state_version = version
        self.operator.timers = timers or ManualTimers(lambda key: 0)
        self.keyed = KeyedState(0, 1, "window-count", version)

    @property
    def timers(self):
        return self.operator.timers

    def process(self, rows):
        out = BatchBuilder()
        built = BatchBuilder()
        for key, t, value in rows:
            built.push(key, value, t)
        self.operator.process(records(built.finish()._replace(key_groups=[0] * len(rows))), self.keyed, out)
        return _lines(out)

    def advance(self, watermark):
        out = BatchBuilder()
        fired = records(self.timers.advance_watermark(watermark))
        self.operator.on_timer(TimeDomain.EVENT_TIME, fired, self.keyed, out)
        return _lines(out)

    def open_windows(self):
        return sum(len(slots) for _, _, slots in self.keyed.items())


def _lines(out):
    return [
        (r.key.decode("utf-8", "replace") + " " + r.value.decode()) for r in records(out.finish())
    ]


class WindowTest(unittest.TestCase):
    def test_tumbling_windows_count_out_of_order_records_and_fire_once_at_their_end(self):
        run = Run(Windows.tumbling(10_000).aggregate(aggregate.count()))
        self.assertEqual(
            run.process([("a", 1_000, ""), ("a", 12_000, ""), ("b", 3_000, ""), ("a", 9_000, "")]),
            [],
        )
        self.assertEqual(run.advance(9_998), [])
        self.assertEqual(run.advance(9_999), ["a 0..10000 2", "b 0..10000 1"])
        self.assertEqual(run.advance(9_999), [], "a window fires once")
        self.assertEqual(run.process([("a", 15_000, "")]), [])
        self.assertEqual(run.advance(25_000), ["a 10000..20000 2"])
        self.assertEqual(run.open_windows(), 0, "without lateness, a window goes as it fires")
        self.assertEqual(run.operator.late_records, 0)

    def test_out_of_order_input_within_the_bound_gives_exactly_the_model(self):
        # The Rust test's generator and disorder: times wander up to 3 s back, the watermark
        # trails the greatest timestamp seen by 3 s.
        state = 7
        mask = (1 << 64) - 1

        def below(n):
            nonlocal state
            state = (state * 6364136223846793005 + 1442695040888963407) & mask
            return (state >> 33) % n

        run = Run(Windows.tumbling(1_000).aggregate(aggregate.count()))
        model, emitted, greatest = {}, [], 0
        for step in range(400):
            t = max(step * 50 - below(3_000), 0)
            key = "k%d" % below(5)
            model[(key, t - t % 1_000)] = model.get((key, t - t % 1_000), 0) + 1
            emitted += run.process([(key, t, "")])
            greatest = max(greatest, t)
            emitted += run.advance(greatest - 3_000)
        emitted += run.advance((1 << 63) - 1)
        self.assertEqual(run.operator.late_records, 0)
        expected = sorted(f"{k} {s}..{s + 1_000} {n}" for (k, s), n in model.items())
        self.assertEqual(sorted(emitted), expected)

    def test_sliding_windows_hold_a_record_in_each_window_that_covers_it(self):
        run = Run(Windows.sliding(10_000, 5_000).aggregate(aggregate.count()))
        run.process([("a", 7_000, ""), ("a", 12_000, "")])
        self.assertEqual(run.advance(9_999), ["a 0..10000 1"])
        self.assertEqual(run.advance(20_000), ["a 5000..15000 2", "a 10000..20000 1"])

    def test_sessions_merge_when_a_record_bridges_their_gap(self):
        run = Run(Windows.session(1_000).aggregate(aggregate.count()))
        run.process([("a", 0, ""), ("a", 2_500, ""), ("b", 100, "")])
        # [1500, 2500) touches [2500, 3500): one session.
        run.process([("a", 1_500, "")])
        self.assertEqual(run.open_windows(), 3)
        # [800, 1800) touches [0, 1000) and [1500, 3500): one session of 4.
        run.process([("a", 800, "")])
        self.assertEqual(run.open_windows(), 2)
        # The timer of the session merged away is gone (999), the merged one's is there.
        self.assertEqual(run.timers.pending(TimeDomain.EVENT_TIME), [(b"b", 1_099), (b"a", 3_499)])
        self.assertEqual(run.advance(3_499), ["b 100..1100 1", "a 0..3500 4"])
        self.assertEqual(run.open_windows(), 0)

    def test_late_data_within_the_lateness_re_emits_beyond_it_is_dropped_and_counted(self):
        windows = Windows.tumbling(10_000).allowed_lateness(2_000).late_output()
        run = Run(windows.aggregate(aggregate.count()))
        run.process([("a", 1_000, ""), ("a", 2_000, "")])
        self.assertEqual(run.advance(10_500), ["a 0..10000 2"])
        # Within the lateness: the window takes it, and its new result goes at once.
        self.assertEqual(run.process([("a", 5_000, "x")]), ["a 0..10000 3"])
        # Its state stays until the watermark reaches 9999 + 2000.
        self.assertEqual(run.advance(11_998), [])
        self.assertEqual(run.open_windows(), 1)
        self.assertEqual(run.advance(11_999), [])
        self.assertEqual(run.open_windows(), 0, "dropped at end - 1 + allowed lateness")
        # Beyond it: dropped, counted, and sent to the side output.
        late = run.process([("a", 6_000, "y"), ("a", 12_500, "z")])
        self.assertEqual(late, ["\ufffdlate:a y"])
        self.assertEqual(run.operator.late_records, 1)
        self.assertEqual(run.open_windows(), 1, "the on-time record opened its window")
        # A window first seen within its lateness is emitted at once, and once.
        run = Run(Windows.tumbling(10_000).allowed_lateness(2_000).aggregate(aggregate.count()))
        run.advance(10_000)
        self.assertEqual(run.process([("a", 9_000, "")]), ["a 0..10000 1"])
        self.assertEqual(run.advance(11_000), [])

    def test_a_late_record_that_does_not_change_the_result_is_not_emitted_again(self):
        windows = Windows.tumbling(10_000).allowed_lateness(5_000)
        run = Run(windows.aggregate(aggregate.min(), aggregate.max()))
        run.process([("a", 1_000, "4"), ("a", 2_000, "9")])
        self.assertEqual(run.advance(10_000), ["a 0..10000 [4, 9]"])
        self.assertEqual(run.process([("a", 3_000, "5")]), [])
        self.assertEqual(run.process([("a", 3_000, "1")]), ["a 0..10000 [1, 9]"])

    def test_window_state_is_the_portable_bytes_every_sdk_writes(self):
        run = Run(Windows.tumbling(10_000).aggregate(aggregate.count()))
        run.process([("a", 1_000, ""), ("a", 2_000, "")])
        self.assertEqual(run.keyed.snapshot(True), [(0, False, V1_GROUP)])

    def test_v2_resumes_v1_open_windows_its_sum_unknown_and_sums_new_ones(self):
        v1 = Run(Windows.tumbling(10_000).aggregate(aggregate.count()))
        v1.process([("a", 1_000, "1"), ("a", 2_000, "1")])
        snapshot = v1.keyed.snapshot(True)

        class V2(Lines):
            def migrate_acc(self, version, acc):
                return [acc, None] if version == 1 else super().migrate_acc(version, acc)

        # v2 resumes from v1's state, with the timers v1 registered (the host keeps them).
        windows = Windows.tumbling(10_000).aggregate(aggregate.count(), aggregate.sum())
        v2 = Run(windows, version=2, timers=v1.timers, operator=V2)
        v2.keyed.restore(snapshot, v2.operator.migrate, "v1")
        v2.process([("a", 3_000, "5"), ("a", 13_000, "7")])
        self.assertEqual(v2.advance(20_000), ["a 0..10000 [3, None]", "a 10000..20000 [1, 7]"])
        self.assertEqual(v2.open_windows(), 0)
        with self.assertRaisesRegex(StateError, r"unsupported state version 3"):
            v2.operator.migrate(3, [[0, 10_000, 1, False]])

    def test_windows_refuse_what_makes_no_window(self):
        with self.assertRaisesRegex(ValueError, "size of a window is 0 ms"):
            Windows.tumbling(0)
        with self.assertRaisesRegex(ValueError, "slide of a window is -1 ms"):
            Windows.sliding(10, -1)
        with self.assertRaisesRegex(ValueError, "allowed lateness is -5 ms"):
            Windows.session(10).allowed_lateness(-5)
        with self.assertRaisesRegex(ValueError, "give the fold a merge"):
            Windows.session(10).aggregate(aggregate.fold(0, lambda acc, r: acc + 1))
        merging = aggregate.fold(0, lambda acc, r: acc + 1, merge=lambda a, b: a + b)
        run = Run(Windows.session(10).aggregate(merging))
        run.process([("a", 0, ""), ("a", 20, ""), ("a", 10, "")])
        self.assertEqual(run.advance(100), ["a 0..30 3"])


if __name__ == "__main__":
    unittest.main()
