// Time for an operator: the subtask's event-time watermark and its timers per key, kept by the
// host (`timers` in `wit/operator.wit`: checkpointed with the key's group, moved with it on
// rescale, surviving upgrades), behind one small seam, `Timers`:
//
// - in a component built for world `timed-operator` (a `TimedOperator` or `WindowOperator`),
//   `this.timers` is the host's timer service (`host-timers.js`, which the build imports);
// - natively (an operator's unit tests), a test sets the guest's `timers` to a `ManualTimers`:
//   a timer service kept in memory, whose watermark and clock the test moves by hand, handing
//   back the timers that fired as the batch `onTimer` receives.
//
// Times are milliseconds, BigInts as a batch's timestamps (a Number is taken too): event time as
// the records' timestamps, processing time since the Unix epoch.

import { bytesToKeyString, keyStringToBytes } from "./batch.js";

/** Which clock a timer follows: the strings componentize-js passes for the WIT enum. */
export const TimeDomain = Object.freeze({
  /** Fires when the subtask's watermark reaches the timer's timestamp. */
  EVENT_TIME: "event-time",
  /** Fires when the wall clock (milliseconds since the Unix epoch) reaches it. */
  PROCESSING_TIME: "processing-time",
});

/** The watermark before the first one: no record is late yet. */
export const NO_WATERMARK = -(2n ** 63n);

function checkDomain(domain) {
  if (domain !== TimeDomain.EVENT_TIME && domain !== TimeDomain.PROCESSING_TIME) {
    throw new TypeError(`a time domain is "event-time" or "processing-time", not ${String(domain)}`);
  }
  return domain;
}

/**
 * Timers per key and the event-time watermark: what the host keeps for a timed operator. This
 * one has none (an operator not built for world `timed-operator`): registering throws.
 */
export class Timers {
  /**
   * Asks for `onTimer` to be called for `key` (bytes) once `domain`'s time reaches `timestamp`.
   * Registering the same key, time and domain again is one timer. Throws for a key outside the
   * key groups this subtask owns.
   */
  register(_key, _timestamp, _domain) {
    throw new Error(
      "this operator has no timers: extend TimedOperator (or, in a test, set its guest's " +
        "`timers` to a ManualTimers)",
    );
  }

  /** Removes that timer, if it is pending. */
  delete(_key, _timestamp, _domain) {}

  /**
   * The subtask's event-time watermark, a BigInt: no record with an earlier timestamp is
   * expected any more. `NO_WATERMARK` before the first.
   */
  watermark() {
    return NO_WATERMARK;
  }
}

/**
 * `timestamp` as an `s64` argument of the host's `timers`, refused if negative: componentize-js
 * 0.23 aborts the whole component (a wasm trap: "Internal bindgen error in
 * coreabi_from_bigint64 validation") when an imported function gets a negative `s64`, whatever
 * its representation (bytecodealliance/ComponentizeJS#343, open). A clear error instead: the
 * operator fails naming the timestamp, and `docs/time.md` says what to do.
 */
export function timerArgument(timestamp) {
  const t = BigInt(timestamp);
  if (t < 0n) {
    throw new RangeError(
      `a JavaScript operator cannot set a timer at a negative time (${t}): componentize-js ` +
        "aborts on a negative s64 import argument (bytecodealliance/ComponentizeJS#343); " +
        "keep event time at or after 0 (see docs/time.md)",
    );
  }
  return t;
}

/** The host's timer service: `imports` is the `timers` interface componentize-js links. */
export class HostTimers extends Timers {
  constructor(imports) {
    super();
    this.imports = imports;
  }

  register(key, timestamp, domain) {
    this.imports.register(key, timerArgument(timestamp), checkDomain(domain));
  }

  delete(key, timestamp, domain) {
    this.imports.delete(key, timerArgument(timestamp), checkDomain(domain));
  }

