"""The rules, one module each, and their registry.

`RULES` is the only list of rules: the engine judges them in this order, and the state
(offender bits, per-rule state), `CompiledRegistration.active_rules()`, the OpenAPI rule enum, the
API's expected view, `observe()`, the metrics and the blast radius's re-judging all read it.
Adding a rule: its module here (a `Rule` subclass and `RULE = ...`), its tests, one line below.
"""

from __future__ import annotations

from detector.engine.rules import (allowlist, crossover, fraction, max_users, missing, returning, segments, srm,
                                  undeclared, unregistered, window, zero_weight)
from detector.engine.rules.base import FIRING, OK, Batch, Finding, Plan, Rule, RuleState
from detector.registration.compiled import CompiledRegistration

RULES: tuple[Rule, ...] = (
    unregistered.RULE,
    allowlist.RULE,
    max_users.RULE,
    fraction.RULE,
    returning.RULE,
    segments.RULE,
    window.RULE,
    srm.RULE,
    zero_weight.RULE,
    undeclared.RULE,
    missing.RULE,
    crossover.RULE,
)

RULE_NAMES: tuple[str, ...] = tuple(r.name for r in RULES)
BY_NAME: dict[str, Rule] = {r.name: r for r in RULES}
# offender records carry their rules as a bitmask
RULE_BITS: dict[str, int] = {r.name: r.bit for r in RULES if r.bit}
assert len(set(RULE_BITS.values())) == len(RULE_BITS) and all(b & (b - 1) == 0 for b in RULE_BITS.values())
MASK_RULES: tuple[tuple[str, ...], ...] = tuple(
    tuple(r for r, b in RULE_BITS.items() if m & b) for m in range(2 * max(RULE_BITS.values())))


def active_rules(exp: CompiledRegistration | None) -> list[str]:
    """The rules a declaration (None: no registration) switches on, in registry order."""
    return [r.name for r in RULES if r.active(exp)]


__all__ = ["BY_NAME", "FIRING", "MASK_RULES", "OK", "RULES", "RULE_BITS", "RULE_NAMES", "Batch", "Finding",
           "Plan", "Rule", "RuleState", "active_rules"]
