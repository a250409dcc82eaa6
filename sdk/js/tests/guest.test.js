// The adapter between the WIT exports and a role class: errors as strings, envelopes, keyed
// state through snapshots, sources' end, sinks' calls.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  Guest,
  ManualTimers,
  Operator,
  Sink,
  Source,
  TimeDomain,
  TimedOperator,
  decodeEnvelope,
  encodeEnvelope,
  errorText,
  register,
} from "../jobhost/index.js";
import { registered, unregister } from "../jobhost/register.js";
import * as world from "../jobhost/exports.js";
import { ORIGIN, batchOf, context, rowsOf, started, thrown } from "./helpers.js";

class Echo extends Operator {
  name = "echo";
  version = "0.1.0";
  process(records, _keyed, out) {
    for (const r of records) {
      if (r.valueText() === "boom") null.boom;
      out.push(r.key, r.value, r.timestamp);
    }
  }
}

class Tally extends Operator {
  name = "tally";
  version = "1.0.0";
  rescale = "union";
  stateFormat = "tally";
  stateVersion = 1;
  seen = 0;
  process(records, keyed) {
    for (const r of records) {
      keyed.put(r, keyed.get(r, 0) + 1);
      this.seen += 1;
    }
  }
  snapshotOperatorState() {
    return this.seen;
  }
  restoreOperatorState(payloads, origin) {
    this.seen = payloads.reduce((a, b) => a + b, 0);
    this.origin = origin;
  }
}

test("an exception in an export becomes the error string, naming its kind", () => {
  const guest = started(Echo);
  const error = thrown(() => guest.process(batchOf([["k", "boom", 1n]])));
  assert.equal(typeof error, "string");
  assert.match(error, /^TypeError: /);
  assert.equal(errorText(new RangeError("x")), "RangeError: x");
  assert.equal(errorText("plain"), "plain");
  assert.equal(errorText(42), "uncaught number: 42");
  assert.deepEqual(rowsOf(guest.process(batchOf([["k", "v", 3n]]))), [["k", "v", 3n]]);
});

test("describe names the module, and bad declarations are refused at registration", () => {
  assert.deepEqual(new Guest(new Tally()).describe(), {
    name: "tally",
    version: "1.0.0",
    rescale: "union",
  });
  class Bad extends Operator {
    name = "bad";
    version = "1";
    rescale = "split";
  }
  assert.throws(() => new Guest(new Bad()), /`rescale` is "refuse" or "union", not split/);
  assert.throws(() => new Guest({}), /extends none of Operator, Source, Sink/);
});

test("calls before init are refused, and so is a second restore", () => {
  const guest = new Guest(new Echo());
  assert.equal(thrown(() => guest.process(batchOf([]))), "Error: `process` was called before `init` succeeded");
  guest.init(context());
  guest.restore({ operatorStates: [], keyGroups: [] }, ORIGIN);
  assert.equal(
    thrown(() => guest.restore({ operatorStates: [], keyGroups: [] }, ORIGIN)),
    "Error: restore was called twice",
  );
});

test("a stateless module refuses state, naming who wrote it", () => {
  const guest = started(Echo);
  const blob = encodeEnvelope("tally", 1, 3);
  assert.equal(
    thrown(() => guest.restore({ operatorStates: [blob], keyGroups: [] }, ORIGIN)),
    "StateError: echo is stateless, but was given 1 blob(s) of operator state and 0 key " +
      "group(s) written by word-counter 1.0.0",
  );
  assert.deepEqual(started(Echo).snapshot(1n, true), {
    operatorState: new Uint8Array(0),
    keyGroups: [],
  });
});

test("snapshot wraps operator and keyed state in envelopes; restore reads them back", () => {
  const guest = started(Tally);
  guest.process(batchOf([["a", "", 1n, 0], ["b", "", 2n, 5], ["a", "", 3n, 0]]));
  const first = guest.snapshot(1n, false);
  assert.deepEqual(decodeEnvelope(first.operatorState), { format: "tally", version: 1, payload: 3 });
  assert.deepEqual(first.keyGroups.map((g) => g.keyGroup), [0, 5]);

  guest.process(batchOf([["b", "", 4n, 5]]));
  const second = guest.snapshot(2n, false);
  assert.deepEqual(second.keyGroups.map((g) => g.keyGroup), [5]);
  const full = guest.snapshot(3n, true);
  assert.deepEqual(full.keyGroups.map((g) => g.keyGroup), [0, 5]);

  // Union: two old subtasks' operator state, and the key groups of both.
  const other = started(Tally);
  other.process(batchOf([["c", "", 1n, 9]]));
  const theirs = other.snapshot(1n, true);
  const resumed = started(Tally);
  resumed.restore(
    {
      operatorStates: [full.operatorState, theirs.operatorState],
      keyGroups: [...full.keyGroups, ...theirs.keyGroups],
    },
    ORIGIN,
  );
  assert.equal(resumed.impl.seen, 5);
  assert.equal(resumed.impl.origin, ORIGIN);
  assert.equal(resumed.impl.keyed.size, 3);
  assert.deepEqual(resumed.snapshot(4n, false).keyGroups, []);
});

test("a keyed operator fed without key groups fails, saying why", () => {
  const guest = started(Tally);
  assert.match(thrown(() => guest.process(batchOf([["a", "", 1n]]))), /^StateError: .*`key-by` edge/);
});

