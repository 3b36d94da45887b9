"""`sample_ratio_mismatch`: the enrolled users' variant split differs from the declared weights.

Lindon & Malek's Dirichlet-multinomial Bayes factor averaged over concentrations
(detector.engine.stats), with its per-declaration constants hoisted (same floats). Counts are
distinct enrolled users by their first variant; the test restarts at each alarm, each new split
(after `EngineConfig.split_change_grace_ms` of event time, whose enrolments are left out: the
flag and the registration are rarely changed at the same instant) and each state merge, each
time in a new segment of the experiment's alpha budget (detector.engine.budget), so the lifetime bound holds across restarts.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import msgspec

from detector.engine import budget, stats
from detector.engine.config import EngineConfig
from detector.engine.rules.base import Batch, Finding, Plan, Rule, RuleState
from detector.registration.compiled import CompiledRegistration

if TYPE_CHECKING:
    from detector.engine.state import ExperimentState

_lgamma = math.lgamma
SRM_RESOLVE_MIN_USERS = 100  # the alarm state is judged on at least this many users since the alarm


class SrmState(msgspec.Struct, array_like=True):
    key: list[Any] | None = None  # the split the running test is for (None: restart at the next look)
    base: dict[str, int] = {}  # variant counts at the test's start
    start: int | None = None
    alarms: int = 0
    stat: float | None = None  # last ln BF
    seg: int = 1  # segment of the alpha budget
    grace_until: int | None = None  # after a split change: users enrolled before this (ms) are left out


def srm_key(exp: CompiledRegistration) -> list[Any]:
    """The declared split as [[variant, weight], ...], weight-0 variants left out."""
    assert exp.variants is not None  # what activates the rule
    return [[v, float(p)] for v, p in exp.variants.items() if p > 0]


class SrmPlan(Plan):
    __slots__ = ("key", "probs", "consts", "alpha")

    def __init__(self, rule: Rule, exp: CompiledRegistration, config: EngineConfig) -> None:
        super().__init__(rule, exp, config)
        self.alpha = exp.alpha if exp.alpha is not None else config.alpha
        key = self.key = srm_key(exp)
        probs = [p for _, p in key]
        tot = sum(probs)
        probs = self.probs = [p / tot for p in probs]
        consts = []
        if probs:  # the arithmetic of stats.srm_log_bf, with its constants hoisted
            for k in config.srm_concentrations:
                per = []
                a_sum = 0.0
                for p in probs:
                    a = k * p
                    per.append((a, _lgamma(a), math.log(p)))
                    a_sum += a
                consts.append((tuple(per), a_sum, _lgamma(a_sum)))
        self.consts = tuple(consts)


def _srm_log_mixture(counts: list[int], consts: tuple[tuple[tuple[tuple[float, float, float], ...], float, float], ...]) -> float:
    """stats.srm_log_mixture(counts, probs, ks) with per-(probs, k) constants precomputed (same floats)."""
    ls: list[float] = []
    for per, a_sum, lg_sum in consts:
        acc = 0.0
        n = 0
        for x, (a, lga, lp) in zip(counts, per):
            acc += _lgamma(a + x) - lga - x * lp
            n += x
        ls.append(acc + lg_sum - _lgamma(a_sum + n))
    m = max(ls)
    return m + math.log(sum(math.exp(x - m) for x in ls) / len(ls))


class Srm(Rule):
    name = "sample_ratio_mismatch"
    State = SrmState
    plan_type = SrmPlan

    def active(self, exp: CompiledRegistration | None) -> bool:
        return exp is not None and bool(exp.variants)

    def expected(self, exp: CompiledRegistration | None) -> dict[str, Any]:
        assert exp is not None  # active only under a registration
        return {"variants": dict(exp.variants or {}), "alpha": exp.alpha}

    def judge(self, st: "ExperimentState", batch: Batch, plan: SrmPlan) -> Finding | None:
        if not batch.ds:
            return None
        bmin, bmax = batch.bmin, batch.bmax
        exp = plan.exp
        assert exp is not None  # active only under a registration
        rs = self.state(st)
        key = plan.key
        if rs.key is not key and rs.key != key:  # new declaration (or first look): the test starts here
            if rs.key is not None:  # a new split: a new segment of the budget, after the grace
                rs.seg += 1
                grace = plan.config.split_change_grace_ms
                rs.grace_until = bmin + grace if grace > 0 else None
            rs.key = key
            batch_vc = batch.new_variants
            rs.base = {v: c - batch_vc.get(v, 0) for v, c in st.variants.items()}
            # the users of this batch belong to the new test
            rs.start = bmin
        if rs.grace_until is not None:
            # Grace after a split change (a time fixed by the declaration, not by the data, so
            # leaving these users out keeps the test valid): the test starts after it.
            if bmax < rs.grace_until:
                rs.base = dict(st.variants)
                rs.start = bmax
                return None
            rs.grace_until = None
        if len(key) < 2:
            return None
        vc, base = st.variants, rs.base
        counts = [vc.get(v, 0) - base.get(v, 0) for v, _ in key]
        if sum(counts) == 0:
            return None
        probs = plan.probs
        lbf = _srm_log_mixture(counts, plan.consts)
        rs.stat = lbf
        thr = budget.log_threshold(plan.alpha, self.name, rs.seg)
        if lbf < thr:
            return None
        name = self.name
        n = sum(counts)
        excess = int(round(sum(max(0.0, c - p * n) for c, p in zip(counts, probs))))
        rs.alarms += 1
        start = rs.start if rs.start is not None else bmin
        st.rule_count[name] = st.rule_count.get(name, 0) + excess
        st.rule_first.setdefault(name, start)
        st.rule_last[name] = bmax
        observed = {"variants": {v: c for (v, _), c in zip(key, counts)}, "users": n,
                    "observed_split": {v: (c / n) for (v, _), c in zip(key, counts)},
                    "log_bayes_factor": lbf, "threshold": thr, "alarms": rs.alarms,
                    "unexpected_variant_users": st.s - sum(vc.get(v, 0) for v, _ in key)}
        f = Finding(
            experiment=st.experiment, rule=name, severity=exp.severity,
            observed=observed, expected=plan.expected(),
            first_offending_event_at=start, detected_at=bmax, blast_radius=excess, sample_ids=(),
            statistic=lbf,
            summary=f"{st.experiment}: split " + "/".join(str(c) for c in counts) + " vs declared "
                    + "/".join(f"{p:g}" for p in probs) + f" (ln BF {lbf:.1f} >= {thr:.1f})")
        rs.base = dict(vc)
        rs.start = bmax
        rs.seg += 1
        return f

    def breached(self, st: "ExperimentState", exp: CompiledRegistration | None, config: EngineConfig) -> bool:
        """The alarm state, judged against `exp` on the users since the last alarm: "firing" until
        at least SRM_RESOLVE_MIN_USERS users since it no longer favour a mismatch (BF <= 1; the
        Dirichlet mixture's BF falls only like sqrt(k / n) on a balanced split)."""
        assert exp is not None
        rs = st.rules.get(self.name)
        key = srm_key(exp)
        if rs is None or rs.alarms == 0 or len(key) < 2:
            return False
        counts = [st.variants.get(v, 0) - rs.base.get(v, 0) for v, _ in key]
        if sum(counts) < SRM_RESOLVE_MIN_USERS:
            return True
        tot = sum(p for _, p in key)
        return stats.srm_log_mixture(counts, [p / tot for _, p in key], config.srm_concentrations) > 0.0

    def observe(self, st: "ExperimentState", exp: CompiledRegistration | None, config: EngineConfig, breached: bool) -> RuleState:
        return self.sequential_state(st, exp, config, breached, st.rules.get(self.name) or SrmState())

    def merge_state(self, mine: Any, other: Any, merged: Any) -> Any:
        """The test restarts at the merge point on the merged counts."""
        return SrmState(key=None, base=mine.base, start=mine.start, alarms=mine.alarms + other.alarms,
                        stat=mine.stat, seg=max(mine.seg, other.seg) + 1)


RULE = Srm()
