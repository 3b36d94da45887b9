"""Ingest adapters: other producers' exposure events, decoded into our `Assignment`.

    decode = decoder_for("segment")          # native | segment | openfeature (alias: otel)
    ev = decode(record.value, record.timestamp)   # Assignment | Rejected, never raises

Every decoder has the signature of `detector.events.decode`, so the ingest path picks one
per topic and treats its output the same way. `Rejected.kind` adds `not_exposure` for
messages that are valid but are not exposures (a Segment `Order Completed` on a shared
topic): count them, do not dead-letter them.

Which topic carries which format is configuration (proposal for `detector.settings`):

    DETECTOR_SOURCES="exposure.assignments=native,segment.tracks=segment,otel.flags=openfeature"

Topic names get `DETECTOR_TOPIC_PREFIX` like every other topic; unset means
`exposure.assignments=native` (today's behaviour). `parse_sources` validates the value.
"""

from __future__ import annotations

from collections.abc import Callable

from detector.events import Assignment, Rejected, decode

from .openfeature import decode_openfeature
from .segment import decode_segment

Decoder = Callable[[bytes | None, int], Assignment | Rejected]

DECODERS: dict[str, Decoder] = {
    "native": decode,
    "segment": decode_segment,
    "openfeature": decode_openfeature,
    "otel": decode_openfeature,
    "opentelemetry": decode_openfeature,
}
FORMATS = tuple(DECODERS)
NOT_EXPOSURE = "not_exposure"


def decoder_for(format: str) -> Decoder:
    """The decoder of a source format; ValueError naming the known formats otherwise."""
    try:
        return DECODERS[format.strip().lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown source format {format!r}: use one of {', '.join(FORMATS)}") from None


def parse_sources(spec: str | None, default_topic: str = "exposure.assignments") -> dict[str, str]:
    """`"topic=format,topic=format"` -> {topic: format}; empty -> {default_topic: "native"}.

    Raises ValueError with every problem (unknown format, missing '=', a topic listed twice).
    """
    if not spec or not spec.strip():
        return {default_topic: "native"}
    out: dict[str, str] = {}
    errors = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        topic, sep, fmt = (x.strip() for x in part.partition("="))
        if not sep or not topic or not fmt:
            errors.append(f"{part!r}: expected topic=format")
            continue
        if fmt.lower() not in DECODERS:
            errors.append(f"{topic}: unknown format {fmt!r} (use {', '.join(FORMATS)})")
            continue
        if topic in out:
            errors.append(f"{topic}: listed twice")
            continue
        out[topic] = fmt.lower()
    if errors:
        raise ValueError("DETECTOR_SOURCES: " + "; ".join(errors))
    if not out:
        return {default_topic: "native"}
    return out


__all__ = ["DECODERS", "FORMATS", "NOT_EXPOSURE", "Decoder", "decode_openfeature", "decode_segment", "decoder_for",
           "parse_sources"]
