"""Sources: where exposure events come from, and one decoder module per format.

    DETECTOR_SOURCES="exposure.assignments=native,ph.events=posthog:identity=person_id,ld.export=launchdarkly:context_kind=user"

Each entry is `topic=format[:option=value[:option=value...]]`. Topic names take
`DETECTOR_TOPIC_PREFIX` like every other topic; unset (or empty) means
`exposure.assignments=native`, the behaviour before sources existed. Formats and their
options (every module's docstring has its field mapping and the documentation it follows):

| format        | module          | options                                                      |
|---------------|-----------------|--------------------------------------------------------------|
| native        | `native`        | none                                                         |
| segment       | `segment`       | identity=user_or_anonymous (default) / user_id / anonymous_id |
| posthog       | `posthog`       | identity=distinct_id (default) / person_id                   |
| launchdarkly  | `launchdarkly`  | context_kind=user (default) / any context kind; a            |
|               |                 | registration's identity.context_kind wins for its experiment |
| statsig       | `statsig`       | identity=user_id (default) / stable_id / custom:<name>       |
| unleash       | `unleash`       | identity=user_id (default) / session_id                      |
| amplitude     | `amplitude`     | identity=user_id (default) / device_id                       |
| optimizely    | `optimizely`    | none                                                         |
| openfeature   | `openfeature`   | none (alias: otel, opentelemetry)                            |

Every decoder has `decode_batch(values, record_ts) -> (events, positions, rejects)` (the
shape of `detector.events.decode_batch`) and `decode_one(value, record_ts)`. A `Rejected`
whose kind is in `SKIPPED_KINDS` (`not_exposure`, `no_identity`) is counted, never
dead-lettered.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from detector.events import Assignment, Rejected

from ._common import NO_IDENTITY, NOT_EXPOSURE, SKIPPED_KINDS, Batch

DEFAULT_TOPIC = "exposure.assignments"
MODULES = {
    "native": "native",
    "segment": "segment",
    "posthog": "posthog",
    "launchdarkly": "launchdarkly",
    "statsig": "statsig",
    "unleash": "unleash",
    "amplitude": "amplitude",
    "optimizely": "optimizely",
    "openfeature": "openfeature",
    "otel": "openfeature",
    "opentelemetry": "openfeature",
}
FORMATS = tuple(MODULES)


class Decoder(Protocol):
    format: str

    def decode_batch(self, values: list, record_ts: list[int]) -> Batch: ...

    def decode_one(self, value: bytes | None, record_ts_ms: int = 0) -> Assignment | Rejected: ...


@dataclass(frozen=True)
class Source:
    """One configured source: a topic (prefix applied), its format and the format's options."""

    topic: str
    format: str
    options: Mapping[str, str] = field(default_factory=dict)

    def decoder(self, context_kind_of: ContextKindOf | None = None) -> Decoder:
        return decoder_for(self.format, self.options, context_kind_of)


ContextKindOf = Callable[[str], "str | None"]  # experiment -> identity.context_kind of its registration


def decoder_for(format: str, options: Mapping[str, str] | None = None,
                context_kind_of: ContextKindOf | None = None) -> Decoder:
    """The decoder of a format with its options; ValueError naming the known formats or options.

    `context_kind_of(experiment)` gives the context kind an experiment's registration names
    (`identity.context_kind`, None when it names none); formats with context kinds
    (launchdarkly) key each evaluation by it, the others ignore it.
    """
    name = MODULES.get(format.strip().lower()) if isinstance(format, str) else None
    if name is None:
        raise ValueError(f"unknown source format {format!r}: use one of {', '.join(FORMATS)}")
    module = importlib.import_module(f"{__name__}.{name}")
    if context_kind_of is not None and getattr(module, "KIND_PER_REGISTRATION", False):
        return module.decoder(options or {}, context_kind_of)
    return module.decoder(options or {})


def parse_sources(spec: str | None, prefix: str = "") -> list[Source]:
    """`DETECTOR_SOURCES` -> sources, topics prefixed. Raises ValueError listing every problem."""
    if not spec or not spec.strip():
        return [Source(prefix + DEFAULT_TOPIC, "native")]
    out: list[Source] = []
    errors = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        topic, sep, rest = (x.strip() for x in part.partition("="))
        fmt, *opts = (x.strip() for x in rest.split(":")) if sep else ("",)
        # `custom:<name>` (statsig) holds a colon: an option without '=' continues the previous one
        options: dict[str, str] = {}
        last = None
        for o in opts:
            k, eq, v = o.partition("=")
            if eq:
                last = k.strip()
                options[last] = v.strip()
            elif last is not None and o:
                options[last] += ":" + o
            else:
                errors.append(f"{part!r}: option {o!r} is not name=value")
        if not sep or not topic or not fmt:
            errors.append(f"{part!r}: expected topic=format[:option=value...]")
            continue
        if any(s.topic == prefix + topic for s in out):
            errors.append(f"{topic}: listed twice")
            continue
        fmt = fmt.lower()
        try:
            decoder_for(fmt, options)  # validates the format and its options
        except ValueError as exc:
            errors.append(f"{topic}: {exc}")
            continue
        out.append(Source(prefix + topic, MODULES[fmt], options))
    if errors:
        raise ValueError("DETECTOR_SOURCES: " + "; ".join(errors))
    return out or [Source(prefix + DEFAULT_TOPIC, "native")]


__all__ = ["DEFAULT_TOPIC", "FORMATS", "ContextKindOf", "NOT_EXPOSURE", "NO_IDENTITY", "SKIPPED_KINDS", "Decoder", "Source",
           "decoder_for", "parse_sources"]
