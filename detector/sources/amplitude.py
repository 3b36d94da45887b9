"""Amplitude Experiment `$exposure` events -> `Assignment`.

Follows https://amplitude.com/docs/feature-experiment/under-the-hood/event-tracking and
https://amplitude.com/docs/experiment/track-exposure: `event_type` `$exposure` with
`event_properties.flag_key`, `variant` (and `experiment_key`), `user_id` / `device_id`,
`time` in epoch ms (HTTP API v2). The ingested form (`[Experiment] Exposure`, properties
`[Experiment] Flag Key` / `[Experiment] Variant`) as exported by Amplitude is read too.

| Assignment  | Amplitude                                                                    |
|-------------|------------------------------------------------------------------------------|
| experiment  | event_properties.flag_key ([Experiment] Flag Key)                            |
| user_id     | `identity=user_id` (default): user_id; `device_id`: device_id                |
| variant     | event_properties.variant ([Experiment] Variant)                              |
| enrolled    | false when the variant is absent, empty or `off` (Amplitude's exposure of an |
|             | unset variant: the user fell through to the fallback); true otherwise        |
| ts          | time (epoch ms), else the record time                                        |
| attributes  | country, platform (lower case)                                               |

Other event types are `not_exposure`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from ._common import (
    NO_IDENTITY,
    Reject,
    StructDecoder,
    assignment,
    country_platform,
    ensure_options,
    epoch_ms,
    ident,
    require_kind,
)

FORMAT = "amplitude"
EVENT_TYPES = frozenset({"$exposure", "[Experiment] Exposure"})
OPTIONS: dict[str, tuple[str, ...] | None] = {"identity": ("user_id", "device_id")}


class _Properties(msgspec.Struct, gc=False):
    flag_key: str | None = None
    variant: str | None = None
    ingested_flag_key: str | None = msgspec.field(default=None, name="[Experiment] Flag Key")
    ingested_variant: str | None = msgspec.field(default=None, name="[Experiment] Variant")


class _Event(msgspec.Struct, gc=False):
    event_type: str | None = None
    user_id: str | int | None = None
    device_id: str | None = None
    time: int | None = None
    event_properties: _Properties | None = None
    country: str | None = None
    platform: str | None = None


class _Envelope(msgspec.Struct, gc=False):
    event_type: Any = None


def _convert(identity: str):
    by_device = identity == "device_id"

    def convert(w: _Event, record_ts: int):
        require_kind(w.event_type, EVENT_TYPES, "Amplitude", "event_type")
        p = w.event_properties
        flag = None if p is None else (p.flag_key or p.ingested_flag_key)
        if p is None or not flag:
            raise Reject(f"{w.event_type} without event_properties.flag_key")
        user = w.device_id if by_device else ident(w.user_id)
        if not user:
            raise Reject(f"exposure of {flag!r} without {identity}", NO_IDENTITY)
        variant = p.variant or p.ingested_variant
        enrolled = bool(variant) and variant != "off"
        return assignment(flag, user, variant, enrolled, epoch_ms(w.time, "time", record_ts),
                          country_platform(w.country, w.platform))

    return convert


def decoder(options: Mapping[str, str] | None = None) -> StructDecoder:
    opts = ensure_options(FORMAT, options or {}, OPTIONS)
    return StructDecoder(FORMAT, _Event, _convert(opts.get("identity", "user_id")), _Envelope,
                         lambda e: e.event_type in EVENT_TYPES or e.event_type is None)
