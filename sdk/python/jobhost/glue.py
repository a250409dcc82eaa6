"""Connects an author's class to the bindings componentize-py generates.

componentize-py imports the app module while it builds the component (the result is
snapshotted), looks up the app module's `WitWorld` class and calls the world's exports on it:
hence the one registration line `WitWorld = export(MyOperator)`. It makes one `WitWorld`
instance per export, so the state of the subtask lives here, in a `_Runtime` shared by them.

A `TimedOperator` is built for world `timed-operator`, which also exports the interface
`catch-up`: componentize-py looks for its implementation as the class `CatchUp` of the app
module, which `export` defines there too (in the module that calls it), so that registration
stays one line.

A world export returning `result<_, string>` fails by raising the generated `Err`; any other
exception would trap the component. Every export therefore turns an exception into
`Err("{type}: {message}")`, and writes the traceback of an unexpected one to stderr.
"""

import importlib
import sys
import traceback
from types import ModuleType
from typing import Any, Callable, Optional, Type

from .batch import BatchBuilder, records
from .errors import JobhostError, StateError
from .keyed import KeyedState
from .roles import Context, Module, Operator, Origin, Sink, Source, TimedOperator
from .state import decode_envelope_of, encode_envelope, unsupported_version
from .time import HostTimers, TimeDomain, Timers

# Each role's own export, which the world's generated `WitWorld` declares (a timed operator's
# world declares `process` too: its own comes first).
_ROLES = (
    (TimedOperator, "timed-operator", "on_timer"),
    (Operator, "operator", "process"),
    (Source, "source", "poll_batch"),
    (Sink, "sink", "write_batch"),
)


def export(cls: Type[Module], world: Optional[ModuleType] = None) -> type:
    """Makes `cls` (a subclass of `Operator`, `TimedOperator`, `Source` or `Sink`) implement
    the component's world; assign the result to `WitWorld` in the app module. `world` is the
    generated world module (`wit_world`, the default)."""
    role = _role(cls)
    _check_description(cls)
    if world is None:
        world = importlib.import_module("wit_world")
    types = importlib.import_module(world.__name__ + ".imports.types")
    err = importlib.import_module("componentize_py_types").Err
    # The world's protocol class is named after its module: `wit_world.WitWorld`.
    protocol = getattr(world, "".join(map(str.capitalize, world.__name__.split("_"))))
    built_for = next((name for _, name, method in _ROLES if hasattr(protocol, method)), None)
    if built_for != role[1]:
        raise TypeError(
            f"{cls.__name__} is a {role[0].__name__}, but this component is built for world "
            f"{f'`{built_for}`' if built_for else 'of no role'}: build it for world `{role[1]}`"
        )
    runtime = _Runtime(cls, types, err)
    if role[0] is TimedOperator:
        timers = importlib.import_module(world.__name__ + ".imports.timers")
        runtime.timers = HostTimers(timers, types)
    methods = {
        "describe": lambda self: runtime.describe(),
        "init": lambda self, ctx: runtime.call(runtime.init, ctx),
        "snapshot": lambda self, checkpoint_id, full: runtime.call(
            runtime.snapshot, checkpoint_id, full
        ),
        "restore": lambda self, state, origin: runtime.call(runtime.restore, state, origin),
    }
    if role[0] is Operator or role[0] is TimedOperator:
        methods["process"] = lambda self, input: runtime.call(runtime.process, input)
    if role[0] is TimedOperator:
        methods["on_timer"] = lambda self, domain, fired: runtime.call(
            runtime.on_timer, domain, fired
        )
        _define_catch_up(world, runtime, sys._getframe(1).f_globals)
    if role[0] is Source:
        methods["poll_batch"] = lambda self, max_records: runtime.call(
            runtime.poll_batch, max_records
        )
    if role[0] is Sink:
        methods["write_batch"] = lambda self, input: runtime.call(runtime.write_batch, input)
        for name in ("prepare_commit", "commit", "recover"):
            methods[name] = _sink_call(runtime, name)
    glue = type(protocol.__name__, (protocol,), methods)
    glue.__module__ = cls.__module__
    glue.runtime = runtime
    return glue


