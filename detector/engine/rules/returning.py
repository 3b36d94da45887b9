"""`returning_enrolled_exceeded`: returning users enrolled beyond what the declared fraction allows.

The fraction rule (rules/fraction.py) judges each user at their FIRST evaluation, so a flag
that enrols users only when they come back (a targeting bug on "returning users", a ramp done
in the flag but not declared) never reaches it. This rule judges the other unit: a trial is a
user in a batch who was not enrolled before it (a returning user recorded not enrolled, or a
new user whose first evaluation was not enrolled), and it succeeds when that user is enrolled
in the batch (one trial per user per batch: one look per batch, like every statistic here).

Null rate. By default the same p0 as the fraction rule (detector.engine.stats.effective_p0:
fraction x (1 + tolerance), corrected for sampled not-enrolled logging): each evaluation of a
user not enrolled so far is enrolled with probability at most the declared fraction. That
holds for an SDK that re-draws at every evaluation (non-sticky: P = p) and for sticky hash
bucketing under any declared ramp (a user left out at p_old and evaluated at p is enrolled
with probability (p - p_old) / (1 - p_old) <= p), whatever the flag ran at before the ramp, so
legitimate re-evaluation noise never pages. The price: a bug enrolling returning users at a
rate between 0 and p0 is not evidence here (the fraction rule sees any rise among new users).

`EngineConfig.returning_assume_sticky` (off by default) tests the sharper sticky bound
(p (1 + tolerance') - p_min)+ / (1 - p_min), p_min the smallest fraction declared over the
experiment's life (kept in the state; the bound decreases in p_min, so it holds for every
user whatever declaration they were left out under), tolerance' = max(tolerance,
`returning_min_tolerance`). With no ramp that is p tolerance' / (1 - p): the share of the
not-enrolled users that may turn enrolled while the lifetime fraction stays within
p (1 + tolerance'). It assumes hash bucketing and a flag at its declared fraction before each
declared increase (1% declared, 0.5% real, ramp to exactly 5%: 4.52% of the left-out users
turn enrolled, within the 4.55% allowed at tolerance 0.1; a flag at 0.2% before the same
ramp, 4.81%, is evidence).

Same e-detector as the fraction rule (weighted Shiryaev-Roberts over start points) with its
own share of the experiment's alpha (detector.engine.budget.RULE_SHARE).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from detector.engine import stats
from detector.engine.rules.base import Batch
from detector.engine.rules.fraction import Fraction, FractionPlan, SequentialState
from detector.registration.compiled import CompiledRegistration

if TYPE_CHECKING:
    from detector.engine.state import ExperimentState


class ReturningState(SequentialState, array_like=True):
    pmin: float | None = None  # smallest declared fraction seen over the experiment's life
    grid: int = 0  # as FractionState (after pmin: checkpoints written before these fields still decode)
    cap: float = 0.0


class ReturningPlan(FractionPlan):
    __slots__ = ("cache",)

    def __init__(self, rule: Any, exp: CompiledRegistration, config: Any) -> None:
        super().__init__(rule, exp, config)
        self.cache: dict[float, tuple[float, Any]] = {}

    def null(self, pmin: float) -> tuple[float, Any]:
        got = self.cache.get(pmin)
        if got is None:
            exp, cfg = self.exp, self.config
            assert exp is not None and exp.fraction is not None  # what activates the rule
            if cfg.returning_assume_sticky:
                q = returning_p0(exp, pmin, cfg.returning_min_tolerance)
            else:
                q = stats.effective_p0(exp.fraction, exp.tolerance, exp.unenrolled_logged)
            alts = stats.fraction_alternatives(q, self.config.fraction_ratios) if 0.0 < q < 1.0 else None
            got = self.cache[pmin] = (q, alts)
        return got


def returning_p0(exp: CompiledRegistration, pmin: float, min_tolerance: float) -> float:
    """Sticky bucketing: largest probability that a user not enrolled so far is enrolled now."""
    assert exp.fraction is not None
    p = min(1.0, exp.fraction * (1.0 + max(exp.tolerance, min_tolerance)))
    if pmin >= 1.0:
        return 1.0
    q = max(0.0, p - pmin) / (1.0 - pmin)
    return stats.effective_p0(q, 0.0, exp.unenrolled_logged)


class Returning(Fraction):
    name = "returning_enrolled_exceeded"
    State = ReturningState
    plan_type = ReturningPlan

    def active(self, exp: CompiledRegistration | None) -> bool:
        # active at a declared 0% too (the fraction rule pages on any enrolment then; this one
        # only keeps the smallest declared fraction for the next ramp's null rate)
        return (exp is not None and exp.fraction is not None and exp.fraction < 1.0
                and exp.unenrolled_logged > 0)

    def expected(self, exp: CompiledRegistration | None) -> dict[str, Any]:
        assert exp is not None  # active only under a registration
        return {"fraction": exp.fraction, "tolerance": exp.tolerance, "alpha": exp.alpha,
                "unenrolled_logged": exp.unenrolled_logged}

    def trials(self, batch: Batch) -> tuple[int, int]:
        return batch.tn, batch.tx

    def _pmin(self, fs: ReturningState, fraction: float) -> float:
        if fs.pmin is None or fraction < fs.pmin:
            fs.pmin = fraction
        return fs.pmin

    def null(self, fs: Any, plan: FractionPlan) -> tuple[float, Any]:
        exp = plan.exp
        assert exp is not None and exp.fraction is not None  # what activates the rule
        pmin = self._pmin(fs, exp.fraction)
        if exp.fraction <= 0.0:
            return 1.0, None  # no test at 0% (any enrolment is the fraction rule's breach)
        return cast("ReturningPlan", plan).null(pmin)

    def resolve_p0(self, fs: Any, exp: CompiledRegistration, config: Any) -> float:
        assert exp.fraction is not None
        if exp.fraction <= 0.0:
            return 1.0
        if not config.returning_assume_sticky:
            return stats.effective_p0(exp.fraction, exp.tolerance, exp.unenrolled_logged)
        pmin = exp.fraction if fs.pmin is None else min(fs.pmin, exp.fraction)
        return returning_p0(exp, pmin, config.returning_min_tolerance)

    def describe(self, st: "ExperimentState", exp: CompiledRegistration, s: int, n: int, p0: float, lm: float, thr: float) -> str:
        return (f"{st.experiment}: {s} of {n} evaluations of users not enrolled before turned enrolled "
                f"({s / n if n else 0:.4%}) vs at most {p0:.4%} under declared {exp.fraction:.4%} "
                f"(ln e-value {lm:.1f} >= {thr:.1f})")

    def merge_state(self, mine: Any, other: Any, merged: Any) -> Any:
        st = super().merge_state(mine, other, merged)
        pm = [p for p in (mine.pmin, other.pmin) if p is not None]
        st.pmin = min(pm) if pm else None
        return st


RULE = Returning()
