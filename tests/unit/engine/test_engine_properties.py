"""Property tests: streams at or under the declared exposure never fire."""

import random

from hypothesis import given, settings, strategies as st_

from detector.engine import EngineConfig, ExperimentState, process_batch
from detector.registration.compiled import CompiledRegistration
from tests.unit.engine.helpers import T0, ev

FAST = settings(max_examples=40, deadline=None, derandomize=True)


@FAST
@given(p0=st_.sampled_from([0.001, 0.01, 0.05, 0.2]), under=st_.floats(0.0, 1.0),
       n=st_.integers(1, 4000), batch=st_.integers(1, 800), seed=st_.integers(0, 2**32 - 1),
       repeats=st_.integers(1, 4))
def test_fraction_at_or_under_declared_never_fires(p0, under, n, batch, seed, repeats):
    rng = random.Random(seed)
    exp = CompiledRegistration("exp", fraction=p0, alpha=1e-4)
    st = ExperimentState.new("exp")
    p = p0 * under
    evs = []
    for i in range(n):
        enr = rng.random() < p
        evs += [ev(f"u{i}", enrolled=enr, ts=T0 + i)] * repeats
    out = []
    for i in range(0, len(evs), batch):
        out += process_batch(st, exp, evs[i:i + batch], EngineConfig(exact_limit=500))
    assert out == []


@FAST
@given(allow=st_.sets(st_.text("abc", min_size=1, max_size=4), min_size=1, max_size=8),
       picks=st_.lists(st_.integers(0, 100), max_size=60), batch=st_.integers(1, 10))
def test_allowlisted_users_never_fire(allow, picks, batch):
    al = sorted(allow)
    exp = CompiledRegistration("exp", allowlist=frozenset(al), max_users=len(al),
                      segments={"c": frozenset({"x"})}, starts_at=T0, ends_at=T0 + 1000)
    st = ExperimentState.new("exp")
    evs = [ev(al[k % len(al)], ts=T0 + k * 9, attrs={"c": "x"}) for k in picks]
    for i in range(0, len(evs), batch):
        assert process_batch(st, exp, evs[i:i + batch]) == []


@FAST
@given(n=st_.integers(1, 3000), seed=st_.integers(0, 2**32 - 1), batch=st_.integers(1, 500),
       split=st_.sampled_from([(0.5, 0.5), (0.9, 0.1), (0.2, 0.3, 0.5)]))
def test_srm_true_split_does_not_fire(n, seed, batch, split):
    rng = random.Random(seed)
    names = [f"v{i}" for i in range(len(split))]
    exp = CompiledRegistration("exp", variants=dict(zip(names, split)), alpha=1e-4)
    st = ExperimentState.new("exp")
    evs = [ev(f"u{i}", variant=rng.choices(names, split)[0], ts=T0 + i) for i in range(n)]
    out = []
    for i in range(0, n, batch):
        out += process_batch(st, exp, evs[i:i + batch])
    assert out == []