def _define_catch_up(world: ModuleType, runtime: "_Runtime", app: dict) -> None:
    """Defines `CatchUp`, the implementation of the exported interface `catch-up`, in the app
    module `app` (its globals), unless it defines its own."""
    protocol = importlib.import_module(world.__name__ + ".exports").CatchUp
    restore_changes = lambda self, changes, origin: runtime.call(  # noqa: E731
        runtime.restore_changes, changes, origin
    )
    app.setdefault("CatchUp", type("CatchUp", (protocol,), {"restore_changes": restore_changes}))


def _sink_call(runtime: "_Runtime", name: str) -> Callable[[Any, int], None]:
    def call(self: Any, checkpoint_id: int) -> None:
        return runtime.call(lambda: getattr(runtime.module(), name)(checkpoint_id))

    return call


def _role(cls: Any) -> tuple:
    for role in _ROLES:
        if isinstance(cls, type) and issubclass(cls, role[0]):
            return role
    raise TypeError(f"export({cls!r}): not a subclass of jobhost.Operator, Source or Sink")


def _check_description(cls: Type[Module]) -> None:
    """Refuses, when the component is built, a class that `describe` could not report."""
    for attribute in ("name", "version"):
        value = getattr(cls, attribute)
        if not isinstance(value, str) or not value:
            raise TypeError(f"{cls.__name__}.{attribute} must be a non-empty string, not {value!r}")
    if cls.rescale not in ("refuse", "union"):
        raise TypeError(f"{cls.__name__}.rescale must be \"refuse\" or \"union\", not {cls.rescale!r}")
    if cls.state_format is not None and (not isinstance(cls.state_format, str) or not cls.state_format):
        raise TypeError(
            f"{cls.__name__}.state_format must be None or a non-empty string, not {cls.state_format!r}"
        )
    if type(cls.state_version) is not int or cls.state_version < 0:
        raise TypeError(
            f"{cls.__name__}.state_version must be a non-negative integer, not {cls.state_version!r}"
        )


def describe_error(error: BaseException) -> str:
    """`"{type}: {message}"`, or the type's name alone for an exception without a message."""
    message = str(error)
    name = type(error).__name__
    return f"{name}: {message}" if message else name


