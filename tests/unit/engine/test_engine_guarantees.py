"""The statistical guarantees of the fraction and split rules (README "Statistics").

Unit tests for each case of the design (first-evaluation unit, ramps, registration changes,
alpha budget, sketch bias, logging asymmetry, alarm state) and hypothesis property tests of
the mathematics the guarantees rest on (the e-detector's supermartingale step, the budget
shares, the logging correction) and of the engine's counting (batching invariance).
"""

import math
import random

import pytest
from hypothesis import given, settings, strategies as st_

from detector.engine import EngineConfig, ExperimentState, budget, observe, process_batch, rule_breaches, stats
from detector.registration.compiled import DEFAULT_TOLERANCE, CompiledRegistration
from detector.registration.errors import RegistrationError
from detector.registration.model import parse_registration, registration_to_dict
from tests.unit.engine.helpers import T0, ev

FAST = settings(max_examples=60, deadline=None, derandomize=True)


def run(st, exp, evs, batch=100, config=EngineConfig()):
    out = []
    for i in range(0, len(evs), batch):
        out += process_batch(st, exp, evs[i:i + batch], config)
    return out


def fs_of(st):
    return st.rules["fraction_exceeded"]


def srm_of(st):
    return st.rules["sample_ratio_mismatch"]


def fraction_findings(out):
    return [f for f in out if f.rule == "fraction_exceeded"]


# ---- the unit: a user counts once, at their first evaluation --------------------------------
@pytest.mark.parametrize("exact_limit", [100_000, 10])
def test_user_first_seen_not_enrolled_who_enrols_later_is_not_a_new_enrolment(exact_limit):
    cfg = EngineConfig(exact_limit=exact_limit)
    st = ExperimentState.new("exp")
    exp = CompiledRegistration("exp", fraction=0.01)
    run(st, exp, [ev(f"u{i}", enrolled=False, ts=T0 + i) for i in range(50)], config=cfg)
    run(st, exp, [ev(f"u{i}", ts=T0 + 100 + i) for i in range(50)], config=cfg)  # all of them enrol now
    assert st.n == 50 and st.f_x == 0  # the fraction rule's counts: no new eligible user, no new trial
    assert st.s == 50 and st.enrolled_lower_bound() == 50  # max_users still sees 50 enrolled users
    assert observe(st, exp).observed.first_evaluation_enrolled_users == 0


def test_first_event_of_a_new_user_in_a_mixed_batch_decides():
    st = ExperimentState.new("exp")
    exp = CompiledRegistration("exp", fraction=0.5)
    process_batch(st, exp, [ev("a", enrolled=False, ts=T0), ev("b", ts=T0 + 1), ev("a", ts=T0 + 2),
                            ev("c", enrolled=False, ts=T0 + 3), ev("b", enrolled=False, ts=T0 + 4)])
    assert (st.n, st.f_x, st.s) == (3, 1, 2)


def _sticky_step(rng, buckets, n_new, flag, returning, ev_max, ts):
    """Visits until n_new new users arrived: a returning user with probability `returning`, each
    visit 1..ev_max evaluations; user u enrolled iff their bucket < flag (sticky bucketing)."""
    evs = []
    made = 0
    while made < n_new:
        if buckets and rng.random() < returning:
            u = rng.randrange(len(buckets))
        else:
            u = len(buckets)
            buckets.append(rng.random())
            made += 1
        enr = buckets[u] < flag
        for _ in range(rng.randint(1, ev_max)):
            evs.append(ev(f"u{u}", enrolled=enr, variant=("c", "t")[u % 2], ts=ts + len(evs)))
    return evs


def _ramp_events(rng, steps, returning=0.5, ev_max=20):
    """(new users, flag rate, declared fraction) steps; yields (batch of ~300 events, declared)."""
    buckets = []
    ts = T0
    for n_new, flag, declared in steps:
        evs = _sticky_step(rng, buckets, n_new, flag, returning, ev_max, ts)
        ts += len(evs)
        for i in range(0, len(evs), 300):
            yield evs[i:i + 300], declared


def test_legitimate_ramp_with_returning_users_does_not_page():
    rng = random.Random(7)
    st = ExperimentState.new("exp")
    exps = {}
    out = []
    for evs, declared in _ramp_events(rng, [(3000, f, f) for f in (0.01, 0.05, 0.25, 0.5)]):
        exp = exps.setdefault(declared, CompiledRegistration("exp", fraction=declared, variants={"c": 0.5, "t": 0.5}))
        out += process_batch(st, exp, evs)
    assert out == []
    assert st.s > st.f_x * 1.2  # many returning users were upgraded by the ramp: not counted as trials


