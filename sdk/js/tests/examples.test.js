// The examples do what their Rust counterparts do, byte for byte where the output is compared.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Guest, ManualTimers, TimeDomain, decodeEnvelope, encodeEnvelope } from "../jobhost/index.js";
import { ORIGIN, batchOf, context, example, rowsOf, started, thrown } from "./helpers.js";

const { Tokenizer, lowerCase } = await example("tokenizer");
const { CounterV1 } = await example("counter_v1");
const { CounterV2 } = await example("counter_v2");
const { NullSink } = await example("null_sink");
const { Faulty } = await example("faulty");
const { WindowCountV1 } = await example("window_count_v1");
const { WindowCountV2 } = await example("window_count_v2");

const bytes = (s) => new TextEncoder().encode(s);

test("the tokenizer splits lines into lower-case words, as the Rust one does", () => {
  const guest = started(Tokenizer);
  const input = batchOf([["", "Hello, World! Été x2-go", 7n]]);
  input.values = new Uint8Array([...input.values, ...[0x20, 0x20, 0xff, 0x42, 0x41, 0x44, 0xff]]);
  input.values = new Uint8Array([...input.values, ...bytes("bytes ")]);
  input.valueEnds[0] = input.values.length;
  const output = guest.process(input);
  const expected = ["hello", "world", "été", "x2", "go", "bad", "bytes"];
  assert.deepEqual(rowsOf(output), expected.map((w) => [w, w, 7n]));
});

test("words are lower-cased as Rust's to_lowercase does, final sigma included", () => {
  const guest = started(Tokenizer);
  const output = guest.process(batchOf([["", "ΣΑΣ İSTANBUL ǅemal ΌΣΟΣ Σ aΣb 漢字 ½ Ⅻ", 1n]]));
  // What Rust prints for the same words (checked with rustc 1.9x).
  const expected = ["σας", "i̇stanbul", "ǆemal", "όσος", "σ", "aσb", "漢字", "½", "ⅻ"];
  assert.deepEqual(rowsOf(output).map(([word]) => word), expected);
  // Node's own toLowerCase (with ICU) applies Final_Sigma: ours must agree with it everywhere.
  const letters = ["Σ", "A", "a", "'", "\u0345", "ʰ", "1", "ǅ", "\u0301"];
  for (let i = 0; i < 3000; i++) {
    let word = "";
    for (let n = i; n > 0; n = Math.floor(n / letters.length)) word += letters[n % letters.length];
    assert.equal(lowerCase(word), word.toLowerCase(), JSON.stringify(word));
  }
});

test("counter v1 emits `word count` and writes word-count v1 state", () => {
  const guest = started(CounterV1);
  const output = guest.process(
    batchOf([["a", "a", 1n, 0], ["b", "b", 2n, 1], ["a", "a", 3n, 0], ["a", "a", 4n, 0]]),
  );
  assert.deepEqual(rowsOf(output), [
    ["a", "a 1", 1n],
    ["b", "b 1", 2n],
    ["a", "a 2", 3n],
    ["a", "a 3", 4n],
  ]);
  const { operatorState, keyGroups } = guest.snapshot(1n, false);
  assert.equal(operatorState.length, 0);
  assert.deepEqual(keyGroups.map((g) => [g.keyGroup, decodeEnvelope(g.state)]), [
    [0, { format: "word-count", version: 1, payload: [[bytes("a"), 3]] }],
    [1, { format: "word-count", version: 1, payload: [[bytes("b"), 1]] }],
  ]);
  const v2 = encodeEnvelope("word-count", 2, [[bytes("a"), [3, null]]]);
  assert.equal(
    thrown(() => started(CounterV1).restore({ operatorStates: [], keyGroups: [{ keyGroup: 0, state: v2 }] }, ORIGIN)),
    "StateError: the keyed state of key group 0 has version 2 of `word-count`, newer than this " +
      "module reads (version 1)",
  );
});

