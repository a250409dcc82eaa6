// Keyed windows over event time: tumbling, sliding and session windows, each with an incremental
// aggregate (`aggregate.js`), allowed lateness, and late records counted (and, if asked, sent on
// as a side output). The semantics are Flink's, and those of the Rust and Python SDKs:
//
// - A window is `[start, end)`. A record of timestamp `t` is in the tumbling window of `size`
//   starting at a multiple of `size`; in the sliding windows of `size` starting at multiples of
//   `slide` that hold `t`; in the session `[t, t + gap)`, merged with every session of its key
//   it touches (sessions closer than or exactly `gap` apart are one).
// - A window's result is emitted once, when the watermark reaches its last millisecond,
//   `end - 1` (an event-time timer there). A record that arrives after that but within the
//   allowed lateness updates the window, which is emitted again at once if its result changed.
// - A window is late once the watermark reaches `end - 1 + allowed lateness`: its state is
//   dropped then (a second timer), and a record whose every window is late is dropped and
//   counted (`lateRecords`); with `lateOutput()`, it goes on downstream with its key prefixed
//   by `LATE_KEY_PREFIX`.
//
// Window state is keyed state (it checkpoints, rescales and migrates as any): per key, its open
// windows `[[start, end, acc, fired], ...]` by start, in the operator's state format
// (docs/state-format.md, *Windows*), the bytes the Rust and Python SDKs write. Times are
// milliseconds, Numbers here (a record's BigInt timestamp beyond 2^53 is refused).

import { Aggregate, aggregate } from "./aggregate.js";
import { TimedOperator } from "./roles.js";
import { StateError, encodeValue, unsupportedVersion } from "./state.js";
import { TimeDomain } from "./time.js";

/**
 * What a late record's key starts with in the side output (`lateOutput()`): byte 0xff, which no
 * UTF-8 text holds, then `late:`; the rest is the record's key, and its value and timestamp are
 * the record's.
 */
export const LATE_KEY_PREFIX = Uint8Array.from([0xff, ...new TextEncoder().encode("late:")]);

const TUMBLING = "tumbling";
const SLIDING = "sliding";
const SESSION = "session";

/** A window of event time, `[start, end)`, in milliseconds. */
export class Window {
  constructor(start, end) {
    this.start = start;
    this.end = end;
  }

  /** Its last millisecond, `end - 1`: the timestamp of its result, and when it fires. */
  get maxTimestamp() {
    return this.end - 1;
  }
}

function positive(what, ms) {
  if (!Number.isSafeInteger(ms) || ms <= 0) {
    throw new RangeError(`the ${what} of a window is ${String(ms)} ms: it must be a positive integer`);
  }
  return ms;
}

/**
 * Windows over event time, keyed, with an aggregate:
 * `Windows.tumbling(10_000).allowedLateness(5_000).aggregate(aggregate.count())`. Each method
 * returns new windows; none changes these.
 */
export class Windows {
  constructor(kind, size, slide) {
    this.kind = kind;
    this.size = size;
    this.slide = slide;
    this.lateness = 0;
    this.lateOutputOn = false;
    this.aggregator = undefined;
    Object.freeze(this);
  }

  /** Tumbling windows of `size` ms: `[k * size, (k + 1) * size)`. */
  static tumbling(size) {
    return new Windows(TUMBLING, positive("size", size), 0);
  }

  /** Sliding windows of `size` ms, one starting every `slide` ms. */
  static sliding(size, slide) {
    return new Windows(SLIDING, positive("size", size), positive("slide", slide));
  }

  /**
   * Session windows: a key's records less than or exactly `gap` ms apart are one session, which
   * ends `gap` ms after its last record.
   */
  static session(gap) {
    return new Windows(SESSION, positive("session gap", gap), 0);
  }

  but(changes) {
    const copy = Object.create(Windows.prototype);
    return Object.freeze(Object.assign(copy, this, changes));
  }

  /**
   * Keeps windows `lateness` ms after the watermark passed their end (0 by default): a record of
   * theirs that arrives meanwhile updates them (and emits them again if changed).
   */
  allowedLateness(lateness) {
    if (!Number.isSafeInteger(lateness) || lateness < 0) {
      throw new RangeError(`the allowed lateness is ${String(lateness)} ms: it must be 0 or more`);
    }
    return this.but({ lateness });
  }

  /**
   * Sends records too late for any window on downstream, their key prefixed by
   * `LATE_KEY_PREFIX`, rather than dropping them (they are counted either way).
   */
  lateOutput() {
    return this.but({ lateOutputOn: true });
  }

