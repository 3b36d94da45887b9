"""`undeclared_variant`: an enrolled user seen in a variant the registration does not declare.

The split check (`sample_ratio_mismatch`) counts declared variants only, so traffic to a
variant nobody declared (a typo'd arm, a stale flag value) would otherwise pass unseen.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from detector.engine.rules.base import Plan, VariantRule
from detector.registration.compiled import CompiledRegistration

if TYPE_CHECKING:
    from detector.engine.state import ExperimentState

UNDECLARED_BIT = 64


class UndeclaredVariant(VariantRule):
    name = "undeclared_variant"
    bit = UNDECLARED_BIT

    def active(self, exp: CompiledRegistration | None) -> bool:
        return exp is not None and bool(exp.variants)

    def expected(self, exp: CompiledRegistration | None) -> dict[str, Any]:
        assert exp is not None  # active only under a registration
        return {"variants": sorted(exp.variants or ())}

    def offending(self, exp: CompiledRegistration, variants: Iterable[str | None]) -> set[str | None]:
        declared = exp.variants or {}
        return {v for v in variants if v is not None and v not in declared}

    def describe(self, st: "ExperimentState", plan: Plan, by_variant: dict[str, int]) -> str:
        shown = sorted(by_variant)
        more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
        return (f"{st.experiment}: {st.rule_count[self.name]} enrolled users in undeclared variants "
                f"({', '.join(shown[:5])}{more})")


RULE = UndeclaredVariant()
