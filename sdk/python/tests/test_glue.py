"""The glue between an author's class and componentize-py's generated bindings: the WIT types
it returns, and the WIT errors exceptions become. Uses the real generated bindings."""

import io
import unittest
from contextlib import redirect_stderr

import support
from jobhost import (
    BatchBuilder,
    ManualTimers,
    Operator,
    Sink,
    Source,
    TimeDomain,
    TimedOperator,
    encode_envelope,
    export,
    records,
)


def types(world="operator"):
    return support.bindings(world).imports.types


def context(**config):
    return types().Context(
        operator_id="op",
        subtask=0,
        parallelism=1,
        max_parallelism=128,
        key_group_start=0,
        key_group_end=128,
        config=list(config.items()),
    )


def batch(records, key_groups=()):
    out = BatchBuilder()
    for key, value, timestamp in records:
        out.push(key, value, timestamp)
    return types().Batch(*out.finish()._replace(key_groups=list(key_groups)))


def origin(name="x", version="1"):
    return types().StateOrigin(module_name=name, module_version=version, module_sha256="")


class Upper(Operator):
    name = "upper"
    version = "1.2.3"
    rescale = "union"

    def init(self, ctx):
        self.suffix = ctx.config.get("suffix", "").encode()
        if ctx.config.get("bad"):
            raise ValueError("bad config")

    def process(self, records, keyed, out):
        for r in records:
            if r.value == b"boom":
                raise KeyError("boom")
            out.push(r.key, r.value.upper() + self.suffix, r.timestamp)


class Positions(Source):
    name = "positions"
    version = "1.0.0"
    state_format = "position"
    state_version = 3

    def init(self, ctx):
        self.next = 0
        self.end = int(ctx.config.get("end", "5"))

    def poll(self, max_records, out):
        if self.next == 99:
            return None
        if self.next == 98:
            for _ in range(max_records + 1):
                out.push(b"", b"", 0)
            return True
        while len(out) < max_records and self.next < self.end:
            out.push(b"", b"%d" % self.next, self.next)
            self.next += 1
        return self.next < self.end

    def snapshot_operator_state(self):
        return self.next

    def restore_operator_state(self, payloads, origin):
        (self.next,) = payloads

    def migrate_operator_state(self, version, payload):
        if version == 2:
            return payload["next"]
        return super().migrate_operator_state(version, payload)


class Collect(Sink):
    name = "collect"
    version = "1.0.0"

    def init(self, ctx):
        self.written = []
        self.calls = []

    def write(self, records):
        self.written += [r.value for r in records]

    def prepare_commit(self, checkpoint):
        self.calls.append(("prepare", checkpoint))

    def commit(self, checkpoint):
        self.calls.append(("commit", checkpoint))

    def recover(self, checkpoint):
        raise OSError(5, "Input/output error")


class Alarm(TimedOperator):
    """Registers a timer 10 ms after each record of its key; says so when it fires."""

    name = "alarm"
    version = "1.0.0"
    state_format = "alarm"

    def process(self, records, keyed, out):
        for r in records:
            keyed.put(r, keyed.get(r, 0) + 1)
            self.timers.register(r.key, r.timestamp + 10, TimeDomain.PROCESSING_TIME)

    def on_timer(self, domain, fired, keyed, out):
        for timer in fired:
            seen = keyed.get(timer)
            out.push(timer.key, b"%s %d after %d" % (domain.value.encode(), timer.timestamp, seen), timer.timestamp)
            keyed.delete(timer)


