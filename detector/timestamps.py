"""RFC 3339 timestamps <-> epoch milliseconds: the one module for both directions.

Two output forms, both contracts: `format_timestamp` is the canonical registration form
(milliseconds only when non-zero: `2021-02-09T18:00:00Z`); `rfc3339` is the alert and API form
(always milliseconds: `2021-02-09T18:00:00.000Z`). One parser, `parse_rfc3339`: strict by default
(registrations: exactly RFC 3339 with a time zone, errors that say so); `strict=False` is the
event path (the C `datetime.fromisoformat`, several times faster, still requiring a zone).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

RFC3339_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
_RFC3339_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
EXAMPLE = "2021-02-09T18:00:00Z"


_MS = timedelta(milliseconds=1)


def datetime_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime, exact (float timestamp() * 1000 is 1 ms short for
    ~0.7% of times)."""
    return (moment - EPOCH) // _MS


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_rfc3339(value: str | datetime, *, strict: bool = True) -> int:
    """RFC 3339 string with a time zone (or an aware datetime) -> epoch milliseconds.

    Raises ValueError with a message fit for a user. `strict=False` accepts what
    `datetime.fromisoformat` accepts, as long as it carries a zone (assignment events)."""
    if not strict and value.__class__ is str:  # the event path first: it runs per event
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))  # type: ignore[union-attr]
        if dt.tzinfo is None:  # RFC 3339 requires an offset; a naive time would be read in local time
            raise ValueError(f"ts {value[:40]!r} has no time zone offset")
        return datetime_ms(dt)
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"has no time zone; write it as RFC 3339, e.g. {EXAMPLE}")
        return datetime_ms(value)
    match = _RFC3339_RE.fullmatch(value)
    if match is None:
        raise ValueError(f"{_short(value)!r} is not an RFC 3339 timestamp with a time zone, e.g. {EXAMPLE}")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    frac = match.group(7)
    if match.group(8) in ("Z", "z"):
        offset = timedelta(0)
    else:
        oh, om = int(match.group(10)), int(match.group(11))
        if oh > 23 or om > 59:
            raise ValueError(f"{value!r} has an invalid UTC offset")
        offset = timedelta(hours=oh, minutes=om) * (1 if match.group(9) == "+" else -1)
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid date and time ({exc})") from None
    millis = int((frac[1:] + "000")[:3]) if frac else 0
    return (moment - EPOCH) // timedelta(seconds=1) * 1000 + millis


def format_timestamp(epoch_ms: int, *, always_millis: bool = False) -> str:
    """Epoch milliseconds -> RFC 3339 in UTC (`Z`); milliseconds only when non-zero unless
    `always_millis`."""
    moment = EPOCH + timedelta(milliseconds=epoch_ms)
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    millis = epoch_ms % 1000
    if millis or always_millis:
        text += f".{millis:03d}"
    return text + "Z"


def rfc3339(ms: int | None) -> str | None:
    """Epoch milliseconds as RFC 3339 UTC with millisecond precision (None stays None)."""
    return None if ms is None else format_timestamp(int(ms), always_millis=True)
