// A keyed running count of words that also remembers when each word was first seen (version
// 2.0.0 of `word-counter`), the Rust `counter-v2` in JS.
//
// For each input record, whose key is a word, it adds one to the word's count and emits the
// word as key, `"{word} {count} first-seen={timestamp}"` as value, and the input's timestamp.
// `first-seen` is the timestamp of the word's first occurrence, or `unknown` for a word that
// was first counted by version 1, whose state it migrated. Its keyed state is format
// `word-count` version 2, `[count, first_seen]` per word (first_seen nil when unknown); it
// reads version 1 (a count per word) too.

import { Operator, register } from "../../sdk/js/jobhost/index.js";

export class CounterV2 extends Operator {
  name = "word-counter";
  version = "2.0.0";
  stateFormat = "word-count";
  stateVersion = 2;

  migrate(version, value) {
    if (version === 1) return [value, null];
    return super.migrate(version, value);
  }

  process(records, keyed, out) {
    for (const r of records) {
      const word = keyed.get(r) ?? [0, r.timestamp];
      word[0] += 1;
      keyed.put(r, word);
      const firstSeen = word[1] === null ? "unknown" : String(word[1]);
      out.push(r.key, [r.key, ` ${word[0]} first-seen=${firstSeen}`], r.timestamp);
    }
  }
}

register(CounterV2);
