"""missing_variant: users enrolled with no variant in an experiment that declares variants."""

import random

from hypothesis import given, settings, strategies as st_

from detector.engine import EngineConfig, ExperimentState, observe, rule_breaches
from detector.registration.compiled import CompiledRegistration
from tests.unit.engine.helpers import T0, ev, healthy_stream, run_batches

RULE = "missing_variant"
WEIGHTS = {"a": 0.25, "b": 0.25, "c": 0.5}
EXP = CompiledRegistration("exp", variants=WEIGHTS)


def test_thirty_percent_enrolled_without_a_variant_fires_within_100_affected_users():
    rng = random.Random(11)
    evs = healthy_stream(rng, 20_000, WEIGHTS, enrol_p=0.4, max_events=5)
    lost = {f"u{i}" for i in range(20_000) if rng.random() < 0.3}
    evs = [ev(e.user_id, variant=None, ts=e.ts) if e.enrolled and e.user_id in lost else e for e in evs]
    st = ExperimentState.new("exp")
    found = [f for f in run_batches(st, EXP, evs, 250, EngineConfig(exact_limit=100)) if f.rule == RULE]
    assert 1 <= found[0].blast_radius <= 100
    affected = {e.user_id for e in evs if e.enrolled and e.variant is None}
    assert found[-1].blast_radius == len(affected) == found[-1].observed["offending_variants"]["(none)"]
    assert set(found[-1].sample_ids) <= affected
    assert observe(st, EXP).observed.variants["(none)"] == len(affected)
    assert observe(st, EXP).rules[RULE].state == "firing"


def test_only_with_declared_variants_and_only_enrolled_events():
    assert RULE not in CompiledRegistration("exp", max_users=5).active_rules()
    st = ExperimentState.new("exp")
    assert run_batches(st, EXP, [ev("x", enrolled=False), ev("y", variant="a")], 2) == []
    [f] = run_batches(st, EXP, [ev("y", variant="a", ts=T0 + 1), ev("y", variant=None, ts=T0 + 2)], 2)
    assert f.rule == RULE and f.sample_ids == ("y",) and f.first_offending_event_at == T0 + 2
    assert rule_breaches(st, EXP)[RULE]
    back = ExperimentState.from_bytes(st.to_bytes())
    assert rule_breaches(back, EXP)[RULE] and back.rules[RULE].by_variant == {"(none)": 1}


@settings(max_examples=30, deadline=None, derandomize=True)
@given(users=st_.integers(1, 3000), batch=st_.integers(1, 700), seed=st_.integers(0, 2**32 - 1),
       exact_limit=st_.sampled_from([10, 100, 5000]), enrol_p=st_.floats(0.0, 1.0))
def test_healthy_stream_never_fires(users, batch, seed, exact_limit, enrol_p):
    st = ExperimentState.new("exp")
    out = run_batches(st, EXP, healthy_stream(random.Random(seed), users, WEIGHTS, enrol_p=enrol_p), batch,
                      EngineConfig(exact_limit=exact_limit))
    assert [f for f in out if f.rule == RULE] == [] and not rule_breaches(st, EXP)[RULE]
