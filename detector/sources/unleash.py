"""Unleash impression events -> `Assignment`.

Follows https://docs.getunleash.io/reference/impression-data (an SDK emits an `impression`
event for each `isEnabled` / `getVariant` call on a flag with impression data turned on:
`eventType`, `eventId`, `context`, `enabled`, `featureName`, `impressionData`, and for
`getVariant` the `variant` name). Forward those events as JSON, one per record.

| Assignment  | Unleash impression event                                                     |
|-------------|------------------------------------------------------------------------------|
| experiment  | featureName                                                                  |
| user_id     | `identity=user_id` (default): context.userId; `session_id`: context.sessionId|
| variant     | getVariant: the variant name; isEnabled: "true"                              |
| enrolled    | false when `enabled` is false or the variant is `disabled`; true otherwise   |
| ts          | createdTimestamp / timestamp if present (RFC 3339 or epoch ms), else the     |
|             | record time (impression events carry no time of their own)                   |
| attributes  | context.properties (scalars), e.g. country                                   |

`customGoal` and other event types are `not_exposure`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from itertools import repeat
from operator import is_not
from typing import Any

import msgspec

from detector.events import Assignment

from ._common import (
    NO_IDENTITY,
    NO_OBJECT,
    RawObject,
    Id,
    Text,
    assignments,
    attributes_of,
    column,
    texts,
    times_ms,
    Reject,
    StructDecoder,
    assignment,
    ensure_options,
    epoch_ms,
    ident,
    require_kind,
    scalar_attributes,
)

FORMAT = "unleash"
EVENT_TYPES = frozenset({"isEnabled", "getVariant"})
OPTIONS: dict[str, tuple[str, ...] | None] = {"identity": ("user_id", "session_id")}
_Id = str | int | None


class _Variant(msgspec.Struct, gc=False):
    name: str | None = None
    enabled: bool | None = None


class _Context(msgspec.Struct, gc=False):
    userId: _Id = None  # noqa: N815 - Unleash's names
    sessionId: _Id = None  # noqa: N815
    properties: dict[str, Any] | None = None


class _Event(msgspec.Struct, gc=False):
    eventType: str | None = None  # noqa: N815
    featureName: str | None = None  # noqa: N815
    enabled: bool | None = None
    variant: str | _Variant | None = None
    context: _Context | None = None
    createdTimestamp: datetime | int | None = None  # noqa: N815
    timestamp: datetime | int | None = None


class _Envelope(msgspec.Struct, gc=False):
    eventType: Any = None  # noqa: N815


def _convert(identity: str):
    by_session = identity == "session_id"

    def convert(w: _Event, record_ts: int):
        require_kind(w.eventType, EVENT_TYPES, "Unleash", "eventType")
        if not w.featureName:
            raise Reject("impression event without featureName")
        ctx = w.context
        user = None if ctx is None else ident(ctx.sessionId if by_session else ctx.userId)
        if not user:
            raise Reject(f"impression of {w.featureName!r} without context.{'sessionId' if by_session else 'userId'}",
                         NO_IDENTITY)
        enrolled = w.enabled is True
        if w.eventType == "getVariant":
            v = w.variant
            name = v if isinstance(v, str) else (v.name if v is not None and v.enabled is not False else None)
            if not name or name == "disabled":
                enrolled, name = False, None
        else:
            name = "true"
        attrs = scalar_attributes(ctx.properties.items()) if ctx is not None and ctx.properties else None
        ts = epoch_ms(w.createdTimestamp if w.createdTimestamp is not None else w.timestamp, "timestamp", record_ts)
        return assignment(w.featureName, user, name, enrolled, ts, attrs)

    return convert


class _FastVariant(_Variant, gc=False):
    name: Text | None = None


class _FastContext(_Context, gc=False):
    userId: Id | int | None = None  # noqa: N815
    sessionId: Id | int | None = None  # noqa: N815
    properties: RawObject = NO_OBJECT  # type: ignore[assignment]  # attributes decoded once per distinct text


class _FastEvent(_Event, gc=False):
    """`_Event` with the native limits checked by msgspec; times parsed per batch (`times_ms`)."""

    featureName: Id | None = None  # noqa: N815
    variant: Text | _FastVariant | None = None
    context: _FastContext | None = None
    createdTimestamp: str | int | None = None  # type: ignore[assignment]  # noqa: N815 - text, parsed per batch
    timestamp: str | int | None = None  # type: ignore[assignment]  # text here, parsed per batch


_type, _feature, _enabled, _variant = column("eventType"), column("featureName"), column("enabled"), column("variant")
_context, _created, _timestamp, _properties = (
    column("context"), column("createdTimestamp"), column("timestamp"), column("properties"))


def _variant_name(v: Any) -> str | None:
    return v if isinstance(v, str) else (v.name if v is not None and v.enabled is not False else None)


def _fast(identity: str):
    """`convert` over a batch in columns, or None (see _common's fast path)."""
    user_of = column("sessionId" if identity == "session_id" else "userId")

    def fast(wires: list, record_ts: list[int], values: list) -> list[Assignment] | None:
        types = _type(wires)
        getvariant = types.count("getVariant")
        if getvariant + types.count("isEnabled") != len(wires):
            return None
        features, contexts = _feature(wires), _context(wires)
        if None in contexts or not all(features):
            return None
        users = texts(user_of(contexts))
        created = _created(wires)
        ts = times_ms(created if None not in created else
                      [c if c is not None else t for c, t in zip(created, _timestamp(wires))], record_ts)
        if users is None or not all(users) or ts is None:
            return None
        enabled, variants_in = _enabled(wires), _variant(wires)
        if getvariant == len(wires) and set(map(type, variants_in)) == {str}:  # variant names: one pass
            variants = [v if e is True and v and v != "disabled" else None for v, e in zip(variants_in, enabled)]
        else:
            names = [_variant_name(v) if t == "getVariant" else "true" for v, t in zip(variants_in, types)]
            variants = [n if e is True and n and n != "disabled" else None for n, e in zip(names, enabled)]
        enrolled = list(map(is_not, variants, repeat(None)))  # a variant exactly where enrolled
        return assignments(features, users, variants, enrolled, ts, attributes_of(_properties(contexts)), record_ts,
                           lengths_checked=True)

    return fast


def decoder(options: Mapping[str, str] | None = None) -> StructDecoder:
    opts = ensure_options(FORMAT, options or {}, OPTIONS)
    identity = opts.get("identity", "user_id")
    return StructDecoder(FORMAT, _Event, _convert(identity), _Envelope,
                         lambda e: e.eventType in EVENT_TYPES or e.eventType is None, _fast(identity), _FastEvent)
