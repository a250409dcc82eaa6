// The three roles an author extends: `Operator`, `Source` and `Sink`, each a world of
// `wit/operator.wit`. An author sets the module's identity and state format as class fields and
// overrides the methods of its role; the SDK does the bindings, the batches and the state.

import { unsupportedVersion } from "./state.js";

/** What every role shares: identity, start-up, and state. */
export class Stateful {
  /** The module's name, recorded with every state blob it writes. */
  name = "unnamed";
  /** The module's version, recorded likewise. */
  version = "0.0.0";
  /** How operator state goes to subtasks when the parallelism changes: "refuse" | "union". */
  rescale = "refuse";
  /** The name of the state's meaning (e.g. "word-count"); undefined for a stateless module. */
  stateFormat = undefined;
  /** The version of the state this module writes (a non-negative integer). */
  stateVersion = 1;
  /** Keyed state by key group, kept by the SDK (set before `init`). */
  keyed = undefined;
  /** What `init` was given (set before `init`). */
  ctx = undefined;

  /** Called once per subtask before anything else (and before `restore`). */
  init(_ctx) {}

  /**
   * The operator state (not split by key) to write for checkpoint `checkpointId`: any
   * MessagePack-able value, or `undefined` for none.
   */
  snapshotOperatorState(_checkpointId) {
    return undefined;
  }

  /**
   * Loads operator state: `payloads` are what `snapshotOperatorState` returned, one per old
   * subtask that wrote any (several only after a parallelism change, with `rescale` "union"),
   * already migrated to `stateVersion`; `origin` names the module that wrote them. Called after
   * the keyed state is loaded. Loading only: no effect outside the guest.
   */
  restoreOperatorState(payloads, origin) {
    throw new Error(
      `${this.name} keeps no operator state, but was given ${payloads.length} blob(s) of it ` +
        `written by ${origin.moduleName} ${origin.moduleVersion}`,
    );
  }

  /** Turns a keyed value of an older state `version` into one of `stateVersion` (default: refuse). */
  migrate(version, _value) {
    throw unsupportedVersion(this.stateFormat, version, this.stateVersion);
  }

  /** The same for operator state (default: refuse). */
  migrateOperatorState(version, _payload) {
    throw unsupportedVersion(this.stateFormat, version, this.stateVersion);
  }
}

/** A map, filter, flat-map or keyed aggregation. */
export class Operator extends Stateful {
  /**
   * Transforms `records` (iterable `Record`s, also `records.get(i)` and `records.length`) into
   * records pushed onto `out` (`out.push(key, value, timestamp)`); `keyed` is the keyed state.
   */
  process(_records, _keyed, _out) {
    throw new Error(`${this.name} does not implement process`);
  }
}

/**
 * An operator that uses time (world `timed-operator`): it registers timers per key on
 * `this.timers` (from `process` or `onTimer`) and is called back when they fire.
 *
 * `this.timers` (a `Timers`, set before `init`): `register(key, timestamp, domain)`,
 * `delete(key, timestamp, domain)`, `watermark()` (a BigInt); `domain` a `TimeDomain`.
 */
export class TimedOperator extends Operator {
  /** The host's timers (set before `init`). */
  timers = undefined;

  /**
   * Timers of `domain` that fired: each record of `fired` is one timer, its key and timestamp
   * (values are empty), in timestamp order. Pushes records downstream onto `out`, as `process`
   * does, and may register and delete timers. Event-time timers fire as the watermark passes
   * them; processing-time timers by the wall clock (overdue ones at once after a restore).
   */
  onTimer(_domain, _fired, _keyed, _out) {
    throw new Error(`${this.name} does not implement onTimer`);
  }
}

/** Produces records; its position must be part of its operator state. */
export class Source extends Stateful {
  /**
   * Pushes at most `maxRecords` records onto `out`; returns true while more may follow, false
   * once the source is exhausted (the records pushed in that call are still delivered).
   */
  poll(_maxRecords, _out) {
    throw new Error(`${this.name} does not implement poll`);
  }
}

/** Writes records out with two-phase commit. */
export class Sink extends Stateful {
  /** Accepts records for the current (uncommitted) transaction. */
  write(_records) {
    throw new Error(`${this.name} does not implement write`);
  }

  /** Makes what was written durable but invisible, as checkpoint `checkpointId`'s transaction. */
  prepareCommit(_checkpointId) {}

  /** Makes the transactions of `checkpointId` and earlier visible; idempotent. */
  commit(_checkpointId) {}

  /**
   * After `restore`, when the job really starts: publishes what checkpoint `checkpointId`
   * prepared and discards what was written after it; idempotent.
   */
  recover(_checkpointId) {}
}

/** The WIT exports of each role's world, as componentize-js names them. */
export const WORLD_EXPORTS = {
  operator: ["describe", "init", "snapshot", "restore", "process"],
  "timed-operator": ["describe", "init", "snapshot", "restore", "process", "onTimer", "catchUp"],
  source: ["describe", "init", "snapshot", "restore", "pollBatch"],
  sink: [
    "describe",
    "init",
    "snapshot",
    "restore",
    "writeBatch",
    "prepareCommit",
    "commit",
    "recover",
  ],
};

/** The role ("operator" | "timed-operator" | "source" | "sink") of an instance of a role class. */
export function roleOf(impl) {
  for (const [role, base] of [
    ["timed-operator", TimedOperator],
    ["operator", Operator],
    ["source", Source],
    ["sink", Sink],
  ]) {
    if (impl instanceof base) return role;
  }
  throw new TypeError(
    `${impl?.constructor?.name ?? String(impl)} extends none of Operator, Source, Sink`,
  );
}
