"""`allowlist_breach`: an enrolled user who is not on the declared allowlist."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from detector.engine.config import EngineConfig
from detector.engine.rules.base import Batch, Finding, Plan, Rule, constant, stored_records, tmin, users
from detector.registration.compiled import CompiledRegistration

if TYPE_CHECKING:
    from detector.engine.state import ExperimentState

ALLOWLIST_BIT = 2


class Allowlist(Rule):
    name = "allowlist_breach"
    bit = ALLOWLIST_BIT

    def active(self, exp: CompiledRegistration | None) -> bool:
        return exp is not None and exp.allowlist is not None

    def expected(self, exp: CompiledRegistration | None) -> dict[str, Any]:
        assert exp is not None  # active only under a registration
        al = sorted(exp.allowlist or ())
        return {"allowlist": al[:100], "allowlist_size": len(al)}

    def judge(self, st: "ExperimentState", batch: Batch, plan: Plan) -> Finding | None:
        if not batch.enr_first:
            return None
        exp = plan.exp
        assert exp is not None and exp.allowlist is not None  # what activates the rule
        al = exp.allowlist
        bad = [e for u, e in batch.enr_first.items() if u not in al]
        if not bad:
            return None
        new = self.record(st, bad, plan.config)
        if not new:
            return None
        return self.finding(
            st, plan, new, tmin(new),
            # No user id here: summaries go to Slack, PagerDuty and read-only API callers; the ids
            # are in the blast radius (sample_ids, CSV), behind the read:users scope.
            summary=f"{st.experiment}: {users(st.rule_count[self.name], 'enrolled user')} not on the "
                    f"allowlist of {len(al)}")

    def breached(self, st: "ExperimentState", exp: CompiledRegistration | None, config: EngineConfig) -> bool:
        """Exact against every enrolled id while exact; else the stored records, the pigeonhole
        on the enrolled lower bound, and offenders counted beyond the stored records."""
        assert exp is not None and exp.allowlist is not None
        al = exp.allowlist
        if st.fset is None:
            return any(u not in al for u in st.exact_sets()[1])
        b = any(u not in al for u in st._off) or st.enrolled_lower_bound() > len(al)
        return b or st.rule_count.get(self.name, 0) > stored_records(st, self.bit)

    def still_holds(self, st: Any, exp: CompiledRegistration | None) -> Callable[[str], bool]:
        if exp is None or exp.allowlist is None:
            return constant(False)
        al = exp.allowlist
        return lambda uid: uid not in al


RULE = Allowlist()
