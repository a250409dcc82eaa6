"""Columnar batches: reading them as records, building them from records.

A batch crosses the component boundary as columns (see `wit/operator.wit`): record `i`'s key is
`keys[key_ends[i - 1]:key_ends[i]]` (from 0 for the first record), and likewise its value.
`records` checks the offsets once and slices the columns; `BatchBuilder` joins them back.
Neither loops over bytes in Python.
"""

from itertools import repeat
from operator import index
from typing import Any, List, NamedTuple, Optional, Union

from .errors import BatchError

_U32_END = 1 << 32
_S64_MIN = -(1 << 63)
_S64_MAX = (1 << 63) - 1


class Record(NamedTuple):
    """One record of a batch."""

    key: bytes
    """The record's key (empty if it has none)."""
    value: bytes
    """The record's value."""
    timestamp: int
    """The record's timestamp."""
    key_group: Optional[int] = None
    """The record's key group, for records that arrived over a `key-by` edge; else `None`."""


class Columns(NamedTuple):
    """The six columns of a batch, as `wit/operator.wit` lays them out."""

    keys: bytes
    key_ends: List[int]
    values: bytes
    value_ends: List[int]
    timestamps: List[int]
    key_groups: List[int] = []


def records(batch: Any) -> List[Record]:
    """Reads `batch` (anything with the six column attributes: the generated `Batch`, or
    `Columns`) as records, or raises `BatchError` saying how its columns are malformed."""
    timestamps = batch.timestamps
    count = len(timestamps)
    keys = _slices("key", batch.keys, batch.key_ends, count)
    values = _slices("value", batch.values, batch.value_ends, count)
    groups = batch.key_groups
    if not groups:
        groups = repeat(None, count)
    elif len(groups) != count:
        raise BatchError(f"malformed batch: {len(groups)} key groups for {count} timestamps")
    return list(map(Record, keys, values, timestamps, groups))


def _slices(name: str, column: bytes, ends: List[int], count: int) -> List[bytes]:
    """The records' bytes in `column`, after checking that there is one end per record and that
    the ends are non-decreasing and within the column."""
    if len(ends) != count:
        raise BatchError(f"malformed batch: {len(ends)} {name} ends for {count} timestamps")
    if not count:
        return []
    if ends != sorted(ends):
        start = 0
        for i, end in enumerate(ends):
            if end < start:
                raise BatchError(
                    f"malformed batch: {name} end {i} is {end}, before the previous end {start}"
                )
            start = end
    if ends[0] < 0 or ends[-1] > len(column):
        raise BatchError(
            f"malformed batch: {name} ends reach {ends[-1]}, past the {len(column)} bytes "
            f"of {name}s"
        )
    starts = [0]
    starts += ends[:-1]
    return list(map(column.__getitem__, map(slice, starts, ends)))


Bytes = Union[bytes, bytearray, memoryview, str]


class BatchBuilder:
    """Builds a batch record by record: `out.push(key, value, timestamp)`.

    Keys and values are bytes (or `str`, encoded as UTF-8)."""

    __slots__ = ("_keys", "_key_ends", "_key_len", "_values", "_value_ends", "_value_len", "_ts")

    def __init__(self) -> None:
        self._keys: List[Any] = []
        self._key_ends: List[int] = []
        self._key_len = 0
        self._values: List[Any] = []
        self._value_ends: List[int] = []
        self._value_len = 0
        self._ts: List[int] = []

    def push(self, key: Bytes, value: Bytes, timestamp: int) -> None:
        """Appends a record."""
        if type(key) is str:
            key = key.encode()
        if type(value) is str:
            value = value.encode()
        if type(timestamp) is not int:
            timestamp = index(timestamp)
        self._keys.append(key)
        self._key_len += len(key)
        self._key_ends.append(self._key_len)
        self._values.append(value)
        self._value_len += len(value)
        self._value_ends.append(self._value_len)
        self._ts.append(timestamp)

    def __len__(self) -> int:
        return len(self._ts)

    def finish(self) -> Columns:
        """The batch built, as columns; raises `BatchError` if it does not fit a batch."""
        for name, length in (("key", self._key_len), ("value", self._value_len)):
            if length >= _U32_END:
                raise BatchError(
                    f"batch too large: {length} bytes of {name}s, more than a batch's offsets "
                    f"(u32) reach"
                )
        ts = self._ts
        if ts and (min(ts) < _S64_MIN or max(ts) > _S64_MAX):
            bad = next(t for t in ts if not _S64_MIN <= t <= _S64_MAX)
            raise BatchError(f"timestamp {bad} does not fit a signed 64-bit integer")
        return Columns(
            b"".join(self._keys),
            self._key_ends,
            b"".join(self._values),
            self._value_ends,
            ts,
            [],
        )
