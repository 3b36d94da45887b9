"""undeclared_variant: traffic to a variant the registration does not declare."""

import random

from hypothesis import given, settings, strategies as st_

from detector.engine import EngineConfig, ExperimentState, observe, rule_breaches
from detector.registration.compiled import CompiledRegistration
from detector.incidents import blast_radius as br
from tests.unit.engine.helpers import T0, ev, healthy_stream, run_batches

RULE = "undeclared_variant"
WEIGHTS = {"control": 0.5, "treatment": 0.5}
EXP = CompiledRegistration("exp", variants=WEIGHTS)


def test_thirty_percent_to_an_undeclared_variant_fires_within_100_affected_users_in_the_sketch_regime():
    rng = random.Random(5)
    evs = healthy_stream(rng, 20_000, WEIGHTS, enrol_p=0.5, max_events=4)
    moved = {f"u{i}" for i in range(20_000) if rng.random() < 0.3}
    evs = [ev(e.user_id, variant="treatmnet", ts=e.ts) if e.enrolled and e.user_id in moved else e for e in evs]
    st = ExperimentState.new("exp")
    found = [f for f in run_batches(st, EXP, evs, 150, EngineConfig(exact_limit=50)) if f.rule == RULE]
    assert 1 <= found[0].blast_radius <= 100 and found[0].expected == {"variants": ["control", "treatment"]}
    affected = {e.user_id for e in evs if e.variant == "treatmnet"}
    assert found[-1].blast_radius == len(affected) and found[-1].observed["offending_variants"] == {
        "treatmnet": len(affected)}
    assert not st.exact and observe(st, EXP).rules[RULE].state == "firing"
    # the split test ignores the stray arm; this rule is what sees it
    assert "sample_ratio_mismatch" not in {f.rule for f in found}


def test_not_enrolled_and_declared_traffic_is_fine_and_declaring_the_variant_resolves():
    st = ExperimentState.new("exp")
    assert run_batches(st, EXP, [ev("a", enrolled=False), ev("b", variant="treatment"), ev("c")], 3) == []
    out = run_batches(st, EXP, [ev("d", variant="v3", ts=T0 + 5), ev("e", variant=None, ts=T0 + 6)], 5)
    [f] = [f for f in out if f.rule == RULE]
    assert f.rule == RULE and f.sample_ids == ("d",) and f.first_offending_event_at == T0 + 5
    wider = CompiledRegistration("exp", variants={"control": 0.4, "treatment": 0.4, "v3": 0.2})
    assert rule_breaches(st, EXP)[RULE] and not rule_breaches(st, wider)[RULE]
    assert [o.user_id for _, o in br.offenders(st, EXP, rule=RULE)] == ["d"]
    assert list(br.offenders(st, wider, rule=RULE)) == []


@settings(max_examples=30, deadline=None, derandomize=True)
@given(users=st_.integers(1, 3000), batch=st_.integers(1, 700), seed=st_.integers(0, 2**32 - 1),
       exact_limit=st_.sampled_from([10, 100, 5000]),
       weights=st_.sampled_from([WEIGHTS, {"a": 0.2, "b": 0.3, "c": 0.5}, {"only": 1.0}]))
def test_healthy_stream_never_fires(users, batch, seed, exact_limit, weights):
    exp = CompiledRegistration("exp", variants=weights)
    st = ExperimentState.new("exp")
    out = run_batches(st, exp, healthy_stream(random.Random(seed), users, weights), batch,
                      EngineConfig(exact_limit=exact_limit))
    assert [f for f in out if f.rule == RULE] == [] and not rule_breaches(st, exp)[RULE]
