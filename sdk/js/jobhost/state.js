// Portable state (docs/state-format.md): the MessagePack envelope `[format, version, payload]`
// every SDK writes, and the keyed state the SDK keeps by key group, with the groups changed
// since the last snapshot.

import { decode, encode } from "@msgpack/msgpack";

import { bytesToKeyString, isBytes, keyStringToBytes } from "./batch.js";

/** The error state that cannot be read raises. */
export class StateError extends Error {
  constructor(message) {
    super(message);
    this.name = "StateError";
  }
}

const INT32_MIN = -0x8000_0000;
const UINT32_END = 0x1_0000_0000;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * Prepares `value` for the encoder so that every integer takes its smallest MessagePack encoding:
 * integers that fit 32 bits (signed or unsigned) become Numbers, larger ones BigInts (which the
 * encoder, with `useBigInt64`, writes as uint 64 / int 64, the only encodings that hold them).
 */
function forEncoding(value, depth = 0) {
  if (depth > 100) throw new StateError("state nests more than 100 levels deep");
  switch (typeof value) {
    case "number":
      if (Number.isInteger(value) && (value < INT32_MIN || value >= UINT32_END)) {
        if (!Number.isSafeInteger(value)) {
          throw new StateError(`integer ${value} is beyond 2^53: keep it as a BigInt`);
        }
        return BigInt(value);
      }
      return value;
    case "bigint":
      if (value < -0x8000_0000_0000_0000n || value > 0xffff_ffff_ffff_ffffn) {
        throw new StateError(`integer ${value} does not fit 64 bits`);
      }
      return value >= BigInt(INT32_MIN) && value < BigInt(UINT32_END) ? Number(value) : value;
    case "object":
      if (value === null || ArrayBuffer.isView(value)) return value;
      if (Array.isArray(value)) return value.map((v) => forEncoding(v, depth + 1));
      if (value instanceof Map || value instanceof Set) {
        throw new StateError(
          `a ${value.constructor.name} cannot be written as state: use an array or a plain object`,
        );
      }
      return Object.fromEntries(
        Object.entries(value).map(([k, v]) => [k, forEncoding(v, depth + 1)]),
      );
    default:
      return value;
  }
}

/** After decoding: 64-bit integers that fit a safe Number become Numbers, the rest stay BigInts. */
function fromDecoding(value) {
  if (typeof value === "bigint") {
    return value >= -MAX_SAFE && value <= MAX_SAFE ? Number(value) : value;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = fromDecoding(value[i]);
  } else if (value !== null && typeof value === "object" && !ArrayBuffer.isView(value)) {
    for (const k of Object.keys(value)) value[k] = fromDecoding(value[k]);
  }
  return value;
}

/** Encodes any value as MessagePack, integers in their smallest encoding, bytes as `bin`. */
export function encodeValue(value) {
  return encode(forEncoding(value), { useBigInt64: true });
}

/** Decodes one MessagePack value (and nothing after it). */
export function decodeValue(bytes) {
  return fromDecoding(decode(bytes, { useBigInt64: true }));
}

/** Wraps `payload` in the envelope `[format, version, payload]`. */
export function encodeEnvelope(format, version, payload) {
  checkFormatAndVersion(format, version);
  return encodeValue([format, version, payload]);
}

/** A key group's delta: `upserts` (a group's payload shape) and the keys `removed`. */
export function encodeDelta(format, version, upserts, removed) {
  checkFormatAndVersion(format, version);
  return encodeValue([format, version, upserts, removed]);
}

function checkFormatAndVersion(format, version) {
  if (typeof format !== "string" || format === "") {
    throw new StateError(`a state format is a non-empty string, not ${String(format)}`);
  }
  if (!Number.isSafeInteger(version) || version < 0) {
    throw new StateError(`a state version is a non-negative integer, not ${String(version)}`);
  }
}

