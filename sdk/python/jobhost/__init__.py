"""The Python SDK for job host guests: WebAssembly components, built with componentize-py,
that implement the `jobhost:operator@0.3.2` worlds (`source`, `operator`, `timed-operator`,
`sink`).

An author subclasses `Operator`, `TimedOperator` (timers), `WindowOperator` (windows), `Source`
or `Sink` and registers the class with one line;
the SDK reads and builds batches, keeps keyed state by key group, writes and reads the portable
state envelope (`docs/state-format.md`) and turns exceptions into the WIT errors:

    from jobhost import Operator, export

    class Upper(Operator):
        name = "upper"
        version = "1.0.0"

        def process(self, records, keyed, out):
            for r in records:
                out.push(r.key, r.value.upper(), r.timestamp)

    WitWorld = export(Upper)
"""

from . import aggregate
from .batch import BatchBuilder, Columns, Record, records
from .errors import BatchError, ConfigError, JobhostError, KeyedStateError, StateError
from .glue import describe_error, export
from .keyed import KeyedState
from .roles import Context, Module, Operator, Origin, Sink, Source, TimedOperator
from .state import decode_envelope, decode_envelope_of, encode_envelope, unsupported_version
from .time import NO_WATERMARK, ManualTimers, TimeDomain, Timers
from .window import LATE_KEY_PREFIX, Window, WindowOperator, Windows

__all__ = [
    "LATE_KEY_PREFIX",
    "NO_WATERMARK",
    "BatchBuilder",
    "BatchError",
    "Columns",
    "ConfigError",
    "Context",
    "JobhostError",
    "KeyedState",
    "KeyedStateError",
    "ManualTimers",
    "Module",
    "Operator",
    "Origin",
    "Record",
    "Sink",
    "Source",
    "StateError",
    "TimeDomain",
    "TimedOperator",
    "Timers",
    "Window",
    "WindowOperator",
    "Windows",
    "aggregate",
    "decode_envelope",
    "decode_envelope_of",
    "describe_error",
    "encode_envelope",
    "export",
    "records",
    "unsupported_version",
]
