"""Unit tests for every rule of the engine."""

import math

import pytest

from detector.engine import EngineConfig, ExperimentState, observe, process_batch, rule_breaches
from detector.registration.compiled import CompiledRegistration
from tests.unit.engine.helpers import T0, ev


def rules_of(findings):
    return [f.rule for f in findings]


# ---- unregistered ----------------------------------------------------------------------
def test_unregistered_fires_on_first_event_even_not_enrolled_and_updates_on_new_users():
    st = ExperimentState.new("exp")
    f = process_batch(st, None, [ev("u1", enrolled=False, ts=T0 + 5)])
    assert rules_of(f) == ["unregistered"]
    assert f[0].first_offending_event_at == T0 + 5 and f[0].blast_radius == 0
    assert process_batch(st, None, [ev("u1", enrolled=False, ts=T0 + 6)]) == []  # nothing new
    f = process_batch(st, None, [ev("u2", ts=T0 + 7), ev("u3", ts=T0 + 9)])
    assert rules_of(f) == ["unregistered"]
    assert f[0].blast_radius == 2 and f[0].detected_at == T0 + 7
    assert f[0].first_offending_event_at == T0 + 5
    assert set(f[0].sample_ids) == {"u2", "u3"}
    assert rule_breaches(st, None) == {"unregistered": True}
    exp = CompiledRegistration("exp")
    assert "unregistered" not in rule_breaches(st, exp)


# ---- allowlist --------------------------------------------------------------------------
def test_allowlist_fires_on_first_offending_event_with_exact_ts():
    exp = CompiledRegistration("exp", allowlist=frozenset({"qa-1", "qa-2"}))
    st = ExperimentState.new("exp")
    evs = [ev("qa-1", ts=T0), ev("qa-2", ts=T0 + 1), ev("real-1", ts=T0 + 2), ev("real-1", ts=T0 + 3),
           ev("real-2", ts=T0 + 4), ev("outsider", enrolled=False, ts=T0 + 5)]
    f = process_batch(st, exp, evs)
    assert rules_of(f) == ["allowlist_breach"]
    assert f[0].first_offending_event_at == T0 + 2
    assert f[0].detected_at == T0 + 2
    assert f[0].blast_radius == 2
    assert f[0].sample_ids == ("real-1", "real-2")
    # repeat offender: no new evidence, no finding
    assert process_batch(st, exp, [ev("real-1", ts=T0 + 10), ev("qa-1", ts=T0 + 11)]) == []
    f = process_batch(st, exp, [ev("real-3", ts=T0 + 12)])
    assert f[0].blast_radius == 3 and f[0].first_offending_event_at == T0 + 2 and f[0].detected_at == T0 + 12
    assert [o[0] for o in st.offenders()] == ["real-1", "real-2", "real-3"]
    assert list(st.offenders())[0] == ("real-1", T0 + 2, "control", ("allowlist_breach",))
    assert rule_breaches(st, exp)["allowlist_breach"] is True
    wider = CompiledRegistration("exp", allowlist=frozenset({"qa-1", "qa-2", "real-1", "real-2", "real-3"}))
    assert rule_breaches(st, wider)["allowlist_breach"] is False


def test_allowlist_first_event_of_a_batch_and_single_event_batches():
    exp = CompiledRegistration("exp", allowlist=frozenset({"qa"}))
    st = ExperimentState.new("exp")
    assert process_batch(st, exp, [ev("qa", ts=T0)]) == []
    f = process_batch(st, exp, [ev("x", ts=T0 + 1)])
    assert f[0].first_offending_event_at == T0 + 1


def test_allowlist_rejudge_in_sketch_mode_uses_stored_offenders():
    cfg = EngineConfig(exact_limit=4)
    exp = CompiledRegistration("exp", allowlist=frozenset({"a", "b"}))
    st = ExperimentState.new("exp")
    process_batch(st, exp, [ev("a"), ev("b")] + [ev(f"n{i}", enrolled=False) for i in range(10)], cfg)
    assert not st.exact
    f = process_batch(st, exp, [ev("c", ts=T0 + 3)], cfg)
    assert f and f[0].blast_radius == 1
    assert rule_breaches(st, exp, cfg)["allowlist_breach"]
    assert not rule_breaches(st, CompiledRegistration("exp", allowlist=frozenset({"a", "b", "c"})), cfg)["allowlist_breach"]


