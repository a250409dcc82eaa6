// Batches: a built batch reads back as the records pushed; malformed columns are refused.

import assert from "node:assert/strict";
import { test } from "node:test";
import vm from "node:vm";

import { BatchBuilder, Record, isBytes, records } from "../jobhost/index.js";

const bytes = (s) => new TextEncoder().encode(s);
const text = (b) => new TextDecoder().decode(b);

function batch(overrides = {}) {
  return {
    keys: bytes("ab"),
    keyEnds: new Uint32Array([1, 2]),
    values: bytes("xyz"),
    valueEnds: new Uint32Array([2, 3]),
    timestamps: new BigInt64Array([1n, 2n]),
    keyGroups: new Uint32Array(0),
    ...overrides,
  };
}

test("a built batch reads back as the records pushed", () => {
  const out = new BatchBuilder(1);
  const big = "v".repeat(5000);
  out.push("k1", "été", 5n);
  out.push(bytes(""), bytes(""), -1);
  out.push(new Uint8Array([0, 255]), ["a", bytes(" "), "b"], -(2n ** 63n));
  for (let i = 0; i < 200; i++) out.push(`key${i}`, big, i);
  const built = out.finish();
  assert.equal(built.keyGroups.length, 0);
  assert.ok(built.timestamps instanceof BigInt64Array);
  assert.ok(built.keyEnds instanceof Uint32Array);

  const read = records(built);
  assert.equal(read.length, 203);
  const all = [...read];
  assert.deepEqual(
    all.slice(0, 3).map((r) => [[...r.key], text(r.value), r.timestamp, r.keyGroup]),
    [
      [[...bytes("k1")], "été", 5n, undefined],
      [[], "", -1n, undefined],
      [[0, 255], "a b", -(2n ** 63n), undefined],
    ],
  );
  assert.equal(all[202].keyText(), "key199");
  assert.equal(all[202].valueText(), big);
  assert.equal(all[202].timestamp, 199n);
  assert.equal(read.get(0).keyString, "k1");
  assert.equal(all[2].keyString, "\u0000\u00ff");
});

test("key groups come with the records that carry them", () => {
  const read = records(batch({ keyGroups: new Uint32Array([7, 125]) }));
  assert.deepEqual(
    [...read].map((r) => [r.keyText(), r.valueText(), r.timestamp, r.keyGroup]),
    [
      ["a", "xy", 1n, 7],
      ["b", "z", 2n, 125],
    ],
  );
});

test("malformed batches are refused with the reason", () => {
  const cases = [
    [{ keyEnds: new Uint32Array([1]) }, "malformed batch: 1 key ends for 2 timestamps"],
    [{ valueEnds: new Uint32Array([2, 1]) }, "malformed batch: value end 1 is 1, before the previous end 2"],
    [{ keyEnds: new Uint32Array([1, 3]) }, "malformed batch: key ends reach 3, past the 2 bytes of keys"],
    [{ keyGroups: new Uint32Array([1]) }, "malformed batch: 1 key groups for 2 records"],
  ];
  for (const [overrides, message] of cases) {
    assert.throws(() => records(batch(overrides)), { name: "BatchError", message });
  }
  assert.throws(() => records(batch()).get(2), RangeError);
});

test("the builder refuses what is neither bytes nor a string", () => {
  const out = new BatchBuilder();
  assert.throws(() => out.push(42, "v", 0), {
    name: "TypeError",
    message: "a key or value must be a Uint8Array or a string, not number",
  });
  assert.throws(() => out.push("k", [null], 0), /not null/);
});

test("a record's key string is one char per byte, and round-trips", () => {
  const key = new Uint8Array(300).map((_, i) => (i * 7) & 0xff);
  const r = new Record(key, new Uint8Array(0), 0n, 3);
  assert.equal(r.keyString.length, 300);
  assert.deepEqual([...r.keyString].map((c) => c.charCodeAt(0)), [...key]);
});

test("a push that throws leaves the batch as it was", () => {
  const out = new BatchBuilder();
  out.push("a", "1", 1n);
  assert.throws(() => out.push("b", ["2", 3], 2n), TypeError);
  assert.throws(() => out.push("c", "3", 1.5), RangeError);
  out.push("d", "4", 4n);
  assert.deepEqual(
    [...records(out.finish())].map((r) => [r.keyText(), r.valueText(), r.timestamp]),
    [
      ["a", "1", 1n],
      ["d", "4", 4n],
    ],
  );
});

test("typed arrays of another realm, as componentize-js passes them, are read and copied", () => {
  // The bindings of componentize-js create the columns in their own realm: `instanceof
  // Uint8Array` is false for them inside the component.
  const other = vm.runInNewContext(`({
    keys: new Uint8Array([97, 98]),
    keyEnds: new Uint32Array([1, 2]),
    values: new Uint8Array([120, 121, 122]),
    valueEnds: new Uint32Array([2, 3]),
    timestamps: new BigInt64Array([1n, 2n]),
    keyGroups: new Uint32Array([4, 5]),
  })`);
  assert.equal(other.keys instanceof Uint8Array, false);
  assert.equal(isBytes(other.keys), true);
  assert.equal(isBytes(other.keyEnds), false);
  const out = new BatchBuilder();
  for (const r of records(other)) out.push(r.key, [r.value, "!"], r.timestamp);
  assert.deepEqual(
    [...records(out.finish())].map((r) => [r.keyText(), r.valueText(), r.timestamp]),
    [
      ["a", "xy!", 1n],
      ["b", "z!", 2n],
    ],
  );
});
