"""A source that reads a text file line by line (the Python counterpart of
`guest-examples/rust/line-source`).

Config: `path`, the file's guest path (the host preopens its directory). Subtask `i` of `p` emits
the lines whose 0-based number `n` satisfies `n % p == i`, each as a record with an empty key,
the line without its line ending (`\\n` or `\\r\\n`) as value, and `n` as timestamp. Its
operator state (`line-position` version 1) is `[offset, line]`: the byte offset and number of
the next line to read."""

import os

from jobhost import Source, export


class LineSource(Source):
    name = "line-source"
    version = "1.0.0"
    state_format = "line-position"
    state_version = 1

    def init(self, ctx):
        if ctx.subtask >= ctx.parallelism:
            raise ValueError(
                f"subtask {ctx.subtask} is out of range for parallelism {ctx.parallelism}"
            )
        self.path = ctx.config_value("path")
        self.file = open(self.path, "rb")
        self.subtask = ctx.subtask
        self.parallelism = ctx.parallelism
        self.offset = 0
        self.line = 0

    def poll(self, max_records, out):
        readline = self.file.readline
        while len(out) < max_records:
            line = readline()
            if not line:
                return False
            number = self.line
            self.offset += len(line)
            self.line += 1
            if number % self.parallelism == self.subtask:
                if line.endswith(b"\n"):
                    line = line[:-2] if line.endswith(b"\r\n") else line[:-1]
                out.push(b"", line, number)
        return True

    def snapshot_operator_state(self):
        return [self.offset, self.line]

    def restore_operator_state(self, payloads, origin):
        # It does not rescale (`rescale = "refuse"`): one position, or none.
        positions = [p for p in payloads if p is not None]
        if len(positions) > 1:
            raise ValueError(f"a line source subtask resumes from one position, not {len(positions)}")
        if not positions:
            return
        offset, line = positions[0]
        size = os.fstat(self.file.fileno()).st_size
        if offset > size:
            raise ValueError(
                f"cannot resume `{self.path}` at byte {offset}: the file has only {size} bytes "
                "(was it changed?)"
            )
        self.file.seek(offset)
        self.offset, self.line = offset, line


WitWorld = export(LineSource)
