"""Segment / RudderStack track events of experiment exposure -> `Assignment`.

Three shapes of one Segment `track` call are read:

* Segment's A/B-testing spec, https://segment.com/docs/connections/spec/ab-testing/ :
  event `Experiment Viewed`, properties `experiment_id`, `experiment_name`, `variation_id`,
  `variation_name`;
* GrowthBook's `trackingCallback` forwarded to Segment,
  https://docs.growthbook.io/event-trackers/segment : event `Experiment Viewed`, properties
  `experimentId`, `variationId`;
* LaunchDarkly's Segment Data Export destination,
  https://launchdarkly.com/docs/integrations/data-export/segment-schema-reference : the
  LaunchDarkly event kind in `event` (`feature` for a flag evaluation), the flag in
  `properties.key`, its `value` / `variation` / `reason`, the context key in `userId`.

The same parser reads the body Segment's webhook destination POSTs (one such object).

| Assignment  | Segment                                                                      |
|-------------|------------------------------------------------------------------------------|
| experiment  | properties.experiment_id, experimentId, else experiment_name; LD: key        |
| variant     | properties.variation_name, else variation_id / variationId; LD: value, else  |
|             | "variation-<index>"                                                          |
| user_id     | `identity=user_or_anonymous` (default): userId, else anonymousId;            |
|             | `identity=user_id`: userId only; `identity=anonymous_id`: anonymousId only   |
| enrolled    | true (viewing the experiment is the exposure); LD: as the `launchdarkly`     |
|             | format (false for reason OFF / ERROR / PREREQUISITE_FAILED)                  |
| ts          | timestamp, else originalTimestamp, sentAt, receivedAt, else record time      |
| attributes  | country (context.location.country), platform (context.device.type, else      |
|             | context.os.name, lower case)                                                 |

Other messages on the topic (`Order Completed`, `identify`, `page`, ...) are `not_exposure`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from operator import attrgetter
from typing import Any

import msgspec

from detector.events import Assignment

from ._common import (
    NO_IDENTITY,
    Id,
    Text,
    assignments,
    cached,
    column,
    either,
    texts,
    times_ms,
    NOT_EXPOSURE,
    Reject,
    StructDecoder,
    assignment,
    country_platform,
    ensure_options,
    epoch_ms,
    ident,
)
from .launchdarkly import FALLBACK_REASONS, variant_of

FORMAT = "segment"
EVENT = "Experiment Viewed"
LD_EVENT = "feature"
OPTIONS: dict[str, tuple[str, ...] | None] = {"identity": ("user_or_anonymous", "user_id", "anonymous_id")}
_Id = str | int | None


class _Reason(msgspec.Struct, gc=False):
    kind: str | None = None


class _Properties(msgspec.Struct, gc=False):
    experiment_id: _Id = None
    experiment_name: str | None = None
    variation_id: _Id = None
    variation_name: str | None = None
    experimentId: _Id = None  # noqa: N815 - GrowthBook's names
    variationId: _Id = None  # noqa: N815
    key: str | None = None  # LaunchDarkly's Segment schema
    variation: int | None = None
    value: Any = None
    reason: _Reason | None = None


class _Named(msgspec.Struct, gc=False):
    country: str | None = None
    type: str | None = None
    name: str | None = None


class _Context(msgspec.Struct, gc=False):
    location: _Named | None = None
    device: _Named | None = None
    os: _Named | None = None


class _Event(msgspec.Struct, gc=False):
    type: str | None = None
    event: str | None = None
    userId: _Id = None  # noqa: N815
    anonymousId: _Id = None  # noqa: N815
    properties: _Properties | None = None
    context: _Context | None = None
    timestamp: datetime | int | None = None
    # Fallbacks, parsed only when `timestamp` is absent (Segment always sets it; RudderStack too).
    originalTimestamp: str | int | None = None  # noqa: N815
    sentAt: str | int | None = None  # noqa: N815
    receivedAt: str | int | None = None  # noqa: N815


class _Envelope(msgspec.Struct, gc=False):
    type: Any = None
    event: Any = None


def _is_exposure(e: Any) -> bool:
    return e.type in (None, "track") and e.event in (EVENT, LD_EVENT, None)


def _attributes(ctx: _Context | None) -> dict[str, str] | None:
    if ctx is None:
        return None
    platform = (ctx.device.type if ctx.device is not None else None) or (ctx.os.name if ctx.os is not None else None)
    return country_platform(ctx.location.country if ctx.location is not None else None, platform)


def _convert(identity: str):
    use_user = identity != "anonymous_id"
    use_anon = identity != "user_id"

    def convert(w: _Event, record_ts: int):
        if w.type in (None, "track") and w.event is None:
            raise Reject("not a Segment track event: no event name")
        if w.type not in (None, "track") or w.event not in (EVENT, LD_EVENT):
            raise Reject(f"Segment {w.type or 'track'} {str(w.event)[:60]!r}, not {EVENT!r}", NOT_EXPOSURE)
        p = w.properties
        if p is None:
            raise Reject(f"{w.event}: properties missing")
        user = (ident(w.userId) if use_user else None) or (ident(w.anonymousId) if use_anon else None)
        if w.event == LD_EVENT:
            experiment, variant = p.key, variant_of(p.value, p.variation)
            enrolled = p.variation is not None and (p.reason is None or p.reason.kind not in FALLBACK_REASONS)
        else:
            experiment = ident(p.experiment_id) or ident(p.experimentId) or p.experiment_name
            variant = p.variation_name or ident(p.variation_id) or ident(p.variationId)
            enrolled = True
        if not experiment:
            raise Reject(f"{w.event}: missing properties.experiment_id (experimentId, key)")
        if not user:
            raise Reject(f"{w.event} of {experiment!r} without {identity}", NO_IDENTITY)
        ts = w.timestamp or w.originalTimestamp or w.sentAt or w.receivedAt
        return assignment(experiment, user, variant, enrolled, epoch_ms(ts, "timestamp", record_ts),
                          _attributes(w.context))

    return convert


class _FastProperties(_Properties, gc=False):
    experiment_id: Id | int | None = None
    variation_name: Text | None = None
    variation_id: Text | int | None = None


class _FastEvent(_Event, gc=False):
    """`_Event` (A/B-testing spec shape) with the native limits checked by msgspec; times per batch."""

    userId: Id | int | None = None  # noqa: N815
    anonymousId: Id | int | None = None  # noqa: N815
    properties: _FastProperties | None = None
    timestamp: str | int | None = None  # type: ignore[assignment]  # text here, parsed per batch


_type, _event, _user_id, _anonymous_id = column("type"), column("event"), column("userId"), column("anonymousId")
_properties, _context, _timestamp = column("properties"), column("context"), column("timestamp")
_experiment_id, _variation_name, _variation_id = column("experiment_id"), column("variation_name"), column("variation_id")
_country, _device_type, _os_name = (attrgetter("location.country"), attrgetter("device.type"),
                                    attrgetter("os.name"))


def _platform(device: str | None, os: str | None) -> str | None:
    return device or os


def _attributes_column(contexts: list) -> list:
    try:  # every context with location and device (and os where no device type): C-level
        countries = list(map(_country, contexts))
        platforms = list(map(_device_type, contexts))
        if not all(platforms):
            platforms = either(platforms, list(map(_os_name, contexts)))
    except AttributeError:
        return list(map(_attributes, contexts))
    return cached(country_platform, countries, platforms)


def _fast(identity: str):
    """`convert` over a batch of A/B-testing spec events in columns, or None (see _common's fast path)."""
    use_user, use_anon = identity != "anonymous_id", identity != "user_id"

    def fast(wires: list, record_ts: list[int], values: list) -> list[Assignment] | None:
        n = len(wires)
        types = _type(wires)
        if (types.count("track") != n and types.count("track") + types.count(None) != n) \
                or _event(wires).count(EVENT) != n:
            return None
        props = _properties(wires)
        if None in props:
            return None
        experiments = texts(_experiment_id(props))
        users = texts(_user_id(wires)) if use_user else [None] * n
        stamps = _timestamp(wires)  # absent or 0: `convert` falls back to originalTimestamp, sentAt, ...
        ts = times_ms(stamps, record_ts) if None not in stamps else None
        if experiments is None or not all(experiments) or users is None or ts is None or 0 in ts:
            return None
        if use_anon and not all(users):
            anonymous = texts(_anonymous_id(wires))
            if anonymous is None:
                return None
            users = either(users, anonymous)
        variants = _variation_name(props)
        if not all(variants):
            ids = texts(_variation_id(props))
            if ids is None or not all(ids):  # (variationId: the per-record path)
                return None
            variants = either(variants, ids)
        if not all(users):
            return None
        return assignments(experiments, users, variants, [True] * n, ts, _attributes_column(_context(wires)),
                           record_ts, lengths_checked=True)

    return fast


def decoder(options: Mapping[str, str] | None = None) -> StructDecoder:
    opts = ensure_options(FORMAT, options or {}, OPTIONS)
    identity = opts.get("identity", "user_or_anonymous")
    return StructDecoder(FORMAT, _Event, _convert(identity), _Envelope, _is_exposure, _fast(identity), _FastEvent)
