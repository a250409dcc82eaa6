"""{{class}}'s unit tests, natively: the SDK's types build and read batches without a host."""

import unittest

from jobhost import Context, Origin, Record

from {{module}} import {{class}}


class {{class}}Test(unittest.TestCase):
    def test_counts_what_it_is_given_and_takes_over_counts_on_restore(self):
        sink = {{class}}()
        sink.init(Context("{{name}}", 0, 1, 128, 0, 128))
        sink.write([Record(b"k", b"v", 1), Record(b"k", b"w", 2)])
        self.assertEqual(sink.snapshot_operator_state(), 2)
        sink.restore_operator_state([2, 5], Origin("{{name}}", "0.1.0", ""))
        self.assertEqual(sink.records, 7)


if __name__ == "__main__":
    unittest.main()
