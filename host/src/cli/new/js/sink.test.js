// {{class}}'s unit tests, natively: the SDK's types build and read batches without a host.

import assert from "node:assert/strict";
import { test } from "node:test";

import { BatchBuilder, Context, Records } from "../jobhost/index.js";
import { {{class}} } from "../{{module}}.js";

test("counts what it is given and takes over counts on restore", () => {
  const sink = new {{class}}();
  sink.init(new Context({ subtask: 0, parallelism: 1, config: [] }));
  const batch = new BatchBuilder();
  batch.push("k", "v", 1);
  batch.push("k", "w", 2);
  sink.write(new Records(batch.finish()));
  assert.equal(sink.snapshotOperatorState(), 2);
  sink.restoreOperatorState([2, 5]);
  assert.equal(sink.records, 7);
});
