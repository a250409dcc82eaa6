"""The examples, natively, through the same glue as in a component."""

import io
import os
import shutil
import tempfile
import unittest
from contextlib import redirect_stderr

import support
from jobhost import (
    BatchBuilder,
    ManualTimers,
    Record,
    TimeDomain,
    decode_envelope,
    encode_envelope,
    records,
)

# What `word-counter` 1.0.0 writes for group 0 after counting "apple" three times and "pear"
# once (docs/state-format.md).
V1_GROUP = b"\x93\xaaword-count\x01\x92\x92\xc4\x05apple\x03\x92\xc4\x04pear\x01"


def types(world="operator"):
    return support.bindings(world).imports.types


def context(subtask=0, parallelism=1, **config):
    return types().Context("op", subtask, parallelism, 128, 0, 128, list(config.items()))


def batch(rows, key_groups=()):
    out = BatchBuilder()
    for key, value, timestamp in rows:
        out.push(key, value, timestamp)
    return types().Batch(*out.finish()._replace(key_groups=list(key_groups)))


def rows(output):
    return [(r.key, r.value, r.timestamp) for r in records(output)]


def instance(name, world, **config):
    glue = support.load_example(name, world).WitWorld()
    glue.init(context(**config))
    return glue


def origin(name="word-counter", version="1.0.0"):
    return types().StateOrigin(name, version, "")


class TokenizerTest(unittest.TestCase):
    def test_splits_lines_into_lower_case_words(self):
        tokenizer = instance("tokenizer", "operator")
        output = tokenizer.process(
            batch([(b"", "Hello, World! Été x2-go_on".encode(), 7), (b"", b"  \xffBAD\xffbytes ", 8)])
        )
        self.assertEqual(
            [(r.key, r.timestamp) for r in records(output)],
            [(w.encode(), t) for w, t in [
                ("hello", 7), ("world", 7), ("été", 7), ("x2", 7), ("go", 7), ("on", 7),
                ("bad", 8), ("bytes", 8),
            ]],
        )
        self.assertTrue(all(r.key == r.value for r in records(output)))
        self.assertEqual(tokenizer.describe().name, "tokenizer")


class CounterTest(unittest.TestCase):
    def test_v1_counts_words_and_writes_version_1(self):
        counter = instance("counter_v1", "operator")
        words = [(b"apple", 1), (b"pear", 2), (b"apple", 3), (b"the", 4), (b"apple", 5)]
        output = counter.process(batch([(w, w, t) for w, t in words], [0, 0, 0, 125, 0]))
        self.assertEqual(
            rows(output),
            [(b"apple", b"apple 1", 1), (b"pear", b"pear 1", 2), (b"apple", b"apple 2", 3),
             (b"the", b"the 1", 4), (b"apple", b"apple 3", 5)],
        )
        snapshot = counter.snapshot(1, False)
        self.assertEqual(snapshot.operator_state, b"")
        self.assertEqual(
            [(g.key_group, g.state) for g in snapshot.key_groups],
            [(0, V1_GROUP), (125, encode_envelope("word-count", 1, [[b"the", 1]]))],
        )
        self.assertEqual(counter.snapshot(2, False).key_groups, [])
        self.assertEqual(len(counter.snapshot(3, True).key_groups), 2)

    def test_v1_refuses_records_without_key_groups_and_v2_state(self):
        Err = support.err_type()
        counter = instance("counter_v1", "operator")
        with self.assertRaises(Err) as caught:
            counter.process(batch([(b"a", b"a", 1)]))
        self.assertEqual(
            caught.exception.value,
            "KeyedStateError: record with key b'a' has no key group: keyed state is for records "
            "that arrived over a key-by edge",
        )
        v2 = types().Restored(1, [], [types().KeyGroupState(0, False, encode_envelope("word-count", 2, []))])
        with self.assertRaises(Err) as caught:
            counter.restore(v2, origin("word-counter", "2.0.0"))
        self.assertEqual(
            caught.exception.value,
            "StateError: unsupported state version 2 of `word-count`: this module reads state "
            "version 1 and older",
        )

    def test_v2_migrates_v1_state_and_says_what_it_does_not_know(self):
        counter = instance("counter_v2", "operator")
        counter.restore(types().Restored(1, [b""], [types().KeyGroupState(0, False, V1_GROUP)]), origin())
        output = counter.process(
            batch([(b"apple", b"apple", 10), (b"the", b"the", 0), (b"the", b"the", 12), (b"pear", b"pear", -5)], [0, 125, 125, 0])
        )
        self.assertEqual(
            [r.value for r in records(output)],
            [b"apple 4 first-seen=unknown", b"the 1 first-seen=0", b"the 2 first-seen=0", b"pear 2 first-seen=unknown"],
        )
        groups = {g.key_group: decode_envelope(g.state) for g in counter.snapshot(1, False).key_groups}
        self.assertEqual(
            groups,
            {
                0: ("word-count", 2, [[b"apple", [4, None]], [b"pear", [2, None]]]),
                125: ("word-count", 2, [[b"the", [2, 0]]]),
            },
        )
        # And reads its own state back.
        again = instance("counter_v2", "operator")
        snapshot = counter.snapshot(2, True)
        again.restore(types().Restored(1, [], snapshot.key_groups), origin("word-counter", "2.0.0"))
        self.assertEqual(
            rows(again.process(batch([(b"the", b"the", 20)], [125]))),
            [(b"the", b"the 3 first-seen=0", 20)],
        )

    def test_v2_refuses_a_malformed_v1_value(self):
        counter = instance("counter_v2", "operator")
        blob = encode_envelope("word-count", 1, [[b"apple", "three"]])
        with self.assertRaises(support.err_type()) as caught:
            counter.restore(types().Restored(1, [], [types().KeyGroupState(0, False, blob)]), origin())
        self.assertEqual(
            caught.exception.value,
            "StateError: a `word-count` version 1 value is a count, not 'three'",
        )


