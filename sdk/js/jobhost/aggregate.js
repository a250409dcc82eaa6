// Aggregates computed incrementally per window (`Windows.aggregate`): each keeps an accumulator,
// which a record updates as it arrives, and which is the window's result. The accumulator is
// state (docs/state-format.md, *Windows*), written as MessagePack, so its shape is part of the
// operator's state format, the same in the three SDKs:
//
// | aggregate                     | accumulator                                   |
// |-------------------------------|-----------------------------------------------|
// | `count()`                     | the number of records                         |
// | `sum(by)`                     | the sum; `null`: unknown                      |
// | `min(by)`, `max(by)`          | an integer                                    |
// | `fold(init, add, merge)`      | yours                                         |
// | several, `.aggregate(a, b)`   | an array of theirs                            |
//
// Integers are Numbers, or BigInts beyond 2^53 (as state decodes them). A sum is unknown when
// part of it is: a window opened by an older version that did not sum (as
// `guest-examples/js/window_count_v2.js` migrates `window_count_v1`'s windows), and stays so.
// `sum`, `min` and `max` read a record's value as a decimal integer (`"-12"`), or `by(record)`.

const INTEGER = /^\s*[+-]?[0-9]+\s*$/;
const S64_MIN = -(2n ** 63n);
const S64_MAX = 2n ** 63n - 1n;
const decoder = new TextDecoder();

/** An integer as a Number when it is one exactly, else a BigInt; refused beyond 64 bits. */
function integer(n, what) {
  const big = BigInt(n);
  if (big < S64_MIN || big > S64_MAX) {
    throw new RangeError(`the ${what} of a window overflows a signed 64-bit integer`);
  }
  return big >= -BigInt(Number.MAX_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(big)
    : big;
}

/** A record's value read as a decimal integer: what `sum`, `min` and `max` add. */
export function valueAsInteger(record) {
  const text = decoder.decode(record.value);
  if (!INTEGER.test(text)) {
    throw new TypeError(
      `the value ${JSON.stringify(text)} of the record of key ` +
        `${JSON.stringify(decoder.decode(record.key))} is not an integer`,
    );
  }
  return integer(text.trim(), "value");
}

/** An aggregate of the records of a window, computed as they arrive. */
export class Aggregate {
  /** The accumulator of a window that holds no record yet. */
  create() {
    throw new Error("Aggregate.create is not implemented");
  }

  /** `acc` with `record` added (a new accumulator: never change one in place). */
  add(_acc, _record) {
    throw new Error("Aggregate.add is not implemented");
  }

  /** `acc` with `other`, another window's accumulator, added: session windows merge. */
  merge(_acc, _other) {
    throw new Error("Aggregate.merge is not implemented");
  }

  /** Whether it can `merge` (a `fold` without a merge cannot). */
  merges() {
    return true;
  }
}

class Count extends Aggregate {
  create() {
    return 0;
  }
  add(acc) {
    return integer(BigInt(acc) + 1n, "count");
  }
  merge(acc, other) {
    return integer(BigInt(acc) + BigInt(other), "count");
  }
}

class Sum extends Aggregate {
  constructor(by) {
    super();
    this.by = by;
  }
  create() {
    return 0;
  }
  add(acc, record) {
    const value = this.by(record);
    return acc === null ? null : integer(BigInt(acc) + BigInt(value), "sum");
  }
  merge(acc, other) {
    return acc === null || other === null ? null : integer(BigInt(acc) + BigInt(other), "sum");
  }
}

class Extreme extends Aggregate {
  constructor(by, greatest) {
    super();
    this.by = by;
    this.greatest = greatest;
  }
  /** Never written: a window's first record replaces it. */
  create() {
    return null;
  }
  add(acc, record) {
    return this.merge(acc, integer(this.by(record), "value"));
  }
  merge(acc, other) {
    if (acc === null || other === null) return acc === null ? other : acc;
    return (other > acc) === this.greatest ? other : acc;
  }
}

class Fold extends Aggregate {
  constructor(init, add, merge) {
    super();
    this.init = init;
    this.addFn = add;
    this.mergeFn = merge;
  }
  create() {
    return this.init;
  }
  add(acc, record) {
    return this.addFn(acc, record);
  }
  merge(acc, other) {
    if (this.mergeFn === undefined) {
      throw new Error("a fold without a merge cannot merge session windows: give it a merge");
    }
    return this.mergeFn(acc, other);
  }
  merges() {
    return this.mergeFn !== undefined;
  }
}

/** Several aggregates at once, their accumulators an array. */
class All extends Aggregate {
  constructor(parts) {
    super();
    this.parts = parts;
  }
  create() {
    return this.parts.map((part) => part.create());
  }
  add(acc, record) {
    return this.parts.map((part, i) => part.add(acc[i], record));
  }
  merge(acc, other) {
    return this.parts.map((part, i) => part.merge(acc[i], other[i]));
  }
  merges() {
    return this.parts.every((part) => part.merges());
  }
}

/** The aggregates: `aggregate.count()`, `aggregate.sum(by)`, ... */
export const aggregate = Object.freeze({
  /** The number of records. */
  count: () => new Count(),
  /** The sum of the records' values read as integers, or of `by(record)`. */
  sum: (by = valueAsInteger) => new Sum(by),
  /** The least of the records' values read as integers, or of `by(record)`. */
  min: (by = valueAsInteger) => new Extreme(by, false),
  /** The greatest of the records' values read as integers, or of `by(record)`. */
  max: (by = valueAsInteger) => new Extreme(by, true),
  /**
   * Your own: the accumulator starts at `init` and becomes `add(acc, record)` with each record
   * (return a new one); `merge(acc, other)` makes one of two, for session windows.
   */
  fold: (init, add, merge = undefined) => new Fold(init, add, merge),
  /** `parts` at once, their accumulators an array (what `.aggregate(a, b)` makes). */
  allOf: (parts) => (parts.length === 1 ? parts[0] : new All([...parts])),
  valueAsInteger,
});
