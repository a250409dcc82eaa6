"""{{name}}: counts the records it is given and logs the count at each commit (a sink that writes
somewhere would prepare a transaction in `prepare_commit` and publish it in `commit`)."""

from jobhost import Sink


class {{class}}(Sink):
    name = "{{name}}"
    version = "0.1.0"
    rescale = "union"
    state_format = "{{name}}-count"
    state_version = 1

    def init(self, ctx):
        self.records = 0
        self.first = ctx.subtask == 0

    def write(self, records):
        self.records += len(records)

    def commit(self, checkpoint):
        print(f"checkpoint {checkpoint}: {self.records} records so far")

    def snapshot_operator_state(self):
        return self.records

    def restore_operator_state(self, payloads, origin):
        # `rescale = "union"`: every subtask is given every old subtask's count; the first
        # takes them all, so that the total survives a parallelism change.
        self.records = sum(p or 0 for p in payloads) if self.first else 0
