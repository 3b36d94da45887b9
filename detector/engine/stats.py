"""Anytime-valid sequential statistics, closed form, pure Python (math only).

Fraction rule (unit: a distinct user at their FIRST evaluation; see detector.engine.rules.fraction):
- Alternatives p_j = min(r_j p0, 1 - (1 - p0) / r_j) for fixed ratios r_j > 1 (always J of
  them, each strictly between p0 and 1, whatever p0). One trial with outcome x in {0, 1}
  contributes the likelihood ratio (p_j/p0)^x ((1-p_j)/(1-p0))^(1-x); its conditional mean
  is <= 1 whenever the trial's true enrolment probability is <= p0 (the ratio increases
  with that probability and equals 1 at p0). p0 may change between trials (a registration
  change): each trial is judged against the p0 in force when it is processed.
- The alternatives are mixed with prior weights pi_j (RATIO_WEIGHTS, summing to 1): the weight
  is the only price of the mixture (ln(1/pi_j) nats on alternative j's threshold), and a nats
  costs ln(1/pi_j) / KL_j users, so the prior leans on the moderate ratios (1.5x-2.5x), where
  evidence accrues slowly and every nat costs hundreds of users, and keeps a little on large
  ratios, where one enrolled user brings ln(r) nats and the weight costs a user or two.
- Weighted Shiryaev-Roberts e-detector over start points (one statistic for a fixed onset
  and a late onset): R_j(t) = (R_j(t-1) + w_t) * LR_j(t), R_j(0) = w_0, with w_0 + sum w_t <= 1.
  Q(t) = sum_j pi_j R_j(t) + (1 - w_0 - sum_{s<=t} w_s) is a nonnegative supermartingale with
  Q(0) <= 1 under H0, so P(sup_t sum_j pi_j R_j(t) >= 1/alpha) <= alpha (Ville's inequality)
  at any number or timing of looks, over an unbounded horizon. The w_0 part is the
  mixture SPRT from the segment's start; the w_t parts are the same test started at t (a
  late onset is judged on the users since the onset, not diluted by a healthy history).
- SRM: Lindon & Malek (arXiv 2011.03567) Dirichlet-multinomial Bayes factor,
  ln BF = ln B(a + x) - ln B(a) - sum x_i ln p_i, a = k p (the statistic of Optimizely's
  ssrm-test), averaged over several concentrations k (a mixture of BFs is again a
  nonnegative martingale under H0).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence

RATIOS = (1.1, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 5.0, 10.0, 30.0, 100.0)
# prior weight of each ratio (normalised to sum 1 by ratio_log_weights); see the module docstring
RATIO_WEIGHTS = (0.3, 0.7, 2.0, 4.0, 4.0, 2.0, 1.0, 0.4, 0.2, 0.15, 0.15)
SRM_CONCENTRATIONS = (1e2, 1e3, 1e4)

_lgamma = math.lgamma
_log = math.log
_exp = math.exp
_log1p = math.log1p


def fraction_alternative(p0: float, r: float) -> float:
    """The alternative for ratio r > 1: r p0, capped below 1 by 1 - (1 - p0) / r (always in (p0, 1))."""
    return min(r * p0, 1.0 - (1.0 - p0) / r)


def fraction_alternatives(p0: float, ratios: Iterable[float] = RATIOS) -> tuple[tuple[float, float], ...]:
    """(ln(p_j/p0), ln((1-p_j)/(1-p0))) per ratio (one entry per ratio; empty unless 0 < p0 < 1)."""
    if not 0.0 < p0 < 1.0:
        return ()
    out = []
    for r in ratios:
        p = fraction_alternative(p0, r)
        out.append((_log(p / p0), _log((1.0 - p) / (1.0 - p0))))
    return tuple(out)


def log_mean_exp(xs: Sequence[float]) -> float:
    """ln of the mean of e^x."""
    return log_sum_exp(xs) - _log(len(xs))


def ratio_log_weights(weights: Sequence[float] = RATIO_WEIGHTS) -> tuple[float, ...]:
    """ln pi_j of the mixture over ratios: the weights normalised to sum 1."""
    if not weights or min(weights) <= 0:
        raise ValueError("mixture weights must be positive")
    tot = math.fsum(weights)
    return tuple(_log(w / tot) for w in weights)


LOG_PI = ratio_log_weights()


def grid_id(ratios: Sequence[float] = RATIOS, weights: Sequence[float] = RATIO_WEIGHTS) -> int:
    """A stable nonzero id of a mixture (ratios and weights), kept with the state built on it."""
    if len(ratios) != len(weights):
        raise ValueError("one weight per ratio")
    return zlib.crc32(repr((tuple(map(float, ratios)), tuple(map(float, weights)))).encode()) or 1


def log_weighted_sum(log_r: Iterable[float], log_pi: Iterable[float] = LOG_PI) -> float:
    """ln sum_j pi_j R_j from ln R_j and ln pi_j."""
    return log_sum_exp([lr + lp for lr, lp in zip(log_r, log_pi)])


def log_sum_exp(xs: Sequence[float]) -> float:
    """ln of the sum of e^x (-inf when every x is)."""
    m = max(xs)
    if m == -math.inf:
        return m
    return m + _log(sum(_exp(x - m) for x in xs))


def log_add(a: float, b: float) -> float:
    """ln(e^a + e^b)."""
    if a < b:
        a, b = b, a
    if b == -math.inf:
        return a
    return a + _log1p(_exp(b - a))


def log_mixture(s: int, n: int, alts: tuple[tuple[float, float], ...], log_pi: Iterable[float] = LOG_PI) -> float:
    """ln of the mixture SPRT e-value for S enrolled out of n trials at one p0 (prior weights pi)."""
    if not alts:
        return 0.0
    f = n - s
    return log_weighted_sum([s * a + f * b for a, b in alts], log_pi)


def sr_update(log_r: list[float], log_w: float, x: int, m: int,
              alts: tuple[tuple[float, float], ...]) -> list[float]:
    """One look of the weighted Shiryaev-Roberts e-detector: m new trials, x of them enrolled.

    log_r[j] = ln R_j before; log_w = ln of the weight of the start points in this batch
    (-inf for none). Returns ln R_j after: ln(R_j + w) + x ln(p_j/p0) + (m - x) ln((1-p_j)/(1-p0)).
    """
    f = m - x
    return [log_add(lr, log_w) + x * a + f * b for lr, (a, b) in zip(log_r, alts)]


def effective_p0(fraction: float, tolerance: float, unenrolled_logged: float = 1.0) -> float:
    """The enrolment probability the test judges against, among users the detector sees.

    fraction * (1 + tolerance), then corrected for not-enrolled evaluations reaching the
    detector with probability >= q = unenrolled_logged: among seen users the enrolled share
    is at most p / (p + (1 - p) q). q = 0 (only enrolled users logged) gives 1: no test.
    """
    p = min(1.0, fraction * (1.0 + tolerance))
    if p >= 1.0 or unenrolled_logged >= 1.0:
        return p
    if unenrolled_logged <= 0.0:
        return 1.0
    return p / (p + (1.0 - p) * unenrolled_logged)


def linear_count(s: int, slots: float) -> float:
    """Distinct keys behind s occupied fingerprint slots out of `slots` (inverse of slots (1 - e^(-N/slots)))."""
    if s <= 0:
        return 0.0
    if s >= slots:
        return math.inf
    return -slots * _log1p(-s / slots)


def srm_log_bf(counts: Iterable[int], probs: Iterable[float], k: float) -> float:
    """Lindon-Malek ln BF for variant counts against declared probabilities, concentration k."""
    a_sum = 0.0
    n = 0
    acc = 0.0
    for x, p in zip(counts, probs):
        a = k * p
        acc += _lgamma(a + x) - _lgamma(a) - x * _log(p)
        a_sum += a
        n += x
    return acc + _lgamma(a_sum) - _lgamma(a_sum + n)


def srm_log_mixture(counts: Sequence[int], probs: Sequence[float], ks: Iterable[float] = SRM_CONCENTRATIONS) -> float:
    """ln of the average of the Bayes factors over concentrations ks."""
    return log_mean_exp([srm_log_bf(counts, probs, k) for k in ks])
