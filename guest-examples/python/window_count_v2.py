"""A windowed count and sum per key: tumbling windows of 10 s of event time (version 2.0.0 of
`window-count`, as `guest-examples/rust/window-count-v2`), which resumes version 1's open
windows.

As version 1, and it also sums the records' values read as integers (an empty value adds 0):
for each window it emits the value `"{key} {start} {end} count={n} sum={sum}"` at timestamp
`end - 1`, `sum=unknown` for a window that version 1 opened (it did not sum). Config
`allowed_lateness_ms` as version 1. Its state is `window-count` version 2: each window's
accumulator is `[count, sum or nil]`; it reads versions 1 and 2."""

from jobhost import StateError, WindowOperator, Windows, aggregate, export


def integer_or_zero(record):
    return aggregate.value_as_integer(record) if record.value else 0


class WindowCountV2(WindowOperator):
    name = "window-count"
    version = "2.0.0"
    state_format = "window-count"
    state_version = 2
    windows = Windows.tumbling(10_000).aggregate(
        aggregate.count(), aggregate.sum(by=integer_or_zero)
    )

    def init(self, ctx):
        lateness = int(ctx.config.get("allowed_lateness_ms", "0"))
        self.windows = self.windows.allowed_lateness(lateness)
        if ctx.config.get("late_output", "false") == "true":
            self.windows = self.windows.late_output()

    def emit(self, key, window, acc, out):
        count, total = acc
        total = b"unknown" if total is None else b"%d" % total
        value = b"%s %d %d count=%d sum=%s" % (key, window.start, window.end, count, total)
        out.push(key, value, window.max_timestamp)

    def migrate_acc(self, version, acc):
        """Version 1 kept a count per window; its sum is unknown."""
        if version != 1:
            return super().migrate_acc(version, acc)
        if type(acc) is not int or acc < 0:
            raise StateError(f"a `window-count` version 1 accumulator is a count, not {acc!r}")
        return [acc, None]


WitWorld = export(WindowCountV2)
