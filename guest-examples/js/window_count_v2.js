// A windowed count and sum per key: tumbling windows of 10 s of event time (version 2.0.0 of
// `window-count`), the Rust `window-count-v2` in JS, which resumes version 1's open windows.
//
// As version 1, and it also sums the records' values read as integers (an empty value adds 0):
// for each window it emits the value `"{key} {start} {end} count={n} sum={sum}"` at timestamp
// `end - 1`, `sum=unknown` for a window that version 1 opened (it did not sum). Config
// `allowed_lateness_ms` as version 1. Its state is `window-count` version 2: each window's
// accumulator is `[count, sum or nil]`; it reads versions 1 and 2.

import {
  StateError,
  WindowOperator,
  Windows,
  aggregate,
  register,
} from "../../sdk/js/jobhost/index.js";

const integerOrZero = (record) => (record.value.length === 0 ? 0 : aggregate.valueAsInteger(record));

export class WindowCountV2 extends WindowOperator {
  name = "window-count";
  version = "2.0.0";
  stateFormat = "window-count";
  stateVersion = 2;
  windows = Windows.tumbling(10_000).aggregate(aggregate.count(), aggregate.sum(integerOrZero));

  init(ctx) {
    const lateness = Number(ctx.config.allowed_lateness_ms ?? "0");
    this.windows = this.windows.allowedLateness(lateness);
    if ((ctx.config.late_output ?? "false") === "true") this.windows = this.windows.lateOutput();
  }

  emit(key, window, [count, sum], out) {
    const total = sum === null ? "unknown" : String(sum);
    out.push(key, [key, ` ${window.start} ${window.end} count=${count} sum=${total}`], window.maxTimestamp);
  }

  /** Version 1 kept a count per window; its sum is unknown. */
  migrateAcc(version, acc) {
    if (version !== 1) return super.migrateAcc(version, acc);
    if (!Number.isSafeInteger(acc) || acc < 0) {
      throw new StateError(`a \`window-count\` version 1 accumulator is a count, not ${JSON.stringify(acc)}`);
    }
    return [acc, null];
  }
}

register(WindowCountV2);