# ---- max users --------------------------------------------------------------------------
def test_max_users_exact_crossing():
    exp = CompiledRegistration("exp", max_users=3)
    st = ExperimentState.new("exp")
    evs = [ev(f"u{i}", ts=T0 + i) for i in range(3)] + [ev("u0", ts=T0 + 10)]
    assert process_batch(st, exp, evs) == []
    f = process_batch(st, exp, [ev("u1", ts=T0 + 20), ev("u3", ts=T0 + 21), ev("u4", ts=T0 + 22)])
    assert rules_of(f) == ["max_users_exceeded"]
    assert f[0].first_offending_event_at == T0 + 21 and f[0].detected_at == T0 + 21
    assert f[0].blast_radius == 2 and f[0].sample_ids == ("u3", "u4")
    assert f[0].statistic == 5
    assert process_batch(st, exp, [ev("u4", ts=T0 + 30)]) == []
    assert rule_breaches(st, exp)["max_users_exceeded"]
    assert not rule_breaches(st, CompiledRegistration("exp", max_users=10))["max_users_exceeded"]


def test_max_users_sketch_mode_never_alarms_below_true_count():
    cfg = EngineConfig(exact_limit=10)
    n_true = 5000
    exp = CompiledRegistration("exp", max_users=n_true)  # exactly at the cap: must not fire
    st = ExperimentState.new("exp")
    users = [f"user-{i:06d}" for i in range(n_true)]
    for i in range(0, n_true, 500):
        batch = [ev(u) for u in users[i:i + 500]] * 2
        assert process_batch(st, exp, batch, cfg) == []
    assert not st.exact
    assert st.enrolled_lower_bound() <= n_true
    assert st.s <= n_true and st.s > 0.97 * n_true
    exp2 = CompiledRegistration("exp", max_users=4000)
    st2 = ExperimentState.new("exp")
    fired = []
    for i in range(0, n_true, 500):
        fired += process_batch(st2, exp2, [ev(u) for u in users[i:i + 500]], cfg)
    assert fired and fired[0].rule == "max_users_exceeded"


# ---- fraction ---------------------------------------------------------------------------
def _feed(st, exp, ratio_enrolled_every, n, batch=1, start=0, cfg=EngineConfig()):
    out = []
    buf = []
    for i in range(start, start + n):
        enrolled = ratio_enrolled_every is not None and i % ratio_enrolled_every == 0
        buf.append(ev(f"user-{i}", enrolled=enrolled, ts=T0 + i))
        if len(buf) == batch:
            out += process_batch(st, exp, buf, cfg)
            buf = []
    if buf:
        out += process_batch(st, exp, buf, cfg)
    return out


def test_fraction_full_rollout_detected_within_five_users():
    exp = CompiledRegistration("exp", fraction=0.01)
    st = ExperimentState.new("exp")
    f = _feed(st, exp, 1, 5)
    assert rules_of(f) == ["fraction_exceeded"]
    assert f[0].observed["eligible_users"] <= 5


def test_fraction_restarts_after_alarm_and_re_alarms():
    exp = CompiledRegistration("exp", fraction=0.01)
    st = ExperimentState.new("exp")
    f = _feed(st, exp, 1, 40)
    assert len(f) >= 2 and all(x.rule == "fraction_exceeded" for x in f)
    assert f[1].first_offending_event_at > f[0].first_offending_event_at


def test_fraction_null_stream_silent_and_repeats_do_not_count():
    exp = CompiledRegistration("exp", fraction=0.01)
    st = ExperimentState.new("exp")
    # every user enrolled-or-not once, then the enrolled ones repeat 20 times (would look like 20%)
    f = _feed(st, exp, 100, 20000, batch=500)
    assert f == []
    rep = [ev(f"user-{i}", ts=T0 + 10**6 + i) for i in range(0, 20000, 100)] * 20
    assert process_batch(st, exp, rep) == []
    assert 196 <= st.s <= 200 and 19800 <= st.n <= 20000  # sketch mode: lower bounds


def test_fraction_two_x_detected_and_onset_estimate():
    exp = CompiledRegistration("exp", fraction=0.01)
    st = ExperimentState.new("exp")
    f = _feed(st, exp, 50, 20000, batch=200)
    assert f and f[0].rule == "fraction_exceeded"
    assert f[0].statistic >= math.log(1e4)


