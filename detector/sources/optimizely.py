"""Optimizely Feature Experimentation decision notifications -> `Assignment`.

Follows https://docs.developers.optimizely.com/feature-experimentation/docs/decision-notification-listener :
the listener gets `type` (`flag` from the decide methods), `userId`, `attributes` and
`decisionInfo` (`flagKey`, `enabled`, `variationKey`, `ruleKey`, `reasons`,
`decisionEventDispatched`, `variables`). Serialise what the listener gets as JSON, one
decision per record (SDKs that use snake case, such as Python's, are read too:
`user_id`, `decision_info.flag_key`, ...). Legacy `ab-test` decisions
(`experimentKey`, `variationKey`) are read as well.

| Assignment  | Optimizely decision                                                          |
|-------------|------------------------------------------------------------------------------|
| experiment  | decisionInfo.flagKey (ab-test: experimentKey)                                |
| user_id     | userId                                                                       |
| variant     | decisionInfo.variationKey                                                    |
| enrolled    | decisionInfo.enabled (ab-test: a variation was chosen). Not                  |
|             | `decisionEventDispatched`: a flag delivered by a rollout rule dispatches no  |
|             | impression yet serves the feature, and that is what the detector must see    |
| ts          | timestamp if the forwarder adds one (RFC 3339 or epoch ms), else the record  |
|             | time (the notification carries no time)                                      |
| attributes  | attributes (scalars)                                                         |

Other notification types (`feature-variable`, `all-feature-variables`, ...) are `not_exposure`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
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
    either,
    enrolled_only,
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

FORMAT = "optimizely"
TYPES = frozenset({"flag", "ab-test"})
OPTIONS: dict[str, tuple[str, ...] | None] = {}


class _Info(msgspec.Struct, gc=False):
    flagKey: str | None = None  # noqa: N815 - Optimizely's names
    flag_key: str | None = None
    enabled: bool | None = None
    variationKey: str | None = None  # noqa: N815
    variation_key: str | None = None
    experimentKey: str | None = None  # noqa: N815
    experiment_key: str | None = None


class _Event(msgspec.Struct, gc=False):
    type: str | None = None
    userId: str | int | None = None  # noqa: N815
    user_id: str | int | None = None
    attributes: dict[str, Any] | None = None
    decisionInfo: _Info | None = None  # noqa: N815
    decision_info: _Info | None = None
    timestamp: datetime | int | None = None


class _Envelope(msgspec.Struct, gc=False):
    type: Any = None


def _convert(w: _Event, record_ts: int):
    require_kind(w.type, TYPES, "Optimizely", "type")
    info = w.decisionInfo or w.decision_info
    if info is None:
        raise Reject("decision notification without decisionInfo")
    variant = info.variationKey or info.variation_key
    if w.type == "flag":
        experiment, enrolled = info.flagKey or info.flag_key, info.enabled is True
    else:
        experiment, enrolled = info.experimentKey or info.experiment_key, bool(variant)
    if not experiment:
        raise Reject("decision without decisionInfo.flagKey")
    user = ident(w.userId) or ident(w.user_id)
    if not user:
        raise Reject(f"decision of {experiment!r} without userId", NO_IDENTITY)
    attrs = scalar_attributes(w.attributes.items()) if w.attributes else None
    return assignment(experiment, user, variant, enrolled, epoch_ms(w.timestamp, "timestamp", record_ts),
                      attrs)


class _FastInfo(_Info, gc=False):
    flagKey: Id | None = None  # noqa: N815
    flag_key: Id | None = None
    variationKey: Text | None = None  # noqa: N815
    variation_key: Text | None = None


class _FastEvent(_Event, gc=False):
    """`_Event` (type `flag`) with the native limits checked by msgspec; times parsed per batch."""

    userId: Id | int | None = None  # noqa: N815
    user_id: Id | int | None = None
    decisionInfo: _FastInfo | None = None  # noqa: N815
    decision_info: _FastInfo | None = None
    timestamp: str | int | None = None  # type: ignore[assignment]  # text here, parsed per batch
    attributes: RawObject = NO_OBJECT  # type: ignore[assignment]  # decoded once per distinct text


_type, _user_id, _user_id_snake, _attributes = column("type"), column("userId"), column("user_id"), column("attributes")
_info, _info_snake, _timestamp = column("decisionInfo"), column("decision_info"), column("timestamp")
_flag_key, _flag_key_snake, _enabled = column("flagKey"), column("flag_key"), column("enabled")
_variation, _variation_snake = column("variationKey"), column("variation_key")


def _fast(wires: list, record_ts: list[int], values: list) -> list[Assignment] | None:
    """`_convert` over a batch of `flag` decisions in columns, or None (see _common's fast path)."""
    if _type(wires).count("flag") != len(wires):
        return None
    infos = either(_info(wires), _info_snake(wires))
    if None in infos:
        return None
    experiments = either(_flag_key(infos), _flag_key_snake(infos))
    first, second = texts(_user_id(wires)), texts(_user_id_snake(wires))
    ts = times_ms(_timestamp(wires), record_ts)
    if not all(experiments) or first is None or second is None or ts is None:
        return None
    users = either(first, second)
    if not all(users):
        return None
    enrolled = [e is True for e in _enabled(infos)]
    variants = enrolled_only(either(_variation(infos), _variation_snake(infos)), enrolled)
    return assignments(experiments, users, variants, enrolled, ts, attributes_of(_attributes(wires)), record_ts,
                       lengths_checked=True)


def decoder(options: Mapping[str, str] | None = None) -> StructDecoder:
    ensure_options(FORMAT, options or {}, OPTIONS)
    return StructDecoder(FORMAT, _Event, _convert, _Envelope, lambda e: e.type in TYPES or e.type is None,
                         _fast, _FastEvent)
