"""variant_crossover: a user seen in more than one variant of the same experiment."""

import random

from hypothesis import given, settings, strategies as st_

from detector.engine import EngineConfig, ExperimentState, observe, rule_breaches
from detector.engine.rules.crossover import TRACKED_USERS
from detector.registration.compiled import CompiledRegistration
from tests.unit.engine.helpers import T0, ev, healthy_stream, run_batches

RULE = "variant_crossover"
WEIGHTS = {"control": 0.5, "treatment": 0.5}
EXP = CompiledRegistration("exp", variants=WEIGHTS)


def crossed(evs, rng, share):
    """The stream with `share` of the enrolled users flipped to the other arm on their later events."""
    flip = {"control": "treatment", "treatment": "control"}
    chosen = {e.user_id for e in evs if e.enrolled and rng.random() < share}
    seen: set[str] = set()
    out = []
    for e in evs:
        if e.user_id in chosen and e.user_id in seen:
            e = ev(e.user_id, variant=flip[e.variant], ts=e.ts)
        seen.add(e.user_id)
        out.append(e)
    return out


def crossed_only(evs):
    """The events that show a user in a variant other than their first."""
    first: dict[str, str] = {}
    for e in evs:
        if e.variant is not None and first.setdefault(e.user_id, e.variant) != e.variant:
            yield e


def test_across_batches_and_inside_one():
    st = ExperimentState.new("exp")
    assert run_batches(st, EXP, [ev("u1", variant="control"), ev("u2", variant="treatment")], 2) == []
    [f] = run_batches(st, EXP, [ev("u1", variant="treatment", ts=T0 + 7)], 1)
    assert f.rule == RULE and f.sample_ids == ("u1",) and f.first_offending_event_at == T0 + 7
    [g] = [x for x in run_batches(st, EXP, [ev("u3", variant="control", ts=T0 + 8),
                                            ev("u3", variant="treatment", ts=T0 + 9)], 5) if x.rule == RULE]
    assert g.blast_radius == 2 and g.sample_ids == ("u1", "u3")
    assert rule_breaches(st, EXP)[RULE] and observe(st, EXP).rules[RULE].state == "firing"
    assert RULE not in rule_breaches(st, CompiledRegistration("exp", max_users=10))
    back = ExperimentState.from_bytes(st.to_bytes())
    assert run_batches(back, EXP, [ev("u2", variant="control", ts=T0 + 10)], 1)[0].blast_radius == 3


def test_thirty_percent_crossover_found_within_100_affected_users_beyond_the_tracked_bound():
    rng = random.Random(17)
    evs = crossed(healthy_stream(rng, 20_000, WEIGHTS, enrol_p=0.5, max_events=6), rng, 0.3)
    st = ExperimentState.new("exp")
    out = [f for f in run_batches(st, EXP, evs, 100, EngineConfig(exact_limit=100)) if f.rule == RULE]
    assert 1 <= out[0].blast_radius <= 100
    assert len(st.rules[RULE].first) <= TRACKED_USERS * 5 // 4 and out[-1].observed["tracking"] == "sample"
    assert set(out[-1].sample_ids) <= {e.user_id for e in crossed_only(evs)}


def test_every_crossover_is_seen_while_the_experiment_is_within_the_tracked_bound():
    rng = random.Random(2)
    evs = crossed(healthy_stream(rng, 1500, WEIGHTS, enrol_p=0.6, max_events=8), rng, 0.05)
    st = ExperimentState.new("exp")
    out = [f for f in run_batches(st, EXP, evs, 37) if f.rule == RULE]
    assert out[-1].blast_radius == len({e.user_id for e in crossed_only(evs)}) > 0


def test_merge_keeps_the_first_variants():
    a, b = ExperimentState.new("exp"), ExperimentState.new("exp")
    run_batches(a, EXP, [ev("u1", variant="control")], 1)
    run_batches(b, EXP, [ev("u2", variant="treatment")], 1)
    a.merge(b)
    assert [f.sample_ids for f in run_batches(a, EXP, [ev("u2", variant="control", ts=T0 + 1)], 1)] == [("u2",)]


@settings(max_examples=30, deadline=None, derandomize=True)
@given(users=st_.integers(1, 3000), batch=st_.integers(1, 700), seed=st_.integers(0, 2**32 - 1),
       exact_limit=st_.sampled_from([10, 100, 5000]), enrol_p=st_.floats(0.05, 1.0),
       weights=st_.sampled_from([WEIGHTS, {"a": 0.1, "b": 0.2, "c": 0.7}]))
def test_healthy_stream_never_fires(users, batch, seed, exact_limit, enrol_p, weights):
    """Returning users, 1-20 events a user, each re-logging their sticky variant: no finding."""
    exp = CompiledRegistration("exp", variants=weights)
    st = ExperimentState.new("exp")
    out = run_batches(st, exp, healthy_stream(random.Random(seed), users, weights, enrol_p=enrol_p), batch,
                      EngineConfig(exact_limit=exact_limit))
    assert [f for f in out if f.rule == RULE] == [] and not rule_breaches(st, exp)[RULE]