def test_fraction_zero_declared():
    exp = CompiledRegistration("exp", fraction=0.0)
    st = ExperimentState.new("exp")
    assert process_batch(st, exp, [ev("a", enrolled=False)]) == []
    assert rules_of(process_batch(st, exp, [ev("b", ts=T0 + 1)])) == ["fraction_exceeded"]


# ---- segments ---------------------------------------------------------------------------
def test_segment_breach_missing_attribute_counts_outside():
    exp = CompiledRegistration("exp", segments={"country": frozenset({"US"}), "platform": frozenset({"ios", "web"})})
    st = ExperimentState.new("exp")
    evs = [ev("a", attrs={"country": "US", "platform": "ios"}, ts=T0),
           ev("b", attrs={"country": "US"}, ts=T0 + 1),  # missing platform
           ev("c", attrs={"country": "FR", "platform": "web"}, ts=T0 + 2),
           ev("d", attrs=None, ts=T0 + 3),
           ev("e", enrolled=False, attrs={"country": "FR"}, ts=T0 + 4)]  # not enrolled: not a breach
    f = process_batch(st, exp, evs)
    assert rules_of(f) == ["segment_breach"]
    # d has no attributes at all: counted, not a breach by default
    assert f[0].first_offending_event_at == T0 + 1 and f[0].blast_radius == 2
    assert f[0].sample_ids == ("b", "c")
    assert observe(st, exp).rules["segment_breach"].missing_attributes == 1
    assert rule_breaches(st, exp)["segment_breach"]
    looser = CompiledRegistration("exp", segments={"country": frozenset({"US", "FR"})})
    assert not rule_breaches(st, looser)["segment_breach"]  # b and c are inside the looser segments
    assert process_batch(st, exp, [ev("c", attrs={"country": "FR"}, ts=T0 + 9)]) == []
    # configured so, a missing attribute set is a breach
    cfg = EngineConfig(segment_missing_breach=True)
    st2 = ExperimentState.new("exp")
    f2 = process_batch(st2, exp, evs, cfg)
    assert f2[0].blast_radius == 3 and f2[0].sample_ids == ("b", "c", "d")
    assert rule_breaches(st2, looser, cfg)["segment_breach"]  # d has no attributes at all


def test_segment_rejudge_clears_when_attributes_now_allowed():
    exp = CompiledRegistration("exp", segments={"country": frozenset({"US"})})
    st = ExperimentState.new("exp")
    process_batch(st, exp, [ev("c", attrs={"country": "FR"})])
    assert not rule_breaches(st, CompiledRegistration("exp", segments={"country": frozenset({"US", "FR"})}))["segment_breach"]


# ---- window -----------------------------------------------------------------------------
def test_outside_window_before_start_and_at_end():
    cfg = EngineConfig(window_grace_ms=0)
    exp = CompiledRegistration("exp", starts_at=T0 + 100, ends_at=T0 + 200)
    st = ExperimentState.new("exp")
    assert process_batch(st, exp, [ev("in", ts=T0 + 100), ev("in2", ts=T0 + 199),
                                   ev("notenr", enrolled=False, ts=T0)], cfg) == []
    f = process_batch(st, exp, [ev("late", ts=T0 + 200), ev("early", ts=T0 + 50)], cfg)
    assert rules_of(f) == ["outside_window"]
    assert f[0].first_offending_event_at == T0 + 50 and f[0].blast_radius == 2
    assert rule_breaches(st, exp, cfg)["outside_window"]
    assert not rule_breaches(st, CompiledRegistration("exp", starts_at=T0, ends_at=T0 + 1000), cfg)["outside_window"]


def test_outside_window_grace_is_the_accepted_clock_skew():
    hour = 3_600_000
    exp = CompiledRegistration("exp", starts_at=T0, ends_at=T0 + 10 * hour)
    st = ExperimentState.new("exp")
    # up to one hour (the default grace, = the accepted future skew) beyond either edge: no breach
    assert process_batch(st, exp, [ev("early", ts=T0 - hour + 1), ev("late", ts=T0 + 11 * hour - 1)]) == []
    assert not rule_breaches(st, exp)["outside_window"]
    f = process_batch(st, exp, [ev("later", ts=T0 + 11 * hour)])
    assert rules_of(f) == ["outside_window"] and f[0].blast_radius == 1
    assert rule_breaches(st, exp)["outside_window"]