test("counter v2 migrates v1 state and emits the Rust counter-v2's lines", () => {
  const v1 = started(CounterV1);
  v1.process(batchOf([["a", "a", 1n, 0], ["a", "a", 2n, 0], ["a", "a", 3n, 0], ["b", "b", 4n, 1]]));
  const saved = v1.snapshot(1n, true);

  const v2 = started(CounterV2);
  v2.restore({ operatorStates: [saved.operatorState], keyGroups: saved.keyGroups }, ORIGIN);
  const output = v2.process(batchOf([["a", "a", 10n, 0], ["c", "c", 11n, 2], ["c", "c", 12n, 2]]));
  // The values of the Rust counter-v2's own test.
  assert.deepEqual(rowsOf(output), [
    ["a", "a 4 first-seen=unknown", 10n],
    ["c", "c 1 first-seen=11", 11n],
    ["c", "c 2 first-seen=11", 12n],
  ]);
  const { keyGroups } = v2.snapshot(2n, true);
  assert.deepEqual(keyGroups.map((g) => [g.keyGroup, decodeEnvelope(g.state).payload]), [
    [0, [[bytes("a"), [4, null]]]],
    [1, [[bytes("b"), [1, null]]]],
    [2, [[bytes("c"), [2, 11]]]],
  ]);

  // Its own state reads back the same; a timestamp beyond 32 bits survives exactly.
  const again = started(CounterV2);
  again.restore({ operatorStates: [], keyGroups }, ORIGIN);
  assert.deepEqual(
    rowsOf(again.process(batchOf([["c", "c", 13n, 2], ["d", "d", 1732000000000n, 3], ["d", "d", 5n, 3]]))),
    [
      ["c", "c 3 first-seen=11", 13n],
      ["d", "d 1 first-seen=1732000000000", 1732000000000n],
      ["d", "d 2 first-seen=1732000000000", 5n],
    ],
  );
  const d = again.snapshot(3n, false).keyGroups.find((g) => g.keyGroup === 3);
  assert.deepEqual(decodeEnvelope(d.state).payload, [[bytes("d"), [2, 1732000000000]]]);

  const v3 = encodeEnvelope("word-count", 0, [[bytes("a"), 1]]);
  assert.equal(
    thrown(() => started(CounterV2).restore({ operatorStates: [], keyGroups: [{ keyGroup: 0, state: v3 }] }, ORIGIN)),
    "StateError: unsupported state version 0 of `word-count`: this module reads version 2 and " +
      "migrates no older one",
  );
});

test("the null sink counts what checkpoints commit, and resumes from it", () => {
  const sink = started(NullSink, {}, { parallelism: 2, subtask: 1 });
  sink.writeBatch(batchOf([["", "x", 1n], ["", "y", 2n]]));
  sink.prepareCommit(1n);
  sink.writeBatch(batchOf([["", "z", 3n]]));
  sink.prepareCommit(2n);
  const saved = sink.snapshot(2n, false);
  sink.commit(1n);
  assert.equal(sink.impl.committed, 2);
  assert.match(thrown(() => sink.prepareCommit(2n)), /checkpoint 2 is not after pending checkpoint 2/);

  // Resumed at checkpoint 2, as subtask 1 of 2 again: recover commits what 2 prepared.
  const resumed = started(NullSink, {}, { parallelism: 2, subtask: 1 });
  resumed.restore({ operatorStates: [saved.operatorState], keyGroups: [] }, ORIGIN);
  resumed.recover(2n);
  assert.equal(resumed.impl.committed, 3);

  // Down to one subtask: subtask 0 takes over every old subtask's counts.
  const other = started(NullSink, {}, { parallelism: 2, subtask: 0 });
  other.writeBatch(batchOf([["", "w", 1n]]));
  other.prepareCommit(2n);
  const merged = started(NullSink, {}, { parallelism: 1 });
  merged.restore(
    { operatorStates: [other.snapshot(2n, false).operatorState, saved.operatorState], keyGroups: [] },
    ORIGIN,
  );
  merged.recover(2n);
  assert.equal(merged.impl.committed, 4);
});

test("the faulty operator throws a TypeError where its config says", () => {
  const faulty = started(Faulty, { throw_in: "process", after_records: "2" }, { operatorId: "hostile" });
  assert.deepEqual(rowsOf(faulty.process(batchOf([["k", "1", 1n], ["k", "2", 2n]]))).length, 2);
  assert.equal(
    thrown(() => faulty.process(batchOf([["k", "3", 3n]]))),
    "TypeError: faulty operator hostile[0] threw in process on purpose",
  );
  const saved = started(Faulty).snapshot(1n, true);
  assert.match(thrown(() => started(Faulty, { throw_in: "snapshot" }).snapshot(1n, true)), /threw in snapshot/);
  const restoring = started(Faulty, { throw_in: "restore" });
  assert.match(
    thrown(() => restoring.restore({ operatorStates: [saved.operatorState], keyGroups: [] }, ORIGIN)),
    /threw in restore/,
  );
  assert.match(thrown(() => started(Faulty, { throw_in: "init" })), /threw in init/);
  assert.match(thrown(() => started(Faulty, { throw_in: "later" })), /^RangeError: throw_in is one of/);
});

