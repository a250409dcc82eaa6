"""The base classes an author subclasses: `Operator`, `Source` and `Sink`.

One instance is made per subtask, when the host calls `init`. Class attributes describe the
module (`describe` reports them, and the host records them with every state blob):

- `name`, `version`: the module's name and version (non-empty strings).
- `rescale`: how its operator state goes to subtasks when the parallelism changes: `"refuse"`
  (the default) or `"union"` (every new subtask receives every old subtask's).
- `state_format`, `state_version`: the format name and version of the state it writes, keyed
  and operator state alike (see `docs/state-format.md`); `None` for a stateless module.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .batch import BatchBuilder, Record
from .errors import ConfigError, StateError
from .keyed import KeyedState
from .state import unsupported_version
from .time import TimeDomain, Timers


@dataclass
class Context:
    """What a subtask is told about itself when it starts."""

    operator_id: str
    """The stable operator id from the job file."""
    subtask: int
    """This subtask's index, from 0 to `parallelism - 1`."""
    parallelism: int
    max_parallelism: int
    """The number of key groups keyed state is split into."""
    key_group_start: int
    key_group_end: int
    """This subtask owns key groups `key_group_start` to `key_group_end - 1`."""
    config: Dict[str, str] = field(default_factory=dict)
    """The operator's `config` table from the job file."""

    def config_value(self, key: str) -> str:
        """The value of the required, non-empty config key `key`."""
        value = self.config.get(key)
        if value is None:
            raise ConfigError(f"missing config key `{key}`")
        if not value:
            raise ConfigError(f"config key `{key}` is empty")
        return value


@dataclass
class Origin:
    """Which module wrote the state handed to `restore`, and at what parallelism."""

    module_name: str
    module_version: str
    module_sha256: str
    """The SHA-256 of the writing module's `.wasm` file, in lower-case hex."""
    parallelism: int = 1
    """The parallelism the state was written at."""

    def __str__(self) -> str:
        return f"{self.module_name} {self.module_version}"


class Module:
    """What every role has: identity, start-up and state. Subclass `Operator`, `Source` or
    `Sink` rather than this."""

    name: str = ""
    version: str = ""
    rescale: str = "refuse"
    state_format: Optional[str] = None
    state_version: int = 1

    def init(self, ctx: Context) -> None:
        """Called once per subtask before anything else (and before `restore`)."""

    def snapshot_operator_state(self) -> Any:
        """The state not split by key (a source's position, a sink's transactions), as a
        MessagePack-encodable payload, or `None` for none. Written as version `state_version`
        of `state_format`."""
        return None

    def restore_operator_state(self, payloads: List[Any], origin: Origin) -> None:
        """Loads operator state: the payloads `snapshot_operator_state` returned, migrated to
        `state_version`, `None` where it returned `None`. At the same parallelism, the one
        payload of the subtask of the same index; after a parallelism change (with
        `rescale = "union"`), every old subtask's, entry `i` old subtask `i`'s
        (`origin.parallelism` of them). Loading only: no effect outside the guest. By default
        there must be none."""
        held = sum(payload is not None for payload in payloads)
        if held:
            raise StateError(
                f"`{self.name}` keeps no operator state, but was given {held} blob(s) of it "
                f"written by {origin}"
            )

    def migrate(self, version: int, value: Any) -> Any:
        """Turns a keyed value written as state version `version` (older than
        `state_version`) into a current one. By default no older version is read."""
        raise unsupported_version(str(self.state_format), version, self.state_version)

    def migrate_operator_state(self, version: int, payload: Any) -> Any:
        """Turns an operator-state payload of state version `version` (older than
        `state_version`) into a current one. By default no older version is read."""
        raise unsupported_version(str(self.state_format), version, self.state_version)


class Operator(Module):
    """A map, filter, flat-map or keyed aggregation (world `operator`)."""

    def process(self, records: List[Record], keyed: KeyedState, out: BatchBuilder) -> None:
        """Transforms a batch of input records, pushing output records onto `out`. `keyed`
        holds the keyed state, for records that arrived over a key-by edge."""
        raise NotImplementedError(f"{type(self).__name__} does not implement `process`")


class TimedOperator(Operator):
    """An operator that uses time (world `timed-operator`): it registers timers per key on
    `self.timers` (from `process` or `on_timer`) and is called back when they fire.

    `self.timers` (a `jobhost.Timers`): `register(key, timestamp, domain)`, `delete(key,
    timestamp, domain)`, `watermark()`, `domain` a `TimeDomain`: the host's timers, set before
    `init`."""

    timers: Timers = Timers()

    def on_timer(
        self, domain: TimeDomain, fired: List[Record], keyed: KeyedState, out: BatchBuilder
    ) -> None:
        """Timers of `domain` that fired: each record of `fired` is one timer, its key and
        timestamp (values are empty), in timestamp order. Pushes records downstream onto `out`,
        as `process` does, and may register and delete timers. Event-time timers fire as the
        watermark passes them; processing-time timers by the wall clock (overdue ones at once
        after a restore)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement `on_timer`")


class Source(Module):
    """Produces records (world `source`). Its position belongs in its operator state, so that
    a restored source replays exactly what followed the checkpoint."""

    def poll(self, max_records: int, out: BatchBuilder) -> bool:
        """Pushes at most `max_records` records onto `out`; returns `False` once the source is
        exhausted (with its last records, or none), `True` while more may follow."""
        raise NotImplementedError(f"{type(self).__name__} does not implement `poll`")


class Sink(Module):
    """Writes records out with two-phase commit (world `sink`)."""

    def write(self, records: List[Record]) -> None:
        """Accepts records for the current, uncommitted transaction."""
        raise NotImplementedError(f"{type(self).__name__} does not implement `write`")

    def prepare_commit(self, checkpoint: int) -> None:
        """Makes everything written so far durable but invisible, as the transaction of
        `checkpoint`. Called just before the snapshot of the same checkpoint."""

    def commit(self, checkpoint: int) -> None:
        """Makes the transactions of `checkpoint` and every earlier one visible. Idempotent."""

    def recover(self, checkpoint: int) -> None:
        """Reconciles the outside world with the restored checkpoint `checkpoint`: publishes
        what it prepared, discards what was written after it. Idempotent."""
