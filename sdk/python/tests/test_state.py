"""The portable envelope `[format, version, payload]` of docs/state-format.md."""

import unittest

import support  # noqa: F401  (sets up sys.path)
import msgpack
from jobhost import StateError, decode_envelope, decode_envelope_of, encode_envelope

# docs/state-format.md's example: [ "word-count", 1, [ [bin "apple", 3], [bin "pear", 1] ] ]
WORD_COUNT_V1 = (
    b"\x93\xaaword-count\x01\x92"
    b"\x92\xc4\x05apple\x03"
    b"\x92\xc4\x04pear\x01"
)


class EnvelopeTest(unittest.TestCase):
    def test_the_documented_example_byte_for_byte(self):
        blob = encode_envelope("word-count", 1, [[b"apple", 3], [b"pear", 1]])
        self.assertEqual(blob, WORD_COUNT_V1)
        self.assertEqual(
            decode_envelope(blob), ("word-count", 1, [[b"apple", 3], [b"pear", 1]])
        )

    def test_round_trip_of_every_kind_of_value(self):
        payload = [
            0, 1, 127, 128, 255, 256, 1 << 32, (1 << 64) - 1, -1, -33, -(1 << 63),
            "str", b"bin", None, True, False, 1.5, [1, [2, b"x"]], {"map": [b"k"]}, {b"k": 1},
        ]
        blob = encode_envelope("any", 7, payload)
        self.assertEqual(decode_envelope(blob), ("any", 7, payload))
        self.assertEqual(decode_envelope_of(blob, "any"), (7, payload))

    def test_integers_take_the_smallest_encoding(self):
        self.assertEqual(encode_envelope("f", 0, 300), b"\x93\xa1f\x00\xcd\x01\x2c")
        self.assertEqual(encode_envelope("f", 300, None), b"\x93\xa1f\xcd\x01\x2c\xc0")
        self.assertEqual(encode_envelope("f", 1, -5), b"\x93\xa1f\x01\xfb")

    def test_refusals_say_why(self):
        cases = [
            (b"", "the state blob is empty: it has no format or version"),
            (WORD_COUNT_V1 + b"\x00", "the state blob has 1 unexpected trailing bytes"),
            (b"\xc1", "the state blob is not valid MessagePack"),
            (b"\x93\xa1f", "the state blob is not valid MessagePack"),
            (msgpack.packb([1, "word-count", 1]), "not a [format, version, payload] envelope"),
            (msgpack.packb(["word-count", 1]), "not a [format, version, payload] envelope"),
            (msgpack.packb(["word-count", -1, None]), "not a [format, version, payload] envelope"),
            (msgpack.packb(["word-count", True, None]), "not a [format, version, payload] envelope"),
            (msgpack.packb({"format": "x"}), "not a [format, version, payload] envelope"),
        ]
        for blob, message in cases:
            with self.subTest(blob=blob):
                with self.assertRaises(StateError) as caught:
                    decode_envelope(blob)
                self.assertIn(message, str(caught.exception))

    def test_a_blob_of_another_format_is_refused_naming_both(self):
        with self.assertRaises(StateError) as caught:
            decode_envelope_of(WORD_COUNT_V1, "line-position")
        self.assertEqual(
            str(caught.exception),
            "state of format `word-count` cannot be read: this module reads `line-position`",
        )

    def test_what_cannot_be_written_is_refused(self):
        with self.assertRaisesRegex(StateError, "cannot encode state version 1 of `f`"):
            encode_envelope("f", 1, object())
        with self.assertRaisesRegex(StateError, "a state format is a non-empty string"):
            encode_envelope("", 1, None)
        with self.assertRaisesRegex(StateError, "a state version is a non-negative integer"):
            encode_envelope("f", -1, None)


if __name__ == "__main__":
    unittest.main()
