"""A stateless operator that splits each input value (a line of text) into words: maximal runs
of alphanumeric characters, lower-cased. It emits one record per word, with the word as both key
and value and the line's timestamp. Bytes that are not UTF-8 separate words. (The Python
counterpart of `guest-examples/rust/tokenizer`.)"""

import re

from jobhost import Operator, export

# Runs of characters for which `str.isalnum()` holds: `\w` without the underscore.
WORD = re.compile(r"[^\W_]+")


class Tokenizer(Operator):
    name = "tokenizer"
    version = "1.0.0"

    def process(self, records, keyed, out):
        push = out.push
        for r in records:
            for word in WORD.findall(r.value.decode("utf-8", "replace")):
                word = word.lower().encode()
                push(word, word, r.timestamp)


WitWorld = export(Tokenizer)