/**
 * Opens an envelope: returns `{ format, version, payload }`, or throws a `StateError`. With
 * `delta`, a key group's delta `[format, version, upserts, removed]`: `payload` is the upserts
 * and `removed` the keys it removes.
 */
export function decodeEnvelope(bytes, delta = false) {
  let value;
  try {
    value = decodeValue(bytes);
  } catch (e) {
    throw new StateError(`state is not MessagePack (${e.message})`);
  }
  const shape = delta ? "[format, version, upserts, removed]" : "[format, version, payload]";
  if (
    !Array.isArray(value) ||
    value.length !== (delta ? 4 : 3) ||
    typeof value[0] !== "string" ||
    !Number.isSafeInteger(value[1]) ||
    value[1] < 0
  ) {
    throw new StateError(`state is not an envelope ${shape}`);
  }
  if (delta && !(Array.isArray(value[3]) && value[3].every(isBytes))) {
    throw new StateError("the removed keys of a delta are not a list of bin");
  }
  const opened = { format: value[0], version: value[1], payload: value[2] };
  return delta ? { ...opened, removed: value[3] } : opened;
}

/**
 * Checks an opened envelope against what this module reads: `format`, at `version` or, when
 * `canMigrate`, an older version. Refuses another format and a newer version, naming both sides.
 */
export function checkEnvelope(found, format, version, canMigrate, what = "state") {
  if (found.format !== format) {
    throw new StateError(
      `${what} has format \`${found.format}\`, but this module reads format \`${format}\``,
    );
  }
  if (found.version > version) {
    throw new StateError(
      `${what} has version ${found.version} of \`${format}\`, newer than this module reads ` +
        `(version ${version})`,
    );
  }
  if (found.version < version && !canMigrate) {
    throw unsupportedVersion(format, found.version, version);
  }
}

/**
 * Opens an envelope written in `format` at a version this module reads: `version` itself, or an
 * older one, whose payload `migrate(version, payload)` turns into the current shape (without
 * `migrate`, older versions are refused).
 */
export function openEnvelope(bytes, format, version, migrate = undefined, what = "state") {
  const found = decodeEnvelope(bytes);
  checkEnvelope(found, format, version, migrate !== undefined, what);
  return found.version === version ? found.payload : migrate(found.version, found.payload);
}

/** The error for a state version older than `current` that a module cannot migrate. */
export function unsupportedVersion(format, found, current) {
  return new StateError(
    `unsupported state version ${found} of \`${format}\`: this module reads version ${current} ` +
      `and migrates no older one`,
  );
}

/**
 * Keyed state by key group: a Map from key (one char per key byte, see `Record.keyString`) to
 * value per group, with the groups changed since the last snapshot and, in them, the keys put
 * and deleted: a snapshot writes a group the host holds as a delta of those
 * (`[format, version, upserts, removed]`), any other whole; a group goes whole again once its
 * deltas since would outnumber its keys (by a margin of `(group * 67 % 128) / 128` of them, as the Rust
 * SDK does).
 */
export class KeyedState {
  constructor() {
    /** @type {Map<number, Map<string, unknown>>} */
    this.groups = new Map();
    /** Groups changed since the last snapshot (or `init`, or `restore`). */
    this.dirty = new Set();
    /** @type {Map<number, Set<string>>} Keys put, by group, since the last snapshot. */
    this.put_ = new Map();
    /** @type {Map<number, Set<string>>} Keys deleted from groups the host holds. */
    this.deleted = new Map();
    /** Groups the host holds as of the last snapshot. */
    this.based = new Set();
    /** @type {Map<number, number>} Entries in deltas since a group was last written whole. */
    this.sinceWhole = new Map();
    /** The groups this subtask owns: [start, end), set at `init`. */
    this.range = undefined;
  }

  /** The value of `record`'s key, or `dflt` if it has none. */
  get(record, dflt = undefined) {
    const group = this.groups.get(this._group(record));
    if (group === undefined) return dflt;
    const value = group.get(record.keyString);
    return value === undefined ? dflt : value;
  }

