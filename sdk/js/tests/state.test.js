// The portable state envelope (docs/state-format.md), and the keyed state kept by key group.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  KeyedState,
  Record,
  decodeEnvelope,
  decodeValue,
  encodeEnvelope,
  encodeValue,
  openEnvelope,
} from "../jobhost/index.js";

const bytes = (s) => new TextEncoder().encode(s);
const hex = (b) => Buffer.from(b).toString("hex");
const record = (key, keyGroup) => new Record(bytes(key), bytes(key), 0n, keyGroup);

test("a key group's envelope is the documented MessagePack, byte for byte", () => {
  const blob = encodeEnvelope("word-count", 1, [
    [bytes("apple"), 3],
    [bytes("pear"), 1],
  ]);
  // [ "word-count", 1, [ [bin "apple", 3], [bin "pear", 1] ] ]
  assert.equal(
    hex(blob),
    "93" + "aa" + hex(bytes("word-count")) + "01" + "92" +
      "92" + "c405" + hex(bytes("apple")) + "03" +
      "92" + "c404" + hex(bytes("pear")) + "01",
  );
  const opened = decodeEnvelope(blob);
  assert.equal(opened.format, "word-count");
  assert.equal(opened.version, 1);
  assert.deepEqual(opened.payload, [
    [bytes("apple"), 3],
    [bytes("pear"), 1],
  ]);
});

test("integers take their smallest encoding, whether Numbers or BigInts", () => {
  const cases = [
    [0, "00"],
    [127, "7f"],
    [128, "cc80"],
    [300, "cd012c"],
    [70000, "ce00011170"],
    [2 ** 32, "cf0000000100000000"],
    [-1, "ff"],
    [-33, "d0df"],
    [-(2 ** 31), "d280000000"],
    [-(2 ** 31) - 1, "d3ffffffff7fffffff"],
    [5n, "05"],
    [2n ** 64n - 1n, "cfffffffffffffffff"],
    [-(2n ** 63n), "d38000000000000000"],
    [1.5, "cb3ff8000000000000"],
    [null, "c0"],
  ];
  for (const [value, expected] of cases) {
    assert.equal(hex(encodeValue(value)), expected, `${value}`);
  }
  // Read back: Numbers where they are safe, BigInts beyond.
  assert.equal(decodeValue(encodeValue(2 ** 32)), 2 ** 32);
  assert.equal(decodeValue(encodeValue(2n ** 60n)), 2n ** 60n);
  assert.equal(decodeValue(encodeValue(-(2n ** 63n))), -(2n ** 63n));
  assert.throws(() => encodeValue(2n ** 64n), /does not fit 64 bits/);
  assert.throws(() => encodeValue(2 ** 60), /beyond 2\^53: keep it as a BigInt/);
  assert.throws(() => encodeValue(new Map()), /a Map cannot be written as state/);
});

test("an envelope of another format, a newer version or an unmigrated older one is refused", () => {
  const v1 = encodeEnvelope("word-count", 1, []);
  const v3 = encodeEnvelope("word-count", 3, []);
  assert.throws(() => openEnvelope(v1, "line-position", 1), {
    name: "StateError",
    message: "state has format `word-count`, but this module reads format `line-position`",
  });
  assert.throws(() => openEnvelope(v3, "word-count", 2), {
    message: "state has version 3 of `word-count`, newer than this module reads (version 2)",
  });
  assert.throws(() => openEnvelope(v1, "word-count", 2), {
    message:
      "unsupported state version 1 of `word-count`: this module reads version 2 and migrates " +
      "no older one",
  });
  assert.deepEqual(
    openEnvelope(v1, "word-count", 2, (version, payload) => ({ version, payload })),
    { version: 1, payload: [] },
  );
  for (const garbage of [new Uint8Array([0x92, 1, 2]), encodeValue(["f", -1, 0]), bytes("xx")]) {
    assert.throws(() => decodeEnvelope(garbage), { name: "StateError" });
  }
  assert.throws(() => decodeEnvelope(new Uint8Array([0xc1])), /not MessagePack/);
  assert.throws(() => encodeEnvelope("", 1, null), /non-empty string/);
  assert.throws(() => encodeEnvelope("f", -1, null), /non-negative integer/);
});

