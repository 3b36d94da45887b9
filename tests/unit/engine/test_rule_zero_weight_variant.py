"""zero_weight_variant: traffic to a variant declared with weight 0."""

import random

from hypothesis import given, settings, strategies as st_

from detector.engine import EngineConfig, ExperimentState, observe, rule_breaches
from detector.engine.rules.zero_weight import ZERO_WEIGHT_BIT
from detector.registration.compiled import CompiledRegistration
from detector.incidents import blast_radius as br
from tests.unit.engine.helpers import T0, ev, healthy_stream, run_batches

RULE = "zero_weight_variant"
WEIGHTS = {"control": 0.5, "treatment": 0.5, "retired": 0.0}
EXP = CompiledRegistration("exp", variants=WEIGHTS)
FAST = settings(max_examples=30, deadline=None, derandomize=True)


def test_active_only_with_a_weight_zero_variant():
    assert RULE in EXP.active_rules()
    assert RULE not in CompiledRegistration("exp", variants={"a": 0.5, "b": 0.5}).active_rules()


def test_thirty_percent_to_a_weight_zero_variant_fires_within_100_affected_users():
    rng = random.Random(3)
    healthy = healthy_stream(rng, 20_000, WEIGHTS, enrol_p=1.0, max_events=3)
    moved = {f"u{i}" for i in range(20_000) if rng.random() < 0.3}
    evs = [ev(e.user_id, variant="retired", ts=e.ts) if e.user_id in moved else e for e in healthy]
    st = ExperimentState.new("exp")
    found = [f for f in run_batches(st, EXP, evs, 200, EngineConfig(exact_limit=100)) if f.rule == RULE]
    assert found
    first = found[0]  # the first batch with an affected user pages (200-event batches: < 100 of them)
    assert 1 <= first.blast_radius <= 100 and first.sample_ids
    assert first.first_offending_event_at == next(e.ts for e in evs if e.variant == "retired")
    assert first.observed["offending_variants"] == {"retired": first.blast_radius}
    assert first.expected == {"zero_weight_variants": ["retired"]}
    last = found[-1]
    affected = {e.user_id for e in evs if e.variant == "retired"}
    assert last.blast_radius == len(affected)
    assert set(last.sample_ids) <= affected and len(last.sample_ids) == 1000
    assert rule_breaches(st, EXP)[RULE] and observe(st, EXP).rules[RULE].state == "firing"


def test_a_returning_user_later_seen_in_the_weight_zero_variant_is_caught():
    st = ExperimentState.new("exp")
    assert run_batches(st, EXP, [ev("u1", variant="control", ts=T0)], 10) == []
    out = run_batches(st, EXP, [ev("u1", variant="control", ts=T0 + 1), ev("u1", variant="retired", ts=T0 + 2)], 10)
    [f] = [f for f in out if f.rule == RULE]
    assert f.rule == RULE and f.sample_ids == ("u1",) and f.first_offending_event_at == T0 + 2


def test_rejudged_when_the_weight_is_no_longer_zero():
    st = ExperimentState.new("exp")
    run_batches(st, EXP, [ev(f"u{i}", variant="retired", ts=T0 + i) for i in range(5)], 2)
    revived = CompiledRegistration("exp", variants={"control": 0.4, "treatment": 0.4, "retired": 0.2})
    assert rule_breaches(st, EXP)[RULE]
    assert RULE not in rule_breaches(st, revived)
    assert [o.user_id for _, o in br.offenders(st, EXP, rule=RULE)] == [f"u{i}" for i in range(5)]
    assert list(br.offenders(st, revived)) == []
    back = ExperimentState.from_bytes(st.to_bytes())
    assert rule_breaches(back, EXP)[RULE] and back.rule_count[RULE] == 5
    assert all(mask & ZERO_WEIGHT_BIT for _, mask in ((u, r[2]) for u, r in back._off.items()))


@FAST
@given(users=st_.integers(1, 3000), batch=st_.integers(1, 700), seed=st_.integers(0, 2**32 - 1),
       exact_limit=st_.sampled_from([10, 100, 5000]), enrol_p=st_.floats(0.05, 1.0))
def test_healthy_stream_never_fires(users, batch, seed, exact_limit, enrol_p):
    rng = random.Random(seed)
    evs = healthy_stream(rng, users, WEIGHTS, enrol_p=enrol_p)
    st = ExperimentState.new("exp")
    out = run_batches(st, EXP, evs, batch, EngineConfig(exact_limit=exact_limit))
    assert [f for f in out if f.rule == RULE] == []
    assert not rule_breaches(st, EXP)[RULE]
