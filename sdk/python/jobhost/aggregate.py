"""Aggregates computed incrementally per window (`Windows.aggregate`): each keeps an
accumulator, which a record updates as it arrives, and which is the window's result. The
accumulator is state (`docs/state-format.md`, *Windows*), written as MessagePack, so its shape
is part of the operator's state format, the same in the three SDKs:

| aggregate | accumulator |
|---|---|
| `count()` | the number of records, an integer |
| `sum(by=None)` | the sum, an integer; `None`: unknown |
| `min(by=None)`, `max(by=None)` | an integer |
| `fold(init, add, merge=None)` | yours |
| several, `Windows.aggregate(a, b)` | a list of theirs |

A sum is unknown when part of it is: a window opened by an older version that did not sum (as
`guest-examples/python/window_count_v2.py` migrates `window_count_v1`'s windows), and stays so.
`sum`, `min` and `max` read a record's value as a decimal integer (`b"-12"`), or `by(record)`.

Use it as `from jobhost import aggregate` then `aggregate.sum()`: its `sum`, `min` and `max`
are not Python's."""

import builtins
import re
from typing import Any, Callable, List, Optional

from .batch import Record
from .errors import JobhostError

_INTEGER = re.compile(rb"\s*[+-]?[0-9]+\s*")
_S64_MIN, _S64_MAX = -(1 << 63), (1 << 63) - 1


class Aggregate:
    """An aggregate of the records of a window, computed as they arrive."""

    def create(self) -> Any:
        """The accumulator of a window that holds no record yet."""
        raise NotImplementedError

    def add(self, acc: Any, record: Record) -> Any:
        """`acc` with `record` added."""
        raise NotImplementedError

    def merge(self, acc: Any, other: Any) -> Any:
        """`acc` with `other`, another window's accumulator, added: session windows merge."""
        raise NotImplementedError

    def merges(self) -> bool:
        """Whether it can `merge` (a `fold` without a merge cannot)."""
        return True


def value_as_integer(record: Record) -> int:
    """A record's value read as a decimal integer: what `sum`, `min` and `max` add."""
    if _INTEGER.fullmatch(record.value) is None:
        raise JobhostError(
            f"the value {record.value!r} of the record of key {record.key!r} is not an integer"
        )
    return _checked(int(record.value), "value")


def _checked(n: int, what: str) -> int:
    if not _S64_MIN <= n <= _S64_MAX:
        raise JobhostError(f"the {what} of a window overflows a signed 64-bit integer")
    return n


class _Count(Aggregate):
    def create(self) -> int:
        return 0

    def add(self, acc: int, record: Record) -> int:
        return acc + 1

    def merge(self, acc: int, other: int) -> int:
        return acc + other


def count() -> Aggregate:
    """The number of records."""
    return _Count()


class _Sum(Aggregate):
    def __init__(self, by: Callable[[Record], int]) -> None:
        self.by = by

    def create(self) -> Optional[int]:
        return 0

    def add(self, acc: Optional[int], record: Record) -> Optional[int]:
        value = self.by(record)
        return None if acc is None else _checked(acc + value, "sum")

    def merge(self, acc: Optional[int], other: Optional[int]) -> Optional[int]:
        return None if acc is None or other is None else _checked(acc + other, "sum")


def sum(by: Optional[Callable[[Record], int]] = None) -> Aggregate:  # noqa: A001
    """The sum of the records' values read as integers, or of `by(record)`."""
    return _Sum(by or value_as_integer)


class _Extreme(Aggregate):
    def __init__(self, by: Callable[[Record], int], pick: Callable[[int, int], int]) -> None:
        self.by, self.pick = by, pick

    def create(self) -> Optional[int]:
        return None  # never written: a window's first record replaces it

    def add(self, acc: Optional[int], record: Record) -> int:
        value = self.by(record)
        return value if acc is None else self.pick(acc, value)

    def merge(self, acc: Optional[int], other: Optional[int]) -> Optional[int]:
        if acc is None or other is None:
            return other if acc is None else acc
        return self.pick(acc, other)


def min(by: Optional[Callable[[Record], int]] = None) -> Aggregate:  # noqa: A001
    """The least of the records' values read as integers, or of `by(record)`."""
    return _Extreme(by or value_as_integer, builtins.min)


def max(by: Optional[Callable[[Record], int]] = None) -> Aggregate:  # noqa: A001
    """The greatest of the records' values read as integers, or of `by(record)`."""
    return _Extreme(by or value_as_integer, builtins.max)


class _Fold(Aggregate):
    def __init__(self, init: Any, add: Callable, merge: Optional[Callable]) -> None:
        self.init, self._add, self._merge = init, add, merge

    def create(self) -> Any:
        return self.init

    def add(self, acc: Any, record: Record) -> Any:
        return self._add(acc, record)

    def merge(self, acc: Any, other: Any) -> Any:
        if self._merge is None:
            raise JobhostError(
                "a fold without a merge cannot merge session windows: give it `merge=`"
            )
        return self._merge(acc, other)

    def merges(self) -> bool:
        return self._merge is not None


def fold(
    init: Any,
    add: Callable[[Any, Record], Any],
    merge: Optional[Callable[[Any, Any], Any]] = None,
) -> Aggregate:
    """Your own: the accumulator starts at `init` (never changed in place: return a new one) and
    becomes `add(acc, record)` with each record; `merge(acc, other)` makes one of two, for
    session windows."""
    return _Fold(init, add, merge)


class _All(Aggregate):
    """Several aggregates at once, their accumulators a list."""

    def __init__(self, parts: List[Aggregate]) -> None:
        self.parts = parts

    def create(self) -> List[Any]:
        return [part.create() for part in self.parts]

    def add(self, acc: List[Any], record: Record) -> List[Any]:
        return [part.add(a, record) for part, a in zip(self.parts, acc)]

    def merge(self, acc: List[Any], other: List[Any]) -> List[Any]:
        return [part.merge(a, b) for part, a, b in zip(self.parts, acc, other)]

    def merges(self) -> bool:
        return all(part.merges() for part in self.parts)


def all_of(parts: List[Aggregate]) -> Aggregate:
    """`parts` at once, their accumulators a list (what `Windows.aggregate(a, b)` makes)."""
    if len(parts) == 1:
        return parts[0]
    return _All(list(parts))
