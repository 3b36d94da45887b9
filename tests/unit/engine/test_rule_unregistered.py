"""unregistered at full speed: counts and a bounded sample, no per-user records; findings on change."""

import math
import random

from hypothesis import given, settings, strategies as st_

from detector.engine import EngineConfig, ExperimentState, observe, process_batch, rule_breaches
from detector.engine.rules.unregistered import REFRESH_MS, SAMPLE_IDS
from detector.events import Assignment
from detector.registration.compiled import CompiledRegistration
from tests.unit.engine.helpers import T0, ev, run_batches


def test_no_offender_records_blast_radius_is_the_enrolled_count_plus_a_bounded_sample():
    st = ExperimentState.new("exp")
    evs = [Assignment("exp", f"u{i}", "ab"[i % 2] if i % 3 else None, i % 3 != 1, T0 + i,
                      {"country": f"c{i % 50}", "platform": "ios"}) for i in range(5000)]
    out = run_batches(st, None, evs, 250, EngineConfig(exact_limit=100))
    assert st.offender_count == 0 and list(st.offenders()) == [] and not st._off
    last = out[-1]
    assert last.rule == "unregistered" and last.blast_radius == st.s == observe(st, None).observed.enrolled_users
    assert len(last.sample_ids) == SAMPLE_IDS and set(last.sample_ids) <= {e.user_id for e in evs if e.enrolled}
    o = last.observed
    assert (o["enrolled_users"], o["eligible_users"]) == (st.s, st.n)
    assert o["variants"] == {**st.variants, "(none)": st.variant_none}
    assert o["first_seen_at"] == T0 and o["last_seen_at"] <= T0 + 4999
    assert rule_breaches(st, None) == {"unregistered": True}
    assert "unregistered" not in rule_breaches(st, CompiledRegistration("exp", max_users=10))


def test_findings_follow_material_change_not_batches():
    st = ExperimentState.new("exp")
    # 2,000 batches of 5 new users each within 20 s of event time: growth decides
    evs = [ev(f"u{i}", ts=T0 + i * 2) for i in range(10_000)]
    out = run_batches(st, None, evs, 5, EngineConfig(exact_limit=100))
    assert len(out) <= 2 + math.ceil(math.log(10_000 / 5) / math.log(1.1))
    assert out[-1].blast_radius >= 10_000 / 1.1
    assert process_batch(st, None, [ev("u1", ts=T0 + 30_000)]) == []  # a returning user: nothing new
    # counts creep but time moves on: a refresh once REFRESH_MS of event time passed
    t = T0 + 20_000 + REFRESH_MS
    [f] = process_batch(st, None, [ev("late", ts=t)])
    assert f.blast_radius == st.s and f.detected_at == t
    assert process_batch(st, None, [ev("late2", ts=t + 1)]) == []


def test_a_new_variant_is_reported_at_once():
    st = ExperimentState.new("exp")
    run_batches(st, None, [ev(f"u{i}", variant="a", ts=T0 + i) for i in range(200)], 50)
    [f] = process_batch(st, None, [ev("z", variant="b", ts=T0 + 300)])
    assert f.observed["variants"] == {"a": 200, "b": 1}


@settings(max_examples=40, deadline=None, derandomize=True)
@given(users=st_.integers(1, 4000), batch=st_.integers(1, 500), seed=st_.integers(0, 2**32 - 1),
       span_ms=st_.integers(0, 10 * REFRESH_MS), exact_limit=st_.sampled_from([10, 100, 5000]))
def test_finding_count_is_bounded_and_the_last_one_is_current(users, batch, seed, span_ms, exact_limit):
    rng = random.Random(seed)
    evs = [ev(f"u{rng.randrange(users)}", enrolled=rng.random() < 0.4, ts=T0 + k * span_ms // (3 * users))
           for k in range(3 * users)]
    st = ExperimentState.new("exp")
    out = run_batches(st, None, evs, batch, EngineConfig(exact_limit=exact_limit))
    bound = 2 + 2 * math.ceil(math.log(max(users, 1)) / math.log(1.1)) + span_ms // REFRESH_MS + 2
    assert 1 <= len(out) <= bound
    assert all(f.rule == "unregistered" and f.blast_radius <= st.s for f in out)
    assert st.offender_count == 0 and len(out[-1].sample_ids) <= SAMPLE_IDS
