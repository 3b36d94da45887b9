"""LaunchDarkly Data Export (streaming) `feature` events -> `Assignment`.

Follows https://launchdarkly.com/docs/integrations/data-export/schema-reference (`feature`
events: `kind`, `creationDate`, `key`, `contextKeys`, `variation`, `value`, `default`,
`version`, `reason`, `prereqOf`; older SDKs send `userKey` or `user.key` instead of
`contextKeys`). For LaunchDarkly's Segment destination use the `segment` format.

| Assignment  | LaunchDarkly feature event                                                  |
|-------------|-----------------------------------------------------------------------------|
| experiment  | key (the flag key)                                                          |
| user_id     | the key of the experiment's context kind: the kind its registration names   |
|             | (`identity.context_kind`), else the source's (`context_kind=`, default      |
|             | `user`): contextKeys[kind]; for `user` also userKey / user.key; a multi-kind|
|             | context yields the key of that kind, evaluations without it `no_identity`   |
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

from collections.abc import Callable, Mapping
from operator import attrgetter, methodcaller
from typing import Any

import msgspec

from detector.events import Assignment

from ._common import (
    NO_IDENTITY,
    EpochMs,
    Id,
    Text,
    NOT_EXPOSURE,
    Reject,
    StructDecoder,
    assignment,
    assignments,
    cached,
    column,
    enrolled_only,
    ensure_options,
    epoch_ms,
    ident,
    scalar_text,
    times_ms,
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


def _convert(kind_of: Callable[[str], str]):
    def convert(w: _Event, record_ts: int):
        if w.kind != KIND:
            raise Reject(f"LaunchDarkly {w.kind[:40]!r} event, not a feature evaluation", NOT_EXPOSURE)
        if not w.key:
            raise Reject("feature event without key (the flag key)")
        kind = kind_of(w.key)
        user = None
        if w.contextKeys is not None:
            user = w.contextKeys.get(kind)
        elif w.context is not None:
            user = _context_key(w.context, kind)
        elif kind == "user":
            user = w.userKey or (ident(w.user.key) if w.user is not None else None)
        if not user:
            raise Reject(f"evaluation of {w.key!r} has no {kind!r} context key", NO_IDENTITY)
        r = w.reason
        enrolled = w.variation is not None and (r is None or r.kind not in FALLBACK_REASONS)
        return assignment(w.key, user, variant_of(w.value, w.variation), enrolled,
                          epoch_ms(w.creationDate, "creationDate", record_ts))

    return convert


class _FastEvent(_Event, gc=False):
    """`_Event` with the native limits checked by msgspec (see `Id`, `Text`)."""

    key: Id | None = None
    creationDate: EpochMs | None = None  # noqa: N815
    contextKeys: dict[str, Text] | None = None  # noqa: N815
    value: Text | bool | int | float | None = None  # other values (JSON flags): the per-record path


_kind, _key, _context_keys, _variation = column("kind"), column("key"), column("contextKeys"), column("variation")
_value, _reason, _creation = column("value"), column("reason"), column("creationDate")
_reason_kind = attrgetter("kind")


def _fast(kind_of: Callable[[str], str], per_experiment: bool, default: str):
    """`convert` over a batch in columns, or None (see _common's fast path)."""
    get_default = methodcaller("get", default)

    def fast(wires: list, record_ts: list[int], values: list) -> list[Assignment] | None:
        n = len(wires)
        if _kind(wires).count(KIND) != n:
            return None
        keys, context_keys = _key(wires), _context_keys(wires)
        if not all(keys) or None in context_keys:
            return None
        if per_experiment:  # the context kind each experiment's registration names, once per experiment
            users = list(map(dict.get, context_keys, cached(kind_of, keys)))
        else:
            users = list(map(get_default, context_keys))
        ts = times_ms(_creation(wires), record_ts)
        if not all(users) or ts is None:
            return None
        variations, flag_values, reasons = _variation(wires), _value(wires), _reason(wires)
        reason_kinds = list(map(_reason_kind, reasons)) if None not in reasons else \
            [None if r is None else r.kind for r in reasons]
        enrolled = [v is not None and k not in FALLBACK_REASONS for v, k in zip(variations, reason_kinds)]
        variants = flag_values if set(map(type, flag_values)) == {str} else \
            list(map(variant_of, flag_values, variations))
        return assignments(keys, users, enrolled_only(variants, enrolled), enrolled, ts, None, record_ts,
                           lengths_checked=True)

    return fast


KIND_PER_REGISTRATION = True  # `decoder` takes `context_kind_of` (see detector.sources.decoder_for)


def decoder(options: Mapping[str, str] | None = None,
            context_kind_of: Callable[[str], str | None] | None = None) -> StructDecoder:
    """The decoder. `context_kind_of(experiment)` is the context kind the experiment's registration
    names (`identity.context_kind`), or None; it is asked at each decode, so a registration's change
    applies to the events decoded after it. Otherwise the `context_kind` option, default `user`."""
    opts = ensure_options(FORMAT, options or {}, OPTIONS)
    default = opts.get("context_kind", "user")

    def kind_of(experiment: str) -> str:
        return (context_kind_of(experiment) if context_kind_of is not None else None) or default

    return StructDecoder(FORMAT, _Event, _convert(kind_of), _Envelope, lambda e: e.kind in (KIND, None),
                         _fast(kind_of, context_kind_of is not None, default), _FastEvent)
