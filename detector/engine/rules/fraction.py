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
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec

from detector.engine import budget, stats
from detector.engine.config import EngineConfig
from detector.engine.rules.base import Batch, Finding, Plan, Rule, RuleState
from detector.registration.compiled import CompiledRegistration

if TYPE_CHECKING:
    from detector.engine.state import ExperimentState

_INF = float("inf")
_LOG_W0 = math.log(budget.START_WEIGHT)
# A rule that fired reads "firing" until the users since its last alarm favour the declaration
# by at least 20:1 (mixture e-value <= 1/20): see Fraction.breached.
RESOLVE_LOG_E = -math.log(20.0)


class SequentialState(msgspec.Struct, array_like=True):
    """The e-detector's running state (shared by the fraction and returning-users rules)."""

    p0: float | None = None  # p0 of the last look
    lr: list[float] | None = None  # ln R_j of the running segment (None: starts at the next look;
    # []: the segment runs but no e-process yet, at a declared 0%)
    seg: int = 1  # segment of the alpha budget (1: no alarm, no merge yet)
    sn: int = 0  # trials / enrolled trials in the running segment
    sx: int = 0
    onset: int | None = None  # where the running segment's evidence last started rising
    start: int | None = None  # when the running segment started
    alarms: int = 0
    stat: float | None = None  # last ln sum_j pi_j R_j


class FractionState(SequentialState, array_like=True):
    grid: int = 0  # grid_id of the alternatives lr was built on (0: the uniform 10-ratio grid of earlier releases)
    cap: float = 0.0  # ln of the capital the running e-process carries over from an earlier grid


LEGACY_GRID = 0  # states written before grids had ids: uniform weights over len(lr) ratios


class FractionPlan(Plan):
    __slots__ = ("p0", "alpha", "alts", "log_pi", "grid")

    def __init__(self, rule: Rule, exp: CompiledRegistration, config: EngineConfig) -> None:
        super().__init__(rule, exp, config)
        self.alpha = exp.alpha if exp.alpha is not None else config.alpha
        assert exp.fraction is not None  # what activates the rule
        p0 = self.p0 = stats.effective_p0(exp.fraction, exp.tolerance, exp.unenrolled_logged)
        self.alts = stats.fraction_alternatives(p0, config.fraction_ratios) if 0.0 < p0 < 1.0 else None
        self.log_pi = config.fraction_log_pi
        self.grid = config.fraction_grid


def begin(fs: Any, lr: list[float] | None, cap: float, grid: int, at: int) -> None:
    """Start the running e-process over from `at` (ln R_j `lr`; None: at the next look), with
    capital `cap`, built on `grid`: no trials and no onset yet."""
    fs.lr, fs.cap, fs.grid = lr, cap, grid
    fs.sn = fs.sx = 0
    fs.start = at
    fs.onset = None


def start_log_weight(n_before: int, n_after: int) -> float:
    """ln of the change detector's weight on start points among trials n_before+1..n_after."""
    w = (1.0 - budget.START_WEIGHT) * (budget.start_cdf(n_after) - budget.start_cdf(n_before))
    return math.log(w) if w > 0.0 else -_INF


