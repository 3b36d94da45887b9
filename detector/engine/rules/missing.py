"""`missing_variant`: a user enrolled with no variant in an experiment that declares variants.

Enrolled means the user was put in the experiment; with no variant, whatever they were shown
is unknown (an SDK that fell back to a default, a flag evaluated without its rule).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from detector.engine.rules.base import Plan, VariantRule
from detector.registration.compiled import CompiledRegistration

if TYPE_CHECKING:
    from detector.engine.state import ExperimentState

MISSING_BIT = 128


class MissingVariant(VariantRule):
    name = "missing_variant"
    bit = MISSING_BIT

    def active(self, exp: CompiledRegistration | None) -> bool:
        return exp is not None and bool(exp.variants)

    def expected(self, exp: CompiledRegistration | None) -> dict[str, Any]:
        assert exp is not None  # active only under a registration
        return {"variant_required": True, "variants": sorted(exp.variants or ())}

    def offending(self, exp: CompiledRegistration, variants: Iterable[str | None]) -> set[str | None]:
        return {None} if None in variants else set()

    def describe(self, st: "ExperimentState", plan: Plan, by_variant: dict[str, int]) -> str:
        return f"{st.experiment}: {st.rule_count[self.name]} users enrolled without a variant"


RULE = MissingVariant()
