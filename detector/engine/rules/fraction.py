"""`fraction_exceeded`: more of the eligible traffic enrolled than the declared fraction.

The unit is a distinct user at their FIRST evaluation (`Batch.dn` new users, `Batch.dx` of them
enrolled then): a returning user whose status changes later (a ramp upgrading them) is not a
new trial, and a fingerprint collision drops a user from both counts, whatever their status.
Each trial is judged against the p0 in force when its batch is processed,
p0 = stats.effective_p0(fraction, tolerance, unenrolled_logged), so a registration change is
a new null from the next batch on and nothing restarts.

The statistic is the weighted Shiryaev-Roberts e-detector of detector.engine.stats (the
mixture SPRT from the segment's start plus the same test from every later start point, so a
late onset is judged on the users since the onset). An alarm (or a state merge) starts a new
segment with its own share of the experiment's lifetime alpha (detector.engine.budget).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from detector.engine import budget, stats
from detector.engine.config import EngineConfig
from detector.engine.rules.base import Batch, Finding, Plan, Rule, RuleState
from detector.registration.compiled import CompiledRegistration

_INF = float("inf")
_LOG_W0 = math.log(budget.START_WEIGHT)
# A rule that fired reads "firing" until the users since its last alarm favour the declaration
# by at least 20:1 (mixture e-value <= 1/20): see Fraction.breached.
RESOLVE_LOG_E = -math.log(20.0)


class FractionState(msgspec.Struct, array_like=True):
    p0: float | None = None  # p0 of the last look
    lr: list[float] | None = None  # ln R_j of the running segment (None: starts at the next look)
    seg: int = 1  # segment of the alpha budget (1: no alarm, no merge yet)
    sn: int = 0  # trials / enrolled trials in the running segment
    sx: int = 0
    onset: int | None = None  # where the running segment's evidence last started rising
    start: int | None = None  # when the running segment started
    alarms: int = 0
    stat: float | None = None  # last ln mean_j R_j


class FractionPlan(Plan):
    __slots__ = ("p0", "alpha", "alts", "log_pi")

    def __init__(self, rule: Rule, exp: CompiledRegistration, config: EngineConfig) -> None:
        super().__init__(rule, exp, config)
        self.alpha = exp.alpha if exp.alpha is not None else config.alpha
        p0 = self.p0 = stats.effective_p0(exp.fraction, exp.tolerance, exp.unenrolled_logged)
        self.alts = stats.fraction_alternatives(p0, config.fraction_ratios) if 0.0 < p0 < 1.0 else None
        self.log_pi = stats.ratio_log_weights(config.fraction_weights)


def start_log_weight(n_before: int, n_after: int) -> float:
    """ln of the change detector's weight on start points among trials n_before+1..n_after."""
    w = (1.0 - budget.START_WEIGHT) * (budget.start_cdf(n_after) - budget.start_cdf(n_before))
    return math.log(w) if w > 0.0 else -_INF


