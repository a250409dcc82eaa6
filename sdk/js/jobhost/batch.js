// Columnar batches: reading them as records (after checking their offsets), and building them
// from records.
//
// A batch crosses the component boundary as six columns (see `wit/operator.wit`): record `i`'s
// key is `keys[keyEnds[i - 1]..keyEnds[i]]` (from 0 for the first record), and likewise its
// value. componentize-js hands them to JavaScript as typed arrays (`keys`, `values`:
// Uint8Array; `keyEnds`, `valueEnds`, `keyGroups`: Uint32Array; `timestamps`: BigInt64Array),
// and takes them back the same way.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The error a malformed batch raises: its message starts with `malformed batch:`. */
export class BatchError extends Error {
  constructor(message) {
    super(`malformed batch: ${message}`);
    this.name = "BatchError";
  }
}

/** One record of a batch; `key` and `value` are views into the batch's columns. */
export class Record {
  constructor(key, value, timestamp, keyGroup) {
    /** The key's bytes (empty if it has none). */
    this.key = key;
    /** The value's bytes. */
    this.value = value;
    /** The timestamp, a BigInt (s64). */
    this.timestamp = timestamp;
    /** The key group the host computed for it (records of a `key-by` edge), else undefined. */
    this.keyGroup = keyGroup;
    this._keyString = undefined;
  }

  /** The key as a string of one char per byte (latin1): exact, and cheap to hash. */
  get keyString() {
    if (this._keyString === undefined) this._keyString = bytesToKeyString(this.key);
    return this._keyString;
  }

  /** The key decoded as UTF-8 (invalid bytes become U+FFFD). */
  keyText() {
    return decoder.decode(this.key);
  }

  /** The value decoded as UTF-8 (invalid bytes become U+FFFD). */
  valueText() {
    return decoder.decode(this.value);
  }
}

/**
 * Whether `value` is a Uint8Array, of this realm or another: the arrays componentize-js passes
 * in come from its bindings' realm, where `instanceof Uint8Array` is false.
 */
export function isBytes(value) {
  return ArrayBuffer.isView(value) && value[Symbol.toStringTag] === "Uint8Array";
}

/** Bytes to a string of one char (0..=255) per byte; the inverse of `keyStringToBytes`. */
export function bytesToKeyString(bytes) {
  // One native call per 4 KiB: an interpreted loop over the bytes costs far more.
  if (bytes.length <= 4096) return String.fromCharCode.apply(null, bytes);
  let s = "";
  for (let i = 0; i < bytes.length; i += 4096) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 4096));
  }
  return s;
}

/** A string of one char per byte back to the bytes. */
export function keyStringToBytes(s) {
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 255) throw new RangeError(`key string has a char above 255 at ${i}`);
    bytes[i] = c;
  }
  return bytes;
}

function checkEnds(name, ends, columnLength, count) {
  if (ends.length !== count) {
    throw new BatchError(`${ends.length} ${name} ends for ${count} timestamps`);
  }
  let start = 0;
  for (let i = 0; i < count; i++) {
    const end = ends[i];
    if (end < start) {
      throw new BatchError(`${name} end ${i} is ${end}, before the previous end ${start}`);
    }
    start = end;
  }
  if (start > columnLength) {
    throw new BatchError(
      `${name} ends reach ${start}, past the ${columnLength} bytes of ${name}s`,
    );
  }
}

/**
 * The records of a batch whose offsets have been checked: iterable, with `length` and `get(i)`.
 */
export class Records {
  /** Checks `batch`'s columns (throws a `BatchError` if malformed). */
  constructor(batch) {
    const count = batch.timestamps.length;
    checkEnds("key", batch.keyEnds, batch.keys.length, count);
    checkEnds("value", batch.valueEnds, batch.values.length, count);
    const groups = batch.keyGroups ?? [];
    if (groups.length !== 0 && groups.length !== count) {
      throw new BatchError(`${groups.length} key groups for ${count} records`);
    }
    this.batch = batch;
    this.length = count;
    this.hasKeyGroups = groups.length !== 0;
  }

  /** Record `i` (0 <= i < length). */
  get(i) {
    const b = this.batch;
    if (!(i >= 0 && i < this.length)) throw new RangeError(`record ${i} of ${this.length}`);
    const keyStart = i === 0 ? 0 : b.keyEnds[i - 1];
    const valueStart = i === 0 ? 0 : b.valueEnds[i - 1];
    return new Record(
      b.keys.subarray(keyStart, b.keyEnds[i]),
      b.values.subarray(valueStart, b.valueEnds[i]),
      b.timestamps[i],
      this.hasKeyGroups ? b.keyGroups[i] : undefined,
    );
  }

