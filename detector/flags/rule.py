"""`config_exceeds_declaration`: a flag's configuration exposes more than its registration declares.

Pure: a registration and the flag's configured exposure (before and after a change) in,
a finding (or None) out. Raised when the configuration:

* exposes any percentage of traffic while the registration has an `allowlist`;
* names user ids outside the allowlist, or more users than `max_users`;
* rolls a rule out to more than the declared `fraction` (times `1 + tolerance`);
* splits the exposed users differently from the declared `variants` (by more than
  `SPLIT_TOLERANCE`), or into an undeclared variant;
* reaches users outside the declared `segments` (no condition on a declared attribute, or
  one that allows values the registration does not).

Conditions it cannot map to attribute values (a regex, a number range) are never taken as
proof either way: a check that depends on them is reported as undetermined, not fired. A
configuration the reader marked "cannot tell" is not judged at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detector.engine.rules import Finding
from detector.registration.compiled import CompiledRegistration

from .model import ConfiguredExposure, RuleExposure, normalise

RULE = "config_exceeds_declaration"
SPLIT_TOLERANCE = 0.01  # absolute difference in a variant's share
SAMPLE_IDS = 20


@dataclass(frozen=True)
class ConfigFinding(Finding):
    """A finding whose incident opens with a configuration change, not with an enrolled user."""

    timeline_kind: str = "configuration_changed"
    timeline_detail: dict = field(default_factory=dict)  # flag, before, after: the change on the timeline


@dataclass(frozen=True)
class Verdict:
    """What the comparison found: reasons it exceeds, checks it could not decide, the blast radius."""

    reasons: tuple[str, ...]
    undetermined: tuple[str, ...]
    outside_users: tuple[str, ...]
    traffic_share: float  # largest share of (condition-matching) traffic an offending rule exposes

    @property
    def exceeds(self) -> bool:
        return bool(self.reasons)


def compare(exp: CompiledRegistration, conf: ConfiguredExposure) -> Verdict | None:
    """The comparison itself; None when the configuration cannot be judged ("cannot tell")."""
    if conf.cannot_tell is not None:
        return None
    reasons: list[str] = []
    undetermined: list[str] = []
    outside: list[str] = []
    share = 0.0
    rules = conf.exposing_rules
    allow = exp.allowlist
    for r in rules:
        where = r.describe()
        if r.traffic:
            if allow is not None:
                reasons.append(f"{where}: a percentage of traffic on an allowlist-only experiment")
                share = max(share, r.share)
            if exp.fraction is not None and r.share > exp.fraction * (1.0 + exp.tolerance) + 1e-9:
                reasons.append(f"{where}: above the declared fraction {exp.fraction:.2%}")
                share = max(share, r.share)
            if exp.segments:
                wider, unsure = _segments(r, exp.segments)
                if wider:
                    reasons.append(f"{where}: wider than the declared segments ({wider})")
                    share = max(share, r.share)
                elif unsure:
                    undetermined.append(f"{where}: cannot tell whether {unsure} stays within the declared segments")
        elif allow is not None:
            for u in r.users or ():
                if u not in allow and u not in outside:
                    outside.append(u)
        if exp.variants and r.kind not in ("force", "rollout") and r.split:
            bad = _split_differs(r.split, exp.variants)
            if bad:
                reasons.append(f"{where}: variant split differs from the declared one ({bad})")
    if outside:
        reasons.append(f"{len(outside)} configured user id(s) outside the allowlist of {len(allow or ())}")
    if exp.max_users is not None and rules and all(not r.traffic for r in rules):
        n = len(conf.users)
        if n > exp.max_users:
            reasons.append(f"the configuration lists {n} users, declared max_users {exp.max_users}")
    return Verdict(tuple(reasons), tuple(undetermined), tuple(outside), share)


def _segments(r: RuleExposure, declared: dict[str, frozenset[str]]) -> tuple[str, str]:
    """(how the rule is wider, what could not be decided) against the declared segments."""
    wider, unsure = [], []
    for attr, allowed in sorted(declared.items()):
        on_attr = [c for c in r.conditions if c.attribute == attr]
        ins = [c for c in on_attr if c.op == "in"]
        if ins:
            values = set.intersection(*(set(c.values) for c in ins))
            extra = sorted(values - set(allowed))
            if extra:
                wider.append(f"{attr} also {', '.join(extra[:5])}")
        elif on_attr:
            unsure.append(attr)
        else:
            wider.append(f"no condition on {attr}")
    return "; ".join(wider), ", ".join(unsure)


def _split_differs(split: dict[str, float], declared: dict[str, float]) -> str:
    want = normalise(dict(declared))
    problems = []
    for name, s in sorted(split.items()):
        if name not in want:
            problems.append(f"undeclared variant {name} at {s:.0%}")
        elif abs(s - want[name]) > SPLIT_TOLERANCE:
            problems.append(f"{name} {s:.0%} (declared {want[name]:.0%})")
    for name, w in sorted(want.items()):
        if name not in split and w > SPLIT_TOLERANCE:
            problems.append(f"{name} 0% (declared {w:.0%})")
    return ", ".join(problems)


def blast_radius_text(verdict: Verdict, users_per_day: float | None) -> str:
    """The expected blast radius in words: share of traffic, users a day at the current rate, listed users."""
    parts = []
    if verdict.traffic_share > 0:
        text = f"{verdict.traffic_share:.0%} of eligible traffic"
        if users_per_day is not None:
            text += f"; about {round(verdict.traffic_share * users_per_day):,} users a day at the current rate"
        else:
            text += " (no traffic rate known yet)"
        parts.append(text)
    if verdict.outside_users:
        parts.append(f"{len(verdict.outside_users)} listed user(s) outside the allowlist")
    return "; ".join(parts) or "the configured exposure beyond the declaration"


def config_exceeds_declaration(
    exp: CompiledRegistration,
    flag: dict[str, str],
    after: ConfiguredExposure,
    before: ConfiguredExposure | None,
    changed_at_ms: int,
    now_ms: int,
    users_per_day: float | None = None,
) -> ConfigFinding | None:
    """The finding when `after` exceeds the registration `exp`, else None.

    `flag` names the flag (`{"source": ..., "key": ...}`), `before` is the configuration
    before the change (None when this is the first one seen), `changed_at_ms` when the
    configuration changed (the document's own time, else when the watcher first saw it),
    `users_per_day` the experiment's current rate of eligible users, when known.
    """
    verdict = compare(exp, after)
    if verdict is None or not verdict.exceeds:
        return None
    radius = blast_radius_text(verdict, users_per_day)
    change = f"{before.describe() if before is not None else '(first seen)'} -> {after.describe()}"
    name = f"{flag.get('source')}:{flag.get('key')}"
    summary = (f"{exp.experiment}: flag {name} configuration exceeds the declaration: {verdict.reasons[0]}"
               + (f" (+{len(verdict.reasons) - 1} more)" if len(verdict.reasons) > 1 else "")
               + f"; changed {change}; expected blast radius: {radius}")
    observed = {
        "flag": dict(flag),
        "format": after.format,
        "configuration": after.describe(),
        "before": before.describe() if before is not None else None,
        "changed_at": changed_at_ms,
        "reasons": list(verdict.reasons),
        "undetermined": list(verdict.undetermined),
        "expected_blast_radius": radius,
        "traffic_share": verdict.traffic_share,
        "users_per_day": users_per_day,
    }
    expected = {
        "allowlist_size": len(exp.allowlist) if exp.allowlist is not None else None,
        "max_users": exp.max_users,
        "fraction": exp.fraction,
        "tolerance": exp.tolerance,
        "segments": {k: sorted(v) for k, v in exp.segments.items()} if exp.segments else None,
        "variants": dict(exp.variants) if exp.variants else None,
    }
    return ConfigFinding(
        experiment=exp.experiment,
        rule=RULE,
        severity=exp.severity,
        observed=observed,
        expected=expected,
        first_offending_event_at=int(changed_at_ms),
        detected_at=int(now_ms),
        blast_radius=len(verdict.outside_users),
        sample_ids=tuple(verdict.outside_users[:SAMPLE_IDS]),
        statistic=verdict.traffic_share,
        summary=summary,
        timeline_detail={"flag": name, "before": observed["before"], "after": observed["configuration"]},
    )
