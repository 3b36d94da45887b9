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

from detector.events import Assignment

from ._common import (
    NO_IDENTITY,
    EpochMs,
    Id,
    Text,
    assignments,
    cached,
    column,
    either,
    enrolled_only,
    texts,
    times_ms,
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


class _FastProperties(_Properties, gc=False):
    flag_key: Id | None = None
    variant: Text | None = None
    ingested_flag_key: Id | None = msgspec.field(default=None, name="[Experiment] Flag Key")
    ingested_variant: Text | None = msgspec.field(default=None, name="[Experiment] Variant")


class _FastEvent(_Event, gc=False):
    """`_Event` with the native limits checked by msgspec (see `Id`, `Text`)."""

    user_id: Id | int | None = None
    device_id: Id | None = None
    time: EpochMs | None = None
    event_properties: _FastProperties | None = None


_type, _properties, _time = column("event_type"), column("event_properties"), column("time")
_flag, _flag_ingested, _variant, _variant_ingested = (
    column("flag_key"), column("ingested_flag_key"), column("variant"), column("ingested_variant"))
_country, _platform = column("country"), column("platform")


def _fast(identity: str):
    """`convert` over a batch in columns, or None (see _common's fast path)."""
    user_of = column("device_id" if identity == "device_id" else "user_id")

    def fast(wires: list, record_ts: list[int], values: list) -> list[Assignment] | None:
        types = _type(wires)
        if sum(map(types.count, EVENT_TYPES)) != len(wires):
            return None
        props = _properties(wires)
        if None in props:
            return None
        flags, users = either(_flag(props), _flag_ingested(props)), texts(user_of(wires))
        ts = times_ms(_time(wires), record_ts)
        if not all(flags) or users is None or not all(users) or ts is None:
            return None
        variants = either(_variant(props), _variant_ingested(props))
        enrolled = [bool(v) and v != "off" for v in variants]
        return assignments(flags, users, enrolled_only(variants, enrolled), enrolled, ts,
                           cached(country_platform, _country(wires), _platform(wires)), record_ts, lengths_checked=True)

    return fast


def decoder(options: Mapping[str, str] | None = None) -> StructDecoder:
    opts = ensure_options(FORMAT, options or {}, OPTIONS)
    identity = opts.get("identity", "user_id")
    return StructDecoder(FORMAT, _Event, _convert(identity), _Envelope,
                         lambda e: e.event_type in EVENT_TYPES or e.event_type is None, _fast(identity), _FastEvent)
