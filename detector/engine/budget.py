"""Where each experiment's false-alarm budget goes: fleet -> experiment -> rule -> segment -> start.

One home for the alpha arithmetic of the statistical rules (`fraction_exceeded`,
`sample_ratio_mismatch`). Every split is a union bound, so the shares only have to sum to
at most 1 at each level:

- fleet -> experiment: alpha = F / N, for a budget of F expected false pages per month with at
  most N experiments active in any month (`DETECTOR_FALSE_PAGE_BUDGET`,
  `DETECTOR_ACTIVE_EXPERIMENTS`). An experiment's expected number of false pages over its
  whole lifetime is at most alpha, so in any one month it is at most alpha too, and the
  fleet's expected false pages in that month at most N * alpha = F. A registration's own
  `alpha` overrides the share.
- experiment -> rule: the fraction rule (first evaluations) gets RULE_SHARE["fraction_exceeded"]
  of alpha, the returning-users rule (enrolment of users not enrolled before) its own share,
  the split rule the rest (fixed shares whatever rules are active, so adding or removing a rule
  never re-spends budget).
- rule -> segment: a rule's statistic restarts after each of its alarms and at a state merge;
  segment g (1, 2, ...) may spend segment_share(g) of the rule's budget, which sums to 1
  over all g, so the lifetime bound holds however many restarts there are.
- segment -> start (fraction only): START_WEIGHT of the segment's e-process watches from the
  segment's start (the mixture SPRT); the rest is spread over later start points by
  `start_cdf` (the change detector). See detector.engine.stats.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

# the fraction rule watches the incident class the product exists for (more users enrolled than
# declared); it gets most of the budget, the two auxiliary rules the rest
RULE_SHARE = {"fraction_exceeded": 0.7, "returning_enrolled_exceeded": 0.1, "sample_ratio_mismatch": 0.2}
assert sum(RULE_SHARE.values()) <= 1.0
FIRST_SEGMENT_SHARE = 0.9  # the first segment (no alarm yet) gets most of the rule's budget
START_WEIGHT = 0.95  # of a fraction segment's e-process: the start of the segment (mixture SPRT)
START_CDF_C = 16.0  # start_cdf scale (users)


def fleet_alpha(false_pages_per_month: float, active_experiments: int) -> float:
    """Per-experiment lifetime alpha for at most `false_pages_per_month` expected false pages a month."""
    if false_pages_per_month <= 0 or active_experiments <= 0:
        raise ValueError("the false-page budget and the number of experiments must be positive")
    return min(0.1, false_pages_per_month / active_experiments)


def alpha_committed(alphas: Iterable[float | None], default_alpha: float) -> float:
    """Sum of the lifetime alpha of the given registrations (None: the fleet share). The fleet's
    expected false pages are at most this sum (a per-registration `alpha` override is outside
    the fleet budget F, so the sum can exceed F; the shell warns when it does)."""
    return sum(default_alpha if a is None else a for a in alphas)


def segment_share(g: int) -> float:
    """Share of a rule's budget for its g-th segment (g >= 1); sums to 1 over g = 1, 2, ..."""
    if g <= 1:
        return FIRST_SEGMENT_SHARE
    return (1.0 - FIRST_SEGMENT_SHARE) / ((g - 1) * g)


def segment_alpha(alpha: float, rule: str, g: int) -> float:
    """Alpha of segment g of `rule` for an experiment with lifetime budget `alpha`."""
    return alpha * RULE_SHARE[rule] * segment_share(g)


def log_threshold(alpha: float, rule: str, g: int) -> float:
    """ln(1 / segment alpha): the e-value threshold of segment g."""
    return -math.log(segment_alpha(alpha, rule, g))


def start_cdf(n: float) -> float:
    """Share of the change detector's weight on start points among the first n trials of a segment.

    F(n) = 1 - ln(c) / ln(c + n): heavy-tailed (a start after 10^6 users still gets
    density ~1.5e-8 per user, ln(1/w) ~ 18), F(0) = 0, F -> 1.
    """
    return 1.0 - math.log(START_CDF_C) / math.log(START_CDF_C + n)
