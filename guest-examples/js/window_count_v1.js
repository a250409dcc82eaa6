// A windowed count per key: tumbling windows of 10 s of event time (version 1.0.0 of
// `window-count`), the Rust `window-count-v1` in JS.
//
// For each key, it counts the records of each window `[start, start + 10000)` of their
// timestamps and, once the watermark reaches the window's end, emits one record: the key, the
// value `"{key} {start} {end} count={n}"`, at timestamp `end - 1`. Config `allowed_lateness_ms`
// (default 0) keeps a window that long after its end: a record of it that arrives meanwhile
// updates it, and it is emitted again; config `late_output = "true"` sends a record too late for
// its window on downstream (key prefixed `\xfflate:`) rather than only counting it. Its state, `window-count` version 1, is each key's open
// windows with their counts: the bytes the Rust and Python versions write.

import { WindowOperator, Windows, aggregate, register } from "../../sdk/js/jobhost/index.js";

export class WindowCountV1 extends WindowOperator {
  name = "window-count";
  version = "1.0.0";
  stateFormat = "window-count";
  stateVersion = 1;
  windows = Windows.tumbling(10_000).aggregate(aggregate.count());

  init(ctx) {
    const lateness = Number(ctx.config.allowed_lateness_ms ?? "0");
    this.windows = this.windows.allowedLateness(lateness);
    if ((ctx.config.late_output ?? "false") === "true") this.windows = this.windows.lateOutput();
  }

  emit(key, window, count, out) {
    out.push(key, [key, ` ${window.start} ${window.end} count=${count}`], window.maxTimestamp);
  }
}

register(WindowCountV1);
