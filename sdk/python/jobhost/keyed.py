"""Keyed state, kept by the SDK per key group.

Each record that arrived over a `key-by` edge carries its key group (the host computed it); the
state of a key lives in its group's dict. Groups changed since the previous snapshot are
tracked, and in them the keys put or deleted, so that a snapshot writes only what changed: a
group the host holds goes as a delta (`[format, version, upserts, removed]`), any other whole
(`[format, version, [[bin key, value], ...]]`, `docs/state-format.md`), keys sorted. A group is
written whole again once its deltas since would outnumber its keys (by a margin of
`(group * 67 % 128) / 128` of them, as the Rust SDK does), and a restore applies chains of both.
"""

from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple

from .batch import Record
from .errors import KeyedStateError, StateError
from .state import decode_group_of, encode_delta, encode_envelope, unsupported_version

_MISSING = object()


class KeyedState:
    """The keyed state of one subtask: `get`, `put` and `delete` a record's key.

    A value is any MessagePack-encodable value (integers, strings, bytes, lists, dicts...). A
    value changed in place must be `put` again, or the change is not saved."""

    def __init__(
        self,
        key_group_start: int,
        key_group_end: int,
        state_format: Optional[str],
        state_version: int,
    ) -> None:
        self._start = key_group_start
        self._end = key_group_end
        self._format = state_format
        self._version = state_version
        self._groups: Dict[int, Dict[bytes, Any]] = {}
        self._dirty: Set[int] = set()
        self._put: Dict[int, Set[bytes]] = {}
        self._deleted: Dict[int, Set[bytes]] = {}
        self._based: Set[int] = set()
        self._since_whole: Dict[int, int] = {}

    def _group(self, record: Record) -> int:
        group = record[3]
        if group is None:
            raise KeyedStateError(
                f"record with key {record[0]!r} has no key group: keyed state is for records "
                "that arrived over a key-by edge"
            )
        if not self._start <= group < self._end:
            raise KeyedStateError(
                f"record with key {record[0]!r} is in key group {group}, not one of this "
                f"subtask's key groups {self._start}..{self._end}"
            )
        return group

    def get(self, record: Record, default: Any = None) -> Any:
        """The value of `record`'s key, or `default` if it has none."""
        group = self._groups.get(self._group(record))
        if group is None:
            return default
        return group.get(record[0], default)

    def put(self, record: Record, value: Any) -> None:
        """Sets the value of `record`'s key."""
        if self._format is None:
            raise KeyedStateError(
                "keyed state needs a state format: set `state_format` on the operator's class"
            )
        number = self._group(record)
        group = self._groups.get(number)
        if group is None:
            group = self._groups[number] = {}
        group[record[0]] = value
        self._dirty.add(number)
        self._put.setdefault(number, set()).add(record[0])

    def delete(self, record: Record) -> None:
        """Removes `record`'s key and its value, if it has one."""
        number = self._group(record)
        group = self._groups.get(number)
        if group is not None and group.pop(record[0], _MISSING) is not _MISSING:
            self._dirty.add(number)
            self._put.get(number, set()).discard(record[0])
            if number in self._based:
                self._deleted.setdefault(number, set()).add(record[0])

    def __len__(self) -> int:
        """How many keys have a value."""
        return sum(map(len, self._groups.values()))

    def items(self) -> Iterator[Tuple[int, bytes, Any]]:
        """Every `(key group, key, value)`, groups in increasing order."""
        for number in sorted(self._groups):
            for key, value in self._groups[number].items():
                yield number, key, value

    def snapshot(self, full: bool) -> List[Tuple[int, bool, bytes]]:
        """The `(key group, delta, blob)` of every group changed since the previous snapshot,
        or of every group held when `full`: a delta of the keys put and deleted since when the
        host holds the group, else the group whole; a group without keys has an empty blob."""
        numbers = self._dirty.union(self._groups) if full else self._dirty
        blobs = [self._snapshot_group(number, full) for number in sorted(numbers)]
        self._dirty, self._put, self._deleted = set(), {}, {}
        if full:
            self._based = {number for number, _, blob in blobs if blob}
        return blobs

    def _snapshot_group(self, number: int, full: bool) -> Tuple[int, bool, bytes]:
        """One group's part of a snapshot, and what the host then holds of it."""
        group = self._groups.get(number)
        if not group:
            self._groups.pop(number, None)
            self._based.discard(number)
            return number, False, b""
        assert self._format is not None
        put = self._put.get(number, set())
        deleted = self._deleted.get(number, set())
        changes = self._since_whole.get(number, 0) + len(put) + len(deleted)
        threshold = len(group) + len(group) * (number * 67 % 128) // 128
        based = number in self._based
        self._based.add(number)
        if full or not based or changes > threshold:
            self._since_whole[number] = 0
            return number, False, encode_envelope(self._format, self._version, sorted(group.items()))
        self._since_whole[number] = changes
        upserts = sorted((key, group[key]) for key in put)
        return number, True, encode_delta(self._format, self._version, upserts, sorted(deleted))

    def restore(
        self,
        groups: List[Tuple[int, bool, bytes]],
        migrate: Callable[[int, Any], Any],
        origin: str,
    ) -> None:
        """Replaces the state with `groups`' (`(key group, delta, blob)`: for each group its
        whole state, then the deltas written after it, in order; empty whole blobs skipped).
        Values of older versions go through `migrate(version, value)`; their groups are
        written again, in the current version, by the next snapshot."""
        loaded: Dict[int, Dict[bytes, Any]] = {}
        migrated: Set[int] = set()
        for number, delta, blob in groups:
            if not blob and not delta:
                continue
            upserts, removed, old = self._decode(number, delta, blob, migrate, origin)
            if old:
                migrated.add(number)
            if not delta and number in loaded:
                raise StateError(f"key group {number} was given whole twice")
            group = loaded.setdefault(number, {})
            for key in removed or ():
                group.pop(key, None)
            group.update(upserts)
        self._groups = {number: group for number, group in loaded.items() if group}
        # The host's next snapshot is full: until then, it holds no group of this state.
        self._dirty, self._put, self._deleted = migrated, {}, {}
        self._based, self._since_whole = set(), {}

    def restore_changes(
        self,
        groups: List[Tuple[int, bool, bytes]],
        migrate: Callable[[int, Any], Any],
        origin: str,
    ) -> None:
        """Applies changes on top of what `restore` loaded (`restore-changes`, a live swap):
        for each group changed, its whole state (which replaces the group's; empty: no keys
        any more) then deltas, or deltas only. What they change counts as changed since the
        previous snapshot: a group replaced goes whole in the next one, a delta's keys as a
        delta."""
        for number, delta, blob in groups:
            self._dirty.add(number)
            if not delta:
                self._groups.pop(number, None)
                self._based.discard(number)
                self._put.pop(number, None)
                self._deleted.pop(number, None)
                if not blob:
                    continue
            upserts, removed, _ = self._decode(number, delta, blob, migrate, origin)
            group = self._groups.setdefault(number, {})
            put = self._put.setdefault(number, set())
            for key in removed or ():
                if group.pop(key, _MISSING) is not _MISSING and number in self._based:
                    self._deleted.setdefault(number, set()).add(key)
                put.discard(key)
            group.update(upserts)
            put.update(upserts)
            if not group:
                del self._groups[number]

    def _decode(
        self,
        number: int,
        delta: bool,
        blob: bytes,
        migrate: Callable[[int, Any], Any],
        origin: str,
    ) -> Tuple[Dict[bytes, Any], Optional[List[bytes]], bool]:
        """A group's blob: its values (migrated to the current version), the keys it removes
        (for a delta), and whether it was of an older version."""
        if self._format is None:
            raise StateError(
                f"this module keeps no keyed state, but was given the state of key group "
                f"{number} written by {origin}"
            )
        version, payload, removed = decode_group_of(blob, self._format, delta)
        if version > self._version:
            raise unsupported_version(self._format, version, self._version)
        upserts = _pairs(number, payload)
        if version != self._version:
            upserts = {key: migrate(version, value) for key, value in upserts.items()}
        return upserts, removed, version != self._version


def _pairs(number: int, payload: Any) -> Dict[bytes, Any]:
    """The keys and values of a key group's payload, `[[bin key, value], ...]`."""
    group = None
    if isinstance(payload, list):
        try:
            group = dict(payload)
        except (TypeError, ValueError):
            pass
    if group is None or len(group) != len(payload) or not all(type(k) is bytes for k in group):
        raise StateError(
            f"the state of key group {number} is not a list of distinct [bin key, value] pairs"
        )
    return group