  /** What each window computes: one aggregate, or several (their accumulators an array). */
  aggregate(...parts) {
    if (parts.length === 0 || !parts.every((part) => part instanceof Aggregate)) {
      throw new TypeError("aggregate() takes aggregates (`aggregate.count()`, ...)");
    }
    const combined = aggregate.allOf(parts);
    if (this.kind === SESSION && !combined.merges()) {
      throw new TypeError(
        "session windows merge their aggregates, and this one cannot merge: give the fold a merge",
      );
    }
    return this.but({ aggregator: combined });
  }

  /** The windows of a record at `t`, by start; for a session, its own, before merging. */
  assign(t) {
    const floorMod = (a, m) => ((a % m) + m) % m;
    if (this.kind === TUMBLING) {
      const start = t - floorMod(t, this.size);
      return [new Window(start, start + this.size)];
    }
    if (this.kind === SESSION) return [new Window(t, t + this.size)];
    const windows = [];
    for (let start = t - floorMod(t, this.slide); start > t - this.size; start -= this.slide) {
      windows.unshift(new Window(start, start + this.size));
    }
    return windows;
  }

  /** When a window's state goes: the watermark reached its end - 1 + allowed lateness. */
  cleanupTime(window) {
    return window.maxTimestamp + this.lateness;
  }
}

/**
 * A window operator: set `windows` (a `Windows` with its aggregate) and implement `emit`; the
 * SDK does the rest (world `timed-operator`). A newer version reads older windows through
 * `migrateAcc(version, acc)`, window by window.
 */
export class WindowOperator extends TimedOperator {
  /** The windows and their aggregate. */
  windows = undefined;
  /**
   * The records dropped as too late for any window (or sent to the side output) since the
   * subtask started.
   */
  lateRecords = 0;

  /**
   * Pushes the result `acc` of `key`'s `window` onto `out` (typically one record of key `key` at
   * `window.maxTimestamp`).
   */
  emit(_key, _window, _acc, _out) {
    throw new Error(`${this.name} does not implement emit`);
  }

  /**
   * A window's accumulator written as state `version` (older than `stateVersion`), as one of this
   * version. By default no older version is read.
   */
  migrateAcc(version, _acc) {
    throw unsupportedVersion(this.stateFormat, version, this.stateVersion);
  }

  migrate(version, value) {
    if (!Array.isArray(value) || !value.every((s) => Array.isArray(s) && s.length === 4)) {
      throw new StateError("a key's windows are [[start, end, acc, fired], ...]");
    }
    return value.map(([start, end, acc, fired]) => [start, end, this.migrateAcc(version, acc), fired]);
  }

  process(records, keyed, out) {
    new Machine(this, keyed, out).process(records);
  }

  onTimer(domain, fired, keyed, out) {
    if (domain === TimeDomain.EVENT_TIME) new Machine(this, keyed, out).onTimer(fired);
  }
}

/** A timestamp (BigInt) as a Number, refused beyond 2^53. */
function ms(t) {
  const n = Number(t);
  if (!Number.isSafeInteger(n)) throw new RangeError(`timestamp ${t} is beyond 2^53 ms`);
  return n;
}

function same(a, b) {
  const x = encodeValue(a);
  const y = encodeValue(b);
  return x.length === y.length && x.every((byte, i) => byte === y[i]);
}

/** What windows do with one call's records or fired timers. */
class Machine {
  constructor(operator, keyed, out) {
    const spec = operator.windows;
    if (!(spec instanceof Windows) || spec.aggregator === undefined) {
      throw new TypeError(`${operator.constructor.name}.windows must be Windows with an aggregate`);
    }
    this.operator = operator;
    this.spec = spec;
    this.agg = spec.aggregator;
    this.keyed = keyed;
    this.out = out;
    this.timers = operator.timers;
  }

  process(records) {
    // The watermark before the first is -2^63, which a Number holds exactly.
    const watermark = Number(this.timers.watermark());
    for (const record of records) {
      const windows = this.spec.assign(ms(record.timestamp)).filter((w) => !this.late(w, watermark));
      if (windows.length === 0) {
        this.lateRecord(record);
      } else if (this.spec.kind === SESSION) {
        this.addToSession(record, windows[0], watermark);
      } else {
        const slots = this.keyed.get(record) ?? [];
        for (const window of windows) this.addToWindow(record, window, watermark, slots);
        this.keyed.put(record, slots);
      }
    }
  }

