"""Anytime-valid sequential statistics, closed form, pure Python (math only).

- Fraction: mixture SPRT of Bernoulli(r_j p0) vs Bernoulli(p0) on distinct users,
  M = mean_j exp(L_j), L_j = S ln(p_j/p0) + (n-S) ln((1-p_j)/(1-p0)). Under H0 M is a
  nonnegative martingale with mean 1, so P(sup M >= 1/alpha) <= alpha (Ville) at any
  number or timing of looks.
- CUSUM with p1 = 2 p0 for an onset after a long healthy period. ARL0 ~ 1.26 e^h / KL;
  we use the conservative h = ln U for at most one false alarm per U eligible users.
- SRM: Lindon & Malek (arXiv 2011.03567) Dirichlet-multinomial Bayes factor,
  ln BF = ln B(a + x) - ln B(a) - sum x_i ln p_i, a = k p (the statistic of Optimizely's
  ssrm-test), averaged over several concentrations k (a mixture of BFs is again a
  nonnegative martingale under H0).
"""

from __future__ import annotations

import math

RATIOS = (1.1, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0)
SRM_CONCENTRATIONS = (1e2, 1e3, 1e4)

_lgamma = math.lgamma
_log = math.log
_exp = math.exp


def fraction_alternatives(p0: float, ratios=RATIOS) -> tuple[tuple[float, float], ...]:
    """(ln(p_j/p0), ln((1-p_j)/(1-p0))) for each alternative p_j = r_j p0 < 1."""
    if not 0.0 < p0 < 1.0:
        return ()
    alts = [r * p0 for r in ratios if r * p0 < 1.0]
    if not alts:
        alts = [(1.0 + p0) / 2.0]
    return tuple((_log(p / p0), _log((1.0 - p) / (1.0 - p0))) for p in alts)


def log_mixture(s: int, n: int, alts: tuple[tuple[float, float], ...]) -> float:
    """ln M for S enrolled out of n eligible distinct users (uniform weights)."""
    if not alts:
        return 0.0
    f = n - s
    ls = [s * a + f * b for a, b in alts]
    m = max(ls)
    return m + _log(sum(_exp(x - m) for x in ls) / len(ls))


def cusum_params(p0: float) -> tuple[float, float]:
    """Per-user increments (enrolled, not enrolled) of the CUSUM log-likelihood ratio, p1 = 2 p0."""
    p1 = 2.0 * p0 if p0 < 0.5 else (1.0 + p0) / 2.0
    return _log(p1 / p0), _log((1.0 - p1) / (1.0 - p0))


def cusum_threshold(users_per_false_alarm: float) -> float:
    """Conservative CUSUM threshold h = ln U (ARL0 ~ 1.26 e^h / KL >> U for any p0 < 1/2)."""
    return _log(users_per_false_alarm)


def kl_bernoulli(p: float, q: float) -> float:
    return p * _log(p / q) + (1 - p) * _log((1 - p) / (1 - q))


def srm_log_bf(counts, probs, k: float) -> float:
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


def srm_log_mixture(counts, probs, ks=SRM_CONCENTRATIONS) -> float:
    """ln of the average of the Bayes factors over concentrations ks."""
    ls = [srm_log_bf(counts, probs, k) for k in ks]
    m = max(ls)
    return m + _log(sum(_exp(x - m) for x in ls) / len(ls))
