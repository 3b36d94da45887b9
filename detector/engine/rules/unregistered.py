"""`unregistered`: assignments to an experiment nobody registered.

An unregistered experiment keeps only what discovery and a later registration need, at a cost
that does not grow with its users: the shared counts (eligible and enrolled users through the
user set, variant counts, first/last event) and a bounded sample of enrolled ids (`SAMPLE_IDS`).
The segment attributes seen are tallied once for every experiment by the partition
(`detector.discovery.AttributeSample`), not here. No per-user offender record: the blast
radius is the enrolled-user count plus the sample.

A finding is built when a page would show something new: the first event, the enrolled or
eligible count grown by more than `GROWTH` (10%) since the last finding, a new variant name,
or, while counts still change, `REFRESH_MS` of event time since the last finding (so an open
incident is refreshed well inside the lifecycle's quiet period while traffic continues).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from detector.engine.config import EngineConfig
from detector.engine.rules.base import NO_VARIANT, Batch, Finding, Plan, Rule, constant
from detector.registration.compiled import CompiledRegistration

if TYPE_CHECKING:
    from detector.engine.state import ExperimentState

SAMPLE_IDS = 100
GROWTH = 1.1
REFRESH_MS = 60_000


class UnregisteredState(msgspec.Struct, array_like=True):
    reported_users: int = 0  # eligible users at the last finding
    reported_enrolled: int = 0  # enrolled users at the last finding
    reported_variants: int = 0  # variant names at the last finding
    reported_at: int | None = None  # event time of the last finding


class Unregistered(Rule):
    name = "unregistered"
    State = UnregisteredState

    def active(self, exp: CompiledRegistration | None) -> bool:
        return exp is None

    def expected(self, exp: CompiledRegistration | None) -> dict[str, Any]:
        return {"registered": False}

    def judge(self, st: "ExperimentState", batch: Batch, plan: Plan) -> Finding | None:
        if not (batch.dn or batch.first_event_ever):
            return None
        name = self.name
        rs = self.state(st)
        new_enr, enr_first = batch.new_enr, batch.enr_first
        if new_enr:
            samples = st.rule_samples.get(name)
            if samples is None:
                samples = st.rule_samples[name] = []
            room = min(SAMPLE_IDS, plan.config.sample_ids_limit) - len(samples)
            if room > 0:
                samples.extend(new_enr[:room])
        st.rule_count[name] = st.s  # the blast radius: every enrolled user
        if name not in st.rule_first:
            st.rule_first[name] = batch.bmin
        st.rule_last[name] = max(st.rule_last.get(name, batch.bmax), batch.bmax)
        n, s, nv = st.n, st.s, len(st.variants)
        if not (batch.first_event_ever or s > rs.reported_enrolled * GROWTH or n > rs.reported_users * GROWTH
                or nv != rs.reported_variants or rs.reported_at is None
                or batch.bmax >= rs.reported_at + REFRESH_MS):
            return None
        rs.reported_users, rs.reported_enrolled, rs.reported_variants, rs.reported_at = n, s, nv, batch.bmax
        det = min(enr_first[u].ts for u in new_enr) if new_enr else batch.events[0].ts
        variants = dict(st.variants)
        if st.variant_none:
            variants[NO_VARIANT] = st.variant_none
        return self.finding(
            st, plan, new_enr, det,
            observed_extra={"variants": variants, "first_seen_at": st.first_ts, "last_seen_at": st.last_ts},
            summary=f"{st.experiment}: assignments with no registration: {s} enrolled of "
                    f"{n} eligible distinct users")

    def breached(self, st: "ExperimentState", exp: CompiledRegistration | None, config: EngineConfig) -> bool:
        return st.events > 0

    def still_holds(self, st: Any, exp: CompiledRegistration | None) -> Callable[[str], bool]:
        return constant(exp is None)

    def merge_state(self, mine: Any, other: Any, merged: Any) -> Any:
        merged.rule_count[self.name] = merged.s
        return UnregisteredState(max(mine.reported_users, other.reported_users),
                                 max(mine.reported_enrolled, other.reported_enrolled),
                                 max(mine.reported_variants, other.reported_variants),
                                 max((t for t in (mine.reported_at, other.reported_at) if t is not None), default=None))


RULE = Unregistered()
