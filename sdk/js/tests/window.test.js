// Window semantics, driven natively with `ManualTimers`: the cases and bytes of the Rust SDK's
// tests (`sdk/rust/src/window/tests.rs`) and the Python SDK's.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  BatchBuilder,
  NO_WATERMARK,
  KeyedState,
  ManualTimers,
  TimeDomain,
  Timers,
  WindowOperator,
  Windows,
  aggregate,
  records,
} from "../jobhost/index.js";

/**
 * Key group 0 after `a` at 1000 and 2000 in tumbling windows of 10 s, counted:
 * ["window-count", 1, [[bin "a", [[0, 10000, 2, false]]]]], as in the Rust and Python tests.
 */
const V1_GROUP = Uint8Array.from([
  0x93, 0xac, ...new TextEncoder().encode("window-count"), 0x01, 0x91, 0x92, 0xc4, 0x01, 0x61,
  0x91, 0x94, 0x00, 0xcd, 0x27, 0x10, 0x02, 0xc2,
]);

/** Emits each result as `key start..end acc`. */
class Lines extends WindowOperator {
  name = "lines";
  version = "1.0.0";
  stateFormat = "window-count";
  stateVersion = 1;

  emit(key, window, acc, out) {
    out.push(key, `${window.start}..${window.end} ${JSON.stringify(acc)}`, window.maxTimestamp);
  }
}

/** A window operator, its keyed state and timers; each call returns what it emitted. */
class Run {
  constructor(windows, { version = 1, timers = undefined, Operator = Lines } = {}) {
    this.operator = new Operator();
    this.operator.windows = windows;
    this.operator.stateVersion = version;
    this.operator.timers = timers ?? new ManualTimers(() => 0);
    this.keyed = new KeyedState();
    this.keyed.range = [0, 1];
  }

  get timers() {
    return this.operator.timers;
  }

  process(rows) {
    const input = new BatchBuilder();
    for (const [key, t, value] of rows) input.push(key, value, t);
    const batch = input.finish();
    batch.keyGroups = new Uint32Array(rows.length);
    const out = new BatchBuilder();
    this.operator.process(records(batch), this.keyed, out);
    return lines(out);
  }

  advance(watermark) {
    const out = new BatchBuilder();
    const fired = records(this.timers.advanceWatermark(watermark));
    this.operator.onTimer(TimeDomain.EVENT_TIME, fired, this.keyed, out);
    return lines(out);
  }

  openWindows() {
    let n = 0;
    for (const [, slots] of this.keyed.entries()) n += slots.length;
    return n;
  }
}

function lines(out) {
  return [...records(out.finish())].map((r) => `${r.keyText()} ${r.valueText()}`);
}

test("tumbling windows count out-of-order records and fire once at their end", () => {
  const run = new Run(Windows.tumbling(10_000).aggregate(aggregate.count()));
  const none = [];
  assert.deepEqual(
    run.process([["a", 1_000, ""], ["a", 12_000, ""], ["b", 3_000, ""], ["a", 9_000, ""]]),
    none,
  );
  assert.deepEqual(run.advance(9_998), none);
  assert.deepEqual(run.advance(9_999), ["a 0..10000 2", "b 0..10000 1"]);
  assert.deepEqual(run.advance(9_999), none, "a window fires once");
  assert.deepEqual(run.process([["a", 15_000, ""]]), none);
  assert.deepEqual(run.advance(25_000), ["a 10000..20000 2"]);
  assert.equal(run.openWindows(), 0, "without lateness, a window goes as it fires");
  assert.equal(run.operator.lateRecords, 0);
});

