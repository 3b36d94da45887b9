"""`unregistered`: assignments to an experiment nobody registered."""

from __future__ import annotations

from typing import Any

import msgspec

from detector.engine.config import EngineConfig
from detector.engine.rules.base import Batch, Finding, Plan, Rule, constant, tmin
from detector.expectations import Expectation

UNREGISTERED_BIT = 1


class UnregisteredState(msgspec.Struct, array_like=True):
    reported_users: int = 0  # eligible users at the last finding


class Unregistered(Rule):
    name = "unregistered"
    bit = UNREGISTERED_BIT
    State = UnregisteredState

    def active(self, exp: Expectation | None) -> bool:
        return exp is None

    def expected(self, exp: Expectation | None) -> dict:
        return {"registered": False}

    def judge(self, st: Any, batch: Batch, plan: Plan) -> Finding | None:
        if not (batch.dn or batch.first_event_ever):
            return None
        name = self.name
        enr_first = batch.enr_first
        new = self.record(st, [enr_first[u] for u in batch.new_enr], plan.config) if batch.new_enr else []
        if name not in st.rule_first:
            st.rule_first[name] = batch.bmin
        st.rule_last[name] = max(st.rule_last.get(name, batch.bmax), batch.bmax)
        det = tmin(new) if new else batch.events[0].ts
        self.state(st).reported_users = st.n
        return self.finding(
            st, plan, new, det,
            summary=f"{st.experiment}: assignments with no registration: {st.s} enrolled of "
                    f"{st.n} eligible distinct users")

    def breached(self, st: Any, exp: Expectation | None, config: EngineConfig) -> bool:
        return st.events > 0

    def still_holds(self, st: Any, exp: Expectation | None):
        return constant(exp is None)

    def merge_state(self, mine: Any, other: Any, merged: Any) -> Any:
        return UnregisteredState(max(mine.reported_users, other.reported_users))


RULE = Unregistered()
