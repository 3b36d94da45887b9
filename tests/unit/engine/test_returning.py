"""returning_enrolled_exceeded: over-enrolment of users who were not enrolled before (README "Statistics")."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings, strategies as st_

from detector.engine import EngineConfig, ExperimentState, budget, rule_breaches
from detector.registration.compiled import CompiledRegistration
from tests.unit.engine.helpers import T0, ev
from tests.unit.engine.test_engine_guarantees import _sticky_step, run

NAME = "returning_enrolled_exceeded"
STICKY = EngineConfig(returning_assume_sticky=True)


def _bucket(u: int) -> float:
    return random.Random(u).random()


def _review_stream(first: int, visits: int, bug: bool, seed: int = 0, flag: float = 0.01):
    """`first` new users at `flag`, then `visits` visits with 95% returning users; with `bug`
    every returning user is enrolled (a targeting bug on returning users only)."""
    rng = random.Random(seed)
    evs = [ev(f"u{i}", enrolled=_bucket(i) < flag, ts=T0 + i) for i in range(first)]
    n = first
    for k in range(visits):
        if rng.random() < 0.95:
            u = rng.randrange(n)
            enr = bug or _bucket(u) < flag
        else:
            u, n = n, n + 1
            enr = _bucket(u) < flag
        evs.append(ev(f"u{u}", enrolled=enr, ts=T0 + first + k))
    return evs


@pytest.mark.parametrize("exact_limit", [1_000_000, 100])
def test_targeting_bug_on_returning_users_pages(exact_limit):
    """The review's scenario (scaled 1/5): invisible to the first-evaluation rule, paged here."""
    cfg = EngineConfig(exact_limit=exact_limit)
    st = ExperimentState.new("exp")
    exp = CompiledRegistration("exp", fraction=0.01)
    out = run(st, exp, _review_stream(20_000, 40_000, bug=True), batch=500, config=cfg)
    ret = [f for f in out if f.rule == NAME]
    assert ret and not [f for f in out if f.rule == "fraction_exceeded"]
    first = ret[0]
    assert first.detected_at < T0 + 20_000 + 1_000  # within the first two batches after the bug
    assert first.observed["window_fraction"] > 0.011 and first.expected["fraction"] == 0.01
    assert rule_breaches(st, exp, cfg)[NAME]


@pytest.mark.parametrize("config", [EngineConfig(), STICKY], ids=["default", "sticky"])
def test_ramp_declared_with_the_registration_does_not_page(config):
    st = ExperimentState.new("exp")
    rng = random.Random(5)
    buckets: list[float] = []
    out = []
    ts = T0
    for declared in (0.01, 0.05, 0.25, 0.5):
        exp = CompiledRegistration("exp", fraction=declared)
        evs = _sticky_step(rng, buckets, 3000, declared, 0.5, 20, ts)
        ts += len(evs)
        out += run(st, exp, evs, 300, config)
    assert [f for f in out if f.rule == NAME] == []
    assert st.rules[NAME].sn > 3000  # returning users were judged


def test_sdk_redrawing_at_every_evaluation_does_not_page_by_default():
    """Non-sticky flags: a not-enrolled user's next evaluation is enrolled with probability p."""
    rng = random.Random(2)
    st = ExperimentState.new("exp")
    exp = CompiledRegistration("exp", fraction=0.05)
    evs = [ev(f"u{rng.randrange(2000)}", enrolled=rng.random() < 0.05, ts=T0 + i) for i in range(60_000)]
    out = run(st, exp, evs, 200)
    assert [f for f in out if f.rule == NAME] == [] and st.rules[NAME].sn > 10_000


