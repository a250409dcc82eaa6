"""Keyed state by key group: dirty tracking, incremental and full snapshots, restore and
migration."""

import unittest

import msgpack

import support  # noqa: F401  (sets up sys.path)
from jobhost import KeyedState, KeyedStateError, Record, StateError, decode_envelope, encode_envelope

APPLE = Record(b"apple", b"apple", 1, 0)  # `apple` is in group 0 of 128, `the` in 125
PEAR = Record(b"pear", b"pear", 2, 0)
THE = Record(b"the", b"the", 3, 125)


def refuse(version, value):
    raise AssertionError("no migration expected")


# A delta of group 0 as the Rust SDK writes it (docs/state-format.md): `apple` is now 4 and
# `pear` is gone: ["word-count", 1, [[bin "apple", 4]], [bin "pear"]].
APPLE_4_PEAR_GONE = b"\x94\xaaword-count\x01\x91\x92\xc4\x05apple\x04\x91\xc4\x04pear"


def decoded(snapshot):
    """Each group's envelope as a tuple (of 4 for a delta, which says it is one), or b""."""
    out = {}
    for g, delta, blob in snapshot:
        envelope = tuple(msgpack.unpackb(blob)) if blob else b""
        assert delta == (len(envelope) == 4), (g, delta, envelope)
        out[g] = envelope
    return out


