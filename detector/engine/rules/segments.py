"""`segment_breach`: an enrolled user whose attributes fall outside the declared segments.

An enrolled event with no attributes at all is counted (`missing`, reported by `observe()`),
and is a breach only with `EngineConfig.segment_missing_breach`. The offending attributes of
each stored offender are kept (rule state), so a later declaration can re-judge them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import msgspec

from detector.engine.config import EngineConfig
from detector.engine.rules.base import Batch, Finding, Plan, Rule, RuleState, constant, stored_records, tmin, users
from detector.events import Assignment
from detector.registration.compiled import CompiledRegistration

if TYPE_CHECKING:
    from detector.engine.state import ExperimentState

SEGMENT_BIT = 4


class SegmentState(msgspec.Struct, array_like=True):
    attrs: dict[str, dict[str, str] | None] = {}  # stored offender -> its offending attributes
    missing: int = 0  # enrolled events seen without attributes


class SegmentPlan(Plan):
    __slots__ = ("segs",)

    def __init__(self, rule: Rule, exp: CompiledRegistration, config: EngineConfig) -> None:
        super().__init__(rule, exp, config)
        assert exp.segments is not None  # what activates the rule
        self.segs = tuple(exp.segments.items())


def _outside(a: dict[str, str] | None, segs: Iterable[tuple[str, frozenset[str]]], missing_breach: bool = True) -> bool:
    if not a:
        return missing_breach
    return any(a.get(k) not in allowed for k, allowed in segs)


class Segments(Rule):
    name = "segment_breach"
    bit = SEGMENT_BIT
    State = SegmentState
    plan_type = SegmentPlan

    def active(self, exp: CompiledRegistration | None) -> bool:
        return exp is not None and bool(exp.segments)

    def expected(self, exp: CompiledRegistration | None) -> dict[str, Any]:
        assert exp is not None  # active only under a registration
        return {"segments": {k: sorted(v) for k, v in (exp.segments or {}).items()}}

    def judge(self, st: "ExperimentState", batch: Batch, plan: SegmentPlan) -> Finding | None:
        if not batch.enr_events:
            return None
        segs = plan.segs
        bad_first: dict[str, Assignment] = {}
        missing_breach = plan.config.segment_missing_breach
        missing = 0
        for e in batch.enr_events:
            a = e.attributes
            if not a:  # no attributes at all: counted; a breach only if configured so
                missing += 1
                if missing_breach and e.user_id not in bad_first:
                    bad_first[e.user_id] = e
                continue
            for k, allowed in segs:
                if a.get(k) not in allowed:
                    if e.user_id not in bad_first:
                        bad_first[e.user_id] = e
                    break
        if missing:
            self.state(st).missing += missing
        if not bad_first:
            return None
        new = self.record(st, bad_first.values(), plan.config)
        if not new:
            return None
        sa = self.state(st).attrs
        offs = st._off
        for u, _ in new:
            if u in offs:
                sa[u] = bad_first[u].attributes
        return self.finding(
            st, plan, new, tmin(new),
            summary=f"{st.experiment}: {users(st.rule_count[self.name], 'enrolled user')} outside "
                    f"segments {', '.join(f'{k}={sorted(v)}' for k, v in segs)}")

    def breached(self, st: "ExperimentState", exp: CompiledRegistration | None, config: EngineConfig) -> bool:
        assert exp is not None and exp.segments is not None
        segs = tuple(exp.segments.items())
        rs = st.rules.get(self.name)
        mb = config.segment_missing_breach
        if rs is not None and any(_outside(a, segs, mb) for a in rs.attrs.values()):
            return True
        return st.rule_count.get(self.name, 0) > stored_records(st, self.bit)

    def observe(self, st: "ExperimentState", exp: CompiledRegistration | None, config: EngineConfig, breached: bool) -> RuleState:
        rs = super().observe(st, exp, config, breached)
        seg = st.rules.get(self.name)
        rs.missing_attributes = seg.missing if seg is not None else 0
        return rs

    def still_holds(self, st: Any, exp: CompiledRegistration | None) -> Callable[[str], bool]:
        if exp is None or not exp.segments:
            return constant(False)
        segs = tuple(exp.segments.items())
        rs = st.rules.get(self.name) if hasattr(st, "rules") else None
        attrs = rs.attrs if rs is not None else {}

        def holds(uid: str) -> bool:
            if uid not in attrs:
                return True
            return _outside(attrs[uid], segs)
        return holds

    def merge_state(self, mine: Any, other: Any, merged: Any) -> Any:
        out = dict(mine.attrs)
        offs = merged._off
        for uid, a in other.attrs.items():
            if uid in offs:
                out.setdefault(uid, a)
        return SegmentState(out, mine.missing + other.missing)


RULE = Segments()
