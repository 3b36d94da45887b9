"""`max_users_exceeded`: more distinct enrolled users than the declared cap."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from detector.engine.config import EngineConfig
from detector.engine.rules.base import FIRING, OK, Batch, Finding, Plan, Rule, RuleState, constant
from detector.registration.compiled import CompiledRegistration

if TYPE_CHECKING:
    from detector.engine.state import ExperimentState

MAX_USERS_BIT = 16


class MaxUsersState(msgspec.Struct, array_like=True):
    reported: int = 0  # enrolled lower bound at the last finding


class MaxUsers(Rule):
    name = "max_users_exceeded"
    bit = MAX_USERS_BIT
    State = MaxUsersState

    def active(self, exp: CompiledRegistration | None) -> bool:
        return exp is not None and exp.max_users is not None

    def expected(self, exp: CompiledRegistration | None) -> dict[str, Any]:
        assert exp is not None  # active only under a registration
        return {"max_users": exp.max_users}

    def judge(self, st: "ExperimentState", batch: Batch, plan: Plan) -> Finding | None:
        ds = batch.ds
        if not ds:
            return None
        exp = plan.exp
        assert exp is not None and exp.max_users is not None  # what activates the rule
        mx = exp.max_users
        cnt = st.enrolled_lower_bound()
        rs = self.state(st)
        if not (cnt > mx and cnt > rs.reported):
            return None
        name = self.name
        new_enr, enr_first = batch.new_enr, batch.enr_first
        base = max(rs.reported, mx)
        over = cnt - base
        if st.fset is None:
            # exact: the users enrolled after the cap, in arrival order
            s_before = st.s - ds
            offending = new_enr[max(0, mx - s_before):]
        else:
            offending = new_enr[-over:] if over < len(new_enr) else new_enr
        new = self.record(st, [enr_first[u] for u in offending], plan.config)
        rs.reported = cnt
        if name not in st.rule_first and offending:
            st.rule_first[name] = enr_first[offending[0]].ts
        det = enr_first[offending[0]].ts if offending else batch.bmax
        return self.finding(
            st, plan, new, det,
            observed_extra={"enrolled_users_lower_bound": cnt,
                            "enrolled_users_estimate": st.enrolled_estimate()},
            statistic=float(cnt),
            summary=f"{st.experiment}: at least {cnt} distinct enrolled users, declared max {mx}")

    def breached(self, st: "ExperimentState", exp: CompiledRegistration | None, config: EngineConfig) -> bool:
        assert exp is not None and exp.max_users is not None
        return st.enrolled_lower_bound() > exp.max_users

    def observe(self, st: "ExperimentState", exp: CompiledRegistration | None, config: EngineConfig, breached: bool) -> RuleState:
        assert exp is not None and exp.max_users is not None
        return RuleState(state=FIRING if breached else OK, statistic=float(st.enrolled_lower_bound()),
                         threshold=float(exp.max_users), offenders=st.rule_count.get(self.name, 0),
                         first_offending_event_at=st.rule_first.get(self.name),
                         last_offending_event_at=st.rule_last.get(self.name))

    def still_holds(self, st: Any, exp: CompiledRegistration | None) -> Callable[[str], bool]:
        """Which users are "over" is the arrival order at the time; the record holds while the
        experiment is still over its cap."""
        if exp is None or exp.max_users is None:
            return constant(False)
        try:
            return constant(st.enrolled_lower_bound() > exp.max_users)
        except AttributeError:  # a state without the bound: trust the record
            return constant(True)

    def merge_state(self, mine: Any, other: Any, merged: Any) -> Any:
        return MaxUsersState(max(mine.reported, other.reported))


RULE = MaxUsers()