class GlueTest(unittest.TestCase):
    def setUp(self):
        self.Err = support.err_type()

    def assert_err(self, call, message):
        with redirect_stderr(io.StringIO()) as stderr:
            with self.assertRaises(self.Err) as caught:
                call()
        self.assertEqual(caught.exception.value, message)
        return stderr.getvalue()

    def test_an_operator_through_the_generated_types(self):
        world = export(Upper, support.bindings("operator"))()
        info = world.describe()
        self.assertEqual((info.name, info.version, info.rescale), ("upper", "1.2.3", types().Rescale.UNION))
        world.init(context(suffix="!"))
        output = world.process(batch([(b"k", b"abc", 5), (b"", b"", -1)]))
        self.assertIsInstance(output, types().Batch)
        self.assertEqual(
            (output.keys, output.key_ends, output.values, output.value_ends, output.timestamps, output.key_groups),
            (b"k", [1, 1], b"ABC!!", [4, 5], [5, -1], []),
        )
        snapshot = world.snapshot(1, True)
        self.assertEqual((snapshot.operator_state, snapshot.key_groups), (b"", []))

    def test_exceptions_become_wit_errors_naming_their_type(self):
        world = export(Upper, support.bindings("operator"))()
        self.assert_err(lambda: world.process(batch([])), "JobhostError: upper is not initialized: `init` has not succeeded")
        log = self.assert_err(lambda: world.init(context(bad="1")), "ValueError: bad config")
        self.assertIn("Traceback", log)
        self.assertIn('raise ValueError("bad config")', log)
        world.init(context())
        self.assert_err(lambda: world.process(batch([(b"", b"boom", 0)])), "KeyError: 'boom'")
        malformed = types().Batch(b"", [0], b"", [], [1], [])
        log = self.assert_err(lambda: world.process(malformed), "BatchError: malformed batch: 0 value ends for 1 timestamps")
        self.assertEqual(log, "", "the SDK's own errors need no traceback")
        self.assert_err(
            lambda: world.restore(types().Restored(1, [b"\x93\xa1f\x01\xc0"], []), origin("old", "0.9")),
            "StateError: `upper` is stateless, but was given 5 bytes of operator state written by old 0.9",
        )
        self.assert_err(
            lambda: world.restore(types().Restored(1, [], [types().KeyGroupState(3, False, b"\x93\xa1f\x01\x90")]), origin("old", "0.9")),
            "StateError: this module keeps no keyed state, but was given the state of key group 3 written by old 0.9",
        )
        world.restore(types().Restored(1, [b""], [types().KeyGroupState(3, False, b"")]), origin())

    def test_a_timed_operator_through_the_generated_types(self):
        t = types("timed-operator")
        # An app module's globals, as componentize-py imports it.
        app = {"Alarm": Alarm, "world": support.bindings("timed-operator")}
        exec("from jobhost import export\nWitWorld = export(Alarm, world)", app)
        world = app["WitWorld"]
        timers = world.runtime.timers = ManualTimers(lambda key: 3)
        world = world()
        world.init(context())
        world.process(t.Batch(*BatchBuilder().finish()))
        rows = BatchBuilder()
        rows.push(b"k", b"", 5)
        rows.push(b"k", b"", 7)
        world.process(t.Batch(*rows.finish()._replace(key_groups=[3, 3])))
        self.assertEqual(timers.pending(TimeDomain.PROCESSING_TIME), [(b"k", 15), (b"k", 17)])
        fired = world.on_timer(t.TimeDomain.PROCESSING_TIME, t.Batch(*timers.advance_clock(15)))
        self.assertIsInstance(fired, t.Batch)
        self.assertEqual([r.value for r in records(fired)], [b"processing-time 15 after 2"])
        # `catch-up`: defined in the module that called `export`, as componentize-py wants.
        catch_up = app["CatchUp"]()
        changes = t.Restored(1, [b""], [t.KeyGroupState(3, False, encode_envelope("alarm", 1, [[b"k", 9]]))])
        catch_up.restore_changes(changes, origin())
        snapshot = world.snapshot(2, False)
        self.assertEqual([(g.key_group, g.delta) for g in snapshot.key_groups], [(3, False)])
        fired = world.on_timer(t.TimeDomain.PROCESSING_TIME, t.Batch(*timers.advance_clock(17)))
        self.assertEqual([r.value for r in records(fired)], [b"processing-time 17 after 9"])
        self.assert_err(
            lambda: world.on_timer(t.TimeDomain.EVENT_TIME, t.Batch(b"k", [1], b"", [0], [1], [])),
            "JobhostError: timers fired without their key groups",
        )

    def test_operators_without_time_have_no_timers(self):
        with self.assertRaisesRegex(TypeError, "Alarm is a TimedOperator, but this component is built for world `operator`"):
            export(Alarm, support.bindings("operator"))
        with self.assertRaisesRegex(TypeError, "Upper is a Operator, but this component is built for world `timed-operator`"):
            export(Upper, support.bindings("timed-operator"))
        with self.assertRaisesRegex(Exception, "this operator has no timers: derive it from TimedOperator"):
            Alarm().timers.register(b"k", 1, TimeDomain.EVENT_TIME)

    def test_a_class_is_built_only_for_its_own_world(self):
        with self.assertRaises(TypeError) as caught:
            export(Collect, support.bindings("operator"))
        self.assertEqual(
            str(caught.exception),
            "Collect is a Sink, but this component is built for world `operator`: build it for world `sink`",
        )
        with self.assertRaisesRegex(TypeError, "not a subclass of jobhost.Operator, Source or Sink"):
            export(object, support.bindings("operator"))

        class Nameless(Operator):
            version = "1"

        with self.assertRaisesRegex(TypeError, "Nameless.name must be a non-empty string"):
            export(Nameless, support.bindings("operator"))

        class Rescaling(Upper):
            rescale = "split"

        with self.assertRaisesRegex(TypeError, 'Rescaling.rescale must be "refuse" or "union"'):
            export(Rescaling, support.bindings("operator"))

    def test_a_source_polls_to_its_end_and_resumes_from_its_position(self):
        t = types("source")
        world = export(Positions, support.bindings("source"))()
        world.init(context(end="5"))
        polled = world.poll_batch(2)
        self.assertIsInstance(polled, t.PollResult_Records)
        self.assertEqual(polled.value.values, b"01")
        snapshot = world.snapshot(1, False)
        self.assertEqual(snapshot.operator_state, encode_envelope("position", 3, 2))
        self.assertEqual(world.poll_batch(5).value.values, b"234")  # the last records
        self.assertIsInstance(world.poll_batch(5), t.PollResult_End)
        self.assertIsInstance(world.poll_batch(5), t.PollResult_End)

        resumed = export(Positions, support.bindings("source"))()
        resumed.init(context(end="5"))
        resumed.restore(t.Restored(1, [snapshot.operator_state], []), origin())
        self.assertEqual(resumed.poll_batch(10).value.timestamps, [2, 3, 4])
        self.assertIsInstance(resumed.poll_batch(10), t.PollResult_End)

        # An older version is migrated; a newer one refused.
        older = export(Positions, support.bindings("source"))()
        older.init(context(end="5"))
        older.restore(t.Restored(1, [encode_envelope("position", 2, {"next": 4})], []), origin())
        self.assertEqual(older.poll_batch(10).value.values, b"4")
        self.assert_err(
            lambda: older.restore(t.Restored(1, [encode_envelope("position", 1, 0)], []), origin()),
            "StateError: unsupported state version 1 of `position`: this module reads state version 3 (it migrates no older version)",
        )
        self.assert_err(
            lambda: older.restore(t.Restored(1, [encode_envelope("position", 4, 0)], []), origin()),
            "StateError: unsupported state version 4 of `position`: this module reads state version 3 and older",
        )

    def test_union_rescaling_hands_every_old_subtasks_state_in_order(self):
        t = types("source")

        class Shares(Positions):
            rescale = "union"

            def restore_operator_state(self, payloads, origin):
                self.restored = (payloads, origin.parallelism, str(origin))

        world = export(Shares, support.bindings("source"))()
        self.assertEqual(world.describe().rescale, t.Rescale.UNION)
        world.init(context())
        old = [b"", encode_envelope("position", 3, 7), b""]
        world.restore(t.Restored(3, old, []), origin("positions", "1.0.0"))
        self.assertEqual(
            type(world).runtime.module().restored, ([None, 7, None], 3, "positions 1.0.0")
        )

    def test_a_source_that_breaks_the_poll_contract_fails(self):
        t = types("source")
        world = export(Positions, support.bindings("source"))()
        world.init(context())
        world.restore(t.Restored(1, [encode_envelope("position", 3, 99)], []), origin())
        self.assert_err(lambda: world.poll_batch(3), "TypeError: Positions.poll returned None: it returns True while more records may follow, False at the end")
        world.restore(t.Restored(1, [encode_envelope("position", 3, 98)], []), origin())
        self.assert_err(lambda: world.poll_batch(3), "ValueError: Positions.poll pushed 4 records, more than the 3 asked for")

    def test_a_sink(self):
        world = export(Collect, support.bindings("sink"))()
        world.init(context())
        world.write_batch(batch([(b"", b"a", 1), (b"", b"b", 2)]))
        world.prepare_commit(1)
        world.commit(1)
        module = type(world).runtime.module()
        self.assertEqual((module.written, module.calls), ([b"a", b"b"], [("prepare", 1), ("commit", 1)]))
        self.assert_err(lambda: world.recover(1), "OSError: [Errno 5] Input/output error")


if __name__ == "__main__":
    unittest.main()