test("out-of-order input within the bound gives exactly the model", () => {
  // The Rust test's generator and disorder: times wander up to 3 s back, the watermark trails
  // the greatest timestamp seen by 3 s.
  let state = 7n;
  const below = (n) => {
    state = (state * 6364136223846793005n + 1442695040888963407n) & (2n ** 64n - 1n);
    return Number((state >> 33n) % BigInt(n));
  };
  const run = new Run(Windows.tumbling(1_000).aggregate(aggregate.count()));
  const model = new Map();
  const emitted = [];
  let greatest = 0;
  for (let step = 0; step < 400; step++) {
    const t = Math.max(step * 50 - below(3_000), 0);
    const key = `k${below(5)}`;
    const window = `${key} ${t - (t % 1_000)}`;
    model.set(window, (model.get(window) ?? 0) + 1);
    emitted.push(...run.process([[key, t, ""]]));
    greatest = Math.max(greatest, t);
    emitted.push(...run.advance(greatest - 3_000));
  }
  emitted.push(...run.advance(2n ** 63n - 1n));
  assert.equal(run.operator.lateRecords, 0);
  const expected = [...model].map(([window, n]) => {
    const [key, start] = window.split(" ");
    return `${key} ${start}..${Number(start) + 1_000} ${n}`;
  });
  assert.deepEqual(emitted.sort(), expected.sort());
});

test("sliding windows hold a record in each window that covers it", () => {
  const run = new Run(Windows.sliding(10_000, 5_000).aggregate(aggregate.count()));
  run.process([["a", 7_000, ""], ["a", 12_000, ""]]);
  assert.deepEqual(run.advance(9_999), ["a 0..10000 1"]);
  assert.deepEqual(run.advance(20_000), ["a 5000..15000 2", "a 10000..20000 1"]);
});

test("sessions merge when a record bridges their gap", () => {
  const run = new Run(Windows.session(1_000).aggregate(aggregate.count()));
  run.process([["a", 0, ""], ["a", 2_500, ""], ["b", 100, ""]]);
  // [1500, 2500) touches [2500, 3500): one session.
  run.process([["a", 1_500, ""]]);
  assert.equal(run.openWindows(), 3);
  // [800, 1800) touches [0, 1000) and [1500, 3500): one session of 4.
  run.process([["a", 800, ""]]);
  assert.equal(run.openWindows(), 2);
  // The timer of the session merged away is gone (999), the merged one's is there.
  const pending = run.timers.pending(TimeDomain.EVENT_TIME);
  assert.deepEqual(
    pending.map(([key, t]) => [new TextDecoder().decode(key), t]),
    [["b", 1_099n], ["a", 3_499n]],
  );
  assert.deepEqual(run.advance(3_499), ["b 100..1100 1", "a 0..3500 4"]);
  assert.equal(run.openWindows(), 0);
});

test("late data within the lateness re-emits, beyond it is dropped and counted", () => {
  const windows = Windows.tumbling(10_000).allowedLateness(2_000).lateOutput();
  let run = new Run(windows.aggregate(aggregate.count()));
  run.process([["a", 1_000, ""], ["a", 2_000, ""]]);
  assert.deepEqual(run.advance(10_500), ["a 0..10000 2"]);
  // Within the lateness: the window takes it, and its new result goes at once.
  assert.deepEqual(run.process([["a", 5_000, "x"]]), ["a 0..10000 3"]);
  // Its state stays until the watermark reaches 9999 + 2000.
  assert.deepEqual(run.advance(11_998), []);
  assert.equal(run.openWindows(), 1);
  assert.deepEqual(run.advance(11_999), []);
  assert.equal(run.openWindows(), 0, "dropped at end - 1 + allowed lateness");
  // Beyond it: dropped, counted, and sent to the side output.
  const late = run.process([["a", 6_000, "y"], ["a", 12_500, "z"]]);
  assert.deepEqual(late, ["\ufffdlate:a y"]);
  assert.equal(run.operator.lateRecords, 1);
  assert.equal(run.openWindows(), 1, "the on-time record opened its window");
  // A window first seen within its lateness is emitted at once, and once.
  run = new Run(Windows.tumbling(10_000).allowedLateness(2_000).aggregate(aggregate.count()));
  run.advance(10_000);
  assert.deepEqual(run.process([["a", 9_000, ""]]), ["a 0..10000 1"]);
  assert.deepEqual(run.advance(11_000), []);
});

