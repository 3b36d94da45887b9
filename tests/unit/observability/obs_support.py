"""Shared helpers of the observability tests: sample observations, a populated DetectorMetrics,
and lookup of the Debian binaries.

`promtool` / `prometheus` come from the Debian package `prometheus`. Without them the tests
that need them are skipped locally, but FAIL when CI=true: CI must run them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import msgspec
import pytest

from detector.engine import Observation
from detector.observability.metrics import DetectorMetrics

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS_DIR = ROOT / "config" / "prometheus"

USER_IDS = ["user-8f14e45f", "qa-001", "u123456789", "alice@example.com"]

def observation(data: dict) -> Observation:
    """The engine's typed observation from plain data (what `observe()` returns)."""
    return msgspec.convert({"experiment": "exp", **data}, Observation)


BREACHING_DATA = {
    "observed": {
        "enrolled_users": 40,
        "eligible_users": 100,
        "observed_fraction": 0.4,
        "variants": {"control": 21, "treatment": 19},
        "events": 200,
        "first_event_at": 1_612_893_600_000,
        "last_event_at": 1_612_897_200_000,
        "out_of_target_users": 37,
    },
    "expected": {
        "experiment": "subs-mvp-crm-qa",
        "owner": "subscriptions",
        "severity": "critical",
        "max_users": 3,
        "fraction": 0.01,
        "allowlist": USER_IDS[:2],
        "variants": {"control": 0.5, "treatment": 0.5},
    },
    "rules": {
        "max_users_exceeded": {"state": "firing", "statistic": 40.0, "threshold": 3.0, "offenders": 37},
        "fraction_exceeded": {"state": "firing", "statistic": 12.5, "threshold": 9.21},
        "allowlist_breach": {"state": "ok", "statistic": None, "threshold": None},
    },
}

BREACHING = observation(BREACHING_DATA)

HEALTHY = observation({
    "observed": {"enrolled_users": 10, "eligible_users": 1000, "observed_fraction": 0.01,
                 "variants": {"a": 5, "b": 5}, "events": 50},
    "expected": {"fraction": 0.05},
    "rules": {"fraction_exceeded": {"state": "ok", "statistic": 0.0, "threshold": 9.21}},
})


def populated_metrics() -> DetectorMetrics:
    m = DetectorMetrics()
    m.record_consumed(1000)
    m.record_decoded(990)
    m.record_dead_letter("invalid_json", 7)
    m.record_dead_letter("missing_field", 3)
    m.record_batch(500, 0.012, last_event_ms=1_612_897_200_000)
    m.record_batch(500, 0.020)
    m.set_consumer_lag("exposure.assignments", 0, 12)
    m.set_consumer_lag("exposure.assignments", 1, 0)
    m.record_notification("webhook", "sent", 0.08)
    m.record_notification("slack", "failed", 1.2)
    m.record_registration("api")
    m.record_registration("yaml", "rejected", "invalid_fraction")
    m.record_registration("cli", "deleted")
    m.record_http("/v1/expectations/{experiment}", "PUT", 201, 0.004)
    m.update_experiment("subs-mvp-crm-qa", BREACHING)
    m.update_experiment("checkout-v2", HEALTHY)
    m.set_open_incidents("subs-mvp-crm-qa", 2)
    return m


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def require_binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None)
    if path:
        return path
    message = f"{name} not found (apt-get install prometheus)"
    if _in_ci():
        pytest.fail(f"{message}: required when CI=true")
    pytest.skip(message)