  onTimer(fired) {
    for (const timer of fired) {
      const at = ms(timer.timestamp);
      const slots = this.keyed.get(timer);
      const due = (s) => !s[3] && s[1] - 1 <= at;
      const gone = (s) => this.spec.cleanupTime(new Window(s[0], s[1])) <= at;
      if (slots === undefined || !slots.some((s) => due(s) || gone(s))) continue;
      for (const slot of slots) {
        if (due(slot)) {
          this.operator.emit(timer.key, new Window(slot[0], slot[1]), slot[2], this.out);
          slot[3] = true;
        }
      }
      const kept = slots.filter((s) => !gone(s));
      if (kept.length > 0) this.keyed.put(timer, kept);
      else this.keyed.delete(timer);
    }
  }

  late(window, watermark) {
    return this.spec.cleanupTime(window) <= watermark;
  }

  lateRecord(record) {
    this.operator.lateRecords += 1;
    if (this.spec.lateOutputOn) {
      const key = new Uint8Array(LATE_KEY_PREFIX.length + record.key.length);
      key.set(LATE_KEY_PREFIX);
      key.set(record.key, LATE_KEY_PREFIX.length);
      this.out.push(key, record.value, record.timestamp);
    }
  }

  addToWindow(record, window, watermark, slots) {
    const before = ([start, end]) => start < window.start || (start === window.start && end < window.end);
    let at = 0;
    while (at < slots.length && before(slots[at])) at++;
    const slot = slots[at];
    if (slot !== undefined && slot[0] === window.start && slot[1] === window.end) {
      this.update(record, slot);
    } else {
      const acc = this.agg.add(this.agg.create(), record);
      slots.splice(at, 0, this.open(record.key, window, acc, watermark));
    }
  }

  /** Adds the record to an open window: emitted again if it fired and its result changed. */
  update(record, slot) {
    const before = slot[2];
    slot[2] = this.agg.add(before, record);
    if (slot[3] && !same(before, slot[2])) {
      this.operator.emit(record.key, new Window(slot[0], slot[1]), slot[2], this.out);
    }
  }

  /**
   * A window opened with `acc`: its timers registered, or, if the watermark already reached its
   * end (a record within the allowed lateness), its result emitted at once.
   */
  open(key, window, acc, watermark) {
    const fired = window.maxTimestamp <= watermark;
    if (fired) this.operator.emit(key, window, acc, this.out);
    else this.timers.register(key, window.maxTimestamp, TimeDomain.EVENT_TIME);
    if (this.spec.lateness > 0) {
      this.timers.register(key, this.spec.cleanupTime(window), TimeDomain.EVENT_TIME);
    }
    return [window.start, window.end, acc, fired];
  }

  addToSession(record, own, watermark) {
    const slots = this.keyed.get(record) ?? [];
    const { first, last, merged } = touching(slots, own);
    if (this.late(merged, watermark)) {
      this.lateRecord(record);
      return;
    }
    const [start, end] = slots[first] ?? [];
    if (last - first === 1 && start === merged.start && end === merged.end) {
      this.update(record, slots[first]);
    } else {
      let acc = this.agg.create();
      const touched = slots.slice(first, last);
      for (const slot of touched) acc = this.agg.merge(acc, slot[2]);
      acc = this.agg.add(acc, record);
      slots.splice(first, last - first, this.open(record.key, merged, acc, watermark));
      for (const [start, end] of touched) {
        if (start !== merged.start || end !== merged.end) {
          this.forgetTimers(record.key, new Window(start, end), slots);
        }
      }
    }
    this.keyed.put(record, slots);
  }

  /** Deletes the timers of a session merged away, but those another window still needs. */
  forgetTimers(key, gone, slots) {
    const needed = new Set();
    for (const [start, end] of slots) {
      const window = new Window(start, end);
      needed.add(window.maxTimestamp).add(this.spec.cleanupTime(window));
    }
    for (const at of new Set([gone.maxTimestamp, this.spec.cleanupTime(gone)])) {
      if (!needed.has(at)) this.timers.delete(key, at, TimeDomain.EVENT_TIME);
    }
  }
}

/**
 * The range of `slots` (sessions, which do not touch each other) that `own` touches, and the
 * session they make together.
 */
function touching(slots, own) {
  let first = 0;
  while (first < slots.length && slots[first][1] < own.start) first++;
  let last = first;
  let { start, end } = own;
  while (last < slots.length && slots[last][0] <= own.end) {
    start = Math.min(start, slots[last][0]);
    end = Math.max(end, slots[last][1]);
    last++;
  }
  return { first, last, merged: new Window(start, end) };
}
