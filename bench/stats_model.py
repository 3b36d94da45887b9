"""Vectorised model of the fraction rule's statistic (detector.engine.stats + budget), for many paths.

Same arithmetic as the engine, one array row per simulated experiment: per look, m new
first-evaluation trials of which x enrolled, judged against the p0 in force; the weighted
Shiryaev-Roberts update ln R_j <- ln(R_j + w) + x a_j + (m - x) b_j with the lumped start
weight w of the look's trials. `bench/stats.py` checks on a subset that this model and
`process_batch` give the same statistic.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from detector.engine import budget, stats


def alts_np(p0: float, ratios=stats.RATIOS) -> tuple[np.ndarray, np.ndarray]:
    al = stats.fraction_alternatives(p0, ratios)
    return np.array([a for a, _ in al]), np.array([b for _, b in al])


def look_log_weight(n_before: np.ndarray | float, n_after: np.ndarray | float) -> np.ndarray:
    """ln of the change detector's weight for start points among trials n_before+1..n_after."""
    c = budget.START_CDF_C
    lc = math.log(c)
    nb = np.asarray(n_before, float)
    na = np.asarray(n_after, float)
    w = (1.0 - budget.START_WEIGHT) * (lc / np.log(c + nb) - lc / np.log(c + na))
    with np.errstate(divide="ignore"):
        return np.where(na > nb, np.log(np.maximum(w, 0.0)), -np.inf)


LOG_PI = np.array(stats.LOG_PI)


class SRPaths:
    """ln R_j for P paths; `look` applies m trials with x enrolled (arrays of shape (P,))."""

    def __init__(self, n_paths: int, n_alts: int = len(stats.RATIOS)) -> None:
        self.lr = np.full((n_paths, n_alts), math.log(budget.START_WEIGHT))
        self.n = np.zeros(n_paths)

    def look(self, x: np.ndarray, m: np.ndarray | int, p0: float) -> np.ndarray:
        """Update with one look; returns ln sum_j pi_j R_j per path."""
        a, b = alts_np(p0)
        m = np.broadcast_to(np.asarray(m, float), self.n.shape)
        lw = look_log_weight(self.n, self.n + m)
        np.logaddexp(self.lr, lw[:, None], out=self.lr)
        self.lr += x[:, None] * a[None, :] + (m - x)[:, None] * b[None, :]
        self.n += m
        return self.stat()

    def stat(self) -> np.ndarray:
        """ln sum_j pi_j R_j per path (the prior weights of detector.engine.stats)."""
        return logsumexp(self.lr + LOG_PI[None, :], axis=1)

    def subset(self, keep: np.ndarray) -> None:
        self.lr = self.lr[keep]
        self.n = self.n[keep]


def look_schedule(horizon: int, per_user: int = 1000, growth: float = 1.01) -> np.ndarray:
    """Look sizes: one user per look for the first `per_user` users, then looks growing by `growth`."""
    sizes = [1] * min(per_user, horizon)
    n = len(sizes)
    while n < horizon:
        m = max(1, min(horizon - n, int(n * (growth - 1.0))))
        sizes.append(m)
        n += m
    return np.array(sizes, np.int64)