test("a late record that does not change the result is not emitted again", () => {
  const windows = Windows.tumbling(10_000).allowedLateness(5_000);
  const run = new Run(windows.aggregate(aggregate.min(), aggregate.max()));
  run.process([["a", 1_000, "4"], ["a", 2_000, "9"]]);
  assert.deepEqual(run.advance(10_000), ["a 0..10000 [4,9]"]);
  assert.deepEqual(run.process([["a", 3_000, "5"]]), []);
  assert.deepEqual(run.process([["a", 3_000, "1"]]), ["a 0..10000 [1,9]"]);
});

test("window state is the portable bytes every SDK writes", () => {
  const run = new Run(Windows.tumbling(10_000).aggregate(aggregate.count()));
  run.process([["a", 1_000, ""], ["a", 2_000, ""]]);
  const snapshot = run.keyed.snapshot(true, "window-count", 1);
  assert.deepEqual(snapshot, [{ keyGroup: 0, delta: false, state: V1_GROUP }]);
});

test("v2 resumes v1's open windows, its sum unknown, and sums new ones", () => {
  const v1 = new Run(Windows.tumbling(10_000).aggregate(aggregate.count()));
  v1.process([["a", 1_000, "1"], ["a", 2_000, "1"]]);
  const snapshot = v1.keyed.snapshot(true, "window-count", 1);

  class V2 extends Lines {
    migrateAcc(version, acc) {
      return version === 1 ? [acc, null] : super.migrateAcc(version, acc);
    }
  }

  // v2 resumes from v1's state, with the timers v1 registered (the host keeps them).
  const windows = Windows.tumbling(10_000).aggregate(aggregate.count(), aggregate.sum());
  const v2 = new Run(windows, { version: 2, timers: v1.timers, Operator: V2 });
  v2.keyed.restore(snapshot, "window-count", 2, (v, value) => v2.operator.migrate(v, value));
  v2.process([["a", 3_000, "5"], ["a", 13_000, "7"]]);
  assert.deepEqual(v2.advance(20_000), ["a 0..10000 [3,null]", "a 10000..20000 [1,7]"]);
  assert.equal(v2.openWindows(), 0);
  assert.throws(() => v2.operator.migrate(3, [[0, 10_000, 1, false]]), /unsupported state version 3/);
});

test("windows refuse what makes no window", () => {
  assert.throws(() => Windows.tumbling(0), /size of a window is 0 ms/);
  assert.throws(() => Windows.sliding(10, -1), /slide of a window is -1 ms/);
  assert.throws(() => Windows.session(10).allowedLateness(-5), /allowed lateness is -5 ms/);
  const counting = aggregate.fold(0, (acc) => acc + 1);
  assert.throws(() => Windows.session(10).aggregate(counting), /give the fold a merge/);
  const merging = aggregate.fold(0, (acc) => acc + 1, (a, b) => a + b);
  const run = new Run(Windows.session(10).aggregate(merging));
  run.process([["a", 0, ""], ["a", 20, ""], ["a", 10, ""]]);
  assert.deepEqual(run.advance(100), ["a 0..30 3"]);
});

test("the host's watermark is read as a signed 64-bit integer", async () => {
  const { HostTimers } = await import("../jobhost/time.js");
  const calls = [];
  const imports = {
    register: (...args) => calls.push(["register", ...args]),
    delete: (...args) => calls.push(["delete", ...args]),
    // What componentize-js hands over for the first watermark, -2^63.
    currentWatermark: () => 2n ** 63n,
  };
  const timers = new HostTimers(imports);
  assert.ok(timers instanceof Timers);
  assert.equal(timers.watermark(), NO_WATERMARK);
  imports.currentWatermark = () => 12_000n;
  assert.equal(timers.watermark(), 12_000n);
  timers.register(new Uint8Array([97]), 9_999, TimeDomain.EVENT_TIME);
  timers.delete(new Uint8Array([97]), 9_999n, TimeDomain.EVENT_TIME);
  assert.deepEqual(calls, [
    ["register", new Uint8Array([97]), 9_999n, "event-time"],
    ["delete", new Uint8Array([97]), 9_999n, "event-time"],
  ]);
  assert.throws(() => timers.register(new Uint8Array(0), 1, "event"), /a time domain is/);
});
