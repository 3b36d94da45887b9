"""Fixtures for the observability tests (helpers live in obs_support.py, a unique module name)."""

from __future__ import annotations

import pytest

from detector.observability.metrics import DetectorMetrics
from obs_support import populated_metrics, require_binary


@pytest.fixture
def metrics() -> DetectorMetrics:
    return populated_metrics()


@pytest.fixture
def promtool() -> str:
    return require_binary("promtool")


@pytest.fixture
def prometheus_bin() -> str:
    return require_binary("prometheus")
