// {{class}}'s unit tests, natively: the SDK's types build and read batches without a host.

import assert from "node:assert/strict";
import { test } from "node:test";

import { BatchBuilder, KeyedState, Record, records } from "../jobhost/index.js";
import { {{class}} } from "../{{module}}.js";

const bytes = (s) => new TextEncoder().encode(s);

test("upper-cases values and counts keys", () => {
  const keyed = new KeyedState();
  const out = new BatchBuilder();
  const input = [new Record(bytes("k"), bytes("hello"), 1n, 3), new Record(bytes("k"), bytes("world"), 2n, 3)];
  new {{class}}().process(input, keyed, out);
  assert.deepEqual([...records(out.finish())].map((r) => r.valueText()), ["HELLO", "WORLD"]);
  assert.deepEqual([...keyed.entries()], [[bytes("k"), 2, 3]]);
});
