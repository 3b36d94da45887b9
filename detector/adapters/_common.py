"""What every adapter shares: JSON parsing with the native limits, and the final checks."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import orjson

from detector.events import MAX_ATTRIBUTES, MAX_ID_CHARS, MAX_VALUE_BYTES, Assignment, Rejected


class Reject(Exception):
    """Raised inside an adapter; becomes a `Rejected` with this reason and kind."""

    def __init__(self, reason: str, kind: str = "invalid_field") -> None:
        super().__init__(reason)
        self.reason, self.kind = reason, kind


def load_object(value: bytes | None, what: str) -> dict[str, Any]:
    if value is None:
        raise Reject("empty value (tombstone)", "empty")
    if len(value) > MAX_VALUE_BYTES:
        raise Reject(f"value of {len(value)} bytes exceeds {MAX_VALUE_BYTES}", "too_large")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise Reject(f"invalid {what}: not JSON: {exc}", "invalid_json") from None
    if not isinstance(doc, dict):
        raise Reject(f"invalid {what}: expected a JSON object, got {type(doc).__name__}", "invalid_json")
    return doc


def text(value: Any, field: str, *, required: bool = False) -> str | None:
    """A string field; numbers are accepted as their decimal text (ids often are numbers)."""
    if value is None or value == "":
        if required:
            raise Reject(f"missing {field}")
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Reject(f"{field} must be a string, got {type(value).__name__}")
    s = str(value)
    if len(s) > MAX_ID_CHARS:
        raise Reject(f"{field} longer than {MAX_ID_CHARS} characters")
    if "\x00" in s:
        raise Reject(f"NUL byte in {field}")
    return s


def timestamp_ms(value: Any, field: str, default_ms: int) -> int:
    """RFC 3339 / ISO 8601 text, epoch ms (number), or None (-> default)."""
    if value is None:
        return default_ms
    if isinstance(value, bool):
        raise Reject(f"invalid {field}: {value!r}", "invalid_ts")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise Reject(f"invalid {field}: not finite", "invalid_ts")
        return int(value)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise Reject(f"invalid {field}: {value[:40]!r} is not an RFC 3339 time", "invalid_ts") from None
        if dt.tzinfo is None:
            raise Reject(f"invalid {field}: {value[:40]!r} has no time zone", "invalid_ts")
        return int(dt.timestamp() * 1000)
    raise Reject(f"invalid {field}: {type(value).__name__}", "invalid_ts")


def scalar_attributes(pairs, out: dict[str, str] | None = None) -> dict[str, str]:
    """Flat string attributes from (key, value) pairs: scalars only, first MAX_ATTRIBUTES keys."""
    out = {} if out is None else out
    for k, v in pairs:
        if len(out) >= MAX_ATTRIBUTES:
            break
        if v is None or isinstance(v, (dict, list)) or not isinstance(k, str) or not k or k in out:
            continue
        if isinstance(v, bool):
            v = "true" if v else "false"
        s = str(v)
        if len(s) <= MAX_ID_CHARS and len(k) <= MAX_ID_CHARS:
            out[k] = s
    return out


def rejected(exc: Reject, value: bytes | None) -> Rejected:
    return Rejected(exc.reason, value, exc.kind)


def assignment(experiment: str, user_id: str, variant: str | None, enrolled: bool, ts: int,
               attributes: dict[str, str] | None) -> Assignment:
    return Assignment(experiment, user_id, variant if enrolled else None, enrolled, ts, attributes or None)
