"""Configured exposure: what a flag's configuration will expose, read from its definition.

One struct for every flag-configuration format (flagd, GrowthBook, Unleash): the readers in
this package turn a document into `ConfiguredExposure` per flag, and the rule in
`detector.flags.rule` compares it with the registration. Pure data, no I/O.

A flag is a list of rules, evaluated in order for each user (GrowthBook rules, the branches
of a flagd targeting expression, Unleash strategies). Each `RuleExposure` says which users
it can reach (an explicit user list, attribute conditions) and what share of them it
exposes, with which variant split. A user is *exposed* when the evaluation will report
them enrolled: in flagd terms a targeting match or a static value (not the `DEFAULT`
fallback), in GrowthBook a user in an experiment or given a forced non-default value, in
Unleash a user for whom the feature is enabled.

Where the exposure depends on something the document does not resolve (a saved group or
segment that is not in the payload, an operator the reader does not know, a custom
strategy, encrypted features), the flag says so in `cannot_tell` and nothing is judged:
the readers never guess.
"""

from __future__ import annotations

import re
from typing import Literal

import msgspec

_PERSONAL = re.compile(r"(?i)(user|email|mail|phone|^id$|_id$|Id$|targetingkey|account)")
ConditionOp = Literal["in", "not_in", "starts_with", "ends_with", "contains", "other"]


class Condition(msgspec.Struct, frozen=True):
    """One narrowing condition on an attribute of the evaluation context.

    `in`: the attribute must be one of `values`; `not_in`: must not be; the string ops
    match a prefix/suffix/substring; `other`: a condition the comparison cannot map to
    attribute values (a number range, a regex, an `or`), described in `text`.
    """

    attribute: str
    op: ConditionOp
    values: tuple[str, ...] = ()
    text: str = ""

    def describe(self) -> str:
        if self.op == "other":
            return self.text or f"a condition on {self.attribute}"
        if _PERSONAL.search(self.attribute):  # user ids, e-mails: personal data stays out of summaries
            return f"{self.attribute} {self.op.replace('_', ' ')} {len(self.values)} value(s)"
        vals = ", ".join(self.values[:10]) + (", ..." if len(self.values) > 10 else "")
        words = {"in": "in", "not_in": "not in", "starts_with": "starts with", "ends_with": "ends with",
                 "contains": "contains"}[self.op]
        return f"{self.attribute} {words} [{vals}]"


class RuleExposure(msgspec.Struct, frozen=True):
    """One rule of a flag: who it can reach and what share of them it exposes."""

    index: int  # 1-based position among the flag's rules
    kind: str  # e.g. "experiment", "rollout", "force", "fractional", "variant", "flexibleRollout", "userWithId"
    share: float  # 0..1 of the users this rule reaches (list and conditions) that it exposes
    users: tuple[str, ...] | None = None  # the rule only reaches these user ids (None: not a user list)
    conditions: tuple[Condition, ...] = ()  # all must hold (besides the user list)
    split: dict[str, float] = {}  # exposed variant -> share of the exposed users (sums to 1); {} = unknown/none
    label: str = ""  # where it is in the document (rule id, strategy name, branch)

    @property
    def exposes(self) -> bool:
        return self.share > 0.0

    @property
    def traffic(self) -> bool:
        """A percentage of traffic, as opposed to a list of users."""
        return self.users is None

    def describe(self) -> str:
        who = f"{len(self.users)} listed user(s)" if self.users is not None else "eligible traffic"
        if self.conditions:
            who += " where " + " and ".join(c.describe() for c in self.conditions)
        split = ""
        if len(self.split) > 1:
            split = " split " + "/".join(f"{k} {v:.0%}" for k, v in self.split.items())
        return f"rule {self.index} ({self.label or self.kind}): {self.share:.0%} of {who}{split}"


class ConfiguredExposure(msgspec.Struct, frozen=True):
    """What one flag's configuration exposes."""

    format: str  # "flagd", "growthbook", "unleash"
    key: str
    enabled: bool = True
    rules: tuple[RuleExposure, ...] = ()
    cannot_tell: str | None = None  # why the exposure cannot be determined (then nothing is judged)
    updated_at: int | None = None  # epoch ms of the configuration, when the document says

    @property
    def exposing_rules(self) -> tuple[RuleExposure, ...]:
        return tuple(r for r in self.rules if r.exposes) if self.enabled else ()

    @property
    def users(self) -> frozenset[str]:
        """Every user id an exposing list rule names."""
        return frozenset(u for r in self.exposing_rules if r.users is not None for u in r.users)

    @property
    def traffic_share(self) -> tuple[float, float]:
        """Share of all eligible traffic exposed by unconditioned traffic rules: (at least, at most).

        Rules hash users independently or not (seeds differ by format and rule), so the
        combined share lies between the largest rule and the sum of them.
        """
        shares = [r.share for r in self.exposing_rules if r.traffic and not r.conditions]
        if not shares:
            return 0.0, 0.0
        return max(shares), min(1.0, sum(shares))

    def describe(self) -> str:
        if self.cannot_tell:
            return f"cannot tell: {self.cannot_tell}"
        if not self.enabled:
            return "off"
        if not self.exposing_rules:
            return "on, exposing nobody" + (f" ({'; '.join(r.describe() for r in self.rules)})" if self.rules else "")
        return "; ".join(r.describe() for r in self.rules)


class FlagDocument(msgspec.Struct, frozen=True):
    """A whole configuration document: its flags by key, and a problem with the document, if any."""

    format: str
    flags: dict[str, ConfiguredExposure] = {}
    cannot_tell: str | None = None  # the document as a whole cannot be read (e.g. encrypted features)
    updated_at: int | None = None


class CannotTell(Exception):
    """Raised inside a reader when a flag's exposure depends on something unresolvable; the message says what."""


class FormatError(ValueError):
    """The document is not in the expected format (a clear message; the watcher counts it)."""


def normalise(weights: dict[str, float]) -> dict[str, float]:
    """Weights as shares summing to 1 (merging equal names); {} when they sum to nothing."""
    total = sum(w for w in weights.values() if w > 0)
    if total <= 0:
        return {}
    return {k: w / total for k, w in weights.items() if w > 0}


def intersect(a: tuple[str, ...] | None, b: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Two user-list restrictions that must both hold (None: no list), keeping `a`'s order."""
    if a is None:
        return b
    if b is None:
        return a
    keep = set(b)
    return tuple(x for x in a if x in keep)
