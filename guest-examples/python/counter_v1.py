"""A keyed running count of words (version 1.0.0 of `word-counter`, as
`guest-examples/rust/counter-v1`).

For each input record, whose key is a word, it adds one to the word's count and emits the word
as key, `"{word} {count}"` as value, and the input's timestamp. Its keyed state, `word-count`
version 1, maps each word to its count."""

from jobhost import Operator, export


class CounterV1(Operator):
    name = "word-counter"
    version = "1.0.0"
    state_format = "word-count"
    state_version = 1

    def process(self, records, keyed, out):
        for r in records:
            count = keyed.get(r, 0) + 1
            keyed.put(r, count)
            out.push(r.key, b"%s %d" % (r.key, count), r.timestamp)


WitWorld = export(CounterV1)