class Fraction(Rule):
    name = "fraction_exceeded"
    State = FractionState
    plan_type = FractionPlan

    def active(self, exp: CompiledRegistration | None) -> bool:
        return exp is not None and exp.fraction is not None and exp.unenrolled_logged > 0

    def expected(self, exp: CompiledRegistration | None) -> dict:
        return {"fraction": exp.fraction, "tolerance": exp.tolerance, "alpha": exp.alpha,
                "unenrolled_logged": exp.unenrolled_logged,
                "alert_above": exp.fraction * (1 + exp.tolerance)}

    # -- what a subclass on another unit of trials changes (rules/returning.py) --------------------
    def trials(self, batch: Batch) -> tuple[int, int]:
        """(trials, enrolled trials) of the batch: new users, enrolled at their first evaluation."""
        return batch.dn, batch.dx

    def null(self, fs: Any, plan: FractionPlan) -> tuple[float, Any]:
        """(p0, alternatives) the batch's trials are judged against."""
        return plan.p0, plan.alts

    def describe(self, st: Any, exp: CompiledRegistration, s: int, n: int, p0: float, lm: float, thr: float) -> str:
        return (f"{st.experiment}: {s} of {n} new eligible users enrolled at first evaluation ({s / n if n else 0:.4%}) "
                f"vs declared {exp.fraction:.4%} (ln e-value {lm:.1f} >= {thr:.1f})")

    def judge(self, st: Any, batch: Batch, plan: FractionPlan) -> Finding | None:
        dn, dx = self.trials(batch)
        fs = self.state(st)
        p0, alts = self.null(fs, plan)
        if not dn and not (p0 <= 0.0 and batch.ds):
            return None
        bmin, bmax = batch.bmin, batch.bmax
        exp = plan.exp
        fs.p0 = p0
        if fs.start is None:
            fs.start = bmin
        if p0 >= 1.0:
            fs.stat = 0.0
            return None
        if fs.lr is not None and alts is not None and len(fs.lr) != len(alts):
            # the state was written under another grid of alternatives (an engine upgrade): its
            # e-process cannot continue, so a new segment starts with its own share of alpha
            fs.seg += 1
            fs.lr = None
        if fs.lr is None:  # a new segment starts with this batch
            fs.lr = [_LOG_W0] * len(alts or (0,))
            fs.sn = fs.sx = 0
            fs.start = bmin
            fs.onset = None
        prev = fs.stat if fs.stat is not None else 0.0
        if p0 <= 0.0:  # declared 0%: any new enrolment now (new or returning user) is a breach, at no
            fs.sn += dn  # alpha cost (it cannot happen under the null); the e-process is left as it is
            fs.sx += dx
            lm = _INF if batch.ds else prev
        else:
            fs.lr = stats.sr_update(fs.lr, start_log_weight(fs.sn, fs.sn + dn), dx, dn, alts)
            fs.sn += dn
            fs.sx += dx
            lm = stats.log_weighted_sum(fs.lr, plan.log_pi)
        if lm <= prev:
            fs.onset = None
        elif fs.onset is None:
            fs.onset = bmin  # the evidence started rising here: the estimated onset
        fs.stat = lm
        thr = budget.log_threshold(plan.alpha, self.name, fs.seg)
        if lm < thr:
            return None
        name = self.name
        n, s = fs.sn, fs.sx
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
            "observed_fraction": st.f_x / st.n if st.n else None,
            "window_enrolled_users": s, "window_eligible_users": n, "window_fraction": est,
            "excess_enrolled_users": excess,
            "log_e_value": lm, "threshold": thr, "segment": fs.seg,
            "alarms": fs.alarms, "onset_estimate": onset,
        }
        f = Finding(
            experiment=st.experiment, rule=name, severity=exp.severity,
            observed=observed, expected=plan.expected(),
            first_offending_event_at=onset, detected_at=bmax, blast_radius=excess, sample_ids=(),
            statistic=lm,
            summary=self.describe(st, exp, s, n, p0, lm, thr))
        # the next segment starts with the next batch, with its own share of alpha
        fs.seg += 1
        fs.lr = None
        fs.sn = fs.sx = 0
        fs.start = bmax
        fs.onset = None
        fs.stat = 0.0
        return f

    def breached(self, st: Any, exp: CompiledRegistration, config: EngineConfig) -> bool:
        """The alarm state, judged against `exp` (possibly a newer declaration): "firing" from an
        alarm until the users since that alarm favour the declaration 20:1. A registration that
        catches up with a legitimate ramp resolves the page; one that does not keeps it."""
        fs = st.rules.get(self.name)
        if fs is None or fs.alarms == 0 or exp.unenrolled_logged <= 0:
            return False
        p0 = self.resolve_p0(fs, exp, config)
        if p0 >= 1.0:
            return False
        if p0 <= 0.0:
            return True
        alts = stats.fraction_alternatives(p0, config.fraction_ratios)
        return stats.log_mixture(fs.sx, fs.sn, alts, stats.ratio_log_weights(config.fraction_weights)) > RESOLVE_LOG_E

    def resolve_p0(self, fs: Any, exp: CompiledRegistration, config: EngineConfig) -> float:
        return stats.effective_p0(exp.fraction, exp.tolerance, exp.unenrolled_logged)

    def observe(self, st: Any, exp: CompiledRegistration | None, config: EngineConfig, breached: bool) -> RuleState:
        return self.sequential_state(st, exp, config, breached, st.rules.get(self.name) or FractionState())

    def merge_state(self, mine: Any, other: Any, merged: Any) -> Any:
        """The path cannot merge: a new segment starts (each side's spent segments stay spent)."""
        return self.State(p0=None, lr=None, seg=max(mine.seg, other.seg) + 1, start=mine.start,
                             alarms=mine.alarms + other.alarms, stat=None)


RULE = Fraction()