test("a source's last records are delivered, then it ends", () => {
  class Three extends Source {
    name = "three";
    version = "1.0.0";
    stateFormat = "position";
    next = 0;
    poll(max, out) {
      while (this.next < 3 && out.length < max) out.push("", `${this.next}`, this.next++);
      return this.next < 3;
    }
    snapshotOperatorState() {
      return this.next;
    }
  }
  const guest = started(Three);
  const first = guest.pollBatch(2);
  assert.equal(first.tag, "records");
  assert.deepEqual(rowsOf(first.val), [["", "0", 0n], ["", "1", 1n]]);
  const last = guest.pollBatch(2);
  assert.deepEqual(rowsOf(last.val), [["", "2", 2n]]);
  assert.deepEqual(guest.pollBatch(2), { tag: "end" });
  assert.deepEqual(guest.pollBatch(2), { tag: "end" });

  class Forgetful extends Source {
    name = "forgetful";
    version = "1.0.0";
    poll() {}
  }
  assert.match(thrown(() => started(Forgetful).pollBatch(1)), /^TypeError: poll returned undefined/);
});

test("a sink is given records and checkpoint ids as Numbers", () => {
  const calls = [];
  class Recorder extends Sink {
    name = "recorder";
    version = "1.0.0";
    write(records) {
      calls.push(["write", records.length]);
    }
    prepareCommit(id) {
      calls.push(["prepare", id]);
    }
    commit(id) {
      calls.push(["commit", id]);
    }
    recover(id) {
      calls.push(["recover", id]);
    }
  }
  const guest = started(Recorder);
  guest.recover(1n);
  guest.writeBatch(batchOf([["", "x", 1n], ["", "y", 2n]]));
  guest.prepareCommit(2n);
  guest.commit(2n);
  assert.deepEqual(calls, [["recover", 1], ["write", 2], ["prepare", 2], ["commit", 2]]);
  assert.match(thrown(() => guest.commit(2n ** 60n)), /^RangeError: checkpoint id \d+ is beyond 2\^53/);
});

test("an async method is refused: exports are synchronous", () => {
  class Eager extends Operator {
    name = "eager";
    version = "1.0.0";
    async process() {}
  }
  assert.equal(
    thrown(() => started(Eager).process(batchOf([]))),
    "TypeError: process returned a Promise: it must be synchronous",
  );
});

test("the world's functions delegate to the one registered module", () => {
  unregister();
  assert.equal(thrown(() => world.describe()).startsWith("no module registered"), true);
  register(Echo);
  assert.throws(() => register(Tally), /register was called twice \(Echo, then Tally\)/);
  assert.equal(world.describe().name, "echo");
  world.init(context());
  assert.deepEqual(rowsOf(world.process(batchOf([["k", "v", 1n]]))), [["k", "v", 1n]]);
  assert.equal(registered().role, "operator");
  unregister();
});

/** Registers a timer 10 ms after each record of its key; says so when it fires. */
class Alarm extends TimedOperator {
  name = "alarm";
  version = "1.0.0";
  stateFormat = "alarm";
  process(records, keyed) {
    for (const r of records) {
      keyed.put(r, keyed.get(r, 0) + 1);
      this.timers.register(r.key, r.timestamp + 10n, TimeDomain.PROCESSING_TIME);
    }
  }
  onTimer(domain, fired, keyed, out) {
    for (const timer of fired) {
      out.push(timer.key, `${domain} ${timer.timestamp} after ${keyed.get(timer)}`, timer.timestamp);
      keyed.delete(timer);
    }
  }
}

test("a timed operator registers timers, is called back, and catches up", () => {
  const guest = new Guest(new Alarm());
  assert.equal(guest.role, "timed-operator");
  const timers = (guest.timers = new ManualTimers(() => 3));
  guest.init(context());
  guest.process(batchOf([["k", "", 5n, 3], ["k", "", 7n, 3]]));
  assert.deepEqual(
    timers.pending(TimeDomain.PROCESSING_TIME).map(([, t]) => t),
    [15n, 17n],
  );
  const fired = guest.onTimer(TimeDomain.PROCESSING_TIME, timers.advanceClock(15));
  assert.deepEqual(rowsOf(fired), [["k", "processing-time 15 after 2", 15n]]);
  // `catch-up`: after a restore, changes apply on top, and are snapshotted as changed.
  assert.match(thrown(() => world.catchUp.restoreChanges({ operatorStates: [], keyGroups: [] }, ORIGIN)), /no module registered/);
  const alarm = new Guest(new Alarm());
  alarm.timers = timers;
  alarm.init(context());
  assert.equal(thrown(() => alarm.restoreChanges({ operatorStates: [], keyGroups: [] }, ORIGIN)),
    "Error: restore-changes was called before restore");
  alarm.restore({ operatorStates: [], keyGroups: [] }, ORIGIN);
  const nine = encodeEnvelope("alarm", 1, [[new TextEncoder().encode("k"), 9]]);
  alarm.restoreChanges({ operatorStates: [], keyGroups: [{ keyGroup: 3, delta: false, state: nine }] }, ORIGIN);
  assert.deepEqual(alarm.snapshot(2n, false).keyGroups.map((g) => [g.keyGroup, g.delta]), [[3, false]]);
  const later = alarm.onTimer(TimeDomain.PROCESSING_TIME, timers.advanceClock(17));
  assert.deepEqual(rowsOf(later), [["k", "processing-time 17 after 9", 17n]]);
  const unkeyed = batchOf([["k", "", 1n]]);
  assert.equal(
    thrown(() => alarm.onTimer(TimeDomain.EVENT_TIME, unkeyed)),
    "StateError: timers fired without their key groups",
  );
  // Without the host's timers (a component imports them) and none set, registering fails.
  const bare = new Guest(new Alarm());
  bare.init(context());
  assert.match(thrown(() => bare.process(batchOf([["k", "", 1n, 3]]))), /^Error: this operator has no timers/);
});