# What `window-count` 1.0.0 writes for key group 7 after `a` at 1000 and 2000 (the vector of
# the Rust, Python and JavaScript SDKs' window tests, and of guest-examples/rust/window-count-v1).
WINDOW_V1_GROUP = b"\x93\xacwindow-count\x01\x91\x92\xc4\x01a\x91\x94\x00\xcd\x27\x10\x02\xc2"


def timed(name, timers, **config):
    """Example `name` built for world `timed-operator`, its timers `timers`, initialized."""
    glue = support.load_example(name, "timed-operator").WitWorld
    glue.runtime.timers = timers
    glue = glue()
    glue.init(context(**config))
    return glue


def fire(glue, timers, watermark):
    t = types("timed-operator")
    return glue.on_timer(t.TimeDomain.EVENT_TIME, t.Batch(*timers.advance_watermark(watermark)))


class WindowCountTest(unittest.TestCase):
    def test_v1_counts_per_window_emits_at_the_watermark_and_writes_version_1(self):
        timers = ManualTimers(lambda key: 7)
        v1 = timed("window_count_v1", timers)
        self.assertEqual(rows(v1.process(batch([(b"a", b"", 1_000), (b"a", b"", 2_000)], [7, 7]))), [])
        snapshot = v1.snapshot(1, False)
        self.assertEqual([(g.key_group, g.state) for g in snapshot.key_groups], [(7, WINDOW_V1_GROUP)])
        v1.process(batch([(b"a", b"", 12_000)], [7]))
        self.assertEqual(timers.pending(TimeDomain.EVENT_TIME), [(b"a", 9_999), (b"a", 19_999)])
        self.assertEqual(
            rows(fire(v1, timers, 19_999)),
            [(b"a", b"a 0 10000 count=2", 9_999), (b"a", b"a 10000 20000 count=1", 19_999)],
        )
        # Without allowed lateness, a record of a window already emitted is late: dropped.
        self.assertEqual(rows(v1.process(batch([(b"a", b"", 19_000)], [7]))), [])
        self.assertEqual([(g.key_group, g.state) for g in v1.snapshot(2, False).key_groups], [(7, b"")])

    def test_v1_keeps_a_window_its_allowed_lateness_and_emits_it_again(self):
        timers = ManualTimers(lambda key: 7)
        v1 = timed("window_count_v1", timers, allowed_lateness_ms="5000")
        v1.process(batch([(b"a", b"", 1_000)], [7]))
        self.assertEqual(rows(fire(v1, timers, 12_000)), [(b"a", b"a 0 10000 count=1", 9_999)])
        self.assertEqual(rows(v1.process(batch([(b"a", b"", 3_000)], [7]))), [(b"a", b"a 0 10000 count=2", 9_999)])

    def test_v2_resumes_v1_open_windows_and_sums_from_then_on(self):
        # The host keeps the timer v1 registered for its window across the upgrade.
        timers = ManualTimers(lambda key: 7)
        timers.register(b"a", 9_999, TimeDomain.EVENT_TIME)
        v2 = timed("window_count_v2", timers)
        t = types("timed-operator")
        v2.restore(t.Restored(1, [b""], [t.KeyGroupState(7, False, WINDOW_V1_GROUP)]), origin("window-count"))
        v2.process(batch([(b"a", b"5", 3_000), (b"a", b"7", 13_000), (b"b", b"", 4_000)], [7, 7, 7]))
        self.assertEqual(
            [value for _, value, _ in rows(fire(v2, timers, 20_000))],
            [b"a 0 10000 count=3 sum=unknown", b"b 0 10000 count=1 sum=0", b"a 10000 20000 count=1 sum=7"],
        )
        bad = WINDOW_V1_GROUP.replace(b"\x02\xc2", b"\xa1x\xc2")
        v2 = timed("window_count_v2", ManualTimers(lambda key: 7))
        with redirect_stderr(io.StringIO()):
            with self.assertRaises(support.err_type()) as caught:
                v2.restore(t.Restored(1, [b""], [t.KeyGroupState(7, False, bad)]), origin("window-count"))
        self.assertIn("a `window-count` version 1 accumulator is a count, not 'x'", caught.exception.value)


class FolderTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="jobhost-test-")
        self.addCleanup(shutil.rmtree, self.dir)


class LineSourceTest(FolderTest):
    def test_reads_its_share_of_lines_and_resumes(self):
        t = types("source")
        path = os.path.join(self.dir, "lines.txt")
        with open(path, "wb") as f:
            f.write(b"zero\none\r\n\nthree\nfour\nfive")

        def reader(subtask):
            glue = support.load_example("line_source", "source").WitWorld()
            glue.init(context(subtask, 2, path=path))
            self.addCleanup(type(glue).runtime.module().file.close)
            return glue

        def poll(glue, max_records):
            result = glue.poll_batch(max_records)
            if isinstance(result, t.PollResult_End):
                return None
            return [(r.value, r.timestamp) for r in records(result.value)]

        odd = reader(1)
        self.assertEqual(poll(odd, 10), [(b"one", 1), (b"three", 3), (b"five", 5)])
        self.assertIsNone(poll(odd, 10))
        even = reader(0)
        self.assertEqual(poll(even, 0), [])
        self.assertEqual(poll(even, 1), [(b"zero", 0)])
        state = even.snapshot(1, False).operator_state
        self.assertEqual(decode_envelope(state), ("line-position", 1, [5, 1]))
        self.assertEqual(poll(even, 2), [(b"", 2), (b"four", 4)])

        resumed = reader(0)
        resumed.restore(t.Restored(1, [state], []), origin("line-source"))
        self.assertEqual(poll(resumed, 5), [(b"", 2), (b"four", 4)])
        self.assertIsNone(poll(resumed, 5))

        beyond = encode_envelope("line-position", 1, [1000, 0])
        with redirect_stderr(io.StringIO()), self.assertRaises(support.err_type()) as caught:
            reader(0).restore(t.Restored(1, [beyond], []), origin("line-source"))
        self.assertEqual(
            caught.exception.value,
            f"ValueError: cannot resume `{path}` at byte 1000: the file has only 26 bytes "
            "(was it changed?)",
        )


