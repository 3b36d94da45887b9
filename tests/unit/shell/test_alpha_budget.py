"""The fleet's false-page budget: a WARNING and a gauge when registrations over-commit it."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry

from detector.engine import budget
from detector.registration.compiled import CompiledRegistration
from detector.shell.alpha_budget import AlphaBudgetWatch

NOW = 1_700_000_000_000


def _watch(regs: dict, registry: CollectorRegistry) -> AlphaBudgetWatch:
    return AlphaBudgetWatch(lambda: regs, 1.0, budget.fleet_alpha(1.0, 10), registry, lambda: NOW)


def test_within_budget_no_warning(caplog):
    reg = CollectorRegistry()
    regs = {f"e{i}": CompiledRegistration(f"e{i}", fraction=0.01) for i in range(10)}
    regs["ended"] = CompiledRegistration("ended", fraction=0.01, alpha=0.5, ends_at=NOW - 1)
    regs["no-stats"] = CompiledRegistration("no-stats", max_users=10, alpha=0.5)
    with caplog.at_level(logging.WARNING):
        assert _watch(regs, reg).check() == pytest.approx(1.0)
    assert not caplog.records
    assert reg.get_sample_value("exposure_detector_alpha_committed") == pytest.approx(1.0)
    assert reg.get_sample_value("exposure_detector_false_page_budget") == 1.0


def test_overrides_beyond_the_budget_warn_once(caplog):
    reg = CollectorRegistry()
    regs = {f"e{i}": CompiledRegistration(f"e{i}", fraction=0.01) for i in range(10)}
    regs["big"] = CompiledRegistration("big", variants={"a": 0.5, "b": 0.5}, alpha=0.05)
    w = _watch(regs, reg)
    with caplog.at_level(logging.WARNING):
        assert w.check() == pytest.approx(1.05)
        assert w.check() is None  # nothing changed: not recomputed
        w.changed()
        w.check()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "over-committed" in warnings[0].getMessage()
    assert "big" not in warnings[0].getMessage()  # counts only, no experiment or user names
    assert reg.get_sample_value("exposure_detector_alpha_committed") == pytest.approx(1.05)
