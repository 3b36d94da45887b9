"""LaunchDarkly Data Export (streaming) `feature` events -> `Assignment`.

Follows https://launchdarkly.com/docs/integrations/data-export/schema-reference (`feature`
events: `kind`, `creationDate`, `key`, `contextKeys`, `variation`, `value`, `default`,
`version`, `reason`, `prereqOf`; older SDKs send `userKey` or `user.key` instead of
`contextKeys`). For LaunchDarkly's Segment destination use the `segment` format.

| Assignment  | LaunchDarkly feature event                                                  |
|-------------|-----------------------------------------------------------------------------|
| experiment  | key (the flag key)                                                          |
| user_id     | the key of the context kind the source names (`context_kind=user`, default):|
|             | contextKeys[kind]; for `user` also userKey / user.key; a multi-kind context |
|             | yields the key of that kind, evaluations without it are `no_identity`       |
| variant     | value when it is a string, boolean or number; else "variation-<index>"      |
| enrolled    | false when the evaluation served the fallback: reason.kind OFF, ERROR or    |
|             | PREREQUISITE_FAILED, or no variation; true otherwise, including when the    |
|             | event has no reason (conservative: a served variation is an exposure;       |
|             | reason.inExperiment is not required, because a flag switched to 100% by a   |
|             | targeting rule is outside the experiment and still exposes every user)      |
| ts          | creationDate (epoch ms), else the record time                               |

Other kinds (`index`, `identify`, `custom`, `summary`, ...) are `not_exposure`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from ._common import (
    NO_IDENTITY,
    NOT_EXPOSURE,
    Reject,
    StructDecoder,
    assignment,
    ensure_options,
    epoch_ms,
    ident,
    scalar_text,
)

FORMAT = "launchdarkly"
KIND = "feature"
FALLBACK_REASONS = frozenset({"OFF", "ERROR", "PREREQUISITE_FAILED"})
OPTIONS: dict[str, tuple[str, ...] | None] = {"context_kind": None}


class _Reason(msgspec.Struct, gc=False):
    kind: str | None = None
    inExperiment: bool | None = None  # noqa: N815 - LaunchDarkly's field name


class _User(msgspec.Struct, gc=False):
    key: str | int | None = None


class _Event(msgspec.Struct, gc=False):
    kind: str
    key: str | None = None
    creationDate: int | None = None  # noqa: N815
    contextKeys: dict[str, str] | None = None  # noqa: N815
    context: dict[str, Any] | None = None
    userKey: str | None = None  # noqa: N815
    user: _User | None = None
    variation: int | None = None
    value: Any = None
    reason: _Reason | None = None


class _Envelope(msgspec.Struct, gc=False):
    kind: Any = None


def variant_of(value: Any, variation: int | None) -> str | None:
    v = scalar_text(value)
    if v is None and variation is not None:
        v = f"variation-{variation}"
    return v


def _context_key(ctx: dict[str, Any], kind: str) -> str | None:
    """The key of `kind` in a full context object (single- or multi-kind)."""
    ck = ctx.get("kind", "user")
    if ck == kind:
        return ident(ctx.get("key"))
    if ck == "multi":
        sub = ctx.get(kind)
        return ident(sub.get("key")) if isinstance(sub, dict) else None
    return None


def _convert(kind: str):
    is_user = kind == "user"

    def convert(w: _Event, record_ts: int):
        if w.kind != KIND:
            raise Reject(f"LaunchDarkly {w.kind[:40]!r} event, not a feature evaluation", NOT_EXPOSURE)
        if not w.key:
            raise Reject("feature event without key (the flag key)")
        user = None
        if w.contextKeys is not None:
            user = w.contextKeys.get(kind)
        elif w.context is not None:
            user = _context_key(w.context, kind)
        elif is_user:
            user = w.userKey or (ident(w.user.key) if w.user is not None else None)
        if not user:
            raise Reject(f"evaluation of {w.key!r} has no {kind!r} context key", NO_IDENTITY)
        r = w.reason
        enrolled = w.variation is not None and (r is None or r.kind not in FALLBACK_REASONS)
        return assignment(w.key, user, variant_of(w.value, w.variation), enrolled,
                          epoch_ms(w.creationDate, "creationDate", record_ts))

    return convert


def decoder(options: Mapping[str, str] | None = None) -> StructDecoder:
    opts = ensure_options(FORMAT, options or {}, OPTIONS)
    return StructDecoder(FORMAT, _Event, _convert(opts.get("context_kind", "user")), _Envelope,
                         lambda e: e.kind in (KIND, None))