test("keyed state snapshots only the groups changed since the previous snapshot", () => {
  const keyed = new KeyedState();
  keyed.put(record("apple", 0), 1);
  keyed.put(record("the", 125), 1);
  keyed.put(record("pear", 0), 2);
  assert.equal(keyed.get(record("apple", 0)), 1);
  assert.equal(keyed.get(record("plum", 0), 0), 0);

  const first = keyed.snapshot(false, "word-count", 1);
  assert.deepEqual(first.map((g) => g.keyGroup), [0, 125]);
  // Sorted by key bytes, whatever the order of insertion.
  assert.deepEqual(decodeEnvelope(first[0].state).payload, [
    [bytes("apple"), 1],
    [bytes("pear"), 2],
  ]);
  assert.deepEqual(keyed.snapshot(false, "word-count", 1), [], "nothing changed");

  // The host holds group 125 now: a delta of the one key put.
  keyed.put(record("the", 125), 2);
  const second = keyed.snapshot(false, "word-count", 1);
  assert.deepEqual(second.map((g) => [g.keyGroup, g.delta]), [[125, true]]);
  assert.deepEqual(decodeEnvelope(second[0].state, true).payload, [[bytes("the"), 2]]);

  // A group emptied is listed with empty state, once.
  assert.equal(keyed.delete(record("the", 125)), true);
  assert.equal(keyed.delete(record("the", 125)), false);
  assert.deepEqual(keyed.snapshot(false, "word-count", 1), [
    { keyGroup: 125, delta: false, state: new Uint8Array(0) },
  ]);
  assert.deepEqual(keyed.snapshot(false, "word-count", 1), []);

  // A full snapshot lists every group held.
  const full = keyed.snapshot(true, "word-count", 1);
  assert.deepEqual(full.map((g) => g.keyGroup), [0]);
  assert.equal(keyed.size, 2);
});

test("keyed state needs key groups, within the subtask's range", () => {
  const keyed = new KeyedState();
  keyed.range = [0, 64];
  assert.throws(() => keyed.put(record("a", undefined), 1), {
    name: "StateError",
    message: /without a key group .* `key-by` edge/,
  });
  assert.throws(() => keyed.get(record("a", 64)), /key group 64 reached the subtask of key groups 0..64/);
  assert.throws(() => keyed.put(record("a", 1), undefined), /use `delete`/);
});

test("restore loads the groups given, exactly, and nothing else", () => {
  const keyed = new KeyedState();
  keyed.put(record("old", 3), 9);
  const key = new Uint8Array([0, 200, 255]);
  keyed.restore(
    [
      { keyGroup: 0, state: encodeEnvelope("word-count", 1, [[bytes("apple"), 3]]) },
      { keyGroup: 7, state: encodeEnvelope("word-count", 1, [[key, 2 ** 40]]) },
      { keyGroup: 9, state: new Uint8Array(0) },
    ],
    "word-count",
    1,
  );
  assert.deepEqual([...keyed.groups.keys()], [0, 7]);
  assert.equal(keyed.get(record("old", 3)), undefined);
  assert.equal(keyed.get(new Record(key, key, 0n, 7)), 2 ** 40);
  assert.deepEqual(keyed.snapshot(false, "word-count", 1), [], "restored groups are not dirty");
  // The key's bytes survive a round trip exactly.
  const [, group7] = keyed.snapshot(true, "word-count", 1);
  assert.deepEqual(decodeEnvelope(group7.state).payload, [[key, 2 ** 40]]);
});

// A delta of group 0 as the Rust SDK writes it (docs/state-format.md): `apple` is now 4 and
// `pear` is gone: ["word-count", 1, [[bin "apple", 4]], [bin "pear"]].
const APPLE_4_PEAR_GONE = Buffer.from("94aa776f72642d636f756e74019192c4056170706c650491c40470656172", "hex");

test("restore applies a group's deltas after its whole state, in order", () => {
  const whole = encodeEnvelope("word-count", 1, [
    [bytes("apple"), 3],
    [bytes("pear"), 1],
  ]);
  const chain = [
    { keyGroup: 0, delta: false, state: whole },
    { keyGroup: 0, delta: true, state: new Uint8Array(APPLE_4_PEAR_GONE) },
  ];
  const keyed = new KeyedState();
  keyed.restore(chain, "word-count", 1);
  assert.equal(keyed.get(record("apple", 0)), 4);
  assert.equal(keyed.get(record("pear", 0)), undefined);
  assert.throws(() => keyed.restore([chain[0], chain[0]], "word-count", 1), /given whole twice/);
  assert.throws(
    () => keyed.restore([{ keyGroup: 0, delta: true, state: whole }], "word-count", 1),
    /not an envelope \[format, version, upserts, removed\]/,
  );
});

