"""`outside_window`: a user enrolled before `starts_at` or at/after `ends_at`.

Both edges get a grace of `EngineConfig.window_grace_ms` (default one hour: the producer clock
skew the decoder accepts), so a clock running ahead does not page.

The offending time span of each stored offender is kept (rule state), so a later declaration
can re-judge them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from detector.engine.config import DEFAULT_CONFIG, EngineConfig
from detector.engine.rules.base import Batch, Finding, Plan, Rule, constant, tmin, users
from detector.events import Assignment
from detector.registration.compiled import CompiledRegistration

if TYPE_CHECKING:
    from detector.engine.state import ExperimentState

WINDOW_BIT = 8
_INF = math.inf


class WindowState(msgspec.Struct, array_like=True):
    spans: dict[str, list[int]] = {}  # stored offender -> [first, last] offending event ms


def window_of(exp: CompiledRegistration, config: EngineConfig = DEFAULT_CONFIG) -> tuple[float, float]:
    """[lo, hi) of the declared window widened by the grace at both edges."""
    g = config.window_grace_ms
    return (-_INF if exp.starts_at is None else exp.starts_at - g, _INF if exp.ends_at is None else exp.ends_at + g)


class WindowPlan(Plan):
    __slots__ = ("lo", "hi")

    def __init__(self, rule: Rule, exp: CompiledRegistration, config: EngineConfig) -> None:
        super().__init__(rule, exp, config)
        self.lo, self.hi = window_of(exp, config)


class Window(Rule):
    name = "outside_window"
    bit = WINDOW_BIT
    State = WindowState
    plan_type = WindowPlan

    def active(self, exp: CompiledRegistration | None) -> bool:
        return exp is not None and (exp.starts_at is not None or exp.ends_at is not None)

    def expected(self, exp: CompiledRegistration | None) -> dict[str, Any]:
        assert exp is not None  # active only under a registration
        return {"starts_at": exp.starts_at, "ends_at": exp.ends_at}

    def judge(self, st: "ExperimentState", batch: Batch, plan: WindowPlan) -> Finding | None:
        enr_events = batch.enr_events
        if not enr_events:
            return None
        lo, hi = plan.lo, plan.hi
        # fast path: the whole batch inside the window
        if lo <= batch.bmin and batch.bmax < hi:
            return None
        bad_events = [e for e in enr_events if not (lo <= e.ts < hi)]
        if not bad_events:
            return None
        firsts: dict[str, Assignment] = {}
        for e in bad_events:
            if e.user_id not in firsts:
                firsts[e.user_id] = e
        wt = self.state(st).spans
        new = self.record(st, firsts.values(), plan.config)
        newset = {u for u, _ in new}
        for e in bad_events:  # offending time span per stored offender, for re-judging
            u = e.user_id
            r = wt.get(u)
            if r is not None:
                if e.ts < r[0]:
                    r[0] = e.ts
                if e.ts > r[1]:
                    r[1] = e.ts
            elif u in newset and u in st._off:
                wt[u] = [e.ts, e.ts]
        if not new:
            return None
        return self.finding(
            st, plan, new, tmin(new),
            summary=f"{st.experiment}: {users(st.rule_count[self.name])} enrolled outside "
                    f"the declared window")

    def breached(self, st: "ExperimentState", exp: CompiledRegistration | None, config: EngineConfig) -> bool:
        assert exp is not None  # active only under a registration
        lo, hi = window_of(exp, config)
        first, last = st.enr_min_ts, st.enr_max_ts
        return first is not None and last is not None and (first < lo or last >= hi)

    def still_holds(self, st: Any, exp: CompiledRegistration | None) -> Callable[[str], bool]:
        if exp is None or not self.active(exp):
            return constant(False)
        lo, hi = window_of(exp)
        rs = st.rules.get(self.name) if hasattr(st, "rules") else None
        spans = rs.spans if rs is not None else {}

        def holds(uid: str) -> bool:
            span = spans.get(uid)
            return True if span is None else (span[0] < lo or span[1] >= hi)
        return holds

    def merge_state(self, mine: Any, other: Any, merged: Any) -> Any:
        out = {u: list(s) for u, s in mine.spans.items()}
        offs = merged._off
        for uid, (lo, hi) in other.spans.items():
            if uid in offs:
                cur = out.get(uid)
                out[uid] = [lo, hi] if cur is None else [min(cur[0], lo), max(cur[1], hi)]
        return WindowState(out)


RULE = Window()
