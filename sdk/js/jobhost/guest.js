// The adapter between the WIT exports, as componentize-js calls them, and an author's role
// class: it reads and builds batches, keeps the keyed state, wraps state in envelopes, and turns
// every JavaScript exception into the `err` of the export's `result<_, string>`.
//
// componentize-js types: `u64` arrives as a BigInt, `list<u8>` as a Uint8Array, `list<u32>` as
// a Uint32Array, `list<s64>` as a BigInt64Array; a variant is `{ tag, val }`. A function whose
// result is `result<T, string>` returns T, and what it throws becomes the `err`: a thrown
// string as it is (a thrown Error object without a string `payload` traps instead, so the
// adapter never lets one escape).

import { BatchBuilder, Records } from "./batch.js";
import { roleOf } from "./roles.js";
import { KeyedState, StateError, encodeEnvelope, openEnvelope } from "./state.js";
import { hostTimers } from "./time.js";

/** The text of the `err` a JavaScript exception becomes: `TypeError: x is not a function`. */
export function errorText(e) {
  if (typeof e === "string") return e;
  if (e instanceof Error || (typeof e?.name === "string" && typeof e?.message === "string")) {
    return `${e.name}: ${e.message}`;
  }
  try {
    return `uncaught ${typeof e}: ${String(e)}`;
  } catch {
    return `uncaught ${typeof e}`;
  }
}

/** The operator's config, and the rest of what `init` is told about the subtask. */
export class Context {
  constructor(ctx) {
    this.operatorId = ctx.operatorId;
    this.subtask = ctx.subtask;
    this.parallelism = ctx.parallelism;
    this.maxParallelism = ctx.maxParallelism;
    this.keyGroupStart = ctx.keyGroupStart;
    this.keyGroupEnd = ctx.keyGroupEnd;
    /** The `config` table of the job file, as a plain object of strings. */
    this.config = Object.fromEntries(ctx.config);
  }

  /** The value of the required, non-empty config key `key`. */
  configValue(key) {
    const value = Object.hasOwn(this.config, key) ? this.config[key] : undefined;
    if (value === undefined) throw new Error(`missing config key \`${key}\``);
    if (value === "") throw new Error(`config key \`${key}\` is empty`);
    return value;
  }
}

function checkpointNumber(id) {
  const n = Number(id);
  if (!Number.isSafeInteger(n)) throw new RangeError(`checkpoint id ${id} is beyond 2^53`);
  return n;
}

function checkSync(result, what) {
  if (result !== null && typeof result === "object" && typeof result.then === "function") {
    throw new TypeError(`${what} returned a Promise: it must be synchronous`);
  }
  return result;
}

const EMPTY = new Uint8Array(0);

/**
 * One subtask's guest: the WIT exports of the role of `impl` (an instance of a subclass of
 * `Operator`, `Source` or `Sink`), taking and returning what componentize-js passes.
 */
export class Guest {
  constructor(impl) {
    this.impl = impl;
    this.role = roleOf(impl);
    for (const field of ["name", "version"]) {
      if (typeof impl[field] !== "string" || impl[field] === "") {
        throw new TypeError(`${impl.constructor.name}: \`${field}\` must be a non-empty string`);
      }
    }
    if (impl.rescale !== "refuse" && impl.rescale !== "union") {
      throw new TypeError(
        `${impl.constructor.name}: \`rescale\` is "refuse" or "union", not ${impl.rescale}`,
      );
    }
    this.keyed = new KeyedState();
    this.initialized = false;
    this.restored = false;
    this.ended = false;
    /**
     * The timers a `TimedOperator` gets as `this.timers`: the host's in a component; a test
     * may set a `ManualTimers` before `init`.
     */
    this.timers = undefined;
  }

  /** Runs `fn`, turning whatever it throws into the export's error string. */
  guard(fn) {
    try {
      return fn();
    } catch (e) {
      throw errorText(e);
    }
  }

  describe() {
    return { name: this.impl.name, version: this.impl.version, rescale: this.impl.rescale };
  }

  init(ctx) {
    this.guard(() => {
      const context = new Context(ctx);
      this.keyed = new KeyedState();
      this.keyed.range = [context.keyGroupStart, context.keyGroupEnd];
      this.impl.keyed = this.keyed;
      this.impl.ctx = context;
      if (this.role === "timed-operator") this.impl.timers = this.timers ?? hostTimers();
      checkSync(this.impl.init(context), "init");
      this.initialized = true;
    });
  }

