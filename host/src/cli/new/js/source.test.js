// {{class}}'s unit tests, natively: the SDK's types build and read batches without a host.

import assert from "node:assert/strict";
import { test } from "node:test";

import { BatchBuilder, Context, records } from "../jobhost/index.js";
import { {{class}} } from "../{{module}}.js";

test("emits its share and ends", () => {
  const source = new {{class}}();
  source.init(new Context({ subtask: 1, parallelism: 2, config: [["count", "6"]] }));
  const out = new BatchBuilder();
  assert.equal(source.poll(10, out), false);
  assert.deepEqual([...records(out.finish())].map((r) => r.valueText()), ["1", "3", "5"]);
  assert.equal(source.snapshotOperatorState(), 7);
});