class _Runtime:
    """One subtask: the author's instance and its keyed state."""

    def __init__(self, cls: Type[Module], types: ModuleType, err: type) -> None:
        self.cls = cls
        self.types = types
        self.err = err
        self._module: Optional[Module] = None
        self.keyed: Optional[KeyedState] = None
        self.ended = False
        self.timers: Timers = Timers()
        """The timers a `TimedOperator` gets as `self.timers`: the host's in a component; a
        test may set a `ManualTimers` before `init`."""

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Calls `function`, turning any exception into the WIT error."""
        try:
            return function(*args)
        except self.err:
            raise
        except BaseException as e:
            if not isinstance(e, JobhostError):
                traceback.print_exc(file=sys.stderr)
            raise self.err(describe_error(e)) from None

    def module(self) -> Module:
        if self._module is None:
            raise JobhostError(f"{self.cls.name} is not initialized: `init` has not succeeded")
        return self._module

    def describe(self) -> Any:
        rescale = self.types.Rescale.UNION if self.cls.rescale == "union" else self.types.Rescale.REFUSE
        return self.types.ModuleInfo(name=self.cls.name, version=self.cls.version, rescale=rescale)

    def init(self, ctx: Any) -> None:
        context = Context(
            operator_id=ctx.operator_id,
            subtask=ctx.subtask,
            parallelism=ctx.parallelism,
            max_parallelism=ctx.max_parallelism,
            key_group_start=ctx.key_group_start,
            key_group_end=ctx.key_group_end,
            config=dict(ctx.config),
        )
        self._module = None
        module = self.cls()
        if isinstance(module, TimedOperator):
            module.timers = self.timers
        keyed = KeyedState(
            ctx.key_group_start, ctx.key_group_end, self.cls.state_format, self.cls.state_version
        )
        module.init(context)
        self._module, self.keyed, self.ended = module, keyed, False

    def snapshot(self, checkpoint_id: int, full: bool) -> Any:
        module = self.module()
        payload = module.snapshot_operator_state()
        if payload is None:
            operator_state = b""
        elif self.cls.state_format is None:
            raise StateError(
                f"{self.cls.__name__} returned operator state but has no `state_format`"
            )
        else:
            operator_state = encode_envelope(self.cls.state_format, self.cls.state_version, payload)
        assert self.keyed is not None
        groups = [
            self.types.KeyGroupState(key_group=number, delta=delta, state=blob)
            for number, delta, blob in self.keyed.snapshot(full)
        ]
        return self.types.Snapshot(operator_state=operator_state, key_groups=groups)

    def restore(self, state: Any, origin: Any) -> None:
        self._load(state, origin, changes=False)

    def restore_changes(self, changes: Any, origin: Any) -> None:
        """`catch-up`'s `restore-changes`: the operator state replaces the one loaded, the key
        groups' changes apply on top of theirs."""
        self._load(changes, origin, changes=True)

    def _load(self, state: Any, origin: Any, changes: bool) -> None:
        module = self.module()
        origin = Origin(
            origin.module_name, origin.module_version, origin.module_sha256, state.parallelism
        )
        state_format, version = self.cls.state_format, self.cls.state_version
        payloads: list = []
        for blob in state.operator_states:
            if not blob:
                payloads.append(None)
                continue
            if state_format is None:
                raise StateError(
                    f"`{self.cls.name}` is stateless, but was given {len(blob)} bytes of "
                    f"operator state written by {origin}"
                )
            found, payload = decode_envelope_of(blob, state_format)
            if found > version:
                raise unsupported_version(state_format, found, version)
            if found != version:
                payload = module.migrate_operator_state(found, payload)
            payloads.append(payload)
        assert self.keyed is not None
        groups = [(group.key_group, group.delta, group.state) for group in state.key_groups]
        load = self.keyed.restore_changes if changes else self.keyed.restore
        load(groups, module.migrate, str(origin))
        module.restore_operator_state(payloads, origin)

    def _batch(self, out: BatchBuilder) -> Any:
        return self.types.Batch(*out.finish())

    def process(self, input: Any) -> Any:
        module = self.module()
        out = BatchBuilder()
        module.process(records(input), self.keyed, out)  # type: ignore[attr-defined]
        return self._batch(out)

    def on_timer(self, domain: Any, fired: Any) -> Any:
        module = self.module()
        out = BatchBuilder()
        timers = records(fired)
        if timers and timers[0].key_group is None:
            raise JobhostError("timers fired without their key groups")
        module.on_timer(TimeDomain[domain.name], timers, self.keyed, out)  # type: ignore[attr-defined]
        return self._batch(out)

    def poll_batch(self, max_records: int) -> Any:
        module = self.module()
        if self.ended:
            return self.types.PollResult_End()
        out = BatchBuilder()
        more = module.poll(max_records, out)  # type: ignore[attr-defined]
        if more is not True and more is not False:
            raise TypeError(
                f"{self.cls.__name__}.poll returned {more!r}: it returns True while more records "
                "may follow, False at the end"
            )
        if len(out) > max_records:
            raise ValueError(
                f"{self.cls.__name__}.poll pushed {len(out)} records, more than the "
                f"{max_records} asked for"
            )
        if not more:
            self.ended = True
            if not len(out):
                return self.types.PollResult_End()
        return self.types.PollResult_Records(self._batch(out))

    def write_batch(self, input: Any) -> None:
        self.module().write(records(input))  # type: ignore[attr-defined]