  snapshot(checkpointId, full) {
    return this.guard(() => {
      this.checkInitialized("snapshot");
      const impl = this.impl;
      const id = checkpointNumber(checkpointId);
      const payload = checkSync(impl.snapshotOperatorState(id), "snapshotOperatorState");
      const holdsKeyed = this.keyed.groups.size > 0 || this.keyed.dirty.size > 0;
      if ((payload !== undefined || holdsKeyed) && impl.stateFormat === undefined) {
        throw new StateError(`${impl.name} keeps state but declares no \`stateFormat\``);
      }
      return {
        operatorState:
          payload === undefined
            ? EMPTY
            : encodeEnvelope(impl.stateFormat, impl.stateVersion, payload),
        keyGroups: holdsKeyed
          ? this.keyed.snapshot(full, impl.stateFormat, impl.stateVersion)
          : [],
      };
    });
  }

  restore(state, origin) {
    this.guard(() => {
      this.checkInitialized("restore");
      if (this.restored) throw new Error("restore was called twice");
      this.restored = true;
      this.load(state, origin, false);
    });
  }

  /**
   * `catch-up`'s `restore-changes` (a timed operator's world exports it): the operator state
   * replaces the one loaded, the key groups' changes apply on top of theirs.
   */
  restoreChanges(changes, origin) {
    this.guard(() => {
      if (!this.restored) throw new Error("restore-changes was called before restore");
      this.load(changes, origin, true);
    });
  }

  /** Loads `restore`'s state, or `restore-changes`' (`changes`) on top of it. */
  load(state, origin, changes) {
    const impl = this.impl;
    const blobs = state.operatorStates.filter((blob) => blob.length > 0);
    const groups = state.keyGroups.filter((group) => group.state.length > 0);
    if (impl.stateFormat === undefined) {
      if (blobs.length === 0 && groups.length === 0) return;
      throw new StateError(
        `${impl.name} is stateless, but was given ${blobs.length} blob(s) of operator state ` +
          `and ${groups.length} key group(s) written by ${origin.moduleName} ` +
          `${origin.moduleVersion}`,
      );
    }
    const format = impl.stateFormat;
    const version = impl.stateVersion;
    const payloads = blobs.map((blob) =>
      openEnvelope(
        blob,
        format,
        version,
        (v, p) => impl.migrateOperatorState(v, p),
        "operator state",
      ),
    );
    const migrate = (v, value) => impl.migrate(v, value);
    if (changes) {
      this.keyed.restoreChanges(state.keyGroups, format, version, migrate);
    } else {
      this.keyed.restore(groups, format, version, migrate);
    }
    if (payloads.length > 0) {
      checkSync(impl.restoreOperatorState(payloads, origin), "restoreOperatorState");
    }
  }

  process(input) {
    return this.guard(() => {
      this.checkInitialized("process");
      const records = new Records(input);
      const out = new BatchBuilder(records.length);
      checkSync(this.impl.process(records, this.keyed, out), "process");
      return out.finish();
    });
  }

  onTimer(domain, fired) {
    return this.guard(() => {
      this.checkInitialized("on-timer");
      const timers = new Records(fired);
      if (timers.length > 0 && !timers.hasKeyGroups) {
        throw new StateError("timers fired without their key groups");
      }
      const out = new BatchBuilder(timers.length);
      checkSync(this.impl.onTimer(domain, timers, this.keyed, out), "onTimer");
      return out.finish();
    });
  }

  pollBatch(maxRecords) {
    return this.guard(() => {
      this.checkInitialized("poll-batch");
      if (this.ended) return { tag: "end" };
      const out = new BatchBuilder(Math.min(maxRecords, 1024));
      const more = checkSync(this.impl.poll(maxRecords, out), "poll");
      if (typeof more !== "boolean") {
        throw new TypeError(`poll returned ${String(more)}: true while more may follow, else false`);
      }
      if (out.length > maxRecords) {
        throw new RangeError(`poll pushed ${out.length} records, more than ${maxRecords}`);
      }
      this.ended = !more;
      if (this.ended && out.length === 0) return { tag: "end" };
      return { tag: "records", val: out.finish() };
    });
  }

  writeBatch(input) {
    this.guard(() => {
      this.checkInitialized("write-batch");
      checkSync(this.impl.write(new Records(input)), "write");
    });
  }

  prepareCommit(checkpointId) {
    this.guard(() => {
      this.checkInitialized("prepare-commit");
      checkSync(this.impl.prepareCommit(checkpointNumber(checkpointId)), "prepareCommit");
    });
  }

  commit(checkpointId) {
    this.guard(() => {
      this.checkInitialized("commit");
      checkSync(this.impl.commit(checkpointNumber(checkpointId)), "commit");
    });
  }

  recover(checkpointId) {
    this.guard(() => {
      this.checkInitialized("recover");
      checkSync(this.impl.recover(checkpointNumber(checkpointId)), "recover");
    });
  }

  checkInitialized(what) {
    if (!this.initialized) throw new Error(`\`${what}\` was called before \`init\` succeeded`);
  }
}
