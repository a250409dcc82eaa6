"""A sink that writes each record's value, plus a newline, into part files, with two-phase
commit (the Python counterpart of `guest-examples/rust/file-sink`).

Config: `dir`, the guest path of an output directory the host preopens read-write, shared by all
subtasks. Subtask `s` appends what it is given to `<dir>/.staging/<s>.current`; `prepare_commit`
makes that file durable and renames it to `.staging/<s>-<checkpoint>.pending`, and `commit`
renames the pending files of completed checkpoints to `<dir>/part-<checkpoint, 12 digits>-<s>.txt`,
where they become visible. Its operator state (`file-sink` version 1) is `[checkpoint,
[pending checkpoints...]]`. `restore` only loads it; `recover`, once the job starts, publishes
the restored checkpoint's pending files and removes the files written after that checkpoint,
since the resumed job writes them again."""

import os
import re

from jobhost import Sink, export

PART = re.compile(r"part-([0-9]{12,})-([0-9]+)\.txt")
PENDING = re.compile(r"([0-9]+)-([0-9]+)\.pending")

# Times a listing is tried again after an entry vanished under it.
LIST_ATTEMPTS_MAX = 100


def part_name(checkpoint, subtask):
    return f"part-{checkpoint:012}-{subtask}.txt"


def pending_name(subtask, checkpoint):
    return f"{subtask}-{checkpoint}.pending"


def part_id(name, subtask):
    """The checkpoint of `name` if it is exactly `part_name(checkpoint, subtask)`."""
    match = PART.fullmatch(name)
    if match and part_name(int(match[1]), subtask) == name:
        return int(match[1])
    return None


def pending_id(name, subtask):
    """The checkpoint of `name` if it is exactly `pending_name(subtask, checkpoint)`."""
    match = PENDING.fullmatch(name)
    if match and pending_name(subtask, int(match[2])) == name:
        return int(match[2])
    return None


def file_names(folder):
    """The names of the files in `folder`, none if it does not exist. Other subtasks rename and
    remove their own files in the same folder meanwhile, and WASI's `readdir` looks each entry
    up as it lists it, so an entry that vanished fails the listing: it is listed again."""
    for attempt in range(1, LIST_ATTEMPTS_MAX + 1):
        try:
            return os.listdir(folder)
        except FileNotFoundError:
            if not os.path.exists(folder):
                return []
            if attempt == LIST_ATTEMPTS_MAX:
                raise


def remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class FileSink(Sink):
    name = "file-sink"
    version = "1.0.0"
    state_format = "file-sink"
    state_version = 1

    def init(self, ctx):
        self.dir = ctx.config_value("dir")
        if not os.path.isdir(self.dir):
            raise NotADirectoryError(f"config key `dir`: `{self.dir}` is not a directory")
        self.staging = os.path.join(self.dir, ".staging")
        self.subtask = ctx.subtask
        # The transaction being written, once something was written since the last `init`,
        # `restore` or `prepare_commit`.
        self.current = None
        # The checkpoints whose pending files await `commit`, in increasing order.
        self.pending = []
        self.checkpoint = 0

    def current_path(self):
        return os.path.join(self.staging, f"{self.subtask}.current")

    def create_current(self):
        """Creates, or truncates, the current transaction's file."""
        os.makedirs(self.staging, exist_ok=True)
        return open(self.current_path(), "wb")

    def write(self, records):
        if self.current is None:
            self.current = self.create_current()
        self.current.write(b"".join(r.value + b"\n" for r in records))

    def prepare_commit(self, checkpoint):
        if self.pending and self.pending[-1] >= checkpoint:
            raise ValueError(
                f"checkpoint {checkpoint} is not after pending checkpoint {self.pending[-1]}"
            )
        current = self.current if self.current is not None else self.create_current()
        self.current = None
        with current:
            current.flush()
            os.fsync(current.fileno())
        pending = os.path.join(self.staging, pending_name(self.subtask, checkpoint))
        os.rename(self.current_path(), pending)
        self.pending.append(checkpoint)
        self.checkpoint = checkpoint

    def commit(self, checkpoint):
        """Publishes the pending files of `checkpoint` and earlier, oldest first."""
        while self.pending and self.pending[0] <= checkpoint:
            done = self.pending[0]
            pending = os.path.join(self.staging, pending_name(self.subtask, done))
            part = os.path.join(self.dir, part_name(done, self.subtask))
            try:
                os.rename(pending, part)
            except FileNotFoundError:
                if not os.path.exists(part):  # else published by an earlier `commit`
                    raise
            self.pending.pop(0)

    def snapshot_operator_state(self):
        return [self.checkpoint, self.pending]

    def restore_operator_state(self, payloads, origin):
        """Goes back to the restored state, in memory only: `recover` reconciles the files."""
        # It does not rescale (`rescale = "refuse"`): one state, or none.
        states = [p for p in payloads if p is not None]
        if len(states) > 1:
            raise ValueError(f"a file sink subtask resumes from one state, not {len(states)}")
        if states:
            checkpoint, pending = states[0]
            self.checkpoint = checkpoint
            self.pending = sorted(set(pending))
        self.current = None

    def recover(self, checkpoint):
        """Brings the folder back to `checkpoint`, the one restored: removes this subtask's parts
        of later checkpoints, its pending files the restored state does not list, and its
        current file; then publishes the pending files of `checkpoint` and earlier."""
        for name in file_names(self.dir):
            found = part_id(name, self.subtask)
            if found is not None and found > checkpoint:
                remove(os.path.join(self.dir, name))
        for name in file_names(self.staging):
            found = pending_id(name, self.subtask)
            if found is not None and found not in self.pending:
                remove(os.path.join(self.staging, name))
        if self.current is not None:
            self.current.close()
            self.current = None
        remove(self.current_path())
        self.commit(checkpoint)


WitWorld = export(FileSink)
