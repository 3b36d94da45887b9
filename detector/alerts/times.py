"""Time formats shared by the sinks: epoch milliseconds in, RFC 3339 out."""

from __future__ import annotations

from datetime import datetime, timezone


def rfc3339(ms: int | None) -> str | None:
    """Epoch milliseconds as RFC 3339 UTC with millisecond precision, e.g. 2021-02-09T18:00:00.123Z."""
    if ms is None:
        return None
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ms) % 1000:03d}Z"


def parse_duration_ms(value: object) -> int:
    """Parse "500ms", "30s", "5m", "4h", "1d", or a bare number of seconds into milliseconds."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        return int(round(value * 1000))
    text = str(value).strip().lower()
    units = (("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000))
    for suffix, factor in units:
        if text.endswith(suffix):
            number = text[: -len(suffix)].strip()
            try:
                return int(round(float(number) * factor))
            except ValueError:
                break
    try:
        return int(round(float(text) * 1000))
    except ValueError:
        raise ValueError(f"not a duration: {value!r}") from None