test("deltas hold the keys put and deleted, restore exactly, and go whole again in time", () => {
  const keyed = new KeyedState();
  const at = (i) => record(`k${i}`, 0);
  for (let i = 0; i < 8; i++) keyed.put(at(i), i);
  const chain = keyed.snapshot(false, "word-count", 1);
  keyed.put(at(1), 10);
  keyed.delete(at(2));
  keyed.put(at(2), 20);
  keyed.delete(at(3));
  const delta = keyed.snapshot(false, "word-count", 1);
  assert.deepEqual(decodeValue(delta[0].state), [
    "word-count",
    1,
    [
      [bytes("k1"), 10],
      [bytes("k2"), 20],
    ],
    [bytes("k2"), bytes("k3")],
  ]);
  const again = new KeyedState();
  again.restore([...chain, ...delta], "word-count", 1);
  assert.deepEqual([...again.entries()], [...keyed.entries()]);
  // Deltas of 4 + 3 + 3 entries since the whole state outnumber its 7 keys: whole again.
  const kinds = [0, 1, 2].map((n) => {
    for (let i = 0; i < 3; i++) keyed.put(at(i), n);
    return keyed.snapshot(false, "word-count", 1)[0].delta;
  });
  assert.deepEqual(kinds, [true, false, true]);
});

test("restore migrates values of an older version, and refuses what it cannot read", () => {
  const v1 = [{ keyGroup: 0, state: encodeEnvelope("word-count", 1, [[bytes("a"), 3]]) }];
  const keyed = new KeyedState();
  keyed.restore(v1, "word-count", 2, (version, count) => {
    assert.equal(version, 1);
    return [count, null];
  });
  assert.deepEqual(keyed.get(record("a", 0)), [3, null]);

  assert.throws(() => keyed.restore(v1, "word-count", 2), {
    message:
      "unsupported state version 1 of `word-count`: this module reads version 2 and migrates " +
      "no older one",
  });
  assert.throws(() => keyed.restore(v1, "other", 1), {
    message:
      "the keyed state of key group 0 has format `word-count`, but this module reads format `other`",
  });
  const bad = [{ keyGroup: 0, state: encodeEnvelope("word-count", 1, [["a", 3]]) }];
  assert.throws(() => keyed.restore(bad, "word-count", 1), /not \[bin key, value\]/);
});

test("restore-changes apply on top of a restore and count as changed", () => {
  const written = new KeyedState();
  for (const [key, value] of [["apple", 3], ["pear", 1], ["k1", 1], ["k2", 1], ["k3", 1]]) {
    written.put(record(key, 0), value);
  }
  written.put(record("the", 125), 1);
  written.put(record("x", 5), 7);
  const state = new KeyedState();
  state.restore(written.snapshot(true, "word-count", 1), "word-count", 1);
  state.snapshot(true, "word-count", 1); // the host's copy of the new module, after `restore`
  // A delta of group 0 as the Rust SDK writes it: `apple` is now 4 and `pear` is gone.
  const appleFourPearGone = Uint8Array.from(Buffer.from(
    "94aa" + hex(bytes("word-count")) + "01" + "91" + "92c405" + hex(bytes("apple")) + "04" +
      "91c404" + hex(bytes("pear")),
    "hex",
  ));
  state.restoreChanges(
    [
      { keyGroup: 0, delta: true, state: appleFourPearGone },
      { keyGroup: 125, delta: false, state: encodeEnvelope("word-count", 1, [[bytes("the"), 2], [bytes("thy"), 1]]) },
      { keyGroup: 5, delta: false, state: new Uint8Array(0) },
    ],
    "word-count",
    1,
  );
  const held = [...state.entries()].map(([k, v, g]) => [g, new TextDecoder().decode(k), v]);
  assert.deepEqual(held.sort(), [
    [0, "apple", 4], [0, "k1", 1], [0, "k2", 1], [0, "k3", 1], [125, "the", 2], [125, "thy", 1],
  ].sort());
  const changed = state.snapshot(false, "word-count", 1);
  assert.deepEqual(
    changed.map(({ keyGroup, delta, state }) => [keyGroup, delta, state.length === 0 ? null : decodeEnvelope(state, delta)]),
    [
      [0, true, { format: "word-count", version: 1, payload: [[bytes("apple"), 4]], removed: [bytes("pear")] }],
      [5, false, null],
      [125, false, { format: "word-count", version: 1, payload: [[bytes("the"), 2], [bytes("thy"), 1]] }],
    ],
  );
  assert.deepEqual(state.snapshot(false, "word-count", 1), [], "changes are snapshotted once");
});