def test_ramp_in_the_flag_before_the_declaration_pages_at_the_declared_value():
    rng = random.Random(8)
    st = ExperimentState.new("exp")
    exp = CompiledRegistration("exp", fraction=0.01)
    out = []
    for evs, _ in _ramp_events(rng, [(3000, 0.01, 0.01), (5000, 0.05, 0.01)]):
        out += process_batch(st, exp, evs)
    f = fraction_findings(out)
    assert f and f[0].expected["fraction"] == 0.01
    alert_level = 0.01 * (1 + DEFAULT_TOLERANCE)
    assert f[0].observed["window_fraction"] > alert_level  # above the alert level 1% x 1.06


def test_registration_change_is_a_new_null_without_restart():
    st = ExperimentState.new("exp")
    e1, e5 = CompiledRegistration("exp", fraction=0.01), CompiledRegistration("exp", fraction=0.05)
    rng = random.Random(3)
    out = run(st, e1, [ev(f"a{i}", enrolled=rng.random() < 0.01, ts=T0 + i) for i in range(5000)])
    seg = fs_of(st).seg
    out += run(st, e5, [ev(f"b{i}", enrolled=rng.random() < 0.05, ts=T0 + 9000 + i) for i in range(5000)])
    assert out == [] and fs_of(st).seg == seg and fs_of(st).sn == 10_000  # one segment across the change
    # the same 5% traffic under the old declaration pages
    st2 = ExperimentState.new("exp")
    out = run(st2, e1, [ev(f"b{i}", enrolled=rng.random() < 0.05, ts=T0 + i) for i in range(5000)])
    assert fraction_findings(out)


# ---- detection ----------------------------------------------------------------------------
def test_full_rollout_after_a_long_healthy_period_detected_fast():
    st = ExperimentState.new("exp")
    exp = CompiledRegistration("exp", fraction=0.01, tolerance=0.0)
    rng = random.Random(1)
    healthy = [ev(f"h{i}", enrolled=rng.random() < 0.01, ts=T0 + i) for i in range(200_000)]
    assert run(st, exp, healthy, batch=5000) == []
    out = []
    for i in range(100):
        out += process_batch(st, exp, [ev(f"x{i}", ts=T0 + 300_000 + i)])
        if out:
            break
    f = fraction_findings(out)
    assert f and i < 15
    assert f[0].first_offending_event_at >= T0 + 300_000  # onset estimate: where the evidence started rising


# ---- alpha budget ---------------------------------------------------------------------------
def test_alarm_starts_a_new_segment_with_a_higher_threshold():
    st = ExperimentState.new("exp")
    exp = CompiledRegistration("exp", fraction=0.01)
    out = run(st, exp, [ev(f"u{i}", ts=T0 + i) for i in range(40)], batch=1)
    f = fraction_findings(out)
    assert len(f) >= 2
    assert f[0].observed["segment"] == 1 and f[1].observed["segment"] == 2
    assert f[1].observed["threshold"] > f[0].observed["threshold"]
    assert f[0].observed["threshold"] == pytest.approx(-math.log(1e-4 * budget.RULE_SHARE["fraction_exceeded"] * 0.9))


def test_merge_spends_a_new_segment_for_both_rules():
    a, b = ExperimentState.new("exp"), ExperimentState.new("exp")
    exp = CompiledRegistration("exp", fraction=0.5, variants={"c": 0.5, "t": 0.5})
    run(a, exp, [ev(f"a{i}", variant="c", enrolled=i % 3 == 0, ts=T0 + i) for i in range(30)])
    run(b, exp, [ev(f"b{i}", variant="t", enrolled=i % 3 == 0, ts=T0 + i) for i in range(30)])
    a.merge(b)
    assert fs_of(a).seg == 2 and srm_of(a).seg == 2 and a.f_x == 20 and fs_of(a).lr is None
    c = ExperimentState.from_bytes(a.to_bytes())
    assert (fs_of(c).seg, srm_of(c).seg, c.f_x) == (2, 2, 20)


