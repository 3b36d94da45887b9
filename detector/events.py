"""Assignment events: the wire contract and its decoders.

The decoder turns raw Kafka values into `Assignment` structs. Bad input never
raises out of here: it becomes a `Rejected` with a reason, so the shell can
dead-letter it and count it while the good events of the same batch go on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

import msgspec

MAX_VALUE_BYTES = 64 * 1024  # an assignment is ~150 bytes; anything this large is hostile
MAX_ID_CHARS = 256
MAX_ATTRIBUTES = 32


class Assignment(msgspec.Struct, frozen=True):
    """One decoded assignment. `ts` is epoch milliseconds (event time)."""

    experiment: str
    user_id: str
    variant: str | None = None
    enrolled: bool = True
    ts: int = 0
    attributes: dict[str, str] | None = None


class _Wire(msgspec.Struct):
    # The JSON shape as producers send it (contract in DESIGN.md). ts may be RFC 3339 or epoch ms.
    experiment: str
    user_id: str
    variant: str | None = None
    enrolled: bool = True
    ts: str | int | float | None = None
    attributes: dict[str, str | int | float | bool | None] | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """An input that could not be decoded, kept with its original bytes."""

    reason: str
    value: bytes | None
    kind: str = "invalid_field"  # low-cardinality class for metrics: invalid_json, too_large, invalid_ts, ...


_decoder = msgspec.json.Decoder(_Wire)


def parse_ts(ts: str | int | float | None, default_ms: int) -> int:
    """Event time in epoch ms from an RFC 3339 string or epoch ms; `default_ms` when absent."""
    if ts is None:
        return default_ms
    if isinstance(ts, str):
        return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)
    if isinstance(ts, float) and not math.isfinite(ts):
        raise ValueError("ts is not finite")
    return int(ts)


def decode(value: bytes | None, record_ts_ms: int = 0) -> Assignment | Rejected:
    """Decode one Kafka value. Never raises."""
    if value is None:
        return Rejected("empty value (tombstone)", value, "empty")
    if len(value) > MAX_VALUE_BYTES:
        return Rejected(f"value of {len(value)} bytes exceeds {MAX_VALUE_BYTES}", value, "too_large")
    try:
        w = _decoder.decode(value)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        return Rejected(f"invalid event: {exc}", value, "invalid_json" if isinstance(exc, msgspec.DecodeError) else "invalid_field")
    return _validate(w, value, record_ts_ms)


def _validate(w: _Wire, value: bytes | None, record_ts_ms: int) -> Assignment | Rejected:
    if not w.experiment or len(w.experiment) > MAX_ID_CHARS:
        return Rejected("experiment must be a non-empty string of at most 256 characters", value)
    if not w.user_id or len(w.user_id) > MAX_ID_CHARS:
        return Rejected("user_id must be a non-empty string of at most 256 characters", value)
    if "\x00" in w.experiment or "\x00" in w.user_id:
        return Rejected("NUL byte in experiment or user_id", value)
    if w.variant is not None and len(w.variant) > MAX_ID_CHARS:
        return Rejected("variant longer than 256 characters", value)
    try:
        ts = parse_ts(w.ts, record_ts_ms)
    except (ValueError, OverflowError) as exc:
        return Rejected(f"invalid ts: {exc}", value, "invalid_ts")
    attrs = None
    if w.attributes:
        if len(w.attributes) > MAX_ATTRIBUTES:
            return Rejected(f"more than {MAX_ATTRIBUTES} attributes", value)
        attrs = {k: str(v) for k, v in w.attributes.items() if v is not None}
    return Assignment(w.experiment, w.user_id, w.variant, w.enrolled, ts, attrs)


def decode_many(values: Iterable[tuple[bytes | None, int]]) -> tuple[list[Assignment], list[Rejected]]:
    """Decode (value, record_ts_ms) pairs; returns good events in input order and the rejects."""
    good: list[Assignment] = []
    bad: list[Rejected] = []
    for value, rts in values:
        r = decode(value, rts)
        (bad if isinstance(r, Rejected) else good).append(r)
    return good, bad
