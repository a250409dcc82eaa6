"""The portable state envelope of `docs/state-format.md`: every non-empty blob is the
MessagePack array `[format, version, payload]` (a key group's delta is `[format, version,
upserts, removed]`), written and read with the `msgpack` library.

Integers take the smallest encoding that holds them, strings are `str` and bytes are `bin`
(msgpack's defaults with `use_bin_type=True`); reading gives `str` for `str`, `bytes` for `bin`
and lists for arrays."""

from typing import Any, List, Optional, Tuple

import msgpack

from .errors import StateError


def encode_envelope(state_format: str, version: int, payload: Any) -> bytes:
    """Wraps `payload` as version `version` of state format `state_format`."""
    _check_format_and_version(state_format, version)
    try:
        return msgpack.packb([state_format, version, payload], use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:
        raise StateError(
            f"cannot encode state version {version} of `{state_format}`: {e}"
        ) from None


def encode_delta(state_format: str, version: int, upserts: Any, removed: List[bytes]) -> bytes:
    """A key group's delta: `upserts` (a group's payload shape) and the keys `removed`."""
    _check_format_and_version(state_format, version)
    try:
        return msgpack.packb([state_format, version, upserts, removed], use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:
        raise StateError(
            f"cannot encode state version {version} of `{state_format}`: {e}"
        ) from None


def decode_envelope(blob: bytes) -> Tuple[str, int, Any]:
    """Splits a state blob into its format, version and payload, or raises `StateError`."""
    envelope = _unpack(blob, (3,))
    return envelope[0], envelope[1], envelope[2]


def decode_envelope_of(blob: bytes, state_format: str) -> Tuple[int, Any]:
    """Decodes a blob that must be of format `state_format`; returns its version and payload."""
    version, payload, _ = decode_group_of(blob, state_format, delta=False)
    return version, payload


def decode_group_of(
    blob: bytes, state_format: str, delta: bool
) -> Tuple[int, Any, Optional[List[bytes]]]:
    """Decodes a key group's blob of format `state_format`: whole (`[format, version,
    payload]`), or, when `delta`, a change (`[format, version, upserts, removed]`). Returns
    its version, its payload (or upserts) and, for a delta, the keys it removes."""
    envelope = _unpack(blob, (4,) if delta else (3,))
    if envelope[0] != state_format:
        raise StateError(
            f"state of format `{envelope[0]}` cannot be read: this module reads `{state_format}`"
        )
    if not delta:
        return envelope[1], envelope[2], None
    removed = envelope[3]
    if not isinstance(removed, list) or not all(type(k) is bytes for k in removed):
        raise StateError(f"the removed keys of a delta are not a list of bin: {_describe(removed)}")
    return envelope[1], envelope[2], removed


def _unpack(blob: bytes, lengths: Tuple[int, ...]) -> List[Any]:
    """The envelope array of `blob`, of one of `lengths`, or raises `StateError`."""
    if not blob:
        raise StateError("the state blob is empty: it has no format or version")
    try:
        envelope = msgpack.unpackb(blob, raw=False, use_list=True, strict_map_key=False)
    except msgpack.ExtraData as e:
        raise StateError(
            f"the state blob has {len(e.extra)} unexpected trailing bytes"
        ) from None
    except Exception as e:  # msgpack raises ValueError and its own errors for bad input
        raise StateError(f"the state blob is not valid MessagePack: {e}") from None
    if not (
        isinstance(envelope, list)
        and len(envelope) in lengths
        and isinstance(envelope[0], str)
        and type(envelope[1]) is int
        and envelope[1] >= 0
    ):
        shape = "[format, version, upserts, removed]" if 4 in lengths else "[format, version, payload]"
        raise StateError(f"the state blob is not a {shape} envelope, but {_describe(envelope)}")
    return envelope


def unsupported_version(state_format: str, found: int, current: int) -> StateError:
    """The error for a blob of version `found` that a module of version `current` cannot read."""
    if found > current:
        return StateError(
            f"unsupported state version {found} of `{state_format}`: this module reads state "
            f"version {current} and older"
        )
    return StateError(
        f"unsupported state version {found} of `{state_format}`: this module reads state "
        f"version {current} (it migrates no older version)"
    )


def _check_format_and_version(state_format: str, version: int) -> None:
    if not isinstance(state_format, str) or not state_format:
        raise StateError(f"a state format is a non-empty string, not {state_format!r}")
    if type(version) is not int or version < 0:
        raise StateError(f"a state version is a non-negative integer, not {version!r}")


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