  /** Whether `record`'s key has a value. */
  has(record) {
    return this.groups.get(this._group(record))?.has(record.keyString) ?? false;
  }

  /** Sets the value of `record`'s key (not `undefined`: use `delete`). */
  put(record, value) {
    if (value === undefined) throw new TypeError("keyed state value is undefined: use `delete`");
    const g = this._group(record);
    let group = this.groups.get(g);
    if (group === undefined) {
      group = new Map();
      this.groups.set(g, group);
    }
    group.set(record.keyString, value);
    this.dirty.add(g);
    keysOf(this.put_, g).add(record.keyString);
  }

  /** Removes `record`'s key; returns whether it had a value. */
  delete(record) {
    const g = this._group(record);
    const group = this.groups.get(g);
    if (group === undefined || !group.delete(record.keyString)) return false;
    this.dirty.add(g);
    this.put_.get(g)?.delete(record.keyString);
    if (this.based.has(g)) keysOf(this.deleted, g).add(record.keyString);
    return true;
  }

  /** Every `[keyBytes, value, keyGroup]` held, group by group. */
  *entries() {
    for (const [g, group] of this.groups) {
      for (const [k, v] of group) yield [keyStringToBytes(k), v, g];
    }
  }

  /** The number of keys held. */
  get size() {
    let n = 0;
    for (const group of this.groups.values()) n += group.size;
    return n;
  }

  _group(record) {
    const g = record.keyGroup;
    if (g === undefined) {
      throw new StateError(
        "a record without a key group reached keyed state: keyed state needs its input over " +
          "a `key-by` edge",
      );
    }
    if (this.range !== undefined && (g < this.range[0] || g >= this.range[1])) {
      throw new StateError(
        `record of key group ${g} reached the subtask of key groups ` +
          `${this.range[0]}..${this.range[1]}`,
      );
    }
    return g;
  }

  /**
   * The groups to snapshot, encoded (`[{ keyGroup, delta, state }]`): every group changed since
   * the last snapshot, or, when `full`, every group held (and those emptied since). An emptied
   * group's state is empty bytes. Pairs are sorted by key bytes, so that equal state gives
   * equal bytes.
   */
  snapshot(full, format, version) {
    const chosen = full ? new Set([...this.groups.keys(), ...this.dirty]) : this.dirty;
    const out = [...chosen].sort((a, b) => a - b).map((g) => this._snapshotGroup(g, full, format, version));
    this.dirty = new Set();
    this.put_ = new Map();
    this.deleted = new Map();
    if (full) this.based = new Set(out.filter((g) => g.state.length > 0).map((g) => g.keyGroup));
    return out;
  }

  /** One group's part of a snapshot, whole or a delta, and what the host then holds of it. */
  _snapshotGroup(g, full, format, version) {
    const group = this.groups.get(g);
    if (group === undefined || group.size === 0) {
      this.groups.delete(g);
      this.based.delete(g);
      return { keyGroup: g, delta: false, state: new Uint8Array(0) };
    }
    const put = [...(this.put_.get(g) ?? [])].sort();
    const deleted = [...(this.deleted.get(g) ?? [])].sort();
    const changes = (this.sinceWhole.get(g) ?? 0) + put.length + deleted.length;
    const threshold = group.size + Math.floor((group.size * ((g * 67) % 128)) / 128);
    const based = this.based.has(g);
    this.based.add(g);
    if (full || !based || changes > threshold) {
      this.sinceWhole.set(g, 0);
      const keys = [...group.keys()].sort();
      const pairs = keys.map((k) => [keyStringToBytes(k), group.get(k)]);
      return { keyGroup: g, delta: false, state: encodeEnvelope(format, version, pairs) };
    }
    this.sinceWhole.set(g, changes);
    const upserts = put.map((k) => [keyStringToBytes(k), group.get(k)]);
    const removed = deleted.map(keyStringToBytes);
    return { keyGroup: g, delta: true, state: encodeDelta(format, version, upserts, removed) };
  }