def test_alpha_comes_from_the_fleet_budget_unless_registered(monkeypatch):
    from detector.settings import Settings

    monkeypatch.setenv("DETECTOR_FALSE_PAGE_BUDGET", "5")
    monkeypatch.setenv("DETECTOR_ACTIVE_EXPERIMENTS", "1000")
    cfg = Settings().engine_config
    assert cfg.alpha == pytest.approx(5e-3)
    st = ExperimentState.new("exp")
    run(st, CompiledRegistration("exp", fraction=0.5), [ev("u0", ts=T0)], config=cfg)
    r = observe(st, CompiledRegistration("exp", fraction=0.5), cfg).rules["fraction_exceeded"]
    assert r.threshold == pytest.approx(budget.log_threshold(5e-3, "fraction_exceeded", 1))
    r = observe(st, CompiledRegistration("exp", fraction=0.5, alpha=1e-6), cfg).rules["fraction_exceeded"]
    assert r.threshold == pytest.approx(budget.log_threshold(1e-6, "fraction_exceeded", 1))


@FAST
@given(g=st_.integers(1, 10_000))
def test_budget_shares_sum_to_at_most_one(g):
    assert sum(budget.segment_share(k) for k in range(1, g + 1)) <= 1.0 + 1e-12
    assert sum(budget.RULE_SHARE.values()) <= 1.0
    assert budget.segment_alpha(1e-4, "fraction_exceeded", g) <= 1e-4


@FAST
@given(a=st_.floats(0, 1e12), b=st_.floats(0, 1e12))
def test_start_weights_are_a_sub_probability(a, b):
    lo, hi = sorted((a, b))
    assert 0.0 <= budget.start_cdf(lo) <= budget.start_cdf(hi) < 1.0


# ---- the e-detector: one look is a supermartingale step under the null ----------------------------
@FAST
@given(p0=st_.floats(1e-4, 0.99), under=st_.floats(0.0, 1.0), m=st_.integers(1, 2000),
       log_r=st_.lists(st_.floats(-50, 5), min_size=len(stats.RATIOS), max_size=len(stats.RATIOS)),
       n_before=st_.integers(0, 10**8))
def test_sr_look_is_a_supermartingale_step_under_the_null(p0, under, m, log_r, n_before):
    """E[Q after | past] <= Q before, Q = sum_j pi_j R_j + unspent start weight (the engine's prior
    weights stats.LOG_PI), for any true rate <= p0."""
    p = p0 * under
    alts = stats.fraction_alternatives(p0)
    pis = [math.exp(x) for x in stats.LOG_PI]
    assert len(pis) == len(alts) and math.fsum(pis) == pytest.approx(1.0)
    w = (1 - budget.START_WEIGHT) * (budget.start_cdf(n_before + m) - budget.start_cdf(n_before))
    unspent_before = (1 - budget.START_WEIGHT) * (1 - budget.start_cdf(n_before))
    q_before = math.exp(stats.log_weighted_sum(log_r)) + unspent_before
    # E[prod of m per-trial ratios] = (p e^a + (1 - p) e^b)^m per alternative (independent trials)
    expect = 0.0
    for lr, (a, b), pi in zip(log_r, alts, pis, strict=True):
        per = p * math.exp(a) + (1 - p) * math.exp(b)
        assert per <= 1.0 + 1e-12
        expect += pi * (math.exp(lr) + w) * per ** m
    q_after = expect + unspent_before - w
    assert q_after <= q_before * (1 + 1e-9) + 1e-300


@FAST
@given(p0=st_.floats(1e-3, 0.9), x=st_.integers(0, 50), m=st_.integers(0, 50), seed=st_.integers(0, 1000))
def test_sr_update_matches_the_closed_form(p0, x, m, seed):
    x = min(x, m)
    alts = stats.fraction_alternatives(p0)
    lw = math.log(1e-3)
    r = stats.sr_update([math.log(0.9)] * len(alts), lw, x, m, alts)
    for lr, (a, b) in zip(r, alts):
        assert lr == pytest.approx(math.log(0.9 + 1e-3) + x * a + (m - x) * b)


# ---- batching invariance of the counts ----------------------------------------------------------
@FAST
@given(seed=st_.integers(0, 2**31), n=st_.integers(1, 400), b1=st_.integers(1, 200), b2=st_.integers(1, 200),
       exact_limit=st_.sampled_from([5, 100_000]))
def test_first_evaluation_counts_do_not_depend_on_batching(seed, n, b1, b2, exact_limit):
    rng = random.Random(seed)
    evs = [ev(f"u{rng.randrange(n)}", enrolled=rng.random() < 0.3, ts=T0 + i) for i in range(2 * n)]
    first = {}
    for e in evs:
        first.setdefault(e.user_id, e.enrolled)
    cfg = EngineConfig(exact_limit=exact_limit)
    exp = CompiledRegistration("exp", fraction=0.9)
    s1, s2 = ExperimentState.new("exp"), ExperimentState.new("exp")
    run(s1, exp, evs, b1, cfg)
    run(s2, exp, evs, b2, cfg)
    assert (s1.n, s1.f_x) == (s2.n, s2.f_x) == (len(first), sum(first.values()))
    assert s1.f_x <= s1.s <= s1.n


