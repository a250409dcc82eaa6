"""Keyed windows over event time: tumbling, sliding and session windows, each with an
incremental aggregate (`jobhost.aggregate`), allowed lateness, and late records counted (and,
if asked, sent on as a side output). The semantics are Flink's, and those of the Rust and
JavaScript SDKs:

- A window is `[start, end)`. A record of timestamp `t` is in the tumbling window of `size`
  starting at a multiple of `size`; in the sliding windows of `size` starting at multiples of
  `slide` that hold `t`; in the session `[t, t + gap)`, merged with every session of its key it
  touches (sessions closer than or exactly `gap` apart are one).
- A window's result is emitted once, when the watermark reaches its last millisecond, `end - 1`
  (an event-time timer there). A record that arrives after that but within the allowed lateness
  updates the window, which is emitted again at once if its result changed.
- A window is late once the watermark reaches `end - 1 + allowed lateness`: its state is
  dropped then (a second timer), and a record whose every window is late is dropped and counted
  (`WindowOperator.late_records`); with `late_output()`, it goes on downstream with its key
  prefixed by `LATE_KEY_PREFIX`.

Window state is keyed state (it checkpoints, rescales and migrates as any): per key, its open
windows `[[start, end, acc, fired], ...]` by start, in the operator's state format
(`docs/state-format.md`, *Windows*), the bytes the Rust and JavaScript SDKs write.
"""

import bisect
from typing import Any, List, NamedTuple, Optional, Tuple

from . import aggregate as aggregates
from .batch import BatchBuilder, Record
from .errors import StateError
from .keyed import KeyedState
from .roles import TimedOperator
from .time import TimeDomain, Timers

LATE_KEY_PREFIX = b"\xfflate:"
"""What a late record's key starts with in the side output (`Windows.late_output()`): byte
0xff, which no UTF-8 text holds, then `late:`; the rest is the record's key, and its value and
timestamp are the record's."""

_TUMBLING, _SLIDING, _SESSION = "tumbling", "sliding", "session"


class Window(NamedTuple):
    """A window of event time, `[start, end)`, in milliseconds."""

    start: int
    end: int

    @property
    def max_timestamp(self) -> int:
        """Its last millisecond, `end - 1`: the timestamp of its result, and when it fires."""
        return self.end - 1


def _positive(what: str, ms: Any) -> int:
    if type(ms) is not int or ms <= 0:
        raise ValueError(f"the {what} of a window is {ms!r} ms: it must be a positive integer")
    return ms


class Windows:
    """Windows over event time, keyed, with an aggregate:
    `Windows.tumbling(10_000).allowed_lateness(5_000).aggregate(aggregate.count())`. Each
    method returns new windows; none changes these."""

    def __init__(self, kind: str, size: int, slide: int) -> None:
        self.kind, self.size, self.slide = kind, size, slide
        self.lateness = 0
        self.late_output_on = False
        self.aggregator: Optional[aggregates.Aggregate] = None

    @classmethod
    def tumbling(cls, size: int) -> "Windows":
        """Tumbling windows of `size` ms: `[k * size, (k + 1) * size)`."""
        return cls(_TUMBLING, _positive("size", size), 0)

    @classmethod
    def sliding(cls, size: int, slide: int) -> "Windows":
        """Sliding windows of `size` ms, one starting every `slide` ms."""
        return cls(_SLIDING, _positive("size", size), _positive("slide", slide))

    @classmethod
    def session(cls, gap: int) -> "Windows":
        """Session windows: a key's records less than or exactly `gap` ms apart are one
        session, which ends `gap` ms after its last record."""
        return cls(_SESSION, _positive("session gap", gap), 0)

    def _but(self, **changes: Any) -> "Windows":
        copy = Windows(self.kind, self.size, self.slide)
        copy.__dict__.update(self.__dict__)
        copy.__dict__.update(changes)
        return copy

    def allowed_lateness(self, lateness: int) -> "Windows":
        """Keeps windows `lateness` ms after the watermark passed their end (0 by default): a
        record of theirs that arrives meanwhile updates them (and emits them again if
        changed)."""
        if type(lateness) is not int or lateness < 0:
            raise ValueError(f"the allowed lateness is {lateness!r} ms: it must be 0 or more")
        return self._but(lateness=lateness)

    def late_output(self) -> "Windows":
        """Sends records too late for any window on downstream, their key prefixed by
        `LATE_KEY_PREFIX`, rather than dropping them (they are counted either way)."""
        return self._but(late_output_on=True)

    def aggregate(self, *parts: aggregates.Aggregate) -> "Windows":
        """What each window computes: one aggregate, or several (their accumulators a list)."""
        if not parts or not all(isinstance(p, aggregates.Aggregate) for p in parts):
            raise TypeError(f"aggregate() takes aggregates (jobhost.aggregate), not {parts!r}")
        combined = aggregates.all_of(list(parts))
        if self.kind == _SESSION and not combined.merges():
            raise ValueError(
                "session windows merge their aggregates, and this one cannot merge: give the "
                "fold a merge"
            )
        return self._but(aggregator=combined)

    def assign(self, t: int) -> List[Window]:
        """The windows of a record at `t`, by start; for a session, its own, before merging."""
        if self.kind == _TUMBLING:
            return [Window(t - t % self.size, t - t % self.size + self.size)]
        if self.kind == _SESSION:
            return [Window(t, t + self.size)]
        last = t - t % self.slide
        starts = range(last, t - self.size, -self.slide)
        return [Window(start, start + self.size) for start in reversed(starts)]

    def cleanup_time(self, window: Window) -> int:
        """When a window's state goes: the watermark reached its end - 1 + allowed lateness."""
        return window.max_timestamp + self.lateness


