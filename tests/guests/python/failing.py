"""A pass-through operator that fails on demand, to test how errors reach the host.

Config: `fail`, where to raise `ValueError("failing on purpose in <where>")`: `init`,
`process`, `snapshot` or `restore` (by default nowhere); `after_records`, for `process`, how
many records to pass through first (default 0). It keeps a count of the records it passed as
operator state (`failing` version 1), so that `restore` has something to refuse."""

from jobhost import Operator, export


class Failing(Operator):
    name = "failing"
    version = "1.0.0"
    state_format = "failing"
    state_version = 1

    def init(self, ctx):
        self.fail = ctx.config.get("fail", "")
        self.after_records = int(ctx.config.get("after_records", "0"))
        self.passed = 0
        self.fail_in("init")

    def fail_in(self, where):
        if self.fail == where:
            raise ValueError(f"failing on purpose in {where}")

    def process(self, records, keyed, out):
        for r in records:
            if self.passed >= self.after_records:
                self.fail_in("process")
            self.passed += 1
            out.push(r.key, r.value, r.timestamp)

    def snapshot_operator_state(self):
        self.fail_in("snapshot")
        return self.passed

    def restore_operator_state(self, payloads, origin):
        self.fail_in("restore")
        self.passed = sum(p for p in payloads if p is not None)


WitWorld = export(Failing)
