"""Notification policy: who gets paged, who gets a digest, and who is only recorded. Pure.

An incident's *disposition* is decided when its first page would go out:

* ``page``    a notification of its own, at once (after the lifecycle's short group wait);
* ``digest``  folded into one digest per group (Alertmanager's route ``group_by``): by default
              every ``unregistered`` experiment of one owner, or of everyone when owners are
              unknown, is listed in one message with its observed exposure;
* ``observe`` recorded (``/v1/incidents``, timeline, metrics) but never notified: the
              detector's first days on a live stream (``DETECTOR_UNREGISTERED=observe``), or a
              registration with ``mode: observe``.

A breach (every rule except the advisory ones, today only ``unregistered``) is never delayed
or folded into a digest: it pages on its own unless its registration asked for ``mode: observe``.

The policy also holds per-rule severities and the per-sink rate limit (see ``ratelimit.py``).
Configured in ``config/alerting.yaml`` under ``notifications:``; see that file.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .times import parse_duration_ms

UNREGISTERED_ENV = "DETECTOR_UNREGISTERED"
UNREGISTERED_MODES = ("page", "digest", "observe")
ADVISORY_RULES = frozenset({"unregistered"})  # may be digested; every other rule is a breach
GROUP_FIELDS = ("experiment", "owner", "rule", "severity")  # anything else is a registration label
SEVERITIES = ("critical", "error", "warning", "info")
MATCH_KEYS = ("rule", "owner", "experiment", "severity")

Disposition = Literal["page", "digest", "observe"]


def is_breach(rule: str) -> bool:
    return rule not in ADVISORY_RULES


def _patterns(value: Any) -> tuple[str, ...]:
    if isinstance(value, (list, tuple, set, frozenset)):
        return tuple(str(v) for v in value)
    return (str(value),)


@dataclass(frozen=True)
class GroupPolicy:
    """One `grouping:` entry: which notifications it takes, how it groups and paces digests."""

    match: dict[str, tuple[str, ...]] = field(default_factory=dict)
    group_by: tuple[str, ...] = ("owner",)
    group_wait_ms: int = 30_000
    group_interval_ms: int = 5 * 60_000
    repeat_interval_ms: int = 24 * 3_600_000

    def matches(self, subject: Mapping[str, Any]) -> bool:
        for key, patterns in self.match.items():
            value = str(subject.get(key) or "")
            if not any(fnmatch.fnmatchcase(value, p) for p in patterns):
                return False
        return True

    @property
    def per_experiment(self) -> bool:
        """Grouping by experiment is one message per experiment: that is a page, not a digest."""
        return "experiment" in self.group_by

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> GroupPolicy:
        raw = dict(raw)
        unknown = set(raw) - {"match", "group_by", "group_wait", "group_interval", "repeat_interval"}
        if unknown:
            raise ValueError(f"grouping entry: unknown keys {sorted(unknown)}")
        match = dict(raw.get("match") or {})
        bad = set(match) - set(MATCH_KEYS)
        if bad:
            raise ValueError(f"grouping entry matches unknown keys {sorted(bad)} (known: {MATCH_KEYS})")
        group_by = _patterns(raw.get("group_by", ["owner"]))
        if not group_by:
            raise ValueError("grouping entry: group_by must name at least one field or label")
        kw: dict[str, Any] = {}
        for key in ("group_wait", "group_interval", "repeat_interval"):
            if key in raw:
                kw[f"{key}_ms"] = parse_duration_ms(raw[key])
        return cls(match={k: _patterns(v) for k, v in match.items()}, group_by=group_by, **kw)


DEFAULT_GROUPING = (GroupPolicy(match={"rule": ("unregistered",)}, group_by=("owner",)),)


@dataclass(frozen=True)
class RateLimit:
    """At most `max_pages` notifications per sink in each window of `per_ms` (breaches count, never wait)."""

    max_pages: int = 30
    per_ms: int = 10 * 60_000

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | Literal[False] | None) -> RateLimit | None:
        if raw is None or raw is False:
            return None
        raw = dict(raw)
        unknown = set(raw) - {"max", "per"}
        if unknown:
            raise ValueError(f"rate_limit: unknown keys {sorted(unknown)} (known: max, per)")
        out = cls(int(raw.get("max", cls.max_pages)), parse_duration_ms(raw.get("per", "10m")))
        if out.max_pages < 1 or out.per_ms < 1000:
            raise ValueError("rate_limit: max must be >= 1 and per >= 1s")
        return out


@dataclass(frozen=True)
class Subject:
    """What the policy needs to know about an incident."""

    experiment: str
    rule: str
    severity: str = "warning"
    owner: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    mode: str | None = None  # the registration's mode: "page" (default) or "observe"

    def value(self, name: str) -> str:
        if name in GROUP_FIELDS:
            return str(getattr(self, name) or "")
        return str(self.labels.get(name, ""))

    def as_match(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "rule": self.rule, "severity": self.severity, "owner": self.owner}


@dataclass(frozen=True)
class NotificationPolicy:
    unregistered: str = "digest"  # page | digest | observe
    grouping: tuple[GroupPolicy, ...] = DEFAULT_GROUPING
    severities: dict[str, str] = field(default_factory=dict)  # rule -> severity (overrides the registration)
    rate_limit: RateLimit | None = None  # default for every sink
    sink_rate_limits: dict[str, RateLimit | None] = field(default_factory=dict)  # per sink name

    # ---- decisions ---------------------------------------------------------------------------
    def severity(self, rule: str, default: str) -> str:
        return self.severities.get(rule, default)

    def disposition(self, s: Subject) -> tuple[Disposition, str | None]:
        """("page", None), ("observe", None) or ("digest", group key)."""
        if s.mode == "observe":
            return "observe", None
        if is_breach(s.rule):
            return "page", None
        if s.rule == "unregistered" and self.unregistered != "digest":
            return ("observe" if self.unregistered == "observe" else "page"), None
        policy = self.group_policy(s)
        if policy is None or policy.per_experiment:
            return "page", None
        return "digest", self.group_key(policy, s)

    def group_policy(self, s: Subject) -> GroupPolicy | None:
        if is_breach(s.rule):
            return None
        m = s.as_match()
        return next((g for g in self.grouping if g.matches(m)), None)

    def group_key(self, policy: GroupPolicy, s: Subject) -> str:
        """`rule=unregistered,owner=payments`: the grouping fields and their values (empty: unknown)."""
        index = self.grouping.index(policy)
        parts = [f"{name}={s.value(name)}" for name in policy.group_by]
        return f"{index}:" + ",".join(parts)

    def policy_of_key(self, key: str) -> GroupPolicy:
        return self.grouping[int(key.split(":", 1)[0])]

    def limit_for(self, sink: str) -> RateLimit | None:
        return self.sink_rate_limits.get(sink, self.rate_limit)

    # ---- configuration -------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: Mapping[str, Any] | None, env: Mapping[str, str] | None = None) -> NotificationPolicy:
        raw = dict(raw or {})
        env = env or {}
        unknown = set(raw) - {"unregistered", "grouping", "severities", "rate_limit", "sink_rate_limits"}
        if unknown:
            raise ValueError(f"notifications: unknown keys {sorted(unknown)}")
        unregistered = str((env.get(UNREGISTERED_ENV) or "").strip() or raw.get("unregistered", "digest"))
        if unregistered not in UNREGISTERED_MODES:
            source = UNREGISTERED_ENV if env.get(UNREGISTERED_ENV) else "notifications.unregistered"
            raise ValueError(f"{source}={unregistered!r}: must be one of {', '.join(UNREGISTERED_MODES)}")
        grouping = tuple(GroupPolicy.from_dict(g) for g in raw["grouping"]) if raw.get("grouping") else DEFAULT_GROUPING
        for g in grouping:
            rules = g.match.get("rule")
            if rules is not None and all(is_breach(r) for r in rules if not any(c in r for c in "*?[")):
                raise ValueError(f"grouping entry for {list(rules)}: breaches are never folded into a digest "
                                 f"(only {sorted(ADVISORY_RULES)} can be grouped)")
        severities = {str(k): str(v) for k, v in (raw.get("severities") or {}).items()}
        for rule, sev in severities.items():
            if sev not in SEVERITIES:
                raise ValueError(f"severities.{rule}: {sev!r} is not one of {', '.join(SEVERITIES)}")
        sink_limits = {str(k): RateLimit.from_dict(v) for k, v in (raw.get("sink_rate_limits") or {}).items()}
        return cls(unregistered=unregistered, grouping=grouping, severities=severities,
                   rate_limit=RateLimit.from_dict(raw.get("rate_limit")), sink_rate_limits=sink_limits)


def group_slug(key: str) -> str:
    """A short stable id for a group key (digest notification ids)."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]
