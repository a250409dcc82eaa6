// A keyed running count of words (version 1.0.0 of `word-counter`), the Rust `counter-v1` in JS.
//
// For each input record, whose key is a word, it adds one to the word's count and emits the
// word as key, `"{word} {count}"` as value, and the input's timestamp. Its keyed state, format
// `word-count` version 1, maps each word to its count.

import { Operator, register } from "../../sdk/js/jobhost/index.js";

export class CounterV1 extends Operator {
  name = "word-counter";
  version = "1.0.0";
  stateFormat = "word-count";
  stateVersion = 1;

  process(records, keyed, out) {
    for (const r of records) {
      const count = keyed.get(r, 0) + 1;
      keyed.put(r, count);
      out.push(r.key, [r.key, ` ${count}`], r.timestamp);
    }
  }
}

register(CounterV1);
