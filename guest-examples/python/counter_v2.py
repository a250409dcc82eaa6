"""A keyed running count of words that also remembers when each word was first seen (version
2.0.0 of `word-counter`, as `guest-examples/rust/counter-v2`).

For each input record, whose key is a word, it adds one to the word's count and emits the word
as key, `"{word} {count} first-seen={timestamp}"` as value, and the input's timestamp.
`first-seen` is the timestamp of the word's first occurrence, or `unknown` for a word first
counted by version 1, whose state it migrates. Its keyed state is `word-count` version 2, the
value `[count, first_seen]` (`first_seen` nil when unknown); it reads versions 1 and 2."""

from jobhost import Operator, StateError, export


class CounterV2(Operator):
    name = "word-counter"
    version = "2.0.0"
    state_format = "word-count"
    state_version = 2

    def migrate(self, version, value):
        if version != 1:
            return super().migrate(version, value)
        if type(value) is not int or value < 0:
            raise StateError(f"a `word-count` version 1 value is a count, not {value!r}")
        return [value, None]

    def process(self, records, keyed, out):
        for r in records:
            word = keyed.get(r)
            if word is None:
                count, first_seen = 1, r.timestamp
            else:
                count, first_seen = word[0] + 1, word[1]
            keyed.put(r, [count, first_seen])
            seen = b"unknown" if first_seen is None else b"%d" % first_seen
            out.push(r.key, b"%s %d first-seen=%s" % (r.key, count, seen), r.timestamp)


WitWorld = export(CounterV2)
