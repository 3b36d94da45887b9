"""sample_ratio_mismatch: grace after a declared split change (README "Statistics", safe order)."""

from __future__ import annotations

import random

import pytest

from detector.engine import EngineConfig, ExperimentState
from detector.registration.compiled import CompiledRegistration
from tests.unit.engine.helpers import T0, ev
from tests.unit.engine.test_engine_guarantees import run

NAME = "sample_ratio_mismatch"
MIN = 60_000


def _users(rng, n, treat, t0, prefix):
    """n new enrolled users over n seconds from t0, a share `treat` in treatment."""
    return [ev(f"{prefix}{i}", variant="t" if rng.random() < treat else "c", ts=t0 + i * 1000) for i in range(n)]


def _change(lag_ms: int, config: EngineConfig, users_between: int = 3000):
    """50/50 for 5,000 users; the registration changes to 90/10 at t1; the flag follows `lag_ms` later."""
    rng = random.Random(11)
    st = ExperimentState.new("exp")
    old = CompiledRegistration("exp", variants={"c": 0.5, "t": 0.5})
    new = CompiledRegistration("exp", variants={"c": 0.1, "t": 0.9})
    out = run(st, old, _users(rng, 5000, 0.5, T0, "a"))
    t1 = T0 + 5000 * 1000
    between = _users(rng, users_between, 0.5, t1, "b")
    between = [e for e in between if e.ts < t1 + lag_ms]
    out += run(st, new, between, config=config)
    out += run(st, new, _users(rng, 20_000, 0.9, t1 + lag_ms, "c"), config=config)
    return [f for f in out if f.rule == NAME]


def test_flag_following_the_registration_within_the_grace_does_not_page():
    assert _change(30 * MIN, EngineConfig()) == []  # 1,800 users at the old split after the change


def test_without_the_grace_the_same_change_pages():
    assert _change(30 * MIN, EngineConfig(split_change_grace_ms=0))


def test_a_split_that_never_follows_still_pages_after_the_grace():
    rng = random.Random(3)
    st = ExperimentState.new("exp")
    run(st, CompiledRegistration("exp", variants={"c": 0.5, "t": 0.5}), _users(rng, 2000, 0.5, T0, "a"))
    t1 = T0 + 2000 * 1000
    out = run(st, CompiledRegistration("exp", variants={"c": 0.1, "t": 0.9}), _users(rng, 8000, 0.5, t1, "b"))
    found = [f for f in out if f.rule == NAME]
    assert found and found[0].first_offending_event_at >= t1 + 59 * MIN  # the users after the grace
    assert found[0].detected_at < t1 + 60 * MIN + 2000 * 1000


@pytest.mark.parametrize("grace_min", [0, 60])
def test_the_first_declared_split_has_no_grace(grace_min):
    rng = random.Random(4)
    st = ExperimentState.new("exp")
    out = run(st, CompiledRegistration("exp", variants={"c": 0.5, "t": 0.5}), _users(rng, 3000, 0.9, T0, "a"),
              config=EngineConfig(split_change_grace_ms=grace_min * MIN))
    assert [f for f in out if f.rule == NAME]