  /**
   * Replaces the state with the groups given (`[{ keyGroup, delta, state }]`: for each group
   * its whole state, then the deltas written after it, in order), each an envelope of `format`,
   * its values migrated by `migrate(version, value)` when older than `version`.
   */
  restore(groups, format, version, migrate) {
    const loaded = new Map();
    for (const { keyGroup, delta, state } of groups) {
      if (state.length === 0 && !delta) continue;
      const { removed, upserts } = decodeGroup(keyGroup, delta, state, format, version, migrate);
      if (!delta && loaded.has(keyGroup)) {
        throw new StateError(`key group ${keyGroup} was given whole twice`);
      }
      const group = loaded.get(keyGroup) ?? new Map();
      for (const key of removed) group.delete(key);
      for (const [key, value] of upserts) group.set(key, value);
      loaded.set(keyGroup, group);
    }
    for (const [g, group] of loaded) if (group.size === 0) loaded.delete(g);
    this.groups = loaded;
    // The host's next snapshot is full: until then, it holds no group of this state.
    this.dirty = new Set();
    this.put_ = new Map();
    this.deleted = new Map();
    this.based = new Set();
    this.sinceWhole = new Map();
  }

  /**
   * Applies changes on top of what `restore` loaded (`restore-changes`, a live swap): for each
   * group changed, its whole state (which replaces the group's; empty: no keys any more) then
   * deltas, or deltas only. What they change counts as changed since the previous snapshot: a
   * group replaced goes whole in the next one, a delta's keys as a delta.
   */
  restoreChanges(groups, format, version, migrate) {
    for (const { keyGroup: g, delta, state } of groups) {
      this.dirty.add(g);
      if (!delta) {
        this.groups.delete(g);
        this.based.delete(g);
        this.put_.delete(g);
        this.deleted.delete(g);
        if (state.length === 0) continue;
      }
      const { removed, upserts } = decodeGroup(g, delta, state, format, version, migrate);
      const group = this.groups.get(g) ?? new Map();
      const put = keysOf(this.put_, g);
      for (const key of removed) {
        if (group.delete(key) && this.based.has(g)) keysOf(this.deleted, g).add(key);
        put.delete(key);
      }
      for (const [key, value] of upserts) {
        group.set(key, value);
        put.add(key);
      }
      if (group.size > 0) this.groups.set(g, group);
      else this.groups.delete(g);
    }
  }
}

/**
 * A group's blob, an envelope of `format` whole or as a delta: the keys it removes and its
 * `[key, value]` pairs (keys as strings of one char per byte), values migrated by
 * `migrate(version, value)` when older than `version`.
 */
function decodeGroup(keyGroup, delta, state, format, version, migrate) {
  const what = `the keyed state of key group ${keyGroup}`;
  const found = decodeEnvelope(state, delta);
  checkEnvelope(found, format, version, migrate !== undefined, what);
  const old = found.version !== version;
  if (!Array.isArray(found.payload)) {
    throw new StateError(`${what} is not a list of [key, value]`);
  }
  const upserts = found.payload.map((pair) => {
    if (!Array.isArray(pair) || pair.length !== 2 || !isBytes(pair[0])) {
      throw new StateError(`${what} holds an entry that is not [bin key, value]`);
    }
    return [bytesToKeyString(pair[0]), old ? migrate(found.version, pair[1]) : pair[1]];
  });
  return { removed: (found.removed ?? []).map(bytesToKeyString), upserts };
}

/** The set of keys of group `g` in `byGroup`, made if missing. */
function keysOf(byGroup, g) {
  let keys = byGroup.get(g);
  if (keys === undefined) {
    keys = new Set();
    byGroup.set(g, keys);
  }
  return keys;
}