class KeyedStateTest(unittest.TestCase):
    def state(self, version=1):
        return KeyedState(0, 128, "word-count", version)

    def test_get_put_delete(self):
        state = self.state()
        self.assertIsNone(state.get(APPLE))
        self.assertEqual(state.get(APPLE, 0), 0)
        state.put(APPLE, 1)
        state.put(THE, 2)
        self.assertEqual((state.get(APPLE), state.get(THE), state.get(PEAR, 7)), (1, 2, 7))
        self.assertEqual(len(state), 2)
        self.assertEqual(list(state.items()), [(0, b"apple", 1), (125, b"the", 2)])
        state.delete(THE)
        state.delete(PEAR)
        self.assertIsNone(state.get(THE))
        self.assertEqual(len(state), 1)

    def test_snapshots_write_only_the_groups_changed_since_the_previous_one(self):
        state = self.state()
        self.assertEqual(state.snapshot(False), [])
        state.put(PEAR, 1)
        state.put(APPLE, 3)
        state.put(THE, 1)
        self.assertEqual(
            decoded(state.snapshot(False)),
            {
                0: ("word-count", 1, [[b"apple", 3], [b"pear", 1]]),
                125: ("word-count", 1, [[b"the", 1]]),
            },
        )
        self.assertEqual(state.snapshot(False), [])
        state.put(THE, 2)
        # The host holds group 125 now: a delta of the one key put.
        self.assertEqual(decoded(state.snapshot(False)), {125: ("word-count", 1, [[b"the", 2]], [])})
        # Deleting a key that is not there changes nothing; emptying a group lists it, empty.
        state.delete(Record(b"absent", b"", 0, 7))
        state.delete(THE)
        self.assertEqual(state.snapshot(False), [(125, False, b"")])
        self.assertEqual(state.snapshot(False), [])
        # A full snapshot lists every group held.
        self.assertEqual(
            decoded(state.snapshot(True)),
            {0: ("word-count", 1, [[b"apple", 3], [b"pear", 1]])},
        )

    def test_a_full_snapshot_also_lists_groups_emptied_since_the_previous_one(self):
        state = self.state()
        state.put(APPLE, 1)
        state.put(THE, 1)
        state.snapshot(False)
        state.delete(THE)
        self.assertEqual(
            decoded(state.snapshot(True)), {0: ("word-count", 1, [[b"apple", 1]]), 125: b""}
        )
        self.assertEqual(state.snapshot(True), [(0, False, encode_envelope("word-count", 1, [[b"apple", 1]]))])

    def test_records_without_a_key_group_or_of_another_subtask_are_refused(self):
        state = KeyedState(64, 128, "word-count", 1)
        with self.assertRaises(KeyedStateError) as caught:
            state.get(Record(b"x", b"x", 0))
        self.assertEqual(
            str(caught.exception),
            "record with key b'x' has no key group: keyed state is for records that arrived "
            "over a key-by edge",
        )
        with self.assertRaisesRegex(KeyedStateError, "in key group 0, not one of this subtask's key groups 64..128"):
            state.put(APPLE, 1)
        state.put(THE, 1)
        with self.assertRaisesRegex(KeyedStateError, "keyed state needs a state format"):
            KeyedState(0, 128, None, 1).put(APPLE, 1)

    def test_restore_loads_the_groups_given(self):
        written = self.state()
        written.put(APPLE, 3)
        written.put(THE, 1)
        blobs = written.snapshot(True)
        state = self.state()
        state.put(PEAR, 9)
        state.restore(blobs + [(5, False, b"")], refuse, "word-counter 1.0.0")
        self.assertEqual(list(state.items()), [(0, b"apple", 3), (125, b"the", 1)])
        self.assertEqual(state.snapshot(False), [], "restored groups are not dirty")
        self.assertEqual(state.snapshot(True), blobs)

    def test_restore_applies_deltas_after_the_whole_state_in_order(self):
        written = self.state()
        written.put(APPLE, 3)
        written.put(PEAR, 1)
        written.put(THE, 1)
        chain = written.snapshot(True) + [(0, True, APPLE_4_PEAR_GONE)]
        state = self.state()
        state.restore(chain, refuse, "word-counter 1.0.0")
        self.assertEqual(list(state.items()), [(0, b"apple", 4), (125, b"the", 1)])
        with self.assertRaisesRegex(StateError, "key group 0 was given whole twice"):
            self.state().restore(chain[:1] + chain[:1], refuse, "x 1")
        with self.assertRaisesRegex(StateError, "not a \\[format, version, upserts, removed\\] envelope"):
            self.state().restore([(0, True, chain[0][2])], refuse, "x 1")

    def test_deltas_hold_the_keys_put_and_deleted_and_restore_exactly(self):
        state = self.state()
        for i in range(8):
            state.put(Record(b"k%d" % i, b"", 0, 0), i)
        chain = state.snapshot(False)
        state.put(Record(b"k1", b"", 0, 0), 10)
        state.delete(Record(b"k2", b"", 0, 0))
        state.put(Record(b"k2", b"", 0, 0), 20)
        state.delete(Record(b"k3", b"", 0, 0))
        delta = state.snapshot(False)
        self.assertEqual(
            decoded(delta),
            {0: ("word-count", 1, [[b"k1", 10], [b"k2", 20]], [b"k2", b"k3"])},
        )
        again = self.state()
        again.restore(chain + delta, refuse, "word-counter 1.0.0")
        self.assertEqual(list(again.items()), list(state.items()))
        # Deltas of 3 + 3 + 3 entries since the whole state outnumber its 7 keys: whole again.
        kinds = []
        for n in range(3):
            for i in range(3):
                state.put(Record(b"k%d" % i, b"", 0, 0), n)
            kinds.append(state.snapshot(False)[0][1])
        self.assertEqual(kinds, [True, False, True])

    def test_restore_changes_apply_on_top_and_count_as_changed(self):
        written = self.state()
        written.put(APPLE, 3)
        written.put(PEAR, 1)
        written.put(THE, 1)
        written.put(Record(b"x", b"", 0, 5), 7)
        for key in (b"k1", b"k2", b"k3"):
            written.put(Record(key, b"", 0, 0), 1)
        state = self.state()
        state.restore(written.snapshot(True), refuse, "word-counter 1.0.0")
        state.snapshot(True)  # the host's copy of the new module, taken after `restore`
        changes = [
            (0, True, APPLE_4_PEAR_GONE),
            (125, False, encode_envelope("word-count", 1, [[b"the", 2], [b"thy", 1]])),
            (5, False, b""),
        ]
        state.restore_changes(changes, refuse, "word-counter 1.0.0")
        self.assertEqual(
            list(state.items()),
            [(0, b"apple", 4), (0, b"k1", 1), (0, b"k2", 1), (0, b"k3", 1), (125, b"the", 2), (125, b"thy", 1)],
        )
        self.assertEqual(
            decoded(state.snapshot(False)),
            {
                0: ("word-count", 1, [[b"apple", 4]], [b"pear"]),
                5: b"",
                125: ("word-count", 1, [[b"the", 2], [b"thy", 1]]),
            },
        )
        self.assertEqual(state.snapshot(False), [], "changes are snapshotted once")

    def test_restore_migrates_older_versions_and_rewrites_their_groups(self):
        v1 = self.state(1)
        v1.put(APPLE, 3)
        v1.put(THE, 1)
        v2 = self.state(2)
        v2.restore(v1.snapshot(True), lambda version, count: [count, None], "word-counter 1.0.0")
        self.assertEqual(list(v2.items()), [(0, b"apple", [3, None]), (125, b"the", [1, None])])
        self.assertEqual(
            decoded(v2.snapshot(False)),
            {
                0: ("word-count", 2, [[b"apple", [3, None]]]),
                125: ("word-count", 2, [[b"the", [1, None]]]),
            },
        )

    def test_restore_refuses_what_it_cannot_read(self):
        v2 = encode_envelope("word-count", 2, [[b"apple", [1, 5]]])
        cases = [
            (v2, "unsupported state version 2 of `word-count`: this module reads state version 1 and older"),
            (encode_envelope("line-position", 1, [0, 0]), "state of format `line-position` cannot be read: this module reads `word-count`"),
            (encode_envelope("word-count", 1, {b"apple": 1}), "the state of key group 3 is not a list of distinct [bin key, value] pairs"),
            (encode_envelope("word-count", 1, [["apple", 1]]), "not a list of distinct [bin key, value] pairs"),
            (encode_envelope("word-count", 1, [[b"a", 1], [b"a", 2]]), "not a list of distinct [bin key, value] pairs"),
            (encode_envelope("word-count", 1, [[b"a", 1, 2]]), "not a list of distinct [bin key, value] pairs"),
            (b"\x01", "not a [format, version, payload] envelope"),
        ]
        for blob, message in cases:
            with self.subTest(message):
                with self.assertRaises(StateError) as caught:
                    self.state(1).restore([(3, False, blob)], refuse, "x 1")
                self.assertIn(message, str(caught.exception))
        with self.assertRaisesRegex(StateError, "keeps no keyed state, but was given the state of key group 3 written by word-counter 1.0.0"):
            KeyedState(0, 128, None, 1).restore([(3, False, v2)], refuse, "word-counter 1.0.0")


if __name__ == "__main__":
    unittest.main()
