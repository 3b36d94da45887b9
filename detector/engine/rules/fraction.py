"""`fraction_exceeded`: more of the eligible traffic enrolled than the declared fraction.

Mixture SPRT on the distinct counts since the test (re)started, plus a CUSUM for a late onset
(detector.engine.stats). One look per batch that changed the distinct counts; the test restarts
at each alarm and at each new declared p0 = fraction * (1 + tolerance).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from detector.engine import stats
from detector.engine.config import EngineConfig
from detector.engine.rules.base import FIRING, OK, Batch, Finding, Plan, Rule, RuleState
from detector.expectations import Expectation

_INF = float("inf")


class FractionState(msgspec.Struct, array_like=True):
    p0: float | None = None  # the p0 the running test is for (None: restart at the next look)
    n0: int = 0  # eligible / enrolled counts at the test's start
    s0: int = 0
    w: float = 0.0  # CUSUM
    onset: int | None = None  # when the CUSUM last left 0
    start: int | None = None  # when the running test started
    alarms: int = 0
    stat: float | None = None  # last ln M


class FractionPlan(Plan):
    __slots__ = ("p0", "thr", "alts", "cusum", "cusum_h")

    def __init__(self, rule: Rule, exp: Expectation, config: EngineConfig) -> None:
        super().__init__(rule, exp, config)
        self.thr = math.log(1.0 / exp.alpha)
        self.cusum_h = stats.cusum_threshold(config.cusum_users_per_false_alarm)
        self.alts = self.cusum = None
        p0 = self.p0 = exp.fraction * (1.0 + exp.tolerance)
        if 0.0 < p0 < 1.0:
            self.alts = stats.fraction_alternatives(p0, config.fraction_ratios)
            self.cusum = stats.cusum_params(p0)


class Fraction(Rule):
    name = "fraction_exceeded"
    State = FractionState
    plan_type = FractionPlan

    def active(self, exp: Expectation | None) -> bool:
        return exp is not None and exp.fraction is not None

    def expected(self, exp: Expectation | None) -> dict:
        return {"fraction": exp.fraction, "tolerance": exp.tolerance, "alpha": exp.alpha,
                "alert_above": exp.fraction * (1 + exp.tolerance)}

    def judge(self, st: Any, batch: Batch, plan: FractionPlan) -> Finding | None:
        dn = batch.dn
        if not dn:
            return None
        ds, bmin, bmax = batch.ds, batch.bmin, batch.bmax
        exp = plan.exp
        fs = self.state(st)
        p0 = plan.p0
        if fs.p0 != p0:  # new declaration (or first look): restart the test at this batch
            fs.p0 = p0
            fs.n0, fs.s0 = st.n - dn, st.s - ds
            fs.w = 0.0
            fs.onset = None
            fs.start = bmin
        if fs.start is None:
            fs.start = bmin
        thr = plan.thr
        h = plan.cusum_h
        n, s = st.n - fs.n0, st.s - fs.s0
        if p0 >= 1.0:
            fs.stat = 0.0
            return None
        if p0 <= 0.0:
            lm = _INF if s > 0 else 0.0
            w = lm
        else:
            lm = stats.log_mixture(s, n, plan.alts)
            a, b = plan.cusum
            w = fs.w + ds * a + (dn - ds) * b
            if w <= 0.0:
                w = 0.0
                fs.onset = None
            elif fs.w == 0.0 or fs.onset is None:
                fs.onset = bmin
        fs.w = w
        fs.stat = lm
        if lm < thr and w < h:
            return None
        name = self.name
        by = "mixture SPRT" if lm >= thr else "CUSUM"
        stat = lm if lm >= thr else w
        onset = fs.onset if fs.onset is not None else fs.start
        est = s / n if n else 0.0
        excess = max(0, int(round(s - p0 * n)))
        st.rule_count[name] = st.rule_count.get(name, 0) + excess
        if name not in st.rule_first or onset < st.rule_first[name]:
            st.rule_first[name] = onset
        st.rule_last[name] = bmax
        fs.alarms += 1
        observed = {
            "enrolled_users": st.s, "eligible_users": st.n,
            "observed_fraction": st.s / st.n if st.n else None,
            "window_enrolled_users": s, "window_eligible_users": n, "window_fraction": est,
            "excess_enrolled_users": excess,
            "log_e_value": lm, "cusum": w, "cusum_threshold": h, "threshold": thr,
            "detected_by": by, "alarms": fs.alarms,
        }
        f = Finding(
            experiment=st.experiment, rule=name, severity=exp.severity,
            observed=observed, expected=plan.expected(),
            first_offending_event_at=onset, detected_at=bmax, blast_radius=excess, sample_ids=(),
            statistic=stat,
            summary=f"{st.experiment}: {s} of {n} eligible users enrolled ({est:.4%}) vs declared "
                    f"{exp.fraction:.4%} ({by}, ln stat {stat:.1f} >= {thr if by != 'CUSUM' else h:.1f})")
        # restart the tests from here
        fs.n0, fs.s0 = st.n, st.s
        fs.w = 0.0
        fs.onset = None
        fs.start = bmax
        return f

    def breached(self, st: Any, exp: Expectation, config: EngineConfig) -> bool:
        """One look at the lifetime distinct counts (a single look is a valid test)."""
        p0 = exp.fraction * (1 + exp.tolerance)
        if p0 <= 0:
            return st.s > 0
        alts = stats.fraction_alternatives(p0, config.fraction_ratios)
        return stats.log_mixture(st.s, st.n, alts) >= math.log(1 / exp.alpha)

    def observe(self, st: Any, exp: Expectation | None, config: EngineConfig, breached: bool) -> RuleState:
        fs = st.rules.get(self.name) or FractionState()
        return RuleState(state=FIRING if breached else OK, statistic=fs.stat, threshold=math.log(1 / exp.alpha),
                         offenders=st.rule_count.get(self.name, 0),
                         first_offending_event_at=st.rule_first.get(self.name),
                         last_offending_event_at=st.rule_last.get(self.name), cusum=fs.w,
                         cusum_threshold=stats.cusum_threshold(config.cusum_users_per_false_alarm),
                         alarms=fs.alarms)

    def merge_state(self, mine: Any, other: Any, merged: Any) -> Any:
        """The test's path cannot merge: it restarts at the merge point on the merged counts."""
        return FractionState(p0=None, n0=mine.n0, s0=mine.s0, w=0.0, onset=None, start=mine.start,
                             alarms=mine.alarms + other.alarms, stat=mine.stat)


RULE = Fraction()
