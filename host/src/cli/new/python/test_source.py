"""{{class}}'s unit tests, natively: the SDK's types build and read batches without a host."""

import unittest

from jobhost import BatchBuilder, Context

from {{module}} import {{class}}


class {{class}}Test(unittest.TestCase):
    def test_emits_its_share_and_ends(self):
        source = {{class}}()
        source.init(Context("{{name}}", 1, 2, 128, 0, 128, {"count": "6"}))
        out = BatchBuilder()
        self.assertFalse(source.poll(10, out))
        self.assertEqual(out.finish().values, b"135")
        self.assertEqual(source.snapshot_operator_state(), 7)


if __name__ == "__main__":
    unittest.main()
