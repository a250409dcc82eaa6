"""A windowed count per key: tumbling windows of 10 s of event time (version 1.0.0 of
`window-count`, as `guest-examples/rust/window-count-v1`).

For each key, it counts the records of each window `[start, start + 10000)` of their
timestamps and, once the watermark reaches the window's end, emits one record: the key, the
value `"{key} {start} {end} count={n}"`, at timestamp `end - 1`. Config `allowed_lateness_ms`
(default 0) keeps a window that long after its end: a record of it that arrives meanwhile
updates it, and it is emitted again; config `late_output = "true"` sends a record too late for
its window on downstream (key prefixed `\xfflate:`) rather than only counting it. Its state, `window-count` version 1, is each key's open
windows with their counts: the bytes the Rust and JavaScript versions write."""

from jobhost import WindowOperator, Windows, aggregate, export


class WindowCountV1(WindowOperator):
    name = "window-count"
    version = "1.0.0"
    state_format = "window-count"
    state_version = 1
    windows = Windows.tumbling(10_000).aggregate(aggregate.count())

    def init(self, ctx):
        lateness = int(ctx.config.get("allowed_lateness_ms", "0"))
        self.windows = self.windows.allowed_lateness(lateness)
        if ctx.config.get("late_output", "false") == "true":
            self.windows = self.windows.late_output()

    def emit(self, key, window, count, out):
        value = b"%s %d %d count=%d" % (key, window.start, window.end, count)
        out.push(key, value, window.max_timestamp)


WitWorld = export(WindowCountV1)