# ---- sketch: collisions drop a user from n and S alike ---------------------------------------------
def test_collisions_do_not_bias_the_first_evaluation_fraction():
    cfg = EngineConfig(fingerprint_bits=14, exact_limit=10)  # 16,384 slots
    st = ExperimentState.new("exp")
    rng = random.Random(5)
    exp = CompiledRegistration("exp", fraction=0.3, tolerance=0.0)
    evs = [ev(f"u{i}", enrolled=rng.random() < 0.2, ts=T0 + i) for i in range(40_000)]
    out = run(st, exp, evs, batch=2000, config=cfg)
    assert st.n < 16_384  # heavy collisions
    assert abs(st.f_x / st.n - 0.2) < 0.02  # the fraction rule's ratio stays unbiased
    assert st.s / st.n > 0.3  # the old S/n (any enrolment) reads far too high
    assert fraction_findings(out) == []


def test_enrolled_estimate_inverts_collisions():
    cfg = EngineConfig(fingerprint_bits=16, exact_limit=10)
    st = ExperimentState.new("exp")
    run(st, CompiledRegistration("exp", max_users=10**9), [ev(f"u{i}", ts=T0 + i) for i in range(50_000)], 5000, cfg)
    assert st.enrolled_lower_bound() < 45_000
    assert abs(st.enrolled_estimate() - 50_000) < 1_500
    assert stats.linear_count(0, 2**30) == 0.0


# ---- logging asymmetry --------------------------------------------------------------------------
@FAST
@given(f=st_.floats(1e-4, 0.99), tol=st_.floats(0, 1), q=st_.floats(0.01, 1.0), q_user=st_.floats(0, 1))
def test_logging_correction_bounds_what_the_detector_sees(f, tol, q, q_user):
    """Not-enrolled users seen with probability q' >= q: the seen enrolled share is <= effective p0."""
    qq = q + (1 - q) * q_user
    for p in (f, f * (1 + tol)):
        p = min(p, 1.0)
        seen = p / (p + (1 - p) * qq) if p < 1 else 1.0
        assert seen <= stats.effective_p0(f, tol, q) + 1e-12


def test_sdk_logging_only_enrolled_users_switches_the_fraction_rule_off():
    e = CompiledRegistration("exp", fraction=0.1, unenrolled_logged=0.0, max_users=5)
    assert e.active_rules() == ["max_users_exceeded"]
    st = ExperimentState.new("exp")
    out = run(st, e, [ev(f"u{i}", ts=T0 + i) for i in range(3)])
    assert fraction_findings(out) == [] and "fraction_exceeded" not in rule_breaches(st, e)


def test_sampled_not_enrolled_evaluations_do_not_page():
    rng = random.Random(2)
    e = CompiledRegistration("exp", fraction=0.05, unenrolled_logged=0.25)
    st = ExperimentState.new("exp")
    evs = []
    for i in range(40_000):
        enr = rng.random() < 0.05
        if enr or rng.random() < 0.25:  # three in four not-enrolled evaluations never logged
            evs.append(ev(f"u{i}", enrolled=enr, ts=T0 + i))
    assert run(st, e, evs, batch=1000) == []
    assert st.f_x / st.n > 0.15  # what a test at the declared 5% would have paged on


def test_registration_field_unenrolled_logged():
    doc = {"experiment": "e", "population": {"fraction": 0.1, "unenrolled_logged": 0.5}}
    e = parse_registration(doc)
    assert e.unenrolled_logged == 0.5 and e.tolerance == DEFAULT_TOLERANCE == 0.06 and e.alpha is None
    assert registration_to_dict(e)["population"]["unenrolled_logged"] == 0.5
    assert parse_registration(registration_to_dict(e)) == e
    with pytest.raises(RegistrationError) as info:
        parse_registration({"experiment": "e", "population": {"fraction": 0.1, "unenrolled_logged": 2}})
    assert "population.unenrolled_logged" in [x.field for x in info.value.errors]


