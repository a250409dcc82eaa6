// What the tests share: the shapes componentize-js passes to the exports, and examples loaded
// one by one (each registers its class when imported).

import { BatchBuilder, Guest, records } from "../jobhost/index.js";
import { unregister } from "../jobhost/register.js";

/** The `context` record `init` receives. */
export function context(config = {}, overrides = {}) {
  return {
    operatorId: "op",
    subtask: 0,
    parallelism: 1,
    maxParallelism: 128,
    keyGroupStart: 0,
    keyGroupEnd: 128,
    config: Object.entries(config),
    ...overrides,
  };
}

export const ORIGIN = { moduleName: "word-counter", moduleVersion: "1.0.0", moduleSha256: "" };

/** A batch of `[key, value, timestamp, keyGroup?]` rows, as the host passes it. */
export function batchOf(rows) {
  const out = new BatchBuilder();
  for (const [key, value, timestamp] of rows) out.push(key, value, timestamp);
  const batch = out.finish();
  if (rows.some((row) => row.length > 3)) batch.keyGroups = new Uint32Array(rows.map((r) => r[3]));
  return batch;
}

/** A batch's records as `[key, value, timestamp]` strings and BigInt. */
export function rowsOf(batch) {
  return [...records(batch)].map((r) => [r.keyText(), r.valueText(), r.timestamp]);
}

/** Imports example `name` (registering its class) and returns its module: from
 * `guest-examples/js/`, or `tests/guests/js/` for the tests' fixtures. */
export async function example(name) {
  unregister();
  const dir = name === "faulty" ? "../../../tests/guests/js" : "../../../guest-examples/js";
  const module = await import(`${dir}/${name}.js`);
  unregister();
  return module;
}

/** A guest of `Class`, initialised with `config`. */
export function started(Class, config = {}, overrides = {}) {
  const guest = new Guest(new Class());
  guest.init(context(config, overrides));
  return guest;
}

/** What `fn` threw (the string an export throws), or fails. */
export function thrown(fn) {
  try {
    fn();
  } catch (e) {
    return e;
  }
  throw new Error("expected an exception");
}
