"""Is the fleet's false-page budget over-committed? A WARNING and a gauge when it is.

Each registration of a statistical rule (a declared fraction or split) spends its lifetime alpha:
the fleet share F / N unless it sets its own `alpha` (README "Statistics"). The expected
number of false pages in a month is at most the sum over the registrations active in it, so
when that sum exceeds F (more than N registrations, or large overrides) the budget no longer
holds. Checked when the registrations changed, at most once per call of `check`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Gauge

from detector.engine import budget
from detector.observability.metrics import PREFIX
from detector.registration.compiled import CompiledRegistration

log = logging.getLogger(__name__)


class AlphaBudgetWatch:
    def __init__(self, registrations: Callable[[], Mapping[str, CompiledRegistration]], false_pages_per_month: float,
                 default_alpha: float, registry: CollectorRegistry, now_ms: Callable[[], int]) -> None:
        self.registrations = registrations
        self.budget = false_pages_per_month
        self.default_alpha = default_alpha
        self.now_ms = now_ms
        self.dirty = True
        self.over = False
        self.gauge = Gauge(PREFIX + "alpha_committed", "Sum of the lifetime alpha of the registrations of "
                           "statistical rules not yet ended (expected false pages a month are at most this; "
                           "compare with the false_page_budget gauge).", registry=registry)
        Gauge(PREFIX + "false_page_budget", "DETECTOR_FALSE_PAGE_BUDGET: expected false pages a month for the "
              "fleet.", registry=registry).set(false_pages_per_month)

    def changed(self) -> None:
        self.dirty = True

    def check(self) -> float | None:
        """Recompute if the registrations changed; the committed alpha (None: nothing to do)."""
        if not self.dirty:
            return None
        self.dirty = False
        now = self.now_ms()
        alphas = [e.alpha for e in self.registrations().values()
                  if (e.fraction is not None or e.variants) and (e.ends_at is None or e.ends_at > now)]
        total = budget.alpha_committed(alphas, self.default_alpha)
        self.gauge.set(total)
        over = total > self.budget * (1 + 1e-9)
        if over and not self.over:
            overrides = sum(1 for a in alphas if a is not None)
            log.warning("false-page budget over-committed: the %d registrations of statistical rules spend "
                        "alpha %.3g in total, above DETECTOR_FALSE_PAGE_BUDGET = %g expected false pages a month "
                        "(%d set their own alpha; raise DETECTOR_ACTIVE_EXPERIMENTS or lower the overrides)",
                        len(alphas), total, self.budget, overrides)
        self.over = over
        return total