# ---- alarm state: rule_breaches / observe agree with the alarm logic ----------------------------------
def test_rule_state_firing_from_alarm_until_evidence_says_fixed():
    st = ExperimentState.new("exp")
    exp = CompiledRegistration("exp", fraction=0.01, tolerance=0.0)
    assert not rule_breaches(st, exp)["fraction_exceeded"]
    out = run(st, exp, [ev(f"x{i}", ts=T0 + i) for i in range(5)], batch=1)
    assert fraction_findings(out)
    assert rule_breaches(st, exp)["fraction_exceeded"]  # right after the page
    assert observe(st, exp).rules["fraction_exceeded"].state == "firing"
    # a registration that covers what was seen resolves it; one that does not keeps it
    assert not rule_breaches(st, CompiledRegistration("exp", fraction=1.0))["fraction_exceeded"]
    rng = random.Random(4)
    run(st, exp, [ev(f"h{i}", enrolled=rng.random() < 0.005, ts=T0 + 100 + i) for i in range(3000)])
    assert not rule_breaches(st, exp)["fraction_exceeded"]  # fixed: healthy users since the alarm
    assert observe(st, exp).rules["fraction_exceeded"].state == "ok"


def test_split_rule_state_follows_its_alarm():
    st = ExperimentState.new("exp")
    exp = CompiledRegistration("exp", variants={"c": 0.5, "t": 0.5})
    for i in range(200):  # every user in one variant, until the page
        if process_batch(st, exp, [ev(f"u{i}", variant="t", ts=T0 + i)]):
            break
    assert srm_of(st).alarms == 1 and i < 100
    assert rule_breaches(st, exp)["sample_ratio_mismatch"]
    run(st, exp, [ev(f"v{i}", variant=("c", "t")[i % 2], ts=T0 + 1000 + i) for i in range(4000)], batch=50)
    assert not rule_breaches(st, exp)["sample_ratio_mismatch"]


def test_engine_statistic_equals_the_closed_form_over_first_evaluations():
    """process_batch's fraction statistic = stats.sr_update fed (new users, enrolled at first evaluation)."""
    from detector.engine.rules.fraction import start_log_weight

    rng = random.Random(11)
    exp = CompiledRegistration("exp", fraction=0.02)
    p0 = stats.effective_p0(0.02, exp.tolerance)
    alts = stats.fraction_alternatives(p0)
    st = ExperimentState.new("exp")
    lr = [math.log(budget.START_WEIGHT)] * len(alts)
    seen, n = set(), 0
    for b in range(40):
        evs = [ev(f"u{rng.randrange(3000)}", enrolled=rng.random() < 0.02, ts=T0 + b * 100 + i) for i in range(80)]
        assert process_batch(st, exp, evs, EngineConfig(exact_limit=50)) == []
        firsts = {}
        for e in evs:
            if e.user_id not in seen:
                firsts.setdefault(e.user_id, e.enrolled)
        seen |= set(firsts)
        dn, dx = len(firsts), sum(firsts.values())
        if dn:
            lr = stats.sr_update(lr, start_log_weight(n, n + dn), dx, dn, alts)
            n += dn
            assert fs_of(st).stat == pytest.approx(stats.log_weighted_sum(lr), abs=1e-9)


@settings(max_examples=30, deadline=None, derandomize=True)
@given(steps=st_.lists(st_.tuples(st_.sampled_from([0.0, 0.01, 0.05, 0.25, 0.5, 0.9]), st_.integers(1, 1500)),
                       min_size=1, max_size=5),
       under=st_.floats(0.0, 1.0), returning=st_.floats(0.0, 0.8), batch=st_.integers(1, 700),
       seed=st_.integers(0, 2**31))
def test_registration_changes_mid_stream_with_the_flag_never_page(steps, under, returning, batch, seed):
    """Any sequence of declarations, the flag at or under each (sticky buckets, returning users,
    repeated evaluations, any batching): neither statistical rule pages."""
    rng = random.Random(seed)
    st = ExperimentState.new("exp")
    buckets: list[float] = []
    out = []
    ts = T0
    for declared, n_new in steps:
        exp = CompiledRegistration("exp", fraction=declared, variants={"c": 0.5, "t": 0.5})
        evs = _sticky_step(rng, buckets, n_new, declared * under, returning, 3, ts)
        ts += len(evs)
        out += run(st, exp, evs, batch, EngineConfig(exact_limit=300))
    assert [f for f in out if f.rule in ("fraction_exceeded", "returning_enrolled_exceeded", "sample_ratio_mismatch")] == []


