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

from ._common import (
    NO_IDENTITY,
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


def decoder(options: Mapping[str, str] | None = None) -> StructDecoder:
    ensure_options(FORMAT, options or {}, OPTIONS)
    return StructDecoder(FORMAT, _Event, _convert, _Envelope, lambda e: e.type in TYPES or e.type is None)
