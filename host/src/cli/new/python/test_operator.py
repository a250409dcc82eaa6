"""{{class}}'s unit tests, natively: the SDK's types build and read batches without a host."""

import unittest

from jobhost import BatchBuilder, KeyedState, Record

from {{module}} import {{class}}


class {{class}}Test(unittest.TestCase):
    def test_upper_cases_values_and_counts_keys(self):
        op = {{class}}()
        keyed = KeyedState(0, 128, op.state_format, op.state_version)
        out = BatchBuilder()
        op.process([Record(b"k", b"hello", 1, 3), Record(b"k", b"world", 2, 3)], keyed, out)
        self.assertEqual(out.finish().values, b"HELLOWORLD")
        self.assertEqual(list(keyed.items()), [(3, b"k", 2)])


if __name__ == "__main__":
    unittest.main()