def _legacy_state(exp, n=500):
    """A state as the engine before prior weights wrote it: uniform weights over 10 ratios, no grid id."""
    old_grid = EngineConfig(fraction_ratios=(1.1, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0),
                            fraction_weights=(1.0,) * 10)
    st = ExperimentState.new("exp")
    run(st, exp, [ev(f"u{i}", enrolled=i % 50 == 0, ts=T0 + i) for i in range(n)], config=old_grid)
    fs = fs_of(st)
    fs.grid, fs.cap = 0, 0.0  # what a checkpoint without these fields decodes to
    fs.stat = stats.log_mean_exp(fs.lr)  # the legacy statistic
    return ExperimentState.from_bytes(st.to_bytes())


def test_a_state_from_the_legacy_grid_carries_its_evidence_into_the_new_one():
    """A checkpoint written before the prior weights (uniform over 10 ratios) continues in the same
    segment: the new e-process starts with the old e-value as capital (C x a fresh e-process)."""
    exp = CompiledRegistration("exp", fraction=0.01)
    st = _legacy_state(exp)
    old = fs_of(st).stat
    run(st, exp, [ev(f"v{i}", enrolled=False, ts=T0 + 1000 + i) for i in range(100)])
    fs = fs_of(st)
    assert fs.seg == 1 and len(fs.lr) == len(stats.RATIOS) and fs.grid == stats.grid_id()
    assert fs.cap == pytest.approx(old) and fs.sn == 100
    # the same 100 trials on a fresh e-process, scaled by the capital
    lr = stats.sr_update([math.log(budget.START_WEIGHT)] * len(stats.RATIOS),
                         math.log((1 - budget.START_WEIGHT) * budget.start_cdf(100)), 0, 100,
                         stats.fraction_alternatives(stats.effective_p0(0.01, DEFAULT_TOLERANCE)))
    assert fs.stat == pytest.approx(old + stats.log_weighted_sum(lr), abs=1e-9)
    thr = observe(st, exp).rules["fraction_exceeded"].threshold
    assert thr == pytest.approx(budget.log_threshold(1e-4, "fraction_exceeded", 1))


def test_a_state_from_an_unknown_grid_carries_a_lower_bound_of_its_evidence():
    """Another grid of the same length (weights changed): its weights are unknown to this engine,
    so the capital is min_j R_j (below any weighted mean), still in the same segment."""
    exp = CompiledRegistration("exp", fraction=0.01)
    other = EngineConfig(fraction_weights=(1.0,) * len(stats.RATIOS))
    st = ExperimentState.new("exp")
    run(st, exp, [ev(f"u{i}", enrolled=i % 40 == 0, ts=T0 + i) for i in range(800)], config=other)
    low = min(fs_of(st).lr)
    run(st, exp, [ev(f"v{i}", enrolled=False, ts=T0 + 1000 + i) for i in range(10)])
    fs = fs_of(st)
    assert fs.seg == 1 and fs.cap == pytest.approx(low) and fs.grid == stats.grid_id()


def test_a_declared_zero_then_a_ramp_keeps_the_first_segment():
    """0% first (any enrolment pages, no e-process), then 1%: the e-process starts at the ramp in
    segment 1 with the full grid (no budget spent on the switch)."""
    st = ExperimentState.new("exp")
    zero, one = CompiledRegistration("exp", fraction=0.0), CompiledRegistration("exp", fraction=0.01)
    assert run(st, zero, [ev(f"u{i}", enrolled=False, ts=T0 + i) for i in range(300)]) == []
    run(st, one, [ev(f"v{i}", enrolled=i % 100 == 0, ts=T0 + 1000 + i) for i in range(300)])
    fs = fs_of(st)
    assert fs.seg == 1 and len(fs.lr) == len(stats.RATIOS) and fs.sn == 300 and fs.cap == 0.0


def test_mixture_weights_are_a_prior_over_the_ratios():
    """The prior sums to 1 (any positive weights are normalised); the mixture e-value is the
    prior-weighted mean, so its initial value is START_WEIGHT whatever the weights."""
    lp = stats.ratio_log_weights()
    assert len(lp) == len(stats.RATIOS) and math.fsum(math.exp(x) for x in lp) == pytest.approx(1.0)
    assert stats.log_weighted_sum([math.log(budget.START_WEIGHT)] * len(lp), lp) == pytest.approx(
        math.log(budget.START_WEIGHT))
    with pytest.raises(ValueError):
        stats.ratio_log_weights((1.0, 0.0))
    with pytest.raises(ValueError):
        EngineConfig(fraction_ratios=(2.0, 3.0))  # one weight per ratio