class Fraction(Rule):
    name = "fraction_exceeded"
    State: ClassVar[type[msgspec.Struct] | None] = FractionState  # ReturningState: the same fields, pmin first
    plan_type = FractionPlan

    def active(self, exp: CompiledRegistration | None) -> bool:
        return exp is not None and exp.fraction is not None and exp.unenrolled_logged > 0

    def expected(self, exp: CompiledRegistration | None) -> dict[str, Any]:
        assert exp is not None and exp.fraction is not None  # what activates the rule
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

    def describe(self, st: "ExperimentState", exp: CompiledRegistration, s: int, n: int, p0: float, lm: float, thr: float) -> str:
        return (f"{st.experiment}: {s} of {n} new eligible users enrolled at first evaluation ({s / n if n else 0:.4%}) "
                f"vs declared {exp.fraction:.4%} (ln e-value {lm:.1f} >= {thr:.1f})")

    def judge(self, st: "ExperimentState", batch: Batch, plan: FractionPlan) -> Finding | None:
        dn, dx = self.trials(batch)
        fs = self.state(st)
        p0, alts = self.null(fs, plan)
        if not dn and not (p0 <= 0.0 and batch.ds):
            return None
        bmin, bmax = batch.bmin, batch.bmax
        exp = plan.exp
        assert exp is not None  # active only under a registration
        fs.p0 = p0
        if fs.start is None:
            fs.start = bmin
        if p0 >= 1.0:
            fs.stat = 0.0
            return None
        if fs.lr and alts is not None and fs.grid != plan.grid:
            self.change_grid(fs, plan, bmin)
        if fs.lr is None or (not fs.lr and alts is not None):
            # a new segment starts with this batch (its e-process too, unless declared 0%: []), or
            # the running segment's e-process starts at a ramp from 0%
            begin(fs, [_LOG_W0] * len(alts) if alts is not None else [], 0.0, plan.grid, bmin)
        prev = fs.stat if fs.stat is not None else 0.0
        if p0 <= 0.0:  # declared 0%: any new enrolment now (new or returning user) is a breach, at no
            fs.sn += dn  # alpha cost (it cannot happen under the null); the e-process is left as it is
            fs.sx += dx
            lm = _INF if batch.ds else prev
        else:
            assert alts is not None
            lw = fs.cap + start_log_weight(fs.sn, fs.sn + dn)
            fs.lr = stats.sr_update(fs.lr, lw, dx, dn, alts)
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
        begin(fs, None, 0.0, fs.grid, bmax)
        fs.stat = 0.0
        return f

    def change_grid(self, fs: Any, plan: FractionPlan, bmin: int) -> None:
        """The state's e-process was built on another grid of alternatives (an engine upgrade).

        The evidence carries over, in the same segment: the new e-process starts with capital
        C times a fresh e-process of initial value 1, where C is at most the old e-value at this
        moment (legacy grid: its statistic, the uniform mean of the R_j without the unspent start
        weight; another grid, whose weights this engine does not know: min_j R_j, below any
        weighted mean). The old process up to now followed by Q_old(now) times a fresh
        supermartingale is one supermartingale, and the statistic stays below it."""
        lr = fs.lr or [0.0]
        cap = stats.log_mean_exp(lr) if fs.grid == LEGACY_GRID else min(lr)  # lr includes any earlier capital
        begin(fs, [cap + _LOG_W0] * len(plan.alts or ()), cap, plan.grid, bmin)
        fs.stat = cap

    def breached(self, st: "ExperimentState", exp: CompiledRegistration | None, config: EngineConfig) -> bool:
        """The alarm state, judged against `exp` (possibly a newer declaration): "firing" from an
        alarm until the users since that alarm favour the declaration 20:1. A registration that
        catches up with a legitimate ramp resolves the page; one that does not keeps it."""
        assert exp is not None  # active only under a registration
        fs = st.rules.get(self.name)
        if fs is None or fs.alarms == 0 or exp.unenrolled_logged <= 0:
            return False
        p0 = self.resolve_p0(fs, exp, config)
        if p0 >= 1.0:
            return False
        if p0 <= 0.0:
            return True
        alts = stats.fraction_alternatives(p0, config.fraction_ratios)
        return stats.log_mixture(fs.sx, fs.sn, alts, config.fraction_log_pi) > RESOLVE_LOG_E

    def resolve_p0(self, fs: Any, exp: CompiledRegistration, config: EngineConfig) -> float:
        assert exp.fraction is not None
        return stats.effective_p0(exp.fraction, exp.tolerance, exp.unenrolled_logged)

    def observe(self, st: "ExperimentState", exp: CompiledRegistration | None, config: EngineConfig, breached: bool) -> RuleState:
        return self.sequential_state(st, exp, config, breached, st.rules.get(self.name) or FractionState())

    def merge_state(self, mine: Any, other: Any, merged: Any) -> Any:
        """The path cannot merge: a new segment starts (each side's spent segments stay spent)."""
        state = type(mine)  # FractionState or ReturningState
        return state(p0=None, lr=None, seg=max(mine.seg, other.seg) + 1, start=mine.start,
                     alarms=mine.alarms + other.alarms, stat=None)


RULE = Fraction()
