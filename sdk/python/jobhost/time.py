"""Time for an operator: the subtask's event-time watermark and its timers per key, kept by the
host (`timers` in `wit/operator.wit`: checkpointed with the key's group, moved with it on
rescale, surviving upgrades), behind one small seam, `Timers`:

- in a component built for world `timed-operator` (a `TimedOperator` or `WindowOperator`),
  `self.timers` is the host's timer service;
- natively (an operator's unit tests), a test sets it to a `ManualTimers`: a timer service kept
  in memory, whose watermark and clock the test moves by hand, handing back the timers that
  fired as the batch `on_timer` receives.

Times are milliseconds: event time as the records' timestamps, processing time since the Unix
epoch."""

import bisect
from enum import Enum
from typing import Any, Callable, List, Tuple

from .batch import Columns
from .errors import JobhostError

NO_WATERMARK = -(1 << 63)
"""The watermark before the first one: no record is late yet."""


class TimeDomain(Enum):
    """Which clock a timer follows."""

    EVENT_TIME = "event-time"
    """Fires when the subtask's watermark reaches the timer's timestamp."""
    PROCESSING_TIME = "processing-time"
    """Fires when the wall clock (milliseconds since the Unix epoch) reaches it."""


class Timers:
    """Timers per key and the event-time watermark: what the host keeps for a timed operator.
    This one has none (an operator not built for world `timed-operator`): registering raises."""

    def register(self, key: bytes, timestamp: int, domain: TimeDomain) -> None:
        """Asks for `on_timer` to be called for `key` once `domain`'s time reaches `timestamp`.
        Registering the same key, time and domain again is one timer. Raises for a key outside
        the key groups this subtask owns."""
        raise JobhostError(
            "this operator has no timers: derive it from TimedOperator (or, in a test, set its "
            "`timers` to a ManualTimers)"
        )

    def delete(self, key: bytes, timestamp: int, domain: TimeDomain) -> None:
        """Removes that timer, if it is pending."""

    def watermark(self) -> int:
        """The subtask's event-time watermark: no record with an earlier timestamp is expected
        any more. `NO_WATERMARK` before the first."""
        return NO_WATERMARK


class HostTimers(Timers):
    """The host's timer service, through the `timers` import of world `timed-operator`
    (`imports`: the generated module; `types`: the generated types, for `TimeDomain`)."""

    def __init__(self, imports: Any, types: Any) -> None:
        self._imports = imports
        self._domains = {domain: getattr(types.TimeDomain, domain.name) for domain in TimeDomain}

    def register(self, key: bytes, timestamp: int, domain: TimeDomain) -> None:
        self._imports.register(bytes(key), timestamp, self._domains[domain])

    def delete(self, key: bytes, timestamp: int, domain: TimeDomain) -> None:
        self._imports.delete(bytes(key), timestamp, self._domains[domain])

    def watermark(self) -> int:
        return self._imports.current_watermark()


class ManualTimers(Timers):
    """A timer service kept in memory, for tests, whose watermark and clock a test moves by
    hand: each move returns the timers it made fire, as the batch `on_timer` receives (keys and
    timestamps in timestamp order, values empty, key groups set). As the host's: registering a
    timer twice is one timer, the watermark never goes back, and an event-time timer at or
    below the watermark fires with the next move. `key_group(key)` gives a fired timer's key
    group (the host's is `xxh3-64(key) % max_parallelism`; a test may use any that fits)."""

    def __init__(self, key_group: Callable[[bytes], int]) -> None:
        self._key_group = key_group
        self._watermark = NO_WATERMARK
        self._clock = 0
        self._pending: dict = {TimeDomain.EVENT_TIME: [], TimeDomain.PROCESSING_TIME: []}

    def register(self, key: bytes, timestamp: int, domain: TimeDomain) -> None:
        pending = self._pending[domain]
        timer = (timestamp, bytes(key))
        at = bisect.bisect_left(pending, timer)
        if at == len(pending) or pending[at] != timer:
            pending.insert(at, timer)

    def delete(self, key: bytes, timestamp: int, domain: TimeDomain) -> None:
        pending = self._pending[domain]
        timer = (timestamp, bytes(key))
        at = bisect.bisect_left(pending, timer)
        if at < len(pending) and pending[at] == timer:
            del pending[at]

    def watermark(self) -> int:
        return self._watermark

    def advance_watermark(self, watermark: int) -> Columns:
        """Moves the watermark to `watermark` (never back); returns the event-time timers due."""
        self._watermark = max(self._watermark, watermark)
        return self._fire(TimeDomain.EVENT_TIME, self._watermark)

    def advance_clock(self, now: int) -> Columns:
        """Moves the wall clock to `now` (never back); returns the processing-time timers due."""
        self._clock = max(self._clock, now)
        return self._fire(TimeDomain.PROCESSING_TIME, self._clock)

    def pending(self, domain: TimeDomain) -> List[Tuple[bytes, int]]:
        """The pending timers of `domain`, `(key, timestamp)` in timestamp order."""
        return [(key, timestamp) for timestamp, key in self._pending[domain]]

    def _fire(self, domain: TimeDomain, now: int) -> Columns:
        pending = self._pending[domain]
        split = bisect.bisect_right([timestamp for timestamp, _ in pending], now)
        due, self._pending[domain] = pending[:split], pending[split:]
        keys = [key for _, key in due]
        ends: List[int] = []
        for key in keys:
            ends.append((ends[-1] if ends else 0) + len(key))
        return Columns(
            b"".join(keys),
            ends,
            b"",
            [0] * len(due),
            [timestamp for timestamp, _ in due],
            [self._key_group(key) for key in keys],
        )
