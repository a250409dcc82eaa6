"""{{name}}: emits the numbers 0 to `count` - 1 (config key, default 1000) as records, spread over
its subtasks; its position is its operator state."""

from jobhost import Source


class {{class}}(Source):
    name = "{{name}}"
    version = "0.1.0"
    state_format = "{{name}}-position"
    state_version = 1

    def init(self, ctx):
        self.count = int(ctx.config.get("count", "1000"))
        self.parallelism = ctx.parallelism
        self.next = ctx.subtask

    def poll(self, max_records, out):
        while self.next < self.count and len(out) < max_records:
            n = str(self.next)
            out.push(n, n, self.next)
            self.next += self.parallelism
        return self.next < self.count

    def snapshot_operator_state(self):
        return self.next

    def restore_operator_state(self, payloads, origin):
        # It does not rescale (`rescale = "refuse"`): one position, or none.
        positions = [p for p in payloads if p is not None]
        if len(positions) > 1:
            raise ValueError(f"one position per subtask, not {len(positions)}")
        if positions:
            self.next = positions[0]
