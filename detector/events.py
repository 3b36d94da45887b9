"""Assignment events: the wire contract and its decoders.

The decoder turns raw Kafka values into `Assignment` structs. Bad input never
raises out of here: it becomes a `Rejected` with a reason, so the shell can
dead-letter it and count it while the good events of the same batch go on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from collections.abc import Callable
from collections import deque
from itertools import compress, repeat
from operator import attrgetter, is_
from typing import Annotated

import msgspec
import numpy as np
from msgspec import UNSET, UnsetType
from msgspec.structs import force_setattr

from detector.timestamps import parse_rfc3339

MAX_VALUE_BYTES = 64 * 1024  # an assignment is ~150 bytes; anything this large is hostile
MAX_ID_CHARS = 256
MAX_ATTRIBUTES = 32
# Event time must be plausible: within [1970, 9999] (and so always encodable in state), at most
# MAX_FUTURE_SKEW_MS after its Kafka record time (Kafka's own broker default for record timestamps,
# log.message.timestamp.after.max.ms) and at most MAX_EVENT_AGE_MS before it. Beyond that the clock
# (or the unit: seconds sent as ms) is wrong, and judging a window on it would give false findings:
# such events are dead-lettered (kind invalid_ts), not guessed at. Late events within the age limit
# are applied at their own event time (see the "Failure modes" section of README.md).
MAX_TS_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
MAX_FUTURE_SKEW_MS = 3600 * 1000
MAX_EVENT_AGE_MS = 7 * 86400 * 1000
_FIELD_KEYS = tuple(f'"{name}"'.encode() for name in ("experiment", "user_id", "variant", "enrolled", "ts", "attributes"))


class Assignment(msgspec.Struct, frozen=True, gc=False):
    """One decoded assignment. `ts` is epoch milliseconds (event time).

    gc=False: an assignment holds only strings, a bool, an int and a dict of strings, so it can
    never be part of a reference cycle; untracked, the millions decoded per minute do not
    trigger the cyclic collector (msgspec decoding: ~2.1 -> ~1.0 us an event).
    """

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
        return parse_rfc3339(ts, strict=False)
    if isinstance(ts, float) and not math.isfinite(ts):
        raise ValueError("ts is not finite")
    return int(ts)


def _has_duplicate_keys(value: bytes, attributes) -> bool:
    """True when an object in `value` repeats a key (JSON parsers disagree on which one wins).

    Cheap first: a field name (or attribute name) whose quoted form occurs only once cannot be
    repeated; only when one occurs twice is the value re-parsed to decide exactly.
    """
    count = value.count
    for k in _FIELD_KEYS:
        if count(k) > 1:
            break
    else:
        if not attributes:
            return False
        for k in attributes:
            if count(b'"' + k.encode() + b'"') > 1:
                break
        else:
            return False
    import json

    dup = False

    def pairs(items):
        nonlocal dup
        keys = [k for k, _ in items]
        dup = dup or len(set(keys)) != len(keys)
        return dict(items)

    try:
        json.loads(value, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return True
    return dup


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
    except RecursionError:  # msgspec recurses into (ignored) unknown fields: deep nesting must not escape
        return Rejected("invalid event: JSON nested too deeply", value, "invalid_json")
    if _has_duplicate_keys(value, w.attributes):
        return Rejected("duplicate key in a JSON object", value, "invalid_json")
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
    if not 0 <= ts <= MAX_TS_MS:
        return Rejected(f"ts {ts} is outside 1970..9999", value, "invalid_ts")
    if record_ts_ms > 0 and not record_ts_ms - MAX_EVENT_AGE_MS <= ts <= record_ts_ms + MAX_FUTURE_SKEW_MS:
        return Rejected(
            f"ts {ts} is more than {MAX_FUTURE_SKEW_MS // 60000 if ts > record_ts_ms else MAX_EVENT_AGE_MS // 60000} min "
            f"{'after' if ts > record_ts_ms else 'before'} "
            f"its record time {record_ts_ms}", value, "invalid_ts",
        )
    attrs = None
    if w.attributes:
        if len(w.attributes) > MAX_ATTRIBUTES:
            return Rejected(f"more than {MAX_ATTRIBUTES} attributes", value)
        attrs = {k: str(v) for k, v in w.attributes.items() if v is not None}
    return Assignment(w.experiment, w.user_id, w.variant, w.enrolled, ts, attrs)


# ---- batch decoding (the ingest hot path) ------------------------------------------------------
# `decode` costs ~7-10 us an event on a 2-vCPU box (msgspec into a loose wire struct, a
# duplicate-key scan and Python validation per record). `decode_batch` decodes a whole fetch
# with msgspec straight into Assignment structs whose limits are msgspec constraints, and proves
# with a few C-level counts over the batch that every record would have passed `decode`
# unchanged; any record that does not fit the fast path sends its chunk through `decode`, so the
# result (events and Rejected reasons) is always exactly what `decode` gives per record.
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_CHARS)]


class _FastAssignment(Assignment, frozen=True, gc=False):
    """Assignment as decoded by the batch path; UNSET marks an absent field (fixed up before use)."""

    experiment: _Id
    user_id: _Id
    variant: Annotated[str, msgspec.Meta(max_length=MAX_ID_CHARS)] | None | UnsetType = UNSET
    enrolled: bool | UnsetType = UNSET
    ts: int | UnsetType = UNSET
    attributes: Annotated[dict[str, str], msgspec.Meta(max_length=MAX_ATTRIBUTES)] | None | UnsetType = UNSET


_fast_decode = msgspec.json.Decoder(_FastAssignment).decode
_get_variant = attrgetter("variant")
_get_enrolled = attrgetter("enrolled")
_get_ts = attrgetter("ts")
_get_attributes = attrgetter("attributes")
FAST_CHUNK = 512  # after a failed batch, the fast path is retried on chunks of this size


def _fast_batch(values: list, record_ts: list[int]) -> list[Assignment] | None:
    """All of `values` decoded, or None when any record needs the per-record decoder."""
    n = len(values)
    if None in values or max(map(len, values)) > MAX_VALUE_BYTES:
        return None
    try:
        evs = list(map(_fast_decode, values))
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
        return None
    variants = list(map(_get_variant, evs))
    enrolled = list(map(_get_enrolled, evs))
    tss = list(map(_get_ts, evs))
    attrs = list(map(_get_attributes, evs))
    missing = variants.count(UNSET) + enrolled.count(UNSET) + tss.count(UNSET) + attrs.count(UNSET)
    # `{}` (which `decode` turns into None) takes the exact path for this chunk.
    if attrs.count({}):
        return None
    buf = b"\n".join(values)
    # Duplicate keys (rejected by `decode`) and anything msgspec skipped (unknown fields): with no
    # backslash in the batch there are no escaped quotes, so '"' occurs exactly twice per JSON
    # string. The decoded records account for their keys (6 each, less the absent optional ones) +
    # experiment + user_id + each string variant + 2 per attribute; any extra key or string makes
    # the count differ. No backslash also means no \u0000, so no NUL in any id.
    string_variants = n - variants.count(None) - variants.count(UNSET)
    strings = 8 * n - missing + string_variants + 2 * sum(map(len, filter(None, attrs)))
    if buf.count(b"\\") or buf.count(b'"') != 2 * strings:
        return None
    if missing:
        # Absent optional fields take `decode`'s defaults (ts: the record time).
        _fill_defaults(evs, (variants, enrolled, tss, attrs), record_ts)
        tss = None
    try:
        t = np.fromiter(tss if tss is not None else map(_get_ts, evs), np.int64, n)
        r = np.fromiter(record_ts, np.int64, n)
    except (OverflowError, ValueError, TypeError):
        return None
    if t.min() < 0 or t.max() > MAX_TS_MS:
        return None
    has_r = r > 0
    d = (t - r)[has_r]
    if d.size and (d.min() < -MAX_EVENT_AGE_MS or d.max() > MAX_FUTURE_SKEW_MS):
        return None
    return evs


FAST_SUB = 1024  # records per _fast_batch call on a large batch


def _fast_batch_cached(values: list, record_ts: list[int]) -> list[Assignment] | None:
    """`_fast_batch` over a whole fetch, FAST_SUB records at a time (same result, or None).

    `_fast_batch` makes ~10 C-level passes over its records (the values, then the decoded
    structs); on a fetch of 10,000-20,000 records (~3 MB of objects) each pass misses the CPU
    cache, and they cost more than the msgspec decode itself. A slice of 1,024 stays in cache
    from the decode to the last check: 2.1 -> 1.2-1.5 CPU-us an event (bench/hotpath.py's events).
    Every slice passing its checks is what the whole batch passing them proves, slice by slice.
    """
    n = len(values)
    if n <= FAST_SUB:
        return _fast_batch(values, record_ts)
    out: list[Assignment] = []
    for lo in range(0, n, FAST_SUB):
        part = _fast_batch(values[lo:lo + FAST_SUB], record_ts[lo:lo + FAST_SUB])
        if part is None:
            return None
        out += part
    return out


def _fill_defaults(evs: list, columns: tuple[list, list, list, list], record_ts: list[int]) -> None:
    """Give absent optional fields `decode`'s defaults (ts: the record time), in place.

    The structs were decoded a moment ago and nobody else holds them, so filling them with
    force_setattr keeps them frozen for everyone after; the loops are C-level (map/compress).
    """
    for name, column, default in zip(("variant", "enrolled", "ts", "attributes"), columns, (None, True, None, None)):
        if UNSET not in column:
            continue
        absent = list(map(is_, column, repeat(UNSET)))
        values = compress(record_ts, absent) if name == "ts" else repeat(default)
        deque(map(force_setattr, compress(evs, absent), repeat(name), values), maxlen=0)


def decode_batch(
    values: list, record_ts: list[int], decode_one: Callable | None = None
) -> tuple[list[Assignment], list[int] | None, list[tuple[int, Rejected]]]:
    """Decode a batch of Kafka values (with their record times, epoch ms). Never raises.

    Returns (events, positions, rejects): the good events in input order, the input position of
    each event (None when every record decoded, the common case) and (position, Rejected) pairs.
    `decode_one` is the per-record decoder (an adapter from detector.adapters for another
    format); only the native format (`decode`, the default) has the batch fast path.
    """
    if decode_one is None or decode_one is decode:
        if not values:
            return [], None, []
        evs = _fast_batch_cached(values, record_ts)
        if evs is not None:
            return evs, None, []
        decode_one = decode
        chunk = FAST_CHUNK if len(values) > FAST_CHUNK else 0
    else:
        chunk = 0
    events: list[Assignment] = []
    positions: list[int] = []
    rejects: list[tuple[int, Rejected]] = []
    step = chunk or len(values)
    for lo in range(0, len(values), step):
        vals, rts = values[lo:lo + step], record_ts[lo:lo + step]
        fast = _fast_batch(vals, rts) if chunk else None
        if fast is not None:
            events.extend(fast)
            positions.extend(range(lo, lo + len(vals)))
            continue
        for i, (v, rt) in enumerate(zip(vals, rts), lo):
            ev = decode_one(v, rt)
            if isinstance(ev, Rejected):
                rejects.append((i, ev))
            else:
                events.append(ev)
                positions.append(i)
    return events, positions, rejects