  [Symbol.iterator]() {
    // A plain iterator rather than a generator: cheaper in an interpreter (the component's
    // engine runs JS without a JIT).
    const records = this;
    let i = 0;
    return {
      next() {
        return i < records.length ? { value: records.get(i++), done: false } : DONE;
      },
      [Symbol.iterator]() {
        return this;
      },
    };
  }
}

const DONE = Object.freeze({ value: undefined, done: true });

/** Reads `batch` as records, after checking its offsets. */
export function records(batch) {
  return new Records(batch);
}

const INITIAL_RECORDS = 64;
const INITIAL_BYTES = 1024;

/**
 * Builds a batch record by record into growing typed arrays (doubling, so pushing is amortised
 * O(1) per byte); `finish()` returns the columns as views, without another copy.
 *
 * Keys and values are Uint8Arrays or strings (written as UTF-8); a value may also be an array
 * of such parts, written end to end (e.g. `[record.key, " ", String(count)]`).
 */
export class BatchBuilder {
  constructor(records = INITIAL_RECORDS) {
    const n = Math.max(1, records);
    this.length = 0;
    this.keys = new Uint8Array(INITIAL_BYTES);
    this.keyLength = 0;
    this.values = new Uint8Array(INITIAL_BYTES);
    this.valueLength = 0;
    this.keyEnds = new Uint32Array(n);
    this.valueEnds = new Uint32Array(n);
    this.timestamps = new BigInt64Array(n);
  }

  /**
   * Appends a record; `timestamp` is a BigInt or an integer Number. A push that throws leaves
   * the batch as it was.
   */
  push(key, value, timestamp) {
    const time = typeof timestamp === "bigint" ? timestamp : BigInt(timestamp);
    if (this.length === this.timestamps.length) this._growRecords();
    const keyEnd = this._append("keys", this.keyLength, key);
    let valueEnd = this.valueLength;
    if (Array.isArray(value)) {
      for (const part of value) valueEnd = this._append("values", valueEnd, part);
    } else {
      valueEnd = this._append("values", valueEnd, value);
    }
    const i = this.length;
    this.keyEnds[i] = this.keyLength = keyEnd;
    this.valueEnds[i] = this.valueLength = valueEnd;
    this.timestamps[i] = time;
    this.length = i + 1;
  }

  /** The batch built so far, as the columns the host takes (views of this builder's arrays). */
  finish() {
    const n = this.length;
    return {
      keys: this.keys.subarray(0, this.keyLength),
      keyEnds: this.keyEnds.subarray(0, n),
      values: this.values.subarray(0, this.valueLength),
      valueEnds: this.valueEnds.subarray(0, n),
      timestamps: this.timestamps.subarray(0, n),
      keyGroups: new Uint32Array(0),
    };
  }

  _growRecords() {
    const n = this.timestamps.length * 2;
    const keyEnds = new Uint32Array(n);
    keyEnds.set(this.keyEnds);
    this.keyEnds = keyEnds;
    const valueEnds = new Uint32Array(n);
    valueEnds.set(this.valueEnds);
    this.valueEnds = valueEnds;
    const timestamps = new BigInt64Array(n);
    timestamps.set(this.timestamps);
    this.timestamps = timestamps;
  }

  /** Writes `part` into column `name` at `at`, growing it if needed; returns the new end. */
  _append(name, at, part) {
    let column = this[name];
    if (typeof part === "string") {
      // UTF-8 takes at most 3 bytes per UTF-16 code unit.
      const most = at + part.length * 3;
      if (most > column.length) column = this._grow(name, at, most);
      const end = at + encoder.encodeInto(part, column.subarray(at)).written;
      if (end > 0xffff_ffff) throw new RangeError(`the ${name} of a batch exceed 4 GiB`);
      return end;
    }
    if (!isBytes(part)) {
      throw new TypeError(`a key or value must be a Uint8Array or a string, not ${describe(part)}`);
    }
    const end = at + part.length;
    if (end > 0xffff_ffff) throw new RangeError(`the ${name} of a batch exceed 4 GiB`);
    if (end > column.length) column = this._grow(name, at, end);
    column.set(part, at);
    return end;
  }

  _grow(name, used, needed) {
    let size = this[name].length * 2;
    while (size < needed) size *= 2;
    const grown = new Uint8Array(size);
    grown.set(this[name].subarray(0, used));
    this[name] = grown;
    return grown;
  }
}

function describe(value) {
  if (value === null) return "null";
  if (typeof value === "object") return value.constructor?.name ?? "object";
  return typeof value;
}