  watermark() {
    // componentize-js 0.23 lifts an imported function's `s64` result as unsigned (the first
    // watermark, -2^63, arrives as 2^63): read the 64 bits as signed again.
    return BigInt.asIntN(64, BigInt(this.imports.currentWatermark()));
  }
}

let host;

/** Makes `imports` (the `timers` interface) the host's timers of every timed operator. */
export function useHostTimers(imports) {
  host = new HostTimers(imports);
}

/** The host's timers, if the component imports them; else none. */
export function hostTimers() {
  return host ?? new Timers();
}

/**
 * A timer service kept in memory, for tests, whose watermark and clock a test moves by hand:
 * each move returns the timers it made fire, as the batch `onTimer` receives (keys and
 * timestamps in timestamp order, values empty, key groups set). As the host's: registering a
 * timer twice is one timer, the watermark never goes back, and an event-time timer at or below
 * the watermark fires with the next move. `keyGroup(keyBytes)` gives a fired timer's key group
 * (the host's is `xxh3-64(key) % maxParallelism`; a test may use any that fits).
 */
export class ManualTimers extends Timers {
  constructor(keyGroup) {
    super();
    this.keyGroup = keyGroup;
    this.now = { [TimeDomain.EVENT_TIME]: NO_WATERMARK, [TimeDomain.PROCESSING_TIME]: 0n };
    /** Pending timers by domain: a Map from `${timestamp} ${keyString}` to [timestamp, key]. */
    this.pendingTimers = { [TimeDomain.EVENT_TIME]: new Map(), [TimeDomain.PROCESSING_TIME]: new Map() };
  }

  register(key, timestamp, domain) {
    const t = BigInt(timestamp);
    const keyString = bytesToKeyString(key);
    this.pendingTimers[checkDomain(domain)].set(`${t} ${keyString}`, [t, keyString]);
  }

  delete(key, timestamp, domain) {
    this.pendingTimers[checkDomain(domain)].delete(`${BigInt(timestamp)} ${bytesToKeyString(key)}`);
  }

  watermark() {
    return this.now[TimeDomain.EVENT_TIME];
  }

  /** Moves the watermark to `watermark` (never back); returns the event-time timers due. */
  advanceWatermark(watermark) {
    return this._advance(TimeDomain.EVENT_TIME, BigInt(watermark));
  }

  /** Moves the wall clock to `now` (never back); returns the processing-time timers due. */
  advanceClock(now) {
    return this._advance(TimeDomain.PROCESSING_TIME, BigInt(now));
  }

  /** The pending timers of `domain`, `[keyBytes, timestamp]` in timestamp order. */
  pending(domain) {
    return sorted(this.pendingTimers[checkDomain(domain)]).map(([t, k]) => [keyStringToBytes(k), t]);
  }

  _advance(domain, to) {
    if (to > this.now[domain]) this.now[domain] = to;
    const now = this.now[domain];
    const pending = this.pendingTimers[domain];
    const due = sorted(pending).filter(([t]) => t <= now);
    for (const [t, k] of due) pending.delete(`${t} ${k}`);
    const keys = due.map(([, k]) => keyStringToBytes(k));
    const keyEnds = new Uint32Array(keys.length);
    let end = 0;
    keys.forEach((key, i) => (keyEnds[i] = end += key.length));
    const joined = new Uint8Array(end);
    keys.forEach((key, i) => joined.set(key, keyEnds[i] - key.length));
    return {
      keys: joined,
      keyEnds,
      values: new Uint8Array(0),
      valueEnds: new Uint32Array(keys.length),
      timestamps: BigInt64Array.from(due.map(([t]) => t)),
      keyGroups: Uint32Array.from(keys.map((key) => this.keyGroup(key))),
    };
  }
}

/** Pending timers in timestamp order, then key. */
function sorted(pending) {
  return [...pending.values()].sort(([t1, k1], [t2, k2]) =>
    t1 < t2 ? -1 : t1 > t2 ? 1 : k1 < k2 ? -1 : k1 > k2 ? 1 : 0,
  );
}
