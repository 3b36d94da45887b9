"""`zero_weight_variant`: an enrolled user seen in a variant declared with weight 0.

A weight-0 variant is declared so that nobody gets it (a retired arm, a holdout kept in the
flag); a user exposed to it is out of target however the rest of the split looks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from detector.engine.rules.base import Plan, VariantRule
from detector.registration.compiled import CompiledRegistration

if TYPE_CHECKING:
    from detector.engine.state import ExperimentState

ZERO_WEIGHT_BIT = 32


class ZeroWeightVariant(VariantRule):
    name = "zero_weight_variant"
    bit = ZERO_WEIGHT_BIT

    def active(self, exp: CompiledRegistration | None) -> bool:
        return exp is not None and exp.variants is not None and any(w == 0 for w in exp.variants.values())

    def expected(self, exp: CompiledRegistration | None) -> dict[str, Any]:
        assert exp is not None  # active only under a registration
        return {"zero_weight_variants": sorted(v for v, w in (exp.variants or {}).items() if w == 0)}

    def offending(self, exp: CompiledRegistration, variants: Iterable[str | None]) -> set[str | None]:
        declared = exp.variants or {}
        return {v for v in variants if v is not None and declared.get(v) == 0}

    def describe(self, st: "ExperimentState", plan: Plan, by_variant: dict[str, int]) -> str:
        return (f"{st.experiment}: {st.rule_count[self.name]} enrolled users in variants declared with weight 0 "
                f"({', '.join(sorted(by_variant))})")


RULE = ZeroWeightVariant()
