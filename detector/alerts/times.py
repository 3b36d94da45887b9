"""Time formats shared by the sinks: durations here; RFC 3339 lives in `detector.timestamps`."""

from __future__ import annotations

from detector.timestamps import rfc3339

__all__ = ["parse_duration_ms", "rfc3339"]


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