# ---- SRM --------------------------------------------------------------------------------
def test_srm_detects_one_sided_split_and_not_balanced():
    exp = CompiledRegistration("exp", variants={"control": 0.5, "treatment": 0.5}, alpha=1e-3)
    st = ExperimentState.new("exp")
    f = []
    for i in range(200):
        f += process_batch(st, exp, [ev(f"u{i}", variant="treatment", ts=T0 + i)])
    assert f and f[0].rule == "sample_ratio_mismatch"
    assert 20 <= f[0].observed["users"] <= 100
    st2 = ExperimentState.new("exp")
    g = []
    for i in range(2000):
        g += process_batch(st2, exp, [ev(f"u{i}", variant=("control", "treatment")[i % 2], ts=T0 + i)])
    assert g == []
    assert not rule_breaches(st2, exp)["sample_ratio_mismatch"]


def test_srm_first_variant_per_user_wins():
    exp = CompiledRegistration("exp", variants={"control": 0.5, "treatment": 0.5})
    st = ExperimentState.new("exp")
    process_batch(st, exp, [ev("u1", variant="control"), ev("u1", variant="treatment")])
    assert st.variants == {"control": 1}


# ---- observe ----------------------------------------------------------------------------
def test_observe_is_json_able_and_reports_rules():
    import json

    exp = CompiledRegistration("exp", allowlist=frozenset({"a"}), fraction=0.5, max_users=10,
                      variants={"control": 0.5, "treatment": 0.5}, starts_at=T0, ends_at=T0 + 10,
                      segments={"c": frozenset({"x"})})
    st = ExperimentState.new("exp")
    process_batch(st, exp, [ev("a", attrs={"c": "x"}), ev("b", attrs={"c": "y"}, ts=T0 + 3),
                            ev("z", enrolled=False, ts=T0 + 4)])
    o = observe(st, exp)
    json.dumps(o.to_dict())
    assert o.observed.enrolled_users == 2 and o.observed.eligible_users == 3
    assert o.observed.first_event_at == T0 and o.observed.last_event_at == T0 + 4
    assert o.rules["allowlist_breach"].state == "firing"
    assert o.rules["segment_breach"].state == "firing"
    assert o.rules["max_users_exceeded"].state == "ok"
    assert o.rules["outside_window"].state == "ok"
    assert set(o.rules) == set(exp.active_rules())
    assert observe(ExperimentState.new("x"), None).rules["unregistered"].state == "ok"


def test_finding_to_dict():
    st = ExperimentState.new("exp")
    f = process_batch(st, None, [ev("u1")])[0]
    d = f.to_dict()
    assert d["rule"] == "unregistered" and d["sample_ids"] == ["u1"] and isinstance(d["summary"], str)


@pytest.mark.parametrize("limit", [1, 3])
def test_blast_radius_bounded_with_exact_count_beyond(limit):
    cfg = EngineConfig(blast_radius_limit=limit, sample_ids_limit=2)
    exp = CompiledRegistration("exp", allowlist=frozenset())
    st = ExperimentState.new("exp")
    f = process_batch(st, exp, [ev(f"x{i}") for i in range(10)] + [ev("x1")], cfg)
    assert f[0].blast_radius == 10 and len(f[0].sample_ids) == 2
    assert len(list(st.offenders())) == limit and st.offender_count == 10
    assert process_batch(st, exp, [ev("x5"), ev("x9")], cfg) == []
    assert process_batch(st, exp, [ev("x10")], cfg)[0].blast_radius == 11


def test_srm_counts_the_first_batch_and_restarts_on_new_split():
    exp = CompiledRegistration("exp", variants={"control": 0.5, "treatment": 0.5})
    st = ExperimentState.new("exp")
    f = process_batch(st, exp, [ev(f"u{i}", variant="treatment", ts=T0 + i) for i in range(200)])
    assert f and f[0].observed["users"] == 200 and f[0].first_offending_event_at == T0
    # re-registration with the observed split: a fresh test on new users, no alarm
    exp2 = CompiledRegistration("exp", variants={"treatment": 1.0})
    assert process_batch(st, exp2, [ev(f"v{i}", variant="treatment", ts=T0 + 500 + i) for i in range(50)]) == []
    assert not rule_breaches(st, exp2)["sample_ratio_mismatch"]
