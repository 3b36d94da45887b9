"""Statsig exposure events -> `Assignment`.

Follows Statsig's event shape (https://docs.statsig.com/api-reference/events/log-custom-exposure-events
and its event schema: `eventName`, `user`, `time` in epoch ms, string `metadata`):
`statsig::experiment_exposure` / `statsig::config_exposure` (metadata `config`, `ruleID`,
`group` / `groupName`) and `statsig::gate_exposure` (metadata `gate`, `gateValue`, `ruleID`).
One exposure of the custom-exposure API (`experimentName`, `group`, `ruleID`, `user`) is read too.

| Assignment  | Statsig                                                                      |
|-------------|------------------------------------------------------------------------------|
| experiment  | metadata.config (experiments, dynamic configs), metadata.gate, experimentName|
| user_id     | `identity=user_id` (default): user.userID; `stable_id`: user.stableID;       |
|             | `custom:<name>`: user.customIDs[<name>] (e.g. `custom:companyID`)            |
| variant     | groupName, else group, else ruleID; gates: "true"                            |
| enrolled    | gates: gateValue is true. Experiments/configs: false when ruleID says the    |
|             | user got the default values without being allocated (`layerAssignment`,     |
|             | `prestart`, `default`, `disabled`, empty); true otherwise (conservative:     |
|             | `launchedGroup` and targeting rules still serve the experience)              |
| ts          | time (epoch ms), else the record time                                        |
| attributes  | country (user.country)                                                       |

Other events (custom events, `statsig::config_change`, ...) are `not_exposure`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from detector.events import Assignment

from ._common import (
    NO_IDENTITY,
    NOT_EXPOSURE,
    EpochMs,
    Id,
    Reject,
    StructDecoder,
    Text,
    assignment,
    assignments,
    cached,
    column,
    either,
    enrolled_only,
    ensure_options,
    epoch_ms,
    ident,
    texts,
    times_ms,
)

FORMAT = "statsig"
CONFIG_EVENTS = frozenset({"statsig::experiment_exposure", "statsig::config_exposure"})
GATE_EVENT = "statsig::gate_exposure"
NOT_ALLOCATED = frozenset({"layerAssignment", "prestart", "default", "disabled", ""})
OPTIONS: dict[str, tuple[str, ...] | None] = {"identity": ("user_id", "stable_id", "custom:")}
_Id = str | int | None


class _User(msgspec.Struct, gc=False):
    userID: _Id = None  # noqa: N815 - Statsig's names
    stableID: _Id = None  # noqa: N815
    customIDs: dict[str, str | int] | None = None  # noqa: N815
    country: str | None = None


class _Metadata(msgspec.Struct, gc=False):
    config: str | None = None
    gate: str | None = None
    gateValue: str | bool | None = None  # noqa: N815
    ruleID: str | None = None  # noqa: N815
    group: str | None = None
    groupName: str | None = None  # noqa: N815


class _Event(msgspec.Struct, gc=False):
    eventName: str | None = None  # noqa: N815
    user: _User | None = None
    time: int | None = None
    metadata: _Metadata | None = None
    experimentName: str | None = None  # noqa: N815 - custom exposure API
    group: str | None = None
    ruleID: str | None = None  # noqa: N815


class _Envelope(msgspec.Struct, gc=False):
    eventName: Any = None  # noqa: N815
    experimentName: Any = None  # noqa: N815


def _is_exposure(e: Any) -> bool:
    return e.eventName in CONFIG_EVENTS or e.eventName == GATE_EVENT or e.eventName is None


def _convert(identity: str):
    custom = identity[len("custom:"):] if identity.startswith("custom:") else None

    def user_of(u: _User | None) -> str | None:
        if u is None:
            return None
        if custom is not None:
            return ident(u.customIDs.get(custom)) if u.customIDs else None
        return ident(u.stableID if identity == "stable_id" else u.userID)

    def convert(w: _Event, record_ts: int):
        name, m = w.eventName, w.metadata
        experiment: str | None
        variant: str | None
        if name == GATE_EVENT:
            if m is None or not m.gate:
                raise Reject(f"{GATE_EVENT} without metadata.gate")
            experiment = m.gate
            enrolled = m.gateValue is True or m.gateValue == "true"
            variant = "true"
        elif name in CONFIG_EVENTS or (name is None and w.experimentName):
            if name is None:
                experiment, rule, group = w.experimentName, w.ruleID, w.group
            else:
                if m is None or not m.config:
                    raise Reject(f"{name} without metadata.config")
                experiment, rule, group = m.config, m.ruleID, m.groupName or m.group
            enrolled = (rule or "") not in NOT_ALLOCATED
            variant = group or rule
        elif name is None:
            raise Reject("not a Statsig event: no eventName (or experimentName)")
        else:
            raise Reject(f"Statsig event {str(name)[:60]!r} is not an exposure", NOT_EXPOSURE)
        if not experiment:
            raise Reject("exposure without an experiment name")
        user = user_of(w.user)
        if not user:
            raise Reject(f"exposure of {experiment!r} without {identity}", NO_IDENTITY)
        attrs = {"country": w.user.country} if w.user is not None and w.user.country else None
        return assignment(experiment, user, variant, enrolled, epoch_ms(w.time, "time", record_ts), attrs)

    return convert


class _FastUser(_User, gc=False):
    userID: Id | int | None = None  # noqa: N815
    stableID: Id | int | None = None  # noqa: N815


class _FastMetadata(_Metadata, gc=False):
    config: Id | None = None
    ruleID: Text | None = None  # noqa: N815
    group: Text | None = None
    groupName: Text | None = None  # noqa: N815


class _FastEvent(_Event, gc=False):
    """`_Event` with the native limits checked by msgspec (see `Id`, `Text`)."""

    user: _FastUser | None = None
    time: EpochMs | None = None
    metadata: _FastMetadata | None = None


_name, _user, _metadata, _time = column("eventName"), column("user"), column("metadata"), column("time")
_config, _rule, _group, _group_name = column("config"), column("ruleID"), column("group"), column("groupName")
_country = column("country")


def _country_attribute(country: str | None) -> dict[str, str] | None:
    return {"country": country} if country else None


def _fast(identity: str):
    """`convert` over a batch of experiment/config exposures in columns, or None (see _common)."""
    if identity not in ("user_id", "stable_id"):
        return None
    user_id = column("stableID" if identity == "stable_id" else "userID")

    def fast(wires: list, record_ts: list[int], values: list) -> list[Assignment] | None:
        names = _name(wires)
        if sum(map(names.count, CONFIG_EVENTS)) != len(wires):
            return None
        meta, user = _metadata(wires), _user(wires)
        if None in meta or None in user:
            return None
        experiments, users = _config(meta), texts(user_id(user))
        ts = times_ms(_time(wires), record_ts)
        if not all(experiments) or users is None or not all(users) or ts is None:
            return None
        rules = _rule(meta)
        enrolled = [(r or "") not in NOT_ALLOCATED for r in rules]
        variants = enrolled_only(either(either(_group_name(meta), _group(meta)), rules), enrolled)
        return assignments(experiments, users, variants, enrolled, ts, cached(_country_attribute, _country(user)),
                           record_ts, lengths_checked=True)

    return fast


def decoder(options: Mapping[str, str] | None = None) -> StructDecoder:
    opts = ensure_options(FORMAT, options or {}, OPTIONS)
    identity = opts.get("identity", "user_id")
    return StructDecoder(FORMAT, _Event, _convert(identity), _Envelope, _is_exposure, _fast(identity), _FastEvent)