def test_undeclared_ramp_of_returning_users_pages_only_with_the_sticky_bound():
    """Flag 1% -> 2% on returning users only, declaration stays 1%: below p0 for the default null
    (a user left out at 1% enrols at 2% with probability 1.01%, under the default alert level
    1.06%), evidence under the sticky bound (0.1%)."""
    found = {}
    rng = random.Random(4)
    returning = [rng.randrange(20_000) for _ in range(40_000)]
    for name, cfg in (("default", EngineConfig()), ("sticky", STICKY)):
        st = ExperimentState.new("exp")
        exp = CompiledRegistration("exp", fraction=0.01)
        evs = _review_stream(20_000, 0, bug=False)
        evs += [ev(f"u{u}", enrolled=_bucket(u) < 0.02, ts=T0 + 50_000 + k) for k, u in enumerate(returning)]
        found[name] = [f for f in run(st, exp, evs, 500, cfg) if f.rule == NAME]
    assert found["sticky"] and not found["default"]


def test_its_own_alpha_share():
    assert sum(budget.RULE_SHARE.values()) <= 1.0 and budget.RULE_SHARE[NAME] > 0
    st = ExperimentState.new("exp")
    exp = CompiledRegistration("exp", fraction=0.01)
    out = run(st, exp, _review_stream(5000, 5000, bug=True), batch=500)
    f = [f for f in out if f.rule == NAME][0]
    assert f.observed["threshold"] == pytest.approx(budget.log_threshold(1e-4, NAME, 1))


def test_state_survives_a_checkpoint_and_keeps_the_smallest_declaration():
    st = ExperimentState.new("exp")
    run(st, CompiledRegistration("exp", fraction=0.05), _review_stream(2000, 2000, bug=False, flag=0.05), 300, STICKY)
    run(st, CompiledRegistration("exp", fraction=0.01), _review_stream(200, 0, bug=False), 300, STICKY)
    back = ExperimentState.from_bytes(st.to_bytes())
    assert back.rules[NAME] == st.rules[NAME] and back.rules[NAME].pmin == 0.01


@settings(max_examples=30, deadline=None, derandomize=True)
@given(steps=st_.lists(st_.tuples(st_.sampled_from([0.0, 0.01, 0.05, 0.25, 0.5, 0.9]), st_.integers(1, 1500)),
                       min_size=1, max_size=5),
       returning=st_.floats(0.0, 0.9), batch=st_.integers(1, 700), seed=st_.integers(0, 2**31),
       sticky=st_.booleans())
def test_declared_changes_with_a_sticky_flag_never_page(steps, returning, batch, seed, sticky):
    """Any sequence of declarations (ramps up and down, 0%), the flag at each one, sticky buckets,
    returning users, repeated evaluations, any batching: the returning-users rule never pages."""
    rng = random.Random(seed)
    cfg = EngineConfig(exact_limit=300, returning_assume_sticky=sticky)
    st = ExperimentState.new("exp")
    buckets: list[float] = []
    ts = T0
    out = []
    for declared, n_new in steps:
        evs = _sticky_step(rng, buckets, n_new, declared, returning, 3, ts)
        ts += len(evs)
        out += run(st, CompiledRegistration("exp", fraction=declared), evs, batch, cfg)
    assert [f for f in out if f.rule == NAME] == []


@settings(max_examples=40, deadline=None, derandomize=True)
@given(flag=st_.floats(0.2, 1.0), seed=st_.integers(0, 2**31), batch=st_.integers(50, 600))
def test_returning_users_enrolled_far_above_the_declaration_page(flag, seed, batch):
    """Returning users enrolled at rate >= 20% under a 1% declaration page within 3,000 visits."""
    rng = random.Random(seed)
    st = ExperimentState.new("exp")
    exp = CompiledRegistration("exp", fraction=0.01)
    evs = [ev(f"u{i}", enrolled=False, ts=T0 + i) for i in range(2000)]
    evs += [ev(f"u{rng.randrange(2000)}", enrolled=rng.random() < flag, ts=T0 + 2000 + k) for k in range(3000)]
    assert [f for f in run(st, exp, evs, batch) if f.rule == NAME]
