"""Batches: building, reading back, and refusing malformed columns."""

import unittest

import support  # noqa: F401  (sets up sys.path)
from jobhost import BatchBuilder, BatchError, Columns, Record, records


class BatchTest(unittest.TestCase):
    def test_round_trip(self):
        out = BatchBuilder()
        out.push(b"apple", b"apple 1", 7)
        out.push(b"", b"", -(1 << 63))
        out.push("été", "a value", (1 << 63) - 1)
        out.push(bytearray(b"k"), memoryview(b"v"), 0)
        self.assertEqual(len(out), 4)
        columns = out.finish()
        self.assertEqual(
            columns,
            Columns(
                keys="appleété".encode() + b"k",
                key_ends=[5, 5, 10, 11],
                values=b"apple 1a valuev",
                value_ends=[7, 7, 14, 15],
                timestamps=[7, -(1 << 63), (1 << 63) - 1, 0],
                key_groups=[],
            ),
        )
        self.assertEqual(
            records(columns),
            [
                Record(b"apple", b"apple 1", 7, None),
                Record(b"", b"", -(1 << 63)),
                Record("été".encode(), b"a value", (1 << 63) - 1),
                Record(b"k", b"v", 0),
            ],
        )
        for r in records(columns):
            self.assertIs(type(r.key), bytes)
            self.assertIs(type(r.value), bytes)

    def test_key_groups_are_read_with_the_records(self):
        out = BatchBuilder()
        out.push(b"apple", b"apple", 1)
        out.push(b"the", b"the", 2)
        columns = out.finish()._replace(key_groups=[0, 125])
        self.assertEqual(
            [(r.key, r.key_group) for r in records(columns)], [(b"apple", 0), (b"the", 125)]
        )

    def test_empty_batch(self):
        self.assertEqual(records(BatchBuilder().finish()), [])
        self.assertEqual(records(Columns(b"", [], b"", [], [])), [])

    def test_malformed_batches_are_refused(self):
        cases = [
            (Columns(b"ab", [1], b"", [0, 0], [1, 2]), "malformed batch: 1 key ends for 2 timestamps"),
            (Columns(b"ab", [1, 2], b"", [0], [1, 2]), "malformed batch: 1 value ends for 2 timestamps"),
            (
                Columns(b"abc", [2, 1, 3], b"", [0, 0, 0], [1, 2, 3]),
                "malformed batch: key end 1 is 1, before the previous end 2",
            ),
            (
                Columns(b"ab", [1, 3], b"", [0, 0], [1, 2]),
                "malformed batch: key ends reach 3, past the 2 bytes of keys",
            ),
            (
                Columns(b"", [0], b"xy", [5], [1]),
                "malformed batch: value ends reach 5, past the 2 bytes of values",
            ),
            (
                Columns(b"", [0, 0], b"", [0, 0], [1, 2], [3]),
                "malformed batch: 1 key groups for 2 timestamps",
            ),
        ]
        for columns, message in cases:
            with self.subTest(message):
                with self.assertRaises(BatchError) as caught:
                    records(columns)
                self.assertEqual(str(caught.exception), message)

    def test_out_of_range_timestamps_and_bad_types_are_refused(self):
        out = BatchBuilder()
        out.push(b"", b"", 1 << 63)
        with self.assertRaisesRegex(BatchError, "timestamp 9223372036854775808 does not fit"):
            out.finish()
        with self.assertRaises(TypeError):
            BatchBuilder().push(b"", b"", 1.5)
        with self.assertRaises(TypeError):
            BatchBuilder().push(None, b"", 1)


if __name__ == "__main__":
    unittest.main()