class FileSinkTest(FolderTest):
    def files(self):
        found = []
        for sub in ("", ".staging"):
            folder = os.path.join(self.dir, sub)
            if not os.path.isdir(folder):
                continue
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                if os.path.isfile(path):
                    with open(path) as f:
                        found.append((os.path.join(sub, name), f.read()))
        return sorted(found)

    def sink(self, subtask):
        glue = support.load_example("file_sink", "sink").WitWorld()
        glue.init(context(subtask, 2, dir=self.dir))
        return glue

    def values(self, *values):
        return batch([(b"", v.encode(), 0) for v in values])

    def test_commits_in_two_phases_and_rolls_back_on_recover(self):
        other = self.sink(0)
        other.prepare_commit(1)
        other.commit(1)

        first = self.sink(1)
        first.write_batch(self.values("a", "b"))
        first.prepare_commit(1)
        first.commit(1)
        first.commit(1)
        first.write_batch(self.values("c"))
        first.prepare_commit(2)
        state = first.snapshot(2, False).operator_state
        self.assertEqual(decode_envelope(state), ("file-sink", 1, [2, [2]]))
        first.write_batch(self.values("d"))
        first.prepare_commit(3)
        first.write_batch(self.values("e"))
        first.prepare_commit(4)
        first.commit(3)
        first.write_batch(self.values("f"))
        type(first).runtime.module().current.close()
        self.assertEqual(
            self.files(),
            [
                (".staging/1-4.pending", "e\n"),
                (".staging/1.current", "f\n"),
                ("part-000000000001-0.txt", ""),
                ("part-000000000001-1.txt", "a\nb\n"),
                ("part-000000000002-1.txt", "c\n"),
                ("part-000000000003-1.txt", "d\n"),
            ],
        )

        # Back to checkpoint 2, whose commit had not happened as far as its state knows.
        # Restoring touches no file; recovering does.
        before = self.files()
        second = self.sink(1)
        second.restore(types().Restored(1, [state], []), origin("file-sink"))
        self.assertEqual(self.files(), before, "restore changed the folder")
        second.recover(2)
        second.write_batch(self.values("g"))
        second.prepare_commit(3)
        with redirect_stderr(io.StringIO()), self.assertRaises(support.err_type()) as caught:
            second.prepare_commit(3)
        self.assertEqual(caught.exception.value, "ValueError: checkpoint 3 is not after pending checkpoint 3")
        second.commit(3)
        self.assertEqual(
            self.files(),
            [
                ("part-000000000001-0.txt", ""),
                ("part-000000000001-1.txt", "a\nb\n"),
                ("part-000000000002-1.txt", "c\n"),
                ("part-000000000003-1.txt", "g\n"),
            ],
        )

    def test_names_parse_back_exactly(self):
        sink = support.load_example("file_sink", "sink")
        self.assertEqual(sink.part_name(42, 3), "part-000000000042-3.txt")
        self.assertEqual(sink.part_id("part-000000000042-3.txt", 3), 42)
        self.assertEqual(sink.part_id(sink.part_name(2**64 - 1, 0), 0), 2**64 - 1)
        self.assertEqual(sink.pending_id("3-42.pending", 3), 42)
        for name in [
            "part-000000000042-13.txt", "part-000000000042-3.txt.tmp", "part-42-3.txt",
            "part-+00000000042-3.txt", "part-000000000042-03.txt", "13-42.pending",
            "3-042.pending", "3-+42.pending", "3.current",
        ]:
            self.assertIsNone(sink.part_id(name, 3) or sink.pending_id(name, 3), name)

    def test_a_missing_folder_is_refused_at_init(self):
        glue = support.load_example("file_sink", "sink").WitWorld()
        with redirect_stderr(io.StringIO()), self.assertRaises(support.err_type()) as caught:
            glue.init(context(dir=os.path.join(self.dir, "absent")))
        self.assertIn("NotADirectoryError: config key `dir`:", caught.exception.value)
        with self.assertRaises(support.err_type()) as caught:
            glue.init(context())
        self.assertEqual(caught.exception.value, "ConfigError: missing config key `dir`")


class FailingTest(unittest.TestCase):
    def test_fails_where_it_is_told(self):
        Err = support.err_type()
        t = types()
        for where in ("init", "process", "snapshot", "restore"):
            with self.subTest(where):
                glue = support.load_example("failing", "operator").WitWorld()
                with redirect_stderr(io.StringIO()), self.assertRaises(Err) as caught:
                    glue.init(context(fail=where, after_records="1"))
                    self.assertEqual(rows(glue.process(batch([(b"a", b"a", 1)]))), [(b"a", b"a", 1)])
                    glue.process(batch([(b"b", b"b", 2)]))
                    glue.snapshot(1, False)
                    glue.restore(t.Restored(1, [encode_envelope("failing", 1, 5)], []), origin("failing"))
                self.assertEqual(caught.exception.value, f"ValueError: failing on purpose in {where}")


if __name__ == "__main__":
    unittest.main()
