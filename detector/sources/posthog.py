"""PostHog `$feature_flag_called` events -> `Assignment`.

Follows https://posthog.com/docs/experiments/exposures (a user is exposed when PostHog receives
`$feature_flag_called` with `properties.$feature_flag` = the flag key and
`properties.$feature_flag_response` = the variant) and the event shape of PostHog's capture
API / webhook and batch exports (`event`, `distinct_id`, `properties`, `timestamp`, and in
exports `person_id`).

| Assignment  | PostHog                                                                     |
|-------------|-----------------------------------------------------------------------------|
| experiment  | properties.$feature_flag                                                    |
| user_id     | distinct_id (option `identity=distinct_id`, default) or person_id           |
|             | (`identity=person_id`: PostHog's merged person, one id for all of a user's  |
|             | distinct ids)                                                               |
| variant     | $feature_flag_response: a variant key as it is; `true` -> "true"            |
| enrolled    | false when $feature_flag_response is false or absent (the flag did not      |
|             | match: evaluated, not enrolled); true otherwise                             |
| ts          | timestamp (RFC 3339 or epoch ms), else the record time                      |
| attributes  | country ($geoip_country_code), platform ($device_type, lower case)          |

Other events on the topic (`$pageview`, `order_completed`, ...) are `not_exposure`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec

from detector.events import Assignment

from ._common import (
    NO_IDENTITY,
    Id,
    Text,
    NOT_EXPOSURE,
    Reject,
    StructDecoder,
    assignment,
    assignments,
    cached,
    column,
    country_platform,
    ensure_options,
    epoch_ms,
    ident,
    texts,
    times_ms,
)

FORMAT = "posthog"
EVENT = "$feature_flag_called"
OPTIONS: dict[str, tuple[str, ...] | None] = {"identity": ("distinct_id", "person_id")}


class _Properties(msgspec.Struct, gc=False):
    flag: str | None = msgspec.field(default=None, name="$feature_flag")
    response: str | bool | None = msgspec.field(default=None, name="$feature_flag_response")
    country: str | None = msgspec.field(default=None, name="$geoip_country_code")
    device_type: str | None = msgspec.field(default=None, name="$device_type")


class _Event(msgspec.Struct, gc=False):
    event: str
    distinct_id: str | int | None = None
    person_id: str | None = None
    properties: _Properties | None = None
    timestamp: datetime | int | None = None


class _Envelope(msgspec.Struct, gc=False):
    event: Any = None


def _convert(identity: str):
    by_person = identity == "person_id"

    def convert(w: _Event, record_ts: int):
        if w.event != EVENT:
            raise Reject(f"PostHog event {w.event[:60]!r}, not {EVENT}", NOT_EXPOSURE)
        p = w.properties
        if p is None or not p.flag:
            raise Reject(f"{EVENT} without properties.$feature_flag")
        user = w.person_id if by_person else w.distinct_id
        if user.__class__ is not str:
            user = ident(user)
        if not user:
            raise Reject(f"{EVENT} of {p.flag!r} without {identity}", NO_IDENTITY)
        r = p.response
        variant: str | None
        if r is None or r is False:  # the flag did not match: evaluated, not enrolled
            enrolled, variant = False, None
        else:
            enrolled, variant = True, ("true" if r is True else r)
        return assignment(p.flag, user, variant, enrolled, epoch_ms(w.timestamp, "timestamp", record_ts),
                          country_platform(p.country, p.device_type))

    return convert


class _FastProperties(_Properties, gc=False):
    flag: Id | None = msgspec.field(default=None, name="$feature_flag")
    response: Text | bool | None = msgspec.field(default=None, name="$feature_flag_response")


class _FastEvent(_Event, gc=False):
    """`_Event` with the native limits checked by msgspec; times parsed per batch (`times_ms`)."""

    distinct_id: Id | int | None = None
    person_id: Id | None = None
    properties: _FastProperties | None = None
    timestamp: str | int | None = None  # type: ignore[assignment]  # text here, parsed per batch


_event, _properties, _timestamp = column("event"), column("properties"), column("timestamp")
_flag, _response, _country, _device = column("flag"), column("response"), column("country"), column("device_type")


def _fast(identity: str):
    """`convert` over a batch of `_FastEvent`s in columns, or None (see _common's fast path)."""
    user_of = column("person_id" if identity == "person_id" else "distinct_id")

    def fast(wires: list, record_ts: list[int], values: list) -> list[Assignment] | None:
        n = len(wires)
        if _event(wires).count(EVENT) != n:
            return None
        props = _properties(wires)
        if None in props:
            return None
        flags = _flag(props)
        users = texts(user_of(wires))
        ts = times_ms(_timestamp(wires), record_ts)
        if not all(flags) or users is None or None in users or ts is None:
            return None
        responses = _response(props)
        if set(map(type, responses)) <= {str}:
            enrolled, variants = [True] * n, responses
        else:  # false or absent: evaluated, not enrolled
            enrolled = [not (r is None or r is False) for r in responses]
            variants = [None if r is None or r is False else "true" if r is True else r for r in responses]
        attrs = cached(country_platform, _country(props), _device(props))
        return assignments(flags, users, variants, enrolled, ts, attrs, record_ts, lengths_checked=True)

    return fast


def decoder(options: Mapping[str, str] | None = None) -> StructDecoder:
    opts = ensure_options(FORMAT, options or {}, OPTIONS)
    identity = opts.get("identity", "distinct_id")
    return StructDecoder(FORMAT, _Event, _convert(identity), _Envelope, lambda e: e.event in (EVENT, None),
                         _fast(identity), _FastEvent)