/**
 * What `window-count` 1.0.0 writes for key group 7 after `a` at 1000 and 2000 (the vector of the
 * Rust, Python and JavaScript SDKs' window tests, and of guest-examples/rust/window-count-v1).
 */
const WINDOW_V1_GROUP = Uint8Array.from([
  0x93, 0xac, ...bytes("window-count"), 0x01, 0x91, 0x92, 0xc4, 0x01, 0x61, 0x91, 0x94, 0x00,
  0xcd, 0x27, 0x10, 0x02, 0xc2,
]);

/** A guest of the window operator `Class`, its timers `timers`, initialised with `config`. */
function timed(Class, timers, config = {}) {
  const guest = new Guest(new Class());
  guest.timers = timers;
  guest.init(context(config));
  return guest;
}

test("window count v1 counts per window, emits at the watermark, writes version 1", () => {
  const timers = new ManualTimers(() => 7);
  const v1 = timed(WindowCountV1, timers);
  assert.equal(v1.role, "timed-operator");
  assert.deepEqual(rowsOf(v1.process(batchOf([["a", "", 1_000n, 7], ["a", "", 2_000n, 7]]))), []);
  const saved = v1.snapshot(1n, false);
  assert.deepEqual(saved.keyGroups, [{ keyGroup: 7, delta: false, state: WINDOW_V1_GROUP }]);
  v1.process(batchOf([["a", "", 12_000n, 7]]));
  assert.deepEqual(
    timers.pending(TimeDomain.EVENT_TIME).map(([, t]) => t),
    [9_999n, 19_999n],
  );
  assert.deepEqual(rowsOf(v1.onTimer(TimeDomain.EVENT_TIME, timers.advanceWatermark(19_999))), [
    ["a", "a 0 10000 count=2", 9_999n],
    ["a", "a 10000 20000 count=1", 19_999n],
  ]);
  // Without allowed lateness, a record of a window already emitted is late: dropped.
  assert.deepEqual(rowsOf(v1.process(batchOf([["a", "", 19_000n, 7]]))), []);
  assert.deepEqual(v1.snapshot(2n, false).keyGroups, [{ keyGroup: 7, delta: false, state: new Uint8Array(0) }]);
});

test("window count v1 keeps a window its allowed lateness and emits it again", () => {
  const timers = new ManualTimers(() => 7);
  const v1 = timed(WindowCountV1, timers, { allowed_lateness_ms: "5000" });
  v1.process(batchOf([["a", "", 1_000n, 7]]));
  const fired = v1.onTimer(TimeDomain.EVENT_TIME, timers.advanceWatermark(12_000));
  assert.deepEqual(rowsOf(fired), [["a", "a 0 10000 count=1", 9_999n]]);
  assert.deepEqual(rowsOf(v1.process(batchOf([["a", "", 3_000n, 7]]))), [["a", "a 0 10000 count=2", 9_999n]]);
});

test("window count v2 resumes v1's open windows and sums from then on", () => {
  // The host keeps the timer v1 registered for its window across the upgrade.
  const timers = new ManualTimers(() => 7);
  timers.register(bytes("a"), 9_999, TimeDomain.EVENT_TIME);
  const v2 = timed(WindowCountV2, timers);
  const origin = { moduleName: "window-count", moduleVersion: "1.0.0", moduleSha256: "" };
  v2.restore({ operatorStates: [], keyGroups: [{ keyGroup: 7, delta: false, state: WINDOW_V1_GROUP }] }, origin);
  v2.process(batchOf([["a", "5", 3_000n, 7], ["a", "7", 13_000n, 7], ["b", "", 4_000n, 7]]));
  const fired = v2.onTimer(TimeDomain.EVENT_TIME, timers.advanceWatermark(20_000));
  assert.deepEqual(rowsOf(fired).map(([, value]) => value), [
    "a 0 10000 count=3 sum=unknown",
    "b 0 10000 count=1 sum=0",
    "a 10000 20000 count=1 sum=7",
  ]);
  const bad = WINDOW_V1_GROUP.slice();
  bad[bad.length - 2] = 0xc3; // the count, a `true`
  const error = thrown(() =>
    timed(WindowCountV2, new ManualTimers(() => 7)).restore(
      { operatorStates: [], keyGroups: [{ keyGroup: 7, delta: false, state: bad }] },
      origin,
    ),
  );
  assert.match(error, /a `window-count` version 1 accumulator is a count, not true/);
});