class WindowOperator(TimedOperator):
    """A window operator: set `windows` (a `Windows` with its aggregate) and implement `emit`;
    the SDK does the rest (world `timed-operator`). A newer version reads older windows through
    `migrate_acc(version, acc)`, window by window."""

    windows: Windows
    late_records: int = 0
    """The records dropped as too late for any window (or sent to the side output) since the
    subtask started."""

    def emit(self, key: bytes, window: Window, acc: Any, out: BatchBuilder) -> None:
        """Pushes the result `acc` of `key`'s `window` onto `out` (typically one record of key
        `key` at `window.max_timestamp`)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement `emit`")

    def migrate_acc(self, version: int, acc: Any) -> Any:
        """A window's accumulator written as state version `version` (older than
        `state_version`), as one of this version. By default no older version is read."""
        return super().migrate(version, acc)

    def migrate(self, version: int, value: Any) -> Any:
        if not isinstance(value, list) or not all(
            isinstance(slot, list) and len(slot) == 4 for slot in value
        ):
            raise StateError(f"a key's windows are [[start, end, acc, fired], ...], not {value!r}")
        return [[s, e, self.migrate_acc(version, acc), fired] for s, e, acc, fired in value]

    def process(self, records: List[Record], keyed: KeyedState, out: BatchBuilder) -> None:
        _Machine(self, keyed, out).process(records)

    def on_timer(
        self, domain: TimeDomain, fired: List[Record], keyed: KeyedState, out: BatchBuilder
    ) -> None:
        if domain is TimeDomain.EVENT_TIME:
            _Machine(self, keyed, out).on_timer(fired)


Slot = List[Any]
"""One open window of a key: `[start, end, acc, fired]`."""


class _Machine:
    """What windows do with one call's records or fired timers."""

    def __init__(self, operator: WindowOperator, keyed: KeyedState, out: BatchBuilder) -> None:
        spec = getattr(operator, "windows", None)
        if not isinstance(spec, Windows) or spec.aggregator is None:
            raise TypeError(
                f"{type(operator).__name__}.windows must be Windows with an aggregate, "
                f"not {spec!r}"
            )
        self.operator, self.spec, self.agg = operator, spec, spec.aggregator
        self.keyed, self.out = keyed, out
        self.timers: Timers = operator.timers

    def process(self, records: List[Record]) -> None:
        watermark = self.timers.watermark()
        for record in records:
            windows = [w for w in self.spec.assign(record.timestamp) if not self._late(w, watermark)]
            if not windows:
                self._late_record(record)
            elif self.spec.kind == _SESSION:
                self._add_to_session(record, windows[0], watermark)
            else:
                slots = self.keyed.get(record) or []
                for window in windows:
                    self._add_to_window(record, window, watermark, slots)
                self.keyed.put(record, slots)

    def on_timer(self, fired: List[Record]) -> None:
        for timer in fired:
            at = timer.timestamp
            slots = self.keyed.get(timer)
            due = lambda s: not s[3] and s[1] - 1 <= at  # noqa: E731
            gone = lambda s: self.spec.cleanup_time(Window(s[0], s[1])) <= at  # noqa: E731
            if not slots or not any(due(s) or gone(s) for s in slots):
                continue
            for slot in slots:
                if due(slot):
                    self.operator.emit(timer.key, Window(slot[0], slot[1]), slot[2], self.out)
                    slot[3] = True
            slots = [slot for slot in slots if not gone(slot)]
            if slots:
                self.keyed.put(timer, slots)
            else:
                self.keyed.delete(timer)

    def _late(self, window: Window, watermark: int) -> bool:
        return self.spec.cleanup_time(window) <= watermark

    def _late_record(self, record: Record) -> None:
        self.operator.late_records += 1
        if self.spec.late_output_on:
            self.out.push(LATE_KEY_PREFIX + record.key, record.value, record.timestamp)

    def _add_to_window(self, record: Record, window: Window, watermark: int, slots: List[Slot]) -> None:
        at = bisect.bisect_left([(s[0], s[1]) for s in slots], tuple(window))
        if at < len(slots) and (slots[at][0], slots[at][1]) == tuple(window):
            self._update(record, slots[at])
        else:
            acc = self.agg.add(self.agg.create(), record)
            slots.insert(at, self._open(record.key, window, acc, watermark))

    def _update(self, record: Record, slot: Slot) -> None:
        """Adds the record to an open window: emitted again if it fired and its result changed."""
        before = slot[2]
        slot[2] = self.agg.add(before, record)
        if slot[3] and slot[2] != before:
            self.operator.emit(record.key, Window(slot[0], slot[1]), slot[2], self.out)

    def _open(self, key: bytes, window: Window, acc: Any, watermark: int) -> Slot:
        """A window opened with `acc`: its timers registered, or, if the watermark already
        reached its end (a record within the allowed lateness), its result emitted at once."""
        fired = window.max_timestamp <= watermark
        if fired:
            self.operator.emit(key, window, acc, self.out)
        else:
            self.timers.register(key, window.max_timestamp, TimeDomain.EVENT_TIME)
        if self.spec.lateness > 0:
            self.timers.register(key, self.spec.cleanup_time(window), TimeDomain.EVENT_TIME)
        return [window.start, window.end, acc, fired]

    def _add_to_session(self, record: Record, own: Window, watermark: int) -> None:
        slots = self.keyed.get(record) or []
        (first, last), merged = _touching(slots, own)
        if self._late(merged, watermark):
            self._late_record(record)
            return
        if last - first == 1 and (slots[first][0], slots[first][1]) == tuple(merged):
            self._update(record, slots[first])
        else:
            acc = self.agg.create()
            for slot in slots[first:last]:
                acc = self.agg.merge(acc, slot[2])
            gone = [Window(s[0], s[1]) for s in slots[first:last] if (s[0], s[1]) != tuple(merged)]
            acc = self.agg.add(acc, record)
            slots[first:last] = [self._open(record.key, merged, acc, watermark)]
            for window in gone:
                self._forget_timers(record.key, window, slots)
        self.keyed.put(record, slots)

    def _forget_timers(self, key: bytes, gone: Window, slots: List[Slot]) -> None:
        """Deletes the timers of a session merged away, but those another window still needs."""
        needed = set()
        for slot in slots:
            window = Window(slot[0], slot[1])
            needed.update((window.max_timestamp, self.spec.cleanup_time(window)))
        for at in {gone.max_timestamp, self.spec.cleanup_time(gone)} - needed:
            self.timers.delete(key, at, TimeDomain.EVENT_TIME)


def _touching(slots: List[Slot], own: Window) -> Tuple[Tuple[int, int], Window]:
    """The range of `slots` (sessions, which do not touch each other) that `own` touches, and
    the session they make together."""
    first = 0
    while first < len(slots) and slots[first][1] < own.start:
        first += 1
    last = first
    start, end = own
    while last < len(slots) and slots[last][0] <= own.end:
        start, end = min(start, slots[last][0]), max(end, slots[last][1])
        last += 1
    return (first, last), Window(start, end)
